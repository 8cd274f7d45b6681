#!/usr/bin/env python3
"""Ship a `trec-tflm tune` output as a pre-trained model: copy OUT's trec.keras, trec.tflite,
dense.tflite and report.json into examples/pre_trained_models/NAME/ and record check.json, the int8
accuracy of both models on the first 1,000 test images on the golden route (tests/test_pretrained_models.py
checks it on another route, host TFLM).

    python examples/pre_trained_models/record.py OUT NAME --dataset fashion_mnist
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

FILES = ("trec.keras", "trec.tflite", "dense.tflite", "report.json")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="a trec-tflm tune output directory")
    p.add_argument("name")
    p.add_argument("--dataset", required=True)
    p.add_argument("--images", type=int, default=1000)
    args = p.parse_args(argv)

    from trec_tflm import data
    from trec_tflm.host.evaluate import evaluate
    from trec_tflm.spec import model as tm

    missing = [f for f in FILES if not (args.out / f).is_file()]
    if missing:
        raise SystemExit(f"{args.out}: missing {missing}; give a directory trec-tflm tune wrote")
    dest = Path(__file__).resolve().parent / args.name
    dest.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        shutil.copyfile(args.out / f, dest / f)
    m = tm.load_model((dest / "dense.tflite").read_bytes())
    shape = tuple(int(d) for d in m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]].shape[1:])
    ds = data.load_dataset(args.dataset, input_shape=shape)
    x, y = ds.x_test[:args.images], ds.y_test[:args.images]
    correct = {k: evaluate((dest / f"{k}.tflite").read_bytes(), x, y, reference="golden").correct
               for k in ("trec", "dense")}
    check = {"dataset": args.dataset, "images": len(x), "correct": correct,
             "accuracy": {k: v / len(x) for k, v in correct.items()}, "recorded_on": "golden route"}
    (dest / "check.json").write_text(json.dumps(check, indent=2) + "\n")
    print(json.dumps(check))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
