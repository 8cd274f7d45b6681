"""Model builders: the paper's CIFAR-10 networks, MLPerf Tiny's ResNet-8 and a small Fashion-MNIST
net for the demo.

Every builder takes the TREC choice the way the original TREC scripts do
(``--trec=0,1 --L=5,10 --H=15,10``): ``trec`` lists the indices of the convolutions (in build
order, see ``conv_layers``) that become TRECConv2D, ``sub_vector_length`` / ``hash_bits`` give
one value per TREC conv (or one value for all). ``trec=()`` builds the dense twin.
The accuracy each default keeps against its dense twin is measured in docs/BENCHMARKS.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras

from trec_tflm.training.cloning import clone_replacing
from trec_tflm.training.layers import TRECConv2D
from trec_tflm.training.zoo import ALIASES, ZOO, model_names


@dataclass
class TrecPlan:
    """Which convolutions are TREC, and their (L, H)."""

    trec: Sequence[int] = ()
    sub_vector_length: Sequence[int] | int = 9
    hash_bits: Sequence[int] | int = 8
    hash_center: str = "mean"
    hash_trainable: bool = True
    _next: int = field(default=0, init=False)

    def __post_init__(self):
        self.trec = tuple(int(i) for i in self.trec)
        for name in ("sub_vector_length", "hash_bits"):
            value = getattr(self, name)
            values = (value,) * len(self.trec) if isinstance(value, int) else tuple(int(v) for v in value)
            if len(values) != len(self.trec):
                raise ValueError(f"{name}: got {len(values)} values for {len(self.trec)} TREC convolutions "
                                 f"{list(self.trec)}; give one value per TREC conv or a single value")
            setattr(self, name, values)

    def conv(self, filters, kernel_size, name, **kwargs):
        """The next convolution of the model: TRECConv2D when its index is in ``trec``."""
        index = self._next
        self._next += 1
        if index in self.trec:
            j = self.trec.index(index)
            return TRECConv2D(filters, kernel_size, name=name, sub_vector_length=self.sub_vector_length[j],
                              hash_bits=self.hash_bits[j], hash_center=self.hash_center,
                              hash_trainable=self.hash_trainable, **kwargs)
        return keras.layers.Conv2D(filters, kernel_size, name=name, **kwargs)

    def check_used(self, model_name):
        bad = [i for i in self.trec if i >= self._next]
        if bad:
            raise ValueError(f"{model_name} has {self._next} convolutions (indices 0..{self._next - 1}); "
                             f"--trec names {bad}")


def _conv_bn_relu(plan, x, filters, k, name, strides=1, padding="same"):
    x = plan.conv(filters, k, name=name, strides=strides, padding=padding, use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def fashion_net(plan: TrecPlan, input_shape=(28, 28, 1), num_classes=10) -> keras.Model:
    """Demo net for 28x28x1: conv5x5 1->32, pool, conv5x5 32->64, pool, dense 10."""
    inp = keras.Input(input_shape, name="image")
    x = _conv_bn_relu(plan, inp, 32, 5, "conv1")
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = _conv_bn_relu(plan, x, 64, 5, "conv2")
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    return keras.Model(inp, keras.layers.Dense(num_classes, name="logits")(x), name="fashion_net")


def cifarnet(plan: TrecPlan, input_shape=(32, 32, 3), num_classes=10) -> keras.Model:
    """CifarNet: conv5x5 3->64, BN, pool; conv5x5 64->64, BN, pool; FC 1600-384-192-10.

    SAME convolutions keep the benchmark shapes (32x32x3->64 and 16x16x64->64); the second
    pool is 3x3/3 so the flattened features are 5x5x64 = 1600 as in the paper's model.
    """
    inp = keras.Input(input_shape, name="image")
    x = _conv_bn_relu(plan, inp, 64, 5, "conv1")
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = _conv_bn_relu(plan, x, 64, 5, "conv2")
    x = keras.layers.MaxPooling2D(3, strides=3, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(384, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(192, activation="relu", name="fc2")(x)
    return keras.Model(inp, keras.layers.Dense(num_classes, name="logits")(x), name="cifarnet")


def cmsisnn_cifar10(plan: TrecPlan, input_shape=(32, 32, 3), num_classes=10) -> keras.Model:
    """The CMSIS-NN CIFAR-10 example network: conv5x5 3->32, pool, conv5x5 32->16, pool,
    conv5x5 16->32, pool, FC 512->10 (all SAME, ReLU). Its convolutions are the CMSIS-NN
    benchmark layers 32x32x3->32, 16x16x32->16 and 8x8x16->32."""
    inp = keras.Input(input_shape, name="image")
    x = plan.conv(32, 5, name="conv1", padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = plan.conv(16, 5, name="conv2", padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = plan.conv(32, 5, name="conv3", padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(2, name="pool3")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inp, keras.layers.Dense(num_classes, name="logits")(x), name="cmsisnn_cifar10")


def zfnet(plan: TrecPlan, input_shape=(32, 32, 3), num_classes=10) -> keras.Model:
    """ZfNet scaled to 32x32 inputs and MCU memory: 7x7/2 and 5x5 front end, three 3x3 convs."""
    inp = keras.Input(input_shape, name="image")
    x = _conv_bn_relu(plan, inp, 48, 7, "conv1", strides=2)  # 16x16
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)  # 8x8
    x = _conv_bn_relu(plan, x, 96, 5, "conv2")
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)  # 4x4
    x = _conv_bn_relu(plan, x, 128, 3, "conv3")
    x = _conv_bn_relu(plan, x, 128, 3, "conv4")
    x = _conv_bn_relu(plan, x, 96, 3, "conv5")
    x = keras.layers.MaxPooling2D(2, name="pool5")(x)  # 2x2
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(256, activation="relu", name="fc1")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    return keras.Model(inp, keras.layers.Dense(num_classes, name="logits")(x), name="zfnet")


def _fire(plan, x, squeeze, expand, name):
    s = plan.conv(squeeze, 1, name=f"{name}_squeeze", activation="relu")(x)
    e1 = plan.conv(expand, 1, name=f"{name}_expand1x1", activation="relu")(s)
    e3 = plan.conv(expand, 3, name=f"{name}_expand3x3", padding="same", activation="relu")(s)
    return keras.layers.Concatenate(name=f"{name}_concat")([e1, e3])


def _squeezenet(plan: TrecPlan, input_shape, num_classes, bypass: str) -> keras.Model:
    """SqueezeNet for 32x32 inputs; bypass "simple" adds identity shortcuts around fire 3, 5,
    7, 9 (matching channels), "complex" also 1x1-conv shortcuts around fire 2, 4, 6, 8."""
    inp = keras.Input(input_shape, name="image")
    x = plan.conv(64, 3, name="conv1", padding="same", activation="relu")(inp)  # 32x32
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)  # 16x16: fire2/3 expand3x3 is 16x16x16->64
    fires = [(16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192), (64, 256), (64, 256)]
    for i, (squeeze, expand) in enumerate(fires, start=2):
        y = _fire(plan, x, squeeze, expand, f"fire{i}")
        if bypass != "none" and x.shape[-1] == y.shape[-1] and i % 2 == 1:
            y = keras.layers.Add(name=f"fire{i}_bypass")([x, y])
        elif bypass == "complex":
            shortcut = plan.conv(2 * expand, 1, name=f"fire{i}_bypass_conv")(x)
            y = keras.layers.Add(name=f"fire{i}_bypass")([shortcut, y])
        x = y
        if i in (3, 5):
            x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    x = plan.conv(num_classes, 1, name="conv10")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, x, name=f"squeezenet_{bypass}_bypass" if bypass != "none" else "squeezenet")


def squeezenet(plan, input_shape=(32, 32, 3), num_classes=10):
    return _squeezenet(plan, input_shape, num_classes, "simple")


def squeezenet_complex(plan, input_shape=(32, 32, 3), num_classes=10):
    return _squeezenet(plan, input_shape, num_classes, "complex")


def resnet8(plan: TrecPlan, input_shape=(32, 32, 3), num_classes=10) -> keras.Model:
    """MLPerf Tiny's image-classification ResNet-8 (v1.x reference: resnet_v1_eembc in
    mlcommons/tiny benchmark/training/image_classification/keras_model.py, with 16 filters).

    conv3x3 3->16 + BN + ReLU, then three stacks of 16, 32 and 64 filters: conv3x3 + BN + ReLU,
    conv3x3 + BN, added to the stack's input and ReLU. Stacks 2 and 3 start with stride 2, and their
    shortcut is a 1x1 stride-2 convolution (with bias, no BN) where the shape changes; 8x8 average
    pool, flatten, dense 10 (logits, as the other zoo models). Convolution order (``--trec``): conv1,
    stack1 a/b, stack2 a/b/shortcut, stack3 a/b/shortcut, as the reference builds them.
    The reference's convs before BN also carry a bias, which BN cancels: dropped here (as in the
    other zoo models), so 240 fewer parameters: 78,426 here (77,946 trainable) against its 78,666.
    Its L2 weight decay (1e-4) and he_normal init belong to its training recipe, not the network.
    """
    inp = keras.Input(input_shape, name="image")
    x = _conv_bn_relu(plan, inp, 16, 3, "conv1")
    for stack, filters in enumerate((16, 32, 64), start=1):
        strides = 1 if stack == 1 else 2
        y = _conv_bn_relu(plan, x, filters, 3, f"stack{stack}_a", strides=strides)
        y = plan.conv(filters, 3, name=f"stack{stack}_b", padding="same", use_bias=False)(y)
        y = keras.layers.BatchNormalization(momentum=0.9, name=f"stack{stack}_b_bn")(y)
        if strides != 1 or x.shape[-1] != filters:
            x = plan.conv(filters, 1, name=f"stack{stack}_shortcut", strides=strides, padding="same")(x)
        x = keras.layers.Add(name=f"stack{stack}_add")([x, y])
        x = keras.layers.ReLU(name=f"stack{stack}_relu")(x)
    x = keras.layers.AveragePooling2D(min(x.shape[1:3]), name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inp, keras.layers.Dense(num_classes, name="logits")(x), name="resnet8")


@dataclass(frozen=True)
class ModelSpec:
    builder: Callable
    dataset: str
    default_trec: tuple[int, ...]
    default_l: tuple[int, ...]
    default_h: tuple[int, ...]


_BUILDERS: dict[str, Callable] = {"fashion_net": fashion_net, "cifarnet": cifarnet, "zfnet": zfnet,
                                  "cmsisnn_cifar10": cmsisnn_cifar10, "squeezenet": squeezenet,
                                  "squeezenet_complex": squeezenet_complex, "resnet8": resnet8}
MODELS: dict[str, ModelSpec] = {name: ModelSpec(_BUILDERS[name], e.dataset, e.default_trec, e.default_l, e.default_h)
                                for name, e in ZOO.items()}


def build_model(name: str, *, input_shape=None, num_classes=10, trec=None, sub_vector_length=None,
                hash_bits=None, hash_center="mean", hash_trainable=True) -> keras.Model:
    """Build a registered model. ``trec=None`` uses the model's default TREC convolutions;
    ``trec=()`` builds the dense twin. Without ``sub_vector_length`` / ``hash_bits``, each TREC
    convolution takes the model's default (L, H) for it, and one the model does not make TREC by
    default takes TrecPlan's (9, 8), TRECConv2D's own defaults."""
    key = ALIASES.get(name, name)
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(model_names())}")
    spec = MODELS[key]
    trec = spec.default_trec if trec is None else tuple(int(i) for i in trec)
    defaults = dict(zip(spec.default_trec, zip(spec.default_l, spec.default_h)))
    per_conv = [defaults.get(i, (TrecPlan.sub_vector_length, TrecPlan.hash_bits)) for i in trec]
    if sub_vector_length is None:
        sub_vector_length = [length for length, _ in per_conv]
    if hash_bits is None:
        hash_bits = [bits for _, bits in per_conv]
    plan = TrecPlan(trec, sub_vector_length, hash_bits, hash_center, hash_trainable)
    kwargs = {"num_classes": num_classes}
    if input_shape is not None:
        kwargs["input_shape"] = tuple(input_shape)
    model = spec.builder(plan, **kwargs)
    plan.check_used(key)
    return model


def conv_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The convolutions of a model in build order: the indices ``trec`` refers to."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.Conv2D)]


def dense_twin(model: keras.Model) -> keras.Model:
    """The same network with every TRECConv2D replaced by a plain Conv2D carrying the same
    kernel and bias (hash matrices dropped), nested models included: the inverse of
    ``trec_tflm.to_trec``. Used by the converter and for comparisons."""

    def replace(layer):
        if isinstance(layer, TRECConv2D):
            config = layer.get_config()
            for key in ("sub_vector_length", "hash_bits", "hash_center", "hash_initializer",
                        "hash_regularizer", "hash_constraint", "hash_trainable"):
                config.pop(key)
            return keras.layers.Conv2D.from_config(config)
        return None

    return clone_replacing(model, replace, "dense_twin")
