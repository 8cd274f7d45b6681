/*
 * trec-tflm: TensorFlow Lite Micro kernel for TREC_CONV_2D (see trec_conv.h, docs/OP_SPEC.md,
 * docs/TFLM.md). Written in the style of TFLM's kernels (cmsis_nn/conv.cc for the convolution
 * parts, detection_postprocess.cc for the flexbuffer options); the arithmetic is in
 * trec_convolve_s8() (tflm_ops/src/trec_convolve_s8.c).
 */
#include "trec_conv.h"

#include <cstdint>
#include <cstring>

#include "flatbuffers/flexbuffers.h"
#include "tensorflow/lite/c/builtin_op_data.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/internal/quantization_util.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/kernels/padding.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace tflite {
namespace {

constexpr int kInputTensor = 0;
constexpr int kFilterTensor = 1;
constexpr int kBiasTensor = 2;
constexpr int kHashTensor = 3;
constexpr int kOutputTensor = 0;

// TF_LITE_ENSURE with a formatted message that names the operator (MicroPrintf through the
// context's error reporter; compiled out with TF_LITE_STRIP_ERROR_STRINGS like TFLM's own).
#define TREC_ENSURE(context, cond, ...)                              \
  do {                                                               \
    if (!(cond)) {                                                   \
      TF_LITE_KERNEL_LOG((context), "TREC_CONV_2D: " __VA_ARGS__);  \
      return kTfLiteError;                                           \
    }                                                                \
  } while (0)

const char* TypeName(flexbuffers::Type t) {
  switch (t) {
    case flexbuffers::FBT_NULL:
      return "null";
    case flexbuffers::FBT_INT:
    case flexbuffers::FBT_INDIRECT_INT:
      return "int";
    case flexbuffers::FBT_UINT:
    case flexbuffers::FBT_INDIRECT_UINT:
      return "uint";
    case flexbuffers::FBT_FLOAT:
    case flexbuffers::FBT_INDIRECT_FLOAT:
      return "float";
    case flexbuffers::FBT_BOOL:
      return "bool";
    case flexbuffers::FBT_KEY:
      return "key";
    case flexbuffers::FBT_STRING:
      return "string";
    case flexbuffers::FBT_MAP:
      return "map";
    case flexbuffers::FBT_BLOB:
      return "blob";
    default:
      return "vector";
  }
}

// An int option: present, of int type (signed or unsigned), within [lo, hi].
bool GetIntOption(const flexbuffers::Map& m, const char* key, int64_t lo, int64_t hi,
                  int32_t* out) {
  const flexbuffers::Reference r = m[key];
  if (r.IsNull()) {
    MicroPrintf("TREC_CONV_2D: custom option '%s' is missing (docs/OP_SPEC.md lists the keys)",
                key);
    return false;
  }
  if (!r.IsIntOrUint()) {
    MicroPrintf("TREC_CONV_2D: custom option '%s' must be an int, got a %s", key,
                TypeName(r.GetType()));
    return false;
  }
  int64_t v;
  if (r.IsUInt()) {
    const uint64_t u = r.AsUInt64();
    v = u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(u);
  } else {
    v = r.AsInt64();
  }
  if (v < lo || v > hi) {
    MicroPrintf("TREC_CONV_2D: custom option '%s' = %ld is outside [%ld, %ld]", key,
                static_cast<long>(v), static_cast<long>(lo), static_cast<long>(hi));
    return false;
  }
  *out = static_cast<int32_t>(v);
  return true;
}

// A string option that must be one of `choices` (nullptr-terminated); *out = its index.
bool GetEnumOption(const flexbuffers::Map& m, const char* key, const char* const* choices,
                   const char* choices_text, int* out) {
  const flexbuffers::Reference r = m[key];
  if (r.IsNull()) {
    MicroPrintf("TREC_CONV_2D: custom option '%s' is missing (docs/OP_SPEC.md lists the keys)",
                key);
    return false;
  }
  if (!r.IsString()) {
    MicroPrintf("TREC_CONV_2D: custom option '%s' must be a string (%s), got a %s", key,
                choices_text, TypeName(r.GetType()));
    return false;
  }
  const flexbuffers::String s = r.AsString();
  for (int i = 0; choices[i] != nullptr; ++i) {
    if (std::strlen(choices[i]) == s.length() &&
        std::memcmp(choices[i], s.c_str(), s.length()) == 0) {
      *out = i;
      return true;
    }
  }
  MicroPrintf("TREC_CONV_2D: custom option '%s' = \"%s\" is not one of %s", key, s.c_str(),
              choices_text);
  return false;
}

}  // namespace

