"""The ``sqlite`` backend, Settee's embedded default.

One SQLite file per database, one table ``kv(key TEXT PRIMARY KEY, value BLOB)``
without rowids, so a key lookup and a range scan are B-tree walks: O(log n) and
O(log n + k). ``TEXT`` keys compare with ``memcmp`` on UTF-8, which is code-point
order, the same order as Python's ``str`` comparison.

Durability: WAL journal (checkpointed by a background thread, :mod:`.checkpoint`);
``synchronous=FULL`` by default, so a commit is fsynced before ``transaction()``
returns (``NORMAL`` survives a process crash but may lose the last commits on a power
cut; it is a setting, ``sqlite_synchronous``). At ``FULL`` the backend makes that
fsync itself: SQLite's ``FULL`` syncs the log inside ``COMMIT``, holding the writers'
lock, so every other writer waited out each fsync. Here the connection commits at
``NORMAL`` (the log written, not synced), the lock is released, and then the log is
fsynced before the commit is acknowledged: the next batch, of this or another
process, is written during the fsync. The log is append-only between checkpoints and
a checkpoint syncs it first (and the database file after), so an fsync of the log
after ``COMMIT`` makes that commit, and every earlier one, as durable as ``FULL``
does; a reader may see a commit a moment before it is durable, never a writer its
acknowledgement.

Transactions across threads and processes: every thread reads on its own connection
(re-opened after a fork); transactions run on the process's one write connection.
A batch of transactions (group commit, :mod:`..transactions`) takes an exclusive
``flock`` on ``<file>-lock``, then ``BEGIN IMMEDIATE``; each transaction of the batch
is a ``SAVEPOINT``, run one at a time; the batch commits (one fsync) when no other
thread of the process is waiting to write, and only then do its transactions return.
Writers of every process therefore queue on one kernel lock instead of polling
SQLite's busy handler. Reads outside a transaction need no lock: WAL gives each
statement a consistent snapshot of the last commit. Single writes outside a
transaction are wrapped in their own transaction.
"""
from __future__ import annotations

import errno
import os
import sqlite3
import threading
from functools import lru_cache
from typing import Literal

from ..base import DELETE_BATCH, Backend
from ..exceptions import BackendError, StorageFull
from ..transactions import Transactions
from .checkpoint import Checkpointer
from .locking import FileLock


