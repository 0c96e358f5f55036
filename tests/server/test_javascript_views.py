"""JavaScript design documents over HTTP, as CouchDB's clients write them: a database
admin saves one, its views answer with reduce, group, group_level and key ranges."""
from __future__ import annotations

import base64
import json
from urllib.parse import quote

import orjson
import pytest
from httpclient import make_app


def basic(name: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


ADMIN = basic("admin", "pw")
DBA = basic("dba", "pw")

DESIGN = {
    "views": {
        "by_type": {"map": "function (doc) { if (doc.type) emit([doc.type, doc.n], doc.n); }",
                    "reduce": "_sum"},
        "stats": {"map": "function (doc) { if (doc.type) emit(doc.type, "
                         "require('views/lib/score').of(doc)); }",
                  "reduce": "function (keys, values, rereduce) {\n"
                            "  return rereduce ? Math.max.apply(null, values)\n"
                            "                  : Math.max.apply(null, values); }"},
        "lib": {"score": "exports.of = function (doc) { return doc.n * 10; };"},
    },
}


def put(app, path, body, **kw):
    return app.put(path, orjson.dumps(body), content_type="application/json",
                   expect_errors=True, **kw)


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, auth_admin_user="admin", auth_admin_password="pw",
                   auth_pbkdf2_iterations=10, js_timeout=0.5)
    assert app.put("/db", headers=ADMIN).status_int == 201
    user = {"name": "dba", "type": "user", "roles": [], "password": "pw"}
    assert put(app, "/_users/org.couchdb.user:dba", user, headers=ADMIN).status_int == 201
    assert put(app, "/db/_security", {"admins": {"names": ["dba"]}},
               headers=ADMIN).status_int == 200
    docs = [{"_id": f"d{n:02d}", "type": ("apple", "pear", "plum")[n % 3], "n": n}
            for n in range(12)]
    r = app.post("/db/_bulk_docs", orjson.dumps({"docs": docs}),
                 content_type="application/json", headers=DBA)
    assert r.status_int == 201
    return app


def view(app, name, **params):
    """GET a view of _design/app, each parameter's value as JSON (CouchDB's rule)."""
    query = "&".join(f"{k}={quote(json.dumps(v))}" for k, v in params.items())
    return app.get(f"/db/_design/app/_view/{name}?{query}", headers=DBA)


def test_a_database_admin_saves_a_javascript_design_document_and_queries_it(app):
    r = put(app, "/db/_design/app", DESIGN, headers=DBA)
    assert r.status_int == 201, r.body
    total = view(app, "by_type").json
    assert total["rows"] == [{"key": None, "value": sum(range(12))}]
    grouped = view(app, "by_type", group_level=1).json["rows"]
    assert grouped == [{"key": [t], "value": sum(n for n in range(12) if n % 3 == i)}
                       for i, t in enumerate(("apple", "pear", "plum"))]
    exact = view(app, "by_type", group=True, limit=2).json["rows"]
    assert exact == [{"key": ["apple", 0], "value": 0}, {"key": ["apple", 3], "value": 3}]
    rows = view(app, "by_type", reduce=False, startkey=["pear"], endkey=["pear", {}]).json
    assert [r["id"] for r in rows["rows"]] == ["d01", "d04", "d07", "d10"]
    assert rows["total_rows"] == 12 and rows["offset"] == 0
    desc = view(app, "by_type", reduce=False, descending=True, limit=1, include_docs=True)
    assert desc.json["rows"][0]["id"] == "d11" and desc.json["rows"][0]["doc"]["n"] == 11
    js_reduced = view(app, "stats", group=True).json["rows"]
    assert js_reduced == [{"key": "apple", "value": 90}, {"key": "pear", "value": 100},
                          {"key": "plum", "value": 110}]
    assert view(app, "stats").json["rows"] == [{"key": None, "value": 110}]


def test_writes_reach_the_view_and_its_etag(app):
    assert put(app, "/db/_design/app", DESIGN, headers=DBA).status_int == 201
    first = view(app, "by_type", group_level=1)
    etag = first.headers["ETag"]
    again = app.get("/db/_design/app/_view/by_type?group_level=1",
                    headers={**DBA, "If-None-Match": etag}, expect_errors=True)
    assert again.status_int == 304
    assert put(app, "/db/new", {"type": "apple", "n": 100}, headers=DBA).status_int == 201
    after = view(app, "by_type", group_level=1)
    assert after.headers["ETag"] != etag
    assert after.json["rows"][0] == {"key": ["apple"], "value": 0 + 3 + 6 + 9 + 100}


def test_a_design_document_that_does_not_compile_is_refused(app):
    bad = {"views": {"v": {"map": "function (doc) { emit(doc.a, ; }"}}}
    r = put(app, "/db/_design/bad", bad, headers=DBA)
    assert r.status_int == 400 and r.json["error"] == "compilation_error", r.body
    assert "map of bad/v: SyntaxError" in r.json["reason"]
    r = put(app, "/db/_design/bad", {**bad, "language": "erlang"}, headers=ADMIN)
    assert r.status_int == 400 and "'erlang'" in r.json["reason"], r.body
    assert app.get("/db/_design/bad", headers=DBA, expect_errors=True).status_int == 404


def test_a_runaway_map_answers_a_clear_error_and_a_fixed_design_works(app):
    spin = {"views": {"v": {"map": "function (doc) { while (doc.n === 5) {} emit(doc.n, 1); }"}}}
    r = put(app, "/db/_design/spin", spin, headers=DBA)
    assert r.status_int == 201
    r = app.get("/db/_design/spin/_view/v", headers=DBA, expect_errors=True)
    assert r.status_int == 500 and r.json["error"] == "os_process_error", r.body
    assert "_design/spin" in r.json["reason"] and "js_timeout" in r.json["reason"]
    fixed = {**spin, "_rev": app.get("/db/_design/spin", headers=DBA).json["_rev"]}
    fixed["views"] = {"v": {"map": "function (doc) { if (doc.n !== 5) emit(doc.n, 1); }"}}
    assert put(app, "/db/_design/spin", fixed, headers=DBA).status_int == 201
    r = app.get("/db/_design/spin/_view/v?limit=3", headers=DBA)
    assert [row["key"] for row in r.json["rows"]] == [0, 1, 2] and r.json["total_rows"] == 11
