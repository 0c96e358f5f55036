"""Transactions: the one implementation of ``transaction()`` every backend uses.

The protocol of a transactional backend is :class:`Transactions`'s abstract hooks (a
class missing one cannot be made, as TinyDB's ``Storage`` ABC does):

* ``_open_batch()``: take the backend's cross-process writers' lock and begin (and
  release the lock again if beginning fails);
* ``_commit_batch()``: commit and release the lock. When it returns the work is
  durable, unless ``_sync_batch()`` (optional) is what makes it so;
* ``_abort_batch()``: roll back and release the lock.

What ``transaction()`` then promises, for every backend:

* It is re-entrant per thread: an inner ``with`` joins the outer one (each layer of
  a document write opens one), and only the outermost commits.
* The outermost block of a thread runs alone in its process (the process's *gate*);
  across processes the backend's lock serializes.
* When the outermost block ends normally, its writes are durable before
  ``transaction()`` returns (so a 2xx is sent only after a durable commit; backend by
  backend: docs/DURABILITY.md); if it raises, none of its writes remain.

By default each outermost transaction is a batch of its own: begin, the block, commit
or roll back. A backend that also implements savepoints (``_savepoint(name)``,
``_release(name)``, ``_rollback_to(name)``) and sets ``max_batch`` above 1 gets
**group commit**: many threads' transactions made durable by one commit.

A durable commit costs an fsync, and writers of one database take turns, so one
commit per write caps a server at a few hundred to a few thousand writes a second
and queues the rest behind each other's fsyncs. With group commit the threads of a
process that want to write at the same time share one backend transaction:

* Each outermost ``transaction()`` still runs alone (the gate), inside the shared
  transaction: the first of a batch directly (if its block raises, the batch, which
  holds nothing else, is rolled back), each later one as a ``SAVEPOINT``: if its
  block raises, only its own work is rolled back (``ROLLBACK TO``), never its
  neighbours'.
* The thread that finishes while no other thread is waiting to write commits the
  shared transaction: one fsync for the whole batch. So does the one that finds the
  batch full (``max_batch`` transactions, failed ones counted) or old
  (``max_batch_seconds`` since it opened): under a steady stream of writers, and
  above all of writers that fail fast (conflicts), there is always someone waiting,
  and an unbounded batch kept its first members waiting, and the other processes
  locked out, for whole seconds.
* A thread that finished while others were waiting leaves the batch open for them
  and waits until the batch's commit is durable before ``transaction()`` returns, so
  an acknowledged write is still a durable write. If that commit fails (a full disk),
  every member of the batch gets the error.
* ``_sync_batch()`` runs after the gate is released, so the process's next batch is
  written while the last one is being synced.

Across processes nothing changes: the shared transaction holds the backend's
cross-process lock from its first member to its commit.
"""
from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from typing import Literal

SAVEPOINT_HOOKS = ("_savepoint", "_release", "_rollback_to")


class _Batch:
    __slots__ = ("members", "entries", "deadline", "done", "error")

    def __init__(self, deadline: float):
        self.members = 0                  # transactions that will commit with it
        self.entries = 0                  # transactions run in it, failed ones too
        self.deadline = deadline          # commit by then, even with writers waiting
        self.done = False
        self.error: BaseException | None = None


