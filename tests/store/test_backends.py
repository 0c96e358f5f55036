"""The backend contract, run against every backend, and what each backend adds to it."""
from __future__ import annotations

import os
import threading
import time

import pytest

from settee.store.backends.dbmstore import DBMBackend
from settee.store.backends.filestore import FileBackend
from settee.store.backends.journal import encode_journal, write_journal
from settee.store.backends.memory import MemoryBackend
from settee.store.backends.sqlite import SQLiteBackend
from settee.store.base import MISSING
from settee.store.exceptions import StorageFull
from settee.store.layers.compression import Compression
from settee.store.layers.encryption import AESGCMEncryption
from settee.store.testing import HOSTILE_KEYS, BackendContract

try:
    from settee.store.backends.lmdbstore import LMDBBackend
except ImportError:                    # the lmdb package is optional
    LMDBBackend = None


class TestMemoryBackend(BackendContract):
    persistent = False

    def make_store(self, path):
        return MemoryBackend()


class TestSQLiteBackend(BackendContract):
    def make_store(self, path):
        return SQLiteBackend(str(path / "store.sqlite"))


# -- stacks of byte layers keep the same contract -------------------------------------
class TestCompressedSQLite(BackendContract):
    def make_store(self, path):
        return Compression(SQLiteBackend(str(path / "store.sqlite")), min_size=0)


class TestEncryptedCompressedMemory(BackendContract):
    persistent = False

    def make_store(self, path):
        return AESGCMEncryption(Compression(MemoryBackend(), algorithm="zlib", min_size=0),
                                key="ab" * 32)


# -- what the file, dbm and lmdb backends promise beyond the contract --------------------
class LongKeyTests:
    """Keys up to ``Backend.max_key_length`` characters, longer than any file name or
    LMDB key, are stored as themselves and keep their place in the order."""

    @pytest.mark.parametrize("char", ["x", "é", "😀"])
    def test_the_longest_keys_are_stored_as_themselves(self, store, char):
        key = char * store.max_key_length
        store[key] = b"long"
        store[key[:-1]] = b"one shorter"
        assert store[key] == b"long" and store[key[:-1]] == b"one shorter"
        assert sorted(store) == sorted([key, key[:-1]])
        del store[key]
        assert key not in store and store[key[:-1]] == b"one shorter"

    def test_long_keys_sharing_a_prefix_sort_by_their_real_keys(self, store):
        base = "p" * 600
        keys = [base + tail for tail in ("z", "a", "m", "a0", "b" * 50, "\u4e2d")]
        keys += [base[:477], base[:478], base[:479], "p", "q", base + "a" * 3000]
        for key in keys:
            store[key] = key[-3:].encode()
        assert list(store.range(keys_only=True)) == sorted(keys)
        assert list(store.range(descending=True, keys_only=True)) == sorted(keys, reverse=True)
        low, high = base + "a0", base + "m"
        expected = [k for k in sorted(keys) if low <= k <= high]
        assert len(expected) >= 3
        assert [k for k, _ in store.range(low, high)] == expected
        assert list(store.range(low, high, descending=True, keys_only=True)) == expected[::-1]
        assert [v for _, v in store.range(low, high)] == [k[-3:].encode() for k in expected]

    def test_other_threads_never_see_uncommitted_writes(self, store):
        store["a"] = b"old"
        seen = []
        reading = threading.Event()

        def read():
            reading.set()
            seen.append((store["a"], time.monotonic()))

        with store.transaction():
            store["a"] = b"new"
            reader = threading.Thread(target=read)
            reader.start()
            assert reading.wait(10)
            # Not a wait for anything: the window in which a wrong read could happen. A
            # snapshot read (lmdb) ends it at once; a read that waits for the commit
            # (file, dbm: blocked on the lock, which nothing outside the thread shows)
            # is given 0.2 s to go wrong.
            reader.join(0.2)
            committed_at = time.monotonic()
        reader.join(10)
        assert not reader.is_alive(), "the read still waits after the commit"
        [(value, read_at)] = seen
        # Either the reader waited for the commit (file, dbm) or read the old snapshot (lmdb).
        assert value == b"old" or (value == b"new" and read_at >= committed_at)


