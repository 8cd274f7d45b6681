"""The tuner's report: report.json's document, the printed table, the candidates' plot, and the
message when even the dense model is over the arena budget."""

from __future__ import annotations

from trec_tflm.host import evaluate as host_eval
from trec_tflm.spec import model as tm
from trec_tflm.target import arena as target_arena
from trec_tflm.tune import search


def build(*, model, chosen, dense, infos, tried, dense_tflite, trec_tflite, dense_val, budget, budget_how, core,
          max_drop, epochs, seed, test, seconds, val_images, train_images, measured=None,
          measured_why="not measured", why: str | None = None) -> dict:
    """report.json's document. ``measured`` / ``measured_why``: :func:`trec_tflm.tune.measure.for_report`;
    ``why``: why the result is the input model, when the settings tried do not say it."""
    chosen_entry = next((t for t in tried if t.get("status") == "accepted"), None)
    doc = {
        "model": model.name,
        "core": core,
        "max_drop_points": max_drop,
        "epochs": epochs,
        "seed": seed,
        "train_images": train_images,
        "validation_images": val_images,
        "choice": chosen.to_dict(),
        "layers": _with_refusals(_with_scratch_budgets(search.layer_rows(infos, chosen),
                                                       (chosen_entry or {}).get("fit")), tried),
        "scratch_fit": (chosen_entry or {}).get("fit"),
        "other_ops": "Dense layers predicted as a one-pixel 1x1 conv; pooling, activations, reshape, softmax, "
                     "quantize counted 0 instructions; rc planned with a random hash matrix (the fine-tuned one "
                     "usually merges more rows), so the board can count either side of it",
        "predicted": {"dense_instructions": dense.predicted_instructions,
                      "trec_instructions": chosen.predicted_instructions, "speedup": chosen.speedup},
        "measured": measured,
        "measured_why": None if measured is not None else measured_why,
        "arena_bytes": {"trec": target_arena.estimate_arena(trec_tflite).total,
                        "dense": target_arena.estimate_arena(dense_tflite).total, "budget": budget,
                        "budget_from": budget_how},
        "flash_bytes": {"trec": len(trec_tflite), "dense": len(dense_tflite)},
        "validation_accuracy": {"dense": dense_val,
                                "trec": chosen_entry["val_accuracy"] if chosen_entry else dense_val},
        "settings_tried": tried,
        "fine_tuned": sum(1 for t in tried if t.get("status") not in (None, "over_budget") and not t.get("reused")),
        "reused": sum(1 for t in tried if t.get("reused")),
        "candidates": search.candidates_json(infos),
        "seconds": seconds,
        "why": why or (None if chosen.choice else _why_dense(tried)),
    }
    if test is not None:
        x, y = test
        doc["test_accuracy"] = {"dense": int8_accuracy(dense_tflite, x, y), "trec": int8_accuracy(trec_tflite, x, y),
                                "images": len(x)}
    return doc


def _with_scratch_budgets(rows: list, fit: dict | None) -> list:
    """Per TREC layer the scratch budget memory.fit_arena chose (None: its fastest plan's size) and,
    where one was, the predicted cost of its plan added to the row's instructions."""
    chosen = {f["name"]: f for f in (fit or {}).get("layers", [])}
    for r in rows:
        f = chosen.get(r["layer"])
        r["scratch_budget"] = f["budget"] if f else None
        if f is not None and f["budget"] is not None:
            r.update(scratch_preferred_bytes=r["scratch_bytes"], scratch_bytes=f["budget"],
                     trec_instructions_preferred=r["trec_instructions"],
                     trec_instructions=r["trec_instructions"] + f["instructions"] - f["preferred_instructions"],
                     scratch_plan={"preferred": f["preferred_plan"], "chosen": f["plan"],
                                   "minimum_bytes": f["minimum_bytes"], "slowdown": f["slowdown"],
                                   "unpriced": f["unpriced"]})
    return rows


