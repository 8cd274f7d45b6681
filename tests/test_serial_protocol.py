"""EEMBC / MLPerf Tiny serial protocol: host parser and client (trec_tflm.target.serial_protocol),
bench driver (trec_tflm.bench.board) and the firmware module (boards/common/eembc/).

* transcripts in tests/data/transcripts/ replayed by a fake serial port;
* malformed replies: garbage, truncated lines, silence, echo, wrong device;
* the firmware's protocol code compiled for the host and driven through a pipe;
* end to end on QEMU: tests/firmware/protocol built for qemu_m7, UART on a TCP port.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from trec_tflm.bench import board as bench
from trec_tflm.bench import command
from trec_tflm.target import serial_protocol as sp

ROOT = Path(__file__).resolve().parents[1]
TRANSCRIPTS = ROOT / "tests" / "data" / "transcripts"
PROTOCOL_APP = ROOT / "tests" / "firmware" / "protocol"
EEMBC_DIR = ROOT / "boards" / "common" / "eembc"


# ------------------------------------------------------------------------- test doubles --

def read_transcript(path: Path):
    """-> (banner lines, [(command pattern, [reply lines])])."""
    banner, steps = [], []
    for raw in path.read_text().splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        kind, _, rest = raw.partition(" ")
        if kind == ">":
            steps.append((rest, []))
        elif kind == "<":
            (steps[-1][1] if steps else banner).append(rest)
        else:
            raise ValueError(f"{path}: bad transcript line {raw!r}")
    return banner, steps


class FakeSerial:
    """Enough of pyserial's Serial for EEMBCClient: replays a scripted device."""

    def __init__(self, steps=(), banner=(), raw_reply: bytes | None = None):
        self.steps = list(steps)
        self.out = bytearray("".join(ln + "\r\n" for ln in banner).encode())
        self.raw_reply = raw_reply
        self.written = bytearray()
        self.unexpected: list[str] = []
        self.commands: list[str] = []
        self.timeout = 0.01

    @property
    def in_waiting(self):
        return len(self.out)

    def write(self, data):
        self.written += data
        while b"%" in self.written:
            cmd, _, rest = bytes(self.written).partition(b"%")
            self.written = bytearray(rest)
            cmd = cmd.decode() + "%"
            self.commands.append(cmd)
            if self.raw_reply is not None:
                self.out += self.raw_reply
                continue
            if not self.steps or not fnmatch.fnmatchcase(cmd, self.steps[0][0]):
                self.unexpected.append(cmd)
                continue
            _, reply = self.steps.pop(0)
            self.out += "".join(ln + "\r\n" for ln in reply).encode()
        return len(data)

    def read(self, n=1):
        if not self.out:
            import time

            time.sleep(self.timeout)
            return b""
        data = bytes(self.out[:n])
        del self.out[:n]
        return data

    def flush(self):
        pass

    def close(self):
        pass


def fake_client(steps=(), banner=(), timeout=2.0, **kw):
    ser = FakeSerial(steps, banner, **kw)
    return sp.EEMBCClient("fake://dut", timeout=timeout, serial_port=ser), ser


def checksum_model(x: np.ndarray) -> np.ndarray:
    """NumPy twin of tests/firmware/protocol/model.c."""
    x = np.asarray(x, np.int8).reshape(-1).astype(np.int64)
    i = np.arange(x.size)[:, None]
    k = np.arange(10)[None, :]
    w = ((7 * i + 3 * k) % 11) - 5
    acc = (x[:, None] * w).sum(axis=0)
    return np.clip(acc >> 6, -128, 127).astype(np.int8)


def sample_inputs(n: int, size: int = 784, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, size=size, dtype=np.int8) for _ in range(n)]


# ------------------------------------------------------------------------------ parsing --

def test_parse_name():
    assert sp.parse_name("m-name-dut-[trec-tflm/qemu_m7/x]") == ("dut", "trec-tflm/qemu_m7/x")
    assert sp.parse_name("m-name-io-[EEMBC IO manager]")[0] == "io"
    with pytest.raises(sp.MalformedReplyError):
        sp.parse_name("m-name-dut-[truncat")


