"""Determinism: one seed gives the same initial weights, data order, dropout masks and results, run
to run and process to process (on the CPU, bit for bit).

On a GPU the initial weights, the data order and dropout masks are still identical (they are drawn
on the host), but CuPy/cuBLAS reductions need not be bit-reproducible, so losses may differ in the
last bits between runs there.  The same-seed-same-weights-on-every-device check is
tests/test_mlp.py::test_same_seed_same_weights_on_every_device.
"""

import hashlib
import inspect
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import to_numpy

import gpunn
from gpunn import optim

SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    import numpy as np
    import gpunn
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 10)).astype(np.float32)
    t = rng.integers(0, 4, 64)
    net = gpunn.MLP(10, [16, 8], 4, seed=7, batchnorm=True, dropout=0.2)
    tr = gpunn.Trainer(net, gpunn.optim.Adam(lr=0.01), epochs=3, batch_size=10, seed=3, progress=False)
    h = tr.fit(x, t)
    print(json.dumps({"iter_loss": [v.hex() for v in h["iter_loss"]],
                      "params": hashlib.sha256(net.params.flat.tobytes()).hexdigest()}))
""")


def run_in_process():
    scope = {}
    exec(SCRIPT.replace("print(", "result = ("), scope)
    return json.loads(scope["result"])


def test_two_processes_give_identical_loss_curves():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "PYTHONHASHSEED": str(seed)},
        )
        for seed in (1, 2)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out))
    assert outs[0] == outs[1]
    assert len(outs[0]["iter_loss"]) == 21
    assert run_in_process() == outs[0]  # and this process agrees with both


def test_same_seed_same_run_different_seed_different_run():
    def run(seed, order_seed):
        rng = np.random.default_rng(0)
        x, t = rng.standard_normal((30, 6)).astype(np.float32), rng.integers(0, 3, 30)
        net = gpunn.MLP(6, [5], 3, seed=seed)
        h = gpunn.Trainer(
            net, optim.Adam(lr=0.01), epochs=2, batch_size=8, seed=order_seed, progress=False
        ).fit(x, t)
        return h, net.params.flat.copy()

    (h1, p1), (h2, p2) = run(1, 2), run(1, 2)
    assert h1["iter_loss"] == h2["iter_loss"] and h1["loss"] == h2["loss"]
    np.testing.assert_array_equal(p1, p2)
    assert run(5, 2)[0]["iter_loss"] != h1["iter_loss"]  # other weights
    assert run(1, 9)[0]["iter_loss"] != h1["iter_loss"]  # other data order


def test_data_order_is_drawn_on_the_host_and_identical_on_every_device(dev):
    """The batches a step sees are the same rows, in the same order, on every device."""

    def batches(device):
        rng = np.random.default_rng(0)
        x, t = rng.standard_normal((20, 6)).astype(np.float32), rng.integers(0, 3, 20)
        net = gpunn.MLP(6, [5], 3, device=device, seed=0)
        seen = []
        real = net._gradient

        def record(xb, tb):
            seen.append(to_numpy(tb).tolist())
            return real(xb, tb)

        net._gradient = record
        gpunn.Trainer(net, optim.SGD(), epochs=2, batch_size=8, seed=4, progress=False).fit(x, t)
        return seen

    assert batches(dev) == batches("cpu")


def _dropout_kwargs():
    params = inspect.signature(gpunn.MLP).parameters
    for name in ("dropout", "dropout_ratio", "dropout_rate"):
        if name in params:
            return {name: 0.5}
    return None


@pytest.mark.skipif(_dropout_kwargs() is None, reason="this gpunn's MLP has no dropout option yet")
def test_dropout_masks_follow_the_seed():
    kw = _dropout_kwargs()
    x = np.random.default_rng(0).standard_normal((16, 6)).astype(np.float32)

    def masks(seed):
        net = gpunn.MLP(6, [32], 3, seed=seed, **kw)
        return [hashlib.sha256(to_numpy(net.predict(x, train=True)).tobytes()).hexdigest() for _ in range(3)]

    a, b, c = masks(1), masks(1), masks(2)
    assert a == b and a != c
    assert len(set(a)) == 3  # a fresh mask every forward pass
