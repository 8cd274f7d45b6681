"""``trec-tflm bench-models``: whole zoo models, TREC against the dense twin, on the emulated cores.

Per zoo model (``--models``, default all of trec_tflm.training.zoo):

1. data: Fashion-MNIST for ``fashion_net``; for the 32x32x3 models CIFAR-10 when ``--dataset-path``
   names it, else the Fashion-MNIST stand-in padded and repeated to 32x32x3 (the report says which);
2. the dense twin: ``--models-dir DIR`` takes ``DIR/<model>/dense.keras``; otherwise it is trained on
   a fixed schedule: all training images (``--train-limit`` for quick runs), ``--epochs`` (10) at
   trec-tflm train's lr 2e-3, batch 64, seed 0;
3. the TREC model, made by a :class:`Maker`: the command line's is tune (``trec_tflm.tune`` on the
   twin, ``--max-drop``, ``--tune-epochs``; it sits above this layer, so trec_tflm.bench_models_cli
   passes it in); ``--no-tune``: :data:`ZOO_DEFAULTS`, the zoo's default TREC layers and (L, H)
   (trec_tflm.training.zoo), initialised from the twin and fine-tuned ``--finetune-epochs`` (3) at
   lr 1e-3, as trec-tflm demo does;
4. both converted to int8 (trec-tflm convert; the TREC model's layers then get the arena's free room
   beside them, trec_tflm.target.arena.grow_scratch), int8 test accuracy on the host (``--limit`` test
   images, default the whole test set) on the golden route (trec_tflm.host.evaluate: TREC_CONV_2D
   and CONV_2D in the bit-exact NumPy kernels, the other operators in TFLM). Not the TFLM route: the
   host TFLM runs CONV_2D in its reference kernel, which made ResNet-8's TREC model (four dense
   convolutions) 2.3x slower to evaluate than the golden route (125 vs 54 ms per image). TFLM's
   outputs are still checked: step 5 compares the device's with the host TFLM's on every image;
5. both deployed, built and run on each QEMU board (trec_tflm.bench.compare, as trec-tflm demo and
   bench --compare): median instructions over ``--images`` test images and the ratio, arena, flash
   and RAM, and whether the device's outputs equal the host's. A board whose flash or RAM the firmware
   does not fit (the QEMU boards link with their STM32 board's memory) is reported with the linker's
   margin (``does_not_fit``) and the model is measured on the others; fitting none is the model's error;
6. the arena at most 1.5x the twin's (issue 21): when the TREC model's arena is larger, ``fit`` (passed
   in like the maker: trec_tflm.tune.memory.fit_arena) gives its TREC layers scratch budgets (the op's
   ``scratch_budget`` option) that fit (the command line's: from their default scratch, then the room
   the fit left given back by grow_scratch), and that model runs on the same boards: its arena and
   instructions against the twin's and the unconstrained TREC model's (:func:`at_arena_budget`).

Resumable: each stage's output lands in ``--out/<model>/`` (written whole or not at all) and is
reused when the run's settings (settings.json, which name the maker and its options) are the same
(a change that does not concern the twin, such as the maker, keeps it and tune's cache); a
finished model's result.json is reused as is, and so is the 1.5x stage's arena_budget.json. A
model that fails (unknown name, missing twin, firmware that does not fit) gets its error in the
report and the others are still measured; the exit code is then 1. A 1.5x stage that no scratch
plan fits is reported with by how much, and is not a failure.

The chart of the results (trec_tflm.bench.chart) goes to ``--out/chart.png``; ``--chart-only`` redraws
it from the cached result.json files.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from trec_tflm import data, paths
from trec_tflm.bench import chart, layers
from trec_tflm.bench.compare import compare_on_qemu, run_model_on_qemu
from trec_tflm.bench.layers import layer_choices, with_whys
from trec_tflm.errors import UserError
from trec_tflm.host.evaluate import evaluate
from trec_tflm.host.interpreter import Runtime
from trec_tflm.spec import model as tm
from trec_tflm.target import toolchain
from trec_tflm.target.arena import estimate_arena, grow_scratch, without_scratch_budgets
from trec_tflm.target.boards import BOARDS, QEMU_BOARDS
from trec_tflm.target.errors import DeployError
from trec_tflm.target.memory import parse_link_overflow
from trec_tflm.tflite.convert import convert_file
from trec_tflm.training.train import TrainConfig, held_out, train
from trec_tflm.training.zoo import ALIASES, ZOO, model_names

DEFAULT_OUT = "bench_models_out"
DENSE_EPOCHS = 10
FINETUNE_EPOCHS = 3
FINETUNE_LR = 1e-3
QEMU_IMAGES = 20
STAND_IN = "fashion_mnist_32x32x3"
#: the arena the second TREC run may take, relative to the dense twin's (issue 21, item 3)
ARENA_RATIO = 1.5
MAX_DROP = 1.0
TUNE_EPOCHS = 2
#: the settings the dense twin depends on, and what a change of the others keeps of a model's cached stages
TWIN_SETTINGS = ("model", "dataset_path", "models_dir", "epochs", "train_limit")
TWIN_FILES = ("dense.keras", "dense.tflite", "tune")


class BenchModelsError(UserError, ValueError):
    """A model cannot be measured as asked; the message says why and what to do."""


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=None, metavar="A,B",
                   help=f"comma-separated zoo models (default: all of {', '.join(model_names())})")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"cache and result directory, one subdirectory per model (default {DEFAULT_OUT}); "
                        "a second run reuses what the first finished")
    p.add_argument("--models-dir", default=None, metavar="DIR",
                   help="take the dense twins from DIR/<model>/dense.keras instead of training them")
    p.add_argument("--dataset-path", default=None, metavar="DIR",
                   help="CIFAR-10 (python pickles) for the 32x32x3 models; without it, the 32x32x3 "
                        "Fashion-MNIST stand-in")
    p.add_argument("--epochs", type=int, default=DENSE_EPOCHS,
                   help=f"epochs of the dense twin (default {DENSE_EPOCHS})")
    p.add_argument("--finetune-epochs", type=int, default=FINETUNE_EPOCHS,
                   help=f"--no-tune: epochs of the TREC model, fine-tuned from the twin (default {FINETUNE_EPOCHS})")
    p.add_argument("--train-limit", type=int, default=None, help="train on the first N images only (quick runs)")
    p.add_argument("--limit", type=int, default=None,
                   help="int8 accuracy on the first N test images (default: the whole test set)")
    p.add_argument("--images", type=int, default=QEMU_IMAGES,
                   help=f"test images run on each emulated core (default {QEMU_IMAGES})")
    p.add_argument("--boards", default=",".join(QEMU_BOARDS),
                   help=f"comma-separated QEMU boards (default {','.join(QEMU_BOARDS)})")
    p.add_argument("--no-tune", action="store_true",
                   help="make the TREC model from the zoo's default TREC layers and (L, H), fine-tuned "
                        "--finetune-epochs, instead of with tune")
    p.add_argument("--max-drop", type=float, default=MAX_DROP,
                   help=f"tune: accepted int8 validation accuracy loss against the twin, in points "
                        f"(default {MAX_DROP})")
    p.add_argument("--tune-epochs", type=int, default=TUNE_EPOCHS,
                   help=f"tune: fine-tuning epochs per setting it tries (default {TUNE_EPOCHS}); tune's work is "
                        "cached in --out/<model>/tune/, so a rerun resumes it")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--chart", default=None, metavar="PATH",
                   help=f"the chart (PNG: speedup per core against accuracy change, arena against the twin's); "
                        f"default --out/{chart.CHART}")
    p.add_argument("--chart-only", action="store_true",
                   help="measure nothing: redraw the chart from the result.json files in --out (--models: these only)")
    p.set_defaults(func=command)


def check_args(args) -> list[str]:
    """The boards, checked before any work (ValueError naming the option)."""
    if not args.max_drop >= 0:
        raise BenchModelsError(f"--max-drop {args.max_drop}: must be >= 0 accuracy points")
    for option, value in (("--epochs", args.epochs), ("--finetune-epochs", args.finetune_epochs),
                          ("--tune-epochs", args.tune_epochs),
                          ("--images", args.images), ("--train-limit", args.train_limit), ("--limit", args.limit)):
        if value is not None and value < 1:
            raise BenchModelsError(f"{option} {value}: must be >= 1")
    boards = [b.strip() for b in args.boards.split(",") if b.strip()]
    bad = [b for b in boards if b not in QEMU_BOARDS]
    if bad or not boards:
        raise BenchModelsError(f"--boards {args.boards!r}: choose among {', '.join(QEMU_BOARDS)}")
    if args.models_dir and not Path(args.models_dir).is_dir():
        raise BenchModelsError(f"--models-dir {args.models_dir} is not a directory")
    return boards


@dataclasses.dataclass(frozen=True)
class Maker:
    """How the TREC model is made from the dense twin.

    ``name`` and ``options(model, args)`` go into the settings, so another maker or another option
    re-runs the model; ``make(model, dense_keras, dataset, args, work)`` returns the function that
    writes trec.keras to the path it is given (atomically renamed by the caller); ``describe(args)``
    is the progress line's; ``notes(work)`` what the maker says of the model it made (``{}``, or
    ``{"layers": {layer: why}, ...}``: the per-layer whys go into the layer rows, the rest into the
    result's "maker")."""

    name: str
    options: Callable[[str, argparse.Namespace], dict]
    make: Callable[..., Callable[[Path], None]]
    describe: Callable[[argparse.Namespace], str]
    notes: Callable[[Path], dict] = lambda work: {}


