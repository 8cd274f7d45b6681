"""``trec-tflm`` command line: one subcommand per step of the workflow.

Each subcommand lives in its own module, which exposes ``register(subparsers)``: it adds its
parser and sets ``func`` to a function ``(args) -> exit code``. Add a module to COMMANDS to add
a subcommand. Modules are imported lazily so ``trec-tflm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# (subcommand, module, one-line help)
COMMANDS = [
    ("train", "trec_tflm.train", "train a model with TREC layers (its dense twin with --trec none)"),
    ("demo", "trec_tflm.demo", "the whole workflow on Fashion-MNIST: train TREC and dense, compare"),
    ("bench", "trec_tflm.bench", "run a model on a board (or QEMU) over the serial benchmark protocol"),
    ("convert", "trec_tflm.convert", "Keras model -> int8 .tflite with TREC layers as TREC_CONV_2D custom ops"),
    ("inspect", "trec_tflm.inspect", "list a .tflite's operators, TREC options, work estimate, weights, arena"),
    ("bench-train", "trec_tflm.bench_train", "training-step cost of TRECConv2D relative to Conv2D (ratios)"),
    ("bench-kernels", "trec_tflm.bench_kernels", "TREC vs dense int8 conv instructions on emulated Cortex-M7/M4"),
    ("eval", "trec_tflm.evaluate", "int8 accuracy of a .tflite on the host (TFLM, or the golden TREC kernel)"),
    ("deploy", "trec_tflm.deploy", "a .tflite as a TFLM firmware project for a board; --build, --flash"),
    ("mlperf-dataset", "trec_tflm.mlperf", "test images in the MLPerf Tiny runner's format (y_labels.csv + .bin)"),
]


class CommandError(RuntimeError):
    """An error the user can fix; printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="trec-tflm", description="TREC convolution: train in Keras, "
                                     "deploy int8 with TensorFlow Lite Micro on STM32")
    parser.add_argument("--version", action="version", version=f"trec-tflm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module, help_text in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).register(p)
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    from .data import DatasetError

    try:
        return int(args.func(args) or 0)
    except (CommandError, DatasetError, ValueError, FileNotFoundError) as exc:
        print(f"trec-tflm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
