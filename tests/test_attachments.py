"""Attachments: inline (base64, stubs) and standalone (any content type)."""
from __future__ import annotations

import base64

import orjson
import pytest
from httpclient import make_app


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
