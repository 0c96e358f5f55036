"""The ``postgresql`` backend: every database of a Settee installation in one PostgreSQL.

Several stateless server nodes share one PostgreSQL; what makes them agree is here.

Tables (created and migrated at start, see :data:`MIGRATIONS`), in the connection's
current schema, so one schema is one Settee installation:

``settee_databases(id, name)``
    The catalog: one row per Settee database. ``id`` comes from a sequence and is
    never reused, so it doubles as the database's *generation*: a database deleted
    and re-created by another node has a new id, and a node still holding the old
    one can neither read the new database's rows nor write into a deleted one.
``settee_kv(db, key, value)``
    Every key of every database, ``PRIMARY KEY (db, key)`` with ``key`` in the ``C``
    collation: byte order of UTF-8, which is code-point order, Python's ``str``
    order. Lookups are B-tree walks, O(log n); ranges are keyset-paginated B-tree
    scans, O(log n + k). ``value`` is ``bytea`` stored uncompressed (the stack
    compresses; encrypted values do not compress).

One shared table rather than one table per database: creating a database is an
``INSERT``, not DDL (DDL takes exclusive locks, bloats the system catalogs and races
between nodes), one migration covers every database, and the generation id keeps a
re-created database apart from the rows of its predecessor. The cost is a bigger
B-tree and a ``DELETE`` of its rows when a database is deleted.

Transactions (``transaction()``, re-entrant per thread, :class:`~..transactions.Transactions`):
the outermost block of a thread takes the process's thread lock for this database,
a connection from the process's pool, and sends in one round trip
``BEGIN; SELECT pg_advisory_xact_lock(<namespace>, <db id>)`` and a check that the
database still exists (:class:`DatabaseNotFound` if another node deleted it). The
advisory lock serialises the writers of one database across every node, as the
file lock does for SQLite, so a read-check-write inside the block (a revision
check, the next changes sequence from ``m/info``) cannot interleave with another
writer: sequences are gap-free and monotonic, and of two writers naming one revision
exactly one wins. Statements run at ``READ COMMITTED``, so each sees every commit
made before it, in particular those made before the lock was granted. The block
commits with ``NOTIFY`` on the installation's changes channel (payload: the db id)
when it wrote anything, and releases everything in reverse order. Writes outside a
block get their own transaction. Reads outside a block run in autocommit on any
pooled connection: each statement sees the last commit.

Failures: psycopg's errors become the store's in one place, :class:`translate_errors`
(``StorageFull`` for SQLSTATE 53100, :class:`ConnectionLost` for a dead connection,
``BackendError`` otherwise, each keeping ``original``). A read outside a transaction
that finds its connection dead is retried once on a fresh one, and so is the
``BEGIN`` of a transaction (nothing was done yet); a transaction that has begun is
never retried: its caller decides. When the connection dies during ``COMMIT``
nobody can tell whether the commit happened, and :class:`CommitOutcomeUnknown` says
exactly that.

Changes across nodes: each process keeps one extra connection that ``LISTEN``\\ s on
the installation's channels (:class:`~.pgnotify.Listener`);
:meth:`PostgreSQLBackend.wait_for_change` blocks until a commit to its database is
announced, so a longpoll on one node wakes when another node commits. PostgreSQL
serialises the commits of notifying transactions on one queue lock; writers of one
database are serialised anyway.

Processes: connections never cross a ``fork``. The pool, the listener and the
schema check are per process and per DSN (:func:`_acquire`), re-created in a child
that finds them made by its parent (the parent's objects are left untouched there:
closing them would close the parent's sessions).
"""
from __future__ import annotations

import logging
import os
import re
import threading
import zlib
from typing import Literal

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from ..base import Backend
from ..exceptions import BackendError, DatabaseNotFound, InvalidKey, StorageFull
from ..transactions import Transactions
from .pgnotify import Listener

log = logging.getLogger("settee.store.backends.postgresql")

#: (version, SQL). Append, never edit: a node runs the versions its schema lacks.
MIGRATIONS: list[tuple[int, str]] = [
    (1, """
        CREATE TABLE settee_databases (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text COLLATE "C" NOT NULL UNIQUE,
            created timestamptz NOT NULL DEFAULT now());
        CREATE TABLE settee_kv (
            db bigint NOT NULL,
            key text COLLATE "C" NOT NULL,
            value bytea NOT NULL,
            PRIMARY KEY (db, key));
        ALTER TABLE settee_kv ALTER COLUMN value SET STORAGE EXTERNAL;
    """),
]
MIGRATION_LOCK = 0            # advisory lock (namespace, 0): database ids start at 1
POOL_MAX_SIZE = 20            # connections per process and DSN (server_threads + spares)
POOL_TIMEOUT = 15.0           # seconds a request waits for a free connection
CONNECT_TIMEOUT = 10          # seconds
_LOST_STATES = {"57P01", "57P02", "57P03"}       # admin/crash shutdown, cannot connect now


