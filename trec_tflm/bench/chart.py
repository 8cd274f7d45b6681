"""``trec-tflm bench-models``' chart: per model, the speedup on each emulated core against the int8
accuracy change, and the arena against the dense twin's; where the 1.5x stage ran (the TREC layers
given scratch budgets so the arena is at most 1.5x the twin's), its speedup (hollow markers) and arena
(a black tick on the bar) too.

Drawn from the per-model results :mod:`trec_tflm.bench.models` builds (the list the command prints, or
the ``--out/<model>/result.json`` files a run left, so ``--chart-only`` redraws without measuring).
A model with an error, or without a result yet, is left out of the panels and named in the caption.
matplotlib comes with the dev extra; it is imported only when a chart is drawn, headless (Agg).
"""

from __future__ import annotations

import json
from pathlib import Path

from trec_tflm import paths
from trec_tflm.errors import UserError
from trec_tflm.target.boards import QEMU_BOARDS
from trec_tflm.training.zoo import ALIASES

CHART = "chart.png"
# one marker and colour per emulated core, in the order bench-models runs them
STYLE = dict(zip(QEMU_BOARDS, [("o", "tab:blue"), ("^", "tab:orange"), ("D", "tab:green")]))
OTHER_STYLE = ("s", "tab:gray")
ARENA_BUDGET = 1.5  # issue 21's memory target: an arena at most 1.5x the dense twin's
NOTE_CHARS = 90


class ChartError(UserError, ValueError):
    """The chart cannot be drawn from what was given; the message says what is missing and what to do."""


def load_results(out, models: list[str] | None = None) -> list[dict]:
    """The results a bench-models run left in ``out``: ``out/<model>/result.json`` for each of
    ``models`` (default: every subdirectory). A model directory without one (a run still going or
    one that failed) comes back as an error entry, so the chart names it."""
    out = Path(out)
    if not out.is_dir():
        raise ChartError(f"--out {out} is not a directory: give the --out of a bench-models run")
    names = models if models else sorted(p.name for p in out.iterdir() if p.is_dir())
    results = []
    for name in names:
        f = out / name / "result.json"
        if not f.is_file():
            results.append({"model": name, "error": f"no {f.name} in {f.parent} (not measured, or it failed)"})
            continue
        result = _json(f)
        # the 1.5x stage is cached beside the result (arena_budget.json); a run returns the two together
        stage = out / name / "arena_budget.json"
        if stage.is_file() and "arena_budget" not in result:
            result["arena_budget"] = _json(stage)
        results.append(result)
    if not results:
        raise ChartError(f"--out {out} holds no model directory: run bench-models with this --out first")
    return results


def _json(f: Path):
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        raise ChartError(f"{f} is not JSON ({exc}); delete it and run bench-models again") from exc


def _measured(results) -> tuple[list[dict], list[tuple[str, str]]]:
    """(the results to draw, (model, why) of the ones left out); ChartError on a malformed result."""
    if not isinstance(results, list):
        raise ChartError(f"expected a list of bench-models results, got {type(results).__name__}")
    drawn, left_out = [], []
    for i, r in enumerate(results):
        if not isinstance(r, dict) or "model" not in r:
            raise ChartError(f"result {i} is not a bench-models result (a dict with a 'model'): {str(r)[:80]}")
        if "error" in r:
            left_out.append((str(r["model"]), str(r["error"])))
            continue
        where = f"result of {r['model']!r}"
        if not isinstance(r.get("accuracy_change_pt"), (int, float)):
            raise ChartError(f"{where} has no numeric 'accuracy_change_pt'; was it written by bench-models?")
        boards = r.get("boards")
        if not isinstance(boards, dict) or not boards:
            raise ChartError(f"{where} has no 'boards' (per-core measurements); was it written by bench-models?")
        for board, b in boards.items():
            for key in ("speedup", "arena_ratio"):
                v = b.get(key) if isinstance(b, dict) else None
                if not isinstance(v, (int, float)) or not v > 0:
                    raise ChartError(f"{where}, board {board}: {key!r} is missing or not a positive number")
        for board, b in _budget_boards(r).items():
            for key in ("speedup", "arena_ratio"):
                v = b.get(key) if isinstance(b, dict) else None
                if not isinstance(v, (int, float)) or not v > 0:
                    raise ChartError(f"{where}, arena_budget, board {board}: {key!r} is missing or not a positive "
                                     "number")
        drawn.append(r)
    if not drawn:
        raise ChartError("no model has a result to draw" + (": " + "; ".join(
            f"{m}: {why}" for m, why in left_out) if left_out else ""))
    return drawn, left_out


def _budget_boards(r: dict) -> dict:
    """Per board the run with the arena at most 1.5x the twin's (bench-models' 1.5x stage), where it
    ran: a model whose arena already fits, or that no scratch plan fits, has none."""
    a = r.get("arena_budget")
    return (a.get("boards") or {}) if isinstance(a, dict) else {}


def _caption(drawn: list[dict], left_out: list[tuple[str, str]]) -> str:
    data = {}
    for r in drawn:
        data.setdefault(r.get("dataset", "?"), []).append(r["model"])
    lines = ["data: " + "; ".join(f"{d} ({', '.join(ms)})" for d, ms in data.items())]
    for model, why in left_out:
        why = why if len(why) <= NOTE_CHARS else why[:NOTE_CHARS - 3] + "..."
        lines.append(f"left out: {model}: {why}")
    return "\n".join(lines)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ChartError("the chart needs matplotlib: pip install 'trec-tflm[dev]' (or pip install matplotlib), "
                         "then redraw with trec-tflm bench-models --chart-only") from exc
    return plt


