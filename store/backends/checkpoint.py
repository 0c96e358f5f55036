"""WAL checkpoints off the writers' path, for the SQLite backend.

In WAL mode every commit appends to ``<file>-wal``; a *checkpoint* copies those pages
back into the database file and fsyncs it. SQLite runs one by itself inside the
``COMMIT`` that takes the log past ``wal_autocheckpoint`` pages, so now and then one
writer's commit costs several milliseconds to tens of them, while it holds the
writers' lock: every writer of every process waits behind it (the tail of the write
latency, measured: 14 ms commits in a stream of 0.5 ms ones).

Here a thread of the process does that work on its own connection instead, in
``PASSIVE`` mode, which never blocks writers or readers: commits go on appending to
the log while it copies what is already committed. Writers only nudge it
(:meth:`Checkpointer.committed`, every ``every`` commits). SQLite's own automatic
checkpoint stays on with a much larger threshold (``backstop_pages``), as a bound on
the log should the thread ever fall behind. Like SQLite's own, it leaves a log under
``min_wal_bytes`` alone: on a nearly full disk, copying the log into the main file
would take the room the next commits need.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger("settee.store.backends.sqlite")


class Checkpointer:
    every = 256                # commits between nudges: about SQLite's own cadence
    #                            (1000 pages), each checkpoint an fsync of the main file
    backstop_pages = 16384     # the writer's own wal_autocheckpoint (64 MiB of 4 KiB pages)
    min_wal_bytes = 4 << 20    # no checkpoint before the log file is this big (SQLite's
    #                            own default: 1000 pages), so a small database's log
    #                            grows, as it would, instead of its main file
    idle_seconds = 60.0        # a thread with no nudge this long ends (restarts on one)

    def __init__(self, path: str, connect: Callable[[], sqlite3.Connection]):
        self._wal = path + "-wal"
        self._connect = connect
        self._pid = -1
        self._commits = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def committed(self) -> None:
        """Called after each commit; cheap. Starts the thread in this process lazily."""
        self._commits += 1
        if self._commits % self.every:
            return
        if self._pid != os.getpid():            # first time here, or a forked child
            self._pid = os.getpid()
            self._wake = threading.Event()
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="settee-checkpoint",
                                            daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        con = None
        try:
            con = self._connect()
            wake = self._wake
            while True:
                if not wake.wait(self.idle_seconds):
                    self._pid = -1               # idle: the next nudge starts a thread
                    return
                wake.clear()
                if self._stopping:
                    return
                try:
                    if os.path.getsize(self._wal) < self.min_wal_bytes:
                        continue
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except (OSError, sqlite3.Error) as e:   # busy, a full disk: next time
                    log.debug("background checkpoint: %s", e)
        except Exception:                        # the backstop keeps the log bounded
            log.exception("background checkpoints stopped")
        finally:
            if con is not None:
                con.close()

    def stop(self) -> None:
        """Stop this process's thread (before the database is closed or removed)."""
        thread = self._thread
        if thread is None or self._pid != os.getpid():
            return
        self._stopping = True
        self._wake.set()
        thread.join(30)
        self._thread = None
        self._pid = -1
