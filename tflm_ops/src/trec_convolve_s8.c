/*
 * trec-tflm: TREC reuse convolution, int8 (the TREC_CONV_2D operator, docs/OP_SPEC.md).
 *
 * Bit-exact with trec_tflm.golden.trec_conv2d_s8. Per image:
 *
 *   hash     codes of the sub-vectors, then per sub-matrix m the codes become dense cluster ids.
 *            General path: one im2col row at a time (never the matrix) is hashed with SMLAD and
 *            N*M ids are kept. Strip path (L = j*Cin with j dividing kw): a sub-vector is a strip of
 *            j horizontally neighbouring input pixels (padding elements 0), the hash centre is the
 *            same for every sub-matrix, and one strip serves every (row, sub-matrix) that starts at
 *            its position: each position of the padded input is hashed once (kh*kw/j times less
 *            hashing) and the ids live in an image of positions instead of N*M cells.
 *   sums     per sub-matrix, the members' sub-vectors summed per cluster, straight from the HWC
 *            input. Strip path, stride 1: neighbouring sub-matrices' windows differ by a row or a
 *            column, so each sub-matrix's sums are the previous one's minus the positions it
 *            leaves and plus those it gains (int16 lanes with SXTAB16 when Cin % 4 == 0).
 *   products per chunk of output channels: cluster sums x filter slice, 2 clusters x 4 channels
 *            per SMLAD block (when the sums fit int16), plus the zero-point term, divided once per
 *            cluster and channel, rounding half away from zero.
 *   scatter  plan A: add each sub-matrix's product table into an N x chunk int32 accumulator, the
 *            last one straight into the requantization; plan T: keep every sub-matrix's table and
 *            sum a row's entries in registers, then requantize them there. Requantization is
 *            TFLite's, bit for bit, in six instructions where the multiplier allows
 *            (trec_requantize_fast).
 *
 * Scratch never holds the im2col matrix; an N x Cout int32 accumulator only when the caller's
 * scratch is that large. Plans, chunk sizes and the sums' block length are chosen at run time from
 * the actual cluster counts and the scratch given (choose_plan); less scratch means more passes over
 * the output channels, never a failure above trec_convolve_s8_get_min_buffer_size().
 */
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
 * spill in the inner loops. */
#if defined(__GNUC__) || defined(__clang__)
#define HOT __attribute__((noinline))
#else
#define HOT
#endif

#define MAP_EMPTY 0xFFFFu
#define MAX_ROWS 65535 /* cluster ids and counts are 16-bit */
#define SMLAD_MAX_PAIRS 64

/* ================================================================================================
 * geometry and validation
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

static int dims_positive(const trec_dims *d) { return d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0; }

static int geometry_ok(int32_t in, int32_t k, int32_t stride, int32_t dilation, int32_t pad, int32_t out)
{
    if (stride < 1 || dilation < 1 || pad < 0) {
        return 0;
    }
    const int64_t eff = (int64_t)(k - 1) * dilation + 1;
    const int64_t bottom = (int64_t)(out - 1) * stride + eff - in - pad;
    return pad < eff && bottom > -(int64_t)stride && bottom < eff;
}

static int32_t pow2_at_least(int32_t v)
{
    int32_t p = 1;
    while (p < v) {
        p <<= 1;
    }
    return p;
}

static trec_status make_geom(const trec_conv_params *cp, const trec_hash_params *hp, const trec_dims *in,
                             const trec_dims *f, const trec_dims *out, geom *g)
{
    if (cp == NULL || hp == NULL || in == NULL || f == NULL || out == NULL) {
        return TREC_ARG_ERROR;
    }
    if (!dims_positive(in) || !dims_positive(f) || !dims_positive(out)) {
        return TREC_ARG_ERROR;
    }
    if (in->c != f->c || out->c != f->n || out->n != in->n) {
        return TREC_ARG_ERROR;
    }
    if (!geometry_ok(in->h, f->h, cp->stride.h, cp->dilation.h, cp->padding.h, out->h) ||
        !geometry_ok(in->w, f->w, cp->stride.w, cp->dilation.w, cp->padding.w, out->w)) {
        return TREC_ARG_ERROR;
    }
    if (cp->input_offset < -127 || cp->input_offset > 128 || cp->output_offset < -128 || cp->output_offset > 127 ||
        cp->activation.min < -128 || cp->activation.max > 127 || cp->activation.min > cp->activation.max) {
        return TREC_ARG_ERROR;
    }
    const int64_t k = (int64_t)f->h * f->w * f->c;
    const int64_t n = (int64_t)out->h * out->w;
    if (hp->sub_vector_length < 1 || hp->sub_vector_length > k || hp->hash_bits < 1 ||
        hp->hash_bits > TREC_MAX_HASH_BITS ||
        (hp->hash_center != TREC_HASH_CENTER_NONE && hp->hash_center != TREC_HASH_CENTER_MEAN)) {
        return TREC_ARG_ERROR;
    }
    if (n > MAX_ROWS || k > (1 << 20) || (int64_t)in->h * in->w > (1 << 23)) {
        return TREC_NO_IMPL_ERROR;
    }
    g->in_h = in->h;
    g->in_w = in->w;
    g->cin = in->c;
    g->kh = f->h;
    g->kw = f->w;
    g->stride_h = cp->stride.h;
    g->stride_w = cp->stride.w;
    g->dil_h = cp->dilation.h;
    g->dil_w = cp->dilation.w;
    g->pad_h = cp->padding.h;
    g->pad_w = cp->padding.w;
    g->out_h = out->h;
    g->out_w = out->w;
    g->cout = out->c;
    g->input_offset = cp->input_offset;
    g->output_offset = cp->output_offset;
    g->act_min = cp->activation.min;
    g->act_max = cp->activation.max;
    g->n = (int32_t)n;
    g->k = (int32_t)k;
    g->l = hp->sub_vector_length;
    g->la = (g->l + 1) & ~1;
    g->m = (g->k + g->l - 1) / g->l;
    g->kp = g->m * g->l;
    g->hbits = hp->hash_bits;
    g->hq = (g->hbits + 3) & ~3;
    g->center = hp->hash_center;
    g->id_size = g->hbits <= 8 ? 1 : 2;
    g->j = g->l / g->cin;
    g->strip = g->l % g->cin == 0 && g->kw % g->j == 0;
    g->ph = (g->out_h - 1) * g->stride_h + (g->kh - 1) * g->dil_h + 1;
    g->pw = (g->out_w - 1) * g->stride_w + (g->kw - g->j) * g->dil_w + 1;
    const int64_t codes = (int64_t)1 << g->hbits;
    const int64_t members = g->strip ? (int64_t)g->ph * g->pw : n;
    g->max_slots = (int32_t)(codes < members ? codes : members);
    g->direct = codes <= 2 * members;
    g->map_cap = g->direct ? (int32_t)codes : pow2_at_least((int32_t)(2 * members));
    g->wide = (int64_t)g->n * g->l * 255 * 127 >= ((int64_t)1 << 31);
    return TREC_SUCCESS;
}

/* ================================================================================================
 * scratch layout
 *
 *   [ ids | slots per sub-matrix (M int32) | id offsets per sub-matrix (M int32) | work ]
 *   ids: general path N*M*id_size; strip path ph*pw*id_size (the position grid).
 *   work, pass 1: general: row (kp + 1 int16) | hash vectors (H x la int16) | offsets (M x H int32)
 *                          | channel sums (cin int32) | compaction map
 *                 strip:   strip (la int16) | hash vectors | offsets (H int32) | channel sums | map
 *   work, pass 2: [sums over all positions G (slots x L int32) + counts (slots x (j + 1) int32),
 *                  strip path stride 1, when they pay] | counts (slots x (j + 1) int32)
 *                 | sums block (slots x lb int32) | filter slice (chunk x lb_al int16)
 *                 | tables (plan T) or accumulator + table (plan A)
 * ============================================================================================== */
static size_t align4(size_t v) { return (v + 3u) & ~(size_t)3u; }

/* Filter slices are stored in channel quads: int16 element l of channel j is at ws_index(pairs, j,
 * l), so that word p of the four channels of a quad is contiguous (two 64-bit loads feed 8 SMLAD
 * of two clusters); channels from blk up to a multiple of 4 hold zeros. */
static int32_t blk_quads(int32_t blk) { return (blk + 3) & ~3; }

static inline size_t ws_index(int32_t pairs, int32_t j, int32_t l)
{
    return ((((size_t)(j >> 2) * (size_t)pairs + (size_t)(l >> 1)) << 2) + (size_t)(j & 3)) * 2 + (size_t)(l & 1);
}

static size_t ids_bytes(const geom *g)
{
    const size_t cells = g->strip ? (size_t)g->ph * g->pw : (size_t)g->n * g->m;
    return align4(cells * (size_t)g->id_size);
}

static size_t header_bytes(const geom *g) { return ids_bytes(g) + (size_t)g->m * 8; }

static size_t map_bytes(const geom *g) { return (size_t)g->map_cap * (g->direct ? 2 : 4); }

/* strip path, int16 buffer: one padded input row (dilation 1: every strip of the row is a run of
 * it), or one strip */
static int32_t strip_row_elems(const geom *g)
{
    return g->dil_w == 1 ? TREC_MAX((g->pw + g->j - 1) * g->cin, g->la) : g->la;
}

static size_t pass1_bytes(const geom *g)
{
    const size_t row = align4((size_t)((g->strip ? strip_row_elems(g) : g->kp) + 1) * 2);
    const size_t rt = (size_t)g->hq * g->la * 2;
    const size_t off = (size_t)(g->strip ? 1 : g->m) * g->hq * 4;
    return row + rt + off + (size_t)g->cin * 4 + align4(map_bytes(g));
}

/* SIMD sums (strip path, Cin % 4 == 0): int16 lanes hold the raw sum of at most 256 int8 exactly */
#define SIMD_LANE_MEMBERS 256

static int simd_possible(const geom *g) { return TREC_DSP && g->strip && g->cin % 4 == 0 && !g->wide; }

/* members that may exceed the int16 lanes: at most this many clusters of a sub-matrix */
static int32_t simd_big_max(const geom *g) { return g->n / (SIMD_LANE_MEMBERS + 1); }

/* ints kept per cluster besides the sums: its members, and on the strip path a copy of them plus
 * the in-image members per strip pixel (the zero-point offset applies to in-image elements only) */
