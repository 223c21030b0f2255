"""Dropout (seeded, device-independent masks, the same mask forward and backward), weight decay (loss
term and gradient on weights only), gradient checks with both, and the textbook experiments'
qualitative claims on small runs."""

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import to_numpy

import gpunn
from gpunn.gradcheck import relative_error
from gpunn.regularization import Dropout, dropout_threshold

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


# -- Dropout -------------------------------------------------------------------------------------
def test_dropout_same_mask_forward_and_backward(dev):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 7)).astype(np.float32)
    d = Dropout(dev, 0.4, seed=1)
    y = to_numpy(d.forward(dev.to_device(x), True))
    mask = to_numpy(d.mask)
    assert set(np.unique(mask)) <= {0.0, np.float32(1 / 0.6)}
    np.testing.assert_allclose(y, x * mask, rtol=1e-7)
    dout = rng.standard_normal((6, 7)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(d.backward(dev.to_device(dout))), dout * mask, rtol=1e-7)


def test_dropout_masks_are_seeded_and_device_independent():
    x = np.ones((10, 20), np.float32)
    masks = {}
    for name in ("cpu", "cuda"):
        d = Dropout(gpunn.device(name, strict=True), 0.5, seed=42)
        dev = d.dev
        masks[name] = [to_numpy(d.forward(dev.to_device(x), True)).copy() for _ in range(2)]
    np.testing.assert_array_equal(masks["cpu"][0], masks["cuda"][0])  # bit-identical across devices
    np.testing.assert_array_equal(masks["cpu"][1], masks["cuda"][1])
    assert not np.array_equal(masks["cpu"][0], masks["cpu"][1])  # a new mask every forward
    other = Dropout("cpu", 0.5, seed=43).forward(x, True)
    assert not np.array_equal(other, masks["cpu"][0])  # another seed, another mask
    again = Dropout("cpu", 0.5, seed=42).forward(x, True)
    np.testing.assert_array_equal(again, masks["cpu"][0])  # the same seed, the same mask


def _reference_mask(key, n, p):
    """The mask rule re-implemented in NumPy uint64 (lowbias32 twice, keep iff top 24 bits ≥ thr)."""
    m32 = np.uint64(0xFFFFFFFF)

    def mix(h):
        h ^= h >> np.uint64(16)
        h = (h * np.uint64(0x7FEB352D)) & m32
        h ^= h >> np.uint64(15)
        h = (h * np.uint64(0x846CA68B)) & m32
        return h ^ (h >> np.uint64(16))

    i = np.arange(n, dtype=np.uint64)
    h = mix((i & m32) ^ np.uint64(key & 0xFFFFFFFF))
    h = mix(h ^ np.uint64(key >> 32) ^ (i >> np.uint64(32)))
    return (h >> np.uint64(8)) >= np.uint64(dropout_threshold(p))


def test_dropout_kernel_matches_a_numpy_reimplementation():
    """Large enough for the parallel CPU path (chunk boundaries must not shift the element index)."""
    from gpunn.kernels import dropout as k

    n = k.PARALLEL_MIN + 12345
    d = Dropout("cpu", 0.25, seed=5)
    y = d.forward(np.ones((1, n), np.float32), True)
    np.testing.assert_array_equal(y.ravel() > 0, _reference_mask(d.key, n, 0.25))
    small = Dropout("cuda", 0.25, seed=5)  # the simulated CUDA kernel, on a few elements
    ys = to_numpy(small.forward(small.dev.to_device(np.ones((3, 7), np.float32)), True))
    np.testing.assert_array_equal(ys.ravel() > 0, _reference_mask(small.key, 21, 0.25))


def test_dropout_statistics_and_inverted_scaling():
    """Large CPU arrays (the parallel path): keep rate 1 − p, no correlation between neighbours or
    between consecutive masks, and E[output] = input (inverted scaling)."""
    d = Dropout("cpu", 0.3, seed=0)
    x = np.ones((1024, 300), np.float32)
    a = d.forward(x, True) > 0
    b = d.forward(x, True) > 0
    assert abs(a.mean() - 0.7) < 0.003
    assert abs(d.forward(x, True).mean() - 1.0) < 0.005
    assert abs(np.mean(a == b) - (0.7**2 + 0.3**2)) < 0.003  # independent masks
    flat = a.ravel().astype(float)
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.01  # independent neighbours
    assert dropout_threshold(0.3) == round(0.3 * 2**24)


