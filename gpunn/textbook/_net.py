"""What ``MultiLayerNet`` and ``MultiLayerNetExtend`` share: a :class:`gpunn.MLP` built with the
book's conventions, behind the book's attributes and methods."""

from __future__ import annotations

from collections import OrderedDict

from ..batchnorm import BatchNorm
from ..gradcheck import numerical_gradient as _numerical_gradient
from ..layers import Affine, softmax
from ..losses import CrossEntropy
from ..mlp import MLP
from ..regularization import Dropout, weight_decay_loss
from . import settings
from .optimizer import np

__all__ = ["BookNet", "init_scale"]

ACTIVATIONS = ("relu", "sigmoid")
"""The book's hidden activations (its ``activation_layer`` dict)."""

BN_EPS = 10e-7
"""The ε of the book's ``BatchNormalization`` (written ``10e-7`` there: 1e-6)."""

BN_MOMENTUM = 0.9
"""The book's BatchNorm momentum: the weight of the *old* running value."""

NUMERICAL_H = 1e-4
"""The step of the book's ``numerical_gradient`` (``common/gradient.py``)."""


def init_scale(weight_init_std, n_in: int):
    """The book's ``__init_weight`` rule for one layer with ``n_in`` inputs: ``'relu'``/``'he'`` →
    √(2/n_in) (He), ``'sigmoid'``/``'xavier'`` → √(1/n_in) (what the book calls Xavier; gpunn's
    ``'lecun'``), a number → that standard deviation."""
    name = str(weight_init_std).lower()
    if name in ("relu", "he"):
        return np.sqrt(2.0 / n_in)
    if name in ("sigmoid", "xavier"):
        return np.sqrt(1.0 / n_in)
    if (
        isinstance(weight_init_std, str)
        or isinstance(weight_init_std, bool)
        or not isinstance(weight_init_std, (int, float, np.number))
    ):
        raise ValueError(
            f"weight_init_std must be a number (the std) or one of 'relu', 'he', 'sigmoid', "
            f"'xavier', got {weight_init_std!r}"
        )
    return weight_init_std


def _book_initializer(weight_init_std):
    """A gpunn initialiser drawing ``scale * np.random.randn(n_in, n_out)`` from the global NumPy
    generator, as the book does (layer by layer, in order)."""

    def init(_rng, n_in, n_out):
        return init_scale(weight_init_std, n_in) * np.random.randn(n_in, n_out)

    return init


class BookNet:
    """The book's fully connected net on a :class:`gpunn.MLP` (see :mod:`gpunn.textbook`).

    ``params`` are the MLP's flat-buffer views (``W1``, ``b1``, [``gamma1``, ``beta1``], ``W2``, …);
    ``layers`` an ``OrderedDict`` of gpunn layers under the book's names (``Affine1``,
    ``BatchNorm1``, ``Activation_function1``, ``Dropout1``, …); ``last_layer`` the softmax loss;
    ``mlp`` the gpunn model itself.
    """

    def __init__(
        self,
        input_size,
        hidden_size_list,
        output_size,
        activation="relu",
        weight_init_std="relu",
        weight_decay_lambda=0,
        use_dropout=False,
        dropout_ration=0.5,
        use_batchnorm=False,
    ):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be 'relu' or 'sigmoid' (the book's), got {activation!r}")
        hidden = list(hidden_size_list)
        init_scale(weight_init_std, 1)  # validate before anything is drawn
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size_list = hidden_size_list
        self.hidden_layer_num = len(hidden)
        self.weight_decay_lambda = weight_decay_lambda
        self.use_dropout = bool(use_dropout)
        self.use_batchnorm = bool(use_batchnorm)
        device, dtype = settings()
        inits = [_book_initializer(weight_init_std)] * (len(hidden) + 1)
        drop = dropout_ration if self.use_dropout else 0.0
        self.mlp = MLP(
            input_size,
            hidden,
            output_size,
            activation=activation,
            init=inits,
            device=device,
            dtype=dtype,
            batchnorm=self.use_batchnorm,
            dropout=drop,
            weight_decay=weight_decay_lambda,
            bn_eps=BN_EPS,
            bn_momentum=1 - BN_MOMENTUM,
            bn_unbiased=False,
            bn_running_var_init=0.0,
            dropout_inverted=False,
            dropout_rand=np.random.rand,
        )
        self.params = self.mlp.params
        self.layers = _book_layer_names(self.mlp.layers)
        self.last_layer = self.mlp.last_layer
        self._xent = CrossEntropy(self.mlp.xp)

    # -- the book's interface ----------------------------------------------------------------------
    def _predict(self, x, train_flg):
        if getattr(x, "ndim", 2) > 2:  # the book's Affine flattens (N, 1, 28, 28) images
            x = x.reshape(x.shape[0], -1)
        return self.mlp.predict(x, train=train_flg)

    def _loss(self, x, t, train_flg):
        """The book's loss: −mean log(softmax(y)[t] + 1e-7) + ½λ·Σ‖W‖², as a float."""
        y = self._predict(x, train_flg)
        loss = self._xent.forward(softmax(self.mlp.xp, y), self.mlp._t(t, y.shape[0]))
        if self.weight_decay_lambda:
            loss = loss + weight_decay_loss(self.params, self.weight_decay_lambda)
        return float(loss)

    def accuracy(self, x, t):
        """The fraction of rows whose highest score is the label (``t``: labels or one-hot)."""
        if getattr(x, "ndim", 2) > 2:
            x = x.reshape(x.shape[0], -1)
        return self.mlp.accuracy(x, t)

    def gradient(self, x, t):
        """Backpropagation (in training mode): the gradients by the keys of ``params``, weight decay
        λW included.  The dict is the network's gradient buffer, overwritten by the next call."""
        if getattr(x, "ndim", 2) > 2:
            x = x.reshape(x.shape[0], -1)
        return self.mlp.gradient(x, t)

    def _numerical_gradient(self, f):
        """The book's central differences (h = 1e-4) of ``f()`` for each parameter, in the book's order."""
        return {key: _numerical_gradient(f, self.params[key], h=NUMERICAL_H) for key in self.params}

    def __repr__(self):
        return f"{type(self).__name__}({self.mlp!r})"


def _book_layer_names(layers) -> OrderedDict:
    """The MLP's layers under the book's names: Affine1, [BatchNorm1], Activation_function1,
    [Dropout1], Affine2, …, Affine{n+1} (each hidden layer starts with its Affine)."""
    named = OrderedDict()
    idx = 0
    for layer in layers:
        if isinstance(layer, Affine):
            idx += 1
            kind = "Affine"
        elif isinstance(layer, BatchNorm):
            kind = "BatchNorm"
        elif isinstance(layer, Dropout):
            kind = "Dropout"
        else:
            kind = "Activation_function"
        named[f"{kind}{idx}"] = layer
    return named
