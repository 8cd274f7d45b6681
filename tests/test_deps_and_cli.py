"""`make deps` / trec_tflm.deps (the pinned trees fetched, checked, never written into) and the
command line's start-up: --help without TensorFlow, one line per error, --debug, python -m."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from trec_tflm import deps

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------- deps --
def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


def _upstream(tmp_path: Path, name: str, probe: str) -> tuple[Path, str, str]:
    """A local repository standing in for GitHub: two commits, the pinned one first."""
    repo = tmp_path / f"upstream-{name}"
    (repo / Path(probe).parent).mkdir(parents=True)
    _git("init", "-q", cwd=repo)
    _git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=repo)  # fetch by commit, as GitHub allows
    (repo / probe).write_text("pinned\n")
    _git("add", ".", cwd=repo)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "pinned", cwd=repo)
    pinned = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    (repo / probe).write_text("later\n")
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", "later", cwd=repo)
    later = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    return repo, pinned, later


@pytest.fixture
def fake_trees(tmp_path, monkeypatch):
    trees, commits = [], {}
    for t in deps.TREES:
        repo, pinned, later = _upstream(tmp_path, t.name, t.probe)
        trees.append(deps.Tree(t.name, t.var, repo.as_uri(), pinned, pinned[:7], t.probe))
        commits[t.var] = (pinned, later, repo)
        monkeypatch.delenv(t.var, raising=False)
    monkeypatch.setattr(deps, "TREES", tuple(trees))
    return commits


def test_fetches_each_tree_at_its_pinned_commit(fake_trees, tmp_path):
    lines = []
    found = deps.resolve(tmp_path / "third_party", log=lines.append)
    assert set(found) == {"TFLM_ROOT", "FLATBUFFERS_ROOT", "CMSIS_NN_ROOT"}
    for var, (pinned, later, _) in fake_trees.items():
        assert deps.git_head(found[var]) == pinned != later
    assert sorted(p.name for p in (tmp_path / "third_party").iterdir()) == sorted(t.name for t in deps.TREES)
    # a second run uses the checkouts and fetches nothing
    again = []
    assert deps.resolve(tmp_path / "third_party", log=again.append) == found and again == []


def test_unreachable_host_is_one_line_per_tree_and_leaves_nothing(fake_trees, tmp_path, monkeypatch):
    gone = tuple(deps.Tree(t.name, t.var, (tmp_path / "nowhere" / t.name).as_uri(), t.commit, t.ref, t.probe)
                 for t in deps.TREES)
    monkeypatch.setattr(deps, "TREES", gone)
    lines = []
    assert deps.resolve(tmp_path / "third_party", log=lines.append) == {}
    assert len(lines) == 3
    for t, line in zip(gone, lines):
        assert line.startswith(f"{t.name}: cannot reach") and t.var in line and "skipped" in line
    assert not (tmp_path / "third_party").exists()


def test_checkout_at_another_commit_is_refused_naming_both(fake_trees, tmp_path, monkeypatch):
    pinned, later, repo = fake_trees["TFLM_ROOT"]
    other = tmp_path / "elsewhere"
    subprocess.run(["git", "clone", "-q", str(repo), str(other)], check=True)
    monkeypatch.setenv("TFLM_ROOT", str(other))
    with pytest.raises(deps.DepsError) as ei:
        deps.resolve(tmp_path / "third_party")
    assert pinned in str(ei.value) and later in str(ei.value)


def test_read_only_tree_is_used_and_nothing_written(fake_trees, tmp_path, monkeypatch, capsys):
    """Like CI's ../shared/third_party: an export without .git, read-only."""
    roots = {}
    for t in deps.TREES:
        root = tmp_path / "shared" / t.name
        (root / Path(t.probe).parent).mkdir(parents=True)
        (root / t.probe).write_text("x\n")
        roots[t.var] = root
        monkeypatch.setenv(t.var, str(root))
    for p in sorted((tmp_path / "shared").rglob("*"), reverse=True):
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = sorted(str(p) for p in (tmp_path / "shared").rglob("*"))
    env_file = tmp_path / "build" / "trees.env"
    assert deps.main(["--dir", str(tmp_path / "tp"), "--write-env", str(env_file)]) == 0
    assert sorted(str(p) for p in (tmp_path / "shared").rglob("*")) == before
    assert not (tmp_path / "tp").exists()
    assert env_file.read_text().splitlines() == [f"export {v}={roots[v]}" for v in roots]
    for p in (tmp_path / "shared").rglob("*"):
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_a_tree_that_is_not_the_project_is_refused(fake_trees, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CMSIS_NN_ROOT", str(tmp_path))
    assert deps.main(["--dir", str(tmp_path / "tp"), "--no-fetch"]) == 2
    assert "is not a CMSIS-NN tree" in capsys.readouterr().err


# -------------------------------------------------------------------------------------- CLI --
def _python(code: str, env_extra=None, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, **kw)


def test_help_loads_no_tensorflow():
    from trec_tflm.cli import COMMANDS

    for name in ["", *(c for c, _, _ in COMMANDS)]:
        argv = [name, "--help"] if name else ["--help"]
        proc = _python("import sys\nfrom trec_tflm.cli import main\n"
                       f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
                       "heavy = sorted(m for m in ('tensorflow', 'keras', 'tflite_micro') if m in sys.modules)\n"
                       "print('HEAVY', heavy)")
        assert proc.returncode == 0, proc.stderr
        assert "HEAVY []" in proc.stdout, (name, proc.stdout[-300:])
        assert "usage: trec-tflm" in proc.stdout


def _run_cli(*argv, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "trec_tflm", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_an_error_is_one_line_without_tensorflows_start_up_log(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"not a zip archive")
    proc = _run_cli("convert", str(bad), "-o", str(tmp_path / "m.tflite"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith("trec-tflm convert: error:")
    assert not (tmp_path / "m.tflite").exists()


def test_debug_shows_the_traceback(tmp_path):
    proc = _run_cli("--debug", "inspect", str(tmp_path / "missing.tflite"))
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("trec-tflm inspect: error:")


def test_unexpected_failures_are_one_line_and_exit_1(monkeypatch, capsys):
    from trec_tflm import cli
    from trec_tflm import deps as deps_module

    def boom(args):
        raise KeyError("internal")

    monkeypatch.setattr(deps_module, "run", boom)
    assert cli.main(["deps", "--no-fetch"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "KeyError" in err and "--debug" in err


def test_python_dash_m_is_the_command():
    proc = _run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("trec-tflm ")


def test_a_missing_optional_package_names_the_extra(monkeypatch, capsys):
    from trec_tflm import cli
    from trec_tflm import deps as deps_module

    def needs_the_wheel(args):
        raise ModuleNotFoundError("No module named 'tflite_micro'", name="tflite_micro")

    monkeypatch.setattr(deps_module, "run", needs_the_wheel)
    assert cli.main(["deps", "--no-fetch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'trec-tflm[tflm]'" in err


def test_ctrl_c_while_a_command_loads_exits_130(monkeypatch, capsys):
    from trec_tflm import cli

    def interrupted(only=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["convert", "m.keras"]) == 130
    assert capsys.readouterr().err.strip() == "trec-tflm convert: interrupted"
