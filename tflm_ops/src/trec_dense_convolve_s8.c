/*
 * trec-tflm: dense int8 convolution, the baseline the TREC kernel is measured against.
 *
 * TFLite int8 CONV_2D, per-channel quantization, bit-exact with TFLM's reference kernel.
 *
 * Method (the classic Cortex-M one, as in CMSIS-NN's arm_convolve_s8):
 *   for each pair of output pixels
 *     im2col: gather the kh*kw*Cin receptive field of each pixel into an int16 column with the input
 *             offset added (padding becomes 0); K = kh*kw*Cin rounded up to 4, zero-filled;
 *     matmul: for each pair of output channels, four dot products (2 channels x 2 pixels) over K,
 *             then requantize, add the output offset, clamp and store.
 *   DSP path: columns are stored in "unordered" lane order (x0, x2, x1, x3 per group of four) so the
 *   int8 filter words unpack with two SXTB16 and feed SMLAD directly. Filter rows are read in whole
 *   words up to the zero-padded column length, i.e. a row's last word may reach into the next row
 *   (multiplied by zero); only the filter's last row uses an exact scalar tail, so nothing past the
 *   filter array is ever read.
 *   Plain path (no DSP): natural-order int16 columns and scalar multiply-accumulate.
 */
#include <stddef.h>
#include <string.h>

#include "trec/trec_nnfunctions.h"
#include "trec_nn_support.h"

/* ------------------------------------------------------------------------------------------------
 * argument checks
 * ---------------------------------------------------------------------------------------------- */
static int dims_positive(const trec_dims *d)
{
    return d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0;
}

static int64_t dims_count(const trec_dims *d)
{
    return (int64_t)d->n * d->h * d->w * d->c;
}

/* Can TFLite produce output size `out` from input size `in` with this kernel, stride, dilation and
 * top padding? (SAME: pad_top = total/2, bottom = total - pad_top; VALID: pad 0, unused rows < stride) */
static int geometry_ok(int32_t in, int32_t k, int32_t stride, int32_t dilation, int32_t pad, int32_t out)
{
    if (stride < 1 || dilation < 1 || pad < 0) {
        return 0;
    }
    const int64_t eff = (int64_t)(k - 1) * dilation + 1;
    const int64_t bottom = (int64_t)(out - 1) * stride + eff - in - pad;
    return pad < eff && bottom > -(int64_t)stride && bottom < eff;
}

int32_t trec_dense_convolve_s8_get_buffer_size(const trec_dims *input_dims, const trec_dims *filter_dims)
{
    if (input_dims == NULL || filter_dims == NULL || !dims_positive(input_dims) || !dims_positive(filter_dims)) {
        return TREC_ARG_ERROR;
    }
    const int64_t k = (int64_t)filter_dims->h * filter_dims->w * filter_dims->c;
    const int64_t bytes = 2 * (int64_t)sizeof(int16_t) * ((k + 3) & ~(int64_t)3);
    if (bytes > INT32_MAX) {
        return TREC_ARG_ERROR;
    }
    return (int32_t)bytes;
}

/* ------------------------------------------------------------------------------------------------
 * geometry shared by the im2col helpers
 * ---------------------------------------------------------------------------------------------- */
typedef struct {
    int32_t in_h, in_w, cin;
    int32_t kh, kw;
    int32_t stride_h, stride_w;
    int32_t dil_h, dil_w;
    int32_t pad_h, pad_w;
    int32_t input_offset;
    int32_t k;     /* kh * kw * cin */
    int32_t k_al;  /* k rounded up to 4 */
} conv_geom;

/* Copy n int8 (small n typical: Cin of one tap). */
TREC_INLINE void copy_s8(int8_t *TREC_RESTRICT dst, const int8_t *TREC_RESTRICT src, int32_t n)
{
    while (n >= 4) {
        trec_write_s8x4(dst, trec_read_s8x4(src));
        dst += 4;
        src += 4;
        n -= 4;
    }
    while (n-- > 0) {
        *dst++ = *src++;
    }
}

