/*
 * trec-tflm: the TREC kernel's layout of filter slices and hash vectors in scratch (not a public
 * header).
 */
#ifndef TREC_WEIGHT_LAYOUT_H
#define TREC_WEIGHT_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

/* Filter slices are stored in channel quads: int16 element l of channel j is at trec_ws_index(pairs, j,
 * l), so that word p of the four channels of a quad is contiguous (two 64-bit loads feed 8 SMLAD
 * of two clusters); channels from blk up to a multiple of 4 hold zeros. The hash vectors use the
 * same layout, with hash bits for channels. */
static inline int32_t trec_blk_quads(int32_t blk) { return (blk + 3) & ~3; }

static inline size_t trec_ws_index(int32_t pairs, int32_t j, int32_t l)
{
    return ((((size_t)(j >> 2) * (size_t)pairs + (size_t)(l >> 1)) << 2) + (size_t)(j & 3)) * 2 + (size_t)(l & 1);
}

#endif /* TREC_WEIGHT_LAYOUT_H */
