"""CUDA kernels of the optimizer rules in ``optim.py``: grid-stride loops calling the same scalar
``@njit`` rules (numba-cuda compiles them as device functions).  Launch through
``gpunn.kernels.resolve``, which picks the grid and CuPy's current stream."""

from numba import cuda

from . import optim as rules


@cuda.jit
def sgd(p, g, lr, wd, n_decay):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        p[i] = rules.sgd(p[i], rules.decayed(g[i], p[i], wd, i, n_decay), lr)
