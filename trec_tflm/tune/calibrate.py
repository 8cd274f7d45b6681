"""Calibrate the cost model once against QEMU's instruction counts, and check it on held-out layers.

    python -m trec_tflm.tune.calibrate --core m7            # fit, rewrite trec_tflm/tune/coefficients.py
    python -m trec_tflm.tune.calibrate --core m7 --check    # only the held-out check, with the stored coefficients

Fitting runs the CALIBRATION layers of trec_tflm.tune.layers on the emulated core (QEMU -icount: exact
instruction counts): a profile build gives TREC's phases (each phase's terms are fitted to its own
count, non-negative least squares on relative error), a plain build with CMSIS-NN gives the totals
(the constant part) and arm_convolve_wrapper_s8's counts. The check runs the HELD_OUT layers, other
shapes and images, and compares per layer the median over 8 inputs of predicted and measured
instructions. Needs qemu-system-arm, arm-none-eabi-gcc and $CMSIS_NN_ROOT.
"""

from __future__ import annotations

import argparse
import os
import pprint
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trec_tflm.bench import kernel_runner
from trec_tflm.target import toolchain
from trec_tflm.tune import coefficients, cost
from trec_tflm.tune import layers as bench_layers

COEFFICIENTS_FILE = Path(__file__).with_name("coefficients.py")


@dataclass
class Measured:
    """One layer on one image: the model's work terms and QEMU's counts."""

    layer: str
    case: str
    conv: cost.Conv
    layer_spec: bench_layers.Layer
    plan: cost.HostPlan    # what the host build of the kernel chose: the model's input
    target: cost.HostPlan  # what the core's build chose (the same code; the scratch layout differs with
                           # the pointer size, so now and then the passes do)
    total: int            # TREC instructions, plain build
    phases: dict          # TREC instructions per phase, profile build ({} when not profiled)
    dense: int | None     # arm_convolve_wrapper_s8 instructions (first image only)


def _cmsis_root() -> str:
    root = os.environ.get("CMSIS_NN_ROOT")
    if not root:
        raise RuntimeError("the dense side of the cost model is CMSIS-NN's: set CMSIS_NN_ROOT to a CMSIS-NN "
                           "checkout (commit e096196a0c49f065abc03d943c583cd50de424ba)")
    return root


def measure(core: str, layers, images, workdir: Path, profile: bool = True, log=print) -> list[Measured]:
    """Each layer on each image on QEMU, and the plan the host kernel chooses for it (the model's
    input, as it will be where no board is at hand)."""
    out = []
    for spec in layers:
        cases = bench_layers.cases(spec, images)
        log(f"{spec.name}: {spec.describe()}, {len(cases)} images on {core}")
        plain = kernel_runner.build_and_run(core, cases, workdir / "plain", cmsis_nn_root=_cmsis_root())
        runs = [plain]
        if profile:
            runs.append(kernel_runner.build_and_run(core, cases, workdir / "profile", profile=True))
        for res in runs:
            bad = [n for n, r in {**res.trec, **res.cmsis}.items() if not r.ok]
            if bad or res.exit_code != 0:
                raise RuntimeError(f"{spec.name}: kernel failed on {res.board}: {bad}\n{res.stdout[-1500:]}")
        conv = cost.Conv.of(spec.input_shape, spec.filter_shape, spec.stride, spec.dilation, spec.padding)
        for case in cases:
            plan = cost.host_plan(case.input, case.filter, case.hash, sub_vector_length=spec.sub_vector_length,
                                  hash_bits=spec.hash_bits, input_zero_point=case.params["input_zero_point"],
                                  stride=spec.stride, dilation=spec.dilation, padding=spec.padding)[0]
            q = plain.trec[case.name]
            target = cost.HostPlan(q.remaining_ratio, q.passes, q.plan, q.chunk, q.scatter_tenths, q.sums_block)
            phases = runs[1].trec[case.name].phases if profile else {}
            dense = plain.cmsis[case.name].ticks if case.name in plain.cmsis else None
            out.append(Measured(spec.name, case.name, conv, spec, plan, target, q.ticks, phases, dense))
    return out