def test_parse_results():
    assert sp.parse_results("m-results-[0.000,0.996,-1.250]") == ("float", [0.0, 0.996, -1.25])
    assert sp.parse_results("m-results-q-[-128,0,127]") == ("q", [-128, 0, 127])
    assert sp.parse_results("m-results-[]") == ("float", [])
    for bad in ("m-results-[0.1,0.2", "m-results-[0.1,,0.2]", "m-results-[0.1,x]",
                "m-results-q-[1.5]", "m-result-[1]"):
        with pytest.raises(sp.MalformedReplyError):
            sp.parse_results(bad)


def test_parse_info_decodes_float_bits():
    info = sp.parse_info("m-info-[board=b,model=m,fw=f,unit=cycles,resolution=1,clock_hz=216000000,"
                         "input_bytes=784,in_scale_f32=3b808081,in_zp=-128,outputs=10,"
                         "out_scale_f32=3b800000,out_zp=-128,db_capacity=4096,cmd_capacity=512,"
                         "future=1]")
    assert info.clock_hz == 216_000_000 and info.input_bytes == 784 and info.outputs == 10
    assert info.input_scale == np.float32(1 / 255) and info.input_zero_point == -128
    assert info.output_scale == 1 / 256 and info.extra == {"future": "1"}
    with pytest.raises(sp.MalformedReplyError):
        sp.parse_info("m-info-[board=b,model=m]")  # fields missing
    with pytest.raises(sp.MalformedReplyError):
        sp.parse_info("m-info-[board=b,model")  # truncated


INFO = ("m-info-[board=b,model=m,fw=f,unit=cycles,resolution=1,clock_hz=216000000,input_bytes=784,"
        "in_scale_f32=3b808081,in_zp=-128,outputs=10,out_scale_f32=3b800000,out_zp=-128,db_capacity=4096,"
        "cmd_capacity=512]")


@pytest.mark.parametrize("field,value,needle", [
    ("in_scale_f32", "7fc00000", "in_scale_f32 decodes to nan"),        # NaN
    ("out_scale_f32", "7f800000", "out_scale_f32 decodes to inf"),      # +inf
    ("in_scale_f32", "bf800000", "in_scale_f32 decodes to -1.0"),       # negative
    ("in_scale_f32", "0", "in_scale_f32 decodes to 0.0"),
    ("in_scale_f32", "1ffffffff", "not the hex bit pattern of a float32"),  # 33 bits: struct.error before
    ("out_scale_f32", "3b80zz00", "not the hex bit pattern"),
    ("in_zp", "300", "in_zp=300 is outside [-128, 127]"),
    ("outputs", "0", "outputs=0 is outside"),
    ("input_bytes", "-4", "input_bytes=-4 is outside"),
    ("input_bytes", "5000", "input_bytes=5000 exceeds db_capacity=4096"),
    ("cmd_capacity", "2", "cmd_capacity=2 is outside"),
])
def test_parse_info_refuses_values_the_host_cannot_use(field, value, needle):
    import re

    line = re.sub(rf"{field}=[^,\]]*", f"{field}={value}", INFO)
    assert line != INFO
    with pytest.raises(sp.MalformedReplyError) as err:
        sp.parse_info(line)
    assert needle in str(err.value) and "info line" in str(err.value)


def test_results_values_out_of_range_are_refused():
    for bad, needle in (("m-results-q-[1,300]", "value 300"), ("m-results-q-[-129]", "value -129"),
                        ("m-results-[0.5,nan]", "value nan"), ("m-results-[inf]", "value inf")):
        with pytest.raises(sp.MalformedReplyError, match="out of range") as err:
            sp.parse_results(bad)
        assert needle in str(err.value) and bad in str(err.value)


