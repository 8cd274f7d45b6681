"""``trec-tflm bench``: run a model on a board (or QEMU) over the serial benchmark protocol.

The command around :func:`trec_tflm.bench.board.run_bench`: it finds the port (or starts QEMU), loads and
quantizes test images, and with ``--model`` deploys and builds the firmware first (with ``--compare``, the
TREC model against its dense twin: :mod:`trec_tflm.bench.compare`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from trec_tflm import data
from trec_tflm.bench import compare
from trec_tflm.bench.board import quantize_inputs, run_bench
from trec_tflm.target import deploy, qemu
from trec_tflm.target.boards import BOARDS, DEFAULT_EMULATED_BOARD, QEMU_BOARDS
from trec_tflm.target.serial_protocol import DEFAULT_TIMEOUT, EEMBCClient, ProtocolError


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of `trec-tflm bench` (trec_tflm.cli registers them on its sub-parser)."""
    parser.add_argument("--port", help="serial port URL: /dev/ttyACM0, COM5, "
                        "socket://127.0.0.1:PORT (QEMU UART on TCP). Not needed with --board qemu_*")
    parser.add_argument("--board", choices=BOARDS, help="board the firmware runs on; with "
                        "qemu_m7/qemu_m4 and --elf (and no --port) QEMU is started here")
    parser.add_argument("--elf", help="firmware ELF to run on QEMU (--board qemu_*)")
    parser.add_argument("--model", help="a .tflite: deploy and build it for --board qemu_m7|qemu_m4 and run "
                        "it on QEMU in one go (needs TFLM_ROOT; the project is cached under build/deploy/)")
    parser.add_argument("--compare", metavar="DENSE.tflite", help="with --model: also run this model (the "
                        "dense twin) on the same images and report accuracy, instructions, their ratio "
                        "and the per-operator breakdown of both (trec_tflm.bench.compare)")
    parser.add_argument("--no-host-check", action="store_true", help="with --compare: do not compare the "
                        "board's outputs with the host TFLM's")
    parser.add_argument("--dataset", default="fashion_mnist",
                        choices=("fashion_mnist", "fashion_mnist_32x32x3", "cifar10"),
                        help="test images to send (default fashion_mnist)")
    parser.add_argument("--dataset-path", help="directory of the dataset (see trec_tflm.data)")
    parser.add_argument("--limit", type=int, default=100, help="number of test images (default 100)")
    parser.add_argument("--offset", type=int, default=0, help="first test image (default 0)")
    parser.add_argument("--iterations", type=int, default=1, help="timed inferences per image")
    parser.add_argument("--warmup", type=int, default=0, help="untimed inferences per image first")
    parser.add_argument("--input-scale", type=float, help="input quantization scale (default: as "
                        "the firmware reports in info%%)")
    parser.add_argument("--input-zero-point", type=int, help="input zero point (default: from info%%)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds to wait for a reply (default %(default)s)")
    parser.add_argument("--infer-timeout", type=float, default=120.0,
                        help="seconds to wait for one infer command (default %(default)s)")
    parser.add_argument("--no-ops", action="store_true", help="skip the per-operator profile")
    parser.add_argument("--json", dest="json_path", help="write the results as JSON here")
    parser.add_argument("--verbose", "-v", action="store_true", help="print the serial traffic")
    return parser


def _load_images(args, input_bytes: int | None):
    name = args.dataset
    if name == "fashion_mnist" and input_bytes == 32 * 32 * 3:
        print("note: the model takes 32x32x3 inputs: using Fashion-MNIST padded to 32x32x3",
              file=sys.stderr)
        name = "fashion_mnist_32x32x3"
    ds = data.load_dataset(name, args.dataset_path)
    sl = slice(args.offset, args.offset + args.limit)
    return ds.x_test[sl], ds.y_test[sl], ds.name


def _start_qemu(args):
    """Start QEMU (deterministic -icount) with the firmware's UART0 on a local TCP port;
    returns (url, process). QEMU starts the firmware when the client connects."""
    handle = qemu.start_qemu_serial(args.elf, args.board)
    return handle.url, handle


