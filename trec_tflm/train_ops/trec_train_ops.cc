// Fused CPU kernels that make TRECConv2D training affordable in TensorFlow.
//
// TensorFlow's generic gather/scatter kernels spend most of a TREC training step moving the
// im2col tensor around (single-threaded random access). These ops do the same math in one
// cache-friendly pass each, parallel over images. trec_tflm/train_ops/__init__.py builds this
// file on first use; trec_tflm/layers.py falls back to plain TF ops when it cannot, and the
// tests check the two paths against each other.
//
//   TrecIm2Col(x[B,H,W,C]) -> cols[B,N,Kp]    rows in (ky,kx,ci) order, zero padding and
//                                             zero extension from K to Kp = M*L
//   TrecCol2Im(cols[B,N,Kp]) -> x[B,H,W,C]    the adjoint (scatter-add), for the gradient
//   TrecClusterMean(values[B,N,M,L], codes[B,N,M]) -> (means[B,N,M,L], clusters[B,M])
//                                             replace each sub-vector by the mean of those
//                                             sharing its (image, sub-matrix, code); the
//                                             operator is symmetric, so it is its own gradient
//   TrecClusterMean(..., delta_bits=H) also returns delta[B,M,H,L]: mean of the members
//                                             with bit h set minus mean of the others (0 when
//                                             a side is empty), from the cluster sums
//   TrecDeltaProject(grad[B,N,M,L], delta[B,M,H,L]) -> [B,N,M,H]   sum_l grad*delta

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace trec {
using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Status;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;
namespace shape_inference = tensorflow::shape_inference;

// ------------------------------------------------------------------------------------------
// geometry shared by im2col / col2im: per output pixel and tap, the input pixel or -1 (pad)
// ------------------------------------------------------------------------------------------
struct Geometry {
  int h, w, c, kh, kw, sh, sw, dh, dw, pad_top, pad_left, ho, wo, k, kp;
};

static Status ReadGeometryAttrs(OpKernelConstruction* ctx, Geometry* g) {
  std::vector<int32_t> kernel, strides, dilations, pads, out;
  TF_RETURN_IF_ERROR(ctx->GetAttr("kernel_size", &kernel));
  TF_RETURN_IF_ERROR(ctx->GetAttr("strides", &strides));
  TF_RETURN_IF_ERROR(ctx->GetAttr("dilations", &dilations));
  TF_RETURN_IF_ERROR(ctx->GetAttr("pads", &pads));
  TF_RETURN_IF_ERROR(ctx->GetAttr("output_size", &out));
  TF_RETURN_IF_ERROR(ctx->GetAttr("padded_k", &g->kp));
  if (kernel.size() != 2 || strides.size() != 2 || dilations.size() != 2 || pads.size() != 2 ||
      out.size() != 2)
    return InvalidArgument("kernel_size, strides, dilations, pads, output_size take 2 values");
  g->kh = kernel[0]; g->kw = kernel[1];
  g->sh = strides[0]; g->sw = strides[1];
  g->dh = dilations[0]; g->dw = dilations[1];
  g->pad_top = pads[0]; g->pad_left = pads[1];
  g->ho = out[0]; g->wo = out[1];
  return Status();
}

static void Im2ColImage(const Geometry& g, const float* x, float* cols) {
  for (int oy = 0; oy < g.ho; ++oy) {
    for (int ox = 0; ox < g.wo; ++ox) {
      float* row = cols + (static_cast<int64_t>(oy) * g.wo + ox) * g.kp;
      float* dst = row;
      for (int ky = 0; ky < g.kh; ++ky) {
        const int iy = oy * g.sh - g.pad_top + ky * g.dh;
        for (int kx = 0; kx < g.kw; ++kx, dst += g.c) {
          const int ix = ox * g.sw - g.pad_left + kx * g.dw;
          if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) {
            std::fill(dst, dst + g.c, 0.0f);
          } else {
            const float* src = x + (static_cast<int64_t>(iy) * g.w + ix) * g.c;
            std::copy(src, src + g.c, dst);
          }
        }
      }
      std::fill(row + g.k, row + g.kp, 0.0f);
    }
  }
}

