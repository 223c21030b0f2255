"""Fused elementwise kernels of an MLP step: bias + activation (forward), activation backward +
bias gradient, softmax + cross-entropy (loss and gradient in one pass), and a finiteness check.

Scalar rules (no literals, no allocation) are shared with the CUDA kernels in
``activations_cuda.py``.  Constants (½, 1, 0, the LeakyReLU slope) arrive as scalars of the array
dtype, so a float32 network stays float32 (a Python literal would promote the rule to float64).

Activation codes (``kind``): 0 identity, 1 sigmoid (½(1 + tanh(z/2)), no overflow), 2 tanh,
3 ReLU, 4 LeakyReLU, 5 GELU.  ``slope`` is the activation's one scalar parameter (LeakyReLU's α,
GELU's cubic coefficient).  The backward rules take ``a``: the activation's *output* for kinds 0-4
(``a > 0`` iff ``z > 0`` for ReLU/LeakyReLU with slope ≥ 0), so their forward can overwrite ``z`` in
place, and its *input* ``z`` for GELU, whose layer keeps ``z`` (the layer class says which:
``GRAD_FROM``).

Adding an activation: its scalar rules and one branch each in ``forward_rule`` and ``backward_rule``
here, and its layer class in ``gpunn/layers.py``.  The CUDA kernels go through the two dispatch
rules; the CPU kernels run the first five kinds in loops of their own (they vectorise) and any other
kind through the dispatch rules.

CPU kernels are serial (``error_model="numpy"``, no ``parallel``): the arrays of a small-MLP
step are 10³–10⁵ elements, where waking Numba's thread pool (1.5–80 µs) costs more than the
work, and where a pool spinning next to OpenBLAS's threads slows both.  Every inner loop runs
over a row slice starting at 0 (vectorises; no wrap-around checks).
"""

import math

from numba import njit

from . import RULE_OPTIONS

SERIAL_OPTIONS = dict(error_model="numpy", cache=True)

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, GELU = 0, 1, 2, 3, 4, 5


# --------------------------------------------------------------------------------------------
# Scalar rules (shared by CPU and CUDA)
# --------------------------------------------------------------------------------------------
@njit(**RULE_OPTIONS)
def sigmoid(z, half, one):
    return half * (one + math.tanh(half * z))


@njit(**RULE_OPTIONS)
def relu(z, zero):
    """max(z, 0) as the textbooks' mask code computes it: 0 where z ≤ 0 (also for −∞), z elsewhere,
    so NaN stays NaN."""
    return zero if z <= zero else z


@njit(**RULE_OPTIONS)
def leaky(z, slope, zero):
    return z if z > zero else z * slope


@njit(**RULE_OPTIONS)
def sigmoid_grad(d, a, one):
    return d * a * (one - a)


@njit(**RULE_OPTIONS)
def tanh_grad(d, a, one):
    return d * (one - a * a)


@njit(**RULE_OPTIONS)
def relu_grad(d, a, slope, zero):
    """LeakyReLU: d where a > 0, else slope·d."""
    return d if a > zero else d * slope


@njit(**RULE_OPTIONS)
def relu_grad0(d, a, zero):
    """ReLU: 0 where a ≤ 0 (even for d = NaN or ±∞: the mask zeroes it), else d (also where a is NaN)."""
    return zero if a <= zero else d


@njit(**RULE_OPTIONS)
def gelu(z, c, half, one):
    """GELU, tanh form: ½ z (1 + tanh(k (z + c z³))), k = √(2/π) computed as √(½ / atan 1) (no
    literal: a float64 constant would promote a float32 rule), ``c`` = 0.044715."""
    k = math.sqrt(half / math.atan(one))
    return half * z * (one + math.tanh(k * (z + c * z * z * z)))


@njit(**RULE_OPTIONS)
def gelu_grad(d, z, c, one):
    """d · GELU'(z) from the *input* z: ½(1 + t) + ½ z (1 − t²) k (1 + 3c z²), t = tanh(k (z + c z³))."""
    half = one / (one + one)
    k = math.sqrt(half / math.atan(one))
    z2 = z * z
    t = math.tanh(k * (z + c * z * z2))
    return d * (half * (one + t) + half * z * (one - t * t) * k * (one + (c + c + c) * z2))


@njit(**RULE_OPTIONS)
def forward_rule(z, kind, slope, half, one, zero):
    if kind == 1:
        return sigmoid(z, half, one)
    if kind == 2:
        return math.tanh(z)
    if kind == 3:
        return relu(z, zero)
    if kind == 4:
        return leaky(z, slope, zero)
    if kind == 5:
        return gelu(z, slope, half, one)
    return z


