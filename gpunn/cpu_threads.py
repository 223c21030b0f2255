"""How many CPU threads gpunn uses, decided per call, with no environment variable needed.

The policy (the measurements behind it are in benchmarks/RESULTS.md):

* **This process's cores**: the CPUs it may run on (its affinity mask), divided among the ranks of
  an MPI job on the same machine (``MPI_LOCALNRANKS``, ``OMPI_COMM_WORLD_LOCAL_SIZE``, … read from
  the launcher's environment, or set exactly by :func:`gpunn.distributed.init`), and capped by the
  BLAS thread count the process started with (``OPENBLAS_NUM_THREADS`` and the like still work) and
  by :func:`set_max_threads`.
* **GEMMs** (:func:`gemm_threads`): those of at most ``GEMM_SERIAL_MAX`` multiply-adds (m·k·n)
  pass straight through (OpenBLAS runs them on the calling thread at any thread count: same bits,
  same time).  The others use :func:`budget` threads, the cores idle or already ours: a second
  thread makes a 64×784×64 GEMM 1.7× faster on an idle machine, and costs milliseconds per GEMM
  when its core is busy.  OpenBLAS's summation order depends on its thread count, so with this
  adaptivity a GEMM's last bits may follow the machine's load.  :func:`set_reproducible` (or
  ``GPUNN_REPRODUCIBLE=1``) fixes the count by shape instead -- one thread below
  ``GEMM_PARALLEL_MIN`` multiply-adds, :func:`cores` above -- so that a run's bits never depend on
  the load (bit-exact resume across loads, the test suite).
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

GEMM_SERIAL_MAX = 1 << 18  # 262,144: e.g. 64×64×64
"""GEMMs of at most this many multiply-adds (m·k·n) run on the calling thread whatever the BLAS
thread count (OpenBLAS threads from 2 × 65,536 × ``GEMM_MULTITHREAD_THRESHOLD`` (4)); gpunn lets them
through without its gate.  Measured in ``benchmarks/RESULTS.md``: same bits and time at 1 and 2 threads."""

GEMM_PARALLEL_MIN = 1 << 25  # 33.5M: e.g. 256×256×512
"""In reproducible mode (:func:`set_reproducible`), GEMMs with fewer multiply-adds than this run on
one BLAS thread and larger ones on :func:`cores` (the shape alone decides)."""

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
_reproducible = os.environ.get("GPUNN_REPRODUCIBLE", "") not in ("", "0")


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
    _policy_changed()


def set_max_threads(n: int | None) -> None:
    """Use at most ``n`` threads (``None``: no cap beyond the policy's)."""
    global _max_threads
    _max_threads = None if n is None else max(1, int(n))
    _policy_changed()


def _policy_changed() -> None:
    """Forget what was derived from the core count (call it with no GEMM of this process running)."""
    _cores.cache = None
    _blas.single = False


def set_reproducible(on: bool = True) -> None:
    """Fix each GEMM's BLAS thread count by its shape (``on``), so that results never depend on the
    machine's load, or let GEMMs follow the idle cores (``False``, the default unless the environment
    sets ``GPUNN_REPRODUCIBLE=1``).  See the module docstring."""
    global _reproducible
    _reproducible = bool(on)


def reproducible() -> bool:
    """Whether GEMM thread counts follow shapes only (:func:`set_reproducible`)."""
    return _reproducible


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
_load.sample(time.monotonic())  # the first sample at import: the load is known SAMPLE_S later


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
        self.load_lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.sections = {}
        self.single = False  # one core for this process and BLAS set to 1 thread: no gate needed

    def _load(self):
        """threadpoolctl's controllers of the BLAS libraries, found once (by the first thread to ask:
        a later look could read the thread count this gate has already lowered)."""
        with self.load_lock:
            if self.libs is None:
                try:
                    from threadpoolctl import ThreadpoolController

                    libs = ThreadpoolController().select(user_api="blas").lib_controllers
                except Exception:  # noqa: BLE001 - no threadpoolctl or no introspectable BLAS: leave it alone
                    libs = []
                self.start = max([lib.num_threads for lib in libs], default=1)
                self.libs = libs
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


def gemm_threads(m: int, k: int, n: int, train: bool = True) -> int | None:
    """BLAS threads for an (m×k)·(k×n) product: ``None`` (any count: BLAS runs it on the calling
    thread) up to ``GEMM_SERIAL_MAX`` multiply-adds; else :func:`budget`, or in reproducible mode 1
    below ``GEMM_PARALLEL_MIN`` and :func:`cores` above in training (evaluation GEMMs, whose results
    feed no parameter, always follow :func:`budget`)."""
    macs = m * k * n
    if macs <= GEMM_SERIAL_MAX:
        return None
    if not _reproducible or not train:
        return budget()
    return 1 if macs < GEMM_PARALLEL_MIN else _cores()


def matmul(matmul_fn, a, b, out=None, train: bool = True):
    """``matmul_fn(a, b, out=out)`` (the host's ``matmul``) with the BLAS thread count of
    :func:`gemm_threads`: what :class:`gpunn.layers.Affine` calls for every host GEMM.  The gate of
    :func:`gemm` with its common cases inline (a training step makes up to 8 GEMMs): GEMMs that
    need no thread count, and every GEMM once this process has one core (BLAS then stays on 1)."""
    blas = _blas
    m, k = a.shape
    if blas.single or m * k * b.shape[1] <= GEMM_SERIAL_MAX:
        return matmul_fn(a, b, out=out)
    libs = blas.libs if blas.libs is not None else blas._load()
    if not libs:
        return matmul_fn(a, b, out=out)
    t = gemm_threads(m, k, b.shape[1], train)
    lock = blas.lock
    with lock:
        fast = blas.current == t and not blas.queue
        if fast:
            blas.active += 1
    if not fast:
        blas.enter(t)
    try:
        return matmul_fn(a, b, out=out)
    finally:
        blas.leave()
        if t == 1 and _cores() == 1:  # every GEMM wants 1 thread from now on, and BLAS has it
            blas.single = True


def gemm(m: int, k: int, n: int, train: bool = True):
    """A context for one (m×k)·(k×n) GEMM with the policy's BLAS thread count::

    with cpu_threads.gemm(m, k, n):
        numpy.matmul(a, b, out=out)
    """
    t = gemm_threads(m, k, n, train)
    if t is None or not _blas.available():
        return _NO_SECTION
    return _blas.section(t)