def settings_of(name: str, args, boards: list[str], maker: Maker | None = None) -> dict:
    """What a model's cached stages depend on: a change re-runs them. As JSON gives it back (lists),
    so it compares equal to the settings.json a previous run wrote."""
    maker = maker or ZOO_DEFAULTS
    return json.loads(json.dumps({"model": name, "dataset_path": args.dataset_path, "models_dir": args.models_dir,
            "epochs": args.epochs, "finetune_epochs": args.finetune_epochs, "train_limit": args.train_limit,
            "limit": args.limit, "images": args.images, "boards": boards,
            "maker": {maker.name: maker.options(name, args)}}))


def dataset_for(name: str, dataset_path, cache: dict) -> data.Dataset:
    kind = "fashion_mnist" if ZOO[name].dataset == "fashion_mnist" else ("cifar10" if dataset_path else STAND_IN)
    if kind not in cache:
        cache[kind] = data.load_dataset(kind, dataset_path if kind == "cifar10" else None)
    return cache[kind]


def _stage(path: Path, make: Callable[[Path], None]) -> Path:
    """``path``, made by ``make(tmp)`` atomically unless a previous run left it."""
    if not path.is_file():
        paths.replace_atomically(path, make)
    return path


def _train_into(cfg: TrainConfig, ds) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        result = train(cfg, ds)
        shutil.copyfile(result.checkpoint, tmp)
    return make


