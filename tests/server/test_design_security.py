"""Who may write design documents: Python in them runs unsandboxed as the server.

A database admin (named only in ``_security.admins``) once saved a ``"language":
"python"`` design document whose code read the cookie secret in the data directory
and forged a server admin's session. Now only server admins save Python design
documents, by every route that writes one: PUT (both spellings of the id), POST,
COPY, ``_bulk_docs`` (edits and replicated revisions) and attachments. Database
admins keep every other design document (options only, Mango indexes, JavaScript,
which runs sandboxed and never as Python) and may delete a Python one.

A marker file shows whether code ran: the design document's source touches it when
compiled (at save time) and when its view maps a document.
"""
from __future__ import annotations

import base64
import importlib.util
import logging
import types
from pathlib import Path

import orjson
import pytest
from httpclient import make_app, request
from paths import ROOT  # noqa: E402

FORBIDDEN = {"error": "forbidden",
             "reason": "Only server admins may save Python design documents: Python code "
                       "runs unsandboxed as the server"}


def basic(name: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


ADMIN = basic("admin", "pw")
DBA = basic("dba", "pw")


def put(app, path, body, **kw):
    kw.setdefault("expect_errors", True)
    return app.put(path, orjson.dumps(body), content_type="application/json", **kw)


def post(app, path, body, **kw):
    return app.post(path, orjson.dumps(body), content_type="application/json",
                    expect_errors=True, **kw)



@pytest.fixture
def site(tmp_path):
    """A server admin, and ``dba``: an admin of database ``db`` only."""
    app = make_app(tmp_path, auth_admin_user="admin", auth_admin_password="pw",
                   auth_pbkdf2_iterations=10)
    assert app.put("/db", headers=ADMIN).status_int == 201
    user = {"name": "dba", "type": "user", "roles": [], "password": "pw"}
    assert put(app, "/_users/org.couchdb.user:dba", user, headers=ADMIN).status_int == 201
    assert put(app, "/db/_security", {"admins": {"names": ["dba"]}},
               headers=ADMIN).status_int == 200
    marker = tmp_path / "ran"
    return types.SimpleNamespace(app=app, marker=marker, design=python_design(marker))


def python_design(marker: Path) -> dict:
    """A Python design document that touches ``marker`` when compiled and when run."""
    touch = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    source = f"{touch}\ndef fun(doc):\n    {touch}\n    yield 1, 1"
    return {"language": "python", "views": {"v": {"map": source}}}


# -- every route that writes a new design document --------------------------------------
def by_put(app, design, who):
    return put(app, "/db/_design/evil", design, headers=who)


def by_put_encoded(app, design, who):
    return put(app, "/db/_design%2Fevil", design, headers=who)


def by_post(app, design, who):
    return post(app, "/db", {**design, "_id": "_design/evil"}, headers=who)


def by_copy(app, design, who):
    assert put(app, "/db/source", design, headers=ADMIN).status_int == 201     # only data
    return request(app, "/db/source", "COPY", headers={**who, "Destination": "_design/evil"})


def by_bulk_docs(app, design, who):
    return post(app, "/db/_bulk_docs", {"docs": [{**design, "_id": "_design/evil"}]},
                headers=who)


def by_replicated_bulk_docs(app, design, who):
    doc = {**design, "_id": "_design/evil", "_rev": "1-abc"}
    return post(app, "/db/_bulk_docs", {"new_edits": False, "docs": [doc]}, headers=who)


ROUTES = [by_put, by_put_encoded, by_post, by_copy, by_bulk_docs, by_replicated_bulk_docs]


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.__name__)
def test_a_database_admin_cannot_save_a_python_design_document(site, route):
    r = route(site.app, site.design, DBA)
    if route is by_bulk_docs:
        assert r.status_int == 201 and r.json == [{"id": "_design/evil", **FORBIDDEN}], r.body
    elif route is by_replicated_bulk_docs:      # only errors are answered, as CouchDB
        assert r.status_int == 201 and r.json == [{"id": "_design/evil", **FORBIDDEN}], r.body
    else:
        assert r.status_int == 403 and r.json == FORBIDDEN, r.body
    assert site.app.get("/db/_design/evil", headers=ADMIN, expect_errors=True).status_int == 404
    assert not site.marker.exists()          # its code was not compiled either


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.__name__)
def test_a_server_admin_saves_a_python_design_document(site, route):
    r = route(site.app, site.design, ADMIN)
    assert r.status_int == 201 and "error" not in str(r.json), r.body
    rows = site.app.get("/db/_design/evil/_view/v", headers=ADMIN).json["rows"]
    assert site.marker.exists() and rows is not None     # the positive control: it ran


def test_a_database_admin_cannot_attach_to_a_python_design_document(site):
    """An attachment PUT writes a new revision of the whole design document."""
    app = site.app
    harmless = {"language": "python", "views": {"v": {"map": "def fun(doc):\n    yield 1, 1"}}}
    rev = put(app, "/db/_design/code", harmless, headers=ADMIN).json["rev"]
    r = request(app, f"/db/_design/code/notes.txt?rev={rev}", "PUT", body=b"x",
                headers={**DBA, "Content-Type": "text/plain"})
    assert r.status_int == 403 and r.json == FORBIDDEN, r.body
    r = request(app, f"/db/_design%2Fcode/notes.txt?rev={rev}", "PUT", body=b"x",
                headers={**DBA, "Content-Type": "text/plain"})
    assert r.status_int == 403 and r.json == FORBIDDEN, r.body
    doc = app.get("/db/_design/code", headers=ADMIN).json
    assert doc["_rev"] == rev and "_attachments" not in doc
    r = request(app, f"/db/_design/code/notes.txt?rev={rev}", "PUT", body=b"x",
                headers={**ADMIN, "Content-Type": "text/plain"})
    assert r.status_int == 201, r.body


