"""Map-reduce views: collation, incremental correctness, catch-up, builds, queries."""
from __future__ import annotations

import json
import multiprocessing
import os
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from httpclient import make_app
from paths import SHARED_BENCH as SHARED  # noqa: E402
from waiting import until

from settee.config import load_settings
from settee.store import Catalog
from settee.views import build, engine
from settee.views.collation import encode
from settee.views.definitions import ViewSpec, design_views
from settee.views.engine import View

# CouchDB's documented view collation order ("Views Collation", examples table).
COLLATION = [None, False, True, -2, -1.5, 0, 1, 2, 3.0, 4, "a", "A", "aa", "b", "B", "ba",
             "bb", ["a"], ["b"], ["b", "c"], ["b", "c", "a"], ["b", "d"], ["b", "d", "e"],
             {"a": 1}, {"a": 2}, {"b": 1}, {"b": 2}, {"b": 2, "a": 1}, {"b": 2, "c": 2}]


def test_collation_order_table():
    shuffled = COLLATION[:]
    random.Random(7).shuffle(shuffled)
    assert sorted(shuffled, key=encode) == COLLATION
    assert encode(1) == encode(1.0) and encode(0) == encode(-0.0)


def test_keys_are_self_delimiting_so_prefixes_sort_first():
    assert encode(["a"]) < encode(["a", None]) < encode(["a", "b"]) < encode(["aa"])
    assert encode("a\x01b") != encode("a") and encode("") < encode("\x00")


def catalog(tmp_path, **kw):
    kw.setdefault("storage_stack", ["timestamps", "versioning", "serialization", "compression"])
    return Catalog(load_settings(env={}, storage_data_dir=str(tmp_path / "data"), **kw))


SUM_BY_TAG = ViewSpec("t/by_tag", "def fun(doc):\n    for t in doc.get('tags', []):\n"
                      "        yield t, doc['n']\n", "_sum", "design")


def scratch(db, spec):
    """What the view must hold, recomputed from the documents."""
    mapper, reducer = spec.compile()
    rows = sorted(([k, i, v] for i, d in db.docs() for k, v in mapper(d)),
                  key=lambda r: (encode(r[0]), r[1]))
    groups = {}
    for k, _, v in rows:
        groups.setdefault(encode(k), (k, []))[1].append(v)
    return rows, {e: (k, reducer.reduce([], vs)) for e, (k, vs) in groups.items()}


def tagged_docs(tmp_path, count: int, seed: int):
    """A database of ``count`` documents with a number and two of six tags."""
    db = catalog(tmp_path).create("db")
    rng = random.Random(seed)
    with db.transaction():
        for i in range(count):
            db[f"d{i:05d}"] = {"n": rng.randrange(10), "tags": rng.sample("abcdef", 2)}
    return db


def check_against_scratch(db, view):
    view.update()
    rows, groups = scratch(db, view.spec)
    got = [[k, i, v] for k, i, v in view.rows()]
    assert [(r[0], r[1]) for r in got] == [(r[0], r[1]) for r in rows]
    assert [r[2] for r in got] == pytest.approx([r[2] for r in rows])
    reduced = list(view.reduce(view.reductions(), None, True))
    assert [r["key"] for r in reduced] == [k for k, _ in groups.values()]
    for row, (_, want) in zip(reduced, groups.values()):
        assert row["value"] == pytest.approx(want)
    assert view.state()["rows"] == len(rows)


@pytest.mark.parametrize("seed", range(4))
def test_random_puts_updates_and_deletes_match_a_recompute(tmp_path, seed):
    rng = random.Random(seed)
    db = catalog(tmp_path).create("db")
    view = View(db, SUM_BY_TAG)
    tags = ["a", "b", "c", "d", 1, 2, ["x", 1], None]
    for step in range(300):
        doc_id = f"d{rng.randrange(40)}"
        current = db.get(doc_id)
        if current is not None and rng.random() < 0.25:
            db.delete(doc_id, current["_rev"])
        else:
            body = {"n": rng.randrange(-50, 50) / 4, "tags": rng.sample(tags, rng.randrange(4))}
            if current is not None:
                body["_rev"] = current["_rev"]
            db[doc_id] = body
        if step % rng.choice([1, 7, 50]) == 0:
            check_against_scratch(db, view)
    check_against_scratch(db, view)


