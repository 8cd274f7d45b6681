"""Fuzz: damaged copies of a converted TREC model through every reader of the CLI.

A seeded, structure-aware generator (below; written for this test, from the TFLite schema's
invariants and the rules docs/OP_SPEC.md states for TREC_CONV_2D) edits a model converted by
``trec_tflm.tflite.convert``: indices out of range, buffers cut short, NaN / negative / missing scales,
zero points out of range, options that contradict the output shape, overflowing dilations,
L > K, non-constant filters and hashes, operators out of order, truncated files; benign edits
(new weights, in-range zero points, another hash centre); and blind byte flips. Each edit knows
whether it makes the model invalid (an oracle written here, independent of trec_tflm.spec.validate);
byte flips are unlabelled.

Every case goes through ``inspect``, ``eval --reference golden``, ``eval --reference tflm`` and
``deploy`` (no ``--build``, no TFLM tree: the estimate path), and every invalid one also through
``bench --model`` (which must refuse it before building firmware), in a worker subprocess that calls
the CLI's ``main`` (one Python start for all cases; TFLM work inside is isolated in children by
the code under test). Asserted: the worker is never killed by a signal (a crash in native code
that is not isolated would kill it), no reader lets an exception escape or prints a traceback,
every invalid case is refused by every reader with one error line naming the model file (and
deploy writes nothing),
and every benign case passes inspect.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CASES = 260
SEED = 20261207
READERS = {
    "inspect": ["inspect", "{model}"],
    "eval-golden": ["eval", "{model}", "--reference", "golden", "--limit", "2"],
    "eval-tflm": ["eval", "{model}", "--reference", "tflm", "--limit", "2"],
    "deploy": ["deploy", "{model}", "--board", "nucleo_f746zg", "-o", "{out}"],
}
#: Readers run on invalid cases only: a model they accept would be built into firmware and run in
#: QEMU (minutes), and must have been refused before that.
READERS_INVALID_ONLY = {
    "bench": ["bench", "--board", "qemu_m7", "--model", "{model}"],
}
INT32_MAX = 2**31 - 1


# ------------------------------------------------------------------------------------------------
# the base model
# ------------------------------------------------------------------------------------------------
def base_model(fashion) -> bytes:
    """stem conv 3x3/2 (28 -> 14, 8 ch), TREC 3x3 SAME 8 -> 8 (K = 72, L = 8, H = 6), pool, dense."""
    import keras

    from trec_tflm.tflite.convert import convert
    from trec_tflm.training.layers import TRECConv2D

    keras.utils.set_random_seed(5)
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stem")(inp)
    x = TRECConv2D(8, 3, padding="same", activation="relu", sub_vector_length=8, hash_bits=6, name="trec")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="fuzzbase")
    return convert(model, fashion.x_train[:32], calibration_samples=32, labels=fashion.labels)


# ------------------------------------------------------------------------------------------------
# the generator and its oracle
# ------------------------------------------------------------------------------------------------
def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


def _parse(buf: bytes):
    s = _schema()
    return s.ModelT.InitFromObj(s.Model.GetRootAsModel(buf, 0))


def _pack(m) -> bytes:
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _trec(m):
    """(operator, its index) of the model's one TREC_CONV_2D."""
    for i, op in enumerate(m.subgraphs[0].operators):
        oc = m.operatorCodes[op.opcodeIndex]
        if oc.customCode in (b"TREC_CONV_2D", "TREC_CONV_2D"):
            return op, i
    raise AssertionError("base model has no TREC_CONV_2D")


def _opts(op) -> dict:
    from flatbuffers import flexbuffers

    return dict(flexbuffers.Loads(bytes(np.asarray(op.customOptions, np.uint8))))


def _set_opts(op, opts: dict) -> None:
    from flatbuffers import flexbuffers

    op.customOptions = list(flexbuffers.Dumps(opts))


