"""trec-tflm inspect and eval: the report's numbers by hand, the golden op-by-op executor against
TFLM running the whole model (DAG included), routes and their errors, refused model files."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")

import keras  # noqa: E402
from flatbuffers import flexbuffers  # noqa: E402

from trec_tflm.cli import main
from trec_tflm.host import evaluate as ev
from trec_tflm.spec import model as tm
from trec_tflm.tflite.convert import convert
from trec_tflm.tflite.describe import inspect_model
from trec_tflm.training.layers import TRECConv2D
from trec_tflm.training.models import dense_twin


def fire_model():
    """Stem conv, fire module (squeeze TREC, expand 1x1 plain | expand 3x3 TREC, concat), identity
    bypass (add), pool, dense: a DAG with a split, a concatenation and a join."""
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="stem")(inp)
    s = TRECConv2D(4, 1, activation="relu", sub_vector_length=8, hash_bits=4, name="squeeze")(x)
    e1 = keras.layers.Conv2D(8, 1, activation="relu", name="expand1x1")(s)
    e3 = TRECConv2D(8, 3, padding="same", activation="relu", sub_vector_length=12, hash_bits=6, name="expand3x3")(s)
    y = keras.layers.Add(name="bypass")([x, keras.layers.Concatenate(name="concat")([e1, e3])])
    y = keras.layers.MaxPooling2D(2)(y)
    y = keras.layers.Flatten()(y)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(y), name="fire")


@pytest.fixture(scope="module")
def fm():
    from trec_tflm.data import load_fashion_mnist

    try:
        return load_fashion_mnist()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def fire(fm):
    keras.utils.set_random_seed(4)
    model = fire_model()
    buf = convert(model, fm.x_train[:48], calibration_samples=48, labels=fm.labels)
    twin_buf = convert(dense_twin(model), fm.x_train[:48], calibration_samples=48)
    return model, buf, twin_buf


def _glue_available() -> bool:
    return bool(os.environ.get("TFLM_ROOT") or os.environ.get("TREC_TFLM_OPS_LIB"))


# ------------------------------------------------------------------------------------------------
# inspect
# ------------------------------------------------------------------------------------------------
def test_inspect_numbers_by_hand(fire):
    model, buf, _ = fire
    rep = inspect_model(buf, measure=False)
    meta = tm.read_metadata(tm.load_model(buf))
    rcs = {e["name"]: e["rc"] for e in meta["trec_layers"]}
    layers = {t["name"]: t for t in rep["trec_layers"]}
    assert set(layers) == {"squeeze", "expand3x3"}
    # squeeze: 1x1 over 16 channels on 14x14 -> 4 channels; expand3x3: 3x3 over 4 -> 8, SAME
    for name, (k, cout, n, length, bits) in {"squeeze": (16, 4, 196, 8, 4),
                                             "expand3x3": (36, 8, 196, 12, 6)}.items():
        t = layers[name]
        assert (t["K"], t["rows"], t["sub_vector_length"], t["hash_bits"]) == (k, n, length, bits)
        assert t["M"] == math.ceil(k / length)
        assert t["dense_macs"] == n * k * cout
        rc = rcs[name]
        assert t["rc"] == rc and 0 < rc <= 1
        w = t["trec_work"]
        assert w["hash_macs"] == n * k * bits
        assert w["centroid_adds"] == n * k
        assert w["scatter_adds"] == n * math.ceil(k / length) * cout
        assert w["cluster_product_macs"] == round(rc * n * k * cout)
        assert w["total"] == w["hash_macs"] + w["centroid_adds"] + w["scatter_adds"] + w["cluster_product_macs"]
        # filter int8 + bias int32 + hash int8
        assert t["weight_bytes"] == cout * k + 4 * cout + length * bits
    # the kernel's strip path takes L = j*Cin with j dividing the kernel width: a 1x1 over 16
    # channels only L = 16 (its L = 8 is general), a 3x3 over 4 channels L = 4 or 12 (its L)
    assert layers["squeeze"]["kernel"] == {"path": "general", "strip_lengths": [16]}
    assert layers["expand3x3"]["kernel"] == {"path": "strip", "strip_lengths": [4, 12]}
    assert {c["op"] for c in rep["other_convs"]} == {"CONV_2D"}
    stem = [c for c in rep["other_convs"] if c["macs"] == 196 * 9 * 16]
    assert len(stem) == 1
    assert "TREC_CONV_2D" in rep["operator_codes"]
    assert rep["metadata"]["labels"][0] == "T-shirt/top"


def test_inspect_without_rc_says_unknown(fire):
    _, buf, _ = fire
    m = tm.load_model(buf)
    meta = tm.read_metadata(m)
    for e in meta["trec_layers"]:
        e["rc"] = None
    tm.write_metadata(m, meta)
    rep = inspect_model(tm.save_model(m), measure=False)
    for t in rep["trec_layers"]:
        assert t["rc"] == "unknown"
        assert t["trec_work"]["cluster_product_macs"] is None and t["trec_work"]["total"] is None
    assert rep["totals"]["conv_work_trec"] == "unknown"


def test_inspect_cli_json_and_arena(fire, tmp_path, capsys):
    _, buf, twin_buf = fire
    p = tmp_path / "fire.tflite"
    p.write_bytes(buf)
    assert main(["inspect", str(p), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [(t["name"], t["sub_vector_length"], t["hash_bits"]) for t in rep["trec_layers"]] == \
        [("squeeze", 8, 4), ("expand3x3", 12, 6)]
    ops = rep["operators"]
    trec_op = ops[rep["trec_layers"][0]["operator_index"]]
    assert trec_op["op"] == "TREC_CONV_2D" and trec_op["trec_options"]["version"] == 1
    assert [i["dtype"] for i in trec_op["inputs"]] == ["int8", "int8", "int32", "int8"]
    if not _glue_available():
        assert rep["arena"]["bytes"] is None and "TREC_CONV_2D" in rep["arena"]["how"]
    # a model without TREC ops: TFLM measures its arena
    q = tmp_path / "twin.tflite"
    q.write_bytes(twin_buf)
    assert main(["inspect", str(q), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["trec_layers"] == [] and rep["arena"]["bytes"] > 14 * 14 * 16
    assert main(["inspect", str(p)]) == 0
    text = capsys.readouterr().out
    assert "TREC_CONV_2D layers:" in text and "squeeze: L=8 H=4" in text


# ------------------------------------------------------------------------------------------------
# the golden executor
# ------------------------------------------------------------------------------------------------
def test_golden_executor_equals_tflm_on_a_dag(fire, fm):
    """On the dense twin (no TREC ops) TFLM runs the whole graph: the op-by-op executor must give the
    same bits, with CONV_2D in golden.conv2d_s8 and with CONV_2D in TFLM."""
    _, _, twin_buf = fire
    whole = ev.make_runner(twin_buf, "auto")
    assert isinstance(whole, ev.WheelRunner)
    gold = ev.GoldenGraphRunner(twin_buf)
    gold_tflm_conv = ev.GoldenGraphRunner(twin_buf, conv="tflm")
    assert any(isinstance(s, ev._TrecStep) and s.kind == "conv" for s in gold.steps)
    x = whole.prepare_input(fm.x_test[:6])
    a, b, c = whole.predict(x), gold.predict(x), gold_tflm_conv.predict(x)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert np.unique(a).size > 5


def test_golden_executor_runs_trec_ops_in_golden(fire, fm):
    """The TREC model's intermediate tensors: each TREC op's output is golden.trec_conv2d_s8 of its
    input, and the run matches the float Keras model's predictions on most images."""
    from trec_tflm.spec import golden

    model, buf, _ = fire
    runner = ev.make_runner(buf, "golden")
    assert runner.route == "golden"
    x = runner.prepare_input(fm.x_test[:40])
    outs = []
    for xi in x:
        values = runner.invoke_all(xi[None])
        for step in runner.steps:
            if isinstance(step, ev._TrecStep) and step.kind == "trec":
                p = step.params
                want = golden.trec_conv2d_s8(values[p["input_index"]], p["filter"], p["bias"], p["hash"],
                                             **p["kwargs"])
                np.testing.assert_array_equal(values[p["output_index"]], want)
        outs.append(values[runner._out_indices[0]].ravel())
    logits = model.predict(fm.x_test[:40], verbose=0)
    agree = np.mean(np.argmax(np.stack(outs), 1) == np.argmax(logits, 1))
    assert agree >= 0.8, agree
    assert set(runner.reuse_rates()) == {e["operator_index"] for e in tm.read_metadata(runner.model)["trec_layers"]}


