"""Attachments: inline (base64, stubs) and standalone (any content type)."""
from __future__ import annotations

import base64

import orjson
import pytest
from httpclient import make_app, request


@pytest.fixture
def db(tmp_path):
    app = make_app(tmp_path)
    app.put("/db")
    return app


def test_standalone_put_get_delete(db):
    r = db.put("/db/doc/photo.png", b"\x89PNG...", content_type="image/png", status=201)
    rev = r.json["rev"]
    got = db.get("/db/doc/photo.png")
    assert got.body == b"\x89PNG..." and got.content_type == "image/png"
    doc = db.get("/db/doc").json
    stub = doc["_attachments"]["photo.png"]
    assert stub["stub"] is True and stub["length"] == 7 and "data" not in stub
    assert stub["digest"].startswith("md5-") and stub["revpos"] == 1
    full = db.get("/db/doc?attachments=true").json["_attachments"]["photo.png"]
    assert base64.b64decode(full["data"]) == b"\x89PNG..."
    r = db.put(f"/db/doc/dir/notes.txt?rev={rev}", b"hello", content_type="text/plain")
    assert db.get("/db/doc/dir/notes.txt").body == b"hello"
    rev = r.json["rev"]
    db.delete(f"/db/doc/photo.png?rev={rev}", status=200)
    db.get("/db/doc/photo.png", status=404)
    assert db.get("/db/doc/dir/notes.txt").body == b"hello"


def test_attachment_writes_need_the_current_rev(db):
    rev = db.put("/db/doc/a", b"1", content_type="text/plain").json["rev"]
    r = db.put("/db/doc/b", b"2", content_type="text/plain", expect_errors=True)
    assert r.status_int == 409
    db.put(f"/db/doc/b?rev={rev}", b"2", content_type="text/plain", status=201)


def test_inline_attachments_and_stubs_on_update(db):
    data = base64.b64encode(b"inline bytes").decode()
    body = {"title": "x", "_attachments": {"a.txt": {"content_type": "text/plain", "data": data}}}
    rev = db.put("/db/doc", orjson.dumps(body), content_type="application/json").json["rev"]
    doc = db.get("/db/doc").json
    doc["title"] = "y"                              # the client sends the stub back
    db.put("/db/doc", orjson.dumps(doc), content_type="application/json", status=201)
    assert db.get("/db/doc/a.txt").body == b"inline bytes"
    assert db.get(f"/db/doc/a.txt?rev={rev}").body == b"inline bytes"
    bad = {"_rev": db.get("/db/doc").json["_rev"],
           "_attachments": {"nope": {"stub": True, "content_type": "text/plain"}}}
    r = db.put("/db/doc", orjson.dumps(bad), content_type="application/json", expect_errors=True)
    assert r.status_int == 412 and r.json["error"] == "missing_stub"
    bad = {"_attachments": {"x": {"content_type": "text/plain", "data": "***"}}}
    r = db.put("/db/other", orjson.dumps(bad), content_type="application/json", expect_errors=True)
    assert r.status_int == 400


def test_listings_carry_stubs_not_data(db):
    data = base64.b64encode(b"z" * 100).decode()
    body = {"_attachments": {"z": {"content_type": "text/plain", "data": data}}}
    db.put("/db/doc", orjson.dumps(body), content_type="application/json")
    row = db.get("/db/_all_docs?include_docs=true").json["rows"][0]
    assert row["doc"]["_attachments"]["z"]["stub"] is True
    change = db.get("/db/_changes?include_docs=true").json["results"][0]
    assert "data" not in change["doc"]["_attachments"]["z"]


def test_bulk_docs_with_new_edits_false_keeps_inline_attachments(db):
    data = base64.b64encode(b"replicated").decode()
    doc = {"_id": "r", "_rev": "1-abc", "_attachments": {"f": {"content_type": "text/plain",
                                                                "data": data}}}
    db.post("/db/_bulk_docs", orjson.dumps({"docs": [doc], "new_edits": False}),
            content_type="application/json")
    assert db.get("/db/r/f").body == b"replicated"



def put_json(app, path, body):
    return app.put(path, orjson.dumps(body), content_type="application/json",
                   expect_errors=True)


