"""Training: ``trec-tflm train`` and the library function behind it.

Writes into the checkpoint directory: ``best.keras`` (best validation accuracy),
``history.json`` (per epoch: loss, accuracy, validation figures, rc of every TREC layer; at the
end the test accuracy of the best checkpoint and the settings used).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trec_tflm import paths
from trec_tflm.data import DATASETS, Dataset, load_dataset
from trec_tflm.training.zoo import ALIASES, model_names

# keras, TensorFlow and the modules built on them (training.layers, models, transform, distill) are
# imported inside the functions that train: `trec-tflm train --help` and the commands that only read
# this module's TrainConfig must not wait 4-8 s for TensorFlow.


def is_zoo_model(name: str) -> bool:
    return name in model_names() or name in ALIASES


#: images held out of the training data's end for validation (train's checkpoint choice, tune's accuracy)
VALIDATION_SIZE = 5000


@dataclass
class TrainConfig:
    model: str = "fashion_net"  # a zoo name or a .keras file (see is_zoo_model)
    dataset: str = "fashion_mnist"
    dataset_path: str | None = None
    checkpoint_path: str = "runs/fashion_net"
    epochs: int = 3
    batch_size: int = 64
    lr: float = 2e-3
    trec: list[int] | None = None  # None: the model's default TREC convs; []: dense twin
    sub_vector_length: list[int] | None = None
    hash_bits: list[int] | None = None
    hash_center: str = "mean"
    hash_trainable: bool = True
    train_limit: int | None = None  # use the first N training images (quick runs)
    validation_size: int = VALIDATION_SIZE
    augment: bool = False
    init_from: str | None = None  # a trained (dense) .keras whose weights start this model
    distill_from: str | None = None  # a trained .keras (the dense twin) to distil from, see distill.py
    distill_weight: float = 0.5
    distill_temperature: float = 4.0
    seed: int = 0
    verbose: int | str = "auto"


@dataclass
class TrainResult:
    checkpoint: Path
    history: dict
    test_accuracy: float
    reuse_rates: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def check_config(cfg: TrainConfig) -> None:
    """Refuse settings that would train on something else than asked, or fail after minutes of
    work, before anything starts (ValueError naming the option)."""
    def bad(option, value, rule):
        raise ValueError(f"{option} {value!r}: {rule}")

    if cfg.epochs < 1:
        bad("--epochs", cfg.epochs, "must be >= 1")
    if cfg.batch_size < 1:
        bad("--batch-size", cfg.batch_size, "must be >= 1")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        bad("--lr", cfg.lr, "must be a finite number > 0")
    if cfg.train_limit is not None and cfg.train_limit < 1:
        bad("--train-limit", cfg.train_limit, "must be >= 1 (omit it to train on every image)")
    if cfg.validation_size < 1:
        bad("validation_size", cfg.validation_size, "must be >= 1")
    if not 0.0 <= cfg.distill_weight <= 1.0:
        bad("--distill-weight", cfg.distill_weight, "must be in [0, 1]")
    if not (math.isfinite(cfg.distill_temperature) and cfg.distill_temperature > 0):
        bad("--distill-temperature", cfg.distill_temperature, "must be a finite number > 0")
    for option, value in (("--L", cfg.sub_vector_length), ("--H", cfg.hash_bits)):
        if value and any(v < 1 for v in value):
            bad(option, value, "every value must be >= 1")
    if not is_zoo_model(cfg.model):
        _check_model_file(cfg.model)
    for option, value in (("--init-from", cfg.init_from), ("--distill-from", cfg.distill_from)):
        if value and not Path(value).is_file():
            bad(option, value, "no such file (a trained .keras model)")
    out = Path(cfg.checkpoint_path)
    if out.exists() and not out.is_dir():
        bad("--checkpoint-path", str(out), "is a file; give a directory (best.keras and history.json go there)")
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        bad("--checkpoint-path", str(out), f"{parent} is a file, so the directory cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        bad("--checkpoint-path", str(out), f"no permission to write in {parent}")


def _check_model_file(path: str) -> None:
    """A --model that is no zoo name must be a Keras 3 .keras archive (checked without Keras)."""
    p = Path(path)
    zoo = ", ".join(model_names())
    if p.suffix != ".keras" and not p.exists():
        raise ValueError(f"--model {path!r}: neither a zoo model ({zoo}) nor a .keras file")
    if not p.is_file():
        raise ValueError(f"--model {path!r}: no such file (give a Keras model saved as .keras, or one of {zoo})")
    try:
        with zipfile.ZipFile(p) as archive:
            ok = p.suffix == ".keras" and "config.json" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        ok = False
    if not ok:
        raise ValueError(f"--model {path!r}: not a Keras 3 model file; save the model with "
                         "model.save('NAME.keras') (a .keras archive, not .h5 or a SavedModel)")


@contextlib.contextmanager
def _sigint_deferred():
    """Hold Ctrl-C while a checkpoint is saved and renamed into place, then deliver it: an
    interrupt never leaves only a half-written temporary file (not even at the first save)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        if callable(previous):  # Python's default_int_handler raises KeyboardInterrupt
            previous(signal.SIGINT, None)
        elif previous != signal.SIG_IGN:  # ignored Ctrl-C (a background job, nohup) stays ignored
            raise KeyboardInterrupt


