"""Host side of the EEMBC / MLPerf Tiny serial protocol (the firmware side is boards/common/eembc/).

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
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

DEFAULT_BAUDRATE = 115200
DEFAULT_TIMEOUT = 10.0
# The reference firmware's command buffer holds 80 characters: "db " + 64 hex digits + "%"
# fits. Our firmware reports a larger capacity through `info%`.
REFERENCE_CMD_CAPACITY = 80
READY = "m-ready"


# ----------------------------------------------------------------------------- errors --

class ProtocolError(RuntimeError):
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


def _int_field(payload: str, what: str, line: str) -> int:
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
    n = _int_field(reply.find("infer-start-") or "", "m-infer-start", "m-infer-start-...")
    w = _int_field(reply.find("warmup-start-") or "", "m-warmup-start", "m-warmup-start-...")
    if iterations is not None and n != iterations:
        raise MalformedReplyError(f"device ran {n} inferences, {iterations} were asked for",
                                  command=reply.command, lines=lines)
    if warmup is not None and w != warmup:
        raise MalformedReplyError(f"device ran {w} warm-up inferences, {warmup} were asked for",
                                  command=reply.command, lines=lines)
    # The two time stamps of the timed loop come after m-infer-start.
    start = next(i for i, ln in enumerate(lines) if ln.startswith("m-infer-start-"))
    laps = [_int_field(ln[len("m-lap-us-"):], "m-lap-us", ln)
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
        ticks = _int_field(parts[0], "m-infer-ticks", tk)
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
    count, unit = _int_field(parts[0], "m-ops", head), parts[1]
    if count < 0:
        raise MalformedReplyError(f"m-ops-{head}: a negative operator count", lines=reply.lines)
    ops = []
    for payload in reply.find_all("op-"):
        fields = _bracket(payload, "m-op", "m-op-" + payload).split(",")
        if len(fields) != 3:
            raise MalformedReplyError(f"malformed m-op line 'm-op-{payload}'", lines=reply.lines)
        op = OpTiming(_int_field(fields[0], "m-op", payload), fields[1], _int_field(fields[2], "m-op", payload))
        if op.index < 0 or op.ticks < 0:
            raise MalformedReplyError(f"m-op-{payload}: index and ticks must be >= 0", lines=reply.lines)
        ops.append(op)
    if len(ops) != count:
        raise MalformedReplyError(f"device announced {count} operators but sent {len(ops)} m-op lines",
                                  command=reply.command, lines=reply.lines)
    return unit, ops


# ------------------------------------------------------------------------------ client --

def _hint_for_port(url: str) -> str:
    if url.startswith("socket://"):
        return ("is QEMU running with its UART on that TCP port (trec-tflm bench --board qemu_m7 "
                "starts it for you)?")
    if url.startswith(("/dev/ttyACM", "/dev/ttyUSB")):
        return ("is the board plugged in (ST-LINK USB) and is your user allowed to open it "
                "(group dialout: sudo usermod -aG dialout $USER, then log in again)? "
                "`ls /dev/ttyACM*` lists candidate ports.")
    return "check the port name (e.g. /dev/ttyACM0, COM5, socket://127.0.0.1:PORT)."


class EEMBCClient:
    """Talks the EEMBC / MLPerf Tiny protocol to one device.

    >>> with EEMBCClient("socket://127.0.0.1:4321") as dut:
    ...     dut.identify()
    ...     dut.load(bytes(784))
    ...     r = dut.infer(1, 0)
    """

    def __init__(self, port_url: str, *, baudrate: int = DEFAULT_BAUDRATE,
                 timeout: float = DEFAULT_TIMEOUT, serial_port=None,
                 log: Callable[[str], None] | None = None):
        self.port_url = port_url
        self.baudrate = baudrate
        self.timeout = timeout
        self.log = log
        self._ser = serial_port
        self._pending = b""
        self.info_cache: DeviceInfo | None = None
        self.cmd_capacity = REFERENCE_CMD_CAPACITY

    # -- connection ---------------------------------------------------------------------
    def open(self) -> EEMBCClient:
        if self._ser is None:
            import serial  # pyserial

            try:
                self._ser = serial.serial_for_url(self.port_url, baudrate=self.baudrate,
                                                  timeout=0.05, write_timeout=self.timeout)
            except (serial.SerialException, OSError, ValueError) as exc:
                raise PortOpenError(f"cannot open {self.port_url}: {exc}. {_hint_for_port(self.port_url)}",
                                    port=self.port_url) from exc
        return self

    def close(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            finally:
                self._ser = None

    def __enter__(self) -> EEMBCClient:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- low level ----------------------------------------------------------------------
    def _log(self, s: str) -> None:
        if self.log:
            self.log(s)

    def _read_some(self, wait: float) -> bytes:
        # The port's own read timeout (0.05 s, set at open) bounds each read; changing it per
        # read would reconfigure a real tty every time.
        ser = self._ser
        n = getattr(ser, "in_waiting", 0) or 1
        try:
            return ser.read(n)
        except Exception as exc:  # noqa: BLE001 - pyserial raises several types for a lost port
            raise PortOpenError(f"reading {self.port_url} failed: {exc} (board unplugged, or QEMU "
                                "exited?)", port=self.port_url) from exc

    def drain(self, quiet: float = 0.1, limit: float = 1.0) -> bytes:
        """Discard whatever the device is still sending (boot banner, a late reply)."""
        self.open()
        got = self._pending
        self._pending = b""
        start = last = time.monotonic()
        while True:
            now = time.monotonic()
            if now - last >= quiet or now - start >= limit:
                break
            data = self._read_some(quiet)
            if data:
                got += data
                last = time.monotonic()
        if got:
            self._log(f"drained {len(got)} bytes: {got[:200]!r}")
        return got

    def send(self, command: str) -> None:
        self.open()
        if "%" in command:
            raise ValueError(f"command {command!r} must not contain '%' (it ends a command)")
        data = (command + "%").encode("ascii")
        self._log(f"> {command}%")
        try:
            self._ser.write(data)
            self._ser.flush()
        except Exception as exc:  # noqa: BLE001
            raise PortOpenError(f"writing to {self.port_url} failed: {exc} (board unplugged, or "
                                "QEMU exited?)", port=self.port_url, command=command) from exc

    def read_reply(self, command: str, timeout: float | None = None,
                   want: str | None = None, grace: float = 1.0) -> Reply:
        """Read lines until ``m-ready``. With ``want`` (a line prefix), an ``m-ready`` that comes
        before such a line is taken as left over from earlier traffic (e.g. the boot banner) and
        reading goes on for at most ``grace`` seconds more."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        reply = Reply(command)
        raw = bytearray()
        buf = self._pending
        self._pending = b""
        seen_want = want is None
        while True:
            while b"\n" in buf:
                chunk, buf = buf.split(b"\n", 1)
                ln = clean_line(chunk.decode("ascii", errors="replace"))
                if not ln:
                    continue
                self._log(f"< {ln}")
                if ln == READY:
                    if seen_want:
                        self._pending = buf
                        return reply
                    deadline = min(deadline, time.monotonic() + grace)
                    reply.lines.clear()
                    continue
                if want is not None and ln.startswith(want):
                    seen_want = True
                reply.lines.append(ln)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            data = self._read_some(remaining)
            raw += data
            buf += data
        self._pending = b""
        raise self._no_ready_error(command, timeout, reply, bytes(raw) + buf, want, seen_want)

    def _no_ready_error(self, command, timeout, reply, raw: bytes, want, seen_want) -> ProtocolError:
        port = self.port_url
        if not raw:
            return DeviceTimeoutError(
                f"no reply from {port} to {command + '%'!r} within {timeout:g} s: the device is "
                "silent. Is our firmware flashed and running (press reset; the console is 115200 "
                f"8N1)? Is {port} the board's console? {_hint_for_port(port)}",
                port=port, command=command, lines=reply.lines)
        printable = sum(1 for b in raw if 32 <= b < 127 or b in (9, 10, 13))
        if printable < 0.8 * len(raw):
            return GarbledReplyError(
                f"{port} sent {len(raw)} bytes that are not text ({raw[:32]!r}...) in reply to "
                f"{command + '%'!r}: the baud rate is probably wrong (the firmware uses "
                f"{DEFAULT_BAUDRATE} 8N1; this port is set to {self.baudrate}), or the board's "
                "clock is misconfigured.", port=port, command=command, lines=reply.lines)
        lines = reply.lines or split_lines(raw.decode("ascii", errors="replace"))
        tail = "; ".join(lines[-5:])
        if not any(ln.startswith(("m-", "e-")) for ln in lines):
            return WrongDeviceError(
                f"{port} answers, but not in the EEMBC / MLPerf Tiny protocol (last lines: {tail!r}). "
                "Flash a trec-tflm firmware (tests/firmware/protocol or a deployed model) or pick "
                "the board's console port.", port=port, command=command, lines=lines)
        if want is not None and not seen_want:
            return WrongDeviceError(
                f"{port} speaks the protocol but sent no {want!r} line in reply to {command + '%'!r} "
                f"(got: {tail!r})", port=port, command=command, lines=lines)
        return DeviceTimeoutError(
            f"reply from {port} to {command + '%'!r} did not end with m-ready within {timeout:g} s "
            f"(got {len(lines)} lines, last: {tail!r}). The device may still be busy (raise the "
            "timeout for long inferences) or it has crashed (reset it).",
            port=port, command=command, lines=lines)

    def command(self, command: str, timeout: float | None = None, check: bool = True,
                want: str | None = None) -> Reply:
        """Send one command and return its reply; ``check`` raises DeviceError on ``e-`` lines."""
        self.send(command)
        reply = self.read_reply(command, timeout, want=want)
        if check and reply.errors:
            raise DeviceError(f"{self.port_url} refused {command + '%'!r}: {reply.errors[0]}",
                              port=self.port_url, command=command, lines=reply.lines)
        return reply

    # -- protocol commands -------------------------------------------------------------
    def identify(self, expected: str | None = None, timeout: float | None = None,
                 retry_after: float = 2.0) -> str:
        """``name%``: check that an EEMBC DUT answers. Returns the name in brackets.
        ``expected``: a substring the name must contain (e.g. the board name).

        A device that is still booting may drop the first command (QEMU starts the firmware
        only when the host connects; a board may be in reset): when nothing at all comes back
        within ``retry_after`` seconds, ``name%`` is sent once more."""
        timeout = self.timeout if timeout is None else timeout
        self.drain()
        try:
            reply = self.command("name", min(retry_after, timeout), check=False, want="m-name-")
        except DeviceTimeoutError as exc:
            if exc.lines or retry_after >= timeout:
                raise
            self.drain()
            reply = self.command("name", timeout, check=False, want="m-name-")
        line = next(("m-" + m for m in reply.messages if m.startswith("name-")), None)
        if line is None:  # pragma: no cover - read_reply already raised
            raise WrongDeviceError(f"{self.port_url} sent no m-name line", port=self.port_url,
                                   lines=reply.lines)
        device, name = parse_name(line)
        if device == "io":
            raise WrongDeviceError(
                f"{self.port_url} is an EEMBC IO manager ({line!r}), not the device under test: "
                "connect to the board's own console (performance mode)", port=self.port_url,
                lines=reply.lines)
        if device != "dut":
            raise WrongDeviceError(f"{self.port_url} answered {line!r}, expected m-name-dut-[...]",
                                   port=self.port_url, lines=reply.lines)
        if expected is not None and expected not in name:
            raise WrongDeviceError(
                f"{self.port_url} is {name!r}, expected a device named like {expected!r}: wrong "
                "board or wrong firmware flashed", port=self.port_url, lines=reply.lines)
        return name

    def info(self) -> DeviceInfo | None:
        """trec-tflm's ``info%``; None when the firmware does not know it (stock EEMBC firmware)."""
        reply = self.command("info", check=False)
        line = reply.find("info-")
        if line is None:
            if reply.errors:
                return None
            raise MalformedReplyError(f"reply to 'info%' has neither m-info nor an error: "
                                      f"{reply.lines!r}", port=self.port_url, lines=reply.lines)
        self.info_cache = parse_info("m-info-" + line)
        self.cmd_capacity = self.info_cache.cmd_capacity
        return self.info_cache

    def load(self, data: bytes, chunk: int | None = None, timeout: float | None = None) -> None:
        """``db load N%`` then ``db HEX%`` chunks that fit the device's command buffer."""
        data = bytes(data)
        if not data:
            raise ValueError("nothing to load")
        if self.info_cache is not None and len(data) > self.info_cache.db_capacity:
            raise ValueError(f"{len(data)} bytes exceed the device's input buffer "
                             f"({self.info_cache.db_capacity} bytes)")
        if chunk is None:
            chunk = max(1, (self.cmd_capacity - len("db %") - 1) // 2)
        reply = self.command(f"db load {len(data)}", timeout)
        expect = reply.find("[Expecting ")
        if expect is None or _int_field(expect.split()[0], "m-[Expecting", expect) != len(data):
            raise MalformedReplyError(f"'db load {len(data)}%' answered {reply.lines!r}, expected "
                                      f"m-[Expecting {len(data)} bytes]", port=self.port_url,
                                      lines=reply.lines)
        for i in range(0, len(data), chunk):
            part = data[i:i + chunk]
            reply = self.command("db " + part.hex(), timeout)
            last = i + chunk >= len(data)
            done = "m-load-done" in reply.lines
            if done != last:
                raise MalformedReplyError(
                    f"device {'finished' if done else 'did not finish'} loading after "
                    f"{i + len(part)} of {len(data)} bytes", port=self.port_url, lines=reply.lines)

    def infer(self, iterations: int = 1, warmup: int = 0, timeout: float | None = None) -> InferResult:
        if iterations < 1 or warmup < 0:
            raise ValueError("iterations must be >= 1 and warmup >= 0")
        cmd = f"infer {iterations} {warmup}"
        reply = self.command(cmd, timeout)
        return parse_infer(reply, iterations, warmup)

    def results(self, raw: bool = False) -> tuple[str, list[float]]:
        """Outputs of the last inference: ("q", int8 values) with ``raw`` on trec-tflm firmware,
        else ("float", dequantized values)."""
        reply = self.command("results q" if raw else "results")
        line = next((ln for ln in reply.lines if ln.startswith("m-results-")), None)
        if line is None:
            raise MalformedReplyError(f"reply to 'results%' has no m-results line: {reply.lines!r}",
                                      port=self.port_url, lines=reply.lines)
        return parse_results(line)

    def ops(self) -> tuple[str | None, list[OpTiming]]:
        """Per-operator ticks of the last inference (trec-tflm extension ``ops%``)."""
        return parse_ops(self.command("ops"))

    def profile(self) -> dict[str, str]:
        reply = self.command("profile")
        out = {}
        for key in ("profile-", "model-"):
            v = reply.find(key)
            if v is not None:
                out[key[:-1]] = v.strip("[]")
        return out

    def exit(self, code: int = 0) -> None:
        """trec-tflm extension: end the firmware (on QEMU this ends the emulator)."""
        self.command(f"exit {code}")