class ConnectionLost(BackendError):
    """The connection to PostgreSQL broke (server restart, network, pg_terminate_backend)."""


class CommitOutcomeUnknown(BackendError):
    """The connection broke during COMMIT: the write may or may not have committed."""


def _lost(e: BaseException) -> bool:
    if not isinstance(e, psycopg.OperationalError) or isinstance(e, PoolTimeout):
        return False
    state = e.sqlstate
    return state is None or state.startswith("08") or state in _LOST_STATES


class translate_errors:
    """The one place where psycopg's exceptions become the store's.

    ``with translate_errors(where): ...``; a plain class, re-entered by every statement.
    """

    __slots__ = ("where",)

    def __init__(self, where: str):
        self.where = where

    def __enter__(self):
        return self

    def __exit__(self, exc_type, e, tb) -> Literal[False]:
        if exc_type is None or not issubclass(exc_type, psycopg.Error):
            return False
        text = f"{self.where}: {str(e).strip() or exc_type.__name__}"
        if isinstance(e, PoolTimeout):
            raise BackendError(f"{self.where}: no PostgreSQL connection free within "
                               f"{POOL_TIMEOUT:g} s ({e})", original=e) from e
        if e.sqlstate == "53100":
            raise StorageFull(text, original=e) from e
        if _lost(e):
            raise ConnectionLost(text, original=e) from e
        raise BackendError(text, original=e) from e


def _migrate(conn: psycopg.Connection, space: int) -> None:
    """Bring the schema to the last version, under an advisory lock (nodes start at once)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (space, MIGRATION_LOCK))
        conn.execute("CREATE TABLE IF NOT EXISTS settee_migrations ("
                     "version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())")
        done = {v for (v,) in conn.execute("SELECT version FROM settee_migrations")}
        known = {v for v, _ in MIGRATIONS}
        if done - known:
            raise BackendError(f"the PostgreSQL schema has migrations {sorted(done - known)} "
                               "that this Settee does not know: upgrade this node")
        for version, sql in MIGRATIONS:
            if version not in done:
                log.info("applying PostgreSQL schema migration %d", version)
                conn.execute(sql)
                conn.execute("INSERT INTO settee_migrations (version) VALUES (%s)", (version,))


class _Shared:
    """What every backend of one DSN shares in one process: pool, listener, namespace."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.pid = os.getpid()
        self.refs = 0
        errors = translate_errors("PostgreSQL")
        with errors, psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            # A SELECT of one value (and SHOW, below) returns one row: never None.
            schema = conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
            if schema is None:
                raise BackendError("PostgreSQL: the search_path names no existing schema "
                                   "for Settee's tables")
            encoding = conn.execute("SHOW server_encoding").fetchone()[0]  # type: ignore[index]
            if encoding.upper() not in ("UTF8", "UTF-8"):
                raise BackendError(f"PostgreSQL: the database's encoding is {encoding}; "
                                   "Settee needs UTF8 (key order is UTF-8 byte order)")
            # Advisory locks and channels are per PostgreSQL database: name them by schema.
            self.space = zlib.crc32(f"settee:{schema}".encode()) & 0x7FFFFFFF
            _migrate(conn, self.space)
        self.changes_channel = f"settee_{self.space:08x}"
        self.catalog_channel = f"settee_{self.space:08x}_catalog"
        self.pool = ConnectionPool(dsn, min_size=1, max_size=POOL_MAX_SIZE, open=True,
                                   timeout=POOL_TIMEOUT, name="settee",
                                   kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT})
        self.listener = Listener(dsn, self.changes_channel, self.catalog_channel)

    def query(self, sql: str, params=(), *, many: bool = False, errors: translate_errors):
        """One autocommit statement; retried once on a fresh connection if the first died."""
        for attempt in (1, 2):
            try:
                with errors, self.pool.connection() as conn:
                    cur = conn.execute(sql, params, binary=True)
                    return cur.fetchall() if many else cur.fetchone()
            except ConnectionLost:
                if attempt == 2:
                    raise
                self.pool.check()       # drop every dead idle connection, not just this one

    def close(self) -> None:
        self.listener.close()
        self.pool.close()


_SHARED: dict[str, _Shared] = {}
_FORKED: list[_Shared] = []          # a parent's, kept unclosed (closing would end its sessions)
_SHARED_LOCK = threading.Lock()


