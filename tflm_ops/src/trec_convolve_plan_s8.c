/*
 * trec-tflm: TREC kernel, geometry, scratch sizes and plan choice.
 *
 * A plan fixes how one image runs in the scratch it is given: the scatter plan (A, A2, T or T16),
 * the output channels per pass, the length of the sums blocks and the kind of cluster sums. It is
 * chosen at run time from the actual cluster counts (trec_choose_plan); less scratch means more
 * passes over the output channels, never a failure above trec_convolve_s8_get_min_buffer_size().
 */
#include <stddef.h>
#include <stdint.h>

#include "trec/trec_nnfunctions.h"
#include "trec_geometry.h"
#include "trec_nn_support.h"
#include "trec_plan.h"
#include "trec_scratch.h"
#include "trec_weight_layout.h"

#define MAX_ROWS 65535 /* cluster ids and counts are 16-bit */

/* ================================================================================================
 * geometry and validation
 * ============================================================================================== */
static int32_t pow2_at_least(int32_t v)
{
    int32_t p = 1;
    while (p < v) {
        p <<= 1;
    }
    return p;
}

trec_status trec_make_geom(const trec_conv_params *cp, const trec_hash_params *hp, const trec_dims *in,
                           const trec_dims *f, const trec_dims *out, trec_geom *g)
{
    if (cp == NULL || hp == NULL || in == NULL || f == NULL || out == NULL) {
        return TREC_ARG_ERROR;
    }
    if (!trec_dims_positive(in) || !trec_dims_positive(f) || !trec_dims_positive(out)) {
        return TREC_ARG_ERROR;
    }
    if (in->c != f->c || out->c != f->n || out->n != in->n) {
        return TREC_ARG_ERROR;
    }
    if (!trec_conv_geometry_ok(in->h, f->h, cp->stride.h, cp->dilation.h, cp->padding.h, out->h) ||
        !trec_conv_geometry_ok(in->w, f->w, cp->stride.w, cp->dilation.w, cp->padding.w, out->w)) {
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
 * scratch sizes (the layout is in trec_scratch.h)
 * ============================================================================================== */
static size_t map_bytes(const trec_geom *g) { return (size_t)g->map_cap * (g->direct ? 2 : 4); }

static size_t pass1_bytes(const trec_geom *g)
{
    /* the general path hashes two im2col rows at a time */
    const size_t row = trec_align4((size_t)((g->strip ? trec_strip_row_elems(g) : g->kp) + 1) * 2) * (g->strip ? 1 : 2);
    const size_t rt = (size_t)g->hq * g->la * 2;
    const size_t off = (size_t)(g->strip ? 1 : g->m) * g->hq * 4;
    return row + rt + off + (size_t)g->cin * 4 + trec_align4(map_bytes(g));
}

static int simd_possible(const trec_geom *g) { return TREC_DSP && g->strip && g->cin % 4 == 0 && !g->wide; }

/* pass-2 bytes: per-cluster counts, the sums (a block of lb, or on the incremental strip path
 * the sums kept whole plus a packed copy), the filter slice of a chunk of blk
 * channels, and the tables and accumulator of the scatter plan */
/* inlined: the plan chooser calls it a few hundred times per image */
TREC_INLINE size_t pass2_bytes(const trec_geom *g, int32_t slots_max, int64_t slots_tot, int32_t lb, int32_t blk,
                               int kind, int incremental, int simd)
{
    const size_t lba = (size_t)((lb + 1) & ~1);
    size_t b = trec_rq_bytes(blk) + (size_t)slots_max * trec_counts_per_slot(g, simd) * 4 +
               (size_t)trec_blk_quads(blk) * lba * 2;
    if (simd) { /* big-cluster map, int16 sums, int32 sums of big clusters, filter sums per strip pixel,
                 * with TREC_SIMD_PAIRED a pair of clusters' sums interleaved */
        b += (size_t)slots_max * 4 + (size_t)slots_max * g->l * 2 + (size_t)trec_simd_big_max(g) * g->l * 4 +
             (size_t)blk * g->j * 4 + (simd == TREC_SIMD_PAIRED ? (size_t)g->l * 4 : 0);
    } else {
        b += incremental ? (size_t)slots_max * ((size_t)g->l + (size_t)g->la / 2) * 4 : (size_t)slots_max * lb * 4;
    }
    if (kind == TREC_PLAN_T || kind == TREC_PLAN_T16) {
        b += trec_table_state_bytes(g);
    }
    if (kind == TREC_PLAN_T) {
        b += (size_t)slots_tot * blk * 4;
    } else if (kind == TREC_PLAN_T16) { /* offsets; the first table counted twice and the last's int32
                                    * products: at most two more uint16 tables of slots_max rows */
        b += (size_t)blk * 8 + ((size_t)slots_tot + 2 * (size_t)slots_max) * trec_t16_row(blk) * 2;
    } else {
        b += ((size_t)g->n + (size_t)slots_max * (kind == TREC_PLAN_A2 ? 2 : 1)) * blk * 4;
    }
    return b;
}

int64_t trec_min_scratch(const trec_geom *g)
{
    /* worst case: every sub-matrix has max_slots clusters; sums one element at a time (lb = 1, or
     * the whole L for the wide int64 path), one channel per pass, plan A */
    const int32_t lb = g->wide ? g->l : 1;
    const size_t p2 = pass2_bytes(g, g->max_slots, (int64_t)g->max_slots * g->m, lb, 1, TREC_PLAN_A, 0, 0);
    const size_t p1 = pass1_bytes(g);
    return (int64_t)(trec_header_bytes(g) + (p1 > p2 ? p1 : p2)) + 3; /* + 3: the kernel aligns the buffer */
}

enum { SIZE_LEAST, SIZE_PREFERRED, SIZE_MOST };

/* The three public size queries: the least scratch any plan runs in; the most any plan can use
 * (the fastest plan with every sub-matrix at its most clusters); and the preferred one between
 * them: twice the int8 output tensor of one image (the paper's space-efficiency bar). */
static int32_t buffer_size(const trec_conv_params *conv_params, const trec_hash_params *hash_params,
                           const trec_dims *input_dims, const trec_dims *filter_dims, const trec_dims *output_dims,
                           int which)
{
    trec_geom g;
    const trec_status st = trec_make_geom(conv_params, hash_params, input_dims, filter_dims, output_dims, &g);
    if (st != TREC_SUCCESS) {
        return st;
    }
    int64_t bytes = trec_min_scratch(&g);
    if (which != SIZE_LEAST) {
        const int64_t fastest =
            (int64_t)trec_header_bytes(&g) + 3 +
            (int64_t)pass2_bytes(&g, g.max_slots, (int64_t)g.max_slots * g.m, g.l, g.cout, TREC_PLAN_T, g.strip, 0);
        const int64_t target = which == SIZE_MOST ? fastest : 2 * (int64_t)g.n * g.cout;
        bytes = TREC_MAX(bytes, TREC_MIN(target, fastest));
    }
    return bytes > INT32_MAX ? TREC_NO_IMPL_ERROR : (int32_t)bytes;
}

int32_t trec_convolve_s8_get_min_buffer_size(const trec_conv_params *conv_params, const trec_hash_params *hash_params,
                                             const trec_dims *input_dims, const trec_dims *filter_dims,
                                             const trec_dims *output_dims)
{
    return buffer_size(conv_params, hash_params, input_dims, filter_dims, output_dims, SIZE_LEAST);
}

int32_t trec_convolve_s8_get_buffer_size(const trec_conv_params *conv_params, const trec_hash_params *hash_params,
                                         const trec_dims *input_dims, const trec_dims *filter_dims,
                                         const trec_dims *output_dims)
{
    return buffer_size(conv_params, hash_params, input_dims, filter_dims, output_dims, SIZE_PREFERRED);
}

int32_t trec_convolve_s8_get_max_buffer_size(const trec_conv_params *conv_params, const trec_hash_params *hash_params,
                                             const trec_dims *input_dims, const trec_dims *filter_dims,
                                             const trec_dims *output_dims)
{
    return buffer_size(conv_params, hash_params, input_dims, filter_dims, output_dims, SIZE_MOST);
}

/* ================================================================================================
 * plans
 * ============================================================================================== */
/* Scatter cost per (row, sub-matrix, channel) in tenths of an instruction, measured on Cortex-M7
 * at -Ofast over the six benchmark layers (kernel-bench phase split; chunks of 1-3: L2 at H = 8 in
 * 8 KB, three test images). The chunk sizes with unrolled scatter rows (one-byte ids: 1-4, 8 and
 * 16 channels on plans A and A2, 64 on plan T) are cheaper than the rest, whose loops pay a set-up per row and
 * block that larger chunks amortize: L5 in chunks of 16 (4 passes) takes 6.59M instructions, in chunks of 24 (3 passes) 6.77M, in
 * chunks of 32 (2 passes) 6.57M. The kernel reports it (trec_reuse_stats.scatter_tenths): the host's
 * cost model (trec_tflm/tune/cost.py) takes it from there. */
int32_t trec_scatter_tenths(const trec_geom *g, int kind, int32_t blk)
{
    const int unrolled = g->id_size == 1;
    if (kind == TREC_PLAN_T) {
        return unrolled && blk == 64 ? 22 : 23 + 190 / blk;
    }
    if (kind == TREC_PLAN_T16) {
        return 23;
    }
    int32_t a2 = 26 + 214 / blk;
    if (unrolled && (blk <= 4 || blk == 8 || blk == 16)) {
        static const int8_t few[5] = {0, 67, 66, 56, 36};
        a2 = blk == 16 ? 25 : blk == 8 ? 28 : few[blk];
    }
    return kind == TREC_PLAN_A2 ? a2 : a2 + 8; /* plan A: every sub-matrix's table through memory */
}

/* Instruction estimate of a plan, only to rank plans (per-operation costs measured on Cortex-M7
 * at -Ofast): every pass re-derives the sums (~12 per element gathered by the scalar paths, whose
 * runs are short, ~4 with SIMD lanes, cluster set-up included; the L1/L4 and L2/L5/L6 passes
 * measured 300K and 34-260K) and pays ~30 per cluster slot and ~300 per sub-matrix again (the
 * filter slice, the clusters' finishing); products ~1 per multiply-accumulate (~0.95 from
 * interleaved cluster pairs) plus ~12 per (cluster, channel, sums block); the scatter as
 * trec_scatter_tenths. On the six benchmark layers it keeps the plans it had at 2x their output (the
 * fastest that fit, checked by forcing each plan and mode in turn). Over sweeps of their scratch
 * from the least to 3x the output, more scratch never costs more than 0.2% more instructions except
 * where plan T16 is tried and its entries do not fit 16 bits (L1 and L4, whose first table is then
 * built twice; docs/BENCHMARKS.md, "Scratch memory"). */
static int64_t plan_cost(const trec_geom *g, const trec_plan *p, int64_t gather_per_pass, int64_t slots_tot)
{
    /* in tenths of an instruction: no 64-bit division (a library call on Cortex-M), and the chooser
     * costs up to a hundred candidates per image */
    const int32_t per_element = p->simd ? 40 : 120;
    const int32_t passes = (g->cout + p->blk - 1) / p->blk;
    const int32_t blocks = (g->l + p->lb - 1) / p->lb;
    const int32_t macs = p->simd == TREC_SIMD_PAIRED ? g->l * 95 / 10 : g->l * 10;
    const int32_t per_product = macs + 120 * blocks + (p->kind == TREC_PLAN_T16 ? 60 : 0); /* T16: narrowing */
    const int64_t products = slots_tot * g->cout * per_product;
    const int64_t scatter = (int64_t)g->n * g->m * g->cout * trec_scatter_tenths(g, p->kind, p->blk);
    return passes * (gather_per_pass * per_element + slots_tot * 300 + (int64_t)g->m * 3000) + products + scatter;
}

/* Largest channel chunk for sums blocks of lb elements in `avail` bytes; 0 if none fits. */
static int32_t fit_blk(const trec_geom *g, size_t avail, int32_t slots_max, int64_t slots_tot, int kind, int32_t lb,
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

/* Elements gathered per pass over the channels: every sub-matrix's sums are re-derived, from its
 * whole window, or incrementally (stride 1) from the first window and then the positions where
 * neighbouring windows differ. */
static int64_t gather_per_pass(const trec_geom *g, int incremental)
{
    if (!g->strip) {
        return (int64_t)g->n * g->k;
    }
    if (!incremental) {
        return (int64_t)g->n * g->l * g->m;
    }
    int64_t positions = g->n;
    for (int32_t i = 1; i < g->m; i++) {
        trec_rect parts[4];
        const int32_t n_out = trec_rect_minus(trec_window_of(g, trec_visit_order(g, i - 1)),
                                              trec_window_of(g, trec_visit_order(g, i)), parts);
        for (int32_t q = 0; q < n_out; q++) {
            positions += 2 * (int64_t)(parts[q].y1 - parts[q].y0) * (parts[q].x1 - parts[q].x0);
        }
    }
    return positions * g->l;
}

/* Plan T16 needs a second sub-matrix, and its sums of a channel's entries (at most slots x L x
 * 32640 in magnitude) within int32 */
static int narrow_possible(const trec_geom *g)
{
    return g->m >= 2 && (int64_t)g->max_slots * g->l * 32640 < ((int64_t)1 << 31);
}

/* The same number of passes over chunks as even as whole channel quads allow: a short last chunk
 * pays a whole pass's set-up for a few channels and misses the unrolled chunk sizes */
static int32_t balanced_blk(const trec_geom *g, int32_t blk)
{
    if (blk <= 0 || blk >= g->cout) {
        return blk;
    }
    const int32_t passes = (g->cout + blk - 1) / blk, even = (g->cout + passes - 1) / passes;
    return blk >= 4 ? (even + 3) & ~3 : even;
}

/* Chunk sizes worth costing where `fit` channels fit (0 when nothing fits): the balanced chunk, and
 * the largest size below it whose scatter is unrolled (trec_scatter_tenths), if any. */
static int chunk_candidates(const trec_geom *g, int kind, int32_t fit, int32_t out[2])
{
    if (fit <= 0) {
        return 0;
    }
    out[0] = balanced_blk(g, fit);
    int32_t unrolled = 0;
    if (g->id_size == 1 && kind == TREC_PLAN_T) {
        unrolled = 64;
    } else if (g->id_size == 1 && (kind == TREC_PLAN_A || kind == TREC_PLAN_A2)) {
        unrolled = out[0] > 16 ? 16 : out[0] > 8 ? 8 : 4;
    }
    if (unrolled > 0 && unrolled < out[0]) {
        out[1] = unrolled;
        return 2;
    }
    return 1;
}

static int32_t passes_of(const trec_geom *g, const trec_plan *p) { return (g->cout + p->blk - 1) / p->blk; }

/* Cheapest plans for `avail` bytes: best[0] among the scatter plans A, A2 and T, best[1] with T16
 * (when `narrow`), over the sums block lengths, and on the strip path scalar, incremental or SIMD
 * sums (with or without the interleaved cluster pairs, which need L words more and pay off from
 * two channel quads per pass on); found[i] = 0 when nothing fits. One loop for both: the gather
 * estimate walks the sub-matrices' windows. */
static void cheapest_plans(const trec_geom *g, size_t avail, int32_t slots_max, int64_t slots_tot, int narrow,
                           trec_plan best[2], int64_t cost[2], int found[2])
{
    found[0] = found[1] = 0;
    const int can_incremental = g->strip && g->stride_h == 1 && g->stride_w == 1 && !g->wide;
    const int can_simd = simd_possible(g);
    /* one-pixel strips of L = 16: the listed products (finished in registers, no interleaved copy;
     * chunks of four unrolled whole) beat the interleaved pairs at any chunk (L3 at 8 KB of
     * scratch: 918,219 against 1,048,910 instructions; L6 845,490 against 853,480) */
    const int can_paired = !(g->j == 1 && g->l == 16);
    for (int mode = 0; mode <= 3; mode++) { /* 0 scalar, 1 scalar incremental, 2 SIMD, 3 SIMD paired */
        const int incremental = mode == 1, simd = mode == 2 ? TREC_SIMD_PLAIN : mode == 3 ? TREC_SIMD_PAIRED : 0;
        if ((incremental && !can_incremental) || (simd && !can_simd) || (simd == TREC_SIMD_PAIRED && !can_paired)) {
            continue;
        }
        const int64_t gather = gather_per_pass(g, incremental || (simd && trec_simd_incremental(g)));
        for (int kind = TREC_PLAN_A; kind <= (narrow ? TREC_PLAN_T16 : TREC_PLAN_A2); kind++) {
            const int i = kind == TREC_PLAN_T16;
            /* shorter sums blocks need less memory (more channels per pass) but cost a pass over
             * the rows' ids per block; the incremental and SIMD modes use whole sub-vectors */
            for (int32_t lb = g->l; lb >= 1; lb = (lb == 1 || g->wide || incremental || simd) ? 0 : (lb + 1) / 2) {
                int32_t chunks[2];
                const int32_t fit = fit_blk(g, avail, slots_max, slots_tot, kind, lb, incremental, simd);
                const int n_chunks = chunk_candidates(g, kind, fit, chunks);
                const int64_t blocks = (g->l + lb - 1) / lb;
                const int64_t block_gather = gather + (int64_t)g->n * g->m * (blocks - 1) * 2;
                for (int k = 0; k < n_chunks; k++) {
                    const trec_plan p = {kind, chunks[k], lb, incremental, simd};
                    if (simd == TREC_SIMD_PAIRED && (p.blk < 8 || (p.blk & 3) != 0)) {
                        continue;
                    }
                    const int64_t c = plan_cost(g, &p, block_gather, slots_tot);
                    if (!found[i] || c < cost[i]) {
                        best[i] = p;
                        cost[i] = c;
                        found[i] = 1;
                    }
                }
                if (fit >= g->cout) {
                    break; /* shorter blocks would only cost more: every channel fits already */
                }
            }
        }
    }
}

/* T16 is taken only where it needs fewer passes than the best plan without it: its entries may
 * not fit 16 bits, and then a chunk's tables are built twice, on `without_t16`. */
int trec_choose_plan(const trec_geom *g, size_t avail, int32_t slots_max, int64_t slots_tot, trec_plan *best,
                     trec_plan *without_t16)
{
    trec_plan p[2];
    int64_t cost[2];
    int found[2];
    cheapest_plans(g, avail, slots_max, slots_tot, narrow_possible(g), p, cost, found);
    if (!found[0]) {
        return 0;
    }
    *best = found[1] && passes_of(g, &p[1]) < passes_of(g, &p[0]) && cost[1] < cost[0] ? p[1] : p[0];
    *without_t16 = p[0];
    return 1;
}
