/*
 * trec-tflm: TREC kernel, cluster products (docs/OP_SPEC.md step 5).
 *
 * Per chunk of output channels: table[s][j] = round_half_away(sums of cluster s . filter slice of
 * channel j, members of s), OP_SPEC's Q[m][C][c]: one rounding per cluster and channel, the
 * centroid is never rounded on its own. The SIMD path's sums are raw int8; there the zero-point
 * term (offset x in-image members x filter sum) is added before the division.
 * With the DSP extension, 2 clusters x 4 channels per SMLAD block (trec_dot_2x4) when the sums fit
 * int16; the int64 path (`wide`) takes layers whose sums could overflow int32 products.
 */
#include "trec_convolve_phases.h"
#include "trec_geometry.h"
#include "trec_inner_loops.h"
#include "trec_nn_support.h"
#include "trec_rounding.h"
#include "trec_weight_layout.h"

#if TREC_DSP
/* t[j + i] = a_i for i < n (a partial quad), or += unless first */
TREC_INLINE void store_quad(int32_t *t, int32_t n, int first, int32_t a0, int32_t a1, int32_t a2, int32_t a3)
{
    if (n == 4 && first) {
        t[0] = a0;
        t[1] = a1;
        t[2] = a2;
        t[3] = a3;
        return;
    }
    const int32_t a[4] = {a0, a1, a2, a3};
    for (int32_t i = 0; i < n; i++) {
        t[i] = first ? a[i] : t[i] + a[i];
    }
}

/* 2 clusters (packed int16 rows r0, r1; r1 may be NULL) x channels [0, blk) of the quad-layout
 * slice ws: per word of the clusters, four weights words and 8 SMLAD (2 x 4 accumulators) */
TREC_NOINLINE static void products_quads(const int32_t *r0, const int32_t *r1, int32_t pairs, const int16_t *ws,
                                         int32_t blk, int first, int32_t *t0, int32_t *t1)
{
    const int32_t *wq = (const int32_t *)(const void *)ws;
    if (first && r1 != NULL && (blk & 3) == 0) {
        /* the common case, without partial quads or accumulation */
        for (int32_t j = 0; j < blk; j += 4, wq += (size_t)pairs * 4) {
            int32_t a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
            if (pairs == 8) { /* L = 15, 16 (3-channel first layers: L1, L4): unrolled whole */
                trec_dot_2x4((const int16_t *)(const void *)r0, (const int16_t *)(const void *)r1, wq, 8, a, b);
            } else {
                trec_dot_2x4((const int16_t *)(const void *)r0, (const int16_t *)(const void *)r1, wq, pairs, a, b);
            }
            trec_store2(t0 + j, a[0], a[1]);
            trec_store2(t0 + j + 2, a[2], a[3]);
            trec_store2(t1 + j, b[0], b[1]);
            trec_store2(t1 + j + 2, b[2], b[3]);
        }
        return;
    }
    for (int32_t j = 0; j < blk; j += 4, wq += (size_t)pairs * 4) {
        const int32_t n = TREC_MIN(4, blk - j);
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        if (r1 != NULL) {
            int32_t a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
            trec_dot_2x4((const int16_t *)(const void *)r0, (const int16_t *)(const void *)r1, wq, pairs, a, b);
            a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
            store_quad(t1 + j, n, first, b[0], b[1], b[2], b[3]);
        } else {
            const int32_t *w = wq;
            for (int32_t p = 0; p < pairs; p++, w += 4) {
                const int32_t x0 = r0[p];
                a0 = trec_smlad(x0, w[0], a0);
                a1 = trec_smlad(x0, w[1], a1);
                a2 = trec_smlad(x0, w[2], a2);
                a3 = trec_smlad(x0, w[3], a3);
            }
        }
        store_quad(t0 + j, n, first, a0, a1, a2, a3);
    }
}
#endif

/* table[s][j] (+)= sums[s][0..lb) . ws[j][0..lb) for the clusters of this sub-matrix (counts > 0).
 * DSP: a cluster whose sums all fit int16 is packed to int16 pairs at packed_buf[s * pairs] (which
 * may be sums itself: never ahead of unread data since pairs <= lb) and processed with the previous
 * such cluster, 2 clusters x 2 channels at a time: 4 loads and 4 SMLAD per 8 multiply-accumulates.
 * Other clusters take the scalar loop at once. */