TfLiteStatus ParseTrecConv2DOptions(const uint8_t* buffer, size_t length,
                                    TrecConv2DOptions* options) {
  if (buffer == nullptr || length == 0) {
    MicroPrintf(
        "TREC_CONV_2D: the operator has no custom options (expected a flexbuffer map with "
        "version, sub_vector_length, hash_bits, ...; see docs/OP_SPEC.md)");
    return kTfLiteError;
  }
  if (!flexbuffers::VerifyBuffer(buffer, length)) {
    MicroPrintf("TREC_CONV_2D: the custom options (%u bytes) are not a valid flexbuffer",
                static_cast<unsigned>(length));
    return kTfLiteError;
  }
  const flexbuffers::Reference root = flexbuffers::GetRoot(buffer, length);
  if (!root.IsMap()) {
    MicroPrintf("TREC_CONV_2D: the custom options must be a flexbuffer map, got a %s",
                TypeName(root.GetType()));
    return kTfLiteError;
  }
  const flexbuffers::Map m = root.AsMap();

  TrecConv2DOptions o;
  // The version first: another version may have other keys.
  if (!GetIntOption(m, "version", INT32_MIN, INT32_MAX, &o.version)) return kTfLiteError;
  if (o.version != kTrecConv2DVersion) {
    MicroPrintf("TREC_CONV_2D: unknown TREC_CONV_2D version %d; this build supports %d",
                static_cast<int>(o.version), kTrecConv2DVersion);
    return kTfLiteError;
  }
  if (!GetIntOption(m, "sub_vector_length", 1, INT32_MAX, &o.sub_vector_length) ||
      !GetIntOption(m, "hash_bits", 1, TREC_MAX_HASH_BITS, &o.hash_bits) ||
      !GetIntOption(m, "stride_h", 1, INT32_MAX, &o.stride_h) ||
      !GetIntOption(m, "stride_w", 1, INT32_MAX, &o.stride_w) ||
      !GetIntOption(m, "dilation_h", 1, INT32_MAX, &o.dilation_h) ||
      !GetIntOption(m, "dilation_w", 1, INT32_MAX, &o.dilation_w)) {
    return kTfLiteError;
  }

  static const char* const kCenters[] = {"none", "mean", nullptr};  // = trec_hash_center
  static const char* const kPaddings[] = {"SAME", "VALID", nullptr};
  static const char* const kActivations[] = {"NONE", "RELU", "RELU6", "RELU_N1_TO_1", nullptr};
  int center, padding, activation;
  if (!GetEnumOption(m, "hash_center", kCenters, "\"mean\" or \"none\"", &center) ||
      !GetEnumOption(m, "padding", kPaddings, "\"SAME\" or \"VALID\"", &padding) ||
      !GetEnumOption(m, "activation", kActivations,
                     "\"NONE\", \"RELU\", \"RELU6\" or \"RELU_N1_TO_1\"", &activation)) {
    return kTfLiteError;
  }
  o.hash_center = center == 0 ? TREC_HASH_CENTER_NONE : TREC_HASH_CENTER_MEAN;
  o.padding = padding == 0 ? kTfLitePaddingSame : kTfLitePaddingValid;
  static const TfLiteFusedActivation kActs[] = {kTfLiteActNone, kTfLiteActRelu, kTfLiteActRelu6,
                                                kTfLiteActReluN1To1};
  o.activation = kActs[activation];
  // Optional (version 1): a per-op scratch cap; absent means the fast plan's size.
  o.scratch_budget = 0;
  if (!m["scratch_budget"].IsNull() &&
      !GetIntOption(m, "scratch_budget", 1, INT32_MAX, &o.scratch_budget)) {
    return kTfLiteError;
  }
  *options = o;
  return kTfLiteOk;
}

