"""Train the ai-edu course's three-layer MNIST network on CPU or GPU by changing one flag.

    784 → 64 (Sigmoid) → 16 (Tanh) → 10 (Softmax), cross-entropy, SGD.

    python examples/mnist_mlp.py --device cpu --data-dir ../shared/data/mnist

With the full MNIST (train + t10k files in --data-dir) it trains on the 60,000 training digits;
with only the 10,000 t10k digits (as in ../shared/data/mnist) it splits them 8,000 / 2,000
(seeded) and reports accuracy on the 2,000 held out.  Prints test accuracy and wall time, and
saves the learning curves as a PNG.
"""

from __future__ import annotations

import time
from pathlib import Path

from _common import (
    MNIST_DIR_HELP,
    add_common_args,
    load_mnist_or_split,
    load_or_exit,
    parse_args,
    parser,
    plot_learning_curves,
)

import gpunn


def build(device, seed=0):
    """The textbook network: 784-64-16-10, Sigmoid then Tanh, softmax cross-entropy."""
    return gpunn.MLP(
        784, [64, 16], 10, activation=["sigmoid", "tanh"], init="xavier_normal", device=device, seed=seed
    )


def main(argv=None) -> dict:
    ap = parser(__doc__, MNIST_DIR_HELP + " (default: $GPUNN_DATA, then ~/.cache/gpunn/mnist)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.5, help="SGD learning rate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="train on the first N samples only")
    add_common_args(ap, "directory for the learning-curve PNG", seed=False, progress=True)
    args = parse_args(ap, argv)

    (xtr, ttr), (xte, tte), what = load_or_exit(load_mnist_or_split, args.data_dir)
    if args.limit:
        xtr, ttr = xtr[: args.limit], ttr[: args.limit]
    net = build(args.device, args.seed)
    print(f"{net}\ndata: {what}; training on {len(xtr)} samples")
    trainer = gpunn.Trainer(
        net,
        gpunn.optim.SGD(lr=args.lr),
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.no_progress,
    )
    start = time.perf_counter()
    history = trainer.fit(xtr, ttr, validation_data=(xte, tte))
    net.device.synchronize()
    seconds = time.perf_counter() - start
    test_acc = net.accuracy(xte, tte)
    print(
        f"device {net.device.name}: test accuracy {test_acc:.4f} after {args.epochs} epochs, "
        f"wall time {seconds:.2f} s ({len(xtr) * args.epochs / seconds:,.0f} samples/s)"
    )
    if not args.no_plot:
        print(f"learning curves: {plot(history, Path(args.out) / 'mnist_mlp_curves.png', net.device.name)}")
    return {"test_acc": test_acc, "seconds": seconds, "history": history}


def plot(history, path, device_name):
    """The learning curves, train and test (the held-out digits), loss and accuracy."""
    return plot_learning_curves(
        history,
        path,
        f"784-64-16-10 MLP, SGD, device {device_name}",
        val_label="test",
        loss_label="cross-entropy loss",
        grid=True,
    )


if __name__ == "__main__":
    main()
