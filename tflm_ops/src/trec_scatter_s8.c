/*
 * trec-tflm: TREC kernel, scatter and requantization (docs/OP_SPEC.md step 6).
 *
 * acc[n][c] = sum_m table_m[id(n, m)][c] (the first table carries the bias), requantized into the
 * int8 output. Plan A adds each sub-matrix's table into an N x chunk int32 accumulator (A2: two
 * tables per pass over it), the last one straight into the requantization; plan T keeps every
 * sub-matrix's table and sums a row's entries in registers, then requantizes them there.
 * Requantization is TFLite's, bit for bit, in five instructions where the multiplier and the
 * accumulators' range allow (trec_requantize_fast_small).
 */
#include "trec_convolve_phases.h"
#include "trec_geometry.h"
#include "trec_ids.h"
#include "trec_inner_loops.h"
#include "trec_nn_support.h"
#include "trec_plan.h"

/* The scatters walk the rows in output order: a row's id for a sub-matrix sits `step` after
 * the previous row's within an output row, `row_step` after the output row's first one between
 * them (trec_row_base). */
#define ROW_STEPS(g, step, row_step)                                                                   \
    const size_t step = (g)->strip ? (size_t)(g)->stride_w : (size_t)(g)->m;                           \
    const size_t row_step = (g)->strip ? (size_t)(g)->stride_h * (g)->pw : (size_t)(g)->out_w * (g)->m

/* channels [c0, c0 + blk) all take trec_requantize_fast_small: fast_ok, and no accumulator can
 * reach 2^29 (a sub-matrix's table entry is a rounded mean of L products of (x - zp) in
 * [-255, 255] and a weight in [-128, 127], so the M entries of a row sum to at most kp * 32640
 * in magnitude; then the bias) */
int trec_fast_requant_block(const trec_geom *g, const trec_weights *w, int32_t c0, int32_t blk)
{
    const int64_t limit = ((int64_t)1 << 29) - (int64_t)g->kp * 255 * 128;
    for (int32_t j = c0; j < c0 + blk; j++) {
        const int64_t b = w->bias ? w->bias[j] : 0;
        if (!trec_requantize_fast_ok(w->mult[j], w->shift[j]) || b >= limit || -b >= limit) {
            return 0;
        }
    }
    return 1;
}

/* trec_requantize_fast_small from channel j's triple in rq (see trec_convolve_s8): the multiplier
 * and the rounding term side by side, which GCC reads with one LDRD (plain loads: the LDRD macro
 * with a channel index that is not constant costs an address register), then the shift. One
 * pointer for all three keeps the unrolled scatter rows within the registers. */
TREC_INLINE int32_t requantize_rq(int32_t a, const int32_t *rq, int32_t j)
{
    return trec_requantize_fast_small(a, rq[3 * j], rq[3 * j + 1], rq[3 * j + 2]);
}

/* v clamped to [lo, hi], v evaluated once */
TREC_INLINE int32_t clamp_to(int32_t v, int32_t lo, int32_t hi) { return TREC_MIN(TREC_MAX(v, lo), hi); }

/* x0..x3 += the four table entries at tc + off, two LDRD by LOAD2: trec_load2 for a constant
 * `off`, trec_load2_at (ADD_QUAD_AT) for one that is constant only once the loop is unrolled */
#define ADD_QUAD_BY(LOAD2, tc, off, x0, x1, x2, x3)                                                     \
    do {                                                                                               \
        int32_t u0_, u1_, u2_, u3_;                                                                    \
        LOAD2((tc), (off), u0_, u1_);                                                                  \
        LOAD2((tc), (off) + 2, u2_, u3_);                                                              \
        x0 += u0_;                                                                                     \
        x1 += u1_;                                                                                     \
        x2 += u2_;                                                                                     \
        x3 += u3_;                                                                                     \
    } while (0)
