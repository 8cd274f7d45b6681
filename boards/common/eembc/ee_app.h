/*
 * Model side of the EEMBC / MLPerf Tiny serial protocol (boards/common/eembc/).
 *
 * The protocol module (ee_protocol.c) owns the serial console, the command parser and the
 * input buffer filled by `db` commands; it reaches the model only through these functions,
 * which the application implements (tests/firmware/protocol/ with a checksum "model", the TFLM
 * app with a real one). All of them are called from the protocol loop, never from interrupts.
 *
 * Tensors are int8 (TFLite's int8 spec): real = scale * (q - zero_point).
 */
#ifndef TREC_EE_APP_H
#define TREC_EE_APP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Model name as reported by `name%` and `profile%` (no '[', ']' or ',' please). */
const char *app_model_name(void);

/* Size in bytes of the model's (single) input tensor. */
size_t app_input_size(void);

/* Quantization of the input tensor, so the host can quantize float data itself. */
float app_input_scale(void);
int32_t app_input_zero_point(void);

/* Hand the loaded input (exactly what the host sent with `db`) to the model.
 * Called once per `infer` command, before the warm-up runs. `data` stays valid and unchanged
 * until the next `db load`, so an app whose input tensor may be overwritten during inference
 * (TFLM reuses arena memory) can keep the pointer and copy again in app_invoke().
 * Returns 0, or a nonzero code (e.g. n != app_input_size()) that the protocol reports. */
int app_set_input(const uint8_t *data, size_t n);

/* Run one inference on the input given by app_set_input(). Returns 0, or a nonzero error code. */
int app_invoke(void);

/* Output of the last app_invoke(): number of elements, element i (int8 value), quantization. */
size_t app_output_count(void);
int8_t app_output_value(size_t i);
float app_output_scale(void);
int32_t app_output_zero_point(void);

/* Optional: what the MLPerf Tiny runner needs from a DUT (docs/BOARDS.md "MLPerf Tiny runner").
 * The protocol module provides weak defaults for all four.
 *
 * app_model_id(): the `m-model-[...]` reply of `profile%`, an MLPerf Tiny model ID (ic01, kws01,
 * vww01, ad01) by which the runner picks its test script. Default: app_model_name().
 *
 * app_input_uint8(): 1 when the `db` bytes follow the MLPerf Tiny reference (th_load_tensor):
 * byte b is the int8 input value b - 128; 0 (default) when they are the int8 values themselves.
 * The app converts (the protocol only reports it in `info%` as input=uint8|int8).
 *
 * app_output_probabilities(): 1 when `m-results` should print app_output_probability(i) (class
 * probabilities, 6 decimals; the runner scores m-results as probabilities) instead of the
 * dequantized outputs (3 decimals). Default 0. */
const char *app_model_id(void);
int app_input_uint8(void);
int app_output_probabilities(void);
float app_output_probability(size_t i);

/* Optional per-operator profile of the last app_invoke() (the `ops%` extension).
 * The protocol module provides weak defaults reporting no operators. Entry i gives the
 * operator's name (no ',' '[' ']') and its board_ticks() (board_tick_unit() units).
 * Returns 0 when entry i exists. */
size_t app_profile_count(void);
int app_profile_entry(size_t i, const char **name, uint64_t *ticks);

#ifdef __cplusplus
}
#endif

#endif /* TREC_EE_APP_H */
