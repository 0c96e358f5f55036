"""Hostile input: path traversal, header injection, code execution, request limits.

* Ids and database names full of ``..``, ``%2F``, ``%2e%2e%2f``, absolute paths and
  NULs are stored as data or refused: nothing appears outside the data directory,
  whatever the backend (the tree is compared before and after).
* An id with CR LF (sent as ``%0D%0A``) comes back in ``Location`` percent-encoded:
  no response header is split, in-process or through gunicorn (raw bytes read).
* Client data is never executed: a pickle of ``os.system`` is refused as a body and
  stored as bytes as an attachment or a string, Python source in a document is text,
  YAML's ``!!python/...`` tags are refused, and design documents (which do run Python)
  are written only by admins, by every route that can make one (PUT, POST, _bulk_docs,
  COPY, attachments). A marker file shows whether anything ran; positive controls
  show the marker would appear if it did.
* Limits: a body over ``server_max_body`` is 413, a document over
  ``server_max_document`` is 413, JSON or YAML nested deeper than
  ``server_max_json_depth`` is 400; gunicorn answers an over-long request line 414 and
  an over-long or excessive header 431.
"""
from __future__ import annotations

import base64
import os
import pickle
import re
import socket
import warnings
from pathlib import Path
from urllib.parse import quote, unquote

import orjson
import pytest
from httpclient import make_app
from liveserver import LiveServer
from paths import ROOT  # noqa: E402
from webtest.lint import WSGIWarning

from settee.store.catalog import SYSTEM_DBS, check_name
from settee.store.dbupdates import LOCATION as UPDATES

BACKENDS = ["sqlite", "file", "dbm", "lmdb"]
TOKEN = "escapee"


def put(app, path, body, **kw):
    kw.setdefault("expect_errors", True)
    return app.put(path, orjson.dumps(body), content_type="application/json", **kw)


def request(app, path, method, **kw):
    with warnings.catch_warnings():          # webtest's lint: "Unknown REQUEST_METHOD: COPY"
        warnings.simplefilter("ignore", WSGIWarning)
        return app.request(path, method=method, expect_errors=True, **kw)


def tree(top: Path) -> set[str]:
    return {str(p.relative_to(top)) for p in top.rglob("*")}


def named_like_token(*tops: Path) -> list[str]:
    """Every file or directory whose name holds TOKEN, under ``tops`` (one level deep
    for the wide ones, where a naive join of ``../..`` would land)."""
    found = []
    for top in tops:
        try:
            entries = list(top.iterdir())
        except OSError:
            continue
        found += [str(e) for e in entries if TOKEN in e.name]
    return found


# -- path traversal ----------------------------------------------------------------------
TRAVERSING_IDS = [
    f"..%2F..%2F{TOKEN}", f"%2e%2e%2f%2e%2e%2f{TOKEN}-lower", f"%2E%2E%2F%2E%2E%2F{TOKEN}-upper",
    "..%2F" * 12 + f"tmp%2F{TOKEN}-deep", f"%2Ftmp%2F{TOKEN}-absolute", f"%2F{TOKEN}-root",
    f"..%5C..%5C{TOKEN}-backslash", f"{TOKEN}%00.txt", f"....%2F%2F{TOKEN}-dots", "..", ".",
    f"a%2F..%2F..%2F..%2F{TOKEN}-mid", f"%2e%2e%2f{TOKEN}" + "x" * 3000,
    "%C0%AE%C0%AE%2F" + TOKEN,      # overlong UTF-8 for "." (invalid UTF-8: a 400)
]
TRAVERSING_DBS = [
    "..", "%2e%2e", "%2E%2E", ".", f"..%2F..%2F{TOKEN}", f"a%2F..%2F..%2F{TOKEN}",
    f"%2F{TOKEN}", f"{TOKEN}%2F..", f"{TOKEN}%2F..%2F..", f"a%2F{TOKEN}", f"{TOKEN}%00",
    f"_users%2F..%2F..%2F{TOKEN}", f".{TOKEN}", f"{TOKEN}%2F%2E%2E%2F%2E%2E", "%2F..",
    f"{TOKEN}(..)", "a" + "%2F" * 200,
]


