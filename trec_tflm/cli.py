"""``trec-tflm`` command line: one subcommand per step of the workflow.

Each subcommand lives in its own module, which exposes ``register(subparsers)``: it adds its
parser and sets ``func`` to a function ``(args) -> exit code``. Add a module to COMMANDS to add
a subcommand. Only the chosen subcommand's module is imported, so ``trec-tflm --help`` and
``trec-tflm CMD --help`` answer without loading TensorFlow; a command loads it when its work
needs it.

Errors: every exception that escapes a command becomes one line ``trec-tflm CMD: error: ...``
and a non-zero exit (2 for input the user can fix, 1 for anything else, 130 for Ctrl-C);
``--debug`` shows the traceback and TensorFlow's own start-up log.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from trec_tflm import __version__, tf_quiet
from trec_tflm.errors import UserError

# (subcommand, module, one-line help)
COMMANDS = [
    ("train", "trec_tflm.training.train", "train a model with TREC layers (its dense twin with --trec none)"),
    ("demo", "trec_tflm.demo", "the whole workflow on Fashion-MNIST: train TREC and dense, compare"),
    ("bench", "trec_tflm.bench.command", "run a model on a board (or QEMU) over the serial benchmark protocol"),
    ("convert", "trec_tflm.tflite.convert", "Keras model -> int8 .tflite with TREC layers as TREC_CONV_2D custom ops"),
    ("inspect", "trec_tflm.tflite.describe", "list a .tflite's operators, TREC options, work estimate, weights, arena"),
    ("bench-train", "trec_tflm.bench.training", "training-step cost of TRECConv2D relative to Conv2D (ratios)"),
    ("bench-kernels", "trec_tflm.bench.kernels", "TREC vs dense int8 conv instructions on emulated Cortex-M7/M4"),
    ("bench-models", "trec_tflm.bench_models_cli",
     "zoo models whole: TREC vs dense twin, accuracy, instructions on QEMU"),
    ("eval", "trec_tflm.host.evaluate", "int8 accuracy of a .tflite on the host (TFLM, or the golden TREC kernel)"),
    ("deploy", "trec_tflm.target.deploy", "a .tflite as a TFLM firmware project for a board; --build, --flash"),
    ("deps", "trec_tflm.deps", "fetch (or check) the pinned TFLM, flatbuffers and CMSIS-NN trees the TFLM tier needs"),
    ("tune", "trec_tflm.tune.command",
     "choose where TREC pays and with which (L, H) in your own .keras model, fine-tune, convert"),
    ("mlperf-dataset", "trec_tflm.bench.mlperf_runner",
     "test images in the MLPerf Tiny runner's format (y_labels.csv + .bin)"),
]

# packages that extras bring, and how to get them
OPTIONAL_PACKAGES = {
    "tflite_micro": "this command runs models in TFLM on the host, which needs the tflite-micro wheel: "
                    "pip install 'trec-tflm[tflm]' (make demo and make test install it)",
    "skimage": "bench-kernels feeds first layers scikit-image's sample photographs: pip install 'trec-tflm[bench]'",
}


# bad input or a missing prerequisite: exit 2, no traceback (every other error: exit 1)
USER_ERRORS = (UserError, ValueError, OSError)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``only``, just that subcommand's module is imported and registered
    (the others are listed with their one-line help)."""
    parser = argparse.ArgumentParser(prog="trec-tflm", description="TREC convolution: train in Keras, "
                                     "deploy int8 with TensorFlow Lite Micro on STM32")
    parser.add_argument("--version", action="version", version=f"trec-tflm {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks and TensorFlow's start-up log (hidden otherwise)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module, help_text in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            importlib.import_module(module).register(p)
    return parser


def _command_of(argv) -> str | None:
    """The subcommand ``argv`` names: its first word that is not a global option."""
    names = {name for name, _, _ in COMMANDS}
    for word in argv:
        if not word.startswith("-"):
            return word if word in names else None
    return None


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    try:
        args = build_parser(only=command or "").parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C while a command's module loads
        print(f"\ntrec-tflm {command or ''}: interrupted".rstrip(), file=sys.stderr)
        return 130
    if not args.debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        tf_quiet.install()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"\ntrec-tflm {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place every failure becomes one line
        if args.debug:
            traceback.print_exc()
        user = isinstance(exc, USER_ERRORS)
        what = str(exc) or type(exc).__name__
        if isinstance(exc, ModuleNotFoundError) and exc.name in OPTIONAL_PACKAGES:
            user, what = True, f"{what}: {OPTIONAL_PACKAGES[exc.name]}"
        if not user:
            what = f"{type(exc).__name__}: {what} (an unexpected failure: rerun with --debug for the traceback)"
        print(f"trec-tflm {args.command}: error: {what}", file=sys.stderr)
        return 2 if user else 1


def console_main() -> None:
    """The ``trec-tflm`` executable (and ``python -m trec_tflm``)."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()
