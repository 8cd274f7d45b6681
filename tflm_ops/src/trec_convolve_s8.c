/*
 * trec-tflm: TREC reuse convolution, int8 (the TREC_CONV_2D operator, docs/OP_SPEC.md).
 *
 * Bit-exact with trec_tflm.golden.trec_conv2d_s8. Per image:
 *
 *   hash     codes of the sub-vectors, then per sub-matrix the codes become dense cluster ids
 *            (trec_hash_s8.c);
 *   then per chunk of output channels, for every sub-matrix:
 *   sums     the members' sub-vectors summed per cluster, straight from the HWC input
 *            (trec_cluster_sums_s8.c);
 *   products cluster sums x filter slice, divided once per cluster and channel
 *            (trec_cluster_products_s8.c);
 *   scatter  the product tables summed per row and requantized (trec_scatter_s8.c).
 *
 * Scratch never holds the im2col matrix; an N x Cout int32 accumulator only when the caller's
 * scratch is that large. The plan (trec_convolve_plan_s8.c) fixes the chunk size, the sums and the
 * scatter for the scratch given; this file carves the scratch and runs the passes.
 */
#include <stddef.h>
#include <stdint.h>

#include "trec/trec_nnfunctions.h"
#include "trec_convolve_phases.h"
#include "trec_geometry.h"
#include "trec_nn_support.h"
#include "trec_plan.h"
#include "trec_profile.h"
#include "trec_scratch.h"
#include "trec_weight_layout.h"

/* ================================================================================================
 * one image
 * ============================================================================================== */
/* Pass-2 buffers. */
typedef struct {
    int32_t *rq;          /* per channel of the chunk: multiplier, rounding term (with the offset),
                           * shift + 1 */
    int32_t *members;     /* members per cluster of the current sub-matrix (not with SIMD sums) */
    int32_t *counts;      /* strip path: [members, in-image members per strip pixel] per cluster */
    int32_t *sums;
    int32_t *packed;      /* where products pack int16 sums (sums itself unless they must survive) */
    int32_t *big;         /* SIMD: big-cluster index per cluster, or -1 */
    int32_t *sums32;      /* SIMD: int32 sums of big clusters */
    int32_t *wsum;        /* SIMD: filter sums per strip pixel */
    int32_t *pair;        /* SIMD: two clusters' int16-lane sums interleaved word by word */
    int16_t *ws;
    int32_t *tables;
    int32_t *toff; /* plans T, T16: each sub-matrix's table, T in int32s from the first, T16 in bytes
                    * from the second */
    const int32_t **rowp; /* plans T, T16: a row's table rows */
} trec_pass2;

/* one sub-matrix's table for the channels [c0, c0 + blk); prev: the sub-matrix visited before it in
 * this chunk (trec_visit_order), or -1. Returns the number of clusters with members, or -1 where the
 * caller counts them */
static int32_t build_table_only(const trec_geom *g, const int8_t *input, const uint8_t *ids, int32_t m, int32_t prev,
                                int32_t slots, const trec_plan *p, const trec_pass2 *b, const int8_t *filter,
                                int32_t c0, int32_t blk, int32_t *table)
{
    if (p->simd) {
        TREC_PROFILE_MARK(TREC_PHASE_CENTROIDS);
        const int32_t n_big = trec_strip_sums_simd(g, input, ids, m, prev, slots, b->counts, b->big, b->sums,
                                                   b->sums32);
        TREC_PROFILE_MARK(TREC_PHASE_PRODUCTS);
        trec_filter_slice_simd(g, filter, m, c0, blk, b->ws, b->wsum);
        return trec_products_simd(g, slots, b->counts, n_big, b->big, b->sums, b->sums32, b->ws, b->wsum, blk,
                                  b->pair, table);
    }
    for (int32_t l0 = 0; l0 < g->l; l0 += p->lb) {
        const int32_t lb = TREC_MIN(p->lb, g->l - l0);
        TREC_PROFILE_MARK(TREC_PHASE_CENTROIDS);
        if (g->strip) {
            trec_strip_sums(g, input, ids, m, prev, slots, l0, lb, p->incremental, b->sums, b->counts);
            for (int32_t s = 0; s < slots; s++) {
                b->members[s] = b->counts[(size_t)s * (g->j + 1)];
            }
        } else {
            trec_row_sums(g, input, ids, m, slots, l0, lb, b->sums, b->members);
        }
        TREC_PROFILE_MARK(TREC_PHASE_PRODUCTS);
        trec_filter_slice(g, filter, m, l0, lb, c0, blk, b->ws);
        if (g->wide) {
            trec_products_wide(b->sums, slots, b->members, g->l, b->ws, blk, table);
        } else {
            trec_accumulate_products(b->sums, b->packed, slots, b->members, lb, b->ws, blk, l0 == 0, table);
        }
    }
    if (!g->wide) {
        trec_divide_table(table, slots, b->members, blk);
    }
    return -1;
}

