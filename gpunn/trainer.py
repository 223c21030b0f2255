"""The training loop: mini-batches in a seeded order, epochs, evaluation, a history, and the
reliability features (guarded steps, checkpoints, clean Ctrl-C).

The data order is drawn on the host from ``seed``, so the same seed gives the same batches on
every device, and CPU and GPU runs agree up to float rounding.  Datasets are validated (shape,
dtype, labels, NaN) and moved to the device once, before the first step; a step then moves
nothing between host and device and the per-step losses stay on the device until the epoch ends.

**Guarded training** (``guard=True``, default): before the optimizer applies a step, one check
(on a GPU one reduction, ``isfinite(loss + Σ grads + Σ params)``) finds whether the loss, every
gradient and the parameters the previous update wrote are finite; if not, training stops with
:class:`TrainingDivergedError` naming the step, the epoch and the first non-finite quantity (``the
loss``, e.g. ``grads['W2'] has 3 NaN``, or the parameters an update overflowed: then that update's
step), with the model as it was before that step (the parameters and BatchNorm statistics are
copied before each guarded update, and put back when the update damaged them; the end of an epoch
checks its last update).  On the CPU the check costs vectorised passes over the gradient and
parameter buffers plus that copy (about 10 µs a step for 50k float32 parameters); on a GPU it is
also one small device→host synchronisation per step (it stops the host from queuing steps ahead
of the GPU).  Hyper-parameters that are not finite in the model's dtype are refused up front.
``guard_every=k`` checks every k-th step only (a divergence then surfaces up to k−1 steps
late, with the model already damaged), ``guard=False`` never checks.

**Checkpoints**: ``checkpoint_path="run.npz"`` writes a checkpoint (see :mod:`gpunn.checkpoint`)
every ``checkpoint_every`` epochs (``checkpoint_unit="epoch"``, default) or steps (``"step"``), and
at the end of :meth:`Trainer.fit`.  A checkpoint is never overwritten by a diverged state: on a
divergence the good one is kept and the failing state goes to ``run.failed.npz``.
:meth:`Trainer.resume` restores model, optimizer, random generators, data order and history, and
the next :meth:`Trainer.fit` continues the run — also from the middle of an epoch — giving on the
CPU bit-for-bit the losses of an uninterrupted run (on a GPU, cuBLAS/CuPy reductions need not be
bit-reproducible; the data order and the initial weights are).

**Ctrl-C**: during :meth:`Trainer.fit` the first SIGINT is deferred to the end of the current step;
training then stops cleanly: the history is kept (``history["interrupted"] = True``), a
checkpoint is written when checkpointing is on, a one-line notice goes to stderr, and ``fit``
returns the history.  A second Ctrl-C stops at once.  Calling ``fit`` again continues the run.

**Data-parallel** (``distributed=True``, see :mod:`gpunn.distributed`): launched as
``mpirun -n N python train.py``, every rank runs the same script on the same data; ``batch_size``
is the **global** batch B, of which each rank computes the gradient of its B/N examples, and the
flat gradient buffer is averaged over the ranks (one allreduce per step: MPI on the CPU, NCCL on
GPUs) before every rank applies the same optimizer step. k steps then equal k steps of one process
with batch B, up to float rounding. At the start of each ``fit`` the ranks check, in one allgather,
that they agree on the run (the model's dtype and configuration, the optimizer and its
hyper-parameters, a checksum of all of the data, batch size, position, data-order seed) and take
rank 0's parameters. The epoch's loss/accuracy (and the per-step losses) are global means, reduced
in one collective per epoch (each rank evaluates its part of the data). Only rank 0 shows progress,
prints, and writes checkpoints, on rank 0's schedule whatever the other ranks were given (every rank
resumes from the same file). BatchNorm normalises each rank's part of the batch (its running
statistics are averaged over the ranks at each epoch end).
A guarded step, a Ctrl-C or an end of epoch stops every rank at the same step.  Without an MPI
launcher the world has one rank and training is exactly the plain one.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path

from . import checkpoint as _ckpt
from . import distributed as _dist
from .backend import host_xp, is_device_array, on_device
from .kernels.activations import all_finite_cpu as _all_finite_cpu
from .progress import progress
from .validate import check_inputs, check_targets, positive_int

np = host_xp()

__all__ = ["Trainer", "TrainingDivergedError"]

_HISTORY_KEYS = ("loss", "acc", "val_loss", "val_acc", "iter_loss", "epoch_time")
_LOWER_LR = (
    "Lower the learning rate (after trainer.resume(checkpoint), set trainer.optimizer.lr = ...: "
    "resuming restores the saved one), check the data and the initialisation, or pass guard=False "
    "to train anyway."
)


def _checksum(dev, *arrays) -> int:
    """CRC-32 of the arrays' dtypes, shapes and bytes (host copies of device arrays): whether ranks
    hold the same data, all of it, for about a second per GB."""
    crc = 0
    for a in arrays:
        host = np.ascontiguousarray(dev.to_numpy(a))
        crc = zlib.crc32(f"{host.dtype.str}{host.shape}".encode(), crc)
        crc = zlib.crc32(memoryview(host).cast("B"), crc)
    return crc


class TrainingDivergedError(FloatingPointError):
    """The loss or a gradient became NaN/Inf.  Attributes: ``step`` (1-based global step number),
    ``epoch`` (1-based), ``quantity`` (``"loss"``, ``"grads['W2']"``, ``"params['W1']"``),
    ``history`` (the trainer's history up to the last good step), ``checkpoint`` (the kept good
    checkpoint's path or None) and ``failed_checkpoint`` (where the failing state was written, or
    None)."""

    def __init__(self, message, step, epoch, quantity):
        super().__init__(message)
        self.step, self.epoch, self.quantity = step, epoch, quantity
        self.history = None
        self.checkpoint = self.failed_checkpoint = None


class _Interrupted(Exception):
    """Internal: a deferred Ctrl-C reached a step boundary."""


class _DeferSigint:
    """Turn the first SIGINT into a flag checked at step boundaries (main thread, default handler
    only); a second SIGINT raises KeyboardInterrupt at once."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


