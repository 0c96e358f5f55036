"""New connections go to the worker holding the fewest (server/balance.py)."""
from __future__ import annotations

import http.client
import os
import signal
import time

import pytest
from liveserver import LiveServer
from waiting import until

from settee.server.balance import ConnectionTable

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"),
                                reason="reads who holds which connection from /proc")


def test_the_table_is_shared_with_forked_workers_and_finds_the_fewest():
    table = ConnectionTable(slots=4)
    first = table.claim([])
    second = table.claim([first])
    assert (first, second) == (0, 1)
    assert table.claim([0, 1, 2, 3]) is None
    assert table.claim([0, None, 2, 3]) == 1               # a dead worker's slot
    assert table.fewest(first, 5)                          # no other worker yet
    pid = os.fork()
    if pid == 0:                                           # a worker, after fork
        table.publish(second, 3)
        os._exit(0)
    os.waitpid(pid, 0)
    assert table.counts() == {second: 3}
    table.publish(first, 4)
    assert not table.fewest(first, 4) and table.fewest(second, 3)
    table.publish(second, 4)
    assert table.fewest(first, 4) and table.fewest(second, 4)     # ties: both
    table.release(second)                                  # that worker stops
    assert table.fewest(first, 4) and table.counts() == {first: 4}
    assert table.fewest(None, 100)                         # a worker without a slot


def _open(port: int) -> http.client.HTTPConnection:
    """A kept-alive connection that has been answered once (so a worker holds it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/_up")
    answer = conn.getresponse()
    answer.read()
    assert answer.status == 200
    return conn


def _settled(live, pids, total, timeout=10):
    """Which worker holds which connection, once the workers hold ``total`` in all."""
    held = {}

    def counted() -> bool:
        held.update(live.held_connections(pids))
        return sum(map(len, held.values())) == total
    until(counted, timeout)
    return held


def test_kept_alive_connections_are_split_evenly_and_refill_the_emptier_worker(tmp_path):
    with LiveServer(tmp_path / "data", workers=2) as live:
        pids = live.worker_pids(2)
        conns = [_open(live.port) for _ in range(16)]
        held = _settled(live, pids, 16)
        assert sorted(map(len, held.values())) == [8, 8]
        # every client of one worker leaves: the next eight all go to that worker
        emptied, other = pids
        for conn in conns:
            if conn.sock.getsockname()[1] in held[emptied]:
                conn.close()
        # it closes its side of each once it has counted it out: its count is down too
        assert not _settled(live, pids, 8)[emptied]
        conns += [_open(live.port) for _ in range(8)]
        held = _settled(live, pids, 16)
        assert {pid: len(ports) for pid, ports in held.items()} == {emptied: 8, other: 8}
        for conn in conns:
            conn.close()


def test_a_stuck_worker_holding_fewer_does_not_hold_up_new_clients(tmp_path):
    with LiveServer(tmp_path / "data", workers=2) as live:
        pids = live.worker_pids(2)
        conns = [_open(live.port) for _ in range(4)]
        held = _settled(live, pids, 4)
        stuck = next(pid for pid in pids if held[pid])
        for conn in conns:                                 # it now holds fewer
            if conn.sock.getsockname()[1] in held[stuck]:
                conn.close()
        assert not _settled(live, pids, 4 - len(held[stuck]))[stuck]   # and counts fewer
        os.kill(stuck, signal.SIGSTOP)
        try:
            start = time.monotonic()
            conns.append(_open(live.port))                 # the other one takes it
            assert time.monotonic() - start < 2
        finally:
            os.kill(stuck, signal.SIGCONT)
        for conn in conns:
            conn.close()
