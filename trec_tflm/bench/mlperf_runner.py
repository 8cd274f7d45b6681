"""Running the MLPerf Tiny host runner (mlcommons/tiny ``benchmark/runner``) against our firmware,
and writing the test set it reads (``trec-tflm mlperf-dataset``).

``python -m trec_tflm.bench.mlperf_runner run --port PTY [--runner DIR] -- <runner arguments>`` runs
the unmodified runner with its device discovery pointed at a serial port it cannot find itself,
e.g. the pseudo-terminal of a QEMU board (docs/BOARDS.md "MLPerf Tiny runner"). What the firmware
must report for the runner, and the dataset format, are trec_tflm.target.mlperf.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import serial.tools.list_ports as list_ports
from serial.tools.list_ports_common import ListPortInfo

from trec_tflm import data, paths
from trec_tflm.target import deploy
from trec_tflm.target.mlperf import (
    MLPERF_IDS,
    MlperfError,
    model_io,
    quantize_input,
    write_dataset,
)

#: ST-LINK/V2-1 (NUCLEO-F746ZG, and the runner's own reference DUT entry in devices_kws_ic_vww.yaml).
STLINK_V21_VID_PID = (0x0483, 0x374B)
#: Where the runner is looked for: $TREC_MLPERF_RUNNER, else ../shared/third_party/mlperf-tiny-runner
#: next to the repository (the layout of our CI).
RUNNER_ENV = "TREC_MLPERF_RUNNER"
RUNNER_SIBLING = Path("..") / "shared" / "third_party" / "mlperf-tiny-runner"

PathLike = Union[str, os.PathLike]


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
        import usb.core  # pyusb: an extra ([dev]), needed only here

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
    """``python -m trec_tflm.bench.mlperf_runner run --port PTY [--runner DIR] -- <runner arguments>``."""
    ap = argparse.ArgumentParser(prog="python -m trec_tflm.bench.mlperf_runner", description=main.__doc__)
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