def test_a_database_admin_cannot_change_a_python_design_document(site):
    app = site.app
    harmless = {"language": "python", "views": {"v": {"map": "def fun(doc):\n    yield 1, 1"}}}
    rev = put(app, "/db/_design/code", harmless, headers=ADMIN).json["rev"]
    r = put(app, "/db/_design/code", {**site.design, "_rev": rev}, headers=DBA)
    assert r.status_int == 403 and r.json == FORBIDDEN, r.body
    assert app.get("/db/_design/code", headers=ADMIN).json["_rev"] == rev
    assert not site.marker.exists()


@pytest.mark.parametrize("language", ["Python", " python", None, ["python"], "erlang"])
def test_other_spellings_and_unknown_languages_are_server_admins_too(site, language):
    """Only the languages Settee never runs in-process are open to database admins."""
    r = put(site.app, "/db/_design/odd", {**site.design, "language": language}, headers=DBA)
    assert r.status_int == 403 and r.json == FORBIDDEN, r.body


def test_a_database_admin_deletes_a_python_design_document(site):
    app = site.app
    harmless = {"language": "python", "views": {"v": {"map": "def fun(doc):\n    yield 1, 1"}}}
    rev = put(app, "/db/_design/a", harmless, headers=ADMIN).json["rev"]
    assert app.delete(f"/db/_design/a?rev={rev}", headers=DBA).status_int == 200
    rev = put(app, "/db/_design/b", harmless, headers=ADMIN).json["rev"]
    # some clients delete by sending the whole document back with "_deleted": true
    r = post(app, "/db/_bulk_docs", {"docs": [{**harmless, "_id": "_design/b", "_rev": rev,
                                               "_deleted": True}]}, headers=DBA)
    assert r.status_int == 201 and r.json[0].get("ok") is True, r.body
    for ddoc in ("a", "b"):
        assert app.get(f"/db/_design/{ddoc}", headers=ADMIN, expect_errors=True).status_int == 404


def test_a_database_admin_keeps_design_documents_without_python(site):
    app = site.app
    r = put(app, "/db/_design/opts", {"options": {"local_seq": True}}, headers=DBA)
    assert r.status_int == 201, r.body
    r = request(app, "/db/_design/opts/readme.txt", "PUT", body=b"hello",
                headers={**DBA, "Content-Type": "text/plain",
                         "If-Match": r.json["rev"]})
    assert r.status_int == 201, r.body
    r = post(app, "/db/_index", {"index": {"fields": ["a"]}, "ddoc": "by-a"}, headers=DBA)
    assert r.status_int == 200 and r.json["result"] == "created", r.body
    r = post(app, "/db/_bulk_docs", {"docs": [{"_id": "_design/q", "language": "query",
                                               "views": {}}]}, headers=DBA)
    assert r.json[0].get("ok") is True, r.body


def test_javascript_design_documents_are_database_admins_and_never_run_as_python(site):
    """No ``language`` is JavaScript, as in CouchDB: a database admin may save it (it
    runs sandboxed), and Python source in it is not JavaScript: refused at save
    (400 compilation_error), never compiled or run as Python."""
    app = site.app
    javascript = {k: v for k, v in site.design.items() if k != "language"}
    r = put(app, "/db/_design/js", javascript, headers=DBA)
    assert r.status_int == 400 and r.json["error"] == "compilation_error", r.body
    assert not site.marker.exists()
    real = {"views": {"v": {"map": "function (doc) { if (doc.a) emit(doc.a, 1); }",
                            "reduce": "_count"}}}
    assert put(app, "/db/_design/js", real, headers=DBA).status_int == 201
    assert put(app, "/db/doc", {"a": 1}, headers=DBA).status_int == 201
    r = app.get("/db/_design/js/_view/v", headers=DBA)
    assert r.json["rows"] == [{"key": None, "value": 1}], r.body
    r = app.get("/db/_changes?filter=_view&view=js/v", headers=ADMIN)
    assert [c["id"] for c in r.json["results"]] == ["doc"], r.body
    assert not site.marker.exists()


# -- running as root ------------------------------------------------------------------------
def load_gunicorn_config(monkeypatch):
    # the config sets this for its workers: setenv records the value to restore (or
    # that there was none), which delenv of an unset variable would not
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    spec = importlib.util.spec_from_file_location("settee_gunicorn_conf",
                                                  ROOT / "config" / "gunicorn.conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("euid, warned", [(0, 1), (1000, 0)])
def test_the_server_warns_once_when_it_starts_as_root(monkeypatch, caplog, euid, warned):
    conf = load_gunicorn_config(monkeypatch)
    monkeypatch.setattr(conf.os, "geteuid", lambda: euid)
    server = types.SimpleNamespace(cfg=types.SimpleNamespace(address=[]),
                                   log=logging.getLogger("test.gunicorn"))
    with caplog.at_level(logging.WARNING, logger="test.gunicorn"):
        try:
            conf.on_starting(server)
        finally:
            conf.on_exit(server)
    lines = [r for r in caplog.records if "root" in r.getMessage()]
    assert len(lines) == warned and all(r.levelno == logging.WARNING for r in lines)
