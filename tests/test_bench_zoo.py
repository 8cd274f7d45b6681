"""``trec-tflm bench-models``: zoo models whole, TREC against the dense twin, on the emulated cores.

* bad input is refused before any work (a board that is not emulated, a count below 1), and per
  model (an unknown zoo name, a --models-dir without the twin) while the other models go on;
* resumable: a finished model's result is reused, a change of settings starts the model afresh;
* end to end (QEMU tier, tiny settings: fashion_net with the zoo defaults (--no-tune), 1 epoch on
  2,000 images, 3 emulated images): both models measured on qemu_m7, the device's int8 outputs equal
  the host TFLM's for both, TREC executes fewer instructions than the twin, and with scratch budgets
  its arena is within 1.5x the twin's; the unknown name beside it is an error and the exit code 1; the
  chart is drawn into --out; a second run reuses the result without training or running anything.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from trec_tflm.bench import models as bm
from trec_tflm.cli import main


def _args(tmp_path, **kw):
    p = argparse.ArgumentParser()
    bm.register(p)
    args = p.parse_args(["--out", str(tmp_path / "out")])
    for k, v in kw.items():
        setattr(args, k, v)
    return args


@pytest.mark.parametrize("argv,needle", [
    (["--boards", "nucleo_f746zg"], "--boards 'nucleo_f746zg': choose among"),
    (["--images", "0"], "--images 0: must be >= 1"),
    (["--epochs", "0"], "--epochs 0: must be >= 1"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, capsys, argv, needle):
    assert main(["bench-models", "--out", str(tmp_path / "out"), *argv]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_model_and_missing_twin_are_errors_of_that_model(tmp_path):
    args = _args(tmp_path, models_dir=str(tmp_path))
    boards = bm.check_args(args)
    with pytest.raises(bm.BenchModelsError, match="unknown zoo model 'resnet9'; choose among .*resnet8"):
        bm.measure_model("resnet9", args, boards, {}, print)
    with pytest.raises(bm.BenchModelsError, match=r"fashion_net: --models-dir has no .*fashion_net/dense\.keras"):
        bm.measure_model("fashion_net", args, boards, {}, print)
    assert not (tmp_path / "out" / "fashion_net" / "dense.keras").exists()


def test_a_finished_model_is_reused_and_changed_settings_start_afresh(tmp_path):
    args = _args(tmp_path, models="cifarnet", epochs=2)
    boards = bm.check_args(args)
    work = tmp_path / "out" / "cifarnet"
    work.mkdir(parents=True)
    (work / "settings.json").write_text(json.dumps(bm.settings_of("cifarnet", args, boards)))
    (work / "result.json").write_text(json.dumps({"model": "cifarnet", "marker": 7}))
    assert bm.measure_model("CifarNet", args, boards, {}, print) == {"model": "cifarnet", "marker": 7}
    # other settings: the cached stages go; with a missing twin it then stops before any data or training
    args.epochs, args.models_dir = 3, str(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(bm.BenchModelsError, match="--models-dir has no"):
        bm.measure_model("cifarnet", args, boards, {}, print)
    assert not work.exists()


@pytest.mark.tflm
@pytest.mark.qemu
@pytest.mark.slow
def test_bench_models_end_to_end_on_qemu(tmp_path, capsys, fashion):
    out = tmp_path / "out"
    argv = ["bench-models", "--models", "fashion_net,nosuch", "--epochs", "1", "--finetune-epochs", "1",
            "--train-limit", "2000", "--limit", "200", "--images", "3", "--boards", "qemu_m7", "--out", str(out),
            "--json", "--no-tune"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    results = {r["model"]: r for r in json.loads(captured.out)}
    assert "unknown zoo model 'nosuch'" in results["nosuch"]["error"]
    r = results["fashion_net"]
    assert r["dataset"] == "fashion_mnist" and r["train_images"] == 2000
    assert r["trec"]["test_images"] == r["dense"]["test_images"] == 200
    assert [(x["name"], x["kind"], x.get("L"), x.get("H")) for x in r["layers"]] == \
        [("conv1", "TREC", 5, 6), ("conv2", "TREC", 32, 8)]
    b = r["boards"]["qemu_m7"]
    assert b["images"] == 3
    for label in ("trec", "dense"):
        assert b[label]["outputs_equal_host"] == 3, label
        assert b[label]["fits"] and b[label]["arena"] > 0 and b[label]["flash"] > b[label]["ram"] > 0
    assert b["speedup"] == pytest.approx(b["dense"]["median_instructions"] / b["trec"]["median_instructions"])
    assert b["speedup"] > 1.5
    # the arena at most 1.5x the twin's: the zoo defaults' is over it (2.2x, docs/BENCHMARKS.md), so the
    # TREC layers get scratch budgets and that model runs too: bit-exact with the host, within the
    # budget on the board, and not faster than with its fastest plans
    a = r["arena_budget"]
    assert (a["budget"], a["dense_arena"], a["trec_arena"]) == (int(1.5 * b["dense"]["arena"]), b["dense"]["arena"],
                                                                b["trec"]["arena"])
    assert not a["fits_unconstrained"] and "error" not in a, a
    assert {x["name"] for x in a["scratch"]["layers"] if x["budget"] is not None} <= {"conv1", "conv2"}
    fa = a["boards"]["qemu_m7"]
    assert fa["outputs_equal_host"] == 3 and fa["within_budget"] and fa["arena"] <= a["budget"]
    assert fa["median_instructions"] >= b["trec"]["median_instructions"]
    assert fa["speedup"] == pytest.approx(b["dense"]["median_instructions"] / fa["median_instructions"])
    assert "[1/2] fashion_net" in captured.err and "training the dense twin" in captured.err
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "chart: " in captured.err
    # a second run: nothing trained or run again
    assert main(argv) == 1
    again = capsys.readouterr()
    assert "finished in a previous run" in again.err and "training" not in again.err
    assert {x["model"]: x for x in json.loads(again.out)}["fashion_net"] == r
    assert np.isfinite(r["seconds"])