def held_out(n: int, validation_size: int = VALIDATION_SIZE) -> int:
    """How many of ``n`` training images train holds out for validation: the last tenth, up to
    ``validation_size`` (tune and bench-models hold out the same images)."""
    return min(validation_size, n // 10)


def _split(ds: Dataset, cfg: TrainConfig):
    x, y = ds.x_train, ds.y_train
    n_val = held_out(len(x), cfg.validation_size)
    if n_val < 1:  # x[-0:] would validate on every image and train on none
        raise ValueError(f"--dataset {cfg.dataset}: {len(x)} training images; train needs at least 10 (a tenth, "
                         "up to validation_size, is held out for validation): add images")
    x_val, y_val = x[-n_val:], y[-n_val:]
    x_tr, y_tr = x[:-n_val], y[:-n_val]
    if cfg.train_limit:
        x_tr, y_tr = x_tr[:cfg.train_limit], y_tr[:cfg.train_limit]
    return (x_tr, y_tr), (x_val, y_val)


def _augmenter():
    import keras

    return keras.Sequential([keras.layers.RandomFlip("horizontal"),
                             keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant")],
                            name="augment")


def outputs_probabilities(model) -> bool:
    """The model ends in a softmax (a Keras model of one's own often does; the zoo's give logits)."""
    import keras

    op = model.outputs[0]._keras_history.operation
    while isinstance(op, keras.Model) and getattr(op, "outputs", None):  # a nested model at the end
        op = op.outputs[0]._keras_history.operation
    if isinstance(op, keras.layers.Softmax):
        return True
    return getattr(getattr(op, "activation", None), "__name__", "") == "softmax"


def _read_model_file(path):
    from trec_tflm.training.saving import load_keras_model

    return load_keras_model(path)


def load_user_model(cfg: TrainConfig, ds: Dataset, model=None):
    """``--model FILE.keras`` (or ``model``, already loaded from it): the model, checked against the
    dataset, with ``--trec/--L/--H`` applied through ``trec_tflm.training.transform.select``."""
    from trec_tflm.training.transform import select

    model = model if model is not None else _read_model_file(cfg.model)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"--model {cfg.model}: has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                         "train takes a classifier with one image input and one output")
    shape = tuple(model.inputs[0].shape[1:])
    if shape != tuple(ds.input_shape):
        raise ValueError(f"--model {cfg.model}: takes images of shape {shape}, but --dataset {cfg.dataset} has "
                         f"{tuple(ds.input_shape)}; choose the dataset the model was built for")
    classes = model.outputs[0].shape[-1]
    if len(model.outputs[0].shape) != 2 or classes != ds.num_classes:
        raise ValueError(f"--model {cfg.model}: outputs shape {tuple(model.outputs[0].shape)}, but --dataset "
                         f"{cfg.dataset} has {ds.num_classes} classes; give a classifier with {ds.num_classes} outputs")
    if cfg.distill_from and outputs_probabilities(model):
        raise ValueError(f"--model {cfg.model}: ends in a softmax; --distill-from needs a model that outputs "
                         "logits (drop the softmax, the loss applies it)")
    return select(model, cfg.trec, cfg.sub_vector_length, cfg.hash_bits, hash_center=cfg.hash_center,
                  hash_trainable=cfg.hash_trainable)


def compile_model(model, lr: float, steps: int, metrics_of=None):
    """Adam with cosine decay over ``steps``; rc metrics of ``metrics_of`` (default: ``model``).
    The loss takes logits, or probabilities when the model ends in a softmax."""
    import keras

    from trec_tflm.training.layers import reuse_metrics

    probabilities = outputs_probabilities(metrics_of if metrics_of is not None else model)
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(steps, 1), alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities),
                  metrics=["accuracy", *reuse_metrics(metrics_of if metrics_of is not None else model)])


