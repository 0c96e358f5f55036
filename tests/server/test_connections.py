"""The worker under idle, slow and waiting connections (server/worker.py): a thread is
only given work that is ready, so none of these stops the server answering others."""
from __future__ import annotations

import os
import socket
import threading
import time

import pytest
import requests
from liveserver import LiveServer
from waiting import until

pytestmark = pytest.mark.slow


def connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def timed_get(url: str, timeout: float = 5) -> tuple[int, float]:
    started = time.monotonic()
    status = requests.get(url, timeout=timeout).status_code
    return status, time.monotonic() - started


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def one_thread(tmp_path):
    """One worker with one thread: anything that held a thread would stop it."""
    with LiveServer(tmp_path / "data", workers=1, threads=1,
                    SETTEE_SERVER_HEADER_TIMEOUT="1", SETTEE_SERVER_IO_TIMEOUT="1") as server:
        yield server


def test_slow_headers_hold_no_thread(one_thread):
    slow = []
    for _ in range(40):
        sock = connect(one_thread)
        sock.sendall(b"GET /_up HTTP/1.1\r\nHost: x\r\n")      # and never the end
        slow.append(sock)
    try:
        status, took = timed_get(one_thread.url + "/_up")
        assert status == 200 and took < 1.0
    finally:
        for sock in slow:
            sock.close()


