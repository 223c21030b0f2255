"""gpunn.textbook: the book's conventions against small NumPy references written here, seeded runs
against a NumPy re-implementation of the book's algorithm, and the nine chapter-6 scripts (with only
their imports changed) on the CPU and on the simulated CUDA device."""

import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import to_numpy

import gpunn
from gpunn.batchnorm import BatchNorm
from gpunn.regularization import Dropout

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "examples" / "textbook_ch06"


@pytest.fixture
def on(monkeypatch):
    """``on("cpu" | "cuda")``: the textbook classes built afterwards run on that device, in float64."""

    def use(device):
        monkeypatch.setenv("GPUNN_DEVICE", device)
        monkeypatch.setenv("GPUNN_DTYPE", "float64")

    return use


# -- the book's layers' conventions ----------------------------------------------------------------
def test_dropout_not_inverted_with_numpy_masks(dev):
    """Saito's Dropout: mask = np.random.rand(*shape) > p in training, no rescaling; ×(1−p) at test."""
    p = 0.3
    x = np.random.default_rng(0).standard_normal((5, 7))
    d = Dropout(dev, p, inverted=False, rand=np.random.rand)
    np.random.seed(3)
    y = to_numpy(d.forward(dev.to_device(x), True))
    np.random.seed(3)
    mask = np.random.rand(5, 7) > p
    np.testing.assert_array_equal(y, x * mask)
    dout = np.arange(35.0).reshape(5, 7)
    np.testing.assert_array_equal(to_numpy(d.backward(dev.to_device(dout))), dout * mask)
    np.testing.assert_allclose(to_numpy(d.forward(dev.to_device(x), False)), x * (1 - p), rtol=1e-15)


def test_dropout_not_inverted_hash_masks(dev):
    """inverted=False with gpunn's own masks: kept elements unscaled, evaluation scaled by 1−p."""
    x = np.full((40, 50), 2.0)
    d = Dropout(dev, 0.25, seed=1, inverted=False)
    y = to_numpy(d.forward(dev.to_device(x), True))
    assert set(np.unique(y)) == {0.0, 2.0}
    assert 0.65 < (y > 0).mean() < 0.85
    np.testing.assert_array_equal(to_numpy(d.forward(dev.to_device(x), False)), x * 0.75)
    inverted = to_numpy(Dropout(dev, 0.25, seed=1).forward(dev.to_device(x), True))
    assert set(np.unique(inverted)) == {0.0, 2.0 / 0.75}
    with pytest.raises(TypeError, match="inverted"):
        Dropout(dev, 0.25, inverted=1)
    with pytest.raises(TypeError, match="rand"):
        Dropout(dev, 0.25, rand=0.5)


def _book_batchnorm(x, gamma, beta, state, train):
    """The book's BatchNormalization forward (ε = 10e-7, momentum 0.9, biased running variance)."""
    if train:
        mu = x.mean(axis=0)
        xc = x - mu
        var = (xc**2).mean(axis=0)
        xn = xc / np.sqrt(var + 1e-6)
        state["mean"] = 0.9 * state["mean"] + 0.1 * mu
        state["var"] = 0.9 * state["var"] + 0.1 * var
    else:
        xn = (x - state["mean"]) / np.sqrt(state["var"] + 1e-6)
    return gamma * xn + beta


def test_batchnorm_saito_statistics(dev):
    """eps=1e-6, running mean/variance from 0, biased variance; a training batch of one row."""
    rng = np.random.default_rng(1)
    C = 6
    gamma, beta = rng.uniform(0.5, 2, C), rng.standard_normal(C)
    bn = BatchNorm(
        dev,
        C,
        gamma=dev.to_device(gamma),
        beta=dev.to_device(beta),
        eps=10e-7,
        momentum=1 - 0.9,
        unbiased=False,
        running_var_init=0.0,
        dtype="float64",
    )
    state = {"mean": np.zeros(C), "var": np.zeros(C)}
    for n in (4, 1, 7):
        x = rng.standard_normal((n, C)) * 3 + 1
        np.testing.assert_allclose(
            to_numpy(bn.forward(dev.to_device(x), True)),
            _book_batchnorm(x, gamma, beta, state, True),
            rtol=1e-12,
            atol=1e-12,
        )
    np.testing.assert_allclose(to_numpy(bn.running_mean), state["mean"], rtol=1e-13)
    np.testing.assert_allclose(to_numpy(bn.running_var), state["var"], rtol=1e-13)
    x = rng.standard_normal((3, C))
    np.testing.assert_allclose(
        to_numpy(bn.forward(dev.to_device(x), False)),
        _book_batchnorm(x, gamma, beta, state, False),
        rtol=1e-12,
    )
    # the default (PyTorch's) conventions differ and refuse one row
    torch_like = BatchNorm(dev, C, dtype="float64")
    assert float(to_numpy(torch_like.running_var)[0]) == 1.0
    with pytest.raises(ValueError, match="at least 2 rows"):
        torch_like.forward(dev.to_device(np.ones((1, C))), True)


