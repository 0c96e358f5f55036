"""The web admin's pages at the API's URLs (in-process): what a browser is shown, what
every other client still gets, and paging by key."""
from __future__ import annotations

import re

import orjson
import pytest
from adminhelp import BROWSER, browser_app, page, post_form
from waiting import until


@pytest.fixture
def app(tmp_path):
    app = browser_app(tmp_path)
    app.put("/db")
    docs = [{"_id": f"doc{i:04d}", "n": i} for i in range(250)]
    docs.append({"_id": "_design/d", "views": {
        "by_n": {"map": "function (doc) { if (doc.n !== undefined) emit(doc.n % 10, 1); }",
                 "reduce": "_count"}}})
    app.post("/db/_bulk_docs", orjson.dumps({"docs": docs}), content_type="application/json")
    return app


def ids_on(response) -> list[str]:
    return re.findall(r'<tr><td><a href="/db/([^"]+)">', response.text)


def link(response, rel) -> str | None:
    found = re.search(rf'<a rel="{rel}" href="([^"]+)"', response.text)
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.mark.parametrize("url", [
    "/", "/_utils", "/_utils/", "/db", "/db/_all_docs", "/db/_design_docs", "/db/doc0001",
    "/db/doc0001?format=yaml", "/db/_design/d", "/db/_design/d/_view/by_n",
    "/db/_design/d/_view/by_n?reduce=false", "/db/_design/d/_view/by_n?group_level=exact",
    "/db/_index", "/db/_changes", "/db/_security", "/_active_tasks", "/_session",
    "/_utils/session", "/_utils/new-document?db=db"])
def test_every_page_is_html_with_links_and_no_inline_script(app, url):
    r = page(app, url)
    assert "<script>" not in r.text and 'href="/_utils"' in r.text
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/plain",
                                    "application/json;q=0.9,text/html;q=0.1"])
@pytest.mark.parametrize("url", ["/", "/db", "/db/_all_docs?limit=2", "/db/doc0001",
                                 "/db/_design/d/_view/by_n", "/db/_index", "/_active_tasks"])
def test_other_clients_get_the_json_they_always_got(app, url, accept):
    headers = {"Accept": accept} if accept else {}
    r = app.get(url, headers=headers)
    assert r.content_type == "application/json"
    orjson.loads(r.body)


def test_all_docs_is_paged_by_key_forwards_and_back(app):
    everything = ["_design/d"] + [f"doc{i:04d}" for i in range(250)]
    r = page(app, "/db/_all_docs?limit=100")
    seen = ids_on(r)
    assert seen == everything[:100]
    assert link(r, "prev") is None
    pages = [seen]
    while link(r, "next"):
        url = link(r, "next")
        assert "skip" not in url
        r = page(app, url)
        pages.append(ids_on(r))
    assert [len(p) for p in pages] == [100, 100, 51]
    assert sum(pages, []) == everything
    back = page(app, link(r, "prev"))                # from the last page, one back
    assert ids_on(back) == pages[1]
    assert ids_on(page(app, link(back, "prev"))) == pages[0]


def test_descending_pages_and_an_id_prefix(app):
    r = page(app, "/db/_all_docs?descending=true&limit=20&prefix=doc01")
    assert ids_on(r) == [f"doc{i:04d}" for i in range(199, 179, -1)]
    r2 = page(app, link(r, "next"))
    assert ids_on(r2) == [f"doc{i:04d}" for i in range(179, 159, -1)]
    assert ids_on(page(app, link(r2, "prev"))) == ids_on(r)
    assert ids_on(page(app, "/db/_all_docs?prefix=doc024")) == [f"doc{i:04d}" for i in range(240, 250)]


def test_design_documents_are_listed_apart(app):
    r = page(app, "/db")
    assert re.search(r'id="designs".*href="/db/_design/d"', r.text, re.S)
    assert 'href="/db/_design/d"' in page(app, "/db/_design_docs").text


def test_a_view_page_pages_its_rows_by_key_and_document_id(app):
    r = page(app, "/db/_design/d/_view/by_n?reduce=false&limit=30")
    rows = re.findall(r'<td><a href="/db/(doc\d+)">', r.text)
    pages = [rows]
    while link(r, "next"):
        r = page(app, link(r, "next"))
        pages.append(re.findall(r'<td><a href="/db/(doc\d+)">', r.text))
    flat = sum(pages, [])
    assert len(flat) == 250 and len(set(flat)) == 250
    reduced = page(app, "/db/_design/d/_view/by_n?group_level=exact")
    assert reduced.text.count("<tr><td><code>") == 10


