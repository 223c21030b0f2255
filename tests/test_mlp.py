"""The MLP: textbook interface, flat buffers, backprop against numerical gradients, bad input."""

import numpy as np
import pytest

import gpunn
from gpunn.gradcheck import relative_error

to_numpy = gpunn.Device.to_numpy


def _data(rng, n=8, d=6, c=4):
    return rng.standard_normal((n, d)), rng.integers(0, c, n)


@pytest.mark.parametrize(
    "activation, loss",
    [
        (["sigmoid", "tanh"], "cross_entropy"),
        ("relu", "cross_entropy"),
        ("leaky_relu", "mse"),
        ("tanh", "hinge"),
        ("sigmoid", "bce"),
        ("tanh", "l1"),
    ],
)
def test_mlp_gradient_check_float64(activation, loss):
    rng = np.random.default_rng(0)
    x, t = _data(rng)
    net = gpunn.MLP(6, [5, 4], 4, activation=activation, loss=loss, dtype="float64", seed=1)
    grads = net.gradient(x, t)
    num = net.numerical_gradient(x, t)
    assert list(grads) == list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    for k in net.params:
        assert relative_error(grads[k], num[k]) < 1e-6, k


def test_textbook_network_forward_matches_the_formulas():
    rng = np.random.default_rng(3)
    net = gpunn.MLP(784, [64, 16], 10, activation=["sigmoid", "tanh"], dtype="float64", seed=0)
    x = rng.random((5, 784))
    t = rng.integers(0, 10, 5)
    p = net.params
    a1 = 1 / (1 + np.exp(-(x @ p["W1"] + p["b1"])))
    a2 = np.tanh(a1 @ p["W2"] + p["b2"])
    z3 = a2 @ p["W3"] + p["b3"]
    a3 = np.exp(z3) / np.exp(z3).sum(axis=1, keepdims=True)
    assert np.allclose(net.predict(x), z3)
    assert np.allclose(net.predict_proba(x), a3)
    assert net.loss(x, t) == pytest.approx(-np.log(a3[np.arange(5), t]).mean())
    # backward, as written in the course: dZ3 = A3 - Y, dW3 = A2ᵀ·dZ3 (mean over the batch)
    y = np.eye(10)[t]
    dz3 = (a3 - y) / 5
    dz2 = (dz3 @ p["W3"].T) * (1 - a2**2)
    dz1 = (dz2 @ p["W2"].T) * a1 * (1 - a1)
    g = net.gradient(x, t)
    assert np.allclose(g["W3"], a2.T @ dz3) and np.allclose(g["b3"], dz3.sum(0))
    assert np.allclose(g["W2"], a1.T @ dz2) and np.allclose(g["W1"], x.T @ dz1)


def test_params_and_grads_are_views_of_one_buffer_each(dev):
    net = gpunn.MLP(5, [4, 3], 2, device=dev, seed=0)
    assert net.params.flat.ndim == 1
    assert net.params.flat.size == net.n_params == 5 * 4 + 4 + 4 * 3 + 3 + 3 * 2 + 2
    for k, v in net.params.items():
        assert dev.xp.shares_memory(v, net.params.flat), k
    # weights first in the buffer: the optimizer's weight-decay prefix
    assert net.layout.n_decay == 5 * 4 + 4 * 3 + 3 * 2
    assert net.layout.offsets["W3"] + 6 == net.layout.offsets["b1"]
    x = np.ones((3, 5), np.float32)
    grads = net.gradient(x, [0, 1, 1])
    assert grads is net.grads and grads.flat is net.grads.flat


def test_assigning_a_param_writes_into_the_buffer():
    net = gpunn.MLP(3, [2], 2, seed=0)
    net.params["W1"] = np.full((3, 2), 0.5, np.float32)
    assert np.all(net.params.flat[net.layout.offsets["W1"] :][:6] == 0.5)
    with pytest.raises(ValueError, match="shape"):
        net.params["W1"] = np.zeros((2, 2))
    with pytest.raises(KeyError):
        net.params["W9"] = np.zeros((2, 2))


