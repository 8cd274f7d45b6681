"""The tensor primitives of TRECConv2D: the per-cluster route on the fused CPU ops
(trec_tflm.training.train_ops) and the plain-TensorFlow route on the N averaged rows.

Both routes compute the same values (in float64 to rounding); tests compare them, so each checks
the other. ``ops`` arguments are the loaded op module (``train_ops.load()``).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import record

from trec_tflm.spec.golden import conv_geometry, strip_width

# Plain-TF clustering: direct segment ids (B*M*2^H segments) while that is at most this many
# times the number of sub-vectors; beyond that, tf.unique compacts the keys first.
_DIRECT_SEGMENT_FACTOR = 4


class Geometry:
    """Static im2col geometry of one layer on one input size (TFLite/TF padding rules)."""

    def __init__(self, height, width, channels, kernel_size, strides, dilation, padding, padded_k):
        self.height, self.width, self.channels = height, width, channels
        self.kernel_size, self.strides, self.dilation = tuple(kernel_size), tuple(strides), tuple(dilation)
        (self.ho, self.wo), (self.pad_top, self.pad_left) = conv_geometry(
            (height, width), kernel_size, strides, dilation, padding)
        self.k = kernel_size[0] * kernel_size[1] * channels
        self.padded_k = padded_k
        self.rows = self.ho * self.wo

    def attrs(self) -> dict:
        return dict(kernel_size=list(self.kernel_size), strides=list(self.strides),
                    dilations=list(self.dilation), pads=[self.pad_top, self.pad_left],
                    output_size=[self.ho, self.wo], padded_k=self.padded_k)

    def gather_indices(self) -> np.ndarray:
        """[N, kh*kw] indices into the flattened image with one zero pixel appended at H*W."""
        kh, kw = self.kernel_size
        sh, sw = self.strides
        dh, dw = self.dilation
        ys = (np.arange(self.ho) * sh - self.pad_top)[:, None] + np.arange(kh) * dh
        xs = (np.arange(self.wo) * sw - self.pad_left)[:, None] + np.arange(kw) * dw
        valid = (((ys >= 0) & (ys < self.height))[:, None, :, None]
                 & ((xs >= 0) & (xs < self.width))[None, :, None, :])
        flat = ys[:, None, :, None] * self.width + xs[None, :, None, :]
        flat = np.where(valid, flat, self.height * self.width)
        return flat.reshape(self.rows, kh * kw).astype(np.int32)

    def strip_width(self, length: int) -> int:
        """j when sub-vectors of length L are strips of j whole input pixels (L = j*Cin, j dividing
        kw), else 0."""
        if self.padded_k != self.k:
            return 0
        return strip_width(length, self.channels, self.kernel_size[1])

    def strip_layout(self, j: int):
        """Padding (top, bottom, left, right) of the image, width of the strip-projection map over
        it, and [N, M] flat indices of each (row, sub-matrix)'s strip start in that map."""
        kh, kw = self.kernel_size
        sh, sw = self.strides
        dh, dw = self.dilation
        need_h = (self.ho - 1) * sh + (kh - 1) * dh + 1
        need_w = (self.wo - 1) * sw + (kw - 1) * dw + 1
        pads = (self.pad_top, max(0, need_h - self.pad_top - self.height),
                self.pad_left, max(0, need_w - self.pad_left - self.width))
        map_w = self.pad_left + self.width + pads[3] - (j - 1) * dw
        ys = (np.arange(self.ho) * sh)[:, None] + np.arange(kh) * dh                # [Ho, kh]
        xs = (np.arange(self.wo) * sw)[:, None] + np.arange(0, kw, j) * dw          # [Wo, kw/j]
        flat = ys[:, None, :, None] * map_w + xs[None, :, None, :]                  # [Ho, Wo, kh, kw/j]
        return pads, map_w, flat.reshape(self.rows, -1).astype(np.int32)


def strip_projections(x, r, geom: Geometry, j: int):
    """[B, P, H]: x . R for every strip of j pixels of the zero-padded image (L = j*Cin), once per
    image position instead of once per (row, sub-matrix): kh*kw/j times fewer multiply-adds than
    projecting the im2col sub-vectors. Gather with ``geom.strip_layout(j)[2]``."""
    pads, _, _ = geom.strip_layout(j)
    xp = tf.pad(x, [[0, 0], [pads[0], pads[1]], [pads[2], pads[3]], [0, 0]])
    kernel = tf.reshape(r, [1, j, geom.channels, -1])
    p = tf.nn.conv2d(xp, kernel, strides=1, padding="VALID", dilations=[1, 1, geom.dilation[1], 1])
    return tf.reshape(p, [tf.shape(x)[0], -1, tf.shape(r)[-1]])