def inline(data: bytes, content_type: str = "application/octet-stream") -> dict:
    return {"content_type": content_type, "data": base64.b64encode(data).decode()}


# -- reserved ids, attachment names, _local documents -------------------------------------------
ILLEGAL = {"error": "illegal_docid", "reason": "Only reserved document ids may start with underscore."}


@pytest.mark.parametrize("docid", ["_all_docs", "_changes", "_foo", "_design", "_local"])
def test_a_reserved_id_is_refused_on_every_route(db, docid):
    """``PUT /db/_all_docs/a.txt`` made a document ``_all_docs`` no request could delete."""
    if docid not in ("_local", "_design"):   # /db/_design/x is a design document's path
        r = db.put(f"/db/{docid}/a.txt", b"x", content_type="text/plain", expect_errors=True)
        assert r.status_int == 400 and r.json == ILLEGAL, r.body
    r = db.post("/db", orjson.dumps({"_id": docid}), content_type="application/json",
                expect_errors=True)
    assert r.status_int == 400 and r.json == ILLEGAL, r.body
    db.put("/db/source", b"{}", content_type="application/json")
    r = request(db, "/db/source", "COPY", headers={"Destination": docid})
    assert r.status_int == 400 and r.json == ILLEGAL, r.body
    for new_edits in (True, False):
        doc = {"_id": docid, "_rev": "1-abc"} if not new_edits else {"_id": docid}
        r = db.post("/db/_bulk_docs", orjson.dumps({"docs": [doc], "new_edits": new_edits}),
                    content_type="application/json", expect_errors=True)
        assert r.status_int == 400 and r.json == ILLEGAL, r.body       # as CouchDB
    ids = [row["id"] for row in db.get("/db/_all_docs").json["rows"]]
    assert ids == ["source"]


@pytest.mark.parametrize("name", ["_hidden", "_attachments"])
def test_attachment_names_may_not_start_with_underscore(db, name):
    reason = f"Attachment name '{name}' starts with prohibited character '_'"
    r = db.put(f"/db/doc/{name}", b"x", content_type="text/plain", expect_errors=True)
    assert r.status_int == 400 and r.json == {"error": "bad_request", "reason": reason}, r.body
    r = put_json(db, "/db/doc", {"_attachments": {name: inline(b"x")}})
    assert r.status_int == 400 and r.json["reason"] == reason, r.body
    r = db.post("/db/_bulk_docs", orjson.dumps({"docs": [
        {"_id": "doc", "_attachments": {name: inline(b"x")}}]}), content_type="application/json",
        expect_errors=True)
    assert r.status_int == 400 and r.json["reason"] == reason, r.body
    r = put_json(db, "/db/doc", {"_attachments": {"": inline(b"x")}})
    assert r.status_int == 400 and r.json["error"] == "bad_request", r.body
    db.get("/db/doc", status=404)


def test_local_documents_take_no_attachments(db):
    reason = "_local documents do not accept attachments."
    for path in ("/db/_local/ckpt/a.txt", "/db/_local%2Fckpt/a.txt"):
        r = db.put(path, b"x", content_type="text/plain", expect_errors=True)
        assert r.status_int == 400 and r.json == {"error": "bad_request", "reason": reason}
    # Written with _attachments, a _local document is stored without them (CouchDB)
    r = put_json(db, "/db/_local/ckpt", {"seq": 1, "_attachments": {"a.txt": inline(b"x")}})
    assert r.status_int == 201, r.body
    assert db.get("/db/_local/ckpt?attachments=true").json == {
        "_id": "_local/ckpt", "_rev": "0-1", "seq": 1}
    r = db.post("/db", orjson.dumps({"_id": "_local/two", "_attachments": {"a": inline(b"x")}}),
                content_type="application/json", expect_errors=True)
    assert r.status_int == 201 and "_attachments" not in db.get("/db/_local/two").json
    db.put("/db/withatt/a.txt", b"x", content_type="text/plain", status=201)
    r = request(db, "/db/withatt", "COPY", headers={"Destination": "_local/three"})
    assert r.status_int == 201 and "_attachments" not in db.get("/db/_local/three").json
    r = db.get("/db/_local/ckpt/a.txt", expect_errors=True)
    assert r.status_int == 400 and r.json == {"error": "bad_request", "reason": reason}