def _acquire(dsn: str) -> _Shared:
    with _SHARED_LOCK:
        shared = _SHARED.get(dsn)
        if shared is not None and shared.pid != os.getpid():
            _FORKED.append(_SHARED.pop(dsn))
            shared = None
        if shared is None:
            shared = _SHARED[dsn] = _Shared(dsn)
        shared.refs += 1
        return shared


def _release(shared: _Shared) -> None:
    with _SHARED_LOCK:
        shared.refs -= 1
        if shared.refs > 0 or shared.pid != os.getpid():
            return
        if _SHARED.get(shared.dsn) is shared:
            del _SHARED[shared.dsn]
    shared.close()


_UPSERT = ("INSERT INTO settee_kv (db, key, value) VALUES (%s, %s, %s) "
           "ON CONFLICT (db, key) DO UPDATE SET value = EXCLUDED.value")


def _storable(key: object) -> bool:
    """Whether ``key`` could be stored (reads of other keys find nothing)."""
    return isinstance(key, str) and "\x00" not in key and (
        key.isascii() or not re.search("[\ud800-\udfff]", key))


class PostgreSQLBackend(Transactions, Backend):
    """Database ``database_name`` of the Settee installation at ``dsn``.

    Without ``db_id`` the database is found by name, and created when missing; the
    catalog passes the ``db_id`` (generation) it found, so a backend never revives a
    database another node deleted. Keys are limited to :attr:`max_key_bytes` of UTF-8
    (PostgreSQL's B-tree entries hold at most about 2.7 kB).
    """

    ordered = True
    page_size = 512
    max_key_bytes = 2600

    def __init__(self, dsn: str, database_name: str, *, db_id: int | None = None):
        self.dsn, self.name = dsn, database_name
        self._errors = translate_errors(f"PostgreSQL, database {database_name!r}")
        self._shared = _acquire(dsn)
        self._closed = False
        self._init_transactions()
        self._tx = threading.local()
        try:
            if db_id is None:
                db_id = create_database(self._shared, database_name, self._errors)
                if db_id is None:
                    db_id = database_id(self._shared, database_name, self._errors)
            if db_id is None:           # deleted between the two statements
                raise DatabaseNotFound(database_name)
        except BaseException:
            _release(self._shared)
            raise
        self.db_id = db_id
        self._lock_key = db_id & 0x7FFFFFFF

    def _state(self) -> _Shared:
        shared = self._shared
        if shared.pid != os.getpid():          # forked: this process's own pool
            self._shared = shared = _acquire(self.dsn)
        return shared

    def _query(self, sql: str, params, *, many: bool = False):
        conn = getattr(self._tx, "conn", None)
        if conn is not None:                   # inside this thread's transaction
            with self._errors:
                cur = conn.execute(sql, params, binary=True)
                return cur.fetchall() if many else cur.fetchone()
        return self._state().query(sql, params, many=many, errors=self._errors)

    # -- transactions -----------------------------------------------------------
    def _open_batch(self) -> None:
        shared = self._state()
        sql = (f"BEGIN; SELECT pg_advisory_xact_lock({shared.space}, {self._lock_key}); "
               f"SELECT count(*) FROM settee_databases WHERE id = {self.db_id}")
        for attempt in (1, 2):
            with self._errors:
                conn = shared.pool.getconn()
            try:
                with self._errors:
                    cur = conn.execute(sql)
                    while cur.nextset():
                        pass
                    exists = cur.fetchone()[0]  # type: ignore[index]  # count(*): one row
                break
            except ConnectionLost:             # nothing was done yet: safe to try again
                self._finish(shared, conn)
                if attempt == 2:
                    raise
                shared.pool.check()
            except BaseException:
                self._finish(shared, conn)
                raise
        if not exists:
            self._finish(shared, conn)
            raise DatabaseNotFound(self.name)
        self._tx.conn, self._tx.shared, self._tx.dirty = conn, shared, False

    def _commit_batch(self) -> None:
        tx = self._tx
        conn, shared, dirty = tx.conn, tx.shared, tx.dirty
        tx.conn = None
        sql = f"NOTIFY {shared.changes_channel}, '{self.db_id}'; COMMIT" if dirty else "COMMIT"
        try:
            conn.execute(sql)
        except psycopg.Error as e:
            self._finish(shared, conn)
            if _lost(e):
                raise CommitOutcomeUnknown(
                    f"{self._errors.where}: the connection was lost during COMMIT, so the "
                    f"write may or may not have committed ({str(e).strip()})", original=e) from e
            with self._errors:
                raise
        shared.pool.putconn(conn)

    def _abort_batch(self) -> None:
        conn, self._tx.conn = getattr(self._tx, "conn", None), None
        if conn is not None:
            self._finish(self._tx.shared, conn)

    @staticmethod
    def _finish(shared: _Shared, conn: psycopg.Connection) -> None:
        """Roll back whatever is open on ``conn`` and give it back (a dead one is dropped)."""
        try:
            idle = psycopg.pq.TransactionStatus.IDLE
            if not conn.closed and conn.info.transaction_status != idle:
                conn.execute("ROLLBACK")
        except psycopg.Error:
            pass                        # a broken connection rolled back on the server
        finally:
            shared.pool.putconn(conn)

    def wait_for_change(self, mark, timeout: float):
        """Wait for a commit to this database by any node; returns a mark to wait on next.

        ``mark=None`` returns the current mark at once. Read the mark *before* checking
        for new data, then wait on it: a commit in between changes the mark, so no
        wake-up is lost. Returns early (a poll) while the listener is not connected.
        """
        return self._state().listener.wait(self.db_id, mark, timeout)

    @property
    def listening(self) -> bool:
        """Whether this process's listener is connected (commits elsewhere are announced)."""
        listener = self._state().listener
        listener.ensure_started()
        return listener.connected

    # -- the mapping ------------------------------------------------------------
    def check_key(self, key: object) -> str:
        key = super().check_key(key)
        if len(key) * 4 > self.max_key_bytes and len(key.encode()) > self.max_key_bytes:
            raise InvalidKey(f"key longer than {self.max_key_bytes} bytes of UTF-8 "
                             "(PostgreSQL's index limit)", key=key[:80])
        return key

    def __getitem__(self, key: str) -> bytes:
        row = _storable(key) and self._query(
            "SELECT value FROM settee_kv WHERE db = %s AND key = %s", (self.db_id, key))
        if not row:
            raise KeyError(key)
        return row[0]

    def get_many(self, keys):
        keys = [k for k in keys if _storable(k)]
        found = {}
        for i in range(0, len(keys), 1000):
            found.update(self._query("SELECT key, value FROM settee_kv WHERE db = %s "
                                     "AND key = ANY(%s)", (self.db_id, keys[i:i + 1000]),
                                     many=True))
        return found

    def __setitem__(self, key: str, value: bytes) -> None:
        key, value = self.check_key(key), self.check_value(value)
        with self.transaction():
            self._query(_UPSERT + " RETURNING 1", (self.db_id, key, value))
            self._tx.dirty = True

    def put_many(self, items) -> None:
        """Write every ``(key, value)`` in one transaction, the statements pipelined."""
        rows = [(self.db_id, self.check_key(k), self.check_value(v)) for k, v in items]
        if rows:
            with self.transaction(), self._errors:
                self._tx.conn.cursor().executemany(_UPSERT, rows)
                self._tx.dirty = True

    def delete_many(self, keys) -> None:
        """Delete those ``keys`` that exist, in one transaction and one statement."""
        keys = [k for k in keys if _storable(k)]
        if keys:
            with self.transaction(), self._errors:
                self._tx.conn.execute("DELETE FROM settee_kv WHERE db = %s AND key = ANY(%s)",
                                      (self.db_id, keys))
                self._tx.dirty = True

    def __delitem__(self, key: str) -> None:
        if not _storable(key):
            raise KeyError(key)
        with self.transaction():
            if self._query("DELETE FROM settee_kv WHERE db = %s AND key = %s RETURNING 1",
                           (self.db_id, key)) is None:
                raise KeyError(key)
            self._tx.dirty = True

    def __contains__(self, key: object) -> bool:
        return _storable(key) and self._query(
            "SELECT 1 FROM settee_kv WHERE db = %s AND key = %s", (self.db_id, key)) is not None

    def __iter__(self):
        return self.range(keys_only=True)

    def __len__(self) -> int:
        return self._query("SELECT count(*) FROM settee_kv WHERE db = %s", (self.db_id,))[0]

    def range(self, start=None, end=None, *, descending=False, inclusive_end=True,
              keys_only=False):
        """Keys in order, fetched in pages by keyset (each page an O(log n) seek)."""
        columns = "key" if keys_only else "key, value"
        order = "DESC" if descending else "ASC"
        lo, lo_incl, hi, hi_incl = start, True, end, inclusive_end
        # No stored key holds NUL: a bound with one is the same as its part before it.
        if lo is not None and "\x00" in lo:
            lo, lo_incl = lo[:lo.index("\x00")], False
        if hi is not None and "\x00" in hi:
            hi, hi_incl = hi[:hi.index("\x00")], True
        while True:
            where, args = ["db = %s"], [self.db_id]
            if lo is not None:
                where.append("key >= %s" if lo_incl else "key > %s")
                args.append(lo)
            if hi is not None:
                where.append("key <= %s" if hi_incl else "key < %s")
                args.append(hi)
            rows = self._query(f"SELECT {columns} FROM settee_kv WHERE {' AND '.join(where)} "
                               f"ORDER BY key {order} LIMIT {self.page_size}", args, many=True)
            for row in rows:
                yield row[0] if keys_only else (row[0], row[1])
            if len(rows) < self.page_size:
                return
            if descending:
                hi, hi_incl = rows[-1][0], False
            else:
                lo, lo_incl = rows[-1][0], False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release(self._shared)


