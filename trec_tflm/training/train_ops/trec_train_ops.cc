// Fused CPU kernels for TRECConv2D training: forward and backward computed per cluster.
//
// A TREC layer's output is y[b,n] = sum_m centroid[b,m,slot(b,n,m)] . W_m, so the matrix products
// only need the centroids (rc*N rows per image and sub-matrix), not the N averaged rows of the
// im2col shape. These ops do the gather/scatter around those products (Eigen products on the
// centroids, in cache), parallel over images.
// trec_tflm/training/train_ops/__init__.py builds this file on first use;
// trec_tflm/training/layers.py falls back to the plain-TF route (N rows) when it cannot, and the
// tests check the two against each other.
//
// Centroid rows of sub-matrix m are laid out image after image: image b owns rows
// [off(b,m), off(b,m) + clusters(b,m)) with off(b,m) = sum_{b'<b} clusters(b',m); rows past the
// last image's (up to T = max_m sum_b clusters(b,m)) are zero.
//
//   TrecIm2Col(x[B,H,W,C]) -> cols[B,N,Kp]    rows in (ky,kx,ci) order, zero padding and
//                                             zero extension from K to Kp = M*L (the codes of
//                                             sub-vectors that are not pixel strips)
//   TrecCol2Im(cols[B,N,Kp]) -> x[B,H,W,C]    the adjoint (scatter-add)
//   TrecClusterForward(x, codes[B,N,M], w[M,L,F]) -> y[B,N,F], centroids[M,T,L], counts[M,T],
//                                     slot[B,N,M], clusters[B,M], delta[S,M,H,L]
//                                             centroids read straight from x one im2col row at a
//                                             time, z = centroids . W_m gathered into y; delta:
//                                             mean of the members with bit h set minus mean of
//                                             the others, first S images (0 when a side is empty)
//   TrecClusterBackward(dy, centroids, counts, slot, clusters, w, image_shape) -> dx, dw
//                                             per-cluster sums of dy; dw = centroids^T . sums,
//                                             dx = (sums . W_m^T) / count through im2col's
//                                             adjoint, skipped (dx = [0]) when input_grad=false
//   TrecStripCodes(proj[B,P,H], offset[B,H], strip_index[N,M]) -> codes[B,N,M]
//                                             sign bits of the strip projections, packed and
//                                             gathered per (row, sub-matrix)
//   TrecSurrogateScale(p, tau[H], gp, scale) -> dp  the hash surrogate's elementwise gradient

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "Eigen/Core"
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
// geometry shared by the im2col-shaped ops
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

static Status SetImage(int64_t h, int64_t w, int64_t c, Geometry* g) {
  g->h = static_cast<int>(h); g->w = static_cast<int>(w); g->c = static_cast<int>(c);
  g->k = g->kh * g->kw * g->c;
  if (g->kp < g->k) return InvalidArgument("padded_k ", g->kp, " smaller than kh*kw*C = ", g->k);
  return Status();
}

// One im2col row (output pixel oy, ox) of one image into row[0, kp). A kernel row that lies
// inside the image with dilation 1 is kw*C contiguous values of x: one copy.
template <typename T>
static void Im2ColRow(const Geometry& g, const T* x, int oy, int ox, T* row) {
  const int ix0 = ox * g.sw - g.pad_left;
  const bool whole = g.dw == 1 && ix0 >= 0 && ix0 + g.kw <= g.w;
  T* dst = row;
  for (int ky = 0; ky < g.kh; ++ky) {
    const int iy = oy * g.sh - g.pad_top + ky * g.dh;
    if (iy < 0 || iy >= g.h) {
      std::fill(dst, dst + g.kw * g.c, T(0));
      dst += g.kw * g.c;
      continue;
    }
    const T* xrow = x + static_cast<int64_t>(iy) * g.w * g.c;
    if (whole) {
      std::copy(xrow + int64_t{ix0} * g.c, xrow + int64_t{ix0 + g.kw} * g.c, dst);
      dst += g.kw * g.c;
      continue;
    }
    for (int kx = 0; kx < g.kw; ++kx, dst += g.c) {
      const int ix = ix0 + kx * g.dw;
      if (ix < 0 || ix >= g.w) {
        std::fill(dst, dst + g.c, T(0));
      } else {
        std::copy(xrow + int64_t{ix} * g.c, xrow + int64_t{ix + 1} * g.c, dst);
      }
    }
  }
  std::fill(row + g.k, row + g.kp, T(0));
}

