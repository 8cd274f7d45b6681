"""Benchmark layers for the cost model: shapes, TREC settings and int8 inputs from real images.

The instruction count of a convolution depends on its shapes, (L, H), the plan and the clusters the
input forms; the filter and hash values change no branch the count depends on. So the tensors that
matter are the inputs: Fashion-MNIST test images (real), quantized as a first layer sees them, or
for a deeper layer passed through a fixed random 3x3 float convolution, ReLU and average pooling to
the layer's (h, w, cin) and quantized to int8 as a trained network's ReLU activation is (zero point
-128, the scale of the batch's largest value). Such maps keep the spatial correlation of the image,
which is what makes rows collide; noise would make every row its own cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trec_tflm import data
from trec_tflm.bench.kernel_runner import KernelCase
from trec_tflm.spec import golden, quant


@dataclass(frozen=True)
class Layer:
    """One convolution: input (h, w, cin), cout, square k x k filter, stride, padding, dilation, L, H."""

    name: str
    h: int
    w: int
    cin: int
    cout: int
    k: int
    stride: int = 1
    padding: str = "SAME"
    dilation: int = 1
    sub_vector_length: int = 0
    hash_bits: int = 8

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.h, self.w, self.cin)

    @property
    def filter_shape(self) -> tuple[int, int, int, int]:
        return (self.cout, self.k, self.k, self.cin)

    def describe(self) -> str:
        path = "strip" if golden.strip_width(self.sub_vector_length, self.cin, self.k) else "general"
        return (f"{self.h}x{self.w}x{self.cin} -> {self.cout}, {self.k}x{self.k} s{self.stride} {self.padding}, "
                f"L={self.sub_vector_length} ({path}) H={self.hash_bits}")


# The coefficients are fitted on CALIBRATION and checked on HELD_OUT: other shapes, (L, H), paths and
# images (CALIBRATION takes test images 0-2, HELD_OUT 100-107).
CALIBRATION = [
    Layer("c1", 28, 28, 1, 16, 3, sub_vector_length=3, hash_bits=6),
    Layer("c2", 28, 28, 1, 32, 5, sub_vector_length=5, hash_bits=8),
    Layer("c3", 14, 14, 16, 32, 3, sub_vector_length=16, hash_bits=8),
    Layer("c4", 14, 14, 16, 32, 3, sub_vector_length=48, hash_bits=10),
    Layer("c5", 14, 14, 8, 16, 5, sub_vector_length=40, hash_bits=12),
    Layer("c6", 14, 14, 16, 16, 3, stride=2, sub_vector_length=16, hash_bits=6),
    Layer("c7", 14, 14, 16, 32, 3, sub_vector_length=12, hash_bits=8),
    Layer("c8", 7, 7, 32, 64, 3, sub_vector_length=32, hash_bits=8),
    Layer("c9", 14, 14, 3, 16, 5, sub_vector_length=15, hash_bits=8),
    Layer("c10", 28, 28, 1, 8, 3, padding="VALID", sub_vector_length=9, hash_bits=5),
    # the general path at other Cin, L and strides (c7 and c10 alone left it under-determined)
    Layer("c11", 14, 14, 2, 16, 3, sub_vector_length=4, hash_bits=8),
    Layer("c12", 14, 14, 8, 32, 5, sub_vector_length=20, hash_bits=9),
    Layer("c13", 12, 12, 6, 24, 3, stride=2, sub_vector_length=9, hash_bits=7),
    Layer("c14", 28, 28, 1, 16, 5, sub_vector_length=10, hash_bits=8),
    Layer("c15", 14, 14, 16, 16, 3, sub_vector_length=24, hash_bits=10),
    # small outputs, where the per-call costs weigh (added after held-out v11, 7x7 rows, missed by 16.9%)
    Layer("c16", 10, 10, 5, 16, 3, stride=2, sub_vector_length=10, hash_bits=8),
    Layer("c17", 8, 8, 12, 32, 3, sub_vector_length=8, hash_bits=8),
    # SIMD strip layers at Cin 4 and 8 (added after held-out v17, Cin 8 at stride 2, missed by 17.2%):
    # the calibration's SIMD layers had Cin 8 only with 5-pixel strips
    Layer("c18", 14, 14, 8, 32, 3, sub_vector_length=8, hash_bits=8),
    Layer("c19", 12, 12, 4, 16, 3, stride=2, sub_vector_length=4, hash_bits=7),
    Layer("c20", 16, 16, 8, 16, 3, stride=2, padding="VALID", sub_vector_length=24, hash_bits=8),
]
HELD_OUT = [
    Layer("v1", 28, 28, 1, 8, 5, padding="VALID", sub_vector_length=5, hash_bits=10),
    Layer("v2", 14, 14, 8, 32, 3, sub_vector_length=24, hash_bits=8),
    Layer("v3", 12, 12, 32, 32, 3, sub_vector_length=32, hash_bits=6),
    Layer("v4", 14, 14, 16, 32, 5, stride=2, sub_vector_length=16, hash_bits=9),
    Layer("v5", 14, 14, 8, 16, 3, sub_vector_length=9, hash_bits=8),
    # added after the model's terms were fixed (v1-v5 were looked at while choosing them)
    Layer("v6", 28, 28, 1, 32, 3, sub_vector_length=3, hash_bits=8),
    Layer("v7", 14, 14, 32, 64, 3, sub_vector_length=32, hash_bits=8),
    Layer("v8", 14, 14, 8, 32, 3, stride=2, padding="VALID", sub_vector_length=24, hash_bits=7),
    Layer("v9", 14, 14, 4, 16, 3, sub_vector_length=6, hash_bits=8),
    # added before the general path's terms were revised and refitted (v5 and v9, the general-path
    # layers above, were studied for that revision): three general-path layers, two strip layers
    Layer("v10", 10, 10, 12, 24, 3, sub_vector_length=10, hash_bits=7),
    Layer("v11", 16, 16, 6, 16, 3, stride=2, padding="VALID", sub_vector_length=12, hash_bits=9),
    Layer("v12", 20, 20, 2, 8, 5, sub_vector_length=8, hash_bits=6),
    Layer("v13", 10, 10, 24, 48, 3, sub_vector_length=24, hash_bits=7),
    Layer("v14", 16, 16, 4, 24, 3, sub_vector_length=12, hash_bits=9),
    # added after the first refit with those terms missed v11 (general path, stride 2) by 16.9%, before
    # v11 was studied and the terms revised again
    Layer("v15", 14, 14, 10, 20, 3, stride=2, sub_vector_length=15, hash_bits=8),
    Layer("v16", 20, 20, 3, 12, 3, sub_vector_length=6, hash_bits=7),
    Layer("v17", 20, 20, 8, 24, 3, stride=2, sub_vector_length=8, hash_bits=8),
    # added after the second revision missed v17 (strip path, stride 2) by 17.2%, before v17 was studied
    Layer("v18", 18, 18, 12, 24, 3, stride=2, sub_vector_length=12, hash_bits=7),
    Layer("v19", 24, 24, 4, 16, 3, stride=2, padding="VALID", sub_vector_length=12, hash_bits=8),
    Layer("v20", 12, 12, 8, 16, 5, sub_vector_length=40, hash_bits=9),
    Layer("v21", 16, 16, 5, 12, 3, sub_vector_length=7, hash_bits=8),
]
CALIBRATION_IMAGES = range(0, 3)
HELD_OUT_IMAGES = range(100, 108)


def feature_maps(images: np.ndarray, h: int, w: int, cin: int, seed: int = 0) -> np.ndarray:
    """Images [B, 28, 28, 1] in [0, 1] -> int8 [B, h, w, cin]: a first layer's input (cin 1, the
    image's size) or a deeper one's (random 3x3 conv + ReLU + average pool), as the module says."""
    x = images.astype(np.float32)
    if cin > 1:
        rng = np.random.default_rng(seed + cin)
        wts = rng.normal(0.0, 1.0, (3, 3, x.shape[-1], cin)).astype(np.float32)
        p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        y = np.zeros(x.shape[:3] + (cin,), np.float32)
        for dy in range(3):
            for dx in range(3):
                y += p[:, dy:dy + x.shape[1], dx:dx + x.shape[2], :] @ wts[dy, dx]
        x = np.maximum(y + rng.normal(0.0, 0.1, cin).astype(np.float32), 0.0)
    f = x.shape[1] // h
    if f > 1:
        x = x[:, :h * f, :w * f].reshape(x.shape[0], h, f, w, f, cin).mean(axis=(2, 4))
    x = x[:, :h, :w]
    scale = float(x.max()) / 255.0 or 1.0
    return np.clip(np.round(x / scale) - 128, -128, 127).astype(np.int8)


def cases(layer: Layer, image_indices, seed: int = 0) -> list[KernelCase]:
    """The layer's KernelCase per test image (the first also runs the dense kernels)."""
    images = data.load_dataset("fashion_mnist").x_test[list(image_indices)]
    xs = feature_maps(images, layer.h, layer.w, layer.cin, seed)
    rng = np.random.default_rng(seed + 1000 * layer.cout + layer.k)
    kk = layer.k * layer.k * layer.cin
    wts = rng.integers(-127, 128, layer.filter_shape, dtype=np.int8)
    mult, shift = quant.quantize_multipliers(rng.uniform(0.5, 2.0, layer.cout) / (np.sqrt(kk) * 128 * 40))
    params = dict(input_zero_point=-128, output_zero_point=-128, output_multiplier=mult, output_shift=shift,
                  sub_vector_length=layer.sub_vector_length, hash_bits=layer.hash_bits, hash_center="mean",
                  stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                  activation_min=-128, activation_max=127)
    bias = rng.integers(-2000, 2000, layer.cout).astype(np.int32)
    hsh = rng.integers(-127, 128, (layer.sub_vector_length, layer.hash_bits), dtype=np.int8)
    return [KernelCase(f"{layer.name}_in{i}", np.ascontiguousarray(x[None]), wts, bias, hsh, dict(params),
                       dense=i == 0, note=f"Fashion-MNIST test image {idx}")
            for i, (x, idx) in enumerate(zip(xs, image_indices))]
