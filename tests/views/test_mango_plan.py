"""Mango's planner and _explain over HTTP: which index CouchDB 3.4 would choose, and why."""
from __future__ import annotations

import orjson
import pytest
from httpclient import make_app

from settee.views.normal import EMPTY, field_range, has_required_fields, normalize

PEOPLE = [{"_id": f"p{i:02d}", "name": f"n{i % 4}", "age": 20 + i % 9, "city": "c%d" % (i % 3)}
          for i in range(40)]


@pytest.fixture()
def app(tmp_path):
    app = make_app(tmp_path)
    app.put("/db")
    post(app, "/db/_bulk_docs", {"docs": PEOPLE})
    return app


def post(app, path, body, **kw):
    return app.post(path, orjson.dumps(body), content_type="application/json", **kw)


def index(app, fields, name, **extra):
    body = {"index": {"fields": fields, **extra.pop("index", {})}, "name": name, "ddoc": name,
            **extra}
    return post(app, "/db/_index", body).json


def explain(app, **query):
    return post(app, "/db/_explain", query).json


# -- the normal form -------------------------------------------------------------------
def test_normalize_makes_and_explicit_paths_dotted_and_pushes_negations_down():
    assert normalize({"a": {"b": 1}, "c": {"$not": {"$lt": 3}}}) == {
        "$and": [{"a.b": {"$eq": 1}}, {"c": {"$gte": 3}}]}
    assert normalize({"$nor": [{"a": 1}]}) == {"$and": [{"a": {"$ne": 1}}]}
    assert normalize({"$not": {"$or": [{"a": {"$in": [1]}}, {"b": {"$exists": True}}]}}) == {
        "$and": [{"a": {"$nin": [1]}}, {"b": {"$exists": False}}]}
    assert normalize({}) == {}


def test_ranges_intersect_and_an_impossible_one_is_empty():
    norm = normalize({"$and": [{"a": {"$gt": 2}}, {"a": {"$lte": 9}}, {"a": {"$gte": 1}}]})
    assert field_range(norm, "a") == ("$gt", 2, "$lte", 9)
    assert field_range(normalize({"a": {"$gt": 5, "$lt": 1}}), "a") is EMPTY
    assert field_range(normalize({"a": {"$gte": 3, "$lte": 3}}), "a") == ("$eq", 3, "$eq", 3)


def test_required_fields_see_through_and_and_every_branch_of_or():
    assert has_required_fields(normalize({"a": {"$in": [1, 2]}, "b": 1}), {"a", "b"})
    assert has_required_fields(normalize({"$or": [{"a": 1}, {"a": 2}]}), {"a"})
    assert not has_required_fields(normalize({"$or": [{"a": 1}, {"b": 2}]}), {"a"})
    assert not has_required_fields(normalize({"a": {"$exists": False}}), {"a"})


# -- index choice --------------------------------------------------------------------------
def test_in_uses_an_index(app):
    index(app, ["age"], "by-age")
    plan = explain(app, selector={"age": {"$in": [21, 22]}})
    assert plan["index"]["name"] == "by-age"
    found = post(app, "/db/_find", {"selector": {"age": {"$in": [21, 22]}}, "limit": 100}).json
    assert "warning" not in found
    assert sorted(d["_id"] for d in found["docs"]) == sorted(
        p["_id"] for p in PEOPLE if p["age"] in (21, 22))


def test_an_index_on_id_and_rev_needs_only_its_other_fields(app):
    index(app, ["name", "_id"], "name-id")
    plan = explain(app, selector={"name": "n1"}, sort=["name", "_id"])
    assert plan["index"]["name"] == "name-id"
    docs = post(app, "/db/_find", {"selector": {"name": "n1"}, "sort": ["name", "_id"]}).json
    ids = [d["_id"] for d in docs["docs"]]
    assert ids == sorted(p["_id"] for p in PEOPLE if p["name"] == "n1")


def test_sort_after_a_field_held_to_one_value(app):
    index(app, ["city", "age"], "city-age")
    found = post(app, "/db/_find", {"selector": {"city": "c1"}, "sort": [{"age": "desc"}],
                                    "fields": ["age"], "limit": 100})
    ages = [d["age"] for d in found.json["docs"]]
    assert ages == sorted((p["age"] for p in PEOPLE if p["city"] == "c1"), reverse=True)
    # Not held to one value: the sort cannot be served.
    bad = post(app, "/db/_find", {"selector": {"city": {"$gt": "c0"}}, "sort": ["age"]},
               expect_errors=True)
    assert bad.status_int == 400 and bad.json["error"] == "no_usable_index"


def test_the_index_that_covers_most_indexable_fields_wins_then_the_narrower(app):
    index(app, ["age"], "a")
    index(app, ["age", "name"], "b")
    index(app, ["name", "age", "city"], "c")
    assert explain(app, selector={"age": 21})["index"]["name"] == "a"
    assert explain(app, selector={"age": 21, "name": "n1"})["index"]["name"] == "b"
    plan = explain(app, selector={"age": 21, "name": "n1", "city": "c1"})
    assert plan["index"]["name"] == "c"
    assert plan["mrargs"]["start_key"] == ["n1", 21, "c1"]
    assert plan["mrargs"]["end_key"] == ["n1", 21, "c1", "<MAX>"]