// x += the adjoint of Im2ColRow applied to row (padding taps dropped).
template <typename T>
static void Col2ImRow(const Geometry& g, const T* row, int oy, int ox, T* x) {
  const int ix0 = ox * g.sw - g.pad_left;
  const bool whole = g.dw == 1 && ix0 >= 0 && ix0 + g.kw <= g.w;
  const T* src = row;
  for (int ky = 0; ky < g.kh; ++ky, src += g.kw * g.c) {
    const int iy = oy * g.sh - g.pad_top + ky * g.dh;
    if (iy < 0 || iy >= g.h) continue;
    T* xrow = x + static_cast<int64_t>(iy) * g.w * g.c;
    if (whole) {
      T* dst = xrow + int64_t{ix0} * g.c;
      for (int i = 0; i < g.kw * g.c; ++i) dst[i] += src[i];
      continue;
    }
    for (int kx = 0; kx < g.kw; ++kx) {
      const int ix = ix0 + kx * g.dw;
      if (ix < 0 || ix >= g.w) continue;
      T* dst = xrow + int64_t{ix} * g.c;
      const T* s = src + kx * g.c;
      for (int ci = 0; ci < g.c; ++ci) dst[ci] += s[ci];
    }
  }
}

static void ParallelOver(OpKernelContext* ctx, int64_t items, int64_t cost,
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

#define TREC_REGISTER_FLOAT_KERNELS(name, op)                                                 \
  REGISTER_KERNEL_BUILDER(Name(name).Device(DEVICE_CPU).TypeConstraint<float>("T"), op<float>); \
  REGISTER_KERNEL_BUILDER(Name(name).Device(DEVICE_CPU).TypeConstraint<double>("T"), op<double>)

// ------------------------------------------------------------------------------------------
// im2col and its adjoint (the layer's codes when sub-vectors are not pixel strips)
// ------------------------------------------------------------------------------------------
REGISTER_OP("TrecIm2Col")
    .Input("x: T")
    .Output("cols: T")
    .Attr("T: {float, double}")
    .TREC_GEOMETRY_ATTRS
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      std::vector<int32_t> out;
      int32_t kp;
      TF_RETURN_IF_ERROR(c->GetAttr("output_size", &out));
      TF_RETURN_IF_ERROR(c->GetAttr("padded_k", &kp));
      c->set_output(0, c->MakeShape({c->Dim(c->input(0), 0), out[0] * out[1], kp}));
      return Status();
    });

template <typename T>
class TrecIm2ColOp : public OpKernel {
 public:
  explicit TrecIm2ColOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadGeometryAttrs(ctx, &g_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    OP_REQUIRES(ctx, x.dims() == 4, InvalidArgument("x must be [B,H,W,C]"));
    Geometry g = g_;
    OP_REQUIRES_OK(ctx, SetImage(x.dim_size(1), x.dim_size(2), x.dim_size(3), &g));
    const int64_t batch = x.dim_size(0), n = static_cast<int64_t>(g.ho) * g.wo;
    Tensor* cols = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch, n, g.kp}), &cols));
    const T* xs = x.flat<T>().data();
    T* cs = cols->flat<T>().data();
    const int64_t in_size = static_cast<int64_t>(g.h) * g.w * g.c, out_size = n * g.kp;
    ParallelOver(ctx, batch, out_size * 2, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        for (int oy = 0; oy < g.ho; ++oy)
          for (int ox = 0; ox < g.wo; ++ox)
            Im2ColRow(g, xs + b * in_size, oy, ox, cs + b * out_size + (int64_t{oy} * g.wo + ox) * g.kp);
    });
  }

 private:
  Geometry g_;
};
TREC_REGISTER_FLOAT_KERNELS("TrecIm2Col", TrecIm2ColOp);

REGISTER_OP("TrecCol2Im")
    .Input("cols: T")
    .Input("image_shape: int32")  // [B, H, W, C] of the image the columns came from
    .Output("x: T")
    .Attr("T: {float, double}")
    .TREC_GEOMETRY_ATTRS
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      shape_inference::ShapeHandle s;
      TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(1, &s));
      c->set_output(0, s);
      return Status();
    });