TREC_INLINE void fill_s8(int8_t *dst, int8_t v, int32_t n)
{
    const int32_t v4 = (int32_t)(0x01010101u * (uint8_t)v);
    while (n >= 4) {
        trec_write_s8x4(dst, v4);
        dst += 4;
        n -= 4;
    }
    while (n-- > 0) {
        *dst++ = v;
    }
}

#if TREC_DSP
/* One int16 column (unordered lane order) for output pixel (oy, ox) of image `in`.
 * col has room for 2 * k_al bytes; for Cin % 4 != 0 its upper half stages the int8 gather. */
static void im2col_column(const conv_geom *g, const int8_t *in, int32_t oy, int32_t ox, int16_t *col)
{
    const int32_t y0 = oy * g->stride_h - g->pad_h;
    const int32_t x0 = ox * g->stride_w - g->pad_w;
    const int32_t cin = g->cin;
    const int32_t row_len = g->kw * cin;

    if ((cin & 3) == 0) {
        /* taps start on group boundaries: convert straight from the input */
        int16_t *dst = col;
        for (int32_t ky = 0; ky < g->kh; ky++) {
            const int32_t iy = y0 + ky * g->dil_h;
            if (iy < 0 || iy >= g->in_h) {
                trec_zero_s16(dst, row_len);
                dst += row_len;
                continue;
            }
            const int8_t *in_row = in + (iy * g->in_w) * cin;
            for (int32_t kx = 0; kx < g->kw; kx++) {
                const int32_t ix = x0 + kx * g->dil_w;
                if (ix < 0 || ix >= g->in_w) {
                    trec_zero_s16(dst, cin);
                } else {
                    trec_s8_to_s16_unordered_offset(in_row + ix * cin, dst, cin, g->input_offset);
                }
                dst += cin;
            }
        }
        return;
    }

    /* gather int8 (padding = the input zero point) into the column's upper half, then widen in place */
    int8_t *const stage = (int8_t *)col + g->k_al;
    const int8_t pad = (int8_t)(-g->input_offset);
    int8_t *dst = stage;
    for (int32_t ky = 0; ky < g->kh; ky++) {
        const int32_t iy = y0 + ky * g->dil_h;
        if (iy < 0 || iy >= g->in_h) {
            fill_s8(dst, pad, row_len);
            dst += row_len;
            continue;
        }
        const int8_t *in_row = in + (iy * g->in_w) * cin;
        for (int32_t kx = 0; kx < g->kw; kx++) {
            const int32_t ix = x0 + kx * g->dil_w;
            if (ix < 0 || ix >= g->in_w) {
                fill_s8(dst, pad, cin);
            } else {
                copy_s8(dst, in_row + ix * cin, cin);
            }
            dst += cin;
        }
    }
    fill_s8(dst, pad, g->k_al - g->k); /* zero after widening */
    trec_s8_to_s16_unordered_offset(stage, col, g->k_al, g->input_offset);
}

