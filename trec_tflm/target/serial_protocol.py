"""Host side of the EEMBC / MLPerf Tiny serial protocol (the firmware side is boards/common/eembc/).

The board (or QEMU) is reached through pyserial's ``serial_for_url``: ``/dev/ttyACM0``,
``COM5``, ``socket://127.0.0.1:PORT`` (QEMU's UART on a TCP port) or ``loop://`` in tests.

Commands end with ``%``; the device answers lines ending in ``\\r\\n`` and closes every command
with ``m-ready``. Message lines start with ``m-``, errors with ``e-[``; anything else is free text
(``help%`` output, boot noise). See boards/common/eembc/ee_protocol.h for the command set and
docs/BOARDS.md for how to connect. The replies' parsers and the errors are
trec_tflm.target.eembc_replies; they are part of this client's surface and importable from here.

Every failure is a :class:`ProtocolError` subclass whose message names the port, the command,
what was (not) received and what to do about it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from trec_tflm.target.eembc_replies import (  # noqa: F401 - the client's public surface
    DEFAULT_BAUDRATE,
    DEFAULT_TIMEOUT,
    READY,
    REFERENCE_CMD_CAPACITY,
    DeviceError,
    DeviceInfo,
    DeviceTimeoutError,
    GarbledReplyError,
    InferResult,
    MalformedReplyError,
    OpTiming,
    PortOpenError,
    ProtocolError,
    Reply,
    WrongDeviceError,
    check_info,
    clean_line,
    int_field,
    parse_infer,
    parse_info,
    parse_name,
    parse_ops,
    parse_results,
    split_lines,
)

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
            # pyserial, on first open: a client handed serial_port= (a test's loop) does not need it
            import serial

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
        if expect is None or int_field(expect.split()[0], "m-[Expecting", expect) != len(data):
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
