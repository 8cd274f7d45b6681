"""A TREC model against its dense twin on an emulated board: accuracy and instructions.

Both ``.tflite`` models are deployed (``trec_tflm.target.deploy``), built for the QEMU board and run
over the EEMBC / MLPerf Tiny serial protocol (``trec_tflm.bench.board.run_bench``) on the same real test
images; QEMU runs with ``-icount shift=0``, so the firmware reports executed instructions,
identical on every run. Optionally the host's TFLM (``trec_tflm.host.evaluate`` runners: the
tflite-micro interpreter with TREC_CONV_2D registered) runs the same int8 inputs and the outputs
are compared value by value::

    from trec_tflm.bench.compare import compare_on_qemu
    res = compare_on_qemu(Path("trec.tflite").read_bytes(), Path("dense.tflite").read_bytes(),
                          board="qemu_m7", images=x_test[:100], labels=y_test[:100])
    print(res.summary())
    res.trec.accuracy, res.dense.instructions, res.speedup     # dense / TREC instructions

``trec-tflm bench --board qemu_m7 --model TREC.tflite --compare DENSE.tflite --limit 100`` is the
command-line form (trec_tflm.bench.board delegates here). Needs TFLM_ROOT, the ARM toolchain and
qemu-system-arm; firmware projects are cached under build/deploy/ (keyed by the model's hash),
so a second run only re-runs QEMU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from trec_tflm import data, paths
from trec_tflm.bench import board as bench_board
from trec_tflm.host import evaluate
from trec_tflm.target import deploy as dp
from trec_tflm.target import qemu
from trec_tflm.target.boards import DEFAULT_EMULATED_BOARD, QEMU_BOARDS
from trec_tflm.target.serial_protocol import EEMBCClient

PathLike = Union[str, os.PathLike]


def work_root() -> Path:
    """Where cached firmware projects go: $TREC_TFLM_DEPLOY_ROOT, else build/deploy of a source
    checkout or the user cache (trec_tflm.paths.build_dir)."""
    return paths.build_dir_or_env("TREC_TFLM_DEPLOY_ROOT", "deploy")


@dataclasses.dataclass
class Firmware:
    elf: Path
    project: Path
    deploy: dict                  # project.json
    budget: dp.MemoryBudget


def project_dir(model: bytes, board: str, name: str) -> Path:
    """The cached project directory of a model, board and firmware name under work_root()."""
    key = hashlib.sha256(bytes(model) + board.encode() + name.encode()).hexdigest()[:12]
    return work_root() / board / f"{name}-{key}"


def firmware_for(model: bytes, board: str, *, name: str, work_dir: Optional[PathLike] = None,
                 log: Optional[Callable[[str], None]] = None) -> Firmware:
    """Deploy + build ``model`` for ``board`` into a cached project directory (reused when the
    model, board and name are the same; the build is incremental)."""
    dp.check_board(board)
    model = bytes(model)
    out = Path(work_dir) if work_dir is not None else project_dir(model, board, name)
    proj_file = out / dp.PROJECT_FILE
    reuse = False
    if proj_file.is_file():
        try:
            proj = json.loads(proj_file.read_text())
            reuse = (proj.get("model_sha256") == hashlib.sha256(model).hexdigest() and proj.get("board") == board
                     and proj.get("model_name") == name and proj.get("tflm_build_dir")
                     and proj.get("generator") == dp.generator_fingerprint())
        except ValueError:
            reuse = False
    if not reuse:
        if log:
            log(f"compare: deploying {name} for {board} into {out} (arena measured on QEMU) ...")
        dp.deploy(model, board, out, name=name)
    if log:
        log(f"compare: building {out} ...")
    elf, budget = dp.build_project(out)
    return Firmware(elf=elf, project=out, deploy=json.loads(proj_file.read_text()), budget=budget)


@dataclasses.dataclass
class ModelRun:
    label: str                     # "TREC" or "dense"
    bench: object                  # trec_tflm.bench.board.BenchResult
    firmware: Firmware
    inputs: np.ndarray             # int8 [n, input bytes] as sent
    host: Optional[dict] = None    # {"route", "outputs_equal", "predictions_equal", "n", "max_abs_diff"}

    @property
    def accuracy(self) -> Optional[float]:
        return self.bench.accuracy

    @property
    def instructions(self) -> float:
        """Mean instructions per inference (QEMU -icount)."""
        return self.bench.mean_ticks

    @property
    def arena(self) -> int:
        return int(self.firmware.deploy["arena_size"])


@dataclasses.dataclass
class CompareResult:
    board: str
    n: int
    dataset: str
    trec: ModelRun
    dense: ModelRun

    @property
    def instruction_ratio(self) -> float:
        """TREC instructions / dense instructions (below 1: TREC executes fewer)."""
        return self.trec.instructions / self.dense.instructions

    @property
    def speedup(self) -> float:
        """dense instructions / TREC instructions."""
        return self.dense.instructions / self.trec.instructions

    def op_rows(self) -> list:
        """(index, TREC op, TREC instructions, dense op, dense instructions) per operator, paired
        by position (the converter keeps the dense twin's graph, TREC_CONV_2D in place of CONV_2D)."""
        a, b = self.trec.bench.ops, self.dense.bench.ops
        rows = []
        for i in range(max(len(a), len(b))):
            oa = a[i] if i < len(a) else None
            ob = b[i] if i < len(b) else None
            rows.append((i, oa.name.split(" #")[0] if oa else "-", oa.ticks if oa else None,
                         ob.name.split(" #")[0] if ob else "-", ob.ticks if ob else None))
        return rows

    def summary(self) -> str:
        t, d = self.trec, self.dense
        unit = t.bench.unit
        lines = [f"TREC model vs dense twin on {self.board} ({unit}; QEMU -icount counts executed "
                 f"instructions, deterministic, not time), {self.n} {self.dataset} test images",
                 f"{'':<26}{'TREC':>16}{'dense':>16}{'TREC/dense':>13}"]

        def row(label, a, b, fmt="{:,.0f}", ratio=True):
            r = f"{a / b:>12.3f}x" if ratio and a is not None and b else ""
            sa = fmt.format(a) if a is not None else "-"
            sb = fmt.format(b) if b is not None else "-"
            lines.append(f"{label:<26}{sa:>16}{sb:>16}{r:>13}")

        row("accuracy", t.accuracy, d.accuracy, "{:.4f}", ratio=False)
        row(f"{unit} / inference", t.instructions, d.instructions)
        row("tensor arena (B)", t.arena, d.arena)
        for reg in ("FLASH", "RAM"):
            try:
                row(f"{'flash' if reg == 'FLASH' else 'RAM'} used (B)", t.firmware.budget.region(reg).used,
                    d.firmware.budget.region(reg).used)
            except StopIteration:
                pass
        lines.append(f"speedup (dense / TREC {unit}): {self.speedup:.3f}x;  instruction ratio TREC / dense: "
                     f"{self.instruction_ratio:.3f}")
        rows = self.op_rows()
        if rows and any(r[2] is not None for r in rows):
            lines.append(f"per operator ({unit} / inference, mean):")
            for i, na, ta, nb, tb in rows:
                r = f"{ta / tb:>8.3f}" if ta is not None and tb else ""
                sa = f"{ta:,.0f}" if ta is not None else "-"
                sb = f"{tb:,.0f}" if tb is not None else "-"
                lines.append(f"  #{i:<3}{na:<16}{sa:>14}   {nb:<16}{sb:>14}{r}")
        for run in (t, d):
            if run.host is not None:
                h = run.host
                lines.append(f"host check ({run.label}, {h['route']}): outputs identical on "
                             f"{h['outputs_equal']}/{h['n']} images, predictions on {h['predictions_equal']}/"
                             f"{h['n']} (max |diff| {h['max_abs_diff']})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        def run(r: ModelRun) -> dict:
            return {"accuracy": r.accuracy, "instructions": r.instructions, "arena": r.arena,
                    "project": str(r.firmware.project), "elf": str(r.firmware.elf),
                    "budget": {x.region: {"used": x.used, "size": x.size} for x in r.firmware.budget.regions},
                    "host": r.host, "bench": r.bench.to_dict()}
        return {"board": self.board, "n": self.n, "dataset": self.dataset, "speedup": self.speedup,
                "instruction_ratio": self.instruction_ratio, "trec": run(self.trec), "dense": run(self.dense),
                "ops": [dict(zip(("index", "trec_op", "trec", "dense_op", "dense"), r)) for r in self.op_rows()]}


def _quantize(images: np.ndarray, scale: float, zp: int) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype == np.int8:
        return x.reshape(len(x), -1)
    return bench_board.quantize_inputs(x, scale, zp).reshape(len(x), -1)


def host_check(model: bytes, inputs: np.ndarray, outputs: np.ndarray, reference: str = "auto") -> dict:
    """Run the same int8 inputs through the host's TFLM (evaluate.make_runner) and compare."""
    notes: list = []
    runner = evaluate.make_runner(model, reference, notes=notes)
    host = runner.predict(inputs).reshape(len(inputs), -1).astype(np.int16)
    dev = np.asarray(outputs).reshape(len(inputs), -1).astype(np.int16)
    return {"route": runner.describe().split(" (")[0] if runner.route != "golden" else "golden route",
            "route_detail": runner.describe(), "notes": notes, "n": int(len(inputs)),
            "outputs_equal": int(np.sum(np.all(host == dev, axis=1))),
            "predictions_equal": int(np.sum(np.argmax(host, 1) == np.argmax(dev, 1))),
            "max_abs_diff": int(np.max(np.abs(host - dev))) if host.size else 0,
            "host_outputs": host.astype(np.int8)}


def run_model_on_qemu(model: bytes, board: str, images: np.ndarray, labels: Optional[np.ndarray], *, label: str,
                      name: str, host: bool = True, work_dir: Optional[PathLike] = None, iterations: int = 1,
                      log: Optional[Callable[[str], None]] = None) -> ModelRun:
    """Deploy, build and run one model on a QEMU board; optionally check it against the host."""
    if board not in QEMU_BOARDS:
        raise dp.DeployError(f"{board} is not a QEMU board ({', '.join(QEMU_BOARDS)}); for a real board: "
                             "trec-tflm deploy --flash, then trec-tflm bench --port")
    fw = firmware_for(model, board, name=name, work_dir=work_dir, log=log)
    if log:
        log(f"compare: running {name} on {board} ({len(images)} images) ...")
    with qemu.start_qemu_serial(fw.elf, board) as handle:
        with EEMBCClient(handle.url) as client:
            client.identify()
            info = client.info()
            if info is None:
                raise dp.DeployError(f"{fw.elf} does not answer info%: not a trec-tflm app", 1)
            q = _quantize(images, info.input_scale, info.input_zero_point)

            def progress(i, n):
                if log and (i == n or i % max(1, n // 5) == 0):
                    log(f"  {name}: {i}/{n}")

            res = bench_board.run_bench(handle.url, list(q), labels, iterations=iterations, client=client,
                                        progress=progress)
    run = ModelRun(label=label, bench=res, firmware=fw, inputs=q)
    if host and res.outputs_kind == "q":
        run.host = host_check(model, q, res.outputs)
    return run


def compare_on_qemu(trec_tflite_bytes: bytes, dense_tflite_bytes: bytes, board: str = DEFAULT_EMULATED_BOARD,
                    images: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None, *,
                    limit: Optional[int] = None, dataset: str = "fashion_mnist", host: bool = True,
                    names: Sequence[str] = ("trec", "dense"), work_dir: Optional[PathLike] = None,
                    log: Optional[Callable[[str], None]] = None) -> CompareResult:
    """Accuracy and instructions of a TREC model and its dense twin on a QEMU board, same images.

    ``images``: float test images [N, ...] as the dataset gives them (each model quantizes with
    its own input scale, reported by the firmware), or int8 already quantized; default: the first
    ``limit`` (default 100) Fashion-MNIST test images. ``host``: also run the host TFLM on the
    same int8 inputs and count identical outputs. ``work_dir``: parent of the two projects
    (default: cached under build/deploy/)."""
    dp.check_board(board)
    if images is None:
        ds = data.load_dataset(dataset)
        n = 100 if limit is None else int(limit)
        images, labels = ds.x_test[:n], ds.y_test[:n]
    elif limit is not None:
        images = images[:limit]
        labels = None if labels is None else labels[:limit]
    if len(images) == 0:
        raise ValueError("no images to compare on")
    runs = []
    for label, blob, name in (("TREC", trec_tflite_bytes, names[0]), ("dense", dense_tflite_bytes, names[1])):
        wd = None if work_dir is None else Path(work_dir) / f"{name}-{board}"
        runs.append(run_model_on_qemu(bytes(blob), board, images, labels, label=label, name=name, host=host,
                                      work_dir=wd, log=log))
    return CompareResult(board=board, n=len(images), dataset=dataset, trec=runs[0], dense=runs[1])
