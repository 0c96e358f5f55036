"""The record of database events (``/_db_updates``): created, updated, deleted, each
database's latest events once, in order, and shared by every catalog of a data
directory."""
from __future__ import annotations

import time

import pytest

from settee.config import load_settings
from settee.store import Catalog
from settee.store.dbupdates import DbUpdates


@pytest.fixture
def catalog(tmp_path):
    catalog = Catalog(load_settings(env={}, storage_data_dir=str(tmp_path / "data")))
    yield catalog
    catalog.close()


def events(catalog, since=0):
    catalog.updates.flush()
    return [(e.db_name, e.type) for e in catalog.updates.since(since)]


def test_creations_and_deletions_are_recorded_in_order(catalog):
    catalog.create("a")
    catalog.create("b")
    catalog.delete("a")
    assert events(catalog) == [("a", "created"), ("b", "created"), ("a", "deleted")]


def test_writes_are_one_coalesced_updated_event_per_database(catalog):
    db = catalog.create("a")
    catalog.create("b")
    for i in range(20):
        db[f"doc{i}"] = {"n": i}
    assert events(catalog) == [("a", "created"), ("b", "created"), ("a", "updated")]
    catalog.get("b")["x"] = {}
    catalog.updates.flush()
    db["doc0"] = {"_rev": db["doc0"]["_rev"], "n": 100}
    # each database's latest events once: a's update moved past b's creation
    assert events(catalog) == [("a", "created"), ("b", "created"), ("b", "updated"),
                               ("a", "updated")]


def test_updates_are_flushed_by_the_process_within_the_delay(catalog):
    db = catalog.create("a")
    start = catalog.updates.last_seq()
    db["doc"] = {}
    deadline = time.monotonic() + 5
    while catalog.updates.last_seq() == start and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [(e.db_name, e.type) for e in catalog.updates.since(start)] == [("a", "updated")]


def test_local_documents_are_not_updates(catalog):
    db = catalog.create("a")
    seq = catalog.updates.last_seq()
    db["_local/checkpoint"] = {"n": 1}
    assert events(catalog, seq) == []


def test_since_and_descending(catalog):
    for name in ("a", "b", "c"):
        catalog.create(name)
    seq = [e.seq for e in catalog.updates.since(0)]
    assert [e.db_name for e in catalog.updates.since(seq[0])] == ["b", "c"]
    assert [e.db_name for e in catalog.updates.since(0, descending=True)] == ["c", "b", "a"]
    assert catalog.updates.last_seq() == seq[-1]


def test_the_record_is_shared_by_every_catalog_of_a_data_directory(tmp_path):
    settings = load_settings(env={}, storage_data_dir=str(tmp_path / "data"))
    one, two = Catalog(settings), Catalog(settings)
    try:
        one.create("a")
        two.get("a")["doc"] = {}
        two.updates.flush()
        assert [(e.db_name, e.type) for e in one.updates.since(0)] == [
            ("a", "created"), ("a", "updated")]
    finally:
        one.close()
        two.close()


def test_the_record_is_no_database(catalog):
    catalog.create("a")
    assert "_dbs" not in catalog.names() and not catalog.exists("_dbs")
    from settee.store import DatabaseNotFound
    with pytest.raises(DatabaseNotFound):
        catalog.get("_dbs")
    with pytest.raises(DatabaseNotFound):
        catalog.delete("_dbs")


def test_an_unknown_event_type_is_refused(tmp_path):
    from settee.store.backends.memory import MemoryBackend
    record = DbUpdates(MemoryBackend)
    with pytest.raises(ValueError):
        record.record("a", "renamed")
    record.close()
