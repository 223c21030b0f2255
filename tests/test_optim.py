"""The fused optimizers against the textbook NumPy references, on the CPU kernels and on the CUDA
kernels (in Numba's simulator unless GPUNN_TEST_DEVICE=cuda), plus the textbook's own numbers and
the equivalences between rules."""

import inspect

import numpy as np
import pytest
from conftest import to_numpy

import gpunn
from gpunn import optim
from gpunn.optim import references as ref
from gpunn.params import FlatLayout

# Every optimizer, with non-default hyper-parameters (so each kernel argument matters) and L2 /
# decoupled weight decay switched on: the textbook's eight as chosen here, the others of the
# registry (``optim.OPTIMIZERS``) from ``example_hyper``.
RULES = {
    "SGD": dict(lr=0.1, weight_decay=0.05),
    "Momentum": dict(lr=0.05, momentum=0.8, weight_decay=0.05),
    "Nesterov": dict(lr=0.05, momentum=0.8, weight_decay=0.05),
    "AdaGrad": dict(lr=0.1, eps=1e-6, weight_decay=0.05),
    "AdaDelta": dict(lr=0.9, rho=0.8, eps=1e-5, weight_decay=0.05),
    "RMSprop": dict(lr=0.01, rho=0.95, eps=1e-8, weight_decay=0.05),
    "Adam": dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-8, weight_decay=0.05),
    "AdamW": dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-8, weight_decay=0.05),
}


def example_hyper(cls) -> dict:
    """Non-default hyper-parameters for a rule the table above does not list, derived from its
    declaration (so a new rule of the registry is in every grid below without an edit here): ``lr``
    doubled, weight decay on, each of its own hyper-parameters moved off its default (one in
    [0, 1) scaled by 0.9, or 0.5 from 0; any other doubled)."""
    defaults = {k: v.default for k, v in inspect.signature(cls).parameters.items()}
    kwargs = {"lr": 2 * defaults["lr"], "weight_decay": 0.05}
    for name in cls.hyper_names():
        if name in kwargs:
            continue
        if getattr(cls, name).bounds["high"] == 1:
            kwargs[name] = 0.9 * defaults[name] or 0.5
        else:
            kwargs[name] = 2 * defaults[name]
    return kwargs


RULES.update({cls.__name__: example_hyper(cls) for cls in optim.OPTIMIZERS if cls.__name__ not in RULES})
STEPS = 12
SPECS = [("W1", (4, 5), True), ("b1", (5,), False), ("W2", (5, 3), True), ("b2", (3,), False)]


def test_every_exported_optimizer_is_tested():
    classes = [getattr(optim, name) for name in optim.__all__]
    exported = {
        c.__name__
        for c in classes
        if isinstance(c, type) and issubclass(c, optim.Optimizer) and c is not optim.Optimizer
    }
    assert exported == set(RULES) == {cls.__name__ for cls in optim.OPTIMIZERS}
    assert all(callable(getattr(ref, name)) for name in RULES)  # every rule has a reference


def gradients(rng, shapes, step, dtype):
    """Random gradients with exact zeros, a few huge entries, and one all-zero step."""
    out = {}
    for key, shape in shapes.items():
        g = rng.standard_normal(shape)
        g[rng.random(shape) < 0.2] = 0.0
        g[rng.random(shape) < 0.1] *= 1e4
        if step == 3:
            g[...] = 0.0
        out[key] = g.astype(dtype)
    return out


def run_pair(dev, name, dtype, flat, steps=STEPS, seed=0, specs=SPECS):
    """Run gpunn's optimizer and the reference side by side; return both parameter dicts (host)."""
    rng = np.random.default_rng(seed)
    kwargs = RULES[name]
    layout = FlatLayout(specs)
    host = rng.standard_normal(layout.size).astype(dtype)
    host[:3] = 0.0  # zero parameters too
    shapes = {k: layout.shapes[k] for k in layout.names}
    if flat:
        params = layout.views(dev.to_device(host), dev)
        grads = layout.views(dev.xp.zeros(layout.size, dtype=dtype), dev)
        opt = getattr(optim, name)(**kwargs)
    else:
        views = layout.views(host.copy())
        params = {k: dev.to_device(v) for k, v in views.items()}
        params["scalar"] = dev.xp.asarray(np.asarray(0.5, dtype=dtype))
        shapes["scalar"] = ()
        grads = None
        opt = getattr(optim, name)(**kwargs, device=dev)
    expected = {k: to_numpy(v).copy() for k, v in params.items()}
    reference = getattr(ref, name)(**kwargs)
    for step in range(steps):
        g = gradients(rng, shapes, step, dtype)
        if step == 6:  # hyper-parameters may change between steps (a schedule)
            opt.lr = reference.lr = kwargs["lr"] / 2
        if flat:
            for k in g:
                grads[k] = dev.to_device(g[k])
        else:
            grads = {k: dev.xp.asarray(v) for k, v in g.items()}
        opt.update(params, grads)
        reference.update(expected, g)
    return {k: to_numpy(v) for k, v in params.items()}, expected