# -- the book's optimizers ---------------------------------------------------------------------
def _book_rule(name, p, g, state, t):
    """One step of the book's rules on NumPy arrays (written from the book's formulas)."""
    if name == "AdaGrad":
        state["h"] = state.get("h", 0) + g * g
        return p - 0.01 * g / (np.sqrt(state["h"]) + 1e-7)
    if name == "RMSprop":
        state["h"] = 0.99 * state.get("h", 0) + (1 - 0.99) * g * g
        return p - 0.01 * g / (np.sqrt(state["h"]) + 1e-7)
    if name == "Adam":
        state["m"] = state.get("m", 0) + (1 - 0.9) * (g - state.get("m", 0))
        state["v"] = state.get("v", 0) + (1 - 0.999) * (g * g - state.get("v", 0))
        lr_t = 0.001 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        return p - lr_t * state["m"] / (np.sqrt(state["v"]) + 1e-7)
    if name == "Nesterov":
        state["v"] = 0.9 * state.get("v", 0) - 0.01 * g
        return p + 0.9 * 0.9 * state["v"] - (1 + 0.9) * 0.01 * g
    if name == "Momentum":
        state["v"] = 0.9 * state.get("v", 0) - 0.01 * g
        return p + state["v"]
    return p - 0.01 * g


