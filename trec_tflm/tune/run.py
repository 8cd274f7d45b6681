"""``trec_tflm.tune(...)``: the fastest TREC version of a Keras classifier within an accuracy budget.

Steps (docs/TRAINING.md, "Tuning"): check the inputs; convert the input model to int8 the way the
result will be (its validation accuracy is the reference, its arena must fit); measure and predict the
per-layer candidates (:mod:`trec_tflm.tune.search`); then, in the order ``search.Search`` gives (the
fastest setting, the safest, then per-layer moves down a layer's ladder from the accepted one),
convert each setting untrained to check that its arena can fit (every TREC layer at its least
scratch), fine-tune it with distillation from the input model (a move starts from the accepted
student's weights), convert, give its TREC layers the scratch budgets the arena needs
(:mod:`trec_tflm.tune.memory`), evaluate on the validation split, and keep the fastest within
``max_drop`` points. At most ``max_settings`` are fine-tuned; when none is accepted, or the board
counts the result slower, the result is the input model itself (the report says why).
Each fine-tuned setting is cached in OUT/.tune/<key>/ so a rerun with the same OUT reuses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from trec_tflm import paths
from trec_tflm.target import arena as target_arena
from trec_tflm.target import boards
from trec_tflm.target.sources import DEFAULT_STACK
from trec_tflm.tflite.convert import convert
from trec_tflm.training.train import VALIDATION_SIZE, compile_model, held_out, outputs_probabilities
from trec_tflm.tune import measure, memory, report, search
from trec_tflm.tune.memory import TuneError

#: RAM the app keeps besides arena and stack (.data/.bss of TFLM, the app, the serial buffers)
APP_RAM = 32 * 1024
CALIBRATION_IMAGES = 64   # rc candidates and int8 calibration draw from the training split's first images
CONVERT_SAMPLES = 200
FINE_TUNE_LR = 5e-4
BATCH_SIZE = 64
#: fine-tunes at most (search.Search: the fastest setting, one per layer added, one per move down a ladder)
MAX_SETTINGS = 10


_STARTED: list = []


def log(message: str) -> None:
    """A progress line on stderr with the minutes:seconds since the first one (how the time is spent)."""
    _STARTED[:] = _STARTED or [time.monotonic()]
    m, s = divmod(int(time.monotonic() - _STARTED[0]), 60)
    print(f"tune [{m:02d}:{s:02d}]: {message}", file=sys.stderr, flush=True)


def ram_budget(board: str | None, arena_budget: int | None, core: str) -> tuple[int, str]:
    if arena_budget is not None:
        if arena_budget <= 0:
            raise TuneError(f"--arena-budget must be a positive number of bytes, got {arena_budget}")
        return int(arena_budget), f"--arena-budget {arena_budget}"
    name = board or boards.QEMU_BOARD_OF_CORE.get(core, boards.DEFAULT_EMULATED_BOARD)
    try:
        b = boards.board(name)
    except Exception as exc:  # noqa: BLE001 - DeployError's text names the boards
        raise TuneError(str(exc)) from None
    return b.ram_bytes - DEFAULT_STACK - APP_RAM, (f"{name}: {b.ram_bytes // 1024} KiB RAM - stack "
                                                  f"{DEFAULT_STACK // 1024} KiB - app {APP_RAM // 1024} KiB")


def as_arrays(data, what: str):
    """(x, y) arrays, or a tf.data dataset of (x, y) batches or elements -> float32 x, int64 y."""
    if data is None:
        return None
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    elif hasattr(data, "as_numpy_iterator"):
        xs, ys = [], []
        for xb, yb in data.as_numpy_iterator():
            xs.append(np.asarray(xb))
            ys.append(np.asarray(yb))
        if not xs:
            raise TuneError(f"{what} is an empty dataset; give labelled images")
        batched = xs[0].ndim == 4
        x = np.concatenate(xs) if batched else np.stack(xs)
        y = np.concatenate(ys) if batched else np.stack(ys)
    else:
        raise TuneError(f"{what} must be a pair (x, y) of arrays or a tf.data dataset of (image, label), "
                        f"got {type(data).__name__}")
    x, y = np.asarray(x, np.float32), np.asarray(y).reshape(-1).astype(np.int64)
    if len(x) != len(y):
        raise TuneError(f"{what}: {len(x)} images but {len(y)} labels")
    return x, y


def check_inputs(model, x, classes_of_y, max_drop: float, epochs: int) -> list:
    """Refuse bad input before anything is written; returns the model's conv layers."""
    from trec_tflm.training.models import conv_layers  # lazy: Keras

    if not max_drop >= 0:
        raise TuneError(f"--max-drop must be >= 0 accuracy points, got {max_drop}; e.g. --max-drop 1.0")
    if epochs < 1:
        raise TuneError(f"--epochs must be >= 1, got {epochs}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise TuneError(f"model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                        "tune takes a classifier with one image input and one output")
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if tuple(x.shape[1:]) != shape:
        raise TuneError(f"the data's images have shape {tuple(x.shape[1:])} but model {model.name!r} takes {shape}; "
                        "give the dataset the model was trained on (for --dataset images the model's input size "
                        "is used)")
    classes = int(model.outputs[0].shape[-1])
    if classes_of_y > classes:
        raise TuneError(f"the labels go up to {classes_of_y - 1} but model {model.name!r} has {classes} outputs; "
                        "give the dataset the model was trained on")
    convs = conv_layers(model)
    if not convs:
        raise TuneError(f"model {model.name!r} has no Conv2D layer, so TREC has nothing to speed up; tune takes "
                        "a CNN")
    if len(x) < 20:
        raise TuneError(f"{len(x)} training images; tune needs at least 20 (some are held out for validation)")
    return convs