def _out_size(size, k, stride, dilation, padding):
    """TFLite's output size, or None where OP_SPEC's rules refuse the geometry (the dilated filter
    or the padding beyond int32, or no output)."""
    size, k, stride, dilation = int(size), int(k), int(stride), int(dilation)
    eff = (k - 1) * dilation + 1
    if eff > INT32_MAX or size + stride - 1 > INT32_MAX:
        return None
    out = -(-size // stride) if padding == "SAME" else ((size - eff) // stride + 1 if size >= eff else 0)
    if out < 1 or (out - 1) * stride + eff - size > INT32_MAX:
        return None
    return out


def mutate(base: bytes, rng: np.random.Generator):
    """One damaged model: (bytes, label, what) with label "invalid", "valid" or None (unknown)."""
    m = _parse(base)
    sg = m.subgraphs[0]
    op, op_i = _trec(m)
    t = sg.tensors
    inp, filt, bias, hsh = (int(v) for v in op.inputs)
    out = int(op.outputs[0])
    n_t, n_b, n_c = len(t), len(m.buffers), len(m.operatorCodes)
    kind = rng.integers(0, 31)
    big = int(rng.choice([1, 2, 7, 100, 65535, 2**31 - 1 - n_t]))

    def scale(idx, values):
        t[idx].quantization.scale = list(values)

    if kind == 0:
        k = int(rng.integers(len(sg.operators)))
        ins = list(sg.operators[k].inputs)
        ins[int(rng.integers(len(ins)))] = n_t + big - 1
        sg.operators[k].inputs = ins
        return _pack(m), "invalid", f"operator {k} input index out of range"
    if kind == 1:
        k = int(rng.integers(len(sg.operators)))
        sg.operators[k].outputs = [int(rng.choice([n_t + big - 1, -1, -big]))]
        return _pack(m), "invalid", f"operator {k} output index out of range"
    if kind == 2:
        j = int(rng.integers(n_t))
        t[j].buffer = n_b + big - 1
        return _pack(m), "invalid", f"tensor {j} buffer index out of range"
    if kind == 3:
        k = int(rng.integers(len(sg.operators)))
        sg.operators[k].opcodeIndex = n_c + big - 1
        return _pack(m), "invalid", f"operator {k} opcode index out of range"
    if kind == 4:
        if rng.random() < 0.5:
            sg.inputs = [n_t + big - 1]
        else:
            sg.outputs = [n_t + big - 1]
        return _pack(m), "invalid", "subgraph input/output out of range"
    if kind == 5:
        consts = [j for j in range(n_t) if m.buffers[t[j].buffer].data is not None
                  and len(m.buffers[t[j].buffer].data) > 1]
        j = int(rng.choice(consts + [filt, hsh, bias] * 3))
        data = np.asarray(m.buffers[t[j].buffer].data, np.uint8)
        cut = int(rng.integers(1, len(data)))
        m.buffers[t[j].buffer].data = data[:-cut] if rng.random() < 0.7 else np.concatenate([data, data[:cut]])
        return _pack(m), "invalid", f"tensor {j} buffer length != shape"
    if kind == 6:
        s = list(t[filt].quantization.scale)
        s[int(rng.integers(len(s)))] = float(rng.choice([np.nan, -np.inf, np.inf, -0.01, 0.0, 1e38]))
        scale(filt, s)
        return _pack(m), "invalid", "TREC filter scale not finite and > 0 (or too large)"
    if kind == 7:
        s = list(t[filt].quantization.scale)
        keep = int(rng.integers(1, len(s)))
        t[filt].quantization.scale = s[:keep]
        t[filt].quantization.zeroPoint = [0] * keep
        return _pack(m), "invalid", f"TREC filter with {keep} scales for {len(s)} channels"
    if kind == 8:
        j = int(rng.choice([inp, out]))
        t[j].quantization.zeroPoint = [int(rng.choice([128, 300, -129, -1000, 2**31 - 1]))]
        return _pack(m), "invalid", "TREC input/output zero point out of int8"
    if kind == 9:
        j = int(rng.choice([inp, out]))
        scale(j, [float(rng.choice([np.nan, 0.0, -0.5, np.inf]))])
        return _pack(m), "invalid", "TREC input/output scale not finite and > 0"
    if kind in (10, 11, 12):
        o = _opts(op)
        key = str(rng.choice(["stride_h", "stride_w", "dilation_h", "dilation_w", "padding"]))
        if key == "padding":
            o["padding"] = "VALID" if o["padding"] == "SAME" else "SAME"
        else:
            o[key] = int(rng.choice([2, 3, 5, 2**30, 2**31 - 1]))
        _set_opts(op, o)
        in_shape, w_shape, out_shape = list(t[inp].shape), list(t[filt].shape), list(t[out].shape)
        ho = _out_size(in_shape[1], w_shape[1], o["stride_h"], o["dilation_h"], o["padding"])
        wo = _out_size(in_shape[2], w_shape[2], o["stride_w"], o["dilation_w"], o["padding"])
        ok = ho is not None and wo is not None and [1, ho, wo, w_shape[0]] == out_shape
        return _pack(m), "valid" if ok else "invalid", f"TREC option {key} = {o[key]}"
    if kind == 13:
        o = _opts(op)
        k_total = int(np.prod(t[filt].shape[1:]))
        length = int(rng.integers(k_total + 1, k_total + 40))
        o["sub_vector_length"] = length
        _set_opts(op, o)
        t[hsh].shape = [length, o["hash_bits"]]
        m.buffers[t[hsh].buffer].data = rng.integers(0, 256, length * o["hash_bits"]).astype(np.uint8)
        return _pack(m), "invalid", f"L = {length} > K = {k_total}"
    if kind == 14:
        o = _opts(op)
        key = str(rng.choice(["sub_vector_length", "hash_bits"]))
        o[key] = int(o[key] + rng.choice([-1, 1, 5]))
        _set_opts(op, o)
        return _pack(m), "invalid", f"{key} disagrees with the hash tensor"
    if kind == 15:
        o = _opts(op)
        what = int(rng.integers(3))
        if what == 0:
            o["version"] = int(rng.choice([0, 2, -1, 99]))
        elif what == 1:
            del o[str(rng.choice(sorted(o)))]
        else:
            o[str(rng.choice(["stride_h", "hash_bits", "padding"]))] = "x" if rng.random() < 0.5 else 1.5
        _set_opts(op, o)
        return _pack(m), "invalid", "TREC options version / missing key / wrong type"
    if kind == 16:
        j = int(rng.choice([filt, hsh]))
        b = _schema().BufferT()
        m.buffers.append(b)
        t[j].buffer = len(m.buffers) - 1
        return _pack(m), "invalid", f"TREC {'filter' if j == filt else 'hash'} not constant"
    if kind == 17:
        k = int(rng.integers(len(sg.operators) - 1))
        sg.operators[k], sg.operators[k + 1] = sg.operators[k + 1], sg.operators[k]
        return _pack(m), "invalid", f"operators {k} and {k + 1} swapped (read before write)"
    if kind == 18:
        zp = [0] * len(t[filt].quantization.scale)
        zp[int(rng.integers(len(zp)))] = int(rng.choice([1, -3, 127]))
        t[filt].quantization.zeroPoint = zp
        return _pack(m), "invalid", "TREC filter zero point != 0"
    if kind == 19:
        s = list(t[out].shape)
        s[int(rng.integers(1, 4))] += int(rng.choice([-1, 1, 3]))
        t[out].shape = s
        return _pack(m), "invalid", f"TREC output shape {s}"
    if kind == 20:
        keep = int(rng.integers(8, len(base) - 16))
        return base[:keep], "invalid", f"truncated to {keep} of {len(base)} bytes"
    if kind == 21:
        t[out].quantization.zeroPoint = [int(rng.integers(-128, 128))]
        t[inp].quantization.zeroPoint = [int(rng.integers(-128, 128))]
        return _pack(m), "valid", "TREC zero points changed within int8"
    if kind == 22:
        s = np.asarray(t[filt].quantization.scale, np.float32) * rng.uniform(0.5, 2.0, len(t[filt].quantization.scale))
        scale(filt, s.astype(np.float32).tolist())
        return _pack(m), "valid", "TREC filter scales rescaled"
    if kind == 23:
        for j in (filt, hsh):
            n = len(m.buffers[t[j].buffer].data)
            m.buffers[t[j].buffer].data = rng.integers(0, 256, n).astype(np.uint8)
        return _pack(m), "valid", "new filter and hash values"
    if kind == 24:
        o = _opts(op)
        o["hash_center"] = "none" if o["hash_center"] == "mean" else "mean"
        o["activation"] = str(rng.choice(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]))
        _set_opts(op, o)
        return _pack(m), "valid", "hash centre and activation changed"
    if kind == 25:
        j = int(rng.integers(n_t))
        t[j].shape = [1, int(rng.choice([1 << 16, 1 << 20, 2**31 - 1])), int(rng.choice([1 << 16, 1 << 20])), 8]
        return _pack(m), None, f"absurd shape on tensor {j}"
    # blind edits of the bytes: validity unknown
    raw = bytearray(base)
    if kind in (26, 27, 28):
        for _ in range(int(rng.integers(1, 5))):
            raw[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
        return bytes(raw), None, "bit flips"
    pos = int(rng.integers(0, (len(raw) - 4) // 4)) * 4
    raw[pos:pos + 4] = int(rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, len(raw), 12])).to_bytes(4, "little")
    return bytes(raw), None, f"int32 at byte {pos} overwritten"


# ------------------------------------------------------------------------------------------------
# the worker: runs the CLI's main for every case and reader, one Python process
# ------------------------------------------------------------------------------------------------
def worker(case_dir: Path) -> int:
    import functools
    import traceback

    from trec_tflm import cli, data

    # the same test set for every eval call: read it once
    data.load_dataset = functools.lru_cache(maxsize=None)(data.load_dataset)
    cases = json.loads((case_dir / "cases.json").read_text())
    progress = open(case_dir / "progress.txt", "a")
    results = open(case_dir / "results.jsonl", "a")
    for c in cases:
        readers = dict(READERS, **(READERS_INVALID_ONLY if c["label"] == "invalid" else {}))
        for reader, argv in readers.items():
            progress.write(f"{c['id']} {reader}\n")
            progress.flush()
            out_dir = case_dir / f"out-{c['id']}"
            args = [a.format(model=c["path"], out=out_dir) for a in argv]
            log = case_dir / "call.log"
            sys.stdout.flush()
            sys.stderr.flush()
            saved = os.dup(1), os.dup(2)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            escaped = None
            try:
                rc = cli.main(args)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - what the test looks for
                rc, escaped = 1, traceback.format_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                for f in (fd, *saved):
                    os.close(f)
            text = log.read_text(errors="replace")
            wrote = out_dir.exists()
            if wrote:
                import shutil

                shutil.rmtree(out_dir)
            results.write(json.dumps({"id": c["id"], "reader": reader, "rc": rc, "escaped": escaped,
                                      "output": text[-3000:], "wrote": wrote}) + "\n")
            results.flush()
    return 0


# ------------------------------------------------------------------------------------------------
# the test
# ------------------------------------------------------------------------------------------------
def _run_worker(case_dir: Path, cases: list, env: dict) -> subprocess.CompletedProcess:
    (case_dir / "cases.json").write_text(json.dumps(cases))
    return subprocess.run([sys.executable, __file__, str(case_dir)], env=env, capture_output=True, text=True,
                          timeout=1800)


@pytest.mark.tflm
@pytest.mark.slow
def test_damaged_models_never_crash_and_invalid_ones_are_refused(fashion, tmp_path):
    from trec_tflm.host import tflm_build

    lib = tflm_build.ops_library_path()  # eval --reference tflm needs it (the tflm marker: TFLM_ROOT is set)
    base = base_model(fashion)
    rng = np.random.default_rng(SEED)
    cases = []
    for i in range(CASES):
        buf, label, what = mutate(base, rng)
        p = tmp_path / f"case{i:03d}.tflite"
        p.write_bytes(buf)
        cases.append({"id": i, "path": str(p), "label": label, "what": what})
    (tmp_path / "base.tflite").write_bytes(base)
    labels = [c["label"] for c in cases]
    assert labels.count("invalid") > 100 and labels.count("valid") > 20 and labels.count(None) > 30

    env = dict(os.environ, TREC_TFLM_OPS_LIB=str(lib), TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    env.pop("TFLM_ROOT")  # deploy: the estimate path (no firmware build, no QEMU)
    results, crashes = [], []
    todo = list(cases)
    while todo:
        proc = _run_worker(tmp_path, todo, env)
        done = [json.loads(ln) for ln in (tmp_path / "results.jsonl").read_text().splitlines()] \
            if (tmp_path / "results.jsonl").exists() else []
        (tmp_path / "results.jsonl").unlink(missing_ok=True)
        results += done
        if proc.returncode == 0:
            break
        # the worker died: the call in progress crashed it; record it and go on after that case
        last = (tmp_path / "progress.txt").read_text().split()[-2:]
        sig = signal.Signals(-proc.returncode).name if proc.returncode < 0 else f"exit {proc.returncode}"
        crashes.append(f"case {last[0]} ({cases[int(last[0])]['what']}), {last[1]}: worker died with {sig}\n"
                       f"{proc.stderr[-2000:]}")
        todo = [c for c in todo if c["id"] > int(last[0])]
        (tmp_path / "progress.txt").unlink()
    assert not crashes, "\n\n".join(crashes)

    by_case = {c["id"]: c for c in cases}
    problems = []
    for r in results:
        c = by_case[r["id"]]
        where = f"case {c['id']} ({c['what']}, {c['label']}) {r['reader']}"
        if r["escaped"] or "Traceback (most recent call last)" in r["output"]:
            problems.append(f"{where}: traceback\n{r['escaped'] or r['output']}")
            continue
        if c["label"] == "invalid":
            # the refusal is one line that names the model file (so it is about the model)
            errors = [ln for ln in r["output"].splitlines() if c["path"] in ln]
            if r["rc"] == 0:
                problems.append(f"{where}: accepted an invalid model (exit 0)\n{r['output'][-800:]}")
            elif len(errors) != 1 or not (": error: " in errors[0] or errors[0].startswith("bench: ")):
                problems.append(f"{where}: refused without exactly one error line naming the model (exit "
                                f"{r['rc']})\n{r['output'][-800:]}")
            if r["wrote"]:
                problems.append(f"{where}: deploy refused the model but left {c['id']}'s project behind")
        if c["label"] == "valid" and r["reader"] == "inspect" and r["rc"] != 0:
            problems.append(f"{where}: refused a valid model\n{r['output'][-800:]}")
    n_invalid = sum(c["label"] == "invalid" for c in cases)
    assert len(results) == len(cases) * len(READERS) + n_invalid * len(READERS_INVALID_ONLY)
    assert not problems, f"{len(problems)} problems:\n\n" + "\n\n".join(problems[:15])


if __name__ == "__main__":
    sys.exit(worker(Path(sys.argv[1])))