def test_infer_and_ops_replies_with_impossible_numbers_are_refused():
    good = ["m-warmup-start-0", "m-warmup-done", "m-infer-start-3", "m-lap-us-10", "m-lap-us-40",
            "m-infer-done", "m-infer-ticks-[300,3,instructions]", "m-results-[1.000]"]
    for i, bad in ((4, "m-lap-us-5"), (3, "m-lap-us--10"), (6, "m-infer-ticks-[-300,3,instructions]")):
        lines = list(good)
        lines[i] = bad
        with pytest.raises(sp.MalformedReplyError):
            sp.parse_infer(sp.Reply("infer 3 0", lines), 3, 0)
    with pytest.raises(sp.MalformedReplyError, match="index and ticks must be >= 0"):
        sp.parse_ops(sp.Reply("ops", ["m-ops-[1,cycles]", "m-op-[0,CONV_2D,-10]"]))
    with pytest.raises(sp.MalformedReplyError, match="negative operator count"):
        sp.parse_ops(sp.Reply("ops", ["m-ops-[-1,cycles]"]))


def test_quantize_inputs_refuses_a_nan_scale():
    with pytest.raises(ValueError, match="finite and > 0"):
        bench.quantize_inputs(np.zeros(4), float("nan"), 0)


def test_parse_infer_requires_every_step():
    good = ["m-warmup-start-0", "m-warmup-done", "m-infer-start-3", "m-lap-us-10", "m-lap-us-40",
            "m-infer-done", "m-infer-ticks-[300,3,instructions]", "m-results-[1.000]"]
    r = sp.parse_infer(sp.Reply("infer 3 0", good), 3, 0)
    assert r.ticks_per_inference == 100 and r.unit == "instructions" and r.us_per_inference == 10
    for drop in range(len(good)):
        lines = good[:drop] + good[drop + 1:]
        if good[drop].startswith("m-infer-ticks"):
            continue  # optional (other firmware does not send it)
        with pytest.raises(sp.MalformedReplyError):
            sp.parse_infer(sp.Reply("infer 3 0", lines), 3, 0)
    with pytest.raises(sp.MalformedReplyError):  # ran a different count than asked
        sp.parse_infer(sp.Reply("infer 3 0", good), 4, 0)


def test_parse_ops_count_must_match():
    reply = sp.Reply("ops", ["m-ops-[2,cycles]", "m-op-[0,CONV_2D,10]", "m-op-[1,TREC_CONV_2D,5]"])
    unit, ops = sp.parse_ops(reply)
    assert unit == "cycles" and [(o.name, o.ticks) for o in ops] == [("CONV_2D", 10), ("TREC_CONV_2D", 5)]
    with pytest.raises(sp.MalformedReplyError):
        sp.parse_ops(sp.Reply("ops", reply.lines[:2]))


def test_clean_line_drops_leading_noise():
    assert sp.split_lines("\x00\xffm-ready\r\n\r\nhello\r\n") == ["m-ready", "hello"]


# -------------------------------------------------------------------------- transcripts --

def test_reference_firmware_transcript():
    banner, steps = read_transcript(TRANSCRIPTS / "reference_dut.txt")
    client, ser = fake_client(steps, banner)
    inputs = [np.arange(1, 9, dtype=np.uint8), np.arange(0xF0, 0xF8, dtype=np.uint8)]
    res = bench.run_bench("fake://dut", inputs, [1, 2], client=client)
    assert ser.unexpected == [] and ser.steps == []
    assert res.device_name == "unspecified" and res.board is None
    assert res.outputs_kind == "float" and res.unit == "us"
    assert list(res.predictions) == [1, 0] and res.accuracy == 0.5
    np.testing.assert_allclose(res.ticks, [2500, 2300])
    np.testing.assert_allclose(res.ms, [2.5, 2.3])


