"""``trec-tflm bench-models``: who makes the TREC model, and the run at an arena of at most 1.5x the twin's.

* the command line passes tune's maker and fit_arena into trec_tflm.bench.models (which may not import
  the tuner: it sits above bench/ in the layers); ``--no-tune`` gives the zoo defaults, whose settings
  (the cache key) are the ones bench-models wrote before makers existed, so cached runs stay valid;
* the maker and its options are in the cache key: another maker, --max-drop or --tune-epochs starts
  the model afresh;
* a fake maker and a fake fit through measure_model (the slow stages replaced by hand-made figures):
  the maker makes trec.keras, its per-layer whys reach the layer rows, the 1.5x stage's budget and
  ratios are the hand-computed ones, and a rerun reuses both stages;
* a change of maker (or of any setting the twin does not depend on) keeps the cached twin;
* the 1.5x stage: a TREC model that already fits is not rerun; when no plan fits, the stage says by
  how much and the model's other figures stand; the first fit's budget allows for the arena
  estimate's excess over the board's, and a fit the board measures over the budget is redone at it;
* the command line's fit (tune.memory.fit_arena) on a real saved two-TREC model;
* end to end (QEMU tier, tiny settings): tune makes fashion_net's TREC model, the layer rows are its
  choice with its reasons, and the model runs bit-exactly on qemu_m7;
* tune's report.json read as the maker's notes, and the split of the data tune gets.
"""

from __future__ import annotations

import argparse
import json
import types
from pathlib import Path

import numpy as np
import pytest

from trec_tflm import bench_models_cli as cli_mod
from trec_tflm.bench import models as bm
from trec_tflm.cli import main


def _args(tmp_path, *argv, **kw):
    p = argparse.ArgumentParser()
    bm.register(p)
    args = p.parse_args(["--out", str(tmp_path / "out"), *argv])
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def test_no_tune_settings_are_those_from_before_makers(tmp_path):
    # written out by hand from the zoo's fashion_net entry and the settings bench-models wrote before
    # the maker was injected: a cached --no-tune run must not start afresh
    args = _args(tmp_path, "--no-tune", "--train-limit", "2000")
    expected = {"model": "fashion_net", "dataset_path": None, "models_dir": None, "epochs": 10, "finetune_epochs": 3,
                "train_limit": 2000, "limit": None, "images": 20, "boards": ["qemu_m7", "qemu_m4"],
                "maker": {"zoo defaults": {"dataset": "fashion_mnist", "default_trec": [0, 1], "default_l": [5, 32],
                                           "default_h": [6, 8]}}}
    assert bm.settings_of("fashion_net", args, ["qemu_m7", "qemu_m4"], bm.ZOO_DEFAULTS) == expected
    assert bm.settings_of("fashion_net", args, ["qemu_m7", "qemu_m4"]) == expected


