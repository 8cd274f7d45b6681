/*
 * trec-tflm: runs the TREC_CONV_2D TFLM kernel once under TFLM's KernelRunner (host build), on a
 * case described in a binary file written by tests/test_tflm_kernel.py:
 *
 *   trec_conv_kernel_runner CASE_FILE OUTPUT_FILE
 *
 * Case file (little-endian): "TRK1", then int32 dims: input[4], filter[4], output[4], hash[2],
 * has_bias; float32 input scale, int32 input zero point; int32 C, float32 filter scales[C],
 * int32 filter zero points[C]; float32 output scale, int32 output zero point; int32 hash_quantized
 * (0/1), float32 hash scale, int32 hash zero point; int32 options length, options bytes; input
 * int8 data, filter int8 data, bias int32 data (when has_bias), hash int8 data; optionally int32
 * variable_mask (bit i set: input i is given as an activation, not a constant).
 *
 * Prints "prepare <ok|error>", "invoke <ok|error>" and "stats rows=.. sub_matrices=.. clusters=..
 * passes=.. chunk=.. plan=.. scatter_tenths=.." on stdout; MicroPrintf messages go to stderr. The output tensor is written to
 * OUTPUT_FILE after a successful invoke. Exit code 0 when the run got as far as the case allows
 * (the Python test judges the lines), 2 for a malformed case file.
 */
#include <cstdio>
#include <cstring>
#include <vector>

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/kernels/kernel_runner.h"
#include "tensorflow/lite/micro/test_helpers.h"
#include "trec_conv.h"

