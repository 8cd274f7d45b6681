/*
 * Kernel verification and benchmark firmware (trec_tflm/kernel_bench.py builds and runs it on QEMU).
 *
 * bench_cases.h (generated from trec_tflm.golden) holds, per case, the int8 tensors, quantization,
 * the expected TREC output and optionally the expected dense output. For every case:
 *   - trec_convolve_s8 with the case's scratch size on guarded buffers: ticks (instructions under
 *     QEMU -icount), bit-exact check, nothing written outside output and scratch;
 *     with -DTREC_PROFILE the ticks are split into hashing / centroids / products / scatter;
 *   - trec_dense_convolve_s8 on the same tensors (when the case has a dense expectation);
 *   - with -DTREC_BENCH_CMSIS_NN, CMSIS-NN's arm_convolve_wrapper_s8 on the same tensors.
 * Then a few bad-argument calls must return their status and leave the output untouched.
 *
 * Output lines:
 *   trec <name> <ok|FAIL...> ticks=N hash=N centroids=N products=N scatter=N scratch=B clusters=N rows=N subm=N passes=N
 *   dense <name> <ok|FAIL...> ticks=N scratch=B
 *   cmsis <name> <ok|FAIL...> ticks=N scratch=B
 *   bad-args <ok|FAIL...>
 * Exit code: number of failures.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "trec/trec_nnfunctions.h"

#include "bench_cases.h" /* bench_case CASES[], N_CASES, MAX_OUT_BYTES, MAX_SCRATCH_BYTES */

#if defined(TREC_BENCH_CMSIS_NN)
#include "arm_nnfunctions.h"
#endif

#define GUARD 32
#define CANARY 0xA5

static int8_t out_buf[MAX_OUT_BYTES + 2 * GUARD] __attribute__((aligned(8)));
static uint8_t scratch_buf[MAX_SCRATCH_BYTES + 2 * GUARD] __attribute__((aligned(8)));

/* ------------------------------------------------------------------------------------------------
 * phase profile (called by the kernel when compiled with -DTREC_PROFILE)
 * ---------------------------------------------------------------------------------------------- */
static uint64_t phase_ticks[4];
static int current_phase = -1;
static uint64_t phase_start;

void trec_profile_mark(int phase);
void trec_profile_mark(int phase)
{
    const uint64_t now = board_ticks();
    if (current_phase >= 0) {
        phase_ticks[current_phase] += now - phase_start;
    }
    current_phase = phase;
    phase_start = now;
}

static void reset_profile(void)
{
    memset(phase_ticks, 0, sizeof(phase_ticks));
    current_phase = -1;
}

/* ------------------------------------------------------------------------------------------------
 * helpers
 * ---------------------------------------------------------------------------------------------- */
static void fill(void *buf, int32_t n) { memset(buf, CANARY, (size_t)n); }

static int guards_ok(const uint8_t *buf, int32_t inner)
{
    for (int32_t i = 0; i < GUARD; i++) {
        if (buf[i] != CANARY || buf[GUARD + inner + i] != CANARY) {
            return 0;
        }
    }
    return 1;
}

static int all_canary(const uint8_t *buf, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        if (buf[i] != CANARY) {
            return 0;
        }
    }
    return 1;
}

static int32_t out_bytes(const bench_case *c) { return c->n * c->ho * c->wo * c->cout; }

/* compare the output with the expectation; returns the number of differing bytes */
static int32_t mismatches(const int8_t *got, const int8_t *want, int32_t n, int32_t *first)
{
    int32_t bad = 0;
    *first = -1;
    for (int32_t i = 0; i < n; i++) {
        if (got[i] != want[i]) {
            if (bad == 0) {
                *first = i;
            }
            bad++;
        }
    }
    return bad;
}

typedef struct {
    trec_dims in, filt, bias, out;
    trec_conv_params conv;
    trec_hash_params hash;
    trec_per_channel_quant_params quant;
} call_args;

