"""One TREC layer at the scratch sizes `trec-tflm tune` probes (trec_tflm.tune.memory): QEMU's
instructions against the host plan and the cost model's price, and which sizes tune flags.

For the layer's input from the first Fashion-MNIST test image, at the LADDER sizes from the
kernel's fastest plan's scratch down to its least: passes x chunk on the emulated core, the passes
of the host build (what tune sees), measured and predicted instructions relative to the fastest
plan, the price tune uses (the dearest at any larger size) and the flag (fewer passes, or a lower
price, than at a larger size: shorter sums blocks, which the cost model does not see).

    python examples/benchmarks/scratch_ladder.py MODEL.tflite LAYER [--core m7]

Needs the trees of `make deps` (TFLM_ROOT, CMSIS_NN_ROOT), arm-none-eabi-gcc and qemu-system-arm.
"""

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from trec_tflm import data
from trec_tflm.bench import kernel_runner
from trec_tflm.bench.kernels import _check, trec_cases
from trec_tflm.tune import cost, memory


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("layer")
    p.add_argument("--core", choices=cost.CORES, default="m7")
    args = p.parse_args()
    buf = Path(args.model).read_bytes()
    case = trec_cases(buf, data.load_dataset("fashion_mnist").x_test[:1], [args.layer])[args.layer][0]
    fast, least = kernel_runner.buffer_sizes(case)
    sizes = [fast, *np.geomspace(fast, least, memory.LADDER)[1:-1].astype(int).tolist(), least]
    runs = [dataclasses.replace(case, name=f"s{i}", scratch_bytes=int(s), dense=False) for i, s in enumerate(sizes)]
    measured = {}
    with tempfile.TemporaryDirectory() as tmp:
        for at in range(0, len(runs), 4):
            res = kernel_runner.build_and_run(args.core, runs[at:at + 4], Path(tmp) / f"b{at}")
            _check(res)
            measured.update(res.trec)
    kw = case.params
    conv = cost.Conv.of(case.input.shape, case.filter.shape, kw["stride"], kw["dilation"], kw["padding"])
    rows, dearest, most_passes = [], 0.0, 0
    for c in runs:
        q = cost.host_plan(case.input, case.filter, case.hash, sub_vector_length=kw["sub_vector_length"],
                           hash_bits=kw["hash_bits"], input_zero_point=kw["input_zero_point"],
                           hash_center=kw["hash_center"], stride=kw["stride"], dilation=kw["dilation"],
                           padding=kw["padding"], scratch_bytes=c.scratch_bytes)[0]
        predicted = cost.predict_trec(conv, kw["sub_vector_length"], kw["hash_bits"], max(q.rc, 1e-6), q.passes,
                                      q.scatter_tenths, args.core, q.sums_block, q.plan)
        flagged = predicted < dearest or q.passes < most_passes
        dearest, most_passes = max(dearest, predicted), max(most_passes, q.passes)
        rows.append((c.scratch_bytes, measured[c.name], q, predicted, dearest, flagged))
    m0, p0 = rows[0][1].ticks, rows[0][3]
    print(f"| scratch B | passes x chunk ({args.core}) | host passes | instructions | measured | predicted | "
          "tune's price | flagged |")
    print("|---|---|---|---|---|---|---|---|")
    for size, r, q, predicted, price, flagged in rows:
        print(f"| {size:,} | {r.passes} x {r.chunk} | {q.passes} | {r.ticks:,} | {r.ticks / m0:.2f}x | "
              f"{predicted / p0:.2f}x | {price / p0:.2f}x | {'yes' if flagged else ''} |")


if __name__ == "__main__":
    main()