def assert_close(got, expected, rel, msg):
    """Equal to ``rel`` relative to each element, or to the array's scale for elements that
    cancelled to near zero (a parameter crossing 0 keeps the absolute error of its updates)."""
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(got, expected, rtol=rel, atol=rel * scale, err_msg=msg)


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize("flat", [True, False], ids=["flat", "dict"])
def test_matches_reference_float32(dev, name, flat):
    got, expected = run_pair(dev, name, "float32", flat)
    for k in expected:
        assert got[k].dtype == np.float32
        assert_close(got[k], expected[k], 1e-6, f"{name} {k}")


@pytest.mark.parametrize("name", RULES)
def test_matches_reference_float64_cpu(name):
    got, expected = run_pair(gpunn.device("cpu"), name, "float64", flat=True)
    for k in expected:
        assert got[k].dtype == np.float64
        assert_close(got[k], expected[k], 1e-12, f"{name} {k}")


@pytest.mark.parametrize("name", RULES)
def test_matches_reference_on_the_parallel_cpu_path(name):
    """A buffer above ``PARALLEL_MIN``: the CPU kernels cut it into chunks over the threads, and the
    weight-decay boundary (after W1, W2) falls inside the last chunk."""
    from gpunn.kernels.optim import PARALLEL_MIN

    rows = PARALLEL_MIN // 1000 + 7
    specs = [("W1", (rows, 1000), True), ("b1", (1000,), False), ("W2", (1000, 3), True), ("b2", (3,), False)]
    assert FlatLayout(specs).size > PARALLEL_MIN
    got, expected = run_pair(gpunn.device("cpu"), name, "float32", flat=True, steps=3, specs=specs)
    for k in expected:
        assert_close(got[k], expected[k], 1e-6, f"{name} {k}")


def test_float64_on_each_device(dev):
    got, expected = run_pair(dev, "Adam", "float64", flat=True, steps=4)
    for k in expected:
        assert_close(got[k], expected[k], 1e-12, k)


# -- the textbook's examples -------------------------------------------------------------------
def point(dev, x, y, dtype="float64"):
    return {"x": dev.to_device(np.array([x], dtype=dtype)), "y": dev.to_device(np.array([y], dtype=dtype))}


def xy(params):
    return float(to_numpy(params["x"])[0]), float(to_numpy(params["y"])[0])


def test_sgd_zigzag_closed_form(dev):
    # ai-edu 15.4: SGD with η = 0.95 on z = x²/10 + y² from (-7, 2): ∂z/∂x = x/5, ∂z/∂y = 2y, so
    # x ← 0.81 x and y ← -0.9 y: the zig-zag in y, the slow crawl in x.
    params = point(dev, -7.0, 2.0)
    opt = optim.SGD(lr=0.95, device=dev)
    for k in range(1, 21):
        x, y = xy(params)
        opt.update(params, {"x": dev.to_device(np.array([x / 5])), "y": dev.to_device(np.array([2 * y]))})
        assert xy(params) == pytest.approx((-7 * 0.81**k, 2 * (-0.9) ** k), rel=1e-12)


def test_momentum_expansion_from_ai_edu():
    # W3 = W2 − α²η dW0 − αη dW1 − η dW2 (ai-edu's hand expansion; the same for both forms)
    alpha, eta = 0.9, 0.1
    dW = [np.array([1.5]), np.array([-0.25]), np.array([2.0])]
    p = {"W": np.array([3.0])}
    opt = optim.Momentum(lr=eta, momentum=alpha)
    history = [p["W"].copy()]
    for g in dW:
        opt.update(p, {"W": g})
        history.append(p["W"].copy())
    expanded = history[2] - alpha**2 * eta * dW[0] - alpha * eta * dW[1] - eta * dW[2]
    np.testing.assert_allclose(history[3], expanded, rtol=1e-15)
    np.testing.assert_allclose(history[1], history[0] - eta * dW[0], rtol=1e-15)


