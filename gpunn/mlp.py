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

Regularisation, as in the textbook's ``MultiLayerNetExtend``: ``batchnorm=True`` puts a
:class:`~gpunn.batchnorm.BatchNorm` between each hidden Affine and its activation (γ/β in
``params`` as "gamma1", "beta1", …; running statistics in ``net.buffers``), ``dropout=p`` a
:class:`~gpunn.regularization.Dropout` after each hidden activation, and ``weight_decay=λ`` adds
½λ·Σ‖W‖² to the loss and λW to the weight gradients (not to biases nor γ/β)::

    Affine → [BatchNorm] → activation → [Dropout]   (each hidden layer)   Affine → Softmax (output)
"""

from __future__ import annotations

import numbers
from functools import cache

from .backend import device as get_device
from .backend import is_device_array, on_device
from .batchnorm import EPS, MOMENTUM, BatchNorm
from .gradcheck import numerical_gradient_dict
from .init import get_initializer
from .kernels import activations as _act
from .kernels import consts
from .layers import ACTIVATIONS, Affine, get_activation, softmax
from .losses import get_loss, loss_name
from .params import FlatLayout
from .regularization import Dropout, add_weight_decay, weight_decay_loss
from .validate import check_finite, check_hyper, check_inputs, check_targets, positive_int

__all__ = ["MLP"]


@cache
def _host_device():
    return get_device("cpu")


class MLP:
    """Fully connected network ``input_size → hidden_sizes… → output_size``.

    Parameters
    ----------
    activation : one name for every hidden layer or a list, one per hidden layer
        (``"sigmoid"``, ``"tanh"``, ``"relu"``, ``"leaky_relu"``, ``"gelu"``, ``"identity"``: the keys
        of :data:`gpunn.layers.ACTIVATIONS`).
    init : initialiser name, std (float) or :class:`~gpunn.init.Initializer`, or a list per layer;
        ``"auto"`` (default) is the activation class's ``AUTO_INIT``: He for ReLU, LeakyReLU and
        GELU, Xavier (normal) otherwise; the output layer follows its input's activation.
    loss : ``"cross_entropy"`` (softmax + cross-entropy, default), ``"bce"``, ``"mse"``, ``"l1"``,
        ``"hinge"``, or a :class:`~gpunn.losses.Loss`.
    device : ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (see :func:`gpunn.device`).
    dtype : ``"float32"`` (default) or ``"float64"``.
    seed : seeds the initial weights and the dropout masks (drawn on the host: identical on every
        device).
    batchnorm : ``True`` for a BatchNorm layer after each hidden Affine (before the activation).
    dropout : drop probability ``p`` (0 ≤ p < 1) of a Dropout after each hidden activation, or a
        list, one per hidden layer; 0 (default) adds none.
    weight_decay : L2 strength λ ≥ 0: ½λ·Σ‖W‖² in the loss, λW in the weight gradients.  (The
        optimizers' own ``weight_decay`` does the gradient part only; use one or the other.)
    bn_momentum, bn_eps : BatchNorm's running-statistics momentum (weight of the new batch, PyTorch
        convention: 0.1 ≙ Saito's 0.9) and ε (see :mod:`gpunn.batchnorm`).
    bn_unbiased, bn_running_var_init : the running variance is updated with the unbiased batch
        variance (True, default, PyTorch) or the biased one (False, Saito: then a training batch of
        one row is allowed), and starts at ``bn_running_var_init`` (1.0; Saito's is 0.0).
    dropout_inverted : True (default): inverted dropout (survivors scaled by 1/(1−p) in training);
        False: Saito's (no scaling in training, ×(1−p) in evaluation mode).
    dropout_rand : None (default): masks from gpunn's seeded, device-independent hash kernel; or a
        host function ``rand(*shape)`` of uniforms in [0, 1) such as ``numpy.random.rand``: masks
        ``rand(*shape) > p`` drawn in layer order and copied to the device (Saito's masks).
    fused : ``True`` (default): the fast path -- fused Numba kernels (bias + activation, activation
        gradient + bias gradient, softmax cross-entropy forward + backward), buffers reused per
        batch size, no ∂L/∂x for the first layer.  ``False``: the textbook's array code, layer by
        layer (the reference the fast path is tested against).  Same results up to float rounding.

    Attributes besides the textbook's: ``config`` -- the constructor arguments as JSON-able values (a
    custom activation or loss object as None; no ``device``, ``seed``, ``init`` nor ``dropout_rand``),
    what checkpoints store to rebuild the model; ``buffers`` -- the non-trainable state, by name
    (``"running_mean1"``, ``"running_var1"``, …; empty without BatchNorm); ``batchnorm_layers``,
    ``dropout_layers``; ``layout`` -- the flat-buffer layout (weights first: ``layout.n_decay``).
    ``predict(x)``, ``accuracy`` and ``loss`` run in evaluation mode (running statistics, no dropout)
    unless ``train=True``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_sizes,
        output_size: int,
        activation="relu",
        init="auto",
        loss="cross_entropy",
        device="cpu",
        dtype="float32",
        seed=None,
        *,
        batchnorm: bool = False,
        dropout=0.0,
        weight_decay: float = 0.0,
        bn_momentum: float = MOMENTUM,
        bn_eps: float = EPS,
        fused: bool = True,
        bn_unbiased: bool = True,
        bn_running_var_init: float = 1.0,
        dropout_inverted: bool = True,
        dropout_rand=None,
    ):
        self.device = dev = get_device(device)
        self.dtype = dev.dtype(dtype)
        self.xp = dev.xp
        self.sizes = sizes = layer_sizes(input_size, hidden_sizes, output_size)
        n_hidden = len(sizes) - 2
        self.activations = _per_layer("activation", activation, n_hidden)
        inits = _per_layer("init", init, n_hidden + 1)
        self.n_classes = sizes[-1]
        if not isinstance(batchnorm, bool):
            raise TypeError(f"batchnorm must be True or False, got {batchnorm!r}")
        self.batchnorm = batchnorm
        drops = [
            check_hyper("dropout", p, low=0, high=1, high_open=True)
            for p in _per_layer("dropout", dropout, n_hidden)
        ]
        self.dropout = list(drops) if isinstance(dropout, (list, tuple)) else float(dropout)
        self.weight_decay = check_hyper("weight_decay", weight_decay, low=0)
        self.bn_momentum = check_hyper("bn_momentum", bn_momentum, low=0, high=1)
        self.bn_eps = check_hyper("bn_eps", bn_eps, low=0, low_open=True)
        self.bn_running_var_init = check_hyper("bn_running_var_init", bn_running_var_init, low=0)
        self.bn_unbiased, self.dropout_inverted, self.fused = _flags(
            bn_unbiased=bn_unbiased, dropout_inverted=dropout_inverted, fused=fused
        )
        if dropout_rand is not None and not callable(dropout_rand):
            raise TypeError(f"dropout_rand must be None or a function rand(*shape), got {dropout_rand!r}")
        self.dropout_rand = dropout_rand
        with dev:  # cuda:N: every array of the model on GPU N
            self._build(inits, drops, seed, loss)
        self.config = self._config()

    def _config(self) -> dict:
        """The constructor arguments as JSON-able values, checked and normalised (what checkpoints store
        and ``gpunn.load`` rebuilds from): a custom activation or loss object is None (no name rebuilds
        it); ``device``, ``seed`` and ``init`` are not kept (the weights and generators are saved
        instead), nor ``dropout_rand`` (a function)."""
        sizes = self.sizes
        return {
            "input_size": sizes[0],
            "hidden_sizes": list(sizes[1:-1]),
            "output_size": sizes[-1],
            "activation": [a if isinstance(a, str) else None for a in self.activations],
            "loss": loss_name(self.last_layer),
            "dtype": self.dtype.name,
            "batchnorm": self.batchnorm,
            "dropout": self.dropout,
            "weight_decay": self.weight_decay,
            "bn_momentum": self.bn_momentum,
            "bn_eps": self.bn_eps,
            "fused": self.fused,
            "bn_unbiased": self.bn_unbiased,
            "bn_running_var_init": self.bn_running_var_init,
            "dropout_inverted": self.dropout_inverted,
        }

    def _build(self, inits, drops, seed, loss):
        """The flat buffers, the layers, the initial weights and the loss (on the current device)."""
        dev, sizes, batchnorm, fused = self.device, self.sizes, self.batchnorm, self.fused
        n_hidden = len(sizes) - 2
        fdev = dev if fused else None
        specs = []
        for i in range(1, len(sizes)):
            specs += [(f"W{i}", (sizes[i - 1], sizes[i]), True), (f"b{i}", (sizes[i],), False)]
            if batchnorm and i < len(sizes) - 1:
                specs += [(f"gamma{i}", (sizes[i],), False), (f"beta{i}", (sizes[i],), False)]
        self.layout = FlatLayout(specs)
        xp = self.xp
        self.params = self.layout.views(xp.zeros(self.layout.size, dtype=self.dtype), dev)
        self.grads = self.layout.views(xp.zeros(self.layout.size, dtype=self.dtype), dev)
        # non-trainable state (BatchNorm running statistics) by name, in one place: what checkpoints
        # save besides the parameters; no optimizer touches it
        self.buffers = {}

        rng = dev.host_rng(seed)
        self.layers = []
        for i in range(1, len(sizes)):
            act = self.activations[min(i, n_hidden) - 1] if n_hidden else "identity"
            W = self.params[f"W{i}"]
            W[...] = dev.to_device(_initializer(inits[i - 1], act)(rng, sizes[i - 1], sizes[i]), self.dtype)
            self.layers.append(
                Affine(xp, W, self.params[f"b{i}"], self.grads[f"W{i}"], self.grads[f"b{i}"], dev=fdev)
            )
            if i < len(sizes) - 1:
                if batchnorm:
                    self.params[f"gamma{i}"] = 1
                    rm = self.buffers[f"running_mean{i}"] = xp.zeros(sizes[i], dtype=self.dtype)
                    rv = self.buffers[f"running_var{i}"] = xp.full(
                        sizes[i], self.bn_running_var_init, dtype=self.dtype
                    )
                    self.layers.append(
                        BatchNorm(
                            dev,
                            sizes[i],
                            gamma=self.params[f"gamma{i}"],
                            beta=self.params[f"beta{i}"],
                            dgamma=self.grads[f"gamma{i}"],
                            dbeta=self.grads[f"beta{i}"],
                            running_mean=rm,
                            running_var=rv,
                            eps=self.bn_eps,
                            momentum=self.bn_momentum,
                            unbiased=self.bn_unbiased,
                        )
                    )
                self.layers.append(get_activation(self.activations[i - 1], xp, dev=fdev))
        # dropout generators are seeded from the weight generator after the weights: the weights do
        # not depend on whether dropout is on
        for i, p in enumerate(drops):
            if p > 0:
                at = self.layers.index(self._activation_layer(i)) + 1
                self.layers.insert(
                    at,
                    Dropout(
                        dev,
                        p,
                        seed=int(rng.integers(0, 1 << 62)),
                        inverted=self.dropout_inverted,
                        rand=self.dropout_rand,
                    ),
                )
        self.last_layer = get_loss(loss, xp)
        if fused:
            self._wire_fast_path()

    # -- the textbook interface ---------------------------------------------------------------
    @on_device
    def predict(self, x, train: bool = False):
        """The output scores (before softmax) for a batch ``x`` of shape (N, input_size)."""
        return self._forward(self._x(x), train)

    @on_device
    def predict_proba(self, x):
        """Class probabilities: softmax of :meth:`predict`."""
        return softmax(self.xp, self.predict(x))

    @on_device
    def loss(self, x, t, train: bool = False):
        """The loss of the batch (a mean over its rows), as a Python float."""
        x = self._x(x)
        return float(self._loss(x, self._t(t, x.shape[0]), train))

    @on_device
    def accuracy(self, x, t) -> float:
        """The fraction of rows whose highest score is the target class."""
        x = self._x(x)
        t = self._t(t, x.shape[0])
        labels = t.argmax(axis=1) if t.ndim == 2 else t
        return float((self._forward(x, False).argmax(axis=1) == labels).mean())

    @on_device
    def gradient(self, x, t):
        """Backpropagation: the gradients of :meth:`loss` w.r.t. every parameter, as a dict of views
        of ``self.grads.flat`` with the keys of ``self.params``."""
        x = self._x(x)
        self.last_loss = self._gradient(x, self._t(t, x.shape[0]))
        return self.grads

    @on_device
    def numerical_gradient(self, x, t, h: float = 1e-6):
        """Central-difference gradients of the training-mode loss (slow; for checking
        :meth:`gradient`, in float64).

        Every evaluation sees the dropout masks and BatchNorm state the *next* training forward
        would see, and both are restored afterwards: ``numerical_gradient(x, t)`` followed by
        ``gradient(x, t)`` (the textbook's order) compares the same function."""
        x = self._x(x)
        t = self._t(t, x.shape[0])
        snap = self._snapshot()

        def f():
            self._restore(snap)
            return self._loss(x, t, True)

        try:
            return numerical_gradient_dict(f, self.params, h)
        finally:
            self._restore(snap)

    def _wire_fast_path(self):
        """In-place buffers and bias fusion between gpunn's own layers (see :mod:`gpunn.layers`)."""
        from .layers import _Activation
        from .losses import SoftmaxCrossEntropy

        layers = self.layers
        for k, layer in enumerate(layers):
            if isinstance(layer, Affine):
                layer.need_dx = k > 0
                nxt = layers[k + 1] if k + 1 < len(layers) else None
                layer.inplace = nxt is not None  # the output layer's scores are returned: fresh
                if isinstance(nxt, _Activation) and nxt.FUSES_BIAS and nxt.dev is not None:
                    layer.bias_deferred = True
                    nxt.bias, nxt.db = layer.b, layer.db
            elif (isinstance(layer, _Activation) and layer.dev is not None) or isinstance(layer, BatchNorm):
                layer.inplace = True
        if type(self.last_layer) is SoftmaxCrossEntropy:
            self.last_layer.dev = self.device

    # -- unchecked internals (the trainer validates whole datasets once) ------------------------
    def _forward(self, x, train):
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    def _loss(self, x, t, train):
        loss = self.last_layer.forward(self._forward(x, train), t)
        if self.weight_decay:
            loss = loss + weight_decay_loss(self.params, self.weight_decay)
        return loss

    def _gradient(self, x, t):
        """Forward in training mode and backward; fills ``self.grads``; returns the loss (an array
        scalar on the device: reading it is the caller's choice of host sync)."""
        loss = self._loss(x, t, True)
        dout = self.last_layer.backward()
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        if self.weight_decay:
            add_weight_decay(self.params, self.grads, self.weight_decay)
        return loss

    def _activation_layer(self, i):
        """The activation layer of hidden layer ``i`` (0-based)."""
        return [layer for layer in self.layers if layer.is_activation][i]

    def _snapshot(self):
        """The state a training-mode forward changes besides the parameters: the BatchNorm running
        statistics and the dropout generators."""
        bufs = {k: v.copy() for k, v in self.buffers.items()}
        rngs = [(d, d.rng.bit_generator.state, d.key) for d in self.dropout_layers]
        return bufs, rngs

    def _restore(self, snap):
        bufs, rngs = snap
        for k, v in bufs.items():
            self.buffers[k][...] = v
        for d, state, key in rngs:
            d.rng.bit_generator.state = state
            d.key = key

    def _x(self, x):
        dev = self.device
        if not self.fused:
            return check_inputs(dev, x, self.sizes[0], self.dtype, "x")
        if is_device_array(x):
            # device-resident: shape and dtype only (reading values would stop the GPU every step);
            # a NaN/Inf makes the loss non-finite, which the Trainer's guard reports
            return check_inputs(dev, x, self.sizes[0], self.dtype, "x", finite=False)
        # fast path: the NaN/Inf check as one vectorised Numba pass (on the host, before the copy
        # to a GPU: no device synchronisation); the message is check_finite's
        x = check_inputs(_host_device(), x, self.sizes[0], self.dtype, "x", finite=False)
        if not _act.all_finite_cpu(x.reshape(-1), consts(x.dtype)[2]):
            check_finite(_host_device(), x, "x")
        return dev.to_device(x)  # (on the CPU: x itself)

    def _t(self, t, n):
        # fast path: 1-D int64 class indices on the host, checked by one Numba pass (no device sync)
        if (
            self.fused
            and _host_device().owns(t)
            and t.ndim == 1
            and t.shape[0] == n
            and n
            and t.dtype.kind == "i"
            and t.dtype.itemsize == 8
            and t.dtype.isnative
            and t.flags.c_contiguous
            and _act.labels_ok_cpu(t, self.n_classes)
        ):
            return self.device.to_device(t)  # (on the CPU: t itself)
        # device-resident targets: values unread (no host sync); the fused CUDA loss makes the loss of
        # a row whose label is out of range NaN, which the Trainer's guard reports
        return check_targets(
            self.device,
            t,
            n,
            self.n_classes,
            self.dtype,
            "t",
            values=not (self.fused and is_device_array(t)),
            distribution=getattr(self.last_layer, "targets_distribution", False),
        )

    # -- misc ---------------------------------------------------------------------------------
    # -- saving, pickling, copying ---------------------------------------------------------------
    def save(self, path):
        """Write the model (parameters, BatchNorm statistics, dropout generators, constructor config) to
        ``path`` as a :mod:`gpunn.checkpoint` file (``.npz``), atomically; returns the path.
        ``gpunn.load(path, device=...)`` rebuilds it (on any device).  With an optimizer and a
        trainer, use ``Trainer.save_checkpoint`` to resume training."""
        from .checkpoint import save

        return save(path, self)

    def __reduce__(self):
        """Pickling (and ``copy.copy``) go through the checkpoint format, onto the same device."""
        from .checkpoint import reduce_model

        return reduce_model(self)

    def __deepcopy__(self, memo):
        """A new model from this one's checkpoint (as pickling); functions given to the constructor
        (``dropout_rand``) are shared, not copied: ``numpy.random.rand`` stays the global generator's."""
        from .checkpoint import reduce_model

        rebuild, args = reduce_model(self)
        return rebuild(*args)

    @property
    def n_params(self) -> int:
        return self.layout.size

    @property
    def batchnorm_layers(self) -> list:
        return [layer for layer in self.layers if isinstance(layer, BatchNorm)]

    @property
    def dropout_layers(self) -> list:
        return [layer for layer in self.layers if isinstance(layer, Dropout)]

    def __repr__(self) -> str:
        body = " → ".join(str(s) for s in self.sizes)
        extra = ""
        if self.batchnorm:
            extra += ", batchnorm=True"
        if self.dropout_layers:
            extra += f", dropout={self.dropout}"
        if self.weight_decay:
            extra += f", weight_decay={self.weight_decay:g}"
        return (
            f"MLP({body}, activations={self.activations}, loss={type(self.last_layer).__name__}"
            f"{extra}, device={self.device.name!r}, dtype={self.dtype.name})"
        )


def _flags(**flags):
    """The values of boolean options, in order; ``TypeError`` naming the first that is not a bool."""
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    return tuple(flags.values())


def layer_sizes(input_size, hidden_sizes, output_size) -> list:
    """``[input_size, *hidden_sizes, output_size]`` as Python ints (NumPy integers and a 1-D integer
    array of hidden sizes accepted), or a ValueError naming the bad size."""
    if isinstance(hidden_sizes, numbers.Integral) and not isinstance(hidden_sizes, bool):
        hidden_sizes = [hidden_sizes]
    elif hasattr(hidden_sizes, "tolist") and getattr(hidden_sizes, "ndim", 1) == 1:
        hidden_sizes = hidden_sizes.tolist()  # a NumPy array of sizes
    if not isinstance(hidden_sizes, (list, tuple)):
        raise ValueError(f"hidden_sizes must be a positive integer or a list of them, got {hidden_sizes!r}")
    return [
        positive_int("input_size", input_size),
        *(positive_int(f"hidden_sizes[{i}]", s) for i, s in enumerate(hidden_sizes)),
        positive_int("output_size", output_size),
    ]


def _per_layer(what, value, n):
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{what}: got {len(value)} entries for {n} layers")
        return list(value)
    return [value] * n


def _initializer(init, activation):
    if isinstance(init, str) and init == "auto":
        cls = ACTIVATIONS.get(activation.lower()) if isinstance(activation, str) else None
        return get_initializer(cls.AUTO_INIT if cls is not None else "xavier_normal")
    return get_initializer(init)
