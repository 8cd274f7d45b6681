/*
 * trec-tflm: types shared by the int8 kernels (TREC reuse convolution and the dense baseline).
 *
 * The layout follows CMSIS-NN's arm_nn_types.h so that code written against one reads
 * naturally against the other: dims in NHWC, caller-owned scratch through a context,
 * per-channel quantization as multiplier/shift arrays, a status return.
 */
#ifndef TREC_NN_TYPES_H
#define TREC_NN_TYPES_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TREC_SUCCESS = 0,        /* no error */
    TREC_ARG_ERROR = -1,     /* a null pointer, an impossible dimension or parameter */
    TREC_NO_IMPL_ERROR = -2, /* a valid request that this build does not implement */
    TREC_BUFFER_ERROR = -3,  /* scratch smaller than the kernel's minimum */
} trec_status;

typedef struct {
    int32_t w;
    int32_t h;
} trec_tile;

typedef struct {
    int32_t min;
    int32_t max;
} trec_activation;

/* NHWC for activations; for filters n = output channels, c = input channels. */
typedef struct {
    int32_t n;
    int32_t h;
    int32_t w;
    int32_t c;
} trec_dims;

/* Caller-owned scratch. buf may be NULL only when size is 0. */
typedef struct {
    void *buf;
    int32_t size;
} trec_context;

typedef struct {
    int32_t input_offset;  /* -input_zero_point, as in TFLite/CMSIS-NN */
    int32_t output_offset; /* output_zero_point */
    trec_tile stride;
    trec_tile padding;     /* top/left padding; bottom/right follow from the dims */
    trec_tile dilation;
    trec_activation activation;
} trec_conv_params;

typedef struct {
    const int32_t *multiplier; /* Q31, one per output channel */
    const int32_t *shift;      /* left shift if > 0, right shift if < 0 */
} trec_per_channel_quant_params;

#ifdef __cplusplus
}
#endif

#endif /* TREC_NN_TYPES_H */
