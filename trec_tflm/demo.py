"""``make demo`` / ``trec-tflm demo``: the whole workflow on real Fashion-MNIST images.

1. train the demo net with TREC layers and its dense twin (same net, plain Conv2D);
2. print both test accuracies and the remaining ratio rc of every TREC layer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .train import TrainConfig, train


def register(p: argparse.ArgumentParser) -> None:
    add_demo_arguments(p)
    p.set_defaults(func=demo_command)


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs per model (default 3; 10 for full runs)")
    p.add_argument("--train-limit", type=int, default=None, help="train on the first N images only")
    p.add_argument("--dataset-path", default=None, help="Fashion-MNIST directory (default: Debian package)")


def _rule(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 72 - len(title)), flush=True)


def demo_command(args) -> int:
    from .data import load_fashion_mnist

    out = Path(args.out)
    ds = load_fashion_mnist(args.dataset_path)
    print(f"Fashion-MNIST from {ds.source}: {len(ds.x_train)} training, {len(ds.x_test)} test images")
    results = {}
    for label, trec in (("TREC", None), ("dense", [])):
        _rule(f"training the {label} model")
        cfg = TrainConfig(model="fashion_net", dataset="fashion_mnist", checkpoint_path=str(out / label.lower()),
                          epochs=args.epochs, trec=trec, train_limit=args.train_limit, verbose=2)
        results[label] = train(cfg, ds)

    _rule("results (Fashion-MNIST test set, 10,000 images)")
    trec, dense = results["TREC"], results["dense"]
    print(f"{'model':<8}{'test accuracy':>15}{'train time':>13}")
    for label, r in results.items():
        print(f"{label:<8}{r.test_accuracy * 100:>14.2f}%{r.seconds:>12.0f}s")
    print(f"accuracy difference TREC - dense: {(trec.test_accuracy - dense.test_accuracy) * 100:+.2f} pt")
    settings = trec.history["settings"]["trec_layers"]
    print("\nremaining ratio rc = clusters / rows, per TREC layer (test set):")
    for name, rc in trec.reuse_rates.items():
        s = settings[name]
        print(f"  {name:<8} L={s['sub_vector_length']:<3} H={s['hash_bits']:<3} rc={rc:.4f}")
    print(f"\nmodels: {trec.checkpoint} and {dense.checkpoint}")
    return 0
