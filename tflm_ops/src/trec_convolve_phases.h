/*
 * trec-tflm: the phases of the TREC kernel, called from trec_convolve_s8.c (not a public header).
 *
 * trec_convolve_s8() is split by phase, one file each:
 *   trec_convolve_s8.c         entry point, one image: scratch carving, passes over the channels
 *   trec_convolve_plan_s8.c    geometry and validation, scratch sizes, plan choice
 *   trec_hash_s8.c             hash codes and dense cluster ids
 *   trec_cluster_sums_s8.c     per sub-matrix, the members' sub-vectors summed per cluster
 *   trec_filter_slices_s8.c    the filter's weights of a sub-matrix and chunk, packed for the products
 *   trec_cluster_products_s8.c cluster sums x filter slice, zero point, rounding division
 *   trec_table_narrow_s8.c     plan T16: product tables narrowed to uint16
 *   trec_scatter_s8.c          tables summed per row and requantized into the output
 * What they share besides these prototypes has one header per concern: trec_geometry.h,
 * trec_scratch.h, trec_plan.h, trec_ids.h, trec_weight_layout.h, trec_rounding.h,
 * trec_inner_loops.h, trec_profile.h; attributes in trec_attributes.h, arithmetic and SIMD helpers
 * of both kernels in trec_nn_support.h.
 * Cross-file calls happen per sub-matrix and pass, never per element: the inner loops stay within
 * one file, where the compiler sees them whole.
 */
#ifndef TREC_CONVOLVE_PHASES_H
#define TREC_CONVOLVE_PHASES_H

#include <stddef.h>
#include <stdint.h>

#include "trec_attributes.h"
#include "trec_geometry.h"

/* hashing: general path ids[n][m] for every row and sub-matrix, slots[m] clusters each */
TREC_INTERNAL void trec_hash_rows(const trec_geom *g, const int8_t *input, const int8_t *hash, uint8_t *ids,
                                  int32_t *slots, uint8_t *work);
/* hashing: strip path ids[y][x] of every grid position, the same for every sub-matrix; returns the
 * number of ids */
TREC_INTERNAL int32_t trec_hash_strips(const trec_geom *g, const int8_t *input, const int8_t *hash, uint8_t *ids,
                                       uint8_t *work);

/* sums of sub-matrix m (see trec_cluster_sums_s8.c) */
TREC_INTERNAL void trec_strip_sums(const trec_geom *g, const int8_t *input, const uint8_t *ids, int32_t m, int32_t prev,
                                   int32_t slots, int32_t l0, int32_t lb, int incremental, int32_t *sums,
                                   int32_t *counts);
/* returns the number of clusters summed in int32 (more members than int16 lanes hold; big[s] >= 0) */
TREC_INTERNAL int32_t trec_strip_sums_simd(const trec_geom *g, const int8_t *input, const uint8_t *ids, int32_t m,
                                           int32_t prev, int32_t slots, int32_t *counts, int32_t *big, int32_t *sums16,
                                           int32_t *sums32);
TREC_INTERNAL void trec_row_sums(const trec_geom *g, const int8_t *input, const uint8_t *ids, int32_t m, int32_t slots,
                                 int32_t l0, int32_t lb, int32_t *sums, int32_t *counts);

/* filter slices (see trec_filter_slices_s8.c) and products of sub-matrix m's clusters (see
 * trec_cluster_products_s8.c; T16 narrowing: trec_table_narrow_s8.c) */
TREC_INTERNAL void trec_filter_slice(const trec_geom *g, const int8_t *filter, int32_t m, int32_t l0, int32_t lb,
                                     int32_t c0, int32_t blk, int16_t *ws);
TREC_INTERNAL void trec_filter_slice_simd(const trec_geom *g, const int8_t *filter, int32_t m, int32_t c0, int32_t blk,
                                          int16_t *ws, int32_t *wsum);
TREC_INTERNAL int32_t trec_products_simd(const trec_geom *g, int32_t slots, const int32_t *counts, int32_t n_big,
                                         int32_t *big, int32_t *sums16, int32_t *sums32, const int16_t *ws,
                                         const int32_t *wsum, int32_t blk, int32_t *pair, int32_t *table);
TREC_INTERNAL void trec_accumulate_products(int32_t *sums, int32_t *packed_buf, int32_t slots, const int32_t *counts,
                                            int32_t lb, const int16_t *ws, int32_t blk, int first, int32_t *table);
TREC_INTERNAL void trec_products_wide(const int32_t *sums, int32_t slots, const int32_t *counts, int32_t l,
                                      const int16_t *ws, int32_t blk, int32_t *table);
TREC_INTERNAL void trec_divide_table(int32_t *table, int32_t slots, const int32_t *counts, int32_t blk);
TREC_INTERNAL int trec_table_spread16(const int32_t *table, int32_t slots, const int32_t *counts, int32_t stride,
                                      int32_t blk, int32_t channels, int32_t *lo, int32_t *hi);
TREC_INTERNAL int trec_narrow_table(int32_t *table, int32_t slots, const int32_t *counts, int32_t stride, int32_t blk,
                                    int32_t *offset);

/* scatter (see trec_scatter_s8.c) */
typedef struct {
    const int8_t *filter;
    const int32_t *bias;
    const int32_t *mult;
    const int32_t *shift;
} trec_weights;

TREC_INTERNAL void trec_scatter_tables(const trec_geom *g, const uint8_t *ids, const int32_t *id_off,
                                       const int32_t *tables, const int32_t *toff, int32_t c0, int32_t blk,
                                       const trec_weights *w, int8_t *output, const int32_t **rowp, const int32_t *rq);
/* channels [c0, c0 + blk) all take trec_requantize_fast_small (see trec_scatter_s8.c) */
TREC_INTERNAL int trec_fast_requant_block(const trec_geom *g, const trec_weights *w, int32_t c0, int32_t blk);
TREC_INTERNAL void trec_scatter_tables16(const trec_geom *g, const uint8_t *ids, const int32_t *id_off,
                                         const int32_t *table0, const uint8_t *tables, const int32_t *toff, int32_t c0,
                                         int32_t blk, const trec_weights *w, int8_t *output, const int32_t **rowp,
                                         const int32_t *rq);
TREC_INTERNAL void trec_scatter_add(const trec_geom *g, const uint8_t *ids, int32_t id_off, const int32_t *table,
                                    int32_t blk, int first, int32_t *acc);
TREC_INTERNAL void trec_scatter_add2(const trec_geom *g, const uint8_t *ids, int32_t id_off, int32_t id_off2,
                                     const int32_t *table, const int32_t *table2, int32_t blk, int first, int32_t *acc);
TREC_INTERNAL void trec_scatter_requantize(const trec_geom *g, const uint8_t *ids, int32_t id_off, const int32_t *table,
                                           int32_t c0, int32_t blk, const int32_t *acc, const trec_weights *w,
                                           const int32_t *rq, int8_t *output);

#endif /* TREC_CONVOLVE_PHASES_H */