class Trainer:
    """Train ``model`` with ``optimizer`` (anything with ``update(params, grads)``).

    ``fit(x, t, validation_data=(x_val, t_val))`` returns the history dict:
    ``loss`` / ``acc`` (per epoch, training set), ``val_loss`` / ``val_acc`` (when validation data
    is given), ``iter_loss`` (every step), ``epoch_time`` (seconds), ``interrupted`` (True when
    Ctrl-C stopped the last ``fit``).

    Parameters (besides the obvious): ``seed`` seeds the host generator of the data order;
    ``guard``/``guard_every`` the NaN/Inf check of every (k-th) step; ``checkpoint_path``,
    ``checkpoint_every``, ``checkpoint_unit`` (``"epoch"`` or ``"step"``) periodic checkpoints;
    ``distributed=True`` (or a :class:`gpunn.distributed.Context`) data-parallel training over the
    ranks of an MPI job, with ``batch_size`` the global batch.  See the module docstring.

    With BatchNorm in the model, a ``batch_size`` that leaves a batch of one example is refused
    before training (BatchNorm cannot train on one example).

    ``epochs`` is the length of a run: ``fit`` trains until the run's last epoch is done, so after
    :meth:`resume` or a Ctrl-C it finishes the run; on a trainer whose run is complete it starts a
    new run of ``epochs`` more epochs.
    """

    def __init__(
        self,
        model,
        optimizer,
        epochs: int = 10,
        batch_size: int = 100,
        seed=0,
        progress: bool = True,
        eval_batch_size: int = 2000,
        verbose: bool = False,
        *,
        guard: bool = True,
        guard_every: int = 1,
        checkpoint_path=None,
        checkpoint_every: int = 1,
        checkpoint_unit: str = "epoch",
        distributed=False,
    ):
        epochs, batch_size, eval_batch_size, guard_every, checkpoint_every = (
            positive_int(name, v)
            for name, v in (
                ("epochs", epochs),
                ("batch_size", batch_size),
                ("eval_batch_size", eval_batch_size),
                ("guard_every", guard_every),
                ("checkpoint_every", checkpoint_every),
            )
        )
        missing = [
            a
            for a in ("device", "params", "grads", "_gradient", "_forward", "last_layer")
            if not hasattr(model, a)
        ]
        if missing:
            raise TypeError(
                f"model must be a gpunn MLP, got {type(model).__name__} (it lacks {', '.join(missing)})"
            )
        if not callable(getattr(optimizer, "update", None)):
            raise TypeError(
                f"optimizer must have an update(params, grads) method, got {type(optimizer).__name__}"
            )
        if callable(getattr(optimizer, "check_dtype", None)):
            optimizer.check_dtype(model.dtype)  # hyper-parameters finite in the model's float type
        if not isinstance(guard, bool):
            raise TypeError(f"guard must be True or False, got {guard!r}")
        if checkpoint_unit not in ("epoch", "step"):
            raise ValueError(f"checkpoint_unit must be 'epoch' or 'step', got {checkpoint_unit!r}")
        ctx = None
        if isinstance(distributed, _dist.Context):
            ctx = distributed
        elif distributed is True:
            ctx = _dist.init()
        elif distributed is not False and distributed is not None:
            raise TypeError(
                f"distributed must be True, False or a gpunn.distributed.Context, got {distributed!r}"
            )
        if ctx is not None and batch_size < ctx.world_size:
            raise ValueError(
                f"batch_size={batch_size} is the global batch, split over {ctx.world_size} "
                f"ranks; it must be at least {ctx.world_size}"
            )
        self.distributed = ctx
        self._multi = ctx if ctx is not None and ctx.world_size > 1 else None  # None: no collectives
        self._main = ctx is None or ctx.is_main
        if checkpoint_path is not None:
            checkpoint_path = _ckpt._as_path(checkpoint_path)
            # only rank 0 writes checkpoints: its file system is the one that matters
            if self._main and not checkpoint_path.parent.is_dir():
                raise ValueError(f"checkpoint_path: directory {checkpoint_path.parent} does not exist")
            if checkpoint_path.is_dir():
                raise ValueError(f"checkpoint_path {checkpoint_path} is a directory; give a file name")
            if self._main:
                _ckpt.check_writable(checkpoint_path.parent)
        rng = model.device.host_rng(seed)
        self.model, self.optimizer = model, optimizer
        self.epochs, self.batch_size, self.eval_batch_size = epochs, batch_size, eval_batch_size
        self.seed = seed
        self.rng = rng
        self.show_progress = progress
        self.verbose = verbose
        self.guard, self.guard_every = guard, guard_every
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every, self.checkpoint_unit = checkpoint_every, checkpoint_unit
        self.history = {k: [] for k in _HISTORY_KEYS}
        self.history["interrupted"] = False
        # the training position
        self.epoch = 0  # epochs completed
        self.step = 0  # steps completed (all epochs)
        self._offset = 0  # examples of the current epoch already trained on
        self._order = None  # the current epoch's permutation (host), while inside an epoch
        self._order_dev = None
        self._run_end = None  # the epoch at which the current run ends
        self._epoch_elapsed = 0.0
        self._pending = []  # this epoch's step losses not yet in history["iter_loss"] (device;
        # distributed: (loss, this rank's share of the global batch) pairs)
        self._phase = None  # the part of a step in progress ("gradient", "update"), for an interrupt
        self._vote = None  # distributed: the Ctrl-C vote in flight
        self._steps = 0  # steps per epoch of the current fit
        self._schedule = None  # (unit, every) of the periodic checkpoints (distributed: rank 0's)
        self._due = False  # a periodic checkpoint is due
        self._snap = None  # the guard's copy of the parameters before the last update
        self._snapped = False  # ... holds the state before the last update, whose result is unchecked

    @property
    def device(self):
        """The model's :class:`~gpunn.Device` (where training runs)."""
        return self.model.device

    # -- training -----------------------------------------------------------------------------
    @on_device
    def fit(self, x, t, validation_data=None) -> dict:
        """Train until the run's last epoch is done; returns ``self.history``.

        Raises :class:`TrainingDivergedError` when a guarded step finds a NaN/Inf; returns the
        history (``history["interrupted"] = True``) after a Ctrl-C.
        """
        x, t, val = self._check_data(x, t, validation_data)
        n, bs, D = x.shape[0], self.batch_size, self._multi
        self._check_batch_size(n)
        if self._order is not None and self._order.shape[0] != n:
            raise ValueError(
                f"x has {n} rows, but the trainer is in the middle of an epoch over "
                f"{self._order.shape[0]} examples (resumed or interrupted); pass the same "
                "training set"
            )
        if self._run_end is None or (self.epoch >= self._run_end and self._order is None):
            self._run_end = self.epoch + self.epochs
        self.history["interrupted"] = False
        self._steps = -(-n // bs)
        remaining = (self._run_end - self.epoch) * self._steps - (-(-self._offset // bs))
        self._schedule = self._own_schedule() if D is None else self._dist_start(D, x, t, val)
        self._due = self._snapped = False
        bar = progress(
            total=remaining, desc="training", unit="step", disable=not (self.show_progress and self._main)
        )
        try:
            with _DeferSigint() as sigint:
                while self.epoch < self._run_end:
                    if self._train_epoch(x, t, val, bar, sigint):
                        raise _Interrupted
                if self._schedule is not None:
                    self._periodic_checkpoint()
                self._end_vote()
        except (_Interrupted, KeyboardInterrupt) as exc:
            bar.close()
            agreed = isinstance(exc, _Interrupted)  # (a second Ctrl-C reaches the ranks at any point)
            if agreed:
                self._end_vote()
            else:
                self._vote = None
            self._interrupted(agreed)
        except TrainingDivergedError as exc:
            bar.close()
            self._diverged(exc)
            raise
        except BaseException:
            if D is not None:  # the ranks may be out of step: no more collectives here
                self._vote = None
                self._flush_losses(local=True)
            raise
        finally:
            bar.close()
            self._snap, self._snapped = None, False
        return self.history

    def _check_data(self, x, t, validation_data):
        """The training (and validation) data validated and on the model's device."""
        model = self.model
        dev = model.device
        x = check_inputs(dev, x, model.sizes[0], model.dtype, "x")
        soft = getattr(model.last_layer, "targets_distribution", False)  # (values read once per fit)
        t = check_targets(dev, t, x.shape[0], model.n_classes, model.dtype, "t", distribution=soft)
        if validation_data is None:
            return x, t, None
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (x_val, t_val)")
        xv, tv = validation_data
        xv = check_inputs(dev, xv, model.sizes[0], model.dtype, "validation x")
        return (
            x,
            t,
            (
                xv,
                check_targets(
                    dev, tv, xv.shape[0], model.n_classes, model.dtype, "validation t", distribution=soft
                ),
            ),
        )

    def _check_batch_size(self, n):
        """With BatchNorm, refuse a batch_size that leaves a batch (or a rank's part) of 1 example."""
        if not (getattr(self.model, "batchnorm_layers", None) or _ckpt._buffers(self.model)):
            return
        bs, D = self.batch_size, self._multi
        world = 1 if D is None else D.world_size

        def one_example(b):
            return any(1 in _dist.shard_sizes(m, world) for m in (b, n % b) if m)

        if one_example(bs):
            hint = next((b for b in range(max(bs, 2), n + 1) if not one_example(b)), None)
            split = "" if D is None else f" split over {world} ranks"
            raise ValueError(
                f"batch_size={bs}{split} gives a batch of 1 example (of {n}), and BatchNorm "
                "cannot train on a single example; "
                + (f"use e.g. batch_size={hint}" if hint else "use more examples")
            )

    def _own_schedule(self):
        """(unit, every) of this trainer's periodic checkpoints, or None without a checkpoint_path."""
        return None if self.checkpoint_path is None else (self.checkpoint_unit, self.checkpoint_every)

    def _train_epoch(self, x, t, val, bar, sigint) -> bool:
        """The (rest of the) current epoch: its steps, the periodic checkpoints falling in it, its
        evaluation and record.  Returns whether training stops (Ctrl-C; distributed: any rank's)."""
        n = x.shape[0]
        if self._order is None:
            self._start_epoch(n)
        if self._order_dev is None:
            self._order_dev = self.model.device.to_device(self._order)
        unit, every = self._schedule or (None, 0)
        start = time.perf_counter()
        while self._offset < n:
            self._train_step(x, t)
            bar.update(1)
            self._due |= unit == "step" and self.step % every == 0
            if self._due and self._offset < n:  # (on an epoch's last step: after the epoch)
                now = time.perf_counter()
                self._epoch_elapsed, start = self._epoch_elapsed + now - start, now
                self._periodic_checkpoint()
                self._due = False
            if self._stop_requested(sigint):
                raise _Interrupted
        self._epoch_elapsed += time.perf_counter() - start
        self._settle_guard()
        stop = self._end_epoch(x, t, val, bar, sigint.requested)
        self._due |= unit == "epoch" and self.epoch % every == 0
        if self._due and self.epoch < self._run_end:
            self._periodic_checkpoint()
            self._due = False
        return sigint.requested if self._multi is None else stop

    def _start_epoch(self, n):
        """Draw the epoch's data order from a copy of the generator, then commit generator, order and
        position in one statement (an interrupt leaves the old state or the new one)."""
        rng = _ckpt.make_rng(self.rng.bit_generator.state)
        new = (rng, rng.permutation(n), None, 0, 0.0, [])
        self.rng, self._order, self._order_dev, self._offset, self._epoch_elapsed, self._pending = new

    def _train_step(self, x, t):
        """One step: gradient, guard check, update; then its record (loss, position) is committed in
        one statement.  ``_phase`` marks a step in progress, for an interrupt."""
        model, D, bs = self.model, self._multi, self.batch_size
        idx = self._order_dev[self._offset : self._offset + bs]
        self._phase = "gradient"
        check = self.guard and (self.step + 1) % self.guard_every == 0
        if D is None:
            loss = model._gradient(x[idx], t[idx])
        else:
            loss, share = self._dist_gradient(D, x, t, idx, check)
        if check:
            self._check_step(loss)
            if self.guard_every == 1:  # the parameters before this update, restored if it damages them
                self._snapshot()
        self._phase = "update"
        self.optimizer.update(model.params, model.grads)
        new = (
            self._pending + [loss if D is None else (loss, share)],
            min(x.shape[0], self._offset + bs),
            self.step + 1,
            None,
        )
        self._pending, self._offset, self.step, self._phase = new

    def _stop_requested(self, sigint) -> bool:
        """Whether a Ctrl-C stops training after this step (distributed: a vote of every rank, read
        one step later so that it costs no wait)."""
        D = self._multi
        if D is None:
            return sigint.requested
        previous, self._vote = self._vote, D.vote(sigint.requested, name="Ctrl-C vote")
        return previous is not None and previous.result(self.step)

    def _interrupted(self, agreed=True):
        """Ctrl-C: keep the history, write a checkpoint if the state is consistent, say so.
        (Distributed: ``agreed`` when every rank stopped at this step, so collectives are safe.)"""
        mid_step = self._phase is not None
        if self._phase == "gradient" and not _ckpt._buffers(self.model) and not _ckpt._model_rngs(self.model):
            mid_step = False  # a gradient computed, never applied: as if the step never began (unless
            # the forward pass moved BatchNorm statistics or drew a dropout mask)
        self._phase = None
        self._flush_losses(local=not agreed)
        self.history["interrupted"] = True
        if not self._main:
            return
        where = f"at step {self.step} (epoch {min(self.epoch + 1, self._run_end)}/{self._run_end})"
        note = ""
        if self.checkpoint_path is not None:
            if mid_step:
                note = (
                    f"; stopped inside a step, so {self.checkpoint_path} was not rewritten (it "
                    "holds the last periodic checkpoint)"
                )
            elif not self._params_finite():
                note = f"; the parameters are not finite, so {self.checkpoint_path} was not rewritten"
            else:
                try:
                    self.save_checkpoint()
                    note = f"; checkpoint written to {self.checkpoint_path}"
                except Exception as exc:  # noqa: BLE001 - the interrupt must still end cleanly
                    note = f"; writing the checkpoint failed ({exc.__class__.__name__}: {exc})"
        print(f"gpunn: training interrupted {where}; history kept{note}", file=sys.stderr, flush=True)

    def _diverged(self, exc):
        """TrainingDivergedError: record the history, keep the good checkpoint, write the failing
        state to ``run.failed.npz`` (rank 0) and say so in the error."""
        self._phase = None
        self._end_vote()
        self._flush_losses()
        exc.history = self.history
        path = self.checkpoint_path
        if path is None:
            return
        exc.checkpoint = path if path.exists() else None
        if not self._main:
            return
        exc.failed_checkpoint = self._failed_path()
        try:
            self.save_checkpoint(exc.failed_checkpoint)
        except Exception as write_exc:  # noqa: BLE001 - report, keep the original error
            exc.failed_checkpoint = None
            exc.args = (f"{exc.args[0]} (writing the failed state failed: {write_exc})",)
        else:
            kept = f"the last good checkpoint {exc.checkpoint} is kept; " if exc.checkpoint else ""
            exc.args = (f"{exc.args[0]} ({kept}the failing state was written to {exc.failed_checkpoint})",)

    # -- the guard ----------------------------------------------------------------------------
    def _check_step(self, loss):
        """The guard's one check: the loss, the whole gradient buffer and -- when the last update has
        not been checked yet -- the parameter buffer it wrote; details only on failure."""
        unchecked = self._snapped
        if self._finite(loss, unchecked):
            self._snapped = False
            return
        if unchecked:  # non-finite parameters poison the loss too: blame the update that made them
            self._update_diverged()
        quantity, detail = self._diagnose(loss, ("grads",))
        if quantity is None:  # the sum overflowed, every value is finite: not a divergence
            return
        step, epoch = self.step + 1, self.epoch + 1
        late = (
            ""
            if self.guard_every == 1
            else f" (checked every {self.guard_every} steps: it may have "
            "started up to that many steps earlier)"
        )
        if self._multi is not None:
            late += (
                f" [rank {self._multi.rank} of {self._multi.world_size}: the gradients are averaged "
                "over the ranks, so a NaN/Inf on any rank stops every rank at this step]"
            )
        where = self._batch_of(self._offset)
        raise TrainingDivergedError(
            f"training diverged at step {step} (epoch {epoch}, {where}): {detail}{late}. "
            "The optimizer did not apply this step. " + _LOWER_LR,
            step,
            epoch,
            quantity,
        )

    def _finite(self, loss, params: bool) -> bool:
        """Whether the loss, the gradients (and ``params``: the parameters) are all finite.  On a GPU one
        reduction, ``isfinite(loss + Σ grads [+ Σ params])``: one host sync; on the host, vectorised
        passes (a sum of 50k float32 values takes 8 µs, the pass 1 µs)."""
        model = self.model
        xp = model.xp
        grads, flat = model.grads, model.params.flat
        gflat = getattr(grads, "flat", None)
        if gflat is None or is_device_array(gflat):
            total = loss + (gflat.sum() if gflat is not None else sum(g.sum() for g in grads.values()))
            return bool(xp.isfinite(total + flat.sum() if params else total))
        zero = flat.dtype.type(0)
        return (
            bool(xp.isfinite(loss))
            and _all_finite_cpu(gflat, zero)
            and (not params or _all_finite_cpu(flat, zero))
        )

    def _batch_of(self, offset) -> str:
        return f"batch {offset // self.batch_size + 1} of {self._steps}"

    def _snapshot(self):
        """Copy the parameters (and BatchNorm statistics, which the next step's forward pass moves)
        before a guarded update: device copies on a GPU, no host sync.  (The copies are allocated
        once per fit.)"""
        pairs = self._snap
        if pairs is None:
            model = self.model
            arrays = [model.params.flat, *(b for _, b in sorted(_ckpt._buffers(model).items()))]
            pairs = self._snap = [(model.xp.empty_like(a), a) for a in arrays]
        for copy, a in pairs:
            copy[...] = a
        self._snapped = True

    def _settle_guard(self):
        """Check the parameters the last guarded update wrote, when no later step's check did (at the
        end of an epoch and before a checkpoint): one reduction."""
        if self._snapped:
            if not self._params_finite():
                self._update_diverged()
            self._snapped = False

    def _params_finite(self) -> bool:
        return bool(self.model.xp.isfinite(self.model.params.flat.sum()))

    def _update_diverged(self):
        """The last update made parameters non-finite: restore them from the snapshot, take the step
        back (its loss and position), and raise TrainingDivergedError naming that step."""
        quantity, detail = self._diagnose(0.0, ("params",))
        if quantity is None:  # the sum overflowed, every value is finite
            return
        step, epoch = self.step, self.epoch + 1
        where = self._batch_of(max(self._offset - 1, 0))
        self._phase = "restore"  # (an interrupt in here leaves an inconsistent state: not saved)
        for copy, a in self._snap:
            a[...] = copy
        offset = (self._offset - 1) // self.batch_size * self.batch_size
        back = (self._pending[:-1], offset, step - 1, None, False)
        self._pending, self._offset, self.step, self._phase, self._snapped = back
        raise TrainingDivergedError(
            f"training diverged at step {step} (epoch {epoch}, {where}): the gradients were finite, but the "
            f"optimizer's update made the parameters non-finite: {detail}. The parameters were restored to "
            "before this step (the optimizer's own state, e.g. its moments, keeps it). " + _LOWER_LR,
            step,
            epoch,
            quantity,
        )

    def _diagnose(self, loss, what=("grads", "params")):
        xp = self.model.xp
        value = float(loss)
        if not np.isfinite(value):
            return "loss", f"the loss is {value}"
        for kind in what:
            for name, a in getattr(self.model, kind).items():
                n_nan, n_inf = int(xp.isnan(a).sum()), int(xp.isinf(a).sum())
                if n_nan or n_inf:
                    parts = [f"{n_nan} NaN"] * bool(n_nan) + [f"{n_inf} Inf"] * bool(n_inf)
                    label = f"{kind}[{name!r}]"
                    return label, f"{label} has {' and '.join(parts)} (of {a.size} values)"
        return None, None

    # -- the record ---------------------------------------------------------------------------
    def _flush_losses(self, local=False):
        """Move this epoch's step losses into the history (committed in one statement).  Distributed,
        they are the global means (one collective), unless ``local`` (the ranks may be out of step:
        this rank's own losses)."""
        if not self._pending:
            return
        if self._multi is None:
            values = self._to_host(self._pending).tolist()
        elif local:
            values = self._to_host([v for v, _ in self._pending]).tolist()
        else:
            shares = np.array([share for _, share in self._pending], dtype=np.float64)
            local_part = self._to_host([v for v, _ in self._pending]) * shares
            values = self._multi.allreduce_host(local_part, name="step losses", step=self.step).tolist()
        new = {**self.history, "iter_loss": self.history["iter_loss"] + values}
        self.history, self._pending = new, []

    def _to_host(self, values):
        """Device scalars (step losses, sums) as a host float64 array, in one transfer (one host sync
        on a GPU, instead of one per value)."""
        dev = self.model.device
        return dev.to_numpy(dev.xp.stack(values)).astype(np.float64)

    def _end_epoch(self, x, t, val, bar, stop=False):
        """Evaluate, then record the epoch and advance the position in one statement (an interrupt
        leaves the epoch either unrecorded and to finish, or recorded and done -- never half).
        Returns whether training stops here (``stop``; distributed: whether any rank said so)."""
        if self._multi is None:
            steps = self._to_host(self._pending).tolist() if self._pending else []
            loss, acc = self.evaluate(x, t)
            vl, va = self.evaluate(*val) if val is not None else (None, None)
        else:
            steps, loss, acc, vl, va, stop = self._dist_epoch_end(self._multi, x, t, val, stop)
        h = self.history
        new = {
            **h,
            "iter_loss": h["iter_loss"] + steps,
            "loss": h["loss"] + [loss],
            "acc": h["acc"] + [acc],
            "epoch_time": h["epoch_time"] + [self._epoch_elapsed],
        }
        if val is not None:
            new.update(val_loss=h["val_loss"] + [vl], val_acc=h["val_acc"] + [va])
        new = (new, [], None, None, 0, self.epoch + 1)
        self.history, self._pending, self._order, self._order_dev, self._offset, self.epoch = new
        info = {"loss": f"{loss:.4f}", "acc": f"{acc:.4f}"}
        if val is not None:
            info.update(val_acc=f"{va:.4f}")
        bar.set_postfix(**info)
        if self.verbose and self._main:
            print(f"epoch {self.epoch}/{self._run_end}: " + ", ".join(f"{k} {v}" for k, v in info.items()))
        return stop

    @on_device
    def evaluate(self, x, t) -> tuple[float, float]:
        """(mean loss, accuracy) over a validated dataset, in batches, in evaluation mode (on this
        process's data only, also when training is distributed)."""
        total_loss, total_correct = self._eval_sums(x, t)
        n = x.shape[0]
        return total_loss / n, total_correct / n

    def _eval_sums(self, x, t) -> tuple[float, float]:
        """(summed loss, number correct) over ``x`` (possibly empty), in evaluation batches."""
        model = self.model
        losses, correct, rows = [], [], []
        for s in range(0, x.shape[0], self.eval_batch_size):
            xb, tb = x[s : s + self.eval_batch_size], t[s : s + self.eval_batch_size]
            scores = model._forward(xb, False)
            losses.append(model.last_layer.forward(scores, tb))
            labels = tb.argmax(axis=1) if tb.ndim == 2 else tb
            correct.append((scores.argmax(axis=1) == labels).sum())
            rows.append(xb.shape[0])
        if not rows:
            return 0.0, 0.0
        host = self._to_host(losses + correct)  # the device values read back at once
        return float(host[: len(rows)] @ np.array(rows, dtype=np.float64)), float(host[len(rows) :].sum())

    # -- distributed ----------------------------------------------------------------------------
    def _dist_start(self, D, x, t, val):
        """Collective, at the start of ``fit``: check that every rank trains the same run -- model
        configuration, optimizer and hyper-parameters, all of the data (a checksum), batch size, seed,
        position -- in one allgather (else a DistributedError naming what differs), then take rank
        0's parameters and BatchNorm state.  Returns rank 0's checkpoint schedule, which every rank
        follows (its collectives), whatever checkpoint_path the other ranks were given."""
        model = self.model
        described = self._run_description(x, t, val)
        schedule = self._own_schedule()
        mine = [v for v, _ in described.values()]
        mine += [0, 0, 0] if schedule is None else [1, int(schedule[0] == "step"), schedule[1]]
        got = D.allgather_host(np.array(mine, dtype=np.int64), name="run configuration")
        for j, (what, (_, text)) in enumerate(described.items()):
            if (got[:, j] != got[0, j]).any():
                values = ", ".join(f"rank {r}: {int(v)}" for r, v in enumerate(got[:, j]))
                here = f"; rank {D.rank} has {text}" if text else ""
                raise _dist.DistributedError(
                    f"the ranks disagree on {what} ({values}{here}); every rank must run the same script on "
                    "the same data with the same model, optimizer, seed and batch_size (resume every rank "
                    "from the same checkpoint)"
                )
        D.broadcast(model.params.flat, 0, name="parameters")
        for key, buf in sorted(_ckpt._buffers(model).items()):
            D.broadcast(buf, 0, name=f"buffers[{key!r}]")
        has, step_unit, every = (int(v) for v in got[0, -3:])
        return ("step" if step_unit else "epoch", every) if has else None

    def _run_description(self, x, t, val) -> dict:
        """What the ranks must agree on: {what: (integer, this rank's readable value or "")}; the model
        dtype comes before the data, whose bytes depend on it."""
        model, opt = self.model, self.optimizer
        config = json.dumps(_ckpt._model_config(model), sort_keys=True, default=repr)
        hyper = getattr(opt, "hyper_params", None)
        hyper = (
            hyper()
            if callable(hyper)
            else {k: v for k, v in sorted(vars(opt).items()) if isinstance(v, (int, float, str))}
        )
        optimizer = f"{type(opt).__name__}({', '.join(f'{k}={v!r}' for k, v in sorted(hyper.items()))})"
        state = repr(sorted(self.rng.bit_generator.state.items())).encode()
        n, dtype = x.shape[0], np.dtype(model.dtype)
        return {
            "the model's dtype (bytes per value)": (dtype.itemsize, dtype.name),
            "the model configuration (constructor arguments, checksum)": (
                zlib.crc32(config.encode()),
                config,
            ),
            "the number of parameters": (model.params.flat.size, ""),
            "the optimizer and its hyper-parameters (checksum)": (zlib.crc32(optimizer.encode()), optimizer),
            "the number of training examples": (n, ""),
            "the training data (checksum of every value of x and t)": (_checksum(model.device, x, t), ""),
            "the number of validation examples": (-1 if val is None else val[0].shape[0], ""),
            "the validation data (checksum)": (-1 if val is None else _checksum(model.device, *val), ""),
            "batch_size (the global batch)": (self.batch_size, ""),
            "the data-order seed (generator state checksum)": (zlib.crc32(state), ""),
            "the kind of device (0 host arrays, 1 GPU)": (int(not _dist._is_host(model.params.flat)), ""),
            "epochs done": (self.epoch, ""),
            "steps done": (self.step, ""),
            "the position in the epoch": (self._offset, ""),
            "the run's last epoch": (-1 if self._run_end is None else self._run_end, ""),
            "the optimizer's step count": (int(getattr(opt, "t", -1)), ""),
        }

    def _dist_gradient(self, D, x, t, idx, check):
        """This rank's part of the global batch ``idx``: its gradient, weighted by its share, averaged
        over the ranks.  Returns (local loss, share of the global batch)."""
        model = self.model
        m = int(idx.shape[0])
        lo, hi = _dist.shard_bounds(m, D.rank, D.world_size)
        flat = model.grads.flat
        if hi > lo:
            loss = model._gradient(x[idx[lo:hi]], t[idx[lo:hi]])
            if (hi - lo) * D.world_size != m:  # unequal parts: the mean of the means needs weights
                flat *= flat.dtype.type((hi - lo) * D.world_size / m)
        else:  # a last batch smaller than the world: nothing to do here but take part
            flat[...] = 0
            loss = flat.dtype.type(0)
        if check:  # a non-finite local loss poisons the gradients, so every rank's guard sees it
            flat[:1] += loss * 0
        D.allreduce_mean(flat, name="gradients", step=self.step + 1)
        return loss, (hi - lo) / m

    def _dist_epoch_end(self, D, x, t, val, stop):
        """Collective: average the BatchNorm statistics, evaluate this rank's part of the data, and
        reduce the step losses, the metrics and the stop flag in one allreduce.  Returns (the global
        step losses, loss, acc, val_loss, val_acc, stop); records nothing."""
        for key, buf in sorted(_ckpt._buffers(self.model).items()):
            D.allreduce_mean(buf, name=f"buffers[{key!r}]", step=self.step)
        sums, counts = [], []
        for xs, ts in [(x, t)] + ([val] if val is not None else []):
            lo, hi = _dist.shard_bounds(xs.shape[0], D.rank, D.world_size)
            sums += self._eval_sums(xs[lo:hi], ts[lo:hi])
            counts.append(xs.shape[0])
        losses = [float(v) * share for v, share in self._pending]
        total = D.allreduce_host(
            np.array(losses + sums + [float(bool(stop))], dtype=np.float64),
            name="epoch losses and metrics",
            step=self.step,
        )
        k = len(losses)
        m = total[k : k + len(sums)]
        loss, acc = m[0] / counts[0], m[1] / counts[0]
        vl, va = (float(m[2] / counts[1]), float(m[3] / counts[1])) if val is not None else (None, None)
        return total[:k].tolist(), float(loss), float(acc), vl, va, bool(total[-1])

    def _end_vote(self):
        """Wait for the Ctrl-C vote still in flight (every rank cast it)."""
        vote, self._vote = self._vote, None
        if vote is not None and self._multi is not None and self._multi.broken is None:
            vote.result(self.step)

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, path=None) -> Path:
        """Write model, optimizer and trainer state to ``path`` (default ``checkpoint_path``)."""
        path = self._path(path)
        self._flush_losses()
        return _ckpt.save(path, self.model, self.optimizer, self)

    def resume(self, path=None, *, checkpoint: bool = True) -> Trainer:
        """Restore model, optimizer and trainer from the checkpoint at ``path`` (default
        ``checkpoint_path``); the next :meth:`fit` continues the saved run.  Returns ``self``.

        A trainer without a ``checkpoint_path`` adopts ``path`` (``checkpoint=False``: not), so the
        resumed run keeps checkpointing to the file it came from.  The optimizer's hyper-parameters
        are the saved ones (a :class:`~gpunn.checkpoint.CheckpointWarning` names any that differ from
        the optimizer's before); to continue with another value, e.g. a lower learning rate, set it
        after resuming: ``trainer.optimizer.lr = 0.01``."""
        if not isinstance(checkpoint, bool):
            raise TypeError(f"checkpoint must be True or False, got {checkpoint!r}")
        path = self._path(path)
        hyper = getattr(self.optimizer, "hyper_params", None)
        before = hyper() if callable(hyper) else {}
        _ckpt.load(path, self.model, self.optimizer, self)
        after = hyper() if callable(hyper) else {}
        changed = [
            f"{k}={after[k]!r} (the optimizer had {v!r})"
            for k, v in before.items()
            if k in after and after[k] != v
        ]
        if changed:
            warnings.warn(
                f"{path}: resuming restored the saved optimizer hyper-parameters "
                f"{', '.join(changed)}; to train with other values set them after resume(), "
                f"e.g. trainer.optimizer.lr = ...",
                _ckpt.CheckpointWarning,
                stacklevel=2,
            )
        if checkpoint and self.checkpoint_path is None:
            if self._main:
                _ckpt.check_writable(
                    path.parent,
                    "resume: the checkpoint's directory (checkpoint=False to resume without checkpointing)",
                )
            self.checkpoint_path = path
        return self

    def _path(self, path):
        if path is None:
            if self.checkpoint_path is None:
                raise ValueError("no checkpoint path: pass one, or create the Trainer with checkpoint_path=")
            return self.checkpoint_path
        return _ckpt._as_path(path)

    def _failed_path(self) -> Path:
        p = self.checkpoint_path
        stem = p.name[:-4] if p.name.endswith(".npz") else p.name
        return p.with_name(stem + ".failed.npz")

    def _periodic_checkpoint(self):
        """Write the periodic checkpoint unless the parameters went non-finite (never replace a good
        checkpoint with a diverged state).  Every rank comes here (rank 0's schedule); rank 0 writes."""
        self._settle_guard()
        self._flush_losses()  # (distributed: a collective, so on every rank, before rank 0 writes)
        if not self._params_finite():
            quantity, detail = self._diagnose(0.0, ("params",))
            if quantity is not None:
                msg = f"parameters are not finite at step {self.step} (epoch {self.epoch + 1}): {detail}"
                if self.guard:
                    raise TrainingDivergedError(
                        f"training diverged: {msg}", self.step, self.epoch + 1, quantity
                    )
                if self._main:
                    warnings.warn(
                        f"{msg}; {self.checkpoint_path} is kept, not overwritten",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                return
        if self._main and self.checkpoint_path is not None:
            self.save_checkpoint()

    def state_dict(self) -> dict:
        """The trainer's position (epoch, step, offset in the epoch and its data order), random
        generator state, history and configuration: host arrays and plain Python values."""
        self._flush_losses()
        history = {}
        for k, v in self.history.items():
            if isinstance(v, list) and all(type(e) in (int, float) for e in v):
                history[k] = np.asarray(v, dtype=np.float64)
            else:
                history[k] = v
        return {
            "epoch": self.epoch,
            "step": self.step,
            "offset": self._offset,
            "run_end": self._run_end,
            "order": None if self._order is None else np.asarray(self._order, dtype=np.int64),
            "rng": self.rng.bit_generator.state,
            "epoch_elapsed": self._epoch_elapsed,
            "history": history,
            "config": {
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "seed": self.seed if self.seed is None or isinstance(self.seed, int) else None,
            },
        }

    def _check_state(self, sd):
        """Raise ValueError/TypeError unless ``sd`` is a valid trainer state (changes nothing)."""
        if not isinstance(sd, dict):
            raise TypeError("trainer state is not a dict")
        for key in ("epoch", "step", "offset"):
            v = sd.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{key} must be a non-negative integer, got {v!r}")
        run_end = sd.get("run_end")
        if run_end is not None and (isinstance(run_end, bool) or not isinstance(run_end, int)):
            raise ValueError(f"run_end must be an integer or None, got {run_end!r}")
        order = sd.get("order")
        if order is not None:
            if not isinstance(order, np.ndarray) or order.ndim != 1 or order.dtype.kind not in "iu":
                raise ValueError("order must be a 1-D integer array")
            n = order.shape[0]
            if (
                not 0 <= sd["offset"] <= n
                or n == 0
                or int(order.min()) < 0
                or int(order.max()) >= n
                or not (np.bincount(order, minlength=n) == 1).all()
            ):
                raise ValueError(
                    f"the stored epoch order is not a permutation of range({n}) matching the stored offset"
                )
        elif sd["offset"]:
            raise ValueError("offset inside an epoch without the epoch's data order")
        _ckpt.make_rng(sd.get("rng"))
        if not isinstance(sd.get("history"), dict):
            raise ValueError("history must be a dict")

    def load_state_dict(self, sd):
        """Restore what :meth:`state_dict` returned (validated first; nothing changes on error)."""
        self._check_state(sd)
        self.rng = _ckpt.make_rng(sd["rng"])
        self.epoch, self.step, self._offset = sd["epoch"], sd["step"], sd["offset"]
        self._order = None if sd["order"] is None else np.array(sd["order"], dtype=np.int64)
        self._order_dev = None
        run_end = sd.get("run_end")
        self._run_end = None if run_end is None else max(run_end, self.epochs)
        self._epoch_elapsed = float(sd.get("epoch_elapsed") or 0.0)
        self._pending, self._phase, self._vote, self._snapped = [], None, None, False
        history = {k: [] for k in _HISTORY_KEYS}
        for k, v in sd["history"].items():
            history[k] = v.tolist() if isinstance(v, np.ndarray) else v
        history.setdefault("interrupted", False)
        self.history = history