namespace {

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  TFLITE_DCHECK(context->AllocatePersistentBuffer != nullptr);
  TrecConv2DOptions options;
  if (ParseTrecConv2DOptions(reinterpret_cast<const uint8_t*>(buffer), length, &options) !=
      kTfLiteOk) {
    return nullptr;  // Prepare reports that the node cannot run
  }
  void* raw = context->AllocatePersistentBuffer(context, sizeof(OpDataTrecConv2D));
  if (raw == nullptr) {
    MicroPrintf("TREC_CONV_2D: no arena memory for the operator data (%u bytes)",
                static_cast<unsigned>(sizeof(OpDataTrecConv2D)));
    return nullptr;
  }
  OpDataTrecConv2D* data = static_cast<OpDataTrecConv2D*>(raw);
  std::memset(data, 0, sizeof(*data));
  data->options = options;
  data->scratch_index = -1;
  return data;
}

// The tensor's per-tensor affine quantization, or nullptr.
const TfLiteAffineQuantization* Affine(const TfLiteTensor* t) {
  if (t->quantization.type != kTfLiteAffineQuantization) return nullptr;
  const auto* q = static_cast<const TfLiteAffineQuantization*>(t->quantization.params);
  if (q == nullptr || q->scale == nullptr || q->zero_point == nullptr) return nullptr;
  return q;
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  TREC_ENSURE(context, node->user_data != nullptr,
              "the operator's custom options were refused (see the message above)");
  OpDataTrecConv2D* data = static_cast<OpDataTrecConv2D*>(node->user_data);
  const TrecConv2DOptions& opt = data->options;

  TREC_ENSURE(context, node->inputs->size == 4,
              "expected 4 inputs (input, filter, bias or -1, hash), got %d", node->inputs->size);
  TREC_ENSURE(context, node->outputs->size == 1, "expected 1 output, got %d",
              node->outputs->size);

  MicroContext* micro_context = GetMicroContext(context);
  TfLiteTensor* input = micro_context->AllocateTempInputTensor(node, kInputTensor);
  TREC_ENSURE(context, input != nullptr, "input 0 (input) is missing");
  TfLiteTensor* filter = micro_context->AllocateTempInputTensor(node, kFilterTensor);
  TREC_ENSURE(context, filter != nullptr, "input 1 (filter) is missing");
  TfLiteTensor* bias = micro_context->AllocateTempInputTensor(node, kBiasTensor);  // optional
  TfLiteTensor* hash = micro_context->AllocateTempInputTensor(node, kHashTensor);
  TREC_ENSURE(context, hash != nullptr, "input 3 (hash) is missing");
  TfLiteTensor* output = micro_context->AllocateTempOutputTensor(node, kOutputTensor);
  TREC_ENSURE(context, output != nullptr, "output 0 is missing");

  // Types: int8 / int8 / int32 / int8 -> int8 (TFLite's int8 convolution spec).
  TREC_ENSURE(context, input->type == kTfLiteInt8, "input must be int8, got %s",
              TfLiteTypeGetName(input->type));
  TREC_ENSURE(context, filter->type == kTfLiteInt8, "filter must be int8, got %s",
              TfLiteTypeGetName(filter->type));
  TREC_ENSURE(context, bias == nullptr || bias->type == kTfLiteInt32,
              "bias must be int32, got %s", TfLiteTypeGetName(bias->type));
  TREC_ENSURE(context, hash->type == kTfLiteInt8, "hash must be int8, got %s",
              TfLiteTypeGetName(hash->type));
  TREC_ENSURE(context, output->type == kTfLiteInt8, "output must be int8, got %s",
              TfLiteTypeGetName(output->type));

  // Shapes.
  TREC_ENSURE(context, NumDimensions(input) == 4, "input must be 4-D [1,H,W,Cin], got %d-D",
              NumDimensions(input));
  TREC_ENSURE(context, NumDimensions(filter) == 4,
              "filter must be 4-D [Cout,kh,kw,Cin], got %d-D", NumDimensions(filter));
  TREC_ENSURE(context, NumDimensions(output) == 4, "output must be 4-D [1,Ho,Wo,Cout], got %d-D",
              NumDimensions(output));
  TREC_ENSURE(context, NumDimensions(hash) == 2, "hash must be 2-D [L,H], got %d-D",
              NumDimensions(hash));
  const int batch = input->dims->data[0];
  const int in_h = input->dims->data[1];
  const int in_w = input->dims->data[2];
  const int cin = input->dims->data[3];
  const int cout = filter->dims->data[0];
  const int kh = filter->dims->data[1];
  const int kw = filter->dims->data[2];
  TREC_ENSURE(context, batch == 1, "batch must be 1 (TREC clusters within one image), got %d",
              batch);
  TREC_ENSURE(context, in_h > 0 && in_w > 0 && cin > 0 && cout > 0 && kh > 0 && kw > 0,
              "empty input or filter");
  TREC_ENSURE(context, filter->dims->data[3] == cin,
              "filter has %d input channels, the input %d (grouped convolution is not supported)",
              filter->dims->data[3], cin);
  const int64_t k = static_cast<int64_t>(kh) * kw * cin;
  TREC_ENSURE(context, hash->dims->data[0] == opt.sub_vector_length &&
                           hash->dims->data[1] == opt.hash_bits,
              "hash tensor is [%d, %d], the options say L=%d, H=%d", hash->dims->data[0],
              hash->dims->data[1], static_cast<int>(opt.sub_vector_length),
              static_cast<int>(opt.hash_bits));
  TREC_ENSURE(context, opt.sub_vector_length <= k,
              "sub_vector_length L=%d exceeds K = kh*kw*Cin = %d", static_cast<int>(opt.sub_vector_length),
              static_cast<int>(k));
  if (bias != nullptr) {
    TREC_ENSURE(context, NumDimensions(bias) == 1 && NumElements(bias) == cout,
                "bias must be [Cout] = [%d], got %d elements", cout,
                static_cast<int>(NumElements(bias)));
  }
  // Constant filter, hash and bias (docs/OP_SPEC.md): the kernel reads them as weights. (Their
  // buffer lengths are not visible here: TFLM sizes a tensor from its shape; the host validator,
  // trec_tflm.validate, refuses short buffers before a model is deployed.)
  TREC_ENSURE(context, IsConstantTensor(filter), "the filter must be a constant tensor");
  TREC_ENSURE(context, IsConstantTensor(hash), "the hash must be a constant tensor");
  TREC_ENSURE(context, bias == nullptr || IsConstantTensor(bias), "the bias must be a constant tensor");

  // Geometry without int32 overflow in ComputePaddingHeightWidth: the dilated filter, in + stride
  // - 1 (SAME) and the total padding must all fit.
  const int64_t eff_h = static_cast<int64_t>(kh - 1) * opt.dilation_h + 1;
  const int64_t eff_w = static_cast<int64_t>(kw - 1) * opt.dilation_w + 1;
  TREC_ENSURE(context, eff_h <= INT32_MAX && eff_w <= INT32_MAX,
              "the dilated %dx%d filter (dilation %d,%d) spans beyond int32", kh, kw,
              static_cast<int>(opt.dilation_h), static_cast<int>(opt.dilation_w));
  TREC_ENSURE(context,
              static_cast<int64_t>(in_h) + opt.stride_h - 1 <= INT32_MAX &&
                  static_cast<int64_t>(in_w) + opt.stride_w - 1 <= INT32_MAX,
              "stride %d,%d overflows int32 with the %dx%d input", static_cast<int>(opt.stride_h),
              static_cast<int>(opt.stride_w), in_h, in_w);
  {
    const int64_t oh = opt.padding == kTfLitePaddingSame
                           ? (static_cast<int64_t>(in_h) + opt.stride_h - 1) / opt.stride_h
                           : (in_h >= eff_h ? (in_h - eff_h + opt.stride_h) / opt.stride_h : 0);
    const int64_t ow = opt.padding == kTfLitePaddingSame
                           ? (static_cast<int64_t>(in_w) + opt.stride_w - 1) / opt.stride_w
                           : (in_w >= eff_w ? (in_w - eff_w + opt.stride_w) / opt.stride_w : 0);
    TREC_ENSURE(context,
                (oh < 1 || (oh - 1) * opt.stride_h + eff_h - in_h <= INT32_MAX) &&
                    (ow < 1 || (ow - 1) * opt.stride_w + eff_w - in_w <= INT32_MAX),
                "the padding overflows int32 (dilation %d,%d, stride %d,%d)",
                static_cast<int>(opt.dilation_h), static_cast<int>(opt.dilation_w),
                static_cast<int>(opt.stride_h), static_cast<int>(opt.stride_w));
  }

  int out_h = 0, out_w = 0;
  const TfLitePaddingValues pad = ComputePaddingHeightWidth(
      opt.stride_h, opt.stride_w, opt.dilation_h, opt.dilation_w, in_h, in_w, kh, kw, opt.padding,
      &out_h, &out_w);
  TREC_ENSURE(context, out_h > 0 && out_w > 0,
              "the %dx%d filter (dilation %d,%d) does not fit the %dx%d input", kh, kw,
              static_cast<int>(opt.dilation_h), static_cast<int>(opt.dilation_w), in_h, in_w);
  TREC_ENSURE(context, output->dims->data[0] == 1 && output->dims->data[1] == out_h &&
                           output->dims->data[2] == out_w && output->dims->data[3] == cout,
              "output is [%d,%d,%d,%d], the options give [1,%d,%d,%d]", output->dims->data[0],
              output->dims->data[1], output->dims->data[2], output->dims->data[3], out_h, out_w,
              cout);

  // Quantization: input/output per-tensor, filter per-channel (or per-tensor) symmetric.
  // (TFLM's own kernel tests give input/output affine quantization without a params array: the
  // per-tensor scale and zero point are in tensor->params.)
  const TfLiteAffineQuantization* in_q = Affine(input);
  const TfLiteAffineQuantization* f_q = Affine(filter);
  const TfLiteAffineQuantization* out_q = Affine(output);
  TREC_ENSURE(context, input->quantization.type == kTfLiteAffineQuantization &&
                           (in_q == nullptr || in_q->scale->size == 1),
              "input needs per-tensor affine quantization");
  TREC_ENSURE(context, output->quantization.type == kTfLiteAffineQuantization &&
                           (out_q == nullptr || out_q->scale->size == 1),
              "output needs per-tensor affine quantization");
  TREC_ENSURE(context, f_q != nullptr, "filter needs affine (per-channel) quantization");
  TREC_ENSURE(context, f_q->scale->size == cout,
              "filter has %d scales for %d output channels (one per channel)", f_q->scale->size,
              cout);
  TREC_ENSURE(context, cout == 1 || f_q->quantized_dimension == 0,
              "filter must be quantized along dimension 0, got %d", f_q->quantized_dimension);
  TREC_ENSURE(context, f_q->zero_point->size == f_q->scale->size,
              "filter has %d scales and %d zero points", f_q->scale->size, f_q->zero_point->size);
  for (int i = 0; i < f_q->zero_point->size; ++i) {
    TREC_ENSURE(context, f_q->zero_point->data[i] == 0,
                "filter zero point %d of channel %d must be 0 (symmetric)",
                f_q->zero_point->data[i], i);
  }
  // `!(x > 0) || !(x <= FLT_MAX)` also catches NaN, which compares false with everything.
  const float in_scale = input->params.scale, out_scale = output->params.scale;
  TREC_ENSURE(context, in_scale > 0.0f && in_scale <= 3.402823466e38f,
              "the input scale must be finite and > 0, got %g", static_cast<double>(in_scale));
  TREC_ENSURE(context, out_scale > 0.0f && out_scale <= 3.402823466e38f,
              "the output scale must be finite and > 0, got %g", static_cast<double>(out_scale));
  TREC_ENSURE(context, input->params.zero_point >= -128 && input->params.zero_point <= 127,
              "the input zero point %d is outside [-128, 127]",
              static_cast<int>(input->params.zero_point));
  TREC_ENSURE(context, output->params.zero_point >= -128 && output->params.zero_point <= 127,
              "the output zero point %d is outside [-128, 127]",
              static_cast<int>(output->params.zero_point));
  for (int c = 0; c < cout; ++c) {
    const float fs = f_q->scale->data[c];
    TREC_ENSURE(context, fs > 0.0f && fs <= 3.402823466e38f,
                "filter scale %g of channel %d must be finite and > 0", static_cast<double>(fs), c);
    // TFLM derives the multiplier in double; its shift must stay within [-31, 30].
    const double eff = static_cast<double>(in_scale) * static_cast<double>(fs) /
                       static_cast<double>(out_scale);
    TREC_ENSURE(context, eff < 1073741824.0,
                "the requantization scale of channel %d (%g) is too large for int32 "
                "requantization", c, eff);
  }
  const TfLiteAffineQuantization* b_q = bias != nullptr ? Affine(bias) : nullptr;
  if (b_q != nullptr) {
    for (int i = 0; i < b_q->zero_point->size; ++i) {
      TREC_ENSURE(context, b_q->zero_point->data[i] == 0, "bias zero point must be 0, got %d",
                  b_q->zero_point->data[i]);
    }
  }
  const TfLiteAffineQuantization* h_q = Affine(hash);
  if (h_q != nullptr) {
    for (int i = 0; i < h_q->zero_point->size; ++i) {
      TREC_ENSURE(context, h_q->zero_point->data[i] == 0, "hash zero point must be 0, got %d",
                  h_q->zero_point->data[i]);
    }
  }
#ifdef USE_TFLM_COMPRESSION
  for (int i = 0; i < 4; ++i) {
    TREC_ENSURE(context, !micro_context->IsTensorCompressed(node, i),
                "input %d is compressed; TREC_CONV_2D reads uncompressed tensors only", i);
  }
#endif

  // Per-channel multiplier/shift and the activation clamp, as TFLM's CONV_2D computes them.
  data->per_channel_multiplier = static_cast<int32_t*>(
      context->AllocatePersistentBuffer(context, cout * sizeof(int32_t)));
  data->per_channel_shift = static_cast<int32_t*>(
      context->AllocatePersistentBuffer(context, cout * sizeof(int32_t)));
  TREC_ENSURE(context,
              data->per_channel_multiplier != nullptr && data->per_channel_shift != nullptr,
              "no arena memory for %d per-channel multipliers", cout);
  int32_t unused_multiplier = 0;
  int unused_shift = 0;
  int32_t act_min = 0, act_max = 0;
  TF_LITE_ENSURE_STATUS(PopulateConvolutionQuantizationParams(
      context, input, filter, bias, output, opt.activation, &unused_multiplier, &unused_shift,
      &act_min, &act_max, data->per_channel_multiplier, data->per_channel_shift, cout));

  trec_conv_params& cp = data->conv_params;
  cp.input_offset = -input->params.zero_point;
  cp.output_offset = output->params.zero_point;
  cp.stride.h = opt.stride_h;
  cp.stride.w = opt.stride_w;
  cp.dilation.h = opt.dilation_h;
  cp.dilation.w = opt.dilation_w;
  cp.padding.h = pad.height;
  cp.padding.w = pad.width;
  cp.activation.min = act_min;
  cp.activation.max = act_max;
  data->hash_params.sub_vector_length = opt.sub_vector_length;
  data->hash_params.hash_bits = opt.hash_bits;
  data->hash_params.hash_center = opt.hash_center;

  // Scratch: the preferred plan's size, or the op's scratch_budget when it has one (refused below
  // the kernel's minimum: the model asked for a plan that cannot run; above the preferred size it
  // buys faster plans, up to the most any plan uses), capped by the compile-time budget (clamped
  // to the minimum: a build-wide default).
  const trec_dims in_dims = {batch, in_h, in_w, cin};
  const trec_dims f_dims = {cout, kh, kw, cin};
  const trec_dims out_dims = {1, out_h, out_w, cout};
  const int32_t fast = trec_convolve_s8_get_buffer_size(&cp, &data->hash_params, &in_dims,
                                                        &f_dims, &out_dims);
  const int32_t least = trec_convolve_s8_get_min_buffer_size(&cp, &data->hash_params, &in_dims,
                                                             &f_dims, &out_dims);
  const int32_t most = trec_convolve_s8_get_max_buffer_size(&cp, &data->hash_params, &in_dims,
                                                            &f_dims, &out_dims);
  TREC_ENSURE(context, fast >= 0 && least >= 0,
              "the kernel refuses this layer (status %d: %s)", static_cast<int>(fast < 0 ? fast : least),
              (fast < 0 ? fast : least) == TREC_NO_IMPL_ERROR ? "too large for this build"
                                                               : "invalid parameters");
  int32_t bytes = fast;
  if (opt.scratch_budget > 0) {
    TREC_ENSURE(context, opt.scratch_budget >= least,
                "custom option 'scratch_budget' = %d bytes is below this layer's minimum scratch "
                "of %d bytes (trec_convolve_s8_get_min_buffer_size); raise it to at least %d or "
                "drop the key",
                static_cast<int>(opt.scratch_budget), static_cast<int>(least),
                static_cast<int>(least));
    // most < 0: more than INT32_MAX bytes (TREC_NO_IMPL_ERROR), no cap below the budget
    bytes = most >= 0 && most < opt.scratch_budget ? most : opt.scratch_budget;
  }
#ifdef TREC_SCRATCH_BUDGET
  if (bytes > static_cast<int32_t>(TREC_SCRATCH_BUDGET)) {
    bytes = static_cast<int32_t>(TREC_SCRATCH_BUDGET);
  }
  if (bytes < least) bytes = least;
#endif
  data->scratch_fast_bytes = fast;
  data->scratch_min_bytes = least;
  data->scratch_bytes = bytes;
  data->scratch_index = -1;
  if (bytes > 0) {
    TF_LITE_ENSURE_STATUS(
        context->RequestScratchBufferInArena(context, bytes, &data->scratch_index));
  }

  micro_context->DeallocateTempTfLiteTensor(input);
  micro_context->DeallocateTempTfLiteTensor(filter);
  if (bias != nullptr) micro_context->DeallocateTempTfLiteTensor(bias);
  micro_context->DeallocateTempTfLiteTensor(hash);
  micro_context->DeallocateTempTfLiteTensor(output);
  return kTfLiteOk;
}