/* 2 output channels x 2 pixels per step. Returns out0 advanced by two pixels. */
static int8_t *mat_mult_2col(const conv_geom *g, const int8_t *filter, const int16_t *col0, int32_t cout,
                             const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t out_offset,
                             int32_t act_min, int32_t act_max, int8_t *out0)
{
    const int32_t k = g->k;
    const int16_t *const col1 = col0 + g->k_al;
    int8_t *const out1 = out0 + cout;
    const int32_t groups_all = g->k_al >> 2; /* may read into the next filter row (times zero) */
    const int32_t groups_exact = k >> 2;
    const int32_t tail = k & 3;
    const int8_t *w = filter;
    int32_t r = 0;

    for (; r + 2 <= cout; r += 2) {
        const int32_t b0 = bias ? bias[r] : 0;
        const int32_t b1 = bias ? bias[r + 1] : 0;
        int32_t acc00 = b0, acc01 = b0, acc10 = b1, acc11 = b1;
        const int last = (r + 2 == cout);
        const int8_t *w0 = w;
        const int8_t *w1 = w + k;
        const int16_t *p0 = col0;
        const int16_t *p1 = col1;
        int32_t n = last ? groups_exact : groups_all;
        while (n-- > 0) {
            int32_t w0e, w0o, w1e, w1o;
            w0 = trec_read_unpack_s8x4(w0, &w0e, &w0o);
            w1 = trec_read_unpack_s8x4(w1, &w1e, &w1o);
            const int32_t x0e = trec_read_s16x2_ia(&p0);
            const int32_t x0o = trec_read_s16x2_ia(&p0);
            const int32_t x1e = trec_read_s16x2_ia(&p1);
            const int32_t x1o = trec_read_s16x2_ia(&p1);
            acc00 = trec_smlad(w0e, x0e, acc00);
            acc01 = trec_smlad(w0e, x1e, acc01);
            acc10 = trec_smlad(w1e, x0e, acc10);
            acc11 = trec_smlad(w1e, x1e, acc11);
            acc00 = trec_smlad(w0o, x0o, acc00);
            acc01 = trec_smlad(w0o, x1o, acc01);
            acc10 = trec_smlad(w1o, x0o, acc10);
            acc11 = trec_smlad(w1o, x1o, acc11);
        }
        if (last) {
            for (int32_t j = 0; j < tail; j++) {
                const int32_t s = TREC_UNORDERED_SLOT(j);
                acc00 += w0[j] * p0[s];
                acc01 += w0[j] * p1[s];
                acc10 += w1[j] * p0[s];
                acc11 += w1[j] * p1[s];
            }
        }
        out0[r] = trec_requantize_s8(acc00, mult[r], shift[r], out_offset, act_min, act_max);
        out1[r] = trec_requantize_s8(acc01, mult[r], shift[r], out_offset, act_min, act_max);
        out0[r + 1] = trec_requantize_s8(acc10, mult[r + 1], shift[r + 1], out_offset, act_min, act_max);
        out1[r + 1] = trec_requantize_s8(acc11, mult[r + 1], shift[r + 1], out_offset, act_min, act_max);
        w += 2 * k;
    }
    if (r < cout) { /* odd Cout: the filter's last row, exact length */
        const int32_t b0 = bias ? bias[r] : 0;
        int32_t acc00 = b0, acc01 = b0;
        const int8_t *w0 = w;
        const int16_t *p0 = col0;
        const int16_t *p1 = col1;
        int32_t n = groups_exact;
        while (n-- > 0) {
            int32_t w0e, w0o;
            w0 = trec_read_unpack_s8x4(w0, &w0e, &w0o);
            const int32_t x0e = trec_read_s16x2_ia(&p0);
            const int32_t x0o = trec_read_s16x2_ia(&p0);
            const int32_t x1e = trec_read_s16x2_ia(&p1);
            const int32_t x1o = trec_read_s16x2_ia(&p1);
            acc00 = trec_smlad(w0e, x0e, acc00);
            acc01 = trec_smlad(w0e, x1e, acc01);
            acc00 = trec_smlad(w0o, x0o, acc00);
            acc01 = trec_smlad(w0o, x1o, acc01);
        }
        for (int32_t j = 0; j < tail; j++) {
            const int32_t s = TREC_UNORDERED_SLOT(j);
            acc00 += w0[j] * p0[s];
            acc01 += w0[j] * p1[s];
        }
        out0[r] = trec_requantize_s8(acc00, mult[r], shift[r], out_offset, act_min, act_max);
        out1[r] = trec_requantize_s8(acc01, mult[r], shift[r], out_offset, act_min, act_max);
    }
    return out0 + 2 * cout;
}

