/*
 * trec-tflm: what the phases of the TREC kernel share (not a public header).
 *
 * trec_convolve_s8() is split by phase, one file each:
 *   trec_convolve_s8.c         entry point, one image: scratch carving, passes over the channels
 *   trec_convolve_plan_s8.c    geometry and validation, scratch sizes, plan choice
 *   trec_hash_s8.c             hash codes and dense cluster ids
 *   trec_cluster_sums_s8.c     per sub-matrix, the members' sub-vectors summed per cluster
 *   trec_cluster_products_s8.c cluster sums x filter slice, zero point, rounding division
 *   trec_scatter_s8.c          tables summed per row and requantized into the output
 * Cross-file calls happen per sub-matrix and pass, never per element: the inner loops stay within
 * one file, where the compiler sees them whole.
 */
#ifndef TREC_CONVOLVE_INTERNAL_H
#define TREC_CONVOLVE_INTERNAL_H

#include <stddef.h>
#include <string.h>

#include "trec/trec_nnfunctions.h"
#include "trec_nn_support.h"

#if defined(TREC_PROFILE)
/* Benchmarks define this to time the phases; argument: 0 hashing, 1 centroids (ids and sums),
 * 2 products, 3 scatter (with the requantization), -1 done. */
void trec_profile_mark(int phase);
#define PROFILE_MARK(p) trec_profile_mark(p)
#else
#define PROFILE_MARK(p) ((void)0)
#endif

enum { PHASE_HASH = 0, PHASE_CENTROIDS = 1, PHASE_PRODUCTS = 2, PHASE_SCATTER = 3, PHASE_DONE = -1 };

/* Hot loops are kept out of line: inlined into one large function they share its registers and
 * spill in the inner loops. Functions shared between the files are hidden from the shared
 * library's exports. */
#if defined(__GNUC__) || defined(__clang__)
#define HOT __attribute__((noinline))
#define TREC_INTERNAL __attribute__((visibility("hidden")))
#else
#define HOT
#define TREC_INTERNAL
#endif

/* ================================================================================================
 * geometry
 * ============================================================================================== */
typedef struct {
    int32_t in_h, in_w, cin;
    int32_t kh, kw;
    int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t out_h, out_w, cout;
    int32_t input_offset, output_offset, act_min, act_max;
    int32_t n;         /* rows = out_h * out_w */
    int32_t k;         /* kh * kw * cin */
    int32_t l;         /* sub-vector length */
    int32_t la;        /* l rounded up to even */
    int32_t m;         /* sub-matrices = ceil(k / l) */
    int32_t kp;        /* m * l (zero-extended row) */
    int32_t hbits;
    int32_t hq;        /* hbits rounded up to a multiple of 4: hash vectors are kept in quads */
    int32_t center;
    int32_t id_size;   /* bytes per code / id: 1 when H <= 8, else 2 */
    int32_t strip;     /* strip path: l == j * cin, kw % j == 0 */
    int32_t j;         /* strip path: pixels per strip */
    int32_t ph, pw;    /* strip path: position grid (padded input rows x strip start columns) */
    int32_t max_slots; /* clusters of one sub-matrix at most */
    int32_t map_cap;   /* compaction map entries (power of two) */
    int32_t direct;    /* map is a direct table indexed by code (map_cap == 2^H) */
    int32_t wide;      /* cluster dot products may exceed int32: int64 path */
} geom;

/* Validates the arguments of both public functions and derives the geometry. */
TREC_INTERNAL trec_status trec_make_geom(const trec_conv_params *cp, const trec_hash_params *hp, const trec_dims *in,
                                         const trec_dims *f, const trec_dims *out, geom *g);

/* A rectangle of the strip path's position grid, [y0, y1) x [x0, x1). */
typedef struct {
    int32_t y0, y1, x0, x1;
} rect;

/* grid position of sub-matrix m's strip for row (0, 0); row (oy, ox) adds (oy*sh, ox*sw) */
static inline void strip_origin(const geom *g, int32_t m, int32_t *y, int32_t *x)
{
    const int32_t per_row = g->kw / g->j;
    const int32_t ky = m / per_row;
    *y = ky * g->dil_h;
    *x = (m - ky * per_row) * g->j * g->dil_w;
}

/* The i-th sub-matrix the passes visit. On the strip path the kernel rows are walked back and forth
 * (boustrophedon), so that each sub-matrix's window is the previous one's moved by one column or
 * one row, never back across the kernel's width: the incremental sums then update 2 x out_h or
 * 2 x out_w positions per sub-matrix (L3: 448 per pass instead of 672). */