def defaults_trec(name: str, dense: Path, ds, args, work: Path) -> Callable[[Path], None]:
    """The zoo's TREC model: default layers and (L, H), initialised from the twin, fine-tuned."""
    cfg = TrainConfig(model=name, dataset=ds.name, checkpoint_path=str(work / "trec_run"),
                      epochs=args.finetune_epochs, lr=FINETUNE_LR, train_limit=args.train_limit,
                      init_from=str(dense), verbose=0)
    return _train_into(cfg, ds)


ZOO_DEFAULTS = Maker("zoo defaults", lambda name, args: dataclasses.asdict(ZOO[name]), defaults_trec,
                     lambda args: f"zoo defaults, {args.finetune_epochs} fine-tuning epoch(s)")


def measure_model(name: str, args, boards: list[str], datasets: dict, log: Callable[[str], None],
                  maker: Maker = ZOO_DEFAULTS, fit=None) -> dict:
    """One model's result (also written to --out/<model>/result.json), with its run at an arena of at
    most 1.5x the twin's when ``fit`` is given (:func:`at_arena_budget`). Raises on bad input."""
    key = ALIASES.get(name, name)
    if key not in ZOO:
        raise BenchModelsError(f"unknown zoo model {name!r}; choose among {', '.join(model_names())}")
    result = _measure(key, args, boards, datasets, log, maker)
    if fit is None or "boards" not in result:
        return result
    return {**result, "arena_budget": at_arena_budget(result, Path(args.out) / key, fit, args, datasets, log)}