def test_a_late_head_is_answered_408_and_closed(one_thread):
    with connect(one_thread) as sock:
        sock.sendall(b"GET /_up HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"error":"request_timeout"' in answer
    assert 0.9 <= time.monotonic() - started < 4


def test_a_head_that_trickles_in_whole_is_served(one_thread):
    with connect(one_thread) as sock:
        for byte in b"GET /_up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n":
            sock.sendall(bytes([byte]))
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"status":"ok"' in answer


def test_a_stalled_body_frees_its_thread(one_thread):
    requests.put(one_thread.url + "/db").raise_for_status()
    with connect(one_thread) as sock:
        sock.sendall(b"PUT /db/doc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"a\":")      # 5 of 100 bytes, then nothing
        # The event loop has read the head: the PUT is queued for the thread before the GET
        assert until(lambda: one_thread.has_read(sock)), "the head was not read"
        status, took = timed_get(one_thread.url + "/_up")
        assert status == 200 and took < 3  # the stalled read gave up after io_timeout (1 s)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert requests.get(one_thread.url + "/db/doc").status_code == 404   # nothing written


def test_waiting_feeds_hold_no_thread_and_all_wake(one_thread):
    url = one_thread.url + "/db"
    requests.put(url).raise_for_status()
    results, errors = [], []

    def feed():
        try:
            r = requests.get(url + "/_changes?feed=longpoll&since=now&timeout=20000", timeout=30)
            results.append(r.json())
        except Exception as e:              # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=feed) for _ in range(50)]
    for t in threads:
        t.start()
    assert one_thread.await_waiting(50)      # all of them parked (one thread in the server)
    status, took = timed_get(url)
    assert status == 200 and took < 1.0
    assert requests.put(url + "/doc", json={"n": 1}).status_code == 201
    for t in threads:
        t.join(30)
    assert not errors
    assert len(results) == 50
    assert all([row["id"] for row in r["results"]] == ["doc"] for r in results)


def test_a_continuous_feed_beats_and_ends_while_parked(one_thread):
    url = one_thread.url + "/db"
    requests.put(url).raise_for_status()
    started = time.monotonic()
    r = requests.get(url + "/_changes?feed=continuous&since=now&heartbeat=200&timeout=1000",
                     timeout=10)
    took = time.monotonic() - started
    assert r.status_code == 200
    assert r.text.count("\n") >= 4          # heartbeats every 200 ms, then the last line
    assert r.text.strip().endswith('"pending":0}')
    assert 0.9 < took < 5


def test_a_feed_whose_client_hangs_up_is_closed(one_thread):
    url = one_thread.url + "/db"
    requests.put(url).raise_for_status()
    pid = one_thread.worker_pids(1)[0]
    before = open_fds(pid)
    feeds = []
    for _ in range(30):
        sock = connect(one_thread)
        sock.sendall(b"GET /db/_changes?feed=longpoll&since=now&timeout=60000 HTTP/1.1\r\n"
                     b"Host: x\r\n\r\n")
        feeds.append(sock)
    assert until(lambda: open_fds(pid) >= before + 30)
    for sock in feeds:
        sock.close()
    assert until(lambda: open_fds(pid) <= before + 2, timeout=5), open_fds(pid)


def test_connections_past_the_cap_are_answered_503(tmp_path):
    with LiveServer(tmp_path / "data", workers=1, threads=2,
                    SETTEE_SERVER_MAX_CONNECTIONS="16") as server:
        idle = [connect(server) for _ in range(16)]
        for sock in idle:
            sock.sendall(b"GET /_up HTTP/1.1\r\n")      # and never the rest

        def seventeenth() -> bytes:     # 200 until the server has taken all 16
            with connect(server) as sock:
                sock.sendall(b"GET /_up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return read_all(sock, timeout=5)
        try:
            # Up to 15 s on a busy machine: within the 20 s the idle 16 have to finish
            # their heads (server_header_timeout), after which they are closed.
            answer = until(lambda: (a := seventeenth()).startswith(b"HTTP/1.1 503 ") and a,
                           timeout=15)
            assert answer, "never refused"
            assert b'"error":"service_unavailable"' in answer
        finally:
            for s in idle:
                s.close()

        def served():                   # once they are gone, new connections are served
            try:
                return requests.get(server.url + "/_up", timeout=5).status_code == 200
            except requests.RequestException:
                return False
        assert until(served)


def test_a_stopping_server_ends_its_waiting_feeds_at_once(tmp_path):
    server = LiveServer(tmp_path / "data", workers=1, threads=1).start()
    try:
        url = server.url + "/db"
        requests.put(url).raise_for_status()
        answers = {}

        def feed(kind):
            r = requests.get(f"{url}/_changes?feed={kind}&since=now&timeout=60000", timeout=30)
            answers[kind] = (r.status_code, r.text, time.monotonic())
        threads = [threading.Thread(target=feed, args=(kind,))
                   for kind in ("longpoll", "continuous")]
        for t in threads:
            t.start()
        assert server.await_waiting(2)
        stopping = time.monotonic()
        server.stop()                                   # SIGTERM: a graceful stop
        for t in threads:
            t.join(30)
        for kind in ("longpoll", "continuous"):
            status, text, done = answers[kind]
            assert status == 200 and '"last_seq":"0-' in text, (kind, text)
            assert done - stopping < 5, kind
    finally:
        server.kill()


def test_the_metrics_count_waiting_and_slow_connections(one_thread):
    requests.put(one_thread.url + "/db").raise_for_status()
    with connect(one_thread) as slow, connect(one_thread) as feed:
        slow.sendall(b"GET /_up HTTP/1.1\r\n")
        feed.sendall(b"GET /db/_changes?feed=longpoll&since=now&timeout=20000 HTTP/1.1\r\n"
                     b"Host: x\r\n\r\n")
        assert until(lambda: one_thread.connections().get("waiting") == 1)
        gauges = one_thread.connections()
        assert gauges["reading_head"] >= 1 and gauges["open"] >= 2


def test_a_flood_of_refused_connections_holds_a_bounded_number_of_files(tmp_path):
    """Refused sockets linger a moment to read what their clients still send; no more of
    them than the cap at once, however fast they come."""
    with LiveServer(tmp_path / "data", workers=1, threads=2,
                    SETTEE_SERVER_MAX_CONNECTIONS="16") as server:
        pid = server.worker_pids(1)[0]
        before = open_fds(pid)
        idle = [connect(server) for _ in range(16)]
        flood, peak = [], 0
        try:
            for sock in idle:
                sock.sendall(b"GET /_up HTTP/1.1\r\n")
            for _ in range(150):
                try:
                    flood.append(connect(server))
                except OSError:
                    break
                peak = max(peak, open_fds(pid))
            assert peak <= before + 16 + 16 + 8, (before, peak)
        finally:
            for sock in idle + flood:
                sock.close()