def test_dropout_eval_mode_and_p0_are_identity(dev):
    x = dev.to_device(np.arange(12, dtype=np.float32).reshape(3, 4))
    d = Dropout(dev, 0.5, seed=0)
    assert d.forward(x, False) is x and d.mask is None
    assert d.backward(x) is x
    assert Dropout(dev, 0.0).forward(x, True) is x
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError):
            Dropout(dev, bad)


def test_dropout_frozen_reuses_the_mask():
    x = np.ones((4, 5), np.float32)
    d = Dropout("cpu", 0.5, seed=3)
    first = d.forward(x, True)
    d.frozen = True
    np.testing.assert_array_equal(d.forward(x, True), first)
    d.frozen = False
    assert not np.array_equal(d.forward(x, True), first)


def test_mlp_dropout_layers_and_masks_across_devices():
    net = gpunn.MLP(5, [4, 3], 2, activation="tanh", dropout=0.3, seed=0)
    assert [type(layer).__name__ for layer in net.layers] == [
        "Affine",
        "Tanh",
        "Dropout",
        "Affine",
        "Tanh",
        "Dropout",
        "Affine",
    ]
    net_bn = gpunn.MLP(5, [4], 2, batchnorm=True, dropout=[0.5], seed=0)
    assert [type(layer).__name__ for layer in net_bn.layers] == [
        "Affine",
        "BatchNorm",
        "ReLU",
        "Dropout",
        "Affine",
    ]
    # weights do not depend on whether dropout is on; dropout seeds follow the model seed
    plain = gpunn.MLP(5, [4, 3], 2, activation="tanh", seed=0)
    np.testing.assert_array_equal(plain.params.flat, net.params.flat)
    x = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    cuda = gpunn.MLP(5, [4, 3], 2, activation="tanh", dropout=0.3, seed=0, device="cuda")
    np.testing.assert_allclose(
        to_numpy(cuda.predict(x, train=True)), net.predict(x, train=True), rtol=1e-5, atol=1e-6
    )
    # evaluation mode: no dropout
    np.testing.assert_allclose(net.predict(x), plain.predict(x), rtol=1e-6)


# -- weight decay ----------------------------------------------------------------------------------
def test_weight_decay_loss_and_gradients(dev):
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 3, 5)
    lam = 0.3
    a = gpunn.MLP(4, [6], 3, batchnorm=True, device=dev, seed=0)
    b = gpunn.MLP(4, [6], 3, batchnorm=True, weight_decay=lam, device=dev, seed=0)
    for net in (a, b):  # non-trivial biases and BatchNorm parameters, so a decay on them would show
        net.params["b1"] = 0.5
        net.params["gamma1"] = 1.5
        net.params["beta1"] = -0.25
    W = [to_numpy(a.params[k]) for k in ("W1", "W2")]
    l2 = 0.5 * lam * sum(float((w.astype(np.float64) ** 2).sum()) for w in W)
    assert b.loss(x, t) == pytest.approx(a.loss(x, t) + l2, rel=1e-5)
    ga = {k: to_numpy(v).copy() for k, v in a.gradient(x, t).items()}
    gb = {k: to_numpy(v).copy() for k, v in b.gradient(x, t).items()}
    for k in ga:
        if k.startswith("W"):
            np.testing.assert_allclose(gb[k], ga[k] + lam * to_numpy(a.params[k]), rtol=1e-5, atol=1e-6)
        else:  # biases, gamma, beta: not decayed
            np.testing.assert_array_equal(gb[k], ga[k])


def test_mlp_gradcheck_with_dropout_and_weight_decay_float64():
    """Dropout with a fixed mask (numerical_gradient sees the mask the next gradient() call uses) and
    weight decay, with and without BatchNorm; float64, relative error < 1e-6."""
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    for bn in (False, True):
        net = gpunn.MLP(
            5,
            [4, 4],
            3,
            activation=["sigmoid", "relu"],
            batchnorm=bn,
            dropout=0.3,
            weight_decay=0.1,
            dtype="float64",
            seed=1,
        )
        num = net.numerical_gradient(x, t)  # the textbook's order: numerical first
        grads = net.gradient(x, t)
        for k in grads:
            if bn and k in ("b1", "b2"):  # a bias right before BatchNorm: gradient 0
                assert np.abs(grads[k]).max() < 1e-9
            else:
                assert relative_error(grads[k], num[k]) < 1e-6, (bn, k)