template <typename T>
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
    OP_REQUIRES_OK(ctx, SetImage(s(1), s(2), s(3), &g));
    const int64_t batch = s(0), n = static_cast<int64_t>(g.ho) * g.wo;
    OP_REQUIRES(ctx, cols.dims() == 3 && cols.dim_size(0) == batch && cols.dim_size(1) == n &&
                         cols.dim_size(2) == g.kp,
                InvalidArgument("cols do not match image_shape and the geometry"));
    Tensor* x = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch, g.h, g.w, g.c}), &x));
    const T* cs = cols.flat<T>().data();
    T* xs = x->flat<T>().data();
    const int64_t in_size = static_cast<int64_t>(g.h) * g.w * g.c, out_size = n * g.kp;
    ParallelOver(ctx, batch, out_size * 2, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        T* xb = xs + b * in_size;
        std::fill(xb, xb + in_size, T(0));
        for (int oy = 0; oy < g.ho; ++oy)
          for (int ox = 0; ox < g.wo; ++ox)
            Col2ImRow(g, cs + b * out_size + (int64_t{oy} * g.wo + ox) * g.kp, oy, ox, xb);
      }
    });
  }

 private:
  Geometry g_;
};
TREC_REGISTER_FLOAT_KERNELS("TrecCol2Im", TrecCol2ImOp);

// ------------------------------------------------------------------------------------------
// centroids
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

// off[b*M + m] = first centroid row of image b in sub-matrix m; rows[m] = rows in use.
static void RowOffsets(const int32_t* clusters, int64_t batch, int64_t m_count, std::vector<int64_t>* off,
                       std::vector<int64_t>* rows) {
  off->assign(batch * m_count, 0);
  rows->assign(m_count, 0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t m = 0; m < m_count; ++m) {
      (*off)[b * m_count + m] = (*rows)[m];
      (*rows)[m] += clusters[b * m_count + m];
    }
}

template <typename T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Images [0, batch) cut into at most kChunksPerThread * threads contiguous chunks: chunk-local
// accumulators (the kernel gradient) are then summed in chunk order, deterministically. More
// chunks than threads, so a worker held up by another process (shared machines) does not hold
// the whole op up with half the batch.
constexpr int64_t kChunksPerThread = 4;
static int64_t ChunkCount(OpKernelContext* ctx, int64_t batch) {
  const int64_t threads = ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
  return std::max<int64_t>(1, std::min<int64_t>(batch, kChunksPerThread * threads));
}
static void ParallelChunks(OpKernelContext* ctx, int64_t batch,
                           const std::function<void(int64_t chunk, int64_t b0, int64_t b1)>& fn,
                           int64_t* chunks_out = nullptr) {
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
  const int64_t chunks = ChunkCount(ctx, batch);
  if (chunks_out) *chunks_out = chunks;
  tensorflow::Shard(workers->num_threads, workers->workers, chunks, int64_t{1} << 40,
                    [&](int64_t c0, int64_t c1) {
                      for (int64_t c = c0; c < c1; ++c) fn(c, batch * c / chunks, batch * (c + 1) / chunks);
                    });
}

REGISTER_OP("TrecClusterForward")
    .Input("x: T")            // [B,H,W,C]
    .Input("codes: int32")    // [B,N,M]
    .Input("w: T")            // [M,L,F]
    .Output("y: T")           // [B,N,F]   sum_m centroid(b,m,slot) . W_m
    .Output("centroids: T")   // [M,R,L]
    .Output("counts: T")      // [M,R] members per centroid row (0 on unused rows)
    .Output("slot: int32")    // [B,N,M] centroid row of each (image, row, sub-matrix)
    .Output("clusters: int32")  // [B,M]
    .Output("delta: T")       // [S,M,H,L]
    .Attr("T: {float, double}")
    .Attr("num_codes: int >= 1")
    .Attr("delta_bits: int >= 0 = 0")
    .Attr("delta_images: int >= 0 = 0")
    .TREC_GEOMETRY_ATTRS
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      int32_t bits;
      TF_RETURN_IF_ERROR(c->GetAttr("delta_bits", &bits));
      auto codes = c->input(1), w = c->input(2);
      c->set_output(0, c->MakeShape({c->Dim(codes, 0), c->Dim(codes, 1), c->Dim(w, 2)}));
      c->set_output(1, c->MakeShape({c->Dim(w, 0), c->UnknownDim(), c->Dim(w, 1)}));
      c->set_output(2, c->MakeShape({c->Dim(w, 0), c->UnknownDim()}));
      c->set_output(3, codes);
      c->set_output(4, c->MakeShape({c->Dim(codes, 0), c->Dim(codes, 2)}));
      c->set_output(5, c->MakeShape({c->UnknownDim(), c->Dim(w, 0), bits, c->Dim(w, 1)}));
      return Status();
    });

