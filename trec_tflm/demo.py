"""``make demo`` / ``trec-tflm demo``: the whole workflow on real Fashion-MNIST images.

1. train the dense twin of the demo net (plain Conv2D), then the TREC net: initialised from the
   dense twin's weights and fine-tuned with its TREC layers (the usual way to make a TREC model);
2. print both test accuracies and the remaining ratio rc of every TREC layer;
3. convert both to int8 .tflite (TREC layers as TREC_CONV_2D), print their sizes and their int8
   accuracies next to the float ones on the same test images. The int8 evaluation runs on the
   first ``--eval-limit`` test images (default 1,000: the TREC model takes ~20-40 ms per image on the
   golden route, so the full 10,000 would take several minutes; pass --eval-limit 10000 for it);
4. with TFLM_ROOT set (README, "TFLM tree"): build both for the emulated Cortex-M7 board, run them
   through the serial benchmark protocol and print accuracy and instructions of each and their ratio.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trec_tflm.bench.compare import compare_on_qemu
from trec_tflm.data import load_fashion_mnist
from trec_tflm.host.evaluate import evaluate, keras_accuracy
from trec_tflm.target import toolchain
from trec_tflm.target.boards import DEFAULT_EMULATED_BOARD
from trec_tflm.tflite.convert import convert_file
from trec_tflm.training.train import TrainConfig, train


def register(p: argparse.ArgumentParser) -> None:
    add_demo_arguments(p)
    p.set_defaults(func=demo_command)


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the dense twin (default 2; 10 for full runs)")
    p.add_argument("--finetune-epochs", type=int, default=2,
                   help="epochs of the TREC net, fine-tuned from the dense twin (default 2)")
    p.add_argument("--train-limit", type=int, default=None, help="train on the first N images only")
    p.add_argument("--dataset-path", default=None, help="Fashion-MNIST directory (default: Debian package)")
    p.add_argument("--eval-limit", type=int, default=1000,
                   help="int8 accuracy on the first N test images (default 1000; 10000 = the whole test set)")
    p.add_argument("--calibration-samples", type=int, default=500, help="int8 calibration images (default 500)")
    p.add_argument("--qemu-images", type=int, default=20,
                   help="test images for the emulated-board comparison (needs TFLM_ROOT; default 20)")


def _rule(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 72 - len(title)), flush=True)


def demo_command(args) -> int:
    out = Path(args.out)
    ds = load_fashion_mnist(args.dataset_path)
    print(f"Fashion-MNIST from {ds.source}: {len(ds.x_train)} training, {len(ds.x_test)} test images")
    results = {}
    _rule("training the dense twin")
    dense_cfg = TrainConfig(model="fashion_net", dataset="fashion_mnist", checkpoint_path=str(out / "dense"),
                            epochs=args.epochs, trec=[], train_limit=args.train_limit, verbose=2)
    dense_result = train(dense_cfg, ds)
    _rule("fine-tuning the TREC model from the dense twin")
    trec_cfg = TrainConfig(model="fashion_net", dataset="fashion_mnist", checkpoint_path=str(out / "trec"),
                           epochs=args.finetune_epochs, lr=1e-3, train_limit=args.train_limit, verbose=2,
                           init_from=str(dense_result.checkpoint))
    results["TREC"] = train(trec_cfg, ds)
    results["dense"] = dense_result

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
    tflites = convert_stage(results, ds, args)
    qemu_stage(tflites, ds, args)
    return 0


def convert_stage(results: dict, ds, args) -> None:
    """Convert both checkpoints to int8 .tflite and evaluate them beside their float versions."""
    n = min(args.eval_limit, len(ds.x_test))
    _rule(f"int8 TFLite (first {n:,} test images)")
    rows = []
    for label, r in results.items():
        out = Path(r.checkpoint).with_suffix(".tflite")
        summary = convert_file(r.checkpoint, out, dataset="fashion_mnist", dataset_path=args.dataset_path,
                               calibration_samples=args.calibration_samples)
        buf = out.read_bytes()
        # TREC: TFLM with the C kernel when the glue is built here, else the golden route.
        # dense: golden route (CONV_2D in golden.conv2d_s8, bit-exact with TFLM's and ~20x faster than
        # the tflite-micro wheel's reference kernel; other ops in TFLM).
        res = evaluate(buf, ds.x_test, ds.y_test, reference="auto" if label == "TREC" else "golden", limit=n)
        float_acc = keras_accuracy(r.checkpoint, ds.x_test[:n], ds.y_test[:n])
        rows.append((label, summary["bytes"], float_acc, res))
        for note in res.notes:
            print(f"note ({label}): {note}")
    print(f"{'model':<8}{'.tflite bytes':>15}{'float acc':>11}{'int8 acc':>10}{'int8-float':>12}{'ms/img':>8}  route")
    for label, size, float_acc, res in rows:
        print(f"{label:<8}{size:>15,}{float_acc * 100:>10.2f}%{res.accuracy * 100:>9.2f}%"
              f"{(res.accuracy - float_acc) * 100:>+11.2f}pt{res.ms_per_image:>8.1f}  {res.route}")
    for label, _, _, res in rows:
        for name, rc in res.reuse_rates.items():
            print(f"  {label} {name}: rc = {rc:.4f} in int8 (golden kernel on the evaluated images)")
    print("files: " + ", ".join(str(Path(results[label].checkpoint).with_suffix(".tflite")) for label in results))
    return {label: Path(results[label].checkpoint).with_suffix(".tflite") for label in results}


def qemu_stage(tflites: dict, ds, args) -> None:
    """TREC vs dense twin on the emulated Cortex-M7 board, when a TFLM tree is configured."""
    import os

    _rule("emulated Cortex-M7 (QEMU mps2-an500): TREC vs dense twin")
    if not os.environ.get("TFLM_ROOT"):
        print("skipped: the TFLM trees are not configured: run `make deps` (fetches them into third_party/) or set "
              "TFLM_ROOT, FLATBUFFERS_ROOT and CMSIS_NN_ROOT (README, \"TFLM tree\") to build the firmware and "
              "compare both models on the emulated board")
        return
    reason = toolchain.skip_reason(need_qemu=True, need_toolchain=True)
    if reason:
        print(f"skipped: {reason}")
        return
    n = min(args.qemu_images, len(ds.x_test))
    result = compare_on_qemu(tflites["TREC"].read_bytes(), tflites["dense"].read_bytes(), DEFAULT_EMULATED_BOARD,
                             ds.x_test[:n], ds.y_test[:n], log=lambda line: print(line, flush=True))
    print(result.summary())