def test_use_index_that_does_not_fit_falls_back_with_a_warning_or_is_400(app):
    index(app, ["age"], "a")
    index(app, ["name"], "n")
    query = {"selector": {"age": 21}, "use_index": "n"}
    found = post(app, "/db/_find", query).json
    assert "_design/n was not used" in found["warning"]
    assert {d["age"] for d in found["docs"]} == {21}
    bad = post(app, "/db/_find", {**query, "allow_fallback": False}, expect_errors=True)
    assert bad.status_int == 400 and bad.json["error"] == "invalid_index"
    missing = post(app, "/db/_find", {"selector": {"age": 21}, "use_index": ["nope", "x"],
                                      "allow_fallback": False}, expect_errors=True)
    assert missing.status_int == 400 and "nope" in missing.json["reason"]
    named = explain(app, selector={"age": 21, "name": "n1"}, use_index="_design/n/n")
    assert named["index"]["name"] == "n"


def test_a_partial_index_is_used_only_when_named_and_holds_only_its_documents(app):
    index(app, ["age"], "adults", index={"partial_filter_selector": {"age": {"$gte": 25}}})
    assert explain(app, selector={"age": {"$gt": 0}})["index"]["type"] == "special"
    query = {"selector": {"age": {"$gt": 0}}, "use_index": "adults", "limit": 100}
    assert explain(app, **query)["index"]["def"]["partial_filter_selector"] == {
        "age": {"$gte": 25}}
    found = post(app, "/db/_find", query).json["docs"]
    assert sorted(d["_id"] for d in found) == sorted(p["_id"] for p in PEOPLE if p["age"] >= 25)
    assert app.get("/db/_design/adults").json["views"]["adults"]["map"][
        "partial_filter_selector"] == {"age": {"$gte": 25}}


# -- _explain -----------------------------------------------------------------------------
def test_explain_has_couchdbs_fields(app):
    index(app, ["age"], "a")
    index(app, ["name", "city"], "nc")
    plan = explain(app, selector={"age": {"$gt": 21}, "tags": {"$size": 2}},
                   fields=["_id", "age"])
    assert plan["index"]["name"] == "a" and plan["partitioned"] is False
    assert plan["selector"] == {"$and": [{"age": {"$gt": 21}}, {"tags": {"$size": 2}}]}
    assert plan["opts"] == {
        "use_index": [], "bookmark": "nil", "limit": 25, "skip": 0, "sort": {},
        "fields": ["_id", "age"], "partition": "", "r": 1, "conflicts": False, "stale": False,
        "update": True, "stable": False, "execution_stats": False, "allow_fallback": True}
    assert plan["mrargs"] == {"include_docs": True, "view_type": "map", "reduce": False,
                              "partition": None, "start_key": [21], "end_key": ["<MAX>"],
                              "direction": "fwd", "stable": False, "update": True,
                              "conflicts": False}
    assert plan["covering"] is False      # the selector needs "tags" too
    assert plan["selector_hints"] == [{"type": "json", "indexable_fields": ["age"],
                                       "unindexable_fields": ["tags"]}]
    by_name = {c["index"]["name"]: c["analysis"] for c in plan["index_candidates"]}
    assert by_name["_all_docs"] == {"usable": True, "reasons": [{"name": "unfavored_type"}],
                                    "ranking": 1, "covering": None}
    assert by_name["nc"]["usable"] is False
    assert by_name["nc"]["reasons"] == [{"name": "field_mismatch"}]


def test_explain_of_a_covering_query_reads_no_documents(app):
    index(app, ["age"], "a")
    plan = explain(app, selector={"age": {"$lt": 30}}, fields=["_id", "age"],
                   sort=[{"age": "desc"}])
    assert plan["covering"] is True and plan["mrargs"]["include_docs"] is False
    assert plan["mrargs"]["direction"] == "rev"
    assert (plan["mrargs"]["start_key"], plan["mrargs"]["end_key"]) == ([30, "<MAX>"], [])
    found = post(app, "/db/_find", {"selector": {"age": {"$lt": 30}}, "fields": ["_id", "age"],
                                    "execution_stats": True, "limit": 100}).json
    assert found["execution_stats"]["total_docs_examined"] == 0
    assert found["execution_stats"]["results_returned"] == len(found["docs"]) == 40


def test_explain_of_all_docs_shows_the_id_range(app):
    plan = explain(app, selector={"_id": {"$gt": "p10"}})
    assert plan["index"]["type"] == "special"
    assert plan["mrargs"]["start_key"] == "p10" and plan["mrargs"]["end_key"] == "<MAX>"
    plan = explain(app, selector={"name": "n1"})
    assert plan["mrargs"]["start_key"] is None and plan["mrargs"]["end_key"] == "<MAX>"


def test_explain_without_a_usable_index_for_the_sort_has_a_null_index(app):
    plan = explain(app, selector={"age": 1}, sort=["age"])
    assert plan["index"] is None and "mrargs" not in plan
