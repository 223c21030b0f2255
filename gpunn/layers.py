"""Layers with the textbook's forward and backward passes.

Convention (as in *Deep Learning from Scratch* and the ai-edu course): a batch is a row-major
``(N, features)`` array, ``forward(x, train)`` caches what ``backward(dout)`` needs, and
``backward`` returns ∂L/∂x given ``dout`` = ∂L/∂out.  Parameter layers write their gradients
*into* views of the model's flat gradient buffer, never allocating new gradient arrays.

Every layer gets its array namespace ``xp`` (NumPy or CuPy) from the device; none imports NumPy.
"""

from __future__ import annotations

__all__ = ["Layer", "Affine", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "Identity", "get_activation",
           "softmax", "ACTIVATIONS"]


class Layer:
    """A differentiable step of a network."""

    def __init__(self, xp):
        self.xp = xp

    def forward(self, x, train: bool = False):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class Affine(Layer):
    """Z = X·W + B.  Backward: dW = Xᵀ·dZ, dB = Σ_rows dZ, dX = dZ·Wᵀ.

    ``W``, ``b`` are views of the model's parameter buffer and ``dW``, ``db`` of its gradient buffer.
    """

    def __init__(self, xp, W, b, dW, db):
        super().__init__(xp)
        self.W, self.b, self.dW, self.db = W, b, dW, db
        self.x = None

    def forward(self, x, train=False):
        self.x = x
        out = x @ self.W
        out += self.b
        return out

    def backward(self, dout):
        self.xp.matmul(self.x.T, dout, out=self.dW)
        self.xp.sum(dout, axis=0, out=self.db)
        return dout @ self.W.T

    def __repr__(self):
        return f"Affine({self.W.shape[0]}, {self.W.shape[1]})"


class Sigmoid(Layer):
    """A = σ(Z) = 1/(1+e^(−Z)), computed as ½(1+tanh(Z/2)) (no overflow).  dZ = dA ⊙ A ⊙ (1 − A)."""

    def forward(self, x, train=False):
        out = self.xp.tanh(x * 0.5)
        out += 1
        out *= 0.5
        self.out = out
        return out

    def backward(self, dout):
        a = self.out
        return dout * a * (1 - a)


class Tanh(Layer):
    """A = tanh(Z).  dZ = dA ⊙ (1 − A²)."""

    def forward(self, x, train=False):
        self.out = self.xp.tanh(x)
        return self.out

    def backward(self, dout):
        a = self.out
        return dout * (1 - a * a)


class ReLU(Layer):
    """A = max(0, Z).  dZ = dA where Z > 0, else 0."""

    def forward(self, x, train=False):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


class LeakyReLU(Layer):
    """A = Z if Z > 0 else α·Z (α = ``slope``, default 0.01).  dZ = dA ⊙ (1 if Z > 0 else α)."""

    def __init__(self, xp, slope: float = 0.01):
        super().__init__(xp)
        if not (0 <= slope < 1):
            raise ValueError(f"LeakyReLU slope must be in [0, 1), got {slope}")
        self.slope = float(slope)

    def forward(self, x, train=False):
        self.mask = x > 0
        return self.xp.where(self.mask, x, x * self.slope)

    def backward(self, dout):
        return self.xp.where(self.mask, dout, dout * self.slope)

    def __repr__(self):
        return f"LeakyReLU(slope={self.slope})"


class Identity(Layer):
    """A = Z."""

    def forward(self, x, train=False):
        return x

    def backward(self, dout):
        return dout


ACTIVATIONS = {
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "leakyrelu": LeakyReLU,
    "identity": Identity,
    "linear": Identity,
}


def get_activation(name, xp) -> Layer:
    """An activation layer from its name (``"sigmoid"``, ``"tanh"``, ``"relu"``, ``"leaky_relu"``,
    ``"identity"``) or a ``Layer`` subclass."""
    if isinstance(name, type) and issubclass(name, Layer):
        return name(xp)
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name or a Layer class, got {name!r}")
    cls = ACTIVATIONS.get(name.strip().lower())
    if cls is None:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}")
    return cls(xp)


def softmax(xp, z):
    """Row-wise softmax, stable: exp(z − max z) / Σ exp(z − max z)."""
    e = z - z.max(axis=1, keepdims=True)
    xp.exp(e, out=e)
    e /= e.sum(axis=1, keepdims=True)
    return e
