"""The models shipped in examples/pre_trained_models/ (issue 21): each loads, its Keras and .tflite
agree on the TREC layers, and its int8 accuracy on the first 1,000 test images equals the figure
recorded in its check.json. The figures were recorded on one route and the test runs the other: the
golden route (NumPy references for the convolutions) or host TFLM (our TREC_CONV_2D op, TFLM's kernels
for the rest). int8 inference is deterministic, so they must agree exactly.

Every subdirectory is a shipped model (a new one is checked without editing this file), each on the
data its check.json names; the whole directory stays under 25 MB. record.py ships a bench-models model
directory as well as a tune output: its report.json is the bench-models result, marked as such."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "examples" / "pre_trained_models"
# every subdirectory but the ones Python or record.py leave (hidden: record.py's half-built copy)
MODELS = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
FILES = ("trec.keras", "trec.tflite", "dense.tflite", "report.json", "check.json")
LIMIT = 25 * 1024 * 1024
# each zoo model's data: the 32x32x3 models on CIFAR-10 or its Fashion-MNIST stand-in
DATASETS = {"fashion_net": {"fashion_mnist"}}
DATASETS_32x32x3 = {"cifar10", "fashion_mnist_32x32x3"}


def _record_module():
    spec = importlib.util.spec_from_file_location("pretrained_record", ROOT / "record.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_shipped_models_within_the_size_limit():
    assert "fashion_net" in MODELS, f"fashion_net is not shipped in {ROOT}"
    total = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    assert total <= LIMIT, f"examples/pre_trained_models holds {total:,} B, over 25 MB"
    for m in MODELS:
        missing = [f for f in FILES if not (ROOT / m / f).is_file()]
        assert not missing, f"{m}: missing {missing}"


@pytest.mark.parametrize("name", MODELS)
def test_a_shipped_model_names_its_data_and_source(name):
    d = ROOT / name
    check, report = json.loads((d / "check.json").read_text()), json.loads((d / "report.json").read_text())
    assert check["dataset"] in DATASETS.get(name, DATASETS_32x32x3), f"{name}: check.json's {check['dataset']}"
    assert check["images"] == 1000 and set(check["correct"]) == {"trec", "dense"}
    if report.get("source") == "trec-tflm bench-models":
        assert report["dataset"] == check["dataset"] and report["model"] == name
        assert report["boards"], f"{name}: a bench-models report without measurements"
    else:  # a tune output as tune wrote it
        assert {"choice", "layers", "measured"} <= set(report), \
            f"{name}: report.json is neither tune's nor bench-models'"


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
    shape = tuple(keras_model.inputs[0].shape[1:])
    ds = data.load_dataset(check["dataset"], input_shape=shape)
    assert ds.x_test.shape[1:] == shape, f"{name}: {check['dataset']} images are {ds.x_test.shape[1:]}, not {shape}"
    n = check["images"]
    other = {"golden route": "tflm", "host TFLM route": "golden"}
    assert check["recorded_on"] in other, f"{name}: check.json recorded on {check['recorded_on']!r}"
    for kind in ("trec", "dense"):
        got = evaluate((d / f"{kind}.tflite").read_bytes(), ds.x_test[:n], ds.y_test[:n],
                       reference=other[check["recorded_on"]])
        assert got.correct == check["correct"][kind], f"{name} {kind}: {got.correct} of {n} correct"


def test_record_refuses_what_it_cannot_ship(tmp_path):
    record = _record_module()
    with pytest.raises(record.RecordError, match="is not a directory"):
        record.report_of(tmp_path / "nothing", None)
    for f in ("trec.keras", "trec.tflite", "dense.tflite", "report.json"):
        (tmp_path / f).write_text("{}")
    with pytest.raises(record.RecordError, match="tune output, whose report does not name the data: give --dataset"):
        record.report_of(tmp_path, None)
    (tmp_path / "report.json").unlink()
    with pytest.raises(record.RecordError, match=r"missing \['report.json'\] for a tune output and "
                                                 r"\['result.json', 'settings.json'\] for a bench-models"):
        record.report_of(tmp_path, None)
    (tmp_path / "settings.json").write_text("{}")
    (tmp_path / "result.json").write_text(json.dumps({"model": "cifarnet", "error": "boom"}))
    with pytest.raises(record.RecordError, match="not a finished bench-models result"):
        record.report_of(tmp_path, None)
    (tmp_path / "result.json").write_text(json.dumps({"model": "cifarnet", "dataset": "cifar10", "boards": {}}))
    with pytest.raises(record.RecordError, match="--dataset fashion_mnist_32x32x3: .* was measured on cifar10"):
        record.report_of(tmp_path, "fashion_mnist_32x32x3")


@pytest.mark.tflm
@pytest.mark.slow
def test_record_ships_a_bench_models_directory(tmp_path):
    """fashion_net's shipped files laid out as bench-models leaves a model (result.json and settings.json,
    no report.json): record.py ships them with the result as report.json, and its check.json counts
    the same correct images as the one recorded for fashion_net."""
    record = _record_module()
    src = tmp_path / "bench_models_out" / "fashion_net"
    src.mkdir(parents=True)
    for f in ("trec.keras", "trec.tflite", "dense.tflite"):
        shutil.copyfile(ROOT / "fashion_net" / f, src / f)
    result = {"model": "fashion_net", "dataset": "fashion_mnist", "accuracy_change_pt": -0.7,
              "trec": {"accuracy": 0.89, "test_images": 10000}, "dense": {"accuracy": 0.897, "test_images": 10000},
              "boards": {"qemu_m7": {"speedup": 3.2, "arena_ratio": 1.33}}, "settings": {"epochs": 10}}
    (src / "result.json").write_text(json.dumps(result))
    (src / "settings.json").write_text(json.dumps(result["settings"]))
    shipped = tmp_path / "shipped"
    check = record.record(src, "fashion_net", images=1000, root=shipped)
    d = shipped / "fashion_net"
    assert sorted(p.name for p in shipped.iterdir()) == ["fashion_net"]  # no half-built copy left beside it
    assert sorted(p.name for p in d.iterdir()) == sorted(FILES)
    assert json.loads((d / "report.json").read_text()) == {"source": "trec-tflm bench-models", **result}
    assert json.loads((d / "check.json").read_text()) == check
    assert check["dataset"] == "fashion_mnist" and check["images"] == 1000
    assert check["correct"] == json.loads((ROOT / "fashion_net" / "check.json").read_text())["correct"]
    for f in ("trec.tflite", "dense.tflite"):
        assert (d / f).read_bytes() == (src / f).read_bytes()
    # trec.keras: the same weights, without an optimizer's state
    from trec_tflm.training.saving import load_keras_model

    shipped_w = load_keras_model(d / "trec.keras").get_weights()
    source_w = load_keras_model(src / "trec.keras").get_weights()
    assert len(shipped_w) == len(source_w) and all((a == b).all() for a, b in zip(shipped_w, source_w))
    assert (d / "trec.keras").stat().st_size <= (src / "trec.keras").stat().st_size


def test_record_that_fails_leaves_the_shipped_model_as_it_was(tmp_path):
    record = _record_module()
    src = tmp_path / "out" / "cifarnet"
    src.mkdir(parents=True)
    for f in ("trec.keras", "trec.tflite", "dense.tflite", "settings.json"):
        (src / f).write_bytes(b"not a model")
    (src / "result.json").write_text(json.dumps({"model": "cifarnet", "dataset": "cifar10", "boards": {"b": {}}}))
    shipped = tmp_path / "shipped"
    (shipped / "cifarnet").mkdir(parents=True)
    (shipped / "cifarnet" / "trec.tflite").write_bytes(b"the shipped one")
    with pytest.raises(ValueError):
        record.record(src, "cifarnet", root=shipped)
    assert sorted(p.name for p in shipped.rglob("*")) == ["cifarnet", "trec.tflite"]
    assert (shipped / "cifarnet" / "trec.tflite").read_bytes() == b"the shipped one"
