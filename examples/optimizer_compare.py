"""*Deep Learning from Scratch* 6.1.8: the update rules compared on MNIST, with gpunn.

The textbook's experiment: a 5-layer network of 100 ReLU units per hidden layer (784-100-100-100-
100-10, He initialisation), mini-batches of 128, the same initial weights and the same batches for
every rule, loss recorded at every iteration.  Here on the 10,000 real MNIST test digits (split
8,000 train / 2,000 test by ``gpunn.datasets.load_mnist_test_split``), for all eight rules of
``gpunn.optim`` with the textbook's learning rates (SGD, Momentum, AdaGrad 0.01; Adam 0.001) and
their defaults for the others.  Each step is the textbook loop::

    grads = net.gradient(x_batch, t_batch)
    optimizer.update(net.params, grads)      # one fused kernel launch for the whole network

Prints a table of the (smoothed) loss every ``--every`` iterations and the final test accuracy, and
saves the loss curves as ``optimizer_compare.png`` in ``--out``::

    python examples/optimizer_compare.py --device cpu --data-dir ../shared/data/mnist \
        --iters 500 --out /tmp/cmp
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import parse_args, pyplot, save_figure

import gpunn
from gpunn import optim
from gpunn.datasets import load_mnist_test_split

RULES = {
    "SGD": lambda: optim.SGD(lr=0.01),
    "Momentum": lambda: optim.Momentum(lr=0.01),
    "Nesterov": lambda: optim.Nesterov(lr=0.01),
    "AdaGrad": lambda: optim.AdaGrad(lr=0.01),
    "AdaDelta": lambda: optim.AdaDelta(),
    "RMSprop": lambda: optim.RMSprop(lr=0.001),
    "Adam": lambda: optim.Adam(lr=0.001),
    "AdamW": lambda: optim.AdamW(lr=0.001),
}


def smooth_curve(x, window=11):
    """Saito's ``common/util.py`` smoothing: a Kaiser-window moving average."""
    if len(x) < window:
        return np.asarray(x)
    w = np.kaiser(window, 2)
    s = np.r_[x[window - 1 : 0 : -1], x, x[-1:-window:-1]]
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[(window // 2) : len(y) - (window // 2)]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz)",
    )
    parser.add_argument("--iters", type=int, default=500, help="iterations per rule (textbook: 2000)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--every", type=int, default=100, help="print the loss every N iterations")
    parser.add_argument(
        "--rules", default=",".join(RULES), help="comma-separated subset of " + ",".join(RULES)
    )
    parser.add_argument("--out", default="optimizer_compare", help="folder for the PNG file")
    parser.add_argument("--seed", type=int, default=0)
    args = parse_args(parser, argv)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        parser.error(f"unknown rules {unknown}; choose from {list(RULES)}")

    dev = gpunn.device(args.device)
    (x_train, t_train), (x_test, t_test) = load_mnist_test_split(args.data_dir, download=False)
    print(
        f"device: {dev}; {len(x_train):,} training / {len(x_test):,} test digits; "
        f"784-100-100-100-100-10 ReLU, batch {args.batch_size}, {args.iters} iterations"
    )
    order = np.random.default_rng(args.seed).integers(0, len(x_train), size=(args.iters, args.batch_size))

    losses, accuracy, seconds = {}, {}, {}
    for name in rules:
        net = gpunn.MLP(
            784, [100, 100, 100, 100], 10, activation="relu", init="he_normal", device=dev, seed=args.seed
        )
        opt = RULES[name]()
        curve = []
        t0 = time.perf_counter()
        for i in range(args.iters):
            batch = order[i]
            grads = net.gradient(x_train[batch], t_train[batch])
            opt.update(net.params, grads)
            curve.append(float(net.last_loss))  # the batch's loss before this update
        seconds[name] = time.perf_counter() - t0
        losses[name] = np.array(curve)
        accuracy[name] = net.accuracy(x_test, t_test)
        print(
            f"  {name:9s} {seconds[name]:6.1f} s  final loss {smooth_curve(curve)[-1]:.4f}  "
            f"test accuracy {accuracy[name]:.4f}",
            flush=True,
        )

    checkpoints = list(range(0, args.iters, args.every)) + [args.iters - 1]
    print("\nloss (smoothed) by iteration")
    print("iteration " + "".join(f"{name:>10s}" for name in rules))
    smoothed = {name: smooth_curve(losses[name]) for name in rules}
    for i in sorted(set(checkpoints)):
        print(f"{i:9d} " + "".join(f"{smoothed[name][i]:10.4f}" for name in rules))
    print("test acc  " + "".join(f"{accuracy[name]:10.4f}" for name in rules))

    out = Path(args.out)
    title = f"MNIST, 784-100x4-10 ReLU, batch {args.batch_size}: update rules compared ({dev.name})"
    plot(smoothed, accuracy, out / "optimizer_compare.png", title)
    print(f"\nwrote {out / 'optimizer_compare.png'}")
    return {"losses": losses, "accuracy": accuracy, "seconds": seconds}


def loss_axis_range(curves):
    """(bottom, top) of a log loss axis that holds every curve: the rules end a factor of 2-10 apart
    (on a linear axis from 0 they pile up at the bottom), so each factor of 10 gets the same height."""
    low = min(float(np.min(c)) for c in curves)
    high = max(float(np.max(c)) for c in curves)
    return low / 1.25, high * 1.25


def plot(smoothed, accuracy, path, title):
    """The smoothed loss curves on a log loss axis; the legend lists each rule's test accuracy."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    fig, ax = pyplot().subplots(figsize=(9, 5.5))
    for name, curve in smoothed.items():
        ax.plot(curve, label=f"{name} (test acc {accuracy[name]:.3f})", linewidth=1.2)
    ax.set(xlabel="iterations", ylabel="loss (smoothed, log scale)", yscale="log", title=title)
    ax.set_ylim(*loss_axis_range(smoothed.values()))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 3.0, 5.0)))  # 0.1 0.2 0.3 0.5 1 2 ...
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="y", which="both", labelsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper right", fontsize=9)
    return save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    main()