/* adds vec[j] to every entry of channel j (rows of clusters without members too: they are never
 * read, and unsigned arithmetic keeps their garbage defined) */
static void add_to_table(int32_t *table, int32_t slots, const int32_t *vec, int32_t blk)
{
    for (int32_t s = 0; s < slots; s++) {
        int32_t *t = table + (size_t)s * blk;
        for (int32_t j = 0; j < blk; j++) {
            t[j] = (int32_t)((uint32_t)t[j] + (uint32_t)vec[j]);
        }
    }
}

/* build_table_only, then the bias and with `clusters` the number of clusters the sub-matrix has
 * (ids with members in its window) added */
static void build_table(const trec_geom *g, const int8_t *input, const uint8_t *ids, int32_t m, int32_t prev,
                        int32_t slots, const trec_plan *p, const trec_pass2 *b, const trec_weights *w, int32_t c0,
                        int32_t blk, int32_t *table, int64_t *clusters)
{
    int32_t live = build_table_only(g, input, ids, m, prev, slots, p, b, w->filter, c0, blk, table);
    if (m == 0 && w->bias != NULL && p->kind != TREC_PLAN_T16) {
        /* the bias rides in the first sub-matrix's table: every row takes exactly one of its entries */
        add_to_table(table, slots, w->bias + c0, blk);
    }
    if (clusters != NULL) {
        if (live < 0) {
            /* with SIMD sums the members are in the counts only */
            const int32_t *members = p->simd ? b->counts : b->members, stride = p->simd ? g->j + 1 : 1;
            live = 0;
            for (int32_t s = 0; s < slots; s++) {
                live += members[(size_t)s * stride] > 0;
            }
        }
        *clusters += live;
    }
}

/* Pass-2 buffers of plan p in `area`. */
static void carve(const trec_geom *g, const trec_plan *p, int32_t slots_max, uint8_t *area, trec_pass2 *b)
{
    memset(b, 0, sizeof(*b));
    b->rq = (int32_t *)(void *)area;
    area += trec_rq_bytes(p->blk);
    if (p->kind == TREC_PLAN_T || p->kind == TREC_PLAN_T16) {
        b->toff = (int32_t *)(void *)area;
        b->rowp = (const int32_t **)(void *)(((uintptr_t)(b->toff + g->m) + sizeof(void *) - 1) &
                                             ~(uintptr_t)(sizeof(void *) - 1));
        area += trec_table_state_bytes(g);
    }
    b->counts = (int32_t *)(void *)area;
    if (!p->simd) {
        b->members = b->counts;
        b->counts += slots_max;
    }
    b->sums = (int32_t *)(void *)area + (size_t)slots_max * trec_counts_per_slot(g, p->simd);
    b->packed = b->sums;
    int32_t *after_sums = b->sums + (size_t)slots_max * p->lb;
    if (p->incremental) {
        /* sums kept whole from one sub-matrix to the next; products read a packed copy */
        b->packed = b->sums + (size_t)slots_max * g->l;
        after_sums = b->packed + (size_t)slots_max * (g->la / 2);
    }
    if (p->simd) {
        /* sums16 (slots x L/2 words) | big map (slots) | int32 sums of big clusters | filter sums */
        b->big = b->sums + (size_t)slots_max * (g->l / 2);
        b->sums32 = b->big + slots_max;
        b->wsum = b->sums32 + (size_t)trec_simd_big_max(g) * g->l;
        after_sums = b->wsum + (size_t)p->blk * g->j;
        if (p->simd == TREC_SIMD_PAIRED) {
            b->pair = after_sums;
            after_sums += g->l;
        }
    }
    b->ws = (int16_t *)(void *)after_sums;
    b->tables = (int32_t *)(void *)((uint8_t *)b->ws + (size_t)trec_blk_quads(p->blk) * ((p->lb + 1) & ~1) * 2);
}

