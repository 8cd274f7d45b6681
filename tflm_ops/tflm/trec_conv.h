/*
 * trec-tflm: TensorFlow Lite Micro kernel for the TREC_CONV_2D custom operator (docs/OP_SPEC.md).
 *
 *   #include "trec_conv.h"
 *   tflite::MicroMutableOpResolver<5> resolver;
 *   resolver.AddConv2D();
 *   tflite::AddTrecConv2D(resolver);          // registers "TREC_CONV_2D"
 *
 * The kernel parses the flexbuffer custom options in Init, checks every assumption and computes
 * the per-channel requantization, padding, activation range and scratch size in Prepare, and calls
 * trec_convolve_s8() (tflm_ops/src) in Eval. See docs/TFLM.md.
 *
 * Scratch: each TREC_CONV_2D requests trec_convolve_s8_get_buffer_size() bytes from the arena, or
 * its optional `scratch_budget` custom option's bytes when it has one (Prepare refuses a budget
 * below trec_convolve_s8_get_min_buffer_size(); a budget above trec_convolve_s8_get_max_buffer_size()
 * requests that), capped by the compile-time knob -DTREC_SCRATCH_BUDGET=<bytes> (never below the
 * minimum). Less scratch means more passes over the output channels, more means fewer or a faster
 * scatter plan, with the same result.
 */
#ifndef TREC_TFLM_TREC_CONV_H_
#define TREC_TFLM_TREC_CONV_H_

#include <cstddef>
#include <cstdint>

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_common.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "trec/trec_nnfunctions.h"

namespace tflite {

// custom_code of the operator in the .tflite flatbuffer.
inline constexpr char kTrecConv2DCustomName[] = "TREC_CONV_2D";

// Newest (and only) custom-options version this build understands.
inline constexpr int kTrecConv2DVersion = 1;

// The parsed custom options (docs/OP_SPEC.md, "Options").
struct TrecConv2DOptions {
  int32_t version;
  int32_t sub_vector_length;  // L
  int32_t hash_bits;          // H
  int32_t hash_center;        // trec_hash_center
  int32_t stride_h, stride_w;
  int32_t dilation_h, dilation_w;
  TfLitePadding padding;
  TfLiteFusedActivation activation;
  int32_t scratch_budget;     // optional key: bytes, >= 1; 0 when absent (no per-op cap)
};

// Parses and validates the flexbuffer map. On failure prints one line naming the problem
// ("TREC_CONV_2D: ...") with MicroPrintf and returns kTfLiteError. Exposed for tests.
TfLiteStatus ParseTrecConv2DOptions(const uint8_t* buffer, size_t length,
                                    TrecConv2DOptions* options);

// What the kernel keeps per node (persistent arena memory, allocated in Init).
struct OpDataTrecConv2D {
  TrecConv2DOptions options;
  trec_conv_params conv_params;      // offsets, stride, top/left padding, dilation, clamp
  trec_hash_params hash_params;      // L, H, centre
  int32_t* per_channel_multiplier;   // [Cout], persistent
  int32_t* per_channel_shift;        // [Cout], persistent
  int scratch_index;                 // -1: no scratch
  int32_t scratch_bytes;             // what was requested (fast plan, or a budget)
  int32_t scratch_fast_bytes;        // trec_convolve_s8_get_buffer_size()
  int32_t scratch_min_bytes;         // trec_convolve_s8_get_min_buffer_size()
  trec_reuse_stats last_stats;       // reuse of the last successful Eval (rc = clusters /
                                     // (rows * M)); rows == 0: none yet, or the last Eval failed
};

// The registration (init/prepare/eval), made with tflite::micro::RegisterOp.
TFLMRegistration Register_TREC_CONV_2D();

// Reuse statistics of `node`'s latest evaluation, kept in the node's OpData: nullptr when
// `registration` is not TREC_CONV_2D's (made by Register_TREC_CONV_2D(); a copy with another
// invoke still counts), when the node has no OpData, or when it has not yet been evaluated
// successfully (or its last evaluation failed). For profilers and host tools: the board app asks
// each node its profiler timed (boards/app/trec_app_profiler.cc).
const trec_reuse_stats* TrecConv2DReuseStats(const TFLMRegistration& registration,
                                             const TfLiteNode& node);

// Adds TREC_CONV_2D to a resolver (one slot of its tOpCount).
template <unsigned int tOpCount>
TfLiteStatus AddTrecConv2D(MicroMutableOpResolver<tOpCount>& resolver) {
  const TFLMRegistration registration = Register_TREC_CONV_2D();
  return resolver.AddCustom(kTrecConv2DCustomName, &registration);
}

}  // namespace tflite

#endif  // TREC_TFLM_TREC_CONV_H_
