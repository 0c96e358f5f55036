"""Details of CouchDB 3's API that real clients send: ``batch=ok``, ``all_or_nothing``,
a malformed ``rev``, ``_local_docs``, ``.../queries``, ``_purged_infos_limit``, ``q``
on create, and no empty ``_attachments`` left behind."""
from __future__ import annotations

import orjson
import pytest
from httpclient import put


def post(app, path, body, **kw):
    return app.post(path, orjson.dumps(body), content_type="application/json", **kw)


def err(r, status, error):
    assert r.status_int == status, r.body
    assert r.json["error"] == error and r.json["reason"], r.json


# -- documents ----------------------------------------------------------------------------
def test_batch_ok_is_202_without_a_rev(db):
    r = put(db, "/db/a?batch=ok", {"x": 1}, status=202)
    assert r.json == {"ok": True, "id": "a"}
    r = post(db, "/db?batch=ok", {"_id": "b"}, status=202)
    assert r.json == {"ok": True, "id": "b"}
    assert db.get("/db/a").json["x"] == 1 and db.get("/db/b").status_int == 200


@pytest.mark.parametrize("rev", ["bad", "1", "-1-abc", "x-abc", "1-"])
def test_a_malformed_rev_is_400(db, rev):
    put(db, "/db/a", {}, status=201)
    err(db.get(f"/db/a?rev={rev}", expect_errors=True), 400, "bad_request")
    err(db.delete(f"/db/a?rev={rev}", expect_errors=True), 400, "bad_request")
    err(put(db, "/db/a", {"_rev": rev}, expect_errors=True), 400, "bad_request")


def test_a_well_formed_rev_that_does_not_exist_is_still_404(db):
    put(db, "/db/a", {}, status=201)
    err(db.get("/db/a?rev=1-0123456789abcdef", expect_errors=True), 404, "not_found")


def test_deleting_the_last_attachment_leaves_no_empty_attachments(db):
    rev = put(db, "/db/a", {"x": 1}).json["rev"]
    rev = db.put(f"/db/a/one.txt?rev={rev}", b"1", content_type="text/plain").json["rev"]
    rev = db.put(f"/db/a/two.txt?rev={rev}", b"2", content_type="text/plain").json["rev"]
    rev = db.delete(f"/db/a/one.txt?rev={rev}").json["rev"]
    assert list(db.get("/db/a").json["_attachments"]) == ["two.txt"]
    db.delete(f"/db/a/two.txt?rev={rev}")
    assert db.get("/db/a").json == {"_id": "a", "_rev": db.get("/db/a").json["_rev"], "x": 1}


# -- _bulk_docs ---------------------------------------------------------------------------
def test_all_or_nothing_writes_every_document(db):
    r = post(db, "/db/_bulk_docs", {"all_or_nothing": True, "docs": [{"_id": "a"}, {"_id": "b"}]},
             status=201)
    assert [row["id"] for row in r.json] == ["a", "b"] and all(row["ok"] for row in r.json)


def test_all_or_nothing_writes_nothing_when_one_fails(db):
    put(db, "/db/exists", {}, status=201)
    r = post(db, "/db/_bulk_docs", {"all_or_nothing": True, "docs": [
        {"_id": "new1"}, {"_id": "exists"}, {"_id": "new2"}]}, expect_errors=True)
    assert r.status_int == 417
    assert r.json == [{"id": "exists", "error": "conflict", "reason": "Document update conflict."}]
    assert db.get("/db").json["doc_count"] == 1
    err(db.get("/db/new1", expect_errors=True), 404, "not_found")
    r = post(db, "/db/_bulk_docs", {"docs": [{"_id": "new1"}, {"_id": "exists"}]})
    assert r.json[0]["ok"] and r.json[1]["error"] == "conflict"      # without: each its own


