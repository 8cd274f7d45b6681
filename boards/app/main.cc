/*
 * trec-tflm firmware app: a .tflite model (with TREC_CONV_2D layers) in TensorFlow Lite Micro,
 * driven over the EEMBC / MLPerf Tiny serial protocol (boards/common/eembc/), with per-operator
 * ticks for `ops%`.
 *
 * The model, its operator list and the arena size are generated per project by
 * trec_tflm.firmware.generate_project() (see trec_app.h); docs/TFLM.md describes the app.
 *
 * Boot: board_init(), set the interpreter up, print
 *   trec-tflm app: model <name>, <n> operators, arena <used> of <size> bytes
 * then run the protocol loop (or, in a project built with SELFTEST=1, the self-test and exit).
 *
 * This file does not depend on the model: tflm_ops/tflm.mk builds it once per core into
 * libtrec_app.a; the project's Makefile compiles only the per-model part (trec_app.h).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <new>

#include "board.h"
#include "ee_app.h"
#include "ee_protocol.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_interpreter_graph.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "trec_app.h"
#include "trec_app_profiler.h"
#include "trec_conv.h"

namespace {

// The arena (g_trec_app_arena, g_trec_app_arena_size: measured need + margin) and the resolver
// (TrecAppResolver) come from the project (trec_app.h). Objects with constructors are built in
// trec_app_setup() (placement new), not at static initialisation, so their order and failures
// are under our control.
// The interpreter with its graph reachable (TFLM keeps it private; the interpreter's context
// holds it): the profiler reads the node each event timed.
class AppInterpreter : public tflite::MicroInterpreter {
 public:
  using tflite::MicroInterpreter::MicroInterpreter;
  tflite::MicroInterpreterGraph& graph() {
    // MicroInterpreter's context is a MicroInterpreterContext, whose graph is its
    // MicroInterpreterGraph
    return static_cast<tflite::MicroInterpreterGraph&>(
        tflite::GetMicroContext(&context())->graph());
  }
};

alignas(AppInterpreter) uint8_t g_interpreter_mem[sizeof(AppInterpreter)];
alignas(TrecAppProfiler) uint8_t g_profiler_mem[sizeof(TrecAppProfiler)];

AppInterpreter* g_interpreter = nullptr;
TrecAppProfiler* g_profiler = nullptr;
TfLiteTensor* g_input = nullptr;
TfLiteTensor* g_output = nullptr;
const uint8_t* g_loaded = nullptr;  // the protocol's input buffer (app_set_input)
bool g_loaded_uint8 = false;        // g_loaded holds MLPerf-style uint8 bytes (value + 128)
size_t g_input_bytes = 0;
size_t g_output_count = 0;
// Softmax of the last inference's dequantized outputs, computed on first use after app_invoke.
bool g_softmax_valid = false;
float g_softmax_max = 0.0f;
float g_softmax_sum = 1.0f;

void put_line(const char* s) {
  board_puts(s);
  board_puts("\r\n");
}

// newlib-nano's printf has no %llu: 64-bit counts are formatted here.
const char* u64_str(uint64_t v, char* buf /* >= 21 bytes */) {
  char* p = buf + 20;
  *p = '\0';
  do {
    *--p = static_cast<char>('0' + v % 10u);
    v /= 10u;
  } while (v != 0u);
  return p;
}

// Copies an input into the input tensor; uint8 bytes become int8 values b - 128 (b ^ 0x80), as
// the MLPerf Tiny reference's th_load_tensor does. Word-wise, so the timed loop (which copies
// before every inference) pays about what a memcpy costs either way.
void copy_input(const uint8_t* src, size_t n, bool from_uint8) {
  int8_t* dst = g_input->data.int8;
  memcpy(dst, src, n);
  if (!from_uint8) return;
  size_t i = 0;
  for (; i + 4u <= n; i += 4u) {  // 4-byte memcpy: one load / store, no aliasing question
    uint32_t w;
    memcpy(&w, dst + i, 4u);
    w ^= 0x80808080u;
    memcpy(dst + i, &w, 4u);
  }
  for (; i < n; ++i) dst[i] = static_cast<int8_t>(static_cast<uint8_t>(dst[i]) ^ 0x80u);
}

float dequantized_output(size_t i) {
  return g_output->params.scale * static_cast<float>(static_cast<int32_t>(g_output->data.int8[i]) -
                                                     g_output->params.zero_point);
}