def test_adagrad_and_rmsprop_accumulators_from_ai_edu():
    # AdaGrad: r1 = g1², r2 = g1² + g2², r3 = g1² + g2² + g3²
    # RMSProp (ρ = 0.9): r1 = 0.1 g1², r2 = 0.09 g1² + 0.1 g2², r3 = 0.081 g1² + 0.09 g2² + 0.1 g3²
    g = [np.array([0.5, -2.0]), np.array([1.0, 3.0]), np.array([-4.0, 0.0])]
    ada, rms = optim.AdaGrad(), optim.RMSprop(rho=0.9)
    pa, pr = {"w": np.zeros(2)}, {"w": np.zeros(2)}
    for k, gk in enumerate(g):
        ada.update(pa, {"w": gk})
        rms.update(pr, {"w": gk})
        r_ada = ada.state_dict()["state.w.r"]
        np.testing.assert_allclose(r_ada, sum(gi**2 for gi in g[: k + 1]), rtol=1e-15)
    r_rms = rms.state_dict()["state.w.r"]
    np.testing.assert_allclose(r_rms, 0.081 * g[0] ** 2 + 0.09 * g[1] ** 2 + 0.1 * g[2] ** 2, rtol=1e-14)


def test_adam_matches_saito_code_up_to_eps_placement():
    # Saito's Adam folds the bias corrections into lr_t and adds ε to √v: with ε → 0 both agree.
    rng = np.random.default_rng(1)
    p, q = {"W": rng.standard_normal((3, 4))}, {"W": None}
    q["W"] = p["W"].copy()
    opt = optim.Adam(lr=0.01, eps=1e-300)
    m = v = np.zeros_like(q["W"])
    beta1, beta2 = 0.9, 0.999
    for it in range(1, 11):
        g = rng.standard_normal((3, 4))
        opt.update(p, {"W": g})
        lr_t = 0.01 * np.sqrt(1.0 - beta2**it) / (1.0 - beta1**it)
        m = m + (1 - beta1) * (g - m)
        v = v + (1 - beta2) * (g**2 - v)
        q["W"] -= lr_t * m / (np.sqrt(v) + 1e-300)
    np.testing.assert_allclose(p["W"], q["W"], rtol=1e-12)


# -- equivalences ------------------------------------------------------------------------------
def quadratic_grad(dev, params, a=1 / 10, b=2.0):
    """∇ of f = x²/20 + y² (a = 1/10, b = 2) at the current parameters."""
    x, y = xy(params)
    return {"x": dev.to_device(np.array([a * x])), "y": dev.to_device(np.array([b * y]))}


def test_momentum_two_forms_same_trajectory(dev):
    # Saito / flower book: v ← αv − ηg; θ ← θ + v.  ai-edu formula (1)(2): v ← αv + ηg; θ ← θ − v.
    params = point(dev, -7.0, 2.0)
    opt = optim.Momentum(lr=0.1, momentum=0.9, device=dev)
    theta, v = np.array([-7.0, 2.0]), np.zeros(2)
    for _ in range(25):
        g = np.array([theta[0] / 10, 2 * theta[1]])
        v = 0.9 * v + 0.1 * g
        theta = theta - v
        opt.update(params, quadratic_grad(dev, params))
        np.testing.assert_allclose(xy(params), theta, rtol=1e-12, atol=1e-15)


def test_nesterov_follows_the_look_ahead_trajectory(dev):
    # Textbook NAG: θ̂ = θ − αv; g = ∇f(θ̂); v ← αv + ηg; θ ← θ − v.  gpunn's Nesterov needs only
    # ∇f at its own parameters, which are the look-ahead points φ = θ − αv of that trajectory.
    alpha, eta = 0.9, 0.1
    params = point(dev, -7.0, 2.0)
    opt = optim.Nesterov(lr=eta, momentum=alpha, device=dev)
    theta, v = np.array([-7.0, 2.0]), np.zeros(2)
    for _ in range(80):
        look = theta - alpha * v
        v = alpha * v + eta * np.array([look[0] / 10, 2 * look[1]])
        theta = theta - v
        opt.update(params, quadratic_grad(dev, params))
        np.testing.assert_allclose(xy(params), theta - alpha * v, rtol=1e-10, atol=1e-12)
    # and both reach the minimum together
    assert abs(theta).max() < 0.5 and np.allclose(xy(params), theta, atol=0.05)