class JournalTests:
    """A crash between the journal and its removal is finished by the next opener;
    a journal torn by a crash while it was written is dropped."""

    def journal_path(self, tmp_path):  # pragma: no cover - overridden
        raise NotImplementedError

    def prepare(self, tmp_path):
        store = self.make_store(tmp_path)
        store["a"] = b"old"
        store["gone"] = b"x"
        store.close()
        return [("a", b"new"), ("b", b"2" * 5000), ("gone", MISSING)]

    def test_a_complete_journal_is_replayed_at_open(self, tmp_path):
        write_journal(self.journal_path(tmp_path), self.prepare(tmp_path))
        store = self.make_store(tmp_path)
        try:
            assert store["a"] == b"new" and store["b"] == b"2" * 5000 and "gone" not in store
            assert not os.path.exists(self.journal_path(tmp_path))
        finally:
            store.close()

    def test_a_torn_journal_is_dropped(self, tmp_path):
        data = encode_journal(self.prepare(tmp_path))
        with open(self.journal_path(tmp_path), "wb") as f:
            f.write(data[:-7])
        store = self.make_store(tmp_path)
        try:
            assert dict(store.items()) == {"a": b"old", "gone": b"x"}
            assert not os.path.exists(self.journal_path(tmp_path))
        finally:
            store.close()

    def test_a_reader_finishes_the_journal_of_a_crashed_writer(self, tmp_path):
        ops = self.prepare(tmp_path)
        store = self.make_store(tmp_path)
        try:
            assert store["a"] == b"old"
            write_journal(self.journal_path(tmp_path), ops)   # as a writer dying mid-commit would
            assert store["a"] == b"new" and "gone" not in store
        finally:
            store.close()


class TestFileBackend(LongKeyTests, JournalTests, BackendContract):
    def make_store(self, path):
        return FileBackend(str(path / "files"))

    def journal_path(self, tmp_path):
        return str(tmp_path / "files" / "journal")

    def test_no_key_reaches_outside_the_data_directory(self, store, tmp_path):
        for key in HOSTILE_KEYS:
            store[key] = b"."
        assert sorted(store) == sorted(HOSTILE_KEYS)
        assert sorted(os.listdir(tmp_path)) == ["files"]
        assert sorted(os.listdir(tmp_path / "files")) == ["data", "lock"]
        names = os.listdir(tmp_path / "files" / "data")
        assert len(names) == len(HOSTILE_KEYS)
        assert all(set(n[:-2]) <= set("0123456789abcdef") and len(n) <= 202 for n in names)

    def test_temporary_files_of_a_crashed_writer_are_swept_at_open(self, tmp_path):
        self.make_store(tmp_path).close()
        debris = tmp_path / "files" / "data" / ".tmp-0123"
        debris.write_bytes(b"half a value")
        store = self.make_store(tmp_path)
        try:
            assert not debris.exists() and list(store) == []
        finally:
            store.close()


