"""Deployed models on all four boards and on QEMU, end to end (needs TFLM_ROOT; skips otherwise).

A small Fashion-MNIST TREC net (TREC 5x5 1->16, pool, TREC 3x3 16->16, pool, dense 10), trained for
one short epoch on real images, and its dense twin (the same weights as plain Conv2D), both
converted to int8 with trec_tflm.tflite.convert:

* ``trec_tflm.target.deploy`` + build for nucleo_f746zg, disco_f469ni, qemu_m7 and qemu_m4: every image
  links, and its flash and RAM use (arm-none-eabi-size + map) are within the board's memory;
  the arena measured on QEMU is not above the no-TFLM estimate;
* an arena that cannot fit makes ``trec-tflm deploy --build`` exit 1 naming the RAM region and by
  how much it overflowed;
* the resolver table deploy uses without a TFLM tree equals TFLM's MicroMutableOpResolver header;
* ``trec-tflm bench --board qemu_m7 --model trec.tflite --compare dense.tflite`` runs both on QEMU
  over the serial protocol on 20 real test images: the int8 outputs equal the host TFLM's
  (trec_tflm.host.interpreter) bit for bit, and the command prints accuracy, instructions and the ratio.

The TFLM libraries are built once per core (build/tflm, shared with the other TFLM tests); the
projects go to a temporary TREC_TFLM_DEPLOY_ROOT.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from helpers.tflm_models import trained_trec_pair

from trec_tflm.host import interpreter as runtime
from trec_tflm.target import deploy as dp
from trec_tflm.target import resolver

pytestmark = [pytest.mark.tflm, pytest.mark.qemu, pytest.mark.slow]

N_IMAGES = 20


@pytest.fixture(scope="module")
def deploy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy_root")
    saved = os.environ.get("TREC_TFLM_DEPLOY_ROOT")
    os.environ["TREC_TFLM_DEPLOY_ROOT"] = str(root)
    yield root
    if saved is None:
        os.environ.pop("TREC_TFLM_DEPLOY_ROOT", None)
    else:
        os.environ["TREC_TFLM_DEPLOY_ROOT"] = saved


@pytest.fixture(scope="module")
def models(deploy_root, tmp_path_factory):
    """(trec.tflite, dense.tflite, dataset): a briefly trained TREC net and its dense twin."""
    pytest.importorskip("tensorflow")
    from trec_tflm.data import DatasetError, load_fashion_mnist

    try:
        ds = load_fashion_mnist()
    except DatasetError as exc:
        pytest.skip(str(exc))
    trec, dense = trained_trec_pair(ds, tmp_path_factory.mktemp("models"), conv1_filters=16, conv2_length=16,
                                    conv2_bits=8, train_images=3000, name="small_trec")
    return trec, dense, ds


@pytest.fixture(scope="module")
def qemu_builds(models):
    """The TREC model for both QEMU boards and the dense twin for qemu_m7, deployed (arena measured
    on the core) and built where ``trec-tflm bench --model`` will find them."""
    from trec_tflm.bench import compare

    trec, dense, _ = models
    out = {}
    for label, path, board in (("trec", trec, "qemu_m7"), ("dense", dense, "qemu_m7"), ("trec", trec, "qemu_m4")):
        out[(label, board)] = compare.firmware_for(path.read_bytes(), board, name=label)
    return out


@pytest.fixture(scope="module")
def stm32_builds(models, qemu_builds, tmp_path_factory):
    """The TREC model for the STM32 boards, with the arena measured on their QEMU twins."""
    trec, _, _ = models
    root = tmp_path_factory.mktemp("stm32")
    out = {}
    for board, twin in (("nucleo_f746zg", "qemu_m7"), ("disco_f469ni", "qemu_m4")):
        arena = qemu_builds[("trec", twin)].deploy["arena_size"]
        res = dp.deploy(trec, board, root / board, arena_size=arena)
        elf, budget = dp.build_project(res.out_dir)
        out[board] = (res, elf, budget)
    return out


LIMITS = {"nucleo_f746zg": (1 << 20, 320 << 10), "disco_f469ni": (2 << 20, 320 << 10),
          "qemu_m7": (1 << 20, 320 << 10), "qemu_m4": (2 << 20, 320 << 10)}


def _check_budget(board, budget, elf, arena):
    flash, ram = budget.region("FLASH"), budget.region("RAM")
    print(f"\n{board}: {elf}\n{budget.summary()}")
    assert (flash.size, ram.size) == LIMITS[board]
    assert budget.fits and 0 < flash.used <= flash.size and 0 < ram.used <= ram.size
    assert ram.parts[".bss"] >= arena            # the arena is a static array in .bss
    assert ram.parts["stack"] == dp.DEFAULT_STACK
    assert flash.parts["code+rodata"] > 0


@pytest.mark.parametrize("board", ["qemu_m7", "qemu_m4"])
def test_qemu_builds_fit(qemu_builds, board):
    fw = qemu_builds[("trec", board)]
    assert fw.deploy["arena_source"] == board and fw.deploy["arena_used"] > 0
    assert fw.deploy["arena_size"] >= fw.deploy["arena_used"]
    assert "AddTrecConv2D" in (fw.project / "trec_app_ops.cc").read_text()
    _check_budget(board, fw.budget, fw.elf, fw.deploy["arena_size"])


@pytest.mark.parametrize("board", ["nucleo_f746zg", "disco_f469ni"])
def test_stm32_builds_fit(stm32_builds, board):
    res, elf, budget = stm32_builds[board]
    assert elf.is_file() and elf.with_suffix(".bin").is_file() and elf.with_suffix(".map").is_file()
    _check_budget(board, budget, elf, res.arena_size)
    # linked for the real chip: the vector table at the start of its flash
    assert budget.regions[0].region == "FLASH"
    assert dp.board_memory(board)["FLASH"][0] == 0x08000000


def test_estimate_is_not_below_the_measured_arena(models, qemu_builds):
    trec, dense, _ = models
    for label, path in (("trec", trec), ("dense", dense)):
        used = qemu_builds[(label, "qemu_m7")].deploy["arena_used"]
        est = dp.estimate_arena(path.read_bytes())
        print(f"\n{label}: arena measured on qemu_m7 {used:,} B; no-TFLM estimate {est.need:,} B "
              f"(+ margin {est.margin:,})")
        assert est.need >= used
        assert est.need <= 1.5 * used + 8192, "the estimate wastes too much RAM"


def test_resolver_table_matches_tflm():
    builtin, custom = resolver.resolver_methods()
    assert set(builtin) == set(dp.RESOLVER_BUILTINS)
    assert {op: dp.resolver_method(op) for op in builtin} == builtin
    assert custom[dp.TREC_CUSTOM_CODE] == "tflite::AddTrecConv2D"


def test_bench_compare_end_to_end(models, qemu_builds, tmp_path, capsys):
    from trec_tflm.cli import main

    trec, dense, ds = models
    js = tmp_path / "cmp.json"
    rc = main(["bench", "--board", "qemu_m7", "--model", str(trec), "--compare", str(dense),
               "--limit", str(N_IMAGES), "--json", str(js)])
    cap = capsys.readouterr()
    print(cap.out)
    assert rc == 0, cap.err
    assert "deploying" not in cap.err          # the projects built above were reused
    doc = json.loads(js.read_text())
    assert doc["n"] == N_IMAGES and doc["board"] == "qemu_m7"
    x, y = ds.x_test[:N_IMAGES], ds.y_test[:N_IMAGES]
    for label, path in (("trec", trec), ("dense", dense)):
        run = doc[label]
        bench = run["bench"]
        assert bench["unit"] == "instructions" and bench["outputs_kind"] == "q"
        # the host's TFLM on the same images, quantized the same way
        rt = runtime.Runtime(path.read_bytes())
        host = rt.predict(rt.quantize_input(x)).reshape(N_IMAGES, -1)
        dev = np.asarray(bench["outputs"], np.int8)
        np.testing.assert_array_equal(dev, host, err_msg=f"{label}: QEMU outputs differ from the host TFLM")
        assert bench["predictions"] == np.argmax(host, 1).tolist()
        assert run["accuracy"] == pytest.approx(float(np.mean(np.argmax(host, 1) == y)))
        assert run["host"]["outputs_equal"] == N_IMAGES
        # instruction counts are exact and the same for every image of a dense net
        ticks = np.asarray(bench["ticks"])
        assert np.all(ticks > 10_000) and run["instructions"] == pytest.approx(ticks.mean())
        if label == "dense":
            assert ticks.max() - ticks.min() < 0.01 * ticks.mean()
        ops = [o["name"].split(" #")[0] for o in bench["ops"]]
        assert ops.count("TREC_CONV_2D" if label == "trec" else "CONV_2D") == 2
    assert doc["speedup"] == pytest.approx(doc["dense"]["instructions"] / doc["trec"]["instructions"])
    assert doc["instruction_ratio"] == pytest.approx(1 / doc["speedup"])
    assert re.search(r"speedup \(dense / TREC instructions\): \d+\.\d{3}x", cap.out)
    assert "accuracy" in cap.out and "per operator" in cap.out and "TREC_CONV_2D" in cap.out


def test_bench_model_alone(models, qemu_builds, capsys):
    """``bench --model`` without --compare: the cached project, then the usual bench report."""
    from trec_tflm.cli import main

    trec, _, _ = models
    rc = main(["bench", "--board", "qemu_m7", "--model", str(trec), "--limit", "3"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "deploying" not in cap.err
    assert "trec-tflm/qemu_m7/trec" in cap.out and "instructions" in cap.out and "accuracy" in cap.out
    assert re.search(r"TREC_CONV_2D #0\s+[\d,]+", cap.out)


def test_deploy_build_reports_overflow(stm32_builds, capsys):
    """Last: re-deploys the NUCLEO project with an arena that cannot fit (320 KB of RAM)."""
    from trec_tflm.cli import main

    res, _, _ = stm32_builds["nucleo_f746zg"]
    model = json.loads((res.out_dir / "project.json").read_text())["source_model"]
    rc = main(["deploy", model, "--board", "nucleo_f746zg", "-o", str(res.out_dir), "--arena-size", "400K",
               "--build"])
    err = capsys.readouterr().err
    assert rc == 1, err
    m = re.search(r"does not fit nucleo_f746zg: region RAM overflowed by ([\d,]+) bytes \(its sections; the "
                  r"16,384-byte main stack comes on top\)", err)
    assert m, err
    over = int(m.group(1).replace(",", ""))
    assert over > 400 * 1024 - 320 * 1024
    assert not (res.out_dir / "build" / "nucleo_f746zg" / "trec_app.elf").exists()
