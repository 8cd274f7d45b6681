"""``trec-tflm`` command line: one subcommand per step of the workflow."""

from __future__ import annotations

import argparse
import os
import sys


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="trec-tflm", description=__doc__)
    parser.add_argument("--version", action="version", version=f"trec-tflm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from . import demo, train

    p = sub.add_parser("train", help="train a model with TREC layers (and its dense twin with --trec none)")
    train.add_train_arguments(p)
    p.set_defaults(func=train.train_command)

    p = sub.add_parser("demo", help="train TREC and dense Fashion-MNIST nets and compare them")
    demo.add_demo_arguments(p)
    p.set_defaults(func=demo.demo_command)
    return parser


class CommandError(RuntimeError):
    """An error the user can fix; printed without a traceback."""


def main(argv=None) -> int:
    _quiet_tensorflow()
    parser = build_parser()
    args = parser.parse_args(argv)
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
