"""The replication layer: the durable outbox, the drainer, and its configuration."""
from __future__ import annotations

import threading
import time

import pytest
from waiting import until

from settee.config import load_settings
from settee.store.backends.memory import MemoryBackend
from settee.store.backends.sqlite import SQLiteBackend
from settee.store.catalog import Catalog
from settee.store.exceptions import BackendError, ConfigurationError, InvalidKey
from settee.store.layers.replication import OUTBOX, Replication, replication_layer
from settee.store.stack import BACKENDS

STACK = ["validation", "timestamps", "versioning", "serialization", "compression"]


class FlakyBackend(MemoryBackend):
    """A backup that can be taken down: every write and transaction then raises."""

    def __init__(self):
        super().__init__()
        self.down = False
        self.fail_after: int | None = None     # writes accepted before going down
        self.closed = False

    def _check_up(self):
        if self.fail_after is not None:
            if self.fail_after == 0:
                self.down = True
            self.fail_after -= 1
        if self.down:
            raise BackendError("backup unreachable")

    def __setitem__(self, key, value):
        self._check_up()
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self._check_up()
        super().__delitem__(key)

    def close(self):
        self.closed = True


def visible(store) -> dict:
    """A store's keys and values, without the outbox (what a backup must equal)."""
    return {k: v for k, v in store.range() if not k.startswith(OUTBOX)}


@pytest.fixture
def pair():
    primary, backup = MemoryBackend(), FlakyBackend()
    layer = Replication(primary, backup, interval=0.01, start=False)
    yield primary, backup, layer
    layer.close()


# -- copying -------------------------------------------------------------------------
def test_writes_and_deletes_reach_the_backup(pair):
    primary, backup, layer = pair
    for i in range(20):
        layer[f"k{i:02d}"] = b"%d" % i
    del layer["k05"]
    assert layer.drain(timeout=1)
    assert visible(backup) == visible(primary) == dict(layer.range())
    assert "k05" not in backup and backup["k19"] == b"19"
    assert layer.lag()["pending"] == 0


def test_the_background_drainer_copies_without_being_asked():
    primary, backup = MemoryBackend(), MemoryBackend()
    layer = Replication(primary, backup, interval=0.01)
    try:
        layer["a"] = b"1"
        assert until(lambda: backup.get("a") == b"1")
        del layer["a"]
        assert until(lambda: "a" not in backup)
    finally:
        layer.close()


def test_the_backup_gets_the_current_value_of_a_key_written_many_times(pair):
    primary, backup, layer = pair
    for i in range(10):
        layer["k"] = b"v%d" % i
    assert layer.lag()["pending"] == 1              # coalesced by key
    layer.flush()
    assert backup["k"] == b"v9"


def test_a_write_that_fails_records_nothing(pair):
    primary, backup, layer = pair
    with pytest.raises(KeyError):
        del layer["never"]
    with pytest.raises(TypeError):
        layer["k"] = "not bytes"
    assert layer.lag()["pending"] == 0 and len(primary) == 0


def test_a_rolled_back_transaction_leaves_no_outbox_entry(pair):
    primary, backup, layer = pair
    with pytest.raises(RuntimeError):
        with layer.transaction():
            layer["k"] = b"1"
            raise RuntimeError("abort")
    assert layer.lag()["pending"] == 0 and "k" not in primary


# -- the outbox is hidden ----------------------------------------------------------------
def test_the_outbox_is_hidden_from_the_layers_above(pair):
    primary, backup, layer = pair
    layer["a"], layer["b"] = b"1", b"2"
    assert any(k.startswith(OUTBOX) for k in primary)       # it is really there
    assert sorted(layer) == ["a", "b"] and len(layer) == 2
    assert list(layer.range(keys_only=True)) == ["a", "b"]
    assert [k for k, _ in layer.range(descending=True)] == ["b", "a"]
    assert OUTBOX + "a" not in layer
    assert layer.get_many(["a", OUTBOX + "a"]) == {"a": b"1"}
    with pytest.raises(KeyError):
        layer[OUTBOX + "a"]
    with pytest.raises(InvalidKey):
        layer[OUTBOX + "c"] = b"x"
    with pytest.raises(KeyError):
        del layer[OUTBOX + "a"]


# -- failures ------------------------------------------------------------------------
def test_nothing_is_lost_while_the_backup_is_down_and_it_drains_when_back():
    primary, backup = MemoryBackend(), FlakyBackend()
    backup.down = True
    layer = Replication(primary, backup, interval=0.01)
    layer.max_backoff = 0.02
    try:
        for i in range(30):
            layer[f"k{i:02d}"] = b"x"
        del layer["k00"]
        assert until(lambda: layer.lag()["failures"] >= 2)
        lag = layer.lag()
        assert lag["pending"] == 30 and "backup unreachable" in lag["last_error"]
        assert len(backup) == 0 and layer["k29"] == b"x"       # the primary is fine
        assert layer.drain(timeout=0.05) is False
        with pytest.raises(BackendError):
            layer.flush()
        backup.down = False
        assert until(lambda: layer.lag()["pending"] == 0 and layer.lag()["failures"] == 0)
        assert visible(backup) == visible(primary) and "k00" not in backup
        assert layer.lag()["last_error"] is None
    finally:
        layer.close()


def test_a_backup_failing_mid_batch_keeps_the_whole_batch_pending(pair):
    primary, backup, layer = pair
    for i in range(10):
        layer[f"k{i}"] = b"x"
    backup.fail_after = 4
    with pytest.raises(BackendError):
        layer.flush()
    assert layer.lag()["pending"] == 10
    backup.fail_after, backup.down = None, False
    layer.flush()
    assert visible(backup) == visible(primary) and layer.lag()["pending"] == 0


