"""POST /_replicate in process: local databases, filters, errors, who may."""
from __future__ import annotations

import base64

import orjson
import pytest
from httpclient import make_app, request


def post(app, path, body, status=200, **kw):
    return app.post(path, orjson.dumps(body), content_type="application/json",
                    status=status, **kw)


def put(app, path, body, status=201, **kw):
    return app.put(path, orjson.dumps(body), content_type="application/json",
                   status=status, **kw)


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    put(app, "/a", None)
    for i in range(10):
        put(app, f"/a/d{i}", {"i": i, "even": i % 2 == 0})
    return app


def ids(app, db):
    return [row["id"] for row in app.get(f"/{db}/_all_docs").json["rows"]]


def test_one_shot_replication_answers_its_history_and_resumes(app):
    out = post(app, "/_replicate", {"source": "a", "target": "b", "create_target": True}).json
    assert out["ok"] and out["history"][0]["docs_written"] == 10
    assert len(ids(app, "b")) == 10
    again = post(app, "/_replicate", {"source": "a", "target": "b"}).json
    assert again["no_changes"] is True
    assert again["history"][1]["session_id"] == out["session_id"]


def test_selector_and_view_filters_choose_as_the_changes_feed_does(app):
    post(app, "/_replicate", {"source": "a", "target": "evens", "create_target": True,
                              "selector": {"even": True}})
    assert ids(app, "evens") == ["d0", "d2", "d4", "d6", "d8"]
    post(app, "/_replicate", {"source": "a", "target": "two", "create_target": True,
                              "doc_ids": ["d1", "d2"]})
    assert ids(app, "two") == ["d1", "d2"]


def test_conflicts_replicate_both_ways_and_agree(app):
    post(app, "/_replicate", {"source": "a", "target": "b", "create_target": True})
    doc = app.get("/a/d1").json
    put(app, "/a/d1", {**doc, "side": "a"})
    put(app, "/b/d1", {**doc, "side": "b"})
    post(app, "/_replicate", {"source": "a", "target": "b"})
    post(app, "/_replicate", {"source": "b", "target": "a"})
    left = app.get("/a/d1?conflicts=true").json
    right = app.get("/b/d1?conflicts=true").json
    assert left == right and len(left["_conflicts"]) == 1


@pytest.mark.parametrize("body, status", [
    ({}, 400),
    ({"source": "a"}, 400),
    ({"source": 5, "target": "b"}, 400),
    ({"source": "ftp://x/y", "target": "b"}, 400),
    ({"source": "http://127.0.0.1:1", "target": "b"}, 400),
    ({"source": "a", "target": "b", "doc_ids": "d1"}, 400),
    ({"source": "a", "target": "b", "continuous": "yes"}, 400),
    ({"source": "a", "target": "b", "doc_ids": ["d1"], "selector": {}}, 400),
    ({"source": "missing", "target": "b"}, 404),
    ({"source": "a", "target": "nowhere"}, 404),
    ({"source": "a", "target": "b", "filter": "nope/none"}, 404),
    ({"cancel": True, "replication_id": "nothing+continuous"}, 404),
])
def test_bad_requests_are_4xx_with_a_reason(app, body, status):
    put(app, "/b", None)
    out = post(app, "/_replicate", body, status=status).json
    assert set(out) == {"error", "reason"}
    if status == 404:
        assert out["error"] == ("not_found" if "filter" in body or "cancel" in body
                                else "db_not_found")


def test_replicate_and_scheduler_are_for_server_admins(tmp_path):
    app = make_app(tmp_path, auth_admin_user="admin", auth_admin_password="s3cret",
                   auth_pbkdf2_iterations=1000)
    post(app, "/_replicate", {"source": "a", "target": "b"}, status=401)
    app.get("/_scheduler/jobs", status=401)
    app.get("/_scheduler/docs", status=401)
    admin = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode()}
    assert app.get("/_scheduler/jobs", headers=admin).json == {"total_rows": 0, "offset": 0,
                                                               "jobs": []}


