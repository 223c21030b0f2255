"""Training with and without BatchNorm across initial weight scales (*Deep Learning from Scratch*
§6.3.2, the 4×4 panel figure): a 784 → 100×5 → 10 ReLU network on 1,000 MNIST digits, SGD
(η = 0.01), batches of 100, 20 epochs, for 16 initial weight stds from 1 down to 10⁻⁴ (log-spaced).

    python examples/batchnorm_compare.py --device cpu --data-dir ../shared/data/mnist --out out

BatchNorm learns faster at nearly every scale, and keeps learning where the plain network, given a
badly scaled start (too large: exploding; too small: vanishing signals), does not learn at all.

At the very smallest scales (std ≲ 2·10⁻⁴) the first layer's batch variance (~std²·Σx² ≈ 10⁻⁶)
falls below BatchNorm's ε, so x̂ = (x − μ)/√(σ² + ε) no longer has unit variance and the signal
still shrinks layer after layer: with gpunn's default ε = 1e-5 (PyTorch's) BatchNorm stops learning
at std 10⁻⁴; ``--bn-eps 1e-6`` (Saito's value) moves that edge below the range plotted.
Prints the training accuracy after each epoch's end for both networks at every scale and a
summary; saves ``--out``/batchnorm_compare.png (solid: BatchNorm, dashed: without).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import add_common_args, load_or_exit, mnist_t10k_split, parse_args, parser, pyplot, save_figure

import gpunn

SCALES = np.logspace(0, -4, num=16)


def train_accuracy(x, t, scale, batchnorm, device="cpu", epochs=20, lr=0.01, seed=0, bn_eps=1e-5):
    """Training accuracy before training and after each epoch (a diverging plain network -- NaN
    scores -- simply stops learning: ``guard=False``)."""
    net = gpunn.MLP(
        784,
        [100] * 5,
        10,
        activation="relu",
        init=float(scale),
        batchnorm=batchnorm,
        bn_eps=bn_eps,
        device=device,
        seed=seed,
    )
    with np.errstate(all="ignore"):
        first = net.accuracy(x, t)
        trainer = gpunn.Trainer(
            net, gpunn.optim.SGD(lr=lr), epochs=epochs, batch_size=100, seed=seed, progress=False, guard=False
        )
        history = trainer.fit(x, t)
    return [first, *history["acc"]]


def main(argv=None) -> dict:
    ap = parser(__doc__, "directory with the MNIST t10k IDX files")
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument(
        "--scales",
        type=int,
        nargs="+",
        default=list(range(16)),
        help="indices (0-15) of the weight scales to run (default: all 16)",
    )
    ap.add_argument("--bn-eps", type=float, default=1e-5, help="BatchNorm's ε (default 1e-5; Saito: 1e-6)")
    add_common_args(ap)
    args = parse_args(ap, argv)
    (xtr, ttr), _ = load_or_exit(mnist_t10k_split, args.data_dir)
    x, t = xtr[: args.n_train], ttr[: args.n_train]
    print(
        f"device {gpunn.device(args.device).name}: 784-100x5-10 ReLU on {len(x)} digits, SGD lr 0.01, "
        f"batch 100, {args.epochs} epochs, BatchNorm eps {args.bn_eps:g}; training accuracy at the end"
    )
    results = {}
    print(f"{'w std':>9} {'BatchNorm':>9} {'plain':>9}")
    for scale in SCALES[args.scales]:
        bn = train_accuracy(x, t, scale, True, args.device, args.epochs, seed=args.seed, bn_eps=args.bn_eps)
        plain = train_accuracy(x, t, scale, False, args.device, args.epochs, seed=args.seed)
        results[float(scale)] = {"batchnorm": bn, "plain": plain}
        print(f"{scale:9.2e} {bn[-1]:9.3f} {plain[-1]:9.3f}", flush=True)
    faster = sum(np.mean(r["batchnorm"]) > np.mean(r["plain"]) for r in results.values())
    print(
        f"BatchNorm learned faster (higher mean accuracy over the epochs) at {faster} of {len(results)} "
        "scales"
    )
    if not args.no_plot:
        title = (
            f"BatchNorm vs. none across initial weight scales: 784-100x5-10 ReLU, {len(x):,} MNIST "
            f"digits, SGD η = 0.01, batch 100"
        )
        print(f"panels: {plot(results, Path(args.out) / 'batchnorm_compare.png', title)}")
    return {"results": results, "faster": faster}


def plot(results, path, title=None):
    """One panel per weight scale: training accuracy per epoch with and without BatchNorm; the legend
    sits above the panels (inside one, it would cover a curve)."""
    plt = pyplot()
    n = len(results)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3 * cols, 2.6 * rows + 1.0), squeeze=False, sharex=True, sharey=True
    )
    for ax, (scale, r) in zip(axes.ravel(), results.items(), strict=False):
        ax.plot(r["batchnorm"], label="with BatchNorm")
        ax.plot(r["plain"], "--", label="without BatchNorm")
        ax.set(title=f"initial weight std {scale:.2e}", ylim=(0, 1.0))
        ax.title.set_fontsize(9)
        ax.tick_params(labelbottom=True, labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.supxlabel("epochs (0: before training)")
    fig.supylabel("training accuracy")
    fig.suptitle(title or "BatchNorm vs. none across initial weight scales: 784-100x5-10 ReLU, SGD")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.45 / fig.get_figheight()),
        ncol=2,
        fontsize=9,
        frameon=False,
    )
    top = 1 - 0.75 / fig.get_figheight()  # room for the title and the legend
    return save_figure(fig, path, dpi=90, rect=(0, 0, 1, top))


if __name__ == "__main__":
    main()
