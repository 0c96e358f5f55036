"""What bounds a query's work: RE2 for ``$regex`` and the ``query_timeout`` setting."""
from __future__ import annotations

import time

import orjson
import pytest
from httpclient import make_app

from settee.server.views import answered
from settee.views.deadline import Deadline, QueryTimeout

DOCS = [{"_id": f"d{i:05d}", "n": i, "text": "a" * 27 + "!"} for i in range(3000)]
DDOC = {"language": "python", "views": {
    "by_n": {"map": "def fun(doc):\n    yield doc['n'], None"},
    "count": {"map": "def fun(doc):\n    yield doc['n'], 1", "reduce": "_count"},
}}


def post(app, path, body, **kw):
    return app.post(path, orjson.dumps(body), content_type="application/json", **kw)


def fill(app):
    app.put("/db")
    post(app, "/db/_bulk_docs", {"docs": DOCS})
    app.put("/db/_design/app", orjson.dumps(DDOC), content_type="application/json",
            status=201)
    return app


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return fill(make_app(tmp_path_factory.mktemp("limits")))


@pytest.fixture(scope="module")
def hasty(tmp_path_factory):
    """A server whose queries may read rows for a millisecond without answering one."""
    return fill(make_app(tmp_path_factory.mktemp("hasty"), query_timeout=0.001))


def test_a_catastrophic_regex_over_every_document_answers_at_once(app):
    started = time.perf_counter()
    r = post(app, "/db/_find", {"selector": {"text": {"$regex": "^(a+)+$"}}})
    assert r.json["docs"] == []
    assert time.perf_counter() - started < 1.0    # 3,000 documents read and matched


def test_a_backreference_is_a_400_that_names_it(app):
    r = post(app, "/db/_find", {"selector": {"text": {"$regex": r"(a)\1"}}},
             expect_errors=True)
    assert r.status_int == 400
    assert r.json["error"] == "bad_arg"
    assert "backreferences" in r.json["reason"]


def test_a_find_past_query_timeout_is_a_503_timeout(hasty):
    r = post(hasty, "/db/_find", {"selector": {"n": {"$lt": 0}}}, expect_errors=True)
    assert r.status_int == 503, r.body
    assert r.json["error"] == "timeout"
    assert "query_timeout" in r.json["reason"]


def test_a_find_within_query_timeout_answers(app):
    r = post(app, "/db/_find", {"selector": {"n": {"$lt": 0}}})
    assert r.json["docs"] == []


@pytest.mark.parametrize("query", [
    "by_n?skip=1000000", "by_n?skip=1000000&include_docs=true", "count?group=true&skip=1000000",
])
def test_a_view_query_that_reads_long_without_answering_is_a_503_timeout(hasty, query):
    hasty.get("/db/_design/app/_view/by_n?limit=1")        # built: the update is not timed
    r = hasty.get("/db/_design/app/_view/" + query, expect_errors=True)
    assert r.status_int == 503, r.body
    assert r.json["error"] == "timeout"


def test_a_view_query_that_keeps_answering_is_not_cut_short(hasty):
    r = hasty.get("/db/_design/app/_view/by_n")
    assert len(r.json["rows"]) == len(DOCS)
    assert "error" not in r.json


def test_a_timeout_after_the_first_row_ends_the_listing_with_the_error():
    deadline = Deadline(1.0)

    def rows():
        yield {"key": 1}
        yield {"key": 2}
        raise QueryTimeout(1.0)

    stream, failure = answered(rows(), deadline)
    assert failure == {}
    assert list(stream) == [{"key": 1}, {"key": 2}]
    assert failure["error"] == "timeout" and "query_timeout" in failure["reason"]


def test_a_deadline_looks_at_the_clock_once_per_batch_of_rows():
    deadline = Deadline(0.0)
    for _ in range(Deadline.every - 1):
        deadline.check()                   # past already, but not looked at yet
    with pytest.raises(QueryTimeout):
        deadline.check()
