"""The MLPerf Tiny host runner (mlcommons/tiny ``benchmark/runner``) against our firmware.

The runner drives a DUT over the EEMBC / MLPerf Tiny serial protocol and scores it. What it
needs from the firmware (docs/BOARDS.md "MLPerf Tiny runner"):

* ``profile%`` answers ``m-model-[<ID>]`` with an MLPerf Tiny model ID (:data:`MLPERF_IDS`): the
  runner picks its test script and dataset directory by it. ``trec-tflm deploy --mlperf-id``.
* ``m-results-[...]`` are class probabilities: the runner divides each vector by its sum and
  takes the argmax and the ROC AUC. A model that ends in logits (no SOFTMAX) gets the softmax of
  its dequantized outputs computed by the firmware (:func:`output_is_logits`); ``results q%``
  keeps the raw int8 outputs for our own tools.
* the dataset files are uint8 bytes which the reference firmware turns into int8 by subtracting
  128 (``th_load_tensor``): firmware deployed with ``--mlperf-id`` does the same
  (``--input-format``; ``info%`` reports ``input=uint8``).

This module has the model checks behind those deploy options and the dataset in the runner's format
(``y_labels.csv`` + one binary file per image). Writing one for a model (``trec-tflm mlperf-dataset``)
and running the unmodified runner (``python -m trec_tflm.bench.mlperf_runner run``) is
trec_tflm.bench.mlperf_runner.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from trec_tflm.errors import TrecTflmError
from trec_tflm.spec import model as tm
from trec_tflm.spec import quant

#: MLPerf Tiny model IDs the runner's test scripts know (sww01, streaming, needs an interface board).
MLPERF_IDS = {"ic01": "image classification", "kws01": "keyword spotting",
              "vww01": "visual wake words", "ad01": "anomaly detection"}
INPUT_FORMATS = ("int8", "uint8")

PathLike = Union[str, os.PathLike]


class MlperfError(TrecTflmError, ValueError):
    """A user-fixable problem (bad ID, model the runner cannot score, missing runner)."""


# ------------------------------------------------------------------------------------------------
# the model's interface
# ------------------------------------------------------------------------------------------------
@dataclass
class ModelIO:
    input_shape: tuple
    input_scale: float
    input_zero_point: int
    output_elements: int
    ends_in_softmax: bool


def model_io(model: bytes) -> ModelIO:
    """Input shape and quantization, output size, and whether output 0 comes out of SOFTMAX."""
    m = tm.load_model(model)
    sg = m.subgraphs[0]
    inp = tm.tensor_info(m, int(sg.inputs[0]))
    out_index = int(sg.outputs[0])
    out = tm.tensor_info(m, out_index)
    producer = next((op for op in tm.operators(m) if any(t is not None and t.index == out_index
                                                         for t in op.outputs)), None)
    return ModelIO(tuple(int(v) for v in inp.shape), float(inp.scale[0]) if inp.scale else 0.0,
                   int(inp.zero_point[0]) if inp.zero_point else 0, int(np.prod(out.shape)),
                   producer is not None and producer.name == "SOFTMAX")


def output_is_logits(model: bytes) -> bool:
    """True when the runner must be shown softmax(outputs): two or more outputs not produced by
    SOFTMAX. One output (an anomaly score) is printed as it is."""
    io = model_io(model)
    return io.output_elements >= 2 and not io.ends_in_softmax


def check_mlperf_id(mlperf_id: str, model: bytes) -> str:
    """The ID, checked against the model: classification IDs need >= 2 outputs (the runner takes
    the argmax), ad01 exactly one (the runner scores a single anomaly value per input)."""
    if mlperf_id not in MLPERF_IDS:
        raise MlperfError(f"--mlperf-id {mlperf_id!r} is not an MLPerf Tiny model ID; the runner knows "
                          + ", ".join(f"{k} ({v})" for k, v in MLPERF_IDS.items()))
    n = model_io(model).output_elements
    if mlperf_id == "ad01" and n != 1:
        raise MlperfError(f"--mlperf-id ad01: the runner scores anomaly detection from one value per "
                          f"input, this model has {n} outputs (end the model in its anomaly score, or "
                          "choose a classification ID)")
    if mlperf_id != "ad01" and n < 2:
        raise MlperfError(f"--mlperf-id {mlperf_id}: the runner scores classification by the argmax of "
                          f"class probabilities, this model has {n} output(s) (ad01 takes one score)")
    return mlperf_id


# ------------------------------------------------------------------------------------------------
# dataset in the runner's format
# ------------------------------------------------------------------------------------------------
def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float images -> int8 exactly as ``trec-tflm eval`` does (round half to even, clip)."""
    if scale <= 0:
        raise MlperfError("the model's input is not int8-quantized (scale 0): the firmware needs int8 input")
    return quant.quantize_input(x, scale, zero_point)


def write_dataset(out_dir: PathLike, inputs_int8: np.ndarray, labels: np.ndarray, *, num_classes: int,
                  mlperf_id: str = "ic01", prefix: str = "img") -> Path:
    """Write ``out_dir/<mlperf_id>/y_labels.csv`` and one ``<prefix>_NNNNN.bin`` per input: the
    int8 input values + 128 as uint8 bytes (the reference convention; firmware deployed with
    ``--mlperf-id`` subtracts 128 again). Rows are ``file,classes,class`` as the runner's
    DataSet reads them. Returns the directory to pass to the runner as ``--dataset_path``."""
    x = np.asarray(inputs_int8)
    if x.dtype != np.int8:
        raise MlperfError(f"inputs must be the model's int8 input values, got {x.dtype}")
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(x):
        raise MlperfError(f"{len(x)} inputs but {len(labels)} labels")
    root = Path(out_dir)
    d = root / mlperf_id
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (xi, yi) in enumerate(zip(x, labels)):
        name = f"{prefix}_{i:05d}.bin"
        (d / name).write_bytes((xi.reshape(-1).view(np.uint8) ^ 0x80).tobytes())
        rows.append((name, int(num_classes), int(yi)))
    tmp = d / "y_labels.csv.tmp"
    with open(tmp, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    os.replace(tmp, d / "y_labels.csv")
    return root


def read_dataset(root: PathLike, mlperf_id: str = "ic01") -> tuple[np.ndarray, np.ndarray]:
    """(int8 inputs [N, bytes], labels [N]) back from a runner-format directory."""
    d = Path(root) / mlperf_id
    xs, ys = [], []
    with open(d / "y_labels.csv", newline="") as f:
        for row in csv.reader(f):
            if not row:
                continue
            xs.append(np.frombuffer((d / row[0].strip()).read_bytes(), np.uint8) ^ 0x80)
            ys.append(int(row[2]))
    return np.asarray(xs).view(np.int8), np.asarray(ys, np.int64)
