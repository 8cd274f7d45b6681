"""The MLPerf Tiny host runner (mlcommons/tiny benchmark/runner, unmodified) scores our firmware.

* unit level (everywhere): the dataset writer's byte convention (int8 value + 128) and the
  runner's y_labels.csv rows, the model checks behind ``deploy --mlperf-id``, finding the runner;
* end to end (TFLM tier: TFLM_ROOT, ARM toolchain, QEMU): a small Fashion-MNIST TREC net and its
  dense twin deployed for qemu_m7 with ``--mlperf-id ic01``, UART0 on a pseudo-terminal, and the
  runner's own main.py run through ``python -m trec_tflm.bench.mlperf_runner run`` (which only replaces its port
  discovery) on a runner-format dataset written by ``trec-tflm mlperf-dataset``:
  - accuracy mode: the runner's "Top 1%" equals ``trec-tflm eval --limit N`` on the same images,
    and its per-image argmax equals the host TFLM's, for both models;
  - performance mode with boards/mlperf/tests_performance_qemu.yaml (the iteration count
    docs/BOARDS.md gives for QEMU): five windows, each throughput = iterations / (m-lap-us
    difference), and the m-lap-us difference = the exact instruction count / 1000 (QEMU's virtual
    microseconds). Nothing here depends on wall-clock time; whether the run took the runner's
    10 s is the host's business (docs/BOARDS.md).

The runner is found through $TREC_MLPERF_RUNNER or ../shared/third_party/mlperf-tiny-runner beside
the repository; its Python dependencies come with ``pip install -e .[dev]``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.tflm_models import trained_trec_pair

from trec_tflm.bench import mlperf_runner
from trec_tflm.target import mlperf

ROOT = Path(__file__).resolve().parents[1]
RUNNER = mlperf_runner.find_runner()
RUNNER_DEPS = ("serial", "yaml", "numpy", "sklearn", "matplotlib", "usb")
MISSING_DEPS = [m for m in RUNNER_DEPS if importlib.util.find_spec(m) is None]
QEMU_SCRIPT = ROOT / "boards" / "mlperf" / "tests_performance_qemu.yaml"
N_IMAGES = 20          # the first 20 Fashion-MNIST test images hold all 10 classes (the runner's AUC needs them)

NEEDS_RUNNER = [
    pytest.mark.tflm, pytest.mark.qemu,
    pytest.mark.skipif(RUNNER is None, reason=f"the MLPerf Tiny runner was not found: set {mlperf_runner.RUNNER_ENV} "
                       f"or put mlcommons/tiny at {mlperf_runner.RUNNER_SIBLING} beside the repository"),
    pytest.mark.skipif(bool(MISSING_DEPS), reason=f"the runner's Python packages {MISSING_DEPS} are missing: "
                       "pip install -e .[dev]"),
]


def needs_runner(test):
    """TFLM tier (TFLM_ROOT, toolchain, QEMU), plus the runner and its Python packages."""
    for mark in reversed(NEEDS_RUNNER):
        test = mark(test)
    return test


# ------------------------------------------------------------------------------------ unit level --
def test_dataset_files_are_int8_plus_128(tmp_path):
    x = np.array([[-128, -1, 0, 127], [5, -5, 64, -64]], np.int8)
    root = mlperf.write_dataset(tmp_path / "ds", x, np.array([3, 0]), num_classes=10, mlperf_id="kws01")
    d = root / "kws01"
    assert (d / "y_labels.csv").read_text() == "img_00000.bin,10,3\nimg_00001.bin,10,0\n"
    assert (d / "img_00000.bin").read_bytes() == bytes([0, 127, 128, 255])      # hand-checked: q + 128
    assert (d / "img_00001.bin").read_bytes() == bytes([133, 123, 192, 64])
    back, labels = mlperf.read_dataset(root, "kws01")
    np.testing.assert_array_equal(back, x)
    assert labels.tolist() == [3, 0]
    if RUNNER is not None:   # the runner's own reader sees file, class count and class
        sys.path.insert(0, str(RUNNER))
        try:
            from datasets import DataSet
        finally:
            sys.path.remove(str(RUNNER))
            sys.modules.pop("datasets", None)   # the runner's module, not a package of ours
        truth, data = DataSet(str(d), "y_labels.csv").get_file_by_index(1)
        assert (truth["file"], int(truth["classes"]), int(truth["class"])) == ("img_00001.bin", 10, 0)
        assert data == bytes([133, 123, 192, 64])
    with pytest.raises(mlperf.MlperfError, match="int8"):
        mlperf.write_dataset(tmp_path / "bad", x.astype(np.uint8), np.array([1, 2]), num_classes=10)


def test_find_runner_env_and_refusal(tmp_path, monkeypatch):
    fake = tmp_path / "tiny" / "benchmark" / "runner"
    fake.mkdir(parents=True)
    (fake / "main.py").write_text("")
    (fake / "device_manager.py").write_text("")
    monkeypatch.setenv(mlperf_runner.RUNNER_ENV, str(tmp_path / "tiny"))
    assert mlperf_runner.find_runner() == fake.resolve()
    with pytest.raises(mlperf.MlperfError, match="not the MLPerf Tiny runner"):
        mlperf_runner.find_runner(tmp_path)


def test_qemu_script_is_a_valid_runner_script():
    """Five windows (the runner reports error 1 otherwise), download + infer with warm-ups."""
    doc = yaml.safe_load(QEMU_SCRIPT.read_text())
    ic = doc["ic01"]
    assert ic["model"] == "ic01" and ic["truth_file"] == "y_labels.csv"
    (loop,) = ic["script"]
    (key, steps), = loop.items()
    assert key == "loop 5" and steps[0] == "download" and re.fullmatch(r"infer \d+ \d+", steps[1])


# ------------------------------------------------------------------------------------ end to end --
@pytest.fixture(scope="module")
def tflm_env():
    from trec_tflm.host import tflm_build
    from trec_tflm.target import qemu

    if not os.environ.get("TFLM_ROOT"):
        pytest.fail("TFLM_ROOT is not set: this test is in the TFLM tier (the tflm marker)")
    tflm_build.check_tflm_tree()
    reason = qemu.skip_reason()
    assert reason is None, reason


@pytest.fixture(scope="module")
def models(tflm_env, tmp_path_factory):
    """(trec.tflite, dense.tflite): a TREC net trained one short epoch, and its dense twin."""
    from trec_tflm.data import load_fashion_mnist

    trec, dense = trained_trec_pair(load_fashion_mnist(), tmp_path_factory.mktemp("runner_models"), conv1_filters=8,
                                    conv2_length=9, conv2_bits=7, train_images=2000, name="runner_trec")
    return {"trec": trec, "dense": dense}


@pytest.fixture(scope="module")
def elfs(models, tmp_path_factory):
    """Both models deployed for qemu_m7 with --mlperf-id ic01 and built."""
    from trec_tflm.target import deploy as dp

    root = tmp_path_factory.mktemp("runner_fw")
    out = {}
    for label, path in models.items():
        res = dp.deploy(path, "qemu_m7", root / label, mlperf_id="ic01")
        assert (res.mlperf_id, res.input_format, res.output_softmax) == ("ic01", "uint8", True)
        out[label], _ = dp.build_project(res.out_dir)
    return out


@pytest.fixture(scope="module")
def dataset(models, tmp_path_factory):
    """The first N_IMAGES test images in the runner's format, written by `trec-tflm mlperf-dataset`."""
    from trec_tflm.cli import main

    root = tmp_path_factory.mktemp("runner_ds")
    assert main(["mlperf-dataset", str(models["trec"]), "-o", str(root), "--limit", str(N_IMAGES)]) == 0
    return root


