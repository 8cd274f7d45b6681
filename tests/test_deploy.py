"""trec-tflm deploy without a TFLM tree: projects for all four boards, refused inputs, flashing
and the memory budget.

* a small converted TREC model (trec_tflm.tflite.convert on a tiny Keras model, real Fashion-MNIST
  calibration images) becomes a project for every board: the C array holds the model's bytes,
  the resolver registers exactly the model's operators (TREC_CONV_2D through AddTrecConv2D),
  the arena is the documented estimate, the Makefile uses boards/firmware.mk for the board;
* bad input (missing file, not .tflite, not a flatbuffer, TREC_CONV_2D version 2, unknown board,
  an -o that is not a previous project, a failure half-way) gives a clear error and leaves nothing
  at -o; a previous project is replaced;
* --flash: the QEMU boards are refused, no tool and no drive names the packages (PATH emptied),
  st-flash / openocd / pyocd get the right command lines (fake tools record them), the .bin is
  copied to a mounted NODE_F746ZG / DIS_F469NI drive;
* the budget parser on recorded arm-none-eabi-size -A and linker map output, overflows, and the
  boards' memory from their linker scripts.

Builds with TFLM are in tests/test_bench_models.py (TFLM_ROOT needed there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

from trec_tflm.cli import main
from trec_tflm.target import arena
from trec_tflm.target import deploy as dp

# ------------------------------------------------------------------------------------------------
# a small converted model
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A converted int8 model: TREC 5x5 (ReLU), max-pool, TREC 3x3 stride 2, plain 3x3 conv,
    average pool, flatten, dense. Written to a .tflite file; returns (path, bytes)."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("tflite_micro")
    import keras

    from trec_tflm.data import DatasetError, load_fashion_mnist
    from trec_tflm.tflite.convert import convert
    from trec_tflm.training.layers import TRECConv2D

    try:
        ds = load_fashion_mnist()
    except DatasetError as exc:
        pytest.skip(str(exc))
    keras.utils.set_random_seed(5)
    inp = keras.Input((28, 28, 1), name="image")
    x = TRECConv2D(6, 5, padding="same", activation="relu", sub_vector_length=5, hash_bits=6, name="t1")(inp)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = TRECConv2D(8, 3, strides=2, padding="valid", activation="relu", sub_vector_length=9, hash_bits=5,
                   name="t2")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="plain")(x)
    x = keras.layers.AveragePooling2D(2, name="avg")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="tiny_deploy")
    buf = convert(model, ds.x_train[:64], calibration_samples=64, labels=ds.labels)
    path = tmp_path_factory.mktemp("model") / "tiny.tflite"
    path.write_bytes(buf)
    return path, buf


@pytest.fixture
def no_tflm(monkeypatch):
    for var in ("TFLM_ROOT", "TREC_TFLM_OPS_LIB"):
        monkeypatch.delenv(var, raising=False)


def _model_ops(buf):
    from trec_tflm.spec import model as tm

    return [op.name for op in tm.operators(tm.load_model(buf))]


def _array_bytes(cc: str, name: str) -> bytes:
    m = re.search(rf"alignas\(16\) const unsigned char {name}\[\] = \{{(.*?)\}};", cc, re.S)
    assert m, f"no 16-byte aligned array {name} in the generated source"
    return bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", m.group(1)))


def _leftovers(parent: Path) -> list:
    return sorted(p.name for p in parent.iterdir() if ".deploy-" in p.name or ".old-" in p.name)


# ------------------------------------------------------------------------------------------------
# projects for every board
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("board", dp.BOARDS)
def test_project_for_every_board(tiny_model, no_tflm, tmp_path, board):
    path, buf = tiny_model
    out = tmp_path / f"fw_{board}"
    res = dp.deploy(path, board, out)
    assert res.out_dir == out.absolute() and out.is_dir()
    assert sorted(p.name for p in out.iterdir()) == ["Makefile", "project.json", "trec_app_config.h",
                                                     "trec_app_model.cc", "trec_app_ops.cc"]
    # the model, byte for byte, 16-byte aligned, with its length
    model_cc = (out / "trec_app_model.cc").read_text()
    assert _array_bytes(model_cc, "g_trec_app_model") == buf
    assert f"g_trec_app_model_len = {len(buf)}u;" in model_cc
    # exactly the model's operators, each once, in order of first use
    ops = _model_ops(buf)
    kinds = list(dict.fromkeys(ops))
    assert "TREC_CONV_2D" in kinds and "CONV_2D" in kinds and "AVERAGE_POOL_2D" in kinds
    ops_cc = (out / "trec_app_ops.cc").read_text()
    calls = re.findall(r"TF_LITE_ENSURE_STATUS\((.*?)\);\s*// (\w+)", ops_cc)
    assert [k for _, k in calls] == kinds
    assert dict((k, c) for c, k in calls)["TREC_CONV_2D"] == "tflite::AddTrecConv2D(resolver)"
    assert dict((k, c) for c, k in calls)["CONV_2D"] == "resolver.AddConv2D()"
    assert dict((k, c) for c, k in calls)["AVERAGE_POOL_2D"] == "resolver.AddAveragePool2D()"
    assert ops_cc.count("resolver.Add") + ops_cc.count("AddTrecConv2D(resolver)") == len(kinds)
    # arena, operator count, model name
    cfg = (out / "trec_app_config.h").read_text()
    proj = json.loads((out / "project.json").read_text())
    assert f"#define TREC_APP_ARENA_SIZE {proj['arena_size']}u" in cfg
    assert f"#define TREC_APP_OP_COUNT {len(kinds)}" in cfg
    assert '#define TREC_APP_MODEL_NAME "tiny"' in cfg
    assert "#define TREC_APP_INPUT_BYTES 784u" in cfg
    # no --mlperf-id: m-model is the name, db bytes are int8; the model ends in Dense logits, so
    # m-results is their softmax (the MLPerf Tiny runner scores probabilities)
    assert '#define TREC_APP_MLPERF_ID ""' in cfg and "#define TREC_APP_INPUT_UINT8 0" in cfg
    assert "#define TREC_APP_OUTPUT_SOFTMAX 1" in cfg
    assert (proj["mlperf_id"], proj["input_format"], proj["output_softmax"]) == (None, "int8", True)
    est = dp.estimate_arena(buf)
    assert proj["arena_source"] == "estimate" and proj["arena_size"] == est.total == res.arena_size
    assert proj["arena_size"] % 16 == 0 and proj["arena_size"] >= est.need + est.margin
    assert proj["board"] == board and proj["op_kinds"] == kinds and proj["operators"] == ops
    assert proj["model_sha256"] and proj["out_dir"] == str(out.absolute())
    # Makefile: the board, its core, boards/firmware.mk, the app sources, trees from the environment
    mk = (out / "Makefile").read_text()
    core = "m7" if board in ("nucleo_f746zg", "qemu_m7") else "m4"
    assert re.search(rf"^BOARD\s+\?= {board}$", mk, re.M)
    assert re.search(rf"^TFLM_CORE\s+:= {core}$", mk, re.M)
    assert "include $(TREC_ROOT)/boards/firmware.mk" in mk
    # run from this checkout, the project uses its sources (an installed package: tests/test_wheel.py)
    assert f"TREC_ROOT        := {Path(__file__).resolve().parents[1]}" in mk
    assert "$(PROJECT_DIR)/trec_app_model.cc" in mk and "$(PROJECT_DIR)/trec_app_ops.cc" in mk
    assert "TFLM_ROOT        := $(TFLM_ROOT)" in mk
    assert "TFLM_ROOT is not set" in mk
    assert "EE_DB_CAPACITY=784u" in mk          # the db buffer holds exactly the model's input
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask      # not mkdtemp's 0700
    assert _leftovers(tmp_path) == []


def test_cli_deploy_prints_project(tiny_model, no_tflm, tmp_path, capsys):
    path, buf = tiny_model
    out = tmp_path / "cli"
    assert main(["deploy", str(path), "--board", "disco_f469ni", "-o", str(out), "--arena-margin", "8K",
                 "--json", str(tmp_path / "d.json")]) == 0
    text = capsys.readouterr().out
    assert "disco_f469ni" in text and "TREC_CONV_2D" in text and "arena" in text
    proj = json.loads((out / "project.json").read_text())
    est = dp.estimate_arena(buf, margin=8192)
    assert proj["arena_size"] == est.total and f"{est.total:,}" in text
    doc = json.loads((tmp_path / "d.json").read_text())
    assert doc["project"]["board"] == "disco_f469ni" and doc["budget"] is None


def test_grow_scratch_embeds_the_grown_model_in_the_same_arena(tiny_model, no_tflm, tmp_path, capsys):
    """--grow-scratch: t2 (3x3 stride 2 on 14x14, off the arena's peak at t1's 28x28x6 output) gets
    the room beside it through its scratch_budget option; t1 none; the arena is the plain model's."""
    from trec_tflm.host import kernels as native
    from trec_tflm.spec import model as tm

    path, buf = tiny_model
    out = tmp_path / "grown"
    assert main(["deploy", str(path), "--board", "nucleo_f746zg", "-o", str(out), "--grow-scratch"]) == 0
    text = capsys.readouterr().out
    embedded = _array_bytes((out / "trec_app_model.cc").read_text(), "g_trec_app_model")
    m = tm.load_model(embedded)
    budgets = {op.index: op.trec_options.get("scratch_budget") for op in tm.operators(m) if op.name == "TREC_CONV_2D"}
    default_t2, _ = native.kernels().trec_buffer_sizes((1, 14, 14, 6), (8, 3, 3, 6), sub_vector_length=9,
                                                       hash_bits=5, stride=2, padding="VALID")
    (t1, b1), (t2, b2) = sorted(budgets.items())
    assert b1 is None and b2 > default_t2
    assert f"scratch  t2 grown {default_t2:,} -> {b2:,} B (--grow-scratch)" in text
    assert json.loads((out / "project.json").read_text())["arena_size"] == dp.estimate_arena(buf).total
    # without the flag the model goes in as it is
    dp.deploy(path, "nucleo_f746zg", tmp_path / "plain")
    assert _array_bytes((tmp_path / "plain" / "trec_app_model.cc").read_text(), "g_trec_app_model") == buf