# ------------------------------------------------------------------------------------------------
# fitting
# ------------------------------------------------------------------------------------------------
def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares with x >= 0 (active set: drop the most negative term, refit)."""
    keep = list(range(a.shape[1]))
    x = np.zeros(a.shape[1])
    while keep:
        sol, *_ = np.linalg.lstsq(a[:, keep], b, rcond=None)
        if (sol >= 0).all():
            x[keep] = sol
            break
        keep.pop(int(np.argmin(sol)))
    return x


_PROFILE_PHASE = {"hash": "hash", "sums": "centroids", "products": "products", "scatter": "scatter"}


def fit(rows: list[Measured]) -> dict:
    """Coefficients per TREC phase term (fitted to the profile build's phase counts), the constant
    (median of what the plain totals leave), and the dense terms (fitted to CMSIS-NN's counts)."""
    # fitted on the plan the core ran (its report), not the host's guess of it
    works = [cost.trec_work(r.conv, r.layer_spec.sub_vector_length, r.layer_spec.hash_bits, r.target.rc,
                            r.target.passes, r.target.scatter_tenths, r.target.sums_block, r.target.plan)
             for r in rows]
    trec: dict = {}
    for phase in cost.TREC_PHASES:
        terms = list(works[0][phase])
        a = np.array([[w[phase][t] for t in terms] for w in works], float)
        # the profile build's marks cost instructions of their own (hundreds per mark, and the general
        # path with short sums blocks marks thousands of times): each image's phases are scaled to
        # add up to the plain build's total
        y = np.array([r.phases[_PROFILE_PHASE[phase]] * r.total / sum(r.phases.values()) for r in rows], float)
        # relative error: a layer of 300K instructions counts as much as one of 3M; then once more
        # without the images the fit misses by more than half (a plan detail the stats do not report,
        # e.g. a T16 chunk built twice: not what the terms describe)
        x = nnls(a / y[:, None], np.ones(len(y)))
        inliers = np.abs(a @ x / y - 1) <= 0.5
        if inliers.sum() >= len(terms) and not inliers.all():
            x = nnls(a[inliers] / y[inliers, None], np.ones(int(inliers.sum())))
        trec[phase] = {t: round(float(v), 4) for t, v in zip(terms, x)}
    rest = [r.total - sum(trec[p][t] * v for p in cost.TREC_PHASES for t, v in w[p].items())
            for r, w in zip(rows, works)]
    trec["fixed"] = round(float(np.median(rest)))
    dense_rows = [r for r in rows if r.dense]
    terms = list(cost.dense_work(dense_rows[0].conv))
    a = np.array([[cost.dense_work(r.conv)[t] for t in terms] for r in dense_rows], float)
    y = np.array([r.dense for r in dense_rows], float)
    x = nnls(a / y[:, None], np.ones(len(y)))
    return {"trec": trec, "dense": {t: round(float(v), 4) for t, v in zip(terms, x)}}


def write_coefficients(core: str, table: dict, path: Path = COEFFICIENTS_FILE) -> None:
    merged = dict(coefficients.COEFFICIENTS) | {core: table}
    path.write_text(
        '"""Cost-model coefficients per core (trec_tflm.tune.cost), fitted against QEMU instruction counts.\n\n'
        "Generated by ``python -m trec_tflm.tune.calibrate --core CORE`` (one core at a time; the others\n"
        'are kept). Do not edit by hand."""\n\n'
        f"COEFFICIENTS = {pprint.pformat(merged, width=110, sort_dicts=False)}\n")


# ------------------------------------------------------------------------------------------------
# the held-out check
# ------------------------------------------------------------------------------------------------
@dataclass
class CheckRow:
    layer: str
    shape: str
    trec_predicted: float   # median over the layer's inputs
    trec_measured: float
    trec_error: float       # predicted / measured - 1, of the medians
    worst_input_error: float
    dense_predicted: float
    dense_measured: int
    dense_error: float
    inputs: int
    plan_differs: int       # inputs where the host's plan (the prediction's input) is not the core's


def check(rows: list[Measured], core: str) -> list[CheckRow]:
    out = []
    for name in dict.fromkeys(r.layer for r in rows):
        mine = [r for r in rows if r.layer == name]
        spec = mine[0].layer_spec
        pred = [cost.predict_trec(r.conv, spec.sub_vector_length, spec.hash_bits, r.plan.rc, r.plan.passes,
                                  r.plan.scatter_tenths, core, r.plan.sums_block, r.plan.plan) for r in mine]
        meas = [r.total for r in mine]
        worst = max((p / m - 1 for p, m in zip(pred, meas)), key=abs)
        dense = next(r.dense for r in mine if r.dense)
        dp = cost.predict_dense(mine[0].conv, core)
        pm, mm = float(np.median(pred)), float(np.median(meas))
        differs = sum((r.plan.passes, r.plan.plan, r.plan.chunk, r.plan.scatter_tenths, r.plan.sums_block)
                      != (r.target.passes, r.target.plan, r.target.chunk, r.target.scatter_tenths, r.target.sums_block)
                      for r in mine)
        out.append(CheckRow(name, spec.describe(), pm, mm, pm / mm - 1, worst, dp, dense, dp / dense - 1,
                            len(mine), differs))
    return out


def format_check(rows: list[CheckRow], core: str) -> str:
    lines = [f"cost model vs QEMU on emulated Cortex-{core.upper()} (instructions; TREC: median over inputs)",
             f"{'layer':<6}{'shape':<52}{'TREC pred':>12}{'measured':>12}{'error':>8}{'worst':>8}"
             f"{'dense pred':>12}{'measured':>12}{'error':>8}  host plan differs"]
    for r in rows:
        lines.append(f"{r.layer:<6}{r.shape:<52}{r.trec_predicted:>12,.0f}{r.trec_measured:>12,.0f}"
                     f"{r.trec_error:>+8.1%}{r.worst_input_error:>+8.1%}{r.dense_predicted:>12,.0f}"
                     f"{r.dense_measured:>12,}{r.dense_error:>+8.1%}  {r.plan_differs}/{r.inputs}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m trec_tflm.tune.calibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--core", choices=cost.CORES, default="m7")
    p.add_argument("--check", action="store_true", help="only the held-out check, with the stored coefficients")
    args = p.parse_args(argv)
    reason = toolchain.skip_reason(need_qemu=True, need_toolchain=True)
    if reason:
        print(f"calibrate: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        if not args.check:
            rows = measure(args.core, bench_layers.CALIBRATION, bench_layers.CALIBRATION_IMAGES, Path(tmp))
            table = fit(rows)
            write_coefficients(args.core, table)
            print(f"wrote {COEFFICIENTS_FILE} ({args.core}):")
            pprint.pprint(table, width=110, sort_dicts=False)
            coefficients.COEFFICIENTS[args.core] = table
            print(format_check(check(rows, args.core), args.core).replace("median over inputs",
                                                                            "calibration layers"))
        held = measure(args.core, bench_layers.HELD_OUT, bench_layers.HELD_OUT_IMAGES, Path(tmp), profile=False)
        print(format_check(check(held, args.core), args.core).replace("median over inputs",
                                                                      "held-out layers, median over 8 inputs"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
