"""``trec-tflm bench-models`` as the command line runs it: :mod:`trec_tflm.bench.models` with the two
pieces that sit above ``bench/`` in the layers (docs/ARCHITECTURE.md) passed in: :data:`TUNE`, the
maker that runs ``trec_tflm.tune`` on the dense twin (the default; ``--no-tune`` takes the zoo's
defaults instead), and :func:`fit_scratch`, ``trec_tflm.tune.memory.fit_arena`` for the run at an
arena of at most 1.5x the twin's."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from trec_tflm.bench import models as bm
from trec_tflm.target.arena import grow_scratch, without_scratch_budgets
from trec_tflm.training.train import held_out
from trec_tflm.tune import memory, search
from trec_tflm.tune.run import tune

#: the core tune's cost model predicts for and fit_arena prices plans on (both boards run the result)
CORE = "m7"
SEED = 0


def register(p: argparse.ArgumentParser) -> None:
    bm.register(p)
    p.set_defaults(func=command)


def command(args) -> int:
    return bm.command(args, maker=TUNE, fit=fit_scratch)


def _options(name: str, args) -> dict:
    return {"max_drop": args.max_drop, "epochs": args.tune_epochs, "core": CORE, "seed": SEED}


def tune_data(ds, train_limit: int | None):
    """(train, validation) for tune: the images the twin was trained on (trec-tflm train's split, its
    first ``train_limit``), and validation from the images train held out (the twin never fitted
    them), a tenth as many as tune trains on, up to train's held-out count."""
    n_val = held_out(len(ds.x_train))
    x_tr, y_tr = ds.x_train[:-n_val], ds.y_train[:-n_val]
    if train_limit:
        x_tr, y_tr = x_tr[:train_limit], y_tr[:train_limit]
    k = min(n_val, max(20, len(x_tr) // 10))
    return (x_tr, y_tr), (ds.x_train[-n_val:][:k], ds.y_train[-n_val:][:k])


def _make(name: str, dense_keras: Path, ds, args, work: Path):
    def make(tmp: Path) -> None:
        from trec_tflm.training.saving import load_keras_model  # lazy: Keras

        train, val = tune_data(ds, args.train_limit)
        # measure_images=0: bench-models runs both models on the boards itself
        tune(load_keras_model(dense_keras), train, val, max_drop=args.max_drop, epochs=args.tune_epochs, core=CORE,
             seed=SEED, out=work / "tune", measure_images=0)
        shutil.copyfile(work / "tune" / "trec.keras", tmp)
    return make


def tune_notes(work: Path) -> dict:
    """tune's report.json (--out/<model>/tune/) as the bench result's maker notes: per layer why it is
    dense or what TREC is predicted to save, and why the result is the twin itself when it is."""
    doc = json.loads((work / "tune" / "report.json").read_text())
    layers = {}
    for row in doc["layers"]:
        if row["choice"] == "trec":
            layers[row["layer"]] = (f"TREC: predicted {row['trec_instructions']:,.0f} instructions vs dense "
                                    f"{row['dense_instructions']:,.0f} ({CORE})")
        else:
            layers[row["layer"]] = f"dense: {row.get('why') or 'not in the chosen setting'}"
    why = None
    if not doc["choice"]["choice"]:
        why = (f"tune paid on no layer, so the TREC model is the dense twin itself (speedup ~1x): "
               f"{doc.get('why') or 'see tune/report.json'}")
    return {"layers": layers, "why": why, "report": str(work / "tune" / "report.json"),
            "predicted_speedup": doc["predicted"]["speedup"], "validation_accuracy": doc["validation_accuracy"],
            "max_drop_points": doc["max_drop_points"], "settings_fine_tuned": doc["fine_tuned"]}


TUNE = bm.Maker("tune", _options, _make,
                lambda args: f"tune, --max-drop {args.max_drop}, {args.tune_epochs} epoch(s) per setting",
                tune_notes)


def fit_scratch(trec_tflite: bytes, trec_keras: Path, budget: int, ds) -> tuple[bytes, dict]:
    """tune.memory.fit_arena on the bench's TREC model: per TREC layer the scratch budget that brings
    the arena within ``budget`` at the least predicted slowdown, planned on the layer's inputs for the
    first training images, from the op's default scratch (the bench's model has grown its layers into
    its own free room: target.arena.grow_scratch); then the room left within ``budget`` is given back
    the same way (the dict's "grown"). ``trec_tflite`` as it is when nothing needs to shrink. Raises
    TuneError (a ValueError) saying by how much when no plan fits."""
    import keras

    from trec_tflm.training.layers import trec_layers
    from trec_tflm.training.saving import load_keras_model  # lazy: Keras

    model = load_keras_model(trec_keras)
    x = ds.x_train[:search.PLAN_IMAGES]
    acts = {layer.name: keras.Model(model.inputs, layer.input).predict(x, verbose=0) for layer in trec_layers(model)}
    plain = without_scratch_budgets(trec_tflite)
    fit = memory.fit_arena(plain, budget, acts, core=CORE, what=f"{bm.ARENA_RATIO}x the dense twin's arena")
    if fit.tflite == plain:
        return trec_tflite, fit.to_dict()
    grown = grow_scratch(fit.tflite, budget)
    return grown.tflite, fit.to_dict() | {"grown": grown.to_dict()}
