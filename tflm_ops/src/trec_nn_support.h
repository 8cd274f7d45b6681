/*
 * trec-tflm: internal support functions shared by the int8 kernels (dense baseline and TREC).
 *
 * Not a public header: kernels in tflm_ops/src include it, applications do not.
 *
 * Contents
 *   - SIMD helpers (SXTB16, SXTAB16, SMLAD): ACLE intrinsics from <arm_acle.h> when the core has the
 *     DSP extension (__ARM_FEATURE_DSP: Cortex-M4/M7/M33/M55), C emulations otherwise. The emulations
 *     let the host build run exactly the code path the MCU runs (define TREC_EMULATE_DSP).
 *   - little-endian unaligned reads/writes of packed int8x4 / int16x2 words.
 *   - "unordered" unpacking: a word holding int8 x[0..3] becomes two int16x2 words (x0,x2) and (x1,x3).
 *     Both operands of an SMLAD dot product must use the same order; trec_s8_to_s16_unordered_offset()
 *     writes im2col columns in that order so filters can be unpacked on the fly.
 *   - requantization: TFLite's MultiplyByQuantizedMultiplier (double rounding), bit-exact, written for
 *     Cortex-M (one SMLAL, no 64-bit shifts, no branches).
 *   - argument checks both kernels make (positive dims, a convolution geometry TFLite can produce).
 *
 * TREC_DSP is 1 when the SIMD code paths are compiled (real DSP or emulation), 0 for the plain C paths.
 * Compiler attributes (TREC_INLINE, TREC_NOINLINE, ...) come from trec_attributes.h.
 */
#ifndef TREC_NN_SUPPORT_H
#define TREC_NN_SUPPORT_H

#include <stdint.h>
#include <string.h>

#include "trec/trec_nn_types.h"
#include "trec_attributes.h"

#if defined(__BYTE_ORDER__) && (__BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__)
#error "trec-tflm kernels assume a little-endian target"
#endif

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define TREC_DSP 1
#define TREC_DSP_NATIVE 1
#include <arm_acle.h>
#elif defined(TREC_EMULATE_DSP)
#define TREC_DSP 1
#define TREC_DSP_NATIVE 0
#else
#define TREC_DSP 0
#define TREC_DSP_NATIVE 0
#endif

#define TREC_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TREC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TREC_ABS(a) ((a) < 0 ? -(a) : (a))

/* ------------------------------------------------------------------------------------------------
 * Packed loads and stores (unaligned allowed; memcpy compiles to a single LDR/STR on Armv7E-M).
 * ---------------------------------------------------------------------------------------------- */
TREC_INLINE int32_t trec_read_s8x4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Read four int8 and advance the pointer. */
TREC_INLINE int32_t trec_read_s8x4_ia(const int8_t **p)
{
    const int32_t v = trec_read_s8x4(*p);
    *p += 4;
    return v;
}

TREC_INLINE int32_t trec_read_s16x2(const int16_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Read two int16 and advance the pointer. */
TREC_INLINE int32_t trec_read_s16x2_ia(const int16_t **p)
{
    const int32_t v = trec_read_s16x2(*p);
    *p += 2;
    return v;
}

TREC_INLINE void trec_write_s16x2(int16_t *p, int32_t v) { memcpy(p, &v, 4); }

/* Write two int16 and advance the pointer. */
TREC_INLINE void trec_write_s16x2_ia(int16_t **p, int32_t v)
{
    trec_write_s16x2(*p, v);
    *p += 2;
}

TREC_INLINE void trec_write_s8x4(int8_t *p, int32_t v) { memcpy(p, &v, 4); }

/* ------------------------------------------------------------------------------------------------
 * SIMD helpers. Semantics (bits of 32-bit words, little-endian lanes):
 *   trec_sxtb16(x)        = { (int16)(int8)x[7:0],  (int16)(int8)x[23:16] }
 *   trec_sxtb16_ror8(x)   = { (int16)(int8)x[15:8], (int16)(int8)x[31:24] }
 *   trec_sxtab16(a, x)    = { a.lo + (int8)x[7:0],  a.hi + (int8)x[23:16] }   (lanes wrap mod 2^16)
 *   trec_sxtab16_ror8(a,x)= { a.lo + (int8)x[15:8], a.hi + (int8)x[31:24] }
 *   trec_smlad(a, b, acc) = acc + a.lo*b.lo + a.hi*b.hi                         (wraps mod 2^32)
 *   trec_ssub16(a, b)     = { a.lo - b.lo, a.hi - b.hi }                         (lanes wrap mod 2^16)
 *   trec_pack_s16x2(lo,hi)= { lo, hi }
 * ---------------------------------------------------------------------------------------------- */
TREC_INLINE int32_t trec_pack_s16x2(int32_t lo, int32_t hi)
{
    return (int32_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16));
}

