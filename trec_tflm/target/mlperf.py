"""The MLPerf Tiny host runner (mlcommons/tiny ``benchmark/runner``) against our firmware.

The runner drives a DUT over the EEMBC / MLPerf Tiny serial protocol and scores it. What it
needs from the firmware (docs/BOARDS.md "MLPerf Tiny runner"):

* ``profile%`` answers ``m-model-[<ID>]`` with an MLPerf Tiny model ID (:data:`MLPERF_IDS`): the
  runner picks its test script and dataset directory by it. ``trec-tflm deploy --mlperf-id``.
* ``m-results-[...]`` are class probabilities: the runner divides each vector by its sum and
  takes the argmax and the ROC AUC. A model that ends in logits (no SOFTMAX) gets the softmax of
  its dequantized outputs computed by the firmware (:func:`output_is_logits`); ``results q%``
  keeps the raw int8 outputs for our own tools.
* the dataset files are uint8 bytes which the reference firmware turns into int8 by subtracting
  128 (``th_load_tensor``): firmware deployed with ``--mlperf-id`` does the same
  (``--input-format``; ``info%`` reports ``input=uint8``).

This module has the model checks behind those deploy options, ``trec-tflm mlperf-dataset`` (a test
set in the runner's format: ``y_labels.csv`` + one binary file per image) and ``python -m
trec_tflm.target.mlperf run`` (the unmodified runner with its device discovery pointed at a serial port
it cannot find itself, e.g. the pseudo-terminal of a QEMU board).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from trec_tflm import paths
from trec_tflm.spec import quant

#: MLPerf Tiny model IDs the runner's test scripts know (sww01, streaming, needs an interface board).
MLPERF_IDS = {"ic01": "image classification", "kws01": "keyword spotting",
              "vww01": "visual wake words", "ad01": "anomaly detection"}
INPUT_FORMATS = ("int8", "uint8")
#: ST-LINK/V2-1 (NUCLEO-F746ZG, and the runner's own reference DUT entry in devices_kws_ic_vww.yaml).
STLINK_V21_VID_PID = (0x0483, 0x374B)
#: Where the runner is looked for: $TREC_MLPERF_RUNNER, else ../shared/third_party/mlperf-tiny-runner
#: next to the repository (the layout of our CI).
RUNNER_ENV = "TREC_MLPERF_RUNNER"
RUNNER_SIBLING = Path("..") / "shared" / "third_party" / "mlperf-tiny-runner"

PathLike = Union[str, os.PathLike]


class MlperfError(ValueError):
    """A user-fixable problem (bad ID, model the runner cannot score, missing runner)."""


# ------------------------------------------------------------------------------------------------
# the model's interface
# ------------------------------------------------------------------------------------------------
@dataclass
class ModelIO:
    input_shape: tuple
    input_scale: float
    input_zero_point: int
    output_elements: int
    ends_in_softmax: bool


def model_io(model: bytes) -> ModelIO:
    """Input shape and quantization, output size, and whether output 0 comes out of SOFTMAX."""
    from trec_tflm.spec import model as tm

    m = tm.load_model(model)
    sg = m.subgraphs[0]
    inp = tm.tensor_info(m, int(sg.inputs[0]))
    out_index = int(sg.outputs[0])
    out = tm.tensor_info(m, out_index)
    producer = next((op for op in tm.operators(m) if any(t is not None and t.index == out_index
                                                         for t in op.outputs)), None)
    return ModelIO(tuple(int(v) for v in inp.shape), float(inp.scale[0]) if inp.scale else 0.0,
                   int(inp.zero_point[0]) if inp.zero_point else 0, int(np.prod(out.shape)),
                   producer is not None and producer.name == "SOFTMAX")


def output_is_logits(model: bytes) -> bool:
    """True when the runner must be shown softmax(outputs): two or more outputs not produced by
    SOFTMAX. One output (an anomaly score) is printed as it is."""
    io = model_io(model)
    return io.output_elements >= 2 and not io.ends_in_softmax


def check_mlperf_id(mlperf_id: str, model: bytes) -> str:
    """The ID, checked against the model: classification IDs need >= 2 outputs (the runner takes
    the argmax), ad01 exactly one (the runner scores a single anomaly value per input)."""
    if mlperf_id not in MLPERF_IDS:
        raise MlperfError(f"--mlperf-id {mlperf_id!r} is not an MLPerf Tiny model ID; the runner knows "
                          + ", ".join(f"{k} ({v})" for k, v in MLPERF_IDS.items()))
    n = model_io(model).output_elements
    if mlperf_id == "ad01" and n != 1:
        raise MlperfError(f"--mlperf-id ad01: the runner scores anomaly detection from one value per "
                          f"input, this model has {n} outputs (end the model in its anomaly score, or "
                          "choose a classification ID)")
    if mlperf_id != "ad01" and n < 2:
        raise MlperfError(f"--mlperf-id {mlperf_id}: the runner scores classification by the argmax of "
                          f"class probabilities, this model has {n} output(s) (ad01 takes one score)")
    return mlperf_id


# ------------------------------------------------------------------------------------------------
# dataset in the runner's format
# ------------------------------------------------------------------------------------------------
def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float images -> int8 exactly as ``trec-tflm eval`` does (round half to even, clip)."""
    if scale <= 0:
        raise MlperfError("the model's input is not int8-quantized (scale 0): the firmware needs int8 input")
    return quant.quantize_input(x, scale, zero_point)


