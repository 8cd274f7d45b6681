"""The firmware app (boards/app/) built by trec_tflm.target.firmware, on emulated Cortex-M7 / M4.

* the generated project registers exactly the model's operators and sizes the arena from the
  app's own measurement on the board's QEMU twin;
* on qemu_m7, the app's outputs over the EEMBC serial protocol (trec_tflm.bench.board.run_bench, raw
  int8 results) equal the host runtime's bit for bit on real Fashion-MNIST images, with per-operator
  ticks from `ops%`;
* the self-test build gives the same outputs on qemu_m7 and qemu_m4, and the reuse statistics of
  both TREC_CONV_2D operators;
* the app links for nucleo_f746zg and disco_f469ni within their flash and RAM;
* an arena below the need is reported by the app.

The parsing helpers run everywhere; the rest needs TFLM_ROOT, the ARM toolchain and QEMU.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.tflm_models import convert_int8, quantize, small_fashion_model, to_trec

from trec_tflm.host import interpreter as runtime
from trec_tflm.target import firmware, qemu, sources

N_PROTOCOL = 12
N_SELFTEST = 6


# ------------------------------------------------------------------------------------- helpers --
def test_c_array_is_aligned_and_complete():
    text = sources.c_array(bytes(range(40)), "g_x")
    assert text.startswith("alignas(16) const unsigned char g_x[] = {")
    values = [int(v, 16) for v in text.split("{", 1)[1].split("}")[0].replace(",", " ").split()]
    assert values == list(range(40))


def test_parse_selftest_and_boot_line():
    out = ("trec-tflm app: model m1, 3 operators, arena 1200 of 2048 bytes\r\n"
           "selftest-begin-[2,4,3]\r\nselftest-out-[0,1,-2,3]\r\nselftest-out-[1,-128,127,0]\r\n"
           "selftest-op-[0,TREC_CONV_2D,12345]\r\nselftest-rc-[0,20,49,3,1]\r\nselftest-op-[1,SOFTMAX,77]\r\n"
           "selftest-arena-[1200,2048]\r\nselftest-ticks-[99999,instructions]\r\nselftest-done\r\n")
    res = firmware.parse_selftest(out)
    np.testing.assert_array_equal(res.outputs, [[1, -2, 3], [-128, 127, 0]])
    assert res.ops == [("TREC_CONV_2D", 12345), ("SOFTMAX", 77)]
    assert res.reuse == {0: (20, 49, 3, 1)} and (res.arena_used, res.arena_size) == (1200, 2048)
    assert (res.ticks, res.unit) == (99999, "instructions")
    assert firmware.parse_boot_line(out) == dict(model="m1", operators=3, arena_used=1200, arena_size=2048)
    with pytest.raises(firmware.FirmwareError, match="did not finish"):
        firmware.parse_selftest(out.replace("selftest-done", ""))
    with pytest.raises(firmware.FirmwareError, match="AllocateTensors failed"):
        firmware.parse_boot_line("trec-tflm app: error: AllocateTensors failed (arena 10 bytes)\r\n")


def test_board_cores_and_qemu_twins():
    assert {b: firmware.board_core(b) for b in firmware.QEMU_TWIN} == {
        "qemu_m7": "m7", "qemu_m4": "m4", "nucleo_f746zg": "m7", "disco_f469ni": "m4"}
    for board, twin in firmware.QEMU_TWIN.items():
        assert firmware.board_core(board) == firmware.board_core(twin)
    with pytest.raises(firmware.FirmwareError, match="unknown board"):
        firmware.board_core("arduino_uno")


# ------------------------------------------------------------------------------------ fixtures --
@pytest.fixture(scope="module")
def model_and_data(fashion):
    dense = convert_int8(small_fashion_model(), fashion.x_train[:64])
    trec = to_trec(dense, length=lambda k: 5 if k == 25 else 16, bits=6, center="mean", seed=11)
    rt = runtime.Runtime(trec)
    x = quantize(fashion.x_test[:N_PROTOCOL], rt.input_scale, rt.input_zero_point)
    return trec, x, rt.predict(x), fashion.y_test[:N_PROTOCOL]


@pytest.fixture(scope="module")
def m7_project(model_and_data, tmp_path_factory):
    trec, x, _, _ = model_and_data
    out = tmp_path_factory.mktemp("fw_m7")
    info = firmware.generate_project(trec, "qemu_m7", out, name="fm_trec", selftest_inputs=x[:N_SELFTEST])
    return info


# --------------------------------------------------------------------------------------- tests --
@pytest.mark.tflm
@pytest.mark.qemu
def test_project_registers_exactly_the_models_operators(m7_project):
    info = m7_project
    assert info.operators == ["TREC_CONV_2D", "MAX_POOL_2D", "TREC_CONV_2D", "MAX_POOL_2D", "RESHAPE",
                              "FULLY_CONNECTED"]
    assert info.op_kinds == ["TREC_CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"]
    ops_cc = (info.out_dir / "trec_app_ops.cc").read_text()
    assert "MicroMutableOpResolver<TREC_APP_OP_COUNT>" in ops_cc
    for call in ("tflite::AddTrecConv2D(resolver)", "resolver.AddMaxPool2D()", "resolver.AddReshape()",
                 "resolver.AddFullyConnected()"):
        assert ops_cc.count(call) == 1, call
    assert ops_cc.count("TF_LITE_ENSURE_STATUS") == 4
    cfg = (info.out_dir / "trec_app_config.h").read_text()
    assert "#define TREC_APP_OP_COUNT 4" in cfg and f"#define TREC_APP_ARENA_SIZE {info.arena_size}u" in cfg
    # arena = the app's own measurement on the M7 + a margin, 16-byte aligned
    assert info.arena_source == "qemu_m7" and info.arena_used is not None
    assert info.arena_used < info.arena_size <= info.arena_used + max(1024, info.arena_used // 50) + 15
    assert info.arena_size % 16 == 0


@pytest.mark.tflm
@pytest.mark.qemu
def test_protocol_outputs_equal_the_host_on_qemu_m7(model_and_data, m7_project):
    from trec_tflm.bench.board import run_bench

    _, x, host, labels = model_and_data
    elf = firmware.build(m7_project.out_dir)
    with qemu.start_qemu_serial(elf, "qemu_m7") as q:
        res = run_bench(q.url, list(x.reshape(len(x), -1)), labels, iterations=1, warmup=0,
                        expected_name="fm_trec")
    assert res.outputs_kind == "q"
    np.testing.assert_array_equal(res.outputs, host.reshape(len(x), -1))
    np.testing.assert_array_equal(res.predictions, host.reshape(len(x), -1).argmax(axis=1))
    assert res.board == "qemu_m7" and res.unit == "instructions"
    names = [op.name.split(" #")[0] for op in res.ops]
    assert names == m7_project.operators
    trec_share = sum(op.share for op in res.ops if op.name.startswith("TREC_CONV_2D"))
    assert trec_share > 0.5, "the TREC convolutions should dominate this model's instructions"
    assert all(op.ticks > 0 for op in res.ops)


@pytest.mark.tflm
@pytest.mark.qemu
@pytest.mark.parametrize("board", ["qemu_m7", "qemu_m4"])
def test_selftest_outputs_equal_the_host(model_and_data, m7_project, board, tmp_path):
    trec, x, host, _ = model_and_data
    if board == "qemu_m7":
        out, info = m7_project.out_dir, m7_project
    else:
        info = firmware.generate_project(trec, board, tmp_path / board, name="fm_trec",
                                         selftest_inputs=x[:N_SELFTEST])
        out = info.out_dir
    res = firmware.run_selftest(out, board)
    np.testing.assert_array_equal(res.outputs, host[:N_SELFTEST].reshape(N_SELFTEST, -1))
    assert [name for name, _ in res.ops] == info.operators
    assert res.arena_used == info.arena_used and res.arena_size == info.arena_size
    # reuse statistics of both TREC convolutions (ops 0 and 2) for the last image
    assert sorted(res.reuse) == [0, 2]
    clusters, rows, m, passes = res.reuse[0]
    assert rows == 28 * 28 and m == 5 and 0 < clusters < rows * m and passes >= 1
    clusters, rows, m, passes = res.reuse[2]
    assert rows == 14 * 14 and m == 9 and 0 < clusters < rows * m


@pytest.mark.tflm
@pytest.mark.qemu
@pytest.mark.parametrize("board", ["nucleo_f746zg", "disco_f469ni"])
def test_app_links_for_the_real_boards(model_and_data, board, tmp_path):
    trec, _, _, _ = model_and_data
    info = firmware.generate_project(trec, board, tmp_path / board, name="fm_trec")
    assert info.arena_source == firmware.QEMU_TWIN[board]
    elf = firmware.build(info.out_dir)
    sizes = firmware.image_sizes(elf)
    limits = {"nucleo_f746zg": (1024 * 1024, 320 * 1024), "disco_f469ni": (2048 * 1024, 320 * 1024)}[board]
    assert 0 < sizes["flash"] < limits[0]
    assert sizes["ram"] + 16384 <= limits[1]
    assert sizes["bss"] >= info.arena_size, "the arena lives in .bss"


@pytest.mark.tflm
@pytest.mark.qemu
def test_arena_below_the_need_is_reported(model_and_data, m7_project, tmp_path):
    trec, _, _, _ = model_and_data
    info = firmware.generate_project(trec, "qemu_m7", tmp_path / "small", name="fm_trec",
                                     arena_size=m7_project.arena_used - 2048)
    assert info.arena_source == "given"
    with pytest.raises(firmware.FirmwareError, match="AllocateTensors failed") as ei:
        firmware.measure_arena_use(info.out_dir, "qemu_m7")
    assert "TFLM said:" in str(ei.value) and "Requested" in str(ei.value)  # TFLM's own reason is shown
