"""trec_tflm.tune.measure (issue 20): the tuner's result and the dense input model measured on the emulated
board, per model and per convolution, and the report's measured columns.

The emulated test runs a tiny net on 16x16 Fashion-MNIST crops (3x3 conv 1 -> 16 "spatial", made TREC,
max-pool, 3x3 conv 16 -> 8 "mix", kept dense, a Dense head) so both firmware builds and QEMU runs are quick.
Its golden numbers come from an independent run of the same firmware through ``run_bench`` and from the
physics of the pair: the dense conv is the same operator with the same weights and quantization in both
models, so CMSIS-NN executes the same instructions for it in each."""

from __future__ import annotations

import os

import numpy as np
import pytest

from trec_tflm import data

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

N_IMAGES = 3


def _images(n):
    ds = data.load_dataset("fashion_mnist")
    return ds.x_train[:n, 6:22, 6:22].copy(), ds.x_test[:N_IMAGES, 6:22, 6:22].copy()


@pytest.fixture(scope="module")
def pair():
    import keras

    from trec_tflm.tflite.convert import convert
    from trec_tflm.training.transform import to_trec

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 1), name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="spatial")(inp)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="mix")(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(h), name="measure_net")
    calib, x_test = _images(64)
    dense = convert(model, calib, calibration_samples=len(calib))
    trec = convert(to_trec(model, layers=["spatial"]), calib, calibration_samples=len(calib))
    return trec, dense, x_test


@pytest.fixture(scope="module")
def measured(pair):
    from trec_tflm.tune import measure

    trec, dense, x_test = pair
    doc, why = measure.measure(trec, dense, x_test, core="m7", images=N_IMAGES, layers=["spatial", "mix"],
                               log=print)
    assert why is None, why
    return doc


def _bench_again(tflite: bytes, name: str, x_test):
    """The same firmware (the cached project of compare.firmware_for) run again through run_bench alone."""
    from trec_tflm.bench.board import run_bench
    from trec_tflm.bench.compare import firmware_for
    from trec_tflm.spec import quant
    from trec_tflm.target import qemu
    from trec_tflm.target.serial_protocol import EEMBCClient

    fw = firmware_for(tflite, "qemu_m7", name=name)
    with qemu.start_qemu_serial(fw.elf, "qemu_m7") as handle, EEMBCClient(handle.url) as client:
        client.identify()
        info = client.info()
        q = quant.quantize_input(x_test, info.input_scale, info.input_zero_point).reshape(len(x_test), -1)
        return run_bench(handle.url, list(q), client=client)


@pytest.mark.tflm
@pytest.mark.qemu
@pytest.mark.slow
def test_whole_network_counts_equal_an_independent_bench_run(pair, measured):
    trec, dense, x_test = pair
    assert measured["board"] == "qemu_m7" and measured["images"] == N_IMAGES
    assert measured["unit"] == "instructions"
    for tflite, name, kind in ((trec, "tune_trec", "trec"), (dense, "tune_dense", "dense")):
        res = _bench_again(tflite, name, x_test)
        assert measured[f"{kind}_instructions"] == float(np.median(res.ticks))
    assert measured["speedup"] == measured["dense_instructions"] / measured["trec_instructions"]


@pytest.mark.tflm
@pytest.mark.qemu
@pytest.mark.slow
def test_per_layer_counts_are_the_right_operators_and_add_up(measured):
    rows = {r["layer"]: r for r in measured["per_layer"]}
    assert list(rows) == ["spatial", "mix"] and measured["per_layer_why"] is None
    assert rows["spatial"]["trec_op"].startswith("TREC_CONV_2D #") and rows["spatial"]["dense_op"].startswith(
        "CONV_2D #")
    assert rows["mix"]["trec_op"].startswith("CONV_2D #") and rows["mix"]["dense_op"].startswith("CONV_2D #")
    # "mix" is the same CONV_2D in both models (TREC changes no other layer's weights or quantization)
    assert rows["mix"]["trec_instructions"] == rows["mix"]["dense_instructions"] > 0
    assert rows["spatial"]["trec_instructions"] != rows["spatial"]["dense_instructions"]
    for kind in ("trec", "dense"):
        convs = sum(r[f"{kind}_instructions"] for r in rows.values())
        # the operators are part of the inference; the whole adds the interpreter's own work
        assert 0 < convs < measured[f"{kind}_ops_sum"] <= measured[f"{kind}_mean_instructions"]


