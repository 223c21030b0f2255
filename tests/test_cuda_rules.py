"""CuPy's rules on the simulated GPU (gpunn.simcupy), and what they guard in gpunn.

The simulated "cuda" device's arrays refuse what CuPy refuses, so a host/device mistake in gpunn
fails here instead of on a user's first GPU run.  Also: ``cuda:N`` is honoured by every allocation
and launch, host arrays assigned into device parameters are copied explicitly, and a training step
on device-resident data reads nothing back to the host unless the guard asks for it.
"""

import numpy as np
import pytest
from conftest import REAL_GPU, to_numpy

import gpunn
from gpunn import optim

pytestmark = pytest.mark.skipif(REAL_GPU, reason="the simulated device's own rules (real CuPy enforces them)")


@pytest.fixture
def sim():
    from gpunn import simcupy

    return simcupy


@pytest.fixture
def cuda():
    return gpunn.device("cuda", strict=True)


def data(n=32, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, c, n)


# -- the refusals ------------------------------------------------------------------------------------
def test_no_implicit_conversion_to_the_host(cuda):
    a = cuda.to_device(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(a)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.testing.assert_allclose(a, 1)
    from gpunn.kernels import activations

    with pytest.raises(Exception, match="(?i)implicit conversion|non-precise|pyobject|cannot determine"):
        activations.all_finite_cpu(a, np.float32(0))  # a CPU kernel given a device array


@pytest.mark.parametrize(
    "mix",
    [
        lambda a, h: a + h,
        lambda a, h: h + a,
        lambda a, h: np.multiply(a, h),
        lambda a, h: np.where(a > 0, h, a),
        lambda a, h: np.concatenate([a, h]),
        lambda a, h: a[np.array([0, 1])],
    ],
    ids=["add", "radd", "ufunc", "where", "concatenate", "index"],
)
def test_no_host_arrays_in_device_arithmetic_or_indexing(cuda, mix):
    a, h = cuda.to_device(np.ones(3, np.float32)), np.ones(3, np.float32)
    with pytest.raises(TypeError, match="host \\(NumPy\\) array and cannot be mixed"):
        mix(a, h)


def test_no_host_array_assigned_into_a_device_array(cuda, sim):
    a = cuda.to_device(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        a[...] = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="host"):
        sim.ascontiguousarray(np.ones(3))  # CuPy's functions take device arrays
    a[0] = 2.0  # scalars are fine, as in CuPy
    a[1] = np.float32(3)
    a += np.float32(1)
    assert to_numpy(a).tolist() == [[3, 3, 3], [4, 4, 4]]


def test_explicit_transfers_and_counted_host_syncs(cuda, sim):
    a = cuda.to_device(np.arange(4, dtype=np.float32))
    s = a.sum()
    assert isinstance(s, sim.ndarray) and s.shape == ()  # reductions stay on the device
    before = sim.stats.host_syncs
    assert float(s) == 6 and int(a.max()) == 3 and to_numpy(a).tolist() == [0, 1, 2, 3]
    assert sim.stats.host_syncs == before + 3


def test_arrays_of_another_gpu_are_refused(sim):
    a = gpunn.device("cuda:0", strict=True).to_device(np.ones(3, np.float32))
    b = gpunn.device("cuda:1", strict=True).to_device(np.ones(3, np.float32))
    assert (a.device.id, b.device.id) == (0, 1)
    with pytest.raises(ValueError, match="Array device must be same as the current device"):
        a + b
    with gpunn.device("cuda:1"):
        assert to_numpy(b * 2).tolist() == [2, 2, 2]
        with pytest.raises(ValueError, match="array device = 0 while current = 1"):
            a * 2


def test_a_kernel_launch_refuses_host_arrays(cuda):
    from gpunn.kernels import ops

    p = cuda.to_device(np.ones(4, np.float32))
    sgd = ops(cuda).elementwise(cuda, "optim", "sgd")
    with pytest.raises(TypeError, match="kernel launch is a host"):
        sgd(4, p, np.ones(4, np.float32), np.float32(0.1), np.float32(0), 4)


def test_a_host_device_mix_in_gpunn_turns_the_suite_red(cuda, monkeypatch):
    """The point of the rules: a host array slipped into a device activation fails training."""
    from gpunn import layers

    real = layers.ReLU.forward

    def leaky(self, x, train=False):
        return real(self, x, train) + np.zeros(x.shape[1], np.float32)  # the mistake

    monkeypatch.setattr(layers.ReLU, "forward", leaky)
    x, t = data()
    net = gpunn.MLP(6, [5], 3, device="cpu", seed=0, fused=False)
    net.gradient(x, t)  # NumPy lets it pass
    net = gpunn.MLP(6, [5], 3, device=cuda, seed=0, fused=False)
    with pytest.raises(TypeError, match="cannot be mixed with device arrays"):
        net.gradient(x, t)


# -- what they guard ------------------------------------------------------------------------------------
def test_host_arrays_assigned_into_device_parameters_are_copied(cuda):
    net = gpunn.MLP(6, [5], 3, device=cuda, seed=0)
    w = np.arange(30, dtype=np.float64).reshape(6, 5)
    net.params["W1"] = w  # the textbook loop does this with NumPy arrays
    net.params["b1"] = [1, 2, 3, 4, 5]
    net.params["b2"] = 0.5
    assert to_numpy(net.params["W1"]).tolist() == w.tolist()
    assert to_numpy(net.params["b1"]).tolist() == [1, 2, 3, 4, 5]
    assert set(to_numpy(net.params["b2"]).tolist()) == {0.5}


def test_cuda_n_is_honoured_by_every_allocation_and_launch(tmp_path, sim):
    x, t = data(64)
    net = gpunn.MLP(6, [8, 8], 3, device="cuda:1", seed=0, batchnorm=True, dropout=0.2)
    opt = optim.Adam(lr=1e-2)
    hist = gpunn.Trainer(
        net, opt, epochs=2, batch_size=16, seed=0, progress=False, checkpoint_path=tmp_path / "run.npz"
    ).fit(x, t)
    arrays = [net.params.flat, net.grads.flat, *net.buffers.values(), *opt.state["__flat__"]]
    arrays += [v for layer in net.layers for v in vars(layer).values() if isinstance(v, sim.ndarray)]
    assert {a.device.id for a in arrays} == {1}
    assert sim.cuda.Device().id == 0  # the caller's device is restored
    assert net.predict(x).device.id == 1
    again = gpunn.checkpoint.load_model(tmp_path / "run.npz", device="cuda:1")
    assert again.params.flat.device.id == 1
    np.testing.assert_allclose(to_numpy(again.params.flat), to_numpy(net.params.flat))
    # the same run on cuda:0 gives the same numbers
    net0 = gpunn.MLP(6, [8, 8], 3, device="cuda:0", seed=0, batchnorm=True, dropout=0.2)
    hist0 = gpunn.Trainer(net0, optim.Adam(lr=1e-2), epochs=2, batch_size=16, seed=0, progress=False).fit(
        x, t
    )
    np.testing.assert_allclose(hist["loss"], hist0["loss"], rtol=1e-6)


def test_a_step_on_device_resident_data_makes_no_host_sync(cuda, sim):
    x, t = data(64)
    xd, td = cuda.to_device(x), cuda.to_device(t)
    for kw in ({}, {"batchnorm": True, "dropout": 0.1}):
        net = gpunn.MLP(6, [8], 3, device=cuda, seed=0, **kw)
        opt = optim.Adam()
        opt.update(net.params, net.gradient(xd, td))  # first step: state, validation
        before = sim.stats.host_syncs
        for _ in range(3):
            opt.update(net.params, net.gradient(xd, td))
            net.predict(xd)
        assert sim.stats.host_syncs == before, kw


@pytest.mark.parametrize("guard", [False, True])
def test_trainer_syncs_per_epoch_unless_the_guard_asks(cuda, sim, guard):
    """Without the guard a Trainer reads the device back a fixed number of times per epoch,
    whatever its number of steps; the guard adds one small read per step."""
    x, t = data(128)

    def syncs(batch):
        net = gpunn.MLP(6, [8], 3, device=cuda, seed=0)
        trainer = gpunn.Trainer(
            net, optim.SGD(lr=0.1), epochs=1, batch_size=batch, seed=0, progress=False, guard=guard
        )
        before = sim.stats.host_syncs
        trainer.fit(x, t)
        return sim.stats.host_syncs - before

    few, many = syncs(64), syncs(16)  # 2 vs 8 steps
    if guard:
        assert many - few == 6
    else:
        assert many == few


def test_device_labels_out_of_range_make_the_loss_nan(cuda):
    """Device-resident labels are not read on the host: the CUDA loss marks a bad row NaN, which the
    guard reports, instead of reading outside the scores."""
    x, t = data(8)
    t[3] = 7
    net = gpunn.MLP(6, [5], 3, device=cuda, seed=0)
    net.gradient(cuda.to_device(x), cuda.to_device(t))
    assert np.isnan(float(net.last_loss))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        net.gradient(x, t)  # host labels are checked


def test_no_device_random_generator_is_offered(cuda):
    assert not hasattr(cuda, "rng")
    a, b = cuda.host_rng(3), gpunn.device("cpu").host_rng(3)
    assert a.permutation(5).tolist() == b.permutation(5).tolist()
