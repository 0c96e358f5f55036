"""Combining writes: the combiner, a batch's pending writes, and document writes in batches."""
from __future__ import annotations

import threading

import pytest
from threads import run_threads
from waiting import until

from settee.store.backends.memory import MemoryBackend
from settee.store.backends.sqlite import SQLiteBackend
from settee.store.document import Doc, Meta
from settee.store.exceptions import BackendError, Conflict, NotFound
from settee.store.layers.combining import Combiner
from settee.store.layers.pending import Pending
from settee.store.layers.serialization import JSONSerializer
from settee.store.layers.versioning import Versioning, new_revision


# -- the combiner ---------------------------------------------------------------------
def test_concurrent_items_are_run_in_batches_each_getting_its_own_outcome():
    batches = []
    entered = threading.Event()

    def run(take):
        entered.set()
        items = take()
        batches.append(items)
        return [ValueError(i) if i % 5 == 0 else i * 10 for i in items]

    combiner = Combiner(run)
    outcomes = {}

    def submit(i):
        outcomes[i] = combiner.submit(i)

    run_threads(40, submit)
    assert sorted(i for batch in batches for i in batch) == list(range(40))
    for i, outcome in outcomes.items():
        if i % 5 == 0:
            assert isinstance(outcome, ValueError) and outcome.args == (i,)
        else:
            assert outcome == i * 10


def test_a_batch_that_fails_as_a_whole_is_run_again_one_item_at_a_time():
    release = threading.Event()
    calls = []

    def run(take):
        if not calls:                  # the first batch waits until the others queue
            calls.append("first")
            items = take()
            release.wait(10)
            return items
        items = take()
        calls.append(list(items))
        if len(items) > 1:
            raise OSError("the whole batch failed")
        if items == ["bad"]:
            raise RuntimeError("this item alone fails")
        return [item.upper() for item in items]

    combiner = Combiner(run)
    outcomes = {}
    first = threading.Thread(target=lambda: outcomes.update(lead=combiner.submit("lead")))
    first.start()
    while not calls:
        pass
    others = [threading.Thread(target=lambda x=x: outcomes.update({x: combiner.submit(x)}))
              for x in ("a", "bad", "c")]
    for t in others:
        t.start()
    while len(combiner._queue) < 3:
        pass
    release.set()
    for t in [first, *others]:
        t.join(10)
    assert outcomes["lead"] == "lead"
    assert outcomes["a"] == "A" and outcomes["c"] == "C"
    assert isinstance(outcomes["bad"], RuntimeError)
    assert sorted(map(tuple, calls[1:]), key=len)[-1] == ("a", "bad", "c")  # tried together


def test_a_storage_error_is_every_members_and_is_not_retried():
    calls = []

    def run(take):
        items = take()
        calls.append(items)
        raise BackendError("the commit failed")

    combiner = Combiner(run, shared=(BackendError,))
    combiner._leading = True               # hold the batch back until three are queued
    outcomes = {}
    threads = [threading.Thread(target=lambda x=x: outcomes.update({x: combiner.submit(x)}))
               for x in "abc"]
    for t in threads:
        t.start()
    while len(combiner._queue) < 3:
        pass
    combiner._leading = False
    combiner._queue[0].wake.release()      # the first queued thread leads
    for t in threads:
        t.join(10)
    assert calls == [["a", "b", "c"]]               # one batch, not run again
    assert all(isinstance(o, BackendError) for o in outcomes.values()) and len(outcomes) == 3


def test_a_forked_child_starts_with_an_idle_combiner():
    combiner = Combiner(lambda take: take())
    combiner._leading = True           # as if a thread of the parent led at the fork
    combiner._pid = -1
    assert combiner.submit("x") == "x"


# -- pending writes -----------------------------------------------------------------------
def test_pending_reads_see_writes_undo_forgets_an_item_and_flush_writes_once():
    below = MemoryBackend()
    below["a"], below["b"] = b"1", b"2"
    writes = []
    real_put, real_delete = below.put_many, below.delete_many
    below.put_many = lambda items: (writes.append(("put", list(items))), real_put(items))
    below.delete_many = lambda keys: (writes.append(("delete", list(keys))),
                                      real_delete(keys))
    pending = Pending(below)
    pending.prefetch(["a", "b", "c"])
    assert pending.get("a") == b"1" and pending.get("c") is None
    pending.begin()
    pending.put_many([("c", b"3"), ("a", b"10")])
    assert pending.pop("b") == b"2" and pending.get("b") is None
    assert pending.get("a") == b"10" and pending.get("c") == b"3"
    pending.begin()                    # a second item, which fails
    pending.put_many([("a", b"99"), ("d", b"4")])
    pending.delete_many(["c"])
    pending.undo()
    assert pending.get("a") == b"10" and pending.get("c") == b"3" and pending.get("d") is None
    with pytest.raises(KeyError):
        pending.pop("nothing")
    assert below["a"] == b"1"          # nothing below before the flush
    pending.flush()
    assert writes == [("delete", ["b"]), ("put", [("c", b"3"), ("a", b"10")])]
    assert dict(below.items()) == {"a": b"10", "c": b"3"}


