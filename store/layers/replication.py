"""The replication layer: every committed change is copied to a backup store.

Assumes of the layer below: a transactional ``MutableMapping[str, bytes]`` with
ranges (a backend, or byte layers over one). Offers the same above, minus a reserved
key prefix. Place it low in the stack: below compression and encryption the backup
receives exactly the bytes the primary stores (compressed, encrypted), and the
backup directory is itself a database that the same stack can open.

Durability: a durable outbox in the primary
    The design talk's ``ReplicationDict`` started a thread per write: a crash, or a
    backup that is down, silently lost the copy. Here a write records an *outbox
    entry* ``~outbox/<key>`` -> ``<time of the first pending change>`` in the same
    ``inner.transaction()`` as the write itself, so the fact "this key changed" is
    committed exactly when the change is: never one without the other. A drainer
    removes an entry only after the backup accepted the key's value. Nothing
    pending is lost to a crash, a restart or a backup outage; it is copied later.

Coalescing and what is copied
    Entries are per key, not per write: ten writes to one key before a drain leave
    one entry (keeping the oldest time, which :meth:`Replication.lag` reports). The
    drainer copies the key's *current* value from the primary, or deletes the key
    from the backup when the primary no longer has it. The backup therefore
    converges to the primary's state; intermediate values may be skipped.

Ordering, across threads and processes
    A batch runs inside one primary transaction: list up to ``batch_size`` entries,
    read their current values, write them to the backup (in one backup
    transaction), delete the entries, commit. Writers and the drainers of other
    processes wait on the primary's lock meanwhile, so no write can slip between
    reading a value and clearing its entry, and two drainers can never write an
    older value over a newer one in the backup. A write after the batch commits
    makes a new entry. Copies are idempotent, so a batch whose backup write fails
    rolls back the primary transaction, keeps its entries, and is simply retried
    (with exponential backoff up to ``max_backoff``). Lock order is always primary
    then backup, so drainers cannot deadlock.

    The backup is eventually consistent: a drain whose backlog fits in one batch
    copies a state the primary held at one moment; a longer backlog is copied in
    several batches and is consistent again once it has drained.

Why an outbox, not the changes log
    The layer works on bytes, below serialization, and copies *every* key: current
    documents, old revisions, ``_local`` checkpoints, the changes log and database
    info, view rows. The changes log names only documents, so following it would
    need the versioning layer's keyspace knowledge and would miss the rest. With
    every key copied, the backup directory opens as a complete database.

The drainer
    A daemon thread per open layer drains every ``interval`` seconds (``wake()``
    makes it drain now). It drains first thing on open, so a backlog left by a crash
    or an outage is sent on restart. After a fork the first write starts a drainer
    in the child. On ordered backends an idle check is one short range read; on
    scanning backends (file, dbm) the drainer scans only after this process wrote,
    and every ``rescan_every`` seconds for entries left by other processes.
    :meth:`~Replication.drain` and :meth:`~Replication.flush` drain synchronously;
    :meth:`~Replication.close` stops the thread, makes one last attempt to flush,
    then closes the backup and the inner store.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from itertools import islice
from typing import Any

from ..base import Backend, Layer, Store
from ..exceptions import ConfigurationError, InvalidKey
from ..keyspace import OUTBOX  # keys of the outbox: the layer neither shows nor accepts them
from ..locations import storage_dir

#: Backends a backup can be kept in (``replication_target = "<backend>:<dir>"``).
BACKUP_BACKENDS = ("memory", "sqlite", "file", "dbm", "lmdb")

log = logging.getLogger("settee.replication")


def _outboxed(key: object) -> bool:
    return isinstance(key, str) and key.startswith(OUTBOX)


class Replication(Layer[bytes, bytes]):
    """Copy every committed change of ``inner`` to ``backup`` through a durable outbox."""

    # Options: Layer.__init__ sets them.
    backup: Store[bytes]
    interval: float

    #: Outbox entries copied per primary transaction (bounds how long writers wait).
    batch_size = 1000
    #: Longest wait, in seconds, between retries while the backup fails.
    max_backoff = 30.0
    #: Scanning backends: seconds between looks for entries other processes left.
    rescan_every = 30.0
    #: Seconds :meth:`stop` waits for the drainer to finish its batch.
    join_timeout = 30.0

    def __init__(self, inner: Store[bytes], backup: Store[bytes], interval: float = 0.5, *,
                 start: bool = True):
        if not interval > 0:
            raise ValueError("interval must be a positive number of seconds")
        super().__init__(inner, backup=backup, interval=interval)
        self.failures = 0                   # consecutive failed drains
        self.last_error: str | None = None
        self._dirty = True                  # drain at once: a backlog may be waiting
        self._next_scan = 0.0
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._closed = False
        if start:
            self.start()

    # -- the mapping, without the outbox ------------------------------------------
    def __getitem__(self, key: str) -> bytes:
        if _outboxed(key):
            raise KeyError(key)
        return self.inner[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        if _outboxed(key):
            raise InvalidKey(f"keys starting with {OUTBOX!r} are reserved for replication",
                             key=key)
        with self.inner.transaction():
            self.inner[key] = value
            self._record(key)
        self._written()

    def __delitem__(self, key: str) -> None:
        if _outboxed(key):
            raise KeyError(key)
        with self.inner.transaction():
            del self.inner[key]
            self._record(key)
        self._written()

    def __iter__(self):
        return (key for key in self.inner if not _outboxed(key))

    def __len__(self) -> int:
        """Keys outside the outbox (two reads, not one snapshot: exact when quiet)."""
        return len(self.inner) - sum(1 for _ in self.inner.prefix(OUTBOX, keys_only=True))

    def __contains__(self, key: object) -> bool:
        return not _outboxed(key) and key in self.inner

    def get_many(self, keys):
        return self.inner.get_many([k for k in keys if not _outboxed(k)])

    def range(self, start=None, end=None, *, descending=False, inclusive_end=True,
              keys_only=False):
        """The inner range without outbox entries (filtered: the versioning layer's
        ranges never reach ``~``, so in practice nothing is skipped)."""
        for item in self.inner.range(start, end, descending=descending,
                                     inclusive_end=inclusive_end, keys_only=keys_only):
            if not _outboxed(item if keys_only else item[0]):
                yield item

    def _record(self, key: str) -> None:
        """The outbox entry for ``key`` (called inside the write's transaction)."""
        entry = OUTBOX + key
        if entry not in self.inner:     # coalesce: keep the oldest pending time
            self.inner[entry] = b"%.6f" % time.time()

    def _written(self) -> None:
        self._dirty = True
        if self._thread is not None and self._pid != os.getpid():
            self.start()                # forked: the parent's drainer did not come along

    # -- draining -------------------------------------------------------------------
    def _drain_batch(self) -> int:
        """Copy up to ``batch_size`` pending keys to the backup; returns how many."""
        with self.inner.transaction():
            entries = list(islice(self.inner.prefix(OUTBOX, keys_only=True), self.batch_size))
            if not entries:
                return 0
            keys = [entry[len(OUTBOX):] for entry in entries]
            values = self.inner.get_many(keys)
            with self.backup.transaction():
                for key in keys:
                    if key in values:
                        self.backup[key] = values[key]
                    else:
                        try:
                            del self.backup[key]
                        except KeyError:
                            pass
            for entry in entries:
                del self.inner[entry]
        return len(entries)

    def _failed(self, error: BaseException) -> float:
        """Record a failed drain; returns the backoff before the next attempt."""
        self.failures += 1
        self.last_error = f"{type(error).__name__}: {error}"
        delay = min(self.interval * 2 ** min(self.failures, 20), self.max_backoff)
        log.warning("replication to the backup failed (%d in a row), retrying in %.2fs: %s",
                    self.failures, delay, self.last_error)
        return delay

    def _succeeded(self) -> None:
        self.failures, self.last_error = 0, None

    def _tick(self) -> float:
        """One drainer round: drain if anything may be pending; returns the next wait."""
        now = time.monotonic()
        if not (self._dirty or self.inner.ordered or now >= self._next_scan):
            return self.interval
        self._dirty = False
        self._next_scan = now + self.rescan_every
        try:
            while not self._stop.is_set() and self._drain_batch() >= self.batch_size:
                pass
        except Exception as e:          # the backup (or the primary) failed: retry later
            self._dirty = True
            return self._failed(e)
        self._succeeded()
        return self.interval

    def drain(self, timeout: float = 10.0) -> bool:
        """Drain now, retrying failures until ``timeout`` seconds; True if it emptied."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._drain_batch() == 0:
                    self._succeeded()
                    return True
            except Exception as e:
                self._failed(e)
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(self.interval, left))
                continue
            if time.monotonic() >= deadline:
                return False

    def flush(self) -> None:
        """Drain everything pending now; a failure of the backup is raised (entries stay)."""
        while self._drain_batch():
            pass
        self._succeeded()

    def wake(self) -> None:
        """Make the drainer drain now instead of at its next interval."""
        self._dirty = True
        self._wake.set()

    def lag(self) -> dict[str, Any]:
        """How far the backup is behind: pending keys, age of the oldest, failures."""
        pending, oldest = 0, None
        for _, stamp in self.inner.prefix(OUTBOX):
            pending += 1
            try:
                when = float(stamp)
            except ValueError:
                continue
            oldest = when if oldest is None else min(oldest, when)
        age = max(0.0, time.time() - oldest) if oldest is not None else 0.0
        return {"pending": pending, "oldest_age_s": age, "failures": self.failures,
                "last_error": self.last_error}

    # -- the drainer thread -----------------------------------------------------------
    def start(self) -> None:
        """Start the background drainer (the constructor does, unless ``start=False``)."""
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._stop, self._wake = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=_drainer, name="settee-replication",
                                        args=(weakref.ref(self), self._stop, self._wake),
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the drainer after its current batch; pending entries stay in the outbox."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread() \
                and self._pid == os.getpid():
            thread.join(self.join_timeout)

    def close(self) -> None:
        """Stop the drainer, try one last flush, then close the backup and the inner store."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        try:
            self.flush()
        except Exception as e:
            log.warning("closing with changes not yet in the backup (sent on next open): %s", e)
        try:
            self.backup.close()
        finally:
            self.inner.close()


def _drainer(ref: weakref.ref, stop: threading.Event, wake: threading.Event) -> None:
    """The drainer thread's loop; holds its layer weakly so an unclosed layer can go."""
    while not stop.is_set():
        layer = ref()
        if layer is None:
            return
        wake.clear()
        delay = layer._tick()
        del layer
        wake.wait(delay)


def parse_target(target: str) -> tuple[str, str]:
    """``"backend:path"`` as ``(backend, path)``; ``ConfigurationError`` when malformed."""
    name, sep, path = target.partition(":")
    name, path = name.strip().lower(), path.strip()
    if not sep or name not in BACKUP_BACKENDS:
        raise ConfigurationError("replication_target", f"expected <backend>:<directory> with "
                                 f"a backend among {', '.join(BACKUP_BACKENDS)}, got {target!r}")
    if name != "memory" and not path:
        raise ConfigurationError("replication_target", f"{name!r} needs a directory: "
                                 f"{name}:/path/to/backup")
    return name, path


def open_backup(settings, db: str, backends) -> Backend:
    """The backup store of database ``db`` named by ``settings["replication_target"]``,
    opened by its factory in ``backends`` (the backend registry, :mod:`..stack`'s).

    The backup of ``db`` is kept where the backend would keep ``db`` if the target's
    directory were ``storage_data_dir``, so the target directory can be opened as a
    data directory to restore from it.
    """
    name, path = parse_target(settings["replication_target"])
    copy = type(settings)(settings)
    copy["storage_data_dir"] = path
    if name != "memory":
        backup_dir = os.path.realpath(storage_dir(copy, db))
        if settings["storage_backend"] != "memory":
            data_dir = os.path.realpath(settings["storage_data_dir"])
            if backup_dir.startswith(data_dir + os.sep):
                raise ConfigurationError("replication_target", "the backup must be kept "
                                         "outside storage_data_dir")
        try:
            os.makedirs(backup_dir, exist_ok=True)
        except OSError as e:
            raise ConfigurationError("replication_target",
                                     f"cannot create {backup_dir}: {e.strerror}") from e
    try:
        return backends[name](copy, db)
    except ImportError as e:
        raise ConfigurationError("replication_target", f"backend {name!r} is not "
                                 f"available: {e}") from e


def replication_layer(inner, settings, db: str, backends) -> Replication | None:
    """The registry's factory: None when ``replication_target`` is empty."""
    if not settings["replication_target"]:
        return None
    return Replication(inner, open_backup(settings, db, backends),
                       interval=settings["replication_interval"])


__all__ = ["Replication", "replication_layer", "open_backup", "parse_target", "OUTBOX"]
