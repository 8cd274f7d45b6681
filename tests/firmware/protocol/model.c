/*
 * A deterministic stand-in "model" behind the protocol's app interface (ee_app.h), so the
 * EEMBC / MLPerf Tiny protocol can be tested end to end before the TFLM app exists.
 *
 * Input: TEST_INPUT_SIZE int8 bytes. Output: 10 int8 values,
 *   acc[k] = sum_i x[i] * w(i, k),  w(i, k) = ((7*i + 3*k) % 11) - 5
 *   out[k] = clamp(acc[k] >> 6, -128, 127)         (arithmetic shift: floor division by 64)
 * trec_tflm tests compute the same thing in NumPy (tests/test_serial_protocol.py).
 */
#include <stddef.h>
#include <stdint.h>

#include "board.h"
#include "ee_app.h"

#ifndef TEST_INPUT_SIZE
#define TEST_INPUT_SIZE 784
#endif
#define TEST_OUTPUTS 10

static const uint8_t *s_input;
static int8_t s_out[TEST_OUTPUTS];
static uint64_t s_op_ticks[2];

const char *app_model_name(void) { return "checksum-test"; }
size_t app_input_size(void) { return TEST_INPUT_SIZE; }
float app_input_scale(void) { return 1.0f / 255.0f; }
int32_t app_input_zero_point(void) { return -128; }

int app_set_input(const uint8_t *data, size_t n)
{
    if (n != TEST_INPUT_SIZE) {
        return 1;
    }
    s_input = data;
    return 0;
}

int app_invoke(void)
{
    int32_t acc[TEST_OUTPUTS];
    uint64_t t0, t1, t2;
    size_t i;
    int k;
    if (s_input == NULL) {
        return 2;
    }
    t0 = board_ticks();
    for (k = 0; k < TEST_OUTPUTS; k++) {
        acc[k] = 0;
    }
    for (i = 0; i < TEST_INPUT_SIZE; i++) {
        int32_t x = (int8_t)s_input[i];
        for (k = 0; k < TEST_OUTPUTS; k++) {
            acc[k] += x * ((int32_t)((7u * i + 3u * (unsigned)k) % 11u) - 5);
        }
    }
    t1 = board_ticks();
    for (k = 0; k < TEST_OUTPUTS; k++) {
        int32_t v = acc[k] >> 6;
        s_out[k] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
    }
    t2 = board_ticks();
    s_op_ticks[0] = t1 - t0;
    s_op_ticks[1] = t2 - t1;
    return 0;
}

size_t app_output_count(void) { return TEST_OUTPUTS; }
int8_t app_output_value(size_t i) { return i < TEST_OUTPUTS ? s_out[i] : 0; }
float app_output_scale(void) { return 0.25f; }
int32_t app_output_zero_point(void) { return 0; }

size_t app_profile_count(void) { return 2; }

int app_profile_entry(size_t i, const char **name, uint64_t *ticks)
{
    static const char *const names[2] = {"CHECKSUM", "CLAMP"};
    if (i >= 2) {
        return -1;
    }
    *name = names[i];
    *ticks = s_op_ticks[i];
    return 0;
}