@pytest.fixture(params=BACKENDS)
def jailed(request, tmp_path):
    """An app whose data directory is jail/data, with database ``victim``."""
    data = tmp_path / "jail" / "data"
    app = make_app(tmp_path, storage_backend=request.param, storage_data_dir=str(data))
    assert app.put("/victim").status_int == 201
    return app, tmp_path, data


def check_jail(tmp_path: Path, data: Path, before_outside: set[str], cwd_before: set[str]):
    outside = {p for p in tree(tmp_path) if not p.startswith("jail/data")}
    assert outside == before_outside, outside - before_outside
    for entry in data.iterdir():
        if entry.name.startswith("."):
            continue                           # the cookie secret, trash being removed
        assert entry.is_dir(), entry
        name = unquote(entry.name)
        # a database, or the catalog's record of database events (a fixed name)
        assert name in SYSTEM_DBS or name == UPDATES or check_name(name) == name, entry.name
        assert "/" not in entry.name and entry.name not in ("..", "."), entry.name
    assert set(os.listdir(ROOT)) == cwd_before
    wide = [tmp_path.parent, tmp_path.parent.parent, Path("/tmp"), Path("/"), ROOT,
            Path.cwd(), data.parent, data.parent.parent]
    assert named_like_token(*wide) == []


def test_ids_cannot_leave_the_data_directory(jailed):
    app, tmp_path, data = jailed
    before_outside = {p for p in tree(tmp_path) if not p.startswith("jail/data")}
    cwd_before = set(os.listdir(ROOT))
    stored = {}
    for raw in TRAVERSING_IDS:
        r = put(app, f"/victim/{raw}", {"raw": raw})
        assert r.status_int in (201, 400), (raw, r.status, r.body)
        if r.status_int == 201:
            stored[raw] = r.json["id"]
            assert r.json["id"] == unquote(raw), r.json
        r = request(app, f"/victim/doc/{raw}", "PUT", body=b"attachment bytes",
                    headers={"Content-Type": "text/plain"})
        assert r.status_int in (201, 400, 409), (raw, r.status, r.body)
    # the same ids from bodies, where no URL decoding stands in the way
    ids = [unquote(raw) for raw in TRAVERSING_IDS if "%C0" not in raw]
    for docid in ids:
        r = app.post("/victim", orjson.dumps({"_id": docid + "-posted"}),
                     content_type="application/json", expect_errors=True)
        assert r.status_int in (201, 400), (docid, r.status, r.body)
    r = app.post("/victim/_bulk_docs", orjson.dumps({"docs": [{"_id": d + "-bulk"} for d in ids]}),
                 content_type="application/json")
    assert r.status_int == 201
    r = put(app, "/victim/inline", {"_attachments": {
        f"../../{TOKEN}-att": {"content_type": "text/plain",
                               "data": base64.b64encode(b"x").decode()},
        f"/tmp/{TOKEN}-att-abs": {"content_type": "text/plain",
                                  "data": base64.b64encode(b"y").decode()}}})
    assert r.status_int == 201, r.body
    # every id that was stored reads back as itself: it is data, not a path
    assert stored, "no traversing id was stored at all"
    for raw, docid in stored.items():
        got = app.get(f"/victim/{raw}", expect_errors=True)
        assert got.status_int == 200 and got.json["_id"] == docid, (raw, got.body)
    att = app.get(f"/victim/inline/..%2F..%2F{TOKEN}-att")
    assert att.body == b"x"
    listing = app.get("/victim/_all_docs").json
    assert listing["total_rows"] == len(listing["rows"]) == app.get("/victim").json["doc_count"]
    check_jail(tmp_path, data, before_outside, cwd_before)


