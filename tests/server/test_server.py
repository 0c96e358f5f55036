"""The HTTP API in-process (webtest): every endpoint family and its error paths."""
from __future__ import annotations

import gc
import threading
import time

import orjson
import pytest
import yaml
from httpclient import make_app
from werkzeug.test import create_environ


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path)


@pytest.fixture
def db(app):
    app.put("/db", status=201)
    return app


def put(app, path, body, **kw):
    return app.put(path, orjson.dumps(body), content_type="application/json", **kw)


def err(response, status, error):
    assert response.status_int == status, response.body
    assert response.json["error"] == error, response.json
    assert response.json["reason"]
    assert response.content_type == "application/json"


# -- server -----------------------------------------------------------------------------
def test_welcome_names_version_vendor_and_features(app):
    r = app.get("/")
    assert r.content_type == "application/json"
    assert r.json["couchdb"] == "Welcome"
    assert r.json["vendor"]["name"] == "Settee"
    assert isinstance(r.json["features"], list) and r.json["version"]


def test_uuids_count_and_bad_count(app):
    uuids = app.get("/_uuids?count=5").json["uuids"]
    assert len(set(uuids)) == 5
    err(app.get("/_uuids?count=abc", expect_errors=True), 400, "bad_request")
    err(app.get("/_uuids?count=100000", expect_errors=True), 400, "bad_request")


def test_up_reports_ok(app):
    assert app.get("/_up").json["status"] == "ok"


def test_up_is_503_below_the_free_space_floor(tmp_path):
    app = make_app(tmp_path, storage_free_space_floor=1 << 49)
    err(app.get("/_up", expect_errors=True), 503, "unavailable")


def test_unknown_paths_are_404_and_wrong_methods_405(db):
    err(db.get("/db/doc/attachment/deep", expect_errors=True), 404, "not_found")
    r = db.delete("/db/_all_docs", expect_errors=True)
    err(r, 405, "method_not_allowed")
    err(db.put("/_all_dbs", expect_errors=True), 405, "method_not_allowed")


# -- databases ---------------------------------------------------------------------------
def test_database_lifecycle(app):
    assert app.put("/db1", status=201).json == {"ok": True}
    err(app.put("/db1", status=412), 412, "file_exists")
    info = app.get("/db1").json
    for field in ("db_name", "doc_count", "doc_del_count", "update_seq", "purge_seq",
                  "compact_running", "sizes", "instance_start_time"):
        assert field in info
    assert info["db_name"] == "db1" and info["doc_count"] == 0
    assert set(info["sizes"]) >= {"file", "external", "active"}
    assert app.head("/db1").status_int == 200
    assert "db1" in app.get("/_all_dbs").json
    assert app.delete("/db1").json == {"ok": True}
    err(app.get("/db1", expect_errors=True), 404, "not_found")
    assert app.head("/db1", expect_errors=True).status_int == 404


@pytest.mark.parametrize("name", ["Upper", "1abc", "_users_not", "a b", "a%25b", "é"])
def test_illegal_database_names_are_400(app, name):
    from urllib.parse import quote
    err(app.put("/" + quote(name, safe=""), expect_errors=True), 400, "illegal_database_name")


def test_database_names_may_contain_an_encoded_slash(app):
    app.put("/couchdb-python%2F12", status=201)
    assert app.get("/couchdb-python%2F12").json["db_name"] == "couchdb-python/12"
    assert "couchdb-python/12" in app.get("/_all_dbs").json
    app.put("/couchdb-python%2F12/doc", b"{}", content_type="application/json", status=201)


def test_deleting_a_database_with_rev_is_refused(db):
    err(db.delete("/db?rev=1-abc", expect_errors=True), 400, "bad_request")
    assert db.get("/db").status_int == 200


def test_post_creates_a_document_with_a_generated_id(db):
    r = db.post("/db", orjson.dumps({"a": 1}), content_type="application/json", status=201)
    assert r.json["ok"] and r.json["rev"].startswith("1-")
    assert r.headers["Location"].endswith("/db/" + r.json["id"])
    assert db.get("/db/" + r.json["id"]).json["a"] == 1


