"""End to end: a real gunicorn with two workers on loopback, a real HTTP client."""
from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml
from liveserver import LiveServer
from waiting import until


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("e2e") / "data", workers=2) as live:
        yield live


@pytest.fixture
def db(server, request):
    name = "e2e-" + request.node.name.lower().replace("_", "-")[:60]
    url = f"{server.url}/{name}"
    assert requests.put(url).status_code == 201
    yield url
    requests.delete(url)


def test_crud_conflicts_and_etags(db):
    r = requests.put(f"{db}/doc", json={"a": 1})
    assert r.status_code == 201 and r.headers["Content-Type"] == "application/json"
    rev = r.json()["rev"]
    assert requests.put(f"{db}/doc", json={"a": 2}).status_code == 409
    got = requests.get(f"{db}/doc")
    assert got.json()["a"] == 1 and got.headers["ETag"] == f'"{rev}"'
    assert requests.get(f"{db}/doc", headers={"If-None-Match": got.headers["ETag"]}).status_code == 304
    assert requests.head(f"{db}/doc").headers["ETag"] == f'"{rev}"'
    rev2 = requests.put(f"{db}/doc", json={"a": 2, "_rev": rev}).json()["rev"]
    assert requests.delete(f"{db}/doc", params={"rev": rev2}).status_code == 200
    assert requests.get(f"{db}/doc").json()["reason"] == "deleted"