#define ADD_QUAD(tc, off, x0, x1, x2, x3) ADD_QUAD_BY(trec_load2, tc, off, x0, x1, x2, x3)
#define ADD_QUAD_AT(tc, off, x0, x1, x2, x3) ADD_QUAD_BY(trec_load2_at, tc, off, x0, x1, x2, x3)

/* outputs j .. j + 3 of the row from the sums x0..x3 */
#define STORE_QUAD(REQUANT, j, x0, x1, x2, x3)                                                          \
    do {                                                                                               \
        out[(j)] = (int8_t)REQUANT(x0, (j));                                                           \
        out[(j) + 1] = (int8_t)REQUANT(x1, (j) + 1);                                                   \
        out[(j) + 2] = (int8_t)REQUANT(x2, (j) + 2);                                                   \
        out[(j) + 3] = (int8_t)REQUANT(x3, (j) + 3);                                                   \
    } while (0)

/* plan T: per row, the M table rows it uses are found once (rowp[m]: sub-matrix m's row, at the
 * channel block being summed); then every block of 8 channels sums them in registers and is
 * requantized from there. The first sub-matrix's entries (which carry the bias) start the sums;
 * each other sub-matrix costs one pointer load, four LDRD, eight adds and the pointer stepped past
 * the block (SUM8_STEPPED: the pointer, not a channel index, keeps the loop within the registers).
 * Where the block loop is unrolled whole (SUM8_AT, chunks of 64 channels) the block's offset is a
 * constant in the LDRD instead, and no pointer is written back: 15 instructions per sub-matrix and
 * block instead of 17. A remaining quad takes the same steps with four sums, single channels the
 * plain loop. REQUANT: FULL_RQ and FAST_RQ where every channel takes trec_requantize_fast_small
 * (no per-output test). */
#define SUM8_STEPPED(j0, a0, a1, a2, a3, a4, a5, a6, a7)                                               \
    do {                                                                                               \
        trec_load2(rowp[0], 0, a0, a1);                                                                \
        trec_load2(rowp[0], 2, a2, a3);                                                                \
        trec_load2(rowp[0], 4, a4, a5);                                                                \
        trec_load2(rowp[0], 6, a6, a7);                                                                \
        rowp[0] += 8;                                                                                  \
        for (int32_t m = 1; m < m_count; m++) {                                                        \
            const int32_t *tc = rowp[m];                                                               \
            rowp[m] = tc + 8;                                                                          \
            ADD_QUAD(tc, 0, a0, a1, a2, a3);                                                           \
            ADD_QUAD(tc, 4, a4, a5, a6, a7);                                                           \
        }                                                                                              \
    } while (0)
/* rowp[] is left where it was: only for chunks of whole blocks (no quad or single channel after) */
#define SUM8_AT(j0, a0, a1, a2, a3, a4, a5, a6, a7)                                                    \
    do {                                                                                               \
        trec_load2_at(rowp[0], (j0), a0, a1);                                                          \
        trec_load2_at(rowp[0], (j0) + 2, a2, a3);                                                      \
        trec_load2_at(rowp[0], (j0) + 4, a4, a5);                                                      \
        trec_load2_at(rowp[0], (j0) + 6, a6, a7);                                                      \
        for (const int32_t **rp = rowp + 1; rp < rowp + m_count; rp++) {                               \
            ADD_QUAD_AT(*rp, (j0), a0, a1, a2, a3);                                                    \
            ADD_QUAD_AT(*rp, (j0) + 4, a4, a5, a6, a7);                                                \
        }                                                                                              \
    } while (0)