void compute_softmax() {
  float mx = dequantized_output(0);
  for (size_t i = 1; i < g_output_count; ++i) {
    const float v = dequantized_output(i);
    if (v > mx) mx = v;
  }
  float sum = 0.0f;
  for (size_t i = 0; i < g_output_count; ++i) sum += expf(dequantized_output(i) - mx);
  g_softmax_max = mx;
  g_softmax_sum = sum;  // >= 1: the largest output contributes expf(0)
  g_softmax_valid = true;
}

}  // namespace

extern "C" int trec_app_setup(void) {
  char line[160];
  const tflite::Model* model = tflite::GetModel(g_trec_app_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    snprintf(line, sizeof line, "trec-tflm app: error: model schema version %u, TFLM expects %d",
             static_cast<unsigned>(model->version()), TFLITE_SCHEMA_VERSION);
    put_line(line);
    return 2;
  }
  tflite::MicroOpResolver* resolver = TrecAppResolver();
  if (resolver == nullptr) {
    put_line("trec-tflm app: error: registering the model's operators failed");
    return 3;
  }
  g_profiler = new (g_profiler_mem) TrecAppProfiler();
  g_interpreter = new (g_interpreter_mem) AppInterpreter(
      model, *resolver, g_trec_app_arena, g_trec_app_arena_size, nullptr, g_profiler);
  if (g_interpreter->AllocateTensors() != kTfLiteOk) {
    snprintf(line, sizeof line,
             "trec-tflm app: error: AllocateTensors failed (arena %u bytes; see the TFLM message above)",
             static_cast<unsigned>(g_trec_app_arena_size));
    put_line(line);
    return 4;
  }
  g_profiler->set_graph(&g_interpreter->graph());
  g_input = g_interpreter->input(0);
  g_output = g_interpreter->output(0);
  if (g_input == nullptr || g_output == nullptr || g_input->type != kTfLiteInt8 ||
      g_output->type != kTfLiteInt8) {
    put_line("trec-tflm app: error: the model's input and output 0 must be int8 tensors");
    return 5;
  }
  g_input_bytes = g_input->bytes;
  g_output_count = g_output->bytes;
  snprintf(line, sizeof line, "trec-tflm app: model %s, %u operators, arena %u of %u bytes",
           g_trec_app_model_name, static_cast<unsigned>(model->subgraphs()->Get(0)->operators()->size()),
           static_cast<unsigned>(g_interpreter->arena_used_bytes()),
           static_cast<unsigned>(g_trec_app_arena_size));
  put_line(line);
  return 0;
}

extern "C" size_t trec_app_arena_used(void) {
  return g_interpreter != nullptr ? g_interpreter->arena_used_bytes() : 0;
}

// ------------------------------------------------------------------ the protocol's model side --
extern "C" const char* app_model_name(void) { return g_trec_app_model_name; }

extern "C" const char* app_model_id(void) {
  return g_trec_app_model_id[0] != '\0' ? g_trec_app_model_id : g_trec_app_model_name;
}

extern "C" int app_input_uint8(void) { return g_trec_app_input_uint8; }

extern "C" int app_output_probabilities(void) { return g_trec_app_output_softmax && g_output_count >= 2; }

extern "C" float app_output_probability(size_t i) {
  if (g_output == nullptr || i >= g_output_count) return 0.0f;
  if (!g_softmax_valid) compute_softmax();
  return expf(dequantized_output(i) - g_softmax_max) / g_softmax_sum;
}

extern "C" size_t app_input_size(void) { return g_input_bytes; }

extern "C" float app_input_scale(void) { return g_input != nullptr ? g_input->params.scale : 0.0f; }

extern "C" int32_t app_input_zero_point(void) {
  return g_input != nullptr ? g_input->params.zero_point : 0;
}

// `from_uint8`: the protocol's input follows the project's convention; the self-test's built-in
// inputs are int8 values.
static int set_input(const uint8_t* data, size_t n, bool from_uint8) {
  if (g_interpreter == nullptr) return 1;
  if (n != g_input_bytes) return 2;
  g_loaded = data;  // copied into the input tensor by every app_invoke (TFLM reuses arena memory)
  g_loaded_uint8 = from_uint8;
  copy_input(data, n, from_uint8);
  return 0;
}

extern "C" int app_set_input(const uint8_t* data, size_t n) {
  return set_input(data, n, g_trec_app_input_uint8 != 0);
}