def flat_pair(dev, dtype="float32", seed=3):
    layout = FlatLayout(SPECS)
    rng = np.random.default_rng(seed)
    p = layout.views(dev.to_device(rng.standard_normal(layout.size).astype(dtype)), dev)
    g = layout.views(dev.to_device(rng.standard_normal(layout.size).astype(dtype)), dev)
    return layout, p, g


def test_adamw_without_decay_is_adam(dev):
    _, p1, g = flat_pair(dev)
    _, p2, _ = flat_pair(dev)
    a, w = optim.Adam(lr=0.01), optim.AdamW(lr=0.01, weight_decay=0.0)
    for _ in range(5):
        a.update(p1, g)
        w.update(p2, g)
    np.testing.assert_array_equal(to_numpy(p1.flat), to_numpy(p2.flat))


def test_momentum_zero_is_sgd(dev):
    _, p1, g = flat_pair(dev)
    _, p2, _ = flat_pair(dev)
    a, b = optim.SGD(lr=0.1, weight_decay=0.01), optim.Momentum(lr=0.1, momentum=0.0, weight_decay=0.01)
    for _ in range(5):
        a.update(p1, g)
        b.update(p2, g)
    np.testing.assert_array_equal(to_numpy(p1.flat), to_numpy(p2.flat))


CONVERGE = {  # lr and steps reaching f < 1e-3 from (-7, 2) on f = x²/20 + y² (f0 = 6.45)
    "SGD": (dict(lr=0.9), 200),
    "Momentum": (dict(lr=0.1), 200),
    "Nesterov": (dict(lr=0.1), 200),
    "AdaGrad": (dict(lr=1.5), 300),
    "AdaDelta": (dict(lr=1.0, eps=1e-2), 300),
    "RMSprop": (dict(lr=0.02), 800),
    "Adam": (dict(lr=0.3), 300),
    "AdamW": (dict(lr=0.3, weight_decay=0.0), 300),
    "AMSGrad": (dict(lr=0.3), 300),
    "Lion": (dict(lr=0.013), 800),  # steps of ±η: ends in a cycle of amplitude ~η around the minimum
}


@pytest.mark.parametrize("name", RULES)
def test_converges_on_the_elongated_bowl(name):
    kwargs, steps = CONVERGE[name]
    dev = gpunn.device("cpu")
    params = point(dev, -7.0, 2.0)
    opt = getattr(optim, name)(**kwargs)
    for _ in range(steps):
        opt.update(params, quadratic_grad(dev, params))
    x, y = xy(params)
    assert x * x / 20 + y * y < 1e-3, (name, x, y)


def test_zero_size_and_scalar_arrays(dev):
    params = {
        "empty": dev.to_device(np.zeros((1, 0, 2), np.float32)),
        "scalar": dev.xp.asarray(np.array(1.0, np.float32)),
        "W": dev.to_device(np.ones((2, 3), np.float32)),
    }
    grads = {
        "empty": dev.to_device(np.zeros((1, 0, 2), np.float32)),
        "scalar": dev.xp.asarray(np.array(2.0, np.float32)),
        "W": dev.to_device(np.ones((2, 3), np.float32)),
    }
    opt = optim.Adam(lr=0.1, device=dev)
    opt.update(params, grads)
    assert to_numpy(params["empty"]).shape == (1, 0, 2) and params["scalar"].shape == ()
    assert float(to_numpy(params["scalar"])) == pytest.approx(0.9, rel=1e-6)
    np.testing.assert_allclose(to_numpy(params["W"]), 0.9, rtol=1e-6)


def double_arithmetic(ir):
    ops = ("fadd", "fsub", "fmul", "fdiv", "fpext", "llvm.sqrt", "fma")
    return [line for line in ir.splitlines() if "double" in line and any(op in line for op in ops)]


