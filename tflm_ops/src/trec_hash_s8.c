/*
 * trec-tflm: TREC kernel, hashing (docs/OP_SPEC.md steps 3-5).
 *
 * The code of a sub-vector has bit h set when its dot product with hash vector h, plus the centre
 * offset, is positive; per sub-matrix the codes then become dense cluster ids (compact). General
 * path: one im2col row at a time (never the matrix) is hashed with SMLAD and N*M ids are kept.
 * Strip path (L = j*Cin with j dividing kw): a sub-vector is a strip of j horizontally neighbouring
 * input pixels (padding elements 0), the hash centre is the same for every sub-matrix, and one strip
 * serves every (row, sub-matrix) that starts at its position: each position of the padded input is
 * hashed once (kh*kw/j times less hashing) and the ids live in an image of positions instead of
 * N*M cells.
 */
#include "trec_convolve_phases.h"
#include "trec_geometry.h"
#include "trec_ids.h"
#include "trec_inner_loops.h"
#include "trec_nn_support.h"
#include "trec_profile.h"
#include "trec_rounding.h"
#include "trec_scratch.h"
#include "trec_weight_layout.h"

#define MAP_EMPTY 0xFFFFu

/* chan_sum[c] = sum over the image of input channel c (raw int8) */
static void channel_sums(const trec_geom *g, const int8_t *input, int32_t *chan_sum)
{
    const int32_t pixels = g->in_h * g->in_w, cin = g->cin;
    memset(chan_sum, 0, (size_t)cin * sizeof(int32_t));
    int32_t c0 = 0;
#if TREC_DSP
    /* four channels per load, in int16 lanes (SXTAB16), flushed every 256 pixels: 256 * 128 still
     * fits a lane */
    for (; c0 + 3 < cin; c0 += 4) {
        const int8_t *p = input + c0;
        for (int32_t i0 = 0; i0 < pixels; i0 += 256) {
            const int32_t n = TREC_MIN(256, pixels - i0);
            int32_t even = 0, odd = 0; /* lanes (c0, c0 + 2) and (c0 + 1, c0 + 3) */
            for (int32_t i = 0; i < n; i++, p += cin) {
                const int32_t v = trec_read_s8x4(p);
                even = trec_sxtab16(even, v);
                odd = trec_sxtab16_ror8(odd, v);
            }
            chan_sum[c0] += trec_lo16(even);
            chan_sum[c0 + 1] += trec_lo16(odd);
            chan_sum[c0 + 2] += trec_hi16(even);
            chan_sum[c0 + 3] += trec_hi16(odd);
        }
    }
#endif
    for (; c0 < cin; c0++) {
        const int8_t *p = input + c0;
        int32_t acc = 0;
        for (int32_t i = 0; i < pixels; i++, p += cin) {
            acc += *p;
        }
        chan_sum[c0] = acc;
    }
}

/* off[m][h] (docs/OP_SPEC.md step 3), rows of hq (0 past hbits); m_count offsets (1 on the strip
 * path: all equal) */
static void hash_offsets(const trec_geom *g, const int8_t *input, const int8_t *hash, int32_t m_count, int32_t *off,
                         int32_t *chan_sum)
{
    const int32_t hb = g->hbits;
    memset(off, 0, (size_t)m_count * g->hq * sizeof(int32_t));
    if (g->center == TREC_HASH_CENTER_NONE) {
        return;
    }
    const int32_t pixels = g->in_h * g->in_w;
    channel_sums(g, input, chan_sum);
    for (int32_t c = 0; c < g->cin; c++) {
        chan_sum[c] += pixels * g->input_offset;
    }
    for (int32_t m = 0; m < m_count; m++) {
        for (int32_t h = 0; h < hb; h++) {
            int64_t num = 0;
            for (int32_t l = 0; l < g->l && m * g->l + l < g->k; l++) {
                num += (int64_t)chan_sum[(m * g->l + l) % g->cin] * hash[l * hb + h];
            }
            off[m * g->hq + h] = -trec_div_round64(num, pixels);
        }
    }
}

/* Hash vectors as int16 in quads of hash bits (trec_ws_index(la / 2, h, l), the filter slices' layout):
 * each word of a sub-vector meets four bits' words in a row; zero past L and past hbits. */
static void transpose_hash(const trec_geom *g, const int8_t *hash, int16_t *rt)
{
    for (int32_t h = 0; h < g->hq; h++) {
        for (int32_t l = 0; l < g->la; l++) {
            rt[trec_ws_index(g->la / 2, h, l)] = (int16_t)(h < g->hbits && l < g->l ? hash[l * g->hbits + h] : 0);
        }
    }
}

/* bit i set when a_i > 0. DSP: the sign bit of QSUB(0, a_i), negative exactly when a_i > 0 (it
 * saturates, so INT32_MIN stays non-negative): two instructions per bit instead of a compare, two
 * conditional moves and an OR. */