static int32_t counts_per_slot(const geom *g) { return g->strip ? g->j + 2 : 1; }

/* Scatter plans: A, an N x chunk int32 accumulator and one sub-matrix's table at a time; A2, the
 * same with two tables per pass over the accumulator; T, every sub-matrix's table and no
 * accumulator. */
enum { PLAN_A = 0, PLAN_T = 1, PLAN_A2 = 2 };

/* pass-2 bytes: per-cluster counts, the sums (a block of lb, or on the incremental strip path
 * the raw sums kept whole plus a packed copy), the filter slice of a chunk of blk
 * channels, and the tables and accumulator of the scatter plan */
static size_t pass2_bytes(const geom *g, int32_t slots_max, int64_t slots_tot, int32_t lb, int32_t blk, int kind,
                          int incremental, int simd)
{
    const size_t lba = (size_t)((lb + 1) & ~1);
    size_t b = (size_t)slots_max * counts_per_slot(g) * 4 + (size_t)blk_quads(blk) * lba * 2;
    if (simd) { /* big-cluster map, int16 sums, int32 sums of big clusters, filter sums per strip pixel */
        b += (size_t)slots_max * 4 + (size_t)slots_max * g->l * 2 + (size_t)simd_big_max(g) * g->l * 4 +
             (size_t)blk * g->j * 4;
    } else {
        b += incremental ? (size_t)slots_max * ((size_t)g->l + (size_t)g->la / 2) * 4 : (size_t)slots_max * lb * 4;
    }
    if (kind == PLAN_T) {
        b += (size_t)slots_tot * blk * 4;
    } else {
        b += ((size_t)g->n + (size_t)slots_max * (kind == PLAN_A2 ? 2 : 1)) * blk * 4;
    }
    return b;
}

/* plan T's table offsets and a row's table rows (2 * M ints), then per output channel the bias
 * (or zeros) and the fast requantization's 2^r and r + 1 */
static size_t row_state_bytes(const geom *g) { return (size_t)g->m * 8 + (size_t)g->cout * 12; }

static int64_t min_scratch(const geom *g)
{
    /* worst case: every sub-matrix has max_slots clusters; sums one element at a time (lb = 1, or
     * the whole L for the wide int64 path), one channel per pass, plan A */
    const int32_t lb = g->wide ? g->l : 1;
    const size_t p2 = row_state_bytes(g) +
                      pass2_bytes(g, g->max_slots, (int64_t)g->max_slots * g->m, lb, 1, PLAN_A, 0, 0);
    const size_t p1 = pass1_bytes(g);
    return (int64_t)(header_bytes(g) + (p1 > p2 ? p1 : p2)) + 3; /* + 3: the kernel aligns the buffer */
}

int32_t trec_convolve_s8_get_min_buffer_size(const trec_conv_params *conv_params, const trec_hash_params *hash_params,
                                             const trec_dims *input_dims, const trec_dims *filter_dims,
                                             const trec_dims *output_dims)
{
    geom g;
    const trec_status st = make_geom(conv_params, hash_params, input_dims, filter_dims, output_dims, &g);
    if (st != TREC_SUCCESS) {
        return st;
    }
    const int64_t bytes = min_scratch(&g);
    return bytes > INT32_MAX ? TREC_NO_IMPL_ERROR : (int32_t)bytes;
}

int32_t trec_convolve_s8_get_buffer_size(const trec_conv_params *conv_params, const trec_hash_params *hash_params,
                                         const trec_dims *input_dims, const trec_dims *filter_dims,
                                         const trec_dims *output_dims)
{
    geom g;
    const trec_status st = make_geom(conv_params, hash_params, input_dims, filter_dims, output_dims, &g);
    if (st != TREC_SUCCESS) {
        return st;
    }
    /* Twice the int8 output tensor of one image (the paper's space-efficiency bar), at least the
     * minimum, at most what the fastest plan could use in the worst case. */
    const int64_t target = 2 * (int64_t)g.n * g.cout;
    const int64_t fastest = (int64_t)header_bytes(&g) + 3 + (int64_t)row_state_bytes(&g) +
                            (int64_t)pass2_bytes(&g, g.max_slots, (int64_t)g.max_slots * g.m, g.l, g.cout, PLAN_T, g.strip, 0);
    const int64_t lo = min_scratch(&g);
    int64_t bytes = target < fastest ? target : fastest;
    bytes = bytes > lo ? bytes : lo;
    return bytes > INT32_MAX ? TREC_NO_IMPL_ERROR : (int32_t)bytes;
}

/* ================================================================================================
 * small helpers
 * ============================================================================================== */
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

/* round half away from zero of num / den, den > 0 (TFLM's average-pool rounding) */
static int32_t div_round64(int64_t num, int32_t den)
{
    const int64_t half = den / 2;
    return (int32_t)(num > 0 ? (num + half) / den : (num - half) / den);
}

TREC_INLINE int32_t div_round32(int32_t num, int32_t den)
{
    if (den == 1) {
        return num;
    }
    const int32_t half = den >> 1;
    return num > 0 ? (num + half) / den : (num - half) / den;
}

/* ================================================================================================
 * hashing
 * ============================================================================================== */
/* off[m][h] (docs/OP_SPEC.md step 3), rows of hq (0 past hbits); m_count offsets (1 on the strip
 * path: all equal) */
static void hash_offsets(const geom *g, const int8_t *input, const int8_t *hash, int32_t m_count, int32_t *off,
                         int32_t *chan_sum)
{
    const int32_t hb = g->hbits;
    memset(off, 0, (size_t)m_count * g->hq * sizeof(int32_t));
    if (g->center == TREC_HASH_CENTER_NONE) {
        return;
    }
    const int32_t pixels = g->in_h * g->in_w;
    memset(chan_sum, 0, (size_t)g->cin * sizeof(int32_t));
    const int8_t *p = input;
    for (int32_t i = 0; i < pixels; i++) {
        for (int32_t c = 0; c < g->cin; c++) {
            chan_sum[c] += *p++;
        }
    }
    for (int32_t c = 0; c < g->cin; c++) {
        chan_sum[c] += pixels * g->input_offset;
    }
    for (int32_t m = 0; m < m_count; m++) {
        for (int32_t h = 0; h < hb; h++) {
            int64_t num = 0;
            for (int32_t l = 0; l < g->l && m * g->l + l < g->k; l++) {
                num += (int64_t)chan_sum[(m * g->l + l) % g->cin] * hash[l * hb + h];
            }
            off[m * g->hq + h] = -div_round64(num, pixels);
        }
    }
}

/* Hash vectors as int16 in quads of hash bits (ws_index(la / 2, h, l), the filter slices' layout):
 * each word of a sub-vector meets four bits' words in a row; zero past L and past hbits. */
static void transpose_hash(const geom *g, const int8_t *hash, int16_t *rt)
{
    for (int32_t h = 0; h < g->hq; h++) {
        for (int32_t l = 0; l < g->la; l++) {
            rt[ws_index(g->la / 2, h, l)] = (int16_t)(h < g->hbits && l < g->l ? hash[l * g->hbits + h] : 0);
        }
    }
}

/* code of one sub-vector x (la int16, the last odd element times a zero hash entry):
 * bit h set when sum_l x[l] * R[l][h] + off[h] > 0. Four bits per pass over x: one load of x and
 * four SMLAD per word. */