def _measure(key: str, args, boards: list[str], datasets: dict, log: Callable[[str], None], maker: Maker) -> dict:
    work = Path(args.out) / key
    settings = settings_of(key, args, boards, maker)
    settings_file, result_file = work / "settings.json", work / "result.json"
    cached = json.loads(settings_file.read_text()) if settings_file.is_file() else settings
    if cached != settings:
        if all(cached.get(k) == settings[k] for k in TWIN_SETTINGS):
            # the twin (hours on the full schedule) does not depend on the rest; tune's cache is keyed by content
            log(f"{key}: settings changed since the cached run, not the dense twin's: keeping the twin, redoing "
                "the rest")
            for f in work.iterdir():
                if f.name in TWIN_FILES:
                    continue
                if f.is_dir():
                    shutil.rmtree(f)
                else:
                    f.unlink()
        else:
            log(f"{key}: settings changed since the cached run: starting {work} afresh")
            shutil.rmtree(work)
    if result_file.is_file():
        log(f"{key}: finished in a previous run ({result_file})")
        result = json.loads(result_file.read_text())
        if result.get("layers") and "op" not in result["layers"][0] and (work / "trec.tflite").is_file():
            # a result from before the per-layer profile was named: name it from the cached model, if readable
            with contextlib.suppress(tm.TfliteModelError):
                result["layers"] = layers.with_ops(result["layers"], tm.load_model(work / "trec.tflite"))
        return result
    given = Path(args.models_dir) / key / "dense.keras" if args.models_dir else None
    if given is not None and not given.is_file():
        raise BenchModelsError(f"{key}: --models-dir has no {given}; train it (trec-tflm train --model {key} "
                               f"--trec none) or leave out --models-dir to train it here")
    work.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(json.dumps(settings, indent=1))
    ds = dataset_for(key, args.dataset_path, datasets)
    started = time.monotonic()

    dense_keras = work / "dense.keras"
    if given is not None:
        _stage(dense_keras, lambda tmp: shutil.copyfile(given, tmp))
    else:
        log(f"{key}: training the dense twin ({args.epochs} epoch(s), {ds.name}) ...")
        cfg = TrainConfig(model=key, dataset=ds.name, checkpoint_path=str(work / "dense_run"), epochs=args.epochs,
                          trec=[], train_limit=args.train_limit, verbose=0)
        _stage(dense_keras, _train_into(cfg, ds))
    log(f"{key}: making the TREC model ({maker.describe(args)}) ...")
    trec_keras = _stage(work / "trec.keras", maker.make(key, dense_keras, ds, args, work))
    notes = dict(maker.notes(work))
    whys = notes.pop("layers", {})

    result = {"model": key, "dataset": ds.name, "dataset_source": ds.source,
              "train_images": trained_on(len(ds.x_train), args.train_limit), "settings": settings,
              "maker": {"name": maker.name, **notes}}
    tflite = {}
    for label, keras_file in (("trec", trec_keras), ("dense", dense_keras)):
        log(f"{key}: converting {label} to int8 ...")
        out = _stage(work / f"{label}.tflite",
                     lambda tmp, k=keras_file, grow=label == "trec": _convert(k, tmp, ds, args, grow))
        tflite[label] = out.read_bytes()
        log(f"{key}: int8 accuracy of {label} on the host ...")
        res = evaluate(tflite[label], ds.x_test, ds.y_test, limit=args.limit, reference="golden")
        result[label] = {"accuracy": res.accuracy, "test_images": res.images, "route": res.route,
                         "tflite_bytes": len(tflite[label])}
    result["accuracy_change_pt"] = 100 * (result["trec"]["accuracy"] - result["dense"]["accuracy"])
    result["layers"] = with_whys(layer_choices(tflite["trec"], trec_keras), whys)
    result["boards"] = {}
    n = min(args.images, len(ds.x_test))
    for board in boards:
        log(f"{key}: {board}: both models on {n} test images ...")
        try:
            cmp = compare_on_qemu(tflite["trec"], tflite["dense"], board, ds.x_test[:n], ds.y_test[:n],
                                  dataset=ds.name, names=(f"{key}_trec", f"{key}_dense"), log=log)
        except DeployError as exc:
            if not (over := parse_link_overflow(str(exc))):
                raise
            # a model too large for one board (squeezenet_complex's weights on the 1 MB NUCLEO) is still
            # measured on the other; the report gives the linker's margin
            result.setdefault("does_not_fit", {})[board] = does_not_fit(board, over)
            log(f"{key}: {board}: does not fit: {result['does_not_fit'][board]}")
            continue
        result["boards"][board] = board_result(cmp)
    if not result["boards"]:
        raise BenchModelsError(f"{key}: the firmware fits none of {', '.join(boards)}: "
                               + "; ".join(f"{b}: {e}" for b, e in result["does_not_fit"].items()))
    result["seconds"] = time.monotonic() - started
    paths.replace_atomically(result_file, lambda tmp: tmp.write_text(json.dumps(result, indent=1)))
    return result