class Transactions(ABC):
    """``transaction()`` over a backend's begin/commit/abort hooks (module docstring)."""

    max_batch = 1                     # transactions per commit; above 1: group commit
    max_batch_seconds = 0.004         # age at which a shared batch commits regardless

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.max_batch > 1:
            missing = [name for name in SAVEPOINT_HOOKS
                       if getattr(cls, name) is getattr(Transactions, name)]
            if missing:
                raise TypeError(f"{cls.__name__}: group commit (max_batch > 1) needs "
                                f"savepoints: {', '.join(missing)}")

    # -- what a backend provides ------------------------------------------------------
    @abstractmethod
    def _open_batch(self) -> None:
        """Take the backend's cross-process writers' lock and begin the transaction
        (releasing the lock again if beginning fails)."""

    @abstractmethod
    def _commit_batch(self) -> None:
        """Commit and release the lock. Durable when this returns, unless
        ``_sync_batch`` is what makes it so."""

    @abstractmethod
    def _abort_batch(self) -> None:
        """Roll the transaction back and release the lock."""

    def _sync_batch(self) -> None:
        """Make the last commit durable, if ``_commit_batch`` did not."""

    def _savepoint(self, name: str) -> None:
        """Begin one member's part of a shared batch (a nested, undoable unit)."""
        raise NotImplementedError

    def _release(self, name: str) -> None:
        """Keep that member's part in the batch."""
        raise NotImplementedError

    def _rollback_to(self, name: str) -> None:
        """Undo that member's part only, leaving its neighbours' in the batch."""
        raise NotImplementedError

    # -- the transactions ---------------------------------------------------------------
    def _init_transactions(self, gate=None) -> None:
        """Call from ``__init__``. ``gate``: a lock shared with other instances whose
        writers must take turns with this one's (LMDB: one environment, one writer)."""
        self._tx_pid = os.getpid()
        self._gate = gate if gate is not None else threading.Lock()
        self._done = threading.Condition()    # batch commits are announced here
        self._waiting = 0                     # threads queued at the gate (group commit)
        self._batch: _Batch | None = None
        self._tx_state = threading.local()

    def _check_fork(self) -> None:
        if self._tx_pid != os.getpid():        # a forked child starts with no batch
            self._init_transactions()

    def in_transaction(self) -> bool:
        return getattr(self._tx_state, "depth", 0) > 0

    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def flush(self) -> None:
        """Commit the open batch, if any (callers hold the gate)."""
        batch = self._batch
        if batch is not None and self._commit(batch):
            self._make_durable(batch)

    def _commit(self, batch: _Batch) -> bool:
        """Commit ``batch`` (callers hold the gate); False if it failed (members told)."""
        try:
            self._commit_batch()
        except BaseException as e:
            self._fail(batch, e)
            return False
        self._batch = None            # the next transaction opens a new batch
        return True

    def _make_durable(self, batch: _Batch) -> None:
        """Wait until the committed ``batch`` is durable, then wake its members. Needs
        no gate: the next batch may be running meanwhile."""
        try:
            self._sync_batch()
        except BaseException as e:
            batch.error = e
        if self.max_batch == 1:        # a batch of one: no other member waits for it
            batch.done = True
            return
        with self._done:
            batch.done = True
            self._done.notify_all()

    def _fail(self, batch: _Batch, error: BaseException) -> None:
        """Roll ``batch`` back; every member will raise ``error``."""
        batch.error = error
        try:
            self._abort_batch()
        except BaseException:
            pass
        self._batch = None
        with self._done:
            batch.done = True
            self._done.notify_all()


class _Transaction:
    """The context manager ``transaction()`` returns. No generator: it is entered
    several times per document write, once per layer."""

    __slots__ = ("store", "batch", "outer", "savepoint")

    def __init__(self, store: Transactions):
        self.store = store
        self.batch: _Batch | None = None
        self.outer = False
        self.savepoint = False

    def __enter__(self):
        store = self.store
        state = store._tx_state
        depth = getattr(state, "depth", 0)
        if depth:
            state.depth = depth + 1
            return store
        store._check_fork()
        state = store._tx_state
        grouped = store.max_batch > 1
        if grouped:
            with store._done:
                store._waiting += 1
        store._gate.acquire()
        if grouped:
            with store._done:
                store._waiting -= 1
        try:
            if store._batch is None:           # first of its batch: no savepoint needed
                store._open_batch()
                store._batch = _Batch(time.monotonic() + store.max_batch_seconds
                                      if grouped else 0.0)
            else:
                store._savepoint("tx")
                self.savepoint = True
            self.batch = store._batch
        except BaseException as e:
            if store._batch is not None:
                store._fail(store._batch, e)
            store._gate.release()
            raise
        self.outer = True
        state.depth = 1
        return store

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        store = self.store
        state = store._tx_state
        if not self.outer:
            state.depth -= 1
            return False
        state.depth = 0
        batch = self.batch
        assert batch is not None                # set by an outer __enter__
        committed = False
        try:
            try:
                if exc_type is None:
                    if self.savepoint:
                        store._release("tx")
                    batch.members += 1
                elif self.savepoint:
                    store._rollback_to("tx")
                else:                           # alone in its batch: roll the batch back
                    store._batch = None
                    batch.done = True
                    store._abort_batch()
            except BaseException as e:          # the shared transaction is broken
                store._fail(batch, e)
            batch.entries += 1
            if not batch.done and (store._waiting == 0 or batch.entries >= store.max_batch
                                   or time.monotonic() >= batch.deadline):
                committed = store._commit(batch)
        finally:
            store._gate.release()
        if committed:                           # outside the gate: the next batch runs
            store._make_durable(batch)          # while this one's fsync does
        if exc_type is not None:
            return False                        # the block's own error propagates
        if not batch.done:
            with store._done:
                while not batch.done:
                    store._done.wait()
        if batch.error is not None:
            raise batch.error
        return False
