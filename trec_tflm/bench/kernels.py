"""``trec-tflm bench-kernels``: TREC vs dense int8 convolution on emulated Cortex-M7/M4.

Every benchmark layer is a TREC_CONV_2D of a model trained on real data, converted to int8 by
trec_tflm.tflite.convert; its input is a real activation: the int8 graph is run on a real image up to
that operator (3-channel first layers get real photographs, scikit-image's bundled samples cropped
and scaled to 32x32; deeper layers get Fashion-MNIST test images through the trained layers
before them). The kernels then run side by side on QEMU with ``-icount`` (instructions, exact):

  TREC at its default scratch (trec_convolve_s8_get_buffer_size: at most twice the int8 output
  where the layer allows), TREC with 4x the output as scratch (at most 192 KiB, at least the
  kernel's least: get_min_buffer_size), the dense int8 kernel, and
  CMSIS-NN's arm_convolve_wrapper_s8 when CMSIS_NN_ROOT is set.

Per layer it prints the instruction ratio dense / TREC, rc, the work-model bound
Cout / (H + 1 + rc*Cout + Cout/L) and the share of the bound reached, the split of TREC's
instructions (profile build), and scratch bytes beside a full im2col (N*K) and CMSIS-NN's.

With ``--inputs N`` it also runs TREC at its default scratch on each layer's first N inputs and
prints the spread of the ratio: the clusters (rc, and the passes the scratch allows) depend on the
input, the dense kernel's instructions do not.

With ``--sweep`` it prints instead, per layer, TREC's instructions, passes and channels per pass at
scratch budgets from the kernel's least (get_min_buffer_size) to 4x the layer's output: what a
smaller arena costs.

Models are trained on first use (a few minutes each on 2 cores) into the cache directory, or
taken from ``--models-dir`` (``<dir>/<model>_trec/best.keras``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from trec_tflm import data, paths
from trec_tflm.bench import kernel_runner as kernel_bench
from trec_tflm.host import evaluate
from trec_tflm.spec import model as tm
from trec_tflm.target import deploy, toolchain
from trec_tflm.tflite.convert import convert
from trec_tflm.training.train import TrainConfig, train

# training.models and training.saving are imported where a model is trained or loaded: they load TensorFlow,
# which `trec-tflm bench-kernels --help` and the kernel-only runs must not pay for.

CACHE = paths.cache_dir() / "bench_models"
# CIFAR-10 itself is not on this machine: the CIFAR-10 architectures are trained on Fashion-MNIST
# padded to 32x32 and repeated over 3 channels (a stand-in with the same input shape).
TRAIN_DATASET = "fashion_mnist_32x32x3"
DESIGN_CMSIS_NN = {  # DESIGN section 8: arm_convolve_wrapper_s8 instructions (-Ofast, gcc 12.2)
    "m7": {"L1": 7_024_376, "L2": 6_374_867, "L3": 1_570_271, "L4": 12_668_664, "L5": 44_764_115, "L6": 4_818_311},
    "m4": {"L1": 6_974_060, "L2": 6_361_607, "L3": 1_566_611, "L4": 12_618_348, "L5": 44_750_855, "L6": 4_813_755},
}


# the 4x-output scratch runs, capped so that the scratch, the layer's output and the firmware fit the
# 320 KB RAM of the emulated boards (L4's 4x would be 256 KiB)
BIG_SCRATCH_CAP = 192 * 1024


@dataclass(frozen=True)
class BenchLayer:
    name: str
    model: str
    layer: str
    source: str  # "photo": real photographs at the model input; "dataset": test images through the model
    shape: str

    def describe_data(self) -> str:
        if self.source == "photo":
            return "real photographs (scikit-image samples, 32x32)"
        return "Fashion-MNIST 32x32x3 test images through the trained layers"


LAYERS = [
    BenchLayer("L1", "cmsisnn_cifar10", "conv1", "photo", "32x32x3 -> 32, 5x5"),
    BenchLayer("L2", "cmsisnn_cifar10", "conv2", "dataset", "16x16x32 -> 16, 5x5"),
    BenchLayer("L3", "cmsisnn_cifar10", "conv3", "dataset", "8x8x16 -> 32, 5x5"),
    BenchLayer("L4", "cifarnet", "conv1", "photo", "32x32x3 -> 64, 5x5"),
    BenchLayer("L5", "cifarnet", "conv2", "dataset", "16x16x64 -> 64, 5x5"),
    BenchLayer("L6", "squeezenet", "fire2_expand3x3", "dataset", "16x16x16 -> 64, 3x3"),
]


# ------------------------------------------------------------------------------------------------
# models and real inputs
# ------------------------------------------------------------------------------------------------
def photographs(count: int = 8, seed: int = 0) -> np.ndarray:
    """Real photographs from scikit-image's bundled samples, random crops scaled to 32x32, in [0, 1]."""
    try:
        import skimage.data as skd
        import skimage.transform as skt
    except ImportError as exc:
        raise RuntimeError("the kernel benchmark takes real photographs from scikit-image: "
                           "pip install scikit-image") from exc
    names = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina", "immunohistochemistry"]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        img = getattr(skd, names[i % len(names)])()[..., :3].astype(np.float32) / 255.0
        h, w, _ = img.shape
        s = int(rng.integers(min(h, w) // 4, min(h, w)))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        out.append(skt.resize(img[y:y + s, x:x + s], (32, 32), anti_aliasing=True))
    return np.stack(out).astype(np.float32)


#: (TREC layers, L, H) of the models the layers come from: the zoo's defaults when these figures were
#: recorded (docs/BENCHMARKS.md), kept here so a later change of a zoo default (cifarnet's H, 6 -> 8 for
#: accuracy on the full schedule) does not change the kernel benchmark's workloads
SETTINGS = {"cmsisnn_cifar10": ((0, 1, 2), (15, 32, 16), (6, 6, 6)),
            "cifarnet": ((0, 1), (15, 64), (6, 6)),
            "squeezenet": ((0, 3, 6), (9, 16, 16), (6, 5, 5))}


def trained_model(model: str, models_dir: Path | None, log=print) -> Path:
    """best.keras of the TREC model (trained with :data:`SETTINGS` if missing; the cache keeps one per
    (L, H), so changed settings train anew)."""
    trec, sub_l, bits = SETTINGS[model]
    cached = CACHE / f"{model}_trec_L{'-'.join(map(str, sub_l))}_H{'-'.join(map(str, bits))}"
    for path in ([Path(models_dir) / f"{model}_trec" / "best.keras"] if models_dir else []) + [cached / "best.keras"]:
        if path.is_file():
            return path
    out = cached
    log(f"training {model} (TREC, L {sub_l}, H {bits}) on {TRAIN_DATASET} into {out} (once)")
    train(TrainConfig(model=model, dataset=TRAIN_DATASET, checkpoint_path=str(out), epochs=3, trec=list(trec),
                      sub_vector_length=list(sub_l), hash_bits=list(bits), train_limit=20000, verbose=0))
    return out / "best.keras"


def converted(model_path: Path, cache: dict, log=print) -> bytes:
    key = str(model_path)
    if key not in cache:
        from trec_tflm.training import saving  # loads Keras

        ds = data.load_dataset(TRAIN_DATASET)
        log(f"converting {model_path} to int8 (calibration: 200 {TRAIN_DATASET} training images)")
        cache[key] = convert(saving.load_keras_model(model_path), ds.x_train[:200])
    return cache[key]


def trec_cases(tflite: bytes, images, names=None, what: str = "the model") -> dict:
    """{layer name: [KernelCase per image]} for the TREC ops of a converted model (all, or
    ``names``), each with the int8 activation that reaches it from that image; the model is read
    once and the graph runs once per image."""
    runner = evaluate.GoldenGraphRunner(tflite)
    meta = tm.read_metadata(runner.model) or {}
    entries = {e.get("name"): e.get("operator_index") for e in meta.get("trec_layers", []) if e.get("name")}
    steps = {s.op_index: s for s in runner.steps if getattr(s, "kind", "") == "trec"}
    names = [n for n in entries if entries[n] in steps] if names is None else list(names)
    missing = [n for n in names if entries.get(n) not in steps]
    if missing or not names:
        raise ValueError(f"{what}: no TREC_CONV_2D for layer(s) {missing or 'any'} (TREC layers in its "
                         f"trec_tflm metadata: {sorted(entries)}; convert models with trec-tflm convert)")
    cases = {name: [] for name in names}
    for image in images:
        values = runner.invoke_all(runner.prepare_input(image[None]))
        for name in names:
            p = steps[entries[name]].params
            cases[name].append(kernel_bench.KernelCase(name, np.ascontiguousarray(values[p["input_index"]]),
                                                       p["filter"], p["bias"], p["hash"], dict(p["kwargs"])))
    return cases


# ------------------------------------------------------------------------------------------------
# the benchmark
# ------------------------------------------------------------------------------------------------
@dataclass
class LayerRow:
    layer: str
    shape: str
    data: str
    sub_vector_length: int
    hash_bits: int
    rc: float
    trec_instructions: int
    trec_scratch: int
    trec_passes: int
    trec4_instructions: int
    trec4_scratch: int
    dense_instructions: int
    dense_scratch: int
    ratio: float
    ratio_4x: float
    bound: float
    share_of_bound: float
    phases: dict = field(default_factory=dict)
    output_bytes: int = 0
    im2col_bytes: int = 0
    cmsis_instructions: int | None = None
    cmsis_scratch: int | None = None
    cmsis_source: str = ""
    over_inputs: list = field(default_factory=list)  # InputRun per input, the first the table's


@dataclass
class InputRun:
    """TREC at the default scratch on one of a layer's inputs (ratio against the first input's dense
    run: the dense kernel's instructions do not depend on the data)."""
    instructions: int
    ratio: float
    rc: float
    passes: int


def work_model_bound(cout: int, bits: int, rc: float, length: int) -> float:
    return cout / (bits + 1 + rc * cout + cout / length)


def layer_inputs(layers=None, models_dir: Path | None = None, log=print, tflite: bytes | None = None,
                 dataset: str = "fashion_mnist", count: int = 1
                 ) -> list[tuple[BenchLayer, list[kernel_bench.KernelCase]]]:
    """The benchmark layers L1-L6, or with ``tflite`` every TREC layer of that model, each with the
    cases of its first ``count`` inputs (photographs or test images through the model; the first
    is the benchmark's input)."""
    def named(cases, base, note):
        # the first input keeps the layer's name: the table's run
        for i, case in enumerate(cases):
            case.name, case.note = base if i == 0 else f"{base}_in{i}", note
        return cases

    pairs = []
    if tflite is not None:
        for name, cases in trec_cases(tflite, data.load_dataset(dataset).x_test[:count]).items():
            if layers and name not in layers:
                continue
            named(cases, name, f"first {dataset} test image through the model")
            _, h, w, cin = cases[0].input.shape
            cout, kh, kw, _ = cases[0].filter.shape
            pairs.append((BenchLayer(name, "", name, "dataset", f"{h}x{w}x{cin} -> {cout}, {kh}x{kw}"), cases))
    else:
        cache: dict = {}
        for spec in LAYERS:
            if layers and spec.name not in layers:
                continue
            tfl = converted(trained_model(spec.model, models_dir, log), cache, log)
            images = photographs(count) if spec.source == "photo" else data.load_dataset(TRAIN_DATASET).x_test[:count]
            cases = trec_cases(tfl, images, [spec.layer], spec.model)[spec.layer]
            pairs.append((spec, named(cases, spec.name, spec.describe_data())))
    return pairs


def layer_cases(layers=None, models_dir: Path | None = None, log=print, tflite: bytes | None = None,
                dataset: str = "fashion_mnist") -> list[tuple[BenchLayer, kernel_bench.KernelCase]]:
    """The benchmark layers L1-L6, or with ``tflite`` every TREC layer of that model (its input
    from the first ``dataset`` test image)."""
    return [(spec, cases[0]) for spec, cases in layer_inputs(layers, models_dir, log, tflite, dataset)]


def _check(res: kernel_bench.RunResult) -> None:
    bad = [n for n, r in {**res.trec, **res.dense, **res.cmsis}.items() if not r.ok]
    if bad or res.exit_code != 0:
        raise RuntimeError(f"kernel failed (an error status, or a mismatch against golden) on {res.board}: "
                           f"{bad}\n{res.stdout[-2000:]}")


def run(core: str = "m7", layers=None, models_dir: Path | None = None, cmsis_nn_root=None, log=print,
        tflite: bytes | None = None, dataset: str = "fashion_mnist", inputs: int = 1) -> list[LayerRow]:
    """The table of the module docstring for layer_inputs(...); with ``inputs`` > 1 also TREC on
    that many inputs per layer at the default scratch (LayerRow.over_inputs)."""
    per_layer = layer_inputs(layers, models_dir, log, tflite, dataset, inputs)
    pairs = [(spec, cases[0]) for spec, cases in per_layer]
    specs, cases = [s for s, _ in pairs], [c for _, c in pairs]
    big = []
    for spec, case in pairs:
        four = kernel_bench.KernelCase(f"{spec.name}_4x", case.input, case.filter, case.bias, case.hash,
                                       case.params, dense=False, note=case.note)
        y, _ = case.golden_trec()
        # never below the kernel's least: a layer with a small output and a long K (a non-strip L
        # over K = 800) needs more than 4x its output for the hash ids alone
        four.scratch_bytes = max(min(4 * int(y.size), BIG_SCRATCH_CAP), kernel_bench.buffer_sizes(case)[1])
        big.append(four)
    with tempfile.TemporaryDirectory() as tmp:
        log(f"running {len(cases)} layers on {kernel_bench.BOARD_OF_CORE.get(core, core)} (QEMU -icount)")
        # two images: the 4x-scratch runs and CMSIS-NN's code together overflow the board's RAM
        plain = kernel_bench.build_and_run(core, cases, Path(tmp) / "default", cmsis_nn_root=cmsis_nn_root)
        four = kernel_bench.build_and_run(core, big, Path(tmp) / "4x")
        prof = kernel_bench.build_and_run(core, cases, Path(tmp) / "profile", profile=True)
        # one firmware per layer: the inputs share the layer's filter and hash, not the board's RAM
        others = [kernel_bench.build_and_run(core, [dataclasses.replace(c, dense=False) for c in more[1:]],
                                             Path(tmp) / f"inputs_{spec.name}")
                  for spec, more in per_layer if len(more) > 1]
    for res in (plain, four, prof, *others):
        _check(res)
    by_input = {name: r for res in others for name, r in res.trec.items()}
    rows = []
    for spec, case in zip(specs, cases):
        t, t4, d = plain.trec[spec.name], four.trec[f"{spec.name}_4x"], plain.dense[spec.name]
        cout, kh, kw, cin = case.filter.shape
        length, bits = case.params["sub_vector_length"], case.params["hash_bits"]
        rc = t.remaining_ratio
        bound = work_model_bound(cout, bits, rc, length)
        ratio = d.ticks / t.ticks
        y_bytes = t.rows * cout
        row = LayerRow(spec.name, spec.shape, case.note, length, bits, rc, t.ticks, t.scratch, t.passes, t4.ticks,
                       t4.scratch, d.ticks, d.scratch, ratio, d.ticks / t4.ticks, bound, ratio / bound,
                       prof.trec[spec.name].phases, y_bytes, t.rows * kh * kw * cin)
        runs = [t] + [by_input[f"{spec.name}_in{i}"] for i in range(1, inputs)]
        row.over_inputs = [InputRun(r.ticks, d.ticks / r.ticks, r.remaining_ratio, r.passes) for r in runs]
        c = plain.cmsis.get(spec.name)
        if c is not None:
            row.cmsis_instructions, row.cmsis_scratch, row.cmsis_source = c.ticks, c.scratch, "measured"
        elif (case.input.shape[1:], cout, kh) in _DESIGN_SHAPES:
            row.cmsis_instructions = DESIGN_CMSIS_NN[core][_DESIGN_SHAPES[(case.input.shape[1:], cout, kh)]]
            row.cmsis_source = "DESIGN table"
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
# --sweep: instructions against scratch bytes
# ------------------------------------------------------------------------------------------------
# budgets in multiples of the layer's int8 output, beside the kernel's least and its default
SWEEP_OUTPUTS = (0.5, 1, 1.5, 2, 3, 4)
# cases per firmware image (their arrays are shared, but each run's scratch must fit the RAM)
SWEEP_BATCH = 4


@dataclass
class SweepPoint:
    label: str  # "least", "default" or "<k>x output"
    scratch: int
    instructions: int
    ratio: float  # dense / TREC
    passes: int
    chunk: int  # most output channels in one pass
    plan: str


def sweep(core: str, pairs, log=print) -> dict[str, list[SweepPoint]]:
    """Each layer's TREC instructions at the budgets from its least scratch to SWEEP_OUTPUTS times its
    output (at most BIG_SCRATCH_CAP), every run checked bit for bit; the dense kernel once per layer."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec, case in pairs:
            preferred, least = kernel_bench.buffer_sizes(case)
            y_bytes = int(case.golden_trec()[0].size)
            labels = {least: "least", preferred: "default"}  # by size: a default of 2x the output is one run
            for k in SWEEP_OUTPUTS:
                if least < int(k * y_bytes) <= BIG_SCRATCH_CAP:
                    labels.setdefault(int(k * y_bytes), f"{k:g}x output")
            points = sorted(labels.items())
            runs = []
            for i, (size, label) in enumerate(points):
                c = dataclasses.replace(case, name=f"{spec.name}_{i}", scratch_bytes=size, dense=i == 0)
                runs.append((label, c))
            log(f"{spec.name}: {len(runs)} budgets on {kernel_bench.BOARD_OF_CORE.get(core, core)}")
            results, dense = {}, None
            for at in range(0, len(runs), SWEEP_BATCH):
                batch = [c for _, c in runs[at:at + SWEEP_BATCH]]
                res = kernel_bench.build_and_run(core, batch, Path(tmp) / f"{spec.name}_{at}")
                _check(res)
                results.update(res.trec)
                dense = dense or res.dense.get(batch[0].name)
            out[spec.name] = [
                SweepPoint(label, c.scratch_bytes, results[c.name].ticks, dense.ticks / results[c.name].ticks,
                           results[c.name].passes, results[c.name].chunk, results[c.name].plan)
                for label, c in runs]
    return out


def format_sweep(sweeps: dict[str, list[SweepPoint]], core: str) -> str:
    lines = [f"TREC_CONV_2D instructions by scratch bytes on emulated Cortex-{core.upper()} (QEMU -icount)", "",
             f"{'layer':<7}{'budget':<13}{'scratch':>9}{'TREC':>13}{'ratio':>7}{'passes':>8}{'chunk':>7}  plan"]
    for name, points in sweeps.items():
        for p in points:
            lines.append(f"{name:<7}{p.label:<13}{p.scratch:>9,}{p.instructions:>13,}{p.ratio:>6.2f}x"
                         f"{p.passes:>8}{p.chunk:>7}  {p.plan}")
    return "\n".join(lines)


_DESIGN_SHAPES = {((32, 32, 3), 32, 5): "L1", ((16, 16, 32), 16, 5): "L2", ((8, 8, 16), 32, 5): "L3",
                  ((32, 32, 3), 64, 5): "L4", ((16, 16, 64), 64, 5): "L5", ((16, 16, 16), 64, 3): "L6"}


def format_table(rows: list[LayerRow], core: str) -> str:
    lines = [f"TREC_CONV_2D vs dense int8 convolution on emulated Cortex-{core.upper()} (QEMU -icount, instructions)",
             "",
             f"{'layer':<6}{'shape':<22}{'L':>4}{'H':>3}{'rc':>7}{'TREC':>12}{'dense':>12}{'ratio':>7}"
             f"{'bound':>7}{'of bnd':>7}{'ratio@4x':>9}{'CMSIS-NN':>12}"]
    for r in rows:
        cm = f"{r.cmsis_instructions:>12,}" if r.cmsis_instructions else f"{'-':>12}"
        lines.append(f"{r.layer:<6}{r.shape:<22}{r.sub_vector_length:>4}{r.hash_bits:>3}{r.rc:>7.3f}"
                     f"{r.trec_instructions:>12,}{r.dense_instructions:>12,}{r.ratio:>6.2f}x{r.bound:>6.2f}x"
                     f"{r.share_of_bound:>6.0%}{r.ratio_4x:>8.2f}x{cm}")
    lines += ["", "TREC instructions by phase (profile build; hashing / centroids / products / scatter+requantize):"]
    for r in rows:
        tot = sum(r.phases.values()) or 1
        p = r.phases
        lines.append(f"  {r.layer}: hash {p.get('hash', 0) / tot:5.1%}  centroids {p.get('centroids', 0) / tot:5.1%}  "
                     f"products {p.get('products', 0) / tot:5.1%}  scatter+requant "
                     f"{p.get('scatter', 0) / tot:5.1%}")
    lines += ["", "scratch bytes:", f"  {'layer':<6}{'TREC':>9}{'passes':>8}{'2x output':>11}{'im2col N*K':>12}"
              f"{'TREC@4x':>9}{'dense':>7}{'CMSIS-NN':>10}"]
    for r in rows:
        lines.append(f"  {r.layer:<6}{r.trec_scratch:>9,}{r.trec_passes:>8}{2 * r.output_bytes:>11,}"
                     f"{r.im2col_bytes:>12,}{r.trec4_scratch:>9,}{r.dense_scratch:>7,}"
                     f"{(r.cmsis_scratch if r.cmsis_scratch is not None else '-'):>10}")
    many = [r for r in rows if len(r.over_inputs) > 1]
    if many:
        lines += ["", f"TREC / dense at the default scratch over {len(many[0].over_inputs)} inputs per layer "
                  "(min / median / max; rc and passes min-max):"]
        for r in many:
            ratios = sorted(x.ratio for x in r.over_inputs)
            rcs, passes = [x.rc for x in r.over_inputs], [x.passes for x in r.over_inputs]
            lines.append(f"  {r.layer:<6}{ratios[0]:>6.2f}x /{float(np.median(ratios)):>6.2f}x /{ratios[-1]:>6.2f}x"
                         f"   rc {min(rcs):.3f}-{max(rcs):.3f}   passes {min(passes)}-{max(passes)}")
    lines += ["", "data: " + "; ".join(f"{r.layer}: {r.data}" for r in rows)]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--core", choices=["m7", "m4"], default="m7", help="emulated core (qemu_m7 or qemu_m4)")
    p.add_argument("--layers", default=None, help="comma-separated subset, e.g. L1,L5 (default: all)")
    p.add_argument("--models-dir", default=None,
                   help=f"trained models as <dir>/<model>_trec/best.keras (default: train into {CACHE})")
    p.add_argument("--tflite", default=None, metavar="MODEL.tflite",
                   help="instead of L1-L6: every TREC layer of this converted model (e.g. the demo's)")
    p.add_argument("--dataset", default="fashion_mnist",
                   help="with --tflite: the test image fed through the model (default fashion_mnist)")
    p.add_argument("--sweep", action="store_true",
                   help="instead of the table: TREC's instructions at scratch budgets from the kernel's least "
                        "to 4x the layer's output (what a smaller arena costs)")
    p.add_argument("--inputs", type=int, default=1, metavar="N",
                   help="also run TREC on each layer's first N inputs (photographs or test images) and print "
                        "the spread of its ratio: the clusters, and so the speed, depend on the input")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=command)


def command(args) -> int:
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    tflite = None
    if args.tflite:
        try:
            tflite = deploy.load_checked_model(args.tflite)[0]
        except deploy.DeployError as exc:
            print(f"trec-tflm bench-kernels: error: {exc}", file=sys.stderr)
            return 2
    if args.inputs < 1 or (args.inputs > 1 and args.sweep):
        print("trec-tflm bench-kernels: error: --inputs takes a count of at least 1, and not with --sweep",
              file=sys.stderr)
        return 2
    reason = toolchain.skip_reason(need_qemu=True, need_toolchain=True)
    if reason:
        print(f"trec-tflm bench-kernels: {reason}", file=sys.stderr)
        return 2
    if args.sweep:
        pairs = layer_cases(args.layers.split(",") if args.layers else None,
                            Path(args.models_dir) if args.models_dir else None, log, tflite, args.dataset)
        sweeps = sweep(args.core, pairs, log)
        if args.json:
            print(json.dumps({"core": args.core, "sweeps": {k: [asdict(p) for p in v] for k, v in sweeps.items()}},
                             indent=2))
        else:
            print(format_sweep(sweeps, args.core))
        return 0
    rows = run(args.core, args.layers.split(",") if args.layers else None,
               Path(args.models_dir) if args.models_dir else None, os.environ.get("CMSIS_NN_ROOT") or None, log,
               tflite=tflite, dataset=args.dataset, inputs=args.inputs)
    if args.json:
        print(json.dumps({"core": args.core, "layers": [asdict(r) for r in rows]}, indent=2))
    else:
        print(format_table(rows, args.core))
    return 0
