"""Training on real Fashion-MNIST images: learning, checkpoint, history, init from a dense twin."""

import json

import keras
import numpy as np
import pytest

from trec_tflm import trec_layers
from trec_tflm.training.models import build_model, dense_twin
from trec_tflm.training.train import TrainConfig, init_from, train


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, fashion):
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(model="fashion_net", dataset="fashion_mnist", checkpoint_path=str(out), epochs=1,
                      train_limit=3000, validation_size=1000, batch_size=64, verbose=0)
    return out, train(cfg, fashion)


def test_short_real_data_training_learns_well_above_chance(small_run):
    _, result = small_run
    assert result.test_accuracy > 0.6  # chance is 0.1 (10 classes)
    assert set(result.reuse_rates) == {"conv1", "conv2"}
    assert all(0.0 < rc <= 1.0 for rc in result.reuse_rates.values())


def test_checkpoint_and_history(small_run):
    out, result = small_run
    assert (out / "best.keras").is_file()
    history = json.loads((out / "history.json").read_text())
    epoch = history["epochs"][0]
    assert {"accuracy", "loss", "val_accuracy", "rc_conv1", "rc_conv2"} <= set(epoch)
    assert history["test"]["accuracy"] == pytest.approx(result.test_accuracy)
    assert history["settings"]["trec_layers"]["conv2"]["sub_vector_length"] == 32
    model = keras.models.load_model(out / "best.keras")
    assert [layer.name for layer in trec_layers(model)] == ["conv1", "conv2"]


def test_init_from_dense_twin_copies_weights(tmp_path):
    trec = build_model("fashion_net")
    dense = dense_twin(build_model("fashion_net"))  # independently initialised twin
    for layer in dense.layers:
        if layer.weights:
            layer.set_weights([np.random.default_rng(1).normal(size=w.shape).astype("float32")
                               for w in layer.get_weights()])
    path = tmp_path / "dense.keras"
    dense.save(path)
    hash_before = trec.get_layer("conv2").hash_kernel.numpy().copy()
    assert init_from(trec, path) == len([layer for layer in dense.layers if layer.weights])
    np.testing.assert_array_equal(trec.get_layer("conv2").kernel.numpy(), dense.get_layer("conv2").kernel.numpy())
    np.testing.assert_array_equal(trec.get_layer("logits").get_weights()[0], dense.get_layer("logits").get_weights()[0])
    np.testing.assert_array_equal(trec.get_layer("conv2").hash_kernel.numpy(), hash_before)  # hash untouched


def test_init_from_a_different_model_is_refused(tmp_path):
    other = build_model("cmsisnn_cifar10", input_shape=(28, 28, 1), trec=())
    path = tmp_path / "other.keras"
    other.save(path)
    with pytest.raises(ValueError, match="does not match"):
        init_from(build_model("fashion_net"), path)


def _numpy_kl_t2(teacher, student, t):
    def log_softmax(z):
        z = z / t
        z = z - z.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    log_p, log_q = log_softmax(teacher), log_softmax(student)
    return float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)) * t * t)


def test_distillation_loss_is_the_tempered_kl_divergence():
    from trec_tflm.training.distill import distillation_loss

    rng = np.random.default_rng(3)
    teacher, student = rng.normal(size=(5, 10)) * 3, rng.normal(size=(5, 10)) * 3
    for t in (1.0, 4.0):
        got = float(distillation_loss(teacher.astype("float32"), student.astype("float32"), t))
        assert got == pytest.approx(_numpy_kl_t2(teacher, student, t), rel=1e-4)
        assert got > 0.1
    same = distillation_loss(teacher.astype("float32"), teacher.astype("float32"), 4.0)
    assert float(same) == pytest.approx(0, abs=1e-5)


def _constant_teacher(path, favourite: int):
    """A dense fashion_net whose logits ignore the image and always favour one class."""
    teacher = dense_twin(build_model("fashion_net"))
    logits = teacher.get_layer("logits")
    kernel, bias = logits.get_weights()
    bias = np.zeros_like(bias)
    bias[favourite] = 8.0
    logits.set_weights([np.zeros_like(kernel), bias])
    teacher.save(path)
    return path


