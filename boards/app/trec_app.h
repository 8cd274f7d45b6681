/*
 * trec-tflm firmware app: the interface between the model-independent app (main.cc,
 * trec_app_profiler.cc; built once per core into libtrec_app.a by tflm_ops/tflm.mk) and the
 * per-project part compiled by each project's Makefile:
 *
 *   trec_app_config.h     generated: TREC_APP_MODEL_NAME, TREC_APP_ARENA_SIZE, TREC_APP_OP_COUNT,
 *                         TREC_APP_SELFTEST_COUNT, TREC_APP_INPUT_BYTES, TREC_APP_MLPERF_ID,
 *                         TREC_APP_INPUT_UINT8, TREC_APP_OUTPUT_SOFTMAX
 *   trec_app_model.cc     generated: g_trec_app_model[] (the .tflite, 16-byte aligned, in flash)
 *   trec_app_ops.cc       generated: TrecAppRegisterOps() with exactly the model's operators, and
 *                         TrecAppResolver() (the MicroMutableOpResolver<TREC_APP_OP_COUNT>)
 *   trec_app_selftest.cc  generated, optional: g_trec_app_selftest_inputs[]
 *   boards/app/trec_app_project.cc   the arena and the constants below, from trec_app_config.h
 */
#ifndef TREC_APP_H_
#define TREC_APP_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
namespace tflite {
class MicroOpResolver;
}

extern "C" {
#endif

extern const unsigned char g_trec_app_model[];
extern const unsigned int g_trec_app_model_len;

/* trec_app_project.cc */
extern uint8_t g_trec_app_arena[];            /* 16-byte aligned, .bss */
extern const size_t g_trec_app_arena_size;    /* TREC_APP_ARENA_SIZE */
extern const char g_trec_app_model_name[];    /* TREC_APP_MODEL_NAME */
extern const int g_trec_app_selftest_count;   /* built-in inputs (0: none) */
extern const int8_t* const g_trec_app_selftest_data;
extern const int g_trec_app_selftest_mode;    /* 1 when built with TREC_APP_SELFTEST (make SELFTEST=1) */
extern const char g_trec_app_model_id[];      /* TREC_APP_MLPERF_ID: m-model of profile% ("": the name) */
extern const int g_trec_app_input_uint8;      /* TREC_APP_INPUT_UINT8: db bytes are value + 128 */
extern const int g_trec_app_output_softmax;   /* TREC_APP_OUTPUT_SOFTMAX: m-results = softmax(outputs) */

/* main.cc */
/* Set the interpreter up (model, resolver, arena, AllocateTensors); prints one line
 * "trec-tflm app: ..." with the arena use. 0 on success, else a code to exit with. */
int trec_app_setup(void);
/* Arena bytes TFLM used (valid after trec_app_setup). */
size_t trec_app_arena_used(void);
/* Self-test: run the built-in inputs, print outputs, per-operator ticks and arena use in a
 * line format the host parses (docs/TFLM.md), return 0. */
int trec_app_selftest(void);

#ifdef __cplusplus
}

// trec_app_ops.cc: the resolver with the model's operators registered, or nullptr when a
// registration failed.
tflite::MicroOpResolver* TrecAppResolver();
#endif

#endif /* TREC_APP_H_ */
