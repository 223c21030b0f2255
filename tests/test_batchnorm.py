"""BatchNorm: the NumPy reference is gradient-checked, the CPU and (simulated) CUDA kernels match it,
the conventions (ε, momentum, unbiased running variance) hold, and the MLP wires it in as the
textbook's MultiLayerNetExtend does."""

import numpy as np
import pytest
from conftest import to_numpy

import gpunn
from gpunn.batchnorm import (
    EPS,
    MOMENTUM,
    BatchNorm,
    batchnorm_backward_reference,
    batchnorm_forward_reference,
)
from gpunn.gradcheck import numerical_gradient, relative_error

# (N, C): on the CPU a parallel-path case too (N·C ≥ kernels.batchnorm.PARALLEL_MIN); in the simulator
# partial feature tiles and row counts that are not multiples of the row lanes, a few hundred elements
SHAPES = {"cpu": [(2, 3), (7, 13), (1201, 900)], "cuda": [(2, 3), (13, 11)]}


def test_shapes_cover_the_parallel_cpu_path():
    from gpunn.kernels import batchnorm as k

    assert any(n * c >= k.PARALLEL_MIN for n, c in SHAPES["cpu"])


def _close(a, ref, rtol=1e-5, scale=None):
    """Equal to ``rtol`` relative, elementwise, with an absolute floor of rtol·``scale`` (default
    max|ref|): entries of a gradient that cancel to ~0 have no meaningful relative error."""
    a, ref = to_numpy(a), np.asarray(ref)
    scale = float(np.abs(ref).max()) if scale is None else scale
    np.testing.assert_allclose(a, ref, rtol=rtol, atol=rtol * scale)


def _data(rng, n, c, dtype=np.float32):
    x = (rng.standard_normal((n, c)) * 3 + 5).astype(dtype)  # offset mean: the variance must be stable
    dy = rng.standard_normal((n, c)).astype(dtype)
    gamma = (1 + 0.5 * rng.standard_normal(c)).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    return x, dy, gamma, beta


def _layer(dev, gamma, beta):
    bn = BatchNorm(dev, gamma.shape[0], dtype=gamma.dtype)
    bn.gamma[...] = dev.to_device(gamma)
    bn.beta[...] = dev.to_device(beta)
    return bn


# -- the reference -----------------------------------------------------------------------------
def test_reference_gradcheck_float64():
    rng = np.random.default_rng(0)
    x, dy, gamma, beta = _data(rng, 5, 4, np.float64)
    rm, rv = np.zeros(4), np.ones(4)

    def loss():
        return float((batchnorm_forward_reference(x, gamma, beta, rm, rv)[0] * dy).sum())

    _, cache = batchnorm_forward_reference(x, gamma, beta, rm, rv)
    dx, dg, db = batchnorm_backward_reference(dy, cache)
    for analytic, wrt in ((dx, x), (dg, gamma), (db, beta)):
        assert relative_error(analytic, numerical_gradient(loss, wrt)) < 1e-6


def test_layer_gradcheck_float64_cpu():
    """The fused CPU kernel's backward against central differences (train mode, float64)."""
    rng = np.random.default_rng(1)
    dev = gpunn.device("cpu")
    x, dy, gamma, beta = _data(rng, 6, 5, np.float64)
    bn = _layer(dev, gamma, beta)

    def loss():
        return float((bn.forward(x, True) * dy).sum())

    bn.forward(x, True)
    dx = bn.backward(dy)
    dg, db = bn.dgamma.copy(), bn.dbeta.copy()
    assert relative_error(dx, numerical_gradient(loss, x)) < 1e-6
    assert relative_error(dg, numerical_gradient(loss, bn.gamma)) < 1e-6
    assert relative_error(db, numerical_gradient(loss, bn.beta)) < 1e-6