/* Leftover single pixel: 2 output channels x 1 pixel per step. */
static int8_t *mat_mult_1col(const conv_geom *g, const int8_t *filter, const int16_t *col0, int32_t cout,
                             const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t out_offset,
                             int32_t act_min, int32_t act_max, int8_t *out0)
{
    const int32_t k = g->k;
    const int32_t groups_all = g->k_al >> 2;
    const int32_t groups_exact = k >> 2;
    const int32_t tail = k & 3;
    const int8_t *w = filter;
    int32_t r = 0;

    for (; r + 2 <= cout; r += 2) {
        int32_t acc0 = bias ? bias[r] : 0;
        int32_t acc1 = bias ? bias[r + 1] : 0;
        const int last = (r + 2 == cout);
        const int8_t *w0 = w;
        const int8_t *w1 = w + k;
        const int16_t *p0 = col0;
        int32_t n = last ? groups_exact : groups_all;
        while (n-- > 0) {
            int32_t w0e, w0o, w1e, w1o;
            w0 = trec_read_unpack_s8x4(w0, &w0e, &w0o);
            w1 = trec_read_unpack_s8x4(w1, &w1e, &w1o);
            const int32_t x0e = trec_read_s16x2_ia(&p0);
            const int32_t x0o = trec_read_s16x2_ia(&p0);
            acc0 = trec_smlad(w0e, x0e, acc0);
            acc1 = trec_smlad(w1e, x0e, acc1);
            acc0 = trec_smlad(w0o, x0o, acc0);
            acc1 = trec_smlad(w1o, x0o, acc1);
        }
        if (last) {
            for (int32_t j = 0; j < tail; j++) {
                const int32_t s = TREC_UNORDERED_SLOT(j);
                acc0 += w0[j] * p0[s];
                acc1 += w1[j] * p0[s];
            }
        }
        out0[r] = trec_requantize_s8(acc0, mult[r], shift[r], out_offset, act_min, act_max);
        out0[r + 1] = trec_requantize_s8(acc1, mult[r + 1], shift[r + 1], out_offset, act_min, act_max);
        w += 2 * k;
    }
    if (r < cout) {
        int32_t acc0 = bias ? bias[r] : 0;
        const int8_t *w0 = w;
        const int16_t *p0 = col0;
        int32_t n = groups_exact;
        while (n-- > 0) {
            int32_t w0e, w0o;
            w0 = trec_read_unpack_s8x4(w0, &w0e, &w0o);
            const int32_t x0e = trec_read_s16x2_ia(&p0);
            const int32_t x0o = trec_read_s16x2_ia(&p0);
            acc0 = trec_smlad(w0e, x0e, acc0);
            acc0 = trec_smlad(w0o, x0o, acc0);
        }
        for (int32_t j = 0; j < tail; j++) {
            acc0 += w0[j] * p0[TREC_UNORDERED_SLOT(j)];
        }
        out0[r] = trec_requantize_s8(acc0, mult[r], shift[r], out_offset, act_min, act_max);
    }
    return out0 + cout;
}

#else /* plain C path */

/* One int16 column (natural order) for output pixel (oy, ox). */
static void im2col_column(const conv_geom *g, const int8_t *in, int32_t oy, int32_t ox, int16_t *col)
{
    const int32_t y0 = oy * g->stride_h - g->pad_h;
    const int32_t x0 = ox * g->stride_w - g->pad_w;
    const int32_t cin = g->cin;
    int16_t *dst = col;
    for (int32_t ky = 0; ky < g->kh; ky++) {
        const int32_t iy = y0 + ky * g->dil_h;
        for (int32_t kx = 0; kx < g->kw; kx++) {
            const int32_t ix = x0 + kx * g->dil_w;
            if (iy < 0 || iy >= g->in_h || ix < 0 || ix >= g->in_w) {
                trec_zero_s16(dst, cin);
            } else {
                trec_s8_to_s16_offset(in + (iy * g->in_w + ix) * cin, dst, cin, g->input_offset);
            }
            dst += cin;
        }
    }
}