@pytest.mark.parametrize("name", ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"])
def test_book_optimizers_against_references(dev, name):
    """Defaults and ε placements of the book's optimizers, 12 steps, tiny gradients included (where
    Adam's and AdaGrad's ε matter)."""
    from gpunn.textbook import optimizer as book

    rng = np.random.default_rng(2)
    p0 = rng.standard_normal(50)
    opt = getattr(book, name)()
    params = {"W": dev.to_device(p0.copy())}
    ref, state = p0.copy(), {}
    for t in range(1, 13):
        g = rng.standard_normal(50) * (1e-6 if t % 3 == 0 else 1)
        opt.update(params, {"W": dev.to_device(g)})
        ref = _book_rule(name, ref, g, state, t)
    np.testing.assert_allclose(to_numpy(params["W"]), ref, rtol=1e-12, atol=1e-15)


def test_engine_options_change_the_rule():
    """The book's Adam ε and Nesterov differ from gpunn's defaults (so the options are needed)."""
    g = np.full(3, 1e-6)
    a, b = np.zeros(3), np.zeros(3)
    gpunn.optim.Adam(lr=0.001, eps=1e-7, eps_on="v").update({"p": a}, {"p": g})
    gpunn.optim.Adam(lr=0.001, eps=1e-7).update({"p": b}, {"p": g})
    assert abs(a[0] - b[0]) > 1e-5 * abs(b[0])
    with pytest.raises(ValueError, match="eps_on"):
        gpunn.optim.Adam(eps_on="sqrt")
    a, b = np.zeros(3), np.zeros(3)
    for opt, p in ((gpunn.optim.Nesterov(form="saito"), a), (gpunn.optim.Nesterov(), b)):
        for _ in range(3):
            opt.update({"p": p}, {"p": np.ones(3)})
    assert abs(a[0] - b[0]) > 1e-4
    with pytest.raises(ValueError, match="form"):
        gpunn.optim.Nesterov(form="book")


def test_optimizers_update_python_numbers_and_export_np():
    """optimizer_compare_naive moves plain floats; ``import *`` gives np, as the book's module."""
    namespace = {}
    exec("from gpunn.textbook.optimizer import *", namespace)
    assert namespace["np"] is np and "Adam" in namespace and "RMSprop" in namespace
    opt = namespace["Adam"](lr=0.3)
    params, ref, state = {"x": -7.0, "y": 2.0}, np.array([-7.0, 2.0]), {}
    for t in range(1, 6):
        g = np.array([params["x"] / 10.0, 2.0 * params["y"]])
        opt.update(params, {"x": g[0], "y": g[1]})
        state.setdefault("m", 0)
        state["m"] = state["m"] + 0.1 * (g - state["m"])
        state["v"] = state.get("v", 0) + 0.001 * (g * g - state.get("v", 0))
        ref = ref - 0.3 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * state["m"] / (np.sqrt(state["v"]) + 1e-7)
    assert isinstance(params["x"], float)
    np.testing.assert_allclose([params["x"], params["y"]], ref, rtol=1e-12)
    assert opt.iter == 5 and namespace["RMSprop"]().decay_rate == 0.99


# -- networks: weight-init names, errors --------------------------------------------------------
def _he(n):
    return np.sqrt(2.0 / n)


def _book_xavier(n):
    return np.sqrt(1.0 / n)


@pytest.mark.parametrize(
    "std,scale",
    [
        ("relu", _he),
        ("He", _he),
        ("sigmoid", _book_xavier),
        ("xavier", _book_xavier),
        (0.01, lambda n: 0.01),
        (np.float64(1.0), lambda n: 1.0),
    ],
)
def test_weight_init_std_names(on, std, scale):
    from gpunn.textbook.multi_layer_net import MultiLayerNet

    on("cpu")
    np.random.seed(5)
    net = MultiLayerNet(7, [5, 4], 3, weight_init_std=std)
    np.random.seed(5)
    for i, (n, m) in enumerate([(7, 5), (5, 4), (4, 3)], start=1):
        np.testing.assert_array_equal(net.params[f"W{i}"], scale(n) * np.random.randn(n, m))
        np.testing.assert_array_equal(net.params[f"b{i}"], np.zeros(m))


def test_bad_arguments_are_named(on):
    from gpunn.textbook.multi_layer_net import MultiLayerNet
    from gpunn.textbook.trainer import Trainer

    on("cpu")
    with pytest.raises(ValueError, match="weight_init_std"):
        MultiLayerNet(4, [3], 2, weight_init_std="lecun")
    with pytest.raises(ValueError, match="activation"):
        MultiLayerNet(4, [3], 2, activation="tanh")
    net = MultiLayerNet(4, [3], 2)
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(net, np.ones((4, 4)), np.zeros(4, int), np.ones((2, 4)), np.zeros(2, int), optimizer="lbfgs")
    os.environ["GPUNN_DTYPE"] = "float16"
    try:
        with pytest.raises(ValueError, match="GPUNN_DTYPE"):
            MultiLayerNet(4, [3], 2)
    finally:
        os.environ["GPUNN_DTYPE"] = "float64"


def test_util_helpers():
    from gpunn.textbook.util import shuffle_dataset, smooth_curve

    x = np.random.default_rng(0).standard_normal(40)
    w = np.kaiser(11, 2)
    padded = np.r_[x[10:0:-1], x, x[-1:-11:-1]]
    np.testing.assert_allclose(smooth_curve(list(x)), np.convolve(w / w.sum(), padded, "valid")[5:-5])
    a, t = np.arange(12.0).reshape(6, 2), np.arange(6)
    np.random.seed(9)
    a2, t2 = shuffle_dataset(a, t)
    np.random.seed(9)
    order = np.random.permutation(6)
    np.testing.assert_array_equal(a2, a[order])
    np.testing.assert_array_equal(t2, t[order])


# -- seeded runs against a NumPy re-implementation of the book's algorithm -------------------------
def _book_run(x, t, sizes, steps, batch, lam, p_drop, lr):
    """The book's MultiLayerNetExtend (BatchNorm + Dropout + weight decay, ReLU, He weights) trained by
    its SGD, in NumPy, drawing from np.random in the book's order; returns (params, losses)."""
    L = len(sizes) - 1
    W = [np.sqrt(2.0 / sizes[i]) * np.random.randn(sizes[i], sizes[i + 1]) for i in range(L)]
    b = [np.zeros(sizes[i + 1]) for i in range(L)]
    g = [np.ones(sizes[i + 1]) for i in range(L - 1)]
    be = [np.zeros(sizes[i + 1]) for i in range(L - 1)]
    losses = []
    for _ in range(steps):
        idx = np.random.choice(x.shape[0], batch)
        h, cache = x[idx], []
        for i in range(L - 1):
            z = h @ W[i] + b[i]
            mu = z.mean(axis=0)
            xc = z - mu
            std = np.sqrt((xc**2).mean(axis=0) + 1e-6)
            xn = xc / std
            a = np.maximum(g[i] * xn + be[i], 0)
            mask = np.random.rand(*a.shape) > p_drop
            cache.append((h, xc, std, xn, a > 0, mask))
            h = a * mask
        s = h @ W[-1] + b[-1]
        e = np.exp(s - s.max(axis=1, keepdims=True))
        y = e / e.sum(axis=1, keepdims=True)
        n = batch
        d = y.copy()
        d[np.arange(n), t[idx]] -= 1
        d /= n
        dW = [None] * L
        db = [None] * L
        dg, dbe = [None] * (L - 1), [None] * (L - 1)
        dW[-1], db[-1] = h.T @ d + lam * W[-1], d.sum(axis=0)
        dh = d @ W[-1].T
        for i in reversed(range(L - 1)):
            h_in, xc, std, xn, relu, mask = cache[i]
            da = dh * mask * relu
            dbe[i], dg[i] = da.sum(axis=0), (xn * da).sum(axis=0)
            dxn = g[i] * da
            dvar = -0.5 * (dxn * xc).sum(axis=0) / std**3
            dxc = dxn / std + 2.0 / n * xc * dvar
            dz = dxc - dxc.sum(axis=0) / n
            dW[i], db[i] = h_in.T @ dz + lam * W[i], dz.sum(axis=0)
            dh = dz @ W[i].T
        losses.append(
            -np.log(y[np.arange(n), t[idx]] + 1e-7).mean() + 0.5 * lam * sum((w**2).sum() for w in W)
        )
        for i in range(L):
            W[i] -= lr * dW[i]
            b[i] -= lr * db[i]
        for i in range(L - 1):
            g[i] -= lr * dg[i]
            be[i] -= lr * dbe[i]
    return W, b, g, be, losses


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_seeded_run_matches_the_books_algorithm(on, device):
    from gpunn.textbook.multi_layer_net_extend import MultiLayerNetExtend
    from gpunn.textbook.optimizer import SGD

    on(device)
    rng = np.random.default_rng(4)
    x, t = rng.standard_normal((30, 9)), rng.integers(0, 4, 30)
    sizes, lam, p, lr = [9, 8, 6, 4], 0.01, 0.2, 0.1
    np.random.seed(11)
    W, b, g, be, ref_losses = _book_run(x, t, sizes, 6, 5, lam, p, lr)
    np.random.seed(11)
    net = MultiLayerNetExtend(
        9, [8, 6], 4, weight_decay_lambda=lam, use_dropout=True, dropout_ration=p, use_batchnorm=True
    )
    assert list(net.layers) == [
        "Affine1",
        "BatchNorm1",
        "Activation_function1",
        "Dropout1",
        "Affine2",
        "BatchNorm2",
        "Activation_function2",
        "Dropout2",
        "Affine3",
    ]
    opt, losses = SGD(lr=lr), []
    for _ in range(6):
        idx = np.random.choice(30, 5)
        grads = net.gradient(x[idx], t[idx])
        losses.append(net.mlp.last_loss)  # the training-mode loss of that batch (before the step)
        opt.update(net.params, grads)
    for i in range(3):
        np.testing.assert_allclose(to_numpy(net.params[f"W{i + 1}"]), W[i], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(to_numpy(net.params[f"b{i + 1}"]), b[i], rtol=1e-10, atol=1e-12)
    for i in range(2):
        np.testing.assert_allclose(to_numpy(net.params[f"gamma{i + 1}"]), g[i], rtol=1e-10)
        np.testing.assert_allclose(to_numpy(net.params[f"beta{i + 1}"]), be[i], rtol=1e-10, atol=1e-12)
    # gpunn's fused loss is log-softmax (no +1e-7): equal to the book's up to ~1e-7
    np.testing.assert_allclose([float(to_numpy(v)) for v in losses], ref_losses, rtol=1e-6)
    # the book's loss() (with its +1e-7) in test mode: running statistics from 0, dropout ×(1−p)
    assert np.isfinite(net.loss(x, t)) and 0 <= net.accuracy(x, t) <= 1


# -- the nine chapter-6 scripts -----------------------------------------------------------------
SMALL = {
    "optimizer_compare_naive": [("range(30)", "range(5)")],
    "weight_init_activation_histogram": [],
    "optimizer_compare_mnist": [
        ("max_iterations = 2000", "max_iterations = 12"),
        ("batch_size = 128", "batch_size = 8"),
        ("100, 100, 100, 100]", "8, 8]"),
    ],
    "weight_init_compare": [
        ("max_iterations = 2000", "max_iterations = 12"),
        ("batch_size = 128", "batch_size = 8"),
        ("100, 100, 100, 100]", "8, 8]"),
    ],
    "batch_norm_test": [
        ("x_train[:1000]", "x_train[:40]"),
        ("t_train[:1000]", "t_train[:40]"),
        ("max_epochs = 20", "max_epochs = 2"),
        ("batch_size = 100", "batch_size = 20"),
        ("num=16)", "num=16)[::8]"),
        ("100, 100, 100, 100, 100]", "8, 8]"),
    ],
    "batch_norm_gradient_check": [
        ("hidden_size_list=[100, 100]", "hidden_size_list=[2, 2]"),
        ("input_size=784", "input_size=6"),
        ("x_train[:1]", "x_train[:1, 400:406]"),
    ],
    "overfit_weight_decay": [
        ("x_train[:300]", "x_train[:20]"),
        ("t_train[:300]", "t_train[:20]"),
        ("max_epochs = 201", "max_epochs = 3"),
        ("batch_size = 100", "batch_size = 10"),
        (
            "= load_mnist(normalize=True)",
            "= load_mnist(normalize=True); x_test, t_test = x_test[:30], t_test[:30]",
        ),
    ],
    "overfit_dropout": [
        ("x_train[:300]", "x_train[:20]"),
        ("t_train[:300]", "t_train[:20]"),
        ("epochs=301, mini_batch_size=100", "epochs=3, mini_batch_size=10"),
        (
            "= load_mnist(normalize=True)",
            "= load_mnist(normalize=True); x_test, t_test = x_test[:30], t_test[:30]",
        ),
    ],
    "hyperparameter_optimization": [
        ("x_train[:500]", "x_train[:50]"),
        ("t_train[:500]", "t_train[:50]"),
        ("optimization_trial = 100", "optimization_trial = 2"),
        ("epocs=50", "epocs=2"),
        ("mini_batch_size=100", "mini_batch_size=10"),
        ("100, 100, 100, 100, 100, 100]", "8, 8]"),
    ],
}
"""Small versions of the scripts for the tests: (old, new) text substitutions (each must match)."""

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def run_script(name, device, monkeypatch, capsys, seed=0, small=True):
    """Run examples/textbook_ch06/<name>.py in this process (Agg backend, seeded), return its stdout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = SCRIPTS / f"{name}.py"
    src = path.read_text()
    for old, new in SMALL[name] if small else []:
        assert old in src, f"{name}: {old!r} not in the script"
        src = src.replace(old, new)
    monkeypatch.setenv("GPUNN_DEVICE", device)
    monkeypatch.setenv("GPUNN_DTYPE", "float64")
    monkeypatch.chdir(SCRIPTS)
    monkeypatch.setattr(sys, "path", [str(SCRIPTS), *sys.path])
    np.random.seed(seed)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plt.show() on Agg; the MNIST-subset warning
        exec(compile(src, str(path), "exec"), {"__name__": "__main__"})
    plt.close("all")
    return capsys.readouterr().out


def test_scripts_import_only_gpunn_textbook():
    """The only imports the scripts have that the book's do not: gpunn.textbook's modules."""
    assert sorted(p.stem for p in SCRIPTS.glob("*.py")) == sorted(SMALL)
    for path in SCRIPTS.glob("*.py"):
        for line in path.read_text().splitlines():
            if line.startswith(("from common", "from dataset", "import gpunn", "from gpunn")):
                assert re.match(
                    r"from gpunn\.textbook\.(mnist|optimizer|util|trainer|multi_layer_net"
                    r"(_extend)?) import ",
                    line,
                ), (path.name, line)


@pytest.fixture(scope="module")
def cpu_outputs():
    return {}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_script_runs(name, device, monkeypatch, capsys, mnist_dir, cpu_outputs):
    """Each script runs (small sizes) on the CPU and on the simulated GPU; the GPU prints the CPU's
    numbers (to 1e-9 relative: the reductions sum in another order)."""
    monkeypatch.setenv("GPUNN_DATA", str(mnist_dir))
    out = run_script(name, device, monkeypatch, capsys)
    if name not in ("optimizer_compare_naive", "weight_init_activation_histogram"):
        assert out.strip(), f"{name} printed nothing"
    if device == "cpu":
        cpu_outputs[name] = out
    elif name in cpu_outputs:
        ours = [float(v) for v in _NUMBER.findall(out)]
        ref = [float(v) for v in _NUMBER.findall(cpu_outputs[name])]
        assert len(ours) == len(ref)
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)