def test_database_names_cannot_leave_the_data_directory(jailed):
    app, tmp_path, data = jailed
    before_outside = {p for p in tree(tmp_path) if not p.startswith("jail/data")}
    cwd_before = set(os.listdir(ROOT))
    created = []
    for raw in TRAVERSING_DBS:
        name = unquote(raw)
        r = app.put(f"/{raw}", expect_errors=True)
        assert r.status_int in (201, 400), (raw, r.status, r.body)
        if r.status_int == 201:
            created.append(name)
            assert check_name(name) == name
            assert app.put(f"/{raw}/doc", b"{}", content_type="application/json").status_int == 201
        else:
            assert r.json["error"] in ("illegal_database_name", "bad_request"), r.json
        for method in ("GET", "DELETE"):
            r = request(app, f"/{raw}", method)
            assert r.status_int in (200, 400, 404), (raw, method, r.status, r.body)
            if r.status_int == 200 and method == "DELETE":
                created.remove(name)
        r = put(app, f"/{raw}/doc", {"a": 1})
        assert r.status_int in (201, 400, 404), (raw, r.status, r.body)
    assert created == [], created           # each legal one was deleted again above
    # the data directory, its databases and the victim's documents are all still there
    assert data.is_dir() and app.get("/victim").json["db_name"] == "victim"
    assert put(app, "/victim/still-here", {"ok": 1}).status_int == 201
    names = app.get("/_all_dbs").json
    assert "victim" in names and all(check_name(n) == n for n in names)
    check_jail(tmp_path, data, before_outside, cwd_before)


def test_a_legal_name_longer_than_a_file_name_is_refused_not_a_crash(tmp_path):
    """"a" + "/" * 100 is a legal CouchDB name, but 301 characters percent-encoded:
    more than a file name may have. It was a 500 (ENAMETOOLONG) to create or to read."""
    app = make_app(tmp_path)
    name = "a" + "%2F" * 100
    r = app.put(f"/{name}", expect_errors=True)
    assert r.status_int == 400 and r.json["error"] == "illegal_database_name", r.body
    for method in ("GET", "DELETE"):
        r = request(app, f"/{name}", method)
        assert r.status_int == 404 and r.json["error"] == "not_found", r.body
    r = app.get("/" + "x" * 300 + "/doc", expect_errors=True)
    assert r.status_int == 404, r.body


def test_a_nul_in_the_path_is_refused_not_read_as_a_slash(tmp_path):
    """Routing stands a NUL in for an encoded "/" inside a segment, so "/abc%00" once
    created database "abc/" and "a%00b" meant the id "a/b"."""
    app = make_app(tmp_path)
    app.put("/victim")
    names = app.get("/_all_dbs").json
    for method, path in (("PUT", "/abc%00"), ("PUT", "/victim/a%00b"), ("GET", "/victim%00"),
                         ("PUT", "/victim/_design%00x"), ("DELETE", "/victim%00"),
                         ("GET", "/victim/_design/x%00/_view/v")):
        r = request(app, path, method, body=b"{}", headers={"Content-Type": "application/json"})
        assert r.status_int == 400 and "NUL" in r.json["reason"], (path, r.status, r.body)
    assert app.get("/_all_dbs").json == names == ["victim"]
    assert app.get("/victim").json["doc_count"] == 0


# -- header injection through ids -------------------------------------------------------------
INJECTING_IDS = ["a%0D%0ASet-Cookie:%20evil=1", "b%0AX-Injected:%201", "c%0DX-Injected:%201",
                 "d%0D%0A%0D%0A%3Chtml%3E", "_design%2Fe%0D%0AX-Injected:%201",
                 "%C3%BC%0D%0AX-Injected:%20%C3%BC", "f%E2%80%A8%E2%80%A9g"]


