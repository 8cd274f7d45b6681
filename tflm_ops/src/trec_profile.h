/*
 * trec-tflm: phase marks of the TREC kernel for the benchmarks' profile builds (not a public header).
 */
#ifndef TREC_PROFILE_H
#define TREC_PROFILE_H

#if defined(TREC_PROFILE)
/* Benchmarks define this to time the phases; argument: 0 hashing, 1 centroids (ids and sums),
 * 2 products, 3 scatter (with the requantization), -1 done. */
void trec_profile_mark(int phase);
#define TREC_PROFILE_MARK(p) trec_profile_mark(p)
#else
#define TREC_PROFILE_MARK(p) ((void)0)
#endif

enum {
    TREC_PHASE_HASH = 0,
    TREC_PHASE_CENTROIDS = 1,
    TREC_PHASE_PRODUCTS = 2,
    TREC_PHASE_SCATTER = 3,
    TREC_PHASE_DONE = -1
};

#endif /* TREC_PROFILE_H */
