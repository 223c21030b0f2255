"""Data-parallel training across processes, GPUs and machines: MPI (mpi4py) and NCCL (CuPy).

The flat gradient buffer (``net.grads.flat``) makes data parallelism one collective per step:
every worker (an MPI *rank*) computes the gradients of its shard of the global batch, the buffer
is all-reduced (averaged) in place, and every worker applies the same fused optimizer step to the
same parameters, so the replicas never drift apart.  Launch one process per CPU socket/machine or
per GPU with MPI::

    mpirun -n 2 python train.py                   # 2 processes on this machine
    mpirun -n 8 -ppn 4 -hosts a,b python train.py # 2 machines, 4 GPUs each (MPICH's flags)

and pass ``distributed=True`` to :class:`gpunn.Trainer` (see there), or use the pieces below in a
hand-written loop::

    from gpunn import distributed as dist
    ctx = dist.init()                                   # rank, world size from the MPI environment
    net = gpunn.MLP(784, [64, 16], 10, device=dist.local_device("cuda"), seed=0)
    dist.broadcast_parameters(net)                      # every replica starts from rank 0's weights
    sampler = dist.ShardedSampler(len(x), batch_size=64, seed=0)   # 64 = the GLOBAL batch
    for epoch in range(10):
        for idx in sampler:                             # this rank's part of each global batch
            net.gradient(x[idx], t[idx])
            dist.allreduce_mean(net.grads.flat)         # one collective per step
            optimizer.update(net.params, net.grads)

**Which engine.**  Host buffers (NumPy: the CPU device, and the simulated "cuda" device of the test
suite) are reduced by MPI: ``Iallreduce(MPI.IN_PLACE, buf, SUM)`` then a scale by 1/world.  CuPy
buffers (a real GPU) are reduced by NCCL (``cupy.cuda.nccl``), in place in GPU memory on CuPy's
current stream (the stream gpunn's kernels run on), without a copy to the host; the NCCL unique id
is created on rank 0 and sent to the others with MPI.  ``backend="mpi"`` forces MPI for GPU buffers
too (through a host copy); ``backend="nccl"`` requires NCCL.

**Global batch.**  ``batch_size`` is always the *global* batch B: each step, the B examples of the
step (the same on every rank: all ranks draw the same permutation from the shared seed) are split
into ``world`` contiguous, near-equal parts (:func:`shard_bounds`), rank r taking part r.  The
gradient is the mean over all B examples (each rank's mean is weighted by its share when B does not
divide evenly), so k steps on N ranks equal k steps of one process with batch B, up to float
rounding.  The learning rate that suited one process with batch B suits N processes with global
batch B.

**Seeds.**  Everything that must agree across ranks (the data order, the initial weights, which
:func:`broadcast_parameters` copies from rank 0 anyway) uses the same seed on every rank; what must
differ per rank (e.g. the dropout masks of a model) can be seeded with :func:`rank_seed`.

**Failures.**  A rank that fails must not leave the others waiting forever in a collective:

* every collective waits at most ``timeout`` seconds (default 300, ``init(timeout=…)`` or the
  environment variable ``GPUNN_DIST_TIMEOUT``; 0 waits forever) and then raises
  :class:`DistributedTimeoutError` naming the collective, the step and the rank.  Host collectives
  are nonblocking MPI calls polled with ``Test()``; on a GPU the NCCL call is followed by an event
  polled on the host (with a timeout, each GPU collective is therefore also a host synchronisation;
  ``timeout=0`` leaves them fully asynchronous);
* with several ranks, an uncaught exception on any rank aborts the whole MPI job (``MPI_Abort``,
  like ``python -m mpi4py``) after printing its traceback, so the launcher stops every rank at once
  (``init(abort_on_exception=False)`` turns this off).  A communicator that timed out is unusable:
  the process then aborts the job at exit as well, instead of waiting for a hung peer.

Without an MPI launcher (plain ``python train.py``) there is one rank: rank 0 of a world of 1, no
MPI is imported, and every collective is a no-op, so the same script runs unchanged.  mpi4py and an
MPI library come with ``pip install "gpunn[dist]"`` (mpi4py and the MPICH wheel, whose ``mpirun``
and ``mpiexec`` land in the environment's ``bin/``).
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import time

from .backend import device_of, host_xp
from .validate import positive_int

np = host_xp()

__all__ = [
    "DEFAULT_TIMEOUT",
    "ENV_TIMEOUT",
    "Context",
    "DistributedError",
    "DistributedTimeoutError",
    "ShardedSampler",
    "allreduce_mean",
    "barrier",
    "broadcast",
    "broadcast_parameters",
    "get_context",
    "init",
    "is_initialized",
    "is_main",
    "launched_by_mpi",
    "local_device",
    "local_rank",
    "rank",
    "rank_seed",
    "shard_bounds",
    "shard_sizes",
    "shutdown",
    "world_size",
]

DEFAULT_TIMEOUT = 300.0
"""Seconds a collective may wait for the other ranks before :class:`DistributedTimeoutError`."""

ENV_TIMEOUT = "GPUNN_DIST_TIMEOUT"

# variables MPI launchers set in each process they start (MPICH/Hydra and Intel MPI: PMI_*,
# Open MPI: OMPI_COMM_WORLD_*, PMIx-based launchers incl. Slurm's srun --mpi=pmix: PMIX_RANK,
# MVAPICH: MV2_COMM_WORLD_*)
_LAUNCHER_VARS = (
    "PMI_RANK",
    "PMI_SIZE",
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_RANK",
    "PMIX_RANK",
    "MV2_COMM_WORLD_SIZE",
    "MV2_COMM_WORLD_RANK",
)
_LOCAL_RANK_VARS = (
    "MPI_LOCALRANKID",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "MV2_COMM_WORLD_LOCAL_RANK",
    "PMIX_LOCAL_RANK",
    "SLURM_LOCALID",
)
_INSTALL_HINT = 'pip install "gpunn[dist]"  (mpi4py and the MPICH wheel, which provides mpirun)'


class DistributedError(RuntimeError):
    """Distributed training cannot go on: MPI/NCCL missing, ranks that disagree on the run's
    configuration, a communicator broken by an earlier timeout."""


class DistributedTimeoutError(DistributedError, TimeoutError):
    """A collective did not complete within the timeout: another rank failed, hung or exited.

    Attributes: ``collective`` (e.g. ``"allreduce_mean(gradients)"``), ``step`` (1-based training
    step or None), ``rank``, ``world_size``, ``timeout`` (seconds)."""

    def __init__(self, message, collective, step, rank, world_size, timeout):
        super().__init__(message)
        self.collective, self.step = collective, step
        self.rank, self.world_size, self.timeout = rank, world_size, timeout


# --------------------------------------------------------------------------------------------------
# sharding (pure functions: no MPI)
# --------------------------------------------------------------------------------------------------


def shard_sizes(m: int, world: int) -> list:
    """How many of ``m`` examples each of ``world`` ranks gets: near-equal, the first ``m % world``
    ranks one more (``shard_sizes(10, 4) == [3, 3, 2, 2]``)."""
    m, world = int(m), int(world)
    if m < 0 or world < 1:
        raise ValueError(f"need m >= 0 and world >= 1, got m={m}, world={world}")
    q, r = divmod(m, world)
    return [q + (i < r) for i in range(world)]


def shard_bounds(m: int, rank: int, world: int) -> tuple:
    """``(start, stop)`` of rank ``rank``'s contiguous part of ``m`` examples split over ``world``
    ranks (see :func:`shard_sizes`); the parts of all ranks are disjoint and cover ``range(m)``."""
    m, rank, world = int(m), int(rank), int(world)
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    q, r = divmod(m, world)
    start = rank * q + min(rank, r)
    return start, start + q + (rank < r)


class ShardedSampler:
    """This rank's index arrays for each step of an epoch, in the global seeded order.

    ``iter(sampler)`` runs one epoch: it draws the epoch's permutation of ``range(n)`` from a host
    generator seeded with ``seed`` (the *same* on every rank, so all ranks agree on the global
    order; consecutive epochs continue the generator, as :class:`gpunn.Trainer` does, so a
    Trainer with the same seed visits the same batches), cuts it into global batches of
    ``batch_size`` (the last one shorter unless ``drop_last``) and yields rank ``rank``'s part of
    each (:func:`shard_bounds`).  Over an epoch, the parts of the ranks are disjoint and cover the
    data.  ``rank``/``world_size`` default to the current context's (:func:`init`).
    """

    def __init__(
        self, n: int, batch_size: int, seed=0, *, rank=None, world_size=None, drop_last: bool = False
    ):
        from .backend import check_seed

        n, batch_size = positive_int("n", n), positive_int("batch_size", batch_size)
        if rank is None or world_size is None:
            ctx = get_context()
            rank = ctx.rank if rank is None else rank
            world_size = ctx.world_size if world_size is None else world_size
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size}")
        self.n, self.batch_size, self.drop_last = int(n), int(batch_size), bool(drop_last)
        self.rank, self.world_size = int(rank), int(world_size)
        self.seed = check_seed(seed)
        self.rng = np.random.default_rng(self.seed)
        self.epoch = 0

    def __len__(self) -> int:
        """Steps per epoch."""
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def global_batches(self, order):
        """The global batches (index arrays) of one epoch's permutation ``order``."""
        bs = self.batch_size
        stop = (self.n // bs) * bs if self.drop_last else self.n
        return [order[s : min(s + bs, stop)] for s in range(0, stop, bs)]

    def __iter__(self):
        order = self.rng.permutation(self.n)
        self.epoch += 1
        for batch in self.global_batches(order):
            lo, hi = shard_bounds(batch.shape[0], self.rank, self.world_size)
            yield batch[lo:hi]


def rank_seed(seed, rank=None) -> int:
    """A seed for rank ``rank`` (default: this process's) derived from ``seed``: different on every
    rank, the same from run to run.  For what must differ per rank (dropout masks); the data order
    and the initial weights use the shared ``seed`` itself."""
    if rank is None:
        rank = get_context().rank
    ss = np.random.SeedSequence(int(seed), spawn_key=(int(rank),))
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def launched_by_mpi() -> bool:
    """True when this process was started by an MPI launcher (mpirun/mpiexec/srun)."""
    return any(v in os.environ for v in _LAUNCHER_VARS)


def _env_timeout():
    raw = os.environ.get(ENV_TIMEOUT)
    if raw is None or raw.strip() == "":
        return DEFAULT_TIMEOUT
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{ENV_TIMEOUT}={raw!r} is not a number of seconds") from None


def _check_timeout(timeout):
    if timeout is None:
        timeout = _env_timeout()
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or timeout != timeout
        or timeout < 0
    ):
        raise ValueError(f"timeout must be a number of seconds >= 0 (0: wait forever), got {timeout!r}")
    return None if timeout == 0 or timeout == float("inf") else float(timeout)


