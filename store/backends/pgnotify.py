"""LISTEN/NOTIFY for the ``postgresql`` backend: one listening connection per process.

PostgreSQL delivers a ``NOTIFY`` to every session that ``LISTEN``\\ s on its channel,
after the notifying transaction commits. :class:`Listener` keeps one such session per
process and DSN, in a daemon thread, and turns notifications into counters that
threads wait on (a ``threading.Condition``): per database id on the changes channel,
and one for the catalog channel. A lost session is re-opened, and since notifications
sent meanwhile are lost, every reconnection counts as a change for everyone.
"""
from __future__ import annotations

import logging
import threading
import time

import psycopg

log = logging.getLogger("settee.store.backends.postgresql")

CONNECT_TIMEOUT = 10          # seconds
RECONNECT_DELAY = 0.5         # seconds between reconnection attempts
UNLISTENED_POLL = 0.02        # seconds a waiter sleeps while no listener is connected
STOP_CHECK = 0.1              # seconds between the thread's checks for close()


class Listener:
    """One connection per process and DSN that ``LISTEN``\\ s, in a daemon thread.

    Counts the notifications per database id and on the catalog channel; ``epoch``
    grows at every (re)connection, since notifications sent meanwhile were lost.
    Started on first use.
    """

    def __init__(self, dsn: str, changes: str, catalog: str):
        self.dsn, self.changes, self.catalog_channel = dsn, changes, catalog
        self.cond = threading.Condition()
        self.counts: dict[int, int] = {}
        self.catalog = 0
        self.epoch = 0
        self.connected = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure_started(self) -> None:
        if self._thread is None:
            with self.cond:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name="settee-pg-listener")
                    self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
            except Exception as e:      # keep trying: waiters poll meanwhile
                log.warning("LISTEN connection failed: %s", e)
                self._stop.wait(RECONNECT_DELAY)
                continue
            try:
                conn.execute(f"LISTEN {self.changes}")
                conn.execute(f"LISTEN {self.catalog_channel}")
                self._set_connected(True)
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=STOP_CHECK):
                        self._deliver(note.channel, note.payload)
            except Exception as e:
                if not self._stop.is_set():
                    log.warning("LISTEN connection lost: %s", e)
            finally:
                self._set_connected(False)
                conn.close()

    def _set_connected(self, connected: bool) -> None:
        with self.cond:
            self.connected = connected
            self.epoch += 1
            self.cond.notify_all()

    def _deliver(self, channel: str, payload: str) -> None:
        with self.cond:
            if channel == self.catalog_channel:
                self.catalog += 1
            else:
                db_id = int(payload)
                self.counts[db_id] = self.counts.get(db_id, 0) + 1
            self.cond.notify_all()

    def wait(self, db_id: int, mark, timeout: float):
        """Block until database ``db_id``'s mark differs from ``mark`` or ``timeout`` passes.

        Returns the current mark; ``mark=None`` returns it at once. While no listener is
        connected it returns within :data:`UNLISTENED_POLL`, so callers poll instead.
        """
        self.ensure_started()
        deadline = time.monotonic() + max(0.0, timeout)
        with self.cond:
            current = (self.epoch, self.counts.get(db_id, 0))
            while mark is not None and current == mark:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if not self.connected:
                    self.cond.wait(min(remaining, UNLISTENED_POLL))
                    return (self.epoch, self.counts.get(db_id, 0))
                self.cond.wait(remaining)
                current = (self.epoch, self.counts.get(db_id, 0))
            return current

    def catalog_version(self):
        """A value that changes whenever a database may have been created or deleted;
        None while no listener is connected (nothing may be cached then)."""
        self.ensure_started()
        with self.cond:
            return (self.epoch, self.catalog) if self.connected else None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