def int8_accuracy(buf: bytes, x, y) -> float:
    """Top-1 accuracy of an int8 .tflite on the golden route (host.evaluate: TREC and CONV_2D in the
    bit-exact NumPy references, the other ops in TFLM): ~20 ms per fashion_net image, where the
    tflite-micro wheel's reference CONV_2D takes ~330 ms, too slow for a search."""
    return host_eval.evaluate(buf, x, y, reference="golden").accuracy


def _why_dense(tried) -> str:
    if not tried:
        return "the cost model predicts TREC slower than dense on every layer it can take"
    return "no setting was within --max-drop and the arena budget: " + "; ".join(
        f"{t['name']}: {t['status']}" + (f" ({t['drop_points']:.2f} pt)" if "drop_points" in t else "")
        + (f" ({t['why']})" if t.get("why") else "")
        for t in tried)


def _n(v, fmt="{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def table(doc: dict) -> str:
    meas = doc.get("measured")
    by_layer = {r["layer"]: r for r in (meas or {}).get("per_layer") or []}
    lines = [f"{'':<14} {'':<6} {'':>3} {'':>3} {'':>6} {'predicted instructions':^25} "
             f"{'measured instructions':^25}".rstrip(),
             f"{'layer':<14} {'choice':<6} {'L':>3} {'H':>3} {'rc':>6} {'TREC':>12} {'dense':>12} "
             f"{'TREC':>12} {'dense':>12} {'scratch B':>10}"]
    for r in doc["layers"]:
        m = by_layer.get(r["layer"], {})
        lines.append(f"{r['layer']:<14} {r['choice']:<6} {_n(r['L'], '{}'):>3} {_n(r['H'], '{}'):>3} "
                     f"{_n(r['rc'], '{:.3f}'):>6} {_n(r['trec_instructions']):>12} {_n(r['dense_instructions']):>12} "
                     f"{_n(m.get('trec_instructions')):>12} {_n(m.get('dense_instructions')):>12} "
                     f"{_n(r['scratch_bytes']):>10}" + (f"  ({r['why']})" if r.get("why") else ""))
    fit = doc.get("scratch_fit")
    if fit:
        lines.append(f"scratch budgets (arena {fit['arena_before']:,} B at the fastest plans, over the budget; "
                     f"{fit['arena_after']:,} B with these):")
        lines += [f"  {r['layer']}: {r['scratch_bytes']:,} B instead of {r['scratch_preferred_bytes']:,} B "
                  f"(least {r['scratch_plan']['minimum_bytes']:,} B): {r['scratch_plan']['chosen']} instead of "
                  f"{r['scratch_plan']['preferred']}, predicted {r['trec_instructions']:,.0f} instead of "
                  f"{r['trec_instructions_preferred']:,.0f} instructions ({r['scratch_plan']['slowdown']:.2f}x)"
                  + ("; the kernel's plan there makes fewer passes, or is priced cheaper, than with more scratch "
                     "(shorter sums blocks, which the cost model does not see), so it was priced as the larger "
                     "size but may cost far more: measure it with "
                     "`trec-tflm bench-kernels --tflite trec.tflite --sweep`" if r["scratch_plan"]["unpriced"] else "")
                  for r in doc["layers"] if r.get("scratch_budget") is not None]
    p, a, f, v = doc["predicted"], doc["arena_bytes"], doc["flash_bytes"], doc["validation_accuracy"]
    lines += [f"whole network (predicted, {doc['core']}): {_n(p['trec_instructions'])} vs dense "
              f"{_n(p['dense_instructions'])} instructions = {p['speedup']:.2f}x ({doc['other_ops']})",
              f"whole network (measured, {meas['board']}, median of {meas['images']} {meas['images_from']} images): "
              f"{_n(meas['trec_instructions'])} vs dense {_n(meas['dense_instructions'])} instructions = "
              f"{meas['speedup']:.2f}x" if meas else f"whole network (measured): {doc.get('measured_why')}",
              f"arena: TREC {a['trec']:,} B, dense {a['dense']:,} B (budget {a['budget']:,} B: {a['budget_from']})",
              f"flash (model size): TREC {f['trec']:,} B, dense {f['dense']:,} B",
              f"int8 validation accuracy: TREC {v['trec']:.2%}, dense {v['dense']:.2%} "
              f"({doc['validation_images']} held-out training images)"]
    if meas and meas.get("per_layer_why"):
        lines.append(f"measured per layer: not split ({meas['per_layer_why']})")
    if "test_accuracy" in doc:
        t = doc["test_accuracy"]
        lines.append(f"int8 test accuracy: TREC {t['trec']:.2%}, dense {t['dense']:.2%} ({t['images']} images)")
    lines.append(f"settings fine-tuned {doc['fine_tuned']}, reused {doc['reused']}; {doc['seconds']:.0f} s")
    if doc.get("why"):
        lines.append(f"result is the input model: {doc['why']}")
    return "\n".join(lines)


def plot(doc: dict, path) -> str:
    """Speed vs validation accuracy of every setting evaluated, the chosen one marked; the plot's
    file name, or a note when matplotlib is missing (it is in the dev extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "not drawn: matplotlib is not installed (pip install 'trec-tflm[dev]')"
    fig, ax = plt.subplots(figsize=(5, 3.5))
    pts = [(t["speedup"], 100 * t["val_accuracy"], t["name"]) for t in doc["settings_tried"] if "val_accuracy" in t]
    pts.append((1.0, 100 * doc["validation_accuracy"]["dense"], "dense"))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="tab:blue")
    for s, a, name in pts:
        ax.annotate(name, (s, a), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.scatter([doc["predicted"]["speedup"]], [100 * doc["validation_accuracy"]["trec"]], s=120,
               facecolors="none", edgecolors="tab:red", label="chosen")
    ax.axhline(100 * doc["validation_accuracy"]["dense"] - doc["max_drop_points"], color="gray", ls="--", lw=0.8,
               label="--max-drop")
    ax.set_xlabel(f"predicted whole-network speedup ({doc['core']})")
    ax.set_ylabel("int8 validation accuracy (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return "candidates.png"


def over_budget(model, dense_tflite: bytes, arena: int, budget: int, budget_how: str) -> str:
    """Even the input model does not fit: name the operator whose tensors need the most and how much is missing."""
    m = tm.load_model(dense_tflite)
    worst, worst_bytes = None, 0
    for op in tm.operators(m):
        need = sum(int(abs(_prod(t.shape))) for t in [*op.inputs, *op.outputs] if t is not None and not t.constant)
        if need > worst_bytes:
            worst, worst_bytes = op, need
    where = f"; the largest is operator {worst.index} ({worst.name}) with {worst_bytes:,} B of activations" \
        if worst is not None else ""
    return (f"model {model.name!r} needs an arena of {arena:,} B even dense, over the budget of {budget:,} B "
            f"({budget_how}) by {arena - budget:,} B{where}; no TREC choice uses less, so give a larger "
            "--arena-budget or a board with more RAM, or shrink the model's activations")


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _with_refusals(rows: list[dict], tried: list[dict]) -> list[dict]:
    """A layer the cost model liked but the search left dense: say what it cost when it was last tried
    (the fastest setting is tried first and costs most; the layer's own step says more)."""
    for row in rows:
        if row["choice"] != "dense" or not (row.get("why") or "").startswith("TREC pays by the cost model"):
            continue
        for t in reversed(tried):
            if row["layer"] in t["choice"] and t.get("status") in ("too_inaccurate", "over_budget", "not_faster"):
                how = (f"{t['drop_points']:.2f} pt on validation, over --max-drop" if "drop_points" in t
                       else t.get("why") or t["status"])
                row["why"] = f"TREC pays by the cost model; tried in {t['name']}: {how}"
                break
    return rows

