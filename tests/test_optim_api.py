"""The optimizer interface: launches, weight-decay placement, validation, state dicts, allocation."""

import tracemalloc
from types import SimpleNamespace

import numba
import numpy as np
import pytest
from conftest import to_numpy

import gpunn
from gpunn import optim
from gpunn.optim import base
from gpunn.optim import references as ref
from gpunn.params import FlatLayout

SPECS = [("W1", (4, 5), True), ("b1", (5,), False), ("W2", (5, 3), True), ("b2", (3,), False)]


def flat_model(dev, dtype="float32", seed=0):
    layout = FlatLayout(SPECS)
    rng = np.random.default_rng(seed)
    params = layout.views(dev.to_device(rng.standard_normal(layout.size).astype(dtype)), dev)
    grads = layout.views(dev.to_device(rng.standard_normal(layout.size).astype(dtype)), dev)
    return params, grads


# -- launches ------------------------------------------------------------------------------------
@pytest.fixture
def launches(monkeypatch):
    """Count kernel launches: wrap what ``ops(dev).elementwise`` hands to the optimizers."""
    calls = []
    real = base.ops

    def counting_ops(dev):
        def elementwise(dev, topic, rule):
            kernel = real(dev).elementwise(dev, topic, rule)

            def run(n, *args):
                calls.append((rule, n))
                kernel(n, *args)

            return run

        return SimpleNamespace(elementwise=elementwise)

    monkeypatch.setattr(base, "ops", counting_ops)
    return calls


@pytest.mark.parametrize("cls", optim.OPTIMIZERS, ids=lambda c: c.__name__)
def test_flatdict_step_is_one_launch(dev, cls, launches):
    params, grads = flat_model(dev)
    opt = cls()
    opt.update(params, grads)
    opt.update(params, grads)
    assert launches == [(cls.rule, params.flat.size)] * 2


def test_plain_dict_is_one_launch_per_array(launches):
    params, grads = flat_model(gpunn.device("cpu"))
    plain_p = {k: v.copy() for k, v in params.items()}
    plain_g = {k: v.copy() for k, v in grads.items()}
    optim.Adam().update(plain_p, plain_g)
    assert sorted(n for _, n in launches) == sorted(v.size for v in plain_p.values())


