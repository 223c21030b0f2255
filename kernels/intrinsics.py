"""LLVM-level helpers Numba does not offer on the CPU: atomic loads and stores (the spin-then-sleep
hand-off of ``threads.py``), the CPU's spin-wait hint, non-temporal ("streaming") stores and a
memory fence (BatchNorm's large outputs).

``stream_store(a, i, v)`` is ``a[i] = v`` with LLVM's ``!nontemporal`` hint, declared 64-byte
aligned: LLVM's loop vectoriser keeps a non-temporal store only when the target has an aligned
vector form of it (x86: ``vmovntps``), so the caller must guarantee that every vectorised access
starts on a 64-byte boundary -- rows of a 64-byte-aligned array whose row stride is a multiple
of 64 bytes, each inner loop starting at column 0 (:func:`streamable` checks).  A streaming store
writes the line to memory without reading it into the cache first (no read-for-ownership): on a
16 MB output it moves a third less data.  They are weakly ordered: call :func:`fence` before
another thread may read what was streamed.
"""

import platform

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

STREAM_ALIGN = 64
"""Alignment (bytes) the streaming stores are declared with: an AVX-512 vector."""

STREAM_MIN_BYTES = 8 << 20
"""Outputs smaller than this are written with ordinary stores: they may still be in the cache
when the next layer reads them, which a streaming store would defeat."""

_X86_PAUSE, _ARM_YIELD = ("llvm.x86.sse2.pause", ()), ("llvm.aarch64.hint", (1,))
_PAUSE = {"x86_64": _X86_PAUSE, "AMD64": _X86_PAUSE, "aarch64": _ARM_YIELD, "arm64": _ARM_YIELD}.get(
    platform.machine()
)
"""The LLVM intrinsic of the CPU's spin-wait hint (x86 PAUSE, Arm YIELD = hint #1) and its arguments."""


def _item_pointer(context, builder, sig, args):
    ary = context.make_array(sig.args[0])(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1]])


@intrinsic
def atomic_load(typingctx, flags, i):
    """flags[i], a sequentially consistent atomic load (int64 1-D array)."""

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_item_pointer(context, builder, sig, args), "seq_cst", 8)

    return types.int64(flags, i), codegen


@intrinsic
def atomic_store(typingctx, flags, i, value):
    """flags[i] = value, a sequentially consistent atomic store (int64 1-D array)."""

    def codegen(context, builder, sig, args):
        builder.store_atomic(args[2], _item_pointer(context, builder, sig, args), "seq_cst", 8)
        return context.get_dummy_value()

    return types.none(flags, i, value), codegen


@intrinsic
def spin_pause(typingctx):
    """The CPU's spin-wait hint (x86 PAUSE, Arm YIELD; nothing elsewhere)."""

    def codegen(context, builder, sig, args):
        if _PAUSE is not None:
            name, consts = _PAUSE
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i32] * len(consts))
            builder.call(
                cgutils.get_or_insert_function(builder.module, fnty, name),
                [ir.Constant(i32, c) for c in consts],
            )
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def stream_store(typingctx, a, i, value):
    """a[i] = value as a non-temporal store declared ``STREAM_ALIGN``-aligned (see the module
    docstring for what the caller guarantees)."""

    def codegen(context, builder, sig, args):
        st = builder.store(args[2], _item_pointer(context, builder, sig, args), align=STREAM_ALIGN)
        st.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return types.none(a, i, a.dtype), codegen


@intrinsic
def fence(typingctx):
    """A sequentially consistent fence (orders streaming stores before later loads and stores)."""

    def codegen(context, builder, sig, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.none(), codegen


@njit(cache=True)
def streamable(a):
    """Whether the rows of the 2-D ``a`` may take :func:`stream_store` (aligned, large, contiguous)."""
    return (
        a.size * a.itemsize >= STREAM_MIN_BYTES
        and a.ctypes.data % STREAM_ALIGN == 0
        and a.strides[0] % STREAM_ALIGN == 0
        and a.strides[1] == a.itemsize
    )