# -- document writes in batches -------------------------------------------------------
@pytest.fixture
def versions(tmp_path):
    store = Versioning(JSONSerializer(SQLiteBackend(str(tmp_path / "v.sqlite"))))
    yield store
    store.close()


def item(key, body, rev=None, deleted=False):
    doc = Doc(dict(body), Meta(rev=rev, deleted=deleted))
    return key, doc, dict(body)


def test_a_batch_follows_its_items_in_order_and_isolates_their_errors(versions):
    rev_a1 = new_revision(None, {"n": 1}, False)
    rev_a2 = new_revision(rev_a1, {"n": 2}, False)
    items = [item("a", {"n": 1}),
             item("a", {"n": 2}, rev=rev_a1),            # sees the first item's revision
             item("a", {"n": 3}, rev=rev_a1),            # a conflict: a1 is gone by now
             item("b", {"n": 1}, rev="1-abc"),           # a conflict: b does not exist
             item("c", {}, rev="*", deleted=True),       # not found (del db["c"])
             item("d", {"n": 1})]
    outcomes = versions._write_batch(lambda: items)
    assert outcomes[0] == (rev_a1, 1) and outcomes[1] == (rev_a2, 2)
    assert isinstance(outcomes[2], Conflict) and isinstance(outcomes[3], Conflict)
    assert isinstance(outcomes[4], NotFound)
    assert outcomes[5][1] == 3
    assert versions["a"]["n"] == 2 and versions["a"]["_rev"] == rev_a2
    assert versions[("a", rev_a1)]["n"] == 1                # the old body is kept
    assert "b" not in versions and "c" not in versions
    assert [(c.seq, c.id) for c in versions.changes()] == [(2, "a"), (3, "d")]
    assert versions.info()["seq"] == 3 and len(versions) == 2


def test_threads_writing_at_once_get_exactly_one_winner_per_document(versions):
    barrier = threading.Barrier(12)
    results = {}

    def writer(i):
        barrier.wait()
        doc = Doc({"writer": i}, Meta())
        try:
            versions[f"doc{i % 3}"] = doc
            results[i] = doc.meta.rev
        except Conflict:
            results[i] = "conflict"

    run_threads(12, writer)
    winners = [i for i, r in results.items() if r != "conflict"]
    assert sorted(i % 3 for i in winners) == [0, 1, 2]
    for i in winners:
        assert versions[f"doc{i % 3}"]["writer"] == i
        assert versions[f"doc{i % 3}"]["_rev"] == results[i]
    info = versions.info()
    assert info["seq"] == 3 and info["docs"] == 3


def test_an_item_that_cannot_be_stored_fails_alone(versions):
    """A value the store below refuses fails the batch's single write; the batch is
    run again item by item, so only that item's writer gets the error."""
    barrier = threading.Barrier(8)
    results = {}

    def writer(i):
        body = {"n": i, "bad": 2 ** 70} if i == 3 else {"n": i}   # too big for JSON ints
        barrier.wait()
        try:
            versions[f"k{i}"] = Doc(body, Meta())
            results[i] = "ok"
        except Exception as e:                                    # noqa: BLE001
            results[i] = type(e).__name__

    run_threads(8, writer)
    assert results[3] != "ok"
    assert all(results[i] == "ok" for i in range(8) if i != 3)
    assert sorted(versions) == [f"k{i}" for i in range(8) if i != 3]


def test_writers_whose_batch_fsync_fails_are_told_so_not_given_a_conflict(versions, tmp_path,
                                                                          monkeypatch):
    """A batch committed but not made durable: each member hears of the storage error
    (507), none is run again to find its own write there and answer 409."""
    import errno
    import os
    real_fsync, calls, queued = os.fsync, [], []
    first_batch = threading.Event()

    def fsync(fd):
        # os.fsync is patched for the whole process: count only this database's files,
        # not those a thread left running by an earlier test syncs meanwhile.
        try:
            ours = os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path))
        except OSError:
            ours = True
        if not ours:
            return real_fsync(fd)
        calls.append(fd)
        if len(calls) == 1:                # the first batch: let the others queue behind
            first_batch.set()
            queued.append(until(lambda: len(versions._combiner._queue) >= 3, step=0.001))
            return real_fsync(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr("settee.store.backends.sqlite.os.fsync", fsync)
    results = {}

    def writer(i):
        if i:
            assert first_batch.wait(10)    # after the first writer's batch began
        try:
            versions[f"k{i}"] = Doc({"n": i}, Meta())
            results[i] = "ok"
        except Exception as e:                                    # noqa: BLE001
            results[i] = type(e).__name__

    run_threads(4, writer)
    assert queued == [True], "the other writers did not queue behind the first batch"
    assert results[0] == "ok"
    assert [results[i] for i in (1, 2, 3)] == ["StorageFull"] * 3, results
    assert sorted(versions) == ["k0", "k1", "k2", "k3"]   # committed, though not synced