@pytest.mark.parametrize("reduce", ["_count", "_stats",
                                    "def fun(keys, values, rereduce):\n    return sum(values)"])
def test_other_reducers_stay_correct_under_updates(tmp_path, reduce):
    db = catalog(tmp_path).create("db")
    spec = ViewSpec("t/v", SUM_BY_TAG.map_source, reduce, "design")
    view = View(db, spec)
    rng = random.Random(3)
    for step in range(150):
        doc_id = f"d{rng.randrange(20)}"
        current = db.get(doc_id)
        body = {"n": rng.randrange(100), "tags": rng.sample("abc", rng.randrange(3))}
        if current is not None:
            if rng.random() < 0.3:
                db.delete(doc_id, current["_rev"])
                continue
            body["_rev"] = current["_rev"]
        db[doc_id] = body
        if step % 10 == 0:
            check_against_scratch(db, view)
    check_against_scratch(db, view)


def test_index_catches_up_after_a_restart_and_writes_elsewhere(tmp_path):
    db = catalog(tmp_path).create("db")
    for i in range(20):
        db[f"d{i}"] = {"n": i, "tags": ["t"]}
    view = View(db, SUM_BY_TAG)
    assert list(view.reduce(view.reductions(), None, False)) == []   # not updated yet
    view.update()
    db.close()
    other = catalog(tmp_path).get("db")       # "another worker"
    for i in range(20, 30):
        other[f"d{i}"] = {"n": i, "tags": ["t"]}
    again = View(catalog(tmp_path).get("db"), SUM_BY_TAG)
    check_against_scratch(again.db, again)
    assert list(again.reduce(again.reductions(), None, False))[0]["value"] == sum(range(30))


def _writer(data_dir, start, count):
    cat = catalog(Path(data_dir))
    db = cat.get("db")
    for i in range(start, start + count):
        db[f"p{i}"] = {"n": 1, "tags": ["t", f"w{start}"]}


def test_two_processes_write_concurrently_then_a_query_sees_everything(tmp_path):
    catalog(tmp_path).create("db")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), s, 150)) for s in (0, 1000)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    db = catalog(tmp_path).get("db")
    view = View(db, SUM_BY_TAG)
    check_against_scratch(db, view)
    assert list(view.reduce(view.reductions(start="t", end="t"), None, False))[0]["value"] == 300


def test_a_map_that_raises_skips_the_document(tmp_path, caplog):
    db = catalog(tmp_path).create("db")
    db["good"] = {"n": 1, "tags": ["a"]}
    db["bad"] = {"tags": ["a"]}              # no "n": KeyError in the map
    view = View(db, SUM_BY_TAG)
    view.update()
    assert [r[1] for r in view.rows()] == ["good"]
    assert "bad" in caplog.text


def test_parallel_build_equals_incremental_build(tmp_path, monkeypatch):
    db = tagged_docs(tmp_path, 2500, seed=1)
    monkeypatch.setattr(engine, "PARALLEL_THRESHOLD", 1000)
    monkeypatch.setattr(build, "CHUNK", 300)
    done = []
    view = View(db, SUM_BY_TAG)
    view.update(progress=done.append)
    assert sum(done) == 2500 and view.state()["seq"] == 2500
    check_against_scratch(db, view)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs to tell a pinned process from a free one")