const char* StatusName(trec_status s) {
  switch (s) {
    case TREC_SUCCESS:
      return "TREC_SUCCESS";
    case TREC_ARG_ERROR:
      return "TREC_ARG_ERROR (an argument out of range)";
    case TREC_NO_IMPL_ERROR:
      return "TREC_NO_IMPL_ERROR (not implemented in this build)";
    case TREC_BUFFER_ERROR:
      return "TREC_BUFFER_ERROR (scratch below the kernel's minimum)";
  }
  return "unknown status";
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  TF_LITE_ENSURE(context, node->user_data != nullptr);
  OpDataTrecConv2D* data = static_cast<OpDataTrecConv2D*>(node->user_data);
  // a failed evaluation leaves no statistics (TrecConv2DReuseStats answers nullptr)
  data->last_stats.rows = 0;

  const TfLiteEvalTensor* input = micro::GetEvalInput(context, node, kInputTensor);
  const TfLiteEvalTensor* filter = micro::GetEvalInput(context, node, kFilterTensor);
  const TfLiteEvalTensor* bias = micro::GetEvalInput(context, node, kBiasTensor);
  const TfLiteEvalTensor* hash = micro::GetEvalInput(context, node, kHashTensor);
  TfLiteEvalTensor* output = micro::GetEvalOutput(context, node, kOutputTensor);
  // Prepare checked these; Eval relies on them, so it says so
  TF_LITE_ENSURE(context,
                 input != nullptr && filter != nullptr && hash != nullptr && output != nullptr);
  TF_LITE_ENSURE(context,
                 input->dims->size == 4 && filter->dims->size == 4 && output->dims->size == 4);

  const trec_dims in_dims = {input->dims->data[0], input->dims->data[1], input->dims->data[2],
                             input->dims->data[3]};
  const trec_dims f_dims = {filter->dims->data[0], filter->dims->data[1], filter->dims->data[2],
                            filter->dims->data[3]};
  const trec_dims out_dims = {output->dims->data[0], output->dims->data[1], output->dims->data[2],
                              output->dims->data[3]};
  const trec_dims b_dims = {1, 1, 1, f_dims.n};

  trec_context ctx;
  ctx.buf = data->scratch_index >= 0 ? context->GetScratchBuffer(context, data->scratch_index)
                                     : nullptr;
  TF_LITE_ENSURE(context, data->scratch_index < 0 || ctx.buf != nullptr);
  ctx.size = data->scratch_bytes;
  trec_per_channel_quant_params quant;
  quant.multiplier = data->per_channel_multiplier;
  quant.shift = data->per_channel_shift;

  trec_reuse_stats stats;
  const trec_status status = trec_convolve_s8(
      &ctx, &data->conv_params, &data->hash_params, &quant, &in_dims,
      micro::GetTensorData<int8_t>(input), &f_dims, micro::GetTensorData<int8_t>(filter),
      micro::GetTensorData<int8_t>(hash), bias != nullptr ? &b_dims : nullptr,
      micro::GetOptionalTensorData<int32_t>(bias), &out_dims,
      micro::GetTensorData<int8_t>(output), &stats);
  if (status != TREC_SUCCESS) {
    MicroPrintf("TREC_CONV_2D: trec_convolve_s8 failed with %s (scratch %d bytes, minimum %d)",
                StatusName(status), static_cast<int>(data->scratch_bytes),
                static_cast<int>(data->scratch_min_bytes));
    return kTfLiteError;
  }
  TF_LITE_ENSURE(context, stats.rows > 0);
  data->last_stats = stats;
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration Register_TREC_CONV_2D() {
  return tflite::micro::RegisterOp(Init, Prepare, Eval);
}

const trec_reuse_stats* TrecConv2DReuseStats(const TFLMRegistration& registration,
                                             const TfLiteNode& node) {
  // Init is what put an OpDataTrecConv2D into user_data: only then may it be read as one.
  if (registration.init != Init || node.user_data == nullptr) return nullptr;
  const OpDataTrecConv2D* data = static_cast<const OpDataTrecConv2D*>(node.user_data);
  return data->last_stats.rows > 0 ? &data->last_stats : nullptr;
}

}  // namespace tflite