def test_trec_firmware_transcript():
    banner, steps = read_transcript(TRANSCRIPTS / "trec_handwritten.txt")
    client, ser = fake_client(steps, banner)
    inputs = [np.array([-128, -1, 0, 127], np.int8), np.array([1, 2, 3, 4], np.int8)]
    res = bench.run_bench("fake://dut", inputs, [1, 1], iterations=2, warmup=1, client=client)
    assert ser.unexpected == [] and ser.steps == []
    assert res.board == "nucleo_f746zg" and res.clock_hz == 216_000_000 and res.unit == "cycles"
    assert res.outputs_kind == "q" and res.outputs.dtype == np.int8
    assert res.outputs.tolist() == [[-128, 127, -127], [90, -128, -90]]
    assert list(res.predictions) == [1, 0] and res.accuracy == 0.5
    np.testing.assert_allclose(res.ticks, [10800, 10500])
    np.testing.assert_allclose(res.ms, [0.05, 10500 / 216e3])
    assert [op.name for op in res.ops] == ["CONV_2D #0", "TREC_CONV_2D #1"]
    np.testing.assert_allclose([op.ticks for op in res.ops], [7900, 2750])
    assert "cycles" in res.summary() and "ms at 216 MHz" in res.summary()


def test_captured_qemu_transcript_replays():
    """Transcript captured from tests/firmware/protocol on qemu_m7 (see
    test_qemu_end_to_end for how it is recorded): the parser still understands it."""
    path = TRANSCRIPTS / "qemu_m7_protocol_app.txt"
    if not path.exists():
        pytest.skip(f"{path.name} not recorded yet (run test_qemu_end_to_end with "
                    "TREC_RECORD_TRANSCRIPT=1)")
    banner, steps = read_transcript(path)
    client, ser = fake_client(steps, banner)
    inputs = sample_inputs(2, seed=7)
    labels = [int(np.argmax(checksum_model(x))) for x in inputs]
    res = bench.run_bench("fake://dut", inputs, labels, iterations=2, warmup=1, client=client)
    assert ser.unexpected == [] and ser.steps == []
    assert res.board == "qemu_m7" and res.unit == "instructions" and res.ms is None
    assert res.outputs.tolist() == [checksum_model(x).tolist() for x in inputs]
    assert res.accuracy == 1.0


# ---------------------------------------------------------------------- malformed replies --

def test_silent_port_times_out_with_advice():
    client, _ = fake_client(timeout=0.3)
    with pytest.raises(sp.DeviceTimeoutError, match="silent") as ei:
        client.identify()
    assert "fake://dut" in str(ei.value) and "reset" in str(ei.value)


def test_garbage_is_reported_as_baud_problem():
    rng = np.random.default_rng(1)
    junk = bytes(rng.integers(128, 256, size=200, dtype=np.uint8))
    client, _ = fake_client(timeout=0.3, raw_reply=junk)
    with pytest.raises(sp.GarbledReplyError, match="baud"):
        client.identify()


def test_echoing_port_is_a_wrong_device():
    """loop:// echoes what is written, like a terminal or a modem would."""
    client = sp.EEMBCClient("loop://", timeout=0.3)
    with client, pytest.raises(sp.WrongDeviceError, match="not in the EEMBC"):
        client.identify()


def test_text_without_protocol_is_a_wrong_device():
    client, _ = fake_client(timeout=0.3, raw_reply=b"Hello from some other firmware\r\n")
    with pytest.raises(sp.WrongDeviceError):
        client.identify()


def test_io_manager_and_unexpected_names_are_refused():
    client, _ = fake_client([("name%", ["m-name-io-[EEMBC IO manager]", "m-ready"])])
    with pytest.raises(sp.WrongDeviceError, match="IO manager"):
        client.identify()
    client, _ = fake_client([("name%", ["m-name-dut-[trec-tflm/qemu_m4/x]", "m-ready"])])
    with pytest.raises(sp.WrongDeviceError, match="nucleo_f746zg"):
        client.identify(expected="nucleo_f746zg")


def test_stale_ready_from_boot_banner_is_skipped():
    """The banner's m-ready may arrive after the host sent name%: it must not end the reply."""
    client, ser = fake_client([("name%", ["m-timestamp-mode-performance", "m-init-done", "m-ready",
                                          "m-name-dut-[trec-tflm/x/y]", "m-ready"])])
    assert client.identify() == "trec-tflm/x/y"


