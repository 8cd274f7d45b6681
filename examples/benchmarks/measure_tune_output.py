#!/usr/bin/env python3
"""Measure a `trec-tflm tune` output (OUT/trec.tflite against OUT/dense.tflite) on the emulated cores,
the same call tune makes for its --core (trec_tflm.tune.measure.measure): one JSON line per core.

    python examples/benchmarks/measure_tune_output.py OUT --dataset fashion_mnist --cores m7,m4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--dataset", required=True)
    p.add_argument("--cores", default="m7,m4")
    p.add_argument("--images", type=int, default=20)
    args = p.parse_args(argv)

    from trec_tflm import data
    from trec_tflm.tune import measure

    report = json.loads((args.out / "report.json").read_text())
    layers = [row["layer"] for row in report["layers"]]
    trec, dense = (args.out / "trec.tflite").read_bytes(), (args.out / "dense.tflite").read_bytes()
    x = None
    for core in args.cores.split(","):
        if x is None:
            from trec_tflm.spec import model as tm

            m = tm.load_model(dense)
            shape = tuple(int(d) for d in m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]].shape[1:])
            x = data.load_dataset(args.dataset, input_shape=shape).x_test
        doc, why = measure.measure(trec, dense, x, core=core, images=args.images, layers=layers, images_from="test",
                                   log=lambda msg: print(msg, file=sys.stderr))
        print(json.dumps({"core": core, "measured": doc, "why": why}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