# -- documents -----------------------------------------------------------------------------
def test_put_get_update_delete_with_revisions_and_etags(db):
    r = put(db, "/db/doc", {"a": 1}, status=201)
    rev1 = r.json["rev"]
    assert r.headers["ETag"] == f'"{rev1}"'
    got = db.get("/db/doc")
    assert got.json == {"_id": "doc", "_rev": rev1, "a": 1}
    assert got.headers["ETag"] == f'"{rev1}"' and "Last-Modified" in got.headers
    assert db.head("/db/doc").headers["ETag"] == f'"{rev1}"'
    err(put(db, "/db/doc", {"a": 2}, expect_errors=True), 409, "conflict")
    err(put(db, "/db/doc", {"a": 2, "_rev": "1-0000"}, expect_errors=True), 409, "conflict")
    rev2 = put(db, "/db/doc", {"a": 2, "_rev": rev1}, status=201).json["rev"]
    assert rev2.startswith("2-")
    assert db.get(f"/db/doc?rev={rev1}").json["a"] == 1
    err(db.delete("/db/doc", expect_errors=True), 409, "conflict")
    rev3 = db.delete(f"/db/doc?rev={rev2}").json["rev"]
    assert rev3.startswith("3-")
    r = db.get("/db/doc", expect_errors=True)
    err(r, 404, "not_found")
    assert r.json["reason"] == "deleted"
    assert db.get("/db/never", expect_errors=True).json["reason"] == "missing"
    assert db.get("/db").json["doc_del_count"] == 1


def test_rev_from_if_match_header_and_query(db):
    rev1 = put(db, "/db/doc", {"a": 1}).json["rev"]
    rev2 = put(db, "/db/doc", {"a": 2}, headers={"If-Match": f'"{rev1}"'}).json["rev"]
    rev3 = put(db, f"/db/doc?rev={rev2}", {"a": 3}).json["rev"]
    err(put(db, f"/db/doc?rev={rev3}", {"a": 4, "_rev": rev2}, expect_errors=True),
        400, "bad_request")
    db.delete("/db/doc", headers={"If-Match": f'"{rev3}"'}, status=200)


def test_if_none_match_gives_304_without_a_body(db):
    rev = put(db, "/db/doc", {"a": 1}).json["rev"]
    for tag in (f'"{rev}"', f'W/"{rev}"', f'"other", "{rev}"'):
        r = db.get("/db/doc", headers={"If-None-Match": tag}, status=304)
        assert r.body == b"" and r.headers["ETag"] == f'"{rev}"'
    assert db.get("/db/doc", headers={"If-None-Match": '"1-stale"'}).status_int == 200


def test_if_modified_since(db):
    put(db, "/db/doc", {"a": 1})
    last = db.get("/db/doc").headers["Last-Modified"]
    db.get("/db/doc", headers={"If-Modified-Since": last}, status=304)
    db.get("/db/doc", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}, status=200)


def test_revs_and_revs_info(db):
    rev1 = put(db, "/db/doc", {"a": 1}).json["rev"]
    rev2 = put(db, "/db/doc", {"a": 2, "_rev": rev1}).json["rev"]
    doc = db.get("/db/doc?revs=true&revs_info=true").json
    assert doc["_revisions"] == {"start": 2, "ids": [rev2[2:], rev1[2:]]}
    assert doc["_revs_info"] == [{"rev": rev2, "status": "available"},
                                 {"rev": rev1, "status": "available"}]
    db.post("/db/_compact", status=202)
    doc = db.get("/db/doc?revs_info=true").json
    assert doc["_revs_info"][1] == {"rev": rev1, "status": "missing"}
    err(db.get(f"/db/doc?rev={rev1}", expect_errors=True), 404, "not_found")


@pytest.mark.parametrize("docid", ["ünïcødé ключ", "a/b", "with space", "..", "%", "😀"])
def test_any_unicode_id_round_trips(db, docid):
    from urllib.parse import quote
    path = "/db/" + quote(docid, safe="")
    put(db, path, {"v": docid}, status=201)
    assert db.get(path).json["_id"] == docid
    assert docid in [row["id"] for row in db.get("/db/_all_docs").json["rows"]]