# -- weight decay on weights only -------------------------------------------------------------
@pytest.mark.parametrize("cls", optim.OPTIMIZERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("flat", [True, False], ids=["flat", "dict"])
def test_weight_decay_only_on_weights(cls, flat):
    # zero gradients: only decay can move a parameter, and it must move weights, not biases
    params, grads = flat_model(gpunn.device("cpu"))
    grads.flat[...] = 0
    if not flat:
        params = {k: v.copy() for k, v in params.items()}
        grads = {k: v.copy() for k, v in grads.items()}
    before = {k: v.copy() for k, v in params.items()}
    opt = cls(weight_decay=0.1)
    for _ in range(3):
        opt.update(params, grads)
    for k in params:
        if k.startswith("W"):
            assert np.all(params[k] != before[k]), (cls, k)
        else:
            np.testing.assert_array_equal(params[k], before[k], err_msg=f"{cls.__name__} decayed {k}")


def test_flat_and_dict_paths_agree(dev):
    params, grads = flat_model(dev)
    plain_p = {k: dev.xp.array(v) for k, v in params.items()}
    plain_g = {k: dev.xp.array(v) for k, v in grads.items()}
    a, b = optim.AdamW(weight_decay=0.1), optim.AdamW(weight_decay=0.1, device=dev)
    for _ in range(3):
        a.update(params, grads)
        b.update(plain_p, plain_g)
    for k in params:
        np.testing.assert_array_equal(to_numpy(params[k]), to_numpy(plain_p[k]))


# -- validation --------------------------------------------------------------------------------
BAD = [
    (optim.SGD, "lr", -0.1),
    (optim.SGD, "lr", float("nan")),
    (optim.SGD, "weight_decay", -1e-4),
    (optim.Momentum, "momentum", 1.0),
    (optim.Momentum, "momentum", -0.1),
    (optim.Nesterov, "momentum", 1.5),
    (optim.Nesterov, "lr", -1),
    (optim.AdaGrad, "eps", 0.0),
    (optim.AdaGrad, "eps", -1e-8),
    (optim.AdaDelta, "rho", 1.0),
    (optim.AdaDelta, "rho", -0.5),
    (optim.AdaDelta, "eps", 0),
    (optim.RMSprop, "rho", 1.0),
    (optim.RMSprop, "eps", 0.0),
    (optim.RMSprop, "lr", float("inf")),
    (optim.Adam, "beta1", 1.0),
    (optim.Adam, "beta2", 1.0),
    (optim.Adam, "beta2", 1.5),
    (optim.Adam, "beta1", -0.1),
    (optim.Adam, "eps", 0.0),
    (optim.Adam, "lr", -1e-3),
    (optim.AdamW, "weight_decay", -0.01),
    (optim.AdamW, "beta1", 2),
]


@pytest.mark.parametrize("cls,arg,value", BAD, ids=lambda x: getattr(x, "__name__", str(x)))
def test_bad_hyper_parameters_are_value_errors_naming_them(cls, arg, value):
    with pytest.raises(ValueError, match=rf"\b{arg}\b"):
        cls(**{arg: value})
    opt = cls()
    with pytest.raises(ValueError, match=rf"\b{arg}\b"):
        setattr(opt, arg, value)  # also when a schedule changes them between steps


def test_non_numeric_hyper_parameter_is_a_type_error():
    with pytest.raises(TypeError, match="lr"):
        optim.Adam(lr="fast")


def test_boundary_values_are_accepted():
    optim.Momentum(momentum=0.0)
    optim.Adam(lr=0.0, beta1=0.0, beta2=0.0, eps=1e-30)
    optim.AdaDelta(rho=0.0)
    assert optim.Adam().hyper_names() == ("lr", "weight_decay", "beta1", "beta2", "eps")


# -- mismatched inputs -------------------------------------------------------------------------
def test_mismatched_dicts_raise():
    W, b = np.ones((2, 3), np.float32), np.ones(3, np.float32)
    opt = optim.Momentum()
    with pytest.raises(ValueError, match="different keys"):
        opt.update({"W": W, "b": b}, {"W": W})
    with pytest.raises(ValueError, match="shape"):
        opt.update({"W": W}, {"W": np.ones((3, 2), np.float32)})
    with pytest.raises(TypeError, match="float64"):
        opt.update({"W": W}, {"W": np.ones((2, 3), np.float64)})
    with pytest.raises(TypeError, match="dtype"):
        opt.update({"W": np.ones((2, 3), np.int64)}, {"W": np.ones((2, 3), np.int64)})
    with pytest.raises(TypeError, match="array"):
        opt.update({"W": [1.0, 2.0]}, {"W": [1.0, 2.0]})
    with pytest.raises(TypeError, match="dicts"):
        opt.update(W, W)
    with pytest.raises(ValueError, match="no parameters"):
        opt.update({}, {})
    with pytest.raises(ValueError, match="contiguous"):
        opt.update({"W": np.ones((3, 4), np.float32)[:, ::2]}, {"W": np.ones((3, 2), np.float32)})
    opt.update({"W": W}, {"W": W})
    with pytest.raises(ValueError, match="changed size"):
        opt.update({"W": np.ones((4, 3), np.float32)}, {"W": np.ones((4, 3), np.float32)})


# -- state dicts ---------------------------------------------------------------------------------
def grads_for(step, size, dtype="float32"):
    return np.random.default_rng(100 + step).standard_normal(size).astype(dtype)


@pytest.mark.parametrize("cls", optim.OPTIMIZERS, ids=lambda c: c.__name__)
def test_state_dict_round_trip_through_npz_continues_bit_identically(cls, tmp_path):
    cpu = gpunn.device("cpu")
    params, grads = flat_model(cpu)
    opt = cls(lr=0.01)
    for step in range(4):
        grads.flat[...] = grads_for(step, grads.flat.size)
        opt.update(params, grads)
    sd = opt.state_dict()
    for k, v in sd.items():
        assert isinstance(v, (int, float, np.ndarray)) and not isinstance(v, bool), k
    assert sd["t"] == 4 and sd["lr"] == 0.01
    assert {k for k in sd if k.startswith("state.")} == {f"state.__flat__.{s}" for s in cls.slots}
    np.savez(tmp_path / "opt.npz", **sd)

    resumed_params, resumed_grads = flat_model(cpu)
    resumed_params.flat[...] = params.flat
    resumed = cls(lr=0.5)
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as saved:
        resumed.load_state_dict(saved)
    assert resumed.t == 4 and resumed.lr == 0.01
    for step in range(4, 9):
        grads.flat[...] = resumed_grads.flat[...] = grads_for(step, grads.flat.size)
        opt.update(params, grads)
        resumed.update(resumed_params, resumed_grads)
    np.testing.assert_array_equal(resumed_params.flat, params.flat)
    for a, b in zip(opt.state["__flat__"], resumed.state["__flat__"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_state_dict_is_a_copy_and_loading_does_not_alias():
    params, grads = flat_model(gpunn.device("cpu"))
    opt = optim.Adam()
    opt.update(params, grads)
    sd = opt.state_dict()
    m = sd["state.__flat__.m"].copy()
    opt.update(params, grads)
    np.testing.assert_array_equal(sd["state.__flat__.m"], m)
    other = optim.Adam()
    other.load_state_dict(sd)
    other.update(params, grads)
    np.testing.assert_array_equal(sd["state.__flat__.m"], m)


@pytest.mark.parametrize("cls", [optim.Momentum, optim.AdaDelta, optim.Adam], ids=lambda c: c.__name__)
def test_state_saved_on_cuda_loads_on_cpu(cls):
    sim = gpunn.device("cuda", strict=True)
    cpu = gpunn.device("cpu")
    p_gpu, g_gpu = flat_model(sim)
    p_cpu, g_cpu = flat_model(cpu)
    on_gpu = cls(lr=0.01)
    for step in range(2):
        g_gpu.flat[...] = sim.to_device(grads_for(step, g_gpu.flat.size))
        on_gpu.update(p_gpu, g_gpu)
    sd = on_gpu.state_dict()
    assert all(type(v) is np.ndarray for k, v in sd.items() if k.startswith("state."))
    p_cpu.flat[...] = to_numpy(p_gpu.flat)
    on_cpu = cls(lr=0.01)
    on_cpu.load_state_dict(sd)
    for step in range(2, 4):
        g = grads_for(step, g_cpu.flat.size)
        g_gpu.flat[...] = sim.to_device(g)
        g_cpu.flat[...] = g
        on_gpu.update(p_gpu, g_gpu)
        on_cpu.update(p_cpu, g_cpu)
    np.testing.assert_allclose(p_cpu.flat, to_numpy(p_gpu.flat), rtol=1e-6, atol=1e-7)
    assert on_cpu.t == on_gpu.t == 4


def test_load_state_dict_rejects_foreign_state():
    params, grads = flat_model(gpunn.device("cpu"))
    adam = optim.Adam()
    adam.update(params, grads)
    only_state = {k: v for k, v in adam.state_dict().items() if k in ("t", "lr") or k.startswith("state.")}
    with pytest.raises(ValueError, match="keeps"):
        optim.Momentum().load_state_dict(only_state)
    with pytest.raises(ValueError, match="hyper-parameters"):
        optim.SGD().load_state_dict(adam.state_dict())
    with pytest.raises(ValueError, match="'t'"):
        optim.Adam().load_state_dict({"lr": 0.1})
    bad = adam.state_dict()
    bad["beta1"] = 1.5
    fresh = optim.Adam()
    with pytest.raises(ValueError, match="beta1"):
        fresh.load_state_dict(bad)
    assert fresh.beta1 == 0.9 and fresh.t == 0  # nothing changed
    other = optim.Adam()
    other.load_state_dict(adam.state_dict())
    with pytest.raises(ValueError, match="loaded state"):
        other.update({"W": np.ones((2, 2), np.float32)}, {"W": np.ones((2, 2), np.float32)})
    small = optim.Adam()
    small.load_state_dict(adam.state_dict())
    p2, g2 = flat_model(gpunn.device("cpu"))
    sd = adam.state_dict()
    sd["state.__flat__.m"] = sd["state.__flat__.m"][:5]
    small.load_state_dict(sd)
    with pytest.raises(ValueError, match="elements"):
        small.update(p2, g2)


# -- no allocation after the first step ---------------------------------------------------------
def test_no_allocation_after_the_first_step():
    from numba.core.runtime import _nrt_python, rtsys

    n = 1 << 18  # 1 MiB per float32 array: a NumPy temporary would be hard to miss
    params = {"W": np.ones((n // 64, 64), np.float32), "b": np.ones(64, np.float32)}
    grads = {"W": np.full((n // 64, 64), 0.5, np.float32), "b": np.full(64, 0.5, np.float32)}

    def measure(step, steps=4):
        """(Python/NumPy peak bytes, Numba runtime allocations) over ``steps`` steps."""
        _nrt_python.memsys_enable_stats()
        tracemalloc.start()
        before = rtsys.get_allocation_stats().alloc
        for _ in range(steps):
            step()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak, rtsys.get_allocation_stats().alloc - before

    # the measurements can fail: the textbook NumPy version allocates buffer-sized temporaries, and
    # a compiled kernel allocating one array per call shows one Numba allocation more than its
    # array arguments
    textbook = ref.Adam()
    textbook.update(params, grads)
    peak, _ = measure(lambda: textbook.update(params, grads))
    assert peak > n * 4

    @numba.njit
    def allocating(p, g):
        tmp = np.empty_like(p)
        tmp[:] = g
        p += tmp

    allocating(params["b"], grads["b"])
    _, nrt = measure(lambda: allocating(params["b"], grads["b"]), steps=4)
    assert nrt > 4 * 2

    for cls in optim.OPTIMIZERS:
        opt = cls()
        opt.update(params, grads)  # creates the state
        ids = {k: [id(a) for a in s] for k, s in opt.state.items()}
        steps = 4
        peak, nrt = measure(lambda: opt.update(params, grads), steps)  # noqa: B023
        assert peak < 32 * 1024, (cls, peak)
        # Numba's only allocations: the small MemInfo wrapper made when a NumPy array argument is
        # unboxed (one per array per launch: 2 launches of 2 + len(slots) arrays), never data
        assert nrt <= steps * 2 * (2 + len(cls.slots)), (cls, nrt)
        assert {k: [id(a) for a in s] for k, s in opt.state.items()} == ids


def test_state_is_created_once(monkeypatch):
    params, grads = flat_model(gpunn.device("cpu"))
    opt = optim.AdaDelta()
    opt.update(params, grads)
    state = opt.state["__flat__"]

    def forbidden(*a, **k):
        raise AssertionError("zeros_like called after the first step")

    monkeypatch.setattr(params.device.xp, "zeros_like", forbidden)
    for _ in range(3):
        opt.update(params, grads)
    assert opt.state["__flat__"] is state


def test_repr_lists_hyper_parameters():
    assert repr(optim.Adam()) == "Adam(lr=0.001, weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-08)"
