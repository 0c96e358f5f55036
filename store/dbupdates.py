"""The record of database events behind CouchDB's ``/_db_updates``: which databases
were created, updated and deleted, in the order it happened.

Kept as CouchDB's ``_global_changes`` database keeps it: one entry per (event type,
database), moved to a new sequence number each time that event happens again, so the
record stays as small as the number of databases and a reader that asks for what
happened ``since`` a sequence gets each database's latest events once. It lives in a
backend store of its own (the catalog's hidden location :data:`LOCATION`, never
listed as a database), shared by every process of the installation as the
databases are.

Creations and deletions are recorded when they happen. Document writes are many, so
"updated" is coalesced: :meth:`DbUpdates.touched` (called by each database after a
write) marks the database, and the marks are written together, once per
:data:`FLUSH_DELAY` seconds at most, by one thread per process, or at once by
:meth:`DbUpdates.flush` (a feed reader calls it first, so it sees its own process's
writes). A process that stops between a write and the flush loses that "updated"
event, as CouchDB's event batching can.

Keys (one keyspace, values JSON):

==================  ===============================================================
``e/<type>:<db>``   the event's current sequence number
``s/<seq>``         ``{"db_name", "type"}`` at that sequence (zero-padded, in order)
``m/seq``           the last sequence number given
==================  ===============================================================
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from .base import Backend

log = logging.getLogger("settee.store")

#: The catalog's location for the record (no database name may start with ``_``
#: unless it is a system database, so it clashes with none).
LOCATION = "_dbs"
#: Seconds a database's "updated" mark may wait before it is written.
FLUSH_DELAY = 0.1
EVENT, SEQ, LAST = "e/", "s/", "m/seq"
TYPES = ("created", "updated", "deleted")


def seq_key(seq: int) -> str:
    return f"{SEQ}{seq:020d}"


@dataclass(frozen=True)
class Event:
    """One entry of the record: ``db_name`` had an event of ``type`` at ``seq``."""

    seq: int
    db_name: str
    type: str


class DbUpdates:
    """The record of database events over one backend ``store`` (opened by
    ``opener()`` at first use, closed by :meth:`close`)."""

    name = LOCATION

    def __init__(self, opener, *, flush_delay: float = FLUSH_DELAY):
        self._opener = opener
        self._store: Backend | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: set[str] = set()
        self._flusher: threading.Thread | None = None
        self._closed = False
        self.flush_delay = flush_delay

    @property
    def store(self) -> Backend:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._opener()
        assert self._store is not None
        return self._store

    # -- recording ----------------------------------------------------------------
    def record(self, db_name: str, type: str) -> int:
        """Record that ``db_name`` was created, updated or deleted now; its sequence."""
        return self._record([(db_name, type)])

    def _record(self, events: list[tuple[str, str]]) -> int:
        store = self.store
        with store.transaction():
            raw = store.get(LAST)
            seq = orjson.loads(raw) if raw is not None else 0
            for db_name, type in events:
                if type not in TYPES:
                    raise ValueError(f"unknown database event {type!r}")
                key = f"{EVENT}{type}:{db_name}"
                old = store.get(key)
                if old is not None:
                    store.pop(seq_key(orjson.loads(old)), None)
                seq += 1
                store[key] = orjson.dumps(seq)
                store[seq_key(seq)] = orjson.dumps({"db_name": db_name, "type": type})
            store[LAST] = orjson.dumps(seq)
        return seq

    def touched(self, db_name: str) -> None:
        """A write to ``db_name`` committed: record "updated" within the flush delay."""
        with self._lock:
            if self._closed:
                return
            self._pending.add(db_name)
            if self._flusher is None:       # one thread per process, started when needed
                self._flusher = threading.Thread(target=self._flush_soon, daemon=True,
                                                 name="settee-db-updates")
                self._flusher.start()
            self._wake.notify()

    def _flush_soon(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
            time.sleep(self.flush_delay)        # the writes of the next moments join in
            try:
                self.flush()
            except Exception:                   # a full disk, say: the next flush retries
                log.exception("could not record database updates")

    def flush(self) -> None:
        """Write the "updated" events marked so far."""
        with self._lock:
            pending, self._pending = self._pending, set()
        if pending:
            try:
                self._record([(name, "updated") for name in sorted(pending)])
            except BaseException:
                with self._lock:
                    self._pending |= pending
                raise

    # -- reading ------------------------------------------------------------------
    def last_seq(self) -> int:
        """The sequence of the latest event (a small read)."""
        raw = self.store.get(LAST)
        return orjson.loads(raw) if raw is not None else 0

    def since(self, seq: int = 0, *, descending: bool = False) -> Iterator[Event]:
        """The events after ``seq``, oldest first (newest first if ``descending``)."""
        start = seq_key(seq + 1)
        for key, value in self.store.range(start, SEQ + "~", descending=descending):
            entry = orjson.loads(value)
            yield Event(int(key[len(SEQ):]), entry["db_name"], entry["type"])

    def close(self) -> None:
        """Stop the flushing thread, write what is pending, close the store."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            flusher, self._flusher = self._flusher, None
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join(timeout=5)         # it ends after its flush in progress
        if self._store is not None:
            self.flush()
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()
