#!/usr/bin/env python3
"""Train a TREC model with the original TREC scripts' flags.

The paper's artifact is driven like

    python train_model.py --model_name=SqueezeNet --checkpoint_path=ckpt --dataset_path=cifar-10-batches-py \
        --trec=0,1 --L=5,10 --H=15,10

This script accepts those flags (with ``_`` or ``-``) and runs ``trec-tflm train``:
``--model_name`` takes the paper's names (CifarNet, ZfNet, SqueezeNet, SqueezeNet_complex) or ours,
``--trec`` lists the indices of the convolutions that become TREC layers (in build order; ``none``
for the dense twin), ``--L`` / ``--H`` one value per TREC convolution (or one for all).
Without ``--dataset_path`` a CIFAR-10 model falls back to Keras' downloader (needs internet);
``--dataset fashion_mnist`` trains on Fashion-MNIST instead.
"""

from __future__ import annotations

import argparse
import sys

from trec_tflm.cli import main as cli_main
from trec_tflm.training.models import ALIASES, MODELS


def translate(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_name", "--model-name", default="CifarNet")
    p.add_argument("--checkpoint_path", "--checkpoint-path", required=True)
    p.add_argument("--dataset_path", "--dataset-path", default=None)
    p.add_argument("--dataset", default=None, help="cifar10 (default for the paper's models) or fashion_mnist")
    p.add_argument("--trec", default=None)
    p.add_argument("--L", default=None)
    p.add_argument("--H", default=None)
    p.add_argument("--epochs", "--num_epochs", type=int, default=None)
    p.add_argument("--batch_size", "--batch-size", type=int, default=None)
    p.add_argument("--lr", "--learning_rate", type=float, default=None)
    args = p.parse_args(argv)
    model = ALIASES.get(args.model_name, args.model_name)
    if model not in MODELS:
        p.error(f"unknown --model_name {args.model_name!r}; choose one of "
                f"{', '.join(sorted(set(ALIASES) | set(MODELS)))}")
    dataset = args.dataset or MODELS[model].dataset
    out = ["train", "--model", model, "--dataset", dataset, "--checkpoint-path", args.checkpoint_path]
    if args.dataset_path:
        out += ["--dataset-path", args.dataset_path]
    for flag, value in (("--trec", args.trec), ("--L", args.L), ("--H", args.H), ("--epochs", args.epochs),
                        ("--batch-size", args.batch_size), ("--lr", args.lr)):
        if value is not None:
            out += [flag, str(value)]
    if dataset == "cifar10":
        out.append("--augment")
    return out


if __name__ == "__main__":
    sys.exit(cli_main(translate(sys.argv[1:])))
