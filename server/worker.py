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

CPU affinity (``server_cpu_affinity``, :func:`choose_cpu`): a worker's threads take
turns holding the interpreter lock, and a thread that holds it while another
worker's thread takes its CPU from it stops its whole worker until it gets a CPU
back. On a small machine that is most of what makes a worker wait: under a durable
write load on 2 CPUs, one worker per CPU made a third fewer context switches and
served a fifth more requests (measured).
"""
from __future__ import annotations

import logging
import os
import select
from collections.abc import Iterable

from gunicorn.workers.gthread import ThreadWorker

log = logging.getLogger("settee.server")


def choose_cpu(allowed: Iterable[int], taken: Iterable[int | None], workers: int) -> int | None:
    """The CPU a new worker runs on: the first of ``allowed`` that no live worker
    (``taken``) has; None (anywhere) when there are more ``workers`` than CPUs
    allowed, as no CPU could be a worker's own, or just one worker, as no other
    worker's threads compete with its own."""
    allowed = sorted(allowed)
    if not 1 < workers <= len(allowed):
        return None
    busy = set(taken)
    return next((cpu for cpu in allowed if cpu not in busy), None)


def pin(cpu: int | None) -> bool:
    """Run this process (and the threads it starts) on ``cpu`` only; False if the
    system refused (the worker then runs wherever the kernel puts it)."""
    if cpu is None:
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as e:
        log.warning("worker %d stays on CPUs %s: %s", os.getpid(),
                    sorted(os.sched_getaffinity(0)), e)
        return False
    return True


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