def test_distillation_pulls_the_student_towards_the_teacher(tmp_path, fashion):
    """With the whole loss on the teacher's outputs, the student learns the teacher, not the labels."""
    teacher = _constant_teacher(tmp_path / "teacher.keras", favourite=7)
    cfg = TrainConfig(model="fashion_net", dataset="fashion_mnist", checkpoint_path=str(tmp_path / "run"),
                      epochs=1, train_limit=1000, validation_size=500, batch_size=64, verbose=0,
                      distill_from=str(teacher), distill_weight=1.0, distill_temperature=2.0)
    result = train(cfg, fashion)
    student = keras.models.load_model(result.checkpoint)
    assert [layer.name for layer in trec_layers(student)] == ["conv1", "conv2"]  # the student, not the wrapper
    predicted = np.argmax(student.predict(fashion.x_test[:500], verbose=0), axis=-1)
    assert np.mean(predicted == 7) > 0.9
    assert result.history["settings"]["distill_from"] == str(teacher)


def test_distillation_refuses_a_teacher_of_another_task(tmp_path, fashion):
    other = build_model("fashion_net", num_classes=4, trec=())
    other.save(tmp_path / "other.keras")
    cfg = TrainConfig(model="fashion_net", dataset="fashion_mnist", checkpoint_path=str(tmp_path / "run"),
                      epochs=1, train_limit=100, validation_size=100, verbose=0,
                      distill_from=str(tmp_path / "other.keras"))
    with pytest.raises(ValueError, match="outputs"):
        train(cfg, fashion)
    assert not (tmp_path / "run" / "best.keras").exists()


def test_a_subset_of_trec_convs_keeps_the_models_l_and_h():
    """--trec 0,1 on a model whose defaults make convs 0, 1, 2 TREC: convs 0 and 1 keep their
    per-conv defaults (not TRECConv2D's generic ones), conv 2 stays a plain Conv2D."""
    import inspect

    from trec_tflm.training.layers import TRECConv2D
    from trec_tflm.training.models import MODELS, conv_layers

    spec = MODELS["cmsisnn_cifar10"]
    model = build_model("cmsisnn_cifar10", input_shape=(32, 32, 3), trec=[0, 1])
    convs = conv_layers(model)
    for i in (0, 1):
        j = spec.default_trec.index(i)
        assert isinstance(convs[i], TRECConv2D)
        assert (convs[i].sub_vector_length, convs[i].hash_bits) == (spec.default_l[j], spec.default_h[j])
    assert not isinstance(convs[2], TRECConv2D)
    # a conv the model does not make TREC by default takes the layer's own defaults, and what is given
    params = inspect.signature(TRECConv2D.__init__).parameters
    assert 2 not in spec.default_trec
    model = build_model("cmsisnn_cifar10", input_shape=(32, 32, 3), trec=[2], hash_bits=[5])
    conv = conv_layers(model)[2]
    assert (conv.sub_vector_length, conv.hash_bits) == (params["sub_vector_length"].default, 5)
    fm = build_model("fashion_net", trec=[0], sub_vector_length=[7])
    first = conv_layers(fm)[0]
    assert (first.sub_vector_length, first.hash_bits) == (7, MODELS["fashion_net"].default_h[0])
    squeeze = build_model("squeezenet", trec=[1])
    conv = conv_layers(squeeze)[1]
    assert 1 not in MODELS["squeezenet"].default_trec
    defaults = (params["sub_vector_length"].default, params["hash_bits"].default)
    assert (conv.sub_vector_length, conv.hash_bits) == defaults


