"""The training loop: mini-batches in a seeded order, epochs, evaluation and a history.

The data order is drawn on the host from ``seed``, so the same seed gives the same batches on
every device, and CPU and GPU runs agree up to float rounding.  Datasets are validated (shape,
dtype, labels, NaN) and moved to the device once, before the first step; a step then moves
nothing between host and device and the per-step losses stay on the device until the epoch ends.
"""

from __future__ import annotations

import time

from .progress import progress
from .validate import check_inputs, check_targets

__all__ = ["Trainer"]


class Trainer:
    """Train ``model`` with ``optimizer`` (anything with ``update(params, grads)``).

    ``fit(x, t, validation_data=(x_val, t_val))`` returns the history dict:
    ``loss`` / ``acc`` (per epoch, training set), ``val_loss`` / ``val_acc`` (when validation data
    is given), ``iter_loss`` (every step), ``epoch_time`` (seconds).
    """

    def __init__(self, model, optimizer, epochs: int = 10, batch_size: int = 100, seed=0,
                 progress: bool = True, eval_batch_size: int = 2000, verbose: bool = False):
        for name, v in (("epochs", epochs), ("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.model, self.optimizer = model, optimizer
        self.epochs, self.batch_size, self.eval_batch_size = epochs, batch_size, eval_batch_size
        self.rng = model.device.host_rng(seed)
        self.show_progress = progress
        self.verbose = verbose
        self.history = {"loss": [], "acc": [], "val_loss": [], "val_acc": [], "iter_loss": [],
                        "epoch_time": []}

    def fit(self, x, t, validation_data=None) -> dict:
        model = self.model
        dev = model.device
        x = check_inputs(dev, x, model.sizes[0], model.dtype, "x")
        t = check_targets(dev, t, x.shape[0], model.n_classes, model.dtype, "t")
        val = None
        if validation_data is not None:
            xv, tv = validation_data
            xv = check_inputs(dev, xv, model.sizes[0], model.dtype, "validation x")
            val = xv, check_targets(dev, tv, xv.shape[0], model.n_classes, model.dtype, "validation t")
        n = x.shape[0]
        steps = -(-n // self.batch_size)
        bar = progress(total=self.epochs * steps, desc="training", unit="step",
                       disable=not self.show_progress)
        try:
            for epoch in range(self.epochs):
                start = time.perf_counter()
                order = dev.to_device(self.rng.permutation(n))
                losses = []
                for s in range(steps):
                    idx = order[s * self.batch_size:(s + 1) * self.batch_size]
                    losses.append(model._gradient(x[idx], t[idx]))
                    self.optimizer.update(model.params, model.grads)
                    bar.update(1)
                self.history["iter_loss"] += [float(v) for v in losses]
                self._end_epoch(epoch, x, t, val, time.perf_counter() - start, bar)
        finally:
            bar.close()
        return self.history

    def _end_epoch(self, epoch, x, t, val, seconds, bar):
        h = self.history
        loss, acc = self.evaluate(x, t)
        h["loss"].append(loss)
        h["acc"].append(acc)
        h["epoch_time"].append(seconds)
        info = {"loss": f"{loss:.4f}", "acc": f"{acc:.4f}"}
        if val is not None:
            vl, va = self.evaluate(*val)
            h["val_loss"].append(vl)
            h["val_acc"].append(va)
            info.update(val_acc=f"{va:.4f}")
        bar.set_postfix(**info)
        if self.verbose:
            print(f"epoch {epoch + 1}/{self.epochs}: " + ", ".join(f"{k} {v}" for k, v in info.items()))

    def evaluate(self, x, t) -> tuple[float, float]:
        """(mean loss, accuracy) over a validated dataset, in batches, in evaluation mode."""
        model = self.model
        total_loss = total_correct = 0.0
        n = x.shape[0]
        for s in range(0, n, self.eval_batch_size):
            xb, tb = x[s:s + self.eval_batch_size], t[s:s + self.eval_batch_size]
            scores = model._forward(xb, False)
            total_loss += float(model.last_layer.forward(scores, tb)) * xb.shape[0]
            labels = tb.argmax(axis=1) if tb.ndim == 2 else tb
            total_correct += float((scores.argmax(axis=1) == labels).sum())
        return total_loss / n, total_correct / n