TREC_NOINLINE void trec_accumulate_products(int32_t *sums, int32_t *packed_buf, int32_t slots, const int32_t *counts,
                                            int32_t lb, const int16_t *ws, int32_t blk, int first, int32_t *table)
{
    const int32_t lba = (lb + 1) & ~1;
#if TREC_DSP
    const int32_t pairs = lba >> 1;
    int32_t pending = -1;
    for (int32_t s = 0; s < slots; s++) {
        if (counts[s] == 0) {
            continue;
        }
        const int32_t *sv = sums + (size_t)s * lb;
        /* within int16: x + 2^15 below 2^16, tested for all x at once (no exit per element; sums
         * rarely leave int16) */
        uint32_t spread = 0;
        int32_t l = 0;
        for (; l + 1 < lb; l += 2) {
            int32_t x0, x1;
            trec_load2(sv + l, 0, x0, x1);
            spread |= ((uint32_t)x0 + 32768u) | ((uint32_t)x1 + 32768u);
        }
        if (l < lb) {
            spread |= (uint32_t)sv[l] + 32768u;
        }
        const int fits = spread >> 16 == 0;
        int32_t *t = table + (size_t)s * blk;
        if (!fits) {
            for (int32_t j = 0; j < blk; j++) {
                int32_t acc = first ? 0 : t[j];
                for (int32_t e = 0; e < lb; e++) {
                    acc += sv[e] * ws[trec_ws_index(pairs, j, e)];
                }
                t[j] = acc;
            }
            continue;
        }
        int32_t *row = packed_buf + (size_t)s * pairs;
        for (int32_t p = 0; p < lb >> 1; p++) {
            int32_t lo, hi;
            trec_load2(sv + 2 * p, 0, lo, hi);
            row[p] = trec_pkhbt(lo, hi);
        }
        if (lb & 1) {
            row[pairs - 1] = trec_pkhbt(sv[lb - 1], 0);
        }
        if (pending < 0) {
            pending = s;
        } else {
            products_quads(packed_buf + (size_t)pending * pairs, row, pairs, ws, blk, first,
                           table + (size_t)pending * blk, t);
            pending = -1;
        }
    }
    if (pending >= 0) {
        products_quads(packed_buf + (size_t)pending * pairs, NULL, pairs, ws, blk, first,
                       table + (size_t)pending * blk, NULL);
    }
#else
    (void)packed_buf;
    for (int32_t s = 0; s < slots; s++) {
        if (counts[s] == 0) {
            continue;
        }
        const int32_t *sv = sums + (size_t)s * lb;
        int32_t *t = table + (size_t)s * blk;
        for (int32_t j = 0; j < blk; j++) {
            int32_t acc = first ? 0 : t[j];
            for (int32_t l = 0; l < lb; l++) {
                acc += sv[l] * ws[trec_ws_index(lba / 2, j, l)];
            }
            t[j] = acc;
        }
    }
#endif
}

/* wide path (int64 dot products): whole sub-vectors only */
void trec_products_wide(const int32_t *sums, int32_t slots, const int32_t *counts, int32_t l, const int16_t *ws,
                        int32_t blk, int32_t *table)
{
    const int32_t la = (l + 1) & ~1;
    for (int32_t s = 0; s < slots; s++) {
        if (counts[s] == 0) {
            continue;
        }
        for (int32_t j = 0; j < blk; j++) {
            int64_t acc = 0;
            for (int32_t i = 0; i < l; i++) {
                acc += (int64_t)sums[(size_t)s * l + i] * ws[trec_ws_index(la / 2, j, i)];
            }
            table[(size_t)s * blk + j] = trec_div_round64(acc, counts[s]);
        }
    }
}

