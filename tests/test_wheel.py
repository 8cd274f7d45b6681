"""The package as a user installs it: an sdist, a wheel built from that sdist, installed into a fresh
virtual environment outside this checkout, and the commands run from there.

* the sdist and the wheel carry tflm_ops/ and boards/ (the wheel in trec_tflm/_data/): every file
  git tracks there, nothing else;
* in the new environment (it sees this test environment's site-packages through a .pth file, so
  TensorFlow is not installed twice; the checkout is not on its path: clean PYTHONPATH, a temporary
  working directory) trec_tflm is the installed copy and finds its sources in the package;
* from there: ``trec-tflm inspect`` and ``trec-tflm deploy --board qemu_m7`` on a small TREC model,
  and the host C kernels (trec_tflm.host.kernels, built on first use) on the model's TREC layers, equal to
  trec_tflm.spec.golden run here from the checkout;
* with the TFLM trees and the ARM toolchain: ``deploy --build`` links the firmware;
* builds go to the user cache (TREC_TFLM_CACHE, here a temporary directory); nothing is written into
  the installed package.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import site
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# What an sdist is made from (setup.py and MANIFEST.in pick the files).
SDIST_INPUTS = ("setup.py", "MANIFEST.in", "README.md", "trec_tflm", "tflm_ops", "boards", "docs")
TREES = ("TFLM_ROOT", "FLATBUFFERS_ROOT", "CMSIS_NN_ROOT")


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"$ {' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _tracked_sources() -> list:
    """tflm_ops/ and boards/ files as git tracks them (the expected content of the sdist's trees)."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.fail("this test compares the wheel with `git ls-files`: run it in a git checkout")
    out = _run(["git", "-C", REPO, "ls-files", "tflm_ops", "boards"]).stdout.split()
    return sorted(out)


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """(sdist, wheel built from the sdist). The sdist is made from a copy of the checkout, so no
    build/ or egg-info lands in the checkout and stale files from an earlier build cannot leak in."""
    tmp = tmp_path_factory.mktemp("dist")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("build", "__pycache__", "*.pyc", "*.egg-info", "*.o", "*.so", "*.a")
    for name in SDIST_INPUTS:
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=ignore)
        else:
            shutil.copy2(p, src / name)
    _run([sys.executable, "setup.py", "-q", "sdist", "-d", tmp / "sdist"], cwd=src)
    (sdist,) = (tmp / "sdist").glob("trec-tflm-*.tar.gz")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp / "wheel",
          sdist], cwd=tmp)
    (wheel,) = (tmp / "wheel").glob("trec_tflm-*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory):
    """A fresh virtual environment with the wheel installed; returns (venv dir, environment for
    running in it, its trec_tflm/_data)."""
    root = tmp_path_factory.mktemp("installed")
    env_dir = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", env_dir])
    py = env_dir / "bin" / "python"
    site_dir = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # this environment's packages (TensorFlow, tflite-micro, ...) behind the new environment's own;
    # .pth lines are not processed recursively, so an editable install of the checkout stays out
    outer = list(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                                *site.getsitepackages()]))
    (site_dir / "_outer_env.pth").write_text("\n".join(outer) + "\n")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index", dist[1]])
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "TREC_TFLM_BUILD_ROOT", "TREC_TFLM_DEPLOY_ROOT",
                        "TREC_TFLM_OPS_LIB", *TREES)}
    env.update(PATH=f"{env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", TF_CPP_MIN_LOG_LEVEL="2",
               TREC_TFLM_CACHE=str(root / "cache"), TREC_TFLM_PROGRESS="plain")
    work = root / "work"
    work.mkdir()
    data = site_dir / "trec_tflm" / "_data"
    return dict(dir=env_dir, py=py, env=env, work=work, data=data, cache=root / "cache",
                before=sorted(str(p) for p in data.rglob("*")))


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A converted int8 model with two TREC_CONV_2D layers (random calibration images suffice:
    only the structure matters here). Returns the .tflite path."""
    pytest.importorskip("tensorflow")
    import keras

    from trec_tflm.tflite.convert import convert
    from trec_tflm.training.layers import TRECConv2D

    keras.utils.set_random_seed(3)
    inp = keras.Input((16, 16, 1), name="image")
    x = TRECConv2D(4, 3, padding="same", activation="relu", sub_vector_length=3, hash_bits=4, name="t1")(inp)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = TRECConv2D(6, 3, padding="valid", activation="relu", sub_vector_length=9, hash_bits=5, name="t2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    model = keras.Model(inp, keras.layers.Dense(3, name="logits")(x), name="wheel_small")
    images = np.random.default_rng(0).random((16, 16, 16, 1), dtype=np.float32)
    path = tmp_path_factory.mktemp("model") / "small.tflite"
    path.write_bytes(convert(model, images, calibration_samples=16))
    return path


def _in_venv(venv, cmd, *, env=None, timeout=900) -> subprocess.CompletedProcess:
    return _run(cmd, cwd=venv["work"], env=env or venv["env"], timeout=timeout)


def _nothing_written_into_the_package(venv):
    assert sorted(str(p) for p in venv["data"].rglob("*")) == venv["before"]


# ------------------------------------------------------------------------------------------------
def test_sdist_and_wheel_carry_the_c_sources(dist):
    sdist, wheel = dist
    tracked = _tracked_sources()
    assert "tflm_ops/tflm.mk" in tracked and "boards/qemu_m7/board.mk" in tracked
    with tarfile.open(sdist) as tf:
        top = tf.getnames()[0].split("/")[0]
        trees = (f"{top}/tflm_ops/", f"{top}/boards/")
        in_sdist = sorted(m.name[len(top) + 1:] for m in tf.getmembers() if m.name.startswith(trees) and m.isfile())
    assert in_sdist == tracked
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = sorted(n[len("trec_tflm/_data/"):] for n in zf.namelist() if n.startswith("trec_tflm/_data/"))
        assert "trec_tflm/training/train_ops/trec_train_ops.cc" in zf.namelist()
    # the package data leaves the dotfiles out (setup.py): formatting configuration, which no build reads
    assert in_wheel == [f for f in tracked if not Path(f).name.startswith(".")]


def test_installed_package_is_not_the_checkout(venv):
    probe = ("import json, sys, trec_tflm; from trec_tflm import paths; "
             "print(json.dumps([trec_tflm.__file__, str(paths.source_root()), str(paths.build_dir('x')), sys.path]))")
    file, source_root, build, path = json.loads(_in_venv(venv, [venv["py"], "-c", probe]).stdout)
    assert Path(file).is_relative_to(venv["dir"]), file
    assert Path(source_root) == venv["data"]
    assert Path(build).is_relative_to(venv["cache"]), build
    assert not any(p and Path(p).resolve() == REPO for p in path), path


def test_inspect_from_the_installed_package(venv, small_model):
    out = _in_venv(venv, ["trec-tflm", "inspect", small_model, "--no-arena"]).stdout
    assert "TREC_CONV_2D" in out
    _nothing_written_into_the_package(venv)


def test_deploy_from_the_installed_package(venv, small_model):
    out_dir = venv["work"] / "fw"
    _in_venv(venv, ["trec-tflm", "deploy", small_model, "--board", "qemu_m7", "-o", out_dir])
    mk = (out_dir / "Makefile").read_text()
    # the project builds from the package's copy of the sources and builds TFLM into the cache
    assert f"TREC_ROOT        := {venv['data']}\n" in mk
    assert f"TFLM_BUILD_ROOT  := $(or $(TREC_TFLM_BUILD_ROOT),{venv['cache']}/builds/" in mk
    for rel in ("boards/firmware.mk", "boards/app/trec_app_project.cc", "boards/common/eembc/ee_protocol.c",
                "tflm_ops/tflm.mk"):
        assert (venv["data"] / rel).is_file(), rel
    assert (out_dir / "trec_app_model.cc").read_text().count("0x") > small_model.stat().st_size - 1
    _nothing_written_into_the_package(venv)


def test_host_kernels_from_the_installed_package(venv, small_model):
    """The C kernels, built from the installed sources into the cache, on the inputs the model's
    TREC layers see for two images; checked against golden run here, from the checkout."""
    from trec_tflm.spec import golden

    out = venv["work"] / "native.pickle"
    script = f"""
