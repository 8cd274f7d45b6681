"""TRECConv2D: equivalence with Conv2D, gradients, per-image clustering, serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers.finite_diff import central_difference

from trec_tflm import TRECConv2D, reuse_metrics
from trec_tflm.training import primitives, train_ops


def _copy_to_conv(trec, x):
    conv = keras.layers.Conv2D(trec.filters, trec.kernel_size, strides=trec.strides, padding=trec.padding,
                               dilation_rate=trec.dilation_rate)
    conv.build(x.shape)
    conv.set_weights([trec.kernel.numpy(), trec.bias.numpy()])
    return conv


@pytest.mark.parametrize("padding,strides,dilation", [("same", 1, 1), ("valid", 1, 1), ("same", 2, 1),
                                                      ("valid", 2, 1), ("same", 1, 2)])
def test_singleton_clusters_equal_conv2d(padding, strides, dilation):
    # H=16 random hyperplanes in a 27-dim space separate the few rows of a small image: every
    # row is its own cluster, so TREC must reduce to the plain convolution.
    x = np.random.default_rng(0).normal(size=(3, 6, 7, 3)).astype("float32")
    trec = TRECConv2D(5, 3, strides=strides, padding=padding, dilation_rate=dilation,
                      sub_vector_length=27, hash_bits=16)
    y = trec(x).numpy()
    assert trec.reuse_rate == 1.0
    np.testing.assert_allclose(y, _copy_to_conv(trec, x)(x).numpy(), atol=1e-5)


def test_clustering_changes_output_and_reuse_rate_in_range():
    x = np.abs(np.random.default_rng(0).normal(size=(2, 10, 10, 4))).astype("float32")
    trec = TRECConv2D(8, 3, padding="same", sub_vector_length=9, hash_bits=2)
    y = trec(x).numpy()
    assert 0.0 < trec.reuse_rate < 0.2  # at most 4 clusters among 100 rows per sub-matrix
    assert np.abs(y - _copy_to_conv(trec, x)(x).numpy()).max() > 1e-3


def _centroid_reference(layer, x):
    """NumPy forward of the layer math, written independently of the TF code."""
    kh, kw = layer.kernel_size
    cin = x.shape[-1]
    k = kh * kw * cin
    length, bits = layer.sub_vector_length, layer.hash_bits
    m = -(-k // length)
    r = layer.hash_kernel.numpy()
    w = np.zeros((m * length, layer.filters))
    w[:k] = layer.kernel.numpy().reshape(k, -1)
    from trec_tflm.spec.golden import conv_geometry, im2col

    outs = []
    for img in x:
        rows = im2col(img.astype(np.float64), (kh, kw), layer.strides, layer.dilation_rate, layer.padding)
        sub = np.zeros((rows.shape[0], m * length))
        sub[:, :k] = rows
        sub = sub.reshape(rows.shape[0], m, length)
        mean = img.reshape(-1, cin).mean(axis=0)
        col = np.arange(m * length)
        centre = np.where(col < k, mean[col % cin], 0.0).reshape(m, length)
        if layer.hash_center == "none":
            centre[:] = 0.0
        proj = np.einsum("nml,lh->nmh", sub - centre[None], r)
        codes = ((proj > 0) * (1 << np.arange(bits))).sum(-1)
        x_hat = np.zeros_like(sub)
        for j in range(m):
            for code in np.unique(codes[:, j]):
                members = codes[:, j] == code
                x_hat[members, j] = sub[members, j].mean(axis=0)
        outs.append(x_hat.reshape(len(rows), -1) @ w + layer.bias.numpy())
    (ho, wo), _ = conv_geometry(x.shape[1:3], (kh, kw), layer.strides, layer.dilation_rate, layer.padding)
    return np.stack(outs).reshape(len(x), ho, wo, -1)


@pytest.mark.parametrize("center", ["mean", "none"])
@pytest.mark.parametrize("length", [4, 9, 27])  # 4 does not divide K=27: short last sub-vector
def test_forward_matches_independent_numpy(center, length):
    x = np.abs(np.random.default_rng(2).normal(size=(2, 8, 8, 3))).astype("float32")
    layer = TRECConv2D(6, 3, padding="same", sub_vector_length=length, hash_bits=4, hash_center=center)
    y = layer(x).numpy()
    np.testing.assert_allclose(y, _centroid_reference(layer, x), rtol=1e-4, atol=1e-4)


def test_clustering_is_per_image():
    rng = np.random.default_rng(3)
    x = np.abs(rng.normal(size=(5, 8, 8, 3))).astype("float32")
    layer = TRECConv2D(4, 3, padding="same", sub_vector_length=9, hash_bits=3)
    alone = layer(x[:1]).numpy()
    mates = np.concatenate([x[:1], np.abs(rng.normal(size=(4, 8, 8, 3))).astype("float32") * 3])
    together = layer(mates).numpy()
    np.testing.assert_allclose(together[:1], alone, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fused", [None, False])
def test_gradients_match_finite_differences(fused):
    if fused is None and train_ops.load() is None:
        pytest.skip(f"fused ops unavailable: {train_ops.unavailable_reason()}")
    # both routes in float64: the per-cluster fused ops and the plain-TF N-row route
    dtype = "float64"
    rng = np.random.default_rng(4)
    x = tf.constant(np.abs(rng.normal(size=(2, 5, 5, 2))), dtype=dtype)
    layer = TRECConv2D(3, 3, padding="same", sub_vector_length=6, hash_bits=2, dtype=dtype)
    layer.use_fused_ops = fused
    layer.build(x.shape)
    upstream = tf.constant(rng.normal(size=(2, 5, 5, 3)), dtype=dtype)

    def loss():
        return tf.reduce_sum(layer(x) * upstream)

    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss()
    gx, gk = tape.gradient(value, [x, layer.kernel])
    assert layer.reuse_rate < 1.0  # the check is about clustered rows, not singletons
    eps = 1e-6 if dtype == "float64" else 1e-2
    tol = 1e-6 if dtype == "float64" else 2e-2
    xv = x.numpy()
    for idx in [(0, 0, 0, 0), (0, 2, 3, 1), (1, 4, 4, 0), (1, 1, 2, 1)]:
        plus, minus = xv.copy(), xv.copy()
        plus[idx] += eps
        minus[idx] -= eps
        fd = (tf.reduce_sum(layer(tf.constant(plus)) * upstream) -
              tf.reduce_sum(layer(tf.constant(minus)) * upstream)).numpy() / (2 * eps)
        assert fd == pytest.approx(gx.numpy()[idx], rel=tol, abs=tol)
    for idx in [(0, 0, 0, 0), (1, 2, 1, 2), (2, 1, 0, 1)]:
        fd = central_difference(layer.kernel, loss, idx, eps)
        assert fd == pytest.approx(gk.numpy()[idx], rel=tol, abs=tol)


def test_fused_ops_build_falls_back_when_native_arch_fails(tmp_path, monkeypatch):
    """A CPU whose -march=native TensorFlow's Eigen headers cannot compile for (AVX512-FP16 with
    GCC 12) still gets the fused ops: the build retries without that extension, then without
    -march, and only the last failure of all of them is an error."""
    import subprocess

    real_run = subprocess.run
    seen = []

    def run(cmd, **kw):
        arch = [a for a in cmd if a.startswith("-m")]
        seen.append(arch)
        if arch == ["-march=native"]:  # what the broken headers do on such a CPU
            return subprocess.CompletedProcess(cmd, 1, "", "PacketMathFP16.h: error")
        return real_run(cmd, **kw)

    monkeypatch.setattr(train_ops.subprocess, "run", run)
    target = tmp_path / "ops.so"
    train_ops._build(target)
    assert seen[:2] == [["-march=native"], ["-march=native", "-mno-avx512fp16"]]
    assert target.read_bytes()[:4] == b"\x7fELF"  # not loaded: its ops are registered already

    def fail(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "no compiler here")

    monkeypatch.setattr(train_ops.subprocess, "run", fail)
    with pytest.raises(RuntimeError, match="no -march: no compiler here"):
        train_ops._build(tmp_path / "never.so")
    assert not (tmp_path / "never.so").exists()


def test_fused_ops_match_plain_tf():
    if train_ops.load() is None:
        pytest.skip(f"fused ops unavailable: {train_ops.unavailable_reason()}")
    rng = np.random.default_rng(5)
    x = tf.constant(np.abs(rng.normal(size=(3, 7, 6, 3))).astype("float32"))
    upstream = tf.constant(rng.normal(size=(3, 4, 3, 5)).astype("float32"))
    results = []
    for fused in (None, False):
        keras.utils.set_random_seed(7)
        layer = TRECConv2D(5, 3, strides=2, padding="same", sub_vector_length=4, hash_bits=3)
        layer.use_fused_ops = fused
        layer.build(x.shape)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, layer.kernel, layer.bias, layer.hash_kernel])
        results.append((y.numpy(), [g.numpy() for g in grads], layer.reuse_rate))
    (y0, g0, rc0), (y1, g1, rc1) = results
    np.testing.assert_allclose(y0, y1, rtol=1e-5, atol=1e-5)
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert np.abs(g0[3]).max() > 0  # the surrogate reaches the hash matrix
    assert rc0 == rc1


def test_primitives_cluster_mean_counts_clusters():
    values = tf.constant(np.arange(2 * 4 * 1 * 2, dtype=np.float32).reshape(2, 4, 1, 2))
    codes = tf.constant([[[0], [1], [0], [3]], [[2], [2], [2], [2]]], dtype=tf.int32)
    means, clusters, _ = primitives.cluster_mean(values, codes, 4)
    assert clusters.numpy().tolist() == [[3], [1]]
    # hand-checked: rows 0 and 2 of image 0 share code 0 -> mean of (0,1) and (4,5)
    np.testing.assert_allclose(means.numpy()[0, :, 0], [[2, 3], [2, 3], [2, 3], [6, 7]])
    np.testing.assert_allclose(means.numpy()[1, :, 0], [[11, 12]] * 4)


def _fused_ops():
    ops = train_ops.load()
    if ops is None:
        pytest.skip(f"fused ops unavailable: {train_ops.unavailable_reason()}")
    return ops


def test_fused_cluster_product_hand_checked():
    """The per-cluster ops on the hand-checked case above: a 1x1 kernel over 1x4 images of 2
    channels (L = 2, M = 1), so the im2col rows are the pixels; W = [[1, 2], [3, 4]]."""
    ops = _fused_ops()
    x = tf.constant(np.arange(16, dtype=np.float64).reshape(2, 1, 4, 2))
    codes = tf.constant([[[0], [1], [0], [3]], [[2], [2], [2], [2]]], dtype=tf.int32)
    w = tf.constant([[1.0, 2.0], [3.0, 4.0]], tf.float64)
    dy = tf.constant([[[1, 0], [0, 2], [3, 0], [0, 5]], [[1, 1], [0, 0], [0, 0], [2, 0]]], tf.float64)
    geom = primitives.Geometry(1, 4, 2, (1, 1), (1, 1), (1, 1), "valid", 2)
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y, clusters, _ = primitives.cluster_product(x, codes, w, geom, 2, 4, ops)
        loss = tf.reduce_sum(y * dy)
    dx, dw = tape.gradient(loss, [x, w])
    assert clusters.numpy().tolist() == [[3], [1]]
    # x_hat by hand: image 0 rows 0 and 2 -> (2, 3), row 1 (2, 3), row 3 (6, 7); image 1 all (11, 12)
    x_hat = np.array([[[2, 3], [2, 3], [2, 3], [6, 7]], [[11, 12]] * 4], dtype=np.float64)
    w_np = np.array([[1, 2], [3, 4]], dtype=np.float64)
    np.testing.assert_array_equal(y.numpy(), x_hat @ w_np)
    np.testing.assert_array_equal(dw.numpy(), np.einsum("bnl,bnf->lf", x_hat, dy.numpy()))
    # the input gradient: g . W^T averaged over each cluster (rows 0 and 2 share theirs)
    gx = dy.numpy() @ w_np.T
    want = gx.copy()
    want[0, [0, 2]] = gx[0, [0, 2]].mean(axis=0)
    want[1, :] = gx[1].mean(axis=0)
    np.testing.assert_array_equal(dx.numpy().reshape(2, 4, 2), want)


_CASES = {
    # name: (input HxWxC, filters, kernel, strides, dilation, padding, L, H, hash initializer)
    "strided, L not dividing K": ((7, 6, 3), 5, 3, 2, 1, "same", 4, 3, "orthogonal"),
    "dilated, L not a strip": ((9, 8, 2), 4, 3, 1, 2, "same", 5, 4, "orthogonal"),
    "strips of 3 pixels": ((9, 8, 2), 4, 3, 1, 1, "same", 6, 4, "orthogonal"),
    "valid, strips of 1 pixel": ((8, 8, 4), 6, 3, 1, 1, "valid", 4, 4, "orthogonal"),
    "many singleton clusters": ((6, 7, 3), 5, 3, 1, 1, "same", 27, 16, "orthogonal"),
    "one cluster": ((6, 7, 3), 5, 3, 1, 1, "same", 9, 5, "zeros"),  # every projection 0: code 0
}


@pytest.mark.parametrize("case", list(_CASES))
def test_per_cluster_route_equals_the_n_row_route_float64(case):
    """The fused per-cluster route and the plain-TF route on all N rows agree in float64 to
    rounding (1e-12): output, rc, and the gradients of input, kernel, bias and hash matrix."""
    _fused_ops()
    shape, filters, kernel, strides, dilation, padding, length, bits, hash_init = _CASES[case]
    rng = np.random.default_rng(len(case))
    x = tf.constant(np.abs(rng.normal(size=(10, *shape))), tf.float64)
    results = []
    for fused in (None, False):
        keras.utils.set_random_seed(3)
        layer = TRECConv2D(filters, kernel, strides=strides, dilation_rate=dilation, padding=padding,
                           sub_vector_length=length, hash_bits=bits, hash_initializer=hash_init, dtype="float64")
        layer.use_fused_ops = fused
        layer.build(x.shape)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            upstream = tf.constant(np.random.default_rng(1).normal(size=y.shape), tf.float64)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, layer.kernel, layer.bias, layer.hash_kernel])
        results.append((y.numpy(), [g.numpy() for g in grads], layer.reuse_rate))
    (y0, g0, rc0), (y1, g1, rc1) = results
    assert rc0 == rc1
    if case == "many singleton clusters":
        assert rc0 > 0.95
    elif case == "one cluster":
        assert rc0 == pytest.approx(1 / (shape[0] * shape[1]))  # one cluster of Ho*Wo rows
    else:
        assert 0.0 < rc0 < 1.0
    np.testing.assert_allclose(y0, y1, rtol=1e-12, atol=1e-12)
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert np.abs(g0[1]).max() > 0


def test_fused_singletons_train_like_conv2d():
    """Every row its own cluster: the fused route's output and input/kernel/bias gradients equal
    keras Conv2D's (an independent implementation), float64."""
    _fused_ops()
    rng = np.random.default_rng(9)
    x = tf.constant(rng.normal(size=(4, 6, 7, 3)), tf.float64)
    trec = TRECConv2D(5, 3, strides=2, padding="same", sub_vector_length=27, hash_bits=16, dtype="float64")
    trec.build(x.shape)
    conv = keras.layers.Conv2D(5, 3, strides=2, padding="same", dtype="float64")
    conv.build(x.shape)
    conv.set_weights([trec.kernel.numpy(), trec.bias.numpy()])
    upstream = tf.constant(rng.normal(size=(4, 3, 4, 5)), tf.float64)
    grads = []
    for layer in (trec, conv):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        grads.append([y.numpy()] + [g.numpy() for g in tape.gradient(loss, [x, layer.kernel, layer.bias])])
    assert trec.reuse_rate == 1.0
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def _notice_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("trec_tflm:")]


