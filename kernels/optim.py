"""Optimizer update rules: each written once as a scalar ``@njit`` function, compiled for the CPU
(the ``*_cpu`` parallel loops below) and for CUDA (``optim_cuda.py``), so the two cannot drift.

Every kernel takes ``(p, g, *state, *hyper, wd, n_decay)`` over 1-D C-contiguous arrays of one dtype,
where ``state`` and ``hyper`` are the rule's own parameters after ``(p, g)``, *by name*: the optimizer
class lists its state arrays in ``slots`` and returns its scalars from ``scalars()`` as a dict keyed
by the rule's parameter names (``gpunn.optim.base`` orders them by the rule's signature, and the
tests check that every loop below repeats its rule's parameter names).  Adding a rule: write it
here with its ``_span``/``_cpu`` pair, its CUDA kernel in ``optim_cuda.py``, and its class (with its
reference) in ``gpunn/optim/<name>.py``; nothing else lists rules.  Weight decay:
λ = ``wd`` is added to the gradient (g ← g + λθ) for elements ``i < n_decay`` only (the weights;
biases and BatchNorm parameters sit after them in a model's flat buffer).  AdamW and Lion are the
exception: their ``wd`` slot carries the decoupled shrink ``ηλ`` (θ ← θ − ηλθ before the step).

Hyper-parameters arrive as scalars of the array dtype, and every constant a rule needs (``1 − β``,
Adam's bias corrections) is computed on the host and passed in: a Python float literal in a rule
(``1.0 - b``) would silently promote a float32 rule to float64.  Rules use no literals at all.

CPU layout (why the loops look the way they do; timings on the 2-core AMD EPYC dev VM):

* Every inner loop starts at index 0 of a slice.  A loop ``for i in range(lo, hi)`` over the whole
  array keeps Numba's negative-index wrap-around check, which stops LLVM from vectorising it:
  SGD on 51k floats took 27 µs that way, 4.5 µs on a slice.
* The weight-decay boundary is not tested per element: each span runs ``[0, s)`` with decay and
  ``[s, size)`` without.  (Measured: with ``error_model="numpy"`` a per-element ``i < n_decay``
  select still vectorises -- Adam on 51k floats 17.1 µs vs 16.4 µs split -- so this is a small
  gain, not a necessity.)
* Buffers below ``PARALLEL_MIN`` elements (4M: every model of the textbook and the examples) run
  serially on the calling thread.  Measured inside a training-like loop (a GEMM between updates, so
  the pool's threads have gone to sleep as they do between the steps of a training loop), Adam on
  2 threads: 65k parameters serial 24 µs vs ``prange`` 99 µs; 90k (784-100-100-10) 31 vs 111 µs;
  262k 85 vs 159 µs; 1.05M 354 vs 429 µs; 1.86M 1030 vs 1162 µs.  A parallel region costs
  ~80-120 µs to wake the ``workqueue`` workers, and at the large sizes one core already streams
  at the machine's memory bandwidth (gpunn's own helper threads, ``threads.py``, did no better:
  1.86M 1562 vs 1498 µs).  Above it, on machines where one core cannot saturate memory, the buffer
  is cut into ``n // CHUNK`` chunks dealt to the threads by one ``prange`` (one region per step).
* No ``fastmath``: the large steps are memory-bound (it changes nothing there); on the small
  compute-bound Adam step it saved ~11 % (15.6 → 13.8 µs), not worth letting LLVM reassociate the
  rules and assume no NaN/Inf (an overflowing gradient must propagate, not vanish).  The rules
  are shared with CUDA, where ``fastmath`` would also mean approximate sqrt and division.
"""

import math

from numba import njit, prange

from . import CPU_OPTIONS, RULE_OPTIONS

SERIAL_OPTIONS = dict(error_model="numpy", cache=True)
"""Options of the serial CPU span loops (no ``parallel``: they run inside one thread)."""

PARALLEL_MIN = 1 << 22
"""Below this many elements a CPU kernel runs on the calling thread (no thread-pool wake-up)."""

CHUNK = 1 << 14
"""About how many elements a chunk of a parallel CPU kernel has (Numba's scheduler deals contiguous
runs of chunks to the threads)."""


# --------------------------------------------------------------------------------------------
# Scalar rules (shared by CPU and CUDA).  Scalars in, scalars out; no literals, no allocation.
# --------------------------------------------------------------------------------------------
@njit(**RULE_OPTIONS)
def sgd(p, g, lr):
    """The update of :class:`gpunn.optim.SGD` (its docstring has the formula)."""
    return p - lr * g


