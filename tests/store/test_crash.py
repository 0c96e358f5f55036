"""Killed mid-write, every backend keeps what it acknowledged, whole, and transactions atomic.

A child process (this file run as a script) writes to a store: single writes that
overwrite 16 keys, and transactions that overwrite 4 "group" keys together, add a
batch of 3 keys and delete one key of the previous batch. It prints each write
once it returned. The parent SIGKILLs it after a random delay, reopens the store
and checks that

* every reported write is there (or a later one), and every value anywhere is
  exactly one that was written (values are their key and version repeated to a few
  KB, so a torn one shows);
* the group keys all carry the same transaction (all-or-nothing), and the batches
  and deletes agree with it: a transaction is wholly there or wholly absent;
* the store still takes writes.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import zlib

import pytest

FILLER = 300          # keys written before the kills start: a bigger index to rewrite
REPEATS = 4
SINGLE_KEYS = 16
GROUP = [f"g{n}" for n in range(4)]


def value(key: str, version: int) -> bytes:
    """A value that shows its key and version, and whether it is whole."""
    unit = f"{key}@{version};".encode()
    size = 1000 + zlib.crc32(unit) % 7000
    return (unit * (size // len(unit) + 1))[:size]


def version_of(key: str, stored: bytes) -> int:
    """The version a stored value was written with; fails if it is not exactly that."""
    head = stored.split(b";", 1)[0].decode()
    name, _, version = head.rpartition("@")
    assert name == key, f"{key!r} holds a value of {name!r}"
    assert stored == value(key, int(version)), f"{key!r}: torn or altered value"
    return int(version)


def is_transaction(i: int) -> bool:
    return i % 3 == 2


# -- the child ------------------------------------------------------------------------
def child(backend: str, data_dir: str) -> None:
    from test_multiprocess import open_backend
    store = open_backend(backend, data_dir)
    with store.transaction():
        for n in range(FILLER):
            store[f"f{n}"] = value(f"f{n}", 0)
    print("READY", flush=True)
    previous = None
    i = 0
    while True:
        if is_transaction(i):
            with store.transaction():
                for key in GROUP:
                    store[key] = value(key, i)
                for b in range(3):
                    store[f"t{i}-{b}"] = value(f"t{i}-{b}", i)
                if previous is not None:
                    del store[f"t{previous}-0"]
            previous = i
        else:
            key = f"s{i % SINGLE_KEYS}"
            store[key] = value(key, i)
        print(i, flush=True)
        i += 1


# -- the parent -----------------------------------------------------------------------
def run_and_kill(backend: str, data_dir: str, delay: float) -> list[int]:
    """Start the child, SIGKILL it ``delay`` s after its first write; the writes it reported."""
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), backend, data_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=here)
    lines: list[bytes] = []
    writing = threading.Event()

    def drain():          # keep the pipe empty, so the child never waits on it
        for line in proc.stdout:
            lines.append(line)
            if len(lines) >= 2:        # READY, then the first write
                writing.set()
        writing.set()

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        assert writing.wait(60), "the child did not start writing"
        time.sleep(delay)              # the writes run a random while: the kill's moment
    finally:
        proc.kill()                    # SIGKILL: no cleanup, no flush, no atexit
        proc.wait()
        reader.join()
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
    assert len(lines) >= 2 and lines[0] == b"READY\n", err.decode(errors="replace")
    assert proc.returncode == -9, f"the child ended by itself:\n{err.decode(errors='replace')}"
    # A line without its newline was cut by the kill: that write is not acknowledged.
    return [int(line) for line in lines[1:] if line.endswith(b"\n")]


def check(store, reported: list[int]) -> None:
    contents = dict(store.items())
    versions = {key: version_of(key, stored) for key, stored in contents.items()}

    for n in range(FILLER):
        assert versions.pop(f"f{n}", None) == 0, f"f{n}, committed before the kills, is lost"

    # Group keys: written together, so all present with one version, or none.
    group = [versions.pop(key, None) for key in GROUP]
    assert len(set(group)) == 1, f"a transaction was applied in part: {group}"
    last = group[0]                         # the last committed transaction, if any
    done = [i for i in reported if is_transaction(i)]
    if done:
        assert last is not None and last >= done[-1], "an acknowledged transaction was lost"
    if last is not None:        # at most the one write in flight was not reported
        assert is_transaction(last) and last <= (reported[-1] + 1 if reported else 0)

    # Batches: every transaction up to the last has its batch, minus the key the next
    # one deleted; no later transaction left anything.
    for i in range(2, (last or -1) + 1, 3):
        for b in range(3):
            key = f"t{i}-{b}"
            if b == 0 and i != last:
                assert key not in versions, f"{key} should have been deleted with t{i + 3}"
            else:
                assert versions.pop(key, None) == i, f"{key}: transaction {i} is incomplete"

    # Single writes: the last reported one of each key is there, or a later one.
    for n in range(SINGLE_KEYS):
        acked = [i for i in reported if not is_transaction(i) and i % SINGLE_KEYS == n]
        key = f"s{n}"
        if acked:
            assert versions.get(key, -1) >= acked[-1], f"{key}: acknowledged write {acked[-1]} lost"
        if key in versions:
            v = versions.pop(key)
            assert v % SINGLE_KEYS == n and not is_transaction(v)
            assert v <= (reported[-1] + 1 if reported else 0), f"{key}: never written {v}"

    assert not versions, f"unexpected keys: {sorted(versions)[:10]}"


BACKENDS = ["sqlite", "file", "dbm", "lmdb"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_writer_loses_nothing_acknowledged_and_tears_nothing(backend, tmp_path):
    if backend == "lmdb":
        pytest.importorskip("lmdb")
    from test_multiprocess import open_backend
    rng = random.Random(f"{backend}-{os.getpid()}-{time.time()}")
    for run in range(REPEATS):
        data_dir = str(tmp_path / f"run{run}")
        reported = run_and_kill(backend, data_dir, rng.uniform(0.02, 0.5))
        store = open_backend(backend, data_dir)
        try:
            check(store, reported)
            store["after-the-crash"] = b"still writable"
            assert store["after-the-crash"] == b"still writable"
        finally:
            store.close()


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2])
