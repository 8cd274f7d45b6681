"""The optional per-op ``scratch_budget`` option of TREC_CONV_2D (docs/OP_SPEC.md "Options",
"Versioning"): the codec, models without it, the converter, the arena estimate, inspect, and the
TFLM op (same outputs, smaller arena, a budget below the minimum refused at Prepare)."""

from __future__ import annotations

import numpy as np
import pytest
from flatbuffers import flexbuffers

from trec_tflm.spec import model as tm
from trec_tflm.spec.op import TREC_OPTION_KEYS

#: docs/OP_SPEC.md's required keys, written out by hand (not read from the code under test)
V1_KEYS = {"version", "sub_vector_length", "hash_bits", "hash_center", "stride_h", "stride_w", "dilation_h",
           "dilation_w", "padding", "activation"}
GOOD = dict(version=1, sub_vector_length=16, hash_bits=8, hash_center="mean", stride_h=1, stride_w=1,
            dilation_h=1, dilation_w=1, padding="SAME", activation="RELU")


# ------------------------------------------------------------------------------------------------
# the codec
# ------------------------------------------------------------------------------------------------
def test_required_keys_unchanged_by_the_optional_one():
    assert set(TREC_OPTION_KEYS) == V1_KEYS


@pytest.mark.parametrize("budget", [1, 6227, 2**31 - 1])
def test_budget_round_trips(budget):
    raw = bytes(flexbuffers.Dumps(dict(GOOD, scratch_budget=budget)))  # written by flexbuffers itself
    assert tm.decode_trec_options(raw) == dict(GOOD, scratch_budget=budget)
    assert flexbuffers.Loads(tm.encode_trec_options(dict(GOOD, scratch_budget=budget)))["scratch_budget"] == budget


@pytest.mark.parametrize("bad", [0, -5, 2**31, 1.5, "4096", True, [4096]])
def test_bad_budgets_are_refused_naming_the_key(bad):
    raw = bytes(flexbuffers.Dumps(dict(GOOD, scratch_budget=bad)))
    with pytest.raises(tm.TfliteModelError, match="custom option 'scratch_budget'"):
        tm.decode_trec_options(raw)
    with pytest.raises(tm.TfliteModelError, match="'scratch_budget'"):
        tm.encode_trec_options(dict(GOOD, scratch_budget=bad))


def test_version_1_map_without_the_key_reads_as_before():
    raw = bytes(flexbuffers.Dumps(GOOD))
    opts = tm.decode_trec_options(raw)
    assert opts == GOOD and "scratch_budget" not in opts
    # keys a version does not define are ignored (docs/OP_SPEC.md "Versioning"), as before
    assert tm.decode_trec_options(bytes(flexbuffers.Dumps(dict(GOOD, future_hint=3)))) == GOOD


# ------------------------------------------------------------------------------------------------
# converter, arena estimate, inspect (a converted one-layer TREC model)
# ------------------------------------------------------------------------------------------------
IN_SHAPE, COUT, L, H = (14, 14, 16), 32, 16, 8


