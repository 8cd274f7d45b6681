/*
 * The optional MLPerf Tiny hooks of ee_app.h for the checksum "model" (model.c), linked in by
 * tests/test_serial_protocol.py's host build only: an MLPerf model ID for m-model, the uint8 input
 * convention reported by info%, and m-results as the softmax of the dequantized outputs.
 * (Without this file the protocol's weak defaults apply: the name, int8, dequantized values.)
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "ee_app.h"

const char *app_model_id(void) { return "ic01"; }
int app_input_uint8(void) { return 1; }
int app_output_probabilities(void) { return 1; }

static float dequantized(size_t i)
{
    return app_output_scale() * (float)((int32_t)app_output_value(i) - app_output_zero_point());
}

float app_output_probability(size_t i)
{
    size_t n = app_output_count();
    size_t k;
    float mx = dequantized(0);
    float sum = 0.0f;
    for (k = 1; k < n; k++) {
        if (dequantized(k) > mx) {
            mx = dequantized(k);
        }
    }
    for (k = 0; k < n; k++) {
        sum += expf(dequantized(k) - mx);
    }
    return expf(dequantized(i) - mx) / sum;
}