def figure(results):
    """The chart of ``results`` (bench-models result dicts) as a matplotlib Figure (the caller closes it).
    ChartError when nothing can be drawn, a result is malformed or matplotlib is missing."""
    drawn, left_out = _measured(results)
    plt = _pyplot()
    boards = list(dict.fromkeys(b for r in drawn for b in r["boards"]))
    caption = _caption(drawn, left_out)
    fig, (ax_speed, ax_arena) = plt.subplots(1, 2, figsize=(10, 4.2 + 0.16 * caption.count("\n")))

    for board in boards:
        marker, colour = STYLE.get(board, OTHER_STYLE)
        pts = [(r["accuracy_change_pt"], r["boards"][board]["speedup"]) for r in drawn if board in r["boards"]]
        ax_speed.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=colour, label=board)
    for board in boards:
        marker, colour = STYLE.get(board, OTHER_STYLE)
        pts = [(r["accuracy_change_pt"], _budget_boards(r)[board]["speedup"]) for r in drawn
               if board in _budget_boards(r)]
        if pts:  # the same model with scratch budgets: the same outputs, so the same accuracy
            ax_speed.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, facecolors="none",
                             edgecolors=colour, label=f"{board}, arena <= {ARENA_BUDGET}x the twin's")
    for r in drawn:
        top = max(b["speedup"] for b in r["boards"].values())
        ax_speed.annotate(r["model"], (r["accuracy_change_pt"], top), fontsize=7, xytext=(4, 4),
                          textcoords="offset points")
    ax_speed.margins(x=0.15, y=0.1)  # room for the model names beside the points
    ax_speed.axhline(1.0, color="gray", ls="--", lw=0.8)
    ax_speed.axvline(0.0, color="gray", ls=":", lw=0.8)
    ax_speed.set_xlabel("int8 test accuracy change, TREC - dense twin (pt)")
    ax_speed.set_ylabel("speedup (dense / TREC median instructions)")
    ax_speed.set_title("speed against accuracy", fontsize=9)
    ax_speed.legend(fontsize=7)

    width, ticked = 0.8 / len(boards), False
    for j, board in enumerate(boards):
        marker, colour = STYLE.get(board, OTHER_STYLE)
        xs = [i + (j - (len(boards) - 1) / 2) * width for i, r in enumerate(drawn) if board in r["boards"]]
        ys = [r["boards"][board]["arena_ratio"] for r in drawn if board in r["boards"]]
        ax_arena.bar(xs, ys, width=width, color=colour, label=board)
        fitted = [(x, _budget_boards(r)[board]["arena_ratio"]) for x, r in
                  zip(xs, [r for r in drawn if board in r["boards"]]) if board in _budget_boards(r)]
        if fitted:
            ax_arena.scatter([f[0] for f in fitted], [f[1] for f in fitted], marker="_", s=400, color="black",
                             label=None if ticked else "with scratch budgets", zorder=3)
            ticked = True
    ax_arena.axhline(1.0, color="gray", ls="--", lw=0.8)
    ax_arena.axhline(ARENA_BUDGET, color="tab:red", ls=":", lw=0.8, label=f"{ARENA_BUDGET}x the twin's")
    ax_arena.set_xticks(range(len(drawn)))
    ax_arena.set_xticklabels([r["model"] for r in drawn], rotation=30, ha="right", fontsize=8)
    # headroom above the tallest bar for the legend
    ax_arena.set_ylim(0, 1.3 * max([ARENA_BUDGET] + [b["arena_ratio"] for r in drawn for b in r["boards"].values()]
                                   + [b["arena_ratio"] for r in drawn for b in _budget_boards(r).values()]))
    ax_arena.set_ylabel("arena, TREC / dense twin")
    ax_arena.set_title("memory", fontsize=9)
    ax_arena.legend(fontsize=7)

    fig.text(0.01, 0.01, caption, fontsize=7, va="bottom", ha="left")
    fig.tight_layout(rect=(0, 0.04 + 0.035 * (caption.count("\n") + 1), 1, 1))
    return fig


def draw(results, path) -> Path:
    """Write the chart of ``results`` to ``path`` as PNG, atomically (nothing written on an error)."""
    fig = figure(results)
    path = Path(path)
    try:
        # the temporary name keeps the suffix, but say the format: --chart may name any file
        paths.replace_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        _pyplot().close(fig)
    return path


def chart_path(args) -> Path:
    return Path(args.chart) if getattr(args, "chart", None) else Path(args.out) / CHART


def after_run(results: list[dict], args, log) -> None:
    """The chart of a finished bench-models run; a chart that cannot be drawn is reported, not fatal
    (the measurements are cached, ``--chart-only`` redraws)."""
    try:
        log(f"chart: {draw(results, chart_path(args))}")
    except ChartError as exc:
        log(f"chart: not drawn: {exc}")


def before_run(args, log) -> int | None:
    """Before bench-models measures: refuse a --chart that cannot be written (not after hours of
    measuring); with ``--chart-only`` redraw from ``--out``'s result.json files, measure nothing and
    return the exit code. None: go on measuring."""
    if args.chart and Path(args.chart).is_dir():
        raise ChartError(f"--chart {args.chart} is a directory: give a file name (e.g. {Path(args.chart) / CHART})")
    try:
        paths.check_output_file(chart_path(args), "--chart" if args.chart else "--out")
    except ValueError as exc:
        raise ChartError(str(exc)) from exc
    if not args.chart_only:
        return None
    models = [ALIASES.get(n.strip(), n.strip()) for n in args.models.split(",") if n.strip()] if args.models else None
    path = draw(load_results(args.out, models), chart_path(args))
    log(f"chart: {path}")
    return 0