def test_resnet8_is_mlperf_tinys_reference_network():
    """The layer list of MLPerf Tiny's ResNet-8 (resnet_v1_eembc, mlcommons/tiny
    benchmark/training/image_classification/keras_model.py), counted by hand: 9 convolutions
    (conv1; stack 1: two 3x3 16->16; stacks 2 and 3: 3x3 stride 2, 3x3, and a 1x1 stride-2
    projection), 3 residual adds, 8x8 average pool, dense 64->10. Parameters: the reference's
    78,666 minus the 240 biases of its seven convs that BN follows (3*3*3*16 + 2*9*16*16 +
    9*16*32 + 9*32*32 + 16*32+32 + 9*32*64 + 9*64*64 + 32*64+64 + 64*10+10 weights, 4 BN
    values per channel of 16+16+16+32+32+64+64); MACs 12,501,632 (MLPerf Tiny's ~12.5M)."""
    from trec_tflm.training.models import conv_layers

    model = build_model("resnet8", trec=())
    convs = conv_layers(model)
    got = [(c.name, c.filters, c.kernel_size, c.strides, c.use_bias) for c in convs]
    assert got == [("conv1", 16, (3, 3), (1, 1), False),
                   ("stack1_a", 16, (3, 3), (1, 1), False), ("stack1_b", 16, (3, 3), (1, 1), False),
                   ("stack2_a", 32, (3, 3), (2, 2), False), ("stack2_b", 32, (3, 3), (1, 1), False),
                   ("stack2_shortcut", 32, (1, 1), (2, 2), True),
                   ("stack3_a", 64, (3, 3), (2, 2), False), ("stack3_b", 64, (3, 3), (1, 1), False),
                   ("stack3_shortcut", 64, (1, 1), (2, 2), True)]
    assert model.count_params() == 78_426
    assert sum(int(w.numpy().size) for w in model.trainable_weights) == 77_946
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == 3
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 7
    macs = sum(int(np.prod(c.output.shape[1:3])) * int(np.prod(c.kernel.shape)) for c in convs)
    assert macs + 64 * 10 == 12_501_632
    assert model.get_layer("pool").output.shape[1:] == (1, 1, 64) and model.output.shape[1:] == (10,)
    # logits, as the other zoo models: the reference's softmax belongs in the loss here
    assert model.get_layer("logits").activation is keras.activations.linear


# ------------------------------------------------------------------------------------------------
# settings refused before any work starts
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,needle", [
    (["--train-limit", "0"], "--train-limit 0: must be >= 1"),
    (["--train-limit", "-5"], "--train-limit -5: must be >= 1"),
    (["--lr", "nan"], "--lr nan: must be a finite number > 0"),
    (["--lr", "-0.1"], "--lr -0.1: must be a finite number > 0"),
    (["--epochs", "0"], "--epochs 0: must be >= 1"),
    (["--batch-size", "0"], "--batch-size 0: must be >= 1"),
    (["--init-from", "/nonexistent/dense.keras"], "--init-from '/nonexistent/dense.keras': no such file"),
])
def test_bad_settings_are_refused_before_work(tmp_path, capsys, monkeypatch, args, needle):
    from trec_tflm import data
    from trec_tflm.cli import main

    def no_dataset(*a, **k):
        raise AssertionError("the dataset was loaded before the settings were checked")

    monkeypatch.setattr(data, "load_dataset", no_dataset)
    out = tmp_path / "run"
    assert main(["train", "--checkpoint-path", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_checkpoint_path_that_is_a_file_is_refused(tmp_path, capsys):
    from trec_tflm.cli import main

    f = tmp_path / "run"
    f.write_text("not a directory")
    assert main(["train", "--checkpoint-path", str(f)]) == 2
    assert "is a file; give a directory" in capsys.readouterr().err
    assert main(["train", "--checkpoint-path", str(f / "sub")]) == 2
    assert "is a file, so the directory cannot be created" in capsys.readouterr().err


def test_ctrl_c_during_a_checkpoint_save_is_held_until_the_rename(tmp_path):
    """What BestCheckpoint does: save to a temporary file and rename; a SIGINT that arrives
    during the save is delivered after the rename, so the checkpoint exists and is complete."""
    import os
    import signal

    from trec_tflm.training.train import _sigint_deferred

    tmp, best = tmp_path / "best.tmp.keras", tmp_path / "best.keras"
    # Python's own Ctrl-C handler, whatever this process inherited (a background job ignores SIGINT)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with _sigint_deferred():
                tmp.write_text("part 1 ")
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the save
                with tmp.open("a") as f:
                    f.write("part 2")
                os.replace(tmp, best)
        assert best.read_text() == "part 1 part 2" and not tmp.exists()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        # an ignored Ctrl-C stays ignored: the save completes and nothing is raised
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with _sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, outer)
