"""Overfitting and two cures (*Deep Learning from Scratch* §6.4): a 7-layer network
784 → 100×6 → 10 (ReLU, He initialisation) trained on only 300 MNIST digits with SGD (η = 0.01),
batches of 100, for 200 epochs, three ways:

* no regularisation: training accuracy reaches ~100 %, test accuracy stays far below: overfitting;
* weight decay λ = 0.1 (½λ‖W‖² added to the loss, biases excluded);
* dropout p = 0.2 after every hidden layer.

The gap between training and test accuracy narrows with either.

    python examples/overfitting.py --device cpu --data-dir ../shared/data/mnist --out out

Uses 300 of the 8,000 training digits of the seeded t10k split and its 2,000 test digits (the
60,000/10,000 files are used instead when present).  Prints train/test accuracy every 20 epochs
and the final gaps; saves ``--out``/overfitting.png.
"""

from __future__ import annotations

from pathlib import Path

from _common import (
    MNIST_DIR_HELP,
    add_common_args,
    load_mnist_or_split,
    load_or_exit,
    parse_args,
    parser,
    pyplot,
    save_figure,
)

import gpunn

CONFIGS = {  # name: MLP options
    "no regularisation": {},
    "weight decay λ=0.1": {"weight_decay": 0.1},
    "dropout p=0.2": {"dropout": 0.2},
}


def run(xtr, ttr, xte, tte, options, device="cpu", epochs=200, lr=0.01, seed=0):
    """Train/test accuracy per epoch (the test set only measures, it never steers training)."""
    net = gpunn.MLP(784, [100] * 6, 10, activation="relu", device=device, seed=seed, **options)
    trainer = gpunn.Trainer(
        net, gpunn.optim.SGD(lr=lr), epochs=epochs, batch_size=100, seed=seed, progress=False
    )
    history = trainer.fit(xtr, ttr, validation_data=(xte, tte))
    return {"train": history["acc"], "test": history["val_acc"]}


def main(argv=None) -> dict:
    ap = parser(__doc__, MNIST_DIR_HELP)
    ap.add_argument("--n-train", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=200)
    add_common_args(ap)
    args = parse_args(ap, argv)
    (xtr, ttr), (xte, tte), _ = load_or_exit(load_mnist_or_split, args.data_dir)
    xtr, ttr = xtr[: args.n_train], ttr[: args.n_train]
    print(
        f"device {gpunn.device(args.device).name}: 784-100x6-10 ReLU, {len(xtr)} training digits, "
        f"{len(xte):,} test digits, SGD lr 0.01, batch 100, {args.epochs} epochs"
    )
    results = {}
    for name, options in CONFIGS.items():
        r = results[name] = run(xtr, ttr, xte, tte, options, args.device, args.epochs, seed=args.seed)
        print(f"\n{name}\n  epoch   train    test     gap")
        for e in list(range(19, args.epochs, 20)) or [args.epochs - 1]:
            tr, te = r["train"][e], r["test"][e]
            print(f"  {e + 1:5d}  {tr:.4f}  {te:.4f}  {tr - te:.4f}")
    print(
        "\nfinal: "
        + "; ".join(
            f"{n}: train {r['train'][-1]:.3f}, test {r['test'][-1]:.3f}, gap "
            f"{r['train'][-1] - r['test'][-1]:.3f}"
            for n, r in results.items()
        )
    )
    if not args.no_plot:
        print(f"curves: {plot(results, Path(args.out) / 'overfitting.png')}")
    return results


def plot(results, path):
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(14, 4), sharey=True)
    for ax, (name, r) in zip(axes, results.items(), strict=True):
        ax.plot(range(1, len(r["train"]) + 1), r["train"], label="train")
        ax.plot(range(1, len(r["test"]) + 1), r["test"], label="test")
        gap = r["train"][-1] - r["test"][-1]
        ax.set(title=f"{name} (final gap {gap:.3f})", xlabel="epochs", ylim=(0, 1.0))
        ax.legend(loc="lower right")
    axes[0].set_ylabel("accuracy")
    return save_figure(fig, path)


if __name__ == "__main__":
    main()
