/*
 * trec-tflm: TREC kernel, filter slices (docs/OP_SPEC.md step 5): per sub-matrix and chunk of output
 * channels, the filter's weights of that sub-matrix as int16 in channel quads (trec_ws_index), the layout
 * the cluster products (trec_cluster_products_s8.c) read with one load per quad word.
 */
#include "trec_convolve_phases.h"
#include "trec_geometry.h"
#include "trec_nn_support.h"
#include "trec_weight_layout.h"

/* Filter slice as int16 in channel quads (trec_ws_index), rows padded to even length lba. */
void trec_filter_slice(const trec_geom *g, const int8_t *filter, int32_t m, int32_t l0, int32_t lb, int32_t c0,
                       int32_t blk, int16_t *ws)
{
    const int32_t lba = (lb + 1) & ~1, pairs = lba / 2;
    /* valid elements of this slice: inside the block and below K (zero extension) */
    const int32_t valid = TREC_MAX(0, TREC_MIN(lb, g->k - m * g->l - l0));
    for (int32_t j = 0; j < trec_blk_quads(blk); j++) {
        const int8_t *w = filter + (size_t)(c0 + j) * g->k + (size_t)m * g->l + l0;
        int16_t *d = ws + trec_ws_index(pairs, j, 0); /* element l at d[(l >> 1) * 8 + (l & 1)] */
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

/* ------------------------------------------------------------------------------------------------
 * SIMD path (strip path, Cin a multiple of 4): the sums come in int16 lanes in SXTB16's
 * "unordered" order ((x0,x2),(x1,x3) per group of four), so the filter slice is converted into
 * the same order; the products apply the zero point from the in-image members per strip pixel and
 * the filter's sum over that pixel's channels (wsum, computed here).
 * ---------------------------------------------------------------------------------------------- */
/* filter slice in the SIMD lane order, channel quads (trec_ws_index), and per strip pixel its sum
 * times the input offset (wsum[j][t]) */
#if TREC_DSP
/* One group of four input channels of a channel quad's slice: the weights w[c * k + 0..3] of the
 * four output channels c in the lane order, at d[0..8) (two STRD per lane half), their sums added
 * to a[c] (SMLAD against (1, 1)) */
TREC_INLINE void slice_group(const int8_t *w, int32_t k, int32_t *d, int32_t a[4])
{
    const int32_t ones = trec_pack_s16x2(1, 1);
    const int32_t v0 = trec_read_s8x4(w), v1 = trec_read_s8x4(w + k);
    const int32_t e0 = trec_sxtb16(v0), e1 = trec_sxtb16(v1);
    const int32_t o0 = trec_sxtb16_ror8(v0), o1 = trec_sxtb16_ror8(v1);
    trec_store2(d, e0, e1);
    trec_store2(d + 4, o0, o1);
    a[0] = trec_smlad(o0, ones, trec_smlad(e0, ones, a[0]));
    a[1] = trec_smlad(o1, ones, trec_smlad(e1, ones, a[1]));
    const int32_t v2 = trec_read_s8x4(w + 2 * k), v3 = trec_read_s8x4(w + 3 * k);
    const int32_t e2 = trec_sxtb16(v2), e3 = trec_sxtb16(v3);
    const int32_t o2 = trec_sxtb16_ror8(v2), o3 = trec_sxtb16_ror8(v3);
    trec_store2(d + 2, e2, e3);
    trec_store2(d + 6, o2, o3);
    a[2] = trec_smlad(o2, ones, trec_smlad(e2, ones, a[2]));
    a[3] = trec_smlad(o3, ones, trec_smlad(e3, ones, a[3]));
}
#endif

void trec_filter_slice_simd(const trec_geom *g, const int8_t *filter, int32_t m, int32_t c0, int32_t blk, int16_t *ws,
                            int32_t *wsum)
{
#if TREC_DSP
    /* L is a multiple of 4 here: SXTB16 converts four weights at a time into the lane order
     * ((x0, x2), (x1, x3)), and SMLAD against (1, 1) sums the converted pairs */
    const int32_t ones = trec_pack_s16x2(1, 1), pairs = g->l / 2, groups = g->cin / 4;
    int32_t *ws32 = (int32_t *)(void *)ws;
    const int32_t full = blk & ~3, k = g->k;
    if (g->j == 1 && full == blk) {
        /* one strip pixel, whole quads: the common case of small layers, called once per
         * sub-matrix and pass, where the general loop's set-up outweighs its work */
        const int32_t off = g->input_offset;
        const int8_t *w = filter + (size_t)c0 * k + (size_t)m * g->l;
        for (int32_t j0 = 0; j0 < blk; j0 += 4, w += 4 * (size_t)k, ws32 += (size_t)pairs * 4) {
            int32_t a[4] = {0, 0, 0, 0};
            int32_t *d = ws32;
            for (int32_t q = 0; q < groups; q++, d += 8) {
                slice_group(w + 4 * q, k, d, a);
            }
            trec_store2(wsum + j0, a[0] * off, a[1] * off);
            trec_store2(wsum + j0 + 2, a[2] * off, a[3] * off);
        }
        return;
    }
    /* whole quads: the four channels' words of a group are contiguous, two STRD per group word */
    for (int32_t j0 = 0; j0 < full; j0 += 4) {
        int32_t *d = ws32 + (size_t)(j0 >> 2) * pairs * 4;
        const int8_t *w = filter + (size_t)(c0 + j0) * k + (size_t)m * g->l;
        for (int32_t t = 0; t < g->j; t++) {
            int32_t a[4] = {0, 0, 0, 0};
            for (int32_t q = t * groups; q < (t + 1) * groups; q++) {
                slice_group(w + 4 * q, k, d + 8 * q, a);
            }
            for (int32_t i = 0; i < 4; i++) {
                wsum[(size_t)(j0 + i) * g->j + t] = a[i] * g->input_offset;
            }
        }
    }
    for (int32_t j = full; j < trec_blk_quads(blk); j++) {
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
    (void)g;
    (void)filter;
    (void)m;
    (void)c0;
    (void)blk;
    (void)ws;
    (void)wsum;
#endif
}
