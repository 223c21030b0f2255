"""gpunn.torch_mirror.to_torch: PyTorch's twin of an MLP computes the same scores and gradients
(the benchmarks and the speed example compare against it)."""

import numpy as np
import pytest

import gpunn
from gpunn.torch_mirror import to_torch

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    "kw",
    [
        dict(hidden=[64, 16], activation=["sigmoid", "tanh"]),
        dict(hidden=[32, 32], activation=["relu", "leaky_relu"], batchnorm=True),
        dict(hidden=[16], activation="identity"),
    ],
)
def test_same_scores_and_gradients(kw):
    hidden = kw.pop("hidden")
    net = gpunn.MLP(20, hidden, 5, dtype="float64", seed=3, **kw)
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((8, 20)), rng.integers(0, 5, 8)
    for _ in range(2):  # the second step has non-trivial BatchNorm running statistics
        model = to_torch(net)  # before gpunn's step: both then update the running statistics once
        grads = net.gradient(x, t)
        loss = torch.nn.CrossEntropyLoss()(model(torch.from_numpy(x)), torch.from_numpy(t))
        loss.backward()
        np.testing.assert_allclose(loss.item(), net.last_loss, rtol=1e-12)
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        for i, lin in enumerate(linears, 1):
            np.testing.assert_allclose(lin.weight.grad.numpy().T, grads[f"W{i}"], rtol=1e-9, atol=1e-12)
        model.eval()
        np.testing.assert_allclose(
            model(torch.from_numpy(x)).detach().numpy(), net.predict(x), rtol=1e-9, atol=1e-12
        )
        gpunn.optim.SGD(lr=0.1).update(net.params, grads)


def test_a_layer_without_a_twin_is_named():
    net = gpunn.MLP(4, [3], 2, seed=0)
    net.layers.append(object())
    with pytest.raises(ValueError, match="no PyTorch twin"):
        to_torch(net)
