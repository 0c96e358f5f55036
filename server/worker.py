"""Settee's gunicorn worker: ``gthread``, with keep-alive connections kept on their thread.

In gunicorn's ``gthread`` worker, a thread that has answered a request on a kept-alive
connection hands the connection back to the worker's main thread, which puts it in
its poller and, when the next request arrives, hands it to a thread again: two
thread switches, a pipe write and a few ``epoll_ctl`` calls for every request, all
of them taking the interpreter lock, measured at a fifth of a small request's CPU.
Clients that keep a connection open mostly send the next request at once (client
libraries, replication, benchmark tools), so here the thread waits a moment
(``linger``) for it and serves it itself; a connection that stays quiet, or a pool
with work queued for its threads, goes back to the poller as before. Everything
else (timeouts, graceful stops, ``max_requests``, HTTP/2) is gthread's own.

New connections go to the worker holding the fewest (``server/balance.py``): given a
shared table (``table``, ``slot``: the master's, see ``config/gunicorn.conf.py``), a
worker publishes its count there, and one holding more than another live worker
stops listening for ``pause`` and leaves the waiting connection to that one, unless
it has waited ``patience`` already (the other may be stuck).
"""
from __future__ import annotations

import select
import time

from gunicorn.workers.gthread import ThreadWorker


class Worker(ThreadWorker):
    linger = 0.002          # seconds a thread waits for its connection's next request
    table = None            # the server's ConnectionTable, and this worker's slot in it
    slot = None
    pause = 0.002           # seconds a worker with more connections stops listening
    patience = 0.05         # seconds a connection is left to the other workers at most
    _paused_until = 0.0
    _leaving_since = None   # when this worker began leaving a connection to others
    _left_at = 0.0

    @property
    def nr_conns(self) -> int:
        return self._nr_conns

    @nr_conns.setter
    def nr_conns(self, count: int) -> None:
        self._nr_conns = count
        if self.table is not None and self.alive:
            self.table.publish(self.slot, count)

    def init_process(self):
        self.nr_conns = 0           # here from the start: the others leave it connections
        super().init_process()

    def accept(self, listener):
        if self.table is not None and not self.table.fewest(self.slot, self.nr_conns):
            now = time.monotonic()
            if self._leaving_since is None or now - self._left_at > 5 * self.pause:
                self._leaving_since = now          # a new connection waiting
            if now - self._leaving_since < self.patience:
                self._left_at = now
                self._paused_until = now + self.pause
                self.set_accept_enabled(False)
                return
        self._leaving_since = None
        super().accept(listener)

    def set_accept_enabled(self, enabled):
        if enabled and time.monotonic() < self._paused_until:
            return
        if not enabled and not self.alive and self.table is not None:
            self.table.release(self.slot)          # stopping: send no one here
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout):
        left = self._paused_until - time.monotonic()
        if left > 0:
            timeout = min(timeout, left)
        super().wait_for_and_dispatch_events(timeout)

    def handle(self, conn):
        while True:
            keepalive = super().handle(conn)
            if keepalive is not True or not self.alive or not self._next_request_soon(conn):
                return keepalive

    def _next_request_soon(self, conn) -> bool:
        """Whether the next request on ``conn`` is already here, or comes within
        ``linger`` while no other work waits for a thread."""
        if conn.parser.unreader.buf.getvalue():
            return True                     # read ahead with the last request
        queue = getattr(self.tpool, "_work_queue", None)
        wait = 0 if queue is not None and queue.qsize() else self.linger
        try:
            poll = select.poll()
            poll.register(conn.sock.fileno(), select.POLLIN)
            return bool(poll.poll(wait * 1000))
        except (OSError, ValueError):       # closed meanwhile: the poller decides
            return False