@njit(**RULE_OPTIONS)
def backward_rule(d, a, kind, slope, one, zero):
    if kind == 1:
        return sigmoid_grad(d, a, one)
    if kind == 2:
        return tanh_grad(d, a, one)
    if kind == 3:
        return relu_grad0(d, a, zero)
    if kind == 4:
        return relu_grad(d, a, slope, zero)
    if kind == 5:
        return gelu_grad(d, a, slope, one)
    return d


# --------------------------------------------------------------------------------------------
# CPU kernels (serial)
# --------------------------------------------------------------------------------------------
@njit(**SERIAL_OPTIONS)
def bias_act_cpu(z, b, out, kind, slope, half, one, zero):
    """out = act(z + b) row by row (``out`` may be ``z``); ``z``, ``out`` are (N, C), ``b`` (C,)."""
    n, c = z.shape
    for r in range(n):
        zr = z[r]
        orow = out[r]
        if kind == 1:
            for j in range(c):
                orow[j] = sigmoid(zr[j] + b[j], half, one)
        elif kind == 2:
            for j in range(c):
                orow[j] = math.tanh(zr[j] + b[j])
        elif kind == 3:
            for j in range(c):
                orow[j] = relu(zr[j] + b[j], zero)
        elif kind == 4:
            for j in range(c):
                orow[j] = leaky(zr[j] + b[j], slope, zero)
        elif kind == 0:
            for j in range(c):
                orow[j] = zr[j] + b[j]
        else:
            for j in range(c):
                orow[j] = forward_rule(zr[j] + b[j], kind, slope, half, one, zero)


@njit(**SERIAL_OPTIONS)
def act_cpu(z, out, kind, slope, half, one, zero):
    """out = act(z) over 1-D flat arrays (``out`` may be ``z``)."""
    n = z.size
    if kind == 1:
        for i in range(n):
            out[i] = sigmoid(z[i], half, one)
    elif kind == 2:
        for i in range(n):
            out[i] = math.tanh(z[i])
    elif kind == 3:
        for i in range(n):
            out[i] = relu(z[i], zero)
    elif kind == 4:
        for i in range(n):
            out[i] = leaky(z[i], slope, zero)
    elif kind == 0:
        for i in range(n):
            out[i] = z[i]
    else:
        for i in range(n):
            out[i] = forward_rule(z[i], kind, slope, half, one, zero)


@njit(**SERIAL_OPTIONS)
def act_grad_cpu(d, a, dz, kind, slope, one, zero):
    """dz = act'(a) ⊙ d over 1-D flat arrays (``dz`` may be ``d``); ``a`` is the output or the input
    (see the module docstring)."""
    n = d.size
    if kind == 1:
        for i in range(n):
            dz[i] = sigmoid_grad(d[i], a[i], one)
    elif kind == 2:
        for i in range(n):
            dz[i] = tanh_grad(d[i], a[i], one)
    elif kind == 3:
        for i in range(n):
            dz[i] = relu_grad0(d[i], a[i], zero)
    elif kind == 4:
        for i in range(n):
            dz[i] = relu_grad(d[i], a[i], slope, zero)
    elif kind == 0:
        for i in range(n):
            dz[i] = d[i]
    else:
        for i in range(n):
            dz[i] = backward_rule(d[i], a[i], kind, slope, one, zero)


@njit(**SERIAL_OPTIONS)
def act_grad_bias_cpu(d, a, dz, db, kind, slope, one, zero):
    """dz = act'(a) ⊙ d (``dz`` may be ``d``) and db = Σ_rows dz, (N, C) arrays, ``db`` (C,)."""
    n, c = d.shape
    for j in range(c):
        db[j] = zero
    for r in range(n):
        dr = d[r]
        ar = a[r]
        zr = dz[r]
        if kind == 1:
            for j in range(c):
                g = sigmoid_grad(dr[j], ar[j], one)
                zr[j] = g
                db[j] += g
        elif kind == 2:
            for j in range(c):
                g = tanh_grad(dr[j], ar[j], one)
                zr[j] = g
                db[j] += g
        elif kind == 3:
            for j in range(c):
                g = relu_grad0(dr[j], ar[j], zero)
                zr[j] = g
                db[j] += g
        elif kind == 4:
            for j in range(c):
                g = relu_grad(dr[j], ar[j], slope, zero)
                zr[j] = g
                db[j] += g
        elif kind == 0:
            for j in range(c):
                g = dr[j]
                zr[j] = g
                db[j] += g
        else:
            for j in range(c):
                g = backward_rule(dr[j], ar[j], kind, slope, one, zero)
                zr[j] = g
                db[j] += g