def test_protocol_without_name_is_a_wrong_device():
    client, _ = fake_client([("name%", ["m-ready"])], timeout=0.5)
    with pytest.raises(sp.WrongDeviceError, match="m-name"):
        client.identify()


def test_truncated_reply_times_out():
    client, _ = fake_client([("infer 1 0%", ["m-warmup-start-0", "m-warmup-done", "m-infer-st"])],
                            timeout=0.3)
    with pytest.raises(sp.DeviceTimeoutError, match="did not end with m-ready"):
        client.infer(1, 0)


def test_truncated_results_line_is_malformed():
    client, _ = fake_client([("infer 1 0%", ["m-warmup-start-0", "m-warmup-done", "m-infer-start-1",
                                             "m-lap-us-1", "m-lap-us-2", "m-infer-done",
                                             "m-results-[0.1,0.", "m-ready"])])
    with pytest.raises(sp.MalformedReplyError, match="truncated"):
        client.infer(1, 0)


def test_device_error_line_raises():
    client, _ = fake_client([("db load 99999%", ["e-[Specified input size exceeds 4096]", "m-ready"])])
    with pytest.raises(sp.DeviceError, match="exceeds 4096"):
        client.load(bytes(99999))


def test_load_checks_load_done_placement():
    client, _ = fake_client([("db load 4%", ["m-[Expecting 4 bytes]", "m-ready"]),
                             ("db 01020304%", ["m-ready"])])  # never says m-load-done
    with pytest.raises(sp.MalformedReplyError, match="did not finish"):
        client.load(b"\x01\x02\x03\x04")


def test_unopenable_port():
    with pytest.raises(sp.PortOpenError, match="/dev/ttyDOESNOTEXIST"):
        sp.EEMBCClient("/dev/ttyDOESNOTEXIST").open()


def test_float_inputs_are_refused():
    client, _ = fake_client()
    with pytest.raises(TypeError, match="quantize"):
        bench.run_bench("fake://dut", [np.zeros(4, np.float32)], client=client)


def test_quantize_inputs():
    q = bench.quantize_inputs(np.array([0.0, 0.5, 1.0, 2.0]), 1 / 255, -128)
    assert q.dtype == np.int8 and q.tolist() == [-128, 0, 127, 127]


# ------------------------------------------------ firmware protocol code, compiled for host --