#define TABLES_ROWS(REQUANT, SUM8, UNROLL_BLOCKS, ID_SIZE)                                         \
    ROW_STEPS(g, step, row_step);                                                                  \
    size_t base0 = 0;                                                                              \
    for (int32_t oy = 0; oy < g->out_h; oy++, base0 += row_step) {                                 \
        size_t base = base0;                                                                       \
        for (int32_t ox = 0; ox < g->out_w; ox++, out += cout, base += step) {                     \
            for (int32_t m = 0; m < m_count; m++) {                                                \
                rowp[m] = tables + toff[m] + trec_read_id(ids, (ID_SIZE), base + id_off[m]) * blk; \
            }                                                                                      \
            int32_t j0 = 0;                                                                        \
            UNROLL_BLOCKS                                                                          \
            for (; j0 + 7 < blk; j0 += 8) {                                                        \
                int32_t a0, a1, a2, a3, a4, a5, a6, a7;                                            \
                SUM8(j0, a0, a1, a2, a3, a4, a5, a6, a7);                                          \
                STORE_QUAD(REQUANT, j0, a0, a1, a2, a3);                                           \
                STORE_QUAD(REQUANT, j0 + 4, a4, a5, a6, a7);                                       \
            }                                                                                      \
            for (; j0 + 3 < blk; j0 += 4) {                                                        \
                int32_t a0, a1, a2, a3;                                                            \
                trec_load2(rowp[0], 0, a0, a1);                                                    \
                trec_load2(rowp[0], 2, a2, a3);                                                    \
                rowp[0] += 4;                                                                      \
                int32_t m = 1;                                                                     \
                for (; m + 1 < m_count; m += 2) {                                                  \
                    const int32_t *tc = rowp[m], *td = rowp[m + 1];                                \
                    rowp[m] = tc + 4;                                                              \
                    rowp[m + 1] = td + 4;                                                          \
                    ADD_QUAD(tc, 0, a0, a1, a2, a3);                                               \
                    ADD_QUAD(td, 0, a0, a1, a2, a3);                                               \
                }                                                                                  \
                if (m < m_count) {                                                                 \
                    ADD_QUAD(rowp[m], 0, a0, a1, a2, a3);                                          \
                    rowp[m] += 4;                                                                  \
                }                                                                                  \
                STORE_QUAD(REQUANT, j0, a0, a1, a2, a3);                                           \
            }                                                                                      \
            for (; j0 < blk; j0++) {                                                               \
                int32_t a0 = 0;                                                                    \
                for (int32_t m = 0; m < m_count; m++) {                                            \
                    a0 += rowp[m][0];                                                              \
                    rowp[m]++;                                                                     \
                }                                                                                  \
                out[j0] = (int8_t)REQUANT(a0, j0);                                                 \
            }                                                                                      \
        }                                                                                          \
    }
#define SCATTER_TABLES_BODY(REQUANT) TABLES_ROWS(REQUANT, SUM8_STEPPED, , id_size)
#define SCATTER_TABLES64_BODY(REQUANT) TABLES_ROWS(REQUANT, SUM8_AT, _Pragma("GCC unroll 8"), 1)

/* The locals the scatter bodies use, then BODY with the requantization that fits channels
 * [c0, c0 + blk). Fast path: the output offset comes with the rounding term in rq (see
 * trec_convolve_s8), SSAT does the int8 clamp, and a narrower activation range is a max and a min
 * instead. REQUANT(a, j) is the int8 output. */
#define SCATTER_REQUANTIZED(BODY, ANY)                                             \
    const int32_t m_count = g->m, id_size = g->id_size, cout = g->cout;            \
    const int32_t offset = g->output_offset, amin = g->act_min, amax = g->act_max; \
    const int32_t lo = amin - offset, hi = amax - offset;                          \
    const int32_t *TREC_RESTRICT mult = w->mult + c0;                              \
    const int32_t *TREC_RESTRICT shift = w->shift + c0;                            \
    int8_t *out = output + c0;                                                     \
    (void)id_size; /* the T16 body reads one-byte ids only */                      \
    if (ANY && !trec_fast_requant_block(g, w, c0, blk)) {                          \
        BODY(ANY_RQ)                                                               \
    } else if (amin == -128 && amax == 127) {                                      \
        BODY(FULL_RQ)                                                              \
    } else {                                                                       \
        BODY(FAST_RQ)                                                              \
    }
#define FULL_RQ(a, j) trec_ssat8(requantize_rq((a), rq, (j)))
#define FAST_RQ(a, j) clamp_to(requantize_rq((a), rq, (j)), amin, amax)
#define ANY_RQ(a, j) (trec_requantize_clamp((a), mult[j], shift[j], lo, hi) + offset)