@njit(**RULE_OPTIONS)
def momentum(p, g, v, lr, alpha):
    """The update of :class:`gpunn.optim.Momentum` (formula in its docstring); ``alpha`` is ``momentum``."""
    v = alpha * v - lr * g
    return p + v, v


@njit(**RULE_OPTIONS)
def nesterov(p, g, b, lr, mu):
    """The update of :class:`gpunn.optim.Nesterov` (PyTorch's form; formula in its docstring)."""
    b = mu * b + g
    return p - lr * (g + mu * b), b


@njit(**RULE_OPTIONS)
def nesterov_saito(p, g, v, lr, mu, mu2, c):
    """The update of :class:`gpunn.optim.Nesterov` with ``form="saito"`` (formula in its docstring);
    ``mu2`` = μ·μ and ``c`` = (1+μ)·η are computed on the host, in Saito's order of operations."""
    v = mu * v - lr * g
    return p + mu2 * v - c * g, v


@njit(**RULE_OPTIONS)
def adagrad(p, g, r, lr, eps):
    """The update of :class:`gpunn.optim.AdaGrad` (formula in its docstring)."""
    r = r + g * g
    return p - lr * g / (math.sqrt(r) + eps), r


@njit(**RULE_OPTIONS)
def adadelta(p, g, s, r, lr, rho, omrho, eps):
    """The update of :class:`gpunn.optim.AdaDelta` (formula in its docstring); ``omrho`` = 1 − ρ."""
    s = rho * s + omrho * g * g
    d = math.sqrt((r + eps) / (s + eps)) * g
    return p - lr * d, s, rho * r + omrho * d * d


@njit(**RULE_OPTIONS)
def rmsprop(p, g, r, lr, rho, omrho, eps):
    """The update of :class:`gpunn.optim.RMSprop` (formula in its docstring); ``omrho`` = 1 − ρ."""
    r = rho * r + omrho * g * g
    return p - lr * g / (math.sqrt(r) + eps), r


@njit(**RULE_OPTIONS)
def adam(p, g, m, v, lr_t, b1, omb1, b2, omb2, eps, rbc2):
    """The update of :class:`gpunn.optim.Adam` (formula in its docstring), with the bias corrections
    bc_k = 1 − β_kᵗ folded into scalars computed on the host each step: ``lr_t = η/bc1``,
    ``rbc2 = 1/√bc2`` (so m̂/(√v̂ + ε) is computed as m/(√v·rbc2 + ε)); ``omb_k`` = 1 − β_k."""
    m = b1 * m + omb1 * g
    v = b2 * v + omb2 * g * g
    return p - lr_t * m / (math.sqrt(v) * rbc2 + eps), m, v


adamw = adam
"""AdamW's scalar rule is Adam's: the decoupled shrink (:class:`gpunn.optim.AdamW`) is in its loops."""


@njit(**RULE_OPTIONS)
def amsgrad(p, g, m, v, v_max, lr_t, b1, omb1, b2, omb2, eps, rbc2):
    """The update of :class:`gpunn.optim.AMSGrad` (formula in its docstring), with :func:`adam`'s
    scalars.  ``v_max >= v`` is false for a NaN v, so a NaN reaches v_max as in ``torch.maximum``."""
    m = b1 * m + omb1 * g
    v = b2 * v + omb2 * g * g
    v_max = v_max if v_max >= v else v
    return p - lr_t * m / (math.sqrt(v_max) * rbc2 + eps), m, v, v_max


@njit(**RULE_OPTIONS)
def lion(p, g, m, lr, b1, omb1, b2, omb2):
    """The update of :class:`gpunn.optim.Lion` (formula in its docstring) without the decoupled decay,
    which its loops apply before it.

    η·sign(c) is ``copysign(lr, c)`` (η ≥ 0), except that c = ±0 moves nothing and a NaN c passes
    through (sign(0) = 0 and sign(NaN) = NaN, as ``torch.sign``): no literal, no branch on a
    constant of another type."""
    c = b1 * m + omb1 * g
    step = c if c == -c or c != c else math.copysign(lr, c)
    return p - step, b2 * m + omb2 * g