class PipeSerial:
    """pyserial-like wrapper around a subprocess' stdin/stdout."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buf = bytearray()
        self.lock = threading.Lock()
        self.timeout = 0.05
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        while True:
            b = self.proc.stdout.read1(4096)
            if not b:
                return
            with self.lock:
                self.buf += b

    @property
    def in_waiting(self):
        return len(self.buf)

    def read(self, n=1):
        import time

        with self.lock:
            if self.buf:
                data = bytes(self.buf[:n])
                del self.buf[:n]
                return data
        time.sleep(0.005)
        return b""

    def write(self, data):
        self.proc.stdin.write(data)
        return len(data)

    def flush(self):
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def host_protocol_app(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no host C compiler (cc/gcc) to build the protocol code for the host")
    out = tmp_path_factory.mktemp("host_proto") / "protocol_app"
    srcs = [EEMBC_DIR / "ee_protocol.c", PROTOCOL_APP / "model.c", PROTOCOL_APP / "main.c",
            PROTOCOL_APP / "host_board.c"]
    subprocess.run([cc, "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-pedantic",
                    f"-I{ROOT / 'boards/common'}", f"-I{EEMBC_DIR}", *map(str, srcs), "-o", str(out)],
                   check=True)
    return out


def test_host_firmware_bench(host_protocol_app):
    inputs = sample_inputs(3, seed=3)
    labels = [int(np.argmax(checksum_model(x))) for x in inputs]
    labels[2] = (labels[2] + 1) % 10  # one wrong label: accuracy must see it
    ser = PipeSerial([str(host_protocol_app)])
    client = sp.EEMBCClient("host-pipe", timeout=5, serial_port=ser)
    try:
        res = bench.run_bench("host-pipe", inputs, labels, iterations=3, warmup=2, client=client)
        assert res.outputs.tolist() == [checksum_model(x).tolist() for x in inputs]
        assert res.accuracy == pytest.approx(2 / 3)
        # host_board.c: every board_ticks() call advances 1000; each invoke calls it 3 times,
        # and the second time stamp of the loop adds one: (3 runs * 3 + 1) * 1000 / 3 runs.
        assert res.unit == "cycles"
        np.testing.assert_allclose(res.ticks, [(3 * 3 + 1) * 1000 / 3] * 3)
        assert [op.name for op in res.ops] == ["CHECKSUM #0", "CLAMP #1"]
        # dequantized results agree with the raw ones (scale 0.25, zero point 0)
        _, floats = client.results(raw=False)
        assert floats == pytest.approx((checksum_model(inputs[-1]) * 0.25).tolist())
        client.exit(5)
    finally:
        client.close()
    assert ser.proc.wait(timeout=10) == 5


@pytest.mark.parametrize("command, expected", [
    ("bogus", "e-[Unknown command: bogus]"),
    ("db 0102", "e-[Buffer not allocated: send db load N first]"),
    ("infer 0", "e-[Inference iterations must be >0]"),
    ("infer x", "e-[Inference iterations must be >0]"),
    ("infer 1 -1", "e-[Inference warmup must be >=0]"),
    ("db load 0", "e-[Command 'db load' must be >0 bytes]"),
    ("db load 4097", "e-[Specified input size exceeds 4096]"),
    ("db", "e-[Command 'db' requires a subcommand]"),
    ("results", "e-[No results: run infer first]"),
    ("results x", "e-[Usage: results [q]]"),
    ("exit 300", "e-[Exit code must be 0..255]"),
    ("x" * 600, "e-[Command too long: at most 512 characters]"),
])
def test_host_firmware_errors(host_protocol_app, command, expected):
    out = subprocess.run([str(host_protocol_app)], input=(command + "%exit%").encode(),
                         capture_output=True, timeout=10).stdout.decode()
    lines = out.split("\r\n")
    assert expected in lines, lines
    # the error is followed by m-ready, and the firmware keeps serving
    assert lines[lines.index(expected) + 1] == "m-ready" and "m-exit-0" in lines


def test_host_firmware_db_edge_cases(host_protocol_app):
    script = ("db load 3%db 0a0%db 0a0g%db 0a%db 0b0c0d0e%db 01%db print%"
              "infer 1 0%db load 784%infer%exit 0%")
    out = subprocess.run([str(host_protocol_app)], input=script.encode(), capture_output=True,
                         timeout=10).stdout.decode().split("\r\n")
    assert "e-[Insufficient number of hex digits]" in out
    assert "e-[Invalid hex digit '0g']" in out
    assert out.count("m-load-done") == 1                         # bytes beyond N disregarded
    assert "e-[Buffer already holds its 3 bytes: send db load N first]" in out
    assert "m-buffer-0a-0b-0c" in out                            # the bad chunks changed nothing
    assert any(ln.startswith("e-[Model rejected the input: got 3 bytes, model input is 784")
               for ln in out)
    assert "e-[Input not loaded: have 0 of 784 bytes (db load N, then db HEX)]" in out
    assert all(ln.endswith("]") or not ln.startswith("e-") for ln in out)


def test_host_firmware_banner_and_crlf(host_protocol_app):
    raw = subprocess.run([str(host_protocol_app)], input=b"name%help%exit 0%", capture_output=True,
                         timeout=10).stdout
    text = raw.decode()
    assert text.startswith("m-timestamp-mode-performance\r\nm-lap-us-")
    assert "m-init-done\r\nm-ready\r\n" in text
    assert "m-name-dut-[trec-tflm/host/checksum-test]\r\nm-ready\r\n" in text
    # every line ends with CR LF, never a bare LF
    assert text.count("\n") == text.count("\r\n")


def test_host_firmware_mlperf_defaults(host_protocol_app):
    """Without the optional MLPerf hooks (ee_app.h): m-model is the name, info% says the db bytes
    are int8 and m-results are the dequantized outputs."""
    out = subprocess.run([str(host_protocol_app)], input=b"profile%info%exit%", capture_output=True,
                         timeout=10).stdout.decode().split("\r\n")
    assert "m-model-[checksum-test]" in out
    info = sp.parse_info(next(ln for ln in out if ln.startswith("m-info-")))
    assert (info.model_id, info.input_format, info.results) == ("checksum-test", "int8", "dequantized")


@pytest.fixture(scope="module")
def host_mlperf_app(tmp_path_factory):
    """The checksum app with tests/firmware/protocol/mlperf_hooks.c: m-model ic01, input=uint8,
    m-results = softmax of the dequantized outputs."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no host C compiler (cc/gcc) to build the protocol code for the host")
    out = tmp_path_factory.mktemp("host_mlperf") / "protocol_app"
    srcs = [EEMBC_DIR / "ee_protocol.c", PROTOCOL_APP / "model.c", PROTOCOL_APP / "main.c",
            PROTOCOL_APP / "host_board.c", PROTOCOL_APP / "mlperf_hooks.c"]
    subprocess.run([cc, "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-pedantic",
                    f"-I{ROOT / 'boards/common'}", f"-I{EEMBC_DIR}", *map(str, srcs), "-o", str(out), "-lm"],
                   check=True)
    return out