TREC_INLINE int32_t positive_bits4(int32_t a0, int32_t a1, int32_t a2, int32_t a3)
{
#if TREC_DSP
    const uint32_t n0 = (uint32_t)trec_qsub(0, a0), n1 = (uint32_t)trec_qsub(0, a1);
    const uint32_t n2 = (uint32_t)trec_qsub(0, a2), n3 = (uint32_t)trec_qsub(0, a3);
    return (int32_t)((n0 >> 31) | (n1 >> 31 << 1) | (n2 >> 31 << 2) | (n3 >> 31 << 3));
#else
    return (a0 > 0) | (a1 > 0) << 1 | (a2 > 0) << 2 | (a3 > 0) << 3;
#endif
}

/* code of one sub-vector x (la int16, the last odd element times a zero hash entry):
 * bit h set when sum_l x[l] * R[l][h] + off[h] > 0. Four bits per pass over x: one load of x and
 * four SMLAD per word. */
TREC_NOINLINE static int32_t hash_code(const int16_t *x, const int16_t *rt, const int32_t *off, int32_t la,
                                       int32_t hbits)
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
            a0 += x[l] * rt[trec_ws_index(pairs, h0, l)];
            a1 += x[l] * rt[trec_ws_index(pairs, h0 + 1, l)];
            a2 += x[l] * rt[trec_ws_index(pairs, h0 + 2, l)];
            a3 += x[l] * rt[trec_ws_index(pairs, h0 + 3, l)];
        }
#endif
        code |= positive_bits4(a0, a1, a2, a3) << h0;
    }
    return code & (int32_t)((1u << hbits) - 1u);
}

#if TREC_DSP
/* hash_code of two sub-vectors x0 and x1 (neighbouring strips of a row), sharing the hash words */
TREC_NOINLINE static void hash_code2(const int16_t *x0, const int16_t *x1, const int16_t *rt, const int32_t *off,
                                     int32_t la, int32_t hbits, int32_t *code0, int32_t *code1)
{
    const int32_t pairs = la >> 1;
    int32_t c0 = 0, c1 = 0;
    for (int32_t h0 = 0; h0 < hbits; h0 += 4, off += 4) {
        const int32_t *w = (const int32_t *)(const void *)(rt + (size_t)h0 * la);
        if (hbits - h0 <= 2) {
            /* at most two bits left (H = 6: the second quad): half the multiply-accumulates */
            int32_t a0 = off[0], a1 = off[1], b0 = off[0], b1 = off[1];
            for (int32_t p = 0; p < pairs; p++, w += 4) {
                const int32_t u = trec_read_s16x2(x0 + 2 * p), v = trec_read_s16x2(x1 + 2 * p);
                a0 = trec_smlad(u, w[0], a0);
                b0 = trec_smlad(v, w[0], b0);
                a1 = trec_smlad(u, w[1], a1);
                b1 = trec_smlad(v, w[1], b1);
            }
            c0 |= positive_bits4(a0, a1, 0, 0) << h0;
            c1 |= positive_bits4(b0, b1, 0, 0) << h0;
            break;
        }
        int32_t a[4] = {off[0], off[1], off[2], off[3]}, b[4] = {off[0], off[1], off[2], off[3]};
        trec_dot_2x4(x0, x1, w, pairs, a, b);
        c0 |= positive_bits4(a[0], a[1], a[2], a[3]) << h0;
        c1 |= positive_bits4(b[0], b[1], b[2], b[3]) << h0;
    }
    const int32_t mask = (int32_t)((1u << hbits) - 1u);
    *code0 = c0 & mask;
    *code1 = c1 & mask;
}
#endif

/* Replace codes by dense ids over `count` cells (stride `step`); returns the number of ids. */
TREC_NOINLINE static int32_t compact(const trec_geom *g, uint8_t *cells, size_t first, size_t step, int32_t count,
                                     void *map_mem)
{
    int32_t next = 0;
    if (g->direct) {
        uint16_t *map = (uint16_t *)map_mem;
        memset(map, 0xFF, (size_t)g->map_cap * 2);
        size_t i = first;
        for (int32_t c = 0; c < count; c++, i += step) {
            const int32_t code = trec_read_id(cells, g->id_size, i);
            uint32_t id = map[code];
            if (id == MAP_EMPTY) {
                id = (uint32_t)next++;
                map[code] = (uint16_t)id;
            }
            trec_write_id(cells, g->id_size, i, (int32_t)id);
        }
        return next;
    }
    uint16_t *map = (uint16_t *)map_mem; /* map[2s] = code, map[2s + 1] = id */
    const uint32_t mask = (uint32_t)g->map_cap - 1u;
    memset(map, 0xFF, (size_t)g->map_cap * 4);
    size_t i = first;
    for (int32_t c = 0; c < count; c++, i += step) {
        const uint32_t code = (uint32_t)trec_read_id(cells, g->id_size, i);
        uint32_t s = (code * 0x9E3779B1u) >> 16 & mask;
        while (map[2 * s + 1] != MAP_EMPTY && map[2 * s] != code) {
            s = (s + 1u) & mask;
        }
        if (map[2 * s + 1] == MAP_EMPTY) {
            map[2 * s] = (uint16_t)code;
            map[2 * s + 1] = (uint16_t)next++;
        }
        trec_write_id(cells, g->id_size, i, map[2 * s + 1]);
    }
    return next;
}

