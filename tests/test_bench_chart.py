"""bench-models' chart (trec_tflm.bench.chart), from hand-made result dicts shaped as
trec_tflm.bench.models.measure_model writes them:

* a PNG is written (the PNG signature and an IHDR chunk, non-empty), atomically: a failing save
  leaves neither the chart nor a temporary file;
* the panels hold exactly the models with a result, in order; a model with an error is left out
  of both and named, with its error, in the caption;
* bad input (not a list, a result without boards or with a non-numeric speedup, nothing to draw)
  is a ChartError naming the model and the key, and nothing is written;
* ``bench-models --chart-only`` redraws from --out's result.json files without measuring (no QEMU,
  no training), names a model directory without a result, and refuses a --out that is not there.
"""

from __future__ import annotations

import json
import struct

import pytest

from trec_tflm.bench import chart
from trec_tflm.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _result(model, change, m7, m4, arena_m7=1.4, arena_m4=1.4, dataset="fashion_mnist_32x32x3"):
    def board(speedup, arena_ratio):
        return {"images": 20, "speedup": speedup, "arena_ratio": arena_ratio,
                "trec": {"median_instructions": 1_000_000}, "dense": {"median_instructions": 3_000_000}}
    return {"model": model, "dataset": dataset, "accuracy_change_pt": change,
            "trec": {"accuracy": 0.8}, "dense": {"accuracy": 0.8},
            "boards": {"qemu_m7": board(m7, arena_m7), "qemu_m4": board(m4, arena_m4)}}


RESULTS = [
    _result("fashion_net", -0.87, 3.20, 3.19, 1.33, 1.33, dataset="fashion_mnist"),
    {"model": "zfnet", "error": "zfnet: firmware does not fit qemu_m7: region RAM overflowed by 1,234 bytes"},
    # the 1.5x stage ran: the TREC layers with scratch budgets (fashion_net's arena already fits: no run)
    {**_result("cifarnet", -0.4, 4.6, 4.5, 1.9, 1.9),
     "arena_budget": {"budget": 60000, "fits_unconstrained": False,
                      "boards": {"qemu_m7": {"speedup": 4.1, "arena_ratio": 1.45},
                                 "qemu_m4": {"speedup": 4.0, "arena_ratio": 1.44}}}},
    {**_result("resnet8", 0.3, 2.03, 2.02, 1.59, 1.58), "arena_budget": {"fits_unconstrained": False,
                                                                         "error": "no scratch plan fits"}},
]