def test_same_seed_same_weights_on_every_device(dev):
    a = gpunn.MLP(6, [5], 3, device="cpu", seed=7)
    b = gpunn.MLP(6, [5], 3, device=dev, seed=7)
    c = gpunn.MLP(6, [5], 3, device=dev, seed=8)
    assert np.array_equal(to_numpy(a.params.flat), to_numpy(b.params.flat))
    assert not np.array_equal(to_numpy(b.params.flat), to_numpy(c.params.flat))


def test_indices_and_one_hot_targets_agree():
    rng = np.random.default_rng(1)
    x, t = _data(rng)
    net = gpunn.MLP(6, [5], 4, dtype="float64", seed=0)
    g1 = {k: v.copy() for k, v in net.gradient(x, t).items()}
    g2 = net.gradient(x, np.eye(4)[t])
    assert net.loss(x, t) == pytest.approx(net.loss(x, np.eye(4)[t]))
    assert all(np.allclose(g1[k], g2[k]) for k in g1)
    assert net.accuracy(x, t) == net.accuracy(x, np.eye(4)[t])


def test_cpu_and_cuda_train_the_same(dev):
    rng = np.random.default_rng(2)
    x = rng.random((16, 12), dtype=np.float32)
    t = rng.integers(0, 3, 16)
    ref = gpunn.MLP(12, [6], 3, activation="tanh", seed=3)
    net = gpunn.MLP(12, [6], 3, activation="tanh", device=dev, seed=3)
    for model in (ref, net):
        opt = gpunn.optim.SGD(lr=0.5)
        for _ in range(3):
            opt.update(model.params, model.gradient(x, t))
    assert np.allclose(to_numpy(net.params.flat), ref.params.flat, rtol=1e-5, atol=1e-6)
    assert net.loss(x, t) == pytest.approx(ref.loss(x, t), rel=1e-5)


def test_float32_stays_float32():
    net = gpunn.MLP(4, [3], 2, seed=0)
    x = np.random.default_rng(0).random((5, 4))  # float64 input is cast to the model's dtype
    g = net.gradient(x, [0, 1, 0, 1, 1])
    assert net.predict(x).dtype == np.float32 and g.flat.dtype == np.float32


@pytest.mark.parametrize(
    "x, t, err, match",
    [
        (np.zeros((4, 5)), [0, 1, 2, 0], ValueError, r"shape \(batch, 6\)"),
        (np.zeros((4, 6)), [0, 1, 2], ValueError, "3 labels but the batch has 4"),
        (np.zeros((4, 6)), [0, 1, 2, 4], ValueError, r"labels must be in \[0, 3\]"),
        (np.zeros((4, 6)), [0, 1, -1, 0], ValueError, r"labels must be in \[0, 3\]"),
        (np.full((4, 6), np.nan), [0, 1, 2, 0], ValueError, "non-finite"),
        (np.zeros((4, 6), np.uint8), [0, 1, 2, 0], TypeError, "integer dtype"),
        (np.zeros((0, 6)), [], ValueError, "empty batch"),
        (np.zeros((4, 6)), [0.5, 1, 2, 0], ValueError, "not whole numbers"),
        (np.zeros((4, 6)), np.zeros((4, 3)), ValueError, "one-hot of shape"),
        (np.zeros((4, 6)), ["a", "b", "c", "d"], TypeError, "integer class indices"),
        (np.zeros((4, 6), dtype=object), [0, 1, 2, 0], TypeError, "object"),
        ("not an array", [0], TypeError, "x"),
    ],
)
def test_bad_input_is_named(x, t, err, match):
    net = gpunn.MLP(6, [5], 4, seed=0)
    with pytest.raises(err, match=match):
        net.gradient(x, t)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(activation="swish"), "unknown activation"),
        (dict(init="glorious"), "unknown initialiser"),
        (dict(device="tpu"), "unknown device"),
        (dict(loss="kl"), "unknown loss"),
        (dict(activation=["relu"]), "1 entries for 2 layers"),
        (dict(dtype="float16"), "float32 or float64"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gpunn.MLP(6, [5, 4], 3, **kwargs)


def test_bad_sizes():
    with pytest.raises(ValueError, match="must be a positive integer"):
        gpunn.MLP(6, [0], 3)