/* What every chunk of one image shares. */
typedef struct {
    const trec_geom *g;
    const int8_t *input;
    const uint8_t *ids;
    const int32_t *slots; /* general path: clusters per sub-matrix; NULL on the strip path */
    int32_t strip_slots;  /* strip path: the clusters of the grid, every sub-matrix's */
    const int32_t *id_off;
    const trec_weights *w;
    int8_t *output;
} trec_image;

static inline int32_t slots_of(const trec_image *im, int32_t m)
{
    return im->slots != NULL ? im->slots[m] : im->strip_slots;
}

static void chunk_tables(const trec_image *im, const trec_plan *p, const trec_pass2 *b, int32_t c0, int32_t blk,
                         int64_t *count)
{
    const trec_geom *g = im->g;
    int32_t *table = b->tables;
    for (int32_t i = 0, prev = -1; i < g->m; i++) {
        const int32_t m = trec_visit_order(g, i);
        b->toff[m] = (int32_t)(table - b->tables);
        build_table(g, im->input, im->ids, m, prev, slots_of(im, m), p, b, im->w, c0, blk, table, count);
        table += (size_t)slots_of(im, m) * blk;
        prev = m;
    }
    TREC_PROFILE_MARK(TREC_PHASE_SCATTER);
    trec_scatter_tables(g, im->ids, im->id_off, b->tables, b->toff, c0, blk, im->w, im->output, b->rowp, b->rq);
}

/* plan T16, one chunk: 0 when an entry does not fit its uint16 (nothing has been written to the
 * output; the chunk then runs on the plan without T16) */
static int chunk_tables16(const trec_image *im, const trec_plan *p, const trec_pass2 *b, int32_t c0, int32_t blk,
                          int64_t *count)
{
    const trec_geom *g = im->g;
    /* T16's scatter has only the short requantization (the general one would cost 2 KB more flash
     * for multipliers and biases no realistic layer has). Its condition also bounds the partial
     * sums of a row within int32: |bias| < 2^29 - kp x 32640 and the tables' entries, offsets and
     * uint16 parts add at most 2 x kp x 32640 + M x 32768 (see trec_narrow_table), below 2^31 for
     * any kp the condition admits (kp x 32640 < 2^29). */
    if (!trec_fast_requant_block(g, im->w, c0, blk)) {
        return 0;
    }
    /* fold: what the first table's entries carry, the bias and every other table's offset */
    int32_t *fold = b->tables, *offset = fold + blk, *table0 = offset + blk;
    uint8_t *tables = (uint8_t *)(table0 + (size_t)slots_of(im, 0) * blk);
    build_table(g, im->input, im->ids, 0, -1, slots_of(im, 0), p, b, im->w, c0, blk, table0, count);
    /* the members per cluster: in counts on the strip path (the SIMD products leave members[]
     * unwritten), in members[] otherwise */
    const int32_t *members = g->strip ? b->counts : b->members, stride = g->strip ? g->j + 1 : 1;
    if (!trec_table_spread16(table0, slots_of(im, 0), members, stride, blk, TREC_MIN(blk, 8), fold, offset)) {
        return 0;
    }
    for (int32_t j = 0; j < blk; j++) {
        fold[j] = im->w->bias ? im->w->bias[c0 + j] : 0;
    }
    size_t at = 0;
    for (int32_t i = 1, prev = 0; i < g->m; i++) { /* trec_visit_order(g, 0) == 0 */
        const int32_t m = trec_visit_order(g, i);
        int32_t *table = (int32_t *)(void *)(tables + at);
        build_table(g, im->input, im->ids, m, prev, slots_of(im, m), p, b, im->w, c0, blk, table, count);
        prev = m;
        if (!trec_narrow_table(table, slots_of(im, m), members, stride, blk, offset)) {
            return 0;
        }
        for (int32_t j = 0; j < blk; j++) {
            fold[j] += offset[j];
        }
        b->toff[m] = (int32_t)at;
        at += (size_t)slots_of(im, m) * trec_t16_row(blk) * 2;
    }
    add_to_table(table0, slots_of(im, 0), fold, blk);
    TREC_PROFILE_MARK(TREC_PHASE_SCATTER);
    trec_scatter_tables16(g, im->ids, im->id_off, table0, tables, b->toff, c0, blk, im->w, im->output, b->rowp,
                          b->rq);
    return 1;
}

