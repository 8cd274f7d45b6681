"""``trec-tflm tune MODEL.keras``: the command line of :func:`trec_tflm.tune.run.tune`."""

from __future__ import annotations

import argparse

from trec_tflm.data import DATASETS, load_dataset
from trec_tflm.target.boards import BOARDS
from trec_tflm.tune import measure
from trec_tflm.tune.cost import CORES
from trec_tflm.tune.run import TuneError, tune


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="the trained Keras model (.keras) to make fast")
    p.add_argument("--dataset", required=True, help=f"its training data: {', '.join(DATASETS)}")
    p.add_argument("--dataset-path", default=None, help="where the dataset is (required for --dataset images)")
    p.add_argument("-o", "--output", required=True,
                   help="output directory: trec.keras, trec.tflite, dense.tflite, report.json, candidates.png "
                        "(and .tune/, the cache a rerun reuses)")
    p.add_argument("--max-drop", type=float, default=1.0,
                   help="accepted int8 validation accuracy loss, in points (default 1.0)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--board", choices=sorted(BOARDS), default=None,
                        help="the arena must fit this board's RAM (default: the QEMU board of --core)")
    budget.add_argument("--arena-budget", type=int, default=None, help="the arena must fit this many bytes")
    p.add_argument("--core", choices=CORES, default="m7", help="core the cost model predicts for (default m7)")
    p.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs per setting (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-limit", type=int, default=None,
                   help="fine-tune on at most this many training images (default all)")
    p.add_argument("--test-limit", type=int, default=None,
                   help="report test accuracy on at most this many test images (default all)")
    p.add_argument("--measure-images", type=_count, default=measure.DEFAULT_IMAGES, metavar="N",
                   help="run the result and the input model in TFLM on the QEMU board of --core on N test images and "
                        "report measured instructions beside the predicted ones (needs the TFLM tree, "
                        f"arm-none-eabi-gcc and qemu-system-arm; default {measure.DEFAULT_IMAGES}; 0 skips it)")
    p.set_defaults(func=tune_command)


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number of images >= 0, got {text!r}")
    return n


def tune_command(args) -> int:
    from trec_tflm.training import saving  # lazy: Keras and TensorFlow

    try:
        model = saving.load_keras_model(args.model)
    except saving.KerasModelError as exc:
        raise TuneError(f"{args.model}: {exc}") from None
    ds = load_dataset(args.dataset, args.dataset_path, input_shape=tuple(model.inputs[0].shape[1:]))
    x, y = ds.x_train, ds.y_train
    if args.train_limit:
        x, y = x[:args.train_limit], y[:args.train_limit]
    limit = args.test_limit or len(ds.x_test)
    tune(model, (x, y), max_drop=args.max_drop, board=args.board, arena_budget=args.arena_budget, core=args.core,
         epochs=args.epochs, seed=args.seed, out=args.output, test_data=(ds.x_test[:limit], ds.y_test[:limit]),
         measure_images=args.measure_images)
    return 0