def test_no_python_float_literal_promotes_float32_to_float64():
    # The CPU spans compiled for float32 must not compute in double.  (Fresh, uncached copies:
    # Numba cannot show the IR of cached code.)  A literal such as `1.0 - b` in a rule would.
    import numba
    from gpunn.kernels import optim as kernels

    def compiled_ir(py_func, *args):
        fn = numba.njit(error_model="numpy")(py_func)
        fn(*args)
        return fn.inspect_llvm(fn.signatures[0])

    def bad(p, b):
        for i in range(p.size):
            p[i] = p[i] * (1.0 - b)

    assert double_arithmetic(compiled_ir(bad, np.ones(4, np.float32), np.float32(0.5)))  # the check can fail

    for cls in optim.OPTIMIZERS:
        opt = cls()
        params, grads = {"W": np.ones((2, 4), np.float32)}, {"W": np.ones((2, 4), np.float32)}
        opt.update(params, grads)
        scalars = tuple(np.float32(v) for v in (*opt.hyper(), opt.decay()))
        ir = compiled_ir(
            getattr(kernels, f"{cls.rule}_span").py_func,
            params["W"].reshape(-1),
            grads["W"].reshape(-1),
            *opt.state["W"],
            *scalars,
            3,
        )
        assert "fmul float" in ir or "fmul <" in ir, cls
        assert not double_arithmetic(ir), (cls, double_arithmetic(ir)[:3])


# -- the registry: rules by name ---------------------------------------------------------------
def rule_variants():
    """(class, instance) for every form of every rule of the registry (``cls.variants``)."""
    return [(cls, cls(**kwargs)) for cls in optim.OPTIMIZERS for kwargs in cls.variants]


@pytest.mark.parametrize("cls,opt", rule_variants(), ids=lambda v: getattr(v, "rule", None) or v.__name__)
def test_every_kernel_repeats_its_rules_parameter_names(cls, opt):
    """The class gives its scalars by name; the loops pass them on by position: the CPU span and
    loop and the CUDA kernel of each rule must list exactly the rule's parameters after (p, g)."""
    from gpunn.kernels import compile_check, cuda_kernel
    from gpunn.kernels import optim as kernels

    rule_names = ("p", "g", *opt.slots, *opt.scalar_names())
    opt.t = 1  # as in a step (Adam's bias corrections)
    assert set(opt.scalars()) == set(opt.scalar_names())
    assert opt.scalar_names() == opt.check_rule(opt.rule, opt.slots)
    cuda = compile_check._kernel_function(cuda_kernel("optim", opt.rule))
    for fn, last in (
        (getattr(kernels, f"{opt.rule}_span").py_func, None),
        (getattr(kernels, f"{opt.rule}_cpu").py_func, "n_decay"),
        (cuda, "n_decay"),
    ):
        params = tuple(inspect.signature(fn).parameters)
        assert params[:-2] == rule_names, (fn.__name__, params)
        assert last is None or params[-1] == last


def test_scalars_by_name_are_checked():
    class Renamed(optim.Momentum):
        rule = "momentum"

        def scalars(self):
            return {"lr": self.lr, "momentum": self.momentum}  # the rule calls it "alpha"

    with pytest.raises(TypeError, match="alpha"):
        Renamed().update({"W": np.ones((2, 2))}, {"W": np.ones((2, 2))})

    class WrongSlots(optim.Momentum):
        slots = ("velocity",)

    with pytest.raises(TypeError, match="velocity"):
        WrongSlots().update({"W": np.ones((2, 2))}, {"W": np.ones((2, 2))})


def test_the_package_lists_what_its_modules_define():
    """``OPTIMIZERS``, ``__all__``, the references and the docstring's list come from the modules."""
    assert "nesterov_saito" in {opt.rule for _, opt in rule_variants()}
    assert optim.OPTIMIZERS[:8] == (
        optim.SGD,
        optim.Momentum,
        optim.Nesterov,
        optim.AdaGrad,
        optim.AdaDelta,
        optim.RMSprop,
        optim.Adam,
        optim.AdamW,
    )
    for cls in optim.OPTIMIZERS:
        assert cls.__name__ in optim.__all__ and getattr(optim, cls.__name__) is cls
        assert f":class:`{cls.__name__}`" in optim.__doc__
        assert getattr(ref, cls.__name__) is not None
    with pytest.raises(AttributeError):
        ref.NoSuchRule  # noqa: B018
