"""A write-ahead journal: atomic, crash-safe transactions for backends that have none.

The ``file`` and ``dbm`` backends store each value with a primitive that is atomic
for one key at best (a ``rename``) or not at all (``dbm.dumb`` overwrites in
place). :class:`Journaled` gives them the store's ``transaction()`` contract:
atomic for other threads and other processes, and all-or-nothing across a crash.

Locking
    One lock file per store, locked with ``flock``. A transaction holds the
    exclusive lock from its first statement to its end, so its reads, checks and
    writes never interleave with another writer. Every read outside a transaction
    holds the shared lock, so it never sees half a commit. Each thread opens its own
    descriptor of the lock file (``flock`` belongs to an open file description), so
    threads of one process exclude each other exactly as processes do; the
    process's transaction lock orders its writer threads before they reach the file.

Buffering
    Inside a transaction, writes and deletes go to an in-memory buffer that the
    transaction's own reads consult first; storage is not touched before commit, so
    rolling back is dropping the buffer.

Commit
    1. Write the journal file: a magic line, every operation (put key value,
       delete key), then a SHA-256 of all that; ``fsync`` it and its directory.
    2. Apply each operation to storage through the backend's hooks.
    3. Make storage durable (``_sync``: the backend's fsyncs).
    4. Unlink the journal and ``fsync`` the directory (a journal that came back
       after a power cut would be replayed over later commits).

    A transaction of one operation skips the journal when the backend's single
    writes are atomic and durable by themselves (``atomic_single_writes``).

Recovery
    Whoever next takes the lock (a writer, or a reader, which upgrades its shared
    lock for the purpose) and finds a journal, finishes it before anything else. A
    complete journal (checksum correct) was durable before step 2 began, so it is
    replayed from step 2: operations are idempotent (a put overwrites, deleting a
    missing key is no error), so replaying a half-applied journal, or replaying it
    twice, gives the same result. An incomplete journal means the crash came while
    it was written, before any operation was applied: it is deleted, and the
    transaction never happened. The backend's ``_repair`` hook runs first, to mend
    what a crash in step 2 may have left half-written (temporary files, a torn
    index line).

Backends implement ``_load``, ``_keys``, ``_store``, ``_remove`` and ``_sync``, and
may override ``_has``, ``_open_storage``, ``_repair`` and ``_refresh``.
"""
from __future__ import annotations

import errno
import hashlib
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

from ..base import MISSING
from ..exceptions import BackendError, InvalidKey, StorageFull
from ..transactions import Transactions
from .locking import FileLock

MAGIC = b"settee-journal 1\n"
PUT, DELETE = b"P", b"D"
_KEY = struct.Struct(">I")
_VALUE = struct.Struct(">Q")
_ABSENT = object()          # "not in the buffer" (MISSING in the buffer means deleted)

Operation = tuple[str, "bytes | object"]     # (key, value or MISSING for a delete)


@contextmanager
def translate_errors(where: str):
    """The one place where the operating system's errors become the store's.

    ``KeyError`` (a missing key) passes through; a full disk is :class:`StorageFull`;
    any other ``OSError`` (and a driver's own error, such as a damaged ``dbm``
    index) is :class:`BackendError`, keeping the original.
    """
    try:
        yield
    except (KeyError, StorageFull, BackendError, InvalidKey):
        raise
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(f"{where}: {e}", original=e) from e
        raise BackendError(f"{where}: {e}", original=e) from e
    except (SyntaxError, ValueError) as e:     # dbm.dumb parsing a damaged index
        raise BackendError(f"{where}: damaged storage: {e}", original=e) from e


