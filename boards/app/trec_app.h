/*
 * trec-tflm firmware app: what the generated model files (trec_tflm.firmware.generate_project)
 * provide to the app (boards/app/), and what the app exposes for tests.
 *
 * Generated per project (in the project directory):
 *   trec_app_config.h   TREC_APP_MODEL_NAME, TREC_APP_ARENA_SIZE, TREC_APP_OP_COUNT,
 *                       TREC_APP_SELFTEST_COUNT (0 without self-test inputs)
 *   trec_app_model.cc   g_trec_app_model[] (the .tflite, 16-byte aligned, in flash)
 *   trec_app_ops.cc     TrecAppRegisterOps(): exactly the operators the model uses
 *   trec_app_selftest.cc  g_trec_app_selftest_inputs[] (only with self-test inputs)
 */
#ifndef TREC_APP_H_
#define TREC_APP_H_

#include <stddef.h>
#include <stdint.h>

#include "trec_app_config.h"

#ifdef __cplusplus
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

extern "C" {
#endif

extern const unsigned char g_trec_app_model[];
extern const unsigned int g_trec_app_model_len;
#if TREC_APP_SELFTEST_COUNT > 0
/* TREC_APP_SELFTEST_COUNT inputs of the model's input size, back to back. */
extern const int8_t g_trec_app_selftest_inputs[];
#endif

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

// Registers the model's operators (generated: trec_app_ops.cc).
TfLiteStatus TrecAppRegisterOps(tflite::MicroMutableOpResolver<TREC_APP_OP_COUNT>& resolver);
#endif

#endif /* TREC_APP_H_ */
