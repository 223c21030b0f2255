"""The rules added through the registry (issue 17): what the rule × device × dtype grids of
``test_optim.py`` (fused against the reference, derived from ``gpunn.optim.OPTIMIZERS``) do not
show -- each rule's defining property, and equivalences with the rules it extends."""

import numpy as np
import pytest
from conftest import to_numpy

import gpunn
from gpunn import optim
from gpunn.optim import references as ref
from gpunn.params import FlatLayout

LAYOUT = FlatLayout([("W1", (4, 5), True), ("b1", (5,), False), ("W2", (5, 3), True), ("b2", (3,), False)])


def flat(dev, dtype="float32", seed=0, scale=1.0):
    """Random views of one flat buffer of ``LAYOUT`` (parameters and gradients share the layout:
    one launch per step, state under ``__flat__``)."""
    rng = np.random.default_rng(seed)
    return LAYOUT.views(dev.to_device((scale * rng.standard_normal(LAYOUT.size)).astype(dtype)), dev)


# -- AMSGrad ------------------------------------------------------------------------------------
def test_amsgrad_is_adam_while_v_grows(dev):
    """With |g| growing every step, v never falls, so v_max = v and AMSGrad takes Adam's steps
    (the same arithmetic: equal to the bit)."""
    p1, p2 = flat(dev), flat(dev)
    a, b = optim.Adam(lr=0.01, weight_decay=0.01), optim.AMSGrad(lr=0.01, weight_decay=0.01)
    for k in range(6):
        g = flat(dev, seed=1, scale=2.0**k)
        a.update(p1, g)
        b.update(p2, g)
    np.testing.assert_array_equal(to_numpy(p1.flat), to_numpy(p2.flat))
    state = b.state_dict()
    np.testing.assert_array_equal(state["state.__flat__.v_max"], state["state.__flat__.v"])


def test_amsgrad_remembers_a_large_gradient(dev):
    """After one large gradient and small ones, v decays (fast, with β2 = 0.5) but v_max does not:
    AMSGrad's later steps are far smaller than Adam's, and v_max is the running maximum of v."""
    p1, p2 = flat(dev), flat(dev)
    a, b = optim.Adam(lr=0.01, beta1=0.5, beta2=0.5), optim.AMSGrad(lr=0.01, beta1=0.5, beta2=0.5)
    v_max = None
    for k in range(8):
        before = to_numpy(p1.flat).copy(), to_numpy(p2.flat).copy()
        if k == 1:
            np.testing.assert_array_equal(*before)  # the first steps agree
        g = flat(dev, seed=2 + k, scale=100.0 if k == 0 else 0.01)
        a.update(p1, g)
        b.update(p2, g)
        s = b.state_dict()
        v_max = s["state.__flat__.v"] if v_max is None else np.maximum(v_max, s["state.__flat__.v"])
        np.testing.assert_array_equal(s["state.__flat__.v_max"], v_max)
    last_adam = np.abs(to_numpy(p1.flat) - before[0]).sum()  # the last step
    last_ams = np.abs(to_numpy(p2.flat) - before[1]).sum()
    assert last_ams < 0.1 * last_adam, (last_ams, last_adam)


def test_amsgrad_reference_is_torch_form():
    """The reference, written out for one scalar: max of the raw v, corrected afterwards."""
    p, r = {"w": np.array([1.0])}, ref.AMSGrad(lr=0.1, beta1=0.5, beta2=0.5, eps=0.0)
    r.update(p, {"w": np.array([2.0])})  # m = 1, v = 2, v_max = 2; m̂ = 2, v̂ = 4: θ = 1 − 0.1
    assert p["w"][0] == pytest.approx(0.9)
    r.update(p, {"w": np.array([0.0])})  # m = .5, v = 1, v_max = 2; m̂ = 2/3, v̂ = 8/3
    assert p["w"][0] == pytest.approx(0.9 - 0.1 * (2 / 3) / np.sqrt(8 / 3))


@pytest.mark.parametrize("shape", [(), (0,), (1, 0, 2), (3,)], ids=str)
def test_amsgrad_scalar_and_zero_size(dev, shape):
    p = {"x": dev.xp.asarray(np.full(shape, 1.0, np.float32))}
    g = {"x": dev.xp.asarray(np.full(shape, 2.0, np.float32))}
    expected = {"x": np.full(shape, 1.0, np.float32)}
    opt, reference = optim.AMSGrad(lr=0.1, device=dev), ref.AMSGrad(lr=0.1)
    for _ in range(3):
        opt.update(p, g)
        reference.update(expected, {"x": np.full(shape, 2.0, np.float32)})
    assert to_numpy(p["x"]).shape == shape
    np.testing.assert_allclose(to_numpy(p["x"]), expected["x"], rtol=1e-6)


