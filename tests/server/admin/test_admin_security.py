"""The web admin against hostile data and hostile sites: every value escaped, every
form write checked for its origin and its CSRF token."""
from __future__ import annotations

import re
from urllib.parse import quote

import orjson
import pytest
from adminhelp import BROWSER, browser_app, page, post_form, token

HOSTILE = ['"><script>alert(1)</script>', "</textarea><script>alert(2)</script>",
           "' onmouseover='alert(3)", "javascript:alert(4)", "{{ 7 * 7 }}<b>x</b>",
           "<img src=x onerror=alert(5)>"]
HOSTILE_ID = '"><img src=x onerror=alert(6)>'


@pytest.fixture
def app(tmp_path):
    app = browser_app(tmp_path)
    app.put("/db")
    doc = {"_id": HOSTILE_ID, "values": HOSTILE, HOSTILE[0]: HOSTILE[1], "n": 1}
    app.put(f"/db/{quote(HOSTILE_ID, safe='')}", orjson.dumps(doc),
            content_type="application/json")
    app.put("/db/_design/x", orjson.dumps({"views": {HOSTILE[4]: {
        "map": "function (doc) { if (doc.values) emit(doc.values, doc.values); }"}}}),
        content_type="application/json")
    rev = app.get(f"/db/{quote(HOSTILE_ID, safe='')}").json["_rev"]
    app.put(f"/db/{quote(HOSTILE_ID, safe='')}/{quote(HOSTILE[5], safe='')}?rev={rev}",
            b"x", content_type="text/plain")
    return app


def assert_inert(text: str) -> None:
    """No markup of the hostile strings survives: tags and attributes came out as text."""
    for needle in ("<script>alert", "<img src=x", "onmouseover='alert", "</textarea><script",
                   "<b>x</b>"):
        assert needle not in text, needle
    assert not re.search(r'href="javascript:', text)


@pytest.mark.parametrize("url", [
    "/db", "/db/_all_docs?include_docs=true", f"/db/{quote(HOSTILE_ID, safe='')}",
    f"/db/{quote(HOSTILE_ID, safe='')}?format=yaml", "/db/_changes",
    f"/db/_design/x/_view/{quote(HOSTILE[4], safe='')}?include_docs=true", "/db/_design/x",
    "/db/_index?q=" + quote(orjson.dumps({"selector": {"n": 1}}).decode()),
    "/db/_all_docs?prefix=" + quote(HOSTILE[0]), "/db/_design_docs"])
def test_hostile_ids_and_values_are_escaped(app, url):
    r = page(app, url)
    assert_inert(r.text)


def test_hostile_ids_are_percent_encoded_in_links(app):
    r = page(app, "/db")
    assert f'href="/db/{quote(HOSTILE_ID, safe="")}"' in r.text
    r = page(app, f"/db/{quote(HOSTILE_ID, safe='')}")
    assert quote(HOSTILE[5], safe="/") in r.text            # the attachment's link
    assert "&lt;img src=x onerror=alert(5)&gt;" in r.text    # and its name, as text


def test_hostile_text_in_errors_and_queries_is_escaped(app):
    r = page(app, "/db/" + quote(HOSTILE[0], safe=""), status=404)
    assert_inert(r.text)
    r = page(app, "/db/_index?q=" + quote('{"selector": "<script>alert(1)</script>"}'),
             status=400)
    assert_inert(r.text)
    r = post_form(app, "save", {"db": "db", "id": "new", "rev": "",
                                "body": HOSTILE[1]}, status=400)
    assert_inert(r.text)
    assert "&lt;/textarea&gt;&lt;script&gt;" in r.text           # the text kept, as text


def test_a_form_write_without_the_token_is_refused(app):
    app.post("/_utils/create-database", {"name": "x"}, headers=BROWSER, status=403)
    r = app.get("/_utils", headers=BROWSER)
    app.post("/_utils/create-database", {"name": "x", "_csrf": "0" * 64}, headers=BROWSER,
             status=403)
    app.get("/x", status=404)
    assert token(r)


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"}, {"Referer": "http://evil.example/page"},
    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
    {"Origin": "null"}, {"Origin": "http://localhost:8080"}])
def test_a_form_write_from_another_site_is_refused_even_with_the_token(app, headers):
    r = post_form(app, "create-database", {"name": "x"}, headers=headers, status=403)
    assert "Cross-site request refused" in r.text
    app.get("/x", status=404)


@pytest.mark.parametrize("headers", [
    {}, {"Origin": "http://localhost"}, {"Origin": "http://localhost:80"},
    {"Referer": "http://localhost/db"}, {"Sec-Fetch-Site": "same-origin"}])
def test_a_form_write_from_this_site_with_the_token_goes_through(app, headers):
    post_form(app, "create-database", {"name": "x"}, headers=headers, status=303)
    app.get("/x", status=200)


def test_the_token_is_bound_to_the_browser_cookie(app, tmp_path):
    stolen = token(app.get("/_utils", headers=BROWSER))
    other = browser_app(tmp_path / "other")
    other.get("/_utils", headers=BROWSER)          # a cookie of its own
    other.post("/_utils/create-database", {"name": "x", "_csrf": stolen}, headers=BROWSER,
               status=403)


def test_the_csrf_cookie_is_strict_and_hidden_from_scripts(tmp_path):
    r = browser_app(tmp_path).get("/_utils", headers=BROWSER)
    cookie = r.headers["Set-Cookie"]
    assert "settee_csrf=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_actions_are_never_gets_and_the_json_api_still_refuses_forms(app):
    app.get("/_utils/create-database?name=x", headers=BROWSER, status=404)
    app.get("/x", status=404)
    r = app.post("/db", {"a": "1"}, status=415)        # a cross-site form's body: refused
    assert r.json["error"] == "bad_content_type"


def test_an_unknown_action_is_a_404_with_a_json_reason(app):
    r = app.post("/_utils/nope", {}, status=404)
    assert r.json == {"error": "not_found", "reason": "no admin action 'nope'"}