static inline int32_t visit_order(const geom *g, int32_t i)
{
    if (!g->strip) {
        return i;
    }
    const int32_t per_row = g->kw / g->j, ky = i / per_row, kx = i - ky * per_row;
    return ky * per_row + ((ky & 1) ? per_row - 1 - kx : kx);
}

/* The parts of rectangle a outside rectangle b (at most 4 rectangles). */
static inline int32_t rect_minus(rect a, rect b, rect *out)
{
    int32_t n = 0;
    const int32_t my0 = TREC_MAX(a.y0, b.y0), my1 = TREC_MIN(a.y1, b.y1);
    const rect parts[4] = {{a.y0, TREC_MIN(a.y1, b.y0), a.x0, a.x1}, {TREC_MAX(a.y0, b.y1), a.y1, a.x0, a.x1},
                           {my0, my1, a.x0, TREC_MIN(a.x1, b.x0)}, {my0, my1, TREC_MAX(a.x0, b.x1), a.x1}};
    for (int i = 0; i < 4; i++) {
        if (parts[i].y1 > parts[i].y0 && parts[i].x1 > parts[i].x0) {
            out[n++] = parts[i];
        }
    }
    return n;
}

/* strip path, stride 1: the positions of sub-matrix m's strips */
static inline rect window_of(const geom *g, int32_t m)
{
    int32_t y0, x0;
    strip_origin(g, m, &y0, &x0);
    const rect w = {y0, y0 + g->out_h, x0, x0 + g->out_w};
    return w;
}

/* Index of row (oy, ox)'s id for sub-matrix m: row_base(oy, ox) + id_off[m]. */
TREC_INLINE size_t row_base(const geom *g, int32_t oy, int32_t ox)
{
    if (g->strip) {
        return (size_t)oy * g->stride_h * g->pw + (size_t)ox * g->stride_w;
    }
    return ((size_t)oy * g->out_w + ox) * g->m;
}

/* ================================================================================================
 * ids, layouts, arithmetic
 * ============================================================================================== */
static inline size_t align4(size_t v) { return (v + 3u) & ~(size_t)3u; }

TREC_INLINE int32_t read_id(const uint8_t *ids, int32_t size, size_t i)
{
    if (size == 1) {
        return ids[i];
    }
    uint16_t v;
    memcpy(&v, ids + 2 * i, 2);
    return v;
}

TREC_INLINE void write_id(uint8_t *ids, int32_t size, size_t i, int32_t v)
{
    if (size == 1) {
        ids[i] = (uint8_t)v;
    } else {
        const uint16_t u = (uint16_t)v;
        memcpy(ids + 2 * i, &u, 2);
    }
}

/* Filter slices are stored in channel quads: int16 element l of channel j is at ws_index(pairs, j,
 * l), so that word p of the four channels of a quad is contiguous (two 64-bit loads feed 8 SMLAD
 * of two clusters); channels from blk up to a multiple of 4 hold zeros. The hash vectors use the
 * same layout, with hash bits for channels. */
static inline int32_t blk_quads(int32_t blk) { return (blk + 3) & ~3; }

static inline size_t ws_index(int32_t pairs, int32_t j, int32_t l)
{
    return ((((size_t)(j >> 2) * (size_t)pairs + (size_t)(l >> 1)) << 2) + (size_t)(j & 3)) * 2 + (size_t)(l & 1);
}

/* strip path, int16 buffer: one padded input row (dilation 1: every strip of the row is a run of
 * it), or one strip */
static inline int32_t strip_row_elems(const geom *g)
{
    return g->dil_w == 1 ? TREC_MAX((g->pw + g->j - 1) * g->cin, g->la) : g->la;
}

/* round half away from zero of num / den, den > 0 (TFLM's average-pool rounding) */
static inline int32_t div_round64(int64_t num, int32_t den)
{
    const int64_t half = den / 2;
    return (int32_t)(num > 0 ? (num + half) / den : (num - half) / den);
}

/* the same with half = den >> 1 given, for loops dividing many values by one den */
TREC_INLINE int32_t div_round_half(int32_t num, int32_t den, int32_t half)
{
    /* +half or -half by the sign of num without a branch: (half ^ s) - s, s = 0 or -1 (at num = 0
     * either gives 0, as |half| < den) */
    const int32_t s = num >> 31;
    return (num + ((half ^ s) - s)) / den;
}

TREC_INLINE int32_t div_round32(int32_t num, int32_t den)
{
    if (den == 1) {
        return num;
    }
    return div_round_half(num, den, den >> 1);
}

