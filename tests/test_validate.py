"""trec_tflm.spec.validate: the one model validator every reader runs before native code sees the bytes.

Each case takes a valid TREC model (a Keras conv converted to int8 and rewritten into
TREC_CONV_2D per docs/OP_SPEC.md), breaks one schema invariant or one OP_SPEC rule, and checks
that the validator refuses it naming that problem; the untouched models pass.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from test_tflm_models import convert_int8, one_conv_model, small_fashion_model, to_trec  # noqa: E402

from trec_tflm.spec import model as tm
from trec_tflm.spec.validate import ModelValidationError, validate_model


@pytest.fixture(scope="module")
def dense():
    """conv5x5 -> pool -> conv3x3 -> pool -> dense, int8 (batch 1)."""
    rng = np.random.default_rng(0)
    return convert_int8(small_fashion_model(), rng.random((8, 28, 28, 1), np.float32))


@pytest.fixture(scope="module")
def trec(dense):
    return to_trec(dense, length=8, bits=6)


@pytest.fixture(scope="module")
def strided():
    """One 3x3 stride-2 conv 3 -> 8 channels on 9x9 (VALID): output [1, 4, 4, 8]."""
    rng = np.random.default_rng(1)
    buf = convert_int8(one_conv_model(9, 9, 3, 8, 3, strides=2, padding="valid"), rng.random((8, 9, 9, 3), np.float32))
    return to_trec(buf, length=9, bits=4)


def _trec_ops(m):
    return [op for op in m.subgraphs[0].operators if tm.is_trec(m, op)]


def edited(buf: bytes, change) -> bytes:
    m = tm.load_model(buf)
    change(m)
    return tm.save_model(m)


def refused(buf: bytes, *needles: str) -> str:
    with pytest.raises(ModelValidationError) as err:
        validate_model(buf)
    msg = str(err.value)
    for n in needles:
        assert n in msg, msg
    return msg


def test_valid_models_pass(dense, trec, strided):
    for buf in (dense, trec, strided):
        m = validate_model(buf)
        assert len(m.subgraphs[0].operators) >= 1
    assert len(_trec_ops(validate_model(trec))) == 2


def test_validation_error_is_a_value_error():
    # the CLI maps ValueError to exit 2 ("bad input")
    assert issubclass(ModelValidationError, ValueError)


# ------------------------------------------------------------------------------------------------
# flatbuffer structure (raw bytes)
# ------------------------------------------------------------------------------------------------
def test_not_tflite_and_truncated(trec):
    refused(b"hello world, not a model", "TFL3")
    refused(trec[: len(trec) // 2], "flatbuffer")
    refused(trec[:12], "flatbuffer")


def test_root_offset_out_of_range(trec):
    refused(struct.pack("<I", len(trec) + 100) + trec[4:], "root table offset")


def test_vtable_offset_out_of_range(trec):
    root = struct.unpack_from("<I", trec, 0)[0]
    # the root table's soffset to its vtable, pointed far before the start of the buffer
    bad = bytearray(trec)
    struct.pack_into("<i", bad, root, root + 1_000_000)
    refused(bytes(bad), "not a valid flatbuffer")


# ------------------------------------------------------------------------------------------------
# schema invariants
# ------------------------------------------------------------------------------------------------
def test_operator_tensor_index_out_of_range(trec):
    def change(m):
        op = m.subgraphs[0].operators[0]
        op.inputs = [len(m.subgraphs[0].tensors) + 5] + list(op.inputs[1:])
    refused(edited(trec, change), "reads tensor", "the subgraph has")


def test_operator_output_index_out_of_range(trec):
    def change(m):
        m.subgraphs[0].operators[-1].outputs = [-1]
    refused(edited(trec, change), "writes tensor -1")


def test_tensor_buffer_index_out_of_range(trec):
    def change(m):
        m.subgraphs[0].tensors[0].buffer = len(m.buffers) + 3
    refused(edited(trec, change), "refers to buffer")


def test_opcode_index_out_of_range(trec):
    def change(m):
        m.subgraphs[0].operators[0].opcodeIndex = 99
    refused(edited(trec, change), "refers to operator code 99")


def test_subgraph_output_not_a_tensor(trec):
    def change(m):
        m.subgraphs[0].outputs = [len(m.subgraphs[0].tensors)]
    refused(edited(trec, change), "output refers to tensor")


def test_constant_buffer_shorter_than_its_shape(dense):
    def change(m):
        op = m.subgraphs[0].operators[0]
        t = m.subgraphs[0].tensors[op.inputs[1]]
        m.buffers[t.buffer].data = np.asarray(m.buffers[t.buffer].data)[:-1]
    refused(edited(dense, change), "holds", "needs")


def test_absurd_activation_shape(dense):
    def change(m):
        sg = m.subgraphs[0]
        sg.tensors[sg.operators[0].outputs[0]].shape = [1, 1 << 20, 1 << 20, 16]
    refused(edited(dense, change), "beyond the 2^31")


def test_operator_reads_a_tensor_no_one_wrote(dense):
    def change(m):
        sg = m.subgraphs[0]
        sg.operators = sg.operators[1:]
    refused(edited(dense, change), "before any operator writes it")


def test_nan_scale_anywhere(dense):
    def change(m):
        sg = m.subgraphs[0]
        sg.tensors[sg.outputs[0]].quantization.scale = [float("nan")]
    refused(edited(dense, change), "not finite")


# ------------------------------------------------------------------------------------------------
# TREC_CONV_2D rules (docs/OP_SPEC.md)
# ------------------------------------------------------------------------------------------------
def _trec_tensor(m, which: int, op_no: int = 0):
    op = _trec_ops(m)[op_no]
    return m.subgraphs[0].tensors[op.inputs[which] if which >= 0 else op.outputs[0]]


@pytest.mark.parametrize("which,name", [(1, "filter"), (2, "bias"), (3, "hash")])
def test_trec_buffer_shorter_than_shape(trec, which, name):
    def change(m):
        t = _trec_tensor(m, which)
        m.buffers[t.buffer].data = np.asarray(m.buffers[t.buffer].data)[:-4]
    refused(edited(trec, change), "holds", "needs")


@pytest.mark.parametrize("which,name", [(1, "filter"), (3, "hash")])
def test_trec_filter_and_hash_must_be_constant(trec, which, name):
    def change(m):
        t = _trec_tensor(m, which)
        b = tm.schema().BufferT()
        m.buffers.append(b)
        t.buffer = len(m.buffers) - 1
    # a non-constant tensor nobody writes: either rule names it
    msg = refused(edited(trec, change))
    assert f"the {name} must be a constant" in msg or "before any operator writes it" in msg


def test_trec_nan_negative_and_huge_filter_scales(trec):
    for value, needle in ((float("nan"), "not finite"), (-0.5, "negative scale"), (0.0, "must be finite and > 0"),
                          (1e30, "too large for int32 requantization")):
        def change(m, value=value):
            t = _trec_tensor(m, 1)
            s = list(t.quantization.scale)
            s[3] = value
            t.quantization.scale = s
        refused(edited(trec, change), needle)


def test_trec_scales_for_only_some_channels(trec):
    def change(m):
        t = _trec_tensor(m, 1)
        t.quantization.scale = list(t.quantization.scale)[:3]
        t.quantization.zeroPoint = [0, 0, 0]
    refused(edited(trec, change), "3 per-channel scales")


def test_trec_input_zero_point_out_of_range(trec):
    def change(m):
        _trec_tensor(m, 0).quantization.zeroPoint = [300]
    refused(edited(trec, change), "zero point 300")


def test_trec_output_shape_must_follow_from_options(strided):
    def change(m):
        _trec_tensor(m, -1).shape = [1, 5, 5, 8]
    refused(edited(strided, change), "the output is [1, 5, 5, 8], the options give [1, 4, 4, 8]")


def _with_opts(buf, **kw):
    from flatbuffers import flexbuffers

    def change(m):
        op = _trec_ops(m)[0]
        o = tm.decode_trec_options(tm.custom_options_bytes(op))
        o.update(kw)
        op.customOptions = list(flexbuffers.Dumps(o))
    return edited(buf, change)


def test_trec_stride_that_contradicts_the_output(strided):
    refused(_with_opts(strided, stride_h=1), "the options give [1, 7, 4, 8]")


def test_trec_dilation_that_overflows(strided):
    refused(_with_opts(strided, dilation_h=2**31 - 1), "beyond int32")


def test_trec_l_greater_than_k(strided):
    def change(m):
        from flatbuffers import flexbuffers

        op = _trec_ops(m)[0]
        o = tm.decode_trec_options(tm.custom_options_bytes(op))
        o["sub_vector_length"] = 28  # K = 3*3*3 = 27
        op.customOptions = list(flexbuffers.Dumps(o))
        h = m.subgraphs[0].tensors[op.inputs[3]]
        h.shape = [28, 4]
        m.buffers[h.buffer].data = np.zeros(28 * 4, np.uint8)
    refused(edited(strided, change), "sub_vector_length L=28 exceeds K = kh*kw*Cin = 27")


def test_trec_hash_shape_must_match_options(strided):
    refused(_with_opts(strided, hash_bits=5), "the hash must be int8 [L=9, H=5]")


def test_trec_unknown_version(strided):
    refused(_with_opts(strided, version=2), "unknown TREC_CONV_2D version 2")
