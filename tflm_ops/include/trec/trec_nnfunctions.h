/*
 * trec-tflm: public API of the int8 kernels.
 *
 * Conventions (as in CMSIS-NN's arm_nnfunctions.h):
 *   - activations NHWC int8, filters [Cout, kh, kw, Cin] int8 (per-channel symmetric), bias int32 [Cout];
 *   - conv_params->input_offset = -input_zero_point, output_offset = output_zero_point;
 *   - padding is the top/left padding TFLite computes for SAME (0 for VALID); bottom/right follow
 *     from the dims;
 *   - per-channel requantization: TFLite's MultiplyByQuantizedMultiplier (double rounding);
 *   - scratch is owned by the caller (trec_context), sized by the matching *_get_buffer_size().
 *     The kernels align the scratch pointer to 4 bytes themselves; a buffer that is not 4-byte
 *     aligned needs up to 3 bytes more than *_get_buffer_size() returns.
 */
#ifndef TREC_NNFUNCTIONS_H
#define TREC_NNFUNCTIONS_H

#include <stdint.h>

#include "trec/trec_nn_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ================================================================================================
 * Dense int8 convolution (the baseline): TFLite's int8 CONV_2D with per-channel quantization
 * ================================================================================================
 *
 * Bit-exact with TFLM's reference CONV_2D (reference_integer_ops::ConvPerChannel).
 *
 * Supported: batch >= 1, any Cin/Cout >= 1, any kernel size, stride >= 1, dilation >= 1,
 * top/left padding >= 0, bias may be NULL (then bias_dims is not read). Grouped convolution
 * (input_dims->c != filter_dims->c) returns TREC_NO_IMPL_ERROR.
 *
 * Dims:   input_dims  [N, H, W, Cin]      filter_dims [Cout, kh, kw, Cin]
 *         output_dims [N, Ho, Wo, Cout]   bias_dims   Cout elements in total (e.g. [1, 1, 1, Cout]) or NULL
 * The output size must be one TFLite can produce with these paddings: with
 * eff = (k - 1) * dilation + 1 and bottom = (Ho - 1) * stride + eff - H - pad_top,
 * it needs 0 <= pad_top < eff and -stride < bottom < eff (likewise for the width).
 *
 * Returns TREC_SUCCESS, TREC_ARG_ERROR (NULL pointer, dims that do not match, parameter out of
 * range: offsets, activation range, multiplier < 0, shift outside [-31, 30]), TREC_BUFFER_ERROR
 * (ctx->buf NULL or ctx->size too small) or TREC_NO_IMPL_ERROR. On any error nothing is written.
 *
 * Method: im2col of two output pixels at a time into int16 columns (input offset applied), then a
 * 2-output-channel x 2-column matrix multiply; with the DSP extension the int8 filter is unpacked
 * on the fly with SXTB16 and accumulated with SMLAD.
 */
trec_status trec_dense_convolve_s8(const trec_context *ctx,
                                   const trec_conv_params *conv_params,
                                   const trec_per_channel_quant_params *quant_params,
                                   const trec_dims *input_dims,
                                   const int8_t *input,
                                   const trec_dims *filter_dims,
                                   const int8_t *filter,
                                   const trec_dims *bias_dims,
                                   const int32_t *bias,
                                   const trec_dims *output_dims,
                                   int8_t *output);

/* Scratch bytes trec_dense_convolve_s8() needs: two int16 im2col columns of kh*kw*Cin rounded up
 * to a multiple of 4, i.e. 4 * align4(kh * kw * Cin). The same on every build (host, M4, M7, M0).
 * Returns a negative value (TREC_ARG_ERROR) for NULL or non-positive dims. */
int32_t trec_dense_convolve_s8_get_buffer_size(const trec_dims *input_dims, const trec_dims *filter_dims);

