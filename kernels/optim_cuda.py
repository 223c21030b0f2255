"""CUDA kernels of the optimizer rules in ``optim.py``: grid-stride loops calling the same scalar
``@njit`` rules (numba-cuda compiles them as device functions).  Launched by
``gpunn.kernels.cuda_ops.elementwise``, which picks the grid and CuPy's current stream, and skips
``n == 0``.

Arguments are those of the CPU kernels: ``(p, g, *state, *hyper, wd, n_decay)``.  On a GPU the
weight-decay boundary is a per-element select, uniform within all but one warp, so it costs nothing
next to the memory traffic.  It is written inline, and each element makes exactly one rule call:
in the simulator an ``@njit`` rule returns a Python float, and feeding that into a second rule
would compile the second one for float64 (one-ulp differences from the CPU kernels).
"""

from numba import cuda

from . import optim as rules


@cuda.jit(cache=True)
def sgd(p, g, lr, wd, n_decay):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + wd * p[i] if i < n_decay else g[i]
        p[i] = rules.sgd(p[i], gi, lr)


@cuda.jit(cache=True)
def momentum(p, g, v, lr, alpha, wd, n_decay):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + wd * p[i] if i < n_decay else g[i]
        pi, vi = rules.momentum(p[i], gi, v[i], lr, alpha)
        p[i] = pi
        v[i] = vi


@cuda.jit(cache=True)
def nesterov(p, g, b, lr, mu, wd, n_decay):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + wd * p[i] if i < n_decay else g[i]
        pi, bi = rules.nesterov(p[i], gi, b[i], lr, mu)
        p[i] = pi
        b[i] = bi


@cuda.jit(cache=True)
def nesterov_saito(p, g, v, lr, mu, mu2, c, wd, n_decay):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + wd * p[i] if i < n_decay else g[i]
        pi, vi = rules.nesterov_saito(p[i], gi, v[i], lr, mu, mu2, c)
        p[i] = pi
        v[i] = vi


@cuda.jit(cache=True)
def adagrad(p, g, r, lr, eps, wd, n_decay):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + wd * p[i] if i < n_decay else g[i]
        pi, ri = rules.adagrad(p[i], gi, r[i], lr, eps)
        p[i] = pi
        r[i] = ri


@cuda.jit(cache=True)
def adadelta(p, g, s, r, lr, rho, omrho, eps, wd, n_decay):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + wd * p[i] if i < n_decay else g[i]
        pi, si, ri = rules.adadelta(p[i], gi, s[i], r[i], lr, rho, omrho, eps)
        p[i] = pi
        s[i] = si
        r[i] = ri


@cuda.jit(cache=True)
def rmsprop(p, g, r, lr, rho, omrho, eps, wd, n_decay):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + wd * p[i] if i < n_decay else g[i]
        pi, ri = rules.rmsprop(p[i], gi, r[i], lr, rho, omrho, eps)
        p[i] = pi
        r[i] = ri


@cuda.jit(cache=True)
def adam(p, g, m, v, lr_t, b1, omb1, b2, omb2, eps, rbc2, wd, n_decay):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + wd * p[i] if i < n_decay else g[i]
        pi, mi, vi = rules.adam(p[i], gi, m[i], v[i], lr_t, b1, omb1, b2, omb2, eps, rbc2)
        p[i] = pi
        m[i] = mi
        v[i] = vi


@cuda.jit(cache=True)
def adamw(p, g, m, v, lr_t, b1, omb1, b2, omb2, eps, rbc2, shrink, n_decay):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        pi = p[i] - shrink * p[i] if i < n_decay else p[i]
        pi, mi, vi = rules.adam(pi, g[i], m[i], v[i], lr_t, b1, omb1, b2, omb2, eps, rbc2)
        p[i] = pi
        m[i] = mi
        v[i] = vi


@cuda.jit(cache=True)
def amsgrad(p, g, m, v, v_max, lr_t, b1, omb1, b2, omb2, eps, rbc2, wd, n_decay):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + wd * p[i] if i < n_decay else g[i]
        pi, mi, vi, xi = rules.amsgrad(p[i], gi, m[i], v[i], v_max[i], lr_t, b1, omb1, b2, omb2, eps, rbc2)
        p[i] = pi
        m[i] = mi
        v[i] = vi
        v_max[i] = xi


@cuda.jit(cache=True)
def lion(p, g, m, lr, b1, omb1, b2, omb2, shrink, n_decay):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        pi = p[i] - shrink * p[i] if i < n_decay else p[i]
        pi, mi = rules.lion(pi, g[i], m[i], lr, b1, omb1, b2, omb2)
        p[i] = pi
        m[i] = mi