static void Col2ImImage(const Geometry& g, const float* cols, float* x) {
  std::fill(x, x + static_cast<int64_t>(g.h) * g.w * g.c, 0.0f);
  for (int oy = 0; oy < g.ho; ++oy) {
    for (int ox = 0; ox < g.wo; ++ox) {
      const float* src = cols + (static_cast<int64_t>(oy) * g.wo + ox) * g.kp;
      for (int ky = 0; ky < g.kh; ++ky) {
        const int iy = oy * g.sh - g.pad_top + ky * g.dh;
        for (int kx = 0; kx < g.kw; ++kx, src += g.c) {
          const int ix = ox * g.sw - g.pad_left + kx * g.dw;
          if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
          float* dst = x + (static_cast<int64_t>(iy) * g.w + ix) * g.c;
          for (int ci = 0; ci < g.c; ++ci) dst[ci] += src[ci];
        }
      }
    }
  }
}

static void ParallelOverImages(OpKernelContext* ctx, int64_t items, int64_t cost,
                               const std::function<void(int64_t, int64_t)>& fn) {
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
  tensorflow::Shard(workers->num_threads, workers->workers, items, cost, fn);
}

#define TREC_GEOMETRY_ATTRS                                                              \
  Attr("kernel_size: list(int)")                                                         \
      .Attr("strides: list(int)")                                                        \
      .Attr("dilations: list(int)")                                                      \
      .Attr("pads: list(int)")                                                           \
      .Attr("output_size: list(int)")                                                    \
      .Attr("padded_k: int")

REGISTER_OP("TrecIm2Col")
    .Input("x: float")
    .Output("cols: float")
    .TREC_GEOMETRY_ATTRS
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      std::vector<int32_t> out;
      int32_t kp;
      TF_RETURN_IF_ERROR(c->GetAttr("output_size", &out));
      TF_RETURN_IF_ERROR(c->GetAttr("padded_k", &kp));
      c->set_output(0, c->MakeShape({c->Dim(c->input(0), 0), out[0] * out[1], kp}));
      return Status();
    });

class TrecIm2ColOp : public OpKernel {
 public:
  explicit TrecIm2ColOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadGeometryAttrs(ctx, &g_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    OP_REQUIRES(ctx, x.dims() == 4, InvalidArgument("x must be [B,H,W,C]"));
    Geometry g = g_;
    g.h = x.dim_size(1); g.w = x.dim_size(2); g.c = x.dim_size(3);
    g.k = g.kh * g.kw * g.c;
    OP_REQUIRES(ctx, g.kp >= g.k, InvalidArgument("padded_k smaller than kh*kw*C"));
    const int64_t batch = x.dim_size(0), n = static_cast<int64_t>(g.ho) * g.wo;
    Tensor* cols = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch, n, g.kp}), &cols));
    const float* xs = x.flat<float>().data();
    float* cs = cols->flat<float>().data();
    const int64_t in_size = static_cast<int64_t>(g.h) * g.w * g.c, out_size = n * g.kp;
    ParallelOverImages(ctx, batch, out_size * 2, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) Im2ColImage(g, xs + b * in_size, cs + b * out_size);
    });
  }

 private:
  Geometry g_;
};
REGISTER_KERNEL_BUILDER(Name("TrecIm2Col").Device(DEVICE_CPU), TrecIm2ColOp);

REGISTER_OP("TrecCol2Im")
    .Input("cols: float")
    .Input("image_shape: int32")  // [B, H, W, C] of the image the columns came from
    .Output("x: float")
    .TREC_GEOMETRY_ATTRS
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      shape_inference::ShapeHandle s;
      TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(1, &s));
      c->set_output(0, s);
      return Status();
    });