/* chunks of 64 channels (a 64-channel layer in one pass, the common case) where every channel takes
 * the short requantization: the block loop unrolled whole, 6.7 KB of code for L4 -5%, L6 -6% */
TREC_NOINLINE static void scatter_tables64(const trec_geom *g, const uint8_t *ids, const int32_t *id_off,
                                           const int32_t *tables, const int32_t *toff, int32_t c0,
                                           const trec_weights *w, int8_t *output, const int32_t **rowp,
                                           const int32_t *rq)
{
    const int32_t blk = 64;
    SCATTER_REQUANTIZED(SCATTER_TABLES64_BODY, 0)
}

TREC_NOINLINE void trec_scatter_tables(const trec_geom *g, const uint8_t *ids, const int32_t *id_off,
                                       const int32_t *tables, const int32_t *toff, int32_t c0, int32_t blk,
                                       const trec_weights *w, int8_t *output, const int32_t **rowp, const int32_t *rq)
{
    if (blk == 64 && g->id_size == 1 && trec_fast_requant_block(g, w, c0, blk)) {
        scatter_tables64(g, ids, id_off, tables, toff, c0, w, output, rowp, rq);
        return;
    }
    SCATTER_REQUANTIZED(SCATTER_TABLES_BODY, 1)
}

/* x0..x3 += the four uint16 entries in the two words at tc + off (one LDRD; UXTAH and ADD LSR) */
#define ADD_QUAD16(tc, off, x0, x1, x2, x3)                                                             \
    do {                                                                                               \
        int32_t u0_, u1_;                                                                              \
        trec_load2((tc), (off), u0_, u1_);                                                             \
        x0 += (int32_t)((uint32_t)u0_ & 0xFFFFu);                                                      \
        x1 += (int32_t)((uint32_t)u0_ >> 16);                                                          \
        x2 += (int32_t)((uint32_t)u1_ & 0xFFFFu);                                                      \
        x3 += (int32_t)((uint32_t)u1_ >> 16);                                                          \
    } while (0)

/* plan T16: as plan T, but the rows of sub-matrices 1.. hold uint16 entries, two per word (their
 * offsets are in the first table's entries): each costs one pointer load, two LDRD, eight adds
 * and the pointer stepped. rowp[m] points at words; the first table is table0. */
#define SCATTER_TABLES16_BODY(REQUANT)                                                                               \
    for (int32_t oy = 0; oy < g->out_h; oy++) {                                                                      \
        for (int32_t ox = 0; ox < g->out_w; ox++, out += cout) {                                                     \
            const size_t base = trec_row_base(g, oy, ox);                                                            \
            const int32_t *r0 = table0 + trec_read_id(ids, id_size, base + id_off[0]) * blk;                         \
            for (int32_t m = 1; m < m_count; m++) {                                                                  \
                rowp[m] = (const int32_t *)(const void *)(tables + toff[m] +                                         \
                                                          trec_read_id(ids, id_size, base + id_off[m]) * row_bytes); \
            }                                                                                                        \
            int32_t j0 = 0;                                                                                          \
            for (; j0 + 7 < blk; j0 += 8, r0 += 8) {                                                                 \
                int32_t a0, a1, a2, a3, a4, a5, a6, a7;                                                              \
                trec_load2(r0, 0, a0, a1);                                                                           \
                trec_load2(r0, 2, a2, a3);                                                                           \
                trec_load2(r0, 4, a4, a5);                                                                           \
                trec_load2(r0, 6, a6, a7);                                                                           \
                for (int32_t m = 1; m < m_count; m++) {                                                              \
                    const int32_t *tc = rowp[m];                                                                     \
                    rowp[m] = tc + 4;                                                                                \
                    ADD_QUAD16(tc, 0, a0, a1, a2, a3);                                                               \
                    ADD_QUAD16(tc, 2, a4, a5, a6, a7);                                                               \
                }                                                                                                    \
                STORE_QUAD(REQUANT, j0, a0, a1, a2, a3);                                                             \
                STORE_QUAD(REQUANT, j0 + 4, a4, a5, a6, a7);                                                         \
            }                                                                                                        \
            for (; j0 + 3 < blk; j0 += 4, r0 += 4) {                                                                 \
                int32_t a0, a1, a2, a3;                                                                              \
                trec_load2(r0, 0, a0, a1);                                                                           \
                trec_load2(r0, 2, a2, a3);                                                                           \
                for (int32_t m = 1; m < m_count; m++) {                                                              \
                    ADD_QUAD16(rowp[m], 0, a0, a1, a2, a3);                                                          \
                    rowp[m] += 2;                                                                                    \
                }                                                                                                    \
                STORE_QUAD(REQUANT, j0, a0, a1, a2, a3);                                                             \
            }                                                                                                        \
            for (int32_t j = j0; j < blk; j++) {                                                                     \
                int32_t a0 = r0[j - j0];                                                                             \
                for (int32_t m = 1; m < m_count; m++) {                                                              \
                    const uint32_t word = (uint32_t)rowp[m][(j - j0) >> 1];                                          \
                    a0 += (int32_t)(((j - j0) & 1) ? word >> 16 : word & 0xFFFFu);                                   \
                }                                                                                                    \
                out[j] = (int8_t)REQUANT(a0, j);                                                                     \
            }                                                                                                        \
        }                                                                                                            \
    }

