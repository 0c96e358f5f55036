"""Compaction gives space back: old revision bodies are dropped and the file shrinks."""
from __future__ import annotations

import os

import pytest
from httpclient import make_app

from settee.config import load_settings
from settee.server.cli import main
from settee.store import Catalog


def sizes(data_dir, name: str = "db") -> int:
    folder = os.path.join(data_dir, name)
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))


def churn(db, docs: int = 20, updates: int = 12, size: int = 40_000,
          revs: dict[str, str] | None = None) -> dict[str, str]:
    """Documents with large bodies, each rewritten many times: old bodies pile up."""
    revs = {} if revs is None else revs
    for n in range(docs):
        for u in range(updates):
            doc = {"n": n, "u": u, "text": os.urandom(size // 2).hex()}
            if f"d{n}" in revs:
                doc["_rev"] = revs[f"d{n}"]
            revs[f"d{n}"] = db.save({"_id": f"d{n}", **doc}).meta.rev
    return revs


def catalog(tmp_path) -> Catalog:
    return Catalog(load_settings(env={}, storage_data_dir=str(tmp_path / "data")))


def test_compaction_shrinks_the_file_and_keeps_every_document(tmp_path):
    db = catalog(tmp_path).create("db")
    revs = churn(db)
    before = sizes(tmp_path / "data")
    dropped = db.compact()
    after = sizes(tmp_path / "data")
    assert dropped >= 20 * 11
    assert after < before / 4, (before, after)
    for doc_id, rev in revs.items():
        assert db[doc_id]["_rev"] == rev and db[doc_id]["u"] == 11


def test_compacting_over_http_and_from_the_shell_shrinks_too(tmp_path, monkeypatch):
    app = make_app(tmp_path)
    app.put("/db")
    revs = churn(app.app.catalog.get("db"), docs=10)
    before = sizes(tmp_path / "data")
    assert app.post("/db/_compact", content_type="application/json").status_int == 202
    assert sizes(tmp_path / "data") < before / 4
    churn(app.app.catalog.get("db"), docs=10, updates=4, revs=revs)   # more old bodies
    grown = sizes(tmp_path / "data")
    monkeypatch.setenv("SETTEE_DATA_DIR", str(tmp_path / "data"))
    assert main(["compact", "db"]) == 0
    assert sizes(tmp_path / "data") < grown
    assert app.get("/db/d0").json["u"] == 3 and len(revs) == 10


@pytest.mark.parametrize("backend", ["lmdb", "file", "dbm", "memory"])
def test_other_backends_compact_without_error(tmp_path, backend):
    pytest.importorskip("lmdb") if backend == "lmdb" else None
    settings = load_settings(env={}, storage_data_dir=str(tmp_path / "data"),
                             storage_backend=backend)
    db = Catalog(settings).create("db")
    revs = churn(db, docs=3, updates=3, size=2000)
    assert db.compact() >= 6
    assert all(db[doc_id]["_rev"] == rev for doc_id, rev in revs.items())