class TestDBMBackend(LongKeyTests, JournalTests, BackendContract):
    def make_store(self, path):
        return DBMBackend(str(path / "store.dbm"))

    def journal_path(self, tmp_path):
        return str(tmp_path / "store.dbm.journal")

    def fill(self, tmp_path):
        store = self.make_store(tmp_path)
        assert store._module.__name__ == "dbm.dumb" or pytest.skip("repairs dbm.dumb's files")
        with store.transaction():
            for i in range(10):
                store[f"k{i}"] = b"v%d" % i
        store.close()
        return str(tmp_path / "store.dbm.dir")

    def test_a_torn_index_line_is_cut_before_the_journal_is_replayed(self, tmp_path):
        index = self.fill(tmp_path)
        with open(index, "a", encoding="latin-1") as f:
            f.write("'torn', (5120")             # a crash in the middle of an append
        write_journal(self.journal_path(tmp_path), [("k3", b"new"), ("torn", b"whole")])
        store = self.make_store(tmp_path)
        try:
            expected = {f"k{i}": b"v%d" % i for i in range(10)} | {"k3": b"new", "torn": b"whole"}
            assert dict(store.items()) == expected
        finally:
            store.close()

    def test_an_index_caught_mid_rewrite_is_restored_from_its_backup(self, tmp_path):
        index = self.fill(tmp_path)
        os.rename(index, index[:-4] + ".bak")      # dbm.dumb's _commit: .dir -> .bak,
        with open(index[:-4] + ".bak", "rb") as f:   # then a new .dir, cut short here
            lines = f.read().split(b"\n")
        with open(index, "wb") as f:
            f.write(b"\n".join(lines[:3]) + b"\n" + lines[3][:4])
        write_journal(self.journal_path(tmp_path), [("k1", b"new"), ("k5", MISSING)])
        store = self.make_store(tmp_path)
        try:
            expected = {f"k{i}": b"v%d" % i for i in range(10) if i != 5} | {"k1": b"new"}
            assert dict(store.items()) == expected
            assert not os.path.exists(index[:-4] + ".bak")
        finally:
            store.close()


@pytest.mark.skipif(LMDBBackend is None, reason="the lmdb package is not installed")
class TestLMDBBackend(LongKeyTests, BackendContract):
    def make_store(self, path):
        return LMDBBackend(str(path / "lmdb"), map_size=1 << 26)

    def test_a_full_map_is_storage_full_and_rolls_back(self, tmp_path):
        store = LMDBBackend(str(tmp_path / "small"), map_size=1 << 20)
        try:
            store["kept"] = b"1"
            with pytest.raises(StorageFull):
                with store.transaction():
                    for i in range(64):
                        store[f"big{i}"] = os.urandom(64 * 1024)
            assert list(store) == ["kept"]
            store["after"] = b"2"
            assert store["after"] == b"2"
        finally:
            store.close()

    def test_two_backends_on_one_directory_share_the_environment(self, tmp_path):
        first = self.make_store(tmp_path)
        second = self.make_store(tmp_path)
        try:
            first["n"] = b"0"
            assert second["n"] == b"0" and first.env is second.env

            def work(store):
                for _ in range(50):
                    with store.transaction():
                        store["n"] = b"%d" % (int(store["n"]) + 1)

            threads = [threading.Thread(target=work, args=(s,)) for s in (first, second) * 2]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert first["n"] == second["n"] == b"200"
        finally:
            first.close()
        try:
            second["b"] = b"2"
            assert second["b"] == b"2"
        finally:
            second.close()


class TestPostgreSQLBackend(BackendContract):
    """The contract on PostgreSQL (tests/pgserver.py; more in tests/test_postgresql.py)."""

    @pytest.fixture(autouse=True)
    def _dsn(self, postgres_dsn):
        self.dsn = postgres_dsn

    def make_store(self, path):
        from settee.store.backends.postgresql import PostgreSQLBackend
        return PostgreSQLBackend(self.dsn, "db-" + path.name)


@pytest.mark.parametrize("code, error", [(13, "StorageFull"), (10 | (4 << 8), "StorageFull"),
                                         (5, "BackendError"), (11, "BackendError")])
def test_sqlite_errors_are_told_apart_by_their_result_code(tmp_path, code, error):
    """By the code, not by sniffing the message (which SQLite may word differently)."""
    import sqlite3

    from settee.store import exceptions
    from settee.store.backends.sqlite import translate_errors
    failure = sqlite3.OperationalError("something the message does not say")
    failure.sqlite_errorcode = code
    with pytest.raises(getattr(exceptions, error)):
        with translate_errors(str(tmp_path)):
            raise failure