def _png_size(blob: bytes) -> tuple[int, int]:
    assert blob[:8] == PNG_SIGNATURE, blob[:8]
    length, kind = struct.unpack(">I4s", blob[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", blob[16:24])


def test_chart_is_a_png_written_atomically(tmp_path):
    out = chart.draw(RESULTS, tmp_path / "sub" / "chart.png")
    assert out == tmp_path / "sub" / "chart.png"
    blob = out.read_bytes()
    w, h = _png_size(blob)
    assert w > 500 and h > 300 and len(blob) > 10_000
    assert [p.name for p in out.parent.iterdir()] == ["chart.png"]  # no temporary left beside it


def test_a_failing_save_leaves_nothing(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, fname, **kw):
        with open(fname, "wb") as f:
            f.write(PNG_SIGNATURE)  # half a file, then the failure
        raise OSError("disk full")
    monkeypatch.setattr(Figure, "savefig", broken)
    (tmp_path / "chart.png").write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"):
        chart.draw(RESULTS, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.png"]


def test_errored_model_is_left_out_and_named_in_the_caption():
    import matplotlib.pyplot as plt

    fig = chart.figure(RESULTS)
    try:
        ax_speed, ax_arena = fig.axes
        assert [t.get_text() for t in ax_arena.get_xticklabels()] == ["fashion_net", "cifarnet", "resnet8"]
        # per core one bar per drawn model, at the hand-made ratios
        bars = {c.get_label(): [round(p.get_height(), 3) for p in c.patches] for c in ax_arena.containers}
        assert bars == {"qemu_m7": [1.33, 1.9, 1.59], "qemu_m4": [1.33, 1.9, 1.58]}
        # per core one point per drawn model: (accuracy change, speedup)
        pts = {c.get_label(): [tuple(round(v, 3) for v in p) for p in c.get_offsets().tolist()]
               for c in ax_speed.collections if c.get_label() in ("qemu_m7", "qemu_m4")}
        assert pts == {"qemu_m7": [(-0.87, 3.2), (-0.4, 4.6), (0.3, 2.03)],
                       "qemu_m4": [(-0.87, 3.19), (-0.4, 4.5), (0.3, 2.02)]}
        assert sorted(t.get_text() for t in ax_speed.texts) == ["cifarnet", "fashion_net", "resnet8"]
        caption = "\n".join(t.get_text() for t in fig.texts)
        assert "left out: zfnet: zfnet: firmware does not fit qemu_m7" in caption
        assert "fashion_mnist (fashion_net)" in caption and "fashion_mnist_32x32x3 (cifarnet, resnet8)" in caption
    finally:
        plt.close(fig)


def test_the_arena_budget_runs_are_drawn_where_they_ran():
    import matplotlib.pyplot as plt

    fig = chart.figure(RESULTS)
    try:
        ax_speed, ax_arena = fig.axes
        hollow = {c.get_label(): [tuple(round(v, 3) for v in p) for p in c.get_offsets().tolist()]
                  for c in ax_speed.collections if "arena" in c.get_label()}
        assert hollow == {"qemu_m7, arena <= 1.5x the twin's": [(-0.4, 4.1)],
                          "qemu_m4, arena <= 1.5x the twin's": [(-0.4, 4.0)]}
        ticks = sorted(round(y, 3) for c in ax_arena.collections for _, y in c.get_offsets().tolist())
        assert ticks == [1.44, 1.45]
        # each tick sits on its core's cifarnet bar
        bars = {c.get_label(): c.patches for c in ax_arena.containers}
        xs = sorted(round(x, 3) for c in ax_arena.collections for x, _ in c.get_offsets().tolist())
        assert xs == sorted(round(bars[b][1].get_x() + bars[b][1].get_width() / 2, 3) for b in ("qemu_m7", "qemu_m4"))
    finally:
        plt.close(fig)


@pytest.mark.parametrize("results,needle", [
    ({"model": "cifarnet"}, "expected a list of bench-models results, got dict"),
    (["cifarnet"], "result 0 is not a bench-models result"),
    ([{**_result("cifarnet", 0.1, 4, 4), "boards": {}}], "result of 'cifarnet' has no 'boards'"),
    ([_result("cifarnet", None, 4, 4)], "result of 'cifarnet' has no numeric 'accuracy_change_pt'"),
    ([_result("cifarnet", 0.1, "fast", 4)], "result of 'cifarnet', board qemu_m7: 'speedup' is missing"),
    ([_result("cifarnet", 0.1, 4, 4, arena_m4=0)], "board qemu_m4: 'arena_ratio' is missing or not a positive"),
    ([{**_result("cifarnet", 0.1, 4, 4), "boards": {"qemu_m7": [4.0]}}], "board qemu_m7: 'speedup' is missing"),
    ([{**_result("cifarnet", 0.1, 4, 4), "arena_budget": {"boards": {"qemu_m4": {"speedup": 3.9}}}}],
     "result of 'cifarnet', arena_budget, board qemu_m4: 'arena_ratio' is missing"),
    ([{"model": "zfnet", "error": "boom"}], "no model has a result to draw: zfnet: boom"),
    ([], "no model has a result to draw"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, results, needle):
    with pytest.raises(chart.ChartError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        chart.draw(results, tmp_path / "chart.png")
    assert list(tmp_path.iterdir()) == []


def _out_dir(tmp_path):
    out = tmp_path / "out"
    for r in RESULTS:
        (out / r["model"]).mkdir(parents=True)
        if "error" not in r:
            (out / r["model"] / "result.json").write_text(json.dumps(r))
    (out / "zfnet" / "settings.json").write_text("{}")  # the failed model: settings, no result
    return out


def test_chart_only_redraws_from_out_without_measuring(tmp_path, capsys, monkeypatch):
    from trec_tflm.bench import models as bm

    out = _out_dir(tmp_path)
    # nothing may be measured: any call into the measuring path fails the test
    monkeypatch.setattr(bm, "measure_model", lambda *a, **k: pytest.fail("--chart-only measured a model"))
    monkeypatch.setattr(bm.toolchain, "skip_reason", lambda **k: pytest.fail("--chart-only looked for QEMU"))
    assert main(["bench-models", "--chart-only", "--out", str(out)]) == 0
    assert f"chart: {out / 'chart.png'}" in capsys.readouterr().out
    _png_size((out / "chart.png").read_bytes())
    # --models picks (aliases too) and --chart names another file
    other = tmp_path / "elsewhere" / "models.png"
    assert main(["bench-models", "--chart-only", "--out", str(out), "--models", "CifarNet,resnet8",
                 "--chart", str(other)]) == 0
    _png_size(other.read_bytes())


def test_without_matplotlib_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(chart.ChartError, match=r"needs matplotlib: pip install 'trec-tflm\[dev\]'"):
        chart.draw(RESULTS, tmp_path / "chart.png")
    assert list(tmp_path.iterdir()) == []


def test_load_results_names_a_model_without_result(tmp_path):
    out = _out_dir(tmp_path)
    got = {r["model"]: r for r in chart.load_results(out)}
    assert sorted(got) == ["cifarnet", "fashion_net", "resnet8", "zfnet"]
    assert got["cifarnet"] == RESULTS[2]
    assert got["zfnet"]["error"].startswith("no result.json in ")
    # the 1.5x stage, cached beside a result, is drawn with it
    stage = {"budget": 60000, "fits_unconstrained": True, "boards": {}}
    (out / "fashion_net" / "arena_budget.json").write_text(json.dumps(stage))
    assert {r["model"]: r for r in chart.load_results(out)}["fashion_net"] == {**RESULTS[0], "arena_budget": stage}
    (out / "resnet8" / "result.json").write_text("{not json")
    with pytest.raises(chart.ChartError, match=r"resnet8/result.json is not JSON .*run bench-models again"):
        chart.load_results(out)


@pytest.mark.parametrize("argv,needle", [
    (["--chart-only", "--out", "{tmp}/missing"], "--out {tmp}/missing is not a directory"),
    (["--chart-only", "--out", "{tmp}", "--models", "zfnet"], "no model has a result to draw: zfnet: no result.json"),
    (["--chart", "{tmp}"], "--chart {tmp} is a directory"),
])
def test_chart_only_bad_input(tmp_path, capsys, argv, needle):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["bench-models", *argv]) == 2
    assert needle.replace("{tmp}", str(tmp_path)) in capsys.readouterr().err
    assert not list(tmp_path.glob("**/*.png"))


def test_after_a_run_the_chart_is_drawn_or_the_reason_logged(tmp_path):
    import argparse

    lines = []
    args = argparse.Namespace(out=str(tmp_path / "out"), chart=None)
    chart.after_run(RESULTS, args, lines.append)
    assert lines == [f"chart: {tmp_path / 'out' / 'chart.png'}"]
    _png_size((tmp_path / "out" / "chart.png").read_bytes())
    # every model failed: the run's exit code stands, the log says why there is no new chart
    lines.clear()
    args.chart = str(tmp_path / "other.png")
    chart.after_run([RESULTS[1]], args, lines.append)
    assert lines == ["chart: not drawn: no model has a result to draw: zfnet: zfnet: firmware does not fit qemu_m7: "
                     "region RAM overflowed by 1,234 bytes"]
    assert not (tmp_path / "other.png").exists()