extern "C" int app_invoke(void) {
  if (g_interpreter == nullptr || g_loaded == nullptr) return 1;
  copy_input(g_loaded, g_input_bytes, g_loaded_uint8);
  g_profiler->Reset();
  g_softmax_valid = false;
  return g_interpreter->Invoke() == kTfLiteOk ? 0 : 3;
}

extern "C" size_t app_output_count(void) { return g_output_count; }

extern "C" int8_t app_output_value(size_t i) {
  return (g_output != nullptr && i < g_output_count) ? g_output->data.int8[i] : 0;
}

extern "C" float app_output_scale(void) { return g_output != nullptr ? g_output->params.scale : 0.0f; }

extern "C" int32_t app_output_zero_point(void) {
  return g_output != nullptr ? g_output->params.zero_point : 0;
}

extern "C" size_t app_profile_count(void) { return g_profiler != nullptr ? g_profiler->count() : 0; }

extern "C" int app_profile_entry(size_t i, const char** name, uint64_t* ticks) {
  if (g_profiler == nullptr || i >= g_profiler->count()) return -1;
  *name = g_profiler->name(i);
  *ticks = g_profiler->ticks(i);
  return 0;
}

// ------------------------------------------------------------------------------- self-test --
// Lines (each ends with \r\n):
//   selftest-begin-[<count>,<input bytes>,<outputs>]
//   selftest-out-[<image>,<q0>,<q1>,...]          raw int8 outputs of every built-in input
//   selftest-op-[<index>,<name>,<ticks>]          per operator, last inference
//   selftest-rc-[<index>,<clusters>,<rows>,<sub_matrices>,<passes>]   TREC_CONV_2D reuse, last inference
//   selftest-arena-[<used>,<size>]
//   selftest-ticks-[<total ticks of all inferences>,<unit>]
//   selftest-done
extern "C" int trec_app_selftest(void) {
  char line[96];
  const int count = g_trec_app_selftest_count;
  snprintf(line, sizeof line, "selftest-begin-[%d,%u,%u]", count,
           static_cast<unsigned>(g_input_bytes), static_cast<unsigned>(g_output_count));
  put_line(line);
  uint64_t total = 0;
  for (int img = 0; img < count; ++img) {
    const uint8_t* src =
        reinterpret_cast<const uint8_t*>(g_trec_app_selftest_data) + img * g_input_bytes;
    if (set_input(src, g_input_bytes, false) != 0) return 6;
    const uint64_t t0 = board_ticks();
    const int rc = app_invoke();
    total += board_ticks() - t0;
    if (rc != 0) {
      snprintf(line, sizeof line, "selftest-error-[%d,invoke failed]", img);
      put_line(line);
      return 7;
    }
    int n = snprintf(line, sizeof line, "selftest-out-[%d", img);
    board_puts(line);
    for (size_t i = 0; i < g_output_count; ++i) {
      n = snprintf(line, sizeof line, ",%d", static_cast<int>(g_output->data.int8[i]));
      board_write(line, static_cast<size_t>(n));
    }
    put_line("]");
  }
  for (size_t i = 0; i < g_profiler->count(); ++i) {
    char num[21];
    snprintf(line, sizeof line, "selftest-op-[%u,%s,%s]", static_cast<unsigned>(i), g_profiler->name(i),
             u64_str(g_profiler->ticks(i), num));
    put_line(line);
    const trec_reuse_stats* r = g_profiler->reuse(i);
    if (r != nullptr) {
      snprintf(line, sizeof line, "selftest-rc-[%u,%ld,%ld,%ld,%ld]", static_cast<unsigned>(i),
               static_cast<long>(r->clusters), static_cast<long>(r->rows),
               static_cast<long>(r->sub_matrices), static_cast<long>(r->passes));
      put_line(line);
    }
  }
  snprintf(line, sizeof line, "selftest-arena-[%u,%u]", static_cast<unsigned>(trec_app_arena_used()),
           static_cast<unsigned>(g_trec_app_arena_size));
  put_line(line);
  char num[21];
  snprintf(line, sizeof line, "selftest-ticks-[%s,%s]", u64_str(total, num), board_tick_unit());
  put_line(line);
  put_line("selftest-done");
  return 0;
}

int main(void) {
  board_init();
  const int rc = trec_app_setup();
  if (rc != 0) {
    board_exit(rc);
  }
  if (g_trec_app_selftest_mode) {
    board_exit(trec_app_selftest());
  }
  board_exit(ee_protocol_run());
}
