/*
 * trec-tflm: the TREC kernel's plans (not a public header): how one image runs in the scratch it is
 * given, chosen by trec_choose_plan (trec_convolve_plan_s8.c).
 */
#ifndef TREC_PLAN_H
#define TREC_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "trec_geometry.h"

/* Scatter plans: A, an N x chunk int32 accumulator and one sub-matrix's table at a time; A2, the
 * same with two tables per pass over the accumulator; T, every sub-matrix's table and no
 * accumulator; T16, plan T with the tables of sub-matrices 1.. in uint16 (entry - offset, the
 * offset per sub-matrix and channel folded into the first table), half the memory where the
 * entries' spread allows it: chosen only where that saves a pass, and a chunk whose entries do
 * not fit reruns on the best plan without it. */
enum { TREC_PLAN_A = 0, TREC_PLAN_T = 1, TREC_PLAN_A2 = 2, TREC_PLAN_T16 = 3 };
enum { TREC_SIMD_PLAIN = 1, TREC_SIMD_PAIRED = 2 };

typedef struct {
    int kind;        /* TREC_PLAN_A, TREC_PLAN_A2 or TREC_PLAN_T */
    int32_t blk;     /* channels per pass */
    int32_t lb;      /* sums block length */
    int incremental; /* strip path, stride 1, scalar: sums kept whole and moved from window to window */
    int simd;        /* strip path, Cin % 4 == 0: int16-lane sums (lb == L); TREC_SIMD_PAIRED: products of
                      * cluster pairs interleaved (blk a multiple of 4, at least 8) */
} trec_plan;

/* Best plan for `avail` bytes of pass-2 scratch, and the best without T16 (what
 * a chunk falls back on); 0 when nothing fits. */
TREC_INTERNAL int trec_choose_plan(const trec_geom *g, size_t avail, int32_t slots_max, int64_t slots_tot,
                                   trec_plan *best, trec_plan *without_t16);

/* The scatter's estimated instructions per (row, sub-matrix, channel) with plan `kind` in chunks of
 * blk channels, in tenths (measured on Cortex-M7): what trec_choose_plan ranks plans with, and what
 * trec_reuse_stats.scatter_tenths reports. */
TREC_INTERNAL int32_t trec_scatter_tenths(const trec_geom *g, int kind, int32_t blk);

/* plan T16: uint16 rows of a chunk of blk channels (even, so that every row is word-aligned) */
static inline int32_t trec_t16_row(int32_t blk) { return (blk + 1) & ~1; }

#endif /* TREC_PLAN_H */
