"""A stand-in for CuPy under Numba's CUDA simulator (work in progress: pass-through)."""


def kernel_args(index, args):
    """The launch arguments as the simulator takes them."""
    return args
