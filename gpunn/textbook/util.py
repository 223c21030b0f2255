"""The book's ``common/util.py`` helpers used by chapter 6: ``smooth_curve`` and ``shuffle_dataset``."""

from __future__ import annotations

from .optimizer import np

__all__ = ["smooth_curve", "shuffle_dataset"]

WINDOW = 11
"""The length of ``smooth_curve``'s Kaiser window."""


def smooth_curve(x):
    """A smoothed copy of the sequence ``x`` (a loss curve) of the same length: convolution with a
    normalised Kaiser window (β = 2) of 11 points, the ends padded by reflecting ``x`` about them
    (for sequences of 11 values or more)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"smooth_curve needs a 1-D sequence, got shape {x.shape}")
    half = WINDOW // 2
    padded = np.concatenate([x[WINDOW - 1 : 0 : -1], x, x[-1:-WINDOW:-1]])
    w = np.kaiser(WINDOW, 2)
    y = np.convolve(w / w.sum(), padded, mode="valid")
    return y[half : len(y) - half]


def shuffle_dataset(x, t):
    """``(x, t)`` with their rows in the same random order, drawn with ``np.random.permutation``."""
    if len(x) != len(t):
        raise ValueError(f"x and t must have the same number of rows, got {len(x)} and {len(t)}")
    order = np.random.permutation(x.shape[0])
    return x[order], t[order]