def test_design_docs_by_both_spellings_and_underscore_ids(db):
    put(db, "/db/_design/app", {"views": {}}, status=201)
    assert db.get("/db/_design%2Fapp").json["_id"] == "_design/app"
    err(put(db, "/db/_secret", {}, expect_errors=True), 400, "illegal_docid")
    err(db.get("/db/_secret", expect_errors=True), 400, "illegal_docid")


def test_local_docs_are_unversioned_and_not_in_changes_or_all_docs(db):
    r = put(db, "/db/_local/ckpt", {"seq": 1}, status=201)
    assert r.json["rev"] == "0-1"
    assert put(db, "/db/_local/ckpt", {"seq": 2, "_rev": "0-1"}).json["rev"] == "0-2"
    err(put(db, "/db/_local/ckpt", {"seq": 3}, expect_errors=True), 409, "conflict")
    assert db.get("/db/_local/ckpt").json["seq"] == 2
    assert db.get("/db/_changes").json["results"] == []
    assert db.get("/db/_all_docs").json["rows"] == []
    db.delete("/db/_local/ckpt?rev=0-2", status=200)
    db.get("/db/_local/ckpt", status=404)


def test_document_requests_leave_nothing_for_the_cycle_collector(db):
    """What a document request makes (a write, a read, a miss, a conflict, a bad
    body) is freed by reference counting as soon as it is answered: no cycles for the collector, whose passes stop a worker's every thread.
    (A request object once kept itself in its environ; a conflict's traceback held
    the whole batch.) Paths that werkzeug's router matches are left out: its matcher
    makes a closure that refers to itself, on every match."""
    put(db, "/db/taken", {"a": 1})
    wsgi = db.app
    kinds = [("PUT", "/db/new{i}", b'{"a": 1}', 201),
             ("GET", "/db/taken", b"", 200),
             ("HEAD", "/db/taken", b"", 200),
             ("POST", "/db", b'{"a": 1}', 201),
             ("GET", "/db/missing", b"", 404),
             ("PUT", "/db/taken", b'{"a": 2}', 409),
             ("PUT", "/db/bad{i}", b'{"a": ', 400),
             ("GET", "/db", b"", 200)]

    def run(rounds):
        environs = [(create_environ(path.format(i=f"{rounds}-{i}"), method=method, data=body,
                                   content_type="application/json"), status)
                    for i in range(rounds) for method, path, body, status in kinds]
        statuses = []
        gc.collect()
        gc.disable()
        try:
            for environ, _ in environs:
                seen = []
                b"".join(wsgi(environ, lambda status, headers, exc_info=None, seen=seen:
                              seen.append(int(status.split()[0]))))
                statuses.append(seen[0])
            found = gc.collect()
        finally:
            gc.enable()
        assert statuses == [status for _, status in environs]
        return found

    run(1)                                  # first calls fill caches that live on
    assert run(20) == 0


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("body,why", [
    (b"{not json", "malformed"), (b"\xff\xfe{}", "invalid UTF-8"), (b"[1,2]", "array"),
    (b"42", "number"), (b"", "empty"), (b"[" * 100 + b"]" * 100, "deep"),
    (b'{"a":' * 100 + b"1" + b"}" * 100, "deep object"), (b'{"a": 1e999}', "huge number"),
])
def test_bad_bodies_are_400_and_write_nothing(db, body, why):
    err(db.put("/db/doc", body, content_type="application/json", expect_errors=True),
        400, "bad_request")
    assert db.get("/db").json["update_seq"].startswith("0-")


def test_unknown_special_field_is_doc_validation(db):
    err(put(db, "/db/doc", {"_foo": 1}, expect_errors=True), 400, "doc_validation")


def test_body_over_the_limit_is_413(tmp_path):
    app = make_app(tmp_path, server_max_body=2048)
    app.put("/db")
    err(put(app, "/db/doc", {"x": "y" * 5000}, expect_errors=True), 413, "too_large")


def test_document_over_the_limit_is_413_alone_and_in_bulk(tmp_path):
    app = make_app(tmp_path, server_max_document=1024)
    app.put("/db")
    err(put(app, "/db/doc", {"x": "y" * 2000}, expect_errors=True), 413, "document_too_large")
    docs = [{"_id": "big", "x": "y" * 2000}, {"_id": "small"}]
    r = app.post("/db/_bulk_docs", orjson.dumps({"docs": docs}), content_type="application/json")
    assert r.json[0]["error"] == "document_too_large" and r.json[1]["ok"]
    assert app.get("/db").json["doc_count"] == 1


