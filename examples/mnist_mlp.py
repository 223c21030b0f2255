"""Train the ai-edu course's three-layer MNIST network on CPU or GPU by changing one flag.

    784 → 64 (Sigmoid) → 16 (Tanh) → 10 (Softmax), cross-entropy, SGD.

    python examples/mnist_mlp.py --device cpu --data-dir ../shared/data/mnist

With the full MNIST (train + t10k files in --data-dir) it trains on the 60,000 training digits;
with only the 10,000 t10k digits (as in ../shared/data/mnist) it splits them 8,000 / 2,000
(seeded) and reports accuracy on the 2,000 held out.  Prints test accuracy and wall time, and
saves the learning curves as a PNG.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gpunn
from gpunn.datasets import DatasetNotFoundError, load_mnist, load_mnist_test_split


def load(data_dir):
    """(x_train, t_train), (x_test, t_test), description."""
    try:
        (xtr, ttr), (xte, tte) = load_mnist(data_dir, download=False)
        return (xtr, ttr), (xte, tte), "MNIST 60,000 train / 10,000 test"
    except DatasetNotFoundError:
        (xtr, ttr), (xte, tte) = load_mnist_test_split(data_dir, n_train=8000, seed=0, download=False)
        return (xtr, ttr), (xte, tte), "the 10,000 MNIST t10k digits split 8,000 train / 2,000 test"


def build(device, seed=0):
    """The textbook network: 784-64-16-10, Sigmoid then Tanh, softmax cross-entropy."""
    return gpunn.MLP(784, [64, 16], 10, activation=["sigmoid", "tanh"], init="xavier_normal",
                     device=device, seed=seed)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    ap.add_argument("--data-dir", default=None, help="directory with the MNIST IDX files "
                    "(default: $GPUNN_DATA, then ~/.cache/gpunn/mnist)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.5, help="SGD learning rate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="train on the first N samples only")
    ap.add_argument("--out", default="out", help="directory for the learning-curve PNG")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)

    try:
        (xtr, ttr), (xte, tte), what = load(args.data_dir)
    except DatasetNotFoundError as exc:
        sys.exit(str(exc))
    if args.limit:
        xtr, ttr = xtr[:args.limit], ttr[:args.limit]
    net = build(args.device, args.seed)
    print(f"{net}\ndata: {what}; training on {len(xtr)} samples")
    trainer = gpunn.Trainer(net, gpunn.optim.SGD(lr=args.lr), epochs=args.epochs, batch_size=args.batch_size,
                            seed=args.seed, progress=not args.no_progress)
    start = time.perf_counter()
    history = trainer.fit(xtr, ttr, validation_data=(xte, tte))
    net.device.synchronize()
    seconds = time.perf_counter() - start
    test_acc = net.accuracy(xte, tte)
    print(f"device {net.device.name}: test accuracy {test_acc:.4f} after {args.epochs} epochs, "
          f"wall time {seconds:.1f} s ({len(xtr) * args.epochs / seconds:,.0f} samples/s)")
    if not args.no_plot:
        print(f"learning curves: {plot(history, Path(args.out) / 'mnist_mlp_curves.png', net.device.name)}")
    return {"test_acc": test_acc, "seconds": seconds, "history": history}


def plot(history, path, device_name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    epochs = range(1, len(history["loss"]) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, history["loss"], label="train")
    ax1.plot(epochs, history["val_loss"], label="test")
    ax1.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax2.plot(epochs, history["acc"], label="train")
    ax2.plot(epochs, history["val_acc"], label="test")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"784-64-16-10 MLP, SGD, device {device_name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
