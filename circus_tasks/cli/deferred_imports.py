"""Importing a library without loading the parts of it a command never touches.

``import pydicom`` also imports ``requests`` and ``urllib.request`` (to download its test
files) and builds ``pydicom.examples`` (looking up a dozen test files on disk), none of it
needed to read a series (the cost: benchmarks/README.md). Inside
:func:`deferred_imports`, importing one of the named modules gives a module object whose
code runs on its first use (the standard library's :class:`importlib.util.LazyLoader`), so a
module that is only imported, never used, costs nothing; a module that is used behaves as
usual. Only imports made inside the ``with`` block are affected.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType

__all__ = ["UNUSED_BY_PYDICOM_READING", "deferred_imports"]

UNUSED_BY_PYDICOM_READING: tuple[str, ...] = ("requests", "urllib.request", "pydicom.examples")
"""Modules ``import pydicom`` loads that reading and decoding files never uses."""


class _DeferringFinder:
    """Finds the named modules with the other finders and wraps their loaders lazily.

    A meta path finder needs only ``find_spec``; not deriving from
    :class:`importlib.abc.MetaPathFinder` spares ``circus volume`` importing
    :mod:`importlib.abc` (and :mod:`importlib.resources` with it)."""

    def __init__(self, names: Collection[str]) -> None:
        self._names = frozenset(names)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        spec.loader = importlib.util.LazyLoader(loader)
        return spec


@contextmanager
def deferred_imports(names: Collection[str]) -> Iterator[None]:
    """While active, modules in ``names`` imported for the first time load on first use."""
    finder = _DeferringFinder(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
