"""trec_tflm.host.interpreter: the host TFLM runtime (tflite-micro wheel + our op library).

Runs without TFLM_ROOT: models without TREC_CONV_2D, and every error path that does not need the
op library (missing / wrong TFLM tree, unknown custom operators, arena too small). With TFLM_ROOT:
the op library's exported and imported symbols, TREC models, and TFLM's Prepare messages reaching
the Python error.
"""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest
from helpers.tflm_models import convert_int8, golden_trec, one_conv_model, quantize, to_trec, trec_ops

from trec_tflm.host import interpreter as runtime
from trec_tflm.host import tflm_build

tflm = pytest.importorskip("tflite_micro")


@pytest.fixture(scope="module")
def dense_model():
    rep = np.random.default_rng(0).uniform(0, 1, (16, 10, 9, 2)).astype(np.float32)
    return convert_int8(one_conv_model(10, 9, 2, 6, 3, activation="relu"), rep)


@pytest.fixture
def no_tflm(monkeypatch):
    """A process state with no op library loaded and no TFLM tree configured."""
    monkeypatch.delenv("TFLM_ROOT", raising=False)
    monkeypatch.delenv("TREC_TFLM_OPS_LIB", raising=False)
    tflm_build.ops_library_path.cache_clear()
    saved = dict(tflm_build._loaded)
    tflm_build._loaded.clear()
    yield
    tflm_build._loaded.update(saved)
    tflm_build.ops_library_path.cache_clear()


def test_dense_model_runs_without_a_tflm_tree(dense_model, no_tflm):
    rt = runtime.Runtime(dense_model)
    assert not rt.registered_trec and rt.operators == ["CONV_2D"]
    x = np.random.default_rng(1).integers(-128, 128, (3, 10, 9, 2), dtype=np.int8)
    got = rt.predict(x)
    ref = tflm.runtime.Interpreter.from_bytes(dense_model)
    for i in range(3):
        ref.set_input(x[i:i + 1], 0)
        ref.invoke()
        np.testing.assert_array_equal(got[i], ref.get_output(0)[0])
    assert got.shape == (3, 10, 9, 6)


def test_quantization_details_come_from_the_model(dense_model):
    from tensorflow.lite.python import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(dense_model, 0))
    sub = m.subgraphs[0]
    t_in, t_out = sub.tensors[sub.inputs[0]], sub.tensors[sub.outputs[0]]
    rt = runtime.Runtime(dense_model)
    assert rt.input_shape == tuple(t_in.shape) and rt.output_shape == tuple(t_out.shape)
    assert rt.input_scale == pytest.approx(t_in.quantization.scale[0], rel=1e-7)
    assert rt.input_zero_point == t_in.quantization.zeroPoint[0]
    assert rt.output_scale == pytest.approx(t_out.quantization.scale[0], rel=1e-7)
    assert rt.output_zero_point == t_out.quantization.zeroPoint[0]
    assert rt.input_dtype == np.int8 and rt.output_dtype == np.int8
    x = np.linspace(0, 1, 180).reshape(1, 10, 9, 2)
    np.testing.assert_array_equal(rt.quantize_input(x), quantize(x, rt.input_scale, rt.input_zero_point))


def test_trec_model_without_tflm_root_says_what_to_set(dense_model, no_tflm):
    with pytest.raises(tflm_build.TflmTreeMissing) as err:
        runtime.Runtime(to_trec(dense_model, length=6, bits=4))
    msg = str(err.value)
    assert "TREC_CONV_2D" in msg and "set TFLM_ROOT to a tflite-micro checkout at 88f8587b" in msg
    assert "README 'TFLM tree'" in msg


def test_tflm_root_that_is_not_a_tree_is_refused(dense_model, no_tflm, tmp_path, monkeypatch):
    monkeypatch.setenv("TFLM_ROOT", str(tmp_path))
    with pytest.raises(tflm_build.TflmTreeMissing, match="is not a tflite-micro tree"):
        runtime.Runtime(to_trec(dense_model, length=6, bits=4))


def test_tflm_tree_at_another_commit_is_refused(no_tflm, tmp_path, monkeypatch):
    tree = tmp_path / "tflite-micro"
    (tree / "tensorflow/lite/micro").mkdir(parents=True)
    (tree / "tensorflow/lite/micro/micro_interpreter.h").write_text("// fake\n")
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", str(tree), *cmd], check=True, env=env, capture_output=True)
    monkeypatch.setenv("TFLM_ROOT", str(tree))
    with pytest.raises(tflm_build.TflmTreeMissing, match=f"built from {tflm_build.TFLM_COMMIT}"):
        tflm_build.check_tflm_tree()
    monkeypatch.setenv("TREC_TFLM_SKIP_VERSION_CHECK", "1")
    assert tflm_build.check_tflm_tree() == tree


def _rename_custom(buf: bytes, old: bytes, new: bytes) -> bytes:
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    for oc in m.operatorCodes:
        if oc.customCode == old:
            oc.customCode = new
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_unknown_custom_operator_is_named(dense_model):
    model = _rename_custom(to_trec(dense_model, length=6, bits=4), b"TREC_CONV_2D", b"MY_FANCY_OP")
    with pytest.raises(runtime.UnsupportedOpError, match="MY_FANCY_OP") as err:
        runtime.Runtime(model)
    assert err.value.ops == ["MY_FANCY_OP"]


