"""The ``lmdb`` backend: an ordered, memory-mapped B+tree (the ``lmdb`` package).

``LMDBBackend(directory, map_size=...)`` keeps one LMDB environment in
``directory`` (``data.mdb``, ``lock.mdb``). ``map_size`` is the largest the file may
grow; a write beyond it raises :class:`~.exceptions.StorageFull`, as does a full disk.

Order: keys are stored as their UTF-8 bytes, whose byte order is code-point order,
so ``range`` walks a cursor (``set_range``, then next or previous) in O(log n + k),
fetching pages of 512 entries in short read transactions.

Long keys: LMDB keys are at most 511 bytes, but every backend accepts keys of 4096
characters. A key whose UTF-8 is longer than :data:`PREFIX` (478) bytes is stored
under its first 478 bytes, then ``0xFF`` (a byte UTF-8 never uses), then the
SHA-256 of the whole key; its value is the whole key (with its length) followed by
the value. Order is kept: such a stored key sorts exactly where the real key does
against every short key, because short keys have at most 478 bytes and ``0xFF``
sorts after any byte they can have there. Only long keys sharing their first 478
bytes sort among themselves by hash; they are adjacent, so ``range`` reads each
such run whole and sorts it by the real keys.

Transactions: an LMDB write transaction (one writer per environment, across
processes, by LMDB's own lock). ``transaction()`` is re-entrant per thread; inside
it, that thread's reads and writes use its write transaction. Reads outside one use
a read transaction: a consistent snapshot, never blocked by writers. Commits are
durable (``sync`` and ``metasync`` on); LMDB's copy-on-write pages make them atomic
across a crash.

An environment must be opened once per process (LMDB's locks are per process), so
backends on the same directory in one process share it, counted by reference. A
process must not use an environment it inherited through ``fork``: open the backend
after forking (the catalog opens databases lazily, in each worker).
"""
from __future__ import annotations

import errno
import hashlib
import os
import struct
import threading
from contextlib import contextmanager

import lmdb

from ..base import Backend, in_range
from ..exceptions import BackendError, InvalidKey, StorageFull
from ..transactions import Transactions

#: Longest key, in UTF-8 bytes, stored as itself (LMDB's 511 minus 0xFF and a SHA-256).
PREFIX = 478
MARK = b"\xff"
PAGE = 512
DEFAULT_MAP_SIZE = 1 << 34
_LENGTH = struct.Struct(">I")

#: (pid, real path) -> [environment, users, writer lock]: one per environment and process.
_envs: dict[tuple[int, str], list] = {}
_envs_lock = threading.Lock()


@contextmanager
def translate_errors(path: str):
    """The one place where lmdb's exceptions become the store's."""
    try:
        yield
    except (lmdb.MapFullError, lmdb.DiskError) as e:
        raise StorageFull(f"{path}: {e}", original=e) from e
    except lmdb.Error as e:
        raise BackendError(f"{path}: {e}", original=e) from e
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(f"{path}: {e}", original=e) from e
        raise BackendError(f"{path}: {e}", original=e) from e


def stored_key(key: str) -> bytes:
    raw = key.encode()
    if len(raw) <= PREFIX:
        return raw
    return raw[:PREFIX] + MARK + hashlib.sha256(raw).digest()


def is_long(stored: bytes) -> bool:
    return len(stored) > PREFIX


def seek_from(key: str) -> bytes:
    """The smallest stored key that can hold ``key`` or anything after it."""
    stored = stored_key(key)
    return stored[:PREFIX + 1] if is_long(stored) else stored


def seek_after(key: str) -> bytes:
    """A stored key greater than ``key``'s and smaller than any greater key's."""
    stored = stored_key(key)
    # NUL is in no key, so raw + NUL comes right after raw; after a long key's run,
    # 33 0xFF bytes come after every hash.
    return stored[:PREFIX + 1] + MARK * 33 if is_long(stored) else stored + b"\x00"


def decode(stored: bytes, data: bytes) -> tuple[str, bytes]:
    """The real key and the value of one LMDB entry."""
    if not is_long(stored):
        return stored.decode(), data
    (size,) = _LENGTH.unpack_from(data)
    end = _LENGTH.size + size
    return data[_LENGTH.size:end].decode(), data[end:]