def _convert(keras_file: Path, out: Path, ds, args, grow: bool) -> None:
    """trec-tflm convert; ``grow``: the TREC layers then get the arena's free room beside them
    (trec_tflm.target.arena.grow_scratch: faster plans, the same outputs, the arena as TFLM's planner
    lays it out on the host unchanged; the estimate's layout differs: CifarNet's conv2 grown to
    keep the estimate measured 6% more arena on QEMU)."""
    convert_file(keras_file, out, dataset=ds.name, dataset_path=args.dataset_path if ds.name == "cifar10" else None)
    if grow:
        out.write_bytes(grow_scratch(out.read_bytes(), arena=lambda b: Runtime(b).arena_used_bytes()).tflite)


def does_not_fit(board: str, overflows: list) -> str:
    """What the linker refused, per region, against the memory of the STM32 board ``board`` stands for."""
    b = BOARDS[board]
    size = {"FLASH": b.flash_bytes, "RAM": b.ram_bytes}
    return "; ".join(f"region {r}" + (f" ({size[r]:,} B on {b.real_board})" if r in size else "")
                     + (f" overflowed by {n:,} bytes" if n >= 0 else " overflowed") for r, n in overflows)


def trained_on(n: int, train_limit: int | None) -> int:
    """How many images the twin trained on: what trec-tflm train does not hold out, the first
    --train-limit of them."""
    rest = n - held_out(n)
    return min(train_limit or rest, rest)


def run_result(r) -> dict:
    """One model's run on a board (trec_tflm.bench.compare.ModelRun)."""
    budget = {x.region: x.used for x in r.firmware.budget.regions}
    host = r.host or {}
    return {"median_instructions": float(statistics.median(r.bench.ticks)), "accuracy": r.accuracy,
            "arena": r.arena, "flash": budget.get("FLASH"), "ram": budget.get("RAM"),
            "fits": r.firmware.budget.fits, "outputs_equal_host": host.get("outputs_equal")}


def board_result(cmp) -> dict:
    trec, dense = run_result(cmp.trec), run_result(cmp.dense)
    # per operator, mean over the images (the firmware's profiler), paired by position: the converter
    # keeps the twin's graph with TREC_CONV_2D in place of CONV_2D
    ops = [dict(zip(("index", "trec_op", "trec", "dense_op", "dense"), row)) for row in cmp.op_rows()]
    return {"images": cmp.n, "trec": trec, "dense": dense,
            "speedup": dense["median_instructions"] / trec["median_instructions"],
            "arena_ratio": trec["arena"] / dense["arena"], "ops": ops}