# ------------------------------------------------------------------------------------------------
# no emulator here: None and why, never an exception
# ------------------------------------------------------------------------------------------------
def test_without_the_toolchain_it_says_why_and_measures_nothing(monkeypatch):
    from trec_tflm.tune import measure

    monkeypatch.setattr(measure.tflm_build, "check_tflm_tree", lambda: None)
    monkeypatch.setattr(measure.toolchain, "skip_reason",
                        lambda **_: "arm-none-eabi-gcc not found: install gcc-arm-none-eabi")

    def no_run(*_a, **_k):
        raise AssertionError("nothing may be built or run without the toolchain")

    monkeypatch.setattr(measure, "compare_on_qemu", no_run)
    doc, why = measure.measure(b"not read", b"not read", np.zeros((4, 16, 16, 1), np.float32), core="m7")
    assert doc is None and "arm-none-eabi-gcc not found" in why


def test_without_the_tflm_tree_it_says_why(monkeypatch):
    from trec_tflm.tune import measure

    monkeypatch.delenv("TFLM_ROOT", raising=False)
    doc, why = measure.measure(b"", b"", np.zeros((2, 16, 16, 1), np.float32), core="m7")
    assert doc is None and "TFLM_ROOT" in why


def test_zero_images_turn_it_off_in_the_report():
    from trec_tflm.tune import measure

    part = measure.for_report(b"", b"", test=None, validation=(np.zeros((5, 4, 4, 1)), None), core="m7",
                              images=0, layers=[], log=print)
    assert part["measured"] is None and "--measure-images 0" in part["measured_why"]


def test_a_failed_build_is_a_reason_not_a_crash(monkeypatch):
    from trec_tflm.target.errors import FirmwareError
    from trec_tflm.tune import measure

    monkeypatch.setattr(measure, "why_not", lambda core: None)

    def failing(*_a, **_k):
        raise FirmwareError("building firmware failed (log: make.log)")

    monkeypatch.setattr(measure, "compare_on_qemu", failing)
    doc, why = measure.measure(b"", b"", np.zeros((2, 16, 16, 1), np.float32), core="m7")
    assert doc is None and "make.log" in why


def test_the_table_shows_measured_columns_and_the_measured_whole():
    from trec_tflm.tune import report

    doc = {"core": "m7", "layers": [
        {"layer": "conv1", "choice": "trec", "L": 5, "H": 8, "rc": 0.25, "trec_instructions": 1000.0,
         "dense_instructions": 4000.0, "scratch_bytes": 512},
        {"layer": "conv2", "choice": "dense", "L": None, "H": None, "rc": None, "trec_instructions": None,
         "dense_instructions": 3000.0, "scratch_bytes": None}],
        "predicted": {"trec_instructions": 4000.0, "dense_instructions": 7000.0, "speedup": 1.75},
        "measured": {"board": "qemu_m7", "images": 20, "images_from": "test", "trec_instructions": 5100.0,
                     "dense_instructions": 8200.0, "speedup": 8200 / 5100, "per_layer": [
                         {"layer": "conv1", "trec_instructions": 1234.0, "dense_instructions": 4321.0},
                         {"layer": "conv2", "trec_instructions": 2999.0, "dense_instructions": 2999.0}]},
        "other_ops": "-", "arena_bytes": {"trec": 1, "dense": 1, "budget": 2, "budget_from": "x"},
        "flash_bytes": {"trec": 1, "dense": 1}, "validation_accuracy": {"trec": 0.5, "dense": 0.5},
        "validation_images": 10, "fine_tuned": 1, "reused": 0, "seconds": 1.0}
    lines = report.table(doc).splitlines()
    conv1 = next(line for line in lines if line.startswith("conv1"))
    assert conv1.split()[5:10] == ["1,000", "4,000", "1,234", "4,321", "512"]
    conv2 = next(line for line in lines if line.startswith("conv2"))
    assert conv2.split()[5:9] == ["-", "3,000", "2,999", "2,999"]
    assert any("measured, qemu_m7, median of 20 test images" in line and "5,100 vs dense 8,200" in line
               and "1.61x" in line for line in lines)
    doc["measured"] = None
    doc["measured_why"] = "not measured: the TFLM tree is missing"
    text = report.table(doc)
    assert "whole network (measured): not measured: the TFLM tree is missing" in text