def test_the_maker_and_its_options_are_in_the_cache_key(tmp_path):
    args = _args(tmp_path)
    boards = ["qemu_m7"]
    tuned = bm.settings_of("cifarnet", args, boards, cli_mod.TUNE)
    assert tuned["maker"] == {"tune": {"max_drop": 1.0, "epochs": 2, "core": "m7", "seed": 0}}
    assert tuned != bm.settings_of("cifarnet", args, boards, bm.ZOO_DEFAULTS)
    for option, value in (("max_drop", 0.5), ("tune_epochs", 3)):
        other = _args(tmp_path, **{option: value})
        assert bm.settings_of("cifarnet", other, boards, cli_mod.TUNE) != tuned, option
    # a model finished with the zoo defaults is started afresh when tune makes it
    work = tmp_path / "out" / "cifarnet"
    work.mkdir(parents=True)
    (work / "settings.json").write_text(json.dumps(bm.settings_of("cifarnet", args, boards, bm.ZOO_DEFAULTS)))
    (work / "result.json").write_text(json.dumps({"model": "cifarnet", "marker": 7}))
    assert bm.measure_model("cifarnet", args, boards, {}, print, bm.ZOO_DEFAULTS)["marker"] == 7
    args.models_dir = str(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(bm.BenchModelsError, match="--models-dir has no"):
        bm.measure_model("cifarnet", args, boards, {}, print, cli_mod.TUNE)
    assert not work.exists()


def _capture_measure(monkeypatch):
    seen = []

    def fake(name, args, boards, datasets, log, maker=None, fit=None):
        seen.append((name, maker, fit))
        return {"model": name, "error": "stopped by the test"}

    monkeypatch.setattr(bm, "measure_model", fake)
    monkeypatch.setattr(bm.toolchain, "skip_reason", lambda **kw: None)
    return seen


def test_the_command_line_injects_tune_and_fit_arena(tmp_path, monkeypatch, capsys):
    seen = _capture_measure(monkeypatch)
    assert main(["bench-models", "--models", "fashion_net", "--out", str(tmp_path / "out")]) == 1
    assert seen == [("fashion_net", cli_mod.TUNE, cli_mod.fit_scratch)]
    assert cli_mod.TUNE.name == "tune" and cli_mod.TUNE.notes is cli_mod.tune_notes
    seen.clear()
    assert main(["bench-models", "--models", "fashion_net", "--no-tune", "--out", str(tmp_path / "out")]) == 1
    assert seen == [("fashion_net", bm.ZOO_DEFAULTS, cli_mod.fit_scratch)]
    assert "stopped by the test" in capsys.readouterr().out


def test_the_bench_layer_alone_has_no_tuner(tmp_path, monkeypatch):
    seen = _capture_measure(monkeypatch)
    with pytest.raises(bm.BenchModelsError, match="run it as trec-tflm bench-models .* or pass --no-tune"):
        bm.command(_args(tmp_path, "--models", "fashion_net"))
    assert seen == []
    assert bm.command(_args(tmp_path, "--models", "fashion_net", "--no-tune")) == 1
    assert seen == [("fashion_net", bm.ZOO_DEFAULTS, None)]


@pytest.mark.parametrize("argv,needle", [(["--max-drop", "-1"], "--max-drop -1.0: must be >= 0"),
                                         (["--tune-epochs", "0"], "--tune-epochs 0: must be >= 1")])
def test_bad_tune_options_are_refused_before_any_work(tmp_path, capsys, argv, needle):
    assert main(["bench-models", "--out", str(tmp_path / "out"), *argv]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# hand-made figures of a model on one board: dense 1,000 instructions in a 10,000 B arena, TREC 250 in
# 20,000 B (2x the twin's, over the 15,000 B budget; estimated 23,000 B: the first fit is asked for
# 15,000 + 3,000 B); with scratch budgets TREC takes 300 in 14,000 B
DENSE_ARENA, TREC_ARENA, FIT_ARENA, TREC_ESTIMATE = 10_000, 20_000, 14_000, 23_000
DENSE_N, TREC_N, FIT_N = 1000.0, 250.0, 300.0


def _board(trec_arena=TREC_ARENA):
    rest = {"flash": 1, "ram": 1, "outputs_equal_host": 2}
    return {"images": 2, "speedup": DENSE_N / TREC_N,
            "trec": {"median_instructions": TREC_N, "arena": trec_arena, **rest},
            "dense": {"median_instructions": DENSE_N, "arena": DENSE_ARENA, **rest}}


class FakeFit:
    def __init__(self, error=None):
        self.calls, self.error = [], error

    def __call__(self, trec_tflite, trec_keras, budget, ds):
        self.calls.append((trec_tflite, Path(trec_keras).name, budget))
        if self.error:
            raise ValueError(self.error)
        return f"fitted to {budget}".encode(), {"layers": [{"name": "conv2", "budget": 4096, "preferred_bytes": 9000}]}


class Ran(list):
    arenas: dict


@pytest.fixture
def fake_stages(monkeypatch):
    """The data, conversion, host accuracy and QEMU stages of bench.models replaced by hand-made ones."""
    ds = types.SimpleNamespace(name="fashion_mnist", source="test", x_train=np.zeros((50, 2)),
                               x_test=np.zeros((5, 2)), y_test=np.zeros(5, int))
    ran = Ran()
    monkeypatch.setattr(bm, "dataset_for", lambda name, path, cache: ds)
    monkeypatch.setattr(bm, "convert_file",
                        lambda k, tmp, **kw: Path(tmp).write_bytes(b"int8 of " + Path(k).name.encode()))
    monkeypatch.setattr(bm, "evaluate", lambda buf, x, y, **kw: types.SimpleNamespace(
        accuracy=0.8 if b"trec" in buf else 0.9, images=len(x), route=kw["reference"]))
    monkeypatch.setattr(bm, "layer_choices", lambda buf, keras_file: [
        {"name": "conv1", "kind": "dense"}, {"name": "conv2", "kind": "TREC", "L": 32, "H": 8, "rc": 0.1}])
    monkeypatch.setattr(bm, "compare_on_qemu", lambda *a, **kw: "cmp")
    monkeypatch.setattr(bm, "board_result", lambda cmp: _board())

    def run(model, board, images, labels, **kw):
        ran.append((model, board, len(images), kw["name"]))
        return model

    monkeypatch.setattr(bm, "run_model_on_qemu", run)
    # the board's arena per fitted model: FIT_ARENA unless a test says otherwise
    arenas = {}
    monkeypatch.setattr(bm, "run_result", lambda model: {"median_instructions": FIT_N,
                                                         "arena": arenas.get(model, FIT_ARENA)})
    monkeypatch.setattr(bm, "estimate_arena", lambda buf: types.SimpleNamespace(total=TREC_ESTIMATE))
    # the TREC model's layers grow into the arena's free room (target.arena.grow_scratch) after conversion
    monkeypatch.setattr(bm, "grow_scratch", lambda buf, **kw: types.SimpleNamespace(tflite=buf + b" grown"))
    monkeypatch.setattr(bm, "without_scratch_budgets", lambda buf: buf)
    ran.arenas = arenas
    return ran


def test_a_fake_maker_and_fit_through_measure_model(tmp_path, fake_stages, capsys):
    twins = tmp_path / "twins" / "fashion_net"
    twins.mkdir(parents=True)
    (twins / "dense.keras").write_bytes(b"the twin")
    made = []

    def make(name, dense_keras, ds, args, work):
        made.append((name, Path(dense_keras).read_bytes(), work.name))
        return lambda tmp: Path(tmp).write_bytes(b"the trec model")

    maker = bm.Maker("fake", lambda name, args: {"knob": args.max_drop}, make, lambda args: "the fake maker",
                     lambda work: {"layers": {"conv1": "dense: because", "conv2": "TREC: because"}, "why": None})
    args = _args(tmp_path, "--boards", "qemu_m7", "--images", "2", models_dir=str(tmp_path / "twins"))
    fit = FakeFit()
    r = bm.measure_model("fashion_net", args, ["qemu_m7"], {}, print, maker, fit)
    work = tmp_path / "out" / "fashion_net"
    assert made == [("fashion_net", b"the twin", "fashion_net")]
    assert (work / "trec.keras").read_bytes() == b"the trec model"
    assert r["maker"] == {"name": "fake", "why": None}
    assert r["settings"]["maker"] == {"fake": {"knob": 1.0}}
    assert [x["why"] for x in r["layers"]] == ["dense: because", "TREC: because"]
    assert fit.calls == [(b"int8 of trec.keras grown", "trec.keras", 18_000)]
    a = r["arena_budget"]
    assert (a["budget"], a["dense_arena"], a["trec_arena"], a["fits_unconstrained"]) == (15_000, 10_000, 20_000, False)
    assert a["fit_budget"] == 18_000
    b = a["boards"]["qemu_m7"]
    assert fake_stages == [(b"fitted to 18000", "qemu_m7", 2, "fashion_net_trec_arena")]
    assert (work / "trec_arena.tflite").read_bytes() == b"fitted to 18000"
    assert b["arena_ratio"] == pytest.approx(1.4) and b["within_budget"]
    assert b["speedup"] == pytest.approx(1000 / 300) and b["vs_unconstrained"] == pytest.approx(1.2)
    line = bm.table([r])
    assert "TREC model by fake" in line and "conv1 dense; why: dense: because" in line
    assert ("arena <= 1.5x the twin's (15,000 B): scratch budgets conv2 4,096 B (fastest plan 9,000 B); qemu_m7: "
            "arena 14,000 B (1.40x the twin's), median instructions 300 = 3.33x fewer than dense, 1.20x the "
            "unconstrained TREC model's") in line
    # a rerun: both stages reused, nothing made, fitted or run again
    assert bm.measure_model("fashion_net", args, ["qemu_m7"], {}, print, maker, fit) == r
    assert len(made) == 1 and len(fit.calls) == 1 and len(fake_stages) == 1


def test_a_trec_model_within_the_budget_is_not_rerun(tmp_path, fake_stages):
    fit = FakeFit()
    result = {"model": "fashion_net", "boards": {"qemu_m7": _board(trec_arena=15_000)}}
    (tmp_path / "w").mkdir()
    a = bm.at_arena_budget(result, tmp_path / "w", fit, _args(tmp_path), {}, print)
    assert a == {"ratio": 1.5, "budget": 15_000, "dense_arena": 10_000, "trec_arena": 15_000,
                 "fits_unconstrained": True}
    assert fit.calls == [] and fake_stages == []
    assert "the TREC model's 15,000 B already fits (not rerun)" in bm._arena_line(a)


def test_no_plan_fits_says_by_how_much_and_the_model_stands(tmp_path, fake_stages):
    fit = FakeFit(error="the arena needs 17,345 B even with every TREC layer at its minimum scratch, over the "
                        "budget of 15,000 B by 2,345 B")
    work = tmp_path / "w"
    work.mkdir()
    (work / "trec.tflite").write_bytes(b"trec")
    result = {"model": "fashion_net", "boards": {"qemu_m7": _board(), "qemu_m4": _board()}}
    a = bm.at_arena_budget(result, work, fit, _args(tmp_path), {}, print)
    assert a["error"].startswith("no scratch plan fits: ") and "by 2,345 B" in a["error"]
    assert "boards" not in a and "scratch" not in a and fake_stages == []
    assert [c[2] for c in fit.calls] == [18_000, 15_000]
    assert "arena <= 1.5x the twin's (15,000 B): error: no scratch plan fits" in bm._arena_line(a)
    assert json.loads((work / "arena_budget.json").read_text()) == a


def _report(choice, layers, why=None):
    return {"choice": {"name": "x", "choice": choice, "predicted_instructions": 1.0, "speedup": 2.5},
            "layers": layers, "why": why, "predicted": {"speedup": 2.5},
            "validation_accuracy": {"dense": 0.9, "trec": 0.895}, "max_drop_points": 1.0, "fine_tuned": 3}


def test_tune_notes_carry_the_per_layer_why(tmp_path):
    (tmp_path / "tune").mkdir()
    rows = [{"layer": "conv1", "choice": "dense", "why": "stride 2: no incremental sums", "trec_instructions": None,
             "dense_instructions": 5e5},
            {"layer": "conv2", "choice": "trec", "why": None, "trec_instructions": 1234567.0,
             "dense_instructions": 7654321.0}]
    (tmp_path / "tune" / "report.json").write_text(json.dumps(_report({"conv2": [32, 8]}, rows)))
    notes = cli_mod.tune_notes(tmp_path)
    assert notes["layers"] == {"conv1": "dense: stride 2: no incremental sums",
                               "conv2": "TREC: predicted 1,234,567 instructions vs dense 7,654,321 (m7)"}
    assert notes["why"] is None and notes["predicted_speedup"] == 2.5 and notes["settings_fine_tuned"] == 3
    # tune kept the input model: said, not an error
    rows[1].update(choice="dense", why="TREC pays by the cost model, but no setting was accepted (see why)")
    (tmp_path / "tune" / "report.json").write_text(json.dumps(_report({}, rows, why="s1: too_inaccurate")))
    notes = cli_mod.tune_notes(tmp_path)
    assert notes["why"].startswith("tune paid on no layer, so the TREC model is the dense twin itself")
    assert "s1: too_inaccurate" in notes["why"] and notes["layers"]["conv2"].startswith("dense: TREC pays")


def test_tune_trains_on_the_twins_images_and_validates_on_trains_held_out_ones():
    x = np.arange(1000, dtype=np.float32)[:, None]
    ds = types.SimpleNamespace(x_train=x, y_train=np.arange(1000))
    # train holds out the last tenth (100 images); tune validates on a tenth as many as it trains on
    (xt, yt), (xv, yv) = cli_mod.tune_data(ds, 300)
    assert xt[:, 0].tolist() == list(range(300)) and yt.tolist() == list(range(300))
    assert xv[:, 0].tolist() == list(range(900, 930)) and yv.tolist() == list(range(900, 930))
    (xt, _), (xv, _) = cli_mod.tune_data(ds, None)
    assert len(xt) == 900 and xv[:, 0].tolist() == list(range(900, 990))


def test_fit_scratch_on_a_saved_trec_model(tmp_path):
    """The command line's fit on a real .keras and .tflite (two TREC layers; test_tune_memory.py's
    case: the arena's peak is at "a", so a budget equal to the arena with "a" at its minimum scratch
    gives "a" exactly that budget and leaves "b" alone). The minimum comes from the C library, the
    arenas from estimate_arena."""
    import keras
    from flatbuffers import flexbuffers

    from trec_tflm import data
    from trec_tflm.host import kernels as native
    from trec_tflm.spec import model as tm
    from trec_tflm.target.arena import estimate_arena, grow_scratch
    from trec_tflm.tflite.convert import convert
    from trec_tflm.tflite.rewrite import with_scratch_budgets
    from trec_tflm.training.layers import TRECConv2D

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 1))
    a = TRECConv2D(32, 3, padding="same", activation="relu", sub_vector_length=3, hash_bits=6, name="a")
    b = TRECConv2D(32, 3, padding="same", activation="relu", sub_vector_length=32, hash_bits=6, name="b")
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(b(keras.layers.MaxPooling2D(2)(a(inp))))))
    x = data.load_dataset("fashion_mnist").x_train[:16, 6:22, 6:22]
    buf = convert(model, x, calibration_samples=16)
    model.save(tmp_path / "trec.keras")
    least_a = native.kernels("host").trec_buffer_sizes((1, 16, 16, 1), (32, 3, 3, 1), sub_vector_length=3,
                                                       hash_bits=6)[1]
    budget = estimate_arena(with_scratch_budgets(buf, {"a": least_a})).total
    assert budget < estimate_arena(buf).total
    # the bench's model comes grown into its own free room ("b"): the fit starts from the defaults
    grown = grow_scratch(buf)
    assert set(grown.layers) == {"b"}
    fitted, how = cli_mod.fit_scratch(grown.tflite, tmp_path / "trec.keras", budget, types.SimpleNamespace(x_train=x))
    m = tm.load_model(fitted)
    names = {e["operator_index"]: e["name"] for e in tm.read_metadata(m)["trec_layers"]}
    fast_b = native.kernels("host").trec_buffer_sizes((1, 8, 8, 32), (32, 3, 3, 32), sub_vector_length=32,
                                                      hash_bits=6)[0]
    assert how["arena_after"] == budget and [(x["name"], x["budget"]) for x in how["layers"]] == \
        [("a", least_a), ("b", None)]
    # then "b" gets back the room beside it within the budget ("a" is at the peak: none for it)
    assert set(how["grown"]["layers"]) == {"b"} and how["grown"]["layers"]["b"]["before"] == fast_b
    b_after = how["grown"]["layers"]["b"]["after"]
    assert b_after > fast_b
    assert {names[i]: flexbuffers.Loads(tm.custom_options_bytes(op)).get("scratch_budget")
            for i, op in enumerate(m.subgraphs[0].operators) if tm.is_trec(m, op)} == {"a": least_a, "b": b_after}
    assert estimate_arena(fitted).total <= budget
    with pytest.raises(ValueError, match=r"over the budget of [\d,]+ B \(1.5x the dense twin's arena\) by 100 B"):
        cli_mod.fit_scratch(buf, tmp_path / "trec.keras", budget - 100, types.SimpleNamespace(x_train=x))


