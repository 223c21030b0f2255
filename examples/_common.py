"""What the example scripts share: their common command-line options, MNIST loading, and saving
matplotlib figures (learning curves among them).

Not part of the gpunn package.  The scripts import it as ``_common``: ``python examples/foo.py``
puts examples/ first on ``sys.path``, and the tests that import an example put it there themselves.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from gpunn.datasets import DatasetNotFoundError, load_mnist, load_mnist_test_split

DEVICE_HELP = "cpu, cuda, cuda:N or auto (default)"
MNIST_DIR_HELP = "directory with the MNIST IDX files"
EXAMPLES_EXTRA = 'pip install "gpunn[examples]"'
"""How to install what the examples use beyond gpunn (matplotlib; tqdm for progress bars)."""


# -- command line ----------------------------------------------------------------------------------
def parser(doc, data_help=None, *, device_default="auto", device_help=DEVICE_HELP):
    """An ``ArgumentParser`` whose ``--help`` shows the script's docstring ``doc`` as written, with
    ``--device`` and, when ``data_help`` is given, ``--data-dir`` (default None: searched)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=device_default, help=device_help)
    if data_help is not None:
        ap.add_argument("--data-dir", default=None, help=data_help)
    return ap


def add_common_args(ap, out_help="directory for the PNG", *, seed=True, progress=False):
    """Add the options that close every script's list: ``--seed`` (0; unless ``seed=False``),
    ``--out`` (``out``), ``--no-progress`` (when ``progress``) and ``--no-plot``."""
    if seed:
        ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out", help=out_help)
    if progress:
        ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--no-plot", action="store_true")
    return ap


def parse_args(ap, argv=None):
    """``ap.parse_args(argv)``, then, unless ``--no-plot`` was given, check that matplotlib imports --
    before any data is loaded or any network trained -- and exit with how to install it otherwise
    (:func:`require_matplotlib`)."""
    args = ap.parse_args(argv)
    if not getattr(args, "no_plot", False):
        require_matplotlib(can_skip=hasattr(args, "no_plot"))
    return args


def require_matplotlib(can_skip=False):
    """Exit (``SystemExit``, status 1) with the install command unless matplotlib imports; the
    message mentions ``--no-plot`` when the script has it (``can_skip``)."""
    missing = missing_modules("matplotlib")
    if missing:
        skip = ", or run it with --no-plot to skip the figures" if can_skip else ""
        sys.exit(
            f"{script_name()} draws its figures with matplotlib, which is not installed "
            f"({missing[0][1]}).\nInstall the examples' extras first: {EXAMPLES_EXTRA}{skip}"
        )


def missing_modules(*names):
    """``[(name, reason), ...]`` of the modules in ``names`` that do not import."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing.append((name, str(exc)))
    return missing


def script_name():
    """The running script's file name (``examples/foo.py``), or "this example" inside a test."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) or ""
    return f"examples/{Path(path).name}" if Path(path).parent.name == "examples" else "this example"


# -- data ------------------------------------------------------------------------------------------
def load_or_exit(loader, *args, **kwargs):
    """``loader(*args, **kwargs)``; when the data set is not found, exit with its message (where it
    looked, how to get it)."""
    try:
        return loader(*args, **kwargs)
    except DatasetNotFoundError as exc:
        sys.exit(str(exc))


def mnist_t10k_split(data_dir):
    """MNIST's 10,000 t10k digits split (seeded) 8,000 train / 2,000 test:
    ``(x_train, t_train), (x_test, t_test)``."""
    return load_mnist_test_split(data_dir, n_train=8000, seed=0, download=False)


def load_mnist_or_split(data_dir):
    """``(x_train, t_train), (x_test, t_test), description``: MNIST's 60,000 / 10,000 digits when
    present, else :func:`mnist_t10k_split`."""
    try:
        train, test = load_mnist(data_dir, download=False)
        return train, test, "MNIST 60,000 train / 10,000 test"
    except DatasetNotFoundError:
        train, test = mnist_t10k_split(data_dir)
        return train, test, "the 10,000 MNIST t10k digits split 8,000 train / 2,000 test"


def mnist_training_digits(data_dir):
    """Only the training part ``(x, t)`` of :func:`load_mnist_or_split`: the 60,000 when present,
    else the 8,000 of the t10k split (its 2,000 test digits are discarded unseen)."""
    train, _, _ = load_mnist_or_split(data_dir)
    return train


# -- figures ---------------------------------------------------------------------------------------
def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (the scripts only write PNG files);
    without matplotlib, exit with how to install it."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi=100, rect=None):
    """Lay ``fig`` out (``tight_layout``, within ``rect`` = (left, bottom, right, top) in figure
    fractions when given), write it to ``path`` (creating the folder) and close it; returns ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def plot_learning_curves(
    history, path, title, *, val_label="validation", loss_label="loss", grid=False, acc_lines=()
):
    """Save a Trainer history as two panels, loss and accuracy per epoch: the training curve and,
    when the history has them, the validation curves (labelled ``val_label``).  ``acc_lines``:
    keyword arguments of horizontal reference lines (``Axes.axhline``) on the accuracy panel."""
    plt = pyplot()
    epochs = range(1, len(history["loss"]) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, name, ylabel in ((a, "loss", "loss", loss_label), (b, "acc", "accuracy", "accuracy")):
        ax.plot(epochs, history[key], label="train")
        if history[f"val_{key}"]:
            ax.plot(epochs, history[f"val_{key}"], label=val_label)
        ax.set(xlabel="epoch", ylabel=ylabel, title=name)
    for line in acc_lines:
        b.axhline(**line)
    for ax in (a, b):
        if grid:
            ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save_figure(fig, path)