template <typename T>
class TrecClusterForwardOp : public OpKernel {
 public:
  explicit TrecClusterForwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadGeometryAttrs(ctx, &g_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_codes", &num_codes_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("delta_bits", &bits_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("delta_images", &delta_images_));
    OP_REQUIRES(ctx, bits_ == 0 || (int64_t{1} << bits_) <= num_codes_,
                InvalidArgument("delta_bits exceeds log2(num_codes)"));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& codes = ctx->input(1);
    const Tensor& w = ctx->input(2);
    OP_REQUIRES(ctx, x.dims() == 4, InvalidArgument("x must be [B,H,W,C]"));
    OP_REQUIRES(ctx, w.dims() == 3 && w.dim_size(0) * w.dim_size(1) == g_.kp,
                InvalidArgument("w must be [M,L,F] with M*L = padded_k = ", g_.kp));
    Geometry g = g_;
    OP_REQUIRES_OK(ctx, SetImage(x.dim_size(1), x.dim_size(2), x.dim_size(3), &g));
    const int64_t batch = x.dim_size(0), n = int64_t{g.ho} * g.wo, mc = w.dim_size(0), l = w.dim_size(1),
                  f = w.dim_size(2);
    OP_REQUIRES(ctx, codes.dims() == 3 && codes.dim_size(0) == batch && codes.dim_size(1) == n &&
                         codes.dim_size(2) == mc,
                InvalidArgument("codes must be [B, Ho*Wo, M] = [", batch, ", ", n, ", ", mc, "]"));
    const int32_t* cd = codes.flat<int32_t>().data();
    for (int64_t i = 0; i < codes.NumElements(); ++i)
      OP_REQUIRES(ctx, cd[i] >= 0 && cd[i] < num_codes_,
                  InvalidArgument("code ", cd[i], " outside [0, ", num_codes_, ")"));

    // pass 1: cluster slots per (image, sub-matrix), in order of first appearance
    Tensor *slot = nullptr, *clusters = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, codes.shape(), &slot));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({batch, mc}), &clusters));
    int32_t* sl = slot->flat<int32_t>().data();
    int32_t* ncl = clusters->flat<int32_t>().data();
    const int64_t num_codes = num_codes_;
    ParallelOver(ctx, batch, n * mc * 4, [&](int64_t b0, int64_t b1) {
      SlotMap map(num_codes);
      for (int64_t b = b0; b < b1; ++b)
        for (int64_t m = 0; m < mc; ++m) {
          map.Reset();
          int32_t next = 0;
          for (int64_t r = 0; r < n; ++r) {
            const int64_t i = (b * n + r) * mc + m;
            sl[i] = map.Get(cd[i], &next);
          }
          ncl[b * mc + m] = next;
        }
    });
    std::vector<int64_t> off, rows;
    RowOffsets(ncl, batch, mc, &off, &rows);
    const int64_t r_rows = batch == 0 ? 0 : *std::max_element(rows.begin(), rows.end());

    Tensor *y = nullptr, *cent = nullptr, *counts = nullptr, *delta = nullptr;
    const int64_t s_images = bits_ > 0 ? std::min<int64_t>(delta_images_, batch) : 0;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch, n, f}), &y));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({mc, r_rows, l}), &cent));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({mc, r_rows}), &counts));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(5, TensorShape({s_images, mc, bits_, l}), &delta));
    T* ys = y->flat<T>().data();
    T* ce = cent->flat<T>().data();
    T* co = counts->flat<T>().data();
    T* dl = delta->flat<T>().data();
    const T* ws = w.flat<T>().data();
    for (int64_t m = 0; m < mc; ++m) {  // rows no image uses
      std::fill(ce + (m * r_rows + rows[m]) * l, ce + (m + 1) * r_rows * l, T(0));
      std::fill(co + m * r_rows + rows[m], co + (m + 1) * r_rows, T(0));
    }

    // pass 2, per image: member sums read one im2col row at a time, means, then per
    // sub-matrix z = centroids . W_m (rc*N rows) gathered into y while z is in cache
    const T* xs = x.flat<T>().data();
    const int64_t in_size = int64_t{g.h} * g.w * g.c;
    const int bits = bits_;
    ParallelOver(ctx, batch, n * (g.kp * 3 + mc * f * 2), [&](int64_t b0, int64_t b1) {
      std::vector<T> row(g.kp), z(n * f);
      std::vector<int32_t> code_of(n);
      std::vector<double> set_sum(bits * l), total(l);
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t m = 0; m < mc; ++m) {
          const int64_t first = m * r_rows + off[b * mc + m];
          std::fill(ce + first * l, ce + (first + ncl[b * mc + m]) * l, T(0));
          std::fill(co + first, co + first + ncl[b * mc + m], T(0));
        }
        for (int oy = 0; oy < g.ho; ++oy)
          for (int ox = 0; ox < g.wo; ++ox) {
            Im2ColRow(g, xs + b * in_size, oy, ox, row.data());
            const int32_t* srow = sl + (b * n + int64_t{oy} * g.wo + ox) * mc;
            for (int64_t m = 0; m < mc; ++m) {
              const int64_t t = m * r_rows + off[b * mc + m] + srow[m];
              T* acc = ce + t * l;
              const T* src = row.data() + m * l;
              for (int64_t j = 0; j < l; ++j) acc[j] += src[j];
              co[t] += T(1);
            }
          }
        T* yb = ys + b * n * f;
        std::fill(yb, yb + n * f, T(0));
        for (int64_t m = 0; m < mc; ++m) {
          const int64_t first = m * r_rows + off[b * mc + m], count = ncl[b * mc + m];
          const int32_t* sb = sl + b * n * mc + m;
          if (b < s_images) {
            for (int64_t r = 0; r < n; ++r) code_of[sb[r * mc]] = cd[b * n * mc + r * mc + m];
            HalfspaceDelta(n, l, bits, count, ce + first * l, co + first, code_of.data(), &set_sum, &total,
                           dl + (b * mc + m) * bits * l);
          }
          for (int64_t s = 0; s < count; ++s) {
            const T inv = T(1) / co[first + s];
            T* r = ce + (first + s) * l;
            for (int64_t j = 0; j < l; ++j) r[j] *= inv;
          }
          Eigen::Map<const RowMajor<T>> cm(ce + first * l, count, l), wm(ws + m * l * f, l, f);
          Eigen::Map<RowMajor<T>> zm(z.data(), count, f);
          zm.noalias() = cm * wm;
          for (int64_t r = 0; r < n; ++r) {
            const T* src = z.data() + sb[r * mc] * f;
            T* dst = yb + r * f;
            for (int64_t j = 0; j < f; ++j) dst[j] += src[j];
          }
        }
        // global row numbers for the backward pass
        for (int64_t r = 0; r < n; ++r)
          for (int64_t m = 0; m < mc; ++m) sl[(b * n + r) * mc + m] += static_cast<int32_t>(off[b * mc + m]);
      }
    });
  }

 private:
  // delta[h] = mean(members with bit h) - mean(the others), from the cluster sums.
  static void HalfspaceDelta(int64_t n, int64_t l, int bits, int64_t slots, const T* sums, const T* counts,
                             const int32_t* code_of_slot, std::vector<double>* set_sum, std::vector<double>* total,
                             T* out) {
    std::fill(set_sum->begin(), set_sum->end(), 0.0);
    std::fill(total->begin(), total->end(), 0.0);
    std::vector<int64_t> set_count(bits, 0);
    for (int64_t s = 0; s < slots; ++s) {
      const T* src = sums + s * l;
      for (int64_t j = 0; j < l; ++j) (*total)[j] += src[j];
      for (int h = 0; h < bits; ++h) {
        if (!((code_of_slot[s] >> h) & 1)) continue;
        set_count[h] += static_cast<int64_t>(counts[s]);
        double* acc = &(*set_sum)[h * l];
        for (int64_t j = 0; j < l; ++j) acc[j] += src[j];
      }
    }
    for (int h = 0; h < bits; ++h) {
      const int64_t n1 = set_count[h], n0 = n - n1;
      for (int64_t j = 0; j < l; ++j) {
        const double s1 = (*set_sum)[h * l + j];
        out[h * l + j] = (n1 == 0 || n0 == 0) ? T(0) : static_cast<T>(s1 / n1 - ((*total)[j] - s1) / n0);
      }
    }
  }

  Geometry g_;
  int64_t num_codes_;
  int32_t bits_, delta_images_;
};
TREC_REGISTER_FLOAT_KERNELS("TrecClusterForward", TrecClusterForwardOp);