def test_a_build_pool_process_runs_on_the_cpus_its_parent_had_before_it_was_pinned():
    """Server workers run on a CPU each; the processes of a build's pool are started
    from a worker and go back to the CPUs it had before (all of them here; under
    ``taskset`` only those), not its one CPU."""
    code = ("import os; from settee.config.affinity import pin, restore, unpinned; "
            "pin(min(os.sched_getaffinity(0))); assert len(os.sched_getaffinity(0)) == 1; "
            "restore(unpinned()); print(sorted(os.sched_getaffinity(0)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == sorted(os.sched_getaffinity(0))


def test_invoice_view_matches_the_expected_totals(tmp_path):
    count = 2000
    generate = [sys.executable, str(SHARED / "make_invoices.py"), str(count)]
    docs = [json.loads(line) for line in subprocess.run(
        generate, capture_output=True, text=True, check=True).stdout.splitlines()]
    expected = json.loads(subprocess.run(generate + ["--expect"], capture_output=True,
                                         text=True, check=True).stdout)
    app = make_app(tmp_path, examples=["invoices"])
    app.put("/invoices")
    app.post("/invoices/_bulk_docs", orjson.dumps({"docs": docs}), content_type="application/json")
    rows = app.get("/invoices/_view/ar_by_accounting_code?group=true").json["rows"]
    assert {r["key"]: round(r["value"], 2) for r in rows} == expected
    total = app.get("/invoices/_view/ar_by_accounting_code").json["rows"][0]["value"]
    assert round(total, 2) == round(sum(expected.values()), 2)


# -- HTTP -----------------------------------------------------------------------------
DDOC = {"language": "python", "views": {
    "by_n": {"map": "def fun(doc):\n    yield doc['n'], doc.get('tag')"},
    "sum": {"map": "def fun(doc):\n    yield [doc['tag'], doc['n']], doc['n']", "reduce": "_sum"},
}}


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    app.put("/db")
    docs = [{"_id": f"d{i}", "n": i, "tag": "even" if i % 2 == 0 else "odd"} for i in range(10)]
    app.post("/db/_bulk_docs", orjson.dumps({"docs": docs}), content_type="application/json")
    app.put("/db/_design/app", orjson.dumps(DDOC), content_type="application/json", status=201)
    return app


def keys(r):
    return [row["key"] for row in r.json["rows"]]


def test_map_query_parameters(app):
    v = "/db/_design/app/_view/by_n"
    r = app.get(v)
    assert r.json["total_rows"] == 10 and keys(r) == list(range(10))
    assert keys(app.get(v + "?key=3")) == [3]
    assert keys(app.get(v + "?startkey=2&endkey=4")) == [2, 3, 4]
    assert keys(app.get(v + "?start_key=2&end_key=4&inclusive_end=false")) == [2, 3]
    assert keys(app.get(v + "?descending=true&startkey=4&endkey=2")) == [4, 3, 2]
    assert keys(app.get(v + "?descending=true&startkey=4&endkey=2&inclusive_end=false")) == [4, 3]
    assert keys(app.get(v + "?limit=2&skip=3")) == [3, 4]
    assert keys(app.get(v + "?keys=[5,1,42]")) == [5, 1]
    assert keys(app.post(v, orjson.dumps({"keys": [7, 6]}), content_type="application/json")) == [7, 6]
    docs = app.get(v + "?include_docs=true&key=3").json["rows"]
    assert docs[0]["doc"]["_id"] == "d3" and docs[0]["value"] == "odd"
    assert keys(app.get(v + "?startkey=5&startkey_docid=d5&limit=1")) == [5]
    assert app.get(v + "?update_seq=true").json["update_seq"].startswith("11-")


def test_reduce_query_parameters(app):
    v = "/db/_design/app/_view/sum"
    assert app.get(v).json["rows"] == [{"key": None, "value": 45}]
    assert app.get(v + "?group_level=1").json["rows"] == [
        {"key": ["even"], "value": 20}, {"key": ["odd"], "value": 25}]
    grouped = app.get(v + "?group=true").json["rows"]
    assert len(grouped) == 10 and grouped[0] == {"key": ["even", 0], "value": 0}
    assert app.get(v + '?startkey=["odd"]&endkey=["odd",{}]').json["rows"][0]["value"] == 25
    assert len(app.get(v + "?reduce=false").json["rows"]) == 10
    assert app.get(v + "?group=true&limit=1&skip=1").json["rows"] == [
        {"key": ["even", 2], "value": 2}]


@pytest.mark.parametrize("query,status,error", [
    ("by_n?limit=abc", 400, "bad_request"), ("by_n?group=true", 400, "query_parse_error"),
    ("by_n?reduce=true", 400, "query_parse_error"), ("by_n?key=%7Bbad", 400, "bad_request"),
    ("sum?include_docs=true", 400, "query_parse_error"), ("sum?keys=[1]", 400, "query_parse_error"),
    ("nope", 404, "not_found"), ("by_n?update=sometimes", 400, "bad_request"),
    ("sum?group_level=-1", 400, "bad_request"),
])
def test_bad_view_queries(app, query, status, error):
    r = app.get("/db/_design/app/_view/" + query, expect_errors=True)
    assert r.status_int == status and r.json["error"] == error


def test_view_etag_changes_only_when_the_index_does(app):
    v = "/db/_design/app/_view/by_n"
    etag = app.get(v).headers["ETag"]
    app.get(v, headers={"If-None-Match": etag}, status=304)
    app.put("/db/_local/x", b"{}", content_type="application/json")
    app.get(v, headers={"If-None-Match": etag}, status=304)
    app.put("/db/new", orjson.dumps({"n": 99}), content_type="application/json")
    r = app.get(v, headers={"If-None-Match": etag}, status=200)
    assert r.headers["ETag"] != etag and 99 in keys(r)


def test_stale_queries_do_not_update(app):
    v = "/db/_design/app/_view/by_n"
    app.get(v)
    app.put("/db/late", orjson.dumps({"n": 100}), content_type="application/json")
    assert 100 not in keys(app.get(v + "?update=false"))
    assert 100 not in keys(app.get(v + "?stale=ok"))
    assert 100 in keys(app.get(v))


def test_design_doc_with_a_syntax_error_is_400_and_not_saved(app):
    bad = {"language": "python", "views": {"x": {"map": "def fun(doc) yield 1"}}}
    r = app.put("/db/_design/bad", orjson.dumps(bad), content_type="application/json",
                expect_errors=True)
    assert r.status_int == 400 and r.json["error"] == "compilation_error"
    app.get("/db/_design/bad", status=404)


def test_changing_one_view_rebuilds_only_it_and_deleting_drops_storage(app, tmp_path):
    app.get("/db/_design/app/_view/by_n")
    app.get("/db/_design/app/_view/sum")
    store = Catalog(load_settings(env={}, storage_data_dir=str(tmp_path / "data"))).get("db") \
        .versions.inner
    before = {k[3:] for k in store.prefix("vx/", keys_only=True)}
    doc = app.get("/db/_design/app").json
    doc["views"]["by_n"]["map"] = "def fun(doc):\n    yield -doc['n'], None"
    app.put("/db/_design/app", orjson.dumps(doc), content_type="application/json")
    assert keys(app.get("/db/_design/app/_view/by_n?limit=1")) == [-9]
    specs = design_views(app.get("/db/_design/app").json)
    assert specs["sum"].identity in before and specs["by_n"].identity not in before
    kept = {s.identity for s in specs.values()}
    # the clean-up runs in the background
    until(lambda: not {k[3:] for k in store.prefix("vx/", keys_only=True)} - kept)
    assert {k[3:] for k in store.prefix("vx/", keys_only=True)} == kept


def test_javascript_views_run_and_other_languages_are_refused(app):
    """No ``language`` is JavaScript, as in CouchDB, and it runs (tests/views/
    test_javascript.py has the rest); a language Settee does not run is a 400 at save."""
    app.put("/db/doc1", orjson.dumps({"n": 1}), content_type="application/json", status=201)
    js = {"views": {"v": {"map": "function(doc) { emit(doc._id, 1); }"}}}
    app.put("/db/_design/js", orjson.dumps(js), content_type="application/json", status=201)
    r = app.get("/db/_design/js/_view/v")
    ids = [row["id"] for row in r.json["rows"]]
    assert "doc1" in ids and ids == [row["key"] for row in r.json["rows"]]
    assert r.json["total_rows"] == len(ids) and {row["value"] for row in r.json["rows"]} == {1}
    erlang = {"language": "erlang", "views": {"v": {"map": "fun({Doc}) -> Emit(1, 1) end."}}}
    r = app.put("/db/_design/erl", orjson.dumps(erlang), content_type="application/json",
                expect_errors=True)
    assert r.status_int == 400 and "erlang" in r.json["reason"]


def test_index_encoding_orders_exactly_as_the_selector_collation():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from settee.views.collation import sort_key
    scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(
        allow_nan=False, allow_infinity=False) | st.text(max_size=6)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=8)

    @settings(max_examples=400, deadline=None)
    @given(values, values)
    def same_order(a, b):
        ka, kb = sort_key(a), sort_key(b)
        assert (encode(a) < encode(b)) == (ka < kb)
        assert (encode(a) == encode(b)) == (ka == kb)

    same_order()