def weights_digest(model) -> str:
    h = hashlib.sha256(model.name.encode())
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:16]


def _data_digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a[:64]).tobytes())
    return h.hexdigest()[:16]


def _student_of(origin, setting):
    """``origin`` (the input model, or the accepted student a move starts from) with the setting's
    layers TREC at their (L, H) and every other convolution dense; a layer whose (L, H) is unchanged
    keeps its fine-tuned hash matrix, one with fewer bits keeps the first H columns of it."""
    from trec_tflm.training.layers import trec_layers
    from trec_tflm.training.transform import plan, rebuild

    if not setting.choice:
        return origin
    chosen = plan(origin, list(setting.choice), {k: v[0] for k, v in setting.choice.items()},
                  {k: v[1] for k, v in setting.choice.items()})
    return rebuild(origin, chosen, {id(c) for c in trec_layers(origin) if c.name not in setting.choice})


def _fine_tune(model, student, x_tr, y_tr, epochs: int, seed: int, label: str):
    """Fine-tune ``student`` with distillation from ``model`` (the input model)."""
    import keras

    from trec_tflm.training.distill import Distiller

    keras.utils.set_random_seed(seed)
    fit_model = student
    if not outputs_probabilities(model):  # distillation needs logits
        fit_model = Distiller(student, model)
    steps = epochs * int(np.ceil(len(x_tr) / BATCH_SIZE))
    compile_model(fit_model, FINE_TUNE_LR, steps, metrics_of=student)

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            log(f"fine-tuning {label}: epoch {epoch + 1}/{epochs}, loss {float((logs or {}).get('loss', 0)):.4f}")

    try:
        fit_model.fit(x_tr, y_tr, batch_size=BATCH_SIZE, epochs=epochs, verbose=0, shuffle=True,
                      callbacks=[Progress()])
    finally:
        # the Distiller froze the input model as its teacher; the next setting's to_trec copies the
        # layers' trainable flag, so a frozen input would give a student that cannot learn
        model.trainable = True
    return student