// slot [B,N,M] with every entry a row of a [M, r_rows, ...] centroid tensor.
static Status CheckSlots(const Tensor& slot, int64_t mc, int64_t r_rows, int64_t* batch, int64_t* n) {
  if (slot.dims() != 3 || slot.dim_size(2) != mc)
    return InvalidArgument("slot must be [B,N,M] with M = ", mc, " sub-matrices");
  *batch = slot.dim_size(0); *n = slot.dim_size(1);
  const int32_t* s = slot.flat<int32_t>().data();
  for (int64_t i = 0; i < slot.NumElements(); ++i)
    if (s[i] < 0 || s[i] >= r_rows) return InvalidArgument("slot ", s[i], " outside [0, ", r_rows, ")");
  return Status();
}

REGISTER_OP("TrecClusterBackward")
    .Input("dy: T")             // [B,N,F]
    .Input("centroids: T")      // [M,R,L]
    .Input("counts: T")         // [M,R]
    .Input("slot: int32")       // [B,N,M]
    .Input("clusters: int32")   // [B,M]
    .Input("w: T")              // [M,L,F]
    .Input("image_shape: int32")
    .Output("dx: T")            // [B,H,W,C], or [0] when input_grad is false
    .Output("dw: T")            // [M,L,F]
    .Attr("T: {float, double}")
    .Attr("input_grad: bool = true")
    .TREC_GEOMETRY_ATTRS
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      bool input_grad;
      TF_RETURN_IF_ERROR(c->GetAttr("input_grad", &input_grad));
      shape_inference::ShapeHandle s;
      if (input_grad) {
        TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(6, &s));
      } else {
        s = c->MakeShape({0});
      }
      c->set_output(0, s);
      c->set_output(1, c->input(5));
      return Status();
    });