# --------------------------------------------------------------------------------------------
# CPU kernels.  ``<rule>_span(p, g, *state, *hyper, wd, s)`` updates whole (sliced) arrays on one
# thread, with decay on [0, s) and without on [s, size): two loops starting at 0, so LLVM
# vectorises them (see the module docstring).  ``<rule>_cpu`` runs one span serially, or cuts the
# buffer into ``n_chunks`` contiguous chunks spread over the threads by one ``prange``.
# --------------------------------------------------------------------------------------------
@njit(**SERIAL_OPTIONS)
def n_chunks(n):
    """How many contiguous chunks a CPU kernel cuts ``n`` elements into (1: run serially)."""
    return 1 if n < PARALLEL_MIN else n // CHUNK


@njit(**SERIAL_OPTIONS)
def split(n_decay, lo, hi):
    """Where the weight-decay boundary falls inside the chunk [lo, hi), relative to ``lo``."""
    return min(max(n_decay - lo, 0), hi - lo)


@njit(**SERIAL_OPTIONS)
def sgd_span(p, g, lr, wd, s):
    for i in range(s):
        p[i] = sgd(p[i], g[i] + wd * p[i], lr)
    p, g = p[s:], g[s:]
    for i in range(p.size):
        p[i] = sgd(p[i], g[i], lr)


@njit(**CPU_OPTIONS)
def sgd_cpu(p, g, lr, wd, n_decay):
    n = p.size
    k = n_chunks(n)
    if k == 1:
        sgd_span(p, g, lr, wd, min(n_decay, n))
    else:
        for c in prange(k):
            lo, hi = c * n // k, (c + 1) * n // k
            sgd_span(p[lo:hi], g[lo:hi], lr, wd, split(n_decay, lo, hi))


@njit(**SERIAL_OPTIONS)
def momentum_span(p, g, v, lr, alpha, wd, s):
    for i in range(s):
        p[i], v[i] = momentum(p[i], g[i] + wd * p[i], v[i], lr, alpha)
    p, g, v = p[s:], g[s:], v[s:]
    for i in range(p.size):
        p[i], v[i] = momentum(p[i], g[i], v[i], lr, alpha)


@njit(**CPU_OPTIONS)
def momentum_cpu(p, g, v, lr, alpha, wd, n_decay):
    n = p.size
    k = n_chunks(n)
    if k == 1:
        momentum_span(p, g, v, lr, alpha, wd, min(n_decay, n))
    else:
        for c in prange(k):
            lo, hi = c * n // k, (c + 1) * n // k
            momentum_span(p[lo:hi], g[lo:hi], v[lo:hi], lr, alpha, wd, split(n_decay, lo, hi))


@njit(**SERIAL_OPTIONS)
def nesterov_span(p, g, b, lr, mu, wd, s):
    for i in range(s):
        p[i], b[i] = nesterov(p[i], g[i] + wd * p[i], b[i], lr, mu)
    p, g, b = p[s:], g[s:], b[s:]
    for i in range(p.size):
        p[i], b[i] = nesterov(p[i], g[i], b[i], lr, mu)


@njit(**CPU_OPTIONS)
def nesterov_cpu(p, g, b, lr, mu, wd, n_decay):
    n = p.size
    k = n_chunks(n)
    if k == 1:
        nesterov_span(p, g, b, lr, mu, wd, min(n_decay, n))
    else:
        for c in prange(k):
            lo, hi = c * n // k, (c + 1) * n // k
            nesterov_span(p[lo:hi], g[lo:hi], b[lo:hi], lr, mu, wd, split(n_decay, lo, hi))


@njit(**SERIAL_OPTIONS)
def nesterov_saito_span(p, g, v, lr, mu, mu2, c, wd, s):
    for i in range(s):
        p[i], v[i] = nesterov_saito(p[i], g[i] + wd * p[i], v[i], lr, mu, mu2, c)
    p, g, v = p[s:], g[s:], v[s:]
    for i in range(p.size):
        p[i], v[i] = nesterov_saito(p[i], g[i], v[i], lr, mu, mu2, c)


@njit(**CPU_OPTIONS)
def nesterov_saito_cpu(p, g, v, lr, mu, mu2, c, wd, n_decay):
    n = p.size
    k = n_chunks(n)
    if k == 1:
        nesterov_saito_span(p, g, v, lr, mu, mu2, c, wd, min(n_decay, n))
    else:
        for i in prange(k):
            lo, hi = i * n // k, (i + 1) * n // k
            nesterov_saito_span(p[lo:hi], g[lo:hi], v[lo:hi], lr, mu, mu2, c, wd, split(n_decay, lo, hi))


