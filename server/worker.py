"""Settee's gunicorn worker: ``gthread``, with threads kept for requests that are ready.

gunicorn's ``gthread`` worker gives a connection a pool thread as soon as its first
bytes arrive, and the thread then blocks until the whole request head is in, and
until the response is done. So a client sending its headers a byte at a time held a
thread for as long as it liked (40 such clients stopped a 2 x 16-thread server), and
so did every longpoll ``_changes`` feed (32 of them did the same). A database server
must hold thousands of idle, slow or waiting connections and still answer others at
once, so here a thread is only ever given work that is ready:

* **Request heads are read by the worker's event loop** (its main thread, the one
  that accepts): a connection gets a pool thread only once a whole head is in. A head
  must be complete within ``header_timeout`` seconds of its first byte (else 408 and
  the connection is closed), and may not exceed :data:`MAX_HEAD` bytes (431).
* **Waiting responses are parked** (:mod:`.parking`): a feed with nothing to send
  yields a ``Park``; the event loop keeps its connection with no thread, checks the
  sequence once per database every 20 ms for all parked feeds, notices a client that
  hangs up, and resumes the response on a pool thread when it is due.
* **Stalled transfers time out**: a pool thread's socket reads and writes give up
  after ``io_timeout`` seconds without progress (a body that stops arriving: 408; a
  client that stops reading), and the connection is dropped.
* **A connection cap with a clear answer**: past ``max_connections`` open connections
  a new one is answered ``503`` and closed at once, instead of waiting unanswered in
  the listen queue.

The fast path is gthread's, kept from before: a thread that has answered a kept-alive
connection waits a moment (``linger``) for its next request and serves it itself,
now only when that next request's head is already complete (else the event loop
reads it). Clients that keep a connection open mostly send the next request at
once (client libraries, replication, benchmark tools); the hand-over to the event
loop and back cost two thread switches, a pipe write and a few ``epoll_ctl`` calls
per request, measured at a fifth of a small request's CPU.

New connections go to the worker holding the fewest (``server/balance.py``): given a
shared table (``table``, ``slot``: the master's, see ``config/gunicorn.conf.py``), a
worker publishes its count there, and one holding more than another live worker
stops listening for ``pause`` and leaves the waiting connection to that one, unless
it has waited ``patience`` already (the other may be stuck).
"""
from __future__ import annotations

import errno
import select
import selectors
import socket
import struct
import sys
import time
from datetime import datetime
from functools import partial

import orjson
from gunicorn import util
from gunicorn.http import wsgi
from gunicorn.workers.gthread import TConn, ThreadWorker

from .balance import ConnectionTable
from .parking import CLOSE, PARK, POLL, Park

#: Largest request head (request line and headers) read for a request, in bytes.
MAX_HEAD = 64 * 1024
#: Seconds a refused connection is read from (and its bytes dropped) before it closes.
LINGER = 1.0
#: Seconds between two updates of a worker's connection gauges.
GAUGE_EVERY = 0.1
#: What a worker's handle() returns for a response parked without a thread.
PARKED = object()


def head_complete(data, start: int = 0) -> bool:
    """Whether ``data`` holds a whole request head (it ends with an empty line),
    looking from ``start`` on (minus the three bytes an end may straddle)."""
    start = max(0, start - 3)
    return data.find(b"\r\n\r\n", start) >= 0 or data.find(b"\n\n", start) >= 0


def canned(status: str, error: str, reason: str) -> bytes:
    """A whole HTTP response with a CouchDB-style error body, for connections that
    never reach the application (too many, too slow)."""
    body = orjson.dumps({"error": error, "reason": reason})
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


TOO_MANY = canned("503 Service Unavailable", "service_unavailable",
                  "Too many open connections; try again later")
HEAD_TIMEOUT = canned("408 Request Timeout", "request_timeout",
                      "The request headers did not arrive in time")
HEAD_TOO_LARGE = canned("431 Request Header Fields Too Large", "bad_request",
                        f"Request headers over {MAX_HEAD} bytes")