# --------------------------------------------------------------------------------------------------
# the context
# --------------------------------------------------------------------------------------------------


class Context:
    """This process's place in a data-parallel job: ``rank``, ``world_size``, ``local_rank``, the
    MPI communicator (``comm``, None without MPI), the ``timeout`` of every collective and the
    collectives themselves.  Obtain it with :func:`init`.

    ``stats`` accumulates, per collective name, ``[calls, seconds]`` spent waiting in it on this
    rank (for benchmarks: includes the wait for slower ranks).
    """

    def __init__(self, comm=None, *, timeout=None, backend: str = "auto"):
        if backend not in ("auto", "mpi", "nccl"):
            raise ValueError(f"backend must be 'auto', 'mpi' or 'nccl', got {backend!r}")
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.world_size = 1 if comm is None else comm.Get_size()
        self.timeout = _check_timeout(timeout)
        self.backend = backend
        self.broken = None  # why the communicator is unusable (a timed-out collective)
        self.stats = {}
        self._local_rank = None
        self._local_size = None
        self._nccl = None  # (device index, nccl module, NcclCommunicator)
        self._MPI = None
        if comm is not None:
            from mpi4py import MPI

            self._MPI = MPI

    # -- identity ------------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        """True on rank 0: the rank that prints, shows progress and writes checkpoints."""
        return self.rank == 0

    @property
    def local_rank(self) -> int:
        """This process's rank among the ranks on the same machine (which GPU it uses)."""
        if self._local_rank is None:
            for var in _LOCAL_RANK_VARS:
                if os.environ.get(var, "").isdigit() and self.comm is not None:
                    self._local_rank = int(os.environ[var])
                    break
            else:
                if self.comm is None or self.world_size == 1:
                    self._local_rank = 0
                else:  # ask MPI: the ranks sharing this node's memory
                    local = self.comm.Split_type(self._MPI.COMM_TYPE_SHARED, key=self.rank)
                    self._local_rank = local.Get_rank()
                    local.Free()
        return self._local_rank

    @property
    def local_size(self) -> int:
        """How many ranks of the job run on this machine (they share its cores); collective the first
        time with several ranks (every rank asks MPI)."""
        if getattr(self, "_local_size", None) is None:
            if self.comm is None or self.world_size == 1:
                self._local_size = 1
            else:
                local = self.comm.Split_type(self._MPI.COMM_TYPE_SHARED, key=self.rank)
                self._local_size = local.Get_size()
                local.Free()
        return self._local_size

    def __repr__(self) -> str:
        engine = "MPI" if self.comm is not None else "no MPI"
        return f"Context(rank {self.rank} of {self.world_size}, {engine}, timeout={self.timeout})"

    # -- waiting with a deadline -----------------------------------------------------------------
    def _check_usable(self, what):
        if self.broken is not None:
            raise DistributedError(f"{what}: the communicator is unusable since {self.broken}")

    def _timed_out(self, what, step, cleanup=None):
        at = f" at step {step}" if step is not None else ""
        self.broken = f"{what}{at} timed out on rank {self.rank}"
        if cleanup is not None:
            try:
                cleanup()
            except Exception:  # noqa: BLE001 - the timeout is the error to report
                pass
        _abort_at_exit(self)
        raise DistributedTimeoutError(
            f"gpunn.distributed: {what}{at} did not complete within {self.timeout:g} s on rank {self.rank} "
            f"of {self.world_size}: another rank has failed, hung or exited (look for its error above). "
            f"The communicator is unusable now. If a rank is legitimately slow (e.g. writing a large "
            f"checkpoint), raise the limit with init(timeout=...) or {ENV_TIMEOUT}.",
            what,
            step,
            self.rank,
            self.world_size,
            self.timeout,
        )

    def _poll(self, done, what, step, cleanup=None):
        """Return once ``done()`` is true; raise :class:`DistributedTimeoutError` after
        ``self.timeout`` seconds.  Polls without pause for the first 0.1 s (MPI progresses a
        nonblocking collective only inside such calls, as a blocking one spins; a collective of a
        step normally completes well within that), then sleeps up to 1 ms between polls (a rank
        waiting for a slow peer, e.g. one writing a checkpoint, then gives its core away)."""
        if done():
            return
        start = time.monotonic()
        deadline = None if self.timeout is None else start + self.timeout
        pause = 0.0
        while not done():
            now = time.monotonic()
            if deadline is not None and now > deadline:
                self._timed_out(what, step, cleanup)
            if now - start > 0.1:
                pause = min(0.001, pause * 2 or 5e-5)
                time.sleep(pause)

    def _wait(self, req, what, step):
        if self.timeout is None:
            req.Wait()
        else:
            self._poll(req.Test, what, step)

    def _timed(self, name, t0):
        s = self.stats.setdefault(name, [0, 0.0])
        s[0] += 1
        s[1] += time.perf_counter() - t0

    # -- collectives on device buffers -------------------------------------------------------------
    def allreduce_mean(self, buf, *, name: str = "buffer", step=None):
        """Average the 1-D contiguous float buffer ``buf`` over all ranks, in place (every rank
        ends with the same values).  NumPy buffers: MPI; CuPy buffers: NCCL (see the module
        docstring).  A no-op with one rank.  Returns ``buf``."""
        if self.world_size == 1:
            return buf
        what = f"allreduce_mean({name})"
        self._check_usable(what)
        _check_buffer(buf, what)
        t0 = time.perf_counter()
        with device_of(buf):
            if _is_host(buf):
                self._mpi_allreduce(buf, what, step)
            elif self._nccl_for(buf):
                self._nccl_allreduce(buf, what, step)
            else:  # backend="mpi" on a GPU: through a host copy
                host = _to_host(buf)
                self._mpi_allreduce(host, what, step)
                buf.set(host)
            buf *= buf.dtype.type(1.0 / self.world_size)
        self._timed("allreduce_mean", t0)
        return buf

    def broadcast(self, buf, root: int = 0, *, name: str = "buffer"):
        """Overwrite ``buf`` (a contiguous array) on every rank with rank ``root``'s, in place."""
        if self.world_size == 1:
            return buf
        what = f"broadcast({name})"
        self._check_usable(what)
        if not buf.flags.c_contiguous:
            raise ValueError(f"{what}: the buffer must be C-contiguous")
        t0 = time.perf_counter()
        with device_of(buf):
            if _is_host(buf):
                self._wait(self.comm.Ibcast(buf, root=root), what, None)
            elif self._nccl_for(buf):
                nccl, comm, stream = self._nccl_call(buf)
                comm.bcast(buf.data.ptr, buf.size, _nccl_dtype(nccl, buf, what), root, stream.ptr)
                self._nccl_wait(comm, stream, what, None)
            else:
                host = _to_host(buf)
                self._wait(self.comm.Ibcast(host, root=root), what, None)
                buf.set(host)
        self._timed("broadcast", t0)
        return buf

    # -- collectives on host values ------------------------------------------------------------------
    def allreduce_host(self, values, op: str = "sum", *, name: str = "values", step=None):
        """Sum (``op="sum"``) or maximum (``"max"``) of a host float64/int64 array over the ranks;
        returns a new array (the input is not changed)."""
        out = np.array(values, copy=True)
        if self.world_size == 1:
            return out
        what = f"allreduce({name})"
        self._check_usable(what)
        t0 = time.perf_counter()
        MPI = self._MPI
        self._wait(
            self.comm.Iallreduce(MPI.IN_PLACE, out, op=MPI.SUM if op == "sum" else MPI.MAX), what, step
        )
        self._timed("allreduce_host", t0)
        return out

    def allgather_host(self, values, *, name: str = "values"):
        """Every rank's copy of the same-shape host array ``values``, stacked: shape
        ``(world_size, *values.shape)``."""
        values = np.ascontiguousarray(values)
        if self.world_size == 1:
            return values[None].copy()
        what = f"allgather({name})"
        self._check_usable(what)
        out = np.empty((self.world_size, *values.shape), dtype=values.dtype)
        self._wait(self.comm.Iallgather(values, out), what, None)
        return out

    def vote(self, flag: bool, *, name: str = "vote"):
        """Start a nonblocking "does any rank say yes?" (logical or of ``flag``); returns a
        :class:`_Vote` whose ``result()`` waits for and returns the answer."""
        return _Vote(self, bool(flag), name)

    def barrier(self, *, name: str = "barrier"):
        """Wait until every rank has arrived (with the timeout)."""
        if self.world_size == 1:
            return
        self._check_usable(name)
        self._wait(self.comm.Ibarrier(), name, None)

    def bcast_bytes(self, data: bytes | None, root: int = 0, *, name: str = "bytes") -> bytes:
        """Rank ``root``'s ``data`` on every rank (length first, then the bytes), with the timeout."""
        if self.world_size == 1:
            return data
        what = f"broadcast({name})"
        self._check_usable(what)
        n = np.array([len(data) if self.rank == root else 0], dtype=np.int64)
        self._wait(self.comm.Ibcast(n, root=root), what, None)
        buf = (
            np.frombuffer(data, dtype=np.uint8).copy()
            if self.rank == root
            else np.empty(int(n[0]), dtype=np.uint8)
        )
        self._wait(self.comm.Ibcast(buf, root=root), what, None)
        return buf.tobytes()

    # -- NCCL ("auto" and "nccl": GPU buffers go through NCCL, an error if it is missing) --------------
    def _nccl_for(self, buf) -> bool:
        """Whether device buffer ``buf`` is reduced by NCCL: on a real GPU unless ``backend="mpi"``
        (the simulated GPU has no NCCL: its buffers go through a host copy, as with "mpi")."""
        return self.backend != "mpi" and not device_of(buf).simulated

    def _nccl_call(self, buf):
        """(nccl module, communicator for ``buf``'s GPU, CuPy's current stream), with ``buf``'s GPU
        current; the communicator is created on first use (collectively: every rank gets here in
        the same collective)."""
        import pickle

        xp = device_of(buf).xp
        index = buf.device.id
        if self._nccl is None or self._nccl[0] != index:
            nccl = _nccl_module(xp)
            with xp.cuda.Device(index):
                uid = nccl.get_unique_id() if self.rank == 0 else None
                data = self.bcast_bytes(pickle.dumps(uid) if self.rank == 0 else None, name="NCCL unique id")
                uid = pickle.loads(data)  # noqa: S301 - sent by rank 0 of this job over MPI
                comm = nccl.NcclCommunicator(self.world_size, uid, self.rank)
            if self._nccl is not None:
                self._nccl[2].destroy()
            self._nccl = (index, nccl, comm)
        _, nccl, comm = self._nccl
        return nccl, comm, xp.cuda.get_current_stream()

    def _nccl_allreduce(self, buf, what, step):
        nccl, comm, stream = self._nccl_call(buf)
        comm.allReduce(
            buf.data.ptr, buf.data.ptr, buf.size, _nccl_dtype(nccl, buf, what), nccl.NCCL_SUM, stream.ptr
        )
        self._nccl_wait(comm, stream, what, step)

    def _nccl_wait(self, comm, stream, what, step):
        """With a timeout: record an event after the NCCL call and poll it from the host, checking
        NCCL's asynchronous errors; abort the communicator on timeout."""
        if self.timeout is None:
            return
        event = importlib.import_module("cupy").cuda.Event(block=False, disable_timing=True)  # NCCL: real GPU
        event.record(stream)
        check = getattr(comm, "check_async_error", None)

        def done():
            if check is not None:
                check()
            return event.done

        self._poll(done, what, step, cleanup=comm.abort)

    def _mpi_allreduce(self, host, what, step):
        MPI = self._MPI
        if self.timeout is None:
            self.comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
        else:
            self._wait(self.comm.Iallreduce(MPI.IN_PLACE, host, op=MPI.SUM), what, step)

    def close(self):
        """Release the NCCL communicator (MPI itself is finalised by mpi4py at exit)."""
        if self._nccl is not None:
            try:
                self._nccl[2].destroy()
            finally:
                self._nccl = None