static void chunk_accumulator(const trec_image *im, const trec_plan *p, const trec_pass2 *b, int32_t slots_max,
                              int32_t c0, int32_t blk, int64_t *count)
{
    const trec_geom *g = im->g;
    int32_t *acc = b->tables;
    int32_t *table = b->tables + (size_t)g->n * blk;
    int32_t *table2 = table + (size_t)slots_max * blk; /* plan A2 only */
    if (g->m == 1) {
        for (int32_t n = 0; n < g->n; n++) {
            memset(acc + (size_t)n * blk, 0, (size_t)blk * 4);
        }
    }
    for (int32_t i = 0, prev = -1; i < g->m;) {
        const int32_t m = trec_visit_order(g, i);
        build_table(g, im->input, im->ids, m, prev, slots_of(im, m), p, b, im->w, c0, blk, table, count);
        if (p->kind == TREC_PLAN_A2 && i + 2 < g->m) {
            const int32_t m2 = trec_visit_order(g, i + 1);
            build_table(g, im->input, im->ids, m2, m, slots_of(im, m2), p, b, im->w, c0, blk, table2, count);
            TREC_PROFILE_MARK(TREC_PHASE_SCATTER);
            trec_scatter_add2(g, im->ids, im->id_off[m], im->id_off[m2], table, table2, blk, i == 0, acc);
            prev = m2;
            i += 2;
            continue;
        }
        TREC_PROFILE_MARK(TREC_PHASE_SCATTER);
        if (i + 1 < g->m) {
            trec_scatter_add(g, im->ids, im->id_off[m], table, blk, i == 0, acc);
        } else {
            trec_scatter_requantize(g, im->ids, im->id_off[m], table, c0, blk, acc, im->w, b->rq, im->output);
        }
        prev = m;
        i++;
    }
}

/* the chunk's requantization terms (trec_requantize_fast_small's) */
static void chunk_rq(const trec_geom *g, const trec_weights *w, int32_t c0, int32_t blk, int32_t *rq)
{
    for (int32_t j = 0; j < blk; j++) {
        const int32_t c = c0 + j, r = w->shift[c] <= 0 ? -w->shift[c] : 0;
        rq[3 * j] = w->mult[c];
        /* used only where fast_ok (r <= 18): 2^r rounds, and the output offset times 2^(r + 1)
         * comes out of the shift as the offset itself, one add less per output (|x| < 2^29 keeps
         * the sum within 2^31) */
        rq[3 * j + 1] = r <= 18 ? (int32_t)(1u << r) + g->output_offset * (int32_t)(1u << (r + 1)) : 0;
        rq[3 * j + 2] = r + 1;
    }
}

