"""Histograms of hidden-layer activations for different initial weights (*Deep Learning from Scratch*
§6.2.2-6.2.3): 1,000 random inputs through 5 layers of 100 units, no training.

    python examples/weight_init_activations.py --device cpu --out out

What the figure shows (and the printed table measures, per layer):

* Sigmoid, std 1: the activations pile up at 0 and 1 -- where σ' ≈ 0: vanishing gradients;
* Sigmoid, std 0.01: everything sits at 0.5 -- all units alike: limited expressiveness;
* Sigmoid / Tanh, Xavier (Saito's 1/√n, ``"lecun_normal"``): spread out in every layer;
* ReLU, std 0.01: shrinks towards 0 layer after layer; Xavier: narrows with depth;
  He (√(2/n), ``"he_normal"``): the same spread in every layer.

Uses gpunn's own layers (``Affine``, the activations) and initialisers on the chosen device.
Saves ``--out``/weight_init_activations.png.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import add_common_args, parse_args, parser, pyplot, save_figure

import gpunn
from gpunn.init import get_initializer
from gpunn.layers import Affine, get_activation

CONFIGS = [  # (label, initialiser for get_initializer, activation)
    ("Sigmoid, std 1", 1.0, "sigmoid"),
    ("Sigmoid, std 0.01", 0.01, "sigmoid"),
    ("Sigmoid, Xavier 1/√n", "lecun_normal", "sigmoid"),
    ("Tanh, Xavier 1/√n", "lecun_normal", "tanh"),
    ("ReLU, std 0.01", 0.01, "relu"),
    ("ReLU, Xavier 1/√n", "lecun_normal", "relu"),
    ("ReLU, He √(2/n)", "he_normal", "relu"),
]


def layer_activations(init, activation, device="cpu", n=1000, units=100, layers=5, seed=0):
    """The activations (host arrays) of each of ``layers`` hidden layers of ``units`` units for ``n``
    standard-normal inputs, weights drawn by ``init``, biases 0."""
    dev = gpunn.device(device)
    xp = dev.xp
    rng = np.random.default_rng(seed)
    x = dev.to_device(rng.standard_normal((n, units)), "float32")
    out = []
    for _ in range(layers):
        W = dev.to_device(get_initializer(init)(rng, units, units), "float32")
        b = xp.zeros(units, dtype="float32")
        affine = Affine(xp, W, b, xp.empty_like(W), xp.empty_like(b))
        x = get_activation(activation, xp).forward(affine.forward(x))
        out.append(dev.to_numpy(x))
    return out


def stats(a, activation) -> dict:
    """Numbers behind a histogram: mean, std, and the fractions at the ends / in the middle."""
    d = {"mean": float(a.mean()), "std": float(a.std())}
    if activation == "sigmoid":
        d["ends"] = float(((a < 0.1) | (a > 0.9)).mean())  # near 0 or 1
        d["at_0.5"] = float((np.abs(a - 0.5) < 0.02).mean())
    elif activation == "tanh":
        d["ends"] = float((np.abs(a) > 0.9).mean())
        d["at_0"] = float((np.abs(a) < 0.02).mean())
    else:
        d["zero"] = float((a <= 0).mean())
    return d


def run(device="cpu", seed=0) -> dict:
    """``{label: (activation, [host activations per layer])}`` for every configuration."""
    return {label: (act, layer_activations(init, act, device, seed=seed)) for label, init, act in CONFIGS}


def main(argv=None) -> dict:
    ap = add_common_args(parser(__doc__))
    args = parse_args(ap, argv)

    results = run(args.device, args.seed)
    table = {}
    print(f"device {gpunn.device(args.device).name}: 1,000 inputs, 5 layers of 100 units")
    for label, (act, acts) in results.items():
        print(f"\n{label}")
        rows = table[label] = [stats(a, act) for a in acts]
        keys = list(rows[0])
        print("  layer " + " ".join(f"{k:>8}" for k in keys))
        for i, r in enumerate(rows, 1):
            print(f"  {i:5d} " + " ".join(f"{r[k]:8.3f}" for k in keys))
    if not args.no_plot:
        print(f"\nhistograms: {plot(results, Path(args.out) / 'weight_init_activations.png')}")
    return {"stats": table, "activations": results}


def plot(results, path):
    plt = pyplot()
    rows = len(results)
    fig, axes = plt.subplots(rows, 5, figsize=(13, 2.0 * rows))
    for r, (label, (act, acts)) in enumerate(results.items()):
        lo, hi = {"sigmoid": (0, 1), "tanh": (-1, 1)}.get(act, (0, None))
        for i, a in enumerate(acts):
            ax = axes[r, i]
            a = a.ravel()
            if hi is None:  # ReLU: the positive part, on a common range per row
                a = a[a > 0]
                top = max(float(np.quantile(x[x > 0], 0.99)) if (x > 0).any() else 1e-3 for x in acts)
                ax.hist(a, 30, range=(0, top))
            else:
                ax.hist(a, 30, range=(lo, hi))
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"layer {i + 1}")
            if i == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle("Activation histograms, 5 layers of 100 units (ReLU rows: positive part only)")
    return save_figure(fig, path, dpi=90)


if __name__ == "__main__":
    main()
