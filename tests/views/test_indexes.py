"""One database's indexes (views/indexes.py): one object per open database, one
background update per view at a time, and the design documents' lifecycle."""
from __future__ import annotations

import threading

from waiting import until

from settee.config import load_settings
from settee.store import Catalog
from settee.views.definitions import design_views
from settee.views.engine import View, indexed_views
from settee.views.indexes import indexes_of

DESIGN = {"language": "python",
          "views": {"by_n": {"map": "def fun(doc):\n    yield doc.get('n'), None"}}}


def catalog(tmp_path, **settings) -> Catalog:
    return Catalog(load_settings(env={}, storage_data_dir=str(tmp_path / "data"), **settings))


def test_each_open_database_has_one_and_a_reopened_one_a_new_one(tmp_path):
    first = catalog(tmp_path, storage_max_dbs_open=1)
    db = first.create("db")
    assert indexes_of(db) is indexes_of(first.get("db"))
    first.create("other")                   # closes db: it is the least recently used
    assert indexes_of(first.get("db")) is not indexes_of(db)


def test_one_background_update_per_view_at_a_time(tmp_path, monkeypatch):
    db = catalog(tmp_path).create("db")
    spec = design_views({"_id": "_design/a", **DESIGN})["by_n"]
    indexes = indexes_of(db)
    view = indexes.view(spec)
    running, release, calls = threading.Event(), threading.Event(), []

    def update(self, progress=None, until=None):
        calls.append(self.vid)
        running.set()
        release.wait(10)
    monkeypatch.setattr(View, "update", update)
    assert indexes.update_in_background(view)
    assert running.wait(10)
    assert not indexes.update_in_background(view)        # one is running: not another
    release.set()
    assert until(lambda: indexes.update_in_background(view))   # done: a new one may start
    assert until(lambda: len(calls) == 2)


def test_a_saved_design_document_is_built_and_a_removed_one_dropped(tmp_path):
    db = catalog(tmp_path).create("db")
    db["d1"] = {"n": 1}
    db["_design/a"] = DESIGN
    indexes = indexes_of(db)
    indexes.design_saved("_design/a")
    assert until(lambda: [s.get("rows") for _, _, s in indexed_views(db)] == [1])
    db.delete("_design/a", db["_design/a"]["_rev"])
    assert indexes.drop_unused() == 1
    assert list(indexed_views(db)) == []
