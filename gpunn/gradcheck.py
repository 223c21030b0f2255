"""Numerical gradients (central differences) to check backpropagation against.

    ∂f/∂θᵢ ≈ (f(θ + h·eᵢ) − f(θ − h·eᵢ)) / 2h

Use float64 models/arrays: in float64 with h = 1e-6 the analytic and numerical gradients of a
correct backward pass agree to a relative error well below 1e-6.
"""

from __future__ import annotations

__all__ = ["numerical_gradient", "numerical_gradient_dict", "relative_error"]


def numerical_gradient(f, x, h: float = 1e-6):
    """Central-difference gradient of the scalar function ``f()`` w.r.t. array ``x``, which ``f``
    reads (``x`` is perturbed in place, element by element, and restored)."""
    grad = x * 0
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i].item()
        flat[i] = old + h
        fp = float(f())
        flat[i] = old - h
        fm = float(f())
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return grad


def numerical_gradient_dict(f, params: dict, h: float = 1e-6) -> dict:
    """:func:`numerical_gradient` for every array of ``params`` (e.g. ``net.params``)."""
    return {k: numerical_gradient(f, p, h) for k, p in params.items()}


def relative_error(a, b, floor: float = 1e-12) -> float:
    """‖a − b‖ / max(‖a‖ + ‖b‖, floor) (Euclidean norms over all elements), as a float.

    Norm-wise rather than elementwise: entries that are zero up to rounding would make an
    elementwise ratio meaningless, while this one stays below 1e-6 exactly when the backward pass
    is right."""
    a = a.reshape(-1) * 1.0
    b = b.reshape(-1) * 1.0
    num = float(((a - b) ** 2).sum()) ** 0.5
    den = float((a * a).sum()) ** 0.5 + float((b * b).sum()) ** 0.5
    return num / max(den, floor)
