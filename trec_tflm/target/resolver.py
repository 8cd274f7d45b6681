"""Which ``MicroMutableOpResolver`` method registers each operator of a model.

Two sources, one home: with a TFLM tree the methods are read from TFLM's header
(:func:`resolver_methods`, :func:`resolver_calls`); without one, from :data:`RESOLVER_BUILTINS`, the
hand-kept list of TFLM's resolver at the pinned commit (:func:`resolver_method`,
:func:`resolver_calls_without_tflm`). The TFLM-tier tests check the list against the header.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

from trec_tflm.host import tflm_build
from trec_tflm.spec import model as tm
from trec_tflm.spec.op import TREC_CUSTOM_CODE
from trec_tflm.target.errors import DeployError, FirmwareError

#: Builtin operators MicroMutableOpResolver can register at the pinned TFLM commit (88f8587b);
#: the method is ``Add`` + the CamelCase of the name, except for METHOD_EXCEPTIONS.
RESOLVER_BUILTINS = frozenset("""
ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND BROADCAST_ARGS
BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE
DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FILL FLOOR FLOOR_DIV FLOOR_MOD
FULLY_CONNECTED GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH IF L2_NORMALIZATION L2_POOL_2D LEAKY_RELU
LESS LESS_EQUAL LOG LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D MEAN MINIMUM
MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU QUANTIZE READ_VARIABLE REDUCE_ALL REDUCE_MAX REDUCE_MIN RELU
RELU6 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT SELECT_V2 SHAPE SIN SLICE SOFTMAX
SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM SVDF
TANH TRANSPOSE TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE WHILE ZEROS_LIKE
""".split())
METHOD_EXCEPTIONS = {"BATCH_MATMUL": "AddBatchMatMul", "CUMSUM": "AddCumSum", "PADV2": "AddPadV2",
                     "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM"}
#: The registration statement of our kernel (tflm_ops/tflm/trec_conv.h).
TREC_REGISTRATION = "tflite::AddTrecConv2D(resolver)"

PathLike = Union[str, os.PathLike]


def distinct(op_names: Sequence[str]) -> list:
    """The operators in order of first use (the resolver registers each once)."""
    kinds: list = []
    for name in op_names:
        if name not in kinds:
            kinds.append(name)
    return kinds


# ------------------------------------------------------------------------------------------------
# without a TFLM tree: the hand-kept table
# ------------------------------------------------------------------------------------------------
def resolver_method(builtin: str) -> str:
    """MicroMutableOpResolver method of a builtin operator (DeployError when TFLM has none)."""
    if builtin not in RESOLVER_BUILTINS:
        raise DeployError(f"the model uses operator {builtin}, which TFLM's MicroMutableOpResolver does not "
                          "have at the pinned commit (or which this table does not know: set TFLM_ROOT so "
                          "the resolver is read from TFLM's header)")
    if builtin in METHOD_EXCEPTIONS:
        return METHOD_EXCEPTIONS[builtin]
    return "Add" + "".join(p[:1].upper() + p[1:].lower() if not re.fullmatch(r"\d+D", p) else p
                           for p in builtin.split("_"))


def resolver_calls_without_tflm(op_names: Sequence[str]) -> tuple[list, list]:
    """(distinct operators in order of first use, the C++ registration statements)."""
    kinds = distinct(op_names)
    calls = [TREC_REGISTRATION if name == TREC_CUSTOM_CODE else f"resolver.{resolver_method(name)}()"
             for name in kinds]
    return kinds, calls


# ------------------------------------------------------------------------------------------------
# with a TFLM tree: TFLM's header
# ------------------------------------------------------------------------------------------------
def resolver_methods(tflm_root: Optional[PathLike] = None) -> tuple[dict, dict]:
    """(builtin name -> AddXxx method, custom code -> AddXxx method) of TFLM's
    MicroMutableOpResolver, read from the TFLM tree's header."""
    root = tflm_build.check_tflm_tree(None if tflm_root is None else Path(tflm_root))
    text = (root / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    builtin, custom = {}, {}
    for name, body in re.findall(r"TfLiteStatus\s+(Add\w+)\s*\([^{]*\)\s*\{(.*?)\n  \}", text, re.S):
        b = re.search(r"AddBuiltin\(\s*BuiltinOperator_(\w+)", body)
        c = re.search(r'AddCustom\(\s*"([^"]+)"', body)
        if b and name not in ("AddBuiltin", "AddCustom"):
            builtin.setdefault(b.group(1), name)
        elif c:
            custom.setdefault(c.group(1), name)
    custom[TREC_CUSTOM_CODE] = "tflite::AddTrecConv2D"
    return builtin, custom


def model_operators(model: bytes) -> tuple[list, set]:
    """(operator names of every subgraph in order, the custom codes among them)."""
    m = tm.load_model(model)
    s = tm.schema()
    names = [tm.op_name(m, op) for sg in m.subgraphs for op in (sg.operators or [])]
    custom = {tm.opcode_name(oc) for oc in (m.operatorCodes or []) if tm.builtin_code(oc) == s.BuiltinOperator.CUSTOM}
    return names, custom


def resolver_calls(model: bytes, tflm_root: Optional[PathLike] = None) -> tuple[list, list]:
    """(distinct operators in order of first use, the C++ statements that register them)."""
    builtin, custom = resolver_methods(tflm_root)
    names, custom_codes = model_operators(model)
    kinds = distinct(names)
    calls = []
    for op in kinds:
        if op == TREC_CUSTOM_CODE:
            calls.append(TREC_REGISTRATION)
        elif op in custom_codes:
            if op not in custom:
                raise FirmwareError(f"the model uses custom operator {op!r}, which TFLM's resolver does not know")
            calls.append(f"resolver.{custom[op]}()")
        elif op in builtin:
            calls.append(f"resolver.{builtin[op]}()")
        else:
            raise FirmwareError(f"the model uses operator {op}, for which TFLM has no MicroMutableOpResolver "
                                "method at this commit")
    return kinds, calls
