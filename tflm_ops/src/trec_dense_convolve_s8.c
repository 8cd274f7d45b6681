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
 *   DSP path: the two columns are interleaved by groups of four elements in "unordered" lane order
 *   ((x0, x2) and (x1, x3) words, see the layout note below), so an int8 filter word unpacks with two
 *   SXTB16 into matching lanes and feeds SMLAD directly; the inner loop is 2 LDR + 2 LDRD + 4 SXTB16
 *   + 8 SMLAD per 16 MACs. The int8 gather goes straight into the interleaved int16 layout (no int8
 *   staging copy). Filter rows are read in whole words up to the zero-padded column length, i.e. a
 *   row's last word may reach up to 3 bytes into the following row(s) (multiplied by zero); rows for
 *   which that would pass the end of the filter array use an exact scalar tail instead, so nothing
 *   outside the filter array is ever read.
 *   Plain path (no DSP): two natural-order int16 columns and scalar multiply-accumulate.
 *   Scratch (both paths): 2 columns * align4(K) * sizeof(int16_t), the same as arm_convolve_s8.
 */
#include <stddef.h>
#include <string.h>

#include "trec/trec_nnfunctions.h"
#include "trec_nn_support.h"

int32_t trec_dense_convolve_s8_get_buffer_size(const trec_dims *input_dims, const trec_dims *filter_dims)
{
    if (input_dims == NULL || filter_dims == NULL || !trec_dims_positive(input_dims) ||
        !trec_dims_positive(filter_dims)) {
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
} trec_dense_geom;

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
/* Scratch layout of the DSP path: the two im2col columns interleaved by groups of four K-elements,
 * four int16x2 words per group g (offset applied, padding 0):
 *     word 4g+0: col0 (x0, x2)   word 4g+1: col1 (x0, x2)   word 4g+2: col0 (x1, x3)   word 4g+3: col1 (x1, x3)
 * so the mat-mult walks one pointer with two double-word loads per group, and the int8 filter word of
 * the same four elements unpacks with SXTB16 / SXTB16 ROR #8 into matching (x0, x2) / (x1, x3) lanes. */

/* Byte stream into one column: bytes are packed into a word and widened per group of four. */
typedef struct {
    uint32_t acc;  /* pending bytes, little-endian */
    uint32_t bits; /* 8 * number of pending bytes */
    int32_t *dst;  /* this column's word of the current group */
    int32_t off2;  /* input offset in both int16 lanes */
} trec_col_stream;

TREC_INLINE void stream_word(trec_col_stream *st, int32_t v)
{
    st->dst[0] = trec_sxtab16(st->off2, v);
    st->dst[2] = trec_sxtab16_ror8(st->off2, v);
    st->dst += 4;
}

TREC_INLINE void stream_byte(trec_col_stream *st, int8_t b)
{
    st->acc |= (uint32_t)(uint8_t)b << st->bits;
    st->bits += 8;
    if (st->bits == 32) {
        stream_word(st, (int32_t)st->acc);
        st->acc = 0;
        st->bits = 0;
    }
}

/* n bytes from src */
TREC_INLINE void stream_copy(trec_col_stream *st, const int8_t *src, int32_t n)
{
    while (n > 0 && st->bits != 0) {
        stream_byte(st, *src++);
        n--;
    }
    while (n >= 4) {
        stream_word(st, trec_read_s8x4(src));
        src += 4;
        n -= 4;
    }
    while (n-- > 0) {
        stream_byte(st, *src++);
    }
}

/* n padding bytes (the input zero point, i.e. 0 once the offset is added) */
TREC_INLINE void stream_pad(trec_col_stream *st, int8_t pad, int32_t n)
{
    while (n > 0 && st->bits != 0) {
        stream_byte(st, pad);
        n--;
    }
    while (n >= 4) {
        st->dst[0] = 0;
        st->dst[2] = 0;
        st->dst += 4;
        n -= 4;
    }
    while (n-- > 0) {
        stream_byte(st, pad);
    }
}

/* Column c (0 or 1) of the pair buffer for output pixel (oy, ox). */
static void im2col_column(const trec_dense_geom *g, const int8_t *in, int32_t oy, int32_t ox, int32_t *pair, int32_t c)
{
    const int32_t y0 = oy * g->stride_h - g->pad_h;
    const int32_t x0 = ox * g->stride_w - g->pad_w;
    const int32_t cin = g->cin;
    const int8_t pad = (int8_t)(-g->input_offset);
    trec_col_stream st;
    st.acc = 0;
    st.bits = 0;
    st.dst = pair + c;
    st.off2 = trec_pack_s16x2(g->input_offset, g->input_offset);

    for (int32_t ky = 0; ky < g->kh; ky++) {
        const int32_t iy = y0 + ky * g->dil_h;
        if (iy < 0 || iy >= g->in_h) {
            stream_pad(&st, pad, g->kw * cin);
            continue;
        }
        const int8_t *in_row = in + (iy * g->in_w) * cin;
        for (int32_t kx = 0; kx < g->kw; kx++) {
            const int32_t ix = x0 + kx * g->dil_w;
            if (ix < 0 || ix >= g->in_w) {
                stream_pad(&st, pad, cin);
            } else {
                stream_copy(&st, in_row + ix * cin, cin);
            }
        }
    }
    stream_pad(&st, pad, g->k_al - g->k); /* completes the last group with zeros */
}

/* The hot loop: acc[0..3] += (row0 . col0, row0 . col1, row1 . col0, row1 . col1) over n groups of
 * four. Kept out of line so the register allocator sees only its own 14 live values. */
static TREC_NOINLINE void dot_2x2(const int8_t *w0, const int8_t *w1, const int32_t *p, int32_t n, int32_t *acc)
{
    int32_t acc00 = acc[0], acc01 = acc[1], acc10 = acc[2], acc11 = acc[3];
    while (n-- > 0) {
        const int32_t a = trec_read_s8x4(w0);
        w0 += 4;
        const int32_t x0e = p[0];
        const int32_t x1e = p[1];
        int32_t t = trec_sxtb16(a);
        acc00 = trec_smlad(t, x0e, acc00);
        acc01 = trec_smlad(t, x1e, acc01);
        const int32_t b = trec_read_s8x4(w1);
        w1 += 4;
        t = trec_sxtb16(b);
        acc10 = trec_smlad(t, x0e, acc10);
        acc11 = trec_smlad(t, x1e, acc11);
        const int32_t x0o = p[2];
        const int32_t x1o = p[3];
        p += 4;
        t = trec_sxtb16_ror8(a);
        acc00 = trec_smlad(t, x0o, acc00);
        acc01 = trec_smlad(t, x1o, acc01);
        t = trec_sxtb16_ror8(b);
        acc10 = trec_smlad(t, x0o, acc10);
        acc11 = trec_smlad(t, x1o, acc11);
    }
    acc[0] = acc00;
    acc[1] = acc01;
    acc[2] = acc10;
    acc[3] = acc11;
}

/* 2 output channels x 2 pixels per step over the pair buffer. Returns out0 advanced by two pixels. */
static int8_t *mat_mult_2col(const trec_dense_geom *g, const int8_t *filter, const int32_t *pair, int32_t cout,
                             const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t out_offset,
                             int32_t act_min, int32_t act_max, int8_t *out0)
{
    const int32_t k = g->k;
    int8_t *const out1 = out0 + cout;
    const int32_t groups_all = g->k_al >> 2; /* may read into the next filter row (times zero) */
    const int32_t groups_exact = k >> 2;
    const int32_t tail = k & 3;
    const int32_t over = g->k_al - k; /* bytes a whole-word row read goes past the row's end */
    const int8_t *w = filter;
    int32_t r = 0;

    for (; r + 2 <= cout; r += 2) {
        const int32_t b0 = bias ? bias[r] : 0;
        const int32_t b1 = bias ? bias[r + 1] : 0;
        int32_t acc[4] = {b0, b0, b1, b1};
        /* whole words would read over bytes past row r+1; allowed while they stay inside the filter */
        const int exact = (cout - r - 2) * k < over;
        const int8_t *w0 = w;
        const int8_t *w1 = w + k;
        const int32_t *p = pair;
        const int32_t n = exact ? groups_exact : groups_all;
        dot_2x2(w0, w1, p, n, acc);
        w0 += 4 * n;
        w1 += 4 * n;
        p += 4 * n;
        if (exact) {
            const int16_t *q = (const int16_t *)(const void *)p;
            for (int32_t j = 0; j < tail; j++) {
                /* lane j of the group: word (j & 1) * 2 + column, half j >> 1 */
                const int32_t s = ((j & 1) << 2) + (j >> 1);
                acc[0] += w0[j] * q[s];
                acc[1] += w0[j] * q[s + 2];
                acc[2] += w1[j] * q[s];
                acc[3] += w1[j] * q[s + 2];
            }
        }
        out0[r] = trec_requantize_s8(acc[0], mult[r], shift[r], out_offset, act_min, act_max);
        out1[r] = trec_requantize_s8(acc[1], mult[r], shift[r], out_offset, act_min, act_max);
        out0[r + 1] = trec_requantize_s8(acc[2], mult[r + 1], shift[r + 1], out_offset, act_min, act_max);
        out1[r + 1] = trec_requantize_s8(acc[3], mult[r + 1], shift[r + 1], out_offset, act_min, act_max);
        w += 2 * k;
    }
    if (r < cout) { /* odd Cout: the filter's last row, exact length */
        const int32_t b0 = bias ? bias[r] : 0;
        int32_t acc00 = b0, acc01 = b0;
        const int8_t *w0 = w;
        const int32_t *p = pair;
        int32_t n = groups_exact;
        while (n-- > 0) {
            const int32_t a = trec_read_s8x4(w0);
            w0 += 4;
            int32_t t = trec_sxtb16(a);
            acc00 = trec_smlad(t, p[0], acc00);
            acc01 = trec_smlad(t, p[1], acc01);
            t = trec_sxtb16_ror8(a);
            acc00 = trec_smlad(t, p[2], acc00);
            acc01 = trec_smlad(t, p[3], acc01);
            p += 4;
        }
        const int16_t *q = (const int16_t *)(const void *)p;
        for (int32_t j = 0; j < tail; j++) {
            const int32_t s = ((j & 1) << 2) + (j >> 1);
            acc00 += w0[j] * q[s];
            acc01 += w0[j] * q[s + 2];
        }
        out0[r] = trec_requantize_s8(acc00, mult[r], shift[r], out_offset, act_min, act_max);
        out1[r] = trec_requantize_s8(acc01, mult[r], shift[r], out_offset, act_min, act_max);
    }
    return out0 + 2 * cout;
}

/* Leftover single pixel (column 0 of the pair buffer): 2 output channels x 1 pixel per step. */
static int8_t *mat_mult_1col(const trec_dense_geom *g, const int8_t *filter, const int32_t *pair, int32_t cout,
                             const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t out_offset,
                             int32_t act_min, int32_t act_max, int8_t *out0)
{
    const int32_t k = g->k;
    const int32_t groups_all = g->k_al >> 2;
    const int32_t groups_exact = k >> 2;
    const int32_t tail = k & 3;
    const int32_t over = g->k_al - k; /* bytes a whole-word row read goes past the row's end */
    const int8_t *w = filter;
    int32_t r = 0;

    for (; r < cout; r += 2) {
        const int two = (r + 2 <= cout);
        const int exact = (cout - r - (two ? 2 : 1)) * k < over;
        int32_t acc0 = bias ? bias[r] : 0;
        int32_t acc1 = (two && bias) ? bias[r + 1] : 0;
        const int8_t *w0 = w;
        const int8_t *w1 = two ? w + k : w; /* single last row: second lane recomputes row r, discarded */
        const int32_t *p = pair;
        int32_t n = exact ? groups_exact : groups_all;
        while (n-- > 0) {
            const int32_t a = trec_read_s8x4(w0);
            const int32_t b = trec_read_s8x4(w1);
            w0 += 4;
            w1 += 4;
            acc0 = trec_smlad(trec_sxtb16(a), p[0], acc0);
            acc1 = trec_smlad(trec_sxtb16(b), p[0], acc1);
            acc0 = trec_smlad(trec_sxtb16_ror8(a), p[2], acc0);
            acc1 = trec_smlad(trec_sxtb16_ror8(b), p[2], acc1);
            p += 4;
        }
        if (exact) {
            const int16_t *q = (const int16_t *)(const void *)p;
            for (int32_t j = 0; j < tail; j++) {
                const int32_t s = ((j & 1) << 2) + (j >> 1);
                acc0 += w0[j] * q[s];
                acc1 += w1[j] * q[s];
            }
        }
        out0[r] = trec_requantize_s8(acc0, mult[r], shift[r], out_offset, act_min, act_max);
        if (two) {
            out0[r + 1] = trec_requantize_s8(acc1, mult[r + 1], shift[r + 1], out_offset, act_min, act_max);
        }
        w += 2 * k;
    }
    return out0 + cout;
}

#else /* plain C path */

/* Scratch layout of the plain path: two int16 columns of k_al elements, natural order. */

/* Column c (0 or 1) for output pixel (oy, ox). */
static void im2col_column(const trec_dense_geom *g, const int8_t *in, int32_t oy, int32_t ox, int32_t *pair, int32_t c)
{
    int16_t *const col = (int16_t *)(void *)pair + c * g->k_al;
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

static int8_t *mat_mult_2col(const trec_dense_geom *g, const int8_t *filter, const int32_t *pair, int32_t cout,
                             const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t out_offset,
                             int32_t act_min, int32_t act_max, int8_t *out0)
{
    const int16_t *const col0 = (const int16_t *)(const void *)pair;
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

static int8_t *mat_mult_1col(const trec_dense_geom *g, const int8_t *filter, const int32_t *pair, int32_t cout,
                             const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t out_offset,
                             int32_t act_min, int32_t act_max, int8_t *out0)
{
    const int16_t *const col0 = (const int16_t *)(const void *)pair;
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
    if (!trec_dims_positive(input_dims) || !trec_dims_positive(filter_dims) || !trec_dims_positive(output_dims)) {
        return TREC_ARG_ERROR;
    }
    if (trec_dims_count(input_dims) > INT32_MAX || trec_dims_count(output_dims) > INT32_MAX ||
        trec_dims_count(filter_dims) > INT32_MAX) {
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
    if (bias != NULL && bias_dims != NULL && trec_dims_count(bias_dims) != cout) {
        return TREC_ARG_ERROR;
    }
    if (!trec_conv_geometry_ok(input_dims->h, filter_dims->h, conv_params->stride.h, conv_params->dilation.h,
                               conv_params->padding.h, output_dims->h) ||
        !trec_conv_geometry_ok(input_dims->w, filter_dims->w, conv_params->stride.w, conv_params->dilation.w,
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
    int32_t *const pair = (int32_t *)(void *)((int8_t *)ctx->buf + skip);

    trec_dense_geom g;
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
                im2col_column(&g, in, oy, ox, pair, pending);
                if (++pending == 2) {
                    out = mat_mult_2col(&g, filter, pair, cout, bias, mult, shift, out_offset, act_min, act_max,
                                        out);
                    pending = 0;
                }
            }
        }
        if (pending) {
            out = mat_mult_1col(&g, filter, pair, cout, bias, mult, shift, out_offset, act_min, act_max, out);
        }
    }
    return TREC_SUCCESS;
}