class TrecCol2ImOp : public OpKernel {
 public:
  explicit TrecCol2ImOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadGeometryAttrs(ctx, &g_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& cols = ctx->input(0);
    const Tensor& shape = ctx->input(1);
    OP_REQUIRES(ctx, shape.NumElements() == 4, InvalidArgument("image_shape must be [B,H,W,C]"));
    auto s = shape.flat<int32_t>();
    Geometry g = g_;
    g.h = s(1); g.w = s(2); g.c = s(3);
    g.k = g.kh * g.kw * g.c;
    const int64_t batch = s(0), n = static_cast<int64_t>(g.ho) * g.wo;
    OP_REQUIRES(ctx, cols.dims() == 3 && cols.dim_size(0) == batch && cols.dim_size(1) == n &&
                         cols.dim_size(2) == g.kp,
                InvalidArgument("cols do not match image_shape and the geometry"));
    Tensor* x = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch, g.h, g.w, g.c}), &x));
    const float* cs = cols.flat<float>().data();
    float* xs = x->flat<float>().data();
    const int64_t in_size = static_cast<int64_t>(g.h) * g.w * g.c, out_size = n * g.kp;
    ParallelOverImages(ctx, batch, out_size * 2, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) Col2ImImage(g, cs + b * out_size, xs + b * in_size);
    });
  }

 private:
  Geometry g_;
};
REGISTER_KERNEL_BUILDER(Name("TrecCol2Im").Device(DEVICE_CPU), TrecCol2ImOp);

// ------------------------------------------------------------------------------------------
// clustering
// ------------------------------------------------------------------------------------------
// Per-thread map from code to dense cluster slot; stamps avoid clearing 2^H entries per
// (image, sub-matrix).
struct SlotMap {
  std::vector<int32_t> slot, stamp;
  int32_t generation = 0;
  explicit SlotMap(int64_t num_codes) : slot(num_codes), stamp(num_codes, -1) {}
  void Reset() { ++generation; }
  // Returns the slot of code, assigning next_slot when the code is new.
  int32_t Get(int32_t code, int32_t* next_slot) {
    if (stamp[code] != generation) {
      stamp[code] = generation;
      slot[code] = (*next_slot)++;
    }
    return slot[code];
  }
};

struct ClusterDims {
  int64_t batch, n, m, l;
};

static Status CheckValuesAndCodes(const Tensor& values, const Tensor& codes, ClusterDims* d) {
  if (values.dims() != 4) return InvalidArgument("values must be [B,N,M,L]");
  if (codes.dims() != 3 || codes.dim_size(0) != values.dim_size(0) ||
      codes.dim_size(1) != values.dim_size(1) || codes.dim_size(2) != values.dim_size(2))
    return InvalidArgument("codes must be [B,N,M] matching values");
  *d = {values.dim_size(0), values.dim_size(1), values.dim_size(2), values.dim_size(3)};
  return Status();
}

static Status CheckCodes(const Tensor& codes, int64_t num_codes) {
  auto c = codes.flat<int32_t>();
  for (int64_t i = 0; i < c.size(); ++i)
    if (c(i) < 0 || c(i) >= num_codes)
      return InvalidArgument("code ", c(i), " outside [0, ", num_codes, ")");
  return Status();
}

REGISTER_OP("TrecClusterMean")
    .Input("values: float")
    .Input("codes: int32")
    .Output("means: float")
    .Output("clusters: int32")
    .Output("delta: float")
    .Attr("num_codes: int >= 1")
    .Attr("delta_bits: int >= 0 = 0")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      int32_t bits;
      TF_RETURN_IF_ERROR(c->GetAttr("delta_bits", &bits));
      auto v = c->input(0);
      c->set_output(0, v);
      c->set_output(1, c->MakeShape({c->Dim(v, 0), c->Dim(v, 2)}));
      c->set_output(2, c->MakeShape({c->Dim(v, 0), c->Dim(v, 2), bits, c->Dim(v, 3)}));
      return Status();
    });