def train(cfg: TrainConfig, dataset: Dataset | None = None) -> TrainResult:
    import keras
    import tensorflow as tf

    from trec_tflm.training.layers import trec_layers
    from trec_tflm.training.models import build_model

    check_config(cfg)
    keras.utils.set_random_seed(cfg.seed)
    user_model = None
    if not is_zoo_model(cfg.model) and cfg.dataset == "images" and dataset is None:
        user_model = _read_model_file(cfg.model)  # its input size is the size the images are resized to
    ds = dataset or load_dataset(cfg.dataset, cfg.dataset_path,
                                 input_shape=tuple(user_model.inputs[0].shape[1:]) if user_model else None)
    (x_tr, y_tr), (x_val, y_val) = _split(ds, cfg)
    if is_zoo_model(cfg.model):
        model = build_model(cfg.model, input_shape=ds.input_shape, num_classes=ds.num_classes, trec=cfg.trec,
                            sub_vector_length=cfg.sub_vector_length, hash_bits=cfg.hash_bits,
                            hash_center=cfg.hash_center, hash_trainable=cfg.hash_trainable)
    else:
        model = load_user_model(cfg, ds, user_model)
    if cfg.init_from:
        copied = init_from(model, cfg.init_from)
        print(f"initialised {copied} layers from {cfg.init_from}")
    steps = cfg.epochs * math.ceil(len(x_tr) / cfg.batch_size)
    fit_model = model
    if cfg.distill_from:
        from trec_tflm.training.distill import Distiller

        fit_model = Distiller(model, keras.models.load_model(cfg.distill_from), cfg.distill_weight,
                              cfg.distill_temperature)
        print(f"distilling from {cfg.distill_from} (weight {cfg.distill_weight}, T {cfg.distill_temperature})")
    compile_model(fit_model, cfg.lr, steps, metrics_of=model)

    out = Path(cfg.checkpoint_path)
    out.mkdir(parents=True, exist_ok=True)
    best = out / "best.keras"
    history_path = out / "history.json"
    settings = asdict(cfg) | {"dataset_source": ds.source, "train_images": len(x_tr),
                              "trec_layers": {t.name: {"sub_vector_length": t.sub_vector_length,
                                                       "hash_bits": t.hash_bits,
                                                       "hash_center": t.hash_center}
                                              for t in trec_layers(model)}}
    record = {"settings": settings, "epochs": []}

    class JsonHistory(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            record["epochs"].append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
            _write_json(history_path, record)

    class BestCheckpoint(keras.callbacks.Callback):
        """ModelCheckpoint(save_best_only) of ``model`` itself, also when fit runs a Distiller around it."""

        best_accuracy = -1.0

        def on_epoch_end(self, epoch, logs=None):
            accuracy = float((logs or {}).get("val_accuracy", -1.0))
            if accuracy > self.best_accuracy:
                self.best_accuracy = accuracy
                # a crash mid-save keeps the previous best; Ctrl-C waits for the rename
                with _sigint_deferred():
                    paths.replace_atomically(best, model.save)

    train_data = tf.data.Dataset.from_tensor_slices((x_tr, y_tr)).shuffle(len(x_tr), seed=cfg.seed)
    train_data = train_data.batch(cfg.batch_size)
    if cfg.augment:
        aug = _augmenter()
        train_data = train_data.map(lambda a, b: (aug(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE)
    train_data = train_data.prefetch(tf.data.AUTOTUNE)
    start = time.time()
    fit_model.fit(train_data, epochs=cfg.epochs, validation_data=(x_val, y_val), verbose=cfg.verbose,
                  shuffle=False,  # train_data reshuffles itself every epoch
                  callbacks=[BestCheckpoint(), JsonHistory()])
    seconds = time.time() - start

    best_model = keras.models.load_model(best)
    compile_model(best_model, cfg.lr, steps)
    scores = best_model.evaluate(ds.x_test, ds.y_test, batch_size=256, verbose=0, return_dict=True)
    rates = {layer.name: float(scores[f"rc_{layer.name}"]) for layer in trec_layers(best_model)}
    record["test"] = {"accuracy": float(scores["accuracy"]), "loss": float(scores["loss"]),
                      "reuse_rate": rates, "train_seconds": seconds}
    _write_json(history_path, record)
    return TrainResult(best, record, float(scores["accuracy"]), rates, seconds)


def init_from(model, path) -> int:
    """Copy weights from a trained model into ``model``, layer by layer (same names).

    A TRECConv2D takes the kernel and bias of a Conv2D of the same name (its hash matrix keeps its
    initialisation): the usual way to make a TREC model is to fine-tune its trained dense twin.
    Returns the number of layers copied; a layer whose weights do not fit is an error.
    """
    import keras

    from trec_tflm.training.layers import TRECConv2D

    src = keras.models.load_model(path)
    by_name = {layer.name: layer for layer in src._flatten_layers(include_self=False, recursive=True)}
    copied = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        other = by_name.get(layer.name)
        if other is None or not layer.weights:
            continue
        if isinstance(layer, TRECConv2D):
            weights = [other.kernel.numpy()] + ([other.bias.numpy()] if layer.use_bias else [])
            targets = [layer._kernel] + ([layer.bias] if layer.use_bias else [])
        else:
            weights, targets = other.get_weights(), layer.weights
        if len(weights) != len(targets) or any(tuple(w.shape) != tuple(t.shape) for w, t in zip(weights, targets)):
            raise ValueError(f"--init-from {path}: layer {layer.name!r} does not match "
                             f"({[tuple(w.shape) for w in weights]} vs {[tuple(t.shape) for t in targets]})")
        for w, t in zip(weights, targets):
            t.assign(w)
        copied += 1
    if copied == 0:
        raise ValueError(f"--init-from {path}: no layer names in common with {model.name}")
    return copied


def _write_json(path: Path, data) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ CLI
def _int_list(text: str) -> list[int]:
    text = text.strip()
    if text in ("", "none"):
        return []
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(p: argparse.ArgumentParser) -> None:
    add_train_arguments(p)
    p.set_defaults(func=train_command)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="fashion_net",
                   help=f"one of {', '.join(model_names())} (paper names like SqueezeNet also work), or a Keras "
                        "model file PATH.keras of your own: its convolutions become TREC through trec_tflm.to_trec "
                        "(--trec/--L/--H choose them; docs/TRAINING.md)")
    p.add_argument("--dataset", default="fashion_mnist", choices=[*DATASETS, "fashion_mnist_32x32x3"],
                   help="fashion_mnist_32x32x3: Fashion-MNIST padded and repeated to CIFAR-10's shape; images: "
                        "your own labelled images in --dataset-path (docs/TRAINING.md)")
    p.add_argument("--dataset-path", help="directory of the dataset (CIFAR-10 python pickles, Fashion-MNIST, or "
                                          "with --dataset images one subfolder of images per class)")
    p.add_argument("--checkpoint-path", required=True, help="output directory (best.keras, history.json)")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--trec", type=_int_list, default=None,
                   help="indices of the convolutions that are TREC, e.g. 0,1 ('none': dense twin); "
                        "default: the model's choice (a .keras model: its TREC layers, or if it has none every "
                        "convolution TREC can take)")
    p.add_argument("--L", dest="sub_vector_length", type=_int_list, default=None,
                   help="sub-vector length per TREC conv, e.g. 5,10 (default: the model's own for each conv)")
    p.add_argument("--H", dest="hash_bits", type=_int_list, default=None,
                   help="hash bits per TREC conv, e.g. 15,10 (default: the model's own for each conv)")
    p.add_argument("--hash-center", default="mean", choices=["mean", "none"],
                   help="hash around the per-image channel mean (default) or around zero")
    p.add_argument("--freeze-hash", action="store_true",
                   help="keep the hash matrices at their random initialisation (plain LSH) instead of learning them")
    p.add_argument("--train-limit", type=int, default=None, help="train on the first N images only")
    p.add_argument("--augment", action="store_true", help="random flips and shifts (CIFAR-10)")
    p.add_argument("--init-from", default=None,
                   help="start from a trained model's weights (same layer names), e.g. the dense twin: "
                        "TREC layers take its kernel and bias, then fine-tune")
    p.add_argument("--distill-from", default=None,
                   help="also learn the soft outputs of this trained model (usually the dense twin, "
                        "with --init-from the same file): knowledge distillation, see docs/TRAINING.md")
    p.add_argument("--distill-weight", type=float, default=TrainConfig.distill_weight,
                   help="share of the distillation term in the loss, in [0, 1]")
    p.add_argument("--distill-temperature", type=float, default=TrainConfig.distill_temperature,
                   help="softmax temperature of the distillation term")
    p.add_argument("--seed", type=int, default=0)


def config_from_args(args) -> TrainConfig:
    return TrainConfig(model=args.model, dataset=args.dataset, dataset_path=args.dataset_path,
                       checkpoint_path=args.checkpoint_path, epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, trec=args.trec, sub_vector_length=args.sub_vector_length,
                       hash_bits=args.hash_bits, hash_center=args.hash_center,
                       hash_trainable=not args.freeze_hash, train_limit=args.train_limit,
                       augment=args.augment, init_from=args.init_from, distill_from=args.distill_from,
                       distill_weight=args.distill_weight, distill_temperature=args.distill_temperature,
                       seed=args.seed)


def train_command(args) -> int:
    cfg = config_from_args(args)
    check_config(cfg)  # before TensorFlow and the dataset load
    result = train(cfg)
    print(f"best checkpoint: {result.checkpoint}")
    print(f"test accuracy: {result.test_accuracy:.4f}")
    for name, rc in result.reuse_rates.items():
        print(f"  rc {name}: {rc:.4f}")
    print(f"history: {Path(args.checkpoint_path) / 'history.json'}")
    return 0