class _Vote:
    """A nonblocking logical-or over the ranks (an ``Iallreduce(MAX)`` of one integer)."""

    def __init__(self, ctx, flag, name):
        self.ctx, self.name = ctx, name
        self.buf = np.array([int(flag)], dtype=np.int64)
        self.req = None
        if ctx.world_size > 1:
            ctx._check_usable(name)
            MPI = ctx._MPI
            self.req = ctx.comm.Iallreduce(MPI.IN_PLACE, self.buf, op=MPI.MAX)

    def result(self, step=None) -> bool:
        if self.req is not None:
            self.ctx._wait(self.req, self.name, step)
            self.req = None
        return bool(self.buf[0])


def _is_host(buf) -> bool:
    return isinstance(buf, np.ndarray)


def _to_host(buf):
    return buf.get()


def _check_buffer(buf, what):
    dtype = getattr(buf, "dtype", None)
    if dtype is None or getattr(buf, "ndim", None) != 1:
        raise TypeError(f"{what}: expected a 1-D array (a model's .grads.flat), got {type(buf).__name__}")
    if np.dtype(dtype).name not in ("float32", "float64"):
        raise TypeError(f"{what}: expected float32 or float64, got {dtype}")
    if not buf.flags.c_contiguous:
        raise ValueError(f"{what}: the buffer must be C-contiguous (reduced in place)")


