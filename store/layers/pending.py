"""Pending writes: a batch's reads and writes kept in memory over a store, then
written below in one ``delete_many`` and one ``put_many``.

Reads see the batch's own writes first, so the items of a batch follow each other
as if written one by one. Each item is bracketed by ``begin()``; ``undo()`` drops
what the item wrote, so an item that fails half-way leaves its neighbours' writes
as they were. Nothing reaches the store below before ``flush()``.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_ABSENT = object()     # known not to exist below (or deleted in this batch)
_UNKNOWN = object()    # never read in this batch


class Pending:
    def __init__(self, inner):
        self.inner = inner
        self._known: dict[str, Any] = {}     # key -> value, or _ABSENT
        self._dirty: dict[str, None] = {}    # keys written (in order)
        self._undo: dict[str, tuple[Any, bool]] = {}

    # -- reading ----------------------------------------------------------------
    def prefetch(self, keys: Iterable[str]) -> None:
        """Read every key of ``keys`` not seen yet, in one ``get_many`` below."""
        wanted = [k for k in dict.fromkeys(keys) if k not in self._known]
        if wanted:
            found = self.inner.get_many(wanted)
            for key in wanted:
                self._known[key] = found.get(key, _ABSENT)

    def get(self, key: str, default: Any = None) -> Any:
        value = self._known.get(key, _UNKNOWN)
        if value is _UNKNOWN:
            value = self.inner.get(key, _ABSENT)
            self._known[key] = value
        return default if value is _ABSENT else value

    def pop(self, key: str, *default: Any) -> Any:
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            if default:
                return default[0]
            raise KeyError(key)
        self._write(key, _ABSENT)
        return value

    # -- writing ----------------------------------------------------------------
    def put_many(self, items: Iterable[tuple[str, Any]]) -> None:
        for key, value in items:
            self._write(key, value)

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._write(key, _ABSENT)

    def _write(self, key: str, value: Any) -> None:
        if key not in self._undo:
            self._undo[key] = (self._known.get(key, _UNKNOWN), key in self._dirty)
        self._known[key] = value
        self._dirty[key] = None

    # -- items and the end ------------------------------------------------------
    def begin(self) -> None:
        """The next item starts: ``undo()`` goes back to here."""
        self._undo = {}

    def undo(self) -> None:
        for key, (value, dirty) in self._undo.items():
            if value is _UNKNOWN:
                del self._known[key]
            else:
                self._known[key] = value
            if not dirty:
                del self._dirty[key]
        self._undo = {}

    def flush(self) -> None:
        """Write the batch below: deletions first, then one ``put_many``."""
        gone = [k for k in self._dirty if self._known[k] is _ABSENT]
        puts = [(k, v) for k in self._dirty if (v := self._known[k]) is not _ABSENT]
        if gone:
            self.inner.delete_many(gone)
        if puts:
            self.inner.put_many(puts)
        self._dirty = {}
        self._undo = {}
