"""_changes filters written in JavaScript: filter=ddoc/name with CouchDB's req, and
filter=_view with a JavaScript view; batches of changes, one V8 call each."""
from __future__ import annotations

import orjson
import pytest
from httpclient import make_app

from settee.server import changes as changes_module

DESIGN = {
    "filters": {
        "big": "function (doc, req) { return doc.n >= Number(req.query.min || 0); }",
        "mine": "function (doc, req) { return doc.owner === req.userCtx.name; }",
        "gone": "function (doc, req) { return doc._deleted === true; }",
        "picky": "function (doc, req) { if (doc.n === 3) throw new Error('no 3'); return true; }",
        "echo": "function (doc, req) { return req.body !== 'undefined' && "
                "JSON.parse(req.body).want === doc._id; }",
    },
    "views": {"odd": {"map": "function (doc) { if (doc.n % 2) emit(doc.n, null); }"}},
}


def post(app, path, body):
    return app.post(path, orjson.dumps(body), content_type="application/json",
                    expect_errors=True)


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, js_timeout=0.5)
    assert app.put("/db").status_int == 201
    docs = [{"_id": f"d{n}", "n": n, "owner": None} for n in range(6)]
    assert post(app, "/db/_bulk_docs", {"docs": docs}).status_int == 201
    assert app.put("/db/_design/f", orjson.dumps(DESIGN),
                   content_type="application/json").status_int == 201
    return app


def ids(response) -> list[str]:
    return [row["id"] for row in response.json["results"]]


def test_a_design_filter_gets_the_query(app):
    assert ids(app.get("/db/_changes?filter=f/big&min=4")) == ["d4", "d5"]
    assert ids(app.get("/db/_changes?filter=f/big&min=5&feed=longpoll")) == ["d5"]


def test_a_design_filter_gets_the_user_and_deletions(app):
    # no user (admin party): name null, as the documents' owner
    assert len(ids(app.get("/db/_changes?filter=f/mine"))) == 6
    rev = app.get("/db/d2").json["_rev"]
    app.delete(f"/db/d2?rev={rev}")
    assert ids(app.get("/db/_changes?filter=f/gone")) == ["d2"]


def test_a_post_body_reaches_the_filter(app):
    assert ids(post(app, "/db/_changes?filter=f/echo", {"want": "d1"})) == ["d1"]


def test_a_filter_that_throws_for_a_document_passes_over_it(app):
    assert ids(app.get("/db/_changes?filter=f/picky")) == ["d0", "d1", "d2", "d4", "d5",
                                                          "_design/f"]


def test_a_missing_filter_is_404(app):
    for query in ("filter=f/nope", "filter=nope/big", "filter=nothing"):
        r = app.get(f"/db/_changes?{query}", expect_errors=True)
        assert r.status_int == 404 and r.json["error"] == "not_found", query


def test_the_view_filter_runs_a_javascript_map(app):
    assert ids(app.get("/db/_changes?filter=_view&view=f/odd")) == ["d1", "d3", "d5"]


def test_filters_take_changes_in_batches(app, monkeypatch, js_calls):
    monkeypatch.setattr(changes_module, "FILTER_BATCH", 4)
    calls = js_calls
    assert ids(app.get("/db/_changes?filter=f/big&min=0")) == [f"d{n}" for n in range(6)]
    assert calls.count("__setteeRender.filter") == 2          # 7 changes, 4 at a time