@pytest.mark.parametrize("name, weight_decay", [("AMSGrad", 0.01), ("Lion", 0.1)])
def test_new_rule_float64_cuda_matches_reference(name, weight_decay):
    dev = gpunn.device("cuda", strict=True)
    p, g = flat(dev, "float64"), flat(dev, "float64", seed=5)
    host = {k: to_numpy(v).copy() for k, v in p.items()}
    opt = getattr(optim, name)(lr=0.01, weight_decay=weight_decay)
    reference = getattr(ref, name)(lr=0.01, weight_decay=weight_decay)
    for _ in range(4):
        opt.update(p, g)
        reference.update(host, {k: to_numpy(v) for k, v in g.items()})
    for k in host:
        np.testing.assert_allclose(to_numpy(p[k]), host[k], rtol=1e-12, atol=1e-14)


# -- Lion ---------------------------------------------------------------------------------------
def test_lion_moves_every_parameter_by_exactly_lr():
    """Without decay each step is ±η per parameter, whatever the gradient's size (float64: the
    differences are η up to the rounding of θ)."""
    dev = gpunn.device("cpu")
    p = flat(dev, "float64")
    opt = optim.Lion(lr=1e-3)
    for k in range(4):
        before = p.flat.copy()
        opt.update(p, flat(dev, "float64", seed=10 + k, scale=10.0 ** (3 * k - 4)))
        np.testing.assert_allclose(np.abs(p.flat - before), 1e-3, rtol=1e-9)


def test_lion_is_invariant_to_the_gradient_scale(dev):
    """sign(c) does not see a positive scale: gradients × 1024 (exact in binary) give the same
    trajectory to the bit; the state m scales by 1024."""
    p1, p2 = flat(dev), flat(dev)
    a, b = optim.Lion(lr=0.01, weight_decay=0.1), optim.Lion(lr=0.01, weight_decay=0.1)
    for k in range(5):
        a.update(p1, flat(dev, seed=20 + k))
        b.update(p2, flat(dev, seed=20 + k, scale=1024.0))
    np.testing.assert_array_equal(to_numpy(p1.flat), to_numpy(p2.flat))
    m1, m2 = (o.state_dict()["state.__flat__.m"] for o in (a, b))
    np.testing.assert_array_equal(1024 * m1, m2)


def test_lion_zero_and_nan(dev):
    """sign(0) = 0: a zero gradient with zero momentum moves nothing; sign(NaN) = NaN propagates."""
    p = {"W": dev.to_device(np.array([[1.0, -2.0, 3.0]], np.float32))}
    g = {"W": dev.to_device(np.array([[0.0, -0.0, np.nan]], np.float32))}
    optim.Lion(lr=0.1, device=dev).update(p, g)
    got = to_numpy(p["W"])
    np.testing.assert_array_equal(got[0, :2], [1.0, -2.0])
    assert np.isnan(got[0, 2])


def test_lion_decay_is_decoupled_and_on_weights_only(dev):
    """Zero gradients: θ ← θ(1 − ηλ) on weights (W1, W2), biases untouched."""
    p = flat(dev)
    start = {k: to_numpy(v).copy() for k, v in p.items()}
    opt = optim.Lion(lr=0.1, weight_decay=0.5)
    opt.update(p, LAYOUT.views(dev.xp.zeros(LAYOUT.size, np.float32), dev))
    for k in start:
        factor = np.float32(1 - 0.05) if k.startswith("W") else np.float32(1)
        np.testing.assert_allclose(to_numpy(p[k]), start[k] * factor, rtol=1e-6)


@pytest.mark.parametrize("shape", [(), (0,), (1, 0, 2), (3,)], ids=str)
def test_lion_scalar_and_zero_size(dev, shape):
    p = {"x": dev.xp.asarray(np.full(shape, 1.0, np.float32))}
    g = {"x": dev.xp.asarray(np.full(shape, -2.0, np.float32))}
    opt = optim.Lion(lr=0.1, device=dev)
    for _ in range(3):
        opt.update(p, g)
    assert to_numpy(p["x"]).shape == shape
    np.testing.assert_allclose(to_numpy(p["x"]), np.full(shape, 1.3, np.float32), rtol=1e-6)


# -- activations: what a layer class declares ---------------------------------------------------
def _affine_before(net, layer):
    return net.layers[net.layers.index(layer) - 1]


def test_bias_fusion_follows_the_class_attribute(dev):
    """A subclass of a gpunn activation keeps the fused bias (it was dropped when fusion was decided
    by the class's name); one that declares ``FUSES_BIAS = False`` gets the Affine's own bias
    kernels -- and both give the reference's gradients."""
    from gpunn.layers import Sigmoid

    class MySigmoid(Sigmoid):
        pass

    class Unfused(Sigmoid):
        FUSES_BIAS = False

    x = np.random.default_rng(0).standard_normal((6, 4))
    t = np.arange(6) % 3
    ref = gpunn.MLP(4, [5, 5], 3, activation="sigmoid", device=dev, seed=1, fused=False)
    expected = {k: to_numpy(v).copy() for k, v in ref.gradient(x, t).items()}
    for cls, fused in ((MySigmoid, True), (Unfused, False)):
        net = gpunn.MLP(4, [5, 5], 3, activation=cls, device=dev, seed=1)
        acts = [layer for layer in net.layers if isinstance(layer, cls)]
        assert len(acts) == 2
        for act in acts:
            assert _affine_before(net, act).bias_deferred is fused
            assert (act.bias is not None) is fused
        got = net.gradient(x, t)
        for k in expected:
            np.testing.assert_allclose(to_numpy(got[k]), expected[k], rtol=1e-5, atol=1e-7, err_msg=(cls, k))


