/*
 * trec-tflm: TREC kernel, plan T16's narrow tables: a sub-matrix's product table (int32) tested and
 * narrowed to uint16 entries less a per-channel offset, half the memory where the entries' spread
 * allows it (trec_convolve_plan_s8.c chooses T16; trec_scatter_s8.c reads the narrow tables).
 */
#include "trec_convolve_phases.h"
#include "trec_inner_loops.h"
#include "trec_nn_support.h"
#include "trec_plan.h"

/* Plan T16's early test on the first sub-matrix's table (kept in int32, never narrowed): 1 when
 * each of the first `channels` channels' entries over the clusters with members span at most
 * 2^16 - 1. Where they span more, the other tables rarely fit trec_narrow_table, and giving up here
 * costs one table instead of two (L4 at 70 KB of scratch: 3.54M -> 3.28M instructions). A few
 * channels tell: where T16 fails (the 3-channel first layers) every channel is that wide, and
 * testing all 64 cost L6 at H = 6 1.4% where T16 succeeds. lo, hi: `channels` int32 each. */
int trec_table_spread16(const int32_t *table, int32_t slots, const int32_t *counts, int32_t stride, int32_t blk,
                        int32_t channels, int32_t *lo, int32_t *hi)
{
    for (int32_t j = 0; j < channels; j++) {
        lo[j] = INT32_MAX;
        hi[j] = INT32_MIN;
    }
    for (int32_t s = 0; s < slots; s++) {
        if (counts[(size_t)s * stride] <= 0) {
            continue;
        }
        const int32_t *t = table + (size_t)s * blk;
        for (int32_t j = 0; j < channels; j++) {
            lo[j] = TREC_MIN(lo[j], t[j]);
            hi[j] = TREC_MAX(hi[j], t[j]);
        }
    }
    for (int32_t j = 0; j < channels; j++) {
        if ((int64_t)hi[j] - lo[j] > 65535) { /* no clusters with members: hi < lo */
            return 0;
        }
    }
    return 1;
}

/* Plan T16: table (slots x blk int32, the rows of clusters with members) becomes uint16 rows of
 * trec_t16_row(blk) entries, in place from its start, each entry - offset[j], where offset[j] is the
 * mean of channel j's entries less 2^15 (an entry's distance from the mean is what must fit 16
 * bits, not the entry: a sub-matrix's entries share a large part). Two entries per word, the
 * lower channel in the lower half. Returns 0, with the table in an unspecified state, when an
 * entry falls outside [offset, offset + 65535]. The caller bounds the sums (slots x L x 32640 <
 * 2^31). */
TREC_NOINLINE int trec_narrow_table(int32_t *table, int32_t slots, const int32_t *counts, int32_t stride, int32_t blk,
                                    int32_t *offset)
{
    int32_t live = 0;
    for (int32_t j = 0; j < blk; j++) {
        offset[j] = 0;
    }
    for (int32_t s = 0; s < slots; s++) {
        if (counts[(size_t)s * stride] <= 0) {
            continue;
        }
        trec_add_row(offset, table + (size_t)s * blk, blk);
        live++;
    }
    if (live == 0) {
        return 1;
    }
    for (int32_t j = 0; j < blk; j++) {
        offset[j] = offset[j] / live - 32768;
    }
    /* (u0 | u1 | ...) >> 16 != 0 exactly when some u = entry - offset lies outside [0, 65535];
     * a row s is read before it is written (row s's words end at byte 2 * trec_t16_row(blk) * (s + 1),
     * never past the start of int32 row s + 1) */
    const int32_t row = trec_t16_row(blk);
    uint32_t spill = 0;
    for (int32_t s = 0; s < slots; s++) {
        if (counts[(size_t)s * stride] <= 0) {
            continue;
        }
        const int32_t *t = table + (size_t)s * blk, *o = offset;
        int32_t *d = table + (size_t)s * (row / 2);
        int32_t j = 0;
        for (; j + 3 < blk; j += 4, t += 4, o += 4, d += 2) {
            int32_t t0, t1, t2, t3, o0, o1, o2, o3;
            trec_load2(t, 0, t0, t1);
            trec_load2(o, 0, o0, o1);
            const uint32_t u0 = (uint32_t)t0 - (uint32_t)o0, u1 = (uint32_t)t1 - (uint32_t)o1;
            trec_load2(t, 2, t2, t3);
            trec_load2(o, 2, o2, o3);
            const uint32_t u2 = (uint32_t)t2 - (uint32_t)o2, u3 = (uint32_t)t3 - (uint32_t)o3;
            spill |= (u0 | u1) | (u2 | u3);
            trec_store2(d, trec_pkhbt((int32_t)u0, (int32_t)u1), trec_pkhbt((int32_t)u2, (int32_t)u3));
        }
        for (; j < blk; j += 2, t += 2, o += 2, d++) {
            const uint32_t u0 = (uint32_t)t[0] - (uint32_t)o[0];
            const uint32_t u1 = j + 1 < blk ? (uint32_t)t[1] - (uint32_t)o[1] : 0u;
            spill |= u0 | u1;
            d[0] = (int32_t)((u0 & 0xFFFFu) | (u1 << 16));
        }
    }
    return (spill >> 16) == 0;
}