def test_another_maker_keeps_the_cached_twin(tmp_path, fake_stages):
    """The twin of the full schedule takes hours and does not depend on the maker: switching between
    --no-tune and tune (or changing --images) keeps it and redoes the rest."""
    twins = tmp_path / "twins" / "fashion_net"
    twins.mkdir(parents=True)
    (twins / "dense.keras").write_bytes(b"the given twin")
    args = _args(tmp_path, "--boards", "qemu_m7", models_dir=str(tmp_path / "twins"))
    work = tmp_path / "out" / "fashion_net"
    (work / "tune").mkdir(parents=True)
    (work / "settings.json").write_text(json.dumps(bm.settings_of("fashion_net", args, ["qemu_m7"], bm.ZOO_DEFAULTS)))
    for f, text in (("dense.keras", b"the cached twin"), ("dense.tflite", b"its int8"), ("trec.keras", b"old trec"),
                    ("result.json", b'{"model": "fashion_net", "marker": 7}'), ("tune/x", b"tune cache")):
        (work / f).write_bytes(text)
    seen = []
    maker = bm.Maker("other", lambda name, args: {}, lambda name, dense, ds, args, work:
                     (seen.append(Path(dense).read_bytes()), lambda tmp: Path(tmp).write_bytes(b"new trec"))[1],
                     lambda args: "another maker")
    r = bm.measure_model("fashion_net", args, ["qemu_m7"], {}, print, maker)
    assert "marker" not in r and seen == [b"the cached twin"]
    assert (work / "trec.keras").read_bytes() == b"new trec" and (work / "tune" / "x").read_bytes() == b"tune cache"
    assert (work / "dense.tflite").read_bytes() == b"its int8"
    # nor do the emulated images
    args.images = 3
    bm.measure_model("fashion_net", args, ["qemu_m7"], {}, print, maker)
    assert seen[-1] == b"the cached twin" and len(seen) == 2
    # the twin's epochs: everything afresh (here the twin is copied from --models-dir again)
    args.epochs = 4
    r = bm.measure_model("fashion_net", args, ["qemu_m7"], {}, print, maker)
    assert seen[-1] == b"the given twin" and not (work / "tune").exists()