TREC_NOINLINE void trec_scatter_tables16(const trec_geom *g, const uint8_t *ids, const int32_t *id_off,
                                         const int32_t *table0, const uint8_t *tables, const int32_t *toff, int32_t c0,
                                         int32_t blk, const trec_weights *w, int8_t *output, const int32_t **rowp,
                                         const int32_t *rq)
{
    const int32_t row_bytes = trec_t16_row(blk) * 2;
    /* the caller takes T16 only where every channel takes the fast requantization */
    SCATTER_REQUANTIZED(SCATTER_TABLES16_BODY, 0)
}
#undef SCATTER_REQUANTIZED
#undef FULL_RQ
#undef FAST_RQ
#undef ANY_RQ
#undef SCATTER_TABLES16_BODY
#undef ADD_QUAD16
#undef SCATTER_TABLES_BODY
#undef SCATTER_TABLES64_BODY
#undef TABLES_ROWS
#undef SUM8_STEPPED
#undef SUM8_AT
#undef STORE_QUAD
#undef ADD_QUAD_AT
#undef ADD_QUAD
#undef ADD_QUAD_BY

/* The plan-A bodies are inlined with a constant chunk (4, 8 or 16 channels, one byte per id: the
 * common cases, where a chunk is one, two or four quads; and 1-3, what tight scratch leaves: L2 at
 * H = 8 in 8 KB) so that the loop over the channels unrolls and the row loop keeps its pointers
 * in registers: at 4 channels the general loop spends ~45 instructions per row and sub-matrix,
 * twice what the unrolled one needs. BODY(id_size, blk) is the call, expanded once per constant
 * case and once for the rest. */
#define UNROLLED_CHUNKS(BODY)                                                                          \
    do {                                                                                               \
        if (g->id_size == 1 && blk == 4) {                                                             \
            BODY(1, 4);                                                                                \
        } else if (g->id_size == 1 && blk < 4) {                                                       \
            if (blk == 3) {                                                                            \
                BODY(1, 3);                                                                            \
            } else if (blk == 2) {                                                                     \
                BODY(1, 2);                                                                            \
            } else {                                                                                   \
                BODY(1, 1);                                                                            \
            }                                                                                          \
        } else if (g->id_size == 1 && blk == 8) {                                                      \
            BODY(1, 8);                                                                                \
        } else if (g->id_size == 1 && blk == 16) {                                                     \
            BODY(1, 16);                                                                               \
        } else {                                                                                       \
            BODY(g->id_size, blk);                                                                     \
        }                                                                                              \
    } while (0)