def fsync_path(path: str, directory: bool = False) -> None:
    """``fsync`` a file, or a directory (which makes its renames and unlinks durable)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encode_journal(ops: list[Operation]) -> bytes:
    parts = [MAGIC]
    for key, value in ops:
        raw = key.encode()
        if value is MISSING:
            parts += [DELETE, _KEY.pack(len(raw)), raw]
        else:
            data = cast(bytes, value)       # not MISSING: a value
            parts += [PUT, _KEY.pack(len(raw)), raw, _VALUE.pack(len(data)), data]
    body = b"".join(parts)
    return body + hashlib.sha256(body).digest()


def decode_journal(data: bytes) -> list[Operation] | None:
    """The operations of a complete journal; ``None`` if it is torn or damaged."""
    body, digest = data[:-32], data[-32:]
    if len(data) < len(MAGIC) + 32 or not body.startswith(MAGIC) \
            or hashlib.sha256(body).digest() != digest:
        return None
    ops: list[Operation] = []
    pos = len(MAGIC)
    while pos < len(body):
        kind = body[pos:pos + 1]
        (size,) = _KEY.unpack_from(body, pos + 1)
        pos += 1 + _KEY.size
        key = body[pos:pos + size].decode()
        pos += size
        if kind == DELETE:
            ops.append((key, MISSING))
            continue
        (size,) = _VALUE.unpack_from(body, pos)
        pos += _VALUE.size
        ops.append((key, body[pos:pos + size]))
        pos += size
    return ops


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (short writes continued), then fsync it."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def write_journal(path: str, ops: list[Operation]) -> None:
    """Write ``ops`` to ``path`` durably (file and directory entry fsynced)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, encode_journal(ops))
    finally:
        os.close(fd)
    fsync_path(os.path.dirname(path) or ".", directory=True)