class TrecClusterMeanOp : public OpKernel {
 public:
  explicit TrecClusterMeanOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_codes", &num_codes_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("delta_bits", &delta_bits_));
    OP_REQUIRES(ctx, (int64_t{1} << delta_bits_) <= num_codes_ || delta_bits_ == 0,
                InvalidArgument("delta_bits exceeds log2(num_codes)"));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& values = ctx->input(0);
    const Tensor& codes = ctx->input(1);
    ClusterDims d;
    OP_REQUIRES_OK(ctx, CheckValuesAndCodes(values, codes, &d));
    OP_REQUIRES_OK(ctx, CheckCodes(codes, num_codes_));
    Tensor *means = nullptr, *clusters = nullptr, *delta = nullptr;
    const int bits = delta_bits_;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, values.shape(), &means));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({d.batch, d.m}), &clusters));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({d.batch, d.m, bits, d.l}), &delta));
    float* dl = delta->flat<float>().data();
    const float* v = values.flat<float>().data();
    const int32_t* c = codes.flat<int32_t>().data();
    float* out = means->flat<float>().data();
    int32_t* ncl = clusters->flat<int32_t>().data();
    const int64_t num_codes = num_codes_;
    // One image at a time: slots are assigned per sub-matrix (a pass over the small code
    // tensor), then the values are summed and written back in memory order, which is what
    // keeps this op near the cost of a copy.
    const int64_t per_image = d.n * d.m;
    ParallelOverImages(ctx, d.batch, per_image * d.l * 6, [&](int64_t b0, int64_t b1) {
      SlotMap map(num_codes);
      // not value-initialised: only the slots in use are cleared, per image
      std::unique_ptr<float[]> sums(new float[per_image * d.l]);
      std::unique_ptr<int32_t[]> counts(new int32_t[per_image]), slot_of(new int32_t[per_image]),
          code_of_slot(new int32_t[per_image]);
      std::vector<int32_t> next(d.m);
      std::vector<double> set_sum(bits * d.l), total(d.l);
      for (int64_t b = b0; b < b1; ++b) {
        const int32_t* cb = c + b * per_image;
        const float* vb = v + b * per_image * d.l;
        for (int64_t m = 0; m < d.m; ++m) {
          map.Reset();
          int32_t n_slots = 0;
          int32_t* codes_m = &code_of_slot[m * d.n];
          for (int64_t r = 0; r < d.n; ++r) {
            const int32_t code = cb[r * d.m + m];
            const int32_t before = n_slots;
            const int32_t s = map.Get(code, &n_slots);
            if (n_slots != before) codes_m[before] = code;
            slot_of[r * d.m + m] = static_cast<int32_t>(m * d.n) + s;
          }
          next[m] = n_slots;
          std::fill(sums.get() + m * d.n * d.l, sums.get() + (m * d.n + n_slots) * d.l, 0.0f);
          std::fill(counts.get() + m * d.n, counts.get() + m * d.n + n_slots, 0);
        }
        for (int64_t i = 0; i < per_image; ++i) {
          const float* src = vb + i * d.l;
          float* acc = &sums[slot_of[i] * d.l];
          for (int64_t j = 0; j < d.l; ++j) acc[j] += src[j];
          ++counts[slot_of[i]];
        }
        for (int64_t m = 0; m < d.m; ++m) {
          const int64_t base = m * d.n;
          if (bits > 0)
            HalfspaceDelta(d, bits, next[m], &sums[base * d.l], &counts[base], &code_of_slot[base], &set_sum,
                           &total, dl + (b * d.m + m) * bits * d.l);
          for (int32_t s = 0; s < next[m]; ++s) {
            const float inv = 1.0f / static_cast<float>(counts[base + s]);
            float* row = &sums[(base + s) * d.l];
            for (int64_t j = 0; j < d.l; ++j) row[j] *= inv;
          }
          ncl[b * d.m + m] = next[m];
        }
        float* ob = out + b * per_image * d.l;
        for (int64_t i = 0; i < per_image; ++i) {
          const float* src = &sums[slot_of[i] * d.l];
          std::copy(src, src + d.l, ob + i * d.l);
        }
      }
    });
  }

 private:
  // delta[h] = mean(members with bit h) - mean(the others), from the cluster sums.
  static void HalfspaceDelta(const ClusterDims& d, int bits, int32_t slots, const float* sums,
                             const int32_t* counts, const int32_t* code_of_slot, std::vector<double>* set_sum,
                             std::vector<double>* total, float* out) {
    std::fill(set_sum->begin(), set_sum->end(), 0.0);
    std::fill(total->begin(), total->end(), 0.0);
    std::vector<int64_t> set_count(bits, 0);
    for (int32_t s = 0; s < slots; ++s) {
      const float* src = &sums[s * d.l];
      for (int64_t j = 0; j < d.l; ++j) (*total)[j] += src[j];
      for (int h = 0; h < bits; ++h) {
        if (!((code_of_slot[s] >> h) & 1)) continue;
        set_count[h] += counts[s];
        double* acc = &(*set_sum)[h * d.l];
        for (int64_t j = 0; j < d.l; ++j) acc[j] += src[j];
      }
    }
    for (int h = 0; h < bits; ++h) {
      const int64_t n1 = set_count[h], n0 = d.n - n1;
      for (int64_t j = 0; j < d.l; ++j) {
        const double s1 = (*set_sum)[h * d.l + j];
        out[h * d.l + j] =
            (n1 == 0 || n0 == 0) ? 0.0f : static_cast<float>(s1 / n1 - ((*total)[j] - s1) / n0);
      }
    }
  }

  int64_t num_codes_;
  int delta_bits_;
};
REGISTER_KERNEL_BUILDER(Name("TrecClusterMean").Device(DEVICE_CPU), TrecClusterMeanOp);