def test_fallback_without_the_fused_ops_says_so_once(monkeypatch, capsys):
    """Where the ops cannot build, the layer trains on plain TF with one notice line, and the
    same result as forcing the plain route."""
    x = tf.constant(np.abs(np.random.default_rng(3).normal(size=(2, 6, 6, 2))).astype("float32"))
    keras.utils.set_random_seed(4)
    plain = TRECConv2D(3, 3, padding="same", sub_vector_length=6, hash_bits=3)
    plain.use_fused_ops = False
    want = plain(x).numpy()
    capsys.readouterr()
    monkeypatch.setattr(train_ops, "_module", None)
    monkeypatch.setattr(train_ops, "_failed", "building trec_train_ops.cc failed:\nno compiler here")
    monkeypatch.setattr(train_ops, "_notices", set())
    monkeypatch.setattr(primitives, "cluster_product", None)  # the fused route must not be taken
    keras.utils.set_random_seed(4)
    layer = TRECConv2D(3, 3, padding="same", sub_vector_length=6, hash_bits=3)
    np.testing.assert_array_equal(layer(x).numpy(), want)
    layer(x)
    lines = _notice_lines(capsys)
    assert len(lines) == 1, lines
    assert "fused training ops unavailable (building trec_train_ops.cc failed:)" in lines[0]
    assert "plain TF ops" in lines[0]