def test_unreadable_content_type_is_415(db):
    err(db.put("/db/doc", b"<a/>", content_type="application/xml", expect_errors=True),
        415, "bad_content_type")


def test_curl_default_form_content_type_is_read_as_json(db):
    db.put("/db/doc", b'{"a": 1}', content_type="application/x-www-form-urlencoded", status=201)


# -- representations --------------------------------------------------------------------------
def test_yaml_responses_and_yaml_bodies(db):
    db.put("/db/doc", b"a: 1\nlist: [x, y]\nwhen: 2008-03-15\n", content_type="application/yaml",
           status=201)
    for accept in ("application/yaml", "application/x-yaml", "text/yaml"):
        r = db.get("/db/doc", headers={"Accept": accept})
        assert r.content_type == "application/yaml"
        doc = yaml.safe_load(r.body)
        assert doc["a"] == 1 and doc["list"] == ["x", "y"] and doc["when"] == "2008-03-15"
    listing = yaml.safe_load(db.get("/db/_all_docs", headers={"Accept": "application/yaml"}).body)
    assert listing["total_rows"] == 1 and listing["rows"][0]["id"] == "doc"
    assert yaml.safe_load(db.get("/db/_changes", headers={"Accept": "application/yaml"}).body
                          )["results"][0]["id"] == "doc"


def test_malformed_yaml_is_400(db):
    err(db.put("/db/doc", b"a: [1, 2", content_type="application/yaml", expect_errors=True),
        400, "bad_request")


def test_html_for_browsers_json_for_everyone_else(db):
    put(db, "/db/doc", {"a": "<b>"})
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    r = db.get("/db/doc", headers={"Accept": browser})
    assert r.content_type == "text/html" and b"&lt;b&gt;" in r.body
    for accept in ("*/*", "application/json", "text/plain", "application/json;q=0.9,text/html;q=0.1"):
        assert db.get("/db/doc", headers={"Accept": accept}).content_type == "application/json"


def test_nothing_acceptable_is_406(db):
    err(db.get("/db", headers={"Accept": "image/png"}, expect_errors=True), 406, "not_acceptable")


def test_the_same_accept_headers_again_get_the_same_answers(db):
    """Choices are remembered per header text: repeats, interleaved, must not mix."""
    headers = {"application/yaml": "application/yaml", "image/png": None, "": "application/json",
               "text/html": "text/html", "application/json;q=0,text/yaml": "application/yaml"}
    for _ in range(3):
        for accept, kind in headers.items():
            r = db.get("/db", headers={"Accept": accept}, expect_errors=True)
            if kind is None:
                assert r.status_int == 406
            else:
                assert r.status_int == 200 and r.content_type == kind, accept


# -- _all_docs ----------------------------------------------------------------------------------
@pytest.fixture
def abc(db):
    for key in "abcde":
        put(db, f"/db/{key}", {"v": key})
    return db


def ids(r):
    return [row["id"] for row in r.json["rows"]]


def test_all_docs_ranges_limit_skip_descending(abc):
    assert ids(abc.get("/db/_all_docs")) == list("abcde")
    assert abc.get("/db/_all_docs").json["total_rows"] == 5
    assert ids(abc.get('/db/_all_docs?startkey="b"&endkey="d"')) == list("bcd")
    assert ids(abc.get('/db/_all_docs?start_key="b"&end_key="d"&inclusive_end=false')) == list("bc")
    assert ids(abc.get("/db/_all_docs?limit=2&skip=1")) == list("bc")
    assert ids(abc.get('/db/_all_docs?descending=true&startkey="d"&endkey="b"')) == list("dcb")
    assert ids(abc.get('/db/_all_docs?descending=true&startkey="d"&endkey="b"'
                       '&inclusive_end=false')) == list("dc")
    assert ids(abc.get('/db/_all_docs?key="c"')) == ["c"]
    docs = abc.get("/db/_all_docs?include_docs=true&limit=1").json["rows"][0]["doc"]
    assert docs["v"] == "a" and docs["_rev"].startswith("1-")


