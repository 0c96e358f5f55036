"""The ``memory`` backend: a dict, for tests and ephemeral databases.

Transactions (:mod:`..transactions`): one writer thread at a time; an undo log restores
the touched keys when a transaction rolls back. Nothing survives the process, and
nothing is shared with other processes. Ranges scan and sort (``ordered = False``).
"""
from __future__ import annotations

from ..base import MISSING, Backend
from ..transactions import Transactions


class MemoryBackend(Transactions, Backend):
    ordered = False

    def __init__(self):
        self._data: dict[str, bytes] = {}
        self._undo: dict[str, bytes] | None = None
        self._init_transactions()

    def __getitem__(self, key: str) -> bytes:
        return self._data[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        key, value = self.check_key(key), self.check_value(value)
        with self.transaction():
            self._remember(key)
            self._data[key] = value

    def __delitem__(self, key: str) -> None:
        with self.transaction():
            if key not in self._data:
                raise KeyError(key)
            self._remember(key)
            del self._data[key]

    def __iter__(self):
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def _remember(self, key: str) -> None:
        if self._undo is not None and key not in self._undo:
            self._undo[key] = self._data.get(key, MISSING)

    def _open_batch(self) -> None:
        self._undo = {}

    def _commit_batch(self) -> None:
        self._undo = None

    def _abort_batch(self) -> None:
        for key, old in (self._undo or {}).items():
            if old is MISSING:
                self._data.pop(key, None)
            else:
                self._data[key] = old
        self._undo = None
