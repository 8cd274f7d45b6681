"""trec_tflm.progress (the one helper every build goes through) with a fake ``make``.

The fake make is a script named ``make`` that plays a build of FAKE_FILES files: under ``-n`` it
prints the echo commands a dry run of our makefiles prints (each file twice, as a recursive make
visited twice would), else the compile lines, noise and, with FAKE_FAIL_AT=k, an error after k
files. Counts, the kept log, the error tail and the display modes are checked against what the
script is told to do; nothing depends on how long anything takes.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from trec_tflm import paths, progress
from trec_tflm.host import kernels as native
from trec_tflm.host import tflm_build

FAKE_MAKE = textwrap.dedent("""\
    #!{python}
    import os, sys
    n = int(os.environ.get("FAKE_FILES", "5"))
    fail_at = int(os.environ.get("FAKE_FAIL_AT", "-1"))
    if "-n" in sys.argv[1:]:
        for _ in range(2):
            for i in range(n):
                kind = "CXX" if i % 2 else "CC "
                print('mkdir -p obj')
                print(f'echo "  {{kind}}     src/file{{i}}.c"')
                print(f'g++ -c src/file{{i}}.c -o obj/file{{i}}.o')
        sys.exit(0)
    print("makeflags=" + os.environ.get("MAKEFLAGS", "<unset>"))
    for i in range(n):
        if i == fail_at:
            print(f"src/file{{i}}.c:3:1: error: boom in file {{i}}", file=sys.stderr)
            for j in range(60):
                print(f"after the error line {{j}}")
            sys.exit(2)
        kind = "CXX" if i % 2 else "CC "
        print(f"  {{kind}}     src/file{{i}}.c")
        print(f"note: noise line {{i}}")
    print("  AR      libfake.a")
