"""TRECConv2D: a Conv2D that removes transient redundancy by clustering im2col sub-vectors.

Forward, per image (never across the batch: MCU inference is batch 1):
  rows  = im2col(x) in (ky, kx, ci) order, N = Ho*Wo rows of K = kh*kw*cin
  sub   = rows cut into M = ceil(K/L) sub-vectors of length L (the last one zero-extended)
  code  = sign bits of (sub - centre) . R, R of shape (L, H)  -> cluster id per (row, sub-matrix)
  x_hat = mean of the sub-vectors sharing (image, sub-matrix, code)
  y     = sum over sub-matrices of x_hat . W_m, + bias, activation
which is exactly what the int8 kernel computes (docs/OP_SPEC.md), so training and inference agree.

Gradients: kernel, bias and input are exact through the centroids (the cluster assignment is
piecewise constant in x). R gets a surrogate gradient: primitives.hash_surrogate and
docs/TRAINING.md explain the estimator.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from trec_tflm.spec.op import HASH_CENTERS, MAX_HASH_BITS
from trec_tflm.training import primitives, train_ops

# Images per batch that estimate the hash matrix's surrogate gradient (see call()).
SURROGATE_IMAGES = 8


@keras.saving.register_keras_serializable(package="trec_tflm")
class TRECConv2D(keras.layers.Conv2D):
    """2D convolution with TREC reuse. Conv2D's arguments and defaults, plus:

    Args:
        sub_vector_length: L, length of the sub-vectors each im2col row is cut into. Must lie
            in [1, K] with K = kernel_h * kernel_w * in_channels; if L does not divide K the
            last sub-vector is shorter (zero-extended). Larger L: less scatter work, more
            clusters. Default 9.
        hash_bits: H in [1, 16], hash vectors per sub-vector; at most 2**H clusters per
            sub-matrix. Default 8.
        hash_center: "mean" (default) hashes sub-vectors around the per-image, per-channel
            mean of the layer input; "none" around zero. See docs/TRAINING.md for the
            measurement behind the default.
        hash_initializer, hash_regularizer, hash_constraint: for the (L, H) hash matrix.
        hash_trainable: learn the hash matrix by back-propagation (default True) or keep it
            at its initial random projection (plain LSH).

    Attributes:
        reuse_rate: remaining ratio rc = clusters / rows of the last call (a Python float),
            averaged over the images and sub-matrices of that batch.
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, sub_vector_length=9, hash_bits=8,
                 hash_center="mean", hash_initializer="orthogonal", hash_regularizer=None,
                 hash_constraint=None, hash_trainable=True, **kwargs):
        super().__init__(filters=filters, kernel_size=kernel_size, strides=strides,
                         padding=padding, data_format=data_format, dilation_rate=dilation_rate,
                         groups=groups, activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                         activity_regularizer=activity_regularizer,
                         kernel_constraint=kernel_constraint, bias_constraint=bias_constraint,
                         **kwargs)
        if self.data_format != "channels_last":
            raise ValueError("TRECConv2D supports data_format='channels_last' only "
                             "(the int8 kernel works on NHWC tensors)")
        if self.groups != 1:
            raise ValueError(f"TRECConv2D supports groups=1 only, got groups={self.groups}")
        if isinstance(sub_vector_length, bool) or not isinstance(sub_vector_length, (int, np.integer)) \
                or sub_vector_length < 1:
            raise ValueError(f"sub_vector_length must be a positive integer, got {sub_vector_length!r}")
        if isinstance(hash_bits, bool) or not isinstance(hash_bits, (int, np.integer)) \
                or not 1 <= hash_bits <= MAX_HASH_BITS:
            raise ValueError(f"hash_bits must be an integer in [1, {MAX_HASH_BITS}], got {hash_bits!r}")
        if hash_center not in HASH_CENTERS:
            raise ValueError(f"hash_center must be one of {HASH_CENTERS}, got {hash_center!r}")
        self.sub_vector_length = int(sub_vector_length)
        self.hash_bits = int(hash_bits)
        self.hash_center = hash_center
        self.hash_initializer = keras.initializers.get(hash_initializer)
        self.hash_regularizer = keras.regularizers.get(hash_regularizer)
        self.hash_constraint = keras.constraints.get(hash_constraint)
        self.hash_trainable = bool(hash_trainable)
        # None: the fused CPU ops when they can run (trec_tflm.training.train_ops.for_training), else plain
        # TF with a notice; False: plain TF; True: the fused ops even with a GPU present.
        self.use_fused_ops = None

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        super().build(input_shape)
        if input_shape[1] is None or input_shape[2] is None:
            raise ValueError("TRECConv2D needs static spatial input dimensions (height, width); "
                             f"got input shape {tuple(input_shape)}")
        kh, kw = self.kernel_size
        cin = int(input_shape[-1])
        k = kh * kw * cin
        if self.sub_vector_length > k:
            raise ValueError(
                f"{self.name}: sub_vector_length L={self.sub_vector_length} does not fit K={k} "
                f"(kernel {kh}x{kw} x {cin} input channels); choose L <= {k}")
        self.hash_kernel = self.add_weight(
            name="hash_kernel", shape=(self.sub_vector_length, self.hash_bits),
            initializer=self.hash_initializer, regularizer=self.hash_regularizer,
            constraint=self.hash_constraint, trainable=self.hash_trainable, dtype=self.dtype)
        # under tf.distribute every replica assigns the rc of its own images; "mean" makes the
        # variable (and the ReuseRate metric that reads it) the rc of the global batch
        self._reuse_rate = self.add_weight(name="reuse_rate", shape=(), initializer="ones",
                                           trainable=False, dtype="float32", aggregation="mean")

    @property
    def reuse_rate(self) -> float:
        """rc = clusters / rows of the last call, in (0, 1]."""
        return float(keras.ops.convert_to_numpy(self._reuse_rate))

    @property
    def sub_matrices(self) -> int:
        kh, kw = self.kernel_size
        return math.ceil(kh * kw * int(self._kernel.shape[2]) / self.sub_vector_length)

    # ------------------------------------------------------------------ forward
    def call(self, inputs, training=None):
        x = tf.convert_to_tensor(inputs, dtype=self.compute_dtype)
        batch = tf.shape(x)[0]
        height, width, cin = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
        length, bits = self.sub_vector_length, self.hash_bits
        k = self.kernel_size[0] * self.kernel_size[1] * cin
        m_count = math.ceil(k / length)
        geom = primitives.Geometry(height, width, cin, self.kernel_size, self.strides,
                                   self.dilation_rate, self.padding, m_count * length)
        n = geom.rows

        ops = None if self.use_fused_ops is False else train_ops.for_training(x.dtype)
        if ops is None and self.use_fused_ops and x.dtype.name in train_ops.FUSED_DTYPES:
            ops = train_ops.load()  # forced, e.g. the CPU ops on a machine with a GPU
        r = tf.cast(self.hash_kernel, x.dtype)
        pow2 = tf.constant(1 << np.arange(bits), tf.int32)
        j = geom.strip_width(length)
        sub = None
        if j:
            # strips of j whole pixels (the model builders' default L): project each image position
            # once and gather the codes, as the int8 kernel does; no im2col needed
            strip_index = geom.strip_layout(j)[2]
            if ops is not None:  # compare, pack and gather in one pass
                x_s, r_s = tf.stop_gradient(x), tf.stop_gradient(r)
                codes = ops.trec_strip_codes(primitives.strip_projections(x_s, r_s, geom, j),
                                             self._strip_offset(x_s, r_s, j), strip_index)
            else:
                pixel_proj = self._strip_projections(x, tf.stop_gradient(r), geom, j)  # [B, P, H]
                codes = tf.gather(tf.reduce_sum(tf.cast(pixel_proj > 0, tf.int32) * pow2, axis=-1), strip_index,
                                  axis=1)
        else:
            sub = tf.reshape(primitives.im2col(x, geom, ops), [batch, n, m_count, length])
            proj = self._projections(x, sub, tf.stop_gradient(r), k, m_count)  # [B, N, M, H]
            codes = tf.reduce_sum(tf.cast(proj > 0, tf.int32) * pow2, axis=-1)
        surrogate = bool(self.hash_trainable and training)
        # R has only L*H entries: a few images of the batch estimate its gradient well, at a
        # fraction of the cost; hash_surrogate rescales by B/S so the estimate is unbiased.
        s = tf.minimum(batch, SURROGATE_IMAGES)

        kernel = tf.reshape(tf.cast(self.kernel, x.dtype), [k, self.filters])
        if m_count * length != k:
            kernel = tf.pad(kernel, [[0, m_count * length - k], [0, 0]])
        if ops is not None:
            # per cluster: rc*N centroid rows per image and sub-matrix go through the products
            y, clusters, delta = primitives.cluster_product(
                x, codes, kernel, geom, length, 2**bits, ops, bits if surrogate else 0,
                SURROGATE_IMAGES if surrogate else 0)
            if surrogate:
                # g_xhat . delta = g . (delta . W_m): F-long dot products instead of L-long
                # ones on g . W_m^T, and no [S, N, M, L] tensor
                w_m = tf.reshape(tf.stop_gradient(kernel), [m_count, length, self.filters])
                e = tf.reshape(tf.einsum("smhl,mlf->smhf", delta, w_m), [s, m_count * bits, self.filters])

                def project(g):  # [S, N, F] -> [S, N, M, H], one batched product
                    return tf.reshape(tf.matmul(g, e, transpose_b=True), [s, n, m_count, bits])

                y = primitives.hash_surrogate(y, self._surrogate_projections(x, sub, r, geom, j, k, m_count, s),
                                              batch, project, ops)
        else:
            # plain TF: average the N rows, then the products on them (the shape of im2col)
            if sub is None:
                sub = tf.reshape(primitives.im2col(x, geom), [batch, n, m_count, length])
            x_hat, clusters, _ = primitives.cluster_mean(sub, codes, 2**bits)
            if surrogate:
                delta_s = primitives.halfspace_delta(sub[:s], codes[:s], bits)
                x_hat = primitives.hash_surrogate(x_hat, self._surrogate_projections(x, sub, r, geom, j, k, m_count, s),
                                                  batch, lambda g: tf.einsum("bnml,bmhl->bnmh", g, delta_s))
            y = tf.matmul(tf.reshape(x_hat, [batch * n, m_count * length]), kernel)
        y = tf.reshape(y, [batch, geom.ho, geom.wo, self.filters])
        if self.use_bias:
            y = y + tf.cast(self.bias, y.dtype)

        total = tf.cast(batch * n * m_count, tf.float32)
        self._reuse_rate.assign(tf.cast(tf.reduce_sum(clusters), tf.float32) / total)
        if self.activation is not None:
            y = self.activation(y)
        return y

    def _surrogate_projections(self, x, sub, r, geom, j, k, m_count, s):
        """[S, N, M, H] projections of the first s images, with R's gradient (for the surrogate)."""
        if j:
            return tf.gather(self._strip_projections(x[:s], r, geom, j), geom.strip_layout(j)[2], axis=1)
        return self._projections(x[:s], sub[:s], r, k, m_count)

    def _strip_projections(self, x, r, geom, j):
        """[B, P, H]: (strip - centre) . R for every strip position (see _projections)."""
        proj = primitives.strip_projections(tf.stop_gradient(x), r, geom, j)
        if self.hash_center == "mean":
            proj = proj - self._strip_offset(x, r, j)[:, None, :]
        return proj

    def _strip_offset(self, x, r, j):
        """[B, H]: centre . R, what _strip_projections subtracts (zeros without a centre)."""
        if self.hash_center != "mean":
            return tf.zeros([tf.shape(x)[0], self.hash_bits], r.dtype)
        mean = tf.reduce_mean(tf.stop_gradient(x), axis=[1, 2])  # [B, Cin]
        return tf.matmul(tf.tile(mean, [1, j]), r)

    def _projections(self, x, sub, r, k, m_count):
        """(sub - centre) . R with the centre folded into a per-(image, sub-matrix, bit) offset.

        Inputs are stop-gradient: the cluster assignment is piecewise constant in x, so x gets
        no gradient through the hash; R gets its gradient from the surrogate only.
        """
        proj = tf.einsum("bnml,lh->bnmh", tf.stop_gradient(sub), r)
        if self.hash_center == "mean":
            length = self.sub_vector_length
            cin = int(x.shape[-1])
            mean = tf.reduce_mean(tf.stop_gradient(x), axis=[1, 2])  # [B, Cin]
            col = np.arange(m_count * length)
            col_mean = tf.gather(mean, col % cin, axis=1) * tf.constant(col < k, mean.dtype)
            col_mean = tf.reshape(col_mean, [-1, m_count, length])
            proj = proj - tf.einsum("bml,lh->bmh", col_mean, r)[:, None]
        return proj

    # ------------------------------------------------------------------ saving
    # Conv2D stores only kernel and bias; TREC adds the hash matrix and the last reuse rate.
    def _saved_variables(self, kernel):
        return [kernel] + ([self.bias] if self.use_bias else []) + [self.hash_kernel, self._reuse_rate]

    def save_own_variables(self, store):
        if not self.built:
            return
        for i, variable in enumerate(self._saved_variables(self.kernel)):
            store[str(i)] = variable

    def load_own_variables(self, store):
        if not self.lora_enabled:
            self._check_load_own_variables(store)
        if not self.built:
            return
        for i, variable in enumerate(self._saved_variables(self._kernel)):
            variable.assign(store[str(i)])
        if self.lora_enabled:
            self.lora_kernel_a.assign(keras.ops.zeros(self.lora_kernel_a.shape))
            self.lora_kernel_b.assign(keras.ops.zeros(self.lora_kernel_b.shape))

    # ------------------------------------------------------------------ config
    def get_config(self):
        config = super().get_config()
        config.update({
            "sub_vector_length": self.sub_vector_length,
            "hash_bits": self.hash_bits,
            "hash_center": self.hash_center,
            "hash_initializer": keras.initializers.serialize(self.hash_initializer),
            "hash_regularizer": keras.regularizers.serialize(self.hash_regularizer),
            "hash_constraint": keras.constraints.serialize(self.hash_constraint),
            "hash_trainable": self.hash_trainable,
        })
        return config