def test_the_outbox_survives_a_crash_and_drains_on_reopen(tmp_path):
    path = str(tmp_path / "primary.sqlite")
    backup = MemoryBackend()
    layer = Replication(SQLiteBackend(path), backup, interval=3600, start=False)
    for i in range(25):
        layer[f"k{i:02d}"] = b"%d" % i
    del layer["k03"]
    layer.stop()
    layer.inner.close()                 # a crash: no flush, no close of the layer
    assert len(backup) == 0

    reopened = Replication(SQLiteBackend(path), backup, interval=3600, start=False)
    try:
        assert reopened.lag()["pending"] == 25
        assert reopened.drain(timeout=2)
        assert visible(backup) == visible(reopened.inner) and len(backup) == 24
    finally:
        reopened.close()


def test_a_reopened_layer_drains_its_backlog_by_itself(tmp_path):
    path = str(tmp_path / "primary.sqlite")
    backup = MemoryBackend()
    layer = Replication(SQLiteBackend(path), backup, start=False)
    layer["k"] = b"pending"
    layer.inner.close()
    reopened = Replication(SQLiteBackend(path), backup, interval=3600)   # long interval
    try:
        assert until(lambda: backup.get("k") == b"pending")
    finally:
        reopened.close()


def test_close_flushes_then_closes_backup_and_inner():
    primary, backup = MemoryBackend(), FlakyBackend()
    layer = Replication(primary, backup, interval=3600, start=False)
    layer["k"] = b"1"
    layer.close()
    assert backup["k"] == b"1" and backup.closed


# -- observability ---------------------------------------------------------------------
def test_lag_reports_pending_keys_and_the_age_of_the_oldest(pair):
    primary, backup, layer = pair
    assert layer.lag() == {"pending": 0, "oldest_age_s": 0.0, "failures": 0,
                           "last_error": None}
    layer["a"] = b"1"
    time.sleep(0.05)                    # not a wait for anything: the age to be measured
    layer["b"] = b"2"
    layer["a"] = b"3"                   # coalesced: the oldest time is kept
    lag = layer.lag()
    assert lag["pending"] == 2 and lag["oldest_age_s"] >= 0.04
    layer.flush()
    assert layer.lag()["pending"] == 0 and layer.lag()["oldest_age_s"] == 0.0


# -- several writers and drainers --------------------------------------------------------
def test_concurrent_writers_and_two_drainers_leave_the_backup_equal(tmp_path):
    """Two layers over one SQLite file, as two processes would be, each with a drainer."""
    path, backup_path = str(tmp_path / "p.sqlite"), str(tmp_path / "b.sqlite")
    layers = [Replication(SQLiteBackend(path), SQLiteBackend(backup_path), interval=0.001)
              for _ in range(2)]

    def work(layer, n):
        for i in range(60):
            layer[f"k{i % 7}"] = b"%d-%d" % (n, i)
            if i % 10 == 9:
                with layer.transaction():       # pop is a read then a delete
                    layer.pop(f"k{i % 5}", None)

    threads = [threading.Thread(target=work, args=(layers[n % 2], n)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert layers[0].drain(timeout=5) and layers[1].drain(timeout=5)
        assert visible(layers[0].backup) == visible(layers[0].inner)
    finally:
        for layer in layers:
            layer.close()


# -- through the registry and the catalog ----------------------------------------------
def settings_for(tmp_path, **extra):
    return load_settings(env={}, storage_data_dir=str(tmp_path / "data"),
                         storage_backend="sqlite", storage_stack=STACK + ["replication"],
                         **extra)


def test_no_target_means_no_layer(tmp_path):
    assert replication_layer(MemoryBackend(), settings_for(tmp_path), "db", BACKENDS) is None


@pytest.mark.parametrize("target", ["backup", "ftp:/backup", "sqlite:", "  :/x",
                                    "sqlite:{data}", "sqlite:{data}/backups"])
def test_a_bad_target_fails_naming_the_setting(tmp_path, target):
    target = target.format(data=tmp_path / "data")
    settings = settings_for(tmp_path, replication_target=target)
    with pytest.raises(ConfigurationError) as info:
        replication_layer(MemoryBackend(), settings, "db", BACKENDS)
    assert info.value.key == "replication_target"


def test_the_backup_directory_opens_as_a_database(tmp_path):
    target = tmp_path / "backup"
    catalog = Catalog(settings_for(tmp_path, replication_target=f"sqlite:{target}"))
    try:
        db = catalog.create("invoices-2026")
        revs = {}
        for i in range(5):
            revs[i] = db.save({"_id": f"doc{i}", "n": i}).meta.rev
        db.delete("doc0", revs[0])
        db["_local/cp"] = {"seq": 3}
        layer = db.top.find_layer(Replication)
        assert layer is not None and layer.drain(timeout=5)
        assert layer.lag()["pending"] == 0
    finally:
        catalog.close()
    restored = Catalog(load_settings(env={}, storage_data_dir=str(target),
                                     storage_backend="sqlite", storage_stack=STACK))
    try:
        copy = restored.get("invoices-2026")
        assert sorted(copy) == ["doc1", "doc2", "doc3", "doc4"]
        assert copy["doc4"]["_rev"] == revs[4] and copy["_local/cp"]["seq"] == 3
        assert copy.info()["doc_del_count"] == 1 and copy.info()["update_seq"] == 6
    finally:
        restored.close()