def tune(model, train_data, val_data=None, *, max_drop: float = 1.0, board: str | None = None,
         arena_budget: int | None = None, core: str = "m7", epochs: int = 2, seed: int = 0, out=None,
         test_data=None, max_settings: int = MAX_SETTINGS, val_size: int = VALIDATION_SIZE,
         measure_images: int = measure.DEFAULT_IMAGES) -> dict:
    """The fastest TREC version of ``model`` whose int8 validation accuracy is within ``max_drop`` points
    of the input model's (converted the same way) and whose arena fits ``board``'s RAM or
    ``arena_budget``. ``train_data`` / ``val_data`` / ``test_data``: (x, y) arrays or tf.data datasets;
    without ``val_data`` the last tenth (up to ``val_size``, the same images ``trec-tflm train`` holds out,
    so a model trained by it was never fitted on them) of the training data is held out.
    ``out``: a directory for trec.keras, trec.tflite, dense.tflite, report.json, candidates.png and
    the resumable cache (.tune/). ``measure_images``: run the result and the input model on the QEMU
    board of ``core`` on this many test (else validation) images (:mod:`trec_tflm.tune.measure`; 0: off).
    Returns the report (a dict); its "model" key holds the chosen Keras model."""
    from trec_tflm.training.cloning import graph_layers
    from trec_tflm.training.transform import why_not

    _STARTED[:] = [time.monotonic()]
    if board is not None and arena_budget is not None:
        raise TuneError("give --board or --arena-budget, not both")
    if core not in search.cost.CORES:
        raise TuneError(f"--core must be one of {search.cost.CORES}, got {core!r}")
    x_all, y_all = as_arrays(train_data, "train_data")
    convs = check_inputs(model, x_all, int(y_all.max()) + 1, max_drop, epochs)
    if val_data is None:
        n_val = held_out(len(x_all), val_size)
        (x_tr, y_tr), (x_val, y_val) = (x_all[:-n_val], y_all[:-n_val]), (x_all[-n_val:], y_all[-n_val:])
    else:
        (x_tr, y_tr), (x_val, y_val) = (x_all, y_all), as_arrays(val_data, "val_data")
        check_inputs(model, x_val, 0, max_drop, epochs)
    test = as_arrays(test_data, "test_data")
    budget, budget_how = ram_budget(board, arena_budget, core)
    started = time.time()
    calib = x_tr[:CALIBRATION_IMAGES]
    convert_calib = x_tr[:CONVERT_SAMPLES]

    # the input model, converted as the result will be: the accuracy reference and the arena floor
    dense_tflite = convert(model, convert_calib, calibration_samples=CONVERT_SAMPLES)
    dense_arena = target_arena.estimate_arena(dense_tflite).total
    if dense_arena > budget:
        raise TuneError(report.over_budget(model, dense_tflite, dense_arena, budget, budget_how))
    out_dir = Path(out) if out is not None else None
    cache = out_dir / ".tune" if out_dir is not None else None
    key_base = {"model": weights_digest(model), "data": _data_digest(x_tr, y_tr, x_val, y_val), "epochs": epochs,
                "seed": seed, "lr": FINE_TUNE_LR, "convert_samples": CONVERT_SAMPLES}
    dense_acc = _cached_eval(cache, {**key_base, "setting": "dense"}, dense_tflite, x_val, y_val)
    log(f"input model: int8 validation accuracy {dense_acc:.2%} on {len(x_val)} images, arena "
        f"{dense_arena:,} B (budget {budget:,} B: {budget_how})")

    # candidates per layer
    import keras

    swappable = {id(layer) for layer in graph_layers(model)}
    infos, plan_inputs = [], {}  # plan_inputs: what memory.fit_arena probes the kernel's plans on
    for i, layer in enumerate(convs):
        info = search.LayerInfo(layer.name, search.conv_geometry(layer), 0.0, why_not=why_not(layer, swappable))
        info.dense_instructions = search.cost.predict_dense(info.conv, core)
        if info.why_not is None:
            acts = keras.Model(model.inputs, layer.input).predict(calib[:search.PLAN_IMAGES], verbose=0)
            plan_inputs[layer.name] = acts
            info.candidates = search.layer_candidates(layer.name, info.conv, layer.kernel.numpy(), acts, core=core,
                                                      seed=seed + i)
            best = min(info.candidates, key=lambda c: c.trec_instructions)
            log(f"layer {layer.name}: {len(info.candidates)} candidates, best L={best.sub_vector_length} "
                f"H={best.hash_bits} rc={best.rc:.3f}: {best.trec_instructions:,.0f} vs dense "
                f"{info.dense_instructions:,.0f} instructions")
        else:
            log(f"layer {layer.name}: stays dense ({info.why_not})")
        infos.append(info)
    other = search.other_instructions(model, core)
    dense = search.dense_setting(infos, other)
    plan = search.Search(infos, other)
    if not plan.has_candidates:
        log("TREC pays on no layer by the cost model: the result is the input model")

    tried, chosen, chosen_model, chosen_tflite, chosen_key = [], None, None, None, None
    students = {}  # cache key -> fine-tuned student, for warm starts
    while len(tried) < max_settings:
        step = plan.next()
        if step is None:
            break
        setting, start = step
        n = len(tried) + 1
        label = f"setting {n} {setting.name} ({setting.key()}, predicted {setting.speedup:.2f}x)"
        entry = {**setting.to_dict(), "status": None, "from": start.key() if start is not None else "input"}
        tried.append(entry)
        parent_key = chosen_key if start is not None else None
        key = _key({**key_base, "setting": setting.key(), "from": parent_key})
        cdir = cache / key if cache is not None else None
        done = cdir is not None and (cdir / "result.json").is_file()
        student = None
        if done:
            result = json.loads((cdir / "result.json").read_text())
            buf = (cdir / "trec.tflite").read_bytes() if (cdir / "trec.tflite").is_file() else None
            log(f"{label}: reused from {cdir}")
            entry["reused"] = True
        else:
            entry["reused"] = False
            origin = model if start is None else (students.get(chosen_key) or _load_student(cache / chosen_key))
            untrained = _student_of(origin, setting)
            try:  # only the shapes count: no fine-tune for a setting no scratch plan fits
                memory.check_fits(convert(untrained, calib, calibration_samples=len(calib)), budget, budget_how)
            except TuneError as exc:
                result, buf = {"status": "over_budget", "why": str(exc)}, None
                log(f"{label}: skipped: {exc}")
            else:
                how = "from the input model" if start is None else f"from the accepted {start.name}"
                log(f"{label}: fine-tuning {how} ({len(x_tr)} images, {epochs} epoch(s))")
                student = _fine_tune(model, untrained, x_tr, y_tr, epochs, seed, label)
                buf = convert(student, convert_calib, calibration_samples=CONVERT_SAMPLES)
                acc = report.int8_accuracy(buf, x_val, y_val)  # scratch budgets never change outputs
                result = {"status": "evaluated", "val_accuracy": acc}
                if cdir is not None:  # cached without budgets: the budget may differ on a rerun
                    _write_candidate(cdir, student, buf, result)
        if buf is not None:
            try:  # a reused setting was fine-tuned under another budget
                buf, setting = _fit(buf, setting, budget, budget_how, plan_inputs, core, entry, label)
                result["arena"] = entry["arena"]
            except TuneError as exc:
                result, buf = {"status": "over_budget", "why": str(exc)}, None
                log(f"{label}: skipped: {exc}")
            if buf is not None and setting.speedup <= 1.0:  # never a slower model
                why = (f"with the scratch budgets its arena needs, predicted {setting.speedup:.2f}x: not faster "
                       "than the dense model")
                result, buf = {"status": "not_faster", "why": why}, None
                log(f"{label}: skipped: {why}")
        entry.update(result)
        ok = False
        if result["status"] == "evaluated":
            drop = 100 * (dense_acc - result["val_accuracy"])
            entry["drop_points"] = drop
            ok = drop <= max_drop
            entry["status"] = "accepted" if ok else "too_inaccurate"
            log(f"{label}: validation {result['val_accuracy']:.2%} ({-drop:+.2f} pt): "
                f"{'accepted' if ok else 'over --max-drop'}")
        plan.answer(ok, fits=result["status"] != "over_budget")
        if ok:
            for t in tried[:-1]:
                if t["status"] == "accepted":
                    t["status"] = "superseded"
            chosen, chosen_tflite, chosen_key = setting, buf, key
            chosen_model = student if student is not None else _load_student(cdir)
            students = {key: chosen_model}
    if chosen is None:
        chosen, chosen_model, chosen_tflite = dense, model, dense_tflite
    why = None
    if chosen.choice:
        measured = measure.for_report(chosen_tflite, dense_tflite, test=test, validation=(x_val, y_val), core=core,
                                      images=measure_images, layers=[i.name for i in infos], log=log)
        counted = measured["measured"]
        if counted is not None and counted["speedup"] <= 1.0:
            # never a slower model: the board's count overrules the cost model's prediction
            why = (f"the chosen setting {chosen.key()} measured {counted['trec_instructions']:,.0f} instructions on "
                   f"{counted['board']} against the input model's {counted['dense_instructions']:,.0f} "
                   f"({counted['speedup']:.2f}x): not faster, so the result is the input model")
            log(why)
            for t in tried:
                if t["status"] == "accepted":
                    t["status"] = "slower_on_board"
            chosen, chosen_model, chosen_tflite = dense, model, dense_tflite
    else:
        measured = {"measured": None, "measured_why": "not measured: the result is the input model"}
    doc = report.build(model=model, chosen=chosen, dense=dense, infos=infos, tried=tried, dense_tflite=dense_tflite,
                       trec_tflite=chosen_tflite, dense_val=dense_acc, budget=budget, budget_how=budget_how,
                       core=core, max_drop=max_drop, epochs=epochs, seed=seed, test=test, why=why,
                       seconds=time.time() - started, val_images=len(x_val), train_images=len(x_tr), **measured)
    if out_dir is not None:
        write_outputs(out_dir, chosen_model, chosen_tflite, dense_tflite, doc)
    print(report.table(doc))
    return {**doc, "model": chosen_model}


