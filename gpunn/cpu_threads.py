"""How many CPU threads gpunn uses, decided per call, with no environment variable needed.

The policy (the measurements behind it are in benchmarks/RESULTS.md):

* **This process's cores**: the CPUs it may run on (its affinity mask), divided among the ranks of
  an MPI job on the same machine (``MPI_LOCALNRANKS``, ``OMPI_COMM_WORLD_LOCAL_SIZE``, … read from
  the launcher's environment, or set exactly by :func:`gpunn.distributed.init`), and capped by the
  BLAS thread count the process started with (``OPENBLAS_NUM_THREADS`` and the like still work) and
  by :func:`set_max_threads`.
* **GEMMs** (:func:`gemm`): single-threaded below ``GEMM_PARALLEL_MIN`` multiply-adds (m·k·n),
  where a second thread saves a few µs on an idle machine but costs milliseconds when its core is
  busy.  Larger ones use all of this process's cores in training (forward and backward of a
  training step): the shape alone decides, never the load, because OpenBLAS's results depend on
  its thread count and a model must not change its bits with the machine's load.  Evaluation
  GEMMs (``predict``, ``accuracy``, validation), whose results feed no parameter, use only the
  :func:`budget` (a 2-thread OpenBLAS GEMM stalls at every internal sync on a busy core).
* **gpunn's own parallel kernels** (Numba ``prange`` loops above a size, BatchNorm's row chunks on
  gpunn's helper threads): at most :func:`budget` threads, the cores that are idle or already ours
  (sampled from ``/proc/stat`` at most every ``SAMPLE_S`` seconds), so a core taken by another
  process is neither waited for nor spun on.  Their results do not depend on the thread count (each
  element's arithmetic is fixed; BatchNorm's reductions run over fixed row segments), so this
  adaptivity changes timings only.
* **Several Python threads**: Numba's ``workqueue`` layer (gpunn's default, its idle workers sleep)
  must not be entered from two threads at once; :func:`parallel_kernel` lets one thread at a time
  into a parallel kernel and runs the others' calls serially meanwhile (same results).  The BLAS
  thread count is process-wide, so :func:`gemm` only lets GEMMs wanting the same count run together.
"""

from __future__ import annotations

import collections
import os
import threading
import time

GEMM_PARALLEL_MIN = 1 << 25  # 33.5M: e.g. 256×256×512
"""GEMMs with fewer multiply-adds (m·k·n) than this run on one BLAS thread (see the module docstring;
measured in ``benchmarks/RESULTS.md``)."""

SAMPLE_S = 0.25
"""Seconds between two samples of the machine's idle cores (:func:`budget`)."""

_LOCAL_SIZE_VARS = (
    "MPI_LOCALNRANKS",
    "OMPI_COMM_WORLD_LOCAL_SIZE",
    "MV2_COMM_WORLD_LOCAL_SIZE",
    "PMIX_LOCAL_SIZE",
)
"""Ranks on this machine, as MPI launchers announce it (MPICH/Hydra, Open MPI, MVAPICH, PMIx)."""

_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

_local_ranks: int | None = None
_max_threads: int | None = None


def _env_local_ranks() -> int:
    for var in _LOCAL_SIZE_VARS:
        v = os.environ.get(var, "")
        if v.isdigit() and int(v) > 0:
            return int(v)
    return 1


def set_local_ranks(n: int) -> None:
    """Tell the policy that ``n`` processes of one job share this machine (gpunn.distributed does)."""
    global _local_ranks
    _local_ranks = max(1, int(n))
    _cores.cache = None


def set_max_threads(n: int | None) -> None:
    """Use at most ``n`` threads (``None``: no cap beyond the policy's)."""
    global _max_threads
    _max_threads = None if n is None else max(1, int(n))
    _cores.cache = None