def test_a_bad_view_parameter_is_shown_on_the_page_as_a_400(app):
    r = page(app, "/db/_design/d/_view/by_n?startkey=not-json", status=400)
    assert 'id="query-error"' in r.text


def test_mango_find_and_explain(app):
    q = orjson.dumps({"selector": {"n": {"$gte": 240}}}).decode()
    r = page(app, "/db/_index?q=" + q)
    assert re.findall(r'href="/db/(doc\d+)"', r.text) == [f"doc{i:04d}" for i in range(240, 250)]
    explained = page(app, "/db/_index?explain=1&q=" + q)
    assert 'id="explain"' in explained.text
    assert 'id="query-error"' in page(app, "/db/_index?q={nope", status=400).text


def test_errors_are_pages_with_the_json_error_inside(tmp_path):
    app = browser_app(tmp_path, auth_admin_user="admin", auth_admin_password="secret")
    r = page(app, "/_all_dbs", status=401)
    assert "WWW-Authenticate" not in r.headers          # no browser password dialog
    assert 'action="/_utils/sign-in"' in r.text
    inner = re.search(r"<pre>(.*?)</pre>", r.text, re.S).group(1)
    assert '&#34;error&#34;: &#34;unauthorized&#34;' in inner
    assert app.get("/_all_dbs", status=401).headers["WWW-Authenticate"]


def test_sign_in_and_out_through_the_forms(tmp_path):
    app = browser_app(tmp_path, auth_admin_user="admin", auth_admin_password="secret")
    wrong = post_form(app, "sign-in", {"name": "admin", "password": "nope"}, status=401)
    assert "Name or password is incorrect." in wrong.text
    r = post_form(app, "sign-in", {"name": "admin", "password": "secret", "next": "/_utils"})
    assert r.headers["Location"].endswith("/_utils") and "AuthSession=" in r.headers["Set-Cookie"]
    assert "Signed in as <b>admin</b>" in page(app, "/_utils").text
    r = post_form(app, "sign-in", {"name": "admin", "password": "secret",
                                   "next": "//evil.example/"})
    assert r.headers["Location"].endswith("/_utils")       # never another site
    post_form(app, "sign-out", {})
    page(app, "/_utils", status=401)


def test_databases_are_created_and_deleted_with_a_typed_confirmation(app):
    r = post_form(app, "create-database", {"name": "fresh"})
    assert r.headers["Location"].endswith("/fresh")
    assert '<a href="/fresh">fresh</a>' in page(app, "/_utils").text
    post_form(app, "delete-database", {"db": "fresh", "confirm": "fres"}, status=400)
    post_form(app, "delete-database", {"db": "fresh", "confirm": "fresh"})
    app.get("/fresh", status=404)


def test_a_document_is_created_edited_and_deleted(app):
    post_form(app, "save", {"db": "db", "id": "new one", "rev": "", "body": '{"a": 1}'})
    doc = app.get("/db/new%20one").json
    r = post_form(app, "save", {"db": "db", "id": "new one", "rev": doc["_rev"],
                                "format": "yaml", "body": "a: 2\nb: [x, y]\n"})
    assert "format=yaml" in r.headers["Location"]
    doc = app.get("/db/new%20one").json
    assert doc["a"] == 2 and doc["b"] == ["x", "y"]
    bad = post_form(app, "save", {"db": "db", "id": "new one", "rev": doc["_rev"],
                                  "body": '{"a": '}, status=400)
    assert 'id="save-error"' in bad.text and "{&#34;a&#34;: " in bad.text  # the text kept
    post_form(app, "delete", {"db": "db", "id": "new one", "rev": doc["_rev"]})
    app.get("/db/new%20one", status=404)


def test_a_conflicting_save_shows_both_and_keeping_mine_saves_it(app):
    rev = app.get("/db/doc0001").json["_rev"]
    app.put("/db/doc0001", orjson.dumps({"_rev": rev, "by": "them"}),
            content_type="application/json")
    r = post_form(app, "save", {"db": "db", "id": "doc0001", "rev": rev,
                                "body": '{"by": "me"}'}, status=409)
    assert 'id="conflict"' in r.text and "&#34;them&#34;" in r.text
    r.forms["save-mine-form"].submit(headers=BROWSER, status=303)
    assert app.get("/db/doc0001").json["by"] == "me"