namespace {

// KernelRunner keeps its node private: the registration's invoke is wrapped to ask the node for
// its statistics right after it ran (what a profiler does in an application).
TFLMRegistration g_trec_registration;
trec_reuse_stats g_stats = {0, 0, 0, 0, 0, 0, 0};

TfLiteStatus InvokeAndAskStats(TfLiteContext* context, TfLiteNode* node) {
  const TfLiteStatus status = g_trec_registration.invoke(context, node);
  const trec_reuse_stats* s = tflite::TrecConv2DReuseStats(g_trec_registration, *node);
  if (s != nullptr) g_stats = *s;
  return status;
}

struct Reader {
  std::vector<unsigned char> buf;
  size_t pos = 0;
  bool ok = true;
  bool Read(void* dst, size_t n) {
    if (!ok || pos + n > buf.size()) {
      ok = false;
      return false;
    }
    std::memcpy(dst, buf.data() + pos, n);
    pos += n;
    return true;
  }
  int32_t I32() {
    int32_t v = 0;
    Read(&v, 4);
    return v;
  }
  float F32() {
    float v = 0;
    Read(&v, 4);
    return v;
  }
};

int Count(const int* d, int n) {
  int c = 1;
  for (int i = 0; i < n; ++i) c *= d[i];
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s CASE_FILE OUTPUT_FILE\n", argv[0]);
    return 2;
  }
  Reader r;
  {
    FILE* f = std::fopen(argv[1], "rb");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot open %s\n", argv[1]);
      return 2;
    }
    unsigned char chunk[4096];
    size_t n;
    while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) r.buf.insert(r.buf.end(), chunk, chunk + n);
    std::fclose(f);
  }
  char magic[4];
  if (!r.Read(magic, 4) || std::memcmp(magic, "TRK1", 4) != 0) {
    std::fprintf(stderr, "not a TRK1 case file\n");
    return 2;
  }
  // TFLM's test helpers take dims as {rank, d0, d1, ...}.
  int in_dims[5] = {4}, f_dims[5] = {4}, out_dims[5] = {4}, h_dims[3] = {2}, b_dims[2] = {1};
  for (int i = 1; i <= 4; ++i) in_dims[i] = r.I32();
  for (int i = 1; i <= 4; ++i) f_dims[i] = r.I32();
  for (int i = 1; i <= 4; ++i) out_dims[i] = r.I32();
  for (int i = 1; i <= 2; ++i) h_dims[i] = r.I32();
  const int has_bias = r.I32();
  const float in_scale = r.F32();
  const int in_zp = r.I32();
  const int channels = r.I32();
  if (!r.ok || channels < 1 || channels > 4096) {
    std::fprintf(stderr, "malformed case file (header)\n");
    return 2;
  }
  std::vector<float> f_scales(channels + 1);
  std::vector<int> f_zps(channels + 1);
  f_scales[0] = static_cast<float>(channels);
  f_zps[0] = channels;
  for (int i = 0; i < channels; ++i) f_scales[i + 1] = r.F32();
  for (int i = 0; i < channels; ++i) f_zps[i + 1] = r.I32();
  const float out_scale = r.F32();
  const int out_zp = r.I32();
  const int hash_quantized = r.I32();
  const float hash_scale = r.F32();
  const int hash_zp = r.I32();
  const int opt_len = r.I32();
  if (!r.ok || opt_len < 0 || opt_len > (1 << 20)) {
    std::fprintf(stderr, "malformed case file (options)\n");
    return 2;
  }
  std::vector<char> options(opt_len > 0 ? opt_len : 1);
  r.Read(options.data(), opt_len);
  std::vector<int8_t> input(Count(in_dims + 1, 4)), filter(Count(f_dims + 1, 4)),
      output(Count(out_dims + 1, 4)), hash(Count(h_dims + 1, 2));
  b_dims[1] = f_dims[1];
  std::vector<int32_t> bias(f_dims[1]);
  r.Read(input.data(), input.size());
  r.Read(filter.data(), filter.size());
  if (has_bias) r.Read(bias.data(), bias.size() * 4);
  r.Read(hash.data(), hash.size());
  if (!r.ok) {
    std::fprintf(stderr, "malformed case file (data)\n");
    return 2;
  }
  // Optional trailer: a bit mask of the inputs (1 filter, 2 bias, 3 hash) to give as activations
  // instead of constants, for the tests of Prepare's constant-tensor rule.
  int variable_mask = 0;
  if (r.pos + 4 <= r.buf.size()) variable_mask = r.I32();

  using namespace tflite::testing;
  TfLiteAffineQuantization f_quant;
  TfLiteTensor tensors[5];
  tensors[0] = CreateQuantizedTensor(input.data(), IntArrayFromInts(in_dims), in_scale, in_zp);
  tensors[1] = CreatePerChannelQuantizedTensor(filter.data(), IntArrayFromInts(f_dims),
                                               FloatArrayFromFloats(f_scales.data()),
                                               IntArrayFromInts(f_zps.data()), &f_quant, 0);
  tensors[2] = CreateQuantizedTensor(bias.data(), IntArrayFromInts(b_dims), in_scale * f_scales[1], 0);
  float h_scale_arr[2] = {1.0f, hash_scale};
  int h_zp_arr[2] = {1, hash_zp};
  TfLiteAffineQuantization h_quant;
  if (hash_quantized) {
    tensors[3] = CreatePerChannelQuantizedTensor(hash.data(), IntArrayFromInts(h_dims),
                                                 FloatArrayFromFloats(h_scale_arr),
                                                 IntArrayFromInts(h_zp_arr), &h_quant, 0);
  } else {
    tensors[3] = CreateTensor(hash.data(), IntArrayFromInts(h_dims));
  }
  tensors[4] = CreateQuantizedTensor(output.data(), IntArrayFromInts(out_dims), out_scale, out_zp);
  // The interpreter marks flatbuffer-backed tensors kTfLiteMmapRo; the test helpers do not.
  for (int i = 1; i <= 3; ++i) {
    tensors[i].allocation_type = (variable_mask >> i) & 1 ? kTfLiteArenaRw : kTfLiteMmapRo;
  }

  int inputs_arr[5] = {4, 0, 1, has_bias ? 2 : -1, 3};
  int outputs_arr[2] = {1, 4};
  g_trec_registration = tflite::Register_TREC_CONV_2D();
  TFLMRegistration registration = g_trec_registration;
  registration.invoke = InvokeAndAskStats;
  tflite::micro::KernelRunner runner(registration, tensors, 5, IntArrayFromInts(inputs_arr),
                                     IntArrayFromInts(outputs_arr), nullptr);
  const TfLiteStatus prep = runner.InitAndPrepare(opt_len > 0 ? options.data() : nullptr,
                                                  static_cast<size_t>(opt_len));
  std::printf("prepare %s\n", prep == kTfLiteOk ? "ok" : "error");
  if (prep != kTfLiteOk) return 0;
  const TfLiteStatus inv = runner.Invoke();
  std::printf("invoke %s\n", inv == kTfLiteOk ? "ok" : "error");
  if (inv != kTfLiteOk) return 0;
  const trec_reuse_stats* s = &g_stats;
  std::printf("stats rows=%d sub_matrices=%d clusters=%d passes=%d chunk=%d plan=%d scatter_tenths=%d\n",
              static_cast<int>(s->rows), static_cast<int>(s->sub_matrices), static_cast<int>(s->clusters),
              static_cast<int>(s->passes), static_cast<int>(s->chunk), static_cast<int>(s->plan),
              static_cast<int>(s->scatter_tenths));
  std::printf("temp_deallocated %d\n", runner.ValidateTempBufferDeallocated() ? 1 : 0);
  FILE* o = std::fopen(argv[2], "wb");
  if (o == nullptr || std::fwrite(output.data(), 1, output.size(), o) != output.size()) {
    std::fprintf(stderr, "cannot write %s\n", argv[2]);
    return 2;
  }
  std::fclose(o);
  return 0;
}