# -- kernels against the reference ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernels_match_reference(dev, dtype):
    rng = np.random.default_rng(2)
    shapes = SHAPES[dev.kind] if dtype == "float32" else SHAPES[dev.kind][:1]
    for n, c in shapes:
        x, dy, gamma, beta = _data(rng, n, c, dtype)
        bn = _layer(dev, gamma, beta)
        rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
        for step in range(2):  # two steps: the running statistics compound
            xs = x + step
            y = bn.forward(dev.to_device(xs), True)
            dx = bn.backward(dev.to_device(dy))
            y_ref, cache = batchnorm_forward_reference(xs, gamma, beta, rm, rv)
            dx_ref, dg_ref, db_ref = batchnorm_backward_reference(dy, cache)
            assert y.dtype == np.dtype(dtype) and dx.dtype == np.dtype(dtype)
            _close(y, y_ref)
            # dx cancels to ~0 when N = 2: its floor is the size of its terms, γ·dy/σ
            _close(dx, dx_ref, scale=float(np.abs(gamma * dy / cache[1]).max()))
            _close(bn.dgamma, dg_ref)
            _close(bn.dbeta, db_ref)
            _close(bn.running_mean, rm)
            _close(bn.running_var, rv)
            _close(bn.mean, xs.mean(axis=0))
        y_eval = bn.forward(dev.to_device(x[:3]), False)
        _close(y_eval, batchnorm_forward_reference(x[:3], gamma, beta, rm, rv, train=False)[0])


def test_cpu_and_cuda_agree():
    """The two kernels on the same data (float32): same numbers up to the last bits."""
    rng = np.random.default_rng(3)
    x, dy, gamma, beta = _data(rng, 9, 10)
    out = {}
    for name in ("cpu", "cuda"):
        dev = gpunn.device(name, strict=True)
        bn = _layer(dev, gamma, beta)
        y = bn.forward(dev.to_device(x), True)
        dx = bn.backward(dev.to_device(dy))
        arrays = (y, dx, bn.dgamma, bn.dbeta, bn.running_mean, bn.running_var)
        out[name] = [to_numpy(a).copy() for a in arrays]
    for a, b in zip(out["cpu"], out["cuda"], strict=True):
        _close(a, b, rtol=2e-6)


# -- conventions ---------------------------------------------------------------------------------
def test_defaults_and_running_statistics_convention():
    """PyTorch's conventions: ε = 1e-5, momentum 0.1 = weight of the new batch, unbiased running
    variance, running statistics start at (0, 1), γ = 1 and β = 0 at first."""
    assert (EPS, MOMENTUM) == (1e-5, 0.1)
    dev = gpunn.device("cpu")
    x = np.array([[1.0, 10.0], [3.0, 14.0], [8.0, 12.0]], dtype=np.float32)
    bn = BatchNorm(dev, 2)
    assert np.all(bn.gamma == 1) and np.all(bn.beta == 0)
    assert np.all(bn.running_mean == 0) and np.all(bn.running_var == 1)
    y = bn.forward(x, True)
    np.testing.assert_allclose(bn.running_mean, 0.1 * x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * x.var(axis=0, ddof=1), rtol=1e-6)
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-5, atol=1e-6)


