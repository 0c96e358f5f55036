"""The backend contract, run against every backend."""
from __future__ import annotations

from contract import BackendContract

from settee.store.memory import MemoryBackend
from settee.store.sqlite import SQLiteBackend


class TestMemoryBackend(BackendContract):
    persistent = False

    def make_store(self, path):
        return MemoryBackend()


class TestSQLiteBackend(BackendContract):
    def make_store(self, path):
        return SQLiteBackend(str(path / "store.sqlite"))