def at_arena_budget(result: dict, work: Path, fit, args, datasets: dict, log: Callable[[str], None]) -> dict:
    """The TREC model at an arena of at most ARENA_RATIO x the twin's (issue 21, item 3).

    The budget is ARENA_RATIO x the twin's arena as deployed (measured on QEMU, the smallest over the
    boards). A TREC model already within it on every board is said to fit and not rerun. Otherwise
    ``fit(trec_tflite, trec_keras, budget, dataset)`` returns the model with per-layer scratch budgets
    and a dict of what it chose (trec_tflm.tune.memory.fit_arena), or raises ValueError saying by how
    much no plan fits (the stage's "error"; the model's other figures stand). The fitted model runs
    on the same boards and images as the unconstrained one. Cached in arena_budget.json.

    fit_arena prices arenas with target.arena's estimate, which sits above what TFLM takes on the
    board by its margins: the first fit gets the budget plus that excess as measured on the
    unconstrained model (less scratch given up); when a board measures that model over the budget,
    the budget itself is fitted and run instead."""
    path = work / "arena_budget.json"
    if path.is_file():
        return json.loads(path.read_text())
    key, boards = result["model"], result["boards"]
    dense_arena = min(b["dense"]["arena"] for b in boards.values())
    trec_arena = max(b["trec"]["arena"] for b in boards.values())
    budget = int(ARENA_RATIO * dense_arena)
    out = {"ratio": ARENA_RATIO, "budget": budget, "dense_arena": dense_arena, "trec_arena": trec_arena,
           "fits_unconstrained": trec_arena <= budget}
    if not out["fits_unconstrained"]:
        ds = dataset_for(key, args.dataset_path, datasets)
        trec_tflite = (work / "trec.tflite").read_bytes()
        # the fit starts from the ops' default scratch: the estimate's excess is the default model's (growing
        # kept the arena TFLM lays out, measured here, not the estimate's)
        excess = max(0, estimate_arena(without_scratch_budgets(trec_tflite)).total - trec_arena)
        for attempt in dict.fromkeys([budget + excess, budget]):
            log(f"{key}: TREC arena {trec_arena:,} B over {ARENA_RATIO}x the twin's ({budget:,} B): choosing "
                f"scratch budgets for an estimated arena of {attempt:,} B ...")
            out.pop("error", None)
            out["fit_budget"] = attempt
            try:
                fitted, out["scratch"] = fit(trec_tflite, work / "trec.keras", attempt, ds)
            except ValueError as exc:
                out.pop("scratch", None)
                out["error"] = f"no scratch plan fits: {exc}"
                log(f"{key}: {out['error']}")
                continue
            if fitted == trec_tflite:  # the estimate fits where the boards measured more: nothing to shrink
                out["error"] = (f"the scratch fit estimates the TREC model within {attempt:,} B as it is, but the "
                                f"boards measured {trec_arena:,} B; nothing was rerun")
                continue
            paths.replace_atomically(work / "trec_arena.tflite", lambda tmp, b=fitted: tmp.write_bytes(b))
            out["boards"] = {}
            for board, b in boards.items():
                n = b["images"]
                log(f"{key}: {board}: the TREC model with these scratch budgets on {n} test images ...")
                r = run_result(run_model_on_qemu(fitted, board, ds.x_test[:n], ds.y_test[:n], label="TREC",
                                                 name=f"{key}_trec_arena", log=log))
                out["boards"][board] = {**r, "images": n, "within_budget": r["arena"] <= budget,
                                        "arena_ratio": r["arena"] / b["dense"]["arena"],
                                        "speedup": b["dense"]["median_instructions"] / r["median_instructions"],
                                        "vs_unconstrained": r["median_instructions"] / b["trec"]["median_instructions"]}
            if all(x["within_budget"] for x in out["boards"].values()):
                break
            log(f"{key}: measured over the budget of {budget:,} B with these scratch budgets")
    paths.replace_atomically(path, lambda tmp: tmp.write_text(json.dumps(out, indent=1)))
    return out