HOT static int32_t hash_code(const int16_t *x, const int16_t *rt, const int32_t *off, int32_t la, int32_t hbits)
{
    const int32_t pairs = la >> 1;
    int32_t code = 0;
    for (int32_t h0 = 0; h0 < hbits; h0 += 4, off += 4) {
        int32_t a0 = off[0], a1 = off[1], a2 = off[2], a3 = off[3];
#if TREC_DSP
        /* x may start at an odd int16 index; pairs are read unaligned (allowed on Armv7E-M) */
        const int32_t *w = (const int32_t *)(const void *)(rt + (size_t)h0 * la);
        for (int32_t p = 0; p < pairs; p++, w += 4) {
            const int32_t xv = trec_read_s16x2(x + 2 * p);
            a0 = trec_smlad(xv, w[0], a0);
            a1 = trec_smlad(xv, w[1], a1);
            a2 = trec_smlad(xv, w[2], a2);
            a3 = trec_smlad(xv, w[3], a3);
        }
#else
        for (int32_t l = 0; l < la; l++) {
            a0 += x[l] * rt[ws_index(pairs, h0, l)];
            a1 += x[l] * rt[ws_index(pairs, h0 + 1, l)];
            a2 += x[l] * rt[ws_index(pairs, h0 + 2, l)];
            a3 += x[l] * rt[ws_index(pairs, h0 + 3, l)];
        }
#endif
        code |= ((a0 > 0) | (a1 > 0) << 1 | (a2 > 0) << 2 | (a3 > 0) << 3) << h0;
    }
    return code & (int32_t)((1u << hbits) - 1u);
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

/* hash_code of two sub-vectors x0 and x1 (neighbouring strips of a row), sharing the hash words */
HOT static void hash_code2(const int16_t *x0, const int16_t *x1, const int16_t *rt, const int32_t *off, int32_t la,
                           int32_t hbits, int32_t *code0, int32_t *code1)
{
    const int32_t pairs = la >> 1;
    int32_t c0 = 0, c1 = 0;
    for (int32_t h0 = 0; h0 < hbits; h0 += 4, off += 4) {
        int32_t a[4] = {off[0], off[1], off[2], off[3]}, b[4] = {off[0], off[1], off[2], off[3]};
        dot_2x4(x0, x1, (const int32_t *)(const void *)(rt + (size_t)h0 * la), pairs, a, b);
        c0 |= ((a[0] > 0) | (a[1] > 0) << 1 | (a[2] > 0) << 2 | (a[3] > 0) << 3) << h0;
        c1 |= ((b[0] > 0) | (b[1] > 0) << 1 | (b[2] > 0) << 2 | (b[3] > 0) << 3) << h0;
    }
    const int32_t mask = (int32_t)((1u << hbits) - 1u);
    *code0 = c0 & mask;
    *code1 = c1 & mask;
}
#endif

/* Replace codes by dense ids over `count` cells (stride `step`); returns the number of ids. */
HOT static int32_t compact(const geom *g, uint8_t *cells, size_t first, size_t step, int32_t count, void *map_mem)
{
    int32_t next = 0;
    if (g->direct) {
        uint16_t *map = (uint16_t *)map_mem;
        memset(map, 0xFF, (size_t)g->map_cap * 2);
        size_t i = first;
        for (int32_t c = 0; c < count; c++, i += step) {
            const int32_t code = read_id(cells, g->id_size, i);
            uint32_t id = map[code];
            if (id == MAP_EMPTY) {
                id = (uint32_t)next++;
                map[code] = (uint16_t)id;
            }
            write_id(cells, g->id_size, i, (int32_t)id);
        }
        return next;
    }
    uint16_t *map = (uint16_t *)map_mem; /* map[2s] = code, map[2s + 1] = id */
    const uint32_t mask = (uint32_t)g->map_cap - 1u;
    memset(map, 0xFF, (size_t)g->map_cap * 4);
    size_t i = first;
    for (int32_t c = 0; c < count; c++, i += step) {
        const uint32_t code = (uint32_t)read_id(cells, g->id_size, i);
        uint32_t s = (code * 0x9E3779B1u) >> 16 & mask;
        while (map[2 * s + 1] != MAP_EMPTY && map[2 * s] != code) {
            s = (s + 1u) & mask;
        }
        if (map[2 * s + 1] == MAP_EMPTY) {
            map[2 * s] = (uint16_t)code;
            map[2 * s + 1] = (uint16_t)next++;
        }
        write_id(cells, g->id_size, i, map[2 * s + 1]);
    }
    return next;
}

/* im2col row of output pixel (oy, ox): row[0..kp] int16 with the input offset applied, 0 for
 * padding, for the zero extension k >= K and for one element past the end (odd-L tail read). */
static void gather_row(const geom *g, const int8_t *input, int32_t oy, int32_t ox, int16_t *row)
{
    int16_t *dst = row;
    const int32_t cin = g->cin;
    for (int32_t ky = 0; ky < g->kh; ky++) {
        const int32_t iy = oy * g->stride_h - g->pad_h + ky * g->dil_h;
        for (int32_t kx = 0; kx < g->kw; kx++) {
            const int32_t ix = ox * g->stride_w - g->pad_w + kx * g->dil_w;
            if (iy < 0 || iy >= g->in_h || ix < 0 || ix >= g->in_w) {
                memset(dst, 0, (size_t)cin * sizeof(int16_t));
            } else {
                trec_s8_to_s16_offset(input + ((size_t)iy * g->in_w + ix) * cin, dst, cin, g->input_offset);
            }
            dst += cin;
        }
    }
    for (int32_t k = g->k; k <= g->kp; k++) {
        row[k] = 0;
    }
}

/* General path: ids[n][m] for every row and sub-matrix; slots[m] clusters each. */
static void hash_rows(const geom *g, const int8_t *input, const int8_t *hash, uint8_t *ids, int32_t *slots,
                      uint8_t *work)
{
    int16_t *row = (int16_t *)(void *)work;
    int16_t *rt = (int16_t *)(void *)(work + align4((size_t)(g->kp + 1) * 2));
    int32_t *off = (int32_t *)(void *)((uint8_t *)rt + (size_t)g->hq * g->la * 2);
    int32_t *chan_sum = off + (size_t)g->m * g->hq;
    void *map = (void *)(chan_sum + g->cin);
    transpose_hash(g, hash, rt);
    hash_offsets(g, input, hash, g->m, off, chan_sum);
    size_t i = 0;
    for (int32_t oy = 0; oy < g->out_h; oy++) {
        for (int32_t ox = 0; ox < g->out_w; ox++) {
            gather_row(g, input, oy, ox, row);
            for (int32_t m = 0; m < g->m; m++, i++) {
                write_id(ids, g->id_size, i, hash_code(row + m * g->l, rt, off + m * g->hq, g->la, g->hbits));
            }
        }
    }
    PROFILE_MARK(PHASE_CENTROIDS);
    for (int32_t m = 0; m < g->m; m++) {
        slots[m] = compact(g, ids, (size_t)m, (size_t)g->m, g->n, map);
    }
}

/* Strip path: vector of the strip at position (y, x) of the grid: pixels (y - pad_h,
 * x - pad_w + t*dil_w), t < j, as int16 with the input offset; 0 outside the image. */
static void strip_vector(const geom *g, const int8_t *input, int32_t y, int32_t x, int16_t *v)
{
    const int32_t iy = y - g->pad_h;
    for (int32_t t = 0; t < g->j; t++, v += g->cin) {
        const int32_t ix = x - g->pad_w + t * g->dil_w;
        if (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w) {
            trec_s8_to_s16_offset(input + ((size_t)iy * g->in_w + ix) * g->cin, v, g->cin, g->input_offset);
        } else {
            memset(v, 0, (size_t)g->cin * sizeof(int16_t));
        }
    }
}

/* Strip path: ids[y][x] = cluster id of the strip at every position of the grid; the same ids
 * serve every sub-matrix. Returns the number of ids. */
static int32_t hash_strips(const geom *g, const int8_t *input, const int8_t *hash, uint8_t *ids, uint8_t *work)
{
    const int32_t row_elems = strip_row_elems(g);
    int16_t *v = (int16_t *)(void *)work;
    int16_t *rt = (int16_t *)(void *)(work + align4((size_t)(row_elems + 1) * 2));
    int32_t *off = (int32_t *)(void *)((uint8_t *)rt + (size_t)g->hq * g->la * 2);
    int32_t *chan_sum = off + g->hq;
    void *map = (void *)(chan_sum + g->cin);
    transpose_hash(g, hash, rt);
    hash_offsets(g, input, hash, 1, off, chan_sum);
    size_t i = 0;
    if (g->dil_w == 1) {
        /* one int16 copy of each padded row; a strip is then a run of it (the odd-L tail element
         * read past a strip meets a zero hash entry) */
        const int32_t cin = g->cin, left = TREC_MIN(g->pad_w, g->pw + g->j - 1);
        const int32_t inside = TREC_MAX(0, TREC_MIN(g->in_w, g->pw + g->j - 1 - g->pad_w));
        memset(v, 0, (size_t)(row_elems + 1) * 2);
        int32_t zero_code = -1; /* code of an all-padding strip (rows outside the image) */
        for (int32_t y = 0; y < g->ph; y++) {
            const int32_t iy = y - g->pad_h;
            if (iy < 0 || iy >= g->in_h) {
                if (zero_code < 0) {
                    memset(v, 0, (size_t)row_elems * 2);
                    zero_code = hash_code(v, rt, off, g->la, g->hbits);
                }
                for (int32_t x = 0; x < g->pw; x++, i++) {
                    write_id(ids, g->id_size, i, zero_code);
                }
                continue;
            }
            memset(v, 0, (size_t)left * cin * 2);
            trec_s8_to_s16_offset(input + (size_t)iy * g->in_w * cin, v + (size_t)left * cin, inside * cin,
                                  g->input_offset);
            memset(v + (size_t)(left + inside) * cin, 0, (size_t)(row_elems - (left + inside) * cin) * 2);
            int32_t x = 0;
#if TREC_DSP
            for (; x + 1 < g->pw; x += 2, i += 2) {
                int32_t c0, c1;
                hash_code2(v + (size_t)x * cin, v + (size_t)(x + 1) * cin, rt, off, g->la, g->hbits, &c0, &c1);
                write_id(ids, g->id_size, i, c0);
                write_id(ids, g->id_size, i + 1, c1);
            }
#endif
            for (; x < g->pw; x++, i++) {
                write_id(ids, g->id_size, i, hash_code(v + (size_t)x * cin, rt, off, g->la, g->hbits));
            }
        }
    } else {
        v[g->l] = 0; /* odd-L tail element, times a zero hash entry */
        for (int32_t y = 0; y < g->ph; y++) {
            for (int32_t x = 0; x < g->pw; x++, i++) {
                strip_vector(g, input, y, x, v);
                write_id(ids, g->id_size, i, hash_code(v, rt, off, g->la, g->hbits));
            }
        }
    }
    PROFILE_MARK(PHASE_CENTROIDS);
    return compact(g, ids, 0, 1, g->ph * g->pw, map);
}

/* ================================================================================================
 * cluster sums of sub-matrix m, elements [l0, l0 + lb): sums[s][j] (int32, x - zp), counts[s]
 * ============================================================================================== */
/* A rectangle of the strip path's position grid, [y0, y1) x [x0, x1). */
typedef struct {
    int32_t y0, y1, x0, x1;
} rect;

/* grid position of sub-matrix m's strip for row (0, 0); row (oy, ox) adds (oy*sh, ox*sw) */
static void strip_origin(const geom *g, int32_t m, int32_t *y, int32_t *x)
{
    const int32_t per_row = g->kw / g->j;
    const int32_t ky = m / per_row;
    *y = ky * g->dil_h;
    *x = (m - ky * per_row) * g->j * g->dil_w;
}

/* The parts of rectangle a outside rectangle b (at most 4 rectangles). */
static int32_t rect_minus(rect a, rect b, rect *out)
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

static rect window_of(const geom *g, int32_t m)
{
    int32_t y0, x0;
    strip_origin(g, m, &y0, &x0);
    const rect w = {y0, y0 + g->out_h, x0, x0 + g->out_w};
    return w;
}

/* Sum the strips at the positions of r into sums[id][0..lb) (elements [l0, l0 + lb) of each strip,
 * raw int8 values, sign +1 or -1) and count members and in-image members per strip pixel:
 * counts[id * (j + 1)] = members, counts[id * (j + 1) + 1 + t] = members whose pixel t is in the image. */
HOT static void add_strips(const geom *g, const int8_t *input, const uint8_t *ids, rect r, int32_t l0, int32_t lb,
                       int32_t sign, int32_t *sums, int32_t *counts)
{
    const int32_t cps = g->j + 1;
    if (l0 == 0 && lb == g->l && g->dil_w == 1) {
        /* whole strips of neighbouring pixels: the in-image part is one run of the input row */
        const int32_t cin = g->cin, j = g->j;
        for (int32_t y = r.y0; y < r.y1; y++) {
            const int32_t iy = y - g->pad_h;
            const int row_in = iy >= 0 && iy < g->in_h;
            const int8_t *row = input + (size_t)iy * g->in_w * cin;
            for (int32_t x = r.x0; x < r.x1; x++) {
                const int32_t s = read_id(ids, g->id_size, (size_t)y * g->pw + x);
                int32_t *cnt = counts + (size_t)s * cps;
                cnt[0] += sign;
                const int32_t ix0 = x - g->pad_w;
                const int32_t t0 = ix0 < 0 ? -ix0 : 0, t1 = TREC_MIN(j, g->in_w - ix0);
                if (!row_in || t0 >= t1) {
                    continue;
                }
                for (int32_t t = t0; t < t1; t++) {
                    cnt[1 + t] += sign;
                }
                const int8_t *src = row + (size_t)(ix0 + t0) * cin;
                int32_t *dst = sums + (size_t)s * lb + (size_t)t0 * cin;
                const int32_t n = (t1 - t0) * cin;
                if (sign > 0) {
                    for (int32_t e = 0; e < n; e++) {
                        dst[e] += src[e];
                    }
                } else {
                    for (int32_t e = 0; e < n; e++) {
                        dst[e] -= src[e];
                    }
                }
            }
        }
        return;
    }
    for (int32_t y = r.y0; y < r.y1; y++) {
        const int32_t iy = y - g->pad_h;
        const int row_in = iy >= 0 && iy < g->in_h;
        for (int32_t x = r.x0; x < r.x1; x++) {
            const int32_t s = read_id(ids, g->id_size, (size_t)y * g->pw + x);
            int32_t *cnt = counts + (size_t)s * cps;
            cnt[0] += sign;
            if (!row_in) {
                continue;
            }
            int32_t *acc = sums + (size_t)s * lb;
            for (int32_t t = 0; t < g->j; t++) {
                const int32_t ix = x - g->pad_w + t * g->dil_w;
                if (ix < 0 || ix >= g->in_w) {
                    continue;
                }
                cnt[1 + t] += sign;
                /* elements of pixel t inside [l0, l0 + lb) */
                const int32_t e0 = TREC_MAX(t * g->cin, l0), e1 = TREC_MIN((t + 1) * g->cin, l0 + lb);
                if (e0 >= e1) {
                    continue;
                }
                const int8_t *src = input + ((size_t)iy * g->in_w + ix) * g->cin + (e0 - t * g->cin);
                int32_t *dst = acc + (e0 - l0);
                const int32_t n = e1 - e0;
                if (sign > 0) {
                    for (int32_t e = 0; e < n; e++) {
                        dst[e] += src[e];
                    }
                } else {
                    for (int32_t e = 0; e < n; e++) {
                        dst[e] -= src[e];
                    }
                }
            }
        }
    }
}

/* Stride 1: turn sub-matrix prev's raw sums and counts into sub-matrix m's by removing the
 * positions of prev's window outside m's and adding those of m's outside prev's (a row or a column
 * between neighbouring sub-matrices instead of a whole window). */
static void move_window(const geom *g, const int8_t *input, const uint8_t *ids, int32_t prev, int32_t m,
                        int32_t *sums, int32_t *counts)
{
    const rect v = window_of(g, prev), w = window_of(g, m);
    rect parts[4];
    const int32_t n_out = rect_minus(v, w, parts);
    for (int32_t i = 0; i < n_out; i++) {
        add_strips(g, input, ids, parts[i], 0, g->l, -1, sums, counts);
    }
    const int32_t n_in = rect_minus(w, v, parts);
    for (int32_t i = 0; i < n_in; i++) {
        add_strips(g, input, ids, parts[i], 0, g->l, +1, sums, counts);
    }
}

/* sums[s][e] += sign * offset * (in-image members of the strip pixel holding element l0 + e):
 * turns raw int8 sums into sums of x - zp, padding elements counting 0 */
HOT static void strip_offsets(const geom *g, int32_t slots, int32_t l0, int32_t lb, const int32_t *counts, int32_t *sums,
                          int32_t sign)
{
    const int32_t cps = g->j + 1;
    for (int32_t s = 0; s < slots; s++) {
        const int32_t *cnt = counts + (size_t)s * cps;
        int32_t *dst = sums + (size_t)s * lb;
        for (int32_t t = 0; t < g->j; t++) {
            const int32_t e0 = TREC_MAX(t * g->cin, l0), e1 = TREC_MIN((t + 1) * g->cin, l0 + lb);
            const int32_t add = sign * cnt[1 + t] * g->input_offset;
            for (int32_t e = e0; e < e1; e++) {
                dst[e - l0] += add;
            }
        }
    }
}

/* Strip path sums of sub-matrix m, elements [l0, l0 + lb): sums[s][.] of x - zp, counts as in
 * add_strips. incremental (stride 1, whole sub-vectors): sums and counts hold sub-matrix m - 1's
 * raw sums when m > 0 (build_table takes the zero point out again after the products). */
static void strip_sums(const geom *g, const int8_t *input, const uint8_t *ids, int32_t m, int32_t slots, int32_t l0,
                       int32_t lb, int incremental, int32_t *sums, int32_t *counts)
{
    const int32_t cps = g->j + 1;
    int32_t y0, x0;
    strip_origin(g, m, &y0, &x0);
    if (g->stride_h == 1 && g->stride_w == 1) {
        const rect w = {y0, y0 + g->out_h, x0, x0 + g->out_w};
        if (incremental && m > 0) {
            move_window(g, input, ids, m - 1, m, sums, counts);
        } else {
            memset(sums, 0, (size_t)slots * lb * 4);
            memset(counts, 0, (size_t)slots * cps * 4);
            add_strips(g, input, ids, w, l0, lb, +1, sums, counts);
        }
    } else {
        memset(sums, 0, (size_t)slots * lb * 4);
        memset(counts, 0, (size_t)slots * cps * 4);
        for (int32_t oy = 0; oy < g->out_h; oy++) {
            const int32_t y = y0 + oy * g->stride_h;
            for (int32_t ox = 0; ox < g->out_w; ox++) {
                const int32_t x = x0 + ox * g->stride_w;
                const rect one = {y, y + 1, x, x + 1};
                add_strips(g, input, ids, one, l0, lb, +1, sums, counts);
            }
        }
    }
    strip_offsets(g, slots, l0, lb, counts, sums, +1);
}

/* ------------------------------------------------------------------------------------------------
 * SIMD sums (strip path, Cin a multiple of 4, DSP): raw int8 accumulated in int16 lanes, two SXTAB16
 * per four values, in the "unordered" lane order of SXTB16 ((x0,x2),(x1,x3) per group of four) which
 * products then use directly against a filter slice in the same order. int16 lanes hold the raw sum of
 * at most 256 int8 values exactly; clusters with more members of a sub-matrix are summed in int32.
 * The zero point is applied in the products: offset * sum_t (in-image members of strip pixel t) *
 * (sum of the filter over pixel t's channels).
 * ---------------------------------------------------------------------------------------------- */
#if TREC_DSP
static void products_quads(const int32_t *r0, const int32_t *r1, int32_t pairs, const int16_t *ws, int32_t blk,
                           int first, int32_t *t0, int32_t *t1);
#endif


/* visit the window positions of sub-matrix m: f(y, x) */
#define FOR_WINDOW(g, m, y, x, body)                                                                    \
    do {                                                                                               \
        int32_t y0_, x0_;                                                                              \
        strip_origin((g), (m), &y0_, &x0_);                                                            \
        for (int32_t oy_ = 0; oy_ < (g)->out_h; oy_++) {                                               \
            const int32_t y = y0_ + oy_ * (g)->stride_h;                                               \
            for (int32_t ox_ = 0; ox_ < (g)->out_w; ox_++) {                                           \
                const int32_t x = x0_ + ox_ * (g)->stride_w;                                           \
                body                                                                                   \
            }                                                                                          \
        }                                                                                              \
    } while (0)

#if TREC_DSP
HOT static void simd_accumulate(const int8_t *src, int32_t words4, int32_t *dst)
{
    for (int32_t q = 0; q < words4; q++) {
        const int32_t v = trec_read_s8x4(src + 4 * q);
        dst[2 * q] = trec_sxtab16(dst[2 * q], v);
        dst[2 * q + 1] = trec_sxtab16_ror8(dst[2 * q + 1], v);
    }
}
#endif

#if TREC_DSP
HOT static void simd_subtract(const int8_t *src, int32_t words4, int32_t *dst)
{
    for (int32_t q = 0; q < words4; q++) {
        const int32_t v = trec_read_s8x4(src + 4 * q);
        dst[2 * q] = trec_ssub16(dst[2 * q], trec_sxtb16(v));
        dst[2 * q + 1] = trec_ssub16(dst[2 * q + 1], trec_sxtb16_ror8(v));
    }
}

/* add (sign +1) or remove (-1) the strips at the positions of r: counts as in strip_sums_simd,
 * sums16 in int16 lanes (mod 2^16: exact once every cluster holds at most 256 members again) */
static void simd_strips(const geom *g, const int8_t *input, const uint8_t *ids, rect r, int32_t sign,
                        int32_t *counts, int32_t *sums16)
{
    const int32_t cps = g->j + 1, words = g->l / 2, cin = g->cin;
    for (int32_t y = r.y0; y < r.y1; y++) {
        const int32_t iy = y - g->pad_h;
        const int row_in = iy >= 0 && iy < g->in_h;
        const int8_t *row = input + (size_t)iy * g->in_w * cin;
        for (int32_t x = r.x0; x < r.x1; x++) {
            const int32_t s = read_id(ids, g->id_size, (size_t)y * g->pw + x);
            int32_t *cnt = counts + (size_t)s * cps;
            cnt[0] += sign;
            if (!row_in) {
                continue;
            }
            for (int32_t t = 0; t < g->j; t++) {
                const int32_t ix = x - g->pad_w + t * g->dil_w;
                if (ix < 0 || ix >= g->in_w) {
                    continue;
                }
                cnt[1 + t] += sign;
                int32_t *dst = sums16 + (size_t)s * words + (size_t)t * (cin / 2);
                if (sign > 0) {
                    simd_accumulate(row + (size_t)ix * cin, cin / 4, dst);
                } else {
                    simd_subtract(row + (size_t)ix * cin, cin / 4, dst);
                }
            }
        }
    }
}

#endif

/* Incremental SIMD sums: at stride 1 neighbouring sub-matrices' windows overlap in all but a row or
 * a column, so sub-matrix m's sums are sub-matrix prev's minus prev's window outside m's, plus m's
 * outside prev's. Needs every cluster of every window to fit the int16 lanes (N <= 256). */
static int simd_incremental(const geom *g) { return g->stride_h == 1 && g->stride_w == 1 && simd_big_max(g) == 0; }

/* Sums of sub-matrix m: sums16[s] (L/2 words) for clusters of <= 256 members, sums32[big[s]] (L
 * int32, natural order) otherwise; counts[s*(j+1)] members, counts[s*(j+1)+1+t] in-image members. */
static void strip_sums_simd(const geom *g, const int8_t *input, const uint8_t *ids, int32_t m, int32_t prev,
                            int32_t slots, int32_t *counts, int32_t *big, int32_t *sums16, int32_t *sums32)
{
    const int32_t cps = g->j + 1, words = g->l / 2, cin = g->cin;
#if TREC_DSP
    if (simd_incremental(g)) {
        const rect w = window_of(g, m);
        if (prev < 0) {
            memset(counts, 0, (size_t)slots * cps * 4);
            memset(sums16, 0, (size_t)slots * words * 4);
            simd_strips(g, input, ids, w, +1, counts, sums16);
        } else {
            const rect v = window_of(g, prev);
            rect parts[4];
            const int32_t n_out = rect_minus(v, w, parts);
            for (int32_t i = 0; i < n_out; i++) {
                simd_strips(g, input, ids, parts[i], -1, counts, sums16);
            }
            const int32_t n_in = rect_minus(w, v, parts);
            for (int32_t i = 0; i < n_in; i++) {
                simd_strips(g, input, ids, parts[i], +1, counts, sums16);
            }
        }
        for (int32_t s = 0; s < slots; s++) {
            big[s] = -1;
        }
        (void)sums32;
        return;
    }
#endif
    memset(counts, 0, (size_t)slots * cps * 4);
    FOR_WINDOW(g, m, y, x, { counts[(size_t)read_id(ids, g->id_size, (size_t)y * g->pw + x) * cps]++; });
    int32_t n_big = 0;
    for (int32_t s = 0; s < slots; s++) {
        big[s] = counts[(size_t)s * cps] > SIMD_LANE_MEMBERS ? n_big++ : -1;
    }
    memset(sums16, 0, (size_t)slots * words * 4);
    if (n_big) {
        memset(sums32, 0, (size_t)n_big * g->l * 4);
    }
#if TREC_DSP
    FOR_WINDOW(g, m, y, x, {
        const int32_t iy = y - g->pad_h;
        if (iy >= 0 && iy < g->in_h) {
            const int32_t s = read_id(ids, g->id_size, (size_t)y * g->pw + x);
            int32_t *cnt = counts + (size_t)s * cps + 1;
            const int8_t *row = input + (size_t)iy * g->in_w * cin;
            for (int32_t t = 0; t < g->j; t++) {
                const int32_t ix = x - g->pad_w + t * g->dil_w;
                if (ix < 0 || ix >= g->in_w) {
                    continue;
                }
                cnt[t]++;
                const int8_t *src = row + (size_t)ix * cin;
                if (big[s] < 0) {
                    simd_accumulate(src, cin / 4, sums16 + (size_t)s * words + (size_t)t * (cin / 2));
                } else {
                    int32_t *dst = sums32 + (size_t)big[s] * g->l + (size_t)t * cin;
                    for (int32_t c = 0; c < cin; c++) {
                        dst[c] += src[c];
                    }
                }
            }
        }
    });
#else
    (void)input;
    (void)cin;
    (void)prev;
#endif
}

/* filter slice in the SIMD lane order, channel quads (ws_index), and per strip pixel its sum
 * times the input offset (wsum[j][t]) */
static void filter_slice_simd(const geom *g, const int8_t *filter, int32_t m, int32_t c0, int32_t blk, int16_t *ws,
                              int32_t *wsum)
{
#if TREC_DSP
    /* L is a multiple of 4 here: SXTB16 converts four weights at a time into the lane order
     * ((x0, x2), (x1, x3)), and SMLAD against (1, 1) sums the converted pairs */
    const int32_t ones = trec_pack_s16x2(1, 1), pairs = g->l / 2, groups = g->cin / 4;
    int32_t *ws32 = (int32_t *)(void *)ws;
    for (int32_t j = 0; j < blk_quads(blk); j++) {
        int32_t *d = ws32 + (size_t)(j >> 2) * pairs * 4 + (j & 3);
        if (j >= blk) {
            for (int32_t p = 0; p < pairs; p++) {
                d[4 * p] = 0;
            }
            continue;
        }
        const int8_t *w = filter + (size_t)(c0 + j) * g->k + (size_t)m * g->l;
        for (int32_t t = 0; t < g->j; t++) {
            int32_t acc = 0;
            for (int32_t q = t * groups; q < (t + 1) * groups; q++) {
                const int32_t v = trec_read_s8x4(w + 4 * q);
                const int32_t even = trec_sxtb16(v), odd = trec_sxtb16_ror8(v);
                d[8 * q] = even;
                d[8 * q + 4] = odd;
                acc = trec_smlad(odd, ones, trec_smlad(even, ones, acc));
            }
            wsum[(size_t)j * g->j + t] = acc * g->input_offset;
        }
    }
#else
    (void)g; (void)filter; (void)m; (void)c0; (void)blk; (void)ws; (void)wsum;
#endif
}

static void products_simd(const geom *g, int32_t slots, const int32_t *counts, const int32_t *big, int32_t *sums16,
                          int32_t *sums32, const int16_t *ws, const int32_t *wsum, int32_t blk, int32_t *members,
                          int32_t *table)
{
#if TREC_DSP
    const int32_t cps = g->j + 1, words = g->l / 2;
    int32_t pending = -1;
    for (int32_t s = 0; s < slots; s++) {
        members[s] = counts[(size_t)s * cps];
        if (members[s] == 0) {
            continue;
        }
        int32_t *t = table + (size_t)s * blk;
        if (big[s] >= 0) {
            /* int32 sums: natural order against the lane-ordered slice */
            const int32_t *sv = sums32 + (size_t)big[s] * g->l;
            for (int32_t jj = 0; jj < blk; jj++) {
                int32_t acc = 0;
                for (int32_t e = 0; e < g->l; e++) {
                    acc += sv[e] * ws[ws_index(words, jj, (e & ~3) + TREC_UNORDERED_SLOT(e & 3))];
                }
                t[jj] = acc;
            }
            continue;
        }
        if (pending < 0) {
            pending = s;
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
        const int32_t c = members[s];
        if (c == 0) {
            continue;
        }
        const int32_t *cnt = counts + (size_t)s * cps + 1;
        int32_t *t = table + (size_t)s * blk;
        if (g->j == 1) {
            const int32_t c0 = cnt[0];
            for (int32_t jj = 0; jj < blk; jj++) {
                t[jj] = div_round32(t[jj] + c0 * wsum[jj], c);
            }
            continue;
        }
        for (int32_t jj = 0; jj < blk; jj++) {
            int32_t corr = 0;
            for (int32_t p = 0; p < g->j; p++) {
                corr += cnt[p] * wsum[(size_t)jj * g->j + p];
            }
            t[jj] = div_round32(t[jj] + corr, c);
        }
    }
#else
    (void)g; (void)slots; (void)counts; (void)big; (void)sums16; (void)sums32; (void)ws; (void)wsum; (void)blk;
    (void)members; (void)table;
#endif
}

/* General path sums of sub-matrix m over elements [l0, l0 + lb) of its sub-vectors. */
HOT static void row_sums(const geom *g, const int8_t *input, const uint8_t *ids, int32_t m, int32_t slots, int32_t l0,
                     int32_t lb, int32_t *sums, int32_t *counts)
{
    memset(sums, 0, (size_t)slots * lb * 4);
    if (l0 == 0) {
        memset(counts, 0, (size_t)slots * 4);
    }
    const int32_t k0 = m * g->l + l0;
    const int32_t k1 = TREC_MIN(k0 + lb, g->k);
    const int32_t cin = g->cin;
    /* the taps this block covers: one run of consecutive channels per tap */
    int32_t n = 0;
    for (int32_t oy = 0; oy < g->out_h; oy++) {
        const int32_t iy0 = oy * g->stride_h - g->pad_h;
        for (int32_t ox = 0; ox < g->out_w; ox++, n++) {
            const int32_t ix0 = ox * g->stride_w - g->pad_w;
            const int32_t s = read_id(ids, g->id_size, (size_t)n * g->m + m);
            if (l0 == 0) {
                counts[s]++;
            }
            int32_t *acc = sums + (size_t)s * lb - k0;
            int32_t k = k0;
            int32_t tap = k0 / cin;
            int32_t ci = k0 - tap * cin;
            int32_t ky = tap / g->kw;
            int32_t kx = tap - ky * g->kw;
            while (k < k1) {
                const int32_t run = TREC_MIN(cin - ci, k1 - k);
                const int32_t iy = iy0 + ky * g->dil_h;
                const int32_t ix = ix0 + kx * g->dil_w;
                if (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w) {
                    const int8_t *src = input + ((size_t)iy * g->in_w + ix) * cin + ci;
                    int32_t *dst = acc + k;
                    for (int32_t j = 0; j < run; j++) {
                        dst[j] += src[j] + g->input_offset;
                    }
                }
                k += run;
                ci = 0;
                if (++kx == g->kw) {
                    kx = 0;
                    ky++;
                }
            }
        }
    }
}

/* ================================================================================================
 * products: table[s][j] (+)= sums[s][0..lb) . filter[c0 + j][m*L + l0 .. + lb)
 * ============================================================================================== */
/* Filter slice as int16 in channel quads (ws_index), rows padded to even length lba. */
static void filter_slice(const geom *g, const int8_t *filter, int32_t m, int32_t l0, int32_t lb, int32_t c0,
                         int32_t blk, int16_t *ws)
{
    const int32_t lba = (lb + 1) & ~1, pairs = lba / 2;
    /* valid elements of this slice: inside the block and below K (zero extension) */
    const int32_t valid = TREC_MAX(0, TREC_MIN(lb, g->k - m * g->l - l0));
    for (int32_t j = 0; j < blk_quads(blk); j++) {
        const int8_t *w = filter + (size_t)(c0 + j) * g->k + (size_t)m * g->l + l0;
        int16_t *d = ws + ws_index(pairs, j, 0); /* element l at d[(l >> 1) * 8 + (l & 1)] */
        const int32_t n = j < blk ? valid : 0;
        int32_t l = 0;
        for (; l < n; l++) {
            d[(l >> 1) * 8 + (l & 1)] = w[l];
        }
        for (; l < lba; l++) {
            d[(l >> 1) * 8 + (l & 1)] = 0;
        }
    }
}

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
HOT static void products_quads(const int32_t *r0, const int32_t *r1, int32_t pairs, const int16_t *ws, int32_t blk,
                               int first, int32_t *t0, int32_t *t1)
{
    const int32_t *wq = (const int32_t *)(const void *)ws;
    for (int32_t j = 0; j < blk; j += 4, wq += (size_t)pairs * 4) {
        const int32_t n = TREC_MIN(4, blk - j);
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        if (r1 != NULL) {
            int32_t a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
            dot_2x4((const int16_t *)(const void *)r0, (const int16_t *)(const void *)r1, wq, pairs, a, b);
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
HOT static void accumulate_products(int32_t *sums, int32_t *packed_buf, int32_t slots, const int32_t *counts, int32_t lb,
                                const int16_t *ws, int32_t blk, int first, int32_t *table)
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
        int32_t fits = 1;
        for (int32_t l = 0; l < lb && fits; l++) {
            fits = sv[l] >= -32768 && sv[l] <= 32767;
        }
        int32_t *t = table + (size_t)s * blk;
        if (!fits) {
            for (int32_t j = 0; j < blk; j++) {
                int32_t acc = first ? 0 : t[j];
                for (int32_t l = 0; l < lb; l++) {
                    acc += sv[l] * ws[ws_index(pairs, j, l)];
                }
                t[j] = acc;
            }
            continue;
        }
        int32_t *row = packed_buf + (size_t)s * pairs;
        for (int32_t p = 0; p < pairs; p++) {
            const int32_t lo = sv[2 * p];
            const int32_t hi = 2 * p + 1 < lb ? sv[2 * p + 1] : 0;
            row[p] = trec_pack_s16x2(lo, hi);
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
                acc += sv[l] * ws[ws_index(lba / 2, j, l)];
            }
            t[j] = acc;
        }
    }
#endif
}

/* wide path (int64 dot products): whole sub-vectors only */
static void products_wide(const int32_t *sums, int32_t slots, const int32_t *counts, int32_t l, const int16_t *ws,
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
                acc += (int64_t)sums[(size_t)s * l + i] * ws[ws_index(la / 2, j, i)];
            }
            table[(size_t)s * blk + j] = div_round64(acc, counts[s]);
        }
    }
}