import json, pickle, numpy as np
from trec_tflm import bench_kernels, native
images = np.random.default_rng(1).random((2, 16, 16, 1), dtype=np.float32)
cases = bench_kernels.trec_cases(open({str(small_model)!r}, "rb").read(), images)
runs = [(name, c.input, c.filter, c.bias, c.hash, c.params,
         native.trec_conv2d_s8(c.input, c.filter, c.bias, c.hash, **c.params))
        for name, cs in cases.items() for c in cs]
pickle.dump(runs, open({str(out)!r}, "wb"))
print(json.dumps(str(native.library_path())))
"""
    lib = json.loads(_in_venv(venv, [venv["py"], "-c", script]).stdout.strip().splitlines()[-1])
    assert Path(lib).is_relative_to(venv["cache"]), lib
    assert (Path(lib).parent / "build.log").is_file()
    with open(out, "rb") as f:
        runs = pickle.load(f)
    assert sorted(r[0] for r in runs) == ["t1", "t1", "t2", "t2"]
    for name, x, w, b, r, params, got in runs:
        want = golden.trec_conv2d_s8(x, w, b, r, **params)
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert np.any(want != want.flat[0]), f"{name}: a constant output would not show a difference"
    _nothing_written_into_the_package(venv)


@pytest.mark.tflm
@pytest.mark.toolchain
def test_deploy_build_from_the_installed_package(venv, small_model, tmp_path):
    """``deploy --build`` from the installed package. The cold TFLM build for the M7 takes many
    minutes; its objects do not depend on where our sources are, so the installation's build
    directory is seeded with this checkout's (built if missing): only the app library (boards/app,
    our glue and kernels, compiled here from the installed copies) and the app are compiled."""
    from trec_tflm.host import tflm_build

    if not all(os.environ.get(t) for t in TREES[:2]):
        pytest.fail("TFLM_ROOT and FLATBUFFERS_ROOT must be set for this test (its marker says so)")
    env = dict(venv["env"], **{t: os.environ[t] for t in TREES if os.environ.get(t)})
    env["TREC_TFLM_BUILD_ROOT"] = str(tmp_path / "tflm")
    tflm_build.run_make("m7", "lib")
    ours = tflm_build.target_build_dir("m7")
    probe = "from trec_tflm.host import tflm_build; print(tflm_build.target_build_dir('m7'))"
    theirs = Path(_in_venv(venv, [venv["py"], "-c", probe], env=env).stdout.strip().splitlines()[-1])
    assert theirs.is_relative_to(tmp_path / "tflm")
    shutil.copytree(ours, theirs, symlinks=True,
                    ignore=lambda d, names: [n for n in names if n in ("libtrec_app.a", "tests")])
    out_dir = venv["work"] / "fw-build"
    proc = _in_venv(venv, ["trec-tflm", "deploy", small_model, "--board", "qemu_m7", "-o", out_dir, "--build"],
                    env=env, timeout=1800)
    assert (out_dir / "build" / "qemu_m7" / "trec_app.elf").is_file()
    assert "flash" in proc.stdout and "RAM" in proc.stdout
    # the app library was compiled from the installed sources
    assert (theirs / "obj" / str(venv["data"]).lstrip("/") / "boards" / "app" / "main.cc.o").is_file()
    assert (theirs / "libtrec_app.a").is_file()
    _nothing_written_into_the_package(venv)