def test_conflicting_revisions_are_listed_and_one_is_kept(app):
    for rev, who in (("2-aaa", "alice"), ("2-bbb", "bob")):
        app.post("/db/_bulk_docs", orjson.dumps({"new_edits": False, "docs": [
            {"_id": "c", "_rev": rev, "who": who, "_revisions": {"start": 2, "ids": [
                rev[2:], "root"]}}]}), content_type="application/json")
    r = page(app, "/db/c")
    assert 'id="conflicts"' in r.text and "2-aaa" in r.text and "2-bbb" in r.text
    post_form(app, "resolve", {"db": "db", "id": "c", "keep": "2-aaa"}, response=r)
    doc = app.get("/db/c?conflicts=true").json
    assert doc["who"] == "alice" and "_conflicts" not in doc


def test_attachments_are_uploaded_listed_and_deleted(app):
    r = page(app, "/db/doc0002")
    rev = app.get("/db/doc0002").json["_rev"]
    app.post("/_utils/upload", {"_csrf": re.search(r'name="_csrf" value="(\w+)"', r.text)[1],
                                "db": "db", "id": "doc0002", "rev": rev},
             upload_files=[("file", "notes <1>.txt", b"hello")], headers=BROWSER, status=303)
    r = page(app, "/db/doc0002")
    assert 'href="/db/doc0002/notes%20%3C1%3E.txt"' in r.text
    assert app.get("/db/doc0002/notes%20%3C1%3E.txt").body == b"hello"
    # the editor keeps attachments it does not show
    rev = app.get("/db/doc0002").json["_rev"]
    post_form(app, "save", {"db": "db", "id": "doc0002", "rev": rev, "body": '{"n": 9}'})
    doc = app.get("/db/doc0002").json
    assert "notes <1>.txt" in doc["_attachments"]
    post_form(app, "delete-attachment", {"db": "db", "id": "doc0002", "rev": doc["_rev"],
                                         "name": "notes <1>.txt"})
    assert not app.get("/db/doc0002").json.get("_attachments")


def test_indexes_security_and_users_from_forms(app):
    post_form(app, "create-index", {"db": "db", "fields": "n, kind", "name": "by-n"})
    assert "by-n" in page(app, "/db/_index").text
    post_form(app, "security", {"db": "db", "admins_names": "ann", "members_roles": "staff, ops"})
    assert app.get("/db/_security").json == {"admins": {"names": ["ann"], "roles": []},
                                             "members": {"names": [], "roles": ["staff", "ops"]}}
    post_form(app, "create-user", {"name": "zoe", "password": "pw", "roles": "staff"})
    assert app.get("/_users/org.couchdb.user:zoe").json["roles"] == ["staff"]
    post_form(app, "create-user", {"name": "zoe", "password": "pw"}, status=409)


def test_static_files_are_served_and_cached(app):
    r = page(app, "/_utils")
    css = re.search(r'href="(/_utils/static/admin.css\?v=\w+)"', r.text).group(1)
    got = app.get(css)
    assert got.content_type == "text/css" and "immutable" in got.headers["Cache-Control"]
    app.get(css, headers={"If-None-Match": got.headers["ETag"]}, status=304)
    app.get("/_utils/static/../app.py", status=404)
    app.get("/_utils/static/nope.js", status=404)


def test_a_replication_is_started_and_watched_from_the_admin(app):
    """The Replication page starts a job as a _replicator document (making the
    database first) and lists the jobs the scheduler reports, with their state."""
    assert "No replication documents" in page(app, "/_scheduler/docs").text
    post_form(app, "replicate", {"source": "db", "target": "db-copy", "id": "copy <1>",
                                 "create_target": "true"})
    saved = app.get("/_replicator/copy%20%3C1%3E").json
    assert saved["source"] == "db" and saved["target"] == "db-copy"
    assert saved["create_target"] is True and saved["continuous"] is False

    def listed():
        text = page(app, "/_scheduler/docs").text
        return "copy &lt;1&gt;" in text and "<td>completed</td>" in text
    until(listed, 30)
    assert app.get("/db-copy").json["doc_count"] == app.get("/db").json["doc_count"]
    post_form(app, "replicate", {"source": "db", "target": ""}, status=400)