def test_ids_with_crlf_are_percent_encoded_in_location(tmp_path):
    app = make_app(tmp_path)
    app.put("/victim")
    responses = []
    for raw in INJECTING_IDS:
        responses.append((raw, put(app, f"/victim/{raw}", {"x": 1})))
        responses.append((raw, app.post("/victim", orjson.dumps({"_id": unquote(raw) + "-p"}),
                                         content_type="application/json")))
        responses.append((raw, request(app, f"/victim/{raw}-att/file", "PUT",
                                       body=b"x", headers={"Content-Type": "text/plain"})))
        r = request(app, f"/victim/{raw}-att/a%0D%0AX-Injected:%201", "PUT", body=b"x",
                    headers={"Content-Type": "text/plain"})
        assert r.status_int in (201, 404, 409) and "x-injected" not in r.headers, r.body
    responses.append(("local", put(app, "/victim/_local/h%0D%0AX-Injected:%201", {})))
    for raw, r in responses:
        assert r.status_int == 201, (raw, r.status, r.body)
        headers = [(k.lower(), v) for k, v in r.headerlist]
        assert "set-cookie" not in dict(headers) and "x-injected" not in dict(headers), headers
        location = r.headers["Location"]
        assert not re.search(r"[\r\n\x00-\x1f\x7f]", location), location
        assert "%0D" in location.upper() or "%0A" in location.upper() or \
            "%E2%80%A8" in location.upper(), location
        # the Location leads back to the document
        path = location.split("://", 1)[1].split("/", 1)[1]
        got = app.get("/" + path, expect_errors=True)
        assert got.status_int == 200 and got.json["_id"] == r.json["id"], (location, got.body)


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_and_headers(response: bytes) -> tuple[int, list[bytes]]:
    head = response.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    return int(lines[0].split()[1]), lines[1:]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    data = tmp_path_factory.mktemp("hostile") / "data"
    with LiveServer(data, workers=2, threads=4, SETTEE_SERVER_MAX_BODY=200_000,
                    SETTEE_SERVER_MAX_DOCUMENT=20_000, SETTEE_SERVER_MAX_JSON_DEPTH=10) as server:
        assert raw_exchange(server.port, b"PUT /victim HTTP/1.1\r\nHost: x\r\n"
                                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        yield server


def test_crlf_ids_do_not_split_headers_through_gunicorn(live):
    for raw in INJECTING_IDS:
        posted = orjson.dumps({"_id": unquote(raw) + "p"})
        for method, target, body in (("PUT", f"/victim/{raw}", b"{}"),
                                     ("POST", "/victim", posted)):
            response = raw_exchange(live.port, (
                f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
            status, headers = status_and_headers(response)
            assert status == 201, response[:500]
            names = [h.split(b":", 1)[0].strip().lower() for h in headers]
            assert b"x-injected" not in names and b"set-cookie" not in names, headers
            assert b"<html>" not in response.split(b"\r\n\r\n", 1)[0]
            location = [h for h in headers if h.lower().startswith(b"location:")]
            assert len(location) == 1 and re.fullmatch(rb"location: [\x21-\x7e]+", location[0],
                                                       re.I), location


# -- no code execution from client data -------------------------------------------------------
class Payload:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def payload(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def test_the_pickle_payload_would_run_if_anything_unpickled_it(tmp_path):
    """Positive control: the marker does appear when the payload is unpickled."""
    control = tmp_path / "control"
    pickle.loads(payload(control))
    assert control.exists()


@pytest.mark.parametrize("backend", ["sqlite", "file"])
def test_pickles_and_python_source_are_stored_as_data_never_run(tmp_path, backend):
    marker = tmp_path / "pwned"
    app = make_app(tmp_path, storage_backend=backend)
    app.put("/victim")
    evil = payload(marker)
    for ctype in ("application/octet-stream", "application/python-pickle",
                  "application/x-python-serialize", "application/json", "text/plain", "",
                  "application/yaml"):
        r = app.put("/victim/pickled", evil, content_type=ctype, expect_errors=True) if ctype \
            else request(app, "/victim/pickled", "PUT", body=evil)
        assert r.status_int in (400, 415), (ctype, r.status, r.body)
        r = app.post("/victim/_bulk_docs", evil, content_type=ctype or "application/json",
                     expect_errors=True)
        assert r.status_int in (400, 415), (ctype, r.status, r.body)
    # as a string inside a document: stored and answered verbatim, in every read path
    code = f"__import__('os').system('touch {marker}')"
    map_source = f"def fun(doc):\n    __import__('os').system('touch {marker}')\n    yield 1, 1"
    doc = {"pickle_b64": base64.b64encode(evil).decode(), "pickle_latin1": evil.decode("latin-1"),
           "code": code, "language": "python", "views": {"v": {"map": map_source}},
           "validate_doc_update": code, "filters": {"f": code}}
    r = put(app, "/victim/carrier", doc)
    assert r.status_int == 201, r.body
    got = app.get("/victim/carrier").json
    assert {k: got[k] for k in doc} == doc
    assert base64.b64decode(got["pickle_b64"]) == evil
    rows = app.get("/victim/_all_docs?include_docs=true").json["rows"]
    assert rows[0]["doc"]["pickle_latin1"] == evil.decode("latin-1")
    found = app.post("/victim/_find", orjson.dumps({"selector": {"code": code}}),
                     content_type="application/json").json["docs"]
    assert [d["_id"] for d in found] == ["carrier"]
    changes = app.post("/victim/_changes?filter=_selector&include_docs=true",
                       orjson.dumps({"selector": {"language": "python"}}),
                       content_type="application/json").json["results"]
    assert changes[0]["doc"]["code"] == code
    got = app.post("/victim/_bulk_get", orjson.dumps({"docs": [{"id": "carrier"}]}),
                   content_type="application/json").json
    assert got["results"][0]["docs"][0]["ok"]["pickle_b64"] == doc["pickle_b64"]
    # as an attachment: bytes in, the same bytes out
    r = app.put("/victim/carrier/evil.pkl?rev=" + r.json["rev"], evil,
                content_type="application/python-pickle")
    assert r.status_int == 201
    att = app.get("/victim/carrier/evil.pkl")
    assert att.body == evil and att.content_type == "application/python-pickle"
    # a module view is looked up by name, never imported from the URL
    for name in ("os:system", "os.system", "settee.views.definitions:_resolve", "carrier"):
        r = app.get(f"/victim/_view/{quote(name, safe='')}", expect_errors=True)
        assert r.status_int == 404, (name, r.body)
    assert not marker.exists()


def test_yaml_python_tags_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    app = make_app(tmp_path)
    app.put("/victim")
    bodies = [f"!!python/object/apply:os.system ['touch {marker}']",
              f"a: !!python/object/apply:os.system ['touch {marker}']",
              f"a: !!python/object/new:subprocess.check_call [['touch', '{marker}']]",
              "a: !!python/name:os.system", "a: !!python/module:os",
              f"!!python/object/apply:builtins.exec [\"import os; os.system('touch {marker}')\"]",
              f"a: !!python/object/apply:subprocess.Popen\n  args: [['touch', '{marker}']]"]
    for body in bodies:
        for path in ("/victim/y", "/victim/_bulk_docs", "/victim/_find"):
            method = app.put if path == "/victim/y" else app.post
            r = method(path, body.encode(), content_type="application/yaml",
                       expect_errors=True)
            assert r.status_int == 400 and "Invalid YAML" in r.json["reason"], (body, r.body)
    assert not marker.exists()


def test_yaml_aliases_cannot_expand_a_small_body(tmp_path):
    """A "billion laughs" body (9 levels of 10 aliases, under 1 KB) was stored as a
    document far over the size limit at 7 levels, and was a 500 (out of memory) at 8."""
    app = make_app(tmp_path)
    app.put("/victim")
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    body = "\n".join(lines).encode()
    assert len(body) < 1024
    r = app.put("/victim/bomb", body, content_type="application/yaml", expect_errors=True)
    assert r.status_int == 400 and "aliases" in r.json["reason"], r.body
    r = app.put("/victim/alias", b"a: &x 1\nb: *x", content_type="application/yaml",
                expect_errors=True)
    assert r.status_int == 400, r.body
    r = app.put("/victim/plain", b"a: 1\nb: [1, 2]\nc: {d: e}", content_type="application/yaml")
    assert r.status_int == 201 and app.get("/victim/plain").json["c"] == {"d": "e"}


def test_yaml_that_python_cannot_build_or_nest_is_a_400(tmp_path):
    """``!!int x`` and ``!!float yes`` raised ValueError in PyYAML's constructor, and 5000
    nested ``[`` a RecursionError in its composer: both were 500s."""
    app = make_app(tmp_path, server_max_json_depth=10)
    app.put("/victim")
    for body in (b"a: !!int x", b"a: !!float yes", b"[" * 5000 + b"]" * 5000,
                 b"a:\n" + b"".join(b" " * i + b"- \n" for i in range(1, 200))):
        r = app.put("/victim/y", body, content_type="application/yaml", expect_errors=True)
        assert r.status_int == 400 and r.json["error"] == "bad_request", (body[:30], r.body)


@pytest.fixture
def secured(tmp_path):
    """A server with an admin; bob is a member (not an admin) of ``victim``."""
    app = make_app(tmp_path, auth_admin_user="admin", auth_admin_password="pw",
                   auth_pbkdf2_iterations=10)
    admin = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
    bob = {"Authorization": "Basic " + base64.b64encode(b"bob:pw").decode()}
    assert app.put("/victim", headers=admin).status_int == 201
    user = {"name": "bob", "type": "user", "roles": [], "password": "pw"}
    assert put(app, "/_users/org.couchdb.user:bob", user, headers=admin).status_int == 201
    assert put(app, "/victim/_security", {"members": {"names": ["bob"]}},
               headers=admin).status_int == 200
    return app, admin, bob, tmp_path


def touching_design(marker: Path) -> dict:
    source = (f"def fun(doc):\n    __import__('pathlib').Path({str(marker)!r}).touch()\n"
              "    yield 1, 1")
    return {"language": "python", "views": {"v": {"map": source}}}


def test_only_admins_make_design_documents_by_any_route(secured):
    """Design documents run Python. A member once made one by COPYing an ordinary
    document to ``_design/...`` and then ran its code by querying the view."""
    app, admin, bob, tmp_path = secured
    marker = tmp_path / "pwned"
    design = touching_design(marker)
    assert put(app, "/victim/innocent", design, headers=bob).status_int == 201  # only data
    for who, expected in ((bob, 403), ({}, 401)):
        attempts = [
            put(app, "/victim/_design/evil", design, headers=who),
            put(app, "/victim/_design%2Fevil", design, headers=who),
            app.post("/victim", orjson.dumps({**design, "_id": "_design/evil"}),
                     content_type="application/json", headers=who, expect_errors=True),
            app.post("/victim/_bulk_docs",
                     orjson.dumps({"docs": [{**design, "_id": "_design/evil"}]}),
                     content_type="application/json", headers=who, expect_errors=True),
            app.post("/victim/_bulk_docs", orjson.dumps({"new_edits": False, "docs": [
                {**design, "_id": "_design/evil", "_rev": "1-abc"}]}),
                content_type="application/json", headers=who, expect_errors=True),
            request(app, "/victim/innocent", "COPY",
                    headers={**who, "Destination": "_design/evil"}),
            request(app, "/victim/_design/evil/file.txt", "PUT", body=b"x",
                    headers={**who, "Content-Type": "text/plain"}),
        ]
        for r in attempts:
            assert r.status_int == expected, (who, r.status, r.body)
        r = app.get("/victim/_design/evil/_view/v", headers=admin, expect_errors=True)
        assert r.status_int == 404, r.body
    assert not marker.exists()
    # positive control: an admin's design document does run, so the marker would show it
    assert put(app, "/victim/_design/good", design, headers=admin).status_int == 201
    assert app.get("/victim/_design/good/_view/v", headers=admin).status_int == 200
    assert marker.exists()


def test_copy_into_users_is_checked_like_a_put(secured):
    """Copying your own user document to another name would make a user whose name
    and id disagree; a COPY gets the same checks as a PUT of its target."""
    app, admin, bob, _ = secured
    r = request(app, "/_users/org.couchdb.user:bob", "COPY",
                headers={**bob, "Destination": "org.couchdb.user:mallory"})
    assert r.status_int in (400, 403), r.body
    assert app.get("/_users/org.couchdb.user:mallory", headers=admin,
                   expect_errors=True).status_int == 404


def test_no_module_deserializes_or_evaluates_client_data():
    """Static guard: no pickle/marshal/shelve anywhere in the server, store and views;
    YAML only through safe loaders; exec only for design documents (admins only)."""
    for folder in ("server", "store", "views", "config"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            assert not re.search(r"^\s*(import|from)\s+(pickle|cPickle|marshal|shelve|dill)\b",
                                 text, re.M), path
            assert not re.search(r"\byaml\.(load|unsafe_load|full_load)\(", text), path
            assert not re.search(r"(?<![\w.])eval\(", text), path
            if path.name != "spec.py":          # views/spec.py compiles design documents
                assert not re.search(r"(?<![\w.])exec\(", text), path


# -- request limits -----------------------------------------------------------------------------
@pytest.fixture
def limited(tmp_path):
    app = make_app(tmp_path, server_max_body=100_000, server_max_document=10_000,
                   server_max_json_depth=10)
    app.put("/victim")
    return app


def test_body_over_the_limit_is_413(limited):
    big = orjson.dumps({"x": "a" * 150_000})
    for method, path in (("PUT", "/victim/big"), ("POST", "/victim"),
                         ("POST", "/victim/_bulk_docs"),
                         ("POST", "/victim/_find"), ("POST", "/victim/_all_docs"),
                         ("PUT", "/victim/_security"), ("POST", "/victim/_revs_diff")):
        r = request(limited, path, method, body=big, headers={"Content-Type": "application/json"})
        assert r.status_int == 413 and r.json["error"] == "too_large", (path, r.status, r.body)
    r = request(limited, "/victim/doc/att", "PUT", body=b"x" * 150_000,
                headers={"Content-Type": "application/octet-stream"})
    assert r.status_int == 413, r.body
    assert limited.get("/victim").json["doc_count"] == 0


def test_document_over_the_limit_is_413(limited):
    doc = {"x": "a" * 20_000}
    r = put(limited, "/victim/big", doc)
    assert r.status_int == 413 and r.json["error"] == "document_too_large", r.body
    r = limited.post("/victim", orjson.dumps(doc), content_type="application/json",
                     expect_errors=True)
    assert r.status_int == 413 and r.json["error"] == "document_too_large", r.body
    r = limited.post("/victim/_bulk_docs", orjson.dumps({"docs": [{"_id": "big", **doc},
                                                                  {"_id": "small"}]}),
                     content_type="application/json")
    assert [row.get("error") for row in r.json] == ["document_too_large", None], r.json
    r = request(limited, "/victim/doc/att", "PUT", body=b"x" * 20_000,
                headers={"Content-Type": "application/octet-stream"})
    assert r.status_int == 413, r.body
    assert limited.get("/victim/_all_docs").json["total_rows"] == 1
    assert put(limited, "/victim/fits", {"x": "a" * 9_000}).status_int == 201


def nested_json(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    return b'{"a":' * depth + b"1" + b"}" * depth


def test_nesting_deeper_than_the_limit_is_400(limited):
    for kind in ("list", "dict"):
        r = limited.put(f"/victim/deep-{kind}", nested_json(10, kind),
                        content_type="application/json", expect_errors=True)
        assert r.status_int == 201, (kind, r.body)
        r = limited.put(f"/victim/deeper-{kind}", nested_json(11, kind),
                        content_type="application/json", expect_errors=True)
        assert r.status_int == 400 and "nested deeper" in r.json["reason"], (kind, r.body)
    r = limited.put("/victim/yaml", b"a: " + b"[" * 11 + b"]" * 11,
                    content_type="application/yaml", expect_errors=True)
    assert r.status_int == 400, r.body
    for body in (b"[" * 40_000 + b"]" * 40_000, b'{"a":' * 5000 + b"1" + b"}" * 5000):
        r = limited.post("/victim/_bulk_docs", body, content_type="application/json",
                         expect_errors=True)
        assert r.status_int == 400, r.body


def test_gunicorn_refuses_overlong_lines_and_headers(live):
    port = live.port
    line = b"GET /victim/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert status_and_headers(raw_exchange(port, line))[0] == 414
    big_header = (b"GET /victim HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 +
                  b"\r\nConnection: close\r\n\r\n")
    assert status_and_headers(raw_exchange(port, big_header))[0] == 431
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    too_many = b"GET /victim HTTP/1.1\r\nHost: x\r\n" + many + b"Connection: close\r\n\r\n"
    assert status_and_headers(raw_exchange(port, too_many))[0] == 431
    # the body limits hold behind gunicorn too, also for a chunked body with no length
    body = orjson.dumps({"x": "a" * 300_000})
    r = raw_exchange(port, b"PUT /victim/big HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           b"application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % len(body) + body)
    assert status_and_headers(r)[0] == 413, r[:300]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 50_000]), body[i:i + 50_000])
                       for i in range(0, len(body), 50_000)) + b"0\r\n\r\n"
    r = raw_exchange(port, b"PUT /victim/big HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           b"application/json\r\nTransfer-Encoding: chunked\r\n"
                           b"Connection: close\r\n\r\n" + chunked)
    assert status_and_headers(r)[0] == 413, r[:300]
    doc = orjson.dumps({"x": "a" * 30_000})
    r = raw_exchange(port, b"PUT /victim/big HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           b"application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % len(doc) + doc)
    assert status_and_headers(r)[0] == 413 and b"document_too_large" in r, r[:300]
    deep = nested_json(11, "dict")
    r = raw_exchange(port, b"PUT /victim/deep HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           b"application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % len(deep) + deep)
    assert status_and_headers(r)[0] == 400, r[:300]
    # and it still serves
    r = raw_exchange(port, b"GET /_up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_and_headers(r)[0] == 200