def trec_layers(model) -> list[TRECConv2D]:
    """All TRECConv2D layers of a model, nested models included, in topological order."""
    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, TRECConv2D):
            found.append(layer)
    return found


@keras.saving.register_keras_serializable(package="trec_tflm")
class ReuseRate(keras.metrics.Metric):
    """Mean remaining ratio rc of one TRECConv2D layer over the batches of an epoch.

    Shown in Keras progress bars and recorded in the History as ``rc_<layer name>``.
    """

    def __init__(self, layer_name: str, name=None, **kwargs):
        super().__init__(name=name or f"rc_{layer_name}", **kwargs)
        self.layer_name = layer_name
        self._layer = None
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def bind(self, layer: TRECConv2D) -> ReuseRate:
        self._layer = layer
        return self

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self._layer is None:
            return
        self.total.assign_add(tf.cast(self._layer._reuse_rate, self.total.dtype))
        self.count.assign_add(tf.constant(1.0, self.count.dtype))

    def result(self):
        return tf.math.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {"layer_name": self.layer_name, "name": self.name, "dtype": self.dtype}


def reuse_metrics(model) -> list[ReuseRate]:
    """One ReuseRate metric per TRECConv2D layer, for ``model.compile(metrics=...)``."""
    return [ReuseRate(layer.name).bind(layer) for layer in trec_layers(model)]