# -- the document size limit counts attachments ---------------------------------------------------
@pytest.fixture
def small(tmp_path):
    app = make_app(tmp_path, server_max_document=10_000)
    app.put("/db")
    return app


def test_standalone_uploads_add_up_to_the_document_limit(small):
    """Six 7 MB attachments, each under the 8 MiB limit, made a 56 MB document."""
    rev = small.put("/db/doc/a", b"a" * 6_000, content_type="text/plain").json["rev"]
    r = small.put(f"/db/doc/b?rev={rev}", b"b" * 6_000, content_type="text/plain",
                  expect_errors=True)
    assert r.status_int == 413 and r.json["error"] == "document_too_large", r.body
    doc = small.get("/db/doc").json
    assert doc["_rev"] == rev and list(doc["_attachments"]) == ["a"]
    r = small.put(f"/db/doc/b?rev={rev}", b"b" * 3_000, content_type="text/plain")
    assert r.status_int == 201


def test_inline_attachments_count_decoded_with_the_body(small):
    r = put_json(small, "/db/two", {"_attachments": {"a": inline(b"a" * 6_000),
                                                     "b": inline(b"b" * 6_000)}})
    assert r.status_int == 413 and r.json["error"] == "document_too_large", r.body
    r = put_json(small, "/db/text", {"text": "t" * 5_000, "_attachments": {"a": inline(b"a" * 6_000)}})
    assert r.status_int == 413, r.body
    small.get("/db/two", status=404)
    small.get("/db/text", status=404)
    # 8,000 bytes are 10,668 in base64: over the limit as sent, within it as stored
    r = put_json(small, "/db/one", {"_attachments": {"a": inline(b"a" * 8_000)}})
    assert r.status_int == 201, r.body
    assert small.get("/db/one/a").body == b"a" * 8_000


def test_kept_stubs_count_toward_the_limit_on_every_route(small):
    rev = small.put("/db/doc/a", b"a" * 6_000, content_type="text/plain").json["rev"]
    stub = small.get("/db/doc").json["_attachments"]["a"]
    update = {"_rev": rev, "_attachments": {"a": stub, "b": inline(b"b" * 6_000)}}
    r = put_json(small, "/db/doc", update)
    assert r.status_int == 413 and r.json["error"] == "document_too_large", r.body
    r = small.post("/db", orjson.dumps({"_id": "doc", **update}), content_type="application/json",
                   expect_errors=True)
    assert r.status_int == 413, r.body
    r = small.post("/db/_bulk_docs", orjson.dumps({"docs": [{"_id": "doc", **update}]}),
                   content_type="application/json")
    assert r.json == [{"id": "doc", "error": "document_too_large",
                       "reason": r.json[0]["reason"]}], r.body
    r = small.post("/db/_bulk_docs", orjson.dumps({"new_edits": False, "docs": [
        {"_id": "rep", "_rev": "1-abc", "_attachments": {"a": inline(b"a" * 6_000),
                                                         "b": inline(b"b" * 6_000)}}]}),
        content_type="application/json")
    assert r.json[0]["error"] == "document_too_large", r.body
    assert small.get("/db/doc").json["_rev"] == rev
    small.get("/db/rep", status=404)


def test_attachment_data_is_shown_as_couchdb_shows_it(db):
    """With ``attachments=true`` an attachment carries its data, digest and revpos, not
    its length (CouchDB's form, which PouchDB's tests compare exactly); a stub has its
    length."""
    put_json(db, "/db/doc", {"_attachments": {"a.txt": inline(b"hello", "text/plain")}})
    for path in ("/db/doc?attachments=true", "/db/_all_docs?include_docs=true&attachments=true"):
        got = db.get(path).json
        att = (got if "_attachments" in got else got["rows"][0]["doc"])["_attachments"]["a.txt"]
        assert set(att) == {"content_type", "data", "digest", "revpos"}, (path, att)
    stub = db.get("/db/doc").json["_attachments"]["a.txt"]
    assert stub["stub"] is True and stub["length"] == 5 and "data" not in stub
