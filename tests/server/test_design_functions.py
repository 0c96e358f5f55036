"""Shows, lists, updates and rewrites of JavaScript design documents, as CouchDB 3
serves them; and _info, _view_cleanup, _compact/{ddoc}, _temp_view."""
from __future__ import annotations

import orjson
import pytest
from httpclient import make_app

APP = {
    "shows": {
        "hello": "function (doc, req) { return {body: 'Hello ' + (doc ? doc.name : req.query.who),"
                 " headers: {'X-Show': 'yes'}}; }",
        "json": "function (doc, req) { return {json: {id: doc._id, me: req.userCtx.name}, code: 202}; }",
        "either": "function (doc, req) {"
                  " provides('html', function () { return '<p>' + doc.name + '</p>'; });"
                  " provides('json', function () { return toJSON({name: doc.name}); }); }",
        "lib": "function (doc) { return require('lib/greet').greet(this._id); }",
        "broken": "function (doc) { return doc.missing.field; }",
    },
    "lists": {
        "csv": "function (head, req) { start({headers: {'Content-Type': 'text/csv'}});"
               " send('total ' + head.total_rows + '\\n'); var row;"
               " while ((row = getRow())) { send(row.key + ',' + row.value + '\\n'); }"
               " return 'end'; }",
    },
    "updates": {
        "bump": "function (doc, req) { if (!doc) { return [{_id: req.id || req.uuid, n: 1},"
                " 'made']; } doc.n += Number(req.query.by || 1); return [doc, {json: {n: doc.n}}]; }",
        "look": "function (doc, req) { return [null, 'only looked at ' + req.id]; }",
        "form": "function (doc, req) { return [{_id: req.form.id, title: req.form.title}, 'ok']; }",
    },
    "views": {"by_name": {"map": "function (doc) { if (doc.name) emit(doc.name, doc.n); }",
                          "reduce": "_sum"}},
    "lib": {"greet": "exports.greet = function (who) { return 'greetings from ' + who; };"},
    "rewrites": [
        {"from": "/hi/:name", "to": "_show/hello", "query": {"who": ":name"}},
        {"from": "/doc/:id", "to": "../../:id"},
        {"from": "/names", "to": "_view/by_name", "query": {"reduce": False}},
        {"from": "/byname/:name", "to": "_view/by_name",
         "query": {"key": ":name", "reduce": "false"}},
        {"from": "/escape", "to": "../../../_all_dbs"},
        {"from": "/loop", "to": "_rewrite/loop"},
        {"from": "/static/*", "to": "static/*"},
    ],
}


def send(app, method, path, body=None, **kw):
    data = orjson.dumps(body) if body is not None and not isinstance(body, bytes) else body
    return app.request(path, method=method, body=data or b"", expect_errors=True,
                       content_type=kw.pop("content_type", "application/json"), **kw)


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, js_timeout=0.5)
    assert app.put("/db").status_int == 201
    docs = [{"_id": "ann", "name": "Ann", "n": 1}, {"_id": "bob", "name": "Bob", "n": 2},
            {"_id": "cy", "name": "Cy", "n": 3}]
    assert send(app, "POST", "/db/_bulk_docs", {"docs": docs}).status_int == 201
    assert send(app, "PUT", "/db/_design/app", APP).status_int == 201
    return app


def test_a_show_renders_a_document_or_none(app):
    r = app.get("/db/_design/app/_show/hello/ann")
    assert r.status_int == 200 and r.text == "Hello Ann"
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["X-Show"] == "yes"
    assert r.headers["Content-Security-Policy"] == "sandbox"
    assert app.get("/db/_design/app/_show/hello?who=you").text == "Hello you"
    r = app.get("/db/_design/app/_show/json/bob")
    assert r.status_int == 202 and r.json == {"id": "bob", "me": None}
    assert app.get("/db/_design/app/_show/lib/ann").text == "greetings from _design/app"


def test_a_show_picks_what_accept_asks_for(app):
    r = app.get("/db/_design/app/_show/either/ann", headers={"Accept": "application/json"})
    assert r.headers["Content-Type"] == "application/json" and r.json == {"name": "Ann"}
    r = app.get("/db/_design/app/_show/either/ann", headers={"Accept": "text/html"})
    assert r.text == "<p>Ann</p>" and r.headers["Content-Type"].startswith("text/html")
    r = app.get("/db/_design/app/_show/either/ann?format=json")
    assert r.json == {"name": "Ann"}
    r = app.get("/db/_design/app/_show/either/ann", headers={"Accept": "image/png"},
                expect_errors=True)
    assert r.status_int == 406 and r.json["error"] == "not_acceptable"


def test_show_errors_are_couchdbs(app):
    r = app.get("/db/_design/app/_show/nope/ann", expect_errors=True)
    assert r.status_int == 404 and r.json["error"] == "not_found"
    r = app.get("/db/_design/app/_show/broken/ann", expect_errors=True)
    assert r.status_int == 500 and r.json["error"] == "render_error"
    r = app.get("/db/_design/app/_show/broken/nobody", expect_errors=True)
    assert r.status_int == 404 and r.json["error"] == "not_found"
    r = app.get("/db/_design/none/_show/hello", expect_errors=True)
    assert r.status_int == 404


def test_a_list_renders_a_view_query(app):
    r = app.get("/db/_design/app/_list/csv/by_name?reduce=false")
    assert r.status_int == 200 and r.headers["Content-Type"] == "text/csv"
    assert r.text == "total 3\nAnn,1\nBob,2\nCy,3\nend"
    r = app.get('/db/_design/app/_list/csv/by_name?reduce=false&startkey="B"&limit=1')
    assert r.text == "total 3\nBob,2\nend"
    assert app.get("/db/_design/app/_list/csv/by_name").text == "total undefined\nnull,6\nend"
    r = send(app, "POST", "/db/_design/app/_list/csv/by_name?reduce=false",
             {"keys": ["Cy", "Ann"]})
    assert r.text == "total 3\nCy,3\nAnn,1\nend"