def test_gpu_present_takes_the_plain_route_with_a_notice(monkeypatch, capsys):
    _fused_ops()
    real = tf.config.list_logical_devices
    monkeypatch.setattr(tf.config, "list_logical_devices",
                        lambda kind=None: ["/device:GPU:0"] if kind == "GPU" else real(kind))
    monkeypatch.setattr(train_ops, "_notices", set())
    monkeypatch.setattr(primitives, "cluster_product", None)
    x = tf.constant(np.abs(np.random.default_rng(3).normal(size=(2, 6, 6, 2))).astype("float32"))
    layer = TRECConv2D(3, 3, padding="same", sub_vector_length=6, hash_bits=3)
    layer(x)
    lines = _notice_lines(capsys)
    assert len(lines) == 1 and "GPU present" in lines[0], lines


def test_serialization_roundtrip(tmp_path):
    inp = keras.Input((12, 12, 3))
    out = TRECConv2D(8, 3, padding="same", sub_vector_length=9, hash_bits=8, activation="relu",
                     hash_center="none", hash_trainable=False, name="t1")(inp)
    out = keras.layers.GlobalAveragePooling2D()(out)
    model = keras.Model(inp, keras.layers.Dense(3)(out))
    x = np.random.default_rng(6).random((4, 12, 12, 3)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    layer = loaded.get_layer("t1")
    assert isinstance(layer, TRECConv2D)
    cfg = layer.get_config()
    assert (cfg["sub_vector_length"], cfg["hash_bits"], cfg["hash_center"], cfg["hash_trainable"]) == \
        (9, 8, "none", False)
    assert cfg["padding"] == "same" and cfg["activation"] == "relu"
    clone = TRECConv2D.from_config(cfg)
    assert clone.get_config() == cfg


def test_acceptance_layer_trains_saves_reloads(tmp_path):
    rng = np.random.default_rng(8)
    x = rng.random((64, 10, 10, 2)).astype("float32")
    y = (x[:, :5].mean(axis=(1, 2, 3)) > x[:, 5:].mean(axis=(1, 2, 3))).astype("int64")
    inp = keras.Input((10, 10, 2))
    h = TRECConv2D(8, 3, padding="same", sub_vector_length=9, hash_bits=8, name="trec")(inp)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(h))
    model = keras.Model(inp, keras.layers.Dense(2)(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=reuse_metrics(model))
    before = model.get_layer("trec").hash_kernel.numpy().copy()
    hist = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert not np.allclose(before, model.get_layer("trec").hash_kernel.numpy())  # hash learns
    rc = model.get_layer("trec").reuse_rate
    assert 0.0 < rc <= 1.0
    assert all(0.0 < v <= 1.0 for v in hist.history["rc_trec"])
    path = tmp_path / "a.keras"
    model.save(path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), keras.models.load_model(path).predict(x, verbose=0))


