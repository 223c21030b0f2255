"""The book's ``common/multi_layer_net_extend.py``: ``MultiLayerNetExtend`` (weight decay, Dropout,
Batch Normalization), on a :class:`gpunn.MLP`."""

from __future__ import annotations

from ._net import BookNet

__all__ = ["MultiLayerNetExtend"]


class MultiLayerNetExtend(BookNet):
    """Fully connected network with the book's extensions: per hidden layer
    Affine → [BatchNorm] → activation → [Dropout]; then Affine → softmax loss.

    Parameters: those of :class:`~gpunn.textbook.multi_layer_net.MultiLayerNet`, and (the book's
    names and defaults)

    use_dropout : add a Dropout after each hidden activation (default False)
    dropout_ration : its drop ratio (default 0.5; the book's spelling).  The book's dropout: a mask
        ``np.random.rand(*x.shape) > ratio`` in training, no rescaling; ``x·(1 − ratio)`` at test time.
    use_batchnorm : add a BatchNorm after each hidden Affine (default False): ε = 10e-7, momentum 0.9
        (weight of the old running value), running mean and (biased) variance starting at 0;
        ``params`` gain ``gamma1``, ``beta1``, …  A training batch of one row is allowed.

    ``predict``/``loss`` take ``train_flg`` (default False: test mode); ``gradient`` runs in training mode.
    """

    def predict(self, x, train_flg=False):
        """The scores (before softmax); ``train_flg``: dropout masks and batch statistics."""
        return self._predict(x, train_flg)

    def loss(self, x, t, train_flg=False):
        """The book's loss: cross-entropy −mean log(y_t + 1e-7) plus ½λ·Σ‖W‖²."""
        return self._loss(x, t, train_flg)

    def numerical_gradient(self, X, T):
        """The gradients by central differences (h = 1e-4, slow) of the training-mode loss, each
        evaluation drawing new dropout masks and updating the running statistics, as the book's does."""
        return self._numerical_gradient(lambda: self._loss(X, T, True))