static void setup(const bench_case *c, call_args *a)
{
    a->in = (trec_dims){c->n, c->h, c->w, c->cin};
    a->filt = (trec_dims){c->cout, c->kh, c->kw, c->cin};
    a->bias = (trec_dims){1, 1, 1, c->cout};
    a->out = (trec_dims){c->n, c->ho, c->wo, c->cout};
    a->conv.input_offset = c->input_offset;
    a->conv.output_offset = c->output_offset;
    a->conv.stride = (trec_tile){c->stride_w, c->stride_h};
    a->conv.padding = (trec_tile){c->pad_w, c->pad_h};
    a->conv.dilation = (trec_tile){c->dil_w, c->dil_h};
    a->conv.activation = (trec_activation){c->act_min, c->act_max};
    a->hash = (trec_hash_params){c->sub_vector_length, c->hash_bits, c->hash_center};
    a->quant = (trec_per_channel_quant_params){c->multiplier, c->shift};
}

static int report(const char *what, const bench_case *c, trec_status st, int32_t scratch, int32_t used_scratch,
                  const int8_t *expected)
{
    const int32_t n = out_bytes(c);
    int32_t first;
    const int32_t bad = st == TREC_SUCCESS ? mismatches(out_buf + GUARD, expected, n, &first) : -1;
    const int guards = guards_ok((const uint8_t *)out_buf, n) && guards_ok(scratch_buf, scratch);
    (void)used_scratch;
    if (st != TREC_SUCCESS) {
        printf("%s %s FAIL status=%d", what, c->name, (int)st);
        return 1;
    }
    if (bad || !guards) {
        printf("%s %s FAIL mismatches=%ld first=%ld guards=%d", what, c->name, (long)bad, (long)first, guards);
        return 1;
    }
    printf("%s %s ok", what, c->name);
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * the three kernels
 * ---------------------------------------------------------------------------------------------- */
static int run_trec(const bench_case *c)
{
    call_args a;
    setup(c, &a);
    int32_t scratch = c->scratch_bytes > 0
                          ? c->scratch_bytes
                          : trec_convolve_s8_get_buffer_size(&a.conv, &a.hash, &a.in, &a.filt, &a.out);
    if (scratch < 0 || scratch > MAX_SCRATCH_BYTES) {
        printf("trec %s FAIL scratch=%ld\n", c->name, (long)scratch);
        return 1;
    }
    fill(out_buf, out_bytes(c) + 2 * GUARD);
    fill(scratch_buf, scratch + 2 * GUARD);
    const trec_context ctx = {scratch_buf + GUARD, scratch};
    trec_reuse_stats stats = {0, 0, 0, 0, 0, 0, 0, 0};
    reset_profile();
    const uint64_t t0 = board_ticks();
    const trec_status st = trec_convolve_s8(&ctx, &a.conv, &a.hash, &a.quant, &a.in, c->input, &a.filt, c->filter,
                                            c->hash, &a.bias, c->bias, &a.out, out_buf + GUARD, &stats);
    const uint64_t t1 = board_ticks();
    const int fail = report("trec", c, st, scratch, scratch, c->expected_trec);
    printf(" ticks=%lu hash=%lu centroids=%lu products=%lu scatter=%lu scratch=%ld clusters=%ld rows=%ld "
           "subm=%ld passes=%ld chunk=%ld plan=%ld scatter_tenths=%ld sums_block=%ld\n",
           (unsigned long)(t1 - t0), (unsigned long)phase_ticks[0], (unsigned long)phase_ticks[1],
           (unsigned long)phase_ticks[2], (unsigned long)phase_ticks[3], (long)scratch,
           (long)stats.clusters, (long)stats.rows, (long)stats.sub_matrices, (long)stats.passes,
           (long)stats.chunk, (long)stats.plan, (long)stats.scatter_tenths,
           (long)stats.sums_block);
    return fail;
}

static int run_dense(const bench_case *c)
{
    call_args a;
    setup(c, &a);
    const int32_t scratch = trec_dense_convolve_s8_get_buffer_size(&a.in, &a.filt);
    fill(out_buf, out_bytes(c) + 2 * GUARD);
    fill(scratch_buf, scratch + 2 * GUARD);
    const trec_context ctx = {scratch_buf + GUARD, scratch};
    const uint64_t t0 = board_ticks();
    const trec_status st = trec_dense_convolve_s8(&ctx, &a.conv, &a.quant, &a.in, c->input, &a.filt, c->filter,
                                                  &a.bias, c->bias, &a.out, out_buf + GUARD);
    const uint64_t t1 = board_ticks();
    const int fail = report("dense", c, st, scratch, scratch, c->expected_dense);
    printf(" ticks=%lu scratch=%ld\n", (unsigned long)(t1 - t0), (long)scratch);
    return fail;
}

#if defined(TREC_BENCH_CMSIS_NN)
static int run_cmsis(const bench_case *c)
{
    /* CMSIS-NN's own int8 convolution on the same tensors: the reference for the dense baseline. */
    cmsis_nn_conv_params conv = {0};
    conv.input_offset = c->input_offset;
    conv.output_offset = c->output_offset;
    conv.stride.w = c->stride_w;
    conv.stride.h = c->stride_h;
    conv.padding.w = c->pad_w;
    conv.padding.h = c->pad_h;
    conv.dilation.w = c->dil_w;
    conv.dilation.h = c->dil_h;
    conv.activation.min = c->act_min;
    conv.activation.max = c->act_max;
    cmsis_nn_per_channel_quant_params quant = {(int32_t *)c->multiplier, (int32_t *)c->shift};
    const cmsis_nn_dims in = {c->n, c->h, c->w, c->cin};
    const cmsis_nn_dims filt = {c->cout, c->kh, c->kw, c->cin};
    const cmsis_nn_dims bias = {1, 1, 1, c->cout};
    const cmsis_nn_dims out = {c->n, c->ho, c->wo, c->cout};
    const int32_t scratch = arm_convolve_wrapper_s8_get_buffer_size(&conv, &in, &filt, &out);
    if (scratch > MAX_SCRATCH_BYTES) {
        printf("cmsis %s FAIL scratch=%ld\n", c->name, (long)scratch);
        return 1;
    }
    fill(out_buf, out_bytes(c) + 2 * GUARD);
    fill(scratch_buf, scratch + 2 * GUARD);
    cmsis_nn_context ctx = {scratch > 0 ? scratch_buf + GUARD : NULL, scratch};
    const uint64_t t0 = board_ticks();
    const arm_cmsis_nn_status st = arm_convolve_wrapper_s8(&ctx, &conv, &quant, &in, c->input, &filt, c->filter,
                                                           &bias, c->bias, &out, out_buf + GUARD);
    const uint64_t t1 = board_ticks();
    const int fail = report("cmsis", c, st == ARM_CMSIS_NN_SUCCESS ? TREC_SUCCESS : TREC_ARG_ERROR, scratch,
                            scratch, c->expected_dense);
    printf(" ticks=%lu scratch=%ld\n", (unsigned long)(t1 - t0), (long)scratch);
    return fail;
}
#endif

/* A few bad-argument calls: each must return its status and leave the output untouched. */
static int bad_args(const bench_case *c)
{
    call_args a;
    setup(c, &a);
    const int32_t least = trec_convolve_s8_get_min_buffer_size(&a.conv, &a.hash, &a.in, &a.filt, &a.out);
    int fails = 0;
    const int32_t n = out_bytes(c);
    for (int which = 0; which < 4; which++) {
        trec_context ctx = {scratch_buf + GUARD, least};
        trec_hash_params hp = a.hash;
        const int8_t *input = c->input;
        trec_status want = TREC_ARG_ERROR;
        switch (which) {
        case 0: input = NULL; break;
        case 1: ctx.size = least - 4; want = TREC_BUFFER_ERROR; break;
        case 2: hp.sub_vector_length = 0; break;
        default: hp.hash_bits = TREC_MAX_HASH_BITS + 1; break;
        }
        fill(out_buf, n + 2 * GUARD);
        const trec_status st = trec_convolve_s8(&ctx, &a.conv, &hp, &a.quant, &a.in, input, &a.filt, c->filter,
                                                c->hash, &a.bias, c->bias, &a.out, out_buf + GUARD, NULL);
        if (st != want || !all_canary((const uint8_t *)out_buf, n + 2 * GUARD)) {
            printf("bad-args FAIL case=%d status=%d\n", which, (int)st);
            fails++;
        }
    }
    if (!fails) {
        printf("bad-args ok\n");
    }
    return fails;
}

int main(void)
{
    board_init();
    int fails = 0;
    for (int i = 0; i < N_CASES; i++) {
        const bench_case *c = &CASES[i];
        fails += run_trec(c);
        if (c->expected_dense != NULL) {
            fails += run_dense(c);
#if defined(TREC_BENCH_CMSIS_NN)
            fails += run_cmsis(c);
#endif
        }
    }
    fails += bad_args(&CASES[0]);
    printf("done failures=%d\n", fails);
    board_exit(fails);
}