@njit(**SERIAL_OPTIONS)
def adagrad_span(p, g, r, lr, eps, wd, s):
    for i in range(s):
        p[i], r[i] = adagrad(p[i], g[i] + wd * p[i], r[i], lr, eps)
    p, g, r = p[s:], g[s:], r[s:]
    for i in range(p.size):
        p[i], r[i] = adagrad(p[i], g[i], r[i], lr, eps)


@njit(**CPU_OPTIONS)
def adagrad_cpu(p, g, r, lr, eps, wd, n_decay):
    n = p.size
    k = n_chunks(n)
    if k == 1:
        adagrad_span(p, g, r, lr, eps, wd, min(n_decay, n))
    else:
        for c in prange(k):
            lo, hi = c * n // k, (c + 1) * n // k
            adagrad_span(p[lo:hi], g[lo:hi], r[lo:hi], lr, eps, wd, split(n_decay, lo, hi))


@njit(**SERIAL_OPTIONS)
def adadelta_span(p, g, s, r, lr, rho, omrho, eps, wd, cut):
    for i in range(cut):
        p[i], s[i], r[i] = adadelta(p[i], g[i] + wd * p[i], s[i], r[i], lr, rho, omrho, eps)
    p, g, s, r = p[cut:], g[cut:], s[cut:], r[cut:]
    for i in range(p.size):
        p[i], s[i], r[i] = adadelta(p[i], g[i], s[i], r[i], lr, rho, omrho, eps)


@njit(**CPU_OPTIONS)
def adadelta_cpu(p, g, s, r, lr, rho, omrho, eps, wd, n_decay):
    n = p.size
    k = n_chunks(n)
    if k == 1:
        adadelta_span(p, g, s, r, lr, rho, omrho, eps, wd, min(n_decay, n))
    else:
        for c in prange(k):
            lo, hi = c * n // k, (c + 1) * n // k
            adadelta_span(
                p[lo:hi], g[lo:hi], s[lo:hi], r[lo:hi], lr, rho, omrho, eps, wd, split(n_decay, lo, hi)
            )


@njit(**SERIAL_OPTIONS)
def rmsprop_span(p, g, r, lr, rho, omrho, eps, wd, s):
    for i in range(s):
        p[i], r[i] = rmsprop(p[i], g[i] + wd * p[i], r[i], lr, rho, omrho, eps)
    p, g, r = p[s:], g[s:], r[s:]
    for i in range(p.size):
        p[i], r[i] = rmsprop(p[i], g[i], r[i], lr, rho, omrho, eps)


@njit(**CPU_OPTIONS)
def rmsprop_cpu(p, g, r, lr, rho, omrho, eps, wd, n_decay):
    n = p.size
    k = n_chunks(n)
    if k == 1:
        rmsprop_span(p, g, r, lr, rho, omrho, eps, wd, min(n_decay, n))
    else:
        for c in prange(k):
            lo, hi = c * n // k, (c + 1) * n // k
            rmsprop_span(p[lo:hi], g[lo:hi], r[lo:hi], lr, rho, omrho, eps, wd, split(n_decay, lo, hi))


@njit(**SERIAL_OPTIONS)
def adam_span(p, g, m, v, lr_t, b1, omb1, b2, omb2, eps, rbc2, wd, s):
    for i in range(s):
        p[i], m[i], v[i] = adam(p[i], g[i] + wd * p[i], m[i], v[i], lr_t, b1, omb1, b2, omb2, eps, rbc2)
    p, g, m, v = p[s:], g[s:], m[s:], v[s:]
    for i in range(p.size):
        p[i], m[i], v[i] = adam(p[i], g[i], m[i], v[i], lr_t, b1, omb1, b2, omb2, eps, rbc2)


@njit(**CPU_OPTIONS)
def adam_cpu(p, g, m, v, lr_t, b1, omb1, b2, omb2, eps, rbc2, wd, n_decay):
    n = p.size
    k = n_chunks(n)
    if k == 1:
        adam_span(p, g, m, v, lr_t, b1, omb1, b2, omb2, eps, rbc2, wd, min(n_decay, n))
    else:
        for c in prange(k):
            lo, hi = c * n // k, (c + 1) * n // k
            adam_span(
                p[lo:hi],
                g[lo:hi],
                m[lo:hi],
                v[lo:hi],
                lr_t,
                b1,
                omb1,
                b2,
                omb2,
                eps,
                rbc2,
                wd,
                split(n_decay, lo, hi),
            )