def test_routes(fire):
    _, buf, twin_buf = fire
    notes = []
    r = ev.make_runner(buf, "auto", notes=notes)
    if _glue_available():
        assert r.route == "tflm"
    else:
        assert r.route == "golden" and notes and "golden route" in notes[0]
        with pytest.raises(ev.RunnerUnavailable, match="TFLM"):
            ev.make_runner(buf, "tflm")
    assert ev.make_runner(twin_buf, "golden").route == "golden"
    with pytest.raises(ValueError, match="reference must be one of"):
        ev.make_runner(buf, "fast")


@pytest.mark.tflm
def test_tflm_glue_equals_golden_route(fire, fm):
    _, buf, _ = fire
    t, g = ev.make_runner(buf, "tflm"), ev.make_runner(buf, "golden")
    x = g.prepare_input(fm.x_test[:20])
    np.testing.assert_array_equal(t.predict(x), g.predict(x))


# ------------------------------------------------------------------------------------------------
# eval CLI and refused model files
# ------------------------------------------------------------------------------------------------
def test_eval_cli(fire, tmp_path, capsys):
    _, buf, twin_buf = fire
    p = tmp_path / "fire.tflite"
    p.write_bytes(buf)
    assert main(["eval", str(p), "--limit", "30", "--reference", "golden", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["images"] == 30 and res["route"] == "golden" and 0 <= res["accuracy"] <= 1
    assert res["correct"] == round(res["accuracy"] * 30)
    assert set(res["reuse_rates"]) == {"squeeze", "expand3x3"}
    q = tmp_path / "twin.tflite"
    q.write_bytes(twin_buf)
    assert main(["eval", str(q), "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "int8 accuracy:" in out and "(tflite-micro interpreter" in out and "/5 fashion_mnist" in out


def _with_options(buf: bytes, change) -> bytes:
    m = tm.load_model(buf)
    for op in m.subgraphs[0].operators:
        if tm.is_trec(m, op):
            opts = tm.decode_trec_options(tm.custom_options_bytes(op))
            change(opts)
            op.customOptions = np.frombuffer(bytes(flexbuffers.Dumps(opts)), np.uint8).copy()
            break
    return tm.save_model(m)


@pytest.mark.parametrize("what,change,message", [
    ("version", lambda o: o.update(version=7), "unknown TREC_CONV_2D version 7; this build supports 1"),
    ("missing", lambda o: o.pop("hash_center"), "custom option 'hash_center' is missing"),
    ("type", lambda o: o.update(hash_bits="8"), "custom option 'hash_bits' must be an int"),
])
def test_bad_trec_options_refused(fire, tmp_path, capsys, what, change, message):
    _, buf, _ = fire
    p = tmp_path / f"{what}.tflite"
    p.write_bytes(_with_options(buf, change))
    for argv in (["inspect", str(p)], ["eval", str(p), "--limit", "1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err, err


def test_not_a_tflite_file(tmp_path, capsys):
    p = tmp_path / "junk.tflite"
    p.write_bytes(b"PK\x03\x04 definitely not a flatbuffer")
    for argv in (["inspect", str(p)], ["eval", str(p)]):
        assert main(argv) == 2
        assert "is not a TFLite flatbuffer" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "absent.tflite")]) == 2
    assert "no such file" in capsys.readouterr().err
