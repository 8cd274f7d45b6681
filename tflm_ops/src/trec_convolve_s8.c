/*
 * trec-tflm: TREC reuse convolution, int8 (the TREC_CONV_2D operator, docs/OP_SPEC.md).
 *
 * Bit-exact with trec_tflm.golden.trec_conv2d_s8. Per image:
 *
 *   offsets  hash centre folded into an int32 offset per (sub-matrix, bit)        M*H ints
 *   pass 1   for each output pixel: gather its im2col row (K int16, input offset applied, never the
 *            whole matrix), project every sub-vector on the H hash vectors with SMLAD, keep the sign
 *            bits: one code per (row, sub-matrix)                                   N*M codes
 *   compact  per sub-matrix, replace codes by dense cluster ids in place (a small open-addressing map
 *            that is a plain direct table when 2^H is small) and count clusters
 *   per chunk of output channels:
 *     per sub-matrix: re-gather the members' sub-vectors straight from the HWC input into cluster
 *            sums, multiply only the sums by the filter slice (SMLAD on int16 sums when they fit),
 *            divide once per cluster and channel (round half away from zero)      clusters*chunk
 *     plan T: keep every sub-matrix's product table, then one pass over the rows sums a row's tables
 *            in registers and requantizes (cheapest scatter; needs all tables at once)
 *     plan A: scatter-add each table into an N x chunk int32 accumulator, requantize at the end
 *            (needs N*chunk ints, not the tables)
 *
 * The chunk size and plan are chosen at run time from the actual cluster counts and the scratch the
 * caller gave, by the instruction estimate in choose_plan(); a smaller scratch only means more chunks.
 * The scratch never holds the im2col matrix nor an N x Cout accumulator for all channels at once
 * (unless the caller's scratch is large enough that plan A takes a single chunk).
 */
#include <stddef.h>
#include <string.h>

#include "trec/trec_nnfunctions.h"
#include "trec_nn_support.h"

#if defined(TREC_PROFILE)
/* Benchmarks define this to time the phases; argument: 0 hashing, 1 centroids, 2 products,
 * 3 scatter + requantize, -1 done. */
void trec_profile_mark(int phase);
#define PROFILE_MARK(p) trec_profile_mark(p)
#else
#define PROFILE_MARK(p) ((void)0)
#endif

enum { PHASE_HASH = 0, PHASE_CENTROIDS = 1, PHASE_PRODUCTS = 2, PHASE_SCATTER = 3, PHASE_DONE = -1 };

#define MAP_EMPTY 0xFFFFu
#define MAX_ROWS 65535 /* cluster ids and counts are 16-bit */

/* ------------------------------------------------------------------------------------------------
 * geometry and validation
 * ---------------------------------------------------------------------------------------------- */