def time_limited(sock: socket.socket, seconds: float | None) -> socket.socket:
    """``sock``, its blocking reads and writes giving up after ``seconds`` without
    progress (the kernel's ``SO_RCVTIMEO``/``SO_SNDTIMEO``: a stalled call fails with
    ``EAGAIN``, a ``BlockingIOError``). Unlike a Python socket timeout, this costs no
    ``poll`` before each call, and a large write to a slow reader is fine: the limit
    is on each wait for progress, not on the whole of it."""
    if seconds:
        limit = struct.pack("ll", int(seconds), int(seconds % 1 * 1_000_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
    return sock


class Conn(TConn):
    head: bytearray | None = None       # the request head being read by the event loop
    head_deadline = 0.0


class Parked:
    """A response put aside while it waits: everything needed to resume it."""

    __slots__ = ("conn", "req", "resp", "environ", "respiter", "items", "started", "park",
                 "watched")

    def __init__(self, conn, req, resp, environ, respiter, started):
        self.conn, self.req, self.resp, self.environ = conn, req, resp, environ
        self.respiter, self.items, self.started = respiter, iter(respiter), started
        self.park: Park                  # set when the response parks (before any use)
        self.watched = False


class Worker(ThreadWorker):
    linger = 0.002          # seconds a thread waits for its connection's next request
    alive: bool             # gunicorn's: False once the worker is stopping
    table: ConnectionTable | None = None   # the server's table, and this worker's slot in it
    slot: int | None = None
    pause = 0.002           # seconds a worker with more connections stops listening
    patience = 0.05         # seconds a connection is left to the other workers at most
    header_timeout = 20.0   # seconds for a request head to arrive (settings set these)
    io_timeout: float | None = 60.0
    _gauges_at = 0.0        # when the connection gauges (metrics.py) are next set
    _paused_until = 0.0
    _leaving_since: float | None = None   # when this worker began leaving a connection
    _left_at = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_connections = self.cfg.worker_connections
        # gthread stops accepting at worker_connections, leaving new clients unanswered
        # in the listen queue; here they are accepted and answered 503 (accept()).
        self.worker_connections = sys.maxsize
        self.heading: dict[Conn, float] = {}     # reading a head: conn -> deadline
        self.parked: dict[Conn, Parked] = {}
        self.closing: dict[socket.socket, float] = {}    # refused: sock -> close at
        self._next_check = 0.0

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
        from .metrics import CONNECTIONS
        self._gauges = [(CONNECTIONS.labels(state), count) for state, count in (
            ("open", lambda: self.nr_conns), ("reading_head", lambda: len(self.heading)),
            ("waiting", lambda: len(self.parked)))]
        super().init_process()

    # -- accepting ---------------------------------------------------------------------
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
        try:
            sock, addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        if self.nr_conns >= self.max_connections:
            self._refuse(sock, TOO_MANY)
            return
        self.nr_conns += 1
        if self.cfg.is_ssl:          # the head arrives encrypted: gthread's own path
            sock.setblocking(True)
            self.enqueue_req(TConn(self.cfg, sock, addr, listener.getsockname()))
            return
        conn = Conn(self.cfg, time_limited(sock, self.io_timeout), addr,
                    listener.getsockname())
        self._await_head(conn)

    def _refuse(self, sock: socket.socket, answer: bytes) -> None:
        """Send ``answer`` and close, reading what the client still sends for a moment
        (:data:`LINGER`): closing with unread data would reset the connection, and the
        client might lose the answer. At most ``max_connections`` linger at once: past
        that (a flood of refused clients), a socket is closed at once."""
        if len(self.closing) >= self.max_connections:
            try:
                sock.setblocking(False)
                sock.send(answer)
            except OSError:
                pass
            util.close(sock)
            return
        try:
            sock.setblocking(False)
            if answer:
                sock.send(answer)
            sock.shutdown(socket.SHUT_WR)
            self.poller.register(sock, selectors.EVENT_READ, self._on_closing_readable)
        except (OSError, KeyError, ValueError):
            util.close(sock)
            return
        self.closing[sock] = time.monotonic() + LINGER

    def _on_closing_readable(self, sock) -> None:
        try:
            if sock.recv(65536):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._closed(sock)

    def _closed(self, sock) -> None:
        del self.closing[sock]
        try:
            self.poller.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass
        util.close(sock)

    def _expire_closing(self, now: float) -> None:
        while self.closing:
            sock, deadline = next(iter(self.closing.items()))
            if deadline > now:
                return
            self._closed(sock)

    def set_accept_enabled(self, enabled):
        if enabled and time.monotonic() < self._paused_until:
            return
        if not enabled and not self.alive and self.table is not None:
            self.table.release(self.slot)          # stopping: send no one here
        super().set_accept_enabled(enabled)

    # -- request heads, read by the event loop --------------------------------------------
    def _await_head(self, conn: Conn, head: bytes = b"") -> None:
        conn.head = bytearray(head)
        self.heading[conn] = time.monotonic() + self.header_timeout
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             partial(self._on_head_readable, conn))

    def _on_head_readable(self, conn: Conn, _sock=None) -> None:
        try:
            data = conn.sock.recv(MAX_HEAD)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:                               # the client went away
            self._stop_reading_head(conn)
            self._drop(conn)
            return
        head = conn.head
        assert head is not None                    # reading a head: set by _await_head
        seen = len(head)
        head += data
        if head_complete(head, seen):
            self._stop_reading_head(conn)
            conn.data_ready = True
            self.enqueue_req(conn)
        elif len(head) > MAX_HEAD:
            self._stop_reading_head(conn)
            self._refuse(conn.sock, HEAD_TOO_LARGE)
            self.nr_conns -= 1

    def _stop_reading_head(self, conn: Conn) -> None:
        self.heading.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _expire_heads(self, now: float) -> None:
        """408 to the connections whose head is late (the dict is in deadline order:
        every head gets the same time, counted from when it began)."""
        while self.heading:
            conn, deadline = next(iter(self.heading.items()))
            if deadline > now:
                return
            self._stop_reading_head(conn)
            if conn.head:
                self._refuse(conn.sock, HEAD_TIMEOUT)
            else:
                util.close(conn.sock)          # a connection that never said anything
            self.nr_conns -= 1

    def _drop(self, conn) -> None:
        self.nr_conns -= 1
        conn.close()

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection has its next request coming: read its head here."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._await_head(conn)
        self._on_head_readable(conn)

    # -- the pool threads ------------------------------------------------------------------
    def handle(self, conn):
        head = getattr(conn, "head", None)
        if head is not None:
            conn.head = None
            conn.init()
            conn.parser.unreader.unread(bytes(head))
        while True:
            keepalive = super().handle(conn)
            if keepalive is not True or not self.alive or not self._next_request_soon(conn):
                return keepalive

    def _keepalive_after(self, conn, keepalive):
        if keepalive is PARKED:
            return PARKED
        return super()._keepalive_after(conn, keepalive)

    def _next_request_soon(self, conn) -> bool:
        """Whether the next request's whole head on ``conn`` is already here, or comes
        within ``linger`` while no other work waits for a thread. What arrived is read
        into the parser's buffer (one ``recv``, the parser makes none for the head); a
        partial head goes to the event loop, which reads the rest without holding a
        thread (:meth:`finish_request`)."""
        buffered = conn.parser.unreader.buf.getvalue()
        if buffered:
            return head_complete(buffered)
        queue = getattr(self.tpool, "_work_queue", None)
        wait = 0 if queue is not None and queue.qsize() else self.linger
        try:
            poll = select.poll()
            poll.register(conn.sock.fileno(), select.POLLIN)
            if not poll.poll(wait * 1000):
                return False
            data = conn.sock.recv(MAX_HEAD, socket.MSG_DONTWAIT)
        except (OSError, ValueError):       # closed meanwhile: the event loop decides
            return False
        if not data:
            return False
        conn.parser.unreader.unread(data)
        return head_complete(data)

    def handle_request(self, req, conn):
        """gthread's ``handle_request``, with the response served by :meth:`_serve`,
        which may park it."""
        environ = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            started = datetime.now()
            resp, environ = wsgi.create(req, conn.sock, conn.client, conn.server, self.cfg)
            environ["wsgi.multithread"] = True
            environ[PARK] = True
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
                resp.force_close()
            if not self.alive or not self.cfg.keepalive:
                resp.force_close()
            elif len(self.keepalived_conns) >= self.max_keepalived:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            if isinstance(respiter, environ["wsgi.file_wrapper"]):
                try:
                    resp.write_file(respiter)
                    resp.close()
                finally:
                    self.log.access(resp, req, environ, datetime.now() - started)
                    respiter.close()
                return not resp.should_close()
            return self._serve(Parked(conn, req, resp, environ, respiter, started))
        except OSError:
            raise
        except (Exception, SystemExit):
            if resp and resp.headers_sent:
                self.log.exception("Error handling request")
                util.close_graceful(conn.sock)
                raise StopIteration() from None
            raise

    def _serve(self, p: Parked):
        """Send the response's items until it ends (True: keep the connection alive)
        or parks (:data:`PARKED`: the event loop holds it, with no thread)."""
        done = False
        try:
            for item in p.items:
                if type(item) is Park:
                    p.park = item
                    self.method_queue.defer(self._park, p)
                    return PARKED
                p.resp.write(item)
            p.resp.close()
            done = True
        finally:
            if done or sys.exc_info()[0] is not None:
                self.log.access(p.resp, p.req, p.environ, datetime.now() - p.started)
                if hasattr(p.respiter, "close"):
                    p.respiter.close()
        return not (p.resp.should_close() or p.environ.get(CLOSE))

    def _resume(self, p: Parked):
        """A parked response that is due, on a pool thread again."""
        try:
            p.conn.sock.setblocking(True)
            keepalive = self._serve(p)
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EAGAIN):
                self.log.exception("Socket error resuming a response.")
            return False
        except Exception:
            self.log.exception("Error resuming a response")
            return False
        return self._keepalive_after(p.conn, keepalive)

    def finish_request(self, conn, fs):
        """gthread's, and: a parked response stays with the event loop; a kept-alive
        connection whose next head was read in part goes to the event loop to finish."""
        if not fs.cancelled() and fs.exception() is None:
            result = fs.result()
            if result is PARKED:
                return
            if result is True and self.alive and conn.parser is not None:
                buffered = conn.parser.unreader.buf.getvalue()
                if buffered and not head_complete(buffered):
                    conn.parser.unreader.take_buffered()
                    conn.sock.setblocking(False)
                    self._await_head(conn, buffered)
                    return
        super().finish_request(conn, fs)

    # -- parked responses, kept by the event loop -------------------------------------------
    def _park(self, p: Parked) -> None:
        if not self.alive:
            p.park.cut = True
            self._resume_soon(p)
            return
        self.parked[p.conn] = p
        try:
            p.conn.sock.setblocking(False)
            self.poller.register(p.conn.sock, selectors.EVENT_READ,
                                 partial(self._on_parked_readable, p))
            p.watched = True
        except (KeyError, ValueError, OSError):
            pass
        self._next_check = min(self._next_check, p.park.wake_at)

    def _on_parked_readable(self, p: Parked, _sock=None) -> None:
        """The client of a parked response hung up (or sent more: watched no longer)."""
        try:
            data = p.conn.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        self._unwatch(p)
        if not data:
            del self.parked[p.conn]
            self._close_parked(p)

    def _unwatch(self, p: Parked) -> None:
        if p.watched:
            p.watched = False
            try:
                self.poller.unregister(p.conn.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _close_parked(self, p: Parked) -> None:
        self._unwatch(p)
        try:
            if hasattr(p.respiter, "close"):
                p.respiter.close()
        except Exception:
            self.log.exception("Error closing a parked response")
        self._drop(p.conn)

    def _wake_parked(self, now: float) -> None:
        """Resume every parked response that is due: one ``current()`` per group."""
        if not self.parked or now < self._next_check:
            return
        self._next_check = now + POLL
        currents: dict[int, float] = {}
        due = []
        for p in self.parked.values():
            park = p.park
            key = id(park.group)
            current = currents.get(key)
            if current is None:
                try:
                    current = park.current()
                except Exception:           # let the response's own thread meet it
                    current = float("inf")
                currents[key] = current
            if park.due(current, now):
                due.append(p)
        for p in due:
            del self.parked[p.conn]
            self._resume_soon(p)

    def _resume_soon(self, p: Parked) -> None:
        self._unwatch(p)
        fs = self.tpool.submit(self._resume, p)
        fs.add_done_callback(
            lambda fut, conn=p.conn: self.method_queue.defer(self.finish_request, conn, fut))

    # -- the event loop ----------------------------------------------------------------------
    def wait_for_and_dispatch_events(self, timeout):
        now = time.monotonic()
        left = self._paused_until - now
        if left > 0:
            timeout = min(timeout, left)
        if self.parked:
            timeout = min(timeout, max(0.0, self._next_check - now))
        super().wait_for_and_dispatch_events(timeout)
        now = time.monotonic()
        if not self.alive:                  # stopping: every waiting feed ends now
            for p in self.parked.values():
                p.park.cut = True
                self._resume_soon(p)
            self.parked.clear()
        self._wake_parked(now)
        self._expire_heads(now)
        self._expire_closing(now)
        if now >= self._gauges_at:
            self._gauges_at = now + GAUGE_EVERY
            for gauge, count in self._gauges:
                gauge.set(count())

