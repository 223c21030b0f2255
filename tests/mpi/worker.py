"""Scenarios run under ``mpiexec -n 2 python tests/mpi/worker.py SCENARIO OUT_DIR`` by
tests/test_distributed.py.  Each rank writes what the test checks into OUT_DIR (rank-suffixed files)
or prints it; the failure scenarios are judged from the job's output, exit code and duration.

* ``train``: data-parallel training (Trainer(distributed=True) and the hand-written loop with
  ShardedSampler + allreduce_mean) on the CPU and on the simulated "cuda" device; parameters,
  histories and each rank's shards are saved for comparison with a single process.
* ``timeout``: rank 1 fails (raises, with the abort-on-exception hook off, so its process just
  ends) before the gradient allreduce of step 3; rank 0 must raise DistributedTimeoutError.
* ``hang``: rank 1 hangs (sleeps) before the allreduce of step 3; rank 0 must time out, and the
  uncaught error must abort the whole job, the sleeping rank included.
* ``abort``: rank 1 raises an uncaught error at step 3; the hook must abort the job at once.
* ``mismatch``: the ranks use different data-order seeds: a DistributedError before training.
* ``interrupt``: rank 1 alone gets a Ctrl-C (SIGINT) during step 3; both ranks must stop at the
  same step.
* ``diverge``: rank 1 alone sees a NaN loss at step 3 (its gradients finite); the guard must stop
  both ranks at step 3, before the optimizer applies it.
* ``disagree:WHAT``: rank 1 differs in WHAT (``lr``, ``optimizer``, ``activation``, ``data``: 40 of
  the 103 rows, ``dtype``): a DistributedError naming it before training.
* ``ckpt_rank0``: only rank 0 is given a checkpoint_path (``checkpoint_unit="step"``): training must
  run to the end on both ranks, rank 0 writing the checkpoints.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

import gpunn
from gpunn import distributed as dist


def say(text: str) -> None:
    """Print one line in a single write: ``print`` writes the text and its newline separately, and
    mpiexec may put the other rank's output between the two (the test then sees one merged line)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


N, FEATURES, CLASSES, BATCH = 103, 10, 4, 20  # 103 = 5 batches of 20 + one of 3 (split 2 + 1)


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, FEATURES)).astype(np.float32)
    t = rng.integers(0, CLASSES, N)
    return x, t


def build(device, dtype="float32", seed=7, **kw):
    return gpunn.MLP(
        FEATURES, [16, 8], CLASSES, activation=["tanh", "relu"], device=device, dtype=dtype, seed=seed, **kw
    )


def make_optimizer(name):
    return gpunn.optim.Adam(lr=0.01) if name == "adam" else gpunn.optim.SGD(lr=0.1)


def save(out, name, **arrays):
    np.savez(out / f"{name}.rank{dist.rank()}.npz", **arrays)


def scenario_train(out):
    ctx = dist.init(timeout=60)
    x, t = data()
    xv, tv = data(1)
    results = {}
    for device in ("cpu", "cuda"):
        for dtype, opt in (("float64", "sgd"), ("float32", "adam")):
            # the replicas start from different weights: the trainer must take rank 0's
            net = build(device, dtype, seed=7 + 100 * ctx.rank)
            tr = gpunn.Trainer(
                net,
                make_optimizer(opt),
                epochs=2,
                batch_size=BATCH,
                seed=3,
                progress=False,
                verbose=True,
                distributed=True,
                checkpoint_path=out / f"ckpt-{device}-{dtype}.rank{ctx.rank}.npz",
            )
            h = tr.fit(x, t, validation_data=(xv, tv))
            key = f"{device}-{dtype}-{opt}"
            save(
                out,
                f"trainer-{key}",
                params=gpunn.Device.to_numpy(net.params.flat),
                iter_loss=np.asarray(h["iter_loss"]),
                loss=np.asarray(h["loss"]),
                acc=np.asarray(h["acc"]),
                val_loss=np.asarray(h["val_loss"]),
                val_acc=np.asarray(h["val_acc"]),
            )
            results[key] = tr.step

    # the textbook loop by hand: sampler + allreduce_mean + broadcast_parameters
    net = build("cpu", "float64", seed=7 + 100 * ctx.rank)
    dist.broadcast_parameters(net)
    opt = gpunn.optim.SGD(lr=0.1)
    # drop_last: every global batch has 20 examples, 10 per rank, so the mean of the ranks' means is
    # the mean over the batch (the Trainer also weights unequal parts; a hand-written loop must)
    sampler = dist.ShardedSampler(N, batch_size=BATCH, seed=3, drop_last=True)
    shards = []
    for _ in range(2):
        for idx in sampler:
            shards.append(idx)
            net.gradient(x[idx], t[idx])
            dist.allreduce_mean(net.grads.flat)
            opt.update(net.params, net.grads)
    save(out, "manual", params=net.params.flat, **{f"shard{i}": s for i, s in enumerate(shards)})
    # one epoch of the sampler as the Trainer cuts it (no drop_last): this rank's parts
    cover = list(dist.ShardedSampler(N, batch_size=BATCH, seed=3))
    save(out, "cover", **{f"shard{i}": s for i, s in enumerate(cover)})

    # BatchNorm: trains, and the replicas (parameters and running statistics) stay identical
    net = build("cpu", "float64", batchnorm=True)
    tr = gpunn.Trainer(
        net, gpunn.optim.SGD(lr=0.1), epochs=1, batch_size=BATCH, seed=3, progress=False, distributed=True
    )
    tr.fit(x[:100], t[:100])
    save(out, "batchnorm", params=net.params.flat, **net.buffers)
    errors = {}
    try:  # a global batch of 3 over 2 ranks leaves a rank one example: refused with BatchNorm
        gpunn.Trainer(net, gpunn.optim.SGD(lr=0.1), batch_size=3, progress=False, distributed=True).fit(x, t)
    except ValueError as exc:
        errors["batchnorm"] = str(exc)
    try:
        gpunn.Trainer(net, gpunn.optim.SGD(lr=0.1), batch_size=1, distributed=True)
    except ValueError as exc:
        errors["batch_size"] = str(exc)
    if ctx.rank == 0:
        result = {"world": ctx.world_size, "steps": results, "errors": errors}
        say("RESULT " + json.dumps(result))


