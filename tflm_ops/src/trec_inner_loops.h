/*
 * trec-tflm: inner loops the TREC kernel's phases share (not a public header): a table row added
 * into an accumulator, and the 2 x 4 SMLAD block of the hash codes and the cluster products.
 */
#ifndef TREC_INNER_LOOPS_H
#define TREC_INNER_LOOPS_H

#include <stdint.h>

#include "trec_nn_support.h"

/* acc[0..n) += t[0..n), four per step (two LDRD each; plain stores, which GCC schedules better
 * here than STRD: 3% fewer instructions in plan A's scatter) */
TREC_INLINE void trec_add_row(int32_t *acc, const int32_t *t, int32_t n)
{
    int32_t j = 0;
    for (; j + 3 < n; j += 4) {
        int32_t t0, t1, t2, t3, a0, a1, a2, a3;
        trec_load2_at(t, j, t0, t1);
        trec_load2_at(t, j + 2, t2, t3);
        trec_load2_at(acc, j, a0, a1);
        trec_load2_at(acc, j + 2, a2, a3);
        trec_store2_at(acc, j, a0 + t0, a1 + t1);
        trec_store2_at(acc, j + 2, a2 + t2, a3 + t3);
    }
    for (; j < n; j++) {
        acc[j] += t[j];
    }
}

#if TREC_DSP
/* a[i] += x0 . w_i and b[i] += x1 . w_i for the 4 vectors w_i of a quad (trec_ws_index layout: word p
 * of the four at w[4p .. 4p+3]); x0, x1: `pairs` int16 pairs. Each quad word is loaded once for
 * both x; 8 SMLAD per pair. Serves the hash codes of two strips and the products of two clusters. */
TREC_INLINE void trec_dot_2x4(const int16_t *x0, const int16_t *x1, const int32_t *w, int32_t pairs, int32_t a[4],
                              int32_t b[4])
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
    for (int32_t p = 0; p < pairs; p++, w += 4) {
        const int32_t u = trec_read_s16x2(x0 + 2 * p), v = trec_read_s16x2(x1 + 2 * p);
        const int32_t w0 = w[0], w1 = w[1];
        a0 = trec_smlad(u, w0, a0);
        b0 = trec_smlad(v, w0, b0);
        a1 = trec_smlad(u, w1, a1);
        b1 = trec_smlad(v, w1, b1);
        const int32_t w2 = w[2], w3 = w[3];
        a2 = trec_smlad(u, w2, a2);
        b2 = trec_smlad(v, w2, b2);
        a3 = trec_smlad(u, w3, a3);
        b3 = trec_smlad(v, w3, b3);
    }
    a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3, b[0] = b0, b[1] = b1, b[2] = b2, b[3] = b3;
}
#endif

#endif /* TREC_INNER_LOOPS_H */
