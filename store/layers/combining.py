"""Combining: the writes that threads of one process hand in at the same time, run
as one batch by one of them.

A document write to a durable store spends most of its time waiting its turn:
writers of one database go one at a time (each process's threads, then the
processes, take turns), and in its turn a write makes a few statements, each of
which gives up and takes back the interpreter lock. Under load every one of those
hand-overs is a wait behind another thread. Here a thread that wants to write puts
its item in a queue; if no thread is writing, it becomes the *leader* and runs every
queued item as one batch (one read of what they need, one write of what they
produce, one commit), while the others sleep until their outcome is ready. Items
that arrive meanwhile make the next batch, led by the first of them.

``run(take)`` is the batch: it calls ``take()`` once, when it is ready to work (after
its turn to write has come, so the batch holds everything that arrived while it
waited), and returns an outcome for each item taken: a result, or the exception that
item raises. If ``run`` itself raises, nothing of the batch was written (its
transaction rolled back), and each item is run again alone, so that a value one item
brought is never its neighbours' failure; but an error of the storage (``shared``:
a failed commit or fsync, a full disk) is every member's, and is not retried: after
a failed fsync the batch is committed, and running it again would write it twice.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any


class _Slot:
    __slots__ = ("item", "outcome", "done", "wake")

    def __init__(self, item: Any):
        self.item = item
        self.outcome: Any = None
        self.done = False
        self.wake = threading.Lock()      # held until the slot's thread may go on
        self.wake.acquire()


class Combiner:
    max_batch = 256

    def __init__(self, run: Callable[[Callable[[], list]], list],
                 shared: tuple[type[BaseException], ...] = ()):
        self._run = run
        self._shared = shared
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._mutex = threading.Lock()
        self._queue: list[_Slot] = []
        self._leading = False              # a leader is running (or handing over)

    def submit(self, item: Any) -> Any:
        """Run ``item`` (in a batch); its outcome (a result or an exception instance)."""
        if self._pid != os.getpid():       # a forked child starts with no leader
            self._reset()
        slot = _Slot(item)
        with self._mutex:
            self._queue.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            slot.wake.acquire()            # outcome ready, or this thread leads next
            if slot.done:
                return slot.outcome
        self._lead(slot)
        return slot.outcome

    def _lead(self, own: _Slot) -> None:
        taken: list[_Slot] = []

        def take() -> list:
            with self._mutex:
                taken.extend(self._queue[:self.max_batch])
                del self._queue[:self.max_batch]
            return [slot.item for slot in taken]

        try:
            try:
                outcomes = self._run(take)
            except Exception as error:
                if not taken:
                    take()
                outcomes = self._alone(taken, error)
        except BaseException as error:     # interrupted: every member hears of it
            if not taken:
                take()
            outcomes = [error] * len(taken)
            raise
        finally:
            for slot, outcome in zip(taken, outcomes):
                slot.outcome, slot.done = outcome, True
                if slot is not own:
                    slot.wake.release()
            with self._mutex:
                if self._queue:
                    self._queue[0].wake.release()      # the next leader
                else:
                    self._leading = False

    def _alone(self, taken: list[_Slot], error: Exception) -> list:
        """The batch failed as a whole: run each item by itself for its own outcome."""
        if len(taken) == 1 or isinstance(error, self._shared):
            return [error] * len(taken)
        outcomes = []
        for slot in taken:
            try:
                def one(item: Any = slot.item) -> list:
                    return [item]
                outcomes.extend(self._run(one))
            except Exception as e:
                outcomes.append(e)
        return outcomes