def write_dataset(out_dir: PathLike, inputs_int8: np.ndarray, labels: np.ndarray, *, num_classes: int,
                  mlperf_id: str = "ic01", prefix: str = "img") -> Path:
    """Write ``out_dir/<mlperf_id>/y_labels.csv`` and one ``<prefix>_NNNNN.bin`` per input: the
    int8 input values + 128 as uint8 bytes (the reference convention; firmware deployed with
    ``--mlperf-id`` subtracts 128 again). Rows are ``file,classes,class`` as the runner's
    DataSet reads them. Returns the directory to pass to the runner as ``--dataset_path``."""
    x = np.asarray(inputs_int8)
    if x.dtype != np.int8:
        raise MlperfError(f"inputs must be the model's int8 input values, got {x.dtype}")
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(x):
        raise MlperfError(f"{len(x)} inputs but {len(labels)} labels")
    root = Path(out_dir)
    d = root / mlperf_id
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (xi, yi) in enumerate(zip(x, labels)):
        name = f"{prefix}_{i:05d}.bin"
        (d / name).write_bytes((xi.reshape(-1).view(np.uint8) ^ 0x80).tobytes())
        rows.append((name, int(num_classes), int(yi)))
    tmp = d / "y_labels.csv.tmp"
    with open(tmp, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    os.replace(tmp, d / "y_labels.csv")
    return root


def read_dataset(root: PathLike, mlperf_id: str = "ic01") -> tuple[np.ndarray, np.ndarray]:
    """(int8 inputs [N, bytes], labels [N]) back from a runner-format directory."""
    d = Path(root) / mlperf_id
    xs, ys = [], []
    with open(d / "y_labels.csv", newline="") as f:
        for row in csv.reader(f):
            if not row:
                continue
            xs.append(np.frombuffer((d / row[0].strip()).read_bytes(), np.uint8) ^ 0x80)
            ys.append(int(row[2]))
    return np.asarray(xs).view(np.int8), np.asarray(ys, np.int64)


# ------------------------------------------------------------------------------------------------
# running the unmodified runner
# ------------------------------------------------------------------------------------------------
def find_runner(explicit: Optional[PathLike] = None) -> Optional[Path]:
    """The runner's ``benchmark/runner`` directory: ``explicit``, $TREC_MLPERF_RUNNER, or
    ../shared/third_party/mlperf-tiny-runner beside the repository; None when absent. Either the
    checkout root or its benchmark/runner directory may be named."""
    cands = [Path(explicit)] if explicit else []
    if os.environ.get(RUNNER_ENV):
        cands.append(Path(os.environ[RUNNER_ENV]))
    if paths.checkout_root() is not None:  # an installed package has no sibling shared/
        cands.append((paths.checkout_root() / RUNNER_SIBLING).resolve())
    for c in cands:
        for d in (c, c / "benchmark" / "runner"):
            if (d / "main.py").is_file() and (d / "device_manager.py").is_file():
                return d.resolve()
        if explicit and c == Path(explicit):
            raise MlperfError(f"{explicit}: not the MLPerf Tiny runner (no main.py and device_manager.py "
                              "there or in benchmark/runner)")
    return None


def _fake_port(device: str, vid: int, pid: int):
    from serial.tools.list_ports_common import ListPortInfo

    p = ListPortInfo(device, skip_link_detection=True)
    p.vid, p.pid = vid, pid
    p.description = f"trec-tflm: {device}"
    p.hwid = f"USB VID:PID={vid:04X}:{pid:04X}"
    return p


def run_runner(runner_dir: PathLike, port: str, runner_args: Sequence[str], *,
               vid_pid: tuple = STLINK_V21_VID_PID) -> None:
    """Run the runner's main.py in this process with its device discovery replaced: pyserial's
    port list holds only ``port`` (a pseudo-terminal, or any tty) with USB ``vid_pid``, so the DUT
    entry of the runner's device list that has this VID/PID (devices_kws_ic_vww.yaml: 0483:374B)
    names it; no USB-only devices (power monitors) are looked for. The runner's files are not
    touched; relative --device_list / --test_script default to the runner's own files. The
    runner writes sessions/<timestamp>/ into the current directory."""
    import runpy

    import serial.tools.list_ports as list_ports

    runner = Path(runner_dir)
    if not Path(port).exists():
        raise MlperfError(f"{port}: no such serial port or pseudo-terminal")
    args = list(runner_args)

    def has(opt_long: str, opt_short: str) -> bool:
        return any(a == opt_short or a == opt_long or a.startswith(opt_long + "=") for a in args)

    if not has("--device_list", "-d"):
        args += ["--device_list", str(runner / "devices_kws_ic_vww.yaml")]
    if not has("--test_script", "-t"):
        mode = "a"
        for i, a in enumerate(args):
            if a in ("-m", "--mode") and i + 1 < len(args):
                mode = args[i + 1]
            elif a.startswith("--mode="):
                mode = a.split("=", 1)[1]
        script = {"a": "tests_accuracy.yaml", "p": "tests_performance.yaml", "e": "tests_energy.yaml"}[mode]
        args += ["--test_script", str(runner / script)]
    fake = [_fake_port(port, *vid_pid)]
    list_ports.comports = lambda include_links=False: list(fake)
    try:
        import usb.core

        usb.core.find = lambda *a, **k: iter(())  # no libusb needed: no USB-only devices here
    except ImportError as exc:
        raise MlperfError(f"the runner needs pyusb (pip install pyusb, or pip install -e .[dev]): {exc}") from exc
    sys.path.insert(0, str(runner))
    sys.argv = [str(runner / "main.py"), *args]
    runpy.run_path(str(runner / "main.py"), run_name="__main__")


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def register(p: argparse.ArgumentParser) -> None:
    """``trec-tflm mlperf-dataset``."""
    p.add_argument("model", help="the int8 .tflite the dataset is for (its input quantization is used)")
    p.add_argument("-o", "--out", required=True, help="dataset root: <out>/<mlperf-id>/y_labels.csv + .bin files "
                   "(pass <out> to the runner as --dataset_path)")
    p.add_argument("--mlperf-id", default="ic01", choices=sorted(MLPERF_IDS),
                   help="the subdirectory (the firmware's m-model; default ic01)")
    p.add_argument("--dataset", default="fashion_mnist",
                   choices=("fashion_mnist", "fashion_mnist_32x32x3", "cifar10"),
                   help="test images (default fashion_mnist)")
    p.add_argument("--dataset-path", help="dataset directory (see trec_tflm.data)")
    p.add_argument("--limit", type=int, default=200, help="the first N test images (default 200; "
                   "`trec-tflm eval --limit N` scores the same ones)")
    p.set_defaults(func=dataset_command)


def dataset_command(args) -> int:
    from trec_tflm import data
    from trec_tflm.target import deploy

    if args.limit < 1:
        raise MlperfError("--limit must be >= 1")
    try:
        buf = deploy.load_checked_model(args.model)[0]
    except deploy.DeployError as exc:
        raise MlperfError(str(exc)) from None
    io = model_io(buf)
    ds = data.load_dataset(args.dataset, args.dataset_path)
    if tuple(ds.x_test.shape[1:]) != tuple(io.input_shape[1:]):
        raise MlperfError(f"{args.dataset} images are {ds.x_test.shape[1:]}, the model takes {io.input_shape[1:]}: "
                          "choose the dataset the model was trained on (--dataset)")
    x = quantize_input(ds.x_test[:args.limit], io.input_scale, io.input_zero_point)
    y = ds.y_test[:args.limit]
    root = write_dataset(args.out, x, y, num_classes=ds.num_classes, mlperf_id=args.mlperf_id)
    missing = sorted(set(range(ds.num_classes)) - set(int(v) for v in y))
    print(f"wrote {len(x)} {ds.name} test images to {root / args.mlperf_id} (y_labels.csv + .bin, int8 input + 128)")
    if missing:
        print(f"warning: classes {missing} are not among them: the runner's ROC AUC needs every class "
              "(use a larger --limit)", file=sys.stderr)
    print(f"runner: python main.py --dataset_path={root.resolve()} --mode=a  (see docs/BOARDS.md)")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m trec_tflm.target.mlperf run --port PTY [--runner DIR] -- <runner arguments>``."""
    ap = argparse.ArgumentParser(prog="python -m trec_tflm.target.mlperf", description=main.__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="the MLPerf Tiny runner with its DUT on --port (e.g. QEMU's pty)")
    run.add_argument("--port", required=True, help="serial device of the DUT, e.g. /dev/pts/5 (QEMU) or /dev/ttyACM0")
    run.add_argument("--runner", help=f"benchmark/runner of mlcommons/tiny (default ${RUNNER_ENV} or "
                     f"{RUNNER_SIBLING} beside the repository)")
    run.add_argument("--vid-pid", default="0483:374B", help="USB VID:PID the port poses as (default 0483:374B, "
                     "the ST-LINK/V2-1 of the runner's DUT entry)")
    run.add_argument("runner_args", nargs=argparse.REMAINDER, help="arguments for the runner's main.py (after --)")
    args = ap.parse_args(argv)
    runner = find_runner(args.runner)
    if runner is None:
        print(f"mlperf: the MLPerf Tiny runner was not found: pass --runner DIR or set {RUNNER_ENV} to a checkout "
              "of mlcommons/tiny (its benchmark/runner directory)", file=sys.stderr)
        return 2
    try:
        vid, pid = (int(v, 16) for v in args.vid_pid.split(":"))
    except ValueError:
        print(f"mlperf: --vid-pid {args.vid_pid!r}: expected VID:PID in hex, e.g. 0483:374B", file=sys.stderr)
        return 2
    rest = args.runner_args[1:] if args.runner_args[:1] == ["--"] else args.runner_args
    try:
        run_runner(runner, args.port, rest, vid_pid=(vid, pid))
    except MlperfError as exc:
        print(f"mlperf: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
