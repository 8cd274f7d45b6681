/*
 * trec-tflm firmware app: the per-project constants (compiled by every project's Makefile with
 * its generated trec_app_config.h; the rest of the app is model-independent, see trec_app.h).
 */
#include "trec_app_config.h"
#include "trec_app.h"

alignas(16) uint8_t g_trec_app_arena[TREC_APP_ARENA_SIZE];
const size_t g_trec_app_arena_size = TREC_APP_ARENA_SIZE;
const char g_trec_app_model_name[] = TREC_APP_MODEL_NAME;

#if TREC_APP_SELFTEST_COUNT > 0
extern "C" const int8_t g_trec_app_selftest_inputs[];
const int g_trec_app_selftest_count = TREC_APP_SELFTEST_COUNT;
const int8_t* const g_trec_app_selftest_data = g_trec_app_selftest_inputs;
#else
const int g_trec_app_selftest_count = 0;
const int8_t* const g_trec_app_selftest_data = nullptr;
#endif

#ifdef TREC_APP_SELFTEST
const int g_trec_app_selftest_mode = 1;
#else
const int g_trec_app_selftest_mode = 0;
#endif

// Projects generated before these settings existed: the name in m-model, int8 input bytes,
// dequantized m-results.
#ifndef TREC_APP_MLPERF_ID
#define TREC_APP_MLPERF_ID ""
#endif
#ifndef TREC_APP_INPUT_UINT8
#define TREC_APP_INPUT_UINT8 0
#endif
#ifndef TREC_APP_OUTPUT_SOFTMAX
#define TREC_APP_OUTPUT_SOFTMAX 0
#endif
const char g_trec_app_model_id[] = TREC_APP_MLPERF_ID;
const int g_trec_app_input_uint8 = TREC_APP_INPUT_UINT8;
const int g_trec_app_output_softmax = TREC_APP_OUTPUT_SOFTMAX;
