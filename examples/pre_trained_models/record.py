#!/usr/bin/env python3
"""Ship a trained model as a pre-trained model in examples/pre_trained_models/NAME/, laid out as
`trec-tflm tune` writes its output: trec.keras, trec.tflite, dense.tflite and report.json, plus
check.json, the int8 accuracy of both models on the first 1,000 test images on one route (--route:
the golden route, NumPy references for the convolutions, or host TFLM); tests/test_pretrained_models.py
checks it on the other. Host TFLM runs TFLM's reference kernels, several times slower than the golden
route on the 32x32x3 models, so those are recorded on host TFLM and checked on the golden route.

OUT is either
* a `trec-tflm tune` output directory (trec.keras, trec.tflite, dense.tflite, report.json): copied
  as it is; give --dataset (tune's report does not name the data), or
* a `trec-tflm bench-models` model directory, --out/<model>/ (trec.keras, trec.tflite, dense.tflite,
  result.json, settings.json): report.json is then its result.json with "source": "trec-tflm
  bench-models" and the settings; the dataset is the one the result names.

trec.keras is saved without the optimizer's state. The directory is written whole or not at all
(built beside it, then renamed). It prints the
README table's row for the model.

    python examples/pre_trained_models/record.py TUNE_OUT fashion_net --dataset fashion_mnist
    python examples/pre_trained_models/record.py bench_models_out/cifarnet cifarnet
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

MODEL_FILES = ("trec.keras", "trec.tflite", "dense.tflite")
TUNE_FILES = (*MODEL_FILES, "report.json")
BENCH_MODELS_FILES = (*MODEL_FILES, "result.json", "settings.json")
BENCH_MODELS_SOURCE = "trec-tflm bench-models"
HERE = Path(__file__).resolve().parent


class RecordError(ValueError):
    """OUT cannot be shipped as given; the message says why and what to give instead."""


def _missing(out: Path, files) -> list[str]:
    return [f for f in files if not (out / f).is_file()]


def report_of(out: Path, dataset: str | None) -> tuple[dict, str]:
    """(report.json's document, the dataset) for OUT, a tune output or a bench-models model directory."""
    if not out.is_dir():
        raise RecordError(f"{out} is not a directory: give a trec-tflm tune output or a bench-models --out/<model>")
    if not _missing(out, TUNE_FILES):
        if not dataset:
            raise RecordError(f"{out} is a tune output, whose report does not name the data: give --dataset")
        return json.loads((out / "report.json").read_text()), dataset
    if not _missing(out, BENCH_MODELS_FILES):
        result = json.loads((out / "result.json").read_text())
        if "error" in result or "boards" not in result:
            raise RecordError(f"{out / 'result.json'} is not a finished bench-models result")
        if dataset and dataset != result["dataset"]:
            raise RecordError(f"--dataset {dataset}: {out} was measured on {result['dataset']}; leave --dataset out")
        return {"source": BENCH_MODELS_SOURCE, **result}, result["dataset"]
    raise RecordError(f"{out}: missing {_missing(out, TUNE_FILES)} for a tune output and "
                      f"{_missing(out, BENCH_MODELS_FILES)} for a bench-models model directory")


CORES = ("qemu_m7", "qemu_m4")  # the README table's speedup columns


def readme_row(name: str, report: dict, check: dict, dest: Path) -> str:
    """The README table's row: model, data, int8 test accuracy, speedup on each core, size."""
    size = sum(f.stat().st_size for f in dest.iterdir())
    sizes = f"{(dest / 'trec.tflite').stat().st_size:,} B ({size / 2**20:.2f} MB with the rest)"
    if report.get("source") == BENCH_MODELS_SOURCE:
        t, d = report["trec"], report["dense"]
        acc = (f"{100 * t['accuracy']:.2f}% / {100 * d['accuracy']:.2f}% ({report['accuracy_change_pt']:+.2f} pt, "
               f"{t['test_images']:,} images)")
        speed = {b: f"**{r['speedup']:.2f}x** (arena {r['arena_ratio']:.2f}x)" for b, r in report["boards"].items()}
        data = report["dataset"]
    else:
        ta, m = report.get("test_accuracy"), report.get("measured")
        acc = (f"{100 * ta['trec']:.2f}% / {100 * ta['dense']:.2f}% ({ta['images']:,} images)" if ta
               else f"{check['accuracy']['trec']:.2%} / {check['accuracy']['dense']:.2%} ({check['images']} images)")
        speed = {m["board"]: f"**{m['speedup']:.2f}x**"} if m else {}
        data = check["dataset"]
    return f"| {name} | {data} | {acc} | " + " | ".join(speed.get(c, "-") for c in CORES) + f" | {sizes} |"


ROUTES = {"golden": "golden route", "tflm": "host TFLM route"}


def record(out: Path, name: str, dataset: str | None = None, images: int = 1000, root: Path = HERE,
           route: str = "golden") -> dict:
    """Ship OUT as root/NAME; returns check.json's document."""
    if route not in ROUTES:
        raise RecordError(f"route {route!r}: choose among {', '.join(ROUTES)}")
    from trec_tflm import data
    from trec_tflm.host.evaluate import evaluate
    from trec_tflm.spec import model as tm
    from trec_tflm.training.saving import load_keras_model

    report, dataset = report_of(out, dataset)
    dest = root / name
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for f in ("trec.tflite", "dense.tflite"):
            shutil.copyfile(out / f, tmp / f)
        # saved uncompiled: the optimizer's state (twice the weights with Adam) is not shipped
        load_keras_model(out / "trec.keras").save(tmp / "trec.keras")
        if report.get("source") == BENCH_MODELS_SOURCE:
            (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        else:
            shutil.copyfile(out / "report.json", tmp / "report.json")
        m = tm.load_model((tmp / "dense.tflite").read_bytes())
        shape = tuple(int(d) for d in m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]].shape[1:])
        ds = data.load_dataset(dataset, input_shape=shape)
        x, y = ds.x_test[:images], ds.y_test[:images]
        correct = {k: evaluate((tmp / f"{k}.tflite").read_bytes(), x, y, reference=route).correct
                   for k in ("trec", "dense")}
        check = {"dataset": dataset, "images": len(x), "correct": correct,
                 "accuracy": {k: v / len(x) for k, v in correct.items()}, "recorded_on": ROUTES[route]}
        (tmp / "check.json").write_text(json.dumps(check, indent=2) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(check))
    print(readme_row(name, report, check, dest))
    return check


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="a trec-tflm tune output or a bench-models --out/<model> directory")
    p.add_argument("name", help="the directory to write under examples/pre_trained_models/")
    p.add_argument("--dataset", default=None,
                   help="the test data (a tune output needs it; a bench-models result names its own)")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--route", choices=sorted(ROUTES), default="golden",
                   help="the route check.json is recorded on (the test checks on the other; default golden)")
    p.add_argument("--into", type=Path, default=HERE,
                   help="write NAME under this directory instead (a trial run; default: beside this script)")
    args = p.parse_args(argv)
    try:
        record(args.out, args.name, args.dataset, args.images, root=args.into, route=args.route)
    except RecordError as exc:
        raise SystemExit(f"record.py: error: {exc}") from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