def _nccl_module(xp):
    """``cupy.cuda.nccl``, or DistributedError saying how to get NCCL."""
    try:
        nccl = importlib.import_module(f"{xp.__name__}.cuda.nccl")
    except Exception as exc:  # noqa: BLE001 - any import failure means the same to the user
        nccl, reason = None, f"{exc.__class__.__name__}: {exc}"
    else:
        reason = None if getattr(nccl, "available", True) else "CuPy cannot load the NCCL library"
    if reason is not None or not hasattr(nccl, "NcclCommunicator"):
        raise DistributedError(
            f"NCCL is not available for GPU data parallelism ({reason or 'no NcclCommunicator'}). "
            "Install NCCL for CuPy (e.g. `pip install nvidia-nccl-cu12`, see CuPy's installation guide, "
            "'Additional CUDA Libraries'), or pass backend='mpi' to init() to reduce GPU buffers "
            "through the host with MPI (slower)."
        )
    return nccl


def _nccl_dtype(nccl, buf, what):
    name = buf.dtype.name
    if name == "float32":
        return nccl.NCCL_FLOAT32
    if name == "float64":
        return nccl.NCCL_FLOAT64
    raise TypeError(f"{what}: NCCL reduction of {name} buffers is not supported (float32/float64)")


# --------------------------------------------------------------------------------------------------
# the process-wide context
# --------------------------------------------------------------------------------------------------

