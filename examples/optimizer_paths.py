"""The optimizer-path experiments of the textbooks, run with gpunn's fused optimizers.

1. ai-edu 15.4: the paths of SGD (η = 0.95), Momentum (η = 0.1), RMSProp (η = 0.5) and Adam
   (η = 0.5) -- plus Nesterov, AdaGrad, AdaDelta and AdamW -- on z = x²/10 + y² (∂z/∂x = x/5,
   ∂z/∂y = 2y), from (x, y) = (-7, 2) (the start in the course's code), 20 steps.
2. *Deep Learning from Scratch* 6.1.2: SGD's zig-zag on f = x²/20 + y² from (-7, 2).

The parameters are a dict ``{"x": array([x]), "y": array([y])}`` on the chosen device and each step
is the textbook call ``optimizer.update(params, grads)``.  Contour plots are saved as PNG files in
``--out`` and every point is printed::

    python examples/optimizer_paths.py --device cpu --out /tmp/paths
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _common import parse_args, pyplot, save_figure

import gpunn
from gpunn import optim

START = (-7.0, 2.0)

# ai-edu's four learning rates, then the other rules (their rates chosen to show each one's
# character in 20 steps; AdaDelta has no learning rate in the textbook: η = 1 is its rule).
# AdamW's decoupled decay θ ← θ − ηλθ applies to weights (arrays with ndim >= 2) only, not to 1-D
# arrays (biases): with x and y as 1-element vectors its path would be Adam's.  So it moves x and y
# as 1×1 weights (AS_WEIGHTS), with a λ large enough to see: each step shrinks them by ηλ = 5 %
# before the Adam step; its panel shows Adam's path in grey for comparison.
AS_WEIGHTS = {"AdamW"}
BOWL_RULES = [
    (optim.SGD, dict(lr=0.95)),
    (optim.Momentum, dict(lr=0.1, momentum=0.9)),
    (optim.RMSprop, dict(lr=0.5, rho=0.9)),
    (optim.Adam, dict(lr=0.5)),
    (optim.Nesterov, dict(lr=0.1, momentum=0.9)),
    (optim.AdaGrad, dict(lr=1.5)),
    (optim.AdaDelta, dict(lr=1.0, rho=0.9, eps=1e-2)),
    (optim.AdamW, dict(lr=0.5, weight_decay=0.1)),
]


def bowl(x, y):
    """ai-edu's z = x²/10 + y² and its gradient."""
    return x**2 / 10.0 + y**2, (x / 5.0, 2.0 * y)


def elongated(x, y):
    """Saito's f = x²/20 + y² and its gradient."""
    return x**2 / 20.0 + y**2, (x / 10.0, 2.0 * y)


def run_path(dev, cls, kwargs, fn, steps, start=START, dtype="float64", shape=(1,)):
    """The points visited by ``cls(**kwargs)`` on ``fn`` (``steps + 1`` rows of (x, y)); x and y are
    arrays of ``shape``: (1,) a bias-like vector, (1, 1) a weight (which weight decay applies to)."""

    def on_device(v):
        return dev.to_device(np.full(shape, v, dtype=dtype))

    def value(a):
        return float(dev.to_numpy(a).ravel()[0])

    params = {"x": on_device(start[0]), "y": on_device(start[1])}
    opt = cls(**kwargs, device=dev)
    path = [start]
    for _ in range(steps):
        _, (gx, gy) = fn(value(params["x"]), value(params["y"]))
        opt.update(params, {"x": on_device(gx), "y": on_device(gy)})
        path.append((value(params["x"]), value(params["y"])))
    return np.array(path)


def contour(ax, fn, path, title, xlim=(-10, 10), ylim=(-5, 5), reference=None):
    """``path`` (red) over the contour lines of ``fn``; ``reference``: another path drawn in grey."""
    X, Y = np.meshgrid(np.arange(*xlim, 0.05), np.arange(*ylim, 0.05))
    Z, _ = fn(X, Y)
    ax.contour(X, Y, Z, levels=np.geomspace(0.02, Z.max(), 14), colors="0.75", linewidths=0.8)
    if reference is not None:
        ax.plot(reference[:, 0], reference[:, 1], "o-", color="0.55", markersize=2, linewidth=0.8)
    ax.plot(path[:, 0], path[:, 1], "o-", color="tab:red", markersize=3, linewidth=1)
    ax.plot(0, 0, "+", color="k", markersize=10)
    ax.set_title(title, fontsize=10)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    parser.add_argument("--out", default="optimizer_paths", help="folder for the PNG files")
    parser.add_argument("--steps", type=int, default=20, help="steps on z = x²/10 + y² (default 20)")
    parser.add_argument(
        "--zigzag-steps", type=int, default=30, help="SGD steps on f = x²/20 + y² (default 30)"
    )
    args = parse_args(parser, argv)
    dev = gpunn.device(args.device)
    out = Path(args.out)
    plt = pyplot()
    print(f"device: {dev}")

    paths = {}
    for cls, kwargs in BOWL_RULES:
        shape = (1, 1) if cls.__name__ in AS_WEIGHTS else (1,)
        paths[cls.__name__] = run_path(dev, cls, kwargs, bowl, args.steps, shape=shape)
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for ax, (cls, kwargs) in zip(axes.flat, BOWL_RULES, strict=True):
        title = f"{cls.__name__}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
        reference = None
        if cls.__name__ in AS_WEIGHTS:
            title += "\nx, y as 1×1 weights, decayed 5 %/step (grey: Adam)"
            reference = paths["Adam"]
        contour(ax, bowl, paths[cls.__name__], title, reference=reference)
    fig.suptitle(f"z = x²/10 + y² from {START}, {args.steps} steps (ai-edu 15.4)")
    save_figure(fig, out / "paths_bowl.png", dpi=110)

    print(f"\nz = x²/10 + y² from {START}, {args.steps} steps")
    print(f"{'optimizer':10s} {'x':>10s} {'y':>10s} {'z':>11s}   first steps (x, y)")
    for name, path in paths.items():
        x, y = path[-1]
        first = "  ".join(f"({px:.3f}, {py:.3f})" for px, py in path[1:4])
        print(f"{name:10s} {x:10.4f} {y:10.4f} {bowl(x, y)[0]:11.3e}   {first}")

    zigzag = run_path(dev, optim.SGD, dict(lr=0.95), elongated, args.zigzag_steps)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    contour(ax, elongated, zigzag, f"SGD (η = 0.95) on f = x²/20 + y² from {START}: the zig-zag")
    save_figure(fig, out / "sgd_zigzag.png", dpi=110)
    print(
        f"\nSGD (η = 0.95) on f = x²/20 + y² from {START}: y flips sign every step (the zig-zag), "
        "x crawls (x ← 0.905 x)"
    )
    for i in range(0, len(zigzag), 5):
        print(f"  step {i:2d}: x = {zigzag[i, 0]:8.4f}  y = {zigzag[i, 1]:8.4f}")
    print(f"\nwrote {out / 'paths_bowl.png'} and {out / 'sgd_zigzag.png'}")
    return {"paths": paths, "zigzag": zigzag}


if __name__ == "__main__":
    main()