def test_all_docs_keys_by_get_and_post_with_missing_and_deleted(abc):
    rev = abc.get("/db/e").json["_rev"]
    abc.delete(f"/db/e?rev={rev}")
    rows = abc.post("/db/_all_docs", orjson.dumps({"keys": ["c", "zz", "e", "a"]}),
                    content_type="application/json").json["rows"]
    assert rows[0]["id"] == "c"
    assert rows[1] == {"key": "zz", "error": "not_found"}
    assert rows[2]["value"]["deleted"] is True
    assert rows[3]["id"] == "a"
    assert ids(abc.get('/db/_all_docs?keys=["b","a"]')) == ["b", "a"]


@pytest.mark.parametrize("query", ["limit=abc", "skip=-1", "descending=maybe",
                                   "startkey=notjson", "keys=%7B%7D", "include_docs=2x"])
def test_all_docs_bad_parameters_are_400(abc, query):
    err(abc.get("/db/_all_docs?" + query, expect_errors=True), 400, "bad_request")


def test_design_docs_listing(abc):
    put(abc, "/db/_design/x", {})
    assert ids(abc.get("/db/_design_docs")) == ["_design/x"]


# -- bulk ------------------------------------------------------------------------------------------
def test_bulk_docs_reports_each_item(db):
    rev = put(db, "/db/exists", {}).json["rev"]
    docs = [{"_id": "new"}, {"_id": "exists"}, {"_id": "exists", "_rev": rev, "x": 1},
            {"no_id": True}]
    r = db.post("/db/_bulk_docs", orjson.dumps({"docs": docs}), content_type="application/json",
                status=201).json
    assert r[0]["ok"] and r[0]["id"] == "new"
    assert r[1] == {"id": "exists", "error": "conflict", "reason": "Document update conflict."}
    assert r[2]["ok"] and r[2]["rev"].startswith("2-")
    assert r[3]["ok"] and len(r[3]["id"]) == 32
    assert db.get("/db").json["doc_count"] == 3


@pytest.mark.parametrize("bad, error", [
    ("not an object", "bad_request"), ({"_id": "_bad"}, "illegal_docid"),
    ({"_id": 5}, "illegal_docid"), ({"_id": "x", "_foo": 1}, "doc_validation"),
    ({"_id": "x", "_rev": "bad"}, "bad_request"),
    ({"_id": "x", "_attachments": {"_a": {"data": ""}}}, "bad_request"),
])
def test_bulk_docs_with_a_malformed_document_is_a_400_writing_nothing(db, bad, error):
    """As CouchDB: every item is checked (doc_from_json_obj_validate) before any is written."""
    r = db.post("/db/_bulk_docs", orjson.dumps({"docs": [{"_id": "good"}, bad]}),
                content_type="application/json", expect_errors=True)
    err(r, 400, error)
    assert db.get("/db").json["doc_count"] == 0


def test_bulk_docs_new_edits_false_needs_revisions(db):
    r = db.post("/db/_bulk_docs", orjson.dumps({"docs": [{"_id": "a"}], "new_edits": False}),
                content_type="application/json", expect_errors=True)
    err(r, 400, "bad_request")
    assert "_rev" in r.json["reason"]


def test_bulk_docs_new_edits_false_stores_revisions_as_given_and_makes_conflicts(db):
    a = {"_id": "d", "_rev": "1-aaa", "v": "a"}
    b = {"_id": "d", "_rev": "1-bbb", "v": "b"}
    r = db.post("/db/_bulk_docs", orjson.dumps({"docs": [a, b], "new_edits": False}),
                content_type="application/json", status=201)
    assert r.json == []
    doc = db.get("/db/d?conflicts=true").json
    assert doc["_rev"] == "1-bbb" and doc["_conflicts"] == ["1-aaa"]
    assert db.get("/db/d?rev=1-aaa").json["v"] == "a"
    all_revs = db.get("/db/d?open_revs=all").json
    assert sorted(x["ok"]["_rev"] for x in all_revs) == ["1-aaa", "1-bbb"]
    db.delete("/db/d?rev=1-aaa")
    assert "_conflicts" not in db.get("/db/d?conflicts=true").json


