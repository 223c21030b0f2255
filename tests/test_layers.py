"""Every layer and every loss against central differences (float64, relative error < 1e-6)."""

import numpy as np
import pytest

import gpunn
from gpunn import layers, losses
from gpunn.gradcheck import numerical_gradient, relative_error

TOL = 1e-6


def _check_layer(layer, x, rng):
    out = layer.forward(x.copy(), train=True)
    r = rng.standard_normal(out.shape)
    dx = layer.backward(r)

    def f():
        return float((layer.forward(x, train=True) * r).sum())

    assert relative_error(dx, numerical_gradient(f, x)) < TOL
    return r


@pytest.mark.parametrize(
    "name", sorted({cls: name for name, cls in sorted(layers.ACTIVATIONS.items(), reverse=True)}.values())
)
def test_activation_gradients(name):
    """Every activation class of the registry (one name each: sigmoid, tanh, relu, leaky_relu, gelu,
    identity)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 7))
    x[np.abs(x) < 1e-3] = 0.5  # keep ReLU's kink away from the finite-difference step
    _check_layer(layers.get_activation(name, np), x, rng)


def test_leaky_relu_slope_and_validation():
    layer = layers.LeakyReLU(np, slope=0.2)
    assert np.allclose(layer.forward(np.array([[-1.0, 2.0]])), [[-0.2, 2.0]])
    with pytest.raises(ValueError, match="slope"):
        layers.LeakyReLU(np, slope=-0.1)


def test_sigmoid_is_stable_and_matches_the_formula():
    x = np.array([[-800.0, -5.0, 0.0, 5.0, 800.0]])
    with np.errstate(all="raise"):
        y = layers.Sigmoid(np).forward(x)
    assert np.allclose(y[0, 1:4], 1 / (1 + np.exp(-x[0, 1:4])))
    assert y[0, 0] == 0.0 and y[0, -1] == 1.0


def test_affine_gradients():
    rng = np.random.default_rng(1)
    W, b = rng.standard_normal((4, 3)), rng.standard_normal(3)
    dW, db = np.zeros_like(W), np.zeros_like(b)
    layer = layers.Affine(np, W, b, dW, db)
    x = rng.standard_normal((6, 4))
    r = _check_layer(layer, x, rng)
    layer.forward(x)
    layer.backward(r)

    def f():
        return float((layer.forward(x) * r).sum())

    assert relative_error(dW, numerical_gradient(f, W)) < TOL
    assert relative_error(db, numerical_gradient(f, b)) < TOL


def _targets(kind, rng, n, c):
    if kind == "index":
        return rng.integers(0, c, n)
    if kind == "onehot":
        return np.eye(c)[rng.integers(0, c, n)]
    if kind == "binary":
        return (rng.random((n, c)) > 0.5).astype(float)
    return rng.standard_normal((n, c))


@pytest.mark.parametrize(
    "loss_cls, target, positive",
    [
        (losses.SoftmaxCrossEntropy, "index", False),
        (losses.SoftmaxCrossEntropy, "onehot", False),
        (losses.CrossEntropy, "onehot", True),
        (losses.CrossEntropy, "index", True),
        (lambda xp: losses.BinaryCrossEntropy(xp, from_logits=True), "binary", False),
        (losses.BinaryCrossEntropy, "binary", True),
        (losses.MeanSquaredError, "real", False),
        (losses.MeanSquaredError, "index", False),
        (losses.L1Loss, "real", False),
        (losses.Hinge, "index", False),
        (losses.Hinge, "onehot", False),
    ],
)
def test_loss_gradients(loss_cls, target, positive):
    rng = np.random.default_rng(2)
    n, c = 6, 4
    y = rng.random((n, c)) * 0.8 + 0.1 if positive else rng.standard_normal((n, c))
    t = _targets(target, rng, n, c)
    loss = loss_cls(np)
    value = loss.forward(y, t)
    assert np.isfinite(value)
    dy = loss.backward()
    assert relative_error(dy, numerical_gradient(lambda: loss.forward(y, t), y)) < TOL


def test_softmax_cross_entropy_is_stable_and_a_mean():
    loss = losses.SoftmaxCrossEntropy(np)
    y = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    assert loss.forward(y, np.array([0, 1])) == pytest.approx(0.0, abs=1e-12)
    assert loss.forward(y, np.array([1, 1])) == pytest.approx(500.0)  # (1000 + 0) / 2


def test_textbook_cross_entropy_value():
    # Saito ch. 4: y = [0.1, 0.05, 0.6, 0, 0.05, 0.1, 0, 0.1, 0, 0], t = 2 -> 0.510825457...
    y = np.array([[0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]])
    assert losses.CrossEntropy(np).forward(y, np.array([2])) == pytest.approx(0.510825457099338, rel=1e-6)


def test_unknown_loss_and_activation_names():
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get_loss("nope", np)
    with pytest.raises(ValueError, match="unknown activation"):
        layers.get_activation("swishy", np)


def test_initialisers_statistics():
    rng = np.random.default_rng(0)
    n_in, n_out = 400, 600
    expect_std = {
        "xavier_normal": np.sqrt(2 / (n_in + n_out)),
        "he_normal": np.sqrt(2 / n_in),
        "lecun_normal": 1 / np.sqrt(n_in),
        0.01: 0.01,
        1.0: 1.0,
        "xavier_uniform": np.sqrt(6 / (n_in + n_out)) / np.sqrt(3),
        "he_uniform": np.sqrt(6 / n_in) / np.sqrt(3),
        "uniform": 1 / np.sqrt(n_in) / np.sqrt(3),
        "he_leaky": np.sqrt(2 / ((1 + 0.01**2) * n_in)),
    }
    for name, std in expect_std.items():
        w = gpunn.init.get_initializer(name)(rng, n_in, n_out)
        assert w.shape == (n_in, n_out)
        assert w.std() == pytest.approx(std, rel=0.02), name
        assert abs(w.mean()) < 0.01 * std * 10
    assert not gpunn.init.get_initializer("zeros")(rng, 3, 2).any()
    w = gpunn.init.get_initializer("uniform")(rng, n_in, n_out)
    assert np.abs(w).max() <= 1 / np.sqrt(n_in)
    assert gpunn.init.HeLeaky(0.2).std(100, 1) == pytest.approx(np.sqrt(2 / (1.04 * 100)))


@pytest.mark.parametrize("bad", ["xavierr", -1.0, True, float("nan")])
def test_bad_initialisers(bad):
    with pytest.raises((ValueError, TypeError)):
        gpunn.init.get_initializer(bad)


@pytest.mark.parametrize("fused", [False, True])
def test_relu_keeps_the_textbook_mask_semantics_for_inf_and_nan(dev, fused):
    """ReLU as the textbooks' mask code (``mask = x <= 0``): −∞ gives 0, NaN stays NaN; the gradient
    is 0 where the output is ≤ 0 even when the incoming gradient is NaN, and passes where the output
    is NaN.  The fused kernels (CPU and CUDA) and the NumPy layer agree, so a run that diverges does
    so the same way as the book's code."""
    from conftest import to_numpy

    x = np.array([[-np.inf, -1.0, 0.0, np.nan, 2.0, np.inf]])
    d = np.array([[np.nan, np.inf, np.nan, 3.0, 4.0, 5.0]])
    layer = layers.get_activation("relu", dev.xp, dev=dev if fused else None)
    y = to_numpy(layer.forward(dev.to_device(x), train=True))
    dx = to_numpy(layer.backward(dev.to_device(d)))
    np.testing.assert_array_equal(y, [[0, 0, 0, np.nan, 2, np.inf]])
    np.testing.assert_array_equal(dx, [[0, 0, 0, 3, 4, 5]])
