"""`trec-tflm bench`: accuracy and inference time of a deployed model, over the serial protocol.

The board runs a firmware built around boards/common/eembc/ (the EEMBC / MLPerf Tiny protocol);
this module sends int8 inputs, runs inferences and collects outputs, ticks and per-op profiles:

* real boards report cycles (DWT->CYCCNT) and their core clock, so ticks convert to ms;
* QEMU boards report executed instructions (``-icount shift=0``), never milliseconds.

``run_bench`` is the library entry point; ``add_bench_arguments`` / ``bench_command`` are what
trec_tflm.cli registers as the ``bench`` sub-command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from trec_tflm.spec import quant
from trec_tflm.target import boards
from trec_tflm.target.boards import QEMU_BOARDS, REAL_BOARDS  # noqa: F401 - bench.board's names before the table
from trec_tflm.target.serial_protocol import (
    DEFAULT_TIMEOUT,
    DeviceError,
    DeviceInfo,
    EEMBCClient,
    InferResult,
    MalformedReplyError,
    ProtocolError,
)

BOARDS = tuple(boards.BOARDS)


@dataclass
class OpStat:
    name: str
    ticks: float            # mean over the benchmarked samples
    share: float            # fraction of the summed operator ticks


@dataclass
class BenchResult:
    port: str
    device_name: str
    board: str | None                  # from info% (trec-tflm firmware), else None
    model: str | None
    unit: str                          # "cycles", "instructions" or "us" (other firmware)
    clock_hz: int                      # 0 on QEMU / unknown
    n: int
    iterations: int
    warmup: int
    predictions: np.ndarray            # argmax per sample
    outputs: np.ndarray                # [n, classes]: int8 (raw) or float32 (dequantized)
    outputs_kind: str                  # "q" or "float"
    ticks: np.ndarray                  # [n] ticks per inference (mean over `iterations`)
    labels: np.ndarray | None = None
    accuracy: float | None = None
    ops: list[OpStat] = field(default_factory=list)

    @property
    def mean_ticks(self) -> float:
        return float(np.mean(self.ticks)) if len(self.ticks) else float("nan")

    @property
    def ms(self) -> np.ndarray | None:
        """Milliseconds per inference: real boards only (cycles / clock); None on QEMU."""
        if self.unit == "cycles" and self.clock_hz > 0:
            return self.ticks / self.clock_hz * 1e3
        if self.unit == "us":
            return self.ticks / 1e3
        return None

    def summary(self) -> str:
        lines = [f"device   {self.device_name} on {self.port}"]
        if self.board:
            lines.append(f"board    {self.board}  model {self.model}")
        lines.append(f"samples  {self.n}  ({self.iterations} timed + {self.warmup} warm-up "
                     "inference(s) each)")
        if self.accuracy is not None:
            lines.append(f"accuracy {self.accuracy:.4f}")
        mean = self.mean_ticks
        if self.unit == "instructions":
            lines.append(f"per inference {mean:,.0f} instructions (QEMU -icount: an instruction "
                         "count, not a time)")
        elif self.unit == "cycles":
            t = f" = {mean / self.clock_hz * 1e3:.3f} ms at {self.clock_hz / 1e6:g} MHz" \
                if self.clock_hz else ""
            lines.append(f"per inference {mean:,.0f} cycles{t}")
        else:
            lines.append(f"per inference {mean / 1e3:.3f} ms (from m-lap-us)")
        if self.ops:
            lines.append(f"per operator ({self.unit}, mean):")
            for op in self.ops:
                lines.append(f"  {op.name:<24} {op.ticks:>14,.0f}  {op.share * 100:5.1f}%")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("predictions", "outputs", "ticks", "labels"):
            v = getattr(self, k)
            d[k] = None if v is None else np.asarray(v).tolist()
        ms = self.ms
        d["ms"] = None if ms is None else ms.tolist()
        d["mean_ticks"] = self.mean_ticks
        return d


def quantize_inputs(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float inputs -> int8 with the model's input quantization (:func:`trec_tflm.spec.quant.quantize_input`)."""
    return quant.quantize_input(x, scale, zero_point)


def _as_bytes(sample: np.ndarray) -> bytes:
    a = np.asarray(sample)
    if a.dtype == np.int8:
        return a.tobytes()
    if a.dtype == np.uint8:
        return a.tobytes()
    raise TypeError(f"inputs must be int8 (or uint8) arrays, got {a.dtype}: quantize float data "
                    "first, e.g. trec_tflm.bench.board.quantize_inputs(x, scale, zero_point) with the "
                    "model's input quantization (the firmware reports it in info%)")


def wire_bytes(sample: np.ndarray, raw: bytes, input_format: str) -> bytes:
    """The ``db`` bytes of one int8 input for firmware taking ``input_format`` ("int8", or "uint8":
    byte = value + 128, which the firmware turns back into value like MLPerf Tiny's th_load_tensor)."""
    if input_format not in ("int8", "uint8"):
        raise ValueError(f"the firmware reports input={input_format!r}, which this bench does not know "
                         "(int8 or uint8): update trec-tflm")
    if input_format == "int8" or np.asarray(sample).dtype != np.int8:
        return raw
    return (np.frombuffer(raw, np.uint8) ^ 0x80).tobytes()