TREC_NOINLINE void trec_divide_table(int32_t *table, int32_t slots, const int32_t *counts, int32_t blk)
{
    for (int32_t s = 0; s < slots; s++) {
        const int32_t c = counts[s], half = c >> 1;
        int32_t *t = table + (size_t)s * blk;
        if (c <= 1) {
            continue;
        }
        /* two entries per step, read with LDRD and written with STRD */
        int32_t j = 0;
        for (; j + 1 < blk; j += 2) {
            int32_t t0, t1;
            trec_load2(t + j, 0, t0, t1);
            trec_store2(t + j, trec_div_round_half(t0, c, half), trec_div_round_half(t1, c, half));
        }
        if (j < blk) {
            t[j] = trec_div_round_half(t[j], c, half);
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * SIMD path (strip path, Cin a multiple of 4): the sums come in int16 lanes in SXTB16's
 * "unordered" order ((x0,x2),(x1,x3) per group of four), the filter slice in the same order
 * (trec_filter_slice_simd); the zero point is applied here, from the in-image members per strip
 * pixel and the filter's sum over that pixel's channels.
 * ---------------------------------------------------------------------------------------------- */
#if TREC_DSP
/* a_i += u . w[i], b_i += v . w[i] for the four words w[0..3] of a quad */
#define SMLAD_2X4(u, v, w)                                                                              \
    (a0 = trec_smlad((u), (w)[0], a0), b0 = trec_smlad((v), (w)[0], b0), a1 = trec_smlad((u), (w)[1], a1), \
     b1 = trec_smlad((v), (w)[1], b1), a2 = trec_smlad((u), (w)[2], a2), b2 = trec_smlad((v), (w)[2], b2), \
     a3 = trec_smlad((u), (w)[3], a3), b3 = trec_smlad((v), (w)[3], b3))

/* two clusters whose int16-lane sums are interleaved word by word (xy[2p], xy[2p + 1]: word p of
 * each; `words` even) x channels [0, blk), blk a multiple of 4: one LDRD reads both clusters' word,
 * which leaves GCC the registers for 8 accumulators and the loop without spilling. With `words` a
 * constant (L = 32, 64) the loop is unrolled whole: no loop end to keep, so the quad's weights
 * come two words per LDRD at constant offsets (L5: 31 -> 22 instructions per 16 SMLAD; the loads
 * declare the region the largest unrolled case reads) */
#define PAIR_UNROLLED_WORDS 32 /* L = 64 */
TREC_INLINE void products_pair_body(const int32_t *xy, int32_t words, const int16_t *ws, int32_t blk, int32_t *t0,
                                    int32_t *t1)
{
    const int32_t *wq = (const int32_t *)(const void *)ws;
    for (int32_t j = 0; j < blk; j += 4, wq += (size_t)words * 4) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
        if (words == PAIR_UNROLLED_WORDS / 2 || words == PAIR_UNROLLED_WORDS) {
#pragma GCC unroll 32
            for (int32_t p = 0; p < words; p++) {
                int32_t u, v, w0, w1, w2, w3;
                trec_load2_in(xy, 2 * PAIR_UNROLLED_WORDS, 2 * p, u, v);
                trec_load2_in(wq, 4 * PAIR_UNROLLED_WORDS, 4 * p, w0, w1);
                trec_load2_in(wq, 4 * PAIR_UNROLLED_WORDS, 4 * p + 2, w2, w3);
                a0 = trec_smlad(u, w0, a0);
                b0 = trec_smlad(v, w0, b0);
                a1 = trec_smlad(u, w1, a1);
                b1 = trec_smlad(v, w1, b1);
                a2 = trec_smlad(u, w2, a2);
                b2 = trec_smlad(v, w2, b2);
                a3 = trec_smlad(u, w3, a3);
                b3 = trec_smlad(v, w3, b3);
            }
        } else {
            const int32_t *x = xy, *w = wq, *const end = xy + 2 * words;
            do {
                const int32_t u0 = x[0], v0 = x[1], u1 = x[2], v1 = x[3];
                SMLAD_2X4(u0, v0, w);
                SMLAD_2X4(u1, v1, w + 4);
                x += 4;
                w += 8;
            } while (x != end);
        }
        trec_store2(t0 + j, a0, a1);
        trec_store2(t0 + j + 2, a2, a3);
        trec_store2(t1 + j, b0, b1);
        trec_store2(t1 + j + 2, b2, b3);
    }
}

TREC_NOINLINE static void products_pair(const int32_t *xy, int32_t words, const int16_t *ws, int32_t blk, int32_t *t0,
                                        int32_t *t1)
{
    if (words == PAIR_UNROLLED_WORDS) {
        products_pair_body(xy, PAIR_UNROLLED_WORDS, ws, blk, t0, t1);
    } else if (words == PAIR_UNROLLED_WORDS / 2) {
        products_pair_body(xy, PAIR_UNROLLED_WORDS / 2, ws, blk, t0, t1);
    } else {
        products_pair_body(xy, words, ws, blk, t0, t1);
    }
}
#undef SMLAD_2X4
#undef PAIR_UNROLLED_WORDS
#endif

#if TREC_DSP
/* t[0..4) = the zero-point term z x wsum[i] added to a[i], then divided by the c members */
TREC_INLINE void finish_quad(int32_t *t, const int32_t a[4], int32_t z, int32_t c, const int32_t *wsum)
{
    int32_t w0, w1, w2, w3;
    trec_load2(wsum, 0, w0, w1);
    trec_load2(wsum, 2, w2, w3);
    int32_t e0 = a[0] + z * w0, e1 = a[1] + z * w1, e2 = a[2] + z * w2, e3 = a[3] + z * w3;
    if (c > 1) {
        const int32_t half = c >> 1;
        e0 = trec_div_round_half(e0, c, half);
        e1 = trec_div_round_half(e1, c, half);
        e2 = trec_div_round_half(e2, c, half);
        e3 = trec_div_round_half(e3, c, half);
    }
    trec_store2(t, e0, e1);
    trec_store2(t + 2, e2, e3);
}

/* finish_quad for the n < 4 channels of a chunk's last, partial quad (chunks of 1-3 channels, where
 * little scratch leaves no room for a quad, and the last quad of chunks that are not whole quads) */
static void finish_part(int32_t *t, const int32_t a[4], int32_t z, int32_t c, const int32_t *wsum, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        t[i] = trec_div_round32(a[i] + z * wsum[i], c);
    }
}

/* finish_quad, or finish_part past the chunk's last whole quad */
TREC_INLINE void finish(int32_t *t, const int32_t a[4], int32_t z, int32_t c, const int32_t *wsum, int32_t left)
{
    if (left >= 4) {
        finish_quad(t, a, z, c, wsum);
    } else {
        finish_part(t, a, z, c, wsum, left);
    }
}

/* Strips of one pixel, int16-lane sums only: the clusters list[0..n) (each with members) two at a
 * time, finished in registers (finish_quad) instead of by a second pass over the table. One call
 * per sub-matrix: per pair of clusters the call and the pass over the slots cost as much as the
 * products themselves at four channels. `lanes`, a constant in every expansion: the channels of a
 * quad computed, 4 but for chunks of 1-3 channels, whose padding channels are skipped (the tests
 * on `lanes` fold away at compile time). */
TREC_INLINE void products_listed_body(const int32_t *list, int32_t n, const int32_t *sums16, int32_t words,
                                      const int32_t *counts, const int16_t *ws, const int32_t *wsum, int32_t blk,
                                      int32_t lanes, int32_t *table)
{
    for (int32_t i = 0; i + 1 < n; i += 2) {
        const int32_t s0 = list[i], s1 = list[i + 1];
        const int16_t *r0 = (const int16_t *)(const void *)(sums16 + (size_t)s0 * words);
        const int16_t *r1 = (const int16_t *)(const void *)(sums16 + (size_t)s1 * words);
        int32_t *t0 = table + (size_t)s0 * blk, *t1 = table + (size_t)s1 * blk;
        const int32_t *wq = (const int32_t *)(const void *)ws;
        for (int32_t j = 0; j < blk; j += 4, wq += (size_t)words * 4) {
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
            const int32_t *x = (const int32_t *)(const void *)r0, *y = (const int32_t *)(const void *)r1;
            if (words == 8) {
                /* L = 16 unrolled whole: without a loop end or a second weight register the
                 * accumulators stay in registers, one word load per weight */
#pragma GCC unroll 8
                for (int32_t q = 0; q < 8; q++) {
                    const int32_t u = x[q], v = y[q];
                    const int32_t *w = wq + 4 * q;
                    a0 = trec_smlad(u, w[0], a0);
                    b0 = trec_smlad(v, w[0], b0);
                    if (lanes > 1) {
                        a1 = trec_smlad(u, w[1], a1);
                        b1 = trec_smlad(v, w[1], b1);
                    }
                    if (lanes > 2) {
                        a2 = trec_smlad(u, w[2], a2);
                        b2 = trec_smlad(v, w[2], b2);
                    }
                    if (lanes > 3) {
                        a3 = trec_smlad(u, w[3], a3);
                        b3 = trec_smlad(v, w[3], b3);
                    }
                }
            } else {
                const int32_t *w = wq, *const end = x + words;
                do {
                    const int32_t u = *x++, v = *y++;
                    int32_t w0, w1, w2, w3;
                    trec_load2(w, 0, w0, w1);
                    a0 = trec_smlad(u, w0, a0);
                    b0 = trec_smlad(v, w0, b0);
                    if (lanes > 1) {
                        a1 = trec_smlad(u, w1, a1);
                        b1 = trec_smlad(v, w1, b1);
                    }
                    trec_load2(w, 2, w2, w3);
                    if (lanes > 2) {
                        a2 = trec_smlad(u, w2, a2);
                        b2 = trec_smlad(v, w2, b2);
                    }
                    if (lanes > 3) {
                        a3 = trec_smlad(u, w3, a3);
                        b3 = trec_smlad(v, w3, b3);
                    }
                    w += 4;
                } while (x != end);
            }
            const int32_t a[4] = {a0, a1, a2, a3}, b[4] = {b0, b1, b2, b3};
            if ((blk & 3) == 0) { /* spelled out: through finish() the M4 build of L2 took 34K more */
                finish_quad(t0 + j, a, counts[2 * s0 + 1], counts[2 * s0], wsum + j);
                finish_quad(t1 + j, b, counts[2 * s1 + 1], counts[2 * s1], wsum + j);
            } else {
                finish(t0 + j, a, counts[2 * s0 + 1], counts[2 * s0], wsum + j, blk - j);
                finish(t1 + j, b, counts[2 * s1 + 1], counts[2 * s1], wsum + j, blk - j);
            }
        }
    }
    if (n & 1) { /* the last cluster alone: four SMLAD per word */
        const int32_t s0 = list[n - 1];
        int32_t *t0 = table + (size_t)s0 * blk;
        const int32_t *wq = (const int32_t *)(const void *)ws;
        for (int32_t j = 0; j < blk; j += 4, wq += (size_t)words * 4) {
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            const int32_t *x = sums16 + (size_t)s0 * words, *w = wq, *const end = x + words;
            do {
                const int32_t u = *x++;
                int32_t w0, w1, w2, w3;
                trec_load2(w, 0, w0, w1);
                trec_load2(w, 2, w2, w3);
                a0 = trec_smlad(u, w0, a0);
                a1 = trec_smlad(u, w1, a1);
                a2 = trec_smlad(u, w2, a2);
                a3 = trec_smlad(u, w3, a3);
                w += 4;
            } while (x != end);
            const int32_t a[4] = {a0, a1, a2, a3};
            finish(t0 + j, a, counts[2 * s0 + 1], counts[2 * s0], wsum + j, blk - j);
        }
    }
}

/* products_listed_body for chunks of 1-3 channels (little scratch), apart: expanded beside the
 * quad cases, they cost those 9% more instructions (GCC allocates the larger function's
 * registers worse) */
TREC_NOINLINE static void products_listed_few(const int32_t *list, int32_t n, const int32_t *sums16, int32_t words,
                                              const int32_t *counts, const int16_t *ws, const int32_t *wsum,
                                              int32_t blk, int32_t *table)
{
    if (blk == 3) {
        products_listed_body(list, n, sums16, words, counts, ws, wsum, 3, 3, table);
    } else if (blk == 2) {
        products_listed_body(list, n, sums16, words, counts, ws, wsum, 2, 2, table);
    } else {
        products_listed_body(list, n, sums16, words, counts, ws, wsum, 1, 1, table);
    }
}

/* The clusters of the sub-matrix with members listed in list[], then their products; returns how
 * many. A chunk of one quad (four channels) is the common case of layers with little scratch; a
 * chunk that is not whole quads computes its last quad whole (the filter slice pads it with zero
 * channels) and keeps the channels it has. */
TREC_NOINLINE static int32_t products_listed(int32_t slots, const int32_t *counts, int32_t *list, const int32_t *sums16,
                                             int32_t words, const int16_t *ws, const int32_t *wsum, int32_t blk,
                                             int32_t *table)
{
    int32_t n = 0;
    for (int32_t s = 0; s < slots; s++) {
        if (counts[2 * s] != 0) {
            list[n++] = s;
        }
    }
    if (blk == 4 && words == 8) {
        products_listed_body(list, n, sums16, 8, counts, ws, wsum, 4, 4, table);
    } else if (blk == 4) {
        products_listed_body(list, n, sums16, words, counts, ws, wsum, 4, 4, table);
    } else if (blk < 4) {
        products_listed_few(list, n, sums16, words, counts, ws, wsum, blk, table);
    } else {
        products_listed_body(list, n, sums16, words, counts, ws, wsum, blk, 4, table);
    }
    return n;
}
#endif

/* table[s] for every cluster s of the sub-matrix (members from counts[s * (j + 1)]): int16-lane
 * sums two clusters at a time (products_listed for one-pixel strips; else products_pair from an
 * interleaved copy when the plan gives `pair`, or products_quads), the n_big clusters with int32
 * sums (big[s] >= 0) one at a time; then the zero-point term and the division. Returns the
 * number of clusters with members, or -1 where the caller counts them. */
int32_t trec_products_simd(const trec_geom *g, int32_t slots, const int32_t *counts, int32_t n_big, int32_t *big,
                           int32_t *sums16, int32_t *sums32, const int16_t *ws, const int32_t *wsum, int32_t blk,
                           int32_t *pair, int32_t *table)
{
#if TREC_DSP
    const int32_t cps = g->j + 1, words = g->l / 2;
    /* the plan gives the pair buffer where the interleaved copy pays off (two quads or more); a
     * last chunk of channels that is not whole quads takes the plain loop */
    const int interleave = pair != NULL && (blk & 3) == 0;
    if (!interleave && n_big == 0 && g->j == 1) {
        /* big[] is free without big clusters: it takes the list of clusters with members */
        return products_listed(slots, counts, big, sums16, words, ws, wsum, blk, table);
    }
    int32_t pending = -1;
    for (int32_t s = 0; s < slots; s++) {
        if (counts[(size_t)s * cps] == 0) {
            continue;
        }
        int32_t *t = table + (size_t)s * blk;
        if (n_big > 0 && big[s] >= 0) {
            /* int32 sums: natural order against the lane-ordered slice */
            const int32_t *sv = sums32 + (size_t)big[s] * g->l;
            for (int32_t jj = 0; jj < blk; jj++) {
                int32_t acc = 0;
                for (int32_t e = 0; e < g->l; e++) {
                    acc += sv[e] * ws[trec_ws_index(words, jj, (e & ~3) + TREC_UNORDERED_SLOT(e & 3))];
                }
                t[jj] = acc;
            }
            continue;
        }
        if (pending < 0) {
            pending = s;
        } else if (interleave) {
            const int32_t *r0 = sums16 + (size_t)pending * words, *r1 = sums16 + (size_t)s * words;
            for (int32_t p = 0; p < words; p++) {
                trec_store2(pair + 2 * p, r0[p], r1[p]);
            }
            products_pair(pair, words, ws, blk, table + (size_t)pending * blk, t);
            pending = -1;
        } else {
            products_quads(sums16 + (size_t)pending * words, sums16 + (size_t)s * words, words, ws, blk, 1,
                           table + (size_t)pending * blk, t);
            pending = -1;
        }
    }
    if (pending >= 0) {
        products_quads(sums16 + (size_t)pending * words, NULL, words, ws, blk, 1, table + (size_t)pending * blk, NULL);
    }
    /* zero point: + sum_t (in-image members of pixel t) * offset * (filter sum over pixel t), then
     * the rounding division by the members, in one pass over the table */
    for (int32_t s = 0; s < slots; s++) {
        const int32_t c = counts[(size_t)s * cps];
        if (c == 0) {
            continue;
        }
        const int32_t *cnt = counts + (size_t)s * cps + 1;
        int32_t *t = table + (size_t)s * blk;
        if (g->j == 1) {
            const int32_t c0 = cnt[0], half = c >> 1;
            int32_t jj = 0;
            if (c == 1) {
                for (; jj < blk; jj++) {
                    t[jj] += c0 * wsum[jj];
                }
                continue;
            }
            /* two channels per step: table and filter sums read with LDRD, written with STRD */
            for (; jj + 1 < blk; jj += 2) {
                int32_t t0, t1, w0, w1;
                trec_load2(t + jj, 0, t0, t1);
                trec_load2(wsum + jj, 0, w0, w1);
                t0 += c0 * w0;
                t1 += c0 * w1;
                trec_store2(t + jj, trec_div_round_half(t0, c, half), trec_div_round_half(t1, c, half));
            }
            if (jj < blk) {
                t[jj] = trec_div_round32(t[jj] + c0 * wsum[jj], c);
            }
            continue;
        }
        for (int32_t jj = 0; jj < blk; jj++) {
            int32_t corr = 0;
            for (int32_t p = 0; p < g->j; p++) {
                corr += cnt[p] * wsum[(size_t)jj * g->j + p];
            }
            t[jj] = trec_div_round32(t[jj] + corr, c);
        }
    }
    return -1;
#else
    (void)g; (void)slots; (void)counts; (void)n_big; (void)big; (void)sums16; (void)sums32; (void)ws; (void)wsum;
    (void)blk; (void)pair; (void)table;
    return -1;
#endif
}