def test_yaml_both_ways(db):
    r = requests.put(f"{db}/y", data="a: 1\nb: [x, y]\n",
                     headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201
    got = requests.get(f"{db}/y", headers={"Accept": "application/yaml"})
    assert got.headers["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(got.text)["b"] == ["x", "y"]


def test_bulk_docs_and_all_docs(db):
    docs = [{"_id": f"d{i:03d}", "n": i} for i in range(300)]
    r = requests.post(f"{db}/_bulk_docs", json={"docs": docs})
    assert r.status_code == 201 and all(x.get("ok") for x in r.json())
    rows = requests.get(f"{db}/_all_docs", params={"limit": 100, "skip": 100}).json()["rows"]
    assert [row["id"] for row in rows] == [f"d{i:03d}" for i in range(100, 200)]
    assert requests.get(db).json()["doc_count"] == 300


def test_racing_writers_through_both_workers_get_one_winner_per_round(db):
    rev = requests.put(f"{db}/hot", json={"n": 0}).json()["rev"]
    for round_ in range(10):
        def attempt(i, base=rev, n=round_ + 1):
            return requests.put(f"{db}/hot", json={"n": n, "by": i, "_rev": base})
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(attempt, range(8)))
        winners = [r for r in results if r.status_code == 201]
        assert len(winners) == 1, [r.status_code for r in results]
        assert sorted(r.status_code for r in results) == [201] + [409] * 7
        rev = winners[0].json()["rev"]
    assert requests.get(f"{db}/hot").json()["n"] == 10
    assert rev.startswith("11-")


def test_longpolls_held_by_both_workers_wake_on_one_write(db, server):
    since = requests.get(f"{db}/_changes?since=now").json()["last_seq"]
    results = []

    def poll():
        r = requests.get(f"{db}/_changes", params={"feed": "longpoll", "since": since,
                                                   "timeout": 20000})
        results.append((time.monotonic(), r.json()))

    threads = [threading.Thread(target=poll) for _ in range(6)]   # spread over both workers
    for t in threads:
        t.start()
    assert server.await_waiting(6)
    written = time.monotonic()
    requests.put(f"{db}/wake", json={})
    for t in threads:
        t.join(25)
    assert len(results) == 6
    for woke, body in results:
        assert [c["id"] for c in body["results"]] == ["wake"]
        assert woke - written < 5


def test_longpoll_on_one_server_wakes_on_a_write_through_another(tmp_path):
    data = tmp_path / "shared"
    with LiveServer(data, workers=1) as a, LiveServer(data, workers=1) as b:
        assert requests.put(f"{a.url}/shared").status_code == 201
        box = {}

        def poll():
            box["r"] = requests.get(f"{a.url}/shared/_changes",
                                    params={"feed": "longpoll", "since": "now", "timeout": 20000})

        t = threading.Thread(target=poll)
        t.start()
        assert a.await_waiting(1)
        assert requests.put(f"{b.url}/shared/from-b", json={"x": 1}).status_code == 201
        t.join(25)
        assert [c["id"] for c in box["r"].json()["results"]] == ["from-b"]
        assert requests.get(f"{a.url}/shared/from-b").json()["x"] == 1


def test_continuous_feed_with_heartbeat_ends_at_timeout(db):
    requests.put(f"{db}/one", json={})
    start = time.monotonic()
    r = requests.get(f"{db}/_changes", params={"feed": "continuous", "timeout": 1500,
                                               "heartbeat": 200}, stream=True)
    body = r.raw.read()
    assert time.monotonic() - start < 10
    assert b'"id":"one"' in body and b'"last_seq"' in body
    assert b"\n\n" in body      # heartbeats are bare newlines


def test_logs_are_json_lines_and_metrics_add_up_across_workers(tmp_path):
    import json
    with LiveServer(tmp_path / "data", workers=2, SETTEE_SERVER_ACCESS_LOG="-") as live:
        for _ in range(20):
            requests.get(live.url + "/")
        counts = []
        for _ in range(4):   # whichever worker answers, the count covers both
            text = requests.get(live.url + "/_metrics").text
            line = [x for x in text.splitlines()
                    if x.startswith('settee_http_requests_total{method="GET",status="200"}')]
            counts.append(float(line[0].split()[-1]))
        assert min(counts) >= 21
    lines = [line for line in live.log.read_text().splitlines() if line.startswith("{")]
    entries = [json.loads(line) for line in lines]
    access = [e for e in entries if e.get("path") == "/"]
    assert len(access) >= 20 and access[0]["status"] == 200 and "ms" in access[0]
    assert any(e.get("logger") == "gunicorn.error" for e in entries)


def test_a_second_server_cannot_take_a_port_in_use(tmp_path):
    """A second server on a port in use refuses to start, saying why, and does not
    disturb the first."""
    import subprocess
    import sys

    from liveserver import CONF
    with LiveServer(tmp_path / "first", workers=2) as first:
        env = {**first.env, "SETTEE_DATA_DIR": str(tmp_path / "second")}
        second = subprocess.run([sys.executable, "-m", "gunicorn", "-c", str(CONF)],
                                env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "cannot listen on" in second.stdout + second.stderr
        for _ in range(20):                      # and the first still answers every time
            assert requests.get(first.url + "/_up", timeout=5).status_code == 200


def _exchange(sock_file, count: int = 1) -> list[tuple[int, bytes]]:
    """Read ``count`` HTTP/1.1 responses (Content-Length bodies) from one connection."""
    answers = []
    for _ in range(count):
        status = int(sock_file.readline().split()[1])
        length = 0
        while (line := sock_file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        answers.append((status, sock_file.read(length)))
    return answers


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


def test_keepalive_requests_on_the_thread_quiet_pauses_and_pipelining(tmp_path):
    """The worker serves a kept-alive connection's next request on the same thread
    when it comes at once, through the poller after a pause, and pipelined requests
    in order."""
    import socket
    with LiveServer(tmp_path / "data", workers=1, threads=2) as live:
        with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock, \
                sock.makefile("rb") as f:
            for _ in range(20):                          # back to back
                sock.sendall(_get("/_up"))
                assert _exchange(f)[0][0] == 200
            # A quiet pause, the scenario itself, not a wait for anything: longer than
            # a thread lingers for its connection's next request (2 ms), so this one
            # comes through the poller. Nothing outside the worker shows where it went.
            time.sleep(0.2)
            sock.sendall(_get("/_uuids?count=1"))
            assert b"uuids" in _exchange(f)[0][1]
            sock.sendall(_get("/_up") + _get("/_all_dbs") + _get("/nope"))
            assert [s for s, _ in _exchange(f, 3)] == [200, 200, 404]


def test_a_waiting_thread_does_not_starve_another_connection(tmp_path):
    """One thread, two connections taking turns: the thread that waits for one
    connection's next request gives up and serves the other's."""
    import socket
    with LiveServer(tmp_path / "data", workers=1, threads=1) as live:
        socks = [socket.create_connection(("127.0.0.1", live.port), timeout=10)
                 for _ in range(2)]
        files = [s.makefile("rb") for s in socks]
        try:
            start = time.monotonic()
            for _ in range(50):
                for sock, f in zip(socks, files):
                    sock.sendall(_get("/_up"))
                    assert _exchange(f)[0][0] == 200
            assert time.monotonic() - start < 20
        finally:
            for sock, f in zip(socks, files):
                f.close()
                sock.close()


def test_choose_cpu_gives_each_worker_a_free_cpu_or_none():
    from settee.config.affinity import choose_cpu
    assert choose_cpu({0, 1}, [], 2) == 0
    assert choose_cpu({0, 1}, [0], 2) == 1
    assert choose_cpu({0, 1}, [1, None], 2) == 0          # a restarted worker's CPU
    assert choose_cpu({2, 3}, [2], 2) == 3                 # only the CPUs allowed
    assert choose_cpu({0, 1}, [0, 1], 2) is None
    assert choose_cpu({0, 1}, [], 3) is None               # more workers than CPUs
    assert choose_cpu({0, 1, 2, 3}, [], 1) is None         # one worker competes with none


def _settled_affinity(pid: int, timeout: float = 10) -> set[int]:
    """The CPUs of a worker once it has pinned itself (a worker just forked still has
    its master's), or all of them if it has not done so within ``timeout``."""
    until(lambda: len(os.sched_getaffinity(pid)) == 1, timeout)
    return os.sched_getaffinity(pid)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs to give each of two workers one")
def test_each_worker_runs_on_a_cpu_of_its_own_and_a_restarted_one_takes_the_freed_one(tmp_path):
    allowed = os.sched_getaffinity(0)
    with LiveServer(tmp_path / "pinned", workers=2) as live:
        pids = live.worker_pids(2)
        cpus = {pid: _settled_affinity(pid) for pid in pids}
        assert all(len(c) == 1 and c <= allowed for c in cpus.values()), cpus
        assert len(set.union(*cpus.values())) == 2, cpus
        os.kill(pids[0], signal.SIGKILL)
        new = []

        def replaced() -> bool:
            new[:] = [p for p in live.worker_pids(2, timeout=1) if p not in pids]
            return len(new) == 1
        assert until(replaced, timeout=30), f"the killed worker was not replaced: {new}"
        assert _settled_affinity(new[0]) == cpus[pids[0]], (cpus, new)
        assert requests.get(live.url + "/_up", timeout=5).status_code == 200
    with LiveServer(tmp_path / "free", workers=2, SETTEE_SERVER_CPU_AFFINITY="off") as live:
        assert [os.sched_getaffinity(p) for p in live.worker_pids(2)] \
            == [allowed, allowed]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity here")
def test_a_cpu_the_system_refuses_leaves_the_worker_where_it_was():
    from settee.config.affinity import pin
    before = os.sched_getaffinity(0)
    assert pin(None) is False
    assert pin(10**6) is False                    # no such CPU: refused, not raised
    assert os.sched_getaffinity(0) == before