def _cores() -> int:
    c = _cores.cache
    if c is None:
        ranks = _local_ranks if _local_ranks is not None else _env_local_ranks()
        c = max(1, _CPUS // ranks)
        if _max_threads is not None:
            c = min(c, _max_threads)
        c = _cores.cache = min(c, _blas.ceiling()) if _blas.available() else c
    return c


_cores.cache = None


def cores() -> int:
    """This process's share of the machine: the most threads gpunn ever uses (see the module docstring)."""
    return _cores()


# --------------------------------------------------------------------------------------------------
# idle cores
# --------------------------------------------------------------------------------------------------
def _read_proc_stat():
    """(idle, total) jiffies of all CPUs from /proc/stat, or None where there is none."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()[1:9]  # user nice system idle iowait irq softirq steal
    except OSError:
        return None
    v = [int(x) for x in fields]
    return v[3] + v[4], sum(v)


class _Load:
    """Samples how many cores this process could use now: the idle ones plus those it runs on."""

    def __init__(self):
        self.lock = threading.Lock()
        self.last = None  # (monotonic time, idle jiffies, total jiffies, own CPU seconds)
        self.value = None  # cores available at the last sample (None: not sampled yet)
        self.next = 0.0

    def sample(self, now: float) -> None:
        if not self.lock.acquire(blocking=False):
            return  # another thread is sampling
        try:
            stat = _read_proc_stat()
            if stat is None:
                self.next = float("inf")
                return
            t = os.times()
            cur = (now, stat[0], stat[1], t.user + t.system)
            if self.last is not None and cur[2] > self.last[2]:
                idle = (cur[1] - self.last[1]) / (cur[2] - self.last[2]) * (os.cpu_count() or 1)
                own = (cur[3] - self.last[3]) / max(now - self.last[0], 1e-6)
                self.value = int(idle + own + 0.3)
            self.last = cur
            self.next = now + SAMPLE_S
        finally:
            self.lock.release()


_load = _Load()


def budget() -> int:
    """Threads gpunn's own parallel kernels may use now: :func:`cores`, less the cores other processes
    keep busy (at least 1; 1 until two samples ``SAMPLE_S`` apart have measured the load)."""
    c = _cores()
    if c == 1:
        return 1
    now = time.monotonic()
    if now >= _load.next:
        _load.sample(now)
    v = _load.value
    return 1 if v is None else max(1, min(c, v))  # one thread until the first measurement


def kernel_threads() -> int:
    """Threads for one of gpunn's Numba parallel kernels: :func:`budget`, capped by Numba's thread
    count for the calling thread (``numba.set_num_threads``)."""
    b = budget()
    if b == 1:
        return 1
    import numba

    return max(1, min(b, numba.get_num_threads()))


# --------------------------------------------------------------------------------------------------
# gpunn's Numba parallel kernels
# --------------------------------------------------------------------------------------------------
_parallel_lock = threading.Lock()


def parallel_kernel(kernel, serial, args) -> None:
    """Run ``kernel(*args)`` (a ``prange`` kernel) on :func:`kernel_threads` threads, or ``serial(*args)``
    (the same arithmetic on the calling thread) when there is one thread to use or another Python
    thread is inside a parallel kernel (Numba's ``workqueue`` layer aborts on concurrent entry)."""
    threads = kernel_threads()
    if threads < 2 or not _parallel_lock.acquire(blocking=False):
        serial(*args)
        return
    try:
        import numba

        before = numba.get_num_threads()
        if before != threads:
            numba.set_num_threads(threads)
        try:
            kernel(*args)
        finally:
            if before != threads:
                numba.set_num_threads(before)
    finally:
        _parallel_lock.release()


# --------------------------------------------------------------------------------------------------
# BLAS
# --------------------------------------------------------------------------------------------------
class _Blas:
    """The BLAS libraries NumPy loaded (threadpoolctl's controllers), their thread count set only
    when it changes.  GEMMs wanting different counts do not overlap (the count is process-wide)."""

    def __init__(self):
        self.libs = None
        self.start = 1
        self.current = None
        self.active = 0  # GEMMs running with ``current`` threads
        self.queue = collections.deque()  # threads waiting for their turn, in order
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.sections = {}

    def _load(self):
        if self.libs is None:
            try:
                from threadpoolctl import ThreadpoolController

                self.libs = ThreadpoolController().select(user_api="blas").lib_controllers
            except Exception:  # noqa: BLE001 - no threadpoolctl or no introspectable BLAS: leave it alone
                self.libs = []
            self.start = max([lib.num_threads for lib in self.libs], default=1)
        return self.libs

    def available(self) -> bool:
        return bool(self._load())

    def ceiling(self) -> int:
        """The BLAS thread count the process started with (its environment's choice)."""
        self._load()
        return self.start

    def enter(self, n: int) -> None:
        """Wait until GEMMs on ``n`` threads may run, then count this one in.  First come, first
        served: a thread that has to wait queues, and newcomers queue behind it (no starvation)."""
        lock = self.lock
        lock.acquire()
        try:
            if self.current == n and not self.queue:  # the common case: no change, nobody waiting
                self.active += 1
                return
            if self.queue or (self.active and self.current != n):
                me = object()
                self.queue.append(me)
                while self.queue[0] is not me or (self.active and self.current != n):
                    self.cond.wait()
                self.queue.popleft()
                self.cond.notify_all()  # the next in line may join this run of GEMMs
            if self.current != n:  # only when no GEMM runs (active == 0)
                self._set(n)
            self.active += 1
        finally:
            lock.release()

    def _set(self, n: int) -> None:
        """Set every BLAS library to ``n`` threads.  threadpoolctl lets only one Python thread (the
        first to set a limit) change a process-wide pool and silently ignores the others; this gate
        already serialises the changes, so hand control to the calling thread first."""
        for lib in self.libs:
            clear = getattr(lib, "clear_controlling_thread", None)
            if clear is not None:
                clear(force=True)
            lib.set_num_threads(n)
        self.current = n

    def leave(self) -> None:
        lock = self.lock
        lock.acquire()
        self.active -= 1
        if not self.active and self.queue:
            self.cond.notify_all()
        lock.release()

    def section(self, n: int):
        s = self.sections.get(n)
        if s is None:
            s = self.sections[n] = _GemmSection(self, n)
        return s


class _GemmSection:
    """``with``: the BLAS thread count is ``n`` until the block ends."""

    __slots__ = ("blas", "n")

    def __init__(self, blas, n):
        self.blas, self.n = blas, n

    def __enter__(self):
        self.blas.enter(self.n)
        return self

    def __exit__(self, *exc):
        self.blas.leave()
        return False


class _NoSection:
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_blas = _Blas()
_NO_SECTION = _NoSection()


def gemm_threads(m: int, k: int, n: int, train: bool = True) -> int:
    """BLAS threads for an (m×k)·(k×n) product: 1 below ``GEMM_PARALLEL_MIN`` multiply-adds; else
    :func:`cores` in training (the shape alone decides: the model's bits must not depend on the
    load), :func:`budget` in evaluation (outputs only: their last bits may follow the idle cores)."""
    if m * k * n < GEMM_PARALLEL_MIN:
        return 1
    return _cores() if train else budget()


def matmul(matmul_fn, a, b, out=None, train: bool = True):
    """``matmul_fn(a, b, out=out)`` (the host's ``matmul``) with the BLAS thread count of
    :func:`gemm`: what :class:`gpunn.layers.Affine` calls for every host GEMM.  The same gate as
    :func:`gemm`, with its common case (the count unchanged, nobody waiting) inline: a training step
    makes up to 8 GEMMs, and this is ~0.5 µs cheaper a GEMM than the ``with`` form."""
    blas = _blas
    libs = blas.libs if blas.libs is not None else blas._load()
    if not libs:
        return matmul_fn(a, b, out=out)
    t = gemm_threads(a.shape[0], a.shape[1], b.shape[1], train)
    lock = blas.lock
    lock.acquire()
    if blas.current == t and not blas.queue:
        blas.active += 1
        lock.release()
    else:
        lock.release()
        blas.enter(t)
    try:
        return matmul_fn(a, b, out=out)
    finally:
        blas.leave()


def gemm(m: int, k: int, n: int, train: bool = True):
    """A context for one (m×k)·(k×n) GEMM with the policy's BLAS thread count::

    with cpu_threads.gemm(m, k, n):
        numpy.matmul(a, b, out=out)
    """
    if not _blas.available():
        return _NO_SECTION
    return _blas.section(gemm_threads(m, k, n, train))
