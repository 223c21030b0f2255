"""CUDA kernel of inverted dropout: a grid-stride loop over the same ``mask_value`` rule as the CPU
kernel in ``dropout.py`` (same key → same mask on every device).  ``out = x · mask``: forward on the
activations, backward on the gradient, with the same key."""

from numba import cuda

from . import dropout as rules


@cuda.jit(cache=True)
def apply(x, out, k0, k1, thr, scale, zero):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        out[i] = x[i] * rules.mask_value(i, k0, k1, thr, scale, zero)
