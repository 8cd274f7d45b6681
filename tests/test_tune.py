"""trec-tflm tune / trec_tflm.tune (issue 20): where TREC pays, the report against the written files,
resumability, and every bad input refused before anything is written.

The tiny model, on 16x16 Fashion-MNIST crops: a 3x3 conv 1 -> 64 (the image's flat regions cluster, and
64 output channels share each cluster's work: TREC pays), then a 1x1 conv 64 -> 1 named "squeeze", where
TREC cannot pay whatever the input: hashing alone costs H/2 dual multiply-accumulates per input element
(H >= 5 in the search) where the dense kernel needs 1/2 (one output channel), rc = 0 or not."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from trec_tflm import data

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _images(n=300):
    ds = data.load_dataset("fashion_mnist")
    return ds.x_train[:n, 6:22, 6:22].copy(), ds.y_train[:n].copy(), ds.x_test[:60, 6:22, 6:22], ds.y_test[:60]


def _tiny_model(fit=True, x=None, y=None):
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 1), name="image")
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="spatial")(inp)
    h = keras.layers.Conv2D(1, 1, activation="relu", name="squeeze")(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(h), name="tiny_net")
    if fit:
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=1, verbose=0, batch_size=32)
    return model


# ------------------------------------------------------------------------------------------------
# bad input: a clear error, nothing in OUT
# ------------------------------------------------------------------------------------------------
def test_refuses_negative_max_drop(tmp_path):
    from trec_tflm.tune.run import TuneError, tune

    x, y, _, _ = _images(40)
    with pytest.raises(TuneError, match="--max-drop must be >= 0"):
        tune(_tiny_model(fit=False), (x, y), max_drop=-0.5, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_a_model_without_convolutions(tmp_path):
    import keras

    from trec_tflm.tune.run import TuneError, tune

    x, y, _, _ = _images(40)
    inp = keras.Input((16, 16, 1))
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(inp)), name="mlp")
    with pytest.raises(TuneError, match="no Conv2D layer"):
        tune(model, (x, y), out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_data_of_another_shape(tmp_path):
    from trec_tflm.tune.run import TuneError, tune

    ds = data.load_dataset("fashion_mnist")
    with pytest.raises(TuneError, match=r"shape \(28, 28, 1\) but model 'tiny_net' takes \(16, 16, 1\)"):
        tune(_tiny_model(fit=False), (ds.x_train[:40], ds.y_train[:40]), out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_a_budget_even_the_dense_model_misses(tmp_path):
    from trec_tflm.target.arena import estimate_arena
    from trec_tflm.tflite.convert import convert
    from trec_tflm.tune.run import TuneError, tune

    x, y, _, _ = _images(60)
    model = _tiny_model(fit=False)
    need = estimate_arena(convert(model, x[:50], calibration_samples=50)).total
    with pytest.raises(TuneError) as err:
        tune(model, (x, y), arena_budget=need - 100, out=tmp_path / "out")
    # independent of tune: the shortfall is the dense arena minus the budget
    assert "by 100 B" in str(err.value) and "operator" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_file_that_is_not_a_model(tmp_path, capsys):
    from trec_tflm import cli

    bad = tmp_path / "model.keras"
    bad.write_bytes(b"not a zip archive")
    assert cli.main(["tune", str(bad), "--dataset", "fashion_mnist", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trec-tflm tune: error:") and "\n" not in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------
# a whole run on the tiny model
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    from trec_tflm.tune import run

    out = tmp_path_factory.mktemp("tune") / "out"
    x, y, xt, yt = _images()
    model = _tiny_model(x=x, y=y)
    fits = []
    original = run._fine_tune

    def counting(*args, **kwargs):
        fits.append(args[1].name)
        return original(*args, **kwargs)

    run._fine_tune = counting
    try:
        first = run.tune(model, (x, y), test_data=(xt, yt), out=out, max_drop=100.0, max_settings=1,
                         measure_images=0)
        n_first = len(fits)
        second = run.tune(model, (x, y), test_data=(xt, yt), out=out, max_drop=100.0, max_settings=1,
                          measure_images=0)
    finally:
        run._fine_tune = original
    return out, first, second, n_first, len(fits), (xt, yt), model


@pytest.mark.tflm
@pytest.mark.slow
def test_keeps_dense_where_trec_does_not_pay_and_takes_it_where_it_does(tuned):
    from trec_tflm.spec import model as tm
    from trec_tflm.spec.op import TREC_CUSTOM_CODE

    out, first, *_ = tuned
    rows = {r["layer"]: r for r in first["layers"]}
    assert rows["squeeze"]["choice"] == "dense" and "does not pay" in rows["squeeze"]["why"]
    assert rows["spatial"]["choice"] == "trec"
    cands = {c["layer"]: c for c in first["candidates"]}
    assert all(c["trec_instructions"] >= c["dense_instructions"] for c in cands["squeeze"]["candidates"])
    # the written model agrees: one TREC op, with the report's (L, H)
    m = tm.load_model((out / "trec.tflite").read_bytes())
    trec_ops = [op for op in tm.operators(m) if op.name == TREC_CUSTOM_CODE]
    assert len(trec_ops) == 1
    options = trec_ops[0].trec_options
    assert (options["sub_vector_length"], options["hash_bits"]) == (rows["spatial"]["L"], rows["spatial"]["H"])
    assert options["sub_vector_length"] in (1, 3)  # a strip length j * Cin of a 3-wide kernel, Cin = 1
    dense = tm.load_model((out / "dense.tflite").read_bytes())
    assert not any(op.name == TREC_CUSTOM_CODE for op in tm.operators(dense))


@pytest.mark.tflm
@pytest.mark.slow
def test_report_matches_the_written_files(tuned):
    from trec_tflm.host.evaluate import evaluate
    from trec_tflm.target.arena import estimate_arena

    out, first, _, _, _, (xt, yt), _ = tuned
    doc = json.loads((out / "report.json").read_text())
    for kind in ("trec", "dense"):
        buf = (out / f"{kind}.tflite").read_bytes()
        assert doc["flash_bytes"][kind] == len(buf)
        assert doc["arena_bytes"][kind] == estimate_arena(buf).total
        # another route: the whole model in TFLM (the report's goes through the golden references)
        assert doc["test_accuracy"][kind] == evaluate(buf, xt, yt, reference="tflm").accuracy
    assert doc["arena_bytes"]["trec"] <= doc["arena_bytes"]["budget"]
    assert (out / "trec.keras").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]
    layers = sum(r["trec_instructions"] or r["dense_instructions"] for r in doc["layers"])
    assert doc["predicted"]["trec_instructions"] >= layers  # other ops add, never subtract


@pytest.mark.tflm
@pytest.mark.slow
def test_a_rerun_reuses_the_fine_tuned_settings(tuned):
    _, first, second, n_first, n_total, _, model = tuned
    assert n_first == 1 and n_total == 1  # the second run fitted nothing
    assert second["reused"] == 1 and second["fine_tuned"] == 0
    assert second["choice"] == first["choice"]
    assert np.isclose(second["validation_accuracy"]["trec"], first["validation_accuracy"]["trec"])
    # distillation freezes its teacher, the input model: tune must leave it trainable (the next
    # setting's to_trec copies the flag, and a frozen student does not learn)
    assert model.trainable and all(layer.trainable for layer in model.layers)


def test_takes_a_tf_data_dataset_batched_or_not():
    import tensorflow as tf

    from trec_tflm.tune.run import TuneError, as_arrays

    x, y, _, _ = _images(30)
    for ds in (tf.data.Dataset.from_tensor_slices((x, y)), tf.data.Dataset.from_tensor_slices((x, y)).batch(7)):
        ax, ay = as_arrays(ds, "train_data")
        assert np.array_equal(ax, x) and np.array_equal(ay, y)
    with pytest.raises(TuneError, match="pair"):
        as_arrays(x, "train_data")


@pytest.mark.tflm
def test_a_setting_no_scratch_plan_fits_is_skipped_and_the_dense_model_kept(tmp_path):
    from trec_tflm.host import kernels as native
    from trec_tflm.spec import model as tm
    from trec_tflm.spec.op import TREC_CUSTOM_CODE
    from trec_tflm.target.arena import estimate_arena
    from trec_tflm.tflite.convert import convert
    from trec_tflm.tune.run import tune

    x, y, _, _ = _images(100)
    model = _tiny_model(fit=False)
    dense_arena = estimate_arena(convert(model, x[:50], calibration_samples=50)).total
    # the TREC conv's least scratch (trec_convolve_s8_get_min_buffer_size, over 2 KB at every (L, H)
    # of the search) sits at the arena's peak, with its 16 KB output: it cannot fit in 1 KiB more
    least = min(native.kernels("host").trec_buffer_sizes((1, 16, 16, 1), (64, 3, 3, 1), sub_vector_length=length,
                                                         hash_bits=bits)[1] for length in (1, 3) for bits in (5, 8))
    assert least > 2048
    doc = tune(model, (x, y), arena_budget=dense_arena + 1024, out=tmp_path / "out", max_settings=1,
               measure_images=0)
    (tried,) = doc["settings_tried"]
    assert tried["status"] == "over_budget"
    assert "'spatial'" in tried["why"] and f"over the budget of {dense_arena + 1024:,} B" in tried["why"]
    assert re.search(r"\) by [1-9][\d,]* B", tried["why"])
    assert doc["fine_tuned"] == 0 and doc["choice"]["choice"] == {} and "over_budget" in doc["why"]
    m = tm.load_model((tmp_path / "out" / "trec.tflite").read_bytes())
    assert not any(op.name == TREC_CUSTOM_CODE for op in tm.operators(m))


def test_trec_tflm_tune_is_callable_after_its_package_is_imported(tmp_path):
    # importing any tune module binds the package to trec_tflm.tune: the package must be the call
    import trec_tflm
    import trec_tflm.tune.search  # noqa: F401
    from trec_tflm.tune.run import TuneError

    x, y, _, _ = _images(40)
    with pytest.raises(TuneError, match="--max-drop must be >= 0"):
        trec_tflm.tune(_tiny_model(fit=False), (x, y), max_drop=-0.5, out=tmp_path / "out")


@pytest.mark.tflm
def test_a_result_the_board_counts_slower_is_replaced_by_the_input_model(tmp_path, monkeypatch):
    # the board's count overrules the cost model: a TREC result measured slower is never returned
    from trec_tflm.spec import model as tm
    from trec_tflm.spec.op import TREC_CUSTOM_CODE
    from trec_tflm.tune import measure, run

    counted = {"core": "m7", "board": "qemu_m7", "images": 3, "images_from": "test", "unit": "instructions",
               "trec_instructions": 1100.0, "dense_instructions": 1000.0, "speedup": 1000 / 1100, "per_layer": [],
               "per_layer_why": None}
    monkeypatch.setattr(measure, "for_report", lambda *a, **k: {"measured": counted, "measured_why": None})
    x, y, _, _ = _images(100)
    doc = run.tune(_tiny_model(x=x, y=y), (x, y), out=tmp_path / "out", max_drop=100.0, max_settings=1)
    assert [t["status"] for t in doc["settings_tried"]] == ["slower_on_board"]
    assert doc["choice"]["choice"] == {} and "not faster" in doc["why"] and "1,100" in doc["why"]
    m = tm.load_model((tmp_path / "out" / "trec.tflite").read_bytes())
    assert not any(op.name == TREC_CUSTOM_CODE for op in tm.operators(m))


@pytest.mark.tflm
def test_a_setting_over_the_arena_budget_gets_scratch_budgets_that_fit(tmp_path, capsys):
    from flatbuffers import flexbuffers

    from trec_tflm.host import kernels as native
    from trec_tflm.spec import model as tm
    from trec_tflm.target.arena import estimate_arena
    from trec_tflm.tflite.convert import convert
    from trec_tflm.tune.run import tune

    x, y, _, _ = _images(100)
    model = _tiny_model(fit=False)
    dense_arena = estimate_arena(convert(model, x[:50], calibration_samples=50)).total
    # 12 KiB more than dense: every (L, H) of the search fits at its least scratch (at most
    # 8.4 KB), none at its fastest plan's (27 KB or more, the arena would be 20 KB over)
    sizes = [native.kernels("host").trec_buffer_sizes((1, 16, 16, 1), (64, 3, 3, 1), sub_vector_length=length,
                                                      hash_bits=bits) for length in (1, 3) for bits in (5, 6, 7, 8)]
    assert max(least for _, least in sizes) < 9 * 1024 and min(fast for fast, _ in sizes) > 24 * 1024
    budget = dense_arena + 12 * 1024
    doc = tune(model, (x, y), arena_budget=budget, out=tmp_path / "out", max_settings=1, max_drop=100.0,
               measure_images=0)
    (tried,) = doc["settings_tried"]
    assert tried["status"] == "accepted" and tried["arena"] <= budget < tried["fit"]["arena_before"]
    buf = (tmp_path / "out" / "trec.tflite").read_bytes()
    assert estimate_arena(buf).total <= budget
    m = tm.load_model(buf)
    (op,) = [op for op in m.subgraphs[0].operators if tm.is_trec(m, op)]
    row = {r["layer"]: r for r in doc["layers"]}["spatial"]
    assert flexbuffers.Loads(tm.custom_options_bytes(op))["scratch_budget"] == row["scratch_budget"]
    fast, least = native.kernels("host").trec_buffer_sizes((1, 16, 16, 1), (64, 3, 3, 1),
                                                           sub_vector_length=row["L"], hash_bits=row["H"])
    assert least <= row["scratch_budget"] < fast and row["scratch_preferred_bytes"] == fast
    # the slower plan's cost is in the layer's and the whole network's prediction
    extra = row["trec_instructions"] - row["trec_instructions_preferred"]
    assert extra > 0 and extra == pytest.approx(tried["fit"]["extra_instructions"])
    assert doc["predicted"]["trec_instructions"] == pytest.approx(tried["predicted_instructions"])
    assert f"spatial: {row['scratch_budget']:,} B instead of {fast:,} B" in capsys.readouterr().out


def test_a_layer_left_dense_by_the_search_says_what_it_cost():
    from trec_tflm.tune.report import _with_refusals

    rows = [{"layer": "a", "choice": "dense",
             "why": "TREC pays by the cost model, but the chosen setting keeps it dense"},
            {"layer": "b", "choice": "trec", "why": None},
            {"layer": "c", "choice": "dense", "why": "TREC does not pay: best predicted 9 >= dense 8"}]
    tried = [{"name": "fastest", "choice": {"a": [3, 5], "b": [32, 5]}, "status": "too_inaccurate",
              "drop_points": 4.2},
             {"name": "+b L=32 H=8", "choice": {"b": [32, 8]}, "status": "accepted", "drop_points": 0.4},
             {"name": "+a L=3 H=8", "choice": {"a": [3, 8], "b": [32, 8]}, "status": "too_inaccurate",
              "drop_points": 1.84}]
    out = _with_refusals(rows, tried)
    assert out[0]["why"] == "TREC pays by the cost model; tried in +a L=3 H=8: 1.84 pt on validation, over --max-drop"
    assert out[1]["why"] is None and out[2]["why"].startswith("TREC does not pay")