def _fit(buf: bytes, setting, budget: int, budget_how: str, plan_inputs: dict, core: str, entry: dict,
         label: str):
    """The setting's model with the scratch budgets its arena needs (memory.fit_arena), and the
    setting with their predicted slowdown added; the trade-off goes into ``entry``."""
    fit = memory.fit_arena(buf, budget, plan_inputs, core=core, what=budget_how)
    entry["arena"] = fit.arena_after
    if fit.layers:
        setting = dataclasses.replace(setting, predicted_instructions=setting.predicted_instructions
                                      + fit.extra_instructions)
        entry.update(fit=fit.to_dict(), predicted_instructions=setting.predicted_instructions,
                     speedup=setting.speedup)
        log(f"{label}: arena {fit.arena_before:,} B over the budget {budget:,} B: scratch budgets "
            + ", ".join(f"{f.name} {f.budget:,} B ({f.slowdown:.2f}x)" for f in fit.layers if f.budget is not None)
            + f" -> arena {fit.arena_after:,} B, predicted {setting.speedup:.2f}x")
    return fit.tflite, setting


def _cached_eval(cache, key: dict, buf: bytes, x, y) -> float:
    name = _key(key)
    path = cache / f"dense-{name}.json" if cache is not None else None
    if path is not None and path.is_file():
        return float(json.loads(path.read_text())["val_accuracy"])
    acc = report.int8_accuracy(buf, x, y)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        paths.replace_atomically(path, lambda tmp: tmp.write_text(json.dumps({"val_accuracy": acc})))
    return acc


def _key(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _write_candidate(cdir: Path, student, buf: bytes, result: dict) -> None:
    """The candidate's files into a temp dir renamed to ``cdir``: a cache entry is whole or absent."""
    tmp = cdir.with_name(f".{cdir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    student.save(tmp / "trec.keras")
    (tmp / "trec.tflite").write_bytes(buf)
    (tmp / "result.json").write_text(json.dumps(result))
    shutil.rmtree(cdir, ignore_errors=True)
    os.replace(tmp, cdir)


def _load_student(cdir: Path):
    from trec_tflm.training.saving import load_keras_model

    path = cdir / "trec.keras"
    return load_keras_model(path) if path.is_file() else None


def write_outputs(out_dir: Path, model, trec_tflite: bytes, dense_tflite: bytes, doc: dict) -> None:
    """Every output into a staging directory, then each renamed into ``out_dir``: a file in OUT is
    whole (from this run or the previous one), never half-written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = out_dir / f".staging-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        model.save(stage / "trec.keras")
        (stage / "trec.tflite").write_bytes(trec_tflite)
        (stage / "dense.tflite").write_bytes(dense_tflite)
        doc["plot"] = report.plot(doc, stage / "candidates.png")
        (stage / "report.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
        for f in stage.iterdir():
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