@njit(**SERIAL_OPTIONS)
def bias_scale_cpu(z, b, out, scale):
    """out = (z + b)·scale row by row (``out`` may be ``z``): the part of sigmoid/tanh before the
    tanh, which the caller then takes with NumPy's SIMD ``tanh`` (≈25× faster on the CPU than a
    scalar ``math.tanh`` loop, which LLVM cannot vectorise without SVML)."""
    n, c = z.shape
    for r in range(n):
        zr = z[r]
        orow = out[r]
        for j in range(c):
            orow[j] = (zr[j] + b[j]) * scale


@njit(**SERIAL_OPTIONS)
def sigmoid_finish_cpu(a, half, one):
    """a = ½(1 + a) in place over a 1-D array: σ(z) from a = tanh(z/2)."""
    for i in range(a.size):
        a[i] = half * (one + a[i])


@njit(**SERIAL_OPTIONS)
def add_bias_cpu(z, b):
    """z += b row by row, in place."""
    n, c = z.shape
    for r in range(n):
        zr = z[r]
        for j in range(c):
            zr[j] += b[j]


@njit(**SERIAL_OPTIONS)
def col_sum_cpu(d, db, zero):
    """db = Σ_rows d."""
    n, c = d.shape
    for j in range(c):
        db[j] = zero
    for r in range(n):
        dr = d[r]
        for j in range(c):
            db[j] += dr[j]


@njit(**SERIAL_OPTIONS)
def _shifted_exp_row(yr, dr, zero):
    """The stable-softmax prefix of one row: m = max(y), d = exp(y − m); returns (m, Σ d)."""
    m = yr[0]
    for j in range(1, yr.size):
        if yr[j] > m:
            m = yr[j]
    s = zero
    for j in range(yr.size):
        e = math.exp(yr[j] - m)
        dr[j] = e
        s += e
    return m, s


@njit(**SERIAL_OPTIONS)
def softmax_xent_cpu(y, t, d, inv_n, one, zero):
    """Softmax cross-entropy on scores ``y`` (N, C) with class indices ``t`` (N,): returns
    Σ_rows −log softmax(y)[t] · inv_n and writes d = (softmax(y) − onehot(t))·inv_n."""
    n, c = y.shape
    total = zero
    for r in range(n):
        yr = y[r]
        dr = d[r]
        m, s = _shifted_exp_row(yr, dr, zero)
        inv_s = one / s
        k = t[r]
        total += math.log(s) - (yr[k] - m)
        for j in range(c):
            dr[j] = dr[j] * inv_s * inv_n
        dr[k] -= inv_n
    return total * inv_n


@njit(**SERIAL_OPTIONS)
def softmax_xent_soft_cpu(y, t, d, inv_n, one, zero):
    """As :func:`softmax_xent_cpu` with targets ``t`` of shape (N, C) (one-hot or soft labels):
    loss Σ −t·log softmax(y) · inv_n, d = (softmax(y) − t)·inv_n."""
    n, c = y.shape
    total = zero
    for r in range(n):
        yr = y[r]
        tr = t[r]
        dr = d[r]
        m, s = _shifted_exp_row(yr, dr, zero)
        inv_s = one / s
        log_s = math.log(s)
        for j in range(c):
            total -= tr[j] * (yr[j] - m - log_s)
            dr[j] = (dr[j] * inv_s - tr[j]) * inv_n
    return total * inv_n


@njit(error_model="numpy", cache=True, fastmath={"reassoc"})
def all_finite_cpu(x, zero):
    """True if every element of the 1-D ``x`` is finite (Σ x·0 is 0 unless some x is NaN/±Inf;
    ``reassoc`` lets the sum vectorise without assuming away NaN)."""
    s = zero
    for i in range(x.size):
        s += x[i] * zero
    return s == zero


@njit(**SERIAL_OPTIONS)
def labels_ok_cpu(t, n_classes):
    """True if every class index of the 1-D integer ``t`` is in [0, n_classes)."""
    lo = t[0]
    hi = t[0]
    for i in range(t.size):
        v = t[i]
        lo = min(lo, v)
        hi = max(hi, v)
    return lo >= 0 and hi < n_classes