def test_bulk_docs_bad_bodies(db):
    err(db.post("/db/_bulk_docs", b'{"documents": []}', content_type="application/json",
                expect_errors=True), 400, "bad_request")
    err(db.post("/db/_bulk_docs", b'{"docs": [], "new_edits": "no"}',
                content_type="application/json", expect_errors=True), 400, "bad_request")


def test_bulk_get_and_revs_diff(db):
    rev = put(db, "/db/a", {"v": 1}).json["rev"]
    body = {"docs": [{"id": "a"}, {"id": "a", "rev": rev}, {"id": "nope"}, {"rev": "x"}]}
    results = db.post("/db/_bulk_get?revs=true", orjson.dumps(body),
                      content_type="application/json").json["results"]
    assert results[0]["docs"][0]["ok"]["v"] == 1
    assert results[1]["docs"][0]["ok"]["_revisions"]["start"] == 1
    assert results[2]["docs"][0]["error"]["error"] == "not_found"
    assert results[3]["docs"][0]["error"]["error"] == "bad_request"
    diff = db.post("/db/_revs_diff", orjson.dumps({"a": [rev, "2-zzz"], "b": ["1-x"]}),
                   content_type="application/json").json
    assert diff == {"a": {"missing": ["2-zzz"], "possible_ancestors": [rev]},
                    "b": {"missing": ["1-x"]}}


def test_deleted_leaves_are_listed_and_never_win_over_a_live_one(db):
    """Leaves 1-b1 (live) and 3-a3 (deleted): CouchDB shows 1-b1, and lists 3-a3 as a
    deleted conflict, in open_revs=all and in _changes' all_docs style."""
    docs = [{"_id": "d", "_rev": "3-a3", "_deleted": True,
             "_revisions": {"start": 3, "ids": ["a3", "a2", "a1"]}},
            {"_id": "d", "_rev": "1-b1", "v": "b"}]
    db.post("/db/_bulk_docs", orjson.dumps({"docs": docs, "new_edits": False}),
            content_type="application/json", status=201)
    doc = db.get("/db/d?deleted_conflicts=true&conflicts=true").json
    assert doc == {"_id": "d", "_rev": "1-b1", "v": "b", "_deleted_conflicts": ["3-a3"]}
    assert db.get("/db/d?meta=true").json["_deleted_conflicts"] == ["3-a3"]
    leaves = db.get("/db/d?open_revs=all").json
    assert [x["ok"]["_rev"] for x in leaves] == ["1-b1", "3-a3"]
    assert leaves[1]["ok"].get("_deleted") is True
    rows = db.get("/db/_changes?style=all_docs").json["results"]
    assert [(r["id"], r["changes"]) for r in rows] == [("d", [{"rev": "1-b1"}, {"rev": "3-a3"}])]
    assert db.get("/db/d?rev=3-a3&revs_info=true").json["_revs_info"] == [
        {"rev": "3-a3", "status": "deleted"}, {"rev": "2-a2", "status": "missing"},
        {"rev": "1-a1", "status": "missing"}]
    diff = db.post("/db/_revs_diff", orjson.dumps({"d": ["2-a2", "4-x"]}),
                   content_type="application/json").json
    assert diff == {"d": {"missing": ["4-x"], "possible_ancestors": ["1-b1", "3-a3"]}}


# -- changes -----------------------------------------------------------------------------------
def test_changes_normal_feed(abc):
    r = abc.get("/db/_changes").json
    assert [c["id"] for c in r["results"]] == list("abcde")
    assert r["last_seq"].startswith("5-") and all(isinstance(c["seq"], str) for c in r["results"])
    rev = abc.get("/db/a").json["_rev"]
    put(abc, "/db/a", {"_rev": rev, "v": "A"})
    r = abc.get("/db/_changes?since=3").json
    assert [c["id"] for c in r["results"]] == ["d", "e", "a"]
    assert [c["id"] for c in abc.get("/db/_changes?limit=2").json["results"]] == ["b", "c"]
    assert abc.get("/db/_changes?descending=true&limit=1").json["results"][0]["id"] == "a"
    docs = abc.get("/db/_changes?include_docs=true&since=5").json["results"]
    assert docs[0]["doc"]["v"] == "A"
    picked = abc.get('/db/_changes?filter=_doc_ids&doc_ids=["c","e"]').json["results"]
    assert [c["id"] for c in picked] == ["c", "e"]
    assert abc.get("/db/_changes?since=now").json["results"] == []