HOT static void divide_table(int32_t *table, int32_t slots, const int32_t *counts, int32_t blk)
{
    for (int32_t s = 0; s < slots; s++) {
        const int32_t c = counts[s];
        int32_t *t = table + (size_t)s * blk;
        if (c <= 1) {
            continue;
        }
        for (int32_t j = 0; j < blk; j++) {
            t[j] = div_round32(t[j], c);
        }
    }
}

/* ================================================================================================
 * plans
 * ============================================================================================== */
typedef struct {
    int kind;        /* PLAN_A, PLAN_A2 or PLAN_T */
    int32_t blk;     /* channels per pass */
    int32_t lb;      /* sums block length */
    int incremental; /* strip path, stride 1, scalar: sums kept whole and moved from window to window */
    int simd;        /* strip path, Cin % 4 == 0: int16-lane sums (lb == L) */
} plan;

/* Instruction estimate of a plan, only to rank plans (per-operation costs measured on Cortex-M7
 * with -Ofast): every pass re-derives the sums (~4 per element gathered, ~2 with SIMD lanes);
 * products ~1 per multiply-accumulate plus ~12 per (cluster, channel, sums block); the scatter
 * ~3.5 per (row, sub-matrix, channel) in registers (plan T) and ~4.5 through memory (plan A; ~4
 * with two tables per pass, A2).
 * On the six benchmark layers it picks the fastest of the plans that fit (checked by forcing each
 * plan and mode in turn). */
