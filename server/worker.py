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
"""
from __future__ import annotations

import select

from gunicorn.workers.gthread import ThreadWorker


class Worker(ThreadWorker):
    linger = 0.002          # seconds a thread waits for its connection's next request

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