REGISTER_OP("TrecDeltaProject")
    .Input("grad: float")   // [B,N,M,L]
    .Input("delta: float")  // [B,M,H,L]
    .Output("out: float")   // [B,N,M,H]
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      auto g = c->input(0), dl = c->input(1);
      c->set_output(0, c->MakeShape({c->Dim(g, 0), c->Dim(g, 1), c->Dim(g, 2), c->Dim(dl, 2)}));
      return Status();
    });

class TrecDeltaProjectOp : public OpKernel {
 public:
  explicit TrecDeltaProjectOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}
  void Compute(OpKernelContext* ctx) override {
    const Tensor& grad = ctx->input(0);
    const Tensor& delta = ctx->input(1);
    OP_REQUIRES(ctx, grad.dims() == 4 && delta.dims() == 4 &&
                         delta.dim_size(0) == grad.dim_size(0) &&
                         delta.dim_size(1) == grad.dim_size(2) &&
                         delta.dim_size(3) == grad.dim_size(3),
                InvalidArgument("grad [B,N,M,L] and delta [B,M,H,L] do not match"));
    const int64_t batch = grad.dim_size(0), n = grad.dim_size(1), m = grad.dim_size(2),
                  l = grad.dim_size(3), bits = delta.dim_size(2);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch, n, m, bits}), &out));
    const float* g = grad.flat<float>().data();
    const float* dl = delta.flat<float>().data();
    float* o = out->flat<float>().data();
    ParallelOverImages(ctx, batch * n, m * l * bits * 2, [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t b = row / n;
        for (int64_t mm = 0; mm < m; ++mm) {
          const float* gv = g + (row * m + mm) * l;
          const float* dv = dl + (b * m + mm) * bits * l;
          float* ov = o + (row * m + mm) * bits;
          for (int64_t h = 0; h < bits; ++h) {
            float acc = 0.0f;
            for (int64_t j = 0; j < l; ++j) acc += gv[j] * dv[h * l + j];
            ov[h] = acc;
          }
        }
      }
    });
  }
};
REGISTER_KERNEL_BUILDER(Name("TrecDeltaProject").Device(DEVICE_CPU), TrecDeltaProjectOp);

}  // namespace trec