static int64_t plan_cost(const geom *g, const plan *p, int64_t gather_per_pass, int64_t slots_tot)
{
    if (p->simd) {
        gather_per_pass = gather_per_pass * 2 / 4; /* ~2 per element instead of ~4 */
    }
    const int64_t passes = (g->cout + p->blk - 1) / p->blk;
    const int64_t blocks = (g->l + p->lb - 1) / p->lb;
    const int64_t products = slots_tot * g->cout * (g->l + 12 * blocks);
    const int64_t scatter = (int64_t)g->n * g->m * g->cout * (p->kind == PLAN_T ? 35 : p->kind == PLAN_A2 ? 40 : 45) / 10;
    return passes * gather_per_pass * 4 + products + scatter;
}

/* Largest channel chunk for sums blocks of lb elements in `avail` bytes; 0 if none fits. */
static int32_t fit_blk(const geom *g, size_t avail, int32_t slots_max, int64_t slots_tot, int kind, int32_t lb,
                       int incremental, int simd)
{
    const size_t base = pass2_bytes(g, slots_max, slots_tot, lb, 0, kind, incremental, simd);
    /* linear in blk for multiples of 4 (the filter slice is kept in whole channel quads) */
    const size_t per = (pass2_bytes(g, slots_max, slots_tot, lb, 4, kind, incremental, simd) - base + 3) / 4;
    if (avail < base + per) {
        return 0;
    }
    size_t blk = (avail - base) / per;
    /* whole channel quads unless one pass takes every channel (the slice pads to a quad) */
    blk = blk >= (size_t)g->cout ? (size_t)g->cout : (blk >= 4 ? blk & ~(size_t)3 : blk);
    while (blk > 0 && pass2_bytes(g, slots_max, slots_tot, lb, (int32_t)blk, kind, incremental, simd) > avail) {
        blk--;
    }
    return (int32_t)blk;
}