template <typename T>
class TrecClusterBackwardOp : public OpKernel {
 public:
  explicit TrecClusterBackwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadGeometryAttrs(ctx, &g_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("input_grad", &input_grad_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& cent = ctx->input(1);
    const Tensor& counts = ctx->input(2);
    const Tensor& slot = ctx->input(3);
    const Tensor& clusters = ctx->input(4);
    const Tensor& w = ctx->input(5);
    const Tensor& shape = ctx->input(6);
    OP_REQUIRES(ctx, shape.NumElements() == 4, InvalidArgument("image_shape must be [B,H,W,C]"));
    auto s = shape.flat<int32_t>();
    Geometry g = g_;
    OP_REQUIRES_OK(ctx, SetImage(s(1), s(2), s(3), &g));
    OP_REQUIRES(ctx, w.dims() == 3 && w.dim_size(0) * w.dim_size(1) == g.kp,
                InvalidArgument("w must be [M,L,F] with M*L = padded_k = ", g.kp));
    const int64_t mc = w.dim_size(0), l = w.dim_size(1), f = w.dim_size(2);
    OP_REQUIRES(ctx, cent.dims() == 3 && cent.dim_size(0) == mc && cent.dim_size(2) == l &&
                         counts.dims() == 2 && counts.dim_size(0) == mc && counts.dim_size(1) == cent.dim_size(1),
                InvalidArgument("centroids [M,R,L] and counts [M,R] do not match w [M,L,F]"));
    const int64_t r_rows = cent.dim_size(1);
    int64_t batch, n;
    OP_REQUIRES_OK(ctx, CheckSlots(slot, mc, r_rows, &batch, &n));
    OP_REQUIRES(ctx, batch == s(0) && n == int64_t{g.ho} * g.wo,
                InvalidArgument("slot does not match image_shape and the geometry"));
    OP_REQUIRES(ctx, dy.dims() == 3 && dy.dim_size(0) == batch && dy.dim_size(1) == n && dy.dim_size(2) == f,
                InvalidArgument("dy must be [B,N,F] matching slot and w"));
    OP_REQUIRES(ctx, clusters.dims() == 2 && clusters.dim_size(0) == batch && clusters.dim_size(1) == mc,
                InvalidArgument("clusters must be [B,M] matching slot"));
    const int32_t* ncl = clusters.flat<int32_t>().data();
    std::vector<int64_t> off, rows;
    RowOffsets(ncl, batch, mc, &off, &rows);
    for (int64_t m = 0; m < mc; ++m)
      OP_REQUIRES(ctx, rows[m] <= r_rows, InvalidArgument("clusters exceed the rows of centroids"));

    Tensor *dx = nullptr, *dw = nullptr;
    // the first layer of a model: nothing needs dL/dx, so neither the members' gradient nor
    // im2col's adjoint is computed
    const bool input_grad = input_grad_;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, input_grad ? TensorShape({batch, g.h, g.w, g.c}) : TensorShape({0}),
                                             &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, w.shape(), &dw));
    const T* gs = dy.flat<T>().data();
    const T* ce = cent.flat<T>().data();
    const T* co = counts.flat<T>().data();
    const int32_t* sl = slot.flat<int32_t>().data();
    const T* ws = w.flat<T>().data();
    T* xs = dx->flat<T>().data();
    const int64_t in_size = int64_t{g.h} * g.w * g.c, wsize = mc * l * f;
    std::vector<std::vector<T>> dw_part(ChunkCount(ctx, batch));
    int64_t chunks = 0;
    ParallelChunks(ctx, batch, [&](int64_t chunk, int64_t b0, int64_t b1) {
      std::vector<T>& acc = dw_part[chunk];
      acc.assign(wsize, T(0));
      std::vector<T> sums(n * f), row(input_grad ? g.kp : 0), dcent(input_grad ? n * g.kp : 0);
      std::vector<int64_t> local(mc);
      for (int64_t b = b0; b < b1; ++b) {
        int64_t used = 0;
        for (int64_t m = 0; m < mc; ++m) {
          // per-cluster sums of dy: the kernel gradient is centroids^T . sums, the members'
          // gradient (sums . W_m^T) / count
          const int64_t first = m * r_rows + off[b * mc + m], count = ncl[b * mc + m];
          const int32_t* sb = sl + b * n * mc + m;
          std::fill(sums.begin(), sums.begin() + count * f, T(0));
          for (int64_t r = 0; r < n; ++r) {
            const T* src = gs + (b * n + r) * f;
            T* dst = sums.data() + (sb[r * mc] - off[b * mc + m]) * f;
            for (int64_t j = 0; j < f; ++j) dst[j] += src[j];
          }
          Eigen::Map<const RowMajor<T>> sm(sums.data(), count, f), cm(ce + first * l, count, l),
              wm(ws + m * l * f, l, f);
          Eigen::Map<RowMajor<T>> am(acc.data() + m * l * f, l, f), dm(dcent.data() + used * l, count, l);
          am.noalias() += cm.transpose() * sm;
          if (!input_grad) continue;
          dm.noalias() = sm * wm.transpose();
          for (int64_t t = 0; t < count; ++t) dm.row(t) *= T(1) / co[first + t];
          local[m] = used - off[b * mc + m];
          used += count;
        }
        if (!input_grad) continue;
        T* xb = xs + b * in_size;
        std::fill(xb, xb + in_size, T(0));
        for (int oy = 0; oy < g.ho; ++oy)
          for (int ox = 0; ox < g.wo; ++ox) {
            const int32_t* srow = sl + (b * n + int64_t{oy} * g.wo + ox) * mc;
            for (int64_t m = 0; m < mc; ++m) {
              const T* src = dcent.data() + (srow[m] + local[m]) * l;
              std::copy(src, src + l, row.data() + m * l);
            }
            Col2ImRow(g, row.data(), oy, ox, xb);
          }
      }
    }, &chunks);
    T* dws = dw->flat<T>().data();
    std::fill(dws, dws + wsize, T(0));
    for (int64_t c = 0; c < chunks; ++c)
      for (int64_t i = 0; i < wsize; ++i) dws[i] += dw_part[c][i];
  }

 private:
  Geometry g_;
  bool input_grad_;
};
TREC_REGISTER_FLOAT_KERNELS("TrecClusterBackward", TrecClusterBackwardOp);