def test_a_fit_the_board_measures_over_the_budget_is_fitted_to_the_budget_itself(tmp_path, fake_stages):
    """The estimate's excess over the board is not a constant: when the first fit (budget + excess)
    measures over the budget on a board, the budget itself is fitted and run."""
    fake_stages.arenas[b"fitted to 18000"] = 15_500
    fit = FakeFit()
    work = tmp_path / "w"
    work.mkdir()
    (work / "trec.tflite").write_bytes(b"trec")
    result = {"model": "fashion_net", "boards": {"qemu_m7": _board(), "qemu_m4": _board()}}
    a = bm.at_arena_budget(result, work, fit, _args(tmp_path), {}, print)
    assert [c[2] for c in fit.calls] == [18_000, 15_000] and a["fit_budget"] == 15_000
    assert [(m, board) for m, board, _, _ in fake_stages] == [
        (b"fitted to 18000", "qemu_m7"), (b"fitted to 18000", "qemu_m4"),
        (b"fitted to 15000", "qemu_m7"), (b"fitted to 15000", "qemu_m4")]
    assert {board: (x["arena"], x["within_budget"]) for board, x in a["boards"].items()} == \
        {"qemu_m7": (14_000, True), "qemu_m4": (14_000, True)}
    assert (work / "trec_arena.tflite").read_bytes() == b"fitted to 15000"
    # over even then: reported as measured, not hidden
    fake_stages.arenas[b"fitted to 15000"] = 15_200
    (work / "arena_budget.json").unlink()
    a = bm.at_arena_budget(result, work, fit, _args(tmp_path), {}, print)
    assert a["boards"]["qemu_m7"]["within_budget"] is False and a["boards"]["qemu_m7"]["arena"] == 15_200