/* ================================================================================================
 * one image
 * ============================================================================================== */
typedef struct {
    const int8_t *filter;
    const int32_t *bias;
    const int32_t *mult;
    const int32_t *shift;
} weights;

/* Index of row (oy, ox)'s id for sub-matrix m: row_base(oy, ox) + id_off[m]. */
TREC_INLINE size_t row_base(const geom *g, int32_t oy, int32_t ox)
{
    if (g->strip) {
        return (size_t)oy * g->stride_h * g->pw + (size_t)ox * g->stride_w;
    }
    return ((size_t)oy * g->out_w + ox) * g->m;
}

/* Pass-2 buffers. */
typedef struct {
    int32_t *members;     /* members per cluster of the current sub-matrix */
    int32_t *counts;      /* strip path: [members, in-image members per strip pixel] per cluster */
    int32_t *sums;
    int32_t *packed;      /* where products pack int16 sums (sums itself unless they must survive) */
    int32_t *big;         /* SIMD: big-cluster index per cluster, or -1 */
    int32_t *sums32;      /* SIMD: int32 sums of big clusters */
    int32_t *wsum;        /* SIMD: filter sums per strip pixel */
    int16_t *ws;
    int32_t *tables;
} pass2;

/* one sub-matrix's table for the channels [c0, c0 + blk); with `clusters`, adds the number of
 * clusters the sub-matrix has (ids with members in its window) */
static void build_table_only(const geom *g, const int8_t *input, const uint8_t *ids, int32_t m, int32_t slots,
                             const plan *p, const pass2 *b, const int8_t *filter, int32_t c0, int32_t blk,
                             int32_t *table)
{
    if (p->simd) {
        PROFILE_MARK(PHASE_CENTROIDS);
        strip_sums_simd(g, input, ids, m, m - 1, slots, b->counts, b->big, b->sums, b->sums32);
        PROFILE_MARK(PHASE_PRODUCTS);
        filter_slice_simd(g, filter, m, c0, blk, b->ws, b->wsum);
        products_simd(g, slots, b->counts, b->big, b->sums, b->sums32, b->ws, b->wsum, blk, b->members, table);
        return;
    }
    for (int32_t l0 = 0; l0 < g->l; l0 += p->lb) {
        const int32_t lb = TREC_MIN(p->lb, g->l - l0);
        PROFILE_MARK(PHASE_CENTROIDS);
        if (g->strip) {
            strip_sums(g, input, ids, m, slots, l0, lb, p->incremental, b->sums, b->counts);
            for (int32_t s = 0; s < slots; s++) {
                b->members[s] = b->counts[(size_t)s * (g->j + 1)];
            }
        } else {
            row_sums(g, input, ids, m, slots, l0, lb, b->sums, b->members);
        }
        PROFILE_MARK(PHASE_PRODUCTS);
        filter_slice(g, filter, m, l0, lb, c0, blk, b->ws);
        if (g->wide) {
            products_wide(b->sums, slots, b->members, g->l, b->ws, blk, table);
        } else {
            accumulate_products(b->sums, b->packed, slots, b->members, lb, b->ws, blk, l0 == 0, table);
        }
    }
    if (!g->wide) {
        divide_table(table, slots, b->members, blk);
    }
    if (p->incremental) {
        /* raw sums again: the next sub-matrix starts from them */
        PROFILE_MARK(PHASE_CENTROIDS);
        strip_offsets(g, slots, 0, g->l, b->counts, b->sums, -1);
    }
}

static void build_table(const geom *g, const int8_t *input, const uint8_t *ids, int32_t m, int32_t slots,
                        const plan *p, const pass2 *b, const int8_t *filter, int32_t c0, int32_t blk, int32_t *table,
                        int64_t *clusters)
{
    build_table_only(g, input, ids, m, slots, p, b, filter, c0, blk, table);
    if (clusters != NULL) {
        for (int32_t s = 0; s < slots; s++) {
            *clusters += b->members[s] > 0;
        }
    }
}

/* Elements gathered per pass over the channels: every sub-matrix's sums are re-derived, from its
 * whole window, or incrementally (stride 1) from the first window and then the positions where
 * neighbouring windows differ. */
static int64_t gather_per_pass(const geom *g, int incremental)
{
    if (!g->strip) {
        return (int64_t)g->n * g->k;
    }
    if (!incremental) {
        return (int64_t)g->n * g->l * g->m;
    }
    int64_t positions = g->n;
    for (int32_t m = 1; m < g->m; m++) {
        rect parts[4];
        const int32_t n_out = rect_minus(window_of(g, m - 1), window_of(g, m), parts);
        for (int32_t i = 0; i < n_out; i++) {
            positions += 2 * (int64_t)(parts[i].y1 - parts[i].y0) * (parts[i].x1 - parts[i].x0);
        }
    }
    return positions * g->l;
}

/* Best plan for `avail` bytes (plan A or T, sums block length, and on the strip path with or
 * without sums over all positions); 0 when nothing fits. */
