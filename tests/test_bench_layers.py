"""bench-models' per-layer rows (trec_tflm.bench.layers): each convolution named in the converted graph,
with its shape, and its share of the profiled instructions.

Golden facts are the architectures (trec_tflm.training.models' docstrings: fashion_net is conv5x5
1->32 on 28x28, pool, conv5x5 32->64 on 14x14; CifarNet conv5x5 3->64 on 32x32, pool, conv5x5 64->64
on 16x16) and hand-made profiles."""

from pathlib import Path

import pytest

from trec_tflm.bench import layers
from trec_tflm.spec import model as tm

SHIPPED = Path(__file__).resolve().parents[1] / "examples" / "pre_trained_models"


@pytest.mark.parametrize("model, file, expected", [
    # the shipped fashion_net: conv1 dense (a CONV_2D named by its tensor), conv2 TREC (named by metadata)
    ("fashion_net", "trec.tflite", {"conv1": (0, [5, 5], 1, 32, [28, 28]), "conv2": (2, [5, 5], 32, 64, [14, 14])}),
    ("fashion_net", "dense.tflite", {"conv1": (0, [5, 5], 1, 32, [28, 28]), "conv2": (2, [5, 5], 32, 64, [14, 14])}),
    ("cifarnet", "trec.tflite", {"conv1": (0, [5, 5], 3, 64, [32, 32]), "conv2": (2, [5, 5], 64, 64, [16, 16])}),
])
def test_each_convolution_is_found_with_its_shape(model, file, expected):
    found = layers.conv_ops(tm.load_model(SHIPPED / model / file), ["conv1", "conv2", "absent"])
    assert {k: (v["op"], v["kernel"], v["cin"], v["cout"], v["rows"]) for k, v in found.items()} == expected
    assert all(v["stride"] == [1, 1] for v in found.values())


def test_a_layer_is_not_taken_for_another_whose_name_it_begins():
    # "conv" must not claim conv1's operator, nor "conv1_bn" (a name in the fused tensor) a convolution
    found = layers.conv_ops(tm.load_model(SHIPPED / "fashion_net" / "dense.tflite"), ["conv", "conv1_bn", "conv2"])
    assert set(found) == {"conv2"}


BOARDS = {"qemu_m7": {"ops": [
    {"index": 0, "trec": 100.0, "dense": 400.0},
    {"index": 1, "trec": 50.0, "dense": 50.0},
    {"index": 2, "trec": 30.0, "dense": 30.0},
    {"index": 3, "trec": 20.0, "dense": 20.0},
]}}


def test_instructions_and_share_of_the_twin():
    trec = {"name": "a", "kind": "TREC", "L": 9, "H": 6, "rc": 0.05, "op": 0, "kernel": [3, 3], "stride": [1, 1],
            "cin": 16, "cout": 16, "rows": [32, 32]}
    dense = {"name": "b", "kind": "dense", "op": 2, "kernel": [1, 1], "stride": [2, 2], "cin": 16, "cout": 32,
             "rows": [16, 16]}
    # the twin's total is 400 + 50 + 30 + 20 = 500
    assert layers.instructions(trec, BOARDS) == {"qemu_m7": {"trec": 100.0, "dense": 400.0, "share": 0.8}}
    assert layers.describe(trec, BOARDS) == ("a TREC (L=9, H=6, rc=0.050), 3x3 16->16, 32x32 output rows: qemu_m7 "
                                             "100 vs 400 dense (4.00x fewer, 80.0% of the twin)")
    # a layer grown into the arena's free room (target.arena.grow_scratch) says its scratch
    assert layers.describe({**trec, "scratch_budget": 98304}, BOARDS).startswith(
        "a TREC (L=9, H=6, rc=0.050), 3x3 16->16, 32x32 output rows, scratch 98,304 B: qemu_m7 100 vs 400")
    assert layers.describe({**dense, "why": "too small"}, BOARDS) == (
        "b dense, 1x1 stride 2 16->32, 16x16 output rows: qemu_m7 30 (6.0% of the twin); why: too small")


def test_a_row_without_its_operator_says_what_it_knows():
    row = {"name": "conv1", "kind": "dense"}
    assert layers.instructions(row, BOARDS) == {}
    assert layers.describe(row, BOARDS) == "conv1 dense"