def test_a_list_of_another_design_documents_view(app):
    other = {"views": {"n": {"map": "function (doc) { if (doc.n) emit(doc.n, doc.name); }"}}}
    assert send(app, "PUT", "/db/_design/other", other).status_int == 201
    r = app.get("/db/_design/app/_list/csv/other/n?descending=true")
    assert r.text == "total 3\n3,Cy\n2,Bob\n1,Ann\nend"
    r = app.get("/db/_design/app/_list/csv/other/missing", expect_errors=True)
    assert r.status_int == 404


def test_an_update_writes_the_document_it_returns(app):
    r = send(app, "POST", "/db/_design/app/_update/bump/ann?by=5")
    assert r.status_int == 201 and r.json == {"n": 6}
    assert r.headers["X-Couch-Id"] == "ann"
    assert r.headers["X-Couch-Update-NewRev"] == app.get("/db/ann").json["_rev"]
    assert app.get("/db/ann").json["n"] == 6
    r = send(app, "PUT", "/db/_design/app/_update/bump/newone")
    assert r.status_int == 201 and r.text == "made"
    assert app.get("/db/newone").json["n"] == 1
    r = send(app, "POST", "/db/_design/app/_update/look/ann")
    assert r.status_int == 200 and r.text == "only looked at ann"
    r = send(app, "POST", "/db/_design/app/_update/form", b"id=formed&title=Hi+there",
             content_type="application/x-www-form-urlencoded")
    assert r.status_int == 201 and app.get("/db/formed").json["title"] == "Hi there"
    r = app.get("/db/_design/app/_update/bump/ann", expect_errors=True)
    assert r.status_int == 405 and r.json["error"] == "method_not_allowed"


def test_an_update_goes_through_validation(app):
    guard = {"validate_doc_update": "function (n) { if (n.n > 10) throw({forbidden: 'too big'}); }"}
    assert send(app, "PUT", "/db/_design/guard", guard).status_int == 201
    r = send(app, "POST", "/db/_design/app/_update/bump/ann?by=50")
    assert (r.status_int, r.json) == (403, {"error": "forbidden", "reason": "too big"})
    assert app.get("/db/ann").json["n"] == 1


def test_rewrite_rules_send_the_request_on(app):
    assert app.get("/db/_design/app/_rewrite/hi/there").text == "Hello there"
    assert app.get("/db/_design/app/_rewrite/doc/bob").json["name"] == "Bob"
    rows = app.get("/db/_design/app/_rewrite/names").json["rows"]
    assert [row["key"] for row in rows] == ["Ann", "Bob", "Cy"]
    assert app.get("/db/_design/app/_rewrite/byname/Cy").json["rows"][0]["id"] == "cy"
    r = app.get("/db/_design/app/_rewrite/nothing/here", expect_errors=True)
    assert r.status_int == 404


def test_rewrites_stay_in_their_database_and_do_not_loop(app):
    r = app.get("/db/_design/app/_rewrite/escape", expect_errors=True)
    assert r.status_int == 400 and "insecure_rewrite_rule" in r.json["reason"]
    r = app.get("/db/_design/app/_rewrite/loop", expect_errors=True)
    assert r.status_int == 400 and r.json["reason"] == "Exceeded rewrite recursion limit"


def test_a_rewrite_function(app):
    ddoc = {"rewrites": "function (req) {"
                        " if (req.path[4] === 'deny') throw({forbidden: 'not here'});"
                        " if (req.path[4] === 'teapot') return {code: 418, body: 'short'};"
                        " if (req.path[4] === 'ann') return {path: '../../ann', method: 'GET'};"
                        " if (req.path[4] === 'hi') return {path: '../app/_show/hello',"
                        "   query: {who: req.query.who}};"
                        " return false; }"}
    assert send(app, "PUT", "/db/_design/fn", ddoc).status_int == 201
    assert app.get("/db/_design/fn/_rewrite/ann").json["_id"] == "ann"
    assert app.get("/db/_design/fn/_rewrite/hi?who=fn").text == "Hello fn"
    r = app.get("/db/_design/fn/_rewrite/teapot", expect_errors=True)
    assert r.status_int == 418 and r.text == "short"
    r = app.get("/db/_design/fn/_rewrite/deny", expect_errors=True)
    assert (r.status_int, r.json["error"]) == (403, "forbidden")
    r = app.get("/db/_design/fn/_rewrite/other", expect_errors=True)
    assert (r.status_int, r.json["error"]) == (404, "rewrite_error")


def test_design_info_cleanup_compact_and_temp_view(app):
    app.get("/db/_design/app/_view/by_name")             # built
    info = app.get("/db/_design/app/_info").json
    assert info["name"] == "app"
    index = info["view_index"]
    assert set(index) >= {"signature", "language", "sizes", "updater_running",
                          "compact_running", "waiting_clients", "update_seq", "purge_seq"}
    assert index["language"] == "javascript" and index["update_seq"] >= 2
    assert len(index["signature"]) == 32
    assert app.get("/db/_design/nope/_info", expect_errors=True).status_int == 404
    r = send(app, "POST", "/db/_view_cleanup")
    assert (r.status_int, r.json) == (202, {"ok": True})
    assert send(app, "POST", "/db/_compact/app").status_int == 202
    assert send(app, "POST", "/db/_compact/nope").status_int == 404
    r = send(app, "POST", "/db/_temp_view", {"map": "function (doc) { emit(null, 1); }"})
    assert r.status_int == 410 and r.json["error"] == "gone"