def test_mlp_finds_activations_by_attribute():
    """Dropout goes after each hidden activation, found by ``is_activation`` -- also for a plain
    ``Layer`` given as the activation -- and never after another layer type."""
    from gpunn.layers import Layer
    from gpunn.regularization import Dropout

    class Square(Layer):
        def forward(self, x, train=False):
            self.x = x
            return x * x

        def backward(self, dout):
            return 2 * self.x * dout

    net = gpunn.MLP(4, [3, 3], 2, activation=["relu", Square], dropout=0.5, batchnorm=True, seed=0)
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds == [
        "Affine",
        "BatchNorm",
        "ReLU",
        "Dropout",
        "Affine",
        "BatchNorm",
        "Square",
        "Dropout",
        "Affine",
    ]
    assert [layer.is_activation for layer in net.layers] == [k in ("ReLU", "Square") for k in kinds]
    assert sum(isinstance(layer, Dropout) for layer in net.layers) == 2


# -- GELU ---------------------------------------------------------------------------------------
def gelu_tanh(z):
    """The tanh approximation in float64, written out."""
    return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))


def test_gelu_values():
    from gpunn.layers import GELU

    z = np.array([-1e3, -3.0, -1.0, 0.0, 1.0, 3.0, 1e3])
    got = GELU(np).forward(z.copy())
    np.testing.assert_allclose(got, gelu_tanh(z), rtol=1e-15, atol=1e-300)
    assert got[3] == 0.0 and got[0] == 0.0 and got[-1] == 1e3
    assert got[4] == pytest.approx(0.8411919906, rel=1e-9)  # PyTorch's GELU(approximate="tanh")(1.)
    # within 1e-3 of the exact z·Φ(z)
    from math import erf

    exact = np.array([0.5 * v * (1 + erf(v / np.sqrt(2))) for v in z])
    np.testing.assert_allclose(got, exact, atol=1e-3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(4, 3), (0, 3), (7,), ()], ids=str)
def test_gelu_fused_matches_reference(dev, dtype, shape):
    """The fused layer (kernels, gradient from the kept input) against the textbook layer on the same
    device, forward and backward; the input is not overwritten."""
    from gpunn.layers import GELU

    rng = np.random.default_rng(0)
    z = (3 * rng.standard_normal(shape)).astype(dtype)
    d = rng.standard_normal(shape).astype(dtype)
    fused, ref = GELU(dev.xp, dev=dev), GELU(dev.xp)
    zf = dev.to_device(z)
    out = fused.forward(zf)
    expected = ref.forward(dev.to_device(z))
    np.testing.assert_array_equal(to_numpy(zf), z)
    rel = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(to_numpy(out), to_numpy(expected), rtol=rel, atol=rel)
    dz = fused.backward(dev.to_device(d))
    np.testing.assert_allclose(to_numpy(dz), to_numpy(ref.backward(dev.to_device(d))), rtol=rel, atol=rel)
    assert to_numpy(out).dtype == dtype and to_numpy(dz).dtype == dtype and to_numpy(dz).shape == shape


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gelu_mlp_trains_like_the_reference(dev, dtype):
    """Inside an MLP (in-place buffers, the Affine's own bias kernels, BatchNorm before it): the same
    losses over Adam steps as the textbook layers, and the He initialisation of init="auto"."""
    from gpunn.layers import GELU

    kw = dict(activation="gelu", device=dev, dtype=dtype, seed=3, batchnorm=True)
    fast, ref = gpunn.MLP(6, [5, 4], 3, **kw), gpunn.MLP(6, [5, 4], 3, fused=False, **kw)
    he = gpunn.MLP(6, [5, 4], 3, **{**kw, "activation": "relu"})
    np.testing.assert_array_equal(to_numpy(fast.params.flat), to_numpy(he.params.flat))
    acts = [layer for layer in fast.layers if isinstance(layer, GELU)]
    assert len(acts) == 2 and all(layer.inplace and layer.bias is None for layer in acts)
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((5, 6)) for _ in range(4)]
    curves = []
    for net in (fast, ref):
        opt = optim.Adam(lr=1e-2)
        curve = []
        for x in batches:
            opt.update(net.params, net.gradient(x, np.arange(5) % 3))
            curve.append(float(net.last_loss))
        curves.append(curve)
    rel = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(curves[0], curves[1], rtol=rel)
    for k in ref.params:
        if k not in ("b1", "b2"):  # before BatchNorm: zero gradient up to rounding, Adam amplifies it
            np.testing.assert_allclose(
                to_numpy(fast.params[k]), to_numpy(ref.params[k]), rtol=rel * 10, atol=rel, err_msg=k
            )