static int32_t run_image(const trec_geom *g, uint8_t *buf, size_t size, const int8_t *input, const int8_t *hash,
                         const trec_weights *w, int8_t *output, int32_t *passes, int32_t *chunk, int32_t *plan_kind,
                         int32_t *sums_block)
{
    /* after the ids, per sub-matrix: on the strip path, where every sub-matrix has all the grid's
     * clusters, its id offset into the grid; on the general path its clusters and its id offset
     * (m: row n's ids are at n x M) */
    uint8_t *ids = buf;
    int32_t *per_m = (int32_t *)(void *)(buf + trec_ids_bytes(g));
    uint8_t *work = buf + trec_header_bytes(g);
    const size_t work_size = size - trec_header_bytes(g);
    trec_image im = {g, input, ids, NULL, 0, NULL, w, output};

    TREC_PROFILE_MARK(TREC_PHASE_HASH);
    int64_t slots_tot;
    int32_t slots_max;
    if (g->strip) {
        im.strip_slots = slots_max = trec_hash_strips(g, input, hash, ids, work);
        slots_tot = (int64_t)slots_max * g->m;
        for (int32_t m = 0; m < g->m; m++) {
            int32_t y, x;
            trec_strip_origin(g, m, &y, &x);
            per_m[m] = y * g->pw + x;
        }
        im.id_off = per_m;
    } else {
        trec_hash_rows(g, input, hash, ids, per_m, work);
        im.slots = per_m;
        im.id_off = per_m + g->m;
        slots_tot = 0;
        slots_max = 0;
        for (int32_t m = 0; m < g->m; m++) {
            per_m[g->m + m] = m;
            slots_tot += per_m[m];
            slots_max = TREC_MAX(slots_max, per_m[m]);
        }
    }
    TREC_PROFILE_MARK(TREC_PHASE_CENTROIDS);
    trec_plan p, fallback;
    if (!trec_choose_plan(g, work_size, slots_max, slots_tot, &p, &fallback)) {
        return -1; /* below the minimum: excluded by the size check */
    }
    uint8_t *area = work;
    trec_pass2 b;
    carve(g, &p, slots_max, area, &b);

    int32_t chunks = 0, widest = 0;
    int64_t strip_clusters = 0; /* strip path: clusters per sub-matrix, counted in the first chunk */
    for (int32_t c0 = 0; c0 < g->cout;) {
        const int32_t blk = TREC_MIN(p.blk, g->cout - c0);
        int64_t *count = c0 == 0 && g->strip ? &strip_clusters : NULL;
        chunk_rq(g, w, c0, blk, b.rq);
        if (p.kind == TREC_PLAN_T16) {
            if (!chunk_tables16(&im, &p, &b, c0, blk, count)) {
                /* entries too far apart for 16 bits: this chunk and the rest on the other plan */
                if (count != NULL) {
                    strip_clusters = 0; /* counted again */
                }
                p = fallback;
                carve(g, &p, slots_max, area, &b);
                continue;
            }
        } else if (p.kind == TREC_PLAN_T) {
            chunk_tables(&im, &p, &b, c0, blk, count);
        } else {
            chunk_accumulator(&im, &p, &b, slots_max, c0, blk, count);
        }
        c0 += blk;
        chunks++;
        widest = TREC_MAX(widest, blk);
    }
    TREC_PROFILE_MARK(TREC_PHASE_DONE);
    *passes = chunks;
    *chunk = widest;
    *plan_kind = p.kind;
    *sums_block = p.lb;
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
    trec_geom g;
    trec_status st = trec_make_geom(conv_params, hash_params, input_dims, filter_dims, output_dims, &g);
    if (st != TREC_SUCCESS) {
        return st;
    }
    if (ctx == NULL || quant_params == NULL || quant_params->multiplier == NULL || quant_params->shift == NULL ||
        input == NULL || filter == NULL || hash == NULL || output == NULL) {
        return TREC_ARG_ERROR;
    }
    if (bias != NULL && (bias_dims == NULL || trec_dims_count(bias_dims) != g.cout)) {
        return TREC_ARG_ERROR;
    }
    for (int32_t c = 0; c < g.cout; c++) {
        if (!trec_quant_params_valid(quant_params->multiplier[c], quant_params->shift[c])) {
            return TREC_ARG_ERROR;
        }
    }
    if (ctx->buf == NULL || ctx->size < trec_min_scratch(&g)) {
        return TREC_BUFFER_ERROR;
    }
    uint8_t *buf = (uint8_t *)ctx->buf;
    size_t size = (size_t)ctx->size;
    const size_t skew = (size_t)((4u - ((uintptr_t)buf & 3u)) & 3u);
    buf += skew;
    size -= skew;

    const trec_weights w = {filter, bias, quant_params->multiplier, quant_params->shift};
    const size_t in_size = (size_t)g.in_h * g.in_w * g.cin;
    const size_t out_size = (size_t)g.n * g.cout;
    int64_t clusters = 0;
    int32_t passes = 0, chunk = 0, kind = TREC_PLAN_A, lb = g.l;
    for (int32_t b = 0; b < input_dims->n; b++) {
        int32_t pass_b = 0;
        int32_t c = run_image(&g, buf, size, input + b * in_size, hash, &w, output + b * out_size, &pass_b, &chunk,
                              &kind, &lb);
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
        stats->chunk = chunk;
        stats->plan = kind == TREC_PLAN_T16 ? 2 : kind == TREC_PLAN_T;
        stats->scatter_tenths = trec_scatter_tenths(&g, kind, chunk);
        stats->sums_block = lb;
    }
    return TREC_SUCCESS;
}
