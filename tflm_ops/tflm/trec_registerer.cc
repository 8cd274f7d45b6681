/*
 * trec-tflm: custom-op registerer for the tflite-micro Python interpreter (host only).
 *
 *   ctypes.CDLL("libtrec_tflm_ops.so", mode=ctypes.RTLD_GLOBAL)
 *   tflite_micro.runtime.Interpreter.from_bytes(model, custom_op_registerers=["TrecRegisterer"])
 *
 * The wheel's interpreter looks the symbol up by name and calls it with its resolver.
 * trec_tflm.runtime does both steps.
 */
#include "python/tflite_micro/python_ops_resolver.h"
#include "trec_conv.h"

// The library is built with -fvisibility=hidden (see tflm_ops/tflm.mk): only this symbol is
// exported, so nothing in it can be interposed by TensorFlow's own TFLite symbols, which
// libtensorflow_cc exports globally with another TfLiteTensor layout.
extern "C" __attribute__((visibility("default"))) bool TrecRegisterer(tflite::PythonOpsResolver* resolver) {
  return resolver != nullptr && tflite::AddTrecConv2D(*resolver) == kTfLiteOk;
}