static int8_t *mat_mult_2col(const conv_geom *g, const int8_t *filter, const int16_t *col0, int32_t cout,
                             const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t out_offset,
                             int32_t act_min, int32_t act_max, int8_t *out0)
{
    const int32_t k = g->k;
    const int16_t *const col1 = col0 + g->k_al;
    int8_t *const out1 = out0 + cout;
    const int8_t *w0 = filter;
    int32_t r = 0;
    for (; r + 2 <= cout; r += 2) {
        const int8_t *w1 = w0 + k;
        int32_t acc00 = bias ? bias[r] : 0;
        int32_t acc10 = bias ? bias[r + 1] : 0;
        int32_t acc01 = acc00, acc11 = acc10;
        for (int32_t i = 0; i < k; i++) {
            acc00 += w0[i] * col0[i];
            acc01 += w0[i] * col1[i];
            acc10 += w1[i] * col0[i];
            acc11 += w1[i] * col1[i];
        }
        out0[r] = trec_requantize_s8(acc00, mult[r], shift[r], out_offset, act_min, act_max);
        out1[r] = trec_requantize_s8(acc01, mult[r], shift[r], out_offset, act_min, act_max);
        out0[r + 1] = trec_requantize_s8(acc10, mult[r + 1], shift[r + 1], out_offset, act_min, act_max);
        out1[r + 1] = trec_requantize_s8(acc11, mult[r + 1], shift[r + 1], out_offset, act_min, act_max);
        w0 += 2 * k;
    }
    if (r < cout) {
        int32_t acc00 = bias ? bias[r] : 0;
        int32_t acc01 = acc00;
        for (int32_t i = 0; i < k; i++) {
            acc00 += w0[i] * col0[i];
            acc01 += w0[i] * col1[i];
        }
        out0[r] = trec_requantize_s8(acc00, mult[r], shift[r], out_offset, act_min, act_max);
        out1[r] = trec_requantize_s8(acc01, mult[r], shift[r], out_offset, act_min, act_max);
    }
    return out0 + 2 * cout;
}

static int8_t *mat_mult_1col(const conv_geom *g, const int8_t *filter, const int16_t *col0, int32_t cout,
                             const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t out_offset,
                             int32_t act_min, int32_t act_max, int8_t *out0)
{
    const int32_t k = g->k;
    const int8_t *w0 = filter;
    for (int32_t r = 0; r < cout; r++) {
        int32_t acc = bias ? bias[r] : 0;
        for (int32_t i = 0; i < k; i++) {
            acc += w0[i] * col0[i];
        }
        out0[r] = trec_requantize_s8(acc, mult[r], shift[r], out_offset, act_min, act_max);
        w0 += k;
    }
    return out0 + cout;
}

#endif /* TREC_DSP */

