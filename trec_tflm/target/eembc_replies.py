"""The replies of the EEMBC / MLPerf Tiny serial protocol: lines, their parsers and the protocol's errors.

The client that sends the commands is trec_tflm.target.serial_protocol (which re-exports these names).

The board (or QEMU) is reached through pyserial's ``serial_for_url``: ``/dev/ttyACM0``,
``COM5``, ``socket://127.0.0.1:PORT`` (QEMU's UART on a TCP port) or ``loop://`` in tests.

Commands end with ``%``; the device answers lines ending in ``\\r\\n`` and closes every command
with ``m-ready``. Message lines start with ``m-``, errors with ``e-[``; anything else is free text
(``help%`` output, boot noise). See boards/common/eembc/ee_protocol.h for the command set and
docs/BOARDS.md for how to connect.

Every failure is a :class:`ProtocolError` subclass whose message names the port, the command,
what was (not) received and what to do about it.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from trec_tflm.errors import TrecTflmError

DEFAULT_BAUDRATE = 115200
DEFAULT_TIMEOUT = 10.0
# The reference firmware's command buffer holds 80 characters: "db " + 64 hex digits + "%"
# fits. Our firmware reports a larger capacity through `info%`.
REFERENCE_CMD_CAPACITY = 80
READY = "m-ready"


# ----------------------------------------------------------------------------- errors --

class ProtocolError(TrecTflmError, RuntimeError):
    """Base class: talking to the board over the EEMBC / MLPerf Tiny protocol failed."""

    def __init__(self, message: str, *, port: str | None = None, command: str | None = None,
                 lines: Iterable[str] = ()):
        super().__init__(message)
        self.port = port
        self.command = command
        self.lines = list(lines)


class PortOpenError(ProtocolError):
    """The serial port (or QEMU's TCP socket) could not be opened."""


class DeviceTimeoutError(ProtocolError):
    """The device did not finish a reply (``m-ready``) in time, or said nothing at all."""


class GarbledReplyError(ProtocolError):
    """Bytes arrived but they are not text lines: usually a baud-rate mismatch."""


class WrongDeviceError(ProtocolError):
    """Something answers on the port, but it is not an EEMBC DUT (or not the one expected)."""


class DeviceError(ProtocolError):
    """The device answered a command with an error line ``e-[...]``."""


class MalformedReplyError(ProtocolError):
    """A reply line is truncated or does not have the documented format."""


# ----------------------------------------------------------------------- reply parsing --

@dataclass
class Reply:
    """All lines the device sent for one command, up to (not including) ``m-ready``."""

    command: str
    lines: list[str] = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        """Payloads of the ``m-`` lines (without the ``m-``)."""
        return [ln[2:] for ln in self.lines if ln.startswith("m-")]

    @property
    def errors(self) -> list[str]:
        """Texts of the ``e-[...]`` lines."""
        out = []
        for ln in self.lines:
            if ln.startswith("e-"):
                body = ln[2:]
                if body.startswith("[") and body.endswith("]"):
                    body = body[1:-1]
                out.append(body)
        return out

    @property
    def text(self) -> list[str]:
        """Lines that are neither messages nor errors (help text, boot noise)."""
        return [ln for ln in self.lines if not ln.startswith(("m-", "e-"))]

    def find(self, prefix: str) -> str | None:
        """Payload after ``m-<prefix>`` of the first such line, or None."""
        for msg in self.messages:
            if msg.startswith(prefix):
                return msg[len(prefix):]
        return None

    def find_all(self, prefix: str) -> list[str]:
        return [m[len(prefix):] for m in self.messages if m.startswith(prefix)]


def split_lines(data: str) -> list[str]:
    """Split received text into clean lines (CR/LF stripped, leading non-printables dropped)."""
    return [ln for ln in (clean_line(x) for x in data.split("\n")) if ln]


def clean_line(line: str) -> str:
    line = line.replace("\r", "")
    # Leading noise (a NUL after reset, a replacement char from a half-received byte) must not
    # hide the message behind it.
    i = 0
    while i < len(line) and not (" " <= line[i] <= "~"):
        i += 1
    return line[i:].rstrip()


def _bracket(payload: str, what: str, line: str) -> str:
    if not (payload.startswith("[") and payload.endswith("]")):
        raise MalformedReplyError(f"malformed {what} line {line!r}: expected [...] (truncated?)",
                                  lines=[line])
    return payload[1:-1]


def parse_name(line: str) -> tuple[str, str]:
    """``m-name-dut-[vendor]`` -> ("dut", "vendor")."""
    m = re.fullmatch(r"m-name-([^\[\]]*?)-?\[(.*)\]", line)
    if not m:
        raise MalformedReplyError(f"malformed name line {line!r}: expected m-name-<device>-[<name>]",
                                  lines=[line])
    return m.group(1), m.group(2)


def parse_results(line: str) -> tuple[str, list[float]]:
    """``m-results-[1.000,0.250]`` -> ("float", [1.0, 0.25]);
    ``m-results-q-[4,1]`` (trec-tflm extension) -> ("q", [4, 1])."""
    if line.startswith("m-results-q-"):
        kind, payload = "q", line[len("m-results-q-"):]
    elif line.startswith("m-results-"):
        kind, payload = "float", line[len("m-results-"):]
    else:
        raise MalformedReplyError(f"not a results line: {line!r}", lines=[line])
    body = _bracket(payload, "results", line).strip()
    if not body:
        return kind, []
    values: list[float] = []
    for tok in body.split(","):
        tok = tok.strip()
        try:
            v = int(tok) if kind == "q" else float(tok)
        except ValueError:
            raise MalformedReplyError(f"malformed value {tok!r} in results line {line!r}",
                                      lines=[line]) from None
        # q values are the int8 output tensor; float ones its dequantized values
        if (kind == "q" and not -128 <= v <= 127) or (kind == "float" and not math.isfinite(v)):
            raise MalformedReplyError(f"value {tok} in results line {line!r} is out of range "
                                      f"({'int8: -128..127' if kind == 'q' else 'not a finite number'})",
                                      lines=[line])
        values.append(v)
    return kind, values


@dataclass
class DeviceInfo:
    """What ``info%`` reports (trec-tflm firmware only)."""

    board: str
    model: str
    unit: str                  # "cycles" or "instructions"
    clock_hz: int              # 0 on QEMU
    resolution: int
    input_bytes: int
    input_scale: float
    input_zero_point: int
    outputs: int
    output_scale: float
    output_zero_point: int
    db_capacity: int
    cmd_capacity: int
    fw: str = ""
    model_id: str = ""         # m-model of profile% (an MLPerf Tiny ID such as ic01, or the name)
    input_format: str = "int8"  # "uint8": db bytes are the int8 input + 128 (MLPerf Tiny datasets)
    results: str = "dequantized"  # or "probabilities": what m-results prints
    extra: dict[str, str] = field(default_factory=dict)


_HEX32 = re.compile(r"[0-9a-fA-F]{1,8}")


def _f32(hexbits: str) -> float:
    """The float32 whose bit pattern is ``hexbits`` (up to 8 hex digits)."""
    if not _HEX32.fullmatch(hexbits):
        raise ValueError(f"{hexbits!r} is not the hex bit pattern of a float32 (1 to 8 hex digits)")
    return struct.unpack("<f", struct.pack("<I", int(hexbits, 16)))[0]


#: info% fields that must lie in a range: name -> (attribute, low, high).
_INFO_RANGES = {
    "clock_hz": ("clock_hz", 0, 10**10), "resolution": ("resolution", 0, 10**10),
    "input_bytes": ("input_bytes", 1, 1 << 24), "in_zp": ("input_zero_point", -128, 127),
    "outputs": ("outputs", 1, 1 << 20), "out_zp": ("output_zero_point", -128, 127),
    "db_capacity": ("db_capacity", 1, 1 << 24), "cmd_capacity": ("cmd_capacity", 8, 1 << 20),
}


def check_info(info: DeviceInfo, line: str) -> DeviceInfo:
    """Refuse an info% reply whose values the host could not use (naming the field)."""
    for key, (attr, lo, hi) in _INFO_RANGES.items():
        v = getattr(info, attr)
        if not lo <= v <= hi:
            raise MalformedReplyError(f"info line {line!r}: {key}={v} is outside [{lo}, {hi}]", lines=[line])
    for key, v in (("in_scale_f32", info.input_scale), ("out_scale_f32", info.output_scale)):
        if not (math.isfinite(v) and v > 0):
            raise MalformedReplyError(f"info line {line!r}: {key} decodes to {v}, not a finite scale > 0 "
                                      "(the firmware's model quantization is broken, or the line is garbled)",
                                      lines=[line])
    if info.input_bytes > info.db_capacity:
        raise MalformedReplyError(f"info line {line!r}: input_bytes={info.input_bytes} exceeds "
                                  f"db_capacity={info.db_capacity}", lines=[line])
    if not info.unit.strip():
        raise MalformedReplyError(f"info line {line!r}: empty unit", lines=[line])
    return info


def parse_info(line: str) -> DeviceInfo:
    if not line.startswith("m-info-"):
        raise MalformedReplyError(f"not an info line: {line!r}", lines=[line])
    body = _bracket(line[len("m-info-"):], "info", line)
    kv: dict[str, str] = {}
    for item in body.split(","):
        if "=" not in item:
            raise MalformedReplyError(f"malformed item {item!r} in info line {line!r}", lines=[line])
        k, v = item.split("=", 1)
        kv[k.strip()] = v.strip()
    try:
        info = DeviceInfo(
            board=kv.pop("board"), model=kv.pop("model"), unit=kv.pop("unit"),
            clock_hz=int(kv.pop("clock_hz")), resolution=int(kv.pop("resolution")),
            input_bytes=int(kv.pop("input_bytes")), input_scale=_f32(kv.pop("in_scale_f32")),
            input_zero_point=int(kv.pop("in_zp")), outputs=int(kv.pop("outputs")),
            output_scale=_f32(kv.pop("out_scale_f32")), output_zero_point=int(kv.pop("out_zp")),
            db_capacity=int(kv.pop("db_capacity")), cmd_capacity=int(kv.pop("cmd_capacity")),
            fw=kv.pop("fw", ""), model_id=kv.pop("model_id", ""),
            input_format=kv.pop("input", "int8"), results=kv.pop("results", "dequantized"))
    except (KeyError, ValueError) as exc:
        raise MalformedReplyError(f"info line {line!r} lacks or garbles {exc}", lines=[line]) from None
    info.extra = kv
    return check_info(info, line)


@dataclass
class InferResult:
    iterations: int
    warmup: int
    lap_us: tuple[int, int]          # the two m-lap-us time stamps around the timed loop
    ticks: int | None                # m-infer-ticks total over `iterations` (trec-tflm firmware)
    unit: str | None                 # "cycles" / "instructions"; None from other firmware
    results: list[float]             # m-results values (dequantized floats)

    @property
    def us_per_inference(self) -> float:
        return (self.lap_us[1] - self.lap_us[0]) / self.iterations

    @property
    def ticks_per_inference(self) -> float | None:
        return None if self.ticks is None else self.ticks / self.iterations


def int_field(payload: str, what: str, line: str) -> int:
    try:
        return int(payload)
    except ValueError:
        raise MalformedReplyError(f"malformed {what} line {line!r}", lines=[line]) from None


def parse_infer(reply: Reply, iterations: int | None = None, warmup: int | None = None) -> InferResult:
    """Interpret the lines of an ``infer N W%`` command."""
    lines = reply.lines
    required = ("m-warmup-start-", "m-warmup-done", "m-infer-start-", "m-infer-done", "m-results-")
    for prefix in required:
        if not any(ln.startswith(prefix) for ln in lines):
            raise MalformedReplyError(
                f"reply to {reply.command!r} lacks a {prefix!r} line (truncated reply?)",
                command=reply.command, lines=lines)
    n = int_field(reply.find("infer-start-") or "", "m-infer-start", "m-infer-start-...")
    w = int_field(reply.find("warmup-start-") or "", "m-warmup-start", "m-warmup-start-...")
    if iterations is not None and n != iterations:
        raise MalformedReplyError(f"device ran {n} inferences, {iterations} were asked for",
                                  command=reply.command, lines=lines)
    if warmup is not None and w != warmup:
        raise MalformedReplyError(f"device ran {w} warm-up inferences, {warmup} were asked for",
                                  command=reply.command, lines=lines)
    # The two time stamps of the timed loop come after m-infer-start.
    start = next(i for i, ln in enumerate(lines) if ln.startswith("m-infer-start-"))
    laps = [int_field(ln[len("m-lap-us-"):], "m-lap-us", ln)
            for ln in lines[start:] if ln.startswith("m-lap-us-")]
    if len(laps) < 2:
        raise MalformedReplyError(f"reply to {reply.command!r} has {len(laps)} m-lap-us lines after "
                                  "m-infer-start, expected 2", command=reply.command, lines=lines)
    if n < 1 or w < 0:
        raise MalformedReplyError(f"reply to {reply.command!r} reports {n} inferences and {w} warm-ups",
                                  command=reply.command, lines=lines)
    if laps[0] < 0 or laps[1] < laps[0]:
        raise MalformedReplyError(f"reply to {reply.command!r} has time stamps m-lap-us-{laps[0]} and "
                                  f"m-lap-us-{laps[1]}: they must be >= 0 and not go back",
                                  command=reply.command, lines=lines)
    ticks = unit = None
    tk = reply.find("infer-ticks-")
    if tk is not None:
        parts = _bracket(tk, "m-infer-ticks", "m-infer-ticks-" + tk).split(",")
        if len(parts) != 3:
            raise MalformedReplyError(f"malformed m-infer-ticks line {'m-infer-ticks-' + tk!r}",
                                      command=reply.command, lines=lines)
        ticks = int_field(parts[0], "m-infer-ticks", tk)
        unit = parts[2]
        if ticks < 0 or not unit.strip():
            raise MalformedReplyError(f"m-infer-ticks-{tk}: ticks must be >= 0 and the unit named",
                                      command=reply.command, lines=lines)
    res_line = next(ln for ln in lines if ln.startswith("m-results-"))
    _, results = parse_results(res_line)
    return InferResult(iterations=n, warmup=w, lap_us=(laps[0], laps[1]), ticks=ticks, unit=unit,
                       results=[float(v) for v in results])


@dataclass
class OpTiming:
    index: int
    name: str
    ticks: int


def parse_ops(reply: Reply) -> tuple[str | None, list[OpTiming]]:
    """``m-ops-[n,unit]`` followed by n ``m-op-[i,name,ticks]`` lines."""
    head = reply.find("ops-")
    if head is None:
        raise MalformedReplyError(f"reply to {reply.command!r} lacks m-ops-[...]",
                                  command=reply.command, lines=reply.lines)
    parts = _bracket(head, "m-ops", "m-ops-" + head).split(",")
    if len(parts) != 2:
        raise MalformedReplyError(f"malformed m-ops line 'm-ops-{head}'", lines=reply.lines)
    count, unit = int_field(parts[0], "m-ops", head), parts[1]
    if count < 0:
        raise MalformedReplyError(f"m-ops-{head}: a negative operator count", lines=reply.lines)
    ops = []
    for payload in reply.find_all("op-"):
        fields = _bracket(payload, "m-op", "m-op-" + payload).split(",")
        if len(fields) != 3:
            raise MalformedReplyError(f"malformed m-op line 'm-op-{payload}'", lines=reply.lines)
        op = OpTiming(int_field(fields[0], "m-op", payload), fields[1], int_field(fields[2], "m-op", payload))
        if op.index < 0 or op.ticks < 0:
            raise MalformedReplyError(f"m-op-{payload}: index and ticks must be >= 0", lines=reply.lines)
        ops.append(op)
    if len(ops) != count:
        raise MalformedReplyError(f"device announced {count} operators but sent {len(ops)} m-op lines",
                                  command=reply.command, lines=reply.lines)
    return unit, ops
