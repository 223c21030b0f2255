"""The fast path (``MLP(fused=True)``, the default: fused Numba kernels, reused buffers, no ∂L/∂x for
the first layer) against the textbook layers (``fused=False``, the reference), on the CPU and in the
CUDA simulator: same losses over several Adam steps, same gradients, odd sizes, float32 kept."""

import numpy as np
import pytest
from conftest import to_numpy
from gpunn.kernels import activations as K
from numba import njit

import gpunn
from gpunn.layers import ACTIVATIONS


def _activation_names():
    """One name per activation class of the registry (``gpunn.layers.ACTIVATIONS``): sigmoid, tanh,
    relu, leaky_relu, identity, and any added since."""
    first = {}
    for name, cls in sorted(ACTIVATIONS.items()):
        first.setdefault(cls, name)
    return sorted(first.values())


ACTS = _activation_names()


def _pair(dev, sizes, act, **kw):
    fast = gpunn.MLP(sizes[0], sizes[1:-1], sizes[-1], activation=act, device=dev, seed=3, **kw)
    ref = gpunn.MLP(sizes[0], sizes[1:-1], sizes[-1], activation=act, device=dev, seed=3, fused=False, **kw)
    return fast, ref


def _data(n, d, c, seed=0, onehot=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    t = rng.integers(0, c, n)
    if onehot:
        t = np.eye(c, dtype=np.float32)[t]
    return x, t


@pytest.mark.parametrize("act", ACTS)
def test_gradients_match_reference(dev, act):
    fast, ref = _pair(dev, [5, 3, 4, 3], act)
    x, t = _data(3, 5, 3)
    gf, gr = fast.gradient(x, t), ref.gradient(x, t)
    assert float(fast.last_loss) == pytest.approx(float(ref.last_loss), rel=1e-5)
    for k in gr:
        np.testing.assert_allclose(to_numpy(gf[k]), to_numpy(gr[k]), rtol=1e-4, atol=1e-6, err_msg=k)
        assert gf[k].dtype == np.float32


@pytest.mark.parametrize(
    "kw",
    [
        dict(activation=["tanh", "relu"]),
        dict(activation="relu", batchnorm=True),
        dict(activation="sigmoid", weight_decay=0.01),
    ],
)
def test_loss_curve_matches_reference(dev, kw):
    kw = dict(kw)
    act = kw.pop("activation")
    fast, ref = _pair(dev, [7, 5, 3, 3], act, **kw)
    curves = []
    for net in (fast, ref):
        opt = gpunn.optim.Adam(lr=1e-2)
        curve = []
        for s in range(4):
            x, t = _data(5, 7, 3, seed=s, onehot=(s % 2 == 1))
            grads = net.gradient(x, t)
            opt.update(net.params, grads)
            curve.append(float(net.last_loss))
        curves.append(curve)
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-5)
    for k in ref.params:
        if kw.get("batchnorm") and k in ("b1", "b2"):
            continue  # before BatchNorm: gradient ~0 (rounding noise), which Adam amplifies to ±lr
        np.testing.assert_allclose(
            to_numpy(fast.params[k]), to_numpy(ref.params[k]), rtol=1e-4, atol=1e-5, err_msg=k
        )
    assert fast.params.flat.dtype == np.float32


def test_predict_returns_fresh_arrays():
    net = gpunn.MLP(4, [3], 2, seed=0)
    x1, _ = _data(2, 4, 2, seed=1)
    x2, _ = _data(2, 4, 2, seed=2)
    y1 = net.predict(x1).copy()
    a = net.predict(x1)
    net.predict(x2)
    np.testing.assert_array_equal(a, y1)


def test_first_layer_skips_dx():
    net = gpunn.MLP(6, [4], 3, seed=0)
    x, t = _data(2, 6, 3)
    net.gradient(x, t)
    assert net.layers[0].need_dx is False
    assert net.layers[0].backward(np.ones((2, 4), np.float32)) is None


@pytest.mark.parametrize("n,c", [(1, 1), (3, 7), (5, 13)])
@pytest.mark.parametrize("kind", range(5))
def test_kernels_odd_sizes_in_bounds(kind, n, c):
    """Kernels write exactly their (N, C) arrays: guard elements around them stay untouched."""
    rng = np.random.default_rng(0)
    f = np.float32
    half, one, zero, slope = f(0.5), f(1), f(0), f(0.1)
    big = np.full(n * c + 2, 7.0, f)
    out = big[1:-1].reshape(n, c)
    z = rng.standard_normal((n, c)).astype(f)
    b = rng.standard_normal(c).astype(f)
    K.bias_act_cpu(z, b, out, kind, slope, half, one, zero)
    assert big[0] == 7 and big[-1] == 7
    dbig = np.full(c + 2, 7.0, f)
    dz = np.empty((n, c), f)
    K.act_grad_bias_cpu(z, out, dz, dbig[1:-1], kind, slope, one, zero)
    assert dbig[0] == 7 and dbig[-1] == 7
    np.testing.assert_allclose(dbig[1:-1], dz.sum(axis=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n,c", [(1, 1), (3, 7), (4, 10)])
def test_softmax_xent_kernel(n, c):
    rng = np.random.default_rng(1)
    f = np.float32
    y = (rng.standard_normal((n, c)) * 30).astype(f)
    t = rng.integers(0, c, n)
    d = np.empty((n, c), f)
    loss = K.softmax_xent_cpu(y, t, d, f(1 / n), f(1), f(0))
    y64 = y.astype(np.float64)
    lp = y64 - y64.max(1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(1, keepdims=True))
    assert loss == pytest.approx(-lp[np.arange(n), t].mean(), rel=1e-5, abs=1e-6)
    ref = np.exp(lp)
    ref[np.arange(n), t] -= 1
    np.testing.assert_allclose(d, ref / n, rtol=1e-5, atol=1e-6)


def test_float32_kernels_compile_without_float64():
    """Every float32 signature of the CPU kernels is float32 only: no float64 in the typed IR."""
    net = gpunn.MLP(6, [5, 4], 3, activation=["sigmoid", "relu"], seed=0, batchnorm=False)
    x, t = _data(4, 6, 3)
    net.gradient(x, t)
    net.gradient(x, np.eye(3, dtype=np.float32)[t])
    checked = 0
    for kern in (
        K.bias_act_cpu,
        K.act_grad_bias_cpu,
        K.softmax_xent_cpu,
        K.softmax_xent_soft_cpu,
        K.add_bias_cpu,
        K.col_sum_cpu,
        K.act_cpu,
        K.act_grad_cpu,
        K.all_finite_cpu,
    ):
        for sig in kern.signatures:
            if any("float32" in str(a) for a in sig):
                assert not any("float64" in str(a) for a in sig), (kern, sig)
                # the cached kernels cannot be inspected: recompile the same function uncached
                fresh = njit(error_model="numpy")(kern.py_func)
                fresh.compile(sig)
                typemap = fresh.overloads[sig].type_annotation.typemap
                wide = {k: str(v) for k, v in typemap.items() if "float64" in str(v)}
                assert not wide, (kern.__name__, wide)
                checked += 1
    assert checked >= 6


def test_non_finite_input_still_rejected():
    net = gpunn.MLP(3, [2], 2, seed=0)
    x = np.ones((2, 3), np.float32)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        net.gradient(x, [0, 1])
    x[1, 2] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        net.gradient(x, [0, 1])