def test_mlperf_id_option(tiny_model, no_tflm, tmp_path, capsys):
    """--mlperf-id sets m-model and the MLPerf input convention; without it deploy says the runner
    will not accept the firmware; IDs the model cannot serve are refused."""
    path, _ = tiny_model
    out = tmp_path / "ic"
    assert main(["deploy", str(path), "--board", "qemu_m7", "-o", str(out), "--mlperf-id", "ic01"]) == 0
    text = capsys.readouterr().out
    assert "mlperf   m-model-[ic01]; input bytes uint8; m-results: softmax of the dequantized outputs" in text
    cfg = (out / "trec_app_config.h").read_text()
    assert '#define TREC_APP_MLPERF_ID "ic01"' in cfg and "#define TREC_APP_INPUT_UINT8 1" in cfg
    assert '#define TREC_APP_MODEL_NAME "tiny"' in cfg          # m-name-dut keeps the name
    assert main(["deploy", str(path), "--board", "qemu_m7", "-o", str(out), "--mlperf-id", "kws01",
                 "--input-format", "int8"]) == 0
    capsys.readouterr()
    cfg = (out / "trec_app_config.h").read_text()
    assert '#define TREC_APP_MLPERF_ID "kws01"' in cfg and "#define TREC_APP_INPUT_UINT8 0" in cfg
    assert main(["deploy", str(path), "--board", "qemu_m7", "-o", str(tmp_path / "plain")]) == 0
    assert "m-model-[tiny] is not an MLPerf Tiny model ID" in capsys.readouterr().out
    rc = main(["deploy", str(path), "--board", "qemu_m7", "-o", str(tmp_path / "ad"), "--mlperf-id", "ad01"])
    err = capsys.readouterr().err
    assert rc == 2 and "ad01" in err and "this model has 10 outputs" in err
    assert not (tmp_path / "ad").exists() and _leftovers(tmp_path) == []
    with pytest.raises(dp.DeployError, match="not an MLPerf Tiny model ID"):
        dp.deploy(path, "qemu_m7", tmp_path / "bad", mlperf_id="ic02")