def test_changes_filtered_by_selector_and_by_view(abc):
    body = orjson.dumps({"selector": {"v": {"$in": ["b", "d"]}}})
    r = abc.post("/db/_changes?filter=_selector", body, content_type="application/json")
    assert [c["id"] for c in r.json["results"]] == ["b", "d"]
    ddoc = {"language": "python", "views": {"ac": {
        "map": "def fun(doc):\n    if doc.get('v') in ('a', 'c'):\n        yield doc['v'], 1"}}}
    put(abc, "/db/_design/f", ddoc)
    r = abc.get("/db/_changes?filter=_view&view=f/ac")
    assert [c["id"] for c in r.json["results"]] == ["a", "c"]
    err(abc.post("/db/_changes?filter=_selector", b"{}", content_type="application/json",
                 expect_errors=True), 400, "bad_request")
    err(abc.post("/db/_changes?filter=_selector", orjson.dumps({"selector": {"v": {"$x": 1}}}),
                 content_type="application/json", expect_errors=True), 400, "invalid_operator")


def test_changes_bad_parameters(abc):
    err(abc.get("/db/_changes?since=abc", expect_errors=True), 400, "bad_request")
    err(abc.get("/db/_changes?feed=sometimes", expect_errors=True), 400, "bad_request")
    err(abc.get("/db/_changes?filter=app/nope", expect_errors=True), 404, "not_found")
    err(abc.get("/db/_changes?heartbeat=xyz", expect_errors=True), 400, "bad_request")


def test_longpoll_times_out_empty_and_wakes_on_a_write(db, monkeypatch):
    start = time.monotonic()
    r = db.get("/db/_changes?feed=longpoll&since=now&timeout=300")
    assert r.json["results"] == [] and time.monotonic() - start >= 0.25

    from settee.server import changes
    waiting, wait_in_place = threading.Event(), changes.wait_in_place

    def wait_and_tell(*args):
        waiting.set()
        return wait_in_place(*args)
    monkeypatch.setattr(changes, "wait_in_place", wait_and_tell)

    def later():                         # the write comes while the feed waits
        waiting.wait(10)
        put(db, "/db/wake", {})

    writer = threading.Thread(target=later)
    writer.start()
    start = time.monotonic()
    r = db.get("/db/_changes?feed=longpoll&since=0&timeout=10000")
    writer.join(10)
    assert waiting.is_set(), "the feed did not wait"
    assert [c["id"] for c in r.json["results"]] == ["wake"]
    assert time.monotonic() - start < 5


def test_continuous_feed_ends_after_timeout_with_last_seq(abc):
    lines = abc.get("/db/_changes?feed=continuous&timeout=200").body.splitlines()
    rows = [orjson.loads(line) for line in lines if line.strip()]
    assert [r["id"] for r in rows[:-1]] == list("abcde")
    assert rows[-1]["last_seq"].startswith("5-")


def test_eventsource_feed(abc):
    body = abc.get("/db/_changes?feed=eventsource&timeout=100&limit=2").body
    assert body.count(b"data: ") == 2 and b"id: 2" in body


# -- maintenance -----------------------------------------------------------------------------------
def test_revs_limit(db):
    assert db.get("/db/_revs_limit").json == 1000
    db.put("/db/_revs_limit", b"2", content_type="application/json")
    assert db.get("/db/_revs_limit").json == 2
    err(db.put("/db/_revs_limit", b'"x"', content_type="application/json", expect_errors=True),
        400, "bad_request")


def test_an_invoices_database_is_a_plain_database_by_default(app):
    app.put("/invoices", status=201)
    put(app, "/invoices/x", {"anything": "goes"}, status=201)
    app.get("/invoices/_view/ar_by_accounting_code", status=404)