_context: Context | None = None
_abort_registered = False


def init(comm=None, *, timeout=None, backend: str = "auto", abort_on_exception: bool = True) -> Context:
    """Join the data-parallel job and return this process's :class:`Context` (also the process-wide
    one, see :func:`get_context`).  Idempotent: later calls return the same context (updating
    ``timeout`` when one is given).

    ``comm``: an mpi4py communicator to use (default ``MPI.COMM_WORLD`` when launched by an MPI
    launcher; without one, a single rank and no MPI).  ``timeout``: seconds any collective may wait
    (default ``$GPUNN_DIST_TIMEOUT`` or 300; 0 waits forever).  ``backend``: how GPU buffers are
    reduced: ``"auto"``/``"nccl"`` (NCCL) or ``"mpi"`` (host copy).  ``abort_on_exception``: with
    several ranks, abort the MPI job when an exception escapes on any rank.
    """
    global _context
    if _context is not None and comm is None:
        if timeout is not None:
            _context.timeout = _check_timeout(timeout)
        return _context
    if comm is None and launched_by_mpi():
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise DistributedError(
                f"this process was started by an MPI launcher, but mpi4py cannot be "
                f"imported ({exc}); install it: {_INSTALL_HINT}"
            ) from exc
        comm = MPI.COMM_WORLD
    ctx = Context(comm, timeout=timeout, backend=backend)
    if _context is not None:
        _context.close()
    _context = ctx
    if ctx.world_size > 1:  # the ranks on this machine share its cores (BLAS and Numba threads)
        from . import cpu_threads

        cpu_threads.set_local_ranks(ctx.local_size)
    if abort_on_exception and ctx.world_size > 1:
        _install_excepthook(ctx)
    return ctx