def _arena_line(a: dict) -> str:
    head = f"  arena <= {a['ratio']}x the twin's ({a['budget']:,} B): "
    if a["fits_unconstrained"]:
        return head + f"the TREC model's {a['trec_arena']:,} B already fits (not rerun)"
    if "error" in a:
        return head + f"error: {a['error']}"
    chosen = [x for x in (a.get("scratch") or {}).get("layers", []) if x.get("budget") is not None]
    parts = ["scratch budgets " + ", ".join(f"{x['name']} {x['budget']:,} B (fastest plan {x['preferred_bytes']:,} B)"
                                            for x in chosen)]
    if grown := ((a.get("scratch") or {}).get("grown") or {}).get("layers"):
        parts.append("then grown into the room left: " + ", ".join(
            f"{name} {g['before']:,} -> {g['after']:,} B" for name, g in grown.items()))
    parts += [f"{board}: arena {b['arena']:,} B ({b['arena_ratio']:.2f}x the twin's), median instructions "
              f"{b['median_instructions']:,.0f} = {b['speedup']:.2f}x fewer than dense, {b['vs_unconstrained']:.2f}x "
              f"the unconstrained TREC model's" for board, b in a.get("boards", {}).items()]
    return head + "; ".join(parts)


def table(results: list[dict]) -> str:
    lines = []
    for r in results:
        if "error" in r:
            lines.append(f"{r['model']}: error: {r['error']}")
            continue
        t, d = r["trec"], r["dense"]
        lines.append(f"{r['model']} ({r['dataset']}, {r['train_images']:,} training images, TREC model by "
                     f"{r.get('maker', {}).get('name', ZOO_DEFAULTS.name)}): int8 accuracy "
                     f"TREC {100 * t['accuracy']:.2f}% / dense {100 * d['accuracy']:.2f}% "
                     f"({r['accuracy_change_pt']:+.2f} pt, {t['test_images']:,} test images)")
        for board, b in r["boards"].items():
            bt, bd = b["trec"], b["dense"]
            lines.append(f"  {board}: median instructions TREC {bt['median_instructions']:,.0f} / dense "
                         f"{bd['median_instructions']:,.0f} = {b['speedup']:.2f}x fewer ({b['images']} images); "
                         f"arena {bt['arena']:,} / {bd['arena']:,} B; flash {bt['flash']:,} / {bd['flash']:,} B; "
                         f"RAM {bt['ram']:,} / {bd['ram']:,} B; device = host on {bt['outputs_equal_host']}"
                         f"/{b['images']} and {bd['outputs_equal_host']}/{b['images']}")
        lines += [f"  {board}: does not fit: {why}" for board, why in r.get("does_not_fit", {}).items()]
        if r.get("maker", {}).get("why"):
            lines.append(f"  {r['maker']['why']}")
        lines += ["  layers:", *(f"    {layers.describe(x, r['boards'])}" for x in r["layers"])]
        if "arena_budget" in r:
            lines.append(_arena_line(r["arena_budget"]))
    return "\n".join(lines)


def command(args, maker: Maker | None = None, fit=None) -> int:
    """``trec-tflm bench-models``; tune's maker and fit_arena come from the command line
    (trec_tflm.bench_models_cli), as they sit above this layer."""
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else \
        (lambda line: print(line, flush=True))
    if (done := chart.before_run(args, log)) is not None:
        return done
    boards = check_args(args)
    if args.no_tune:
        maker = ZOO_DEFAULTS
    elif maker is None:
        raise BenchModelsError("bench-models makes the TREC model with tune, which this module is not given: run "
                               "it as trec-tflm bench-models (trec_tflm.bench_models_cli), or pass --no-tune")
    reason = toolchain.skip_reason(need_qemu=True, need_toolchain=True)
    if reason:
        raise BenchModelsError(f"bench-models runs the models on QEMU: {reason}")
    names = [n.strip() for n in args.models.split(",") if n.strip()] if args.models else model_names()
    results, datasets = [], {}
    for i, name in enumerate(names, 1):
        log(f"[{i}/{len(names)}] {name}")
        try:
            # --json: stdout is the JSON only; what training and the builds print goes to stderr
            with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
                results.append(measure_model(name, args, boards, datasets, log, maker, fit))
        except (UserError, ValueError, OSError, RuntimeError) as exc:
            log(f"{name}: error: {exc}")
            results.append({"model": name, "error": str(exc)})
    print(json.dumps(results, indent=1) if args.json else table(results))
    chart.after_run(results, args, log)
    return 1 if any("error" in r for r in results) else 0
