"""Checks on what users hand in: clear ``TypeError``/``ValueError`` messages naming the argument,
instead of a NumPy broadcasting error, a Numba typing error or a silently wrong result."""

from __future__ import annotations

import math
import numbers

from .backend import host_xp, is_device_array

__all__ = [
    "check_inputs",
    "check_targets",
    "check_distribution",
    "check_finite",
    "check_hyper",
    "positive_int",
]


def positive_int(name: str, value) -> int:
    """``value`` as a Python ``int`` if it is a whole number >= 1 (a Python or NumPy integer; not a
    bool, a float or a string), else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer (a Python or NumPy int >= 1), got {value!r}")
    return int(value)


def _kind(a) -> str:
    dtype = getattr(a, "dtype", None)
    return getattr(dtype, "kind", "?")


def check_inputs(dev, x, n_features: int, dtype, name: str = "x", finite: bool = True):
    """``x`` as a C-contiguous ``(N, n_features)`` array of ``dtype`` on ``dev``.

    Host (NumPy) arrays and lists are moved to ``dev``; an array of another device, a non-float
    dtype, a wrong shape, an empty batch or a NaN/Inf (``finite=True``) raise.
    """
    x = _on_device(dev, x, name)
    kind = _kind(x)
    if kind == "O":
        raise TypeError(f"{name} has dtype object; pass a numeric float array")
    if kind in "biu":
        raise TypeError(
            f"{name} has integer dtype {x.dtype}; gpunn computes in {dtype} -- scale inputs "
            f"to floats first, e.g. x.astype('float32') / 255 for images"
        )
    if kind not in "f":
        raise TypeError(f"{name} must be a real floating-point array, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(f"{name} must have shape (batch, {n_features}), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (0 rows)")
    x = dev.xp.ascontiguousarray(x, dtype=dtype)
    if finite:
        check_finite(dev, x, name)
    return x


def check_finite(dev, a, name: str):
    """Raise ``ValueError`` if ``a`` holds NaN or ±Inf (one reduction, a host sync on a GPU)."""
    if not bool(dev.xp.isfinite(a).all()):
        n_nan = int(dev.xp.isnan(a).sum())
        raise ValueError(
            f"{name} contains non-finite values ({n_nan} NaN, {int((~dev.xp.isfinite(a)).sum()) - n_nan} Inf)"
        )


def check_targets(
    dev, t, n: int, n_classes: int, dtype, name: str = "t", values: bool = True, distribution: bool = False
):
    """Targets for a batch of ``n``: class indices ``(n,)`` in ``[0, n_classes)`` (returned as int64)
    or an ``(n, n_classes)`` array (one-hot, soft labels) of ``dtype``.  ``values=False`` checks
    only the shape and dtype: the values are not read (on a GPU, reading them is a host sync).
    ``distribution=True`` (a softmax cross-entropy) also requires each row of 2-D targets to be a
    probability distribution: entries >= 0 summing to 1 (within float rounding)."""
    t = _on_device(dev, t, name)
    if t.ndim == 1 and n_classes == 1:
        raise ValueError(
            f"{name} has shape {tuple(t.shape)}, but the model has 1 output: 1-D targets are "
            f"read as class indices; pass real-valued targets of shape ({t.shape[0]}, 1), "
            f"e.g. {name}.reshape(-1, 1)"
        )
    if t.ndim == 1 or (t.ndim == 2 and t.shape[1] == 1 and n_classes != 1):
        return _check_labels(dev, t.reshape(-1), n, n_classes, name, values)
    if t.ndim != 2 or t.shape != (n, n_classes):
        raise ValueError(
            f"{name} must be class indices of shape ({n},) or one-hot of shape "
            f"({n}, {n_classes}), got {tuple(t.shape)}"
        )
    if _kind(t) not in "fiub":
        raise TypeError(f"{name} must be numeric, got dtype {t.dtype}")
    t = dev.xp.ascontiguousarray(t, dtype=dtype)
    if values:
        check_finite(dev, t, name)
        if distribution:
            check_distribution(dev, t, name)
    return t


def _check_labels(dev, t, n, n_classes, name, values):
    """1-D class indices: whole numbers in ``[0, n_classes)`` (values read only when ``values``),
    returned as native int64."""
    xp = dev.xp
    kind = _kind(t)
    if kind == "f" and values:
        if not bool(xp.all(t == xp.floor(t))):
            raise ValueError(
                f"{name} holds class indices but some are not whole numbers (a 1-D {name} "
                f"is read as class indices; real-valued targets need shape ({n}, {n_classes}))"
            )
    elif kind not in "iub":
        raise TypeError(f"{name} must hold integer class indices, got dtype {t.dtype}")
    if t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} labels but the batch has {n} rows")
    if values and n and (int(t.min()) < 0 or int(t.max()) >= n_classes):
        raise ValueError(
            f"{name}: labels must be in [0, {n_classes - 1}], found values in "
            f"[{int(t.min())}, {int(t.max())}]"
        )
    return t.astype(xp.int64, copy=False)


def check_distribution(dev, t, name: str):
    """Raise ``ValueError`` unless every row of the 2-D float ``t`` is a probability distribution:
    no negative entry, and a sum of 1 within sqrt(machine epsilon) of its dtype (so all-zero rows and
    rows summing to 2 are refused).  A few reductions: one host sync on a GPU."""
    xp = dev.xp
    tol = float(host_xp().finfo(t.dtype).eps) ** 0.5
    sums = t.sum(axis=1, dtype=xp.float64)
    n_neg = int((t.min(axis=1) < 0).sum())
    bad = xp.abs(sums - 1) > tol
    n_bad = int(bad.sum())
    if n_neg or n_bad:
        row = int(xp.argmax(bad | (t.min(axis=1) < 0)))
        raise ValueError(
            f"{name} must hold probability distributions (one-hot or soft labels: entries >= 0, "
            f"each row summing to 1) for a softmax cross-entropy loss, but {n_neg} row(s) have "
            f"negative entries and {n_bad} do not sum to 1 (row {row} sums to "
            f"{float(sums[row]):.6g}); normalise the rows, or pass class indices"
        )


def check_hyper(name: str, value, low=None, high=None, low_open=False, high_open=False):
    """A finite float hyper-parameter within ``[low, high]`` (open ends as asked); returns ``float``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    bad = not math.isfinite(v)
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v >= high if high_open else v > high
    if bad:
        lo = "" if low is None else f"{'(' if low_open else '['}{low}"
        hi = "" if high is None else f"{high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {lo or '(-inf'}, {hi or 'inf)'}, got {value!r}")
    return v


def _on_device(dev, a, name):
    dtype = getattr(a, "dtype", None)
    if dtype is not None and not dtype.isnative and not is_device_array(a):
        a = a.astype(dtype.newbyteorder("="))  # e.g. big-endian data from a file: native order, on the host
    if dev.owns(a):
        return a
    if is_device_array(a):
        raise TypeError(
            f"{name} is {dev.array_kind(a)} on another device, but the model lives on "
            f"{dev.name}; move it with gpunn.device({dev.name!r}).to_device(...)"
        )
    if hasattr(a, "__array__") or isinstance(a, (list, tuple)):
        try:
            return dev.to_device(a)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} cannot be converted to an array: {exc}") from None
    raise TypeError(f"{name} must be an array, got {type(a).__name__}")