def test_trec_model_with_registration_switched_off_is_refused(dense_model):
    with pytest.raises(runtime.UnsupportedOpError, match="TREC_CONV_2D"):
        runtime.Runtime(to_trec(dense_model, length=6, bits=4), register_trec=False)


def test_arena_too_small_says_how_much_is_needed(dense_model):
    need = runtime.Runtime(dense_model).arena_used_bytes()
    assert 0 < need < 64 * 1024
    with pytest.raises(runtime.ArenaTooSmallError) as err:
        runtime.Runtime(dense_model, arena_size=need // 3)
    assert err.value.needed == need and err.value.given == need // 3
    assert f"it needs {need} bytes" in str(err.value)
    # exactly the reported need works (the wheel's arena is not 16-byte aligned: +16 allowed)
    runtime.Runtime(dense_model, arena_size=need + 16).invoke(np.zeros((1, 10, 9, 2), np.int8))


def test_wrong_input_type_and_shape_are_refused(dense_model):
    rt = runtime.Runtime(dense_model)
    with pytest.raises(TypeError, match="quantize"):
        rt.invoke(np.zeros((1, 10, 9, 2), np.float32))
    with pytest.raises(ValueError, match="takes"):
        rt.invoke(np.zeros((1, 10, 9, 3), np.int8))


def test_model_operators_reads_builtins_and_custom_codes(dense_model):
    assert runtime.model_operators(dense_model) == ["CONV_2D"]
    assert runtime.model_operators(to_trec(dense_model, length=6, bits=4)) == ["TREC_CONV_2D"]


# ------------------------------------------------------------------------------------ with TFLM --
@pytest.mark.tflm
def test_op_library_exports_only_the_registerer_and_imports_only_micro_symbols():
    """Everything TFLite shares with TensorFlow is linked in with hidden visibility: TensorFlow's
    libtensorflow_cc exports the same names globally, built with another TfLiteTensor layout."""
    path = tflm_build.ops_library_path()
    defined = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True,
                             check=True).stdout
    names = {ln.split()[-1] for ln in defined.splitlines() if len(ln.split()) >= 3}
    assert names - {"_edata", "_end", "__bss_start", "_init", "_fini"} == {"TrecRegisterer"}
    undefined = subprocess.run(["nm", "-DC", "--undefined-only", str(path)], capture_output=True, text=True,
                               check=True).stdout
    tflite = [ln.split(None, 1)[1] for ln in undefined.splitlines() if "tflite::" in ln or "TfLite" in ln]
    assert tflite, "expected TFLM symbols from the wheel"
    for sym in tflite:
        assert re.search(r"tflite::(micro::|MicroContext::)", sym), f"{sym} could be bound to TensorFlow's copy"


@pytest.mark.tflm
def test_trec_model_runs_and_reports_its_arena(dense_model):
    model = to_trec(dense_model, length=6, bits=4, seed=2)
    rt = runtime.Runtime(model)
    assert rt.registered_trec and "registered" in repr(rt)
    x = np.random.default_rng(3).integers(-128, 128, (1, 10, 9, 2), dtype=np.int8)
    (op,) = trec_ops(model)
    np.testing.assert_array_equal(rt.invoke(x), golden_trec(op, x))
    dense_need = runtime.Runtime(dense_model).arena_used_bytes()
    assert rt.arena_used_bytes() > dense_need, "the TREC op's scratch and options should cost arena"
    assert "Arena allocation total" in rt.allocations_report()


@pytest.mark.tflm
def test_prepare_errors_reach_python(dense_model):
    bad = to_trec(dense_model, length=6, bits=4, edit_options=lambda o: dict(o, version=7))
    # validate=False: reach TFLM's Prepare, as a device (which has no host validator) would
    with pytest.raises(tflm_build.TflmError, match="unknown TREC_CONV_2D version 7; this build supports 1") as err:
        runtime.Runtime(bad, validate=False)
    assert "failed to prepare" in err.value.log
    missing = to_trec(dense_model, length=6, bits=4,
                      edit_options=lambda o: {k: v for k, v in o.items() if k != "padding"})
    with pytest.raises(tflm_build.TflmError, match="custom option 'padding' is missing"):
        runtime.Runtime(missing, validate=False)
    # by default the host validator refuses the same models before TFLM sees them
    from trec_tflm.spec.validate import ModelValidationError

    with pytest.raises(ModelValidationError, match="unknown TREC_CONV_2D version 7"):
        runtime.Runtime(bad)


@pytest.mark.tflm
def test_arena_too_small_for_a_trec_model(dense_model):
    model = to_trec(dense_model, length=6, bits=4, seed=2)
    need = runtime.Runtime(model).arena_used_bytes()
    with pytest.raises(runtime.ArenaTooSmallError) as err:
        runtime.Runtime(model, arena_size=need - 200)
    assert err.value.needed == need
