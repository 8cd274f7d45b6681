"""The pinned source trees the TFLM tier builds against, and ``make deps`` / ``trec-tflm deps``.

TFLM, flatbuffers and CMSIS-NN come from no package registry, so they are git checkouts the build is
pointed at (TFLM_ROOT, FLATBUFFERS_ROOT, CMSIS_NN_ROOT). For each tree: a variable already set wins
(checked, never written into); else an existing checkout in the target directory (default
``third_party/``) is used when it sits at the pinned commit; else the commit is fetched shallowly
with git into a temporary directory, checked, and renamed into place (so an interrupted fetch leaves
nothing behind). Without network the tree is reported in one line with what fixes it, and the
command still exits 0: the TFLM tier is then skipped and says so.

Standard library only: ``make`` runs it with the system python before the virtual environment exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from trec_tflm.errors import TrecTflmError


@dataclass(frozen=True)
class Tree:
    name: str       # directory under third_party/
    var: str        # the environment variable the build reads
    url: str
    commit: str
    ref: str        # what the README calls it (a tag or the commit)
    probe: str      # a file every usable tree has

    def usable(self, root: Path) -> bool:
        return (root / self.probe).is_file()


# The commit of tflite-micro is the one the pinned tflite-micro wheel was built from (the op library
# links against the wheel's runtime, so headers of another commit can corrupt memory); flatbuffers
# and CMSIS-NN are TFLM's own pins at that commit.
TFLM = Tree("tflite-micro", "TFLM_ROOT", "https://github.com/tensorflow/tflite-micro",
            "88f8587b3fa6e4e027caf5437b1510a86bf31a60", "88f8587b3fa6e4e027caf5437b1510a86bf31a60",
            "tensorflow/lite/micro/micro_interpreter.h")
FLATBUFFERS = Tree("flatbuffers", "FLATBUFFERS_ROOT", "https://github.com/google/flatbuffers",
                   "187240970746d00bbd26b0f5873ed54d2477f9f3", "v25.9.23", "include/flatbuffers/flexbuffers.h")
CMSIS_NN = Tree("CMSIS-NN", "CMSIS_NN_ROOT", "https://github.com/ARM-software/CMSIS-NN",
                "e096196a0c49f065abc03d943c583cd50de424ba", "e096196a0c49f065abc03d943c583cd50de424ba",
                "Include/arm_nnfunctions.h")
TREES = (TFLM, FLATBUFFERS, CMSIS_NN)
FETCH_TIMEOUT = 900  # seconds for one shallow fetch (tflite-micro is the largest, ~100 MB)


class DepsError(TrecTflmError, RuntimeError):
    """A configured tree that cannot be used (wrong commit, not that project)."""


def _git(*args, cwd=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def git_head(root: Path) -> str | None:
    """The checkout's commit, or None for a tree without git metadata (an export)."""
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        out = _git("-C", str(root), "rev-parse", "HEAD", timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def check(tree: Tree, root: Path) -> str:
    """'' when ``root`` is a usable ``tree`` at the pinned commit (or an export without git, which
    cannot be checked), else why not."""
    if not tree.usable(root):
        return f"{root} is not a {tree.name} tree (no {tree.probe})"
    head = git_head(root)
    if head is not None and head != tree.commit:
        return (f"{root} is at commit {head}, but {tree.name} {tree.ref} ({tree.commit}) is pinned: "
                f"git -C {root} fetch --depth 1 origin {tree.commit} && git -C {root} checkout {tree.commit}")
    return ""


def fetch(tree: Tree, dest: Path, log=print) -> bool:
    """Shallow-fetch ``tree`` at its commit into ``dest`` (absent). False, with one line said, when
    the host cannot be reached; DepsError when what arrives is not the pinned commit."""
    if shutil.which("git") is None:
        log(f"{tree.name}: git is not installed (Debian: apt-get install git); the TFLM tier will be skipped")
        return False
    unreachable = (f"{tree.name}: cannot reach {tree.url}: the TFLM tier will be skipped "
                   f"(set {tree.var} to a checkout at {tree.ref}, or rerun `make deps` with network access)")
    try:  # a quick probe, so that a machine without network says so at once and in one line
        if _git("ls-remote", "--exit-code", tree.url, "HEAD", timeout=60).returncode != 0:
            log(unreachable)
            return False
    except subprocess.TimeoutExpired:
        log(unreachable)
        return False
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)  # parents: the first fetch creates third_party/
    try:
        _git("init", "-q", str(tmp))
        log(f"{tree.name}: fetching {tree.ref} from {tree.url} (shallow) ...")
        try:
            got = _git("fetch", "-q", "--depth", "1", tree.url, tree.commit, cwd=tmp, timeout=FETCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"{tree.name}: fetching {tree.url} took over {FETCH_TIMEOUT} s: the TFLM tier will be skipped "
                f"(retry `make deps`, or set {tree.var} to a checkout at {tree.ref})")
            return False
        if got.returncode != 0:
            reason = (got.stderr.strip().splitlines() or ["git fetch failed"])[-1]
            log(f"{tree.name}: cannot fetch {tree.commit} from {tree.url} ({reason}): the TFLM tier will be "
                f"skipped (set {tree.var} to a checkout at {tree.ref})")
            return False
        _git("checkout", "-q", "FETCH_HEAD", cwd=tmp)
        problem = check(tree, tmp)
        if problem:
            raise DepsError(f"{tree.name}: the fetched tree is not usable: {problem}")
        tmp.rename(dest)
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve(target: Path, *, fetch_missing: bool = True, log=print) -> dict[str, Path]:
    """Each tree's root: from its variable, from ``target``, or fetched into ``target``. Trees that
    cannot be had are left out (said in one line each)."""
    found: dict[str, Path] = {}
    for tree in TREES:
        env = os.environ.get(tree.var, "").strip()
        if env:
            root = Path(env).expanduser().resolve()
            problem = check(tree, root)
            if problem:
                raise DepsError(f"{tree.var}: {problem}")
            found[tree.var] = root
            continue
        root = (target / tree.name).resolve()
        if root.exists():
            problem = check(tree, root)
            if problem:
                raise DepsError(f"{tree.var} (from {target}): {problem}")
            found[tree.var] = root
        elif fetch_missing:
            if fetch(tree, root, log):
                found[tree.var] = root
        else:
            log(f"{tree.name}: not configured: set {tree.var} to a checkout at {tree.ref}, or run `make deps`")
    return found


def env_lines(found: dict[str, Path]) -> list[str]:
    return [f"export {var}={path}" for var, path in found.items()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="trec-tflm deps", description=__doc__.split("\n\n")[0])
    register(p)
    return run(p.parse_args(argv))


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="third_party", help="where to fetch missing trees (default third_party/)")
    p.add_argument("--no-fetch", action="store_true", help="only report; fetch nothing")
    p.add_argument("--write-env", metavar="FILE",
                   help="write `export VAR=path` lines for the trees found (what `make` sources)")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        found = resolve(Path(args.dir), fetch_missing=not args.no_fetch)
    except DepsError as exc:
        print(f"trec-tflm deps: error: {exc}", file=sys.stderr)
        return 2
    for tree in TREES:
        if tree.var in found:
            print(f"{tree.name}: {tree.var}={found[tree.var]}")
    if args.write_env:
        out = Path(args.write_env)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in env_lines(found)))
        tmp.replace(out)
    missing = [t.var for t in TREES if t.var not in found]
    if missing:
        print(f"TFLM tier: {', '.join(missing)} missing; its tests skip and `make demo` skips the emulated "
              "board (README 'TFLM tree')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
