"""The book's ``common/multi_layer_net.py``: ``MultiLayerNet``, on a :class:`gpunn.MLP`."""

from __future__ import annotations

from ._net import BookNet

__all__ = ["MultiLayerNet"]


class MultiLayerNet(BookNet):
    """Fully connected network: (Affine → activation) per hidden layer, Affine → softmax loss.

    Parameters (the book's, with its defaults)
    ----------
    input_size : inputs (784 for MNIST)
    hidden_size_list : neurons per hidden layer, e.g. ``[100, 100, 100]``
    output_size : outputs (10 for MNIST)
    activation : ``'relu'`` or ``'sigmoid'``
    weight_init_std : the weights' std, e.g. 0.01; ``'relu'``/``'he'``: He's √(2/n);
        ``'sigmoid'``/``'xavier'``: √(1/n).  Drawn as ``scale * np.random.randn(n, m)`` layer by layer.
    weight_decay_lambda : L2 strength λ (½λ‖W‖² in the loss, λW in the gradients)

    Runs on ``$GPUNN_DEVICE`` (default cpu) in ``$GPUNN_DTYPE`` (default float64).
    """

    def __init__(
        self,
        input_size,
        hidden_size_list,
        output_size,
        activation="relu",
        weight_init_std="relu",
        weight_decay_lambda=0,
    ):
        super().__init__(
            input_size,
            hidden_size_list,
            output_size,
            activation=activation,
            weight_init_std=weight_init_std,
            weight_decay_lambda=weight_decay_lambda,
        )

    def predict(self, x):
        """The scores (before softmax) of a batch."""
        return self._predict(x, False)

    def loss(self, x, t):
        """The book's loss of a batch: cross-entropy −mean log(y_t + 1e-7) plus ½λ·Σ‖W‖²."""
        return self._loss(x, t, False)

    def numerical_gradient(self, x, t):
        """The gradients by central differences (h = 1e-4, slow), keys as in ``params``."""
        return self._numerical_gradient(lambda: self._loss(x, t, False))