# -- _local_docs ----------------------------------------------------------------------------
def test_local_docs_lists_local_documents_only(db):
    put(db, "/db/_local/b", {"n": 2})
    put(db, "/db/_local/a", {"n": 1})
    put(db, "/db/plain", {})
    r = db.get("/db/_local_docs").json
    assert r["total_rows"] is None and r["offset"] is None
    assert [(row["id"], row["value"]["rev"]) for row in r["rows"]] == [
        ("_local/a", "0-1"), ("_local/b", "0-1")]
    r = db.get("/db/_local_docs?include_docs=true&descending=true&limit=1").json
    assert r["rows"][0]["doc"] == {"_id": "_local/b", "_rev": "0-1", "n": 2}
    r = db.get('/db/_local_docs?startkey="_local/b"').json
    assert [row["id"] for row in r["rows"]] == ["_local/b"]
    r = post(db, "/db/_local_docs", {"keys": ["_local/a", "_local/zzz"]}).json
    assert r["rows"][0]["id"] == "_local/a" and r["rows"][1]["error"] == "not_found"


# -- .../queries --------------------------------------------------------------------------------
def test_all_docs_queries_answers_each_query(db):
    for name in ("a", "b", "c", "_design/x"):
        put(db, f"/db/{name}", {})
    r = post(db, "/db/_all_docs/queries", {"queries": [
        {"keys": ["b", "zz"]}, {"limit": 1, "skip": 1}, {"startkey": "b", "include_docs": True}]})
    first, second, third = r.json["results"]
    assert [row.get("id") for row in first["rows"]] == ["b", None]
    assert [row["id"] for row in second["rows"]] == ["a"]         # after _design/x
    assert [row["id"] for row in third["rows"]] == ["b", "c"]
    assert third["rows"][0]["doc"]["_id"] == "b" and first["total_rows"] == 4
    r = post(db, "/db/_design_docs/queries", {"queries": [{}]})
    assert [row["id"] for row in r.json["results"][0]["rows"]] == ["_design/x"]


def test_view_queries_answers_each_query(db):
    put(db, "/db/_design/d", {"views": {"v": {"map": "function(doc){ emit(doc.n, 1); }",
                                              "reduce": "_count"}}})
    for n in range(5):
        put(db, f"/db/d{n}", {"n": n})
    r = post(db, "/db/_design/d/_view/v/queries", {"queries": [
        {"reduce": False, "startkey": 3}, {}, {"keys": [1, 4], "reduce": False}]})
    first, second, third = r.json["results"]
    assert [row["key"] for row in first["rows"]] == [3, 4]
    assert second["rows"] == [{"key": None, "value": 5}]
    assert [row["key"] for row in third["rows"]] == [1, 4]


@pytest.mark.parametrize("body", [{}, {"queries": {}}, {"queries": [1]},
                                  {"queries": [{"limit": -1}]}, {"queries": [{"bogus": 1}]}])
def test_queries_must_be_a_list_of_query_objects(db, body):
    put(db, "/db/_design/d", {"views": {"v": {"map": "function(doc){ emit(1, 1); }"}}})
    err(post(db, "/db/_design/d/_view/v/queries", body, expect_errors=True), 400,
        "bad_request")
    if body != {"queries": [{"bogus": 1}]}:       # _all_docs ignores unknown parameters
        err(post(db, "/db/_all_docs/queries", body, expect_errors=True), 400, "bad_request")


# -- databases ---------------------------------------------------------------------------------
def test_purged_infos_limit_is_kept(db):
    assert db.get("/db/_purged_infos_limit").json == 1000
    assert put(db, "/db/_purged_infos_limit", 200).json == {"ok": True}
    assert db.get("/db/_purged_infos_limit").json == 200
    for bad in (0, -1, "x", True, 1.5):
        err(put(db, "/db/_purged_infos_limit", bad, expect_errors=True), 400, "bad_request")


def test_create_takes_q_and_n(db):
    db.put("/sharded?q=8&n=3", status=201)
    assert db.get("/sharded").json["db_name"] == "sharded"
    for query in ("q=0", "q=x", "n=-1"):
        err(db.put(f"/other?{query}", expect_errors=True), 400, "bad_request")