@njit(**SERIAL_OPTIONS)
def adamw_span(p, g, m, v, lr_t, b1, omb1, b2, omb2, eps, rbc2, shrink, s):
    for i in range(s):
        p[i], m[i], v[i] = adam(p[i] - shrink * p[i], g[i], m[i], v[i], lr_t, b1, omb1, b2, omb2, eps, rbc2)
    p, g, m, v = p[s:], g[s:], m[s:], v[s:]
    for i in range(p.size):
        p[i], m[i], v[i] = adam(p[i], g[i], m[i], v[i], lr_t, b1, omb1, b2, omb2, eps, rbc2)


@njit(**CPU_OPTIONS)
def adamw_cpu(p, g, m, v, lr_t, b1, omb1, b2, omb2, eps, rbc2, shrink, n_decay):
    n = p.size
    k = n_chunks(n)
    if k == 1:
        adamw_span(p, g, m, v, lr_t, b1, omb1, b2, omb2, eps, rbc2, shrink, min(n_decay, n))
    else:
        for c in prange(k):
            lo, hi = c * n // k, (c + 1) * n // k
            adamw_span(
                p[lo:hi],
                g[lo:hi],
                m[lo:hi],
                v[lo:hi],
                lr_t,
                b1,
                omb1,
                b2,
                omb2,
                eps,
                rbc2,
                shrink,
                split(n_decay, lo, hi),
            )


@njit(**SERIAL_OPTIONS)
def amsgrad_span(p, g, m, v, v_max, lr_t, b1, omb1, b2, omb2, eps, rbc2, wd, s):
    for i in range(s):
        p[i], m[i], v[i], v_max[i] = amsgrad(
            p[i], g[i] + wd * p[i], m[i], v[i], v_max[i], lr_t, b1, omb1, b2, omb2, eps, rbc2
        )
    p, g, m, v, v_max = p[s:], g[s:], m[s:], v[s:], v_max[s:]
    for i in range(p.size):
        p[i], m[i], v[i], v_max[i] = amsgrad(
            p[i], g[i], m[i], v[i], v_max[i], lr_t, b1, omb1, b2, omb2, eps, rbc2
        )


@njit(**CPU_OPTIONS)
def amsgrad_cpu(p, g, m, v, v_max, lr_t, b1, omb1, b2, omb2, eps, rbc2, wd, n_decay):
    n = p.size
    k = n_chunks(n)
    if k == 1:
        amsgrad_span(p, g, m, v, v_max, lr_t, b1, omb1, b2, omb2, eps, rbc2, wd, min(n_decay, n))
    else:
        for c in prange(k):
            lo, hi = c * n // k, (c + 1) * n // k
            amsgrad_span(
                p[lo:hi],
                g[lo:hi],
                m[lo:hi],
                v[lo:hi],
                v_max[lo:hi],
                lr_t,
                b1,
                omb1,
                b2,
                omb2,
                eps,
                rbc2,
                wd,
                split(n_decay, lo, hi),
            )


@njit(**SERIAL_OPTIONS)
def lion_span(p, g, m, lr, b1, omb1, b2, omb2, shrink, s):
    for i in range(s):
        p[i], m[i] = lion(p[i] - shrink * p[i], g[i], m[i], lr, b1, omb1, b2, omb2)
    p, g, m = p[s:], g[s:], m[s:]
    for i in range(p.size):
        p[i], m[i] = lion(p[i], g[i], m[i], lr, b1, omb1, b2, omb2)


@njit(**CPU_OPTIONS)
def lion_cpu(p, g, m, lr, b1, omb1, b2, omb2, shrink, n_decay):
    n = p.size
    k = n_chunks(n)
    if k == 1:
        lion_span(p, g, m, lr, b1, omb1, b2, omb2, shrink, min(n_decay, n))
    else:
        for c in prange(k):
            lo, hi = c * n // k, (c + 1) * n // k
            lion_span(p[lo:hi], g[lo:hi], m[lo:hi], lr, b1, omb1, b2, omb2, shrink, split(n_decay, lo, hi))


def serial_kernel(rule: str):
    """The serial twin of ``<rule>_cpu``: the same arguments, the whole buffer as one span on the calling
    thread (every element gets the same arithmetic as in the parallel kernel)."""
    span = globals()[f"{rule}_span"]

    def run(p, *args):
        span(p, *args[:-1], min(args[-1], p.size))

    return run