# -- the catalog's side: settee_databases ------------------------------------------------
def database_id(shared: _Shared, name: str, errors: translate_errors) -> int | None:
    row = shared.query("SELECT id FROM settee_databases WHERE name = %s", (name,), errors=errors)
    return row[0] if row else None


def create_database(shared: _Shared, name: str, errors: translate_errors) -> int | None:
    """The new database's id, or None if one of that name exists (other nodes are told)."""
    with errors, shared.pool.connection() as conn, conn.transaction():
        row = conn.execute("INSERT INTO settee_databases (name) VALUES (%s) "
                           "ON CONFLICT (name) DO NOTHING RETURNING id", (name,)).fetchone()
        if row is not None:
            conn.execute(f"NOTIFY {shared.catalog_channel}")
    return row[0] if row else None


class PostgreSQLLocations:
    """Where the ``postgresql`` backend's databases live: rows of ``settee_databases``.

    The catalog's driver (see :class:`settee.store.locations.Locations`). The generation of
    a database is its id. Answers of :meth:`generation` are cached while this process's
    listener is connected and no catalog notification came (creating and deleting
    notify), so a request costs no catalog query; a node notices another node's
    deletion within the notification's delay, and a write into a deleted database
    fails at once anyway (the transaction checks the id). Absence is never cached.
    """

    shared = True

    def __init__(self, dsn: str):
        self.dsn = dsn
        self._errors = translate_errors("PostgreSQL catalog")
        self._shared: _Shared | None = _acquire(dsn)      # None once closed
        self._cache: dict[str, int] = {}
        self._cache_version = None
        self._lock = threading.Lock()

    def _state(self) -> _Shared:
        shared = self._shared
        assert shared is not None, "PostgreSQLLocations used after close()"
        if shared.pid != os.getpid():
            self._shared = shared = _acquire(self.dsn)
        return shared

    def generation(self, name: str) -> int | None:
        shared = self._state()
        version = shared.listener.catalog_version()
        with self._lock:
            if version is not None and version == self._cache_version and name in self._cache:
                return self._cache[name]
        found = database_id(shared, name, self._errors)
        with self._lock:
            if version is not None and found is not None:   # absence is not cached: a
                if version != self._cache_version:          # database created on another
                    self._cache, self._cache_version = {}, version    # node is seen at once
                self._cache[name] = found
        return found

    def _forget(self) -> None:
        with self._lock:
            self._cache, self._cache_version = {}, None

    def names(self) -> list[str]:
        return [name for (name,) in self._state().query(
            "SELECT name FROM settee_databases ORDER BY name", many=True, errors=self._errors)]

    def create(self, name: str) -> bool:
        self._forget()
        try:
            return create_database(self._state(), name, self._errors) is not None
        finally:
            self._forget()          # what another thread cached meanwhile

    def drop(self, name: str) -> bool:
        """Delete database ``name`` and its rows, after its writers (its advisory lock)."""
        shared = self._state()
        self._forget()
        with self._errors, shared.pool.connection() as conn, conn.transaction():
            row = conn.execute("SELECT id FROM settee_databases WHERE name = %s FOR UPDATE",
                               (name,)).fetchone()
            if row is None:
                return False
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                         (shared.space, row[0] & 0x7FFFFFFF))
            conn.execute("DELETE FROM settee_databases WHERE id = %s", (row[0],))
            conn.execute("DELETE FROM settee_kv WHERE db = %s", (row[0],))
            conn.execute(f"NOTIFY {shared.catalog_channel}")
            conn.execute(f"NOTIFY {shared.changes_channel}, '{row[0]}'")
        self._forget()
        return True

    def open(self, name: str, generation: int) -> PostgreSQLBackend:
        return PostgreSQLBackend(self.dsn, name, db_id=generation)

    def close(self) -> None:
        if self._shared is not None:
            _release(self._shared)
            self._shared = None
