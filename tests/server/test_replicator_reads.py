"""What a replicator reads, as CouchDB answers it: attachments with their data where
``attachments=true`` asks (``atts_since`` for only the newer ones) on every route a
replicator fetches from, ``latest=true``, ``open_revs`` as ``multipart/mixed``, and
checkpoint documents with the replicator's own fields."""
from __future__ import annotations

import base64
import email
import email.policy

import orjson
import pytest
from httpclient import put


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def two_attachments(db):
    """doc: note.txt written at generation 1, then log.txt added at generation 2."""
    r1 = put(db, "/db/doc", {"_attachments": {"note.txt": {
        "content_type": "text/plain", "data": b64("first")}}}).json
    r2 = put(db, "/db/doc", {"_rev": r1["rev"], "_attachments": {
        "note.txt": {"stub": True}, "log.txt": {"content_type": "text/plain",
                                                "data": b64("second")}}}).json
    return db, r1["rev"], r2["rev"]


def with_data(doc) -> set:
    return {name for name, att in doc["_attachments"].items() if "data" in att}


def test_attachments_true_carries_data_on_every_route_a_replicator_reads(two_attachments):
    db, _, rev = two_attachments
    both = {"note.txt", "log.txt"}
    assert with_data(db.get("/db/doc?attachments=true").json) == both
    assert with_data(db.get("/db/doc").json) == set()
    rows = db.get("/db/_all_docs?include_docs=true&attachments=true").json["rows"]
    assert with_data(rows[0]["doc"]) == both
    assert with_data(db.get("/db/_all_docs?include_docs=true").json["rows"][0]["doc"]) == set()
    changes = db.get("/db/_changes?include_docs=true&attachments=true").json["results"]
    assert with_data(changes[0]["doc"]) == both
    got = db.post_json("/db/_bulk_get?attachments=true", {"docs": [{"id": "doc"}]}).json
    assert with_data(got["results"][0]["docs"][0]["ok"]) == both
    revs = db.get(f'/db/doc?open_revs=["{rev}"]&attachments=true').json
    assert with_data(revs[0]["ok"]) == both
    put(db, "/db/_design/v", {"language": "python", "views": {"all": {
        "map": "def fun(doc):\n    yield doc['_id'], None\n"}}})
    view = db.get("/db/_design/v/_view/all?include_docs=true&attachments=true").json
    assert with_data(view["rows"][0]["doc"]) == both


def test_atts_since_sends_only_attachments_newer_than_what_the_client_has(two_attachments):
    db, first, rev = two_attachments
    doc = db.get(f'/db/doc?attachments=true&atts_since=["{first}"]').json
    assert with_data(doc) == {"log.txt"}
    assert doc["_attachments"]["note.txt"]["stub"] is True
    unknown = db.get('/db/doc?attachments=true&atts_since=["1-unknown"]').json
    assert with_data(unknown) == {"note.txt", "log.txt"}
    got = db.post_json("/db/_bulk_get?attachments=true&revs=true", {"docs": [
        {"id": "doc", "rev": rev, "atts_since": [first]}]}).json
    assert with_data(got["results"][0]["docs"][0]["ok"]) == {"log.txt"}
    r = db.get("/db/doc?attachments=true&atts_since=oops", expect_errors=True)
    assert r.status_int == 400


@pytest.fixture
def branched(db):
    """1-a -> 2-b -> 3-c, and a second branch 2-x from 1-a (new_edits=false)."""
    docs = [{"_id": "d", "_rev": "3-c", "_revisions": {"start": 3, "ids": ["c", "b", "a"]},
             "v": "c"},
            {"_id": "d", "_rev": "2-x", "_revisions": {"start": 2, "ids": ["x", "a"]},
             "v": "x"}]
    db.post_json("/db/_bulk_docs", {"docs": docs, "new_edits": False}, status=201)
    return db


def test_latest_answers_the_leaves_that_descend_from_a_revision(branched):
    db = branched
    assert db.get("/db/d?rev=2-b&latest=true").json["_rev"] == "3-c"
    assert db.get("/db/d?rev=3-c&latest=true").json["_rev"] == "3-c"
    revs = db.get('/db/d?open_revs=["1-a"]&latest=true').json
    assert sorted(r["ok"]["_rev"] for r in revs) == ["2-x", "3-c"]
    revs = db.get('/db/d?open_revs=["2-b","9-z"]&latest=true').json
    assert [r.get("ok", {}).get("_rev") or r["missing"] for r in revs] == ["3-c", "9-z"]
    got = db.post_json("/db/_bulk_get?latest=true", {"docs": [{"id": "d", "rev": "2-b"}]}).json
    assert [d["ok"]["_rev"] for d in got["results"][0]["docs"]] == ["3-c"]
    without = db.post_json("/db/_bulk_get", {"docs": [{"id": "d", "rev": "3-c"}]}).json
    assert without["results"][0]["docs"][0]["ok"]["v"] == "c"


def test_open_revs_as_multipart_mixed_for_couchdbs_replicator(branched):
    db = branched
    r = db.get('/db/d?open_revs=["3-c","2-x","4-nope"]&revs=true',
               headers={"Accept": "multipart/mixed"})
    assert r.content_type == "multipart/mixed"
    message = email.message_from_bytes(
        b"Content-Type: " + r.headers["Content-Type"].encode() + b"\r\n\r\n" + r.body,
        policy=email.policy.HTTP)
    parts = [(p.get_content_type(), p.get_param("error"), orjson.loads(p.get_payload(decode=True)))
             for p in message.iter_parts()]
    assert [(kind, body.get("_rev") or body.get("missing")) for kind, _, body in parts] == [
        ("application/json", "3-c"), ("application/json", "2-x"),
        ("application/json", "4-nope")]
    assert parts[0][2]["_revisions"] == {"start": 3, "ids": ["c", "b", "a"]}
    assert [error for _, error, _ in parts] == [None, None, "true"]


def test_checkpoint_documents_take_the_replicators_fields(db):
    body = {"_revisions": {"start": 1, "ids": ["a"]}, "_replication_id": "abc",
            "history": [{"session_id": "s", "recorded_seq": "3-x"}]}
    assert put(db, "/db/_local/abc", body).status_int == 201
    got = db.get("/db/_local/abc").json
    assert got["_replication_id"] == "abc" and got["history"][0]["recorded_seq"] == "3-x"
    assert "_revisions" not in got
    got["_revisions"] = {"start": 0, "ids": ["1"]}      # nonsense, and ignored all the same
    assert put(db, "/db/_local/abc", got).status_int == 201
    assert "_revisions" not in db.get("/db/_local/abc").json
    assert put(db, "/db/job", {"_replication_state": "completed"}).status_int == 201
    r = put(db, "/db/bad", {"_other": 1}, expect_errors=True)
    assert r.status_int == 400 and r.json["error"] == "doc_validation"