typedef struct {
    int32_t in_h, in_w, cin;
    int32_t kh, kw;
    int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t out_h, out_w, cout;
    int32_t input_offset, output_offset, act_min, act_max;
    int32_t n;       /* rows = out_h * out_w */
    int32_t k;       /* kh * kw * cin */
    int32_t l;       /* sub-vector length */
    int32_t m;       /* sub-matrices = ceil(k / l) */
    int32_t kp;      /* m * l (zero-extended row) */
    int32_t hbits;
    int32_t center;
    int32_t id_size; /* bytes per code / cluster id: 1 when 2^H <= 256, else 2 */
    int32_t max_clusters; /* per sub-matrix: min(N, 2^H) */
    int32_t map_cap;      /* open-addressing map entries (power of two) */
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

/* Validate everything that does not involve data pointers; fill g. */
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
    if (n > MAX_ROWS || k > (1 << 20)) {
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
    g->m = (g->k + g->l - 1) / g->l;
    g->kp = g->m * g->l;
    g->hbits = hp->hash_bits;
    g->center = hp->hash_center;
    g->id_size = g->hbits <= 8 ? 1 : 2;
    const int64_t codes = (int64_t)1 << g->hbits;
    g->max_clusters = (int32_t)(codes < n ? codes : n);
    /* direct table when 2^H is at most twice the rows, else a hash table with load <= 1/2 */
    g->map_cap = codes <= 2 * n ? (int32_t)codes : pow2_at_least(2 * g->n);
    return TREC_SUCCESS;
}

/* ------------------------------------------------------------------------------------------------
 * scratch layout
 *
 *   [ ids: N*M*id_size | offsets: M*H int32 | clusters per sub-matrix: M int32 | work ]
 *   work, pass 1:   row (kp int16, even-padded) | hash vectors transposed (H x l_al int16)
 *                   | channel sums of the mean centre (cin int32)
 *   work, pass 2:   map (map_cap x 2 uint16) | counts (max_clusters uint16) | sums (max_clusters*l int32)
 *                   | filter slice (chunk x l_al int16) | tables or accumulator
 * ---------------------------------------------------------------------------------------------- */
typedef struct {
    size_t ids, offsets, clusters, work; /* byte offsets */
    size_t pass1_bytes;                  /* work bytes pass 1 needs */
    size_t pass2_fixed;                  /* work bytes pass 2 needs besides tables/accumulator */
} layout;

static size_t align4(size_t v) { return (v + 3u) & ~(size_t)3u; }

static int32_t l_aligned(const geom *g) { return (g->l + 1) & ~1; }

static void make_layout(const geom *g, layout *lay)
{
    lay->ids = 0;
    lay->offsets = align4((size_t)g->n * g->m * g->id_size);
    lay->clusters = lay->offsets + (size_t)g->m * g->hbits * 4;
    lay->work = lay->clusters + (size_t)g->m * 4;
    const size_t row = align4((size_t)(g->kp + 1) * 2);
    lay->pass1_bytes = row + (size_t)g->hbits * l_aligned(g) * 2 + (size_t)g->cin * 4;
    lay->pass2_fixed = (size_t)g->map_cap * 4 + align4((size_t)g->max_clusters * 2) +
                       (size_t)g->max_clusters * g->l * 4;
}

/* Per-channel part of pass 2 for a chunk of `blk` channels: filter slice + tables (plan T, total
 * clusters c_tot) or accumulator + one table (plan A, largest sub-matrix c_max). */
static size_t chunk_bytes_t(const geom *g, int32_t blk, int64_t c_tot)
{
    return (size_t)blk * l_aligned(g) * 2 + (size_t)c_tot * blk * 4;
}

static size_t chunk_bytes_a(const geom *g, int32_t blk, int64_t c_max)
{
    return (size_t)blk * l_aligned(g) * 2 + ((size_t)g->n + (size_t)c_max) * blk * 4;
}

static int64_t min_scratch(const geom *g)
{
    layout lay;
    make_layout(g, &lay);
    const size_t pass2 = lay.pass2_fixed + chunk_bytes_a(g, 1, g->max_clusters);
    const size_t work = lay.pass1_bytes > pass2 ? lay.pass1_bytes : pass2;
    return (int64_t)(lay.work + work) + 3; /* + 3: the kernel aligns an unaligned buffer itself */
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
    /* Twice the int8 output tensor of one image (the paper's space-efficiency bar), but never less
     * than the minimum, and no more than the fastest plan could use in the worst case. */
    layout lay;
    make_layout(&g, &lay);
    const int64_t target = 2 * (int64_t)g.n * g.cout;
    const int64_t worst_c_tot = (int64_t)g.m * g.max_clusters;
    const int64_t fastest = (int64_t)lay.work + 3 +
                            (int64_t)(lay.pass2_fixed + chunk_bytes_t(&g, g.cout, worst_c_tot));
    int64_t bytes = target < fastest ? target : fastest;
    const int64_t lo = min_scratch(&g);
    bytes = bytes > lo ? bytes : lo;
    return bytes > INT32_MAX ? TREC_NO_IMPL_ERROR : (int32_t)bytes;
}

/* ------------------------------------------------------------------------------------------------
 * small helpers
 * ---------------------------------------------------------------------------------------------- */
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
TREC_INLINE int32_t div_round(int64_t num, int32_t den)
{
    if (den == 1) {
        return (int32_t)num;
    }
    const int64_t half = den / 2;
    return (int32_t)(num > 0 ? (num + half) / den : (num - half) / den);
}

static int32_t div_round32(int32_t num, int32_t den)
{
    if (den == 1) {
        return num;
    }
    const int32_t half = den / 2;
    return num > 0 ? (num + half) / den : (num - half) / den;
}

/* ------------------------------------------------------------------------------------------------
 * hash centre: off[m][h] (docs/OP_SPEC.md step 3)
 * ---------------------------------------------------------------------------------------------- */
static void hash_offsets(const geom *g, const int8_t *input, const int8_t *hash, int32_t *off, int32_t *chan_sum)
{
    const int32_t hb = g->hbits;
    if (g->center == TREC_HASH_CENTER_NONE) {
        memset(off, 0, (size_t)g->m * hb * sizeof(int32_t));
        return;
    }
    /* S[ci] = sum over pixels of (x - zp); |S| <= 255 * 65535 * ... fits int32 for images <= 8M px */
    const int32_t pixels = g->in_h * g->in_w;
    for (int32_t c = 0; c < g->cin; c++) {
        chan_sum[c] = 0;
    }
    const int8_t *p = input;
    for (int32_t i = 0; i < pixels; i++) {
        for (int32_t c = 0; c < g->cin; c++) {
            chan_sum[c] += *p++;
        }
    }
    for (int32_t c = 0; c < g->cin; c++) {
        chan_sum[c] += pixels * g->input_offset;
    }
    for (int32_t m = 0; m < g->m; m++) {
        for (int32_t h = 0; h < hb; h++) {
            int64_t num = 0;
            for (int32_t l = 0; l < g->l; l++) {
                const int32_t k = m * g->l + l;
                if (k >= g->k) {
                    break;
                }
                num += (int64_t)chan_sum[k % g->cin] * hash[l * hb + h];
            }
            off[m * hb + h] = -div_round(num, pixels);
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * pass 1: codes
 * ---------------------------------------------------------------------------------------------- */
/* im2col row of output pixel (oy, ox) into row[0..kp), int16 with the input offset applied, 0 for
 * padding and for the zero extension k >= K. */
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
    for (int32_t k = g->k; k < g->kp + 1; k++) { /* +1: the even-padding read of an odd-L tail */
        row[k] = 0;
    }
}

/* Hash vectors transposed to rt[h][l] int16, each row zero-padded to an even length. */
static void transpose_hash(const geom *g, const int8_t *hash, int16_t *rt)
{
    const int32_t la = l_aligned(g);
    for (int32_t h = 0; h < g->hbits; h++) {
        for (int32_t l = 0; l < la; l++) {
            rt[h * la + l] = (int16_t)(l < g->l ? hash[l * g->hbits + h] : 0);
        }
    }
}

/* code of one sub-vector: bit h set when sum_l x[l] * rt[h][l] + off[h] > 0 */
TREC_INLINE int32_t hash_code(const int16_t *x, const int16_t *rt, const int32_t *off, int32_t l, int32_t hbits)
{
    const int32_t la = (l + 1) & ~1;
    int32_t code = 0;
#if TREC_DSP
    /* x may start at an odd int16 index; pairs are read unaligned (allowed on Armv7E-M). */
    const int32_t pairs = la >> 1;
    for (int32_t h = 0; h < hbits; h++) {
        const int16_t *xp = x;
        const int16_t *rp = rt + h * la;
        int32_t acc = off[h];
        int32_t j = pairs;
        while (j >= 2) {
            acc = trec_smlad(trec_read_s16x2(xp), trec_read_s16x2(rp), acc);
            acc = trec_smlad(trec_read_s16x2(xp + 2), trec_read_s16x2(rp + 2), acc);
            xp += 4;
            rp += 4;
            j -= 2;
        }
        if (j) {
            acc = trec_smlad(trec_read_s16x2(xp), trec_read_s16x2(rp), acc);
        }
        code |= (acc > 0) << h;
    }
#else
    for (int32_t h = 0; h < hbits; h++) {
        int32_t acc = off[h];
        for (int32_t i = 0; i < l; i++) {
            acc += x[i] * rt[h * la + i];
        }
        code |= (acc > 0) << h;
    }
#endif
    return code;
}

static void compute_codes(const geom *g, const int8_t *input, const int32_t *off, const int16_t *rt, int16_t *row,
                          uint8_t *ids)
{
    size_t i = 0;
    for (int32_t oy = 0; oy < g->out_h; oy++) {
        for (int32_t ox = 0; ox < g->out_w; ox++) {
            gather_row(g, input, oy, ox, row);
            /* the odd-L SMLAD tail reads x[l] of the next sub-vector times rt[h][l] = 0 */
            for (int32_t m = 0; m < g->m; m++, i++) {
                write_id(ids, g->id_size, i, hash_code(row + m * g->l, rt, off + m * g->hbits, g->l, g->hbits));
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * compaction: codes of sub-matrix m -> dense cluster ids, returns the number of clusters
 * ---------------------------------------------------------------------------------------------- */
static int32_t compact_ids(const geom *g, uint8_t *ids, int32_t m, uint16_t *map)
{
    const uint32_t mask = (uint32_t)g->map_cap - 1u;
    for (int32_t i = 0; i < 2 * g->map_cap; i++) {
        map[i] = MAP_EMPTY; /* map[2s] = code, map[2s+1] = cluster id */
    }
    int32_t clusters = 0;
    for (int32_t n = 0; n < g->n; n++) {
        const size_t idx = (size_t)n * g->m + m;
        const uint32_t code = (uint32_t)read_id(ids, g->id_size, idx);
        uint32_t s = code & mask; /* a direct table when map_cap == 2^H: no probing */
        while (map[2 * s + 1] != MAP_EMPTY && map[2 * s] != code) {
            s = (s + 1u) & mask;
        }
        if (map[2 * s + 1] == MAP_EMPTY) {
            map[2 * s] = (uint16_t)code;
            map[2 * s + 1] = (uint16_t)clusters++;
        }
        write_id(ids, g->id_size, idx, map[2 * s + 1]);
    }
    return clusters;
}

/* ------------------------------------------------------------------------------------------------
 * pass 2 pieces
 * ---------------------------------------------------------------------------------------------- */
/* Cluster sums of sub-matrix m: sums[c][l] = sum over members of x~, counts[c] = members. */
static void cluster_sums(const geom *g, const int8_t *input, const uint8_t *ids, int32_t m, int32_t clusters,
                         int32_t *sums, uint16_t *counts)
{
    const int32_t l_len = g->l;
    memset(sums, 0, (size_t)clusters * l_len * sizeof(int32_t));
    memset(counts, 0, (size_t)clusters * sizeof(uint16_t));
    const int32_t k0 = m * l_len;
    const int32_t k1 = TREC_MIN(k0 + l_len, g->k);
    const int32_t cin = g->cin;
    int32_t n = 0;
    for (int32_t oy = 0; oy < g->out_h; oy++) {
        const int32_t iy0 = oy * g->stride_h - g->pad_h;
        for (int32_t ox = 0; ox < g->out_w; ox++, n++) {
            const int32_t ix0 = ox * g->stride_w - g->pad_w;
            const int32_t c = read_id(ids, g->id_size, (size_t)n * g->m + m);
            counts[c]++;
            int32_t *acc = sums + c * l_len;
            /* walk the taps this sub-vector covers, one run of consecutive channels per tap */
            int32_t k = k0;
            while (k < k1) {
                const int32_t tap = k / cin;
                const int32_t ci = k - tap * cin;
                const int32_t run = TREC_MIN(cin - ci, k1 - k);
                const int32_t ky = tap / g->kw;
                const int32_t kx = tap - ky * g->kw;
                const int32_t iy = iy0 + ky * g->dil_h;
                const int32_t ix = ix0 + kx * g->dil_w;
                if (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w) {
                    const int8_t *src = input + ((size_t)iy * g->in_w + ix) * cin + ci;
                    int32_t *dst = acc + (k - k0);
                    const int32_t offset = g->input_offset;
                    for (int32_t j = 0; j < run; j++) {
                        dst[j] += src[j] + offset;
                    }
                }
                k += run;
            }
        }
    }
}

/* Filter slice of sub-matrix m for channels [c0, c0+blk): ws[j][l] int16, rows padded to even. */
static void filter_slice(const geom *g, const int8_t *filter, int32_t m, int32_t c0, int32_t blk, int16_t *ws)
{
    const int32_t la = l_aligned(g);
    for (int32_t j = 0; j < blk; j++) {
        const int8_t *w = filter + (size_t)(c0 + j) * g->k + (size_t)m * g->l;
        for (int32_t l = 0; l < la; l++) {
            ws[j * la + l] = (int16_t)((l < g->l && m * g->l + l < g->k) ? w[l] : 0);
        }
    }
}

/* table[c][j] = round(sum_l sums[c][l] * ws[j][l] / counts[c]) for blk channels */
static void cluster_products(const geom *g, const int32_t *sums, const uint16_t *counts, int32_t clusters,
                             const int16_t *ws, int32_t blk, int32_t *table)
{
    const int32_t l_len = g->l;
    const int32_t la = l_aligned(g);
    /* Dot products stay in int32 when |sum of member dot products| < 2^31 is guaranteed. */
    const int wide = (int64_t)g->n * l_len * 255 * 127 >= ((int64_t)1 << 31);
    for (int32_t c = 0; c < clusters; c++) {
        const int32_t *s = sums + c * l_len;
        const int32_t cnt = counts[c];
        int32_t *t = table + (size_t)c * blk;
#if TREC_DSP
        /* int16 pairs of the sums when every sum fits int16 (clusters of <= 128 members always do) */
        int32_t fits = 1;
        for (int32_t l = 0; l < l_len; l++) {
            fits &= (s[l] >= -32768) & (s[l] <= 32767);
        }
        if (fits && l_len <= 32) { /* then |acc| <= 32 * 32767 * 127 < 2^31 */
            int32_t sp[16];
            for (int32_t p = 0; p < la / 2; p++) {
                const int32_t lo = s[2 * p];
                const int32_t hi = (2 * p + 1 < l_len) ? s[2 * p + 1] : 0;
                sp[p] = trec_pack_s16x2(lo, hi);
            }
            for (int32_t j = 0; j < blk; j++) {
                const int16_t *w = ws + j * la;
                int32_t acc = 0;
                for (int32_t p = 0; p < la / 2; p++) {
                    acc = trec_smlad(sp[p], trec_read_s16x2(w + 2 * p), acc);
                }
                t[j] = div_round32(acc, cnt);
            }
            continue;
        }
#endif
        for (int32_t j = 0; j < blk; j++) {
            const int16_t *w = ws + j * la;
            if (wide) {
                int64_t acc = 0;
                for (int32_t l = 0; l < l_len; l++) {
                    acc += (int64_t)s[l] * w[l];
                }
                t[j] = div_round(acc, cnt);
            } else {
                int32_t acc = 0;
                for (int32_t l = 0; l < l_len; l++) {
                    acc += s[l] * w[l];
                }
                t[j] = div_round32(acc, cnt);
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * plan choice
 * ---------------------------------------------------------------------------------------------- */
typedef struct {
    int plan_t; /* 1: tables + register scatter, 0: accumulator */
    int32_t blk;
} plan;

/* Largest blk whose chunk fits `avail` bytes; 0 if none. */
static int32_t max_blk(const geom *g, size_t avail, int plan_t, int64_t c_tot, int64_t c_max)
{
    const size_t per = plan_t ? chunk_bytes_t(g, 1, c_tot) : chunk_bytes_a(g, 1, c_max);
    if (per == 0) {
        return g->cout;
    }
    const size_t blk = avail / per;
    return blk >= (size_t)g->cout ? g->cout : (int32_t)blk;
}

/* Instruction estimate (relative): every extra chunk re-gathers the cluster sums (~5 per element of
 * the im2col matrix); the scatter costs ~1.3 per (row, sub-matrix, channel) in registers (plan T)
 * and ~2.5 through memory (plan A). */
static int64_t plan_cost(const geom *g, int plan_t, int32_t blk)
{
    const int64_t chunks = (g->cout + blk - 1) / blk;
    const int64_t gather = (int64_t)g->n * g->k * 5;
    const int64_t scatter = (int64_t)g->n * g->m * g->cout * (plan_t ? 13 : 25) / 10;
    return chunks * gather + scatter;
}

static int choose_plan(const geom *g, size_t avail, int64_t c_tot, int64_t c_max, plan *p)
{
    const int32_t bt = max_blk(g, avail, 1, c_tot, c_max);
    const int32_t ba = max_blk(g, avail, 0, c_tot, c_max);
    if (bt == 0 && ba == 0) {
        return 0;
    }
    if (bt > 0 && (ba == 0 || plan_cost(g, 1, bt) <= plan_cost(g, 0, ba))) {
        p->plan_t = 1;
        p->blk = bt;
    } else {
        p->plan_t = 0;
        p->blk = ba;
    }
    return 1;
}

/* ------------------------------------------------------------------------------------------------
 * one image
 * ---------------------------------------------------------------------------------------------- */
typedef struct {
    const int8_t *filter;
    const int32_t *bias;
    const int32_t *mult;
    const int32_t *shift;
} weights;

static void requantize_row(const geom *g, const int32_t *acc, int32_t c0, int32_t blk, const weights *w,
                           int8_t *out)
{
    for (int32_t j = 0; j < blk; j++) {
        out[c0 + j] = trec_requantize_s8(acc[j], w->mult[c0 + j], w->shift[c0 + j], g->output_offset, g->act_min,
                                         g->act_max);
    }
}

static int32_t run_image(const geom *g, const layout *lay, uint8_t *buf, size_t size, const int8_t *input,
                         const int8_t *hash, const weights *w, int8_t *output, int32_t *passes)
{
    uint8_t *ids = buf + lay->ids;
    int32_t *off = (int32_t *)(void *)(buf + lay->offsets);
    int32_t *ncl = (int32_t *)(void *)(buf + lay->clusters);
    uint8_t *work = buf + lay->work;
    const size_t work_size = size - lay->work;

    /* pass 1 */
    PROFILE_MARK(PHASE_HASH);
    {
        int16_t *row = (int16_t *)(void *)work;
        int16_t *rt = (int16_t *)(void *)(work + align4((size_t)(g->kp + 1) * 2));
        int32_t *chan_sum = (int32_t *)(void *)((uint8_t *)rt + (size_t)g->hbits * l_aligned(g) * 2);
        transpose_hash(g, hash, rt);
        hash_offsets(g, input, hash, off, chan_sum);
        compute_codes(g, input, off, rt, row, ids);
    }

    /* compaction */
    PROFILE_MARK(PHASE_CENTROIDS);
    uint16_t *map = (uint16_t *)(void *)work;
    uint16_t *counts = (uint16_t *)(void *)(work + (size_t)g->map_cap * 4);
    int32_t *sums = (int32_t *)(void *)(work + (size_t)g->map_cap * 4 + align4((size_t)g->max_clusters * 2));
    uint8_t *chunk_area = work + lay->pass2_fixed;
    int64_t c_tot = 0;
    int32_t c_max = 0;
    for (int32_t m = 0; m < g->m; m++) {
        ncl[m] = compact_ids(g, ids, m, map);
        c_tot += ncl[m];
        c_max = TREC_MAX(c_max, ncl[m]);
    }

    plan p;
    if (!choose_plan(g, work_size - lay->pass2_fixed, c_tot, c_max, &p)) {
        return -1; /* cannot happen when size >= the minimum (worst case is budgeted) */
    }
    const int32_t la = l_aligned(g);
    int16_t *ws = (int16_t *)(void *)chunk_area;
    int32_t *tables = (int32_t *)(void *)(chunk_area + align4((size_t)p.blk * la * 2));
    int32_t chunks = 0;

    for (int32_t c0 = 0; c0 < g->cout; c0 += p.blk, chunks++) {
        const int32_t blk = TREC_MIN(p.blk, g->cout - c0);
        int32_t *acc = tables; /* plan A: N x blk accumulator, then one table after it */
        int32_t *table = p.plan_t ? tables : tables + (size_t)g->n * blk;
        if (!p.plan_t) {
            for (int32_t n = 0; n < g->n; n++) {
                for (int32_t j = 0; j < blk; j++) {
                    acc[n * blk + j] = w->bias ? w->bias[c0 + j] : 0;
                }
            }
        }
        for (int32_t m = 0; m < g->m; m++) {
            PROFILE_MARK(PHASE_CENTROIDS);
            cluster_sums(g, input, ids, m, ncl[m], sums, counts);
            PROFILE_MARK(PHASE_PRODUCTS);
            filter_slice(g, w->filter, m, c0, blk, ws);
            cluster_products(g, sums, counts, ncl[m], ws, blk, table);
            if (p.plan_t) {
                table += (size_t)ncl[m] * blk;
            } else {
                PROFILE_MARK(PHASE_SCATTER);
                for (int32_t n = 0; n < g->n; n++) {
                    const int32_t c = read_id(ids, g->id_size, (size_t)n * g->m + m);
                    const int32_t *t = table + (size_t)c * blk;
                    int32_t *a = acc + (size_t)n * blk;
                    for (int32_t j = 0; j < blk; j++) {
                        a[j] += t[j];
                    }
                }
            }
        }
        PROFILE_MARK(PHASE_SCATTER);
        if (p.plan_t) {
            int32_t row_acc[64];
            for (int32_t n = 0; n < g->n; n++) {
                for (int32_t j0 = 0; j0 < blk; j0 += 64) {
                    const int32_t nb = TREC_MIN(64, blk - j0);
                    for (int32_t j = 0; j < nb; j++) {
                        row_acc[j] = w->bias ? w->bias[c0 + j0 + j] : 0;
                    }
                    const int32_t *t = tables;
                    for (int32_t m = 0; m < g->m; m++) {
                        const int32_t c = read_id(ids, g->id_size, (size_t)n * g->m + m);
                        const int32_t *tc = t + (size_t)c * blk + j0;
                        for (int32_t j = 0; j < nb; j++) {
                            row_acc[j] += tc[j];
                        }
                        t += (size_t)ncl[m] * blk;
                    }
                    requantize_row(g, row_acc, c0 + j0, nb, w, output + (size_t)n * g->cout);
                }
            }
        } else {
            for (int32_t n = 0; n < g->n; n++) {
                requantize_row(g, acc + (size_t)n * blk, c0, blk, w, output + (size_t)n * g->cout);
            }
        }
    }
    PROFILE_MARK(PHASE_DONE);
    *passes = chunks;
    return (int32_t)c_tot;
}

/* ------------------------------------------------------------------------------------------------
 * entry point
 * ---------------------------------------------------------------------------------------------- */
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
    layout lay;
    make_layout(&g, &lay);
    uint8_t *buf = (uint8_t *)ctx->buf;
    size_t size = (size_t)ctx->size;
    const size_t skew = (size_t)((4u - ((uintptr_t)buf & 3u)) & 3u);
    buf += skew;
    size -= skew;

    const weights w = {filter, bias, quant_params->multiplier, quant_params->shift};
    const size_t in_size = (size_t)g.in_h * g.in_w * g.cin;
    const size_t out_size = (size_t)g.n * g.cout;
    int64_t clusters = 0;
    int32_t passes = 0;
    for (int32_t b = 0; b < input_dims->n; b++) {
        int32_t pass_b = 0;
        const int32_t c = run_image(&g, &lay, buf, size, input + b * in_size, hash, &w, output + b * out_size,
                                    &pass_b);
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
    }
    return TREC_SUCCESS;
}