def test_host_firmware_mlperf_hooks(host_mlperf_app):
    x = sample_inputs(1, seed=5)[0]
    ser = PipeSerial([str(host_mlperf_app)])
    client = sp.EEMBCClient("host-pipe", timeout=5, serial_port=ser)
    try:
        assert client.identify() == "trec-tflm/host/checksum-test"     # m-name-dut keeps the name
        assert client.profile()["model"] == "ic01"                      # the runner keys on m-model
        info = client.info()
        assert (info.model_id, info.input_format, info.results) == ("ic01", "uint8", "probabilities")
        # run_bench sends int8 values as value + 128 to uint8 firmware; the checksum "model" reads
        # the bytes as they arrive, so it sees x ^ 0x80
        res = bench.run_bench("host-pipe", [x], client=client, ops=False)
        seen = (x.view(np.uint8) ^ 0x80).view(np.int8)
        assert res.outputs.tolist() == [checksum_model(seen).tolist()]
        reply = client.command("results")
        line = next(ln for ln in reply.lines if ln.startswith("m-results-"))
        body = line[len("m-results-["):-1].split(",")
        assert all(re.fullmatch(r"\d\.\d{6}", v) for v in body), line   # probabilities, 6 decimals
        z = checksum_model(seen).astype(np.float64) * 0.25                 # scale 0.25, zero point 0
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        np.testing.assert_allclose([float(v) for v in body], p, atol=1.5e-6)
        assert int(np.argmax([float(v) for v in body])) == int(np.argmax(checksum_model(seen)))
        client.exit(0)
    finally:
        client.close()
    assert ser.proc.wait(timeout=10) == 0


# ---------------------------------------------------------------------- end to end: QEMU --

