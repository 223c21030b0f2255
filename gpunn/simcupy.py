"""A strict stand-in for CuPy, for the "cuda" device under Numba's CUDA simulator.

Under the simulator (``NUMBA_ENABLE_CUDASIM=1``: the test suite, CI) gpunn's "cuda" device computes
with NumPy, and the CUDA kernels run in Numba's simulator.  If its arrays were plain NumPy arrays,
every host/device mistake (an implicit copy to the host, a host array added to a device activation,
a host array assigned into a device parameter) would pass there and fail on a user's first GPU run.
So the simulated device's array namespace is this module: NumPy underneath, but its
:class:`ndarray` refuses what CuPy refuses --

* implicit conversion to a host array: ``numpy.asarray(a)``, ``numpy.testing`` on it, Numba's CPU
  kernels (``TypeError``, as CuPy says: use ``.get()``);
* host arrays mixed in: a NumPy array as an operand of arithmetic, a ufunc or a NumPy function,
  as an index, or as the value of an assignment (``TypeError`` / ``ValueError``); NumPy and Python
  *scalars* are fine, as in CuPy;
* arrays of another GPU than the current one (``ValueError``); :class:`cuda.Device` switches the
  current GPU, and :data:`DEVICE_COUNT` simulated GPUs exist.

Explicit transfers work as in CuPy: :func:`asarray` / :func:`array` copy host data to the current
GPU, :meth:`ndarray.get` (and :func:`asnumpy`) copy to the host.  Reductions return 0-d device
arrays, as CuPy's do; turning one into a Python number (``float``, ``int``, ``bool``, ``.item()``),
``.get()`` and printing are *host synchronisations* on a GPU, counted in :data:`stats` so a test can
assert that a training step makes none.

Kernel launches receive the NumPy arrays underneath (:func:`kernel_args`), which the simulator
needs, after checking that they live on the launching device.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy
from numpy.lib.mixins import NDArrayOperatorsMixin

__all__ = ["DEVICE_COUNT", "ndarray", "asarray", "array", "asnumpy", "kernel_args", "stats", "cuda"]

DEVICE_COUNT = 2
"""How many simulated GPUs there are (two, so that ``cuda:1`` can be tested)."""

stats = SimpleNamespace(host_syncs=0)
"""``host_syncs``: device values brought to the host so far (``.get()``, ``float()``, printing …)."""


class _Current(threading.local):
    device = 0


_current = _Current()


def _host_sync():
    stats.host_syncs += 1


def _foreign(what) -> TypeError:
    return TypeError(
        f"{what} is a host (NumPy) array and cannot be mixed with device arrays, as on a real "
        "GPU (CuPy refuses it): copy it to the device explicitly (Device.to_device / "
        "xp.asarray) or bring the device array to the host (Device.to_numpy / .get())"
    )


def _check_device(a: ndarray) -> None:
    if a._device_id != _current.device:
        raise ValueError(
            f"Array device must be same as the current device: array device = {a._device_id} "
            f"while current = {_current.device}"
        )


def _unwrap(x, where: str):
    """The NumPy array or scalar behind operand ``x``; refuses host arrays and foreign devices."""
    if isinstance(x, ndarray):
        _check_device(x)
        return x._a
    if isinstance(x, numpy.ndarray):
        raise _foreign(f"an operand of {where}")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, where) for v in x)
    return x


def _wrap(r):
    """A result as device arrays on the current device (NumPy scalars become 0-d arrays, as in CuPy)."""
    if isinstance(r, numpy.ndarray):
        return ndarray(r, _current.device)
    if isinstance(r, numpy.generic):
        return ndarray(numpy.asarray(r), _current.device)
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    return r


def _call(fn, where: str, args, kwargs):
    args = _unwrap(tuple(args), where)
    kwargs = {k: _unwrap(v, where) for k, v in kwargs.items()}
    return _wrap(fn(*args, **kwargs))


class ndarray(NDArrayOperatorsMixin):
    """A device array of the simulated GPU: a NumPy array that refuses host/device mixing."""

    __slots__ = ("_a", "_device_id")
    __array_priority__ = 100

    def __init__(self, a: numpy.ndarray, device_id: int):
        self._a = a
        self._device_id = device_id

    # -- what CuPy refuses ------------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed (a simulated CuPy array, "
            "as on a real GPU). Please use `.get()` / Device.to_numpy to copy it to the host."
        )

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        where = f"numpy.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
        out = kwargs.get("out")
        res = _call(getattr(ufunc, method), where, inputs, kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return res

    def __array_function__(self, func, types, args, kwargs):
        return _call(func, f"numpy.{func.__name__}", args, kwargs)

    # -- explicit transfers and host synchronisations ---------------------------------------
    def get(self, stream=None, order="C", out=None):
        """A host (NumPy) copy: an explicit device-to-host transfer."""
        _host_sync()
        if out is not None:
            out[...] = self._a
            return out
        return numpy.array(self._a, order=order)

    def set(self, arr, stream=None):
        """Copy host array ``arr`` into this array (same shape): an explicit host-to-device transfer."""
        if not isinstance(arr, numpy.ndarray) or arr.shape != self.shape:
            raise ValueError(f"set() takes a NumPy array of shape {self.shape}")
        self._a[...] = arr

    def _scalar(self, convert):
        _host_sync()
        return convert(self._a)

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __bool__(self):
        return self._scalar(bool)

    def __index__(self):
        return self._scalar(numpy.ndarray.__index__)

    def __complex__(self):
        return self._scalar(complex)

    def item(self, *args):
        return self._scalar(lambda a: a.item(*args))

    def tolist(self):
        return self._scalar(numpy.ndarray.tolist)

    def __repr__(self):
        return self._scalar(lambda a: repr(a).replace("array(", "simcupy.array(", 1))

    def __str__(self):
        return self._scalar(str)

    def __format__(self, spec):
        return self._scalar(lambda a: format(a[()] if a.ndim == 0 else a, spec))

    # -- indexing ------------------------------------------------------------------------------
    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key, "an index")])

    def __setitem__(self, key, value):
        if isinstance(value, numpy.ndarray) and value.ndim:
            raise ValueError(
                "non-scalar numpy.ndarray cannot be used for fill (a host array assigned into "
                "a device array, as CuPy refuses it): copy it with Device.to_device / "
                "xp.asarray first"
            )
        self._a[_unwrap(key, "an index")] = _unwrap(value, "an assignment")

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # -- attributes ------------------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T, self._device_id))
    device = property(lambda self: cuda.Device(self._device_id))

    def __getattr__(self, name):
        if name.startswith("__") or name in ndarray.__slots__:
            raise AttributeError(name)
        attr = getattr(self._a, name)  # the NumPy method, run on the device array's data
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            _check_device(self)
            return _call(attr, f"ndarray.{name}", args, kwargs)

        return method

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __reduce__(self):
        return _rebuild, (self._a, self._device_id)


def _rebuild(a, device_id):
    return ndarray(a, device_id)


# -- the namespace: NumPy's functions on device arrays ----------------------------------------------
def asarray(a, dtype=None, order=None):
    """``a`` on the current device: device arrays of the current device as they are (converted to
    ``dtype``), anything else copied from the host (the explicit host-to-device transfer)."""
    if isinstance(a, ndarray):
        if a._device_id == _current.device:
            return a if dtype is None or a.dtype == dtype else a.astype(dtype)
        a = a._a  # a peer copy from another GPU
    return ndarray(numpy.array(a, dtype=dtype, order=order or "K"), _current.device)


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    """A new device array with a copy of ``a`` (host data or a device array)."""
    src = a._a if isinstance(a, ndarray) else a
    return ndarray(numpy.array(src, dtype=dtype, copy=True, order=order, ndmin=ndmin), _current.device)


def asnumpy(a, stream=None, order="C", out=None):
    """A host copy of ``a`` (device arrays are copied, host data passed through NumPy)."""
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return numpy.asarray(a, order=order)


_CREATE = ("empty", "zeros", "ones", "full", "arange", "linspace", "eye", "identity")
"""NumPy functions that make new arrays from shapes and scalars: their results land on the current GPU."""


def __getattr__(name):
    obj = getattr(numpy, name)
    if name in _CREATE:

        def create(*args, **kwargs):
            return ndarray(obj(*_unwrap(args, f"{name}()"), **kwargs), _current.device)

        create.__name__ = name
        return create
    if callable(obj) and not isinstance(obj, type):

        def function(*args, **kwargs):
            return _call(obj, f"{name}()", args, kwargs)

        function.__name__ = name
        return function
    return obj  # dtypes, constants, numpy.random …


def kernel_args(index: int, args) -> tuple:
    """The launch arguments as the simulator takes them: device arrays of GPU ``index`` become the
    NumPy arrays they wrap; host arrays and arrays of another GPU are refused."""
    if _current.device != index:
        raise ValueError(
            f"a kernel launch for cuda:{index} while the current device is "
            f"cuda:{_current.device} (enter the gpunn Device first)"
        )
    arrays = (ndarray, numpy.ndarray)
    return tuple(_unwrap(a, "a kernel launch") if isinstance(a, arrays) else a for a in args)


# -- the CUDA runtime part gpunn uses -------------------------------------------------------------
class _Device:
    """``cupy.cuda.Device``: a simulated GPU; as a context manager, it is the current one inside."""

    def __init__(self, device=None):
        self.id = _current.device if device is None else int(device)
        if not 0 <= self.id < DEVICE_COUNT:
            raise RuntimeError(
                f"cudaErrorInvalidDevice: invalid device ordinal {self.id} ({DEVICE_COUNT} simulated GPUs)"
            )
        self.attributes = {"MultiProcessorCount": 2}
        self.compute_capability = "90"
        self._prev = []

    def use(self):
        _current.device = self.id

    def synchronize(self):
        pass

    def __enter__(self):
        self._prev.append(_current.device)
        _current.device = self.id
        return self

    def __exit__(self, *exc):
        _current.device = self._prev.pop()

    def __eq__(self, other):
        return isinstance(other, _Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<simulated CUDA Device {self.id}>"


class _Stream:
    """``cupy.cuda.Stream``: the simulator has one stream, the default (null) one."""

    ptr = 0

    def synchronize(self):
        pass


class _Event:
    def record(self, stream=None):
        pass

    def synchronize(self):
        pass

    def query(self):
        return True


_null_stream = _Stream()
cuda = SimpleNamespace(
    Device=_Device,
    Stream=SimpleNamespace(null=_null_stream),
    Event=_Event,
    get_current_stream=lambda: _null_stream,
    runtime=SimpleNamespace(getDeviceCount=lambda: DEVICE_COUNT),
)
"""The part of ``cupy.cuda`` gpunn uses: devices, the (null) stream, events, the device count."""