def test_numerical_gradient_leaves_the_model_state_alone():
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((4, 3)), rng.integers(0, 2, 4)
    net = gpunn.MLP(3, [3], 2, batchnorm=True, dropout=0.5, dtype="float64", seed=0)
    state = net.dropout_layers[0].rng.bit_generator.state
    buffers = {k: v.copy() for k, v in net.buffers.items()}
    net.numerical_gradient(x, t)
    assert net.dropout_layers[0].rng.bit_generator.state == state
    for k, v in buffers.items():
        np.testing.assert_array_equal(net.buffers[k], v)


def test_mlp_option_checks():
    with pytest.raises(ValueError):
        gpunn.MLP(3, [3], 2, dropout=1.0)
    with pytest.raises(ValueError):
        gpunn.MLP(3, [3], 2, weight_decay=-1)
    with pytest.raises(ValueError):
        gpunn.MLP(3, [3, 3], 2, dropout=[0.1])
    with pytest.raises(TypeError):
        gpunn.MLP(3, [3], 2, batchnorm="yes")
    r = repr(gpunn.MLP(3, [3], 2, batchnorm=True, dropout=0.2, weight_decay=0.01))
    assert "batchnorm=True" in r and "dropout=0.2" in r and "weight_decay=0.01" in r


# -- the experiments' claims, on small runs ------------------------------------------------------------
def test_weight_init_histogram_claims():
    import weight_init_activations as ex

    def layers(init, act):
        return [ex.stats(a, act) for a in ex.layer_activations(init, act, n=300)]

    std1 = layers(1.0, "sigmoid")
    assert all(s["ends"] > 0.6 for s in std1)  # piled at 0 and 1
    small = layers(0.01, "sigmoid")
    assert all(abs(s["mean"] - 0.5) < 0.01 and s["std"] < 0.03 for s in small)  # all at 0.5
    xavier = layers("lecun_normal", "sigmoid")
    assert all(s["ends"] < 0.05 and s["std"] > 0.08 for s in xavier)  # spread, not saturated
    he = [s["std"] for s in layers("he_normal", "relu")]
    xr = [s["std"] for s in layers("lecun_normal", "relu")]
    assert 0.6 < he[-1] / he[0] < 1.6  # He: even across layers
    assert xr[-1] / xr[0] < 0.5  # Xavier with ReLU: shrinks


def test_zero_init_keeps_hidden_units_identical(mnist_dir):
    import zero_init as ex

    from gpunn.datasets import load_mnist_test_split

    (x, t), _ = load_mnist_test_split(mnist_dir, n_train=8000, seed=0, download=False)
    x, t = x[:500], t[:500]
    zero = ex.hidden_units(ex.train(x, t, "zeros", epochs=2), x)
    rand = ex.hidden_units(ex.train(x, t, "xavier_normal", epochs=2), x)
    # equal up to float32 rounding (BLAS may sum a GEMM's edge columns in another order: not bitwise)
    assert zero["relative_spread"] < 1e-4
    assert np.ptp(zero["act_mean"]) < 1e-4 * np.abs(zero["act_mean"]).max()
    assert np.ptp(zero["w_in_norm"]) < 1e-4 * zero["w_in_norm"].max()
    assert np.abs(zero["w_out"]).max() > 0  # it did train
    assert rand["relative_spread"] > 0.5 and np.ptp(rand["w_in_norm"]) > 0.01


def test_weight_init_compare_std001_barely_learns(mnist_dir):
    import weight_init_compare as ex

    x, t = ex.load_train(mnist_dir)
    small = ex.train_losses(x, t, 0.01, iterations=150)
    he = ex.train_losses(x, t, "he_normal", iterations=150)
    assert np.mean(small[-20:]) > 2.25  # ln 10 ≈ 2.30: stuck
    assert np.mean(he[-20:]) < 1.5


def test_batchnorm_learns_faster_at_a_small_scale(mnist_dir):
    import batchnorm_compare as ex

    from gpunn.datasets import load_mnist_test_split

    (x, t), _ = load_mnist_test_split(mnist_dir, n_train=8000, seed=0, download=False)
    x, t = x[:1000], t[:1000]
    bn = ex.train_accuracy(x, t, 0.01, True, epochs=10)
    plain = ex.train_accuracy(x, t, 0.01, False, epochs=10)
    assert bn[-1] > 0.8 and plain[-1] < 0.3