class Journaled(Transactions):
    """Mix-in: the mapping and ``transaction()`` of a backend, over storage hooks.

    Subclasses call :meth:`_init_journal` from ``__init__`` and implement the hooks
    below. Every hook runs with the store's lock held (shared for ``_load``,
    ``_has`` and ``_keys`` outside a transaction, exclusive otherwise).
    """

    #: Whether ``_store(..., durable=True)`` and ``_remove`` are atomic and durable
    #: on their own, so a transaction of one operation needs no journal.
    atomic_single_writes = False

    # -- hooks (abstract ones raise) -------------------------------------------------
    def _load(self, key: str) -> bytes:
        """The stored value of ``key``; ``KeyError`` if there is none."""
        raise NotImplementedError

    def _has(self, key: str) -> bool:
        try:
            self._load(key)
        except KeyError:
            return False
        return True

    def _keys(self) -> list[str]:
        raise NotImplementedError

    def _store(self, key: str, value: bytes, durable: bool) -> None:
        """Write one value; ``durable`` asks for it to be on disk on return."""
        raise NotImplementedError

    def _remove(self, key: str, durable: bool) -> None:
        """Delete one key; a missing key is no error (replays must be idempotent)."""
        raise NotImplementedError

    def _sync(self) -> None:
        """Make every operation applied so far durable."""
        raise NotImplementedError

    def _open_storage(self) -> None:
        """Once, at open, under the exclusive lock: create empty storage, sweep debris."""

    def _repair(self) -> None:
        """Before a journal is replayed: mend what a crash mid-commit may have torn."""

    def _refresh(self) -> None:
        """After the lock is taken: catch up with other processes' commits if need be."""

    # -- set-up ---------------------------------------------------------------------
    def _init_journal(self, lock_path: str, journal_path: str) -> None:
        self._lock_path = lock_path
        self._journal_path = journal_path
        self._init_transactions()
        self._pending: dict[str, bytes | object] = {}
        self._locks = threading.local()
        self._all_locks: list[FileLock] = []
        self._locks_guard = threading.Lock()
        with self._gate:
            lock = self._file_lock()
            lock.acquire()
            try:
                with translate_errors(journal_path):
                    self._open_storage()
                    self._recover()
            finally:
                lock.release()

    def _file_lock(self) -> FileLock:
        """This thread's own descriptor of the lock file (see the module docstring)."""
        lock = getattr(self._locks, "lock", None)
        if lock is None:
            lock = self._locks.lock = FileLock(self._lock_path)
            with self._locks_guard:
                self._all_locks.append(lock)
        return lock

    def close(self) -> None:
        with self._locks_guard:
            for lock in self._all_locks:
                lock.close()
            self._all_locks.clear()
        self._locks = threading.local()

    # -- recovery -------------------------------------------------------------------
    def _recover(self) -> None:
        """Under the exclusive lock: finish or discard a journal a crashed commit left."""
        try:
            with open(self._journal_path, "rb") as f:
                ops = decode_journal(f.read())
        except FileNotFoundError:
            return
        if ops is not None:
            self._repair()
            self._refresh()
            self._apply(ops, durable=False)
            self._sync()
        self._drop_journal()

    def _drop_journal(self) -> None:
        os.unlink(self._journal_path)
        fsync_path(os.path.dirname(self._journal_path) or ".", directory=True)

    def _apply(self, ops: list[Operation], durable: bool) -> None:
        for key, value in ops:
            if value is MISSING:
                self._remove(key, durable)
            else:
                self._store(key, value, durable)  # type: ignore[arg-type]

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """The shared lock, with storage recovered and current, for a read outside a transaction."""
        if self.in_transaction():          # the exclusive lock is held already
            with translate_errors(self._journal_path):
                yield
            return
        lock = self._file_lock()
        lock.acquire(shared=True)
        try:
            with translate_errors(self._journal_path):
                while os.path.exists(self._journal_path):   # a writer died mid-commit
                    lock.acquire()              # upgrade (flock converts, not atomically:
                    self._recover()             # _recover re-reads the journal)
                    lock.acquire(shared=True)
                self._refresh()
                yield
        finally:
            lock.release()

    # -- transactions ---------------------------------------------------------------
    def _open_batch(self) -> None:
        lock = self._file_lock()
        lock.acquire()
        try:
            with translate_errors(self._journal_path):
                self._recover()
                self._refresh()
        except BaseException:
            lock.release()
            raise
        self._pending = {}

    def _commit_batch(self) -> None:
        ops, self._pending = list(self._pending.items()), {}
        try:
            with translate_errors(self._journal_path):
                if len(ops) == 1 and self.atomic_single_writes:
                    self._apply(ops, durable=True)
                elif ops:
                    self._commit_journaled(ops)
        finally:
            self._file_lock().release()

    def _commit_journaled(self, ops: list[Operation]) -> None:
        try:
            write_journal(self._journal_path, ops)
        except BaseException:
            # Nothing was applied: without its journal the transaction simply never happened.
            try:
                os.unlink(self._journal_path)
            except OSError:
                pass
            raise
        try:
            self._apply(ops, durable=False)
            self._sync()
        except BaseException as e:
            # Storage may be half-written, but the journal is durable: replay it now. If
            # that works the transaction is committed; if not, the journal stays on
            # disk, the next lock-taker replays it, and the caller gets the error.
            try:
                self._recover()
            except BaseException:
                raise e from None
            if not isinstance(e, Exception):     # committed, but still stop as asked
                raise
            return
        self._drop_journal()

    def _abort_batch(self) -> None:
        self._pending = {}
        self._file_lock().release()

    # -- the mapping ----------------------------------------------------------------
    def _buffered(self, key: str) -> bytes | object:
        """The transaction's own pending value of ``key`` (MISSING if deleted), or _ABSENT."""
        if self.in_transaction():
            return self._pending.get(key, _ABSENT)
        return _ABSENT

    def _readable(self, key: object) -> str:
        """``key`` if it could be stored; reading any other key is a plain ``KeyError``."""
        try:
            return self.check_key(key)  # type: ignore[attr-defined]
        except InvalidKey:
            raise KeyError(key) from None

    def _lookup(self, key: str) -> bytes:
        """The value of ``key`` as this thread sees it; the caller holds the lock."""
        value = self._buffered(key)
        if value is MISSING:
            raise KeyError(key)
        if value is not _ABSENT:
            return value  # type: ignore[return-value]
        return self._load(key)

    def __getitem__(self, key: str) -> bytes:
        key = self._readable(key)
        with self._reading():
            return self._lookup(key)

    def __contains__(self, key: object) -> bool:
        try:
            key = self._readable(key)
        except KeyError:
            return False
        value = self._buffered(key)
        if value is not _ABSENT:
            return value is not MISSING
        with self._reading():
            return self._has(key)

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        """All under one shared lock: a consistent snapshot."""
        found = {}
        with self._reading():
            for key in keys:
                try:
                    found[key] = self._lookup(self._readable(key))
                except KeyError:
                    pass
        return found

    def __setitem__(self, key: str, value: bytes) -> None:
        key, value = self.check_key(key), self.check_value(value)  # type: ignore[attr-defined]
        with self.transaction():
            self._pending[key] = value

    def __delitem__(self, key: str) -> None:
        key = self._readable(key)
        with self.transaction():
            if key not in self:
                raise KeyError(key)
            self._pending[key] = MISSING

    def _key_list(self) -> list[str]:
        with self._reading():
            stored = self._keys()
        if not self.in_transaction():
            return stored
        keys = set(stored)
        for key, value in self._pending.items():
            if value is MISSING:
                keys.discard(key)
            else:
                keys.add(key)
        return list(keys)

    def __iter__(self) -> Iterator[str]:      # a snapshot: the lock is not held meanwhile
        return iter(self._key_list())

    def __len__(self) -> int:
        return len(self._key_list())