def test_arena_size_option_and_redeploy_replaces(tiny_model, no_tflm, tmp_path):
    path, _ = tiny_model
    out = tmp_path / "p"
    dp.deploy(path, "qemu_m7", out)
    (out / "build").mkdir()
    (out / "build" / "keep.o").write_text("x")
    res = dp.deploy(path, "qemu_m4", out, arena_size=50001)
    assert res.arena_size == 50016 and res.arena_source == "given"
    proj = json.loads((out / "project.json").read_text())
    assert proj["board"] == "qemu_m4" and proj["arena_size"] == 50016
    assert "#define TREC_APP_ARENA_SIZE 50016u" in (out / "trec_app_config.h").read_text()
    assert (out / "build" / "keep.o").is_file()      # the previous build is kept for incremental builds
    assert _leftovers(tmp_path) == []


def test_makefile_without_tflm_says_what_to_set(tiny_model, no_tflm, tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed (Debian: apt-get install make)")
    path, _ = tiny_model
    out = tmp_path / "m"
    dp.deploy(path, "qemu_m7", out)
    env = {k: v for k, v in os.environ.items() if k not in ("TFLM_ROOT", "MAKEFLAGS", "MFLAGS")}
    proc = subprocess.run(["make", "-C", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    assert "TFLM_ROOT is not set: set TFLM_ROOT to a tflite-micro checkout at 88f8587b" in proc.stderr


# ------------------------------------------------------------------------------------------------
# refused inputs leave nothing at -o
# ------------------------------------------------------------------------------------------------
def _rewrite_trec_version(buf: bytes, version: int) -> bytes:
    from flatbuffers import flexbuffers

    from trec_tflm.spec import model as tm

    m = tm.load_model(buf)
    for op in m.subgraphs[0].operators:
        if tm.is_trec(m, op):
            opts = flexbuffers.Loads(tm.custom_options_bytes(op))
            opts["version"] = version
            op.customOptions = np.frombuffer(bytes(flexbuffers.Dumps(opts)), np.uint8).copy()
            break
    return tm.save_model(m)


def _refused(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    return err


def test_refused_inputs(tiny_model, no_tflm, tmp_path, capsys):
    path, buf = tiny_model
    out = tmp_path / "out"

    err = _refused(["deploy", str(tmp_path / "missing.tflite"), "--board", "qemu_m7", "-o", str(out)], capsys)
    assert "missing.tflite: no such file" in err

    keras_file = tmp_path / "model.keras"
    keras_file.write_bytes(b"PK\x03\x04zip")
    err = _refused(["deploy", str(keras_file), "--board", "qemu_m7", "-o", str(out)], capsys)
    assert "is not a .tflite file" in err and "trec-tflm convert" in err

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    err = _refused(["deploy", str(junk), "--board", "qemu_m7", "-o", str(out)], capsys)
    assert "not a TFLite flatbuffer" in err

    v2 = tmp_path / "v2.tflite"
    v2.write_bytes(_rewrite_trec_version(buf, 2))
    err = _refused(["deploy", str(v2), "--board", "nucleo_f746zg", "-o", str(out)], capsys)
    assert "unknown TREC_CONV_2D version 2; this build supports 1" in err

    err = _refused(["deploy", str(path), "--board", "nucleo_f767zi", "-o", str(out)], capsys)
    assert "unknown board 'nucleo_f767zi'" in err and "nucleo_f746zg" in err and "qemu_m4" in err

    err = _refused(["deploy", str(path), "--board", "qemu_m7", "-o", str(out), "--flash"], capsys)
    assert "--flash is for the STM32 boards" in err and "QEMU" in err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_existing_directory_is_not_clobbered(tiny_model, no_tflm, tmp_path, capsys):
    path, _ = tiny_model
    victim = tmp_path / "my_sources"
    victim.mkdir()
    (victim / "main.c").write_text("int main(void) { return 0; }\n")
    err = _refused(["deploy", str(path), "--board", "qemu_m7", "-o", str(victim)], capsys)
    assert "is not a firmware project written by trec-tflm deploy" in err
    assert sorted(p.name for p in victim.iterdir()) == ["main.c"]
    afile = tmp_path / "afile"
    afile.write_text("data")
    err = _refused(["deploy", str(path), "--board", "qemu_m7", "-o", str(afile)], capsys)
    assert "exists and is not a directory" in err and afile.read_text() == "data"
    # an empty directory may be used
    empty = tmp_path / "empty"
    empty.mkdir()
    dp.deploy(path, "qemu_m7", empty)
    assert (empty / "project.json").is_file()
    assert _leftovers(tmp_path) == []


def test_failure_half_way_leaves_nothing(tiny_model, no_tflm, tmp_path, monkeypatch):
    path, _ = tiny_model
    real = dp._generate_without_tflm

    def broken(model, ops, board, out, name, **kw):
        real(model, ops, board, out, name, **kw)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(dp, "_generate_without_tflm", broken)
    out = tmp_path / "deep" / "er" / "fw"
    with pytest.raises(OSError, match="simulated"):
        dp.deploy(path, "qemu_m7", out)
    assert not (tmp_path / "deep").exists()
    # a previous project stays as it was
    monkeypatch.setattr(dp, "_generate_without_tflm", real)
    prev = tmp_path / "prev"
    dp.deploy(path, "qemu_m7", prev, arena_size=4096)
    before = {p.name: p.read_bytes() for p in prev.iterdir()}
    monkeypatch.setattr(dp, "_generate_without_tflm", broken)
    with pytest.raises(OSError):
        dp.deploy(path, "qemu_m4", prev)
    assert {p.name: p.read_bytes() for p in prev.iterdir()} == before
    assert _leftovers(tmp_path) == []


def test_resolver_method_names():
    assert dp.resolver_method("CONV_2D") == "AddConv2D"
    assert dp.resolver_method("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"
    assert dp.resolver_method("MAX_POOL_2D") == "AddMaxPool2D"
    assert dp.resolver_method("FULLY_CONNECTED") == "AddFullyConnected"
    assert dp.resolver_method("L2_POOL_2D") == "AddL2Pool2D"
    assert dp.resolver_method("BATCH_TO_SPACE_ND") == "AddBatchToSpaceNd"
    assert dp.resolver_method("PADV2") == "AddPadV2"
    assert dp.resolver_method("UNIDIRECTIONAL_SEQUENCE_LSTM") == "AddUnidirectionalSequenceLSTM"
    with pytest.raises(dp.DeployError, match="HASHTABLE_LOOKUP.*MicroMutableOpResolver"):
        dp.resolver_method("HASHTABLE_LOOKUP")
    kinds, calls = dp.resolver_calls_without_tflm(["TREC_CONV_2D", "MAX_POOL_2D", "TREC_CONV_2D", "SOFTMAX"])
    assert kinds == ["TREC_CONV_2D", "MAX_POOL_2D", "SOFTMAX"]
    assert calls == ["tflite::AddTrecConv2D(resolver)", "resolver.AddMaxPool2D()", "resolver.AddSoftmax()"]


# ------------------------------------------------------------------------------------------------
# arena estimate
# ------------------------------------------------------------------------------------------------
def test_greedy_plan_shares_memory_between_lifetimes():
    assert arena._greedy_plan([(96, 0, 0), (96, 1, 1)]) == 96            # one after the other: shared
    assert arena._greedy_plan([(96, 0, 1), (96, 1, 2)]) == 192           # both live at step 1
    assert arena._greedy_plan([(64, 0, 1), (32, 1, 2), (64, 2, 3)]) == 96
    assert arena._greedy_plan([]) == 0


def test_estimate_covers_the_live_tensors(tiny_model):
    _, buf = tiny_model
    est = dp.estimate_arena(buf)
    # the first TREC layer's input (784 B) and output (28*28*6 = 4704 B) are live together
    assert est.activations >= 784 + 4704 + est.scratch
    assert est.scratch > 0 and est.persistent > dp.ARENA_FIXED
    assert est.margin == max(4096, est.need // 10)
    assert est.total % 16 == 0 and est.total >= est.need + est.margin


# ------------------------------------------------------------------------------------------------
# flashing
# ------------------------------------------------------------------------------------------------
def _image(tmp_path) -> Path:
    d = tmp_path / "build"
    d.mkdir()
    (d / "trec_app.elf").write_bytes(b"\x7fELF fake")
    (d / "trec_app.bin").write_bytes(b"\x00\x00\x05\x20firmware")
    return d / "trec_app.elf"


def _fake_tool(bindir: Path, name: str, rc: int = 0) -> Path:
    bindir.mkdir(parents=True, exist_ok=True)
    log = bindir / f"{name}.args"
    tool = bindir / name
    tool.write_text(f"#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > '{log}'\necho {name} says hi\nexit {rc}\n")
    tool.chmod(0o755)
    return log


def test_flash_without_tools_names_the_packages(tmp_path, monkeypatch):
    elf = _image(tmp_path)
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(dp.DeployError) as ei:
        dp.flash(elf, "nucleo_f746zg", media_roots=[tmp_path / "media"], log=lambda s: None)
    msg = str(ei.value)
    assert ei.value.exit_code == 1
    for what in ("st-flash", "openocd", "pyocd", "stlink-tools", "apt-get install openocd", "pip install pyocd",
                 "NODE_F746ZG"):
        assert what in msg, what
    with pytest.raises(dp.DeployError, match="DIS_F469NI"):
        dp.flash(elf, "disco_f469ni", media_roots=[tmp_path / "media"], log=lambda s: None)


def test_flash_cli_without_tools(tmp_path, monkeypatch, capsys):
    """deploy --flash end to end is in the TFLM tier (it builds); here the message of flash() when
    reached from the command: the build step is faked."""
    elf = _image(tmp_path)
    monkeypatch.setattr(dp, "deploy", lambda *a, **k: dp.DeployResult(tmp_path, "nucleo_f746zg", "m", [], [], 1,
                                                                        None, "given", ""))
    monkeypatch.setattr(dp, "build_project", lambda out: (elf, None))
    monkeypatch.setattr(dp, "check_build_requirements", lambda: None)  # the build is faked
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.setenv("TREC_TFLM_MEDIA_ROOTS", str(tmp_path / "nomedia"))
    rc = main(["deploy", str(tmp_path / "x.tflite"), "--board", "nucleo_f746zg", "-o", str(tmp_path / "o"),
               "--flash"])
    err = capsys.readouterr().err
    assert rc == 1 and "cannot flash nucleo_f746zg" in err and "stlink-tools" in err


def test_flash_tools_in_order_with_board_arguments(tmp_path, monkeypatch):
    elf = _image(tmp_path)
    binary = elf.with_suffix(".bin")
    prefix = tmp_path / "prefix"
    bindir = prefix / "bin"
    logs = {t: _fake_tool(bindir, t) for t in ("st-flash", "openocd", "pyocd")}
    (prefix / "share" / "openocd" / "scripts" / "board").mkdir(parents=True)
    (prefix / "share" / "openocd" / "scripts" / "board" / "st_nucleo_f7.cfg").write_text("# fake\n")
    monkeypatch.setenv("PATH", str(bindir))
    quiet = dict(media_roots=[], log=lambda s: None)

    assert dp.flash(elf, "nucleo_f746zg", **quiet) == "st-flash"
    assert logs["st-flash"].read_text().split("\n")[:4] == ["--reset", "write", str(binary), "0x08000000"]

    (bindir / "st-flash").unlink()
    assert dp.flash(elf, "nucleo_f746zg", **quiet) == "openocd"
    args = logs["openocd"].read_text().splitlines()
    assert args == ["-f", "board/st_nucleo_f7.cfg", "-c", f"program {elf} verify reset exit"]
    # the DISCO's board script is not among these scripts: interface + target instead
    assert dp.flash(elf, "disco_f469ni", **quiet) == "openocd"
    args = logs["openocd"].read_text().splitlines()
    assert args == ["-f", "interface/stlink.cfg", "-f", "target/stm32f4x.cfg", "-c",
                    f"program {elf} verify reset exit"]

    (bindir / "openocd").unlink()
    assert dp.flash(elf, "disco_f469ni", **quiet) == "pyocd"
    assert logs["pyocd"].read_text().splitlines() == ["flash", "-t", "stm32f469nihx", str(elf)]
    assert dp.flash(elf, "nucleo_f746zg", **quiet) == "pyocd"
    assert logs["pyocd"].read_text().splitlines() == ["flash", "-t", "stm32f746zgtx", str(elf)]


def test_flash_tool_failure_is_reported(tmp_path, monkeypatch):
    elf = _image(tmp_path)
    _fake_tool(tmp_path / "bin", "st-flash", rc=3)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(dp.DeployError) as ei:
        dp.flash(elf, "nucleo_f746zg", media_roots=[], log=lambda s: None)
    assert ei.value.exit_code == 1
    assert "st-flash failed (exit 3)" in str(ei.value) and "st-flash says hi" in str(ei.value)


@pytest.mark.parametrize("board,label", [("nucleo_f746zg", "NODE_F746ZG"), ("disco_f469ni", "DIS_F469NI")])
def test_flash_copies_to_the_stlink_drive(tmp_path, monkeypatch, board, label):
    elf = _image(tmp_path)
    drive = tmp_path / "run_media" / "alice" / label
    drive.mkdir(parents=True)
    (tmp_path / "run_media" / "alice" / "OTHER").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.setenv("TREC_TFLM_MEDIA_ROOTS", os.pathsep.join([str(tmp_path / "nomedia"),
                                                                   str(tmp_path / "run_media")]))
    used = dp.flash(elf, board, log=lambda s: None)
    assert used == f"copy to {drive}"
    assert (drive / "trec_app.bin").read_bytes() == elf.with_suffix(".bin").read_bytes()


# ------------------------------------------------------------------------------------------------
# memory budget
# ------------------------------------------------------------------------------------------------
# arm-none-eabi-size -A of a trec-tflm app for nucleo_f746zg (recorded), and the parts of its map
SIZE_A = """\
build/nucleo_f746zg/trec_app.elf  :
section             size        addr
.vectors             904   134217728
.text             226040   134218752
.ARM.exidx             8   134444792
.preinit_array         0   134444800
.init_array           12   134444800
.fini_array            0   134444812
.data                472   536870912
.bss               86592   536871384
.ccm_bss               0   536957976
.heap                  0   536957976
.ARM.attributes       50           0
.comment              38           0
.debug_info       900231           0
.debug_line       301201           0
Total            1515586
"""
MAP = """\
Memory Configuration

Name             Origin             Length             Attributes
FLASH            0x08000000         0x00100000         xr
RAM              0x20000000         0x00050000         xrw
ITCMRAM          0x00000000         0x00004000         xrw
*default*        0x00000000         0xffffffff

Linker script and memory map

                0x00004000                        __stack_size = 0x4000
                0x00000000                        __heap_min_size = 0x0
"""


def test_budget_from_size_and_map():
    sections = dp.parse_size_sysv(SIZE_A)
    assert ".debug_info" not in sections and ".comment" not in sections
    assert sections[".text"] == (226040, 134218752)
    mp = dp.parse_map(MAP)
    assert mp["regions"]["FLASH"] == (0x08000000, 1024 * 1024) and mp["regions"]["RAM"] == (0x20000000, 320 * 1024)
    assert mp["stack_size"] == 16384 and mp["heap_min_size"] == 0
    regions = {k: v for k, v in mp["regions"].items() if k in ("FLASH", "RAM")}
    b = dp.memory_budget(sections, regions, board="nucleo_f746zg", stack_size=mp["stack_size"], arena_size=76064)
    flash, ram = b.region("FLASH"), b.region("RAM")
    assert flash.used == 904 + 226040 + 8 + 12 + 472 and flash.size == 1048576
    assert ram.used == 472 + 86592 + 16384 and ram.size == 327680
    assert b.fits and ram.free == 327680 - ram.used
    text = b.summary()
    assert "flash" in text and f"{flash.used:,} of  1,048,576 B" in text and f"{ram.used:,} of    327,680 B" in text
    assert "tensor arena of 76,064 B" in text


def test_budget_over_the_limit():
    sections = dp.parse_size_sysv(SIZE_A.replace("86592", "330000"))
    regions = dp.board_memory("nucleo_f746zg")
    b = dp.memory_budget(sections, regions, board="nucleo_f746zg", stack_size=16384)
    assert not b.fits and b.region("FLASH").fits
    over = 472 + 330000 + 16384 - 327680
    assert f"RAM needs {472 + 330000 + 16384:,} of 327,680 bytes: over by {over:,}" == b.failure()
    assert f"OVER BY {over:,} BYTES" in b.summary()


def test_link_overflow_messages():
    text = ("/usr/bin/arm-none-eabi-ld: build/trec_app.elf section `.bss' will not fit in region `RAM'\n"
            "/usr/bin/arm-none-eabi-ld: region `RAM' overflowed by 93424 bytes\n"
            "/usr/bin/arm-none-eabi-ld: region `FLASH' overflowed by 12 bytes\ncollect2: error: ld returned 1\n")
    assert dp.parse_link_overflow(text) == [("RAM", 93424), ("FLASH", 12)]
    assert dp.parse_link_overflow("ld: RAM overflow: .data + .bss + HEAP_MIN_SIZE + STACK_SIZE do not fit "
                                  "the board's RAM") == [("RAM", -1)]
    assert dp.parse_link_overflow("all fine") == []


def test_board_memory_from_linker_scripts():
    mib, kib = 1024 * 1024, 1024
    assert dp.board_memory("nucleo_f746zg") == {"FLASH": (0x08000000, mib), "RAM": (0x20000000, 320 * kib)}
    assert dp.board_memory("disco_f469ni") == {"FLASH": (0x08000000, 2 * mib), "RAM": (0x20000000, 320 * kib),
                                               "CCMRAM": (0x10000000, 64 * kib)}
    assert dp.board_memory("qemu_m7") == {"FLASH": (0, mib), "RAM": (0x20000000, 320 * kib)}
    assert dp.board_memory("qemu_m4")["CCMRAM"][1] == 64 * kib
    with pytest.raises(dp.DeployError, match="unknown board"):
        dp.board_memory("esp32")


@pytest.mark.toolchain
def test_build_without_tflm_says_what_to_set(tiny_model, no_tflm, tmp_path):
    path, _ = tiny_model
    dp.deploy(path, "nucleo_f746zg", tmp_path / "b")
    with pytest.raises(dp.DeployError, match="--build needs the TFLM tree: set TFLM_ROOT to a tflite-micro "
                                             "checkout at 88f8587b") as ei:
        dp.build_project(tmp_path / "b")
    assert ei.value.exit_code == 2


# ------------------------------------------------------------------------------------------------
# bench --model / --compare usage (no QEMU run here)
# ------------------------------------------------------------------------------------------------
def test_bench_model_usage_errors(tmp_path, capsys):
    assert main(["bench", "--board", "qemu_m7", "--compare", "dense.tflite"]) == 2
    assert "--compare DENSE.tflite needs --model" in capsys.readouterr().err
    assert main(["bench", "--board", "nucleo_f746zg", "--model", "m.tflite"]) == 2
    assert "--model needs --board qemu_m7 or qemu_m4" in capsys.readouterr().err
    assert main(["bench", "--board", "qemu_m7", "--model", "m.tflite", "--port", "socket://x:1"]) == 2
    assert "drop --port/--elf" in capsys.readouterr().err
    assert main(["bench", "--board", "qemu_m7", "--model", str(tmp_path / "m.tflite")]) == 2
    assert "m.tflite: no such file" in capsys.readouterr().err


def test_build_without_tflm_writes_nothing(tiny_model, no_tflm, tmp_path, capsys):
    path, _ = tiny_model
    out = tmp_path / "fw"
    assert main(["deploy", str(path), "--board", "nucleo_f746zg", "-o", str(out), "--build"]) == 2
    err = capsys.readouterr().err
    assert "--build needs" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".fw")] == []


def test_json_path_checked_before_the_project_is_written(tiny_model, tmp_path, capsys):
    path, _ = tiny_model
    out = tmp_path / "fw"
    (tmp_path / "adir").mkdir()
    assert main(["deploy", str(path), "--board", "nucleo_f746zg", "-o", str(out), "--json",
                 str(tmp_path / "adir")]) == 2
    assert "--json" in capsys.readouterr().err and not out.exists()
