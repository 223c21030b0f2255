"""CUDA kernels of the fused MLP-step operations in ``activations.py``, calling the same scalar
rules (numba-cuda compiles the ``@njit`` rules as device functions).  Grid-stride loops over the
flat element index of row-major ``(N, C)`` arrays (column ``i % C``), except the per-column
reduction (one thread per column, rows in order: deterministic) and the softmax cross-entropy (one
thread per row, per-row losses into ``row_loss``, summed on the device by the caller: no atomics,
no host synchronisation).  Launched by ``gpunn.kernels.cuda_ops`` on CuPy's stream.

Each element makes exactly one rule call (a rule's result fed into a second rule compiles the
second for float64 in the simulator)."""

import math

from numba import cuda

from . import activations as rules


@cuda.jit(cache=True)
def add_bias(z, b):
    c = z.shape[1]
    for i in range(cuda.grid(1), z.size, cuda.gridsize(1)):
        r = i // c
        j = i - r * c
        z[r, j] += b[j]


@cuda.jit(cache=True)
def col_sum(d, db, zero):
    n = d.shape[0]
    for j in range(cuda.grid(1), db.size, cuda.gridsize(1)):
        s = zero
        for r in range(n):
            s += d[r, j]
        db[j] = s


@cuda.jit(cache=True)
def bias_act(z, b, out, kind, slope, half, one, zero):
    c = z.shape[1]
    for i in range(cuda.grid(1), z.size, cuda.gridsize(1)):
        r = i // c
        j = i - r * c
        out[r, j] = rules.forward_rule(z[r, j] + b[j], kind, slope, half, one, zero)


@cuda.jit(cache=True)
def act(z, out, kind, slope, half, one, zero):
    for i in range(cuda.grid(1), z.size, cuda.gridsize(1)):
        out[i] = rules.forward_rule(z[i], kind, slope, half, one, zero)


@cuda.jit(cache=True)
def act_grad(d, a, dz, kind, slope, one, zero):
    for i in range(cuda.grid(1), d.size, cuda.gridsize(1)):
        dz[i] = rules.backward_rule(d[i], a[i], kind, slope, one, zero)


@cuda.jit(device=True)
def _shifted_exp_row(y, d, r, zero):
    """Row ``r``'s stable-softmax prefix: m = max(y_r), d_r = exp(y_r − m); returns (m, Σ d_r)."""
    m = y[r, 0]
    for j in range(1, y.shape[1]):
        if y[r, j] > m:
            m = y[r, j]
    s = zero
    for j in range(y.shape[1]):
        e = math.exp(y[r, j] - m)
        d[r, j] = e
        s += e
    return m, s


@cuda.jit(cache=True)
def softmax_xent(y, t, d, row_loss, inv_n, one, zero, nan):
    """Class-index targets ``t`` (N,): row_loss[r] = −log softmax(y_r)[t_r]; d = (p − onehot)·inv_n.
    A label outside [0, C) (device-resident labels are not checked on the host) makes the row's loss
    ``nan`` and its gradient 0, so the loss is NaN and the Trainer's guard stops, instead of a read
    outside ``y``."""
    n, c = y.shape
    for r in range(cuda.grid(1), n, cuda.gridsize(1)):
        k = t[r]
        if k < 0 or k >= c:
            row_loss[r] = nan
            for j in range(c):
                d[r, j] = zero
            continue
        m, s = _shifted_exp_row(y, d, r, zero)
        inv_s = one / s
        row_loss[r] = math.log(s) - (y[r, k] - m)
        for j in range(c):
            d[r, j] = d[r, j] * inv_s * inv_n
        d[r, k] -= inv_n


@cuda.jit(cache=True)
def softmax_xent_soft(y, t, d, row_loss, inv_n, one, zero):
    """Targets ``t`` of shape (N, C): row_loss[r] = −Σ t·log softmax(y_r); d = (p − t)·inv_n."""
    n, c = y.shape
    for r in range(cuda.grid(1), n, cuda.gridsize(1)):
        m, s = _shifted_exp_row(y, d, r, zero)
        inv_s = one / s
        log_s = math.log(s)
        acc = zero
        for j in range(c):
            acc -= t[r, j] * (y[r, j] - m - log_s)
            d[r, j] = (d[r, j] * inv_s - t[r, j]) * inv_n
        row_loss[r] = acc