class _FailingGradient:
    """Wraps ``net._gradient``: on rank 1, run ``action`` at step ``at``."""

    def __init__(self, net, at, action):
        self.inner, self.at, self.action, self.calls = net._gradient, at, action, 0

    def __call__(self, x, t):
        self.calls += 1
        if dist.rank() == 1 and self.calls == self.at:
            self.action()
        return self.inner(x, t)


def _train_with(action, checkpoint_path=None, **init):
    dist.init(**init)
    x, t = data()
    net = build("cpu")
    net._gradient = _FailingGradient(net, 3, action)
    tr = gpunn.Trainer(
        net,
        gpunn.optim.SGD(lr=0.1),
        epochs=2,
        batch_size=BATCH,
        seed=3,
        progress=False,
        distributed=True,
        checkpoint_path=checkpoint_path,
        checkpoint_unit="step",
    )
    start = time.monotonic()
    try:
        return tr.fit(x, t), tr
    finally:
        say(f"rank {dist.rank()} left fit after {time.monotonic() - start:.1f} s")


def _fail():
    raise RuntimeError("simulated failure on rank 1")


def scenario_timeout(out):
    try:
        _train_with(_fail, abort_on_exception=False)
    except dist.DistributedTimeoutError as exc:
        say(f"CAUGHT {type(exc).__name__} collective={exc.collective} step={exc.step}: {exc}")
        raise


def scenario_hang(out):
    _train_with(lambda: time.sleep(600))


def scenario_abort(out):
    _train_with(_fail)


def scenario_mismatch(out):
    dist.init()
    x, t = data()
    tr = gpunn.Trainer(
        build("cpu"),
        gpunn.optim.SGD(lr=0.1),
        batch_size=BATCH,
        seed=dist.rank(),
        progress=False,
        distributed=True,
    )
    tr.fit(x, t)


def scenario_interrupt(out):
    h, tr = _train_with(lambda: os.kill(os.getpid(), signal.SIGINT))
    say(
        f"RESULT rank={dist.rank()} step={tr.step} interrupted={h['interrupted']} "
        f"losses={len(h['iter_loss'])}"
    )


def scenario_diverge(out):
    class NanLoss(_FailingGradient):
        def __call__(self, x, t):
            loss = super().__call__(x, t)
            return loss * np.float32("nan") if dist.rank() == 1 and self.calls == self.at else loss

    dist.init()
    x, t = data()
    net = build("cpu")
    net._gradient = NanLoss(net, 3, lambda: None)
    tr = gpunn.Trainer(
        net,
        gpunn.optim.SGD(lr=0.1),
        epochs=2,
        batch_size=BATCH,
        seed=3,
        progress=False,
        distributed=True,
        checkpoint_path=out / "run.npz",
        checkpoint_unit="step",
    )
    try:
        tr.fit(x, t)
    except gpunn.TrainingDivergedError as exc:
        say(
            f"CAUGHT rank={dist.rank()} step={exc.step} quantity={exc.quantity} steps_done={tr.step} "
            f"losses={len(exc.history['iter_loss'])}: {exc}"
        )


def scenario_disagree(out, what):
    dist.init()
    x, t = data()
    other = dist.rank() == 1
    if what == "data" and other:
        x = x.copy()
        x[3:83:2] += 1  # 40 rows, most of them outside any 16-row sample
    kw = {"activation": "relu" if what == "activation" and other else "tanh"}
    net = gpunn.MLP(
        FEATURES, [16, 8], CLASSES, seed=7, dtype="float64" if what == "dtype" and other else "float32", **kw
    )
    opt = gpunn.optim.SGD(lr=0.5 if what == "lr" and other else 0.1)
    if what == "optimizer" and other:
        opt = gpunn.optim.Momentum(lr=0.1)
    tr = gpunn.Trainer(net, opt, batch_size=BATCH, seed=3, progress=False, distributed=True)
    tr.fit(x, t)


def scenario_ckpt_rank0(out):
    dist.init()
    x, t = data()
    path = out / "run.npz" if dist.rank() == 0 else None
    tr = gpunn.Trainer(
        build("cpu"),
        gpunn.optim.SGD(lr=0.1),
        epochs=2,
        batch_size=BATCH,
        seed=3,
        progress=False,
        distributed=True,
        checkpoint_path=path,
        checkpoint_unit="step",
        checkpoint_every=2,
    )
    h = tr.fit(x, t)
    say(
        f"RESULT rank={dist.rank()} step={tr.step} interrupted={h['interrupted']} "
        f"losses={len(h['iter_loss'])}"
    )


if __name__ == "__main__":
    scenario, out = sys.argv[1], Path(sys.argv[2])
    name, _, arg = scenario.partition(":")
    globals()[f"scenario_{name}"](out, *([arg] if arg else []))
