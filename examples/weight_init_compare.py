"""MNIST training loss for three initialisations of a 5-layer ReLU network (*Deep Learning from
Scratch* §6.2.4): 784 → 100 → 100 → 100 → 100 → 10, SGD (η = 0.01), batches of 128, 2,000 iterations.

    python examples/weight_init_compare.py --device cpu --data-dir ../shared/data/mnist --out out

* std 0.01: the forward signal shrinks to ~0, so do the gradients: the loss stays at ln 10 ≈ 2.30;
* Xavier (Saito's 1/√n) and He (√(2/n)): the loss falls, He fastest.

Trains on MNIST's 60,000 training digits when present in ``--data-dir``, else on 8,000 of the
10,000 t10k digits (seeded split).  Prints the loss every 100 iterations; saves
``--out``/weight_init_compare.png.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import MNIST_DIR_HELP, add_common_args, load_or_exit, parse_args, parser, pyplot, save_figure
from _common import mnist_training_digits as load_train  # MNIST's training digits (the tests use it)

import gpunn

INITS = {"std=0.01": 0.01, "Xavier": "lecun_normal", "He": "he_normal"}


def train_losses(x, t, init, device="cpu", iterations=2000, batch_size=128, lr=0.01, seed=0):
    """Per-iteration training losses of the 5-layer ReLU net initialised with ``init`` (the same
    mini-batches, drawn from a host generator seeded by ``seed``, for every initialisation)."""
    net = gpunn.MLP(784, [100, 100, 100, 100], 10, activation="relu", init=init, device=device, seed=seed)
    opt = gpunn.optim.SGD(lr=lr)
    dev = net.device
    xd, td = dev.to_device(x), dev.to_device(t)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(iterations):
        idx = dev.to_device(rng.choice(x.shape[0], batch_size, replace=False))
        losses.append(net._gradient(xd[idx], td[idx]))  # array scalars: read once at the end
        opt.update(net.params, net.grads)
    return [float(v) for v in losses]


def main(argv=None) -> dict:
    ap = parser(__doc__, MNIST_DIR_HELP)
    ap.add_argument("--iterations", type=int, default=2000)
    add_common_args(ap)
    args = parse_args(ap, argv)
    x, t = load_or_exit(load_train, args.data_dir)
    print(
        f"device {gpunn.device(args.device).name}: 784-100-100-100-100-10 ReLU, SGD lr 0.01, batch 128, "
        f"{len(x):,} training digits"
    )
    curves = {
        name: train_losses(x, t, init, args.device, args.iterations, seed=args.seed)
        for name, init in INITS.items()
    }
    print("iteration " + " ".join(f"{name:>9}" for name in curves))
    for i in list(range(0, args.iterations, 100)) + [args.iterations - 1]:
        print(f"{i:9d} " + " ".join(f"{c[i]:9.4f}" for c in curves.values()))
    if not args.no_plot:
        print(f"loss curves: {plot(curves, Path(args.out) / 'weight_init_compare.png')}")
    return {"losses": curves}


def smooth(v, k=20):
    v = np.asarray(v)
    return np.convolve(v, np.ones(k) / k, mode="valid") if len(v) > k else v


def plot(curves, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, c in curves.items():
        ax.plot(smooth(c), label=name)
    ax.set(
        xlabel="iterations",
        ylabel="training loss (moving average of 20)",
        ylim=(0, 2.5),
        title="MNIST, 5-layer ReLU net: weight initialisation",
    )
    ax.legend()
    return save_figure(fig, path)


if __name__ == "__main__":
    main()
