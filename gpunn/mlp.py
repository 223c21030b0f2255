"""The multi-layer perceptron with the textbook interface.

``MLP(784, [64, 16], 10, activation=["sigmoid", "tanh"])`` is the ai-edu course's three-layer
MNIST network::

    Z1 = X·W1 + B1   A1 = Sigmoid(Z1)        dZ3 = A3 − Y          dW3 = A2ᵀ·dZ3
    Z2 = A1·W2 + B2  A2 = Tanh(Z2)           dZ2 = dA2 ⊙ (1 − A2²) dW2 = A1ᵀ·dZ2
    Z3 = A2·W3 + B3  A3 = Softmax(Z3)        dZ1 = dA1 ⊙ A1 ⊙ (1 − A1)

Readers' code ports unchanged: ``net.params`` ("W1", "b1", "W2", …), ``net.predict(x)``,
``net.loss(x, t)``, ``net.accuracy(x, t)`` and ``grads = net.gradient(x, t)`` followed by
``optimizer.update(net.params, grads)``.  ``t`` may be class indices or one-hot.

All parameters live in one flat buffer and all gradients in another (``net.params.flat``,
``net.grads.flat``); each ``W``/``b`` is a view, so an optimizer updates the whole model in one
kernel launch.  ``gradient`` returns the same gradient dict (of views) every call.
"""

from __future__ import annotations

from .backend import device as get_device
from .gradcheck import numerical_gradient_dict
from .init import get_initializer
from .layers import Affine, get_activation, softmax
from .losses import get_loss
from .params import FlatLayout
from .validate import check_inputs, check_targets

__all__ = ["MLP"]

_RELU_LIKE = ("relu", "leaky_relu", "leakyrelu")


class MLP:
    """Fully connected network ``input_size → hidden_sizes… → output_size``.

    Parameters
    ----------
    activation : one name for every hidden layer or a list, one per hidden layer
        (``"sigmoid"``, ``"tanh"``, ``"relu"``, ``"leaky_relu"``, ``"identity"``).
    init : initialiser name, std (float) or :class:`~gpunn.init.Initializer`, or a list per layer;
        ``"auto"`` (default) is He for ReLU-like layers and Xavier (normal) otherwise; the output
        layer follows its input's activation.
    loss : ``"cross_entropy"`` (softmax + cross-entropy, default), ``"bce"``, ``"mse"``, ``"l1"``,
        ``"hinge"``, or a :class:`~gpunn.losses.Loss`.
    device : ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (see :func:`gpunn.device`).
    dtype : ``"float32"`` (default) or ``"float64"``.
    seed : seeds the initial weights (drawn on the host: identical on every device).
    """

    def __init__(self, input_size: int, hidden_sizes, output_size: int, activation="relu", init="auto",
                 loss="cross_entropy", device="cpu", dtype="float32", seed=None):
        self.device = dev = get_device(device)
        self.dtype = dev.dtype(dtype)
        self.xp = dev.xp
        if isinstance(hidden_sizes, int):
            hidden_sizes = [hidden_sizes]
        sizes = [input_size, *hidden_sizes, output_size]
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, int) or s < 1:
                raise ValueError(f"layer sizes must be positive integers, got {sizes}")
        self.sizes = sizes
        n_hidden = len(sizes) - 2
        self.activations = _per_layer("activation", activation, n_hidden)
        inits = _per_layer("init", init, n_hidden + 1)
        self.n_classes = output_size

        specs = []
        for i in range(1, len(sizes)):
            specs += [(f"W{i}", (sizes[i - 1], sizes[i]), True), (f"b{i}", (sizes[i],), False)]
        self.layout = FlatLayout(specs)
        xp = self.xp
        self.params = self.layout.views(xp.zeros(self.layout.size, dtype=self.dtype), dev)
        self.grads = self.layout.views(xp.zeros(self.layout.size, dtype=self.dtype), dev)

        rng = dev.host_rng(seed)
        self.layers = []
        for i in range(1, len(sizes)):
            act = self.activations[min(i, n_hidden) - 1] if n_hidden else "identity"
            W = self.params[f"W{i}"]
            W[...] = dev.to_device(_initializer(inits[i - 1], act)(rng, sizes[i - 1], sizes[i]), self.dtype)
            self.layers.append(Affine(xp, W, self.params[f"b{i}"], self.grads[f"W{i}"], self.grads[f"b{i}"]))
            if i < len(sizes) - 1:
                self.layers.append(get_activation(self.activations[i - 1], xp))
        self.last_layer = get_loss(loss, xp)

    # -- the textbook interface ---------------------------------------------------------------
    def predict(self, x, train: bool = False):
        """The output scores (before softmax) for a batch ``x`` of shape (N, input_size)."""
        return self._forward(self._x(x), train)

    def predict_proba(self, x):
        """Class probabilities: softmax of :meth:`predict`."""
        return softmax(self.xp, self.predict(x))

    def loss(self, x, t, train: bool = False):
        """The loss of the batch (a mean over its rows), as a Python float."""
        x = self._x(x)
        return float(self._loss(x, self._t(t, x.shape[0]), train))

    def accuracy(self, x, t) -> float:
        """The fraction of rows whose highest score is the target class."""
        x = self._x(x)
        t = self._t(t, x.shape[0])
        labels = t.argmax(axis=1) if t.ndim == 2 else t
        return float((self._forward(x, False).argmax(axis=1) == labels).mean())

    def gradient(self, x, t):
        """Backpropagation: the gradients of :meth:`loss` w.r.t. every parameter, as a dict of views
        of ``self.grads.flat`` with the keys of ``self.params``."""
        x = self._x(x)
        self.last_loss = self._gradient(x, self._t(t, x.shape[0]))
        return self.grads

    def numerical_gradient(self, x, t, h: float = 1e-6):
        """Central-difference gradients of :meth:`loss` (slow; for checking :meth:`gradient`,
        in float64)."""
        x = self._x(x)
        t = self._t(t, x.shape[0])
        return numerical_gradient_dict(lambda: self._loss(x, t, True), self.params, h)

    # -- unchecked internals (the trainer validates whole datasets once) ------------------------
    def _forward(self, x, train):
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    def _loss(self, x, t, train):
        return self.last_layer.forward(self._forward(x, train), t)

    def _gradient(self, x, t):
        """Forward in training mode and backward; fills ``self.grads``; returns the loss (an array
        scalar on the device: reading it is the caller's choice of host sync)."""
        loss = self._loss(x, t, True)
        dout = self.last_layer.backward()
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return loss

    def _x(self, x):
        return check_inputs(self.device, x, self.sizes[0], self.dtype, "x")

    def _t(self, t, n):
        return check_targets(self.device, t, n, self.n_classes, self.dtype, "t")

    # -- misc ---------------------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return self.layout.size

    def __repr__(self) -> str:
        body = " → ".join(str(s) for s in self.sizes)
        return (f"MLP({body}, activations={self.activations}, loss={type(self.last_layer).__name__}, "
                f"device={self.device.name!r}, dtype={self.dtype.name})")


def _per_layer(what, value, n):
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{what}: got {len(value)} entries for {n} layers")
        return list(value)
    return [value] * n


def _initializer(init, activation):
    if isinstance(init, str) and init == "auto":
        relu_like = isinstance(activation, str) and activation.lower() in _RELU_LIKE
        return get_initializer("he_normal" if relu_like else "xavier_normal")
    return get_initializer(init)