def test_running_statistics_match_torch_if_installed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    dev = gpunn.device("cpu")
    bn = BatchNorm(dev, 6, momentum=0.3, eps=1e-3)
    tb = torch.nn.BatchNorm1d(6, momentum=0.3, eps=1e-3)
    for _ in range(3):
        x = rng.standard_normal((8, 6)).astype(np.float32) * 2 + 1
        y = bn.forward(x, True)
        yt = tb(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(y, yt, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean, tb.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var, tb.running_var.numpy(), rtol=1e-5, atol=1e-6)
    tb.eval()
    x = rng.standard_normal((1, 6)).astype(np.float32)
    np.testing.assert_allclose(
        bn.forward(x, False), tb(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5
    )


def test_eval_mode_uses_running_statistics(dev):
    rng = np.random.default_rng(5)
    c = 4
    bn = BatchNorm(dev, c)
    rm = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    rv = np.array([4.0, 0.25, 1.0, 9.0], np.float32)
    bn.running_mean[...] = dev.to_device(rm)
    bn.running_var[...] = dev.to_device(rv)
    bn.gamma[...] = 2
    bn.beta[...] = dev.to_device(np.arange(c, dtype=np.float32))
    x = rng.standard_normal((3, c)).astype(np.float32)
    y = to_numpy(bn.forward(dev.to_device(x), False))
    np.testing.assert_allclose(y, 2 * (x - rm) / np.sqrt(rv + 1e-5) + np.arange(c), rtol=1e-5, atol=1e-6)
    # row by row (a batch of one) gives the same rows; the running statistics are untouched
    y1 = to_numpy(bn.forward(dev.to_device(x[1:2]), False))
    np.testing.assert_allclose(y1, y[1:2], rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(bn.running_mean), rm)
    np.testing.assert_array_equal(to_numpy(bn.running_var), rv)


def test_batch_of_one_in_training_mode_raises(dev):
    bn = BatchNorm(dev, 3)
    with pytest.raises(ValueError, match="at least 2 rows"):
        bn.forward(dev.to_device(np.ones((1, 3), np.float32)), True)
    net = gpunn.MLP(3, [4], 2, batchnorm=True, device=dev, seed=0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        net.gradient(np.ones((1, 3), np.float32), [1])
    assert net.predict(np.ones((1, 3), np.float32)).shape == (1, 2)  # evaluation: fine


def test_layer_argument_checks():
    dev = gpunn.device("cpu")
    bn = BatchNorm(dev, 3)
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        bn.forward(np.ones((4, 5), np.float32), True)
    with pytest.raises(TypeError, match="dtype"):
        bn.forward(np.ones((4, 3), np.float64), True)
    with pytest.raises(RuntimeError, match="train=True"):
        BatchNorm(dev, 3).backward(np.ones((4, 3), np.float32))
    for bad in (dict(eps=0), dict(momentum=1.5), dict(eps=float("nan"))):
        with pytest.raises(ValueError):
            BatchNorm(dev, 3, **bad)
    with pytest.raises(ValueError):
        BatchNorm(dev, 0)


def test_running_statistics_converge_to_the_population():
    rng = np.random.default_rng(6)
    bn = BatchNorm("cpu", 3)
    mu, sd = np.array([2.0, -1.0, 0.0]), np.array([3.0, 0.5, 1.0])
    for _ in range(200):
        bn.forward((rng.standard_normal((64, 3)) * sd + mu).astype(np.float32), True)
    np.testing.assert_allclose(bn.running_mean, mu, atol=0.15)
    np.testing.assert_allclose(bn.running_var, sd**2, rtol=0.15)


# -- in the MLP ----------------------------------------------------------------------------------
def test_mlp_batchnorm_gradcheck_float64():
    rng = np.random.default_rng(7)
    x, t = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    net = gpunn.MLP(5, [4, 4], 3, activation=["tanh", "relu"], batchnorm=True, dtype="float64", seed=0)
    net.params["gamma1"] = net.xp.asarray(rng.uniform(0.5, 1.5, 4))
    net.params["beta2"] = net.xp.asarray(rng.standard_normal(4))
    num = net.numerical_gradient(x, t)
    grads = net.gradient(x, t)
    for k in grads:
        if k in ("b1", "b2"):  # a bias right before BatchNorm has no effect: its gradient is 0
            assert np.abs(grads[k]).max() < 1e-9 and np.abs(num[k]).max() < 1e-7
        else:
            assert relative_error(grads[k], num[k]) < 1e-6, k


def test_mlp_batchnorm_layout_params_and_buffers():
    net = gpunn.MLP(6, [5, 4], 3, batchnorm=True, seed=0)
    assert list(net.params) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"]
    layout = net.params.layout
    assert layout.n_decay == 6 * 5 + 5 * 4 + 4 * 3  # weights first: optimizers' n_decay
    for name in ("gamma1", "beta1", "gamma2", "beta2"):
        assert layout.offsets[name] >= layout.n_decay
    assert np.all(net.params["gamma1"] == 1) and np.all(net.params["beta2"] == 0)
    assert sorted(net.buffers) == ["running_mean1", "running_mean2", "running_var1", "running_var2"]
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds == ["Affine", "BatchNorm", "ReLU", "Affine", "BatchNorm", "ReLU", "Affine"]
    # the layers' views are the model's buffers and parameters
    bn = net.batchnorm_layers[0]
    assert bn.running_mean is net.buffers["running_mean1"]
    assert np.shares_memory(bn.gamma, net.params.flat) and np.shares_memory(bn.dgamma, net.grads.flat)


def test_mlp_training_updates_buffers_not_optimizer(dev):
    rng = np.random.default_rng(8)
    x, t = rng.standard_normal((8, 4)).astype(np.float32) + 2, rng.integers(0, 2, 8)
    net = gpunn.MLP(4, [3], 2, batchnorm=True, device=dev, seed=0)
    opt = gpunn.optim.SGD(lr=0.1)
    p0 = to_numpy(net.predict(x)).copy()
    net.gradient(x, t)
    rm = to_numpy(net.buffers["running_mean1"]).copy()
    opt.update(net.params, net.grads)
    np.testing.assert_array_equal(to_numpy(net.buffers["running_mean1"]), rm)  # the optimizer: no
    assert np.abs(rm).max() > 0  # training: yes
    # prediction is evaluation mode: rows are independent of each other
    p = to_numpy(net.predict(x))
    np.testing.assert_allclose(to_numpy(net.predict(x[2:3])), p[2:3], rtol=1e-5, atol=1e-6)
    assert not np.allclose(p, p0)


def test_mlp_batchnorm_cpu_and_cuda_agree():
    rng = np.random.default_rng(9)
    x, t = rng.standard_normal((8, 5)).astype(np.float32), rng.integers(0, 3, 8)
    out = {}
    for name in ("cpu", "cuda"):
        net = gpunn.MLP(5, [6, 4], 3, batchnorm=True, dropout=0.25, device=name, seed=3)
        loss = float(net._gradient(net._x(x), net._t(t, 8)))
        buffers = {k: to_numpy(v).copy() for k, v in net.buffers.items()}
        out[name] = loss, to_numpy(net.grads.flat).copy(), buffers
    assert out["cpu"][0] == pytest.approx(out["cuda"][0], rel=1e-5)
    _close(out["cuda"][1], out["cpu"][1], rtol=1e-4)
    for k in out["cpu"][2]:
        _close(out["cuda"][2][k], out["cpu"][2][k])


def test_trainer_trains_a_batchnorm_net():
    """A BatchNorm MLP learns a toy problem with gpunn.Trainer (and predict uses running stats)."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((400, 2)).astype(np.float32) * 5 + 20  # badly scaled inputs
    t = (x[:, 0] - 20 > x[:, 1] - 20).astype(np.int64)
    net = gpunn.MLP(2, [16, 16], 2, batchnorm=True, seed=0)
    trainer = gpunn.Trainer(net, gpunn.optim.SGD(lr=0.1), epochs=15, batch_size=32, progress=False)
    trainer.fit(x, t)
    assert net.accuracy(x, t) > 0.95


def test_checkpoint_keeps_batchnorm_and_dropout(tmp_path):
    from gpunn import checkpoint

    rng = np.random.default_rng(11)
    x, t = rng.standard_normal((10, 4)).astype(np.float32), rng.integers(0, 3, 10)
    net = gpunn.MLP(4, [5], 3, batchnorm=True, dropout=0.3, weight_decay=0.01, seed=0)
    net.gradient(x, t)
    checkpoint.save(tmp_path / "m.npz", net)
    back = checkpoint.load_model(tmp_path / "m.npz")
    assert (back.batchnorm, back.dropout, back.weight_decay) == (True, 0.3, 0.01)
    np.testing.assert_array_equal(back.buffers["running_var1"], net.buffers["running_var1"])
    np.testing.assert_array_equal(back.predict(x), net.predict(x))
    assert back.dropout_layers[0].rng.bit_generator.state == net.dropout_layers[0].rng.bit_generator.state


def test_variance_is_stable_for_large_offsets(dev):
    """float32 inputs with mean 1e4 and std 1: a one-pass Σx² − (Σx)²/N would lose every digit; the
    kernels (shifted two-pass blocks merged in float64 on the CPU, two-pass in CUDA) keep the normalised
    output exact up to the inputs' own float32 rounding."""
    rng = np.random.default_rng(12)
    x64 = 1e4 + rng.standard_normal((12 if dev.is_cuda else 200, 5))  # CPU: several 32-row blocks
    x = x64.astype(np.float32)
    bn = BatchNorm(dev, 5)
    y = to_numpy(bn.forward(dev.to_device(x), True))
    xr = x.astype(np.float64)
    expect = (xr - xr.mean(0)) / np.sqrt(xr.var(0) + 1e-5)
    np.testing.assert_allclose(y, expect, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(to_numpy(bn.running_var), 0.9 + 0.1 * xr.var(0, ddof=1), rtol=1e-4)


def test_cpu_row_chunks_match_serial():
    """The CPU kernels' parallel path (row chunks on the helper threads, merged with Chan's
    formula), called directly with 1, 2 and 3 chunks on a small batch, which the layer itself
    would run serially (see kernels.batchnorm.n_row_chunks)."""
    from gpunn.kernels import batchnorm as k

    rng = np.random.default_rng(14)
    n, c = 301, 70
    x, dy, gamma, beta = _data(rng, n, c)
    f32 = np.float32
    out = []
    for chunks in (1, 2, 3):
        rm, rv = np.zeros(c, f32), np.ones(c, f32)
        mean, invstd, y, dx = np.zeros(c, f32), np.zeros(c, f32), np.empty_like(x), np.empty_like(x)
        dg, db = np.empty(c, f32), np.empty(c, f32)
        work, acc = np.empty((chunks, 2, c)), np.empty((chunks, 3, c), f32)
        k.forward_train_cpu(x, gamma, beta, rm, rv, mean, invstd, y, work, acc, f32(1e-5), f32(0.1), f32(0.9))
        k.backward_cpu(dy, x, gamma, mean, invstd, dx, dg, db, work, acc, f32(1 / n))
        out.append((y, dx, dg, db, rm, rv))
    for other in out[1:]:
        for a, b in zip(other, out[0], strict=True):
            _close(a, b, rtol=2e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streaming_stores_write_the_same_bits(dtype):
    """Outputs of at least STREAM_MIN_BYTES in a 64-byte aligned buffer are written with streaming
    (non-temporal) stores (kernels/intrinsics.py): the same bits as ordinary stores into a buffer
    one element off alignment -- training forward, backward and evaluation forward, on the threaded
    path (N·C ≥ PARALLEL_MIN)."""
    from gpunn.kernels import batchnorm as k
    from gpunn.kernels.intrinsics import STREAM_MIN_BYTES, streamable

    from gpunn.backend import empty_aligned

    c = 256
    n = STREAM_MIN_BYTES // (c * np.dtype(dtype).itemsize) + 3
    assert n * c >= k.PARALLEL_MIN
    x, dy, gamma, beta = _data(np.random.default_rng(15), n, c, dtype)

    def aligned(like):
        return empty_aligned(np, like.shape, like.dtype)

    def misaligned(like):
        return empty_aligned(np, like.size + 1, like.dtype)[1:].reshape(like.shape)

    assert streamable(aligned(x)) and not streamable(misaligned(x))
    assert not streamable(aligned(x[: n // 2]))  # below STREAM_MIN_BYTES: ordinary stores
    runs = []
    for out in (aligned, misaligned):
        bn = _layer(gpunn.device("cpu"), gamma, beta)
        bn._out = lambda key, like, out=out: out(like)
        runs.append((bn.forward(x, True).copy(), bn.backward(dy).copy(), bn.forward(x, False).copy()))
    for streamed, ordinary in zip(*runs, strict=True):
        assert np.array_equal(streamed, ordinary)
    _close(runs[0][0], batchnorm_forward_reference(x, gamma, beta, np.zeros(c, dtype), np.ones(c, dtype))[0])