/* the same in one PKHBT where the DSP extension is native */
TREC_INLINE int32_t trec_pkhbt(int32_t lo, int32_t hi)
{
#if TREC_DSP_NATIVE
    int32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
    return r;
#else
    return trec_pack_s16x2(lo, hi);
#endif
}

/* { b.hi, a.hi }: the high lanes of b and a, in one PKHTB where the DSP extension is native */
TREC_INLINE int32_t trec_pkhtb(int32_t a, int32_t b)
{
#if TREC_DSP_NATIVE
    int32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)(((uint32_t)a & 0xFFFF0000u) | ((uint32_t)b >> 16));
#endif
}

/* the low and high int16 lanes of a word, sign-extended */
TREC_INLINE int32_t trec_lo16(int32_t x) { return (int32_t)(int16_t)((uint32_t)x & 0xFFFFu); }
TREC_INLINE int32_t trec_hi16(int32_t x) { return (int32_t)(int16_t)((uint32_t)x >> 16); }

#if TREC_DSP_NATIVE

TREC_INLINE int32_t trec_sxtb16(int32_t x) { return (int32_t)__sxtb16((int8x4_t)x); }

TREC_INLINE int32_t trec_sxtb16_ror8(int32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

TREC_INLINE int32_t trec_sxtab16(int32_t a, int32_t x)
{
    return (int32_t)__sxtab16((int16x2_t)a, (int8x4_t)x);
}

TREC_INLINE int32_t trec_sxtab16_ror8(int32_t a, int32_t x)
{
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}

TREC_INLINE int32_t trec_smlad(int32_t a, int32_t b, int32_t acc)
{
    return __smlad((int16x2_t)a, (int16x2_t)b, acc);
}

TREC_INLINE int32_t trec_ssub16(int32_t a, int32_t b) { return (int32_t)__ssub16((int16x2_t)a, (int16x2_t)b); }

TREC_INLINE int32_t trec_qadd(int32_t a, int32_t b) { return __qadd(a, b); }

TREC_INLINE int32_t trec_qsub(int32_t a, int32_t b) { return __qsub(a, b); }

/* *a = p[0], *b = p[1] in one LDRD (p word-aligned: enough on Armv7E-M); `off` words ahead */
#define trec_load2(p, off, a, b) \
    __asm__("ldrd %0, %1, [%2, %3]" : "=r"(a), "=r"(b) : "r"(p), "i"(4 * (off)), "m"(*(const int32_t(*)[2])((p) + (off))))

/* trec_load2 at word `off` (a constant) of p, declaring that the asm may read the first n words
 * from p: declared as the two words loaded, each p + off of a loop unrolled whole becomes an
 * address the compiler keeps (and spills) although the instruction never uses it */
#define trec_load2_in(p, n, off, a, b)                                                                 \
    __asm__("ldrd %0, %1, [%2, %3]" : "=r"(a), "=r"(b) : "r"(p), "i"(4 * (off)), "m"(*(const int32_t(*)[n])(p)))

/* p[0] = a, p[1] = b in one STRD (p word-aligned) */
#define trec_store2(p, a, b) \
    __asm__("strd %1, %2, [%3]" : "=m"(*(int32_t(*)[2])(p)) : "r"(a), "r"(b), "r"(p))

/* trec_load2 / trec_store2 at p + j: where j is a constant (a loop the compiler unrolled whole),
 * it goes into the instruction's offset; passing p + j instead makes the compiler keep every such
 * address in a register of its own, which spills the unrolled scatter rows (~108 instead of ~72
 * instructions per row of 16 channels) */
#define trec_load2_at(p, j, a, b)                                                                      \
    do {                                                                                               \
        if (__builtin_constant_p(j)) {                                                                 \
            trec_load2((p), (j), a, b);                                                                \
        } else {                                                                                       \
            trec_load2((p) + (j), 0, a, b);                                                            \
        }                                                                                              \
    } while (0)
#define trec_store2_at(p, j, a, b)                                                                     \
    do {                                                                                               \
        if (__builtin_constant_p(j)) {                                                                 \
            __asm__("strd %1, %2, [%3, %4]" : "=m"(*(int32_t(*)[2])((p) + (j))) : "r"(a), "r"(b), "r"(p), \
                    "i"(4 * (j)));                                                                     \
        } else {                                                                                       \
            trec_store2((p) + (j), a, b);                                                              \
        }                                                                                              \
    } while (0)

/* (a * b + 2^31) >> 32 (SMMULR) */
TREC_INLINE int32_t trec_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

#else /* C emulation: same results, bit for bit */

TREC_INLINE int32_t trec_byte(int32_t x, int i) { return (int32_t)(int8_t)(((uint32_t)x >> (8 * i)) & 0xFFu); }

TREC_INLINE int32_t trec_sxtb16(int32_t x) { return trec_pack_s16x2(trec_byte(x, 0), trec_byte(x, 2)); }

TREC_INLINE int32_t trec_sxtb16_ror8(int32_t x) { return trec_pack_s16x2(trec_byte(x, 1), trec_byte(x, 3)); }

TREC_INLINE int32_t trec_sxtab16(int32_t a, int32_t x)
{
    return trec_pack_s16x2(trec_lo16(a) + trec_byte(x, 0), trec_hi16(a) + trec_byte(x, 2));
}

TREC_INLINE int32_t trec_sxtab16_ror8(int32_t a, int32_t x)
{
    return trec_pack_s16x2(trec_lo16(a) + trec_byte(x, 1), trec_hi16(a) + trec_byte(x, 3));
}

TREC_INLINE int32_t trec_ssub16(int32_t a, int32_t b)
{
    return trec_pack_s16x2(trec_lo16(a) - trec_lo16(b), trec_hi16(a) - trec_hi16(b));
}

TREC_INLINE int32_t trec_smlad(int32_t a, int32_t b, int32_t acc)
{
    const uint32_t p0 = (uint32_t)(trec_lo16(a) * trec_lo16(b));
    const uint32_t p1 = (uint32_t)(trec_hi16(a) * trec_hi16(b));
    return (int32_t)((uint32_t)acc + p0 + p1);
}

#endif /* TREC_DSP_NATIVE */

#if !TREC_DSP_NATIVE
/* saturating add (QADD) */
TREC_INLINE int32_t trec_qadd(int32_t a, int32_t b)
{
    const int64_t s = (int64_t)a + b;
    return s > INT32_MAX ? INT32_MAX : (s < INT32_MIN ? INT32_MIN : (int32_t)s);
}

/* saturating subtract (QSUB) */
TREC_INLINE int32_t trec_qsub(int32_t a, int32_t b)
{
    const int64_t s = (int64_t)a - b;
    return s > INT32_MAX ? INT32_MAX : (s < INT32_MIN ? INT32_MIN : (int32_t)s);
}

TREC_INLINE int32_t trec_smmulr(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
}

#define trec_load2(p, off, a, b) ((a) = (p)[(off)], (b) = (p)[(off) + 1])
#define trec_load2_in(p, n, off, a, b) trec_load2((p), (off), a, b)
#define trec_store2(p, a, b) ((p)[0] = (a), (p)[1] = (b))
#define trec_load2_at(p, j, a, b) trec_load2((p) + (j), 0, a, b)
#define trec_store2_at(p, j, a, b) trec_store2((p) + (j), a, b)
#endif

/* Load four int8 (advancing the pointer) and unpack them to int16 pairs in "unordered" lane order:
 * *even = (x0, x2), *odd = (x1, x3). Pairs with columns written by trec_s8_to_s16_unordered_offset(). */
TREC_INLINE const int8_t *trec_read_unpack_s8x4(const int8_t *p, int32_t *even, int32_t *odd)
{
    const int32_t v = trec_read_s8x4(p);
    *even = trec_sxtb16(v);
    *odd = trec_sxtb16_ror8(v);
    return p + 4;
}

/* Position of element j (0..3) of a group of four inside an unordered int16 group: (x0, x2, x1, x3). */
#define TREC_UNORDERED_SLOT(j) ((((j) & 1) << 1) | (((j) >> 1) & 1))

/* dst[i] = src[i] + offset for n int8 values (n any), as int16. Groups of four are stored in
 * unordered lane order (x0, x2, x1, x3); the last partial group, if any, is stored with the same
 * slot mapping (TREC_UNORDERED_SLOT) and its unused slots are left untouched.
 * In-place use: dst may overlap src when (char *)dst + 2*i <= (char *)src + i for every i, e.g. src
 * placed at byte offset >= n (rounded up to 4) from dst: the conversion runs in ascending order. */
static inline void trec_s8_to_s16_unordered_offset(const int8_t *src, int16_t *dst, int32_t n, int32_t offset)
{
#if TREC_DSP
    const int32_t off2 = trec_pack_s16x2(offset, offset);
    int32_t groups = n >> 2;
    while (groups-- > 0) {
        const int32_t v = trec_read_s8x4_ia(&src);
        const int32_t even = trec_sxtab16(off2, v);
        const int32_t odd = trec_sxtab16_ror8(off2, v);
        trec_write_s16x2_ia(&dst, even);
        trec_write_s16x2_ia(&dst, odd);
    }
    for (int32_t j = 0; j < (n & 3); j++) {
        dst[TREC_UNORDERED_SLOT(j)] = (int16_t)(src[j] + offset);
    }
#else
    for (int32_t i = 0; i < n; i++) {
        const int32_t j = i & 3;
        dst[(i & ~3) + TREC_UNORDERED_SLOT(j)] = (int16_t)(src[i] + offset);
    }
#endif
}

/* dst[i] = src[i] + offset for n int8 values, as int16, natural order. DSP: four at a time, the
 * offset added in both lanes by SXTAB16 and the lanes put back in order by PKHBT/PKHTB (about
 * 2 instructions per value instead of 5). */
static inline void trec_s8_to_s16_offset(const int8_t *src, int16_t *dst, int32_t n, int32_t offset)
{
    int32_t i = 0;
#if TREC_DSP
    const int32_t offsets = trec_pack_s16x2(offset, offset);
    for (; i + 4 <= n; i += 4) {
        const int32_t v = trec_read_s8x4(src + i);
        const int32_t even = trec_sxtab16(offsets, v), odd = trec_sxtab16_ror8(offsets, v); /* {0, 2}, {1, 3} */
        trec_write_s16x2(dst + i, trec_pkhbt(even, odd));
        trec_write_s16x2(dst + i + 2, trec_pkhtb(odd, even));
    }
#endif
    for (; i < n; i++) {
        dst[i] = (int16_t)(src[i] + offset);
    }
}

/* ------------------------------------------------------------------------------------------------
 * Requantization
 * ---------------------------------------------------------------------------------------------- */

/* Valid per-channel parameters: TFLite's QuantizeMultiplier yields multiplier in [0, 2^31) and
 * shift in [-31, 30]. The fast requantization below relies on multiplier >= 0. */
TREC_INLINE int trec_quant_params_valid(int32_t multiplier, int32_t shift)
{
    return multiplier >= 0 && shift >= -31 && shift <= 30;
}

/* TFLite's MultiplyByQuantizedMultiplier(int32 x, multiplier, shift) with double rounding:
 *   x' = x * 2^max(shift, 0)                              (int32, wraps like the reference)
 *   h  = SaturatingRoundingDoublingHighMul(x', multiplier) = round-half-away(x' * multiplier / 2^31)
 *   r  = RoundingDivideByPOT(h, max(-shift, 0))            = round-half-away(h / 2^right)
 * Requires multiplier >= 0 (then the doubling high multiply never saturates; see
 * trec_quant_params_valid).
 *
 * Implementation notes (bit-exact, derived from the definitions above):
 *  - round-half-away of p / 2^31 with the reference's sign-dependent nudge (+2^30 for p >= 0,
 *    1 - 2^30 for p < 0, then truncation) equals floor((p + 2^30) / 2^31) for every integer p.
 *    That is one SMLAL into a 64-bit accumulator preloaded with 2^30, then bits [62:31].
 *  - round-half-away of h / 2^e: (h >> e) + 1 exactly when the discarded bits exceed half,
 *    or equal half and h >= 0: compare (h & mask) with (mask >> 1) + (h < 0).
 */
TREC_INLINE int32_t trec_requantize(int32_t x, int32_t multiplier, int32_t shift)
{
    /* shift is constant per channel: the branch is predictable, and each path compiles to a few
     * instructions (a branch-free form makes the compiler evaluate both). */
    int32_t right = -shift;
    if (shift > 0) {
        x = (int32_t)((uint32_t)x << shift);
        right = 0;
    }
    /* bits [62:31] of x * multiplier + 2^30: one SMLAL; fits int32 since |x * multiplier| < 2^62 */
    const int64_t prod = (int64_t)x * (int64_t)multiplier + ((int64_t)1 << 30);
    const int32_t h = (int32_t)(prod >> 31);
    const uint32_t mask = (1u << right) - 1u;
    const uint32_t rem = (uint32_t)h & mask;
    const uint32_t threshold = (mask >> 1) + ((uint32_t)h >> 31);
    return (h >> right) + (rem > threshold ? 1 : 0);
}

/* Fast requantization. TFLite's MultiplyByQuantizedMultiplier rounds twice: h = (x*m + 2^30) >> 31
 * (the rounded doubling high multiply), then h / 2^r rounded half away from zero. For a multiplier
 * m = 0 or m >= 2^30 (what QuantizeMultiplier produces) and a right shift r = -shift in [0, 18]:
 *   h = SMMULR(2x, m)                                  exact while |x| < 2^30;
 *   round(h / 2^r) = (2h + 2^r - 1 + [h >= 0]) >> (r + 1).
 * Doubling with saturating adds (QADD) keeps every step in 32 bits: they saturate only when
 * |x| >= 2^30 or |h| >= 2^30 - 2^19, and there both the result and the exact value exceed
 * +-2047, so after the clamp to an int8 range (|lo|, |hi| <= 255) they agree. Six instructions
 * instead of ~20; trec_requantize_clamp() takes this path whenever it applies. */
TREC_INLINE int trec_requantize_fast_ok(int32_t multiplier, int32_t shift)
{
    return (uint32_t)(-shift) <= 18u && (multiplier == 0 || multiplier >= (1 << 30));
}

/* v such that clamp(v) equals clamp(MultiplyByQuantizedMultiplier(x, m, shift)), when fast_ok;
 * pow = 2^r and r1 = r + 1 for the right shift r = -shift (loops over rows precompute them) */
TREC_INLINE int32_t trec_requantize_fast_pre(int32_t x, int32_t multiplier, int32_t pow, int32_t r1)
{
    const int32_t h = trec_smmulr(trec_qadd(x, x), multiplier);
    return (trec_qadd(trec_qadd(h, h), pow) + (h >> 31)) >> r1;
}

/* trec_requantize_fast_pre for |x| < 2^29, where no step can saturate: 2h + 2^r in one add */
TREC_INLINE int32_t trec_requantize_fast_small(int32_t x, int32_t multiplier, int32_t pow, int32_t r1)
{
    const int32_t h = trec_smmulr(x + x, multiplier);
    return (pow + (int32_t)((uint32_t)h << 1) + (h >> 31)) >> r1;
}

TREC_INLINE int32_t trec_requantize_fast(int32_t x, int32_t multiplier, int32_t shift)
{
    return trec_requantize_fast_pre(x, multiplier, (int32_t)(1u << (uint32_t)(-shift)), 1 - shift);
}

/* clamp(v, -128, 127) (SSAT) */
TREC_INLINE int32_t trec_ssat8(int32_t v)
{
#if TREC_DSP_NATIVE
    return __ssat(v, 8);
#else
    return v < -128 ? -128 : (v > 127 ? 127 : v);
#endif
}

/* clamp(MultiplyByQuantizedMultiplier(x, multiplier, shift), lo, hi) for -255 <= lo <= hi <= 255
 * (an int8 activation range minus the output offset), bit for bit. */
TREC_INLINE int32_t trec_requantize_clamp(int32_t x, int32_t multiplier, int32_t shift, int32_t lo, int32_t hi)
{
    const int32_t v = TREC_LIKELY(trec_requantize_fast_ok(multiplier, shift))
                          ? trec_requantize_fast(x, multiplier, shift)
                          : trec_requantize(x, multiplier, shift);
    return v < lo ? lo : (v > hi ? hi : v);
}

/* requantize + output offset + activation clamp -> int8.
 * The clamp is applied before the offset is added (to [act_min - out_offset, act_max - out_offset]),
 * which gives the same result as TFLM's "add, then clamp" without its int32 overflow when the
 * requantized value is near INT32_MIN/MAX (golden.py computes in int64: this matches it). */
TREC_INLINE int8_t trec_requantize_s8(int32_t acc, int32_t multiplier, int32_t shift, int32_t out_offset,
                                      int32_t act_min, int32_t act_max)
{
    return (int8_t)(trec_requantize_clamp(acc, multiplier, shift, act_min - out_offset, act_max - out_offset) +
                    out_offset);
}

/* ------------------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------------- */
TREC_INLINE int32_t trec_align_up4(int32_t v) { return (v + 3) & ~3; }

/* Fill n int16 with zeros. */
static inline void trec_zero_s16(int16_t *dst, int32_t n)
{
    while (n >= 2) {
        trec_write_s16x2(dst, 0);
        dst += 2;
        n -= 2;
    }
    if (n) {
        *dst = 0;
    }
}

/* ------------------------------------------------------------------------------------------------
 * Argument checks shared by the kernels.
 * ---------------------------------------------------------------------------------------------- */
static inline int trec_dims_positive(const trec_dims *d) { return d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0; }

static inline int64_t trec_dims_count(const trec_dims *d) { return (int64_t)d->n * d->h * d->w * d->c; }

/* Can TFLite produce output size `out` from input size `in` with this kernel, stride, dilation and
 * top padding? (SAME: pad_top = total/2, bottom = total - pad_top; VALID: pad 0, unused rows < stride) */
static inline int trec_conv_geometry_ok(int32_t in, int32_t k, int32_t stride, int32_t dilation, int32_t pad,
                                        int32_t out)
{
    if (stride < 1 || dilation < 1 || pad < 0) {
        return 0;
    }
    const int64_t eff = (int64_t)(k - 1) * dilation + 1;
    const int64_t bottom = (int64_t)(out - 1) * stride + eff - in - pad;
    return pad < eff && bottom > -(int64_t)stride && bottom < eff;
}

#endif /* TREC_NN_SUPPORT_H */
