"""The model zoo's names and defaults: what ``trec-tflm train --model`` accepts and which
convolutions each model makes TREC with which (L, H). Kept apart from the builders
(trec_tflm.training.models) so the command line can list the models without loading Keras.
The accuracy each default keeps against its dense twin is measured in docs/BENCHMARKS.md."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ZooEntry:
    dataset: str
    default_trec: tuple[int, ...]
    default_l: tuple[int, ...]
    default_h: tuple[int, ...]


# Defaults: TREC on the large-kernel convolutions.
ZOO: dict[str, ZooEntry] = {
    # L = j * Cin with j dividing the kernel width lets the int8 kernel hash each input position
    # once (docs/OP_SPEC.md, "strip path"); H trades clusters (speed) against accuracy.
    "fashion_net": ZooEntry("fashion_mnist", (0, 1), (5, 32), (6, 8)),
    # CifarNet at H = 8: against a twin trained 10 epochs, H = 6 lost 1.85 pt even fine-tuned 10 epochs;
    # H = 8 (8 epochs) 0.95 pt at 4.16x fewer instructions than CMSIS-NN (docs/BENCHMARKS.md, bench-models)
    "cifarnet": ZooEntry("cifar10", (0, 1), (15, 64), (8, 8)),
    "zfnet": ZooEntry("cifar10", (0, 1), (21, 48), (6, 6)),
    # the CMSIS-NN example: conv3 dense (8x8 rows, 1.36x as TREC). Against a twin trained 10 epochs, 8
    # epochs of fine-tuning: H 8, 10 lose 1.84 pt at 2.81x fewer instructions than CMSIS-NN; H 8, 8
    # 2.62 pt at 3.13x; H 6 on all three (3 epochs) 3.85 pt at 3.20x (docs/BENCHMARKS.md, bench-models)
    "cmsisnn_cifar10": ZooEntry("cifar10", (0, 1), (15, 32), (8, 10)),
    # SqueezeNet's expand-3x3 at H = 5: as accurate as H = 6 in the 2-epoch runs, 20% fewer clusters
    "squeezenet": ZooEntry("cifar10", (0, 3, 6), (9, 16, 16), (6, 5, 5)),
    "squeezenet_complex": ZooEntry("cifar10", (0, 3, 7), (9, 16, 16), (6, 5, 5)),
    # ResNet-8: TREC on the stride-1 3x3 convs. At most 2^H clusters per sub-matrix, so rc <= 2^H / rows:
    # conv1 and stack 1 (32x32 rows) and stack 2's second conv (16x16) at H = 6 have rc <= 0.06 and
    # <= 0.25 whatever the data, where the cost model (trec_tflm.tune.cost) predicts 2.9-3.8x fewer
    # instructions than CMSIS-NN; measured on QEMU (docs/BENCHMARKS.md, "Whole models") 2.9-4.1x.
    # Stack 3's second conv has 64 rows: H = 5 keeps rc <= 0.5 (0.34 measured, 2.7x). Dense: the
    # strided convs (no incremental sums: stack 2's first measured 1.1x as TREC), stack 3's first
    # (strided, 64 rows) and the 1x1 shortcuts (2% of the MACs).
    "resnet8": ZooEntry("cifar10", (0, 1, 2, 4, 7), (9, 16, 16, 32, 64), (6, 6, 6, 6, 5)),
}
# the paper's scripts' spellings
ALIASES = {"CifarNet": "cifarnet", "ZfNet": "zfnet", "SqueezeNet": "squeezenet",
           "SqueezeNet_complex": "squeezenet_complex", "SqueezeNetComplex": "squeezenet_complex"}


def model_names() -> list[str]:
    return sorted(ZOO)
