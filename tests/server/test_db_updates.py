"""``GET /_db_updates``: normal, longpoll, continuous and eventsource feeds of database
events, for server admins."""
from __future__ import annotations

import threading
import time

import orjson
import pytest
from httpclient import make_app

ADMIN = ("admin", "pw")


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, auth_admin_user=ADMIN[0], auth_admin_password=ADMIN[1])
    app.authorization = ("Basic", ADMIN)
    return app


def events(rows):
    return [(row["db_name"], row["type"]) for row in rows]


def test_normal_feed_lists_created_updated_deleted(app):
    app.put("/a", status=201)
    app.put("/b", status=201)
    app.put("/a/doc", b"{}", content_type="application/json", status=201)
    app.delete("/b")
    r = app.get("/_db_updates").json
    got = [e for e in events(r["results"]) if e[0] in ("a", "b")]
    # "updated" is written within a moment of the write (coalesced), so its place among
    # the creations and deletions around it may vary
    assert [e for e in got if e[1] != "updated"] == [("a", "created"), ("b", "created"),
                                                     ("b", "deleted")]
    assert ("a", "updated") in got
    assert all(isinstance(row["seq"], str) for row in r["results"])
    assert r["last_seq"] == r["results"][-1]["seq"]


def test_since_limit_and_descending(app):
    app.put("/a", status=201)
    since = app.get("/_db_updates").json["last_seq"]
    app.put("/b", status=201)
    app.put("/c", status=201)
    r = app.get(f"/_db_updates?since={since}").json
    assert events(r["results"]) == [("b", "created"), ("c", "created")]
    assert events(app.get(f"/_db_updates?since={since}&limit=1").json["results"]) == [
        ("b", "created")]
    rows = app.get("/_db_updates?descending=true").json["results"]
    assert events(rows)[:2] == [("c", "created"), ("b", "created")]
    assert app.get("/_db_updates?since=now").json["results"] == []


def test_longpoll_answers_at_the_first_event(app):
    since = app.get("/_db_updates").json["last_seq"]
    threading.Timer(0.3, lambda: app.app.catalog.create("later")).start()
    started = time.monotonic()
    r = app.get(f"/_db_updates?feed=longpoll&since={since}&timeout=10000")
    assert time.monotonic() - started < 5
    assert events(orjson.loads(r.body)["results"]) == [("later", "created")]


def test_longpoll_times_out_empty(app):
    r = app.get("/_db_updates?feed=longpoll&since=now&timeout=200")
    body = orjson.loads(r.body)
    assert body["results"] == [] and body["last_seq"]


def test_continuous_lines_then_last_seq_at_the_timeout(app):
    app.put("/a", status=201)
    r = app.get("/_db_updates?feed=continuous&timeout=200")
    lines = [orjson.loads(line) for line in r.body.splitlines() if line.strip()]
    assert ("a", "created") in events(lines[:-1])
    assert set(lines[-1]) == {"last_seq"}
    assert r.content_type == "application/json"


def test_continuous_heartbeats_while_nothing_happens(app):
    r = app.get("/_db_updates?feed=continuous&since=now&timeout=700&heartbeat=200")
    assert r.body.count(b"\n") >= 3          # heartbeats, then the last_seq line


def test_eventsource_sends_data_and_id_blocks(app):
    app.put("/a", status=201)
    r = app.get("/_db_updates?feed=eventsource&timeout=200")
    assert r.content_type == "text/event-stream"
    blocks = [b.split(b"\n") for b in r.body.split(b"\n\n") if b.strip()]
    assert all(data.startswith(b"data: ") and ident.startswith(b"id: ")
               for data, ident in blocks)
    assert "a" in [orjson.loads(data[6:])["db_name"] for data, _ in blocks]


def test_bad_parameters_are_400(app):
    for query in ("feed=sideways", "since=abc", "limit=-1", "timeout=x", "heartbeat=0"):
        r = app.get(f"/_db_updates?{query}", expect_errors=True)
        assert r.status_int == 400 and r.json["error"] == "bad_request", query


def test_only_server_admins_read_it(app):
    app.authorization = None
    r = app.get("/_db_updates", expect_errors=True)
    assert r.status_int == 401 and r.json["error"] == "unauthorized"