TREC_INLINE void copy_row(int32_t *acc, const int32_t *t, int32_t n)
{
    int32_t j = 0;
    for (; j + 1 < n; j += 2) {
        int32_t t0, t1;
        trec_load2_at(t, j, t0, t1);
        trec_store2_at(acc, j, t0, t1);
    }
    if (j < n) {
        acc[j] = t[j];
    }
}

TREC_INLINE void scatter_add_body(const trec_geom *g, const uint8_t *ids, int32_t id_size, size_t idx0,
                                  const int32_t *table, int32_t blk, int first, int32_t *acc)
{
    ROW_STEPS(g, step, row_step);
    const int32_t out_w = g->out_w;
    int32_t *TREC_RESTRICT a = acc;
    for (int32_t oy = 0; oy < g->out_h; oy++, idx0 += row_step) {
        size_t idx = idx0;
        for (int32_t ox = 0; ox < out_w; ox++, a += blk, idx += step) {
            const int32_t *TREC_RESTRICT tc = table + (size_t)trec_read_id(ids, id_size, idx) * blk;
            if (first) {
                copy_row(a, tc, blk);
            } else {
                trec_add_row(a, tc, blk);
            }
        }
    }
}

/* plan A, one sub-matrix: acc[n][0..blk) (+)= table[id(n, m)][0..blk); the first sub-matrix's
 * table (which carries the bias) sets acc */
TREC_NOINLINE void trec_scatter_add(const trec_geom *g, const uint8_t *ids, int32_t id_off, const int32_t *table,
                                    int32_t blk, int first, int32_t *acc)
{
    const size_t idx0 = (size_t)id_off;
#define ADD(ID_SIZE, BLK)                                                                              \
    (first ? scatter_add_body(g, ids, ID_SIZE, idx0, table, BLK, 1, acc)                               \
           : scatter_add_body(g, ids, ID_SIZE, idx0, table, BLK, 0, acc))
    UNROLLED_CHUNKS(ADD);
#undef ADD
}

/* acc[0..n) (+)= t[0..n) + u[0..n) */
TREC_INLINE void add2_row(int32_t *acc, const int32_t *t, const int32_t *u, int32_t n, int first)
{
    int32_t j = 0;
    for (; j + 3 < n; j += 4) {
        int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, c0, c1, c2, c3, d0, d1, d2, d3;
        if (!first) {
            trec_load2_at(acc, j, s0, s1);
            trec_load2_at(acc, j + 2, s2, s3);
        }
        trec_load2_at(t, j, c0, c1);
        trec_load2_at(t, j + 2, c2, c3);
        trec_load2_at(u, j, d0, d1);
        trec_load2_at(u, j + 2, d2, d3);
        trec_store2_at(acc, j, s0 + c0 + d0, s1 + c1 + d1);
        trec_store2_at(acc, j + 2, s2 + c2 + d2, s3 + c3 + d3);
    }
    for (; j < n; j++) {
        acc[j] = (first ? 0 : acc[j]) + t[j] + u[j];
    }
}

TREC_INLINE void scatter_add2_body(const trec_geom *g, const uint8_t *ids, int32_t id_size, size_t idx0, size_t idx20,
                                   const int32_t *table, const int32_t *table2, int32_t blk, int first, int32_t *acc)
{
    ROW_STEPS(g, step, row_step);
    const int32_t out_w = g->out_w;
    int32_t *TREC_RESTRICT a = acc;
    for (int32_t oy = 0; oy < g->out_h; oy++, idx0 += row_step, idx20 += row_step) {
        size_t idx = idx0, idx2 = idx20;
        for (int32_t ox = 0; ox < out_w; ox++, a += blk, idx += step, idx2 += step) {
            const int32_t *TREC_RESTRICT tc = table + (size_t)trec_read_id(ids, id_size, idx) * blk;
            const int32_t *TREC_RESTRICT td = table2 + (size_t)trec_read_id(ids, id_size, idx2) * blk;
            add2_row(a, tc, td, blk, first);
        }
    }
}

