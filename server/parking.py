"""Responses that wait without holding a thread: the contract between the application
and Settee's gunicorn worker (:mod:`.worker`).

A database server holds many connections that wait: longpoll and continuous
``_changes`` feeds (PouchDB keeps one open per live sync), often for a minute. With
a thread per waiting response, 32 feeds took every thread of a two-worker server and
nothing else was answered. So a response iterable that has nothing to send yet may,
when the server offers it (``environ[PARK]`` is true), yield a :class:`Park` instead
of blocking: "resume me once ``current()`` passes ``after``, or at ``wake_at``". The
worker then keeps the connection aside with no thread, checks ``current()`` once per
``group`` (a database) every :data:`POLL` seconds for all its parked responses
together, and resumes the iterable on a pool thread when it is due; the iterable
re-checks and sends, or parks again. A client that hangs up while parked is noticed
at once and its response closed. A worker that stops resumes every parked response
with ``cut`` set, and the response ends as at its timeout (a longpoll answers with
no results), so its client goes on with another worker.

Under any other WSGI server (the test suite's webtest, werkzeug's development
server) ``PARK`` is absent from the environ and the iterable sleeps in place, as
:func:`wait_in_place` does.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Hashable

#: The environ key a server sets (to True) when it can park responses.
PARK = "settee.park"
#: The environ key the application sets (to True) to have the connection closed
#: after its response (a WSGI application may not send ``Connection: close``).
CLOSE = "settee.close"
#: Seconds between two checks of a waiting feed's sequence.
POLL = 0.02


class Park:
    """Yielded by a response iterable that waits: the condition it waits for.

    ``current()`` is cheap (a small read) and returns a number; the response is due
    when it exceeds ``after``, or at ``wake_at`` (``time.monotonic()`` seconds) in any
    case, e.g. for a heartbeat or the feed's timeout. Responses with the same
    ``group`` share one call of ``current()`` per check.
    """

    __slots__ = ("group", "current", "after", "wake_at", "cut")

    def __init__(self, group: Hashable, current: Callable[[], int], after: int,
                 wake_at: float):
        self.group, self.current, self.after, self.wake_at = group, current, after, wake_at
        #: Set by a server that is stopping: end the response now, as at its timeout.
        self.cut = False

    def due(self, current: float, now: float) -> bool:
        return current > self.after or now >= self.wake_at


def wait_in_place(park: Park, wait_for_change: Callable[[float], None] | None = None) -> None:
    """Block the calling thread until ``park`` is due: what a server without parking
    gets. ``wait_for_change(timeout)``, where the backend offers one (PostgreSQL's
    LISTEN), is waited on instead of sleeping between checks."""
    while True:
        now = time.monotonic()
        if park.due(park.current(), now):
            return
        left = park.wake_at - now
        if wait_for_change is None:
            time.sleep(min(POLL, left))
        else:
            wait_for_change(left)