def run_runner(elf: Path, dataset_root: Path, mode: str, workdir: Path, *extra: str) -> dict:
    """The runner's main.py against ``elf`` on qemu_m7 (UART0 on a pty); returns its session files."""
    from trec_tflm.target import qemu

    workdir.mkdir(parents=True, exist_ok=True)
    with qemu.start_qemu_pty(elf, "qemu_m7") as q:
        cmd = [sys.executable, "-m", "trec_tflm.bench.mlperf_runner", "run", "--port", q.path, "--runner", str(RUNNER),
               "--", "--dataset_path", str(dataset_root), "--mode", mode, *extra]
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
        print(f"runner, mode {mode}: {time.monotonic() - t0:.1f} s wall-clock (informative only)")
    sessions = sorted((workdir / "sessions").glob("*/results.txt"))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and sessions, f"the runner failed (exit {proc.returncode}):\n{log[-4000:]}"
    s = sessions[-1].parent
    return {"results": s.joinpath("results.txt").read_text(),
            "json": json.loads(s.joinpath("results.json").read_text()),
            "log": s.joinpath("log.txt").read_text(), "stdout": log}


@needs_runner
@pytest.mark.parametrize("label", ["trec", "dense"])
def test_runner_accuracy_equals_eval(label, models, elfs, dataset, tmp_path, capsys):
    from trec_tflm.cli import main
    from trec_tflm.host import interpreter as runtime

    assert main(["eval", str(models[label]), "--limit", str(N_IMAGES), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["images"] == N_IMAGES
    run = run_runner(elfs[label], dataset, "a", tmp_path / "a")
    print(run["results"])
    assert "Device model retrieved: ic01" in run["log"]
    m = re.search(r"Top 1% = ([\d.]+)", run["results"])
    assert m, run["results"]
    assert m.group(1) == f"{100 * ev['correct'] / N_IMAGES:2.1f}", (run["results"], ev)
    # per image: the runner's argmax of m-results = the host TFLM's argmax of the int8 outputs
    x, y = mlperf.read_dataset(dataset, "ic01")
    rt = runtime.Runtime(models[label].read_bytes())
    host = rt.predict(x.reshape((-1,) + tuple(rt.input_shape[1:]))).reshape(N_IMAGES, -1)
    per_file = {r["file"]: r["infer"]["results"] for r in run["json"] if "infer" in r and "file" in r}
    assert len(per_file) == N_IMAGES
    dev = [int(np.argmax(per_file[f"img_{i:05d}.bin"])) for i in range(N_IMAGES)]
    assert dev == host.argmax(axis=1).tolist()
    for i in range(N_IMAGES):      # probabilities: they sum to 1 (to the printed 6 decimals)
        assert abs(sum(per_file[f"img_{i:05d}.bin"]) - 1.0) < 2e-5


@needs_runner
def test_runner_performance_windows_match_the_laps(elfs, dataset, tmp_path):
    from trec_tflm.bench.board import run_bench
    from trec_tflm.target import qemu
    from trec_tflm.target.serial_protocol import EEMBCClient

    doc = yaml.safe_load(QEMU_SCRIPT.read_text())
    iterations, warmups = (int(v) for v in doc["ic01"]["script"][0]["loop 5"][1].split()[1:])
    run = run_runner(elfs["trec"], dataset, "p", tmp_path / "p", "--test_script", str(QEMU_SCRIPT))
    print(run["results"])
    windows = [r["infer"] for r in run["json"] if "infer" in r]
    assert len(windows) == 5 and not any(r.get("error") == "error 1" for r in run["json"])
    assert len(re.findall(r"Performance results for window \d+", run["results"])) == 5
    # exact instructions of the timed loop for the same five images, from a separate QEMU run through
    # our own client: m-infer-ticks of 1 and 2 inferences give per inference T and the loop's fixed
    # part c, so N inferences take N * T + c instructions
    x, _ = mlperf.read_dataset(dataset, "ic01")
    with qemu.start_qemu_serial(elfs["trec"], "qemu_m7") as q, EEMBCClient(q.url, timeout=30) as client:
        one = run_bench(q.url, list(x[:5]), iterations=1, warmup=0, ops=False, client=client).ticks
        two = run_bench(q.url, list(x[:5]), iterations=2, warmup=0, ops=False, client=client).ticks * 2
    for i, w in enumerate(windows):
        assert w["iterations"] == iterations and w["warmups"] == warmups
        elapsed = w["end_time"] - w["start_time"]                   # the two m-lap-us of the window
        assert w["elapsed_time"] == elapsed
        assert w["throughput"] == pytest.approx(iterations / (elapsed / 1e6), rel=1e-12)
        # QEMU's virtual microseconds are instructions / 1000; each time stamp is floored (and
        # ticks come in steps of 4 instructions), so the difference is within 2 us of the exact one
        per_inference, fixed = two[i] - one[i], 2 * one[i] - two[i]
        assert per_inference > 0 and -8 <= fixed < 1000
        assert abs(elapsed - (iterations * per_inference + fixed) / 1000) <= 2, (elapsed, per_inference, fixed)