class LMDBBackend(Transactions, Backend):
    """An LMDB environment; see the module docstring."""

    ordered = True

    def __init__(self, directory: str, map_size: int = DEFAULT_MAP_SIZE):
        self.path = directory
        self.map_size = map_size
        os.makedirs(directory, exist_ok=True)
        self._key = (os.getpid(), os.path.realpath(directory))
        with _envs_lock, translate_errors(directory):
            entry = _envs.get(self._key)
            if entry is None:
                env = lmdb.open(directory, map_size=map_size, subdir=True, max_dbs=0,
                                sync=True, metasync=True)
                limit = env.max_key_size()
                if limit < PREFIX + 1 + 32:
                    env.close()
                    raise BackendError(f"{directory}: this LMDB allows keys of only "
                                       f"{limit} bytes; Settee needs 511")
                entry = _envs[self._key] = [env, 0, threading.RLock()]
            entry[1] += 1
        self.env: lmdb.Environment | None = entry[0]
        # Backends sharing the environment share the writers' gate too, so their threads
        # queue there rather than inside LMDB's own writer mutex.
        self._init_transactions(gate=entry[2])

    # -- transactions -----------------------------------------------------------------
    def _open_batch(self) -> None:
        env = self.env
        assert env is not None, "LMDBBackend used after close()"
        with translate_errors(self.path):
            self._tx_state.txn = env.begin(write=True)

    def _commit_batch(self) -> None:
        txn, self._tx_state.txn = self._tx_state.txn, None
        try:
            with translate_errors(self.path):
                txn.commit()
        except BaseException:
            try:
                txn.abort()
            except lmdb.Error:
                pass
            raise

    def _abort_batch(self) -> None:
        txn, self._tx_state.txn = self._tx_state.txn, None
        if txn is not None:
            txn.abort()

    @contextmanager
    def _reader(self):
        """This thread's write transaction inside ``transaction()``, else a snapshot."""
        if self.in_transaction():
            with translate_errors(self.path):
                yield self._tx_state.txn
            return
        env = self.env
        assert env is not None, "LMDBBackend used after close()"
        with translate_errors(self.path):
            txn = env.begin()
            try:
                yield txn
            finally:
                txn.abort()

    # -- the mapping ------------------------------------------------------------------
    @staticmethod
    def _get(txn, key: str) -> bytes:
        stored = stored_key(key)
        data = txn.get(stored)
        if data is None:
            raise KeyError(key)
        real, value = decode(stored, data)
        if real != key:             # a SHA-256 collision: the entry is another key's
            raise KeyError(key)
        return value

    def _readable(self, key: object) -> str:
        """``key`` if it could be stored; reading any other key is a plain ``KeyError``."""
        try:
            return self.check_key(key)
        except InvalidKey:
            raise KeyError(key) from None

    def __getitem__(self, key: str) -> bytes:
        key = self._readable(key)
        with self._reader() as txn:
            return self._get(txn, key)

    def get_many(self, keys):
        found = {}
        with self._reader() as txn:
            for key in keys:
                try:
                    found[key] = self._get(txn, self._readable(key))
                except KeyError:
                    pass
        return found

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def __setitem__(self, key: str, value: bytes) -> None:
        key, value = self.check_key(key), self.check_value(value)
        stored = stored_key(key)
        if is_long(stored):
            raw = key.encode()
            value = _LENGTH.pack(len(raw)) + raw + value
        with self.transaction(), translate_errors(self.path):
            self._tx_state.txn.put(stored, value)

    def __delitem__(self, key: str) -> None:
        key = self._readable(key)
        with self.transaction():
            if key not in self:
                raise KeyError(key)
            with translate_errors(self.path):
                self._tx_state.txn.delete(stored_key(key))

    def __len__(self) -> int:
        with self._reader() as txn:
            return txn.stat()["entries"]

    def __iter__(self):
        return self.range(keys_only=True)

    # -- ranges -----------------------------------------------------------------------
    def range(self, start=None, end=None, *, descending=False, inclusive_end=True,
              keys_only=False):
        """Entries in [start, end] in order, one short transaction per page."""
        resume: bytes | None = None
        while True:
            with self._reader() as txn, txn.cursor() as cursor:
                page, resume, done = self._page(cursor, start, end, descending,
                                                inclusive_end, resume)
            for key, value in page:
                if in_range(key, start, end, inclusive_end):
                    yield key if keys_only else (key, value)
            if done:
                return

    @staticmethod
    def _page(cursor, start, end, descending, inclusive_end, resume):
        """Up to about PAGE entries from where the last page stopped (``resume``, the
        last stored key read). Returns (entries, new resume, whether the range is done).
        """
        if resume is not None:
            if descending:
                ok = cursor.prev() if cursor.set_range(resume) else cursor.last()
            else:
                ok = cursor.set_range(resume)
                if ok and cursor.key() == resume:
                    ok = cursor.next()
        elif descending:
            if end is None:
                ok = cursor.last()
            else:
                ok = cursor.prev() if cursor.set_range(seek_after(end)) else cursor.last()
        else:
            ok = cursor.set_range(seek_from(start)) if start is not None else cursor.first()

        def beyond(key: str) -> bool:     # past the far end of the range
            if descending:
                return start is not None and key < start
            return end is not None and (key > end or (key == end and not inclusive_end))

        step = cursor.prev if descending else cursor.next
        entries: list[tuple[str, bytes]] = []
        run: list[tuple[str, bytes]] = []          # long keys sharing their prefix
        run_prefix = None
        while ok:
            stored = cursor.key()
            long = is_long(stored)
            if not (long and run and stored[:PREFIX + 1] == run_prefix):
                if run:          # a run of long keys ended: put it in real-key order
                    entries += sorted(run, reverse=descending)
                    run = []
                    if beyond(entries[-1][0]):
                        return entries, resume, True
                if len(entries) >= PAGE:
                    return entries, resume, False
            if long:
                run_prefix = stored[:PREFIX + 1]
                run.append(decode(stored, cursor.value()))
            else:
                entries.append(decode(stored, cursor.value()))
                if beyond(entries[-1][0]):
                    return entries, stored, True
            resume = stored
            ok = step()
        entries += sorted(run, reverse=descending)
        return entries, resume, True

    # -- extras -----------------------------------------------------------------------
    def size_on_disk(self) -> int:
        try:
            return os.path.getsize(os.path.join(self.path, "data.mdb"))
        except OSError:
            return 0

    def close(self) -> None:
        if self.env is None:
            return
        with _envs_lock:
            entry = _envs.get(self._key)
            if entry is not None and entry[0] is self.env:
                entry[1] -= 1
                if entry[1] == 0:
                    del _envs[self._key]
                    self.env.close()
        self.env = None
