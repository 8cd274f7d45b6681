"""A deployed model's accuracy and inference time, over the serial protocol (``trec-tflm bench`` runs it).

The board runs a firmware built around boards/common/eembc/ (the EEMBC / MLPerf Tiny protocol);
this module sends int8 inputs, runs inferences and collects outputs, ticks and per-op profiles:

* real boards report cycles (DWT->CYCCNT) and their core clock, so ticks convert to ms;
* QEMU boards report executed instructions (``-icount shift=0``), never milliseconds.

``run_bench`` is the library entry point; the ``bench`` command is in :mod:`trec_tflm.bench.command`.
"""

from __future__ import annotations

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