static int choose_plan(const geom *g, size_t avail, int32_t slots_max, int64_t slots_tot, plan *best)
{
    int found = 0;
    int64_t best_cost = 0;
    const int can_incremental = g->strip && g->stride_h == 1 && g->stride_w == 1 && !g->wide;
    const int can_simd = simd_possible(g);
    for (int mode = 0; mode <= 2; mode++) { /* 0 scalar, 1 scalar incremental, 2 SIMD */
        const int incremental = mode == 1, simd = mode == 2;
        if ((incremental && !can_incremental) || (simd && !can_simd)) {
            continue;
        }
        const int64_t gather = gather_per_pass(g, incremental || (simd && simd_incremental(g)));
        for (int kind = PLAN_A; kind <= PLAN_A2; kind++) {
            /* shorter sums blocks need less memory (more channels per pass) but cost a pass over
             * the rows' ids per block; the incremental and SIMD modes use whole sub-vectors */
            for (int32_t lb = g->l; lb >= 1; lb = (lb == 1 || g->wide || incremental || simd) ? 0 : (lb + 1) / 2) {
                plan p = {kind, fit_blk(g, avail, slots_max, slots_tot, kind, lb, incremental, simd), lb,
                          incremental, simd};
                if (p.blk == 0) {
                    continue;
                }
                const int64_t blocks = (g->l + lb - 1) / lb;
                const int64_t cost = plan_cost(g, &p, gather + (int64_t)g->n * g->m * (blocks - 1) * 2, slots_tot);
                if (!found || cost < best_cost) {
                    *best = p;
                    best_cost = cost;
                    found = 1;
                }
            }
        }
    }
    return found;
}

/* channels [c0, c0 + blk) all take trec_requantize_fast */
static int fast_requant_block(const weights *w, int32_t c0, int32_t blk)
{
    for (int32_t j = c0; j < c0 + blk; j++) {
        if (!trec_requantize_fast_ok(w->mult[j], w->shift[j])) {
            return 0;
        }
    }
    return 1;
}

/* plan T: per row, the M table rows it uses are found once; then every block of 4 channels sums
 * them in registers (one pointer load, four loads, four adds per sub-matrix) and is requantized
 * straight from the registers. FAST: every channel takes trec_requantize_fast (no per-output test). */
#define SCATTER_TABLES_BODY(REQUANT)                                                                    \
    for (int32_t oy = 0; oy < g->out_h; oy++) {                                                        \
        for (int32_t ox = 0; ox < g->out_w; ox++, out += cout) {                                       \
            const size_t base = row_base(g, oy, ox);                                                   \
            for (int32_t m = 0; m < m_count; m++) {                                                    \
                rowp[m] = toff[m] + read_id(ids, id_size, base + id_off[m]) * blk;                     \
            }                                                                                          \
            int32_t j0 = 0;                                                                            \
            for (; j0 + 3 < blk; j0 += 4) {                                                            \
                int32_t a0 = bias[j0], a1 = bias[j0 + 1], a2 = bias[j0 + 2], a3 = bias[j0 + 3];        \
                const int32_t *tj = tables + j0;                                                       \
                int32_t m = 0;                                                                         \
                for (; m + 1 < m_count; m += 2) {                                                      \
                    const int32_t *tc = tj + rowp[m], *td = tj + rowp[m + 1];                          \
                    int32_t u0, u1, u2, u3, v0, v1, v2, v3;                                            \
                    trec_load2(tc, 0, u0, u1);                                                         \
                    trec_load2(tc, 2, u2, u3);                                                         \
                    trec_load2(td, 0, v0, v1);                                                         \
                    trec_load2(td, 2, v2, v3);                                                         \
                    a0 += u0 + v0;                                                                     \
                    a1 += u1 + v1;                                                                     \
                    a2 += u2 + v2;                                                                     \
                    a3 += u3 + v3;                                                                     \
                }                                                                                      \
                if (m < m_count) {                                                                     \
                    const int32_t *tc = tj + rowp[m];                                                  \
                    int32_t u0, u1, u2, u3;                                                            \
                    trec_load2(tc, 0, u0, u1);                                                         \
                    trec_load2(tc, 2, u2, u3);                                                         \
                    a0 += u0;                                                                          \
                    a1 += u1;                                                                          \
                    a2 += u2;                                                                          \
                    a3 += u3;                                                                          \
                }                                                                                      \
                out[j0] = (int8_t)(REQUANT(a0, j0) + offset);                                          \
                out[j0 + 1] = (int8_t)(REQUANT(a1, j0 + 1) + offset);                                  \
                out[j0 + 2] = (int8_t)(REQUANT(a2, j0 + 2) + offset);                                  \
                out[j0 + 3] = (int8_t)(REQUANT(a3, j0 + 3) + offset);                                  \
            }                                                                                          \
            for (; j0 < blk; j0++) {                                                                   \
                int32_t a0 = bias[j0];                                                                 \
                for (int32_t m = 0; m < m_count; m++) {                                                \
                    a0 += tables[rowp[m] + j0];                                                        \
                }                                                                                      \
                out[j0] = (int8_t)(REQUANT(a0, j0) + offset);                                          \
            }                                                                                          \
        }                                                                                              \
    }

HOT static void scatter_tables(const geom *g, const uint8_t *ids, const int32_t *id_off, const int32_t *tables,
                               const int32_t *toff, int32_t c0, int32_t blk, const weights *w, int8_t *output,
                               int32_t *rowp, const int32_t *bias, const int32_t *pow, const int32_t *r1)
{
    const int32_t m_count = g->m, id_size = g->id_size, cout = g->cout;
    const int32_t offset = g->output_offset, amin = g->act_min, amax = g->act_max;
    const int32_t lo = amin - offset, hi = amax - offset;
    const int32_t *TREC_RESTRICT mult = w->mult + c0;
    const int32_t *TREC_RESTRICT shift = w->shift + c0;
    int8_t *out = output + c0;
    /* fast path: |requantized| <= 2^30, so adding the offset cannot overflow; SSAT does the int8
     * clamp, and a narrower activation range adds a max and a min */
#define FULL_RQ(a, j) (trec_ssat8(trec_requantize_fast_pre((a), mult[j], pow[j], r1[j]) + offset) - offset)
#define FAST_RQ(a, j) (TREC_MIN(TREC_MAX(FULL_RQ(a, j), lo), hi))
#define ANY_RQ(a, j) trec_requantize_clamp((a), mult[j], shift[j], lo, hi)
    if (!fast_requant_block(w, c0, blk)) {
        SCATTER_TABLES_BODY(ANY_RQ)
    } else if (amin == -128 && amax == 127) {
        SCATTER_TABLES_BODY(FULL_RQ)
    } else {
        SCATTER_TABLES_BODY(FAST_RQ)
    }
#undef FULL_RQ
#undef FAST_RQ
#undef ANY_RQ
}
#undef SCATTER_TABLES_BODY

/* plan A, one sub-matrix: acc[n][0..blk) (+)= table[id(n, m)][0..blk); the first sub-matrix
 * sets acc = bias + table row */
HOT static void scatter_add(const geom *g, const uint8_t *ids, int32_t id_off, const int32_t *table, int32_t blk,
                            const int32_t *bias, int first, int32_t *acc)
{
    const int32_t id_size = g->id_size, out_w = g->out_w;
    const size_t step = g->strip ? (size_t)g->stride_w : (size_t)g->m;
    int32_t *TREC_RESTRICT a = acc;
    for (int32_t oy = 0; oy < g->out_h; oy++) {
        size_t idx = row_base(g, oy, 0) + (size_t)id_off;
        for (int32_t ox = 0; ox < out_w; ox++, a += blk, idx += step) {
            const int32_t *TREC_RESTRICT tc = table + (size_t)read_id(ids, id_size, idx) * blk;
            const int32_t *TREC_RESTRICT src = first ? bias : a;
            int32_t j = 0;
            for (; j + 3 < blk; j += 4) {
                int32_t t0, t1, t2, t3, a0, a1, a2, a3;
                trec_load2(tc + j, 0, t0, t1);
                trec_load2(tc + j, 2, t2, t3);
                trec_load2(src + j, 0, a0, a1);
                trec_load2(src + j, 2, a2, a3);
                a[j] = a0 + t0;
                a[j + 1] = a1 + t1;
                a[j + 2] = a2 + t2;
                a[j + 3] = a3 + t3;
            }
            for (; j < blk; j++) {
                a[j] = src[j] + tc[j];
            }
        }
    }
}

/* plan A2: acc[n] (+)= table[id(n, m)] + table2[id(n, m + 1)], two sub-matrices per pass over
 * the accumulator */
HOT static void scatter_add2(const geom *g, const uint8_t *ids, int32_t id_off, int32_t id_off2, const int32_t *table,
                             const int32_t *table2, int32_t blk, const int32_t *bias, int first, int32_t *acc)
{
    const int32_t id_size = g->id_size, out_w = g->out_w;
    const size_t step = g->strip ? (size_t)g->stride_w : (size_t)g->m;
    int32_t *TREC_RESTRICT a = acc;
    for (int32_t oy = 0; oy < g->out_h; oy++) {
        const size_t row = row_base(g, oy, 0);
        size_t idx = row + (size_t)id_off, idx2 = row + (size_t)id_off2;
        for (int32_t ox = 0; ox < out_w; ox++, a += blk, idx += step, idx2 += step) {
            const int32_t *TREC_RESTRICT tc = table + (size_t)read_id(ids, id_size, idx) * blk;
            const int32_t *TREC_RESTRICT td = table2 + (size_t)read_id(ids, id_size, idx2) * blk;
            const int32_t *TREC_RESTRICT src = first ? bias : a;
            int32_t j = 0;
            for (; j + 3 < blk; j += 4) {
                int32_t s0, s1, s2, s3, c0, c1, c2, c3, d0, d1, d2, d3;
                trec_load2(src + j, 0, s0, s1);
                trec_load2(src + j, 2, s2, s3);
                trec_load2(tc + j, 0, c0, c1);
                trec_load2(tc + j, 2, c2, c3);
                trec_load2(td + j, 0, d0, d1);
                trec_load2(td + j, 2, d2, d3);
                a[j] = s0 + c0 + d0;
                a[j + 1] = s1 + c1 + d1;
                a[j + 2] = s2 + c2 + d2;
                a[j + 3] = s3 + c3 + d3;
            }
            for (; j < blk; j++) {
                a[j] = src[j] + tc[j] + td[j];
            }
        }
    }
}