// ------------------------------------------------------------------------------------------
// strip codes: the codes of the strip path in one pass (compare, pack the bits, gather)
// ------------------------------------------------------------------------------------------
REGISTER_OP("TrecStripCodes")
    .Input("proj: T")          // [B,P,H] strip . R at every strip position
    .Input("offset: T")        // [B,H] centre . R per image (zeros without a centre)
    .Input("strip_index: int32")  // [N,M] strip position of each (row, sub-matrix)
    .Output("codes: int32")    // [B,N,M] sum_h (proj - offset > 0) << h
    .Attr("T: {float, double}")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      auto idx = c->input(2);
      c->set_output(0, c->MakeShape({c->Dim(c->input(0), 0), c->Dim(idx, 0), c->Dim(idx, 1)}));
      return Status();
    });

template <typename T>
class TrecStripCodesOp : public OpKernel {
 public:
  explicit TrecStripCodesOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}
  void Compute(OpKernelContext* ctx) override {
    const Tensor& proj = ctx->input(0);
    const Tensor& offset = ctx->input(1);
    const Tensor& index = ctx->input(2);
    OP_REQUIRES(ctx, proj.dims() == 3 && proj.dim_size(2) >= 1 && proj.dim_size(2) <= 30,
                InvalidArgument("proj must be [B,P,H] with 1 <= H <= 30"));
    const int64_t batch = proj.dim_size(0), p = proj.dim_size(1), h = proj.dim_size(2);
    OP_REQUIRES(ctx, offset.dims() == 2 && offset.dim_size(0) == batch && offset.dim_size(1) == h,
                InvalidArgument("offset must be [B,H] matching proj"));
    OP_REQUIRES(ctx, index.dims() == 2, InvalidArgument("strip_index must be [N,M]"));
    const int64_t nm = index.NumElements();
    const int32_t* ix = index.flat<int32_t>().data();
    for (int64_t i = 0; i < nm; ++i)
      OP_REQUIRES(ctx, ix[i] >= 0 && ix[i] < p, InvalidArgument("strip_index ", ix[i], " outside [0, ", p, ")"));
    Tensor* codes = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch, index.dim_size(0), index.dim_size(1)}), &codes));
    const T* pr = proj.flat<T>().data();
    const T* of = offset.flat<T>().data();
    int32_t* cd = codes->flat<int32_t>().data();
    ParallelOver(ctx, batch, p * h + nm, [&](int64_t b0, int64_t b1) {
      std::vector<int32_t> pixel(p);
      for (int64_t b = b0; b < b1; ++b) {
        const T* ob = of + b * h;
        for (int64_t i = 0; i < p; ++i) {
          const T* v = pr + (b * p + i) * h;
          int32_t code = 0;
          for (int64_t k = 0; k < h; ++k) code |= static_cast<int32_t>(v[k] - ob[k] > T(0)) << k;
          pixel[i] = code;
        }
        int32_t* out = cd + b * nm;
        for (int64_t i = 0; i < nm; ++i) out[i] = pixel[ix[i]];
      }
    });
  }
};
TREC_REGISTER_FLOAT_KERNELS("TrecStripCodes", TrecStripCodesOp);