/* ------------------------------------------------------------------------------------------------
 * entry point
 * ---------------------------------------------------------------------------------------------- */
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
                                   int8_t *output)
{
    if (ctx == NULL || conv_params == NULL || quant_params == NULL || input_dims == NULL || input == NULL ||
        filter_dims == NULL || filter == NULL || output_dims == NULL || output == NULL ||
        quant_params->multiplier == NULL || quant_params->shift == NULL) {
        return TREC_ARG_ERROR;
    }
    if (!dims_positive(input_dims) || !dims_positive(filter_dims) || !dims_positive(output_dims)) {
        return TREC_ARG_ERROR;
    }
    if (dims_count(input_dims) > INT32_MAX || dims_count(output_dims) > INT32_MAX ||
        dims_count(filter_dims) > INT32_MAX) {
        return TREC_ARG_ERROR;
    }
    const int32_t cout = filter_dims->n;
    if (output_dims->n != input_dims->n || output_dims->c != cout) {
        return TREC_ARG_ERROR;
    }
    if (input_dims->c != filter_dims->c) {
        /* grouped convolution is valid TFLite but not implemented here */
        return (input_dims->c % filter_dims->c == 0 && cout % (input_dims->c / filter_dims->c) == 0)
                   ? TREC_NO_IMPL_ERROR
                   : TREC_ARG_ERROR;
    }
    if (bias != NULL && bias_dims != NULL && dims_count(bias_dims) != cout) {
        return TREC_ARG_ERROR;
    }
    if (!geometry_ok(input_dims->h, filter_dims->h, conv_params->stride.h, conv_params->dilation.h,
                     conv_params->padding.h, output_dims->h) ||
        !geometry_ok(input_dims->w, filter_dims->w, conv_params->stride.w, conv_params->dilation.w,
                     conv_params->padding.w, output_dims->w)) {
        return TREC_ARG_ERROR;
    }
    const int32_t in_offset = conv_params->input_offset;
    const int32_t out_offset = conv_params->output_offset;
    const int32_t act_min = conv_params->activation.min;
    const int32_t act_max = conv_params->activation.max;
    if (in_offset < -127 || in_offset > 128 || out_offset < -128 || out_offset > 127 || act_min < -128 ||
        act_max > 127 || act_min > act_max) {
        return TREC_ARG_ERROR;
    }
    for (int32_t c = 0; c < cout; c++) {
        if (!trec_quant_params_valid(quant_params->multiplier[c], quant_params->shift[c])) {
            return TREC_ARG_ERROR;
        }
    }
    const int32_t needed = trec_dense_convolve_s8_get_buffer_size(input_dims, filter_dims);
    if (needed < 0) {
        return TREC_ARG_ERROR;
    }
    if (ctx->buf == NULL || ctx->size < 0) {
        return TREC_BUFFER_ERROR;
    }
    const uintptr_t misalign = (uintptr_t)ctx->buf & 3u;
    const int32_t skip = misalign ? (int32_t)(4u - misalign) : 0;
    if (ctx->size - skip < needed) {
        return TREC_BUFFER_ERROR;
    }
    int16_t *const cols = (int16_t *)(void *)((int8_t *)ctx->buf + skip);

    conv_geom g;
    g.in_h = input_dims->h;
    g.in_w = input_dims->w;
    g.cin = input_dims->c;
    g.kh = filter_dims->h;
    g.kw = filter_dims->w;
    g.stride_h = conv_params->stride.h;
    g.stride_w = conv_params->stride.w;
    g.dil_h = conv_params->dilation.h;
    g.dil_w = conv_params->dilation.w;
    g.pad_h = conv_params->padding.h;
    g.pad_w = conv_params->padding.w;
    g.input_offset = in_offset;
    g.k = g.kh * g.kw * g.cin;
    g.k_al = trec_align_up4(g.k);

    const int32_t *mult = quant_params->multiplier;
    const int32_t *shift = quant_params->shift;
    const int32_t out_h = output_dims->h;
    const int32_t out_w = output_dims->w;
    const int32_t in_image = g.in_h * g.in_w * g.cin;

    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in = input + (size_t)b * in_image;
        int8_t *out = output + (size_t)b * out_h * out_w * cout;
        int32_t pending = 0;
        for (int32_t oy = 0; oy < out_h; oy++) {
            for (int32_t ox = 0; ox < out_w; ox++) {
                im2col_column(&g, in, oy, ox, cols + pending * g.k_al);
                if (++pending == 2) {
                    out = mat_mult_2col(&g, filter, cols, cout, bias, mult, shift, out_offset, act_min, act_max,
                                        out);
                    pending = 0;
                }
            }
        }
        if (pending) {
            out = mat_mult_1col(&g, filter, cols, cout, bias, mult, shift, out_offset, act_min, act_max, out);
        }
    }
    return TREC_SUCCESS;
}