def get_context() -> Context:
    """The process-wide :class:`Context` (created by :func:`init` on first use)."""
    return _context if _context is not None else init()


def is_initialized() -> bool:
    return _context is not None


def shutdown() -> None:
    """Forget the process-wide context (and release its NCCL communicator)."""
    global _context
    if _context is not None:
        _context.close()
        _context = None


def rank() -> int:
    """This process's rank (0 … world_size−1)."""
    return get_context().rank


def world_size() -> int:
    """The number of ranks in the job (1 without an MPI launcher)."""
    return get_context().world_size


def local_rank() -> int:
    """This process's rank on its machine (0 … ranks per machine − 1)."""
    return get_context().local_rank


def is_main() -> bool:
    """True on rank 0."""
    return get_context().rank == 0


def local_device(name: str = "auto") -> str:
    """The device name this rank should use for ``name``: ``"cuda"``/``"gpu"`` become
    ``"cuda:<local rank>"`` (one GPU per process), anything else is returned unchanged.

    On a machine with usable GPUs, that GPU also becomes the process's current CUDA device (as
    ``torch.cuda.set_device`` does), so everything the rank allocates lives there; a local rank
    without a GPU of its own is a :class:`DistributedError` (launch at most one process per GPU)."""
    low = name.strip().lower() if isinstance(name, str) else name
    if low not in ("cuda", "gpu"):
        return name
    index = local_rank()
    from .backend import DeviceError, cuda_available, cuda_simulated
    from .backend import device as get_device

    if not cuda_simulated() and cuda_available(0):  # else the backend decides (simulator, CPU fallback)
        try:
            dev = get_device(f"cuda:{index}", strict=True)
        except DeviceError as exc:
            raise DistributedError(
                f"rank {rank()} is local rank {index} on its machine and uses GPU "
                f"{index}, which is not usable ({exc}); launch at most one process per "
                "GPU"
            ) from exc
        dev.xp.cuda.Device(index).use()
    return f"cuda:{index}"