def test_qemu_end_to_end(tmp_path):
    """tests/firmware/protocol built for qemu_m7, UART0 on a loopback TCP port, run_bench over
    socket://. Record tests/data/transcripts/qemu_m7_protocol_app.txt with
    TREC_RECORD_TRANSCRIPT=1."""
    from trec_tflm.target import qemu

    elf = qemu.build_firmware("qemu_m7", [EEMBC_DIR / "ee_protocol.c", PROTOCOL_APP / "model.c",
                                          PROTOCOL_APP / "main.c"],
                              include_dirs=[EEMBC_DIR], build_dir=tmp_path / "fw", app="protocol")
    inputs = sample_inputs(2, seed=7)
    labels = [int(np.argmax(checksum_model(x))) for x in inputs]
    record: list[str] = []
    with qemu.start_qemu_serial(elf, "qemu_m7") as proc:
        with sp.EEMBCClient(proc.url, timeout=30, log=record.append) as client:
            res = bench.run_bench(proc.url, inputs, labels, iterations=2, warmup=1, client=client)
            twice = client.infer(4, 0)  # instruction counts are linear in N
            client.exit(3)
        assert proc.wait(timeout=30) == 3  # `exit 3%` ended the firmware through semihosting
    assert res.board == "qemu_m7" and res.unit == "instructions" and res.clock_hz == 0
    assert res.ms is None
    assert res.outputs.tolist() == [checksum_model(x).tolist() for x in inputs]
    assert res.accuracy == 1.0
    assert all(t > 784 * 10 for t in res.ticks)  # at least one instruction per multiply-add
    # Same input: T(N) = N * per_inference + fixed loop/time-stamp overhead, to within the
    # 4-instruction tick resolution; so 2 * T(2) - T(4) is that overhead, small and >= 0.
    overhead = 2 * (res.ticks[1] * 2) - twice.ticks
    assert -8 <= overhead <= 400, (res.ticks, twice.ticks)
    assert [op.name for op in res.ops] == ["CHECKSUM #0", "CLAMP #1"]
    if os.environ.get("TREC_RECORD_TRANSCRIPT"):
        keep = [ln for ln in record if ln.startswith(("> ", "< "))]
        end = next(i for i, ln in enumerate(keep) if ln == "> infer 4 0%")
        (TRANSCRIPTS / "qemu_m7_protocol_app.txt").write_text(
            "# Captured from tests/firmware/protocol on qemu_m7 by test_qemu_end_to_end\n"
            "# (TREC_RECORD_TRANSCRIPT=1); inputs: sample_inputs(2, seed=7), infer 2 1.\n"
            + "\n".join(keep[:end]) + "\n")


# --------------------------------------------------------------------- the bench command --

def test_bench_command_usage_errors(capsys):
    assert command.main(["--limit", "5"]) == 2                       # neither --port nor QEMU
    assert "give --port" in capsys.readouterr().err
    assert command.main(["--port", "loop://", "--limit", "0"]) == 2
    assert command.main(["--port", "/dev/ttyDOESNOTEXIST", "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert "cannot open /dev/ttyDOESNOTEXIST" in err


def test_bench_command_on_qemu(tmp_path, capsys):
    """`trec-tflm bench --board qemu_m7 --elf ...` starts QEMU itself and benchmarks real
    Fashion-MNIST images (the checksum "model" makes accuracy meaningless; the plumbing is
    what is tested: quantization from info%, JSON output, instruction counts)."""
    from trec_tflm.data import DatasetError, load_fashion_mnist
    from trec_tflm.target import qemu

    try:
        ds = load_fashion_mnist()
    except DatasetError as exc:
        pytest.skip(str(exc))
    elf = qemu.build_firmware("qemu_m7", [EEMBC_DIR / "ee_protocol.c", PROTOCOL_APP / "model.c",
                                          PROTOCOL_APP / "main.c"],
                              include_dirs=[EEMBC_DIR], build_dir=tmp_path / "fw", app="protocol")
    out = tmp_path / "bench.json"
    rc = command.main(["--board", "qemu_m7", "--elf", str(elf), "--limit", "3", "--offset", "10",
                     "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "instructions" in capsys.readouterr().out
    import json

    res = json.loads(out.read_text())
    assert res["n"] == 3 and res["unit"] == "instructions" and res["ms"] is None
    assert res["board"] == "qemu_m7" and res["dataset"] == "fashion_mnist"
    q = bench.quantize_inputs(ds.x_test[10:13], 1 / 255, -128).reshape(3, -1)
    assert res["outputs"] == [checksum_model(x).tolist() for x in q]
    assert res["labels"] == ds.y_test[10:13].tolist()