/* acc[0..n) += t[0..n), four per step (two LDRD each; plain stores, which GCC schedules better
 * here than STRD: 3% fewer instructions in plan A's scatter) */
TREC_INLINE void add_row(int32_t *acc, const int32_t *t, int32_t n)
{
    int32_t j = 0;
    for (; j + 3 < n; j += 4) {
        int32_t t0, t1, t2, t3, a0, a1, a2, a3;
        trec_load2_at(t, j, t0, t1);
        trec_load2_at(t, j + 2, t2, t3);
        trec_load2_at(acc, j, a0, a1);
        trec_load2_at(acc, j + 2, a2, a3);
        trec_store2_at(acc, j, a0 + t0, a1 + t1);
        trec_store2_at(acc, j + 2, a2 + t2, a3 + t3);
    }
    for (; j < n; j++) {
        acc[j] += t[j];
    }
}

#if TREC_DSP
/* a[i] += x0 . w_i and b[i] += x1 . w_i for the 4 vectors w_i of a quad (ws_index layout: word p
 * of the four at w[4p .. 4p+3]); x0, x1: `pairs` int16 pairs. Each quad word is loaded once for
 * both x; 8 SMLAD per pair. Serves the hash codes of two strips and the products of two clusters. */
TREC_INLINE void dot_2x4(const int16_t *x0, const int16_t *x1, const int32_t *w, int32_t pairs, int32_t a[4],
                         int32_t b[4])
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
    for (int32_t p = 0; p < pairs; p++, w += 4) {
        const int32_t u = trec_read_s16x2(x0 + 2 * p), v = trec_read_s16x2(x1 + 2 * p);
        const int32_t w0 = w[0], w1 = w[1];
        a0 = trec_smlad(u, w0, a0);
        b0 = trec_smlad(v, w0, b0);
        a1 = trec_smlad(u, w1, a1);
        b1 = trec_smlad(v, w1, b1);
        const int32_t w2 = w[2], w3 = w[3];
        a2 = trec_smlad(u, w2, a2);
        b2 = trec_smlad(v, w2, b2);
        a3 = trec_smlad(u, w3, a3);
        b3 = trec_smlad(v, w3, b3);
    }
    a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3, b[0] = b0, b[1] = b1, b[2] = b2, b[3] = b3;
}
#endif

/* ================================================================================================
 * scratch
 *
 *   [ ids | general path: clusters per sub-matrix (M int32) | id offsets per sub-matrix (M int32)
 *     | work ]
 *   ids: general path N*M*id_size; strip path ph*pw*id_size (the position grid).
 *   work, pass 1 (hashing):
 *     general: row (kp + 1 int16) | hash vectors (hq x la int16) | offsets (M x hq int32)
 *              | channel sums (cin int32) | compaction map
 *     strip:   padded row (strip_row_elems + 1 int16) | hash vectors | offsets (hq int32)
 *              | channel sums | compaction map
 *   work, pass 2 (per chunk of channels):
 *     the chunk's requantization (rq_bytes) | plans T, T16: table state (table_state_bytes)
 *     | members (slots; not with SIMD sums, which read them from the counts)
 *     | strip path: counts (slots x (j + 1))
 *     | sums: a block (slots x lb int32); incremental: the sums kept whole (slots x L int32)
 *       + packed copy (slots x la/2 int32); SIMD: int16 lanes (slots x L/2 int32) + big-cluster map
 *       (slots) + int32 sums of big clusters + filter sums per strip pixel (chunk x j) + with
 *       SIMD_PAIRED a pair of clusters' sums interleaved (L int32)
 *     | filter slice (quads(chunk) x lba int16)
 *     | tables: plan T every sub-matrix's; plan A the N x chunk accumulator and one table (A2: two);
 *       plan T16: per channel the folded offsets and one sub-matrix's (blk x 2 int32), the first
 *       sub-matrix's table (int32), the others' (uint16 rows of blk rounded up to even), and room
 *       for the last one's int32 products before they are narrowed
 * ============================================================================================== */
static inline size_t ids_bytes(const geom *g)
{
    const size_t cells = g->strip ? (size_t)g->ph * g->pw : (size_t)g->n * g->m;
    return align4(cells * (size_t)g->id_size);
}

/* the strip path's sub-matrices all have the grid's clusters: they keep only their id offsets */
static inline size_t header_bytes(const geom *g) { return ids_bytes(g) + (size_t)g->m * (g->strip ? 4 : 8); }