def allreduce_mean(buf, *, name: str = "buffer", step=None):
    """Average ``buf`` (e.g. ``net.grads.flat``) over all ranks in place; see
    :meth:`Context.allreduce_mean`."""
    return get_context().allreduce_mean(buf, name=name, step=step)


def broadcast(buf, root: int = 0, *, name: str = "buffer"):
    """Overwrite ``buf`` on every rank with rank ``root``'s, in place."""
    return get_context().broadcast(buf, root, name=name)


def broadcast_parameters(model, root: int = 0) -> None:
    """Copy rank ``root``'s parameters (one flat buffer) and BatchNorm statistics to every rank."""
    ctx = get_context()
    ctx.broadcast(model.params.flat, root, name="parameters")
    for key, buf in sorted(getattr(model, "buffers", {}).items()):
        ctx.broadcast(buf, root, name=f"buffers[{key!r}]")


def barrier() -> None:
    """Wait for every rank (with the timeout)."""
    get_context().barrier()


# --------------------------------------------------------------------------------------------------
# failure handling
# --------------------------------------------------------------------------------------------------


def _install_excepthook(ctx):
    previous = sys.excepthook
    if getattr(previous, "_gpunn_abort", False):
        return

    def hook(exc_type, exc, tb):
        try:
            previous(exc_type, exc, tb)
        finally:
            sys.stderr.write(
                f"gpunn.distributed: rank {ctx.rank} of {ctx.world_size} stopped with an "
                f"uncaught {exc_type.__name__}; aborting the MPI job so that the other ranks "
                "do not wait for it\n"
            )
            _abort(ctx)

    hook._gpunn_abort = True
    sys.excepthook = hook


def _abort_at_exit(ctx):
    """After a timeout, abort the MPI job at interpreter exit: the peer that hung would otherwise keep
    the job (and MPI_Finalize) waiting forever."""
    global _abort_registered
    if _abort_registered or ctx.comm is None:
        return
    _abort_registered = True

    def abort():
        if ctx.broken is not None:
            _abort(ctx)

    atexit.register(abort)


def _abort(ctx):
    """Flush, give the launcher a moment to forward this rank's last output (the error message),
    then MPI_Abort the job."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not stop the abort
            pass
    time.sleep(0.3)
    ctx.comm.Abort(1)
