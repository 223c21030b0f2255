"""The book's ``common/trainer.py``: ``Trainer``, training a network of this package epoch by epoch."""

from __future__ import annotations

from .optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop, np

__all__ = ["Trainer"]

OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}
"""The optimizers a Trainer builds by (case-insensitive) name."""


class Trainer:
    """Mini-batch training with the book's loop and bookkeeping.

    ``Trainer(network, x_train, t_train, x_test, t_test, epochs=20, mini_batch_size=100,
    optimizer='SGD', optimizer_param={'lr': 0.01}, evaluate_sample_num_per_epoch=None, verbose=True)``

    Each step draws a batch with ``np.random.choice(train_size, mini_batch_size)`` (with
    replacement), computes ``network.gradient``, lets the optimizer (built by name from
    ``optimizer`` and ``optimizer_param``) update ``network.params``, and records the batch loss in
    ``train_loss_list``.  Every ``train_size / mini_batch_size`` steps (an "epoch", from step 0 on) the
    accuracies on the training and test data (their first ``evaluate_sample_num_per_epoch`` rows, or
    all) go to ``train_acc_list`` and ``test_acc_list``.  ``train()`` runs
    ``int(epochs · train_size / mini_batch_size)`` steps and reports the final test accuracy.
    """

    def __init__(
        self,
        network,
        x_train,
        t_train,
        x_test,
        t_test,
        epochs=20,
        mini_batch_size=100,
        optimizer="SGD",
        optimizer_param=None,
        evaluate_sample_num_per_epoch=None,
        verbose=True,
    ):
        self.network = network
        self.verbose = verbose
        self.x_train, self.t_train = x_train, t_train
        self.x_test, self.t_test = x_test, t_test
        self.epochs = epochs
        self.batch_size = mini_batch_size
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        name = str(optimizer).lower()
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        param = {"lr": 0.01} if optimizer_param is None else dict(optimizer_param)
        self.optimizer = OPTIMIZERS[name](**param)
        if len(x_train) != len(t_train):
            raise ValueError(f"x_train has {len(x_train)} rows but t_train {len(t_train)}")
        self.train_size = x_train.shape[0]
        self.iter_per_epoch = max(self.train_size / mini_batch_size, 1)
        self.max_iter = int(epochs * self.iter_per_epoch)
        self.current_iter = 0
        self.current_epoch = 0
        self.train_loss_list = []
        self.train_acc_list = []
        self.test_acc_list = []

    def train_step(self):
        """One mini-batch step (and, at an epoch boundary, the accuracy bookkeeping)."""
        batch_mask = np.random.choice(self.train_size, self.batch_size)
        x_batch, t_batch = self.x_train[batch_mask], self.t_train[batch_mask]
        grads = self.network.gradient(x_batch, t_batch)
        self.optimizer.update(self.network.params, grads)
        loss = self.network.loss(x_batch, t_batch)
        self.train_loss_list.append(loss)
        if self.verbose:
            print("train loss:" + str(loss))
        if self.current_iter % self.iter_per_epoch == 0:
            self._evaluate()
        self.current_iter += 1

    def _evaluate(self):
        self.current_epoch += 1
        n = self.evaluate_sample_num_per_epoch
        x_tr, t_tr, x_te, t_te = self.x_train, self.t_train, self.x_test, self.t_test
        if n is not None:
            x_tr, t_tr, x_te, t_te = x_tr[:n], t_tr[:n], x_te[:n], t_te[:n]
        train_acc = self.network.accuracy(x_tr, t_tr)
        test_acc = self.network.accuracy(x_te, t_te)
        self.train_acc_list.append(train_acc)
        self.test_acc_list.append(test_acc)
        if self.verbose:
            print(f"=== epoch:{self.current_epoch}, train acc:{train_acc}, test acc:{test_acc} ===")

    def train(self):
        """All ``max_iter`` steps, then the test accuracy on the whole test data (printed if verbose)."""
        for _ in range(self.max_iter):
            self.train_step()
        test_acc = self.network.accuracy(self.x_test, self.t_test)
        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print("test acc:" + str(test_acc))
