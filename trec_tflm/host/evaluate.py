"""Host int8 evaluation of a converted ``.tflite``: ``trec-tflm eval`` and the runners behind it.

Two routes run a model on the host:

- ``tflm``: the whole model in TensorFlow Lite Micro. Models without TREC ops run in the
  tflite-micro wheel's interpreter directly; models with ``TREC_CONV_2D`` need the TFLM glue
  (``trec_tflm.host.interpreter.Runtime``: TFLM with our kernel registered).
- ``golden``: :class:`GoldenGraphRunner`, an op-by-op executor. TREC ops run in
  ``golden.trec_conv2d_s8`` (the bit-exact specification); every maximal run of other operators
  (in execution order) becomes a small "segment" model run by the tflite-micro interpreter (TFLM's
  own kernels), one cached interpreter per segment. Tensors flow between steps by index, so
  branches and joins (SqueezeNet's concatenations and bypass additions) work.

The seam: :func:`make_runner` (``reference`` = ``"auto"``, ``"golden"`` or ``"tflm"``) returns an
object with ``route``, ``input_details()``-like attributes and ``invoke(x) -> output 0``. ``auto``
picks ``tflm`` when it can run the model (always for models without TREC ops; with TREC ops when
``trec_tflm.host.interpreter`` can load the op library) and ``golden`` otherwise, saying why. Once the glue
is everywhere, ``--reference golden`` stays as the cross-check of the C kernel.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from trec_tflm.data import load_dataset
from trec_tflm.host import isolate
from trec_tflm.host.interpreter import Runtime, TflmError
from trec_tflm.host.wheel import RunnerUnavailable, wheel_interpreter
from trec_tflm.spec import golden, quant, validate
from trec_tflm.spec import model as tm

REFERENCES = ("auto", "golden", "tflm")


@dataclass
class IoQuant:
    dtype: np.dtype
    shape: tuple
    scale: float  # 0.0 when not quantized
    zero_point: int


def _io_quant(m, tensor_index: int) -> IoQuant:
    t = m.subgraphs[0].tensors[tensor_index]
    q = tm.tensor_quant(t)
    return IoQuant(tm.tensor_dtype(t), tuple(int(v) for v in t.shape),
                   0.0 if q is None else float(q.scale[0]), 0 if q is None else int(q.zero_point[0]))


class _RunnerBase:
    route = "?"

    def _init_io(self, m):
        sg = m.subgraphs[0]
        if len(sg.inputs) != 1:
            raise RunnerUnavailable(f"the model has {len(sg.inputs)} inputs; evaluation supports one")
        self.input = _io_quant(m, int(sg.inputs[0]))
        self.output = _io_quant(m, int(sg.outputs[0]))

    def prepare_input(self, x_float: np.ndarray) -> np.ndarray:
        """Float images [N, ...] -> the model's input type (int8: round half to even, clip)."""
        x = np.asarray(x_float)
        if self.input.dtype == np.float32:
            return x.astype(np.float32)
        if self.input.scale <= 0:
            raise ValueError("the model's input is neither float32 nor quantized")
        return quant.quantize_input(x, self.input.scale, self.input.zero_point, self.input.dtype)

    def invoke(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Inputs [N, ...] already in the model's input type -> outputs [N, ...]."""
        shape = self.input.shape
        outs = [self.invoke(np.ascontiguousarray(xi.reshape(shape))) for xi in x]
        return np.stack([o.reshape(o.shape[1:]) if o.ndim and o.shape[0] == 1 else o for o in outs])

    def describe(self) -> str:
        return self.route


class WheelRunner(_RunnerBase):
    """The whole model in the tflite-micro wheel's interpreter (models without TREC ops)."""

    route = "tflm"

    def __init__(self, model_bytes: bytes):
        m = validate.validate_model(model_bytes)
        if any(tm.is_trec(m, op) for op in m.subgraphs[0].operators):
            raise RunnerUnavailable("the model has TREC_CONV_2D ops, which the plain TFLM interpreter lacks")
        self._init_io(m)
        self._interp = wheel_interpreter(model_bytes)

    def invoke(self, x):
        self._interp.set_input(x, 0)
        self._interp.invoke()
        return self._interp.get_output(0)

    def describe(self):
        return "tflm (tflite-micro interpreter, TFLM reference kernels; the model has no TREC ops)"


class RuntimeRunner(_RunnerBase):
    """The whole model in TFLM with TREC_CONV_2D registered (``trec_tflm.host.interpreter``)."""

    route = "tflm"

    def __init__(self, model_bytes: bytes):
        m = validate.validate_model(model_bytes)
        self._init_io(m)
        try:
            self._rt = Runtime(model_bytes)
        except (TflmError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunnerUnavailable(f"TFLM with TREC_CONV_2D cannot run here: {first}") from None

    def invoke(self, x):
        return self._rt.invoke(x)

    def describe(self):
        return "tflm (TFLM with TREC_CONV_2D from the C kernel, trec_tflm.host.interpreter)"


# ------------------------------------------------------------------------------------------------
# the golden route: op-by-op executor
# ------------------------------------------------------------------------------------------------
@dataclass
class _TrecStep:
    op_index: int
    params: dict
    kind: str = "trec"  # "trec": golden.trec_conv2d_s8, "conv": golden.conv2d_s8
    clusters: float = 0.0
    rows: float = 0.0
    calls: int = 0


@dataclass
class _SegmentStep:
    op_indices: list
    inputs: list  # tensor indices of the full graph
    outputs: list
    interp: object = None
    model_bytes: bytes = b""


def segment_model(m, op_indices: list, inputs: list, outputs: list) -> bytes:
    """A model holding only ``op_indices`` of subgraph 0, with ``inputs``/``outputs`` (tensor
    indices of the full graph) as its inputs/outputs; constants keep their buffers."""
    s = tm.schema()
    sg = m.subgraphs[0]
    used = []
    for i in op_indices:
        op = sg.operators[i]
        for t in list(op.inputs if op.inputs is not None else []) + list(op.outputs) + \
                list(op.intermediates if op.intermediates is not None else []):
            if t >= 0 and t not in used:
                used.append(int(t))
    remap = {t: j for j, t in enumerate(used)}
    new = s.ModelT()
    new.version = m.version
    new.description = "trec_tflm segment"
    new.operatorCodes = m.operatorCodes
    empty = s.BufferT()
    new.buffers = [empty]
    tensors = []
    for t in used:
        old = sg.tensors[t]
        nt = s.TensorT()
        for attr in ("shape", "type", "name", "quantization", "isVariable", "sparsity", "shapeSignature",
                     "hasRank", "variantTensors"):
            setattr(nt, attr, getattr(old, attr))
        data = m.buffers[old.buffer].data if 0 <= old.buffer < len(m.buffers) else None
        if data is not None and len(data) > 0:
            b = s.BufferT()
            b.data = data
            new.buffers.append(b)
            nt.buffer = len(new.buffers) - 1
        else:
            nt.buffer = 0
        tensors.append(nt)
    nsg = s.SubGraphT()
    nsg.tensors = tensors
    nsg.inputs = np.array([remap[t] for t in inputs], np.int32)
    nsg.outputs = np.array([remap[t] for t in outputs], np.int32)
    ops = []
    for i in op_indices:
        old = sg.operators[i]
        op = s.OperatorT()
        for attr in vars(old):
            setattr(op, attr, getattr(old, attr))
        op.inputs = np.array([remap[t] if t >= 0 else -1 for t in old.inputs], np.int32)
        op.outputs = np.array([remap[t] for t in old.outputs], np.int32)
        if old.intermediates is not None:
            op.intermediates = np.array([remap[t] for t in old.intermediates], np.int32)
        ops.append(op)
    nsg.operators = ops
    nsg.name = "segment"
    new.subgraphs = [nsg]
    return tm.save_model(new)


class GoldenGraphRunner(_RunnerBase):
    """TREC ops in ``golden.trec_conv2d_s8``, everything else in TFLM, op by op (see module doc).

    ``conv``: where int8 CONV_2D ops run: ``"golden"`` (default; ``golden.conv2d_s8``, bit-exact
    with TFLM's CONV_2D as tests/test_golden_dense_vs_tflm.py and tests/test_golden.py show, and
    ~20x faster than the wheel's unoptimised reference kernel) or ``"tflm"``.
    """

    route = "golden"

    def __init__(self, model_bytes: bytes, conv: str = "golden"):
        if conv not in ("golden", "tflm"):
            raise ValueError(f"conv must be 'golden' or 'tflm', got {conv!r}")
        self.conv = conv
        m = validate.validate_model(model_bytes)
        if len(m.subgraphs) != 1:
            raise RunnerUnavailable(f"the golden route runs single-subgraph models; this one has {len(m.subgraphs)}")
        self._init_io(m)
        self.model = m
        sg = m.subgraphs[0]
        n_ops = len(sg.operators)
        const = {i for i, t in enumerate(sg.tensors)
                 if 0 <= t.buffer < len(m.buffers) and m.buffers[t.buffer].data is not None
                 and len(m.buffers[t.buffer].data) > 0}
        self._const = const
        consumers: dict[int, list[int]] = {}
        for i, op in enumerate(sg.operators):
            for t in op.inputs if op.inputs is not None else []:
                if t >= 0:
                    consumers.setdefault(int(t), []).append(i)
        graph_outputs = {int(t) for t in sg.outputs}
        self.steps: list = []
        run: list[int] = []

        def flush():
            if not run:
                return
            produced, ins = set(), []
            for i in run:
                op = sg.operators[i]
                for t in op.inputs if op.inputs is not None else []:
                    t = int(t)
                    if t >= 0 and t not in produced and t not in const and t not in ins:
                        ins.append(t)
                produced.update(int(t) for t in op.outputs)
            last = run[-1]
            outs = [t for t in sorted(produced)
                    if t in graph_outputs or any(c > last for c in consumers.get(t, []))]
            self.steps.append(_SegmentStep(list(run), ins, outs))
            run.clear()

        conv_code = tm.schema().BuiltinOperator.CONV_2D
        for i, op in enumerate(sg.operators):
            if tm.is_trec(m, op):
                flush()
                self.steps.append(_TrecStep(i, tm.trec_op_params(m, op, where=f"operator {i}")))
                continue
            if conv == "golden" and tm.builtin_code(m.operatorCodes[op.opcodeIndex]) == conv_code:
                try:
                    params = tm.conv_op_params(m, op, where=f"operator {i}")
                except tm.TfliteModelError:
                    params = None  # e.g. a float or int16 conv: TFLM runs it
                if params is not None:
                    flush()
                    self.steps.append(_TrecStep(i, params, kind="conv"))
                    continue
            run.append(i)
        flush()
        if n_ops == 0:
            raise RunnerUnavailable("the model has no operators")
        for step in self.steps:
            if isinstance(step, _SegmentStep):
                if not step.inputs:
                    raise RunnerUnavailable(f"operators {step.op_indices} take no activation input; "
                                            "the golden route cannot cut them out")
                step.model_bytes = segment_model(m, step.op_indices, step.inputs, step.outputs)
                act_bytes = sum(int(np.prod(sg.tensors[t].shape)) * tm.tensor_dtype(sg.tensors[t]).itemsize
                                for i in step.op_indices for t in sg.operators[i].outputs)
                step.interp = wheel_interpreter(step.model_bytes, max(1 << 18, 4 * act_bytes + len(step.model_bytes)))
        self._in_index = int(sg.inputs[0])
        self._out_indices = [int(t) for t in sg.outputs]

    def invoke_all(self, x: np.ndarray) -> dict:
        """Run one input; returns every tensor computed (index -> array)."""
        values = {self._in_index: x}
        for step in self.steps:
            if isinstance(step, _TrecStep) and step.kind == "conv":
                p = step.params
                values[p["output_index"]] = golden.conv2d_s8(values[p["input_index"]], p["filter"], p["bias"],
                                                             **p["kwargs"])
            elif isinstance(step, _TrecStep):
                p = step.params
                y, stats = golden.trec_conv2d_s8(values[p["input_index"]], p["filter"], p["bias"], p["hash"],
                                                 return_stats=True, **p["kwargs"])
                values[p["output_index"]] = y
                for st in stats:
                    step.clusters += float(st.clusters.sum())
                    step.rows += float(st.rows * st.sub_matrices)
                step.calls += 1
            else:
                for j, t in enumerate(step.inputs):
                    step.interp.set_input(values[t], j)
                step.interp.invoke()
                for j, t in enumerate(step.outputs):
                    values[t] = step.interp.get_output(j)
        return values

    def invoke(self, x):
        return self.invoke_all(x)[self._out_indices[0]]

    def reuse_rates(self) -> dict[int, float]:
        """rc measured in int8 per TREC op (operator index -> clusters / rows) over all calls."""
        return {s.op_index: s.clusters / s.rows for s in self.steps
                if isinstance(s, _TrecStep) and s.kind == "trec" and s.rows}

    def describe(self):
        n_trec = sum(isinstance(s, _TrecStep) and s.kind == "trec" for s in self.steps)
        n_conv = sum(isinstance(s, _TrecStep) and s.kind == "conv" for s in self.steps)
        n_seg = sum(isinstance(s, _SegmentStep) for s in self.steps)
        return (f"golden (TREC_CONV_2D in golden.trec_conv2d_s8: {n_trec} op(s); CONV_2D in "
                f"{'golden.conv2d_s8' if self.conv == 'golden' else 'TFLM'}: "
                f"{n_conv if self.conv == 'golden' else 'all'}; "
                f"other ops in TFLM's reference kernels: {n_seg} segment(s))")


# ------------------------------------------------------------------------------------------------
# the seam
# ------------------------------------------------------------------------------------------------
def make_runner(model_bytes: bytes, reference: str = "auto", *, notes: list | None = None, conv: str = "golden"):
    """A runner for ``model_bytes``: ``"tflm"`` (TFLM runs the whole model), ``"golden"`` (TREC ops
    in the NumPy golden, the rest in TFLM) or ``"auto"`` (tflm when it can run the model, else golden;
    the reason for a fallback is appended to ``notes``). Raises RunnerUnavailable for an explicit
    route that cannot run here."""
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    m = validate.validate_model(model_bytes)
    has_trec = any(tm.is_trec(m, op) for op in m.subgraphs[0].operators)
    if reference == "golden":
        return GoldenGraphRunner(model_bytes, conv=conv)
    if not has_trec:
        return WheelRunner(model_bytes)
    try:
        return RuntimeRunner(model_bytes)
    except RunnerUnavailable as exc:
        if reference == "tflm":
            raise
        if notes is not None:
            notes.append(f"{exc}; using the golden route")
        return GoldenGraphRunner(model_bytes, conv=conv)


@dataclass
class EvalResult:
    accuracy: float
    images: int
    correct: int
    route: str
    route_detail: str
    seconds: float
    notes: list = field(default_factory=list)
    reuse_rates: dict = field(default_factory=dict)  # TREC layer (or op) -> rc measured in int8

    @property
    def ms_per_image(self) -> float:
        return 1000.0 * self.seconds / max(self.images, 1)

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "images": self.images, "correct": self.correct, "route": self.route,
                "route_detail": self.route_detail, "seconds": self.seconds, "ms_per_image": self.ms_per_image,
                "notes": self.notes, "reuse_rates": self.reuse_rates}


def evaluate(model_bytes: bytes, x: np.ndarray, y: np.ndarray, *, reference: str = "auto",
             limit: int | None = None, progress=None, conv: str = "golden") -> EvalResult:
    """Top-1 accuracy of the int8 model on float images ``x`` [N, ...] with labels ``y``."""
    notes: list = []
    runner = make_runner(model_bytes, reference, notes=notes, conv=conv)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if len(x) == 0:
        raise ValueError("no images to evaluate")
    xin = runner.prepare_input(x)
    start = time.perf_counter()
    correct = 0
    for i in range(len(xin)):
        out = runner.invoke(np.ascontiguousarray(xin[i].reshape(runner.input.shape)))
        correct += int(np.argmax(out.reshape(-1)) == int(y[i]))
        if progress and (i + 1) % 1000 == 0:
            progress(i + 1, len(xin))
    seconds = time.perf_counter() - start
    rates = {}
    if isinstance(runner, GoldenGraphRunner):
        meta = tm.read_metadata(runner.model) or {}
        names = {e["operator_index"]: e["name"] for e in meta.get("trec_layers") or []}
        rates = {names.get(i, f"op{i}"): rc for i, rc in runner.reuse_rates().items()}
    return EvalResult(correct / len(xin), len(xin), correct, runner.route, runner.describe(), seconds, notes, rates)


def keras_accuracy(model_path, x, y) -> float:
    # lazy: training/ loads Keras and TensorFlow, which `trec-tflm eval` needs only with --keras
    from trec_tflm.training.saving import load_keras_model

    model = load_keras_model(model_path)
    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == y))


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="converted model (.tflite)")
    p.add_argument("--dataset", default="fashion_mnist", help="test set to evaluate on (default fashion_mnist)")
    p.add_argument("--dataset-path", default=None, help="dataset directory (default: Debian package / Keras)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N test images only")
    p.add_argument("--reference", choices=REFERENCES, default="auto",
                   help="auto (default): TFLM when it can run the model, else golden; golden: TREC ops in the "
                        "NumPy golden, other ops in TFLM; tflm: the whole model in TFLM "
                        "(TREC needs trec_tflm.host.interpreter)")
    p.add_argument("--golden-conv", choices=("golden", "tflm"), default="golden",
                   help="golden route: run CONV_2D in golden.conv2d_s8 (default, bit-exact with TFLM's CONV_2D "
                        "and much "
                        "faster) or in TFLM")
    p.add_argument("--keras", default=None, metavar="MODEL.keras",
                   help="also report the float Keras model's accuracy on the same images")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=eval_command)