/* per output channel of a chunk the multiplier and 2^r side by side (one LDRD) and r + 1 for the
 * fast requantization; per chunk, not per layer: at the least scratch of a wide layer the other
 * channels' would take the room of a channel quad (L3 at H = 8 in 2x its output: 8 passes instead
 * of 11) */
static inline size_t rq_bytes(int32_t blk) { return (size_t)blk * 12; }

/* plans T and T16 only: each sub-matrix's table offset (M ints) and a row's table rows (M
 * pointers, aligned for a pointer); plan A's scratch is smaller by these (L3's default takes
 * plan A2 in the 200 bytes they free) */
static inline size_t table_state_bytes(const geom *g)
{
    return (size_t)g->m * (4 + sizeof(void *)) + (sizeof(void *) - 4);
}

/* SIMD sums (strip path, Cin % 4 == 0): int16 lanes hold the raw sum of at most 256 int8 exactly */
#define SIMD_LANE_MEMBERS 256

/* members that may exceed the int16 lanes: at most this many clusters of a sub-matrix */
static inline int32_t simd_big_max(const geom *g) { return g->n / (SIMD_LANE_MEMBERS + 1); }

/* Incremental SIMD sums: at stride 1 neighbouring sub-matrices' windows overlap in all but a row or
 * a column, so sub-matrix m's sums are sub-matrix prev's minus prev's window outside m's, plus m's
 * outside prev's. Needs every cluster of every window to fit the int16 lanes (N <= 256). */
static inline int simd_incremental(const geom *g)
{
    return g->stride_h == 1 && g->stride_w == 1 && simd_big_max(g) == 0;
}

/* ints kept per cluster besides the sums: its members, and on the strip path a copy of them plus
 * the in-image members per strip pixel (the zero-point offset applies to in-image elements only);
 * the SIMD products read the members from the counts, without the copy */
static inline int32_t counts_per_slot(const geom *g, int simd) { return g->strip ? g->j + 2 - (simd != 0) : 1; }

/* Smallest scratch any plan runs in (trec_convolve_s8_get_min_buffer_size, without the alignment). */
TREC_INTERNAL int64_t trec_min_scratch(const geom *g);

/* ================================================================================================
 * plans
 * ============================================================================================== */
/* Scatter plans: A, an N x chunk int32 accumulator and one sub-matrix's table at a time; A2, the
 * same with two tables per pass over the accumulator; T, every sub-matrix's table and no
 * accumulator; T16, plan T with the tables of sub-matrices 1.. in uint16 (entry - offset, the
 * offset per sub-matrix and channel folded into the first table), half the memory where the
 * entries' spread allows it: chosen only where that saves a pass, and a chunk whose entries do
 * not fit reruns on the best plan without it. */
enum { PLAN_A = 0, PLAN_T = 1, PLAN_A2 = 2, PLAN_T16 = 3 };
enum { SIMD_PLAIN = 1, SIMD_PAIRED = 2 };

typedef struct {
    int kind;        /* PLAN_A, PLAN_A2 or PLAN_T */
    int32_t blk;     /* channels per pass */
    int32_t lb;      /* sums block length */
    int incremental; /* strip path, stride 1, scalar: sums kept whole and moved from window to window */
    int simd;        /* strip path, Cin % 4 == 0: int16-lane sums (lb == L); SIMD_PAIRED: products of
                      * cluster pairs interleaved (blk a multiple of 4, at least 8) */
} plan;

/* Best plan for `avail` bytes of pass-2 scratch, and the best without T16 (what
 * a chunk falls back on); 0 when nothing fits. */
TREC_INTERNAL int trec_choose_plan(const geom *g, size_t avail, int32_t slots_max, int64_t slots_tot, plan *best,
                                   plan *without_t16);

/* plan T16: uint16 rows of a chunk of blk channels (even, so that every row is word-aligned) */
static inline int32_t t16_row(int32_t blk) { return (blk + 1) & ~1; }

/* ================================================================================================
 * the phases
 * ============================================================================================== */
/* hashing: general path ids[n][m] for every row and sub-matrix, slots[m] clusters each */
TREC_INTERNAL void trec_hash_rows(const geom *g, const int8_t *input, const int8_t *hash, uint8_t *ids, int32_t *slots,
                                  uint8_t *work);
/* hashing: strip path ids[y][x] of every grid position, the same for every sub-matrix; returns the
 * number of ids */
TREC_INTERNAL int32_t trec_hash_strips(const geom *g, const int8_t *input, const int8_t *hash, uint8_t *ids,
                                       uint8_t *work);

