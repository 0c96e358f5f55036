"""Group commit on SQLite: shared fsyncs, isolated failures, errors reach every member."""
from __future__ import annotations

import os
import threading

import pytest
from threads import run_threads
from waiting import until

from settee.store.backends.sqlite import SQLiteBackend
from settee.store.exceptions import StorageFull


def test_concurrent_writers_share_commits_and_lose_nothing(tmp_path, monkeypatch):
    store = SQLiteBackend(str(tmp_path / "s.sqlite"))
    commits = []
    real = store._commit_batch
    monkeypatch.setattr(store, "_commit_batch", lambda: (commits.append(1), real())[1])

    def writer(i):
        for n in range(50):
            with store.transaction():
                store[f"k{i}-{n}"] = b"%d" % n

    run_threads(16, writer)
    assert len(store) == 800
    assert len(commits) < 800            # batches formed: fewer fsyncs than writes
    store.close()
    again = SQLiteBackend(str(tmp_path / "s.sqlite"))
    assert len(again) == 800
    again.close()


def test_a_failing_member_rolls_back_only_its_own_work(tmp_path):
    store = SQLiteBackend(str(tmp_path / "s.sqlite"))
    barrier = threading.Barrier(8)
    errors = []

    def writer(i):
        barrier.wait()
        try:
            with store.transaction():
                store[f"a{i}"] = b"1"
                store[f"b{i}"] = b"2"
                if i % 2:
                    raise RuntimeError("odd writers fail")
        except RuntimeError:
            errors.append(i)

    run_threads(8, writer)
    assert sorted(errors) == [1, 3, 5, 7]
    assert sorted(store) == sorted([f"a{i}" for i in (0, 2, 4, 6)] + [f"b{i}" for i in (0, 2, 4, 6)])
    store.close()


def test_a_failed_commit_fails_every_member_of_the_batch(tmp_path, monkeypatch):
    store = SQLiteBackend(str(tmp_path / "s.sqlite"))
    real = store._commit_batch
    state = {"fail": True}

    def commit():
        if state["fail"]:
            state["fail"] = False
            store._writer().execute("ROLLBACK")
            raise StorageFull("disk full (simulated)")
        real()

    monkeypatch.setattr(store, "_commit_batch", commit)
    gate = threading.Event()
    results = {}

    def writer(i):
        gate.wait()
        try:
            with store.transaction():
                store[f"k{i}"] = b"x"
            results[i] = "ok"
        except StorageFull:
            results[i] = "full"

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(30)
    failed = [i for i, r in results.items() if r == "full"]
    assert failed, results
    assert all(f"k{i}" not in store for i in failed)          # nothing half-written
    assert all(f"k{i}" in store for i, r in results.items() if r == "ok")
    store["after"] = b"works"                                # the store goes on
    assert store["after"] == b"works"
    store.close()


def test_reads_outside_a_transaction_never_see_an_open_batch(tmp_path):
    store = SQLiteBackend(str(tmp_path / "s.sqlite"))
    inside, release = threading.Event(), threading.Event()

    def writer():
        with store.transaction():
            store["pending"] = b"1"
            inside.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    assert inside.wait(10)
    with pytest.raises(KeyError):
        store["pending"]
    release.set()
    t.join(10)
    assert store["pending"] == b"1"
    store.close()


def test_writers_that_fail_fast_do_not_hold_a_batch_open(tmp_path):
    """Conflicting writers fail at once and come straight back, so someone is always
    waiting at the gate; the batch must still commit (it is bounded by age and by
    transactions run), or the first member waits as long as the failures go on."""
    store = SQLiteBackend(str(tmp_path / "s.sqlite"))
    stop = threading.Event()
    committed = threading.Event()
    failures = []

    def failer(i):
        while not stop.is_set():
            try:
                with store.transaction():
                    store[f"f{i}"] = b"x"
                    raise RuntimeError("conflict")
            except RuntimeError:
                failures.append(i)

    def writer():
        with store.transaction():
            store["good"] = b"1"
        committed.set()

    failers = [threading.Thread(target=failer, args=(i,)) for i in range(4)]
    w = threading.Thread(target=writer)
    for t in failers:
        t.start()
    try:                                # the failers are cycling through the gate
        assert until(lambda: len(failures) >= 50, step=0.001), len(failures)
        w.start()
        returned_while_failing = committed.wait(20)
    finally:
        stop.set()
        for t in failers + [w]:
            if t.ident is not None:
                t.join(60)
    assert returned_while_failing
    assert store["good"] == b"1" and "f0" not in store
    store.close()


def test_wal_checkpoints_run_in_the_background_and_stop_on_close(tmp_path, monkeypatch):
    """Writers never checkpoint the log themselves (a checkpoint inside a commit held
    every writer up); a thread of the process does, on its own connection."""
    from settee.store.backends.checkpoint import Checkpointer
    monkeypatch.setattr(Checkpointer, "min_wal_bytes", 0)   # this log stays small
    monkeypatch.setattr(Checkpointer, "every", 32)
    path = str(tmp_path / "s.sqlite")
    store = SQLiteBackend(path)
    for n in range(200):                     # 200 commits: several nudges
        store[f"k{n}"] = b"v" * 500
    main = tmp_path / "s.sqlite"
    # the writer leaves every page in the log: they reach the database file in the background
    assert until(lambda: main.stat().st_size > 200 * 500, timeout=30), main.stat().st_size
    thread = store._checkpoints._thread
    assert thread is not None and thread.is_alive()
    store.close()
    assert not thread.is_alive()