""")


@pytest.fixture
def fake_make(tmp_path, monkeypatch):
    monkeypatch.delenv("TREC_TFLM_PROGRESS", raising=False)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    make = bindir / "make"
    make.write_text(FAKE_MAKE.format(python=sys.executable))
    make.chmod(make.stat().st_mode | stat.S_IXUSR)
    return make


def _env(**kw) -> dict:
    env = dict(os.environ)
    env.update({k: str(v) for k, v in kw.items()})
    return env


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_counts_and_log_in_plain_mode(fake_make, tmp_path):
    out = io.StringIO()
    log = tmp_path / "logs" / "fake.log"
    run = progress.run_build([fake_make, "-j2", "lib"], step="building fake", log=log, stream=out,
                             env=_env(FAKE_FILES=7))
    assert run.ok and run.returncode == 0
    # the dry run names each of the 7 files twice: counted once
    assert run.total == 7 and run.built == 7
    text = out.getvalue()
    assert "building fake: 7 files to compile" in text.splitlines()[0]
    assert text.splitlines()[-1].startswith("building fake: done, 7 files compiled in ")
    assert "\r" not in text and len(text.splitlines()) <= 3
    # the log holds the command and every line, noise included, in order
    lines = log.read_text().splitlines()
    assert lines[0] == f"$ {fake_make} -j2 lib"
    assert lines[1:] == run.output.splitlines()
    assert [ln for ln in lines if "noise" in ln] == [f"note: noise line {i}" for i in range(7)]
    assert lines[-1] == "  AR      libfake.a"


def test_error_tail_and_full_log(fake_make, tmp_path):
    out = io.StringIO()
    log = tmp_path / "fail.log"
    run = progress.run_build([fake_make, "lib"], step="building fake", log=log, stream=out,
                             env=_env(FAKE_FILES=9, FAKE_FAIL_AT=4))
    assert not run.ok and run.returncode == 2
    assert run.built == 4 and run.total == 9
    tail = run.tail(40).splitlines()
    # the last 40 lines of output (the error is 61 lines from the end: not among them), then the log
    assert tail[:-1] == [f"after the error line {j}" for j in range(20, 60)]
    assert tail[-1] == f"(full build log: {log})"
    assert "error: boom in file 4" in run.tail(70)
    full = log.read_text()
    assert "  CC      src/file0.c" in full and "error: boom in file 4" in full and "after the error line 59" in full
    assert "building fake: FAILED, 4 files compiled in" in out.getvalue()
    assert f"(log: {log})" in out.getvalue()


def test_plain_lines_are_paced_by_the_interval():
    """The pacing on a simulated clock: a start line, then a line once 30 s have passed since the
    last one, an end line."""
    out = io.StringIO()
    d = progress._Display("building x", 9, out, "plain", 30.0, 2.0, Path("x.log"))
    for built, t in [(0, 0.5), (2, 1.0), (5, 10.0), (6, 31.0), (7, 45.0), (8, 60.5), (9, 61.5)]:
        d.update(built, t)
    d.finish(9, 75.0, True)
    assert out.getvalue().splitlines() == [
        "building x: 9 files to compile (log: x.log)",
        "building x: 6/9 files, 0:31 elapsed",
        "building x: 9/9 files, 1:01 elapsed",
        "building x: done, 9 files compiled in 1:15"]


def test_unknown_total_shows_after_quiet_for():
    out = io.StringIO()
    d = progress._Display("linking x", None, out, "plain", 30.0, 2.0, None)
    d.update(0, 1.0)
    assert out.getvalue() == ""
    d.update(0, 2.5)
    d.finish(0, 3.0, True)
    assert out.getvalue().splitlines() == ["linking x", "linking x: done, 0 files compiled in 0:03"]


def test_terminal_shows_a_bar(fake_make, tmp_path):
    out = _Tty()
    run = progress.run_build([fake_make], step="building fake", log=None, stream=out, env=_env(FAKE_FILES=4))
    assert run.built == 4
    text = out.getvalue()
    assert "\r\x1b[K" in text and "[" + "#" * progress.BAR_WIDTH + "] 4/4 files" in text
    assert text.endswith("\n") and "building fake: done, 4 files compiled in" in text


def test_nothing_to_do_is_silent(fake_make):
    out = io.StringIO()
    run = progress.run_build([fake_make], step="building fake", stream=out, env=_env(FAKE_FILES=0),
                             quiet_for=1e9)
    assert run.ok and run.total == 0 and run.built == 0
    assert out.getvalue() == ""


def test_progress_off_and_calling_make_flags_dropped(fake_make, monkeypatch):
    monkeypatch.setenv("TREC_TFLM_PROGRESS", "off")
    out = io.StringIO()
    run = progress.run_build([fake_make], step="building fake", stream=out, env=_env(FAKE_FILES=3, MAKEFLAGS="-n"))
    assert run.built == 3 and out.getvalue() == ""
    # MAKEFLAGS=-n from a calling make would have turned the build into a dry run
    assert "makeflags=<unset>" in run.output


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_timeout_stops_the_build_and_its_children(tmp_path):
    """A hanging compiler (a child of make, as in a real build) is stopped with make."""
    make = tmp_path / "make"
    pidfile = tmp_path / "pid"
    make.write_text(f"#!/bin/sh\nsleep 600 &\necho $! > {pidfile}\nwait\n")
    make.chmod(0o755)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            progress.run_build([make], step="building fake", stream=io.StringIO(), dry_run=False, timeout=3.0)
        assert pidfile.is_file(), "the fake make did not start its child within the timeout"
        pid = int(pidfile.read_text())
        # killed at once; being reaped by init may take a moment (no wall-clock claim: just a bound)
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.1)
        assert not _alive(pid)
    finally:
        if pidfile.is_file() and _alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), 9)


def test_count_planned_reads_make_n():
    dry = "\n".join(['echo "  CXX     a.cc"', "g++ -c a.cc", "echo '  CC      b.c'", 'echo "  AR      lib.a"',
                     'echo "  CXX     a.cc"', "echo hello"])
    assert progress.count_planned(dry) == 2


# ------------------------------------------------------------------------------------------------
# the callers keep the log and put its tail in their errors
# ------------------------------------------------------------------------------------------------
def test_tflm_make_failure_names_the_log(fake_make, tmp_path, monkeypatch):
    monkeypatch.setenv("TREC_TFLM_BUILD_ROOT", str(tmp_path / "tflm"))
    monkeypatch.setenv("FAKE_FILES", "6")
    monkeypatch.setenv("FAKE_FAIL_AT", "2")
    monkeypatch.setattr(tflm_build, "make_command",
                        lambda target, goal, **kw: [str(fake_make), f"TARGET={target}", goal])
    with pytest.raises(tflm_build.OpLibraryBuildError) as ei:
        tflm_build.run_make("m7", "lib")
    log = tmp_path / "tflm" / "logs" / "m7-lib.log"
    msg = str(ei.value)
    assert "after the error line 59" in msg and f"(full build log: {log})" in msg
    assert "error: boom in file 2" in log.read_text()


def test_native_build_failure_names_the_log(tmp_path, monkeypatch):
    cc = tmp_path / "fakecc"
    cc.write_text(f"#!{sys.executable}\nimport sys\nprint('trec_x.c:1: error: fake compiler refuses', "
                  "file=sys.stderr)\nsys.exit(1)\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.setattr(paths, "build_dir", lambda *parts: tmp_path.joinpath("b", *parts))
    with pytest.raises(native.NativeBuildError) as ei:
        native.library_path("host-plain", rebuild=True)
    log = tmp_path / "b" / "native" / "host-plain" / "build.log"
    assert "fake compiler refuses" in str(ei.value) and f"(full build log: {log})" in str(ei.value)
    assert "fake compiler refuses" in log.read_text()
    assert not (tmp_path / "b" / "native" / "host-plain" / native.LIB_NAME).exists()