// ------------------------------------------------------------------------------------------
// the hash surrogate's gradient, elementwise part in one pass:
//   dp = scale / tau[h] * sigma(p / tau[h]) * (1 - sigma(p / tau[h])) * gp
// ------------------------------------------------------------------------------------------
REGISTER_OP("TrecSurrogateScale")
    .Input("p: T")       // [..., H] projections
    .Input("tau: T")     // [H] their spread
    .Input("gp: T")      // [..., H] g_xhat . delta
    .Input("scale: T")   // [] B / S
    .Output("dp: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      return Status();
    });

template <typename T>
class TrecSurrogateScaleOp : public OpKernel {
 public:
  explicit TrecSurrogateScaleOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}
  void Compute(OpKernelContext* ctx) override {
    const Tensor& p = ctx->input(0);
    const Tensor& tau = ctx->input(1);
    const Tensor& gp = ctx->input(2);
    const Tensor& scale = ctx->input(3);
    OP_REQUIRES(ctx, p.dims() >= 1 && tau.dims() == 1 && tau.dim_size(0) == p.dim_size(p.dims() - 1),
                InvalidArgument("tau must be [H] with H the last dimension of p"));
    OP_REQUIRES(ctx, gp.shape() == p.shape(), InvalidArgument("gp must have the shape of p"));
    OP_REQUIRES(ctx, scale.NumElements() == 1, InvalidArgument("scale must be a scalar"));
    Tensor* dp = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, p.shape(), &dp));
    const int64_t h = tau.dim_size(0), rows = h == 0 ? 0 : p.NumElements() / h;
    const T* ps = p.flat<T>().data();
    const T* ts = tau.flat<T>().data();
    const T* gs = gp.flat<T>().data();
    const T sc = scale.flat<T>()(0);
    T* out = dp->flat<T>().data();
    ParallelOver(ctx, rows, h * 20, [&](int64_t r0, int64_t r1) {
      // exp(-p / tau) through Eigen's vectorised exp (std::exp in the loop would not vectorise)
      Eigen::Array<T, Eigen::Dynamic, 1> q((r1 - r0) * h);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t k = 0; k < h; ++k) q[(r - r0) * h + k] = -ps[r * h + k] / ts[k];
      q = q.exp();
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t k = 0; k < h; ++k) {
          const int64_t i = r * h + k;
          const T sg = T(1) / (T(1) + q[(r - r0) * h + k]);
          out[i] = sc / ts[k] * sg * (T(1) - sg) * gs[i];
        }
    });
  }
};
TREC_REGISTER_FLOAT_KERNELS("TrecSurrogateScale", TrecSurrogateScaleOp);

}  // namespace trec