def im2col(x, geom: Geometry, ops=None):
    """x [B,H,W,C] -> [B, N, padded_k]: rows in (ky, kx, ci) order, zero padding/extension.
    With ``ops``, one fused op (and its adjoint for the gradient); else gather and pad."""
    if ops is not None:
        @tf.custom_gradient
        def fused(inp):
            def grad(g):
                return ops.trec_col2_im(g, tf.shape(inp), **geom.attrs())
            return ops.trec_im2_col(inp, **geom.attrs()), grad

        return fused(x)
    batch = tf.shape(x)[0]
    pixels = tf.reshape(x, [batch, geom.height * geom.width, geom.channels])
    pixels = tf.pad(pixels, [[0, 0], [0, 1], [0, 0]])
    rows = tf.reshape(tf.gather(pixels, geom.gather_indices(), axis=1), [batch, geom.rows, geom.k])
    if geom.padded_k != geom.k:
        rows = tf.pad(rows, [[0, 0], [0, 0], [0, geom.padded_k - geom.k]])
    return rows


def _cluster_mean_tf(values, codes, num_codes):
    batch, n, m, length = (tf.shape(values)[0], values.shape[1], values.shape[2], values.shape[3])
    owner = tf.range(batch)[:, None, None] * m + tf.range(m)[None, None, :]  # [B,1,M]
    owner = tf.broadcast_to(owner, tf.shape(codes))
    if num_codes <= _DIRECT_SEGMENT_FACTOR * n:
        seg = tf.reshape(owner * num_codes + codes, [-1])
        num_seg = batch * m * num_codes
    else:
        key = tf.cast(owner, tf.int64) * num_codes + tf.cast(codes, tf.int64)
        _, seg = tf.unique(tf.reshape(key, [-1]), out_idx=tf.int32)
        num_seg = tf.reduce_max(seg) + 1
    flat = tf.reshape(values, [-1, length])
    sums = tf.math.unsorted_segment_sum(flat, seg, num_seg)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(seg, dtype=flat.dtype), seg, num_seg)
    means = tf.reshape(tf.gather(sums / tf.maximum(counts, 1.0)[:, None], seg), tf.shape(values))
    seg_owner = tf.math.unsorted_segment_max(tf.reshape(owner, [-1]), seg, num_seg)
    used = tf.cast(counts > 0, tf.int32)
    clusters = tf.math.unsorted_segment_sum(used, tf.maximum(seg_owner, 0), batch * m)
    return means, tf.reshape(clusters, [batch, m])


def cluster_mean(values, codes, num_codes: int, delta_bits: int = 0):
    """Replace each sub-vector by the mean of those sharing (image, sub-matrix, code): the
    plain-TF route, on all N rows.

    values [B,N,M,L] float, codes [B,N,M] int32 in [0, num_codes).
    Returns (means [B,N,M,L], clusters [B,M] int32, delta [B,M,delta_bits,L] or None), delta as
    in halfspace_delta. The averaging operator is symmetric and the codes are piecewise
    constant, so the exact gradient is the same averaging applied to dL/dmeans.
    """
    box = {}

    @tf.custom_gradient
    def averaged(v):
        means, clusters = _cluster_mean_tf(v, codes, num_codes)
        box["clusters"] = clusters

        def grad(g):
            return _cluster_mean_tf(g, codes, num_codes)[0]

        return means, grad

    means = averaged(values)
    delta = halfspace_delta(values, codes, delta_bits) if delta_bits else None
    return means, box["clusters"], delta


