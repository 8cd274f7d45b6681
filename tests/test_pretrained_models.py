"""The models shipped in examples/pre_trained_models/ (issue 21): each loads, its Keras and .tflite
agree on the TREC layers, and its int8 accuracy on the first 1,000 test images equals the figure
recorded in its check.json. The figures were recorded on the golden route (NumPy references for the
convolutions); the test runs the whole model in host TFLM (our TREC_CONV_2D op, TFLM's kernels for the
rest), another route: int8 inference is deterministic, so they must agree exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "examples" / "pre_trained_models"
MODELS = sorted(p.name for p in ROOT.iterdir() if (p / "check.json").is_file()) if ROOT.is_dir() else []
FILES = ("trec.keras", "trec.tflite", "dense.tflite", "report.json", "check.json")


def test_there_are_shipped_models_within_the_size_limit():
    assert MODELS, f"no model with a check.json in {ROOT}"
    total = sum(f.stat().st_size for m in MODELS for f in (ROOT / m).iterdir())
    assert total <= 25 * 1024 * 1024, f"examples/pre_trained_models holds {total:,} B, over 25 MB"
    for m in MODELS:
        missing = [f for f in FILES if not (ROOT / m / f).is_file()]
        assert not missing, f"{m}: missing {missing}"


@pytest.mark.tflm
@pytest.mark.parametrize("name", MODELS)
def test_a_shipped_model_loads_and_gives_its_recorded_accuracy(name):
    from trec_tflm import data
    from trec_tflm.host.evaluate import evaluate
    from trec_tflm.spec import model as tm
    from trec_tflm.spec.op import TREC_CUSTOM_CODE
    from trec_tflm.training.layers import trec_layers
    from trec_tflm.training.saving import load_keras_model

    d = ROOT / name
    check = json.loads((d / "check.json").read_text())
    keras_model = load_keras_model(d / "trec.keras")
    trec_ops = [op for op in tm.operators(tm.load_model((d / "trec.tflite").read_bytes()))
                if op.name == TREC_CUSTOM_CODE]
    assert sorted((layer.sub_vector_length, layer.hash_bits) for layer in trec_layers(keras_model)) == sorted(
        (op.trec_options["sub_vector_length"], op.trec_options["hash_bits"]) for op in trec_ops)
    ds = data.load_dataset(check["dataset"], input_shape=tuple(keras_model.inputs[0].shape[1:]))
    n = check["images"]
    for kind in ("trec", "dense"):
        got = evaluate((d / f"{kind}.tflite").read_bytes(), ds.x_test[:n], ds.y_test[:n], reference="tflm")
        assert got.correct == check["correct"][kind], f"{name} {kind}: {got.correct} of {n} correct"
