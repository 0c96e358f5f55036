"""validate_doc_update on every write path, as CouchDB runs it: design documents in id
order, newDoc/oldDoc/userCtx/secObj, forbidden 403, unauthorized 401, anything else
thrown 500 unknown_error; per-document errors in _bulk_docs (replicated writes too)."""
from __future__ import annotations

import base64
import json
import warnings

import orjson
import pytest
from httpclient import make_app

from settee.server.bulk import BULK_CHUNK


def basic(name: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


ADMIN = basic("admin", "pw")
DBA = basic("dba", "pw")
BOB = basic("bob", "pw")

NEEDS_AUTHOR = """function (newDoc, oldDoc, userCtx, secObj) {
  if (newDoc._deleted) {
    if (userCtx.roles.indexOf("_admin") === -1 && secObj.admins.names.indexOf(userCtx.name) === -1)
      throw({unauthorized: "only admins delete"});
    return;
  }
  if (!newDoc.author) throw({forbidden: "documents need an author"});
  if (newDoc.author !== userCtx.name) throw({forbidden: "author must be " + userCtx.name});
  if (oldDoc && oldDoc.author !== newDoc.author) throw({forbidden: "the author stays"});
  if (newDoc.crash) newDoc.crash.deeper.still;
  if (newDoc.other) throw("plain text");
}"""


def send(app, method, path, body=None, headers=None, **kw):
    data = orjson.dumps(body) if body is not None and not isinstance(body, bytes) else body
    with warnings.catch_warnings():          # webtest's lint: "Unknown REQUEST_METHOD: COPY"
        warnings.simplefilter("ignore")
        return app.request(path, method=method, body=data or b"", headers=headers or {},
                           content_type=kw.pop("content_type", "application/json"),
                           expect_errors=True, **kw)


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, auth_admin_user="admin", auth_admin_password="pw",
                   auth_pbkdf2_iterations=10, js_timeout=0.5)
    assert send(app, "PUT", "/db", headers=ADMIN).status_int == 201
    for name in ("dba", "bob"):
        user = {"name": name, "type": "user", "roles": [], "password": "pw"}
        assert send(app, "PUT", f"/_users/org.couchdb.user:{name}", user,
                    ADMIN).status_int == 201
    security = {"admins": {"names": ["dba"]}, "members": {"names": ["bob"]}}
    assert send(app, "PUT", "/db/_security", security, ADMIN).status_int == 200
    r = send(app, "PUT", "/db/_design/auth", {"validate_doc_update": NEEDS_AUTHOR}, DBA)
    assert r.status_int == 201, r.body
    return app


def test_a_put_is_refused_or_let_through_as_the_function_says(app):
    r = send(app, "PUT", "/db/a", {"title": "x"}, BOB)
    assert (r.status_int, r.json) == (403, {"error": "forbidden",
                                           "reason": "documents need an author"})
    assert send(app, "PUT", "/db/a", {"author": "dba"}, BOB).json["reason"] == \
        "author must be bob"
    r = send(app, "PUT", "/db/a", {"author": "bob"}, BOB)
    assert r.status_int == 201
    assert send(app, "GET", "/db/a", headers=BOB).json["author"] == "bob"


def test_old_doc_is_the_revision_replaced(app):
    rev = send(app, "PUT", "/db/a", {"author": "bob"}, BOB).json["rev"]
    r = send(app, "PUT", "/db/a", {"author": "dba", "_rev": rev}, DBA)
    assert (r.status_int, r.json["reason"]) == (403, "the author stays")


def test_unauthorized_is_401_and_other_throws_are_couchdbs_500(app):
    rev = send(app, "PUT", "/db/a", {"author": "bob"}, BOB).json["rev"]
    r = send(app, "DELETE", f"/db/a?rev={rev}", headers=BOB)
    assert (r.status_int, r.json) == (401, {"error": "unauthorized",
                                           "reason": "only admins delete"})
    assert send(app, "DELETE", f"/db/a?rev={rev}", headers=DBA).status_int == 200
    r = send(app, "PUT", "/db/b", {"author": "bob", "other": 1}, BOB)
    assert (r.status_int, r.json) == (500, {"error": "unknown_error", "reason": "plain text"})
    r = send(app, "PUT", "/db/b", {"author": "bob", "crash": 1}, BOB)
    assert r.status_int == 500 and r.json["error"] == "unknown_error"
    assert r.json["reason"].startswith("TypeError")


def test_post_copy_and_attachments_are_validated(app):
    r = send(app, "POST", "/db", {"title": "no author"}, BOB)
    assert r.status_int == 403
    r = send(app, "POST", "/db", {"author": "bob"}, BOB)
    assert r.status_int == 201
    docid, rev = r.json["id"], r.json["rev"]
    r = send(app, "COPY", f"/db/{docid}", headers={**DBA, "Destination": "copied"})
    assert (r.status_int, r.json["reason"]) == (403, "author must be dba")
    r = send(app, "COPY", f"/db/{docid}", headers={**BOB, "Destination": "copied"})
    assert r.status_int == 201
    r = send(app, "PUT", f"/db/{docid}/note.txt?rev={rev}", b"hello", DBA,
             content_type="text/plain")
    assert (r.status_int, r.json["reason"]) == (403, "author must be dba")
    r = send(app, "PUT", f"/db/{docid}/note.txt?rev={rev}", b"hello", BOB,
             content_type="text/plain")
    assert r.status_int == 201
    r = send(app, "PUT", "/db/fresh/note.txt", b"hello", BOB, content_type="text/plain")
    assert (r.status_int, r.json["reason"]) == (403, "documents need an author")