def test_a_build_in_a_process_pool_equals_one_built_here(tmp_path, monkeypatch):
    db = tagged_docs(tmp_path, 1500, seed=2)
    monkeypatch.setattr(build, "CHUNK", 200)
    view = View(db, SUM_BY_TAG)
    assert build.parallel_build(view, processes=2)
    assert view.state()["seq"] == 1500 and "building" not in view.state()
    check_against_scratch(db, view)


def test_the_first_chunk_decides_whether_a_pool_pays(tmp_path, monkeypatch, caplog):
    import logging
    db = catalog(tmp_path).create("db")
    with db.transaction():
        for i in range(1200):
            db[f"d{i:04d}"] = {"n": 1, "tags": ["a"]}
    monkeypatch.setattr(build, "CHUNK", 100)       # slow: ~2.4 s of mapping in all
    # the map function's sleep is no wait: it makes mapping slow, what is tested
    slow = ViewSpec("t/slow", "import time\ndef fun(doc):\n    time.sleep(0.002)\n"
                    "    yield doc['n'], 1\n", "_count", "design")
    with caplog.at_level(logging.INFO, logger="settee.views"):
        build.parallel_build(View(db, slow))
        build.parallel_build(View(db, SUM_BY_TAG))
    decisions = [r.getMessage() for r in caplog.records if "process(es)" in r.getMessage()]
    assert decisions[0].endswith(f"{build.workers()} process(es)")
    assert decisions[1].endswith("1 process(es)")