def test_the_invoice_demo_validates_naming_every_bad_field(tmp_path):
    app = make_app(tmp_path, examples=["invoices"])
    app.put("/invoices")
    bad = {"payments": [{"type": "VISA", "amount": "lots"}],
           "lineItems": [{"description": "x", "amount": "many", "allocation": {}}]}
    r = put(app, "/invoices/inv1", bad, expect_errors=True)
    err(r, 403, "forbidden")
    assert "payments.0.amount" in r.json["reason"] and "lineItems.0.amount" in r.json["reason"]
    good = {"payments": [{"type": "VISA", "amount": 14.0}],
            "lineItems": [{"description": "Dive into Python", "amount": 17.0,
                           "allocation": {"code1": {"amount": 5.0, "paid": 5.0}}}]}
    put(app, "/invoices/inv1", good, status=201)


def test_prometheus_metrics(db):
    put(db, "/db/doc", {"a": 1})
    db.get("/db/doc")
    text = db.get("/_node/_local/_prometheus").text
    assert 'settee_http_requests_total{method="PUT",status="201"}' in text
    assert "settee_http_request_duration_seconds_bucket" in text
    assert 'settee_documents{db="db"} 1.0' in text
    assert "settee_databases 1.0" in text and 'settee_disk_bytes{kind="free"}' in text
    assert "settee_process_resident_memory_bytes" in text
    assert db.get("/_metrics").status_int == 200


def test_the_direct_routes_give_the_maps_answers(tmp_path):
    """``/{db}`` and ``/{db}/{docid}`` are matched without the URL map: same answers."""
    from werkzeug.exceptions import HTTPException
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from settee.server.app import routing_path
    app = make_app(tmp_path).app
    paths = ["/db", "/db%2Fsub", "/_all_dbs", "/_users", "/db/doc", "/db/doc%2Fx", "/db/_all_docs",
             "/db/_design/x", "/db/_local/y", "/a-b_c$()+-", "/db/", "/", "/_up", "/db/doc/att"]
    for path in paths:
        for method in ("GET", "HEAD", "PUT", "DELETE", "POST", "COPY", "PATCH"):
            environ = EnvironBuilder(path=path, method=method).get_environ()
            environ["RAW_URI"] = path
            request, routed = Request(environ), routing_path(environ)
            adapter = app.url_map.bind_to_environ(environ)
            try:
                expected = adapter.match(path_info=routed, method=method)
            except HTTPException as e:
                expected = type(e)
            try:
                got = app.route(request, routed)
            except HTTPException as e:
                got = type(e)
            assert got == expected, (method, path)


def test_sequences_are_couchdb_2_strings_and_come_back_as_since(abc):
    """seq, last_seq and update_seq are "N-<opaque>" strings (PouchDB checkpoints
    expect them), the same for a database whatever the feed; since takes them back,
    plain numbers too, and Last-Event-ID is since's alias."""
    info = abc.get("/db").json
    rows = abc.get("/db/_changes").json
    n, token = info["update_seq"].split("-", 1)
    assert n == "5" and token and rows["last_seq"] == info["update_seq"]
    assert [r["seq"].split("-", 1)[1] for r in rows["results"]] == [token] * 5
    third = rows["results"][2]["seq"]
    after = abc.get("/db/_changes?since=" + third).json["results"]
    assert [r["seq"] for r in after] == [r["seq"] for r in rows["results"][3:]]
    assert abc.get("/db/_changes?since=3").json["results"] == after
    assert abc.get("/db/_changes", headers={"Last-Event-ID": third}).json["results"] == after
    err(abc.get("/db/_changes?since=x-1", expect_errors=True), 400, "bad_request")


def test_the_normal_and_longpoll_feeds_keep_couchdbs_line_layout(abc):
    """One result per line, the closing bracket on its own line, last_seq on the next:
    clients such as python-cloudant read these feeds line by line."""
    for feed in ("normal", "longpoll"):
        text = abc.get(f"/db/_changes?feed={feed}").text
        lines = text.split("\n")
        assert lines[0] == '{"results":[', (feed, text)
        assert all(orjson.loads(line.rstrip(","))["id"] for line in lines[1:6]), (feed, text)
        assert lines[6] == "],", (feed, text)
        assert lines[7].startswith('"last_seq":"5-') and lines[7].endswith("}"), (feed, text)
