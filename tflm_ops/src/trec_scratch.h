/*
 * trec-tflm: the TREC kernel's scratch layout and sizes (not a public header).
 */
#ifndef TREC_SCRATCH_H
#define TREC_SCRATCH_H

#include <stddef.h>
#include <stdint.h>

#include "trec_geometry.h"

/* scratch
 *
 *   [ ids | general path: clusters per sub-matrix (M int32) | id offsets per sub-matrix (M int32)
 *     | work ]
 *   ids: general path N*M*id_size; strip path ph*pw*id_size (the position grid).
 *   work, pass 1 (hashing):
 *     general: row (kp + 1 int16) | hash vectors (hq x la int16) | offsets (M x hq int32)
 *              | channel sums (cin int32) | compaction map
 *     strip:   padded row (trec_strip_row_elems + 1 int16) | hash vectors | offsets (hq int32)
 *              | channel sums | compaction map
 *   work, pass 2 (per chunk of channels):
 *     the chunk's requantization (trec_rq_bytes) | plans T, T16: table state (trec_table_state_bytes)
 *     | members (slots; not with SIMD sums, which read them from the counts)
 *     | strip path: counts (slots x (j + 1))
 *     | sums: a block (slots x lb int32); incremental: the sums kept whole (slots x L int32)
 *       + packed copy (slots x la/2 int32); SIMD: int16 lanes (slots x L/2 int32) + big-cluster map
 *       (slots) + int32 sums of big clusters + filter sums per strip pixel (chunk x j) + with
 *       TREC_SIMD_PAIRED a pair of clusters' sums interleaved (L int32)
 *     | filter slice (quads(chunk) x lba int16)
 *     | tables: plan T every sub-matrix's; plan A the N x chunk accumulator and one table (A2: two);
 *       plan T16: per channel the folded offsets and one sub-matrix's (blk x 2 int32), the first
 *       sub-matrix's table (int32), the others' (uint16 rows of blk rounded up to even), and room
 *       for the last one's int32 products before they are narrowed
 */
static inline size_t trec_align4(size_t v) { return (v + 3u) & ~(size_t)3u; }

/* strip path, int16 buffer: one padded input row (dilation 1: every strip of the row is a run of
 * it), or one strip */
static inline int32_t trec_strip_row_elems(const trec_geom *g)
{
    return g->dil_w == 1 ? TREC_MAX((g->pw + g->j - 1) * g->cin, g->la) : g->la;
}

static inline size_t trec_ids_bytes(const trec_geom *g)
{
    const size_t cells = g->strip ? (size_t)g->ph * g->pw : (size_t)g->n * g->m;
    return trec_align4(cells * (size_t)g->id_size);
}

/* the strip path's sub-matrices all have the grid's clusters: they keep only their id offsets */
static inline size_t trec_header_bytes(const trec_geom *g)
{
    return trec_ids_bytes(g) + (size_t)g->m * (g->strip ? 4 : 8);
}

/* per output channel of a chunk the multiplier and 2^r side by side (one LDRD) and r + 1 for the
 * fast requantization; per chunk, not per layer: at the least scratch of a wide layer the other
 * channels' would take the room of a channel quad (L3 at H = 8 in 2x its output: 8 passes instead
 * of 11) */
static inline size_t trec_rq_bytes(int32_t blk) { return (size_t)blk * 12; }

/* plans T and T16 only: each sub-matrix's table offset (M ints) and a row's table rows (M
 * pointers, aligned for a pointer); plan A's scratch is smaller by these (L3's default takes
 * plan A2 in the 200 bytes they free) */
static inline size_t trec_table_state_bytes(const trec_geom *g)
{
    return (size_t)g->m * (4 + sizeof(void *)) + (sizeof(void *) - 4);
}

/* SIMD sums (strip path, Cin % 4 == 0): int16 lanes hold the raw sum of at most 256 int8 exactly */
#define TREC_SIMD_LANE_MEMBERS 256

/* members that may exceed the int16 lanes: at most this many clusters of a sub-matrix */
static inline int32_t trec_simd_big_max(const trec_geom *g) { return g->n / (TREC_SIMD_LANE_MEMBERS + 1); }

/* Incremental SIMD sums: at stride 1 neighbouring sub-matrices' windows overlap in all but a row or
 * a column, so sub-matrix m's sums are sub-matrix prev's minus prev's window outside m's, plus m's
 * outside prev's. Needs every cluster of every window to fit the int16 lanes (N <= 256). */
static inline int trec_simd_incremental(const trec_geom *g)
{
    return g->stride_h == 1 && g->stride_w == 1 && trec_simd_big_max(g) == 0;
}

/* ints kept per cluster besides the sums: its members, and on the strip path a copy of them plus
 * the in-image members per strip pixel (the zero-point offset applies to in-image elements only);
 * the SIMD products read the members from the counts, without the copy */
static inline int32_t trec_counts_per_slot(const trec_geom *g, int simd)
{
    return g->strip ? g->j + 2 - (simd != 0) : 1;
}

/* Smallest scratch any plan runs in (trec_convolve_s8_get_min_buffer_size, without the alignment). */
TREC_INTERNAL int64_t trec_min_scratch(const trec_geom *g);

#endif /* TREC_SCRATCH_H */
