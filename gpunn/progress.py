"""A tiny progress-bar helper: tqdm when it is installed, a plain fallback otherwise.

``progress(iterable=None, total=None, desc="", unit="it", disable=False, **kwargs)``

* With `tqdm <https://tqdm.github.io>`_ importable (``pip install gpunn[examples]``) this returns
  ``tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, **kwargs)`` unchanged, so any
  tqdm keyword (``unit_scale=True``, ``leave=False``, ...) may be passed.
* Without tqdm it returns a :class:`SimpleProgress`: an iterator / context manager with the subset of
  tqdm's API gpunn uses (``update(n)``, ``set_postfix(**kw)``, ``set_description(s)``, ``close()``,
  ``n``, ``total``).  It writes plain lines to stderr (no carriage returns, no ANSI codes), at most
  one every ``mininterval`` seconds plus one when closed, so it is safe in CI logs; unknown tqdm
  keywords are accepted and ignored.

``disable`` is passed through: ``True`` prints nothing, ``False`` always prints, and ``None`` (as in
tqdm) prints only when stderr is a terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["progress", "SimpleProgress"]


def _get_tqdm():
    """Return the ``tqdm.tqdm`` class, or None when tqdm is not installed (tests patch this)."""
    try:
        from tqdm import tqdm
    except Exception:  # ImportError, or a broken install
        return None
    return tqdm


def progress(
    iterable: Iterable | None = None,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool | None = False,
    **kwargs: Any,
):
    """Wrap ``iterable`` (or count manually with ``.update(n)``) in a progress bar.

    ``total`` defaults to ``len(iterable)`` when that exists.  Returns a tqdm bar, or a
    :class:`SimpleProgress` when tqdm is not importable; both work as iterators and context managers.
    """
    tqdm = _get_tqdm()
    if tqdm is not None:
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, **kwargs)
    return SimpleProgress(iterable, total=total, desc=desc, unit=unit, disable=disable, **kwargs)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.3g}"


class SimpleProgress:
    """Minimal stand-in for ``tqdm.tqdm`` (see the module docstring); prints plain lines to ``file``."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        disable: bool | None = False,
        file=None,
        mininterval: float = 2.0,
        **_ignored: Any,
    ):
        self.iterable = iterable
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.total = total
        self.desc = desc
        self.unit = unit
        self.file = file if file is not None else sys.stderr
        if disable is None:
            isatty = getattr(self.file, "isatty", None)
            disable = not (isatty is not None and isatty())
        self.disable = bool(disable)
        self.mininterval = float(mininterval)
        self.n = 0
        self.postfix = ""
        self._start = time.monotonic()
        self._last_print = self._start
        self._closed = False

    # -- iteration / context manager ---------------------------------------------------------------
    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("SimpleProgress was created without an iterable; use update(n) instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total) if self.total is not None else 0

    def __enter__(self) -> SimpleProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- tqdm API subset ----------------------------------------------------------------------------
    def update(self, n: float = 1) -> None:
        """Advance the counter by ``n``; prints a line if ``mininterval`` seconds passed since the last."""
        self.n += n
        if self.disable:
            return
        now = time.monotonic()
        if now - self._last_print >= self.mininterval:
            self._last_print = now
            self._print()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs: Any) -> None:
        """Show ``key=value`` pairs after the counter (same call forms as tqdm)."""
        items = dict(ordered_dict or {})
        items.update(kwargs)
        parts = []
        for k, v in items.items():
            parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
        self.postfix = ", ".join(parts)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        if not self.disable:
            self._print()

    def write(self, s: str) -> None:
        print(s, file=self.file, flush=True)

    def close(self) -> None:
        """Print the final line (once) unless disabled."""
        if self._closed:
            return
        self._closed = True
        if not self.disable:
            self._print()

    # -- internals ----------------------------------------------------------------------------------
    def _print(self) -> None:
        elapsed = time.monotonic() - self._start
        head = f"{self.desc}: " if self.desc else ""
        count = f"{_fmt(self.n)}/{_fmt(self.total)}" if self.total else _fmt(self.n)
        line = f"{head}{count} {self.unit} [{elapsed:.1f}s]"
        if self.postfix:
            line += f" {self.postfix}"
        print(line, file=self.file, flush=True)