/* plan A2: acc[n] (+)= table[id(n, m)] + table2[id(n, m + 1)], two sub-matrices per pass over
 * the accumulator */
TREC_NOINLINE void trec_scatter_add2(const trec_geom *g, const uint8_t *ids, int32_t id_off, int32_t id_off2,
                                     const int32_t *table, const int32_t *table2, int32_t blk, int first, int32_t *acc)
{
    const size_t i0 = (size_t)id_off, i1 = (size_t)id_off2;
#define ADD2(ID_SIZE, BLK)                                                                             \
    (first ? scatter_add2_body(g, ids, ID_SIZE, i0, i1, table, table2, BLK, 1, acc)                    \
           : scatter_add2_body(g, ids, ID_SIZE, i0, i1, table, table2, BLK, 0, acc))
    UNROLLED_CHUNKS(ADD2);
#undef ADD2
}

/* mode: 0 the general requantization, 1 the short one over the whole int8 range (SSAT), 2 the
 * short one and the activation's clamp */
TREC_INLINE void scatter_requantize_body(const trec_geom *g, const uint8_t *ids, int32_t id_size, size_t idx0,
                                         const int32_t *table, int32_t blk, const int32_t *acc, const int32_t *mult,
                                         const int32_t *shift, const int32_t *rq, int mode, int8_t *output)
{
    ROW_STEPS(g, step, row_step);
    const int32_t out_w = g->out_w, cout = g->cout;
    const int32_t offset = g->output_offset, lo = g->act_min - offset, hi = g->act_max - offset;
    const int32_t *a = acc;
    int8_t *out = output;
    for (int32_t oy = 0; oy < g->out_h; oy++, idx0 += row_step) {
        size_t idx = idx0;
        for (int32_t ox = 0; ox < out_w; ox++, a += blk, idx += step, out += cout) {
            const int32_t *tc = table + (size_t)trec_read_id(ids, id_size, idx) * blk;
            for (int32_t j = 0; j < blk; j++) {
                const int32_t x = a[j] + tc[j];
                int32_t v;
                if (mode == 0) {
                    v = trec_requantize_clamp(x, mult[j], shift[j], lo, hi) + offset;
                } else {
                    const int32_t r = requantize_rq(x, rq, j);
                    v = mode == 1 ? trec_ssat8(r) : clamp_to(r, g->act_min, g->act_max);
                }
                out[j] = (int8_t)v;
            }
        }
    }
}

#define REQUANTIZE(ID_SIZE, BLK)                                                                        \
    (mode == 1 ? scatter_requantize_body(g, ids, ID_SIZE, idx0, table, BLK, acc, mult, shift, rq, 1, out) \
               : scatter_requantize_body(g, ids, ID_SIZE, idx0, table, BLK, acc, mult, shift, rq, 2, out))

/* plan A, the last sub-matrix: requantize acc[n] + table[id(n, m)] straight into the output */
TREC_NOINLINE void trec_scatter_requantize(const trec_geom *g, const uint8_t *ids, int32_t id_off, const int32_t *table,
                                           int32_t c0, int32_t blk, const int32_t *acc, const trec_weights *w,
                                           const int32_t *rq, int8_t *output)
{
    const size_t idx0 = (size_t)id_off;
    const int32_t *mult = w->mult + c0, *shift = w->shift + c0;
    const int mode = !trec_fast_requant_block(g, w, c0, blk) ? 0 : g->act_min == -128 && g->act_max == 127 ? 1 : 2;
    int8_t *out = output + c0;
    if (mode == 0) { /* the general requantization: rare (see trec_fast_requant_block), not unrolled */
        scatter_requantize_body(g, ids, g->id_size, idx0, table, blk, acc, mult, shift, rq, 0, out);
    } else {
        UNROLLED_CHUNKS(REQUANTIZE);
    }
}
#undef REQUANTIZE
#undef UNROLLED_CHUNKS
#undef ROW_STEPS