/* plan A, the last sub-matrix: requantize acc[n] + table[id(n, m)] straight into the output */
HOT static void scatter_requantize(const geom *g, const uint8_t *ids, int32_t id_off, const int32_t *table,
                                   int32_t c0, int32_t blk, const int32_t *acc, const weights *w,
                                   const int32_t *pow, const int32_t *r1, int8_t *output)
{
    const int32_t id_size = g->id_size, out_w = g->out_w, cout = g->cout;
    const size_t step = g->strip ? (size_t)g->stride_w : (size_t)g->m;
    const int32_t offset = g->output_offset, lo = g->act_min - offset, hi = g->act_max - offset;
    const int32_t *TREC_RESTRICT mult = w->mult + c0;
    const int32_t *TREC_RESTRICT shift = w->shift + c0;
    const int fast = fast_requant_block(w, c0, blk);
    const int32_t *a = acc;
    int8_t *out = output + c0;
    for (int32_t oy = 0; oy < g->out_h; oy++) {
        size_t idx = row_base(g, oy, 0) + (size_t)id_off;
        for (int32_t ox = 0; ox < out_w; ox++, a += blk, idx += step, out += cout) {
            const int32_t *tc = table + (size_t)read_id(ids, id_size, idx) * blk;
            if (fast) {
                for (int32_t j = 0; j < blk; j++) {
                    const int32_t v = trec_requantize_fast_pre(a[j] + tc[j], mult[j], pow[j], r1[j]);
                    out[j] = (int8_t)(TREC_MIN(TREC_MAX(v, lo), hi) + offset);
                }
            } else {
                for (int32_t j = 0; j < blk; j++) {
                    out[j] = (int8_t)(trec_requantize_clamp(a[j] + tc[j], mult[j], shift[j], lo, hi) + offset);
                }
            }
        }
    }
}

static int32_t run_image(const geom *g, uint8_t *buf, size_t size, const int8_t *input, const int8_t *hash,
                         const weights *w, int8_t *output, int32_t *passes, int32_t *plan_t)
{
    uint8_t *ids = buf;
    int32_t *slots = (int32_t *)(void *)(buf + ids_bytes(g));
    int32_t *id_off = slots + g->m;
    uint8_t *work = buf + header_bytes(g);
    const size_t work_size = size - header_bytes(g);

    PROFILE_MARK(PHASE_HASH);
    if (g->strip) {
        const int32_t n_slots = hash_strips(g, input, hash, ids, work);
        for (int32_t m = 0; m < g->m; m++) {
            int32_t y, x;
            strip_origin(g, m, &y, &x);
            slots[m] = n_slots;
            id_off[m] = y * g->pw + x;
        }
    } else {
        hash_rows(g, input, hash, ids, slots, work);
        for (int32_t m = 0; m < g->m; m++) {
            id_off[m] = m;
        }
    }

    PROFILE_MARK(PHASE_CENTROIDS);
    int64_t slots_tot = 0;
    int32_t slots_max = 0;
    for (int32_t m = 0; m < g->m; m++) {
        slots_tot += slots[m];
        slots_max = TREC_MAX(slots_max, slots[m]);
    }
    const size_t tptr_bytes = row_state_bytes(g);
    plan p;
    if (work_size <= tptr_bytes || !choose_plan(g, work_size - tptr_bytes, slots_max, slots_tot, &p)) {
        return -1; /* below the minimum: excluded by the size check */
    }
    int32_t *toff = (int32_t *)(void *)work;
    int32_t *rowp = toff + g->m;
    int32_t *bias = rowp + g->m; /* the bias, or zeros: the scatter reads it without a test */
    int32_t *rq_pow = bias + g->cout, *rq_r1 = rq_pow + g->cout;
    for (int32_t c = 0; c < g->cout; c++) {
        bias[c] = w->bias ? w->bias[c] : 0;
        const int32_t r = w->shift[c] <= 0 ? -w->shift[c] : 0;
        rq_pow[c] = r < 31 ? (int32_t)(1u << r) : 0; /* used only where fast_ok (r <= 18) */
        rq_r1[c] = r + 1;
    }
    uint8_t *area = work + tptr_bytes;
    pass2 b = {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    b.members = (int32_t *)(void *)area;
    b.counts = b.members + slots_max;
    b.sums = b.members + (size_t)slots_max * counts_per_slot(g);
    b.packed = b.sums;
    int32_t *after_sums = b.sums + (size_t)slots_max * p.lb;
    if (p.incremental) {
        /* raw sums kept whole from one sub-matrix to the next; products read a packed copy */
        b.packed = b.sums + (size_t)slots_max * g->l;
        after_sums = b.packed + (size_t)slots_max * (g->la / 2);
    }
    if (p.simd) {
        /* sums16 (slots x L/2 words) | big map (slots) | int32 sums of big clusters | filter sums */
        b.big = b.sums + (size_t)slots_max * (g->l / 2);
        b.sums32 = b.big + slots_max;
        b.wsum = b.sums32 + (size_t)simd_big_max(g) * g->l;
        after_sums = b.wsum + (size_t)p.blk * g->j;
    }
    b.ws = (int16_t *)(void *)after_sums;
    b.tables = (int32_t *)(void *)((uint8_t *)b.ws + (size_t)blk_quads(p.blk) * ((p.lb + 1) & ~1) * 2);

    int32_t chunks = 0;
    int64_t strip_clusters = 0; /* strip path: clusters per sub-matrix, counted in the first chunk */
    for (int32_t c0 = 0; c0 < g->cout; c0 += p.blk, chunks++) {
        const int32_t blk = TREC_MIN(p.blk, g->cout - c0);
        int64_t *count = c0 == 0 && g->strip ? &strip_clusters : NULL;
        if (p.kind == PLAN_T) {
            int32_t *table = b.tables;
            for (int32_t m = 0; m < g->m; m++) {
                toff[m] = (int32_t)(table - b.tables);
                build_table(g, input, ids, m, slots[m], &p, &b, w->filter, c0, blk, table, count);
                table += (size_t)slots[m] * blk;
            }
            PROFILE_MARK(PHASE_SCATTER);
            scatter_tables(g, ids, id_off, b.tables, toff, c0, blk, w, output, rowp, bias + c0, rq_pow + c0, rq_r1 + c0);
        } else {
            int32_t *acc = b.tables;
            int32_t *table = b.tables + (size_t)g->n * blk;
            int32_t *table2 = table + (size_t)slots_max * blk; /* plan A2 only */
            if (g->m == 1) {
                for (int32_t n = 0; n < g->n; n++) {
                    memcpy(acc + (size_t)n * blk, bias + c0, (size_t)blk * 4);
                }
            }
            for (int32_t m = 0; m < g->m;) {
                build_table(g, input, ids, m, slots[m], &p, &b, w->filter, c0, blk, table, count);
                if (p.kind == PLAN_A2 && m + 2 < g->m) {
                    build_table(g, input, ids, m + 1, slots[m + 1], &p, &b, w->filter, c0, blk, table2, count);
                    PROFILE_MARK(PHASE_SCATTER);
                    scatter_add2(g, ids, id_off[m], id_off[m + 1], table, table2, blk, bias + c0, m == 0, acc);
                    m += 2;
                    continue;
                }
                PROFILE_MARK(PHASE_SCATTER);
                if (m + 1 < g->m) {
                    scatter_add(g, ids, id_off[m], table, blk, bias + c0, m == 0, acc);
                } else {
                    scatter_requantize(g, ids, id_off[m], table, c0, blk, acc, w, rq_pow + c0, rq_r1 + c0, output);
                }
                m++;
            }
        }
    }
    PROFILE_MARK(PHASE_DONE);
    *passes = chunks;
    *plan_t = p.kind == PLAN_T;
    return (int32_t)(g->strip ? strip_clusters : slots_tot);
}

/* ================================================================================================
 * entry point
 * ============================================================================================== */
trec_status trec_convolve_s8(const trec_context *ctx, const trec_conv_params *conv_params,
                             const trec_hash_params *hash_params, const trec_per_channel_quant_params *quant_params,
                             const trec_dims *input_dims, const int8_t *input, const trec_dims *filter_dims,
                             const int8_t *filter, const int8_t *hash, const trec_dims *bias_dims,
                             const int32_t *bias, const trec_dims *output_dims, int8_t *output,
                             trec_reuse_stats *stats)
{
    geom g;
    trec_status st = make_geom(conv_params, hash_params, input_dims, filter_dims, output_dims, &g);
    if (st != TREC_SUCCESS) {
        return st;
    }
    if (ctx == NULL || quant_params == NULL || quant_params->multiplier == NULL || quant_params->shift == NULL ||
        input == NULL || filter == NULL || hash == NULL || output == NULL) {
        return TREC_ARG_ERROR;
    }
    if (bias != NULL && (bias_dims == NULL ||
                         (int64_t)bias_dims->n * bias_dims->h * bias_dims->w * bias_dims->c != g.cout)) {
        return TREC_ARG_ERROR;
    }
    for (int32_t c = 0; c < g.cout; c++) {
        if (!trec_quant_params_valid(quant_params->multiplier[c], quant_params->shift[c])) {
            return TREC_ARG_ERROR;
        }
    }
    if (ctx->buf == NULL || ctx->size < min_scratch(&g)) {
        return TREC_BUFFER_ERROR;
    }
    uint8_t *buf = (uint8_t *)ctx->buf;
    size_t size = (size_t)ctx->size;
    const size_t skew = (size_t)((4u - ((uintptr_t)buf & 3u)) & 3u);
    buf += skew;
    size -= skew;

    const weights w = {filter, bias, quant_params->multiplier, quant_params->shift};
    const size_t in_size = (size_t)g.in_h * g.in_w * g.cin;
    const size_t out_size = (size_t)g.n * g.cout;
    int64_t clusters = 0;
    int32_t passes = 0, plan_t = 0;
    for (int32_t b = 0; b < input_dims->n; b++) {
        int32_t pass_b = 0;
        int32_t c = run_image(&g, buf, size, input + b * in_size, hash, &w, output + b * out_size, &pass_b, &plan_t);
        if (c < 0) {
            return TREC_BUFFER_ERROR;
        }
        clusters += c;
        passes = TREC_MAX(passes, pass_b);
    }
    if (stats != NULL) {
        stats->rows = g.n * input_dims->n;
        stats->sub_matrices = g.m;
        stats->clusters = (int32_t)clusters;
        stats->passes = passes;
        stats->plan = plan_t;
    }
    return TREC_SUCCESS;
}
