"""The emulated boards qemu_m7 (mps2-an500) and qemu_m4 (mps2-an386) and trec_tflm.target.qemu.

Builds tests/firmware/hello in several configurations and runs it in qemu-system-arm.
Skips (naming the Debian packages) when the ARM toolchain or QEMU is missing.
"""

import re
import time
from pathlib import Path

import pytest

from trec_tflm.target import qemu, toolchain

pytestmark = pytest.mark.qemu

HELLO_DIR = Path(__file__).resolve().parent / "firmware" / "hello"
HELLO_SRCS = [HELLO_DIR / "main.c", HELLO_DIR / "cxx_part.cc"]
BOARDS = ["qemu_m7", "qemu_m4"]

_built = {}


@pytest.fixture(scope="module")
def fw_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fw")


def build(fw_dir, board, *defines):
    """Build hello with the given defines once per module; returns the ELF path."""
    key = (board, defines)
    if key not in _built:
        name = "-".join([board] + [re.sub(r"\W", "_", d) for d in defines]) or board
        _built[key] = toolchain.build_firmware(board, HELLO_SRCS, defines=list(defines),
                                          build_dir=fw_dir / name, app="hello")
    return _built[key]


def kv_lines(text, prefix):
    """Parse lines like 'spin n=1000 d=2084' into dicts of ints."""
    out = []
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            out.append({k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", line)})
    return out


# ----------------------------------------------------------------------------- basics


@pytest.mark.parametrize("board", BOARDS)
def test_hello_builds_and_runs(fw_dir, board):
    elf = build(fw_dir, board)
    res = qemu.run_elf(elf, board, timeout=30)
    assert res.exit_code == 0, res.stdout + res.stderr
    assert f"hello from {board}\n" in res.stdout
    assert "cxx constructors: ok" in res.stdout  # __libc_init_array ran the C++ constructor
    assert "float: 6.283" in res.stdout  # FPU enabled, printf with %f
    assert res.stdout.rstrip().endswith("bye")
    # 320 KB RAM minus the 16 KB stack minus a few hundred bytes of .data/.bss
    heap = int(re.search(r"heap free: (\d+)", res.stdout).group(1))
    assert 300_000 < heap < 320 * 1024 - 16384


@pytest.mark.parametrize("board", BOARDS)
def test_exit_code_of_main_propagates(fw_dir, board):
    elf = build(fw_dir, board, "HELLO_EXIT_CODE=3")
    res = qemu.run_elf(elf, board, timeout=30)
    assert res.exit_code == 3
    assert "returning 3" in res.stdout


def test_board_exit_code_and_flush(fw_dir):
    elf = build(fw_dir, "qemu_m4", "HELLO_BOARD_EXIT=7")
    res = qemu.run_elf(elf, "qemu_m4", timeout=30)
    assert res.exit_code == 7
    # printed without a newline just before board_exit(): board_exit must flush stdio
    assert res.stdout.endswith("calling board_exit(7), no newline")


# ----------------------------------------------------------------------------- UART input


def _recv_until(sock, needle, timeout=20.0):
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            chunk = None
        if not chunk:
            raise AssertionError(f"did not receive {needle!r}; got {buf!r}")
        buf += chunk
    return buf


@pytest.mark.parametrize("board", BOARDS)
def test_uart_echo_over_tcp_serial(fw_dir, board):
    elf = build(fw_dir, board, "HELLO_ECHO")
    payload = bytes(b for b in range(256) if b != 0x04) + b"MLPerf Tiny name%\r\n"
    with qemu.start_qemu_serial(elf, board) as q:
        assert q.url == f"socket://127.0.0.1:{q.port}"
        with q.connect() as s:
            head = _recv_until(s, b"echo ready\n")
            # board_getc(10) with nothing sent yet times out (host time) and returns -1
            assert b"getc-timeout=-1\n" in head
            s.sendall(payload)
            echoed = _recv_until(s, payload)
            assert echoed == payload
            s.sendall(b"\x04")
            tail = _recv_until(s, b"bye\n")
            assert b"echo done" in tail
        assert q.wait(timeout=20) == 0


def test_uart_stdin_bytes(fw_dir):
    elf = build(fw_dir, "qemu_m7", "HELLO_ECHO")
    res = qemu.run_elf(elf, "qemu_m7", stdin_bytes=b"abc 123\nxyz\x04", timeout=30)
    assert res.exit_code == 0
    # the first byte may be taken by the getc(10) probe if it arrives in time: compare the rest
    echoed = res.stdout.split("echo ready\n", 1)[1].split("\necho done", 1)[0]
    assert "abc 123\nxyz".endswith(echoed) and len(echoed) >= len("abc 123\nxyz") - 1


def test_timeout_kills_qemu_and_names_the_elf(fw_dir):
    elf = build(fw_dir, "qemu_m7", "HELLO_ECHO")  # waits forever for input that never comes
    t0 = time.monotonic()
    with pytest.raises(qemu.QemuTimeout) as ei:
        qemu.run_elf(elf, "qemu_m7", timeout=1.5)
    assert time.monotonic() - t0 < 20
    assert str(elf) in str(ei.value) and "board_getc" in str(ei.value)
    assert "echo ready" in ei.value.stdout


# ----------------------------------------------------------------------------- instruction counting


def _tick_report(text):
    unit = re.search(r"unit=(\w+) resolution=(\d+)", text)
    spins = {r["n"]: r["d"] for r in kv_lines(text, "spin")}
    empty = [r["d"] for r in kv_lines(text, "empty")]
    sweep = kv_lines(text, "sweep")[0]
    return unit.group(1), int(unit.group(2)), spins, empty, sweep


@pytest.mark.parametrize("board", BOARDS)
def test_board_ticks_count_instructions(fw_dir, board):
    """The firmware times SPIN(n) = "1: subs r,r,#1; bne 1b", i.e. exactly 2n instructions
    (inline asm, so the compiler cannot change it), between two board_ticks() calls. If
    board_ticks() counts instructions, d(n) = 2n + c with one constant c (the instructions of
    one board_ticks() call and the loop setup) for every n. Each timestamp is good to within
    the resolution, so a difference is off by less than twice that."""
    elf = build(fw_dir, board, "HELLO_TICKS")
    res = qemu.run_elf(elf, board, timeout=60)
    assert res.exit_code == 0, res.stdout
    unit, resolution, spins, empty, sweep = _tick_report(res.stdout)
    assert unit == "instructions"
    assert resolution == qemu.QEMU_BOARDS[board].tick_resolution == 1
    tolerance = 2 * resolution - 1  # 0: exact instruction counts

    overhead = {n: d - 2 * n for n, d in spins.items()}
    c = min(overhead.values())
    assert 0 < c < 400, overhead  # a board_ticks() call is ~150 instructions
    assert max(overhead.values()) - c <= tolerance, overhead
    # linearity over three orders of magnitude: slope exactly 2 instructions per iteration
    for n1, n2 in [(1000, 1001), (1000, 1019), (1000, 1000000), (10000, 3000000)]:
        slope_err = (spins[n2] - spins[n1]) - 2 * (n2 - n1)
        assert abs(slope_err) <= tolerance, (n1, n2, slope_err)
    # an empty region costs the same constant, give or take the loop's setup instruction
    assert max(empty) - min(empty) <= tolerance
    assert abs(min(empty) - c) <= 2
    # 3000 short regions at all phases of the 40-instruction timer tick
    assert sweep["backwards"] == 0
    assert sweep["max"] - sweep["min"] <= tolerance


def test_coarse_ticks_resolution_40(fw_dir):
    """-DTREC_QEMU_COARSE_TICKS: the plain 25 MHz timer, one tick per 40 instructions."""
    elf = build(fw_dir, "qemu_m7", "HELLO_TICKS", "TREC_QEMU_COARSE_TICKS")
    res = qemu.run_elf(elf, "qemu_m7", timeout=60)
    unit, resolution, spins, empty, sweep = _tick_report(res.stdout)
    assert resolution == 40
    assert all(d % 40 == 0 for d in spins.values())
    for n1, n2 in [(1000, 1000000), (10000, 3000000)]:
        assert abs((spins[n2] - spins[n1]) - 2 * (n2 - n1)) < 80
    assert 0 < sweep["max"] - sweep["min"] < 80


def test_instruction_counts_are_deterministic(fw_dir):
    elf = build(fw_dir, "qemu_m7", "HELLO_TICKS")
    a = qemu.run_elf(elf, "qemu_m7", timeout=60).stdout
    b = qemu.run_elf(elf, "qemu_m7", timeout=60).stdout
    assert a == b
    assert "total hi=0 lo=" in a


def test_tick_wraps_are_counted(fw_dir):
    """Timer reload shrunk to 4096 ticks (163840 instructions) so a 6M-instruction region
    spans ~37 wraps: the 64-bit count must stay linear (each wrap adds only the few
    instructions of its interrupt handler, never a lost or doubled period)."""
    elf = build(fw_dir, "qemu_m4", "HELLO_TICKS", "TREC_QEMU_TIMER_RELOAD=0xFFF")
    res = qemu.run_elf(elf, "qemu_m4", timeout=60)
    unit, resolution, spins, empty, sweep = _tick_report(res.stdout)
    period = 4096 * 40
    for n, d in spins.items():
        wraps = 2 * n // period + 1
        assert 0 < d - 2 * n < 200 + 16 * wraps, (n, d)
    assert sweep["backwards"] == 0
    assert sweep["max"] - sweep["min"] < 40


# ----------------------------------------------------------------------------- faults and limits


def test_hard_fault_is_reported(fw_dir):
    elf = build(fw_dir, "qemu_m7", "HELLO_FAULT")
    with pytest.raises(qemu.QemuHardFault) as ei:
        qemu.run_elf(elf, "qemu_m7", timeout=30)
    e = ei.value
    assert e.exit_code == qemu.FAULT_EXIT_CODE
    assert "HardFault" in e.report
    assert "cfsr=0x00010000" in e.report  # UFSR.UNDEFINSTR: the udf instruction
    assert "pc is in main" in str(e) and str(elf) in str(e)
    # without the check the exit code is simply returned
    res = qemu.run_elf(elf, "qemu_m7", timeout=30, check_fault=False)
    assert res.exit_code == qemu.FAULT_EXIT_CODE and "about to fault" in res.stdout
    assert "survived" not in res.stdout


def test_stack_overflow_is_detected(fw_dir):
    elf = build(fw_dir, "qemu_m4", "HELLO_STACK_OVERFLOW")
    with pytest.raises(qemu.QemuHardFault) as ei:
        qemu.run_elf(elf, "qemu_m4", timeout=30)
    assert qemu.STACK_OVERFLOW_MARKER in ei.value.report
    assert ei.value.exit_code == qemu.FAULT_EXIT_CODE


def test_flash_limit_follows_the_real_board(fw_dir):
    # 1.5 MB of constants: more than NUCLEO_F746ZG's 1 MB flash, less than DISCO_F469NI's 2 MB
    with pytest.raises(toolchain.FirmwareBuildError) as ei:
        build(fw_dir, "qemu_m7", "HELLO_BIG_FLASH=1500000")
    assert "FLASH" in str(ei.value) and "overflowed" in str(ei.value)
    elf = build(fw_dir, "qemu_m4", "HELLO_BIG_FLASH=1500000")
    assert qemu.run_elf(elf, "qemu_m4", timeout=30).exit_code == 0


def test_ram_limit_includes_the_stack(fw_dir):
    # 320000 B of .bss fits 320 KB alone but not with the 16 KB stack
    with pytest.raises(toolchain.FirmwareBuildError) as ei:
        build(fw_dir, "qemu_m7", "HELLO_BIG_RAM=320000")
    assert "RAM overflow" in str(ei.value)


def test_ccm_region_on_qemu_m4(fw_dir):
    elf = build(fw_dir, "qemu_m4", "HELLO_BIG_CCM=60000")
    res = qemu.run_elf(elf, "qemu_m4", timeout=30)
    assert "big_ccm at 0x203" in res.stdout  # the separate 64 KB CCM window, not RAM
    assert int(re.search(r"heap free: (\d+)", res.stdout).group(1)) > 300_000
    with pytest.raises(toolchain.FirmwareBuildError) as ei:
        build(fw_dir, "qemu_m4", "HELLO_BIG_CCM=70000")
    assert "CCMRAM" in str(ei.value)


# ----------------------------------------------------------------------------- API details


def test_qemu_command_line():
    cmd = qemu.qemu_command("/x/app.elf", "qemu_m4")
    assert cmd[:3] == [qemu.QEMU_BINARY, "-M", "mps2-an386"]
    assert "shift=0,align=off,sleep=off" in cmd and cmd[-2:] == ["-kernel", "/x/app.elf"]
    assert "-icount" not in qemu.qemu_command("/x/app.elf", "qemu_m7", icount=False)
    with pytest.raises(ValueError):
        qemu.qemu_command("/x/app.elf", "qemu_m5")


def test_bad_build_arguments(fw_dir):
    with pytest.raises(ValueError):
        toolchain.build_firmware("qemu_m7", HELLO_SRCS, defines=['MSG="a b"'], build_dir=fw_dir / "bad")
    with pytest.raises(FileNotFoundError):
        toolchain.build_firmware("qemu_m7", [HELLO_DIR / "nope.c"], build_dir=fw_dir / "bad")
    with pytest.raises(ValueError):
        toolchain.build_firmware("no_such_board", HELLO_SRCS, build_dir=fw_dir / "bad")


def test_skip_reason_names_debian_packages(monkeypatch):
    caches = [toolchain._toolchain_problem, toolchain._qemu_problem, toolchain.toolchain_available,
              toolchain.qemu_available]
    for f in caches:
        f.cache_clear()
    monkeypatch.setattr(toolchain, "_which", lambda tool: None)
    try:
        reason = toolchain.skip_reason()
        assert not toolchain.qemu_available() and not toolchain.toolchain_available()
        for pkg in ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm"):
            assert pkg in reason
        with pytest.raises(toolchain.ToolMissing):
            qemu.run_elf("/nonexistent.elf", "qemu_m7")
    finally:
        monkeypatch.undo()
        for f in caches:
            f.cache_clear()
    assert toolchain.skip_reason() is None