@pytest.mark.tflm
@pytest.mark.qemu
@pytest.mark.slow
def test_tune_makes_the_model_end_to_end_on_qemu(tmp_path, capsys, fashion):
    """The command line's default maker for real, at tiny settings: tune on the twin, its report in
    --out/<model>/tune/, every layer row with tune's reason, and the result measured on qemu_m7."""
    out = tmp_path / "out"
    argv = ["bench-models", "--models", "fashion_net", "--epochs", "1", "--tune-epochs", "1", "--train-limit", "2000",
            "--limit", "100", "--images", "2", "--boards", "qemu_m7", "--out", str(out), "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    r = json.loads(captured.out)[0]
    report = json.loads((out / "fashion_net" / "tune" / "report.json").read_text())
    assert r["maker"]["name"] == "tune" and r["settings"]["maker"] == {
        "tune": {"max_drop": 1.0, "epochs": 1, "core": "m7", "seed": 0}}
    assert r["maker"]["predicted_speedup"] == report["predicted"]["speedup"]
    # the layer rows: TREC exactly where tune chose it, with its (L, H), and tune's reason on each
    chosen = report["choice"]["choice"]
    assert {x["name"]: (x["L"], x["H"]) for x in r["layers"] if x["kind"] == "TREC"} == \
        {name: tuple(lh) for name, lh in chosen.items()}
    assert all(x["why"].startswith("TREC: predicted" if x["kind"] == "TREC" else "dense: ") for x in r["layers"])
    b = r["boards"]["qemu_m7"]
    assert b["trec"]["outputs_equal_host"] == b["dense"]["outputs_equal_host"] == 2
    if chosen:
        assert b["speedup"] > 1.5
    else:  # nothing paid: the TREC model is the twin, ~1x, and the report says so
        assert r["maker"]["why"].startswith("tune paid on no layer") and b["speedup"] == pytest.approx(1, abs=0.01)
    assert "tune [" in captured.err and "making the TREC model (tune, --max-drop 1.0" in captured.err


def test_the_twin_trained_on_the_images_train_did_not_hold_out():
    from trec_tflm.bench.models import trained_on

    # 60,000 images: train validates on the last 5,000 and fits the first 55,000
    assert trained_on(60000, None) == 55000
    assert trained_on(60000, 2000) == 2000 and trained_on(60000, 70000) == 55000
    # 300 images: a tenth (30) is held out
    assert trained_on(300, None) == 270


# what the linker says when the image is larger than the board's flash (deploy passes its tail on)
OVERFLOW = ("generating the project failed: building the firmware for qemu_m7 failed:\n"
            "ld: region `FLASH' overflowed by 61440 bytes\ncollect2: error: ld returned 1 exit status")


def _maker():
    return bm.Maker("fake", lambda name, args: {}, lambda *a: (lambda tmp: Path(tmp).write_bytes(b"trec")),
                    lambda args: "fake", lambda work: {})


def test_a_board_the_firmware_does_not_fit_is_reported_and_the_other_measured(tmp_path, fake_stages, monkeypatch):
    from trec_tflm.target.errors import DeployError

    def compare(trec, dense, board, *a, **kw):
        if board == "qemu_m7":
            raise DeployError(OVERFLOW, 1)
        return "cmp"

    monkeypatch.setattr(bm, "compare_on_qemu", compare)
    twins = tmp_path / "twins" / "fashion_net"
    twins.mkdir(parents=True)
    (twins / "dense.keras").write_bytes(b"the twin")
    args = _args(tmp_path, "--images", "2", models_dir=str(tmp_path / "twins"))
    r = bm.measure_model("fashion_net", args, ["qemu_m7", "qemu_m4"], {}, print, _maker())
    assert list(r["boards"]) == ["qemu_m4"]
    # the NUCLEO_F746ZG's 1 MB of flash, which the qemu_m7 board's linker script enforces
    assert r["does_not_fit"] == {"qemu_m7": "region FLASH (1,048,576 B on NUCLEO_F746ZG) overflowed by 61,440 bytes"}
    assert "  qemu_m7: does not fit: region FLASH (1,048,576 B on NUCLEO_F746ZG) overflowed by 61,440" in bm.table([r])
    # written whole: a rerun reads the same result
    assert json.loads((tmp_path / "out" / "fashion_net" / "result.json").read_text()) == r


def test_a_model_that_fits_no_board_is_an_error_naming_each(tmp_path, fake_stages, monkeypatch):
    from trec_tflm.target.errors import DeployError

    def compare(trec, dense, board, *a, **kw):
        raise DeployError(OVERFLOW.replace("qemu_m7", board), 1)

    monkeypatch.setattr(bm, "compare_on_qemu", compare)
    twins = tmp_path / "twins" / "fashion_net"
    twins.mkdir(parents=True)
    (twins / "dense.keras").write_bytes(b"the twin")
    args = _args(tmp_path, "--images", "2", models_dir=str(tmp_path / "twins"))
    with pytest.raises(bm.BenchModelsError, match="fits none of qemu_m7, qemu_m4: qemu_m7: .*qemu_m4: "):
        bm.measure_model("fashion_net", args, ["qemu_m7", "qemu_m4"], {}, print, _maker())
    assert not (tmp_path / "out" / "fashion_net" / "result.json").exists()


def test_a_deploy_error_that_is_not_about_size_stops_the_model(tmp_path, fake_stages, monkeypatch):
    from trec_tflm.target.errors import DeployError

    def compare(*a, **kw):
        raise DeployError("generating the project failed: the app on qemu_m7 exited with 3", 1)

    monkeypatch.setattr(bm, "compare_on_qemu", compare)
    twins = tmp_path / "twins" / "fashion_net"
    twins.mkdir(parents=True)
    (twins / "dense.keras").write_bytes(b"the twin")
    args = _args(tmp_path, "--images", "2", models_dir=str(tmp_path / "twins"))
    with pytest.raises(DeployError, match="exited with 3"):
        bm.measure_model("fashion_net", args, ["qemu_m7", "qemu_m4"], {}, print, _maker())