def bench_command(args: argparse.Namespace) -> int:
    """`trec-tflm bench`: returns the process exit status (0 ok, 1 device/protocol error, 2 usage)."""
    log = (lambda s: print(s, file=sys.stderr)) if getattr(args, "verbose", False) else None
    qemu_handle = None
    port = args.port
    if args.limit < 1:
        print("bench: --limit must be >= 1", file=sys.stderr)
        return 2
    model = getattr(args, "model", None)
    if getattr(args, "compare", None) and not model:
        print("bench: --compare DENSE.tflite needs --model TREC.tflite", file=sys.stderr)
        return 2
    if model:
        if args.port or args.elf:
            print("bench: --model builds and runs its own firmware on QEMU: drop --port/--elf (for a real "
                  "board: trec-tflm deploy MODEL --board B -o OUT --flash, then bench --port)", file=sys.stderr)
            return 2
        if args.board not in QEMU_BOARDS:
            print(f"bench: --model needs --board qemu_m7 or qemu_m4 (got {args.board}); for a real board: "
                  "trec-tflm deploy MODEL --board B -o OUT --flash, then bench --port", file=sys.stderr)
            return 2
        if args.compare:
            return compare_command(args)
        try:
            buf = deploy.load_checked_model(model)[0]
            fw = compare.firmware_for(buf, args.board, name=deploy.firmware_name(model),
                                      log=lambda s: print(s, file=sys.stderr, flush=True))
        except deploy.DeployError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return exc.exit_code
        args.elf = str(fw.elf)
    try:
        if port is None:
            if args.board in QEMU_BOARDS and args.elf:
                port, qemu_handle = _start_qemu(args)
            else:
                print("bench: give --port (e.g. /dev/ttyACM0, socket://127.0.0.1:PORT), or "
                      "--board qemu_m7|qemu_m4 --elf FIRMWARE.elf to start QEMU", file=sys.stderr)
                return 2
        with EEMBCClient(port, timeout=args.timeout, log=log) as client:
            name = client.identify()
            info = client.info()
            if info is not None and args.board and info.board != args.board:
                print(f"warning: --board {args.board} but the firmware says it runs on "
                      f"{info.board}", file=sys.stderr)
            x, y, ds_name = _load_images(args, info.input_bytes if info else None)
            scale = args.input_scale if args.input_scale is not None else (
                info.input_scale if info else None)
            zp = args.input_zero_point if args.input_zero_point is not None else (
                info.input_zero_point if info else None)
            if scale is None or zp is None:
                print("bench: this firmware does not report its input quantization (no info%): "
                      "pass --input-scale and --input-zero-point", file=sys.stderr)
                return 2
            q = quantize_inputs(x, scale, zp).reshape(len(x), -1)
            print(f"bench: {name} on {port}: {len(q)} images of {ds_name}", file=sys.stderr)

            def progress(i, n):
                if i == n or i % max(1, n // 10) == 0:
                    print(f"  {i}/{n}", file=sys.stderr)

            result = run_bench(port, list(q), y, iterations=args.iterations, warmup=args.warmup,
                               infer_timeout=args.infer_timeout, ops=not args.no_ops,
                               client=client, progress=progress)
        print(result.summary())
        if args.json_path:
            with open(args.json_path, "w", encoding="utf-8") as f:
                json.dump(dict(result.to_dict(), dataset=ds_name), f, indent=1)
        return 0
    except ProtocolError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    finally:
        if qemu_handle is not None:
            qemu_handle.stop()


def compare_command(args: argparse.Namespace) -> int:
    """``trec-tflm bench --board qemu_m7 --model TREC.tflite --compare DENSE.tflite`` (from bench)."""
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    board = args.board or DEFAULT_EMULATED_BOARD
    try:
        if board not in QEMU_BOARDS:
            raise deploy.DeployError(f"--compare runs on the QEMU boards ({', '.join(QEMU_BOARDS)}), "
                                     f"got --board {board}; on a real board deploy each model with trec-tflm "
                                     "deploy --flash and bench them one by one with --port")
        blobs = [deploy.load_checked_model(p)[0] for p in (args.model, args.compare)]
        ds = data.load_dataset(args.dataset, args.dataset_path)
        sl = slice(args.offset, args.offset + args.limit)
        names = [deploy.firmware_name(p) for p in (args.model, args.compare)]
        if names[0] == names[1]:
            names = [names[0] + "_trec", names[1] + "_dense"]
        res = compare.compare_on_qemu(blobs[0], blobs[1], board, ds.x_test[sl], ds.y_test[sl], dataset=ds.name,
                              host=not getattr(args, "no_host_check", False), names=names, log=log)
    except deploy.DeployError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return exc.exit_code
    print(res.summary())
    if args.json_path:
        d = res.to_dict()
        for k in ("trec", "dense"):
            if d[k]["host"]:
                d[k]["host"] = {kk: vv for kk, vv in d[k]["host"].items() if kk != "host_outputs"}
        Path(args.json_path).write_text(json.dumps(d, indent=1, default=str) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m trec_tflm.bench.command``)."""
    parser = add_bench_arguments(argparse.ArgumentParser(prog="trec-tflm bench",
                                                         description=__doc__.split("\n")[0]))
    return bench_command(parser.parse_args(argv))


def register(parser: argparse.ArgumentParser) -> None:
    """``trec-tflm bench`` (see trec_tflm.cli)."""
    add_bench_arguments(parser)
    parser.set_defaults(func=bench_command)


if __name__ == "__main__":
    sys.exit(main())