/* ================================================================================================
 * TREC reuse convolution: the TREC_CONV_2D operator (docs/OP_SPEC.md)
 * ================================================================================================
 *
 * Bit-exact with trec_tflm.golden.trec_conv2d_s8. Per image: hash every sub-vector of every
 * im2col row (never materialising the im2col matrix), cluster equal hash codes per sub-matrix,
 * multiply only cluster sums by the filter slice, scatter the products to the rows, requantize.
 *
 * Scratch: no full im2col buffer and no N x Cout int32 accumulator. trec_convolve_s8_get_buffer_size()
 * gives the scratch of the fast plan, at most twice the int8 output tensor where the layer
 * allows it; any size >= trec_convolve_s8_get_min_buffer_size() works: with less scratch the
 * kernel processes the output channels in more passes (more instructions, same result), and up to
 * trec_convolve_s8_get_max_buffer_size() more scratch buys fewer passes or a faster scatter plan
 * (where the arena has room for it beside the activations; the same result).
 *
 * Dims: input [N, H, W, Cin], filter [Cout, kh, kw, Cin], hash [L, H] (from hash_params),
 * output [N, Ho, Wo, Cout]; bias may be NULL. Batch images are clustered independently.
 *
 * Returns TREC_SUCCESS, TREC_ARG_ERROR (NULL pointer, dims that do not match, L outside
 * [1, kh*kw*Cin], H outside [1, 16], unknown hash centre, parameter out of range),
 * TREC_BUFFER_ERROR (scratch below the minimum) or TREC_NO_IMPL_ERROR. On error nothing is written.
 */
typedef enum {
    TREC_HASH_CENTER_NONE = 0, /* hash around the input zero point (real 0) */
    TREC_HASH_CENTER_MEAN = 1, /* hash around the per-image, per-channel mean of the input */
} trec_hash_center;

#define TREC_MAX_HASH_BITS 16

typedef struct {
    int32_t sub_vector_length; /* L */
    int32_t hash_bits;         /* H */
    int32_t hash_center;       /* trec_hash_center */
} trec_hash_params;

/* What the reuse did in the last call (summed over the batch). rc = clusters / (rows * sub_matrices). */
typedef struct {
    int32_t rows;         /* N = Ho * Wo per image, times batch */
    int32_t sub_matrices; /* M = ceil(K / L) */
    int32_t clusters;     /* sum over images and sub-matrices */
    int32_t passes;       /* passes over the output channels the scratch allowed (1 = fastest) */
    int32_t chunk;        /* most output channels in one pass (the last pass may take fewer) */
    int32_t plan;         /* scatter plan of the last image: 0 = accumulator, 1 = per-row tables,
                           * 2 = per-row tables in 16 bits after the first sub-matrix's */
    int32_t scatter_tenths; /* what the kernel estimates the last image's scatter costs per (row,
                             * sub-matrix, channel) with its plan and chunk, in tenths of an instruction
                             * (measured on Cortex-M7; the estimate it ranks plans with) */
    int32_t sums_block;     /* length of the last image's cluster-sums blocks (L, or shorter where the
                             * scratch is tight: every block is another pass over the rows) */
} trec_reuse_stats;

trec_status trec_convolve_s8(const trec_context *ctx,
                             const trec_conv_params *conv_params,
                             const trec_hash_params *hash_params,
                             const trec_per_channel_quant_params *quant_params,
                             const trec_dims *input_dims,
                             const int8_t *input,
                             const trec_dims *filter_dims,
                             const int8_t *filter,
                             const int8_t *hash,
                             const trec_dims *bias_dims,
                             const int32_t *bias,
                             const trec_dims *output_dims,
                             int8_t *output,
                             trec_reuse_stats *stats /* may be NULL */);

/* Scratch bytes of the fast plan (negative trec_status on invalid arguments). */
int32_t trec_convolve_s8_get_buffer_size(const trec_conv_params *conv_params,
                                         const trec_hash_params *hash_params,
                                         const trec_dims *input_dims,
                                         const trec_dims *filter_dims,
                                         const trec_dims *output_dims);

/* Smallest scratch trec_convolve_s8() accepts (slowest plan). */
int32_t trec_convolve_s8_get_min_buffer_size(const trec_conv_params *conv_params,
                                             const trec_hash_params *hash_params,
                                             const trec_dims *input_dims,
                                             const trec_dims *filter_dims,
                                             const trec_dims *output_dims);

/* Most scratch trec_convolve_s8() can use (its fastest plan at the most clusters the layer can
 * form); more is never touched. TREC_NO_IMPL_ERROR when that exceeds INT32_MAX. */
int32_t trec_convolve_s8_get_max_buffer_size(const trec_conv_params *conv_params,
                                             const trec_hash_params *hash_params,
                                             const trec_dims *input_dims,
                                             const trec_dims *filter_dims,
                                             const trec_dims *output_dims);

#ifdef __cplusplus
}
#endif

#endif /* TREC_NNFUNCTIONS_H */
