"""Several processes on one store: no lost update, no torn value, conflicts exactly where due.

Workers are started with ``spawn`` (a fresh interpreter each, as separate server
processes would be) and open the store themselves, through the backend registry
and the catalog, at the paths the server would use.
"""
from __future__ import annotations

import multiprocessing
import os
from contextlib import contextmanager

import pytest

from settee.config import load_settings
from settee.store.catalog import Catalog
from settee.store.exceptions import Conflict
from settee.store.stack import BACKENDS, storage_dir

PERSISTENT = ["sqlite", "file", "dbm", "lmdb"]
WORKERS = 4
TIMEOUT = 120


@pytest.fixture(params=PERSISTENT)
def backend(request):
    if request.param == "lmdb":
        pytest.importorskip("lmdb")
    return request.param


def settings_for(name: str, data_dir: str):
    return load_settings(storage_data_dir=data_dir, storage_backend=name,
                         lmdb_map_size=1 << 28)


def open_backend(name: str, data_dir: str):
    """The bare backend of database ``db``, opened as the catalog opens it."""
    settings = settings_for(name, data_dir)
    os.makedirs(storage_dir(settings, "db"), exist_ok=True)
    return BACKENDS[name](settings, "db")


def own_value(worker: int, i: int) -> bytes:
    return (f"{worker}:{i};" * 400).encode()


@contextmanager
def running(ctx, target, args_list):
    """One process per args running ``target(*args)``; on leaving the block they are
    joined and must all have succeeded, and none is left behind."""
    procs = [ctx.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    try:
        yield procs
        for p in procs:
            p.join(TIMEOUT)
        assert [p.exitcode for p in procs] == [0] * len(procs), "a worker failed (see stderr)"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
            p.close()


def run_all(target, args_list):
    """Run ``target(*args)`` in one spawned process per args; fail if any fails."""
    with running(multiprocessing.get_context("spawn"), target, args_list):
        pass


# -- workers (module level, so spawned processes can import them) -----------------------
def increment(name: str, data_dir: str, worker: int, times: int) -> None:
    store = open_backend(name, data_dir)
    try:
        for i in range(times):
            with store.transaction():
                store["counter"] = b"%d" % (int(store["counter"]) + 1)
            store[f"own/{worker}/{i:04d}"] = own_value(worker, i)
    finally:
        store.close()


def write_one(name: str, data_dir: str, key: str, value: bytes) -> None:
    store = open_backend(name, data_dir)
    try:
        store[key] = value
    finally:
        store.close()


def race(name: str, data_dir: str, worker: int, rounds: int, barrier, results) -> None:
    catalog = Catalog(settings_for(name, data_dir))
    try:
        db = catalog.get("db")
        outcomes = []
        for r in range(rounds):
            barrier.wait(TIMEOUT)          # the previous round's writes are all done
            rev = db["x"]["_rev"]
            barrier.wait(TIMEOUT)          # everyone holds the same revision
            try:
                db["x"] = {"_rev": rev, "round": r + 1, "winner": worker}
                outcomes.append((r, rev, "won"))
            except Conflict:
                outcomes.append((r, rev, "conflict"))
        results.put((worker, outcomes))
    finally:
        catalog.close()


# -- tests --------------------------------------------------------------------------------
def test_processes_incrementing_in_transactions_lose_no_update(backend, tmp_path):
    times = 30
    store = open_backend(backend, str(tmp_path))
    try:
        store["counter"] = b"0"
        assert store["counter"] == b"0"      # this process has read (and cached) the store
        run_all(increment, [(backend, str(tmp_path), w, times) for w in range(WORKERS)])
        # The same open store sees the other processes' commits.
        assert store["counter"] == b"%d" % (WORKERS * times)
        own = {k: v for k, v in store.items() if k.startswith("own/")}
        assert len(own) == WORKERS * times
        for w in range(WORKERS):
            for i in range(times):
                assert own[f"own/{w}/{i:04d}"] == own_value(w, i)
        assert len(store) == WORKERS * times + 1
    finally:
        store.close()


def test_an_open_store_sees_another_process_write(backend, tmp_path):
    store = open_backend(backend, str(tmp_path))
    try:
        store["k"] = b"mine"
        assert store["k"] == b"mine" and list(store) == ["k"]
        run_all(write_one, [(backend, str(tmp_path), "k", b"theirs")])
        run_all(write_one, [(backend, str(tmp_path), "k2", b"new")])
        assert store["k"] == b"theirs"
        assert sorted(store) == ["k", "k2"] and store.get_many(["k2"]) == {"k2": b"new"}
    finally:
        store.close()


def test_processes_racing_on_one_revision_make_exactly_one_winner(backend, tmp_path):
    rounds = 8
    catalog = Catalog(settings_for(backend, str(tmp_path)))
    try:
        db = catalog.create("db")
        db["x"] = {"round": 0}
        first_rev = db["x"]["_rev"]
    finally:
        catalog.close()

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    try:
        args = [(backend, str(tmp_path), w, rounds, barrier, results) for w in range(WORKERS)]
        with running(ctx, race, args) as procs:
            outcomes = dict(results.get(timeout=TIMEOUT) for _ in procs)
    finally:
        results.close()
        results.join_thread()

    winners = []
    for r in range(rounds):
        this_round = [outcomes[w][r] for w in range(WORKERS)]
        assert len({rev for _, rev, _ in this_round}) == 1, "the barrier lets all read one rev"
        won = [w for w in range(WORKERS) if outcomes[w][r][2] == "won"]
        assert len(won) == 1, f"round {r}: winners {won}"
        winners.append(won[0])
    assert outcomes[0][0][1] == first_rev

    catalog = Catalog(settings_for(backend, str(tmp_path)))
    try:
        doc = catalog.get("db")["x"]
        assert doc["round"] == rounds and doc["winner"] == winners[-1]
        assert doc["_rev"].startswith(f"{rounds + 1}-")
    finally:
        catalog.close()