@pytest.mark.parametrize("kwargs,match", [
    (dict(sub_vector_length=0), "sub_vector_length"),
    (dict(sub_vector_length=2.5), "sub_vector_length"),
    (dict(hash_bits=0), "hash_bits"),
    (dict(hash_bits=17), "hash_bits"),
    (dict(hash_center="median"), "hash_center"),
    (dict(groups=2), "groups"),
    (dict(data_format="channels_first"), "channels_last"),
])
def test_argument_validation(kwargs, match):
    args = dict(sub_vector_length=4, hash_bits=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        TRECConv2D(4, 3, **args)


def test_sub_vector_length_must_fit_k():
    layer = TRECConv2D(4, 3, sub_vector_length=28, hash_bits=4)
    with pytest.raises(ValueError, match="does not fit K=27"):
        layer.build((None, 8, 8, 3))


def test_dynamic_spatial_dims_rejected():
    with pytest.raises(ValueError, match="static spatial"):
        TRECConv2D(4, 3, sub_vector_length=4, hash_bits=4).build((None, None, None, 3))


@pytest.mark.parametrize("h,w,cin,k,stride,dil,padding,j", [
    (14, 14, 32, 5, 1, 1, "same", 1), (9, 8, 4, 4, 2, 1, "valid", 2), (10, 9, 3, 3, 1, 2, "same", 3),
    (11, 10, 2, 4, 2, 1, "same", 4), (8, 8, 3, 5, 3, 1, "valid", 1)])
@pytest.mark.parametrize("centre", ["mean", "none"])
def test_strip_projections_equal_im2col_projections(h, w, cin, k, stride, dil, padding, j, centre):
    """L = j*Cin: projecting every image position once and gathering gives the projections of
    the im2col sub-vectors (padding, stride, dilation, strips crossing the border)."""
    rng = np.random.default_rng(h * w + j)
    x = tf.constant(np.abs(rng.normal(size=(3, h, w, cin))).astype("float32"))
    length = j * cin
    layer = TRECConv2D(5, k, strides=stride, dilation_rate=dil, padding=padding, sub_vector_length=length,
                       hash_bits=6, hash_center=centre)
    layer(x)
    kk = k * k * cin
    geom = primitives.Geometry(h, w, cin, (k, k), (stride, stride), (dil, dil), padding, kk)
    assert geom.strip_width(length) == j
    m = kk // length
    sub = tf.reshape(primitives.im2col(x, geom), [3, geom.rows, m, length])
    want = layer._projections(x, sub, layer.hash_kernel, kk, m).numpy()
    got = tf.gather(layer._strip_projections(x, layer.hash_kernel, geom, j), geom.strip_layout(j)[2], axis=1)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_strip_path_trains_like_the_im2col_path(monkeypatch):
    """Same outputs, rc and gradients (hash matrix included) with the strip projections on and off."""
    rng = np.random.default_rng(8)
    x = tf.constant(np.abs(rng.normal(size=(10, 9, 9, 4))).astype("float32"))
    upstream = tf.constant(rng.normal(size=(10, 9, 9, 6)).astype("float32"))
    results = []
    for strip in (True, False):
        if not strip:
            monkeypatch.setattr(primitives.Geometry, "strip_width", lambda self, length: 0)
        keras.utils.set_random_seed(3)
        layer = TRECConv2D(6, 3, padding="same", sub_vector_length=4, hash_bits=4)
        layer.build(x.shape)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, layer.kernel, layer.hash_kernel])
        results.append((y.numpy(), [g.numpy() for g in grads], layer.reuse_rate))
    (y0, g0, rc0), (y1, g1, rc1) = results
    np.testing.assert_allclose(y0, y1, rtol=1e-5, atol=1e-5)
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert np.abs(g0[2]).max() > 0
    assert rc0 == rc1
