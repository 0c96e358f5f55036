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


def test_limit_zero_returns_no_documents(app):
    r = post(app, "/db/_find", {"selector": {"_id": {"$gt": None}}, "limit": 0}).json
    assert r["docs"] == [] and r["bookmark"] == "nil"


@pytest.mark.parametrize("selector,expected", [
    ({"_id": {"$gt": {}}}, 200), ({"_id": {"$gte": []}}, 200), ({"_id": {"$lt": {}}}, 0),
    ({"_id": {"$lte": []}}, 0), ({"_id": {"$gt": None}}, 200),
])
def test_id_against_objects_and_arrays_follows_couchdbs_order(app, selector, expected):
    r = post(app, "/db/_find", {"selector": selector, "limit": 1000, "fields": ["_id"]}).json
    assert len(r["docs"]) == expected


@pytest.mark.parametrize("sort", [[{"_id": "desc"}], [{"n": "desc"}], [{"_id": "asc"}]])
def test_bookmarks_page_without_repeating_in_either_direction(app, sort):
    post(app, "/db/_index", {"index": {"fields": ["n"]}, "name": "by-n", "ddoc": "ix"})
    selector = {"_id": {"$gt": None}} if "_id" in sort[0] else {"n": {"$gte": 0}}
    ids = find_all(app, selector, sort=sort)
    assert len(ids) == len(set(ids)) == len(brute(selector))


def test_an_empty_page_gives_back_the_bookmark_it_was_given(app):
    first = post(app, "/db/_find", {"selector": {"n": 7}, "limit": 1000}).json
    assert first["docs"] and first["bookmark"] != "nil"
    again = post(app, "/db/_find", {"selector": {"n": 7}, "bookmark": first["bookmark"]}).json
    assert again["docs"] == [] and again["bookmark"] == first["bookmark"]
    none = post(app, "/db/_find", {"selector": {"n": "nothing"}}).json
    assert none["docs"] == [] and none["bookmark"] == "nil"


def test_execution_stats_count_keys_documents_and_results(app):
    post(app, "/db/_index", {"index": {"fields": ["n"]}, "name": "by-n", "ddoc": "ix"})
    selector = {"n": {"$lt": 5}, "tags": {"$size": 1}}
    r = post(app, "/db/_find", {"selector": selector, "execution_stats": True,
                                "limit": 1000}).json
    stats = r["execution_stats"]
    in_range = sum(1 for d in DOCS if "n" in d and d["n"] < 5)
    assert set(stats) == {"total_keys_examined", "total_docs_examined",
                          "total_quorum_docs_examined", "results_returned", "execution_time_ms"}
    assert stats["total_docs_examined"] == stats["total_keys_examined"] >= in_range
    assert stats["results_returned"] == len(r["docs"]) == len(brute(selector))
    quorum = post(app, "/db/_find", {"selector": {"n": {"$lt": 5}}, "r": 3,
                                     "execution_stats": True}).json["execution_stats"]
    assert quorum["total_docs_examined"] == 0 and quorum["total_quorum_docs_examined"] > 0


def test_conflicts_true_lists_the_conflicting_revisions(app):
    for rev in ("1-aaa", "1-bbb"):
        post(app, "/db/_bulk_docs", {"docs": [{"_id": "clash", "_rev": rev, "v": rev}],
                                     "new_edits": False})
    r = post(app, "/db/_find", {"selector": {"_id": "clash"}, "conflicts": True}).json
    [doc] = r["docs"]
    assert doc["_conflicts"] == ["1-aaa"] and doc["_rev"] == "1-bbb"
    plain = post(app, "/db/_find", {"selector": {"_id": "clash"}}).json
    assert "_conflicts" not in plain["docs"][0]


def test_an_index_is_stored_as_sent_and_listed_as_couchdb_lists_it(app):
    post(app, "/db/_index", {"index": {"fields": ["name", "n"]}, "name": "na", "ddoc": "sent"})
    ddoc = app.get("/db/_design/sent").json
    assert ddoc["views"]["na"]["options"]["def"] == {"fields": ["name", "n"]}
    assert ddoc["views"]["na"]["map"]["fields"] == {"name": "asc", "n": "asc"}
    [listed] = [ix for ix in app.get("/db/_index").json["indexes"] if ix["name"] == "na"]
    assert listed["def"] == {"fields": [{"name": "asc"}, {"n": "asc"}]}


def test_an_index_into_a_design_doc_of_another_language_is_refused(app):
    app.put("/db/_design/js", orjson.dumps({"views": {"v": {"map": "function(doc){}"}}}),
            content_type="application/json")
    r = post(app, "/db/_index", {"index": {"fields": ["n"]}, "ddoc": "js"}, expect_errors=True)
    assert r.status_int == 400 and r.json["error"] == "invalid_ddoc_lang"
    assert "language" not in app.get("/db/_design/js").json
