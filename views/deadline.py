"""A query's time limit: :class:`Deadline` counts the rows a query reads and, every
:attr:`Deadline.every` rows, looks at the clock; past the limit it raises
:class:`QueryTimeout`.

A query that reads many rows and answers few (a ``_find`` scan whose selector
matches little, a view query with a large ``skip``) would otherwise hold a worker
thread, and the interpreter lock it shares with its neighbours, for as long as the
database is big. The clock is read once per batch of rows, not once per row: a row
costs microseconds, so the limit is overshot by a few milliseconds at most.

A streamed answer calls :meth:`Deadline.progress` for every row it sends: the limit
then bounds the time spent reading without answering, not the whole stream, whose
length the client's reading paces (a million rows to a slow client is no attack).
This is what CouchDB's ``[fabric] request_timeout`` bounds too: the wait for the next
row, not the response. The limit is the ``query_timeout`` setting, in seconds.
Nothing here knows HTTP: the server decides how to answer a :class:`QueryTimeout`.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from settee.store.exceptions import StoreError

T = TypeVar("T")


class QueryTimeout(StoreError):
    """The query ran past its time limit; ``seconds`` is the limit."""

    error = "timeout"

    def __init__(self, seconds: float):
        super().__init__(f"The query exceeded its time limit of {seconds:g} s "
                         "(query_timeout): narrow the selector or the key range, or add "
                         "an index", seconds=seconds)
        self.seconds = seconds


class Deadline:
    """``seconds`` from now (None: no limit). :meth:`check` once per row read."""

    every = 64          # rows between two looks at the clock

    __slots__ = ("seconds", "ends", "_countdown", "_progressed")

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.ends = None if seconds is None else time.monotonic() + seconds
        self._countdown = self.every
        self._progressed = False

    def check(self) -> None:
        """Count one row; every :attr:`every` rows, raise :class:`QueryTimeout` if past."""
        self._countdown -= 1
        if self._countdown:
            return
        self._countdown = self.every
        seconds, ends = self.seconds, self.ends
        if seconds is None or ends is None:     # no limit (the two are None together)
            return
        now = time.monotonic()
        if self._progressed:                # rows went out: the limit starts again
            self._progressed = False
            self.ends = now + seconds
        elif now > ends:
            raise QueryTimeout(seconds)

    def restart(self) -> None:
        """The limit starts again now (after work that is not the query's own)."""
        if self.seconds is not None:        # (ends is None when seconds is)
            self.ends = time.monotonic() + self.seconds

    def progress(self) -> None:
        """A row was answered: the limit starts again (at the next look at the clock)."""
        self._progressed = True

    def watch(self, rows: Iterable[T]) -> Iterator[T]:
        """``rows``, counting each one as it is read."""
        for row in rows:
            self.check()
            yield row


def unlimited() -> Deadline:
    """No limit (embedded callers that pass no deadline)."""
    return Deadline(None)
