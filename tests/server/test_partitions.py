"""Partitioned databases: PUT ?partitioned=true, partition:id ids, and queries within
one partition (_all_docs, _view, _find, _explain)."""
from __future__ import annotations

import orjson
import pytest
from httpclient import make_app

DOCS = [{"_id": f"{p}:d{i:02d}", "age": i, "p": p} for p in ("red", "blue") for i in range(6)]


def post(app, path, body, **kw):
    return app.post(path, orjson.dumps(body), content_type="application/json", **kw)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(tmp_path_factory.mktemp("partitions"))
    assert app.put("/pdb?partitioned=true").status_int == 201
    post(app, "/pdb/_bulk_docs", {"docs": DOCS})
    app.put("/plain")
    return app


def test_a_partitioned_database_says_so_in_its_info(app):
    assert app.get("/pdb").json["props"] == {"partitioned": True}
    assert app.get("/plain").json["props"] == {}
    assert app.put("/odd?partitioned=maybe", expect_errors=True).status_int == 400


@pytest.mark.parametrize("docid", ["nocolon", "red:", ":x", "_x:y"])
def test_ids_must_be_partition_colon_id(app, docid):
    r = app.put(f"/pdb/{docid}", b'{"a": 1}', content_type="application/json",
                expect_errors=True)
    assert r.status_int == 400 and r.json["error"] in ("illegal_docid", "illegal_partition")


def test_bulk_docs_and_post_refuse_ids_without_a_partition(app):
    assert post(app, "/pdb", {"a": 1}, expect_errors=True).status_int == 400
    [result] = post(app, "/pdb/_bulk_docs", {"docs": [{"_id": "loose"}]}).json
    assert result["error"] == "illegal_docid"
    # Design and local documents have no partition; a plain database takes any id.
    assert app.put("/pdb/_local/x", b"{}", content_type="application/json").status_int == 201
    assert app.put("/plain/loose", b"{}", content_type="application/json").status_int == 201


def test_partition_info(app):
    info = app.get("/pdb/_partition/red").json
    assert info["db_name"] == "pdb" and info["partition"] == "red"
    assert info["doc_count"] == 6 and info["doc_del_count"] == 0
    assert info["sizes"]["external"] > 0
    r = app.get("/pdb/_partition/_red", expect_errors=True)
    assert r.status_int == 400 and r.json["error"] == "illegal_partition"
    r = app.get("/plain/_partition/red", expect_errors=True)
    assert r.status_int == 400 and "not partitioned" in r.json["reason"]


def test_all_docs_and_views_of_one_partition(app):
    rows = app.get("/pdb/_partition/blue/_all_docs").json["rows"]
    assert [r["id"] for r in rows] == [f"blue:d{i:02d}" for i in range(6)]
    app.put("/pdb/_design/v", orjson.dumps({"views": {"age": {
        "map": "function (doc) { emit(doc.age, null); }"}}}), content_type="application/json")
    rows = app.get("/pdb/_partition/red/_design/v/_view/age?startkey=2&limit=2").json["rows"]
    assert [(r["id"], r["key"]) for r in rows] == [("red:d02", 2), ("red:d03", 3)]


def test_find_and_explain_within_a_partition(app):
    post(app, "/pdb/_index", {"index": {"fields": ["age"]}, "ddoc": "by-age", "name": "age"})
    query = {"selector": {"age": {"$gte": 3}}, "fields": ["_id"], "sort": ["age"]}
    found = post(app, "/pdb/_partition/red/_find", query).json
    assert [d["_id"] for d in found["docs"]] == ["red:d03", "red:d04", "red:d05"]
    plan = post(app, "/pdb/_partition/red/_explain", query).json
    assert plan["index"]["name"] == "age" and plan["index"]["partitioned"] is True
    assert plan["mrargs"]["partition"] == "red" and plan["opts"]["partition"] == "red"
    # The index is partitioned (the database's default): a global query cannot sort by it.
    r = post(app, "/pdb/_find", query, expect_errors=True)
    assert r.status_int == 400 and r.json["error"] == "no_usable_index"
    everywhere = post(app, "/pdb/_find", {"selector": {"age": 5}, "fields": ["_id"]}).json
    assert sorted(d["_id"] for d in everywhere["docs"]) == ["blue:d05", "red:d05"]
    by_id = post(app, "/pdb/_partition/blue/_find", {"selector": {"age": {"$lt": 2}}}).json
    assert [d["_id"] for d in by_id["docs"]] == ["blue:d00", "blue:d01"]