def test_keys_with_a_key_or_range_is_a_query_parse_error(db):
    """CouchDB refuses ``keys`` beside ``key``, ``startkey`` or ``endkey``, for
    _all_docs and views alike (PouchDB's own suite checks it)."""
    put(db, "/db/_design/d", {"views": {"v": {"map": "function (doc) { emit(doc._id); }"}}})
    for path in ("/db/_all_docs", "/db/_design/d/_view/v"):
        for extra in ('startkey="a"', 'endkey="a"', 'key="a"', 'start_key="a"'):
            r = db.get(f'{path}?keys=["1"]&{extra}', expect_errors=True)
            assert (r.status_int, r.json["error"]) == (400, "query_parse_error"), (path, extra)
        r = db.post(f"{path}?startkey=%22a%22", orjson.dumps({"keys": ["1"]}),
                    content_type="application/json", expect_errors=True)
        assert r.status_int == 400, path
        assert db.get(f'{path}?keys=["1"]').status_int == 200


def test_a_replicated_revision_settee_cannot_parse_is_that_documents_error(db):
    """``_bulk_docs`` with ``new_edits=false``: one bare ``1-`` rev (PouchDB's #7829)
    refuses that document, not the request; the others are written."""
    r = db.post("/db/_bulk_docs", orjson.dumps({"new_edits": False, "docs": [
        {"_id": "foo", "_rev": "1-", "n": 1}, {"_id": "bar", "_rev": "1-abc", "n": 2}]}),
        content_type="application/json")
    assert r.status_int == 201 and [row["id"] for row in r.json] == ["foo"]
    assert r.json[0]["error"] == "bad_request"
    assert db.get("/db/bar").json["_rev"] == "1-abc"
    db.get("/db/foo", status=404)


def test_open_revs_with_a_revision_that_does_not_parse_is_400(db):
    put(db, "/db/foo", {})
    r = db.get('/db/foo?open_revs=["1-almost","2-correct","keys"]', expect_errors=True)
    assert (r.status_int, r.json["error"]) == (400, "bad_request")
    r = db.get('/db/foo?open_revs={"whatever":"which is"}', expect_errors=True)
    assert (r.status_int, r.json["error"]) == (400, "bad_request")
    assert db.get('/db/foo?open_revs=["1-almost"]').json == [{"missing": "1-almost"}]


def test_a_filtered_feed_ends_at_the_last_change_it_read(db):
    """Filtered out, changes still move last_seq on (CouchDB): a filtered reader, a
    replication's checkpoint among them, does not read them again; with a limit met,
    last_seq is the last row's."""
    put(db, "/db/a", {})
    put(db, "/db/b", {})
    put(db, "/db/_design/f", {"filters": {"none": "function (doc) { return false; }"}})
    for query in ("filter=f/none", 'filter=_doc_ids&doc_ids=["zz"]',
                  "filter=f/none&feed=longpoll&timeout=100"):
        out = db.get(f"/db/_changes?{query}").json
        assert out["results"] == [] and out["last_seq"].startswith("3-"), (query, out)
    out = db.get('/db/_changes?filter=_doc_ids&doc_ids=["a","b"]&limit=1').json
    assert [r["id"] for r in out["results"]] == ["a"] and out["last_seq"].startswith("1-")
    since = db.get("/db/_changes?filter=f/none").json["last_seq"]
    assert db.get(f"/db/_changes?filter=f/none&since={since}").json["last_seq"] == since


def test_all_docs_key_is_a_range_of_one_id(db):
    """``key`` reads as ``startkey=endkey=key`` (CouchDB): a deleted or missing
    document gives no row; ``keys`` gives each its row (deleted, or not_found)."""
    put(db, "/db/live", {})
    rev = put(db, "/db/gone", {}).json["rev"]
    db.delete(f"/db/gone?rev={rev}")
    ids = lambda q: [r.get("id") for r in db.get(f"/db/_all_docs?{q}").json["rows"]]  # noqa: E731
    assert ids('key="live"') == ["live"]
    assert ids('key="gone"') == [] and ids('key="nothing"') == []
    rows = db.get('/db/_all_docs?keys=["gone","nothing"]').json["rows"]
    assert rows[0]["value"]["deleted"] is True and rows[1]["error"] == "not_found"