def test_bulk_docs_answers_each_documents_refusal(app):
    docs = [{"_id": "ok", "author": "bob"}, {"_id": "bad"}, {"author": "dba"},
            {"_id": "odd", "author": "bob", "other": 1}]
    r = send(app, "POST", "/db/_bulk_docs", {"docs": docs}, BOB)
    assert r.status_int == 201
    results = r.json
    assert results[0]["ok"] and results[0]["id"] == "ok"
    assert results[1] == {"id": "bad", "error": "forbidden",
                          "reason": "documents need an author"}
    assert results[2]["error"] == "forbidden" and results[2]["id"]     # given an id
    assert results[3] == {"id": "odd", "error": "unknown_error", "reason": "plain text"}
    assert send(app, "GET", "/db/bad", headers=BOB).status_int == 404


def test_replicated_writes_are_validated(app):
    docs = [{"_id": "r1", "_rev": "1-aaaa", "author": "bob"},
            {"_id": "r2", "_rev": "1-bbbb", "title": "no author"}]
    r = send(app, "POST", "/db/_bulk_docs", {"docs": docs, "new_edits": False}, BOB)
    assert r.status_int == 201
    assert r.json == [{"id": "r2", "error": "forbidden", "reason": "documents need an author"}]
    assert send(app, "GET", "/db/r1", headers=BOB).json["_rev"] == "1-aaaa"
    assert send(app, "GET", "/db/r2", headers=BOB).status_int == 404


def test_every_design_document_runs_in_id_order(app):
    first = {"validate_doc_update": "function (n) { if (n.x === 1) throw({forbidden: 'a says no'}); }"}
    last = {"validate_doc_update": "function (n) { throw({forbidden: 'z says no'}); }"}
    assert send(app, "PUT", "/db/_design/zzz", last, ADMIN).status_int == 201
    assert send(app, "PUT", "/db/_design/a", first, ADMIN).status_int == 201
    # _design/a, then _design/auth, then _design/zzz
    assert send(app, "PUT", "/db/d", {"x": 1}, BOB).json["reason"] == "a says no"
    assert send(app, "PUT", "/db/d", {"x": 2}, BOB).json["reason"] == "documents need an author"
    assert send(app, "PUT", "/db/d", {"x": 2, "author": "bob"}, BOB).json["reason"] == \
        "z says no"


def test_server_admins_design_writes_are_not_validated_database_admins_are(app):
    ddoc = {"views": {"v": {"map": "function (doc) { emit(doc._id, 1); }"}}}
    r = send(app, "PUT", "/db/_design/other", ddoc, DBA)
    assert (r.status_int, r.json["reason"]) == (403, "documents need an author")
    assert send(app, "PUT", "/db/_design/other", ddoc, ADMIN).status_int == 201
    r = send(app, "POST", "/db/_index", {"index": {"fields": ["author"]}, "ddoc": "mango"}, DBA)
    assert (r.status_int, r.json["reason"]) == (403, "documents need an author")
    r = send(app, "POST", "/db/_index", {"index": {"fields": ["author"]}, "ddoc": "mango"}, ADMIN)
    assert r.status_int == 200 and r.json["result"] == "created"
    # _local documents are never validated
    assert send(app, "PUT", "/db/_local/checkpoint", {"seq": 1}, BOB).status_int == 201


def test_user_ctx_and_sec_obj_are_couchdbs(app):
    echo = {"validate_doc_update": "function (n, o, u, s) { if (n.echo) "
                                   "throw({forbidden: JSON.stringify([u, s])}); }"}
    assert send(app, "PUT", "/db/_design/echo", echo, ADMIN).status_int == 201
    r = send(app, "PUT", "/db/e", {"echo": 1, "author": "bob"}, BOB)
    user_ctx, sec_obj = json.loads(r.json["reason"])
    assert user_ctx == {"db": "db", "name": "bob", "roles": []}
    assert sec_obj == {"admins": {"names": ["dba"]}, "members": {"names": ["bob"]}}


def test_a_validation_that_does_not_compile_is_refused_at_save(app):
    r = send(app, "PUT", "/db/_design/broken", {"validate_doc_update": "function (n) {"}, DBA)
    assert (r.status_int, r.json["error"]) == (400, "compilation_error")


def test_a_batch_is_one_call_per_design_document(app, js_calls):
    calls = js_calls
    docs = [{"_id": f"n{i}", "author": "bob"} for i in range(BULK_CHUNK + 44)]
    r = send(app, "POST", "/db/_bulk_docs", {"docs": docs}, BOB)
    assert all(row.get("ok") for row in r.json)
    assert calls.count("__setteeRender.validate") == 2        # two chunks


def test_python_design_documents_validate_in_python(app):
    source = ("def fun(new_doc, old_doc, user_ctx, sec_obj):\n"
              "    if new_doc.get('py') == 'no':\n"
              "        raise Forbidden('python says no')\n"
              "    if new_doc.get('py') == 'who':\n"
              "        raise Unauthorized('python asks who')\n"
              "    if new_doc.get('py') == 'bug':\n"
              "        return 1 / 0\n")
    ddoc = {"language": "python", "validate_doc_update": source}
    assert send(app, "PUT", "/db/_design/py", ddoc, DBA).status_int == 403   # server admins only
    assert send(app, "PUT", "/db/_design/py", ddoc, ADMIN).status_int == 201
    base = {"author": "bob"}
    assert send(app, "PUT", "/db/p", {**base, "py": "no"}, BOB).json == \
        {"error": "forbidden", "reason": "python says no"}
    assert send(app, "PUT", "/db/p", {**base, "py": "who"}, BOB).status_int == 401
    r = send(app, "PUT", "/db/p", {**base, "py": "bug"}, BOB)
    assert r.status_int == 500 and r.json["reason"].startswith("ZeroDivisionError")
    assert send(app, "PUT", "/db/p", {**base, "py": "yes"}, BOB).status_int == 201