/* im2col row of output pixel (oy, ox): row[0..kp] int16 with the input offset applied, 0 for
 * padding, for the zero extension k >= K and for one element past the end (odd-L tail read). */
static void gather_row(const trec_geom *g, const int8_t *input, int32_t oy, int32_t ox, int16_t *row)
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

/* General path: ids[n][m] for every row and sub-matrix; slots[m] clusters each. Rows are hashed
 * two at a time where the DSP path shares the hash words between them (hash_code2). */
void trec_hash_rows(const trec_geom *g, const int8_t *input, const int8_t *hash, uint8_t *ids, int32_t *slots,
                    uint8_t *work)
{
    const size_t row_bytes = trec_align4((size_t)(g->kp + 1) * 2);
    int16_t *row = (int16_t *)(void *)work, *row2 = (int16_t *)(void *)(work + row_bytes);
    (void)row2; /* without the DSP extension rows are hashed one at a time */
    int16_t *rt = (int16_t *)(void *)(work + 2 * row_bytes);
    int32_t *off = (int32_t *)(void *)((uint8_t *)rt + (size_t)g->hq * g->la * 2);
    int32_t *chan_sum = off + (size_t)g->m * g->hq;
    void *map = (void *)(chan_sum + g->cin);
    transpose_hash(g, hash, rt);
    hash_offsets(g, input, hash, g->m, off, chan_sum);
    for (int32_t n = 0; n < g->n;) {
        gather_row(g, input, n / g->out_w, n % g->out_w, row);
#if TREC_DSP
        if (n + 1 < g->n) {
            gather_row(g, input, (n + 1) / g->out_w, (n + 1) % g->out_w, row2);
            const size_t i = (size_t)n * g->m;
            for (int32_t m = 0; m < g->m; m++) {
                int32_t c0, c1;
                hash_code2(row + m * g->l, row2 + m * g->l, rt, off + m * g->hq, g->la, g->hbits, &c0, &c1);
                trec_write_id(ids, g->id_size, i + (size_t)m, c0);
                trec_write_id(ids, g->id_size, i + (size_t)g->m + (size_t)m, c1);
            }
            n += 2;
            continue;
        }
#endif
        for (int32_t m = 0; m < g->m; m++) {
            trec_write_id(ids, g->id_size, (size_t)n * g->m + (size_t)m,
                          hash_code(row + m * g->l, rt, off + m * g->hq, g->la, g->hbits));
        }
        n++;
    }
    TREC_PROFILE_MARK(TREC_PHASE_CENTROIDS);
    for (int32_t m = 0; m < g->m; m++) {
        slots[m] = compact(g, ids, (size_t)m, (size_t)g->m, g->n, map);
    }
}

/* Strip path: vector of the strip at position (y, x) of the grid: pixels (y - pad_h,
 * x - pad_w + t*dil_w), t < j, as int16 with the input offset; 0 outside the image. */
static void strip_vector(const trec_geom *g, const int8_t *input, int32_t y, int32_t x, int16_t *v)
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
int32_t trec_hash_strips(const trec_geom *g, const int8_t *input, const int8_t *hash, uint8_t *ids, uint8_t *work)
{
    const int32_t row_elems = trec_strip_row_elems(g);
    int16_t *v = (int16_t *)(void *)work;
    int16_t *rt = (int16_t *)(void *)(work + trec_align4((size_t)(row_elems + 1) * 2));
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
                    trec_write_id(ids, g->id_size, i, zero_code);
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
                trec_write_id(ids, g->id_size, i, c0);
                trec_write_id(ids, g->id_size, i + 1, c1);
            }
#endif
            for (; x < g->pw; x++, i++) {
                trec_write_id(ids, g->id_size, i, hash_code(v + (size_t)x * cin, rt, off, g->la, g->hbits));
            }
        }
    } else {
        v[g->l] = 0; /* odd-L tail element, times a zero hash entry */
        for (int32_t y = 0; y < g->ph; y++) {
            for (int32_t x = 0; x < g->pw; x++, i++) {
                strip_vector(g, input, y, x, v);
                trec_write_id(ids, g->id_size, i, hash_code(v, rt, off, g->la, g->hbits));
            }
        }
    }
    TREC_PROFILE_MARK(TREC_PHASE_CENTROIDS);
    return compact(g, ids, 0, 1, g->ph * g->pw, map);
}

