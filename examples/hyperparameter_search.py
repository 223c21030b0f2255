"""Random search of the learning rate and the weight decay on a validation split (*Deep Learning from
Scratch* §6.5): 500 MNIST training digits, 20 % of them (100) held out for validation, a 7-layer
784 → 100×6 → 10 ReLU network, SGD, batches of 100, 50 epochs per trial, and for each trial

    lr ~ 10^U(−6, −2)        weight decay λ ~ 10^U(−8, −4)      (log-uniform)

The validation split is carved from the *training* data; the test digits are never loaded
(hyper-parameters tuned on the test set would make its accuracy an optimistic estimate).

    python examples/hyperparameter_search.py --device cpu --data-dir ../shared/data/mnist --out out

Prints every trial and the best ones ranked by final validation accuracy; saves
``--out``/hyperparameter_search.png (best trials: validation solid, training dashed) and
``--out``/hyperparameter_search_scatter.png (validation accuracy over the (lr, λ) plane).  The book
finds good learning rates around 10⁻³–10⁻²; weight decay matters much less in this range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import (
    MNIST_DIR_HELP,
    add_common_args,
    load_or_exit,
    mnist_training_digits,
    parse_args,
    parser,
    pyplot,
    save_figure,
)

import gpunn


def split_validation(x, t, fraction=0.2, seed=0):
    """Shuffle (seeded) and hold out ``fraction`` as the validation set: ``(x_tr, t_tr), (x_val, t_val)``."""
    perm = np.random.default_rng(seed).permutation(len(x))
    x, t = x[perm], t[perm]
    k = int(len(x) * fraction)
    return (x[k:], t[k:]), (x[:k], t[:k])


def trial(train, val, lr, weight_decay, device="cpu", epochs=50, seed=0):
    """Training and validation accuracy per epoch of one (lr, λ) setting."""
    net = gpunn.MLP(
        784, [100] * 6, 10, activation="relu", weight_decay=weight_decay, device=device, seed=seed
    )
    trainer = gpunn.Trainer(
        net, gpunn.optim.SGD(lr=lr), epochs=epochs, batch_size=100, seed=seed, progress=False
    )
    h = trainer.fit(*train, validation_data=val)
    return {"train": h["acc"], "val": h["val_acc"]}


def search(train, val, trials=100, device="cpu", epochs=50, seed=0):
    """``[(lr, λ, result), …]`` for ``trials`` settings drawn log-uniformly from a seeded generator."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(trials):
        lr = 10 ** rng.uniform(-6, -2)
        wd = 10 ** rng.uniform(-8, -4)
        r = trial(train, val, lr, wd, device, epochs, seed=seed + i)
        out.append((lr, wd, r))
        print(
            f"trial {i + 1:3d}: lr {lr:.2e}, weight decay {wd:.2e}: val acc {r['val'][-1]:.3f} "
            f"(train {r['train'][-1]:.3f})",
            flush=True,
        )
    return out


def main(argv=None) -> dict:
    ap = parser(__doc__, MNIST_DIR_HELP)
    ap.add_argument("--n-train", type=int, default=500, help="training digits used (before the split)")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--best", type=int, default=20, help="how many of the best trials to list and plot")
    add_common_args(ap, "directory for the PNGs")
    args = parse_args(ap, argv)
    x, t = load_or_exit(mnist_training_digits, args.data_dir)
    train, val = split_validation(x[: args.n_train], t[: args.n_train], 0.2, args.seed)
    print(
        f"device {gpunn.device(args.device).name}: {len(train[0])} training / {len(val[0])} validation "
        f"digits (no test data loaded), {args.trials} trials of {args.epochs} epochs"
    )
    results = search(train, val, args.trials, args.device, args.epochs, args.seed)
    ranked = sorted(results, key=lambda r: r[2]["val"][-1], reverse=True)
    print(f"\n=========== best {min(args.best, len(ranked))} (by final validation accuracy) ===========")
    for k, (lr, wd, r) in enumerate(ranked[: args.best], 1):
        print(f"best-{k:<3d} val acc {r['val'][-1]:.3f} | lr {lr:.2e}, weight decay {wd:.2e}")
    if not args.no_plot:
        out = Path(args.out)
        print(f"curves: {plot(ranked[: args.best], out / 'hyperparameter_search.png')}")
        print(f"scatter: {scatter(results, out / 'hyperparameter_search_scatter.png')}")
    return {"results": results, "ranked": ranked}


def plot(ranked, path):
    """The best trials' accuracy curves, one panel each (shared axes: epochs, accuracy 0-1)."""
    plt = pyplot()
    cols = 5
    rows = max(1, -(-len(ranked) // cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(13, 2.4 * rows + 0.6), squeeze=False, sharex=True, sharey=True
    )
    for k, (ax, (lr, wd, r)) in enumerate(zip(axes.ravel(), ranked, strict=False), 1):
        epochs = np.arange(1, len(r["val"]) + 1)
        ax.plot(epochs, r["val"], label="validation")
        ax.plot(epochs, r["train"], "--", label="train")
        ax.set(ylim=(0, 1.0), yticks=[0, 0.5, 1])
        ax.set_title(f"best-{k}: lr {lr:.1e}, λ {wd:.1e}", fontsize=8)
        ax.tick_params(labelsize=7, labelbottom=True)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(ranked) :]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.supxlabel("epoch")
    fig.supylabel("accuracy")
    fig.suptitle(
        f"The {len(ranked)} best trials by final validation accuracy (validation solid, training dashed)"
    )
    return save_figure(fig, path, dpi=90)


def scatter(results, path):
    plt = pyplot()
    lr = np.array([r[0] for r in results])
    wd = np.array([r[1] for r in results])
    acc = np.array([r[2]["val"][-1] for r in results])
    fig, ax = plt.subplots(figsize=(6.5, 5))
    sc = ax.scatter(lr, wd, c=acc, cmap="viridis", vmin=0, vmax=1, s=40)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="learning rate",
        ylabel="weight decay λ",
        title="final validation accuracy per trial",
    )
    fig.colorbar(sc, ax=ax)
    return save_figure(fig, path)


if __name__ == "__main__":
    main()
