"""Flat parameter and gradient buffers.

A model's parameters live in **one** contiguous 1-D buffer and its gradients in another of the same
layout; every ``W``/``b``/``gamma``/``beta`` the user sees is a view into them.  An optimizer
handed both dicts can therefore update the whole model with a single fused kernel launch.

Layout: the entries that take weight decay (the weight matrices) come first, then the rest
(biases, BatchNorm γ/β), so a kernel applies decay to the prefix ``[0, n_decay)`` only.
"""

from __future__ import annotations

from math import prod

from .backend import device_of, is_device_array

__all__ = ["FlatDict", "FlatLayout"]


class FlatLayout:
    """Where each named array lives in the flat buffers.

    ``specs`` is a list of ``(name, shape, decay)``; dict order (the textbook order W1, b1, W2, …)
    is kept for iteration, buffer order puts ``decay=True`` entries first.
    """

    def __init__(self, specs):
        names = [name for name, _, _ in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names in {names}")
        self.shapes = {name: tuple(shape) for name, shape, _ in specs}
        ordered = [s for s in specs if s[2]] + [s for s in specs if not s[2]]
        self.offsets = {}
        offset = 0
        for name, shape, _ in ordered:
            self.offsets[name] = offset
            offset += prod(shape)
        self.size = offset
        self.n_decay = sum(prod(shape) for _, shape, decay in specs if decay)
        self.names = names

    def views(self, flat, device=None) -> FlatDict:
        """A :class:`FlatDict` of views of ``flat`` (a 1-D buffer of ``self.size`` elements on
        ``device``)."""
        d = FlatDict()
        for name in self.names:
            start = self.offsets[name]
            shape = self.shapes[name]
            dict.__setitem__(d, name, flat[start : start + prod(shape)].reshape(shape))
        d.flat, d.layout, d.device = flat, self, device
        return d


class FlatDict(dict):
    """A dict of views into one flat buffer (``.flat``), laid out by ``.layout``.

    Assigning ``d[key] = value`` copies ``value`` into the existing view (shape checked), so the
    views never detach from the buffer, the way textbook code that reassigns ``params["W1"]``
    expects the model to see the new values.  On a GPU a host (NumPy) value is copied to the
    device explicitly first (CuPy refuses to assign a host array into a device array).
    """

    flat = None
    layout = None
    device = None

    def __setitem__(self, key, value):
        if key not in self:
            raise KeyError(f"{key!r} is not a parameter of this model; it has {list(self)}")
        view = dict.__getitem__(self, key)
        if tuple(getattr(value, "shape", ())) not in (view.shape, ()):
            raise ValueError(
                f"{key}: shape {tuple(value.shape)} does not match the parameter's shape {view.shape}"
            )
        if (
            is_device_array(view)
            and not is_device_array(value)
            and not isinstance(value, (int, float))
            and getattr(value, "ndim", 1)
        ):  # host arrays and lists; scalars fill as they are
            value = device_of(view).to_device(value, view.dtype)
        view[...] = value

    def __delitem__(self, key):
        raise TypeError("parameters of a model cannot be removed")