def cluster_product(x, codes, kernel, geom: Geometry, length: int, num_codes: int, ops,
                    delta_bits: int = 0, delta_images: int = 0):
    """y [B,N,F] = sum_m x_hat[b,n,m] . W_m computed per cluster (the fused route).

    kernel [M*L, F]. The centroids (rc*N rows per image and sub-matrix) are read straight from x,
    multiplied by W_m, and gathered back to the rows; backward, the output gradient is summed per
    cluster, so the kernel gradient is centroids^T . sums and the input gradient is
    (sums . W_m^T) / count spread over the members (the cluster average of g . W^T). Returns
    (y, clusters [B,M], delta [S,M,delta_bits,L] of the first S = delta_images images, or None).
    """
    attrs = geom.attrs()
    w = tf.reshape(kernel, [geom.padded_k // length, length, -1])
    box = {}
    # A model's first layer: no tape watches its input, so dL/dx would be computed and dropped
    # (TF prunes Conv2D's input gradient there; one fused op cannot drop one output). Decided
    # when the forward is recorded, the only time the tapes that will ask are known.
    input_grad = record.should_record_backprop([x])

    @tf.custom_gradient
    def product(inp, wm):
        y, cent, counts, slot, clusters, delta = ops.trec_cluster_forward(
            inp, codes, wm, num_codes=num_codes, delta_bits=delta_bits, delta_images=delta_images, **attrs)
        box.update(clusters=clusters, delta=delta)

        def grad(dy):
            dx, dw = ops.trec_cluster_backward(dy, cent, counts, slot, clusters, wm, tf.shape(inp),
                                               input_grad=input_grad, **attrs)
            return (dx if input_grad else None), dw

        return y, grad

    y = product(x, w)
    return y, box["clusters"], (tf.stop_gradient(box["delta"]) if delta_bits else None)


def halfspace_delta(values, codes, bits: int):
    """[B,M,H,L]: mean of sub-vectors with bit h set minus mean of the others (0 if one side
    is empty), per image and sub-matrix. Plain-TF twin of TrecClusterForward's delta output."""
    values = tf.stop_gradient(values)
    n = values.shape[1]
    bit = tf.cast(tf.bitwise.bitwise_and(codes[..., None], tf.constant(1 << np.arange(bits), tf.int32)) > 0,
                  values.dtype)  # [B,N,M,H]
    n1 = tf.reduce_sum(bit, axis=1)  # [B,M,H]
    n0 = float(n) - n1
    s1 = tf.einsum("bnmh,bnml->bmhl", bit, values)
    s0 = tf.reduce_sum(values, axis=1)[:, :, None, :] - s1
    delta = s1 / tf.maximum(n1, 1.0)[..., None] - s0 / tf.maximum(n0, 1.0)[..., None]
    return tf.where(((n1 > 0) & (n0 > 0))[..., None], delta, tf.zeros_like(delta))


def _spread(proj):
    """[H]: standard deviation of the projections of each bit over the global batch. Under
    tf.distribute the replicas pool their statistics (like a synchronised BatchNorm), so the
    surrogate does not depend on how the batch is split."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return tf.math.reduce_std(proj, axis=[0, 1, 2])
    count = ctx.all_reduce("sum", tf.cast(tf.reduce_prod(tf.shape(proj)[:3]), proj.dtype))
    mean = ctx.all_reduce("sum", tf.reduce_sum(proj, axis=[0, 1, 2])) / count
    return tf.sqrt(ctx.all_reduce("sum", tf.reduce_sum(tf.square(proj - mean), axis=[0, 1, 2])) / count)


def hash_surrogate(target, proj, batch, project, ops=None):
    """Identity on target whose backward pass also gives proj the hash's surrogate gradient.

    proj [S,N,M,H] may cover only the first S images of the batch (target covers all B); the
    gradient is then scaled by B/S, an unbiased estimate of the full-batch surrogate.
    project(g) maps the gradient of the first S images of target to
    sum_l g_xhat[b,n,m,l] * delta[b,m,h,l] with g_xhat = dL/dx_hat.

    Crossing hyperplane h moves a sub-vector to the other half-space; its representative then
    moves, to first order, by delta = (mean of the set side) - (mean of the other side). The
    loss sees that move through g_xhat, so
        dL/dproj[b,n,m,h] = sigmoid'(proj/tau)/tau * (g_xhat[b,n,m,:] . delta[b,m,h,:])
    a straight-through estimator whose direction comes from the data; tau, the spread of the
    projections of each bit, makes it invariant to the scale of the hash matrix.
    With ``ops`` the elementwise part is one fused op (TrecSurrogateScale), same formula.
    """
    tau = _spread(tf.stop_gradient(proj)) + 1e-6
    subset = tf.shape(proj)[0]
    scale = tf.cast(batch, proj.dtype) / tf.cast(subset, proj.dtype)

    @tf.custom_gradient
    def surrogate(t, p):
        def grad(g):
            if ops is not None:
                return g, ops.trec_surrogate_scale(p, tau, project(g[:subset]), scale)
            s = tf.sigmoid(p / tau)
            return g, (scale / tau) * s * (1.0 - s) * project(g[:subset])

        return tf.identity(t), grad

    return surrogate(target, proj)
