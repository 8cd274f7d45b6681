/*
 * trec-tflm: the TREC kernel's rounding divisions (not a public header): a cluster's products
 * divided by its members, OP_SPEC's round half away from zero.
 */
#ifndef TREC_ROUNDING_H
#define TREC_ROUNDING_H

#include <stdint.h>

#include "trec_attributes.h"

/* round half away from zero of num / den, den > 0 (TFLM's average-pool rounding) */
static inline int32_t trec_div_round64(int64_t num, int32_t den)
{
    const int64_t half = den / 2;
    return (int32_t)(num > 0 ? (num + half) / den : (num - half) / den);
}

/* the same with half = den >> 1 given, for loops dividing many values by one den */
TREC_INLINE int32_t trec_div_round_half(int32_t num, int32_t den, int32_t half)
{
    /* +half or -half by the sign of num without a branch: (half ^ s) - s, s = 0 or -1 (at num = 0
     * either gives 0, as |half| < den) */
    const int32_t s = num >> 31;
    return (num + ((half ^ s) - s)) / den;
}

TREC_INLINE int32_t trec_div_round32(int32_t num, int32_t den)
{
    if (den == 1) {
        return num;
    }
    return trec_div_round_half(num, den, den >> 1);
}

#endif /* TREC_ROUNDING_H */
