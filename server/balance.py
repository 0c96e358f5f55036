"""Least-connections accept: a new connection goes to the worker holding the fewest.

The workers of a server share one listening socket. Left to the kernel, the worker
that wakes first takes a connection, so a burst of them lands on one worker; with a
socket per worker (``SO_REUSEPORT``) the kernel spreads them by a hash of the address,
so sixteen connections come out 10/6 or 11/5 as often as 8/8. Clients that keep their
connections open (client libraries, replication, benchmark tools) then load one worker
more than the other for as long as they stay, and the busier worker's requests wait
longer. Measured under a durable PUT load at 16 connections on 2 CPUs: during one slow
spell, the runs that came out 8/8 served about a fifth more writes than the uneven
ones; in A/B pairs on a faster machine, an even split gave p99 18.6 against 20.3 ms
with the same req/s, within the run-to-run spread. It makes runs steadier more than
faster.

So each worker publishes how many connections it holds in a table shared by every
worker of the server (:class:`ConnectionTable`, made by the master before it forks),
and a worker holding more than another live one leaves a new connection to it. Only
for a moment: a worker that is stuck must not hold up new clients, so after
``patience`` the waiting connection is taken anyway (see ``server/worker.py``).
"""
from __future__ import annotations

import mmap
from collections.abc import Iterable

_EMPTY = 2 ** 31 - 1          # a slot no live worker holds: never the fewest


class ConnectionTable:
    """Open connections per worker, in memory shared across ``fork``: one slot per
    worker, claimed by the master for the worker it is about to start and freed when
    that worker exits."""

    def __init__(self, slots: int = 256):
        self._map = mmap.mmap(-1, 4 * slots)          # anonymous and shared
        self._counts = memoryview(self._map).cast("i")
        for slot in range(slots):
            self._counts[slot] = _EMPTY

    def claim(self, taken: Iterable[int | None]) -> int | None:
        """A slot for a new worker: the first one no live worker (``taken``) holds;
        None when all are held (that worker then takes whatever it is offered)."""
        busy = set(taken)
        return next((slot for slot in range(len(self._counts)) if slot not in busy), None)

    def publish(self, slot: int | None, connections: int) -> None:
        if slot is not None:
            self._counts[slot] = connections

    def release(self, slot: int | None) -> None:
        """The worker in ``slot`` takes no more connections (it exited or is stopping)."""
        if slot is not None:
            self._counts[slot] = _EMPTY

    def fewest(self, slot: int | None, connections: int) -> bool:
        """Whether the worker in ``slot``, holding ``connections``, holds no more than
        any other live worker (ties: each of them may take the next connection)."""
        return slot is None or connections <= min(self._counts)

    def counts(self) -> dict[int, int]:
        """The live workers' slots and their connections."""
        return {slot: n for slot, n in enumerate(self._counts) if n != _EMPTY}