def test_a_failed_key_is_reported_by_an_ungrouped_reduce_over_many_keys(tmp_path):
    db = catalog(tmp_path).create("db")
    reduce = ("def fun(keys, values, rereduce):\n"
              "    if not rereduce and any(k[0] == 700 for k in keys):\n"
              "        raise ValueError('no 700s')\n"
              "    return sum(values)")
    view = View(db, ViewSpec("t/v", "def fun(doc):\n    yield doc['n'], 1", reduce, "design"))
    with db.transaction():
        for n in range(1500):                    # more keys than one re-reduce takes
            db[f"d{n}"] = {"n": n}
    view.update()
    with pytest.raises(engine.ReduceError, match="700"):
        list(view.reduce(view.reductions(), None, False))


def test_an_update_until_a_sequence_stops_there(tmp_path):
    """What a design document's background build does: it builds up to the save, and
    leaves later changes to queries (a stale query must not see them by chance)."""
    db = catalog(tmp_path).create("db")
    view = View(db, ViewSpec("t/v", "def fun(doc):\n    yield doc['n'], None", None, "design"))
    db["a"] = {"n": 1}
    saved = db.versions.info()["seq"]
    db["b"] = {"n": 2}
    state = view.update(until=saved)
    assert state["seq"] == saved and [row[0] for row in view.rows()] == [1]
    view.update()
    assert [row[0] for row in view.rows()] == [1, 2]