class translate_errors:
    """The one place where sqlite3's exceptions become the store's.

    A context manager: ``with translate_errors(path): ...``. A plain class, not a
    ``@contextmanager`` generator, because every read and write enters one; it holds
    no state but the path, so a backend keeps one and re-enters it.
    """

    __slots__ = ("path",)

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, e, tb) -> Literal[False]:
        if exc_type is None:
            return False
        path = self.path
        if issubclass(exc_type, sqlite3.DatabaseError):
            # The primary result code (the low byte of an extended one), not the text.
            code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
            if code in STORAGE_FULL_CODES:
                raise StorageFull(f"{path}: {e}", original=e) from e
            raise BackendError(f"{path}: {e}", original=e) from e
        if issubclass(exc_type, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(f"{path}: {e}", original=e) from e
        return False


#: SQLite's result codes for a storage that cannot take the write: SQLITE_FULL, and
#: SQLITE_IOERR (a full disk often surfaces as a failed write of the log).
STORAGE_FULL_CODES = {13, 10}

#: Rows written (or deleted) by one statement in ``put_many``/``delete_many``.
ROWS_PER_STATEMENT = 200


@lru_cache(maxsize=ROWS_PER_STATEMENT)
def _insert_sql(rows: int) -> str:
    return "INSERT OR REPLACE INTO kv (key, value) VALUES " + ",".join(["(?, ?)"] * rows)


class SQLiteBackend(Transactions, Backend):
    ordered = True
    max_batch = 128                   # group commit: transactions sharing one commit
    synchronous_modes = ("OFF", "NORMAL", "FULL", "EXTRA")
    writer_cache_kib = 65536
    # The process's write connection, opened by _writer() (absent until then).
    _writer_con: sqlite3.Connection
    _writer_pid: int | None

    def __init__(self, path: str, synchronous: str = "FULL", timeout: float = 60.0):
        self.path = path
        synchronous = synchronous.upper()
        if synchronous not in self.synchronous_modes:
            raise ValueError(f"synchronous must be one of {self.synchronous_modes}")
        self.synchronous = synchronous
        self._sync_log = synchronous == "FULL"     # fsync the log after the lock (above)
        self._log_path = path + "-wal"
        self.timeout = timeout
        self._local = threading.local()
        self._lock = FileLock(path + "-lock")
        self._init_transactions()
        self._checkpoints = Checkpointer(path, self._connect)
        self._all_connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._errors = translate_errors(path)
        with self._errors:
            con = self._con()
            con.execute("CREATE TABLE IF NOT EXISTS kv "
                        "(key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID")
        if self._sync_log:
            self._sync()

    # -- connections ------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                              check_same_thread=False, cached_statements=512)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={'NORMAL' if self._sync_log else self.synchronous}")
        return con

    def _con(self) -> sqlite3.Connection:
        """Inside a transaction, the shared write connection; else this thread's own."""
        if getattr(self._tx_state, "depth", 0):
            return self._writer()
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            con = self._connect()
            local.con, local.pid = con, os.getpid()
            self._all_connections.append((threading.current_thread(), con))
        return local.con

    # -- transactions (group commit: see transactions.py) ---------------------------
    def _writer(self) -> sqlite3.Connection:
        """The process's write connection: every transaction's statements run on it."""
        if getattr(self, "_writer_pid", None) != os.getpid():
            self._writer_con = self._connect()
            # The one write connection gets a big page cache: index builds and bulk
            # loads insert all over a large B-tree (the readers keep the default).
            self._writer_con.execute(f"PRAGMA cache_size=-{self.writer_cache_kib}")
            # Checkpoints run in the background (checkpoint.py); this is the backstop.
            self._writer_con.execute(
                f"PRAGMA wal_autocheckpoint={self._checkpoints.backstop_pages}")
            self._writer_pid = os.getpid()
        return self._writer_con

    def _open_batch(self) -> None:
        self._lock.acquire()
        try:
            with self._errors:
                self._writer().execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise

    def _commit_batch(self) -> None:
        try:
            with self._errors:
                self._writer().execute("COMMIT")
        finally:
            if not self._writer().in_transaction:
                self._lock.release()
        self._checkpoints.committed()

    def _sync_batch(self) -> None:
        if self._sync_log:
            self._sync()

    def _sync(self) -> None:
        """fsync the log: every commit so far is durable when this returns."""
        with self._errors:
            try:
                fd = os.open(self._log_path, os.O_RDONLY)
            except FileNotFoundError:
                return          # no log: the last connection checkpointed it (synced) away
            try:
                os.fsync(fd)
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise                    # StorageFull, by translate_errors
                raise BackendError(f"{self._log_path}: fsync failed: {e}", original=e) from e
            finally:
                os.close(fd)

    def _abort_batch(self) -> None:
        try:
            con = self._writer()
            if con.in_transaction:
                con.execute("ROLLBACK")
        finally:
            self._lock.release()

    def _savepoint(self, name: str) -> None:
        with self._errors:
            self._writer().execute(f"SAVEPOINT {name}")

    def _release(self, name: str) -> None:
        with self._errors:
            self._writer().execute(f"RELEASE {name}")

    def _rollback_to(self, name: str) -> None:
        with self._errors:
            con = self._writer()
            con.execute(f"ROLLBACK TO {name}")
            con.execute(f"RELEASE {name}")

    # -- the mapping ------------------------------------------------------------
    def __getitem__(self, key: str) -> bytes:
        with self._errors:
            row = self._con().execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return row[0]

    def get_many(self, keys):
        found: dict[str, bytes] = {}
        con = self._con()
        with self._errors:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                marks = ",".join("?" * len(chunk))
                found.update(con.execute(f"SELECT key, value FROM kv WHERE key IN ({marks})",
                                         chunk).fetchall())
        return found

    def __setitem__(self, key: str, value: bytes) -> None:
        key, value = self.check_key(key), self.check_value(value)
        with self.transaction(), self._errors:
            self._con().execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def put_many(self, items) -> None:
        """Every row first checked (and encoded, by the layers above), then written a
        chunk of rows per statement: a document write is one ``INSERT``, not one per
        key (each statement releases and re-takes the GIL inside the writers' turn)."""
        rows: list[str | bytes] = []
        for k, v in items:
            rows.append(self.check_key(k))
            rows.append(self.check_value(v))
        self._insert(rows)

    def put_checked(self, items) -> None:
        self._insert([part for pair in items for part in pair])

    def _insert(self, rows: list) -> None:
        """``rows`` is ``[key, value, key, value, ...]``."""
        if not rows:
            return
        with self.transaction(), self._errors:
            con = self._con()
            for i in range(0, len(rows), 2 * ROWS_PER_STATEMENT):
                chunk = rows[i:i + 2 * ROWS_PER_STATEMENT]
                con.execute(_insert_sql(len(chunk) // 2), chunk)

    def delete_many(self, keys) -> None:
        keys = list(keys)
        if not keys:
            return
        with self.transaction(), self._errors:
            con = self._con()
            for i in range(0, len(keys), ROWS_PER_STATEMENT):
                chunk = keys[i:i + ROWS_PER_STATEMENT]
                con.execute(f"DELETE FROM kv WHERE key IN ({','.join('?' * len(chunk))})", chunk)

    def delete_range(self, start: str, end: str) -> int:
        """One statement a batch, the keys never brought into Python."""
        dropped = 0
        while True:
            with self.transaction(), self._errors:
                n = self._con().execute(
                    "DELETE FROM kv WHERE key IN (SELECT key FROM kv WHERE key >= ? AND key < ?"
                    f" LIMIT {DELETE_BATCH})", (start, end)).rowcount
            dropped += n
            if n < DELETE_BATCH:
                return dropped

    def __delitem__(self, key: str) -> None:
        with self.transaction(), self._errors:
            cur = self._con().execute("DELETE FROM kv WHERE key = ?", (key,))
            if cur.rowcount == 0:
                raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        with self._errors:
            return self._con().execute("SELECT 1 FROM kv WHERE key = ?", (key,)).fetchone() is not None

    def __iter__(self):
        return self.range(keys_only=True)

    def __len__(self) -> int:
        with self._errors:
            return self._con().execute("SELECT count(*) FROM kv").fetchone()[0]

    def range(self, start=None, end=None, *, descending=False, inclusive_end=True,
              keys_only=False):
        """Keys in order, fetched in pages so a long scan never holds a big result.

        Pages start small and double (32 up to 1024 rows): a query that wants ten rows
        (a view by key, ``limit=10``) reads a few dozen, not a thousand."""
        columns = "key" if keys_only else "key, value"
        order = "DESC" if descending else "ASC"
        con = self._con()
        lo, lo_incl, hi, hi_incl = start, True, end, inclusive_end
        page = 32
        while True:
            where, args = [], []
            if lo is not None:
                where.append("key >= ?" if lo_incl else "key > ?")
                args.append(lo)
            if hi is not None:
                where.append("key <= ?" if hi_incl else "key < ?")
                args.append(hi)
            sql = (f"SELECT {columns} FROM kv"
                   f"{' WHERE ' + ' AND '.join(where) if where else ''}"
                   f" ORDER BY key {order} LIMIT {page}")
            with self._errors:
                rows = con.execute(sql, args).fetchall()
            for row in rows:
                yield row[0] if keys_only else (row[0], row[1])
            if len(rows) < page:
                return
            page = min(page * 2, 1024)
            last = rows[-1][0]
            if descending:
                hi, hi_incl = last, False
            else:
                lo, lo_incl = last, False

    def size_on_disk(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total

    def vacuum(self) -> None:
        """Give the pages that deletions freed back to the file system: ``VACUUM``
        rewrites the file without them (SQLite only reuses free pages, it never shrinks
        a file by itself: 58,429 of 59,265 pages of a compacted database were free),
        then the log is checkpointed into the file and truncated.

        It runs on the process's write connection, outside any transaction, holding
        the gate (no transaction of this process runs) and the writers' lock (none of
        another process does): writers everywhere wait for the rewrite, which takes
        about as long as copying the live data once. Readers go on, on their snapshot.
        """
        self._check_fork()
        with self._gate:
            self.flush()
            with self._lock.held(), self._errors:
                con = self._writer()
                con.execute("VACUUM")
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Close the write connection (between transactions), this thread's connection
        and those of finished threads.

        A read connection another live thread may be using right now is only dropped:
        it closes when that thread lets go of it (closing it under a running statement
        would crash the sqlite3 module). The write connection is closed holding the
        gate, so no transaction of another thread is running on it.
        """
        self._check_fork()
        self._checkpoints.stop()
        inside = self.in_transaction()
        gated = not inside and self._gate.acquire(timeout=60)
        try:
            if gated:
                self.flush()
                if getattr(self, "_writer_pid", None) == os.getpid():
                    try:
                        self._writer_con.close()
                    except sqlite3.Error:
                        pass
                self._writer_pid = None
            me = threading.current_thread()
            for owner, con in self._all_connections:
                if owner is not me and owner.is_alive():
                    continue
                try:
                    con.close()
                except sqlite3.Error:
                    pass
            self._all_connections.clear()
            self._local = threading.local()
            self._lock.close()
        finally:
            if gated:
                self._gate.release()