def eval_command(args) -> int:
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    buf = tm.read_bytes(args.model)
    validate.validate_model(buf, args.model)
    ds = load_dataset(args.dataset, args.dataset_path)
    try:
        # TFLM runs in a child process: a crash on a hostile model becomes a NativeCrashError
        res = isolate.run_isolated(
            evaluate, buf, ds.x_test, ds.y_test, reference=args.reference, limit=args.limit, conv=args.golden_conv,
            progress=None if args.json else (lambda i, n: print(f"  {i}/{n} images", file=sys.stderr, flush=True)),
            what=f"evaluating {args.model}")
    except RunnerUnavailable as exc:
        raise ValueError(str(exc)) from None
    out = res.to_dict() | {"model": str(args.model), "dataset": ds.name}
    if args.keras:
        n = res.images
        out["keras_accuracy"] = keras_accuracy(args.keras, ds.x_test[:n], ds.y_test[:n])
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for note in res.notes:
        print(f"note: {note}")
    print(f"route: {res.route_detail}")
    print(f"int8 accuracy: {res.accuracy * 100:.2f}% ({res.correct}/{res.images} {ds.name} test images), "
          f"{res.ms_per_image:.1f} ms/image")
    if "keras_accuracy" in out:
        d = (res.accuracy - out["keras_accuracy"]) * 100
        print(f"Keras float accuracy on the same images: {out['keras_accuracy'] * 100:.2f}% "
              f"(int8 - float: {d:+.2f} pt)")
    for name, rc in res.reuse_rates.items():
        print(f"  rc {name}: {rc:.4f} (int8, measured by the golden kernel)")
    return 0
