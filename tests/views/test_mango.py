"""Mango _find over HTTP: results equal a brute-force filter, with and without indexes."""
from __future__ import annotations

import random

import orjson
import pytest
from httpclient import make_app

from settee.views.collation import sort_key
from settee.views.selector import compile_selector

NAMES = ["ann", "Bob", "cy", "dee", None, 3, ["x"]]


def make_docs(n=200, seed=5):
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        doc = {"_id": f"d{i:04d}", "n": rng.randrange(50), "name": rng.choice(NAMES),
               "tags": rng.sample(["a", "b", "c", "d"], rng.randrange(4)),
               "nested": {"x": rng.choice([1, 2.5, "s", None])}}
        if rng.random() < 0.2:
            del doc["n"]
        docs.append(doc)
    return docs


DOCS = make_docs()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(tmp_path_factory.mktemp("mango"))
    app.put("/db")
    app.post("/db/_bulk_docs", orjson.dumps({"docs": DOCS}), content_type="application/json")
    return app


def post(app, path, body, **kw):
    return app.post(path, orjson.dumps(body), content_type="application/json", **kw)


SELECTORS = [
    {"n": 7}, {"n": {"$gt": 40}}, {"n": {"$gte": 10, "$lt": 12}}, {"n": {"$ne": 3}},
    {"n": {"$in": [1, 2, 3]}}, {"n": {"$nin": [1, 2, 3]}}, {"n": {"$exists": False}},
    {"name": {"$type": "string"}}, {"name": {"$regex": "^[a-c]"}}, {"tags": {"$size": 2}},
    {"tags": {"$all": ["a", "b"]}}, {"tags": {"$elemMatch": {"$eq": "d"}}},
    {"tags": {"$allMatch": {"$in": ["a", "b"]}}}, {"n": {"$mod": [5, 0]}},
    {"$or": [{"n": 1}, {"name": "ann"}]}, {"$nor": [{"n": {"$lt": 45}}, {"name": "cy"}]},
    {"$not": {"n": {"$lt": 45}}}, {"nested.x": {"$gt": 1}}, {"nested": {"x": "s"}},
    {"$and": [{"n": {"$gte": 20}}, {"tags": {"$size": 0}}]}, {"name": {"$gt": None}},
]


def brute(selector):
    match = compile_selector(selector)
    return sorted(d["_id"] for d in DOCS if match(d))


def find_all(app, selector, **extra):
    """Every match, page by page through bookmarks."""
    ids, bookmark = [], None
    for _ in range(100):
        body = {"selector": selector, "limit": 7, "fields": ["_id"], **extra}
        if bookmark:
            body["bookmark"] = bookmark
        r = post(app, "/db/_find", body).json
        ids += [d["_id"] for d in r["docs"]]
        if len(r["docs"]) < 7:
            return ids
        bookmark = r["bookmark"]
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("selector", SELECTORS)
def test_find_without_an_index_equals_brute_force(app, selector):
    r = post(app, "/db/_find", {"selector": selector, "limit": 1000}).json
    assert "No matching index" in r["warning"]
    assert sorted(d["_id"] for d in r["docs"]) == brute(selector)
    assert sorted(find_all(app, selector)) == brute(selector)


def test_find_with_indexes_equals_brute_force_and_says_which_index(app):
    post(app, "/db/_index", {"index": {"fields": ["n"]}, "name": "by-n", "ddoc": "ix"})
    post(app, "/db/_index", {"index": {"fields": ["name", "n"]}, "name": "by-name"})
    for selector in SELECTORS:
        r = post(app, "/db/_find", {"selector": selector, "limit": 1000}).json
        assert sorted(d["_id"] for d in r["docs"]) == brute(selector), selector
        assert sorted(find_all(app, selector)) == brute(selector), selector
    plan = post(app, "/db/_explain", {"selector": {"n": {"$gt": 40}}}).json
    assert plan["index"]["name"] == "by-n" and plan["mrargs"]["start_key"] == [40]
    assert "warning" not in post(app, "/db/_find", {"selector": {"n": {"$gt": 40}}}).json


def test_sort_uses_the_index_order(app):
    post(app, "/db/_index", {"index": {"fields": ["n"]}, "name": "by-n", "ddoc": "ix"})
    for direction in ("asc", "desc"):
        r = post(app, "/db/_find", {"selector": {"n": {"$gte": 30}}, "sort": [{"n": direction}],
                                    "limit": 1000}).json
        got = [d["n"] for d in r["docs"]]
        assert got == sorted(got, key=sort_key, reverse=direction == "desc")
        assert len(got) == len(brute({"n": {"$gte": 30}}))


def test_default_limit_fields_and_skip(app):
    r = post(app, "/db/_find", {"selector": {"_id": {"$gt": None}}}).json
    assert len(r["docs"]) == 25
    r = post(app, "/db/_find", {"selector": {"_id": {"$gt": None}}, "fields": ["nested.x"],
                                "skip": 10, "limit": 1}).json
    assert list(r["docs"][0]) == ["nested"]


@pytest.mark.parametrize("body,error", [
    ({"selector": {"n": {"$foo": 1}}}, "invalid_operator"),
    ({"selector": {"n": {"$in": 5}}}, "bad_arg"),
    ({}, "missing_required_key"),
    ({"selector": {}, "sort": [{"tags": "asc"}]}, "no_usable_index"),
    ({"selector": {}, "sort": [{"n": "asc"}, {"name": "desc"}]}, "unsupported_mixed_sort"),
    ({"selector": {}, "limit": -1}, "invalid_limit"),
    ({"selector": {}, "bookmark": "!!!"}, "invalid_bookmark"),
    ({"selector": {}, "fields": "n"}, "invalid_fields"),
    ({"selector": {}, "frobnicate": 1}, "invalid_key"),
    ({"selector": [1]}, None),
])
def test_malformed_queries_are_400(app, body, error):
    r = post(app, "/db/_find", body, expect_errors=True)
    assert r.status_int == 400
    if error:
        assert r.json["error"] == error, r.json


def test_index_lifecycle(app):
    r = post(app, "/db/_index", {"index": {"fields": ["tags"]}, "name": "t", "ddoc": "life"})
    assert r.json == {"result": "created", "id": "_design/life", "name": "t"}
    again = post(app, "/db/_index", {"index": {"fields": ["tags"]}, "name": "t", "ddoc": "life"})
    assert again.json["result"] == "exists"
    names = [ix["name"] for ix in app.get("/db/_index").json["indexes"]]
    assert names[0] == "_all_docs" and "t" in names
    app.delete("/db/_index/_design/life/json/t")
    assert "t" not in [ix["name"] for ix in app.get("/db/_index").json["indexes"]]
    r = app.delete("/db/_index/_design/life/json/t", expect_errors=True)
    assert r.status_int == 404
    bad = post(app, "/db/_index", {"index": {"fields": []}}, expect_errors=True)
    assert bad.status_int == 400