/* sums of sub-matrix m (see trec_cluster_sums_s8.c) */
TREC_INTERNAL void trec_strip_sums(const geom *g, const int8_t *input, const uint8_t *ids, int32_t m, int32_t prev,
                                   int32_t slots, int32_t l0, int32_t lb, int incremental, int32_t *sums,
                                   int32_t *counts);
/* returns the number of clusters summed in int32 (more members than int16 lanes hold; big[s] >= 0) */
TREC_INTERNAL int32_t trec_strip_sums_simd(const geom *g, const int8_t *input, const uint8_t *ids, int32_t m,
                                           int32_t prev, int32_t slots, int32_t *counts, int32_t *big,
                                           int32_t *sums16, int32_t *sums32);
TREC_INTERNAL void trec_row_sums(const geom *g, const int8_t *input, const uint8_t *ids, int32_t m, int32_t slots,
                                 int32_t l0, int32_t lb, int32_t *sums, int32_t *counts);

/* products of sub-matrix m's clusters (see trec_cluster_products_s8.c) */
TREC_INTERNAL void trec_filter_slice(const geom *g, const int8_t *filter, int32_t m, int32_t l0, int32_t lb,
                                     int32_t c0, int32_t blk, int16_t *ws);
TREC_INTERNAL void trec_filter_slice_simd(const geom *g, const int8_t *filter, int32_t m, int32_t c0, int32_t blk,
                                          int16_t *ws, int32_t *wsum);
TREC_INTERNAL int32_t trec_products_simd(const geom *g, int32_t slots, const int32_t *counts, int32_t n_big,
                                         int32_t *big, int32_t *sums16, int32_t *sums32, const int16_t *ws,
                                         const int32_t *wsum, int32_t blk, int32_t *pair, int32_t *table);
TREC_INTERNAL void trec_accumulate_products(int32_t *sums, int32_t *packed_buf, int32_t slots, const int32_t *counts,
                                            int32_t lb, const int16_t *ws, int32_t blk, int first, int32_t *table);
TREC_INTERNAL void trec_products_wide(const int32_t *sums, int32_t slots, const int32_t *counts, int32_t l,
                                      const int16_t *ws, int32_t blk, int32_t *table);
TREC_INTERNAL void trec_divide_table(int32_t *table, int32_t slots, const int32_t *counts, int32_t blk);
TREC_INTERNAL int trec_table_spread16(const int32_t *table, int32_t slots, const int32_t *counts, int32_t stride,
                                      int32_t blk, int32_t channels, int32_t *lo, int32_t *hi);
TREC_INTERNAL int trec_narrow_table(int32_t *table, int32_t slots, const int32_t *counts, int32_t stride,
                                    int32_t blk, int32_t *offset);

/* scatter (see trec_scatter_s8.c) */
typedef struct {
    const int8_t *filter;
    const int32_t *bias;
    const int32_t *mult;
    const int32_t *shift;
} weights;

TREC_INTERNAL void trec_scatter_tables(const geom *g, const uint8_t *ids, const int32_t *id_off, const int32_t *tables,
                                       const int32_t *toff, int32_t c0, int32_t blk, const weights *w, int8_t *output,
                                       const int32_t **rowp, const int32_t *rq);
/* channels [c0, c0 + blk) all take trec_requantize_fast_small (see trec_scatter_s8.c) */
TREC_INTERNAL int trec_fast_requant_block(const geom *g, const weights *w, int32_t c0, int32_t blk);
TREC_INTERNAL void trec_scatter_tables16(const geom *g, const uint8_t *ids, const int32_t *id_off,
                                         const int32_t *table0, const uint8_t *tables, const int32_t *toff,
                                         int32_t c0, int32_t blk, const weights *w, int8_t *output,
                                         const int32_t **rowp, const int32_t *rq);
TREC_INTERNAL void trec_scatter_add(const geom *g, const uint8_t *ids, int32_t id_off, const int32_t *table,
                                    int32_t blk, int first, int32_t *acc);
TREC_INTERNAL void trec_scatter_add2(const geom *g, const uint8_t *ids, int32_t id_off, int32_t id_off2,
                                     const int32_t *table, const int32_t *table2, int32_t blk, int first,
                                     int32_t *acc);
TREC_INTERNAL void trec_scatter_requantize(const geom *g, const uint8_t *ids, int32_t id_off, const int32_t *table,
                                           int32_t c0, int32_t blk, const int32_t *acc, const weights *w,
                                           const int32_t *rq, int8_t *output);

#endif /* TREC_CONVOLVE_INTERNAL_H */