def test_sqlite_delete_range_works_in_batches(tmp_path):
    from settee.store.base import DELETE_BATCH
    store = SQLiteBackend(str(tmp_path / "s.sqlite"))
    store.put_many([(f"k{i:06d}", b"v") for i in range(DELETE_BATCH * 2 + 10)] + [("z", b"1")])
    assert store.delete_range("k", "l") == DELETE_BATCH * 2 + 10
    assert list(store) == ["z"]
    store.close()


def test_the_first_transaction_of_a_batch_fails_without_a_savepoint(tmp_path):
    """Alone in its batch, a transaction runs without a savepoint: when it fails the
    whole batch is rolled back and the writers' lock is free for another process."""
    path = str(tmp_path / "s.sqlite")
    store, other = SQLiteBackend(path), SQLiteBackend(path)
    statements = []
    store._writer().set_trace_callback(statements.append)
    with pytest.raises(RuntimeError):
        with store.transaction():
            store["gone"] = b"1"
            raise RuntimeError("fails")
    assert not any("SAVEPOINT" in s for s in statements)
    assert "gone" not in store
    done = threading.Event()

    def write_elsewhere():
        other["there"] = b"2"                     # blocks if the lock were still held
        done.set()

    threading.Thread(target=write_elsewhere, daemon=True).start()
    assert done.wait(10)
    store["here"] = b"3"
    assert sorted(store) == ["here", "there"]
    store.close()
    other.close()


def test_the_log_is_fsynced_after_the_lock_is_released_and_before_returning(tmp_path, monkeypatch):
    import fcntl
    import os
    store = SQLiteBackend(str(tmp_path / "s.sqlite"))
    assert store._writer().execute("PRAGMA synchronous").fetchone()[0] == 1   # NORMAL
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        probe = os.open(str(tmp_path / "s.sqlite-lock"), os.O_RDWR)
        try:                                      # the writers' lock is free by now
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(probe, fcntl.LOCK_UN)
        finally:
            os.close(probe)
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr("settee.store.backends.sqlite.os.fsync", fsync)
    with store.transaction():
        store["k"] = b"v"
        assert not synced
    assert synced == [str(tmp_path / "s.sqlite-wal")]
    store.close()


def test_a_failing_log_fsync_fails_the_write(tmp_path, monkeypatch):
    import errno
    store = SQLiteBackend(str(tmp_path / "s.sqlite"))

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("settee.store.backends.sqlite.os.fsync", fsync)
    with pytest.raises(StorageFull):
        store["k"] = b"v"
    monkeypatch.undo()
    store["k2"] = b"v"
    assert store["k2"] == b"v"
    store.close()


def test_synchronous_settings_other_than_full_are_sqlites_own(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("settee.store.backends.sqlite.os.fsync", calls.append)
    for mode, pragma in (("NORMAL", 1), ("OFF", 0), ("EXTRA", 3)):
        store = SQLiteBackend(str(tmp_path / f"{mode}.sqlite"), synchronous=mode)
        assert store._writer().execute("PRAGMA synchronous").fetchone()[0] == pragma
        store["k"] = b"v"
        store.close()
    assert calls == []
    assert os.path.exists(tmp_path / "OFF.sqlite")


def test_a_backend_missing_a_commit_hook_cannot_be_made():
    """The hooks transactions need are a declared protocol, not prose."""
    from settee.store.base import Backend
    from settee.store.transactions import Transactions

    class Incomplete(Transactions, Backend):      # no _commit_batch and the others
        pass
    with pytest.raises(TypeError, match="_commit_batch"):
        Incomplete()


def test_group_commit_without_savepoints_cannot_be_declared():
    """Sharing a commit needs savepoints (a failed member is undone alone): a backend
    asking for group commit without them is refused when its class is made."""
    from settee.store.backends.memory import MemoryBackend

    with pytest.raises(TypeError, match="savepoints: _savepoint, _release, _rollback_to"):
        class Grouped(MemoryBackend):
            max_batch = 16


@pytest.mark.parametrize("backend", ["memory", "sqlite", "lmdb", "file"])
def test_every_backend_runs_the_one_transaction_implementation(backend, tmp_path):
    """One implementation for all: re-entrant per thread, a raising block leaves
    nothing, a committed one is there for the next reader."""
    from settee.config import load_settings
    from settee.store.locations import storage_dir
    from settee.store.stack import backend_factory
    from settee.store.transactions import Transactions

    settings = load_settings(env={}, storage_backend=backend, storage_data_dir=str(tmp_path))
    os.makedirs(storage_dir(settings, "db"))
    store = backend_factory(settings)(settings, "db")
    try:
        assert isinstance(store, Transactions)
        with store.transaction():
            with store.transaction():                 # joins the outer one
                store["a"] = b"1"
            assert store.in_transaction()
        assert not store.in_transaction() and store["a"] == b"1"
        with pytest.raises(RuntimeError), store.transaction():
            store["b"] = b"2"
            raise RuntimeError("undo")
        assert "b" not in store
    finally:
        store.close()