@pytest.fixture(scope="module")
def models():
    """(plain, budgeted at the minimum, budgeted in between, fast bytes, least bytes): the same
    Keras model converted three times."""
    pytest.importorskip("tensorflow")
    import keras

    from trec_tflm.host import kernels as native
    from trec_tflm.tflite.convert import ConvertError, convert
    from trec_tflm.training.layers import TRECConv2D

    keras.utils.set_random_seed(5)
    inp = keras.Input(IN_SHAPE)
    y = TRECConv2D(COUT, 3, padding="same", activation="relu", sub_vector_length=L, hash_bits=H, name="tconv")(inp)
    model = keras.Model(inp, keras.layers.Conv2D(4, 1, name="head")(y), name="budget")
    calib = np.random.default_rng(0).uniform(0, 1, (16, *IN_SHAPE)).astype(np.float32)
    fast, least = native.kernels().trec_buffer_sizes((1, *IN_SHAPE), (COUT, 3, 3, IN_SHAPE[2]),
                                                     sub_vector_length=L, hash_bits=H)
    assert least < fast, "this layer must have room between the minimum and the fast plan"
    plain = convert(model, calib, calibration_samples=16)
    at_least = convert(model, calib, calibration_samples=16, scratch_budget={"tconv": least})
    between = convert(model, calib, calibration_samples=16, scratch_budget={"tconv": (least + fast) // 2})
    with pytest.raises(ConvertError, match="no TREC layer of that name; its TREC layers: 'tconv'"):
        convert(model, calib, calibration_samples=16, scratch_budget={"head": fast})  # a plain Conv2D
    return plain, at_least, between, fast, least


def _trec_options(buf):
    m = tm.load_model(buf)
    (op,) = [op for op in m.subgraphs[0].operators if tm.is_trec(m, op)]
    return flexbuffers.Loads(tm.custom_options_bytes(op))  # the raw map, not our decoder


def test_converter_writes_the_budget_only_when_given(models):
    plain, at_least, between, fast, least = models
    assert set(_trec_options(plain)) == V1_KEYS
    assert _trec_options(at_least) == dict(_trec_options(plain), scratch_budget=least)
    assert _trec_options(between)["scratch_budget"] == (least + fast) // 2


def test_converter_refuses_bad_budgets(models):
    from trec_tflm.tflite.rewrite import ConvertError, with_scratch_budgets

    plain, _, _, _, least = models
    with pytest.raises(ConvertError, match=rf"below the layer's minimum scratch of {least:,} bytes"):
        with_scratch_budgets(plain, {"tconv": least - 1})
    with pytest.raises(ConvertError, match="no TREC_CONV_2D layer of that name.*'tconv'"):
        with_scratch_budgets(plain, {"conv9": least})
    with pytest.raises(ConvertError, match="not a number of bytes"):
        with_scratch_budgets(plain, {"tconv": 0})
    # None removes the option again: the plain model's bytes come back
    assert with_scratch_budgets(with_scratch_budgets(plain, {"tconv": least}), {"tconv": None}) == plain


def test_convert_cli_parses_layer_equals_bytes():
    import argparse

    from trec_tflm.tflite.convert import register

    p = argparse.ArgumentParser()
    register(p)
    args = p.parse_args(["m.keras", "-o", "x.tflite", "--scratch-budget", "conv2=9000",
                         "--scratch-budget", "a=b=12"])
    assert dict(args.scratch_budget) == {"conv2": 9000, "a=b": 12}
    for bad in ("conv2", "conv2=", "=9000", "conv2=0", "conv2=9k"):
        with pytest.raises(SystemExit):
            p.parse_args(["m.keras", "-o", "x.tflite", "--scratch-budget", bad])


def test_arena_estimate_follows_the_budget(models):
    from trec_tflm.target.arena import ARENA_ALIGN, align, estimate_arena

    plain, at_least, between, fast, least = models
    e_plain, e_least, e_between = (estimate_arena(b) for b in (plain, at_least, between))
    # the TREC op's scratch is the largest of this model (the head's is 4*K = 128 bytes)
    assert e_plain.scratch == align(fast + 4, ARENA_ALIGN)
    assert e_least.scratch == align(least + 4, ARENA_ALIGN)
    assert e_between.scratch == align((least + fast) // 2 + 4, ARENA_ALIGN)
    assert e_least.activations < e_between.activations < e_plain.activations
    from trec_tflm.host import kernels as native
    from trec_tflm.tflite.rewrite import with_scratch_budgets

    # above the default size a budget buys faster plans, up to the most any plan uses
    most = native.kernels().trec_max_buffer_size((1, *IN_SHAPE), (COUT, 3, 3, IN_SHAPE[2]), sub_vector_length=L,
                                                 hash_bits=H)
    assert fast < 3 * fast < most
    assert estimate_arena(with_scratch_budgets(plain, {"tconv": 3 * fast})).scratch == align(3 * fast + 4, ARENA_ALIGN)
    assert estimate_arena(with_scratch_budgets(plain, {"tconv": 2 * most})).scratch == align(most + 4, ARENA_ALIGN)
    assert any("scratch_budget" in n for n in e_least.notes)


def test_inspect_prints_the_budget(models, capsys):
    from trec_tflm.tflite.describe import inspect_model, print_report

    plain, at_least, _, _, least = models
    for buf, want in ((plain, "scratch budget: none"), (at_least, f"scratch budget: {least:,} B")):
        report = inspect_model(buf, measure=False)
        assert report["trec_layers"][0]["scratch_budget"] == (None if buf is plain else least)
        print_report(report, tm.operators(tm.load_model(buf)))
        assert want in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# the TFLM op
# ------------------------------------------------------------------------------------------------
@pytest.mark.tflm
def test_tflm_op_same_outputs_smaller_arena(models):
    from trec_tflm.host import interpreter as runtime

    plain, at_least, between, fast, least = models
    rts = [runtime.Runtime(b) for b in (plain, at_least, between)]
    x = np.random.default_rng(7).integers(-128, 128, (4, 1, *IN_SHAPE), dtype=np.int8)
    want = [rts[0].invoke(xi) for xi in x]
    # the plain model agrees with the Python golden (an independent implementation): TREC, then the head
    from trec_tflm.spec import golden

    m = tm.load_model(plain)
    trec_op, head_op = m.subgraphs[0].operators
    p, q = tm.trec_op_params(m, trec_op), tm.conv_op_params(m, head_op)
    for xi, w in zip(x, want):
        y = golden.trec_conv2d_s8(xi, p["filter"], p["bias"], p["hash"], **p["kwargs"])
        np.testing.assert_array_equal(w, golden.conv2d_s8(y, q["filter"], q["bias"], **q["kwargs"]))
    for rt in rts[1:]:
        for xi, w in zip(x, want):
            np.testing.assert_array_equal(rt.invoke(xi), w)
    used = [rt.arena_used_bytes() for rt in rts]
    # TFLM's planner shares the scratch with the activations: the saving is at most fast - budget
    assert used[1] < used[2] < used[0], used
    assert used[0] - used[1] <= fast - least + 16
    # a budget above the default size requests it (faster plans, the same outputs), up to the most
    # any plan uses (trec_convolve_s8_get_max_buffer_size): the arena grows by the difference
    from trec_tflm.host import kernels as native
    from trec_tflm.tflite.rewrite import with_scratch_budgets

    most = native.kernels().trec_max_buffer_size((1, *IN_SHAPE), (COUT, 3, 3, IN_SHAPE[2]), sub_vector_length=L,
                                                 hash_bits=H)
    roomy, capped = (runtime.Runtime(with_scratch_budgets(plain, {"tconv": b})) for b in (3 * fast, 2 * most))
    for xi, w in zip(x, want):
        np.testing.assert_array_equal(roomy.invoke(xi), w)
        np.testing.assert_array_equal(capped.invoke(xi), w)
    assert 0 < roomy.arena_used_bytes() - used[0] <= 2 * fast + 16
    assert capped.arena_used_bytes() == runtime.Runtime(with_scratch_budgets(plain, {"tconv": most})).arena_used_bytes()
    assert capped.arena_used_bytes() - used[0] >= most - fast - 16


@pytest.mark.tflm
def test_tflm_op_refuses_a_budget_below_the_minimum(models):
    from trec_tflm.host import interpreter as runtime
    from trec_tflm.host import tflm_build

    plain, _, _, _, least = models
    m = tm.load_model(plain)
    (op,) = [op for op in m.subgraphs[0].operators if tm.is_trec(m, op)]
    opts = flexbuffers.Loads(tm.custom_options_bytes(op))
    # written past the converter's check, as a hand-made model would be; the host validator
    # cannot know the minimum (it depends on the kernel), so Prepare is the check
    op.customOptions = np.frombuffer(bytes(flexbuffers.Dumps(dict(opts, scratch_budget=least - 1))), np.uint8)
    bad = tm.save_model(m)
    with pytest.raises(tflm_build.TflmError,
                       match=rf"custom option 'scratch_budget' = {least - 1} bytes is below this layer's minimum "
                             rf"scratch of {least} bytes"):
        runtime.Runtime(bad)


@pytest.mark.tflm
@pytest.mark.qemu
@pytest.mark.slow
def test_budget_on_emulated_m7_same_outputs_smaller_arena(models, tmp_path):
    """The firmware app (32-bit, CMSIS-NN build) on qemu_m7: the budgeted model's outputs equal the
    host runtime's, and the arena the app measures on the board shrinks."""
    from trec_tflm.host import interpreter as runtime
    from trec_tflm.target import firmware

    plain, at_least, _, fast, least = models
    x = np.random.default_rng(9).integers(-128, 128, (3, 1, *IN_SHAPE), dtype=np.int8)
    host = np.stack([runtime.Runtime(plain).invoke(xi) for xi in x]).reshape(len(x), -1)
    arena = {}
    for name, buf in (("plain", plain), ("budget", at_least)):
        info = firmware.generate_project(buf, "qemu_m7", tmp_path / name, name=f"sb_{name}", selftest_inputs=x)
        res = firmware.run_selftest(info.out_dir, "qemu_m7")
        np.testing.assert_array_equal(res.outputs, host)
        arena[name] = res.arena_used
    assert arena["budget"] < arena["plain"], arena
    assert arena["plain"] - arena["budget"] <= fast - least + 16, arena