def test_replicator_documents_must_be_replications(app):
    put(app, "/_replicator", None)
    out = put(app, "/_replicator/bad", {"source": "a"}, status=403).json
    assert out["error"] == "forbidden"
    put(app, "/_replicator/_design/x", {"views": {}})
    app.get("/_scheduler/docs/other", status=404)
    app.get("/_scheduler/docs/_replicator/nothing", status=404)


def test_replicator_members_see_only_their_own_credentials(tmp_path):
    """_replicator opened to members: each writes and reads its own documents; another
    user's reads without its credentials (CouchDB's rule), and what shows every
    document at once is for admins."""
    def basic(name, password):
        token = base64.b64encode(f"{name}:{password}".encode()).decode()
        return {"Authorization": "Basic " + token}
    admin, bob, eve = basic("admin", "s3cret"), basic("bob", "pw"), basic("eve", "pw")
    app = make_app(tmp_path, auth_admin_user="admin", auth_admin_password="s3cret",
                   auth_pbkdf2_iterations=1000)
    for name in ("bob", "eve"):
        put(app, f"/_users/org.couchdb.user:{name}",
            {"name": name, "password": "pw", "type": "user", "roles": []})
    put(app, "/_replicator", None, headers=admin)
    put(app, "/_replicator/_security", {"members": {"names": ["bob", "eve"]}}, status=200,
        headers=admin)
    job = {"source": "http://bob:hunter2@127.0.0.1:9/a",
           "target": {"url": "http://127.0.0.1:9/b", "headers": {"Authorization": "Basic c2VjcmV0"},
                      "auth": {"basic": {"username": "bob", "password": "hunter2"}}}}
    put(app, "/_replicator/job", job, headers=bob)
    mine = app.get("/_replicator/job", headers=bob).json
    assert mine["owner"] == "bob" and mine["source"] == job["source"]
    assert mine["target"]["headers"] == job["target"]["headers"]
    theirs = app.get("/_replicator/job", headers=eve).json
    assert theirs["owner"] == "bob" and "hunter2" not in orjson.dumps(theirs).decode()
    assert theirs["source"] == "http://127.0.0.1:9/a"
    assert theirs["target"] == {"url": "http://127.0.0.1:9/b"}
    revs = app.get("/_replicator/job?open_revs=all", headers=eve).json
    assert "hunter2" not in orjson.dumps(revs).decode() and revs[0]["ok"]["owner"] == "bob"
    assert app.get("/_replicator/job", headers=admin).json["source"] == job["source"]
    for path in ("/_replicator/_all_docs?include_docs=true", "/_replicator/_changes",
                 "/_replicator/_design_docs"):
        assert app.get(path, headers=eve, status=403).json["error"] == "forbidden"
    post(app, "/_replicator/_find", {"selector": {}}, status=403, headers=eve)
    r = request(app, "/_replicator/job", "COPY", headers={**eve, "Destination": "mine"})
    assert r.status_int == 403
    assert app.get("/_replicator/_all_docs", headers=admin).json["total_rows"] == 1
    # Without an _id (POST, _bulk_docs) a document meets the same rules: owned by its
    # writer, and a replication; no ownerless job naming local databases slips past
    made = post(app, "/_replicator", {"source": "a", "target": "http://127.0.0.1:9/c"},
                status=201, headers=eve).json["id"]
    assert app.get(f"/_replicator/{made}", headers=admin).json["owner"] == "eve"
    post(app, "/_replicator", {"source": "a", "target": "b", "owner": "bob"}, status=403,
         headers=eve)
    post(app, "/_replicator/_bulk_docs", {"docs": [{"not": "a replication"}]}, status=403,
         headers=eve)
    post(app, "/_replicator/_bulk_docs", {"docs": [{"source": "a", "target": "b",
                                                    "owner": "bob"}]}, status=403, headers=eve)
    assert app.get("/_replicator/_all_docs", headers=admin).json["total_rows"] == 2
