"""Weight initialisers (by name or object).

Each initialiser draws a weight matrix of shape ``(n_in, n_out)`` from a *host* generator, so that
the same seed gives the same initial weights on every device.  Biases always start at zero.

========================  ===============================================  ======================
name                      distribution                                     use with
========================  ===============================================  ======================
``"zeros"``               W = 0 (every hidden unit stays identical)        the zero-init lesson
``"normal"`` / a float    N(0, std²), std given (default 0.01)             textbook ``weight_init_std``
``"uniform"``             U(−1/√n_in, +1/√n_in)                            classic default
``"xavier_normal"``       N(0, 2/(n_in+n_out))  (Glorot)                   Sigmoid, Tanh
``"xavier_uniform"``      U(±√(6/(n_in+n_out)))                            Sigmoid, Tanh
``"lecun_normal"``        N(0, 1/n_in) -- what Saito's book calls Xavier   Sigmoid, Tanh
``"he_normal"``           N(0, 2/n_in)  (He / MSRA)                        ReLU
``"he_uniform"``          U(±√(6/n_in))                                    ReLU
``"he_leaky"``            N(0, 2/((1+α²)·n_in)), α the Leaky ReLU slope    Leaky ReLU
========================  ===============================================  ======================

``"xavier"``, ``"he"``, ``"msra"`` are aliases of the normal variants.
"""

from __future__ import annotations

import math

__all__ = [
    "Initializer",
    "Zeros",
    "Normal",
    "Uniform",
    "XavierNormal",
    "XavierUniform",
    "LecunNormal",
    "HeNormal",
    "HeUniform",
    "HeLeaky",
    "get_initializer",
]


class Initializer:
    """Base class: ``init(rng, n_in, n_out)`` returns a host array of shape (n_in, n_out)."""

    def std(self, n_in: int, n_out: int) -> float:
        raise NotImplementedError

    def __call__(self, rng, n_in: int, n_out: int):
        return rng.standard_normal((n_in, n_out)) * self.std(n_in, n_out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Zeros(Initializer):
    def __call__(self, rng, n_in, n_out):
        return rng.uniform(0.0, 0.0, (n_in, n_out))


class Normal(Initializer):
    """N(0, std²) with a fixed std (the textbook's ``weight_init_std``, e.g. 1 or 0.01)."""

    def __init__(self, std: float = 0.01):
        if not (isinstance(std, (int, float)) and math.isfinite(std) and std >= 0):
            raise ValueError(f"normal initialiser: std must be a finite number >= 0, got {std!r}")
        self._std = float(std)

    def std(self, n_in, n_out):
        return self._std

    def __repr__(self):
        return f"Normal(std={self._std})"


class _UniformLimit(Initializer):
    """U(−limit, +limit); subclasses give the limit."""

    def limit(self, n_in: int, n_out: int) -> float:
        raise NotImplementedError

    def __call__(self, rng, n_in, n_out):
        a = self.limit(n_in, n_out)
        return rng.uniform(-a, a, (n_in, n_out))


class Uniform(_UniformLimit):
    """U(−1/√n_in, +1/√n_in)."""

    def limit(self, n_in, n_out):
        return 1.0 / math.sqrt(n_in)


class XavierNormal(Initializer):
    """Glorot normal: std = √(2/(n_in+n_out))."""

    def std(self, n_in, n_out):
        return math.sqrt(2.0 / (n_in + n_out))


class XavierUniform(_UniformLimit):
    """Glorot uniform: limit = √(6/(n_in+n_out))."""

    def limit(self, n_in, n_out):
        return math.sqrt(6.0 / (n_in + n_out))


class LecunNormal(Initializer):
    """std = 1/√n_in: the "Xavier" of *Deep Learning from Scratch* (``randn(n, m) / sqrt(n)``)."""

    def std(self, n_in, n_out):
        return 1.0 / math.sqrt(n_in)


class HeNormal(Initializer):
    """He / MSRA normal: std = √(2/n_in)."""

    def std(self, n_in, n_out):
        return math.sqrt(2.0 / n_in)


class HeUniform(_UniformLimit):
    """He uniform: limit = √(6/n_in)."""

    def limit(self, n_in, n_out):
        return math.sqrt(6.0 / n_in)


class HeLeaky(Initializer):
    """He for Leaky ReLU with slope α: std = √(2/((1+α²)·n_in))."""

    def __init__(self, slope: float = 0.01):
        self.slope = float(slope)

    def std(self, n_in, n_out):
        return math.sqrt(2.0 / ((1.0 + self.slope**2) * n_in))

    def __repr__(self):
        return f"HeLeaky(slope={self.slope})"


_NAMES = {
    "zeros": Zeros,
    "zero": Zeros,
    "normal": Normal,
    "std": Normal,
    "uniform": Uniform,
    "xavier": XavierNormal,
    "xavier_normal": XavierNormal,
    "glorot": XavierNormal,
    "glorot_normal": XavierNormal,
    "xavier_uniform": XavierUniform,
    "glorot_uniform": XavierUniform,
    "lecun": LecunNormal,
    "lecun_normal": LecunNormal,
    "he": HeNormal,
    "msra": HeNormal,
    "he_normal": HeNormal,
    "he_uniform": HeUniform,
    "he_leaky": HeLeaky,
    "he_leaky_relu": HeLeaky,
}


def get_initializer(init) -> Initializer:
    """An :class:`Initializer` from a name (see the table above), a number (normal std) or an object."""
    if isinstance(init, Initializer):
        return init
    if isinstance(init, bool):
        raise TypeError(f"init must be a name, a std (number) or an Initializer, got {init!r}")
    if isinstance(init, (int, float)):
        return Normal(init)
    if isinstance(init, str):
        cls = _NAMES.get(init.strip().lower())
        if cls is None:
            raise ValueError(f"unknown initialiser {init!r}; known: {', '.join(sorted(_NAMES))}")
        return cls()
    if callable(init):
        return _Callable(init)
    raise TypeError(f"init must be a name, a std (number) or an Initializer, got {init!r}")


class _Callable(Initializer):
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, rng, n_in, n_out):
        return self.fn(rng, n_in, n_out)