def run_bench(port_url: str | None, inputs: Sequence[np.ndarray] | np.ndarray,
              labels: Sequence[int] | np.ndarray | None = None, *,
              iterations: int = 1, warmup: int = 0, timeout: float = DEFAULT_TIMEOUT,
              infer_timeout: float = 120.0, expected_name: str | None = None,
              raw: bool = True, ops: bool = True, client: EEMBCClient | None = None,
              progress: Callable[[int, int], None] | None = None,
              log: Callable[[str], None] | None = None) -> BenchResult:
    """Run every input through the device and collect outputs, accuracy and timings.

    ``inputs``: int8 arrays of the model's input values, one per sample, each exactly the model's
    input size; firmware whose ``info%`` says input=uint8 (the MLPerf Tiny convention) gets them as
    value + 128. uint8 arrays are sent as they are (bytes already in the firmware's convention).
    ``labels``: optional class indices, for accuracy (argmax of the outputs).
    ``iterations`` / ``warmup``: timed and untimed inferences per sample (``infer N W%``).
    ``raw``: fetch the int8 outputs (``results q%``) where the firmware supports it.
    ``ops``: fetch per-operator ticks (``ops%``) where the firmware provides them.
    ``client``: an already open :class:`EEMBCClient` (``port_url`` is then only a label).
    Raises :class:`~trec_tflm.target.serial_protocol.ProtocolError` subclasses on any failure.
    """
    samples = [_as_bytes(s) for s in inputs]
    if not samples:
        raise ValueError("no inputs to benchmark")
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(samples):
            raise ValueError(f"{len(samples)} inputs but {len(labels)} labels")
    own = client is None
    if own:
        if not port_url:
            raise ValueError("port_url is required (e.g. /dev/ttyACM0 or socket://127.0.0.1:PORT)")
        client = EEMBCClient(port_url, timeout=timeout, log=log)
    try:
        client.open()
        name = client.identify(expected_name)
        info: DeviceInfo | None = client.info()
        if info is not None:
            samples = [wire_bytes(x, s, info.input_format) for x, s in zip(inputs, samples)]
            for i, s in enumerate(samples):
                if len(s) != info.input_bytes:
                    raise ValueError(f"input {i} has {len(s)} bytes, the model on the device "
                                     f"({info.model}) takes {info.input_bytes}")
        use_raw = raw and info is not None
        use_ops = ops and info is not None
        outputs, preds, ticks = [], [], []
        op_ticks: dict[str, list[int]] = {}
        op_order: list[str] = []
        unit = info.unit if info is not None else "us"
        for i, s in enumerate(samples):
            client.load(s)
            r: InferResult = client.infer(iterations, warmup, timeout=infer_timeout)
            if r.ticks is not None:
                ticks.append(r.ticks_per_inference)
                unit = r.unit or unit
            else:
                ticks.append(r.us_per_inference)
                unit = "us"
            values = r.results
            if use_raw:
                kind, values = client.results(raw=True)
                if kind != "q":
                    use_raw = False
                    values = r.results
            if info is not None and len(values) != info.outputs:
                raise MalformedReplyError(
                    f"the device sent {len(values)} output values for input {i}, its info% says the model has "
                    f"{info.outputs} (reply to {'results q%' if use_raw else f'infer {iterations} {warmup}%'})",
                    port=port_url, lines=[str(values)])
            outputs.append(values)
            preds.append(int(np.argmax(values)) if len(values) else -1)
            if use_ops:
                try:
                    _, op_list = client.ops()
                except DeviceError:
                    use_ops = False
                    op_list = []
                for op in op_list:
                    key = f"{op.index}:{op.name}"
                    if key not in op_ticks:
                        op_ticks[key] = []
                        op_order.append(key)
                    op_ticks[key].append(op.ticks)
            if progress:
                progress(i + 1, len(samples))
        kind = "q" if use_raw else "float"
        out_arr = np.asarray(outputs, dtype=np.int8 if kind == "q" else np.float32)
        pred_arr = np.asarray(preds, dtype=np.int64)
        acc = None if labels is None else float(np.mean(pred_arr == labels))
        op_stats = []
        if op_order:
            means = {k: float(np.mean(v)) for k, v in op_ticks.items()}
            total = sum(means.values()) or 1.0
            op_stats = [OpStat(k.split(":", 1)[1] + f" #{k.split(':', 1)[0]}", means[k],
                               means[k] / total) for k in op_order]
        return BenchResult(
            port=port_url or getattr(client, "port_url", "?"), device_name=name,
            board=info.board if info else None, model=info.model if info else None,
            unit=unit, clock_hz=info.clock_hz if info else 0, n=len(samples),
            iterations=iterations, warmup=warmup, predictions=pred_arr, outputs=out_arr,
            outputs_kind=kind, ticks=np.asarray(ticks, dtype=np.float64), labels=labels,
            accuracy=acc, ops=op_stats)
    finally:
        if own:
            client.close()


# --------------------------------------------------------------------------------- CLI --

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
    from trec_tflm import data

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
    from trec_tflm.target import qemu

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
        from trec_tflm.bench import compare
        from trec_tflm.target import deploy

        if args.compare:
            return compare.compare_command(args)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m trec_tflm.bench.board``)."""
    parser = add_bench_arguments(argparse.ArgumentParser(prog="trec-tflm bench",
                                                         description=__doc__.split("\n")[0]))
    return bench_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())


def register(parser: argparse.ArgumentParser) -> None:
    """``trec-tflm bench`` (see trec_tflm.cli)."""
    add_bench_arguments(parser)
    parser.set_defaults(func=bench_command)
