"""JavaScript design documents: the sandbox (views/javascript.py), CouchDB's
environment in it (views/couchjs.py), and JavaScript views in the view machinery."""
from __future__ import annotations

import logging
import pickle
import time

import pytest

from settee.config import load_settings
from settee.store import Catalog
from settee.views import build
from settee.views.collation import encode
from settee.views.couchjs import JSMap, JSReduce, design_context
from settee.views.definitions import InvalidDesignDoc, ViewSpec, check_design_doc, design_views
from settee.views.engine import View
from settee.views.javascript import JSError, JSMemoryError, JSTimeout, Sandbox
from settee.views.reduce import Stats, Sum


def catalog(tmp_path, **kw):
    kw.setdefault("storage_stack", ["timestamps", "versioning", "serialization", "compression"])
    return Catalog(load_settings(env={}, storage_data_dir=str(tmp_path / "data"), **kw))


def js_view(db, views: dict, name: str, ddoc: str = "app") -> View:
    """Save design document ``ddoc`` (JavaScript) and return its view ``name``, updated."""
    doc = {"_id": f"_design/{ddoc}", "views": views}
    check_design_doc(doc, db.settings)
    spec = design_views(doc)[name]
    view = View(db, spec)
    view.update()
    return view


# -- map ------------------------------------------------------------------------------
KEYS = [None, False, True, -2, -1.5, 0, 1, 2.5, 3, "a", "A", "aa", "b", "B", ["a"], ["b"],
        ["b", "c"], ["b", "c", "a"], {"a": 1}, {"a": 2}, {"b": 1}, {"b": 2, "a": 1}]


def test_emitted_keys_of_every_type_collate_as_python_emitted_ones(tmp_path):
    """The same keys emitted from JavaScript and from Python: the same index order
    (JSON numbers from JS are ints where whole: 3 and 3.0 collate as one)."""
    db = catalog(tmp_path).create("db")
    for n, key in enumerate(KEYS):
        db[f"d{n:02d}"] = {"key": key, "float": float(n)}
    js = js_view(db, {"k": {"map": "function (doc) { emit(doc.key, doc.float); }"}}, "k")
    py = View(db, ViewSpec("py/k", "def fun(doc):\n    yield doc['key'], doc['float']\n",
                           None, "design"))
    py.update()
    js_rows, py_rows = list(js.rows()), list(py.rows())
    assert len(js_rows) == len(KEYS)
    assert [(r[1], encode(r[0]), r[2]) for r in js_rows] == \
           [(r[1], encode(r[0]), r[2]) for r in py_rows]
    assert [r[0] for r in js_rows] == sorted(KEYS, key=encode)
    # key ranges read the same slice of either
    assert list(js.rows(start="a", end="B")) == list(py.rows(start="a", end="B"))


def test_emit_undefined_is_null_and_several_rows_per_document(tmp_path):
    db = catalog(tmp_path).create("db")
    db["x"] = {"tags": ["b", "a"]}
    view = js_view(db, {"t": {"map": "function (doc) { doc.tags.forEach(function (t) {"
                                     " emit(t); emit([t, doc._id], doc.missing); }); }"}}, "t")
    assert list(view.rows()) == [["a", "x", None], ["b", "x", None], [["a", "x"], "x", None],
                                 [["b", "x"], "x", None]]


def test_map_sees_id_and_rev_and_the_helpers(tmp_path):
    db = catalog(tmp_path).create("db")
    db["x"] = {"v": [1, 2, 3]}
    source = """function (doc) {
      emit("id", doc._id); emit("rev", doc._rev.split("-")[0]);
      emit("sum", sum(doc.v)); emit("isArray", [isArray(doc.v), isArray(doc)]);
      emit("toJSON", toJSON({a: [1]}));
    }"""
    rows = {r[0]: r[2] for r in js_view(db, {"m": {"map": source}}, "m").rows()}
    assert rows == {"id": "x", "rev": "1", "sum": 6, "isArray": [True, False],
                    "toJSON": '{"a":[1]}'}


def test_incremental_updates_follow_edits_and_deletions(tmp_path):
    db = catalog(tmp_path).create("db")
    for n in range(30):
        db[f"d{n:02d}"] = {"n": n, "tag": "odd" if n % 2 else "even"}
    view = js_view(db, {"t": {"map": "function (doc) { emit(doc.tag, doc.n); }",
                              "reduce": "_sum"}}, "t")
    assert isinstance(view.reducer, Sum)         # built-ins stay native
    grouped = lambda: {r["key"]: r["value"] for r in view.reduce(view.reductions(), None, True)}  # noqa: E731
    assert grouped() == {"even": sum(range(0, 30, 2)), "odd": sum(range(1, 30, 2))}
    doc = db["d01"]
    doc["tag"] = "even"
    db["d01"] = doc
    del db["d02"]
    view.update()
    assert grouped() == {"even": sum(range(0, 30, 2)) - 2 + 1, "odd": sum(range(3, 30, 2))}


# -- reduce ---------------------------------------------------------------------------
REDUCE = """function (keys, values, rereduce) {
  if (rereduce) return {sum: sum(values.map(function (v) { return v.sum; })),
                        count: sum(values.map(function (v) { return v.count; })),
                        rereduced: true};
  return {sum: sum(values), count: values.length, first: keys[0][0], rereduced: false};
}"""


def test_javascript_reduce_and_rereduce(tmp_path):
    db = catalog(tmp_path).create("db")
    for n in range(40):
        db[f"d{n:02d}"] = {"n": n}
    view = js_view(db, {"r": {"map": "function (doc) { emit([doc.n % 4, doc.n], doc.n); }",
                              "reduce": REDUCE}}, "r")
    assert isinstance(view.reducer, JSReduce)
    total = list(view.reduce(view.reductions(), None, False))
    assert total == [{"key": None, "value": {"sum": sum(range(40)), "count": 40,
                                             "rereduced": True}}]
    one_key = list(view.reduce(view.reductions(keys=[[1, 5]]), None, True))
    assert one_key == [{"key": [1, 5], "value": {"sum": 5, "count": 1, "first": [1, 5],
                                                 "rereduced": False}}]
    levels = list(view.reduce(view.reductions(), 1, True))
    assert [(r["key"], r["value"]["sum"], r["value"]["count"]) for r in levels] == \
           [([m], sum(range(m, 40, 4)), 10) for m in range(4)]
    del db["d05"]                                  # a key goes: recomputed from its rows
    view.update()
    assert list(view.reduce(view.reductions(), None, False))[0]["value"]["count"] == 39


def test_a_reduce_that_throws_is_a_reduce_error_at_query(tmp_path):
    from settee.views.reduce import ReduceError
    db = catalog(tmp_path).create("db")
    db["a"] = {"n": 1}
    db["b"] = {"n": "oops"}
    view = js_view(db, {"r": {"map": "function (doc) { emit(doc._id, doc.n); }",
                              "reduce": "function (k, v) { if (typeof v[0] !== 'number')"
                                        " throw new Error('not a number'); return sum(v); }"}},
                   "r")
    assert list(view.reduce(view.reductions(keys=["a"]), None, True)) == \
           [{"key": "a", "value": 1}]
    with pytest.raises(ReduceError, match="not a number"):
        list(view.reduce(view.reductions(), None, False))


def test_builtin_reduce_names_are_python_and_unknown_ones_refused():
    doc = {"_id": "_design/b", "views": {
        "s": {"map": "function (doc) { emit(1, 1); }", "reduce": "_stats"}}}
    assert isinstance(design_views(doc)["s"].compile()[1], Stats)
    doc["views"]["s"]["reduce"] = "_median"
    with pytest.raises(InvalidDesignDoc, match="_median"):
        check_design_doc(doc)


# -- require and log -------------------------------------------------------------------
LIB = {"math": {"twice": "exports.twice = function (x) { return 2 * x; };",
                "quad": "var t = require('./twice'); "
                        "exports.quad = function (x) { return t.twice(t.twice(x)); };"},
       "words": "module.exports = {upper: function (s) { return s.toUpperCase(); }};"}


def test_require_loads_commonjs_modules_from_views_lib(tmp_path):
    db = catalog(tmp_path).create("db")
    db["x"] = {"n": 3, "w": "hi"}
    source = """function (doc) {
      var m = require('views/lib/math/quad'), w = require('views/lib/words');
      emit(w.upper(doc.w), m.quad(doc.n));
      emit('same module', require('views/lib/math/twice') === require('views/lib/math/twice'));
    }"""
    rows = list(js_view(db, {"m": {"map": source}, "lib": LIB}, "m").rows())
    assert rows == [["HI", "x", 12], ["same module", "x", True]]


def test_a_missing_module_skips_the_document_with_the_reason(tmp_path, caplog):
    db = catalog(tmp_path).create("db")
    db["x"] = {}
    with caplog.at_level(logging.WARNING, "settee.views"):
        view = js_view(db, {"m": {"map": "function (doc) { require('views/lib/nope'); "
                                         "emit(1, 1); }"}, "lib": LIB}, "m")
    assert list(view.rows()) == []
    assert 'invalid_require_path: Object has no property "nope"' in caplog.text


def test_a_module_that_throws_is_not_cached(tmp_path):
    db = catalog(tmp_path).create("db")
    db["a"] = {"fail": True}
    db["b"] = {"fail": False}
    lib = {"flaky": "if (globalThis.failNext) throw new Error('module failed'); exports.ok = 1;"}
    source = ("function (doc) { globalThis.failNext = doc.fail; "
              "emit(doc._id, require('views/lib/flaky').ok); }")
    assert list(js_view(db, {"m": {"map": source}, "lib": lib}, "m").rows()) == \
           [["b", "b", 1]]


def test_editing_views_lib_makes_a_new_view():
    doc = {"_id": "_design/a", "views": {"m": {"map": "function (doc) { emit(1, 1); }"},
                                         "lib": LIB}}
    before = design_views(doc)["m"].identity
    doc["views"]["lib"] = {**LIB, "words": "exports.upper = 1;"}
    assert design_views(doc)["m"].identity != before


def test_log_goes_to_python_logging(tmp_path, caplog):
    db = catalog(tmp_path).create("db")
    db["x"] = {"n": 7}
    with caplog.at_level(logging.INFO, "settee.views.javascript"):
        js_view(db, {"m": {"map": "function (doc) { log('mapping ' + doc._id); "
                                  "log({n: doc.n}); emit(1, 1); }"}}, "m")
    messages = [r.getMessage() for r in caplog.records if r.name == "settee.views.javascript"]
    assert messages == ["_design/app: mapping x", '_design/app: {"n":7}']


# -- errors ------------------------------------------------------------------------------
def test_a_document_the_map_throws_on_is_skipped_for_that_view_only(tmp_path, caplog):
    db = catalog(tmp_path).create("db")
    for n in range(5):
        db[f"d{n}"] = {"n": n}
    source = ("function (doc) { emit('before', 1); if (doc.n === 2) "
              "throw new TypeError('no twos'); emit(doc.n, 1); }")
    with caplog.at_level(logging.WARNING, "settee.views"):
        view = js_view(db, {"m": {"map": source}, "all": {"map": "function (doc) {"
                                                                  " emit(doc.n, 1); }"}}, "m")
    rows = list(view.rows())
    assert [r[1] for r in rows if r[0] == "before"] == ["d0", "d1", "d3", "d4"]
    assert [r[0] for r in rows if r[0] != "before"] == [0, 1, 3, 4]
    assert "map failed on doc 'd2': TypeError: no twos" in caplog.text
    other = View(db, design_views({"_id": "_design/app", "views": {
        "all": {"map": "function (doc) { emit(doc.n, 1); }"}}})["all"])
    other.update()
    assert [r[0] for r in other.rows()] == [0, 1, 2, 3, 4]


def test_a_value_json_cannot_hold_skips_that_document(tmp_path):
    db = catalog(tmp_path).create("db")
    db["a"] = {"n": 1}
    db["b"] = {"n": 2}
    view = js_view(db, {"m": {"map": "function (doc) { emit(doc._id, doc.n === 2 ? "
                                     "BigInt(2) : doc.n); }"}}, "m")
    assert list(view.rows()) == [["a", "a", 1]]


@pytest.mark.parametrize("source,reason", [
    ("function (doc) { emit(doc.a, ; }", "SyntaxError"),
    ("42", "does not eval to a function"),
    ("", "non-empty"),
    ("function (doc) { emit(1, 1) }; extra()", "SyntaxError"),
])
def test_a_map_that_does_not_compile_is_refused_at_save(source, reason):
    with pytest.raises(InvalidDesignDoc, match=reason) as caught:
        check_design_doc({"_id": "_design/bad", "views": {"v": {"map": source}}})
    assert caught.value.error == "compilation_error" and "map of bad/v" in caught.value.reason


def test_compile_errors_of_reduces_modules_and_languages_are_refused_at_save():
    ok = "function (doc) { emit(1, 1); }"
    with pytest.raises(InvalidDesignDoc, match="reduce of bad/v: SyntaxError"):
        check_design_doc({"_id": "_design/bad", "views": {"v": {"map": ok, "reduce": "func("}}})
    with pytest.raises(InvalidDesignDoc, match="module views/lib/m: SyntaxError"):
        check_design_doc({"_id": "_design/bad", "views": {"v": {"map": ok},
                                                          "lib": {"m": "exports.x = ;"}}})
    with pytest.raises(InvalidDesignDoc, match="views.lib must be an object"):
        check_design_doc({"_id": "_design/bad", "views": {"v": {"map": ok}, "lib": "x"}})
    with pytest.raises(InvalidDesignDoc, match="'coffeescript'"):
        check_design_doc({"_id": "_design/bad", "language": "coffeescript",
                          "views": {"v": {"map": ok}}})
    # CouchDB takes a trailing semicolon and a named function
    check_design_doc({"_id": "_design/ok", "views": {
        "a": {"map": "function (doc) { emit(1, 1); };\n"},
        "b": {"map": "function map(doc) { emit(1, 1); } // done"}}})


# -- the sandbox ------------------------------------------------------------------------
@pytest.mark.parametrize("expression", ["require('fs')", "fetch", "XMLHttpRequest", "process",
                                        "ArrayBuffer", "WebAssembly", "setTimeout",
                                        "SharedArrayBuffer", "Atomics", "Uint8Array"])
def test_javascript_reaches_no_file_network_process_or_off_heap_memory(tmp_path, expression):
    db = catalog(tmp_path).create("db")
    db["x"] = {}
    source = ("function (doc) { var found; try { found = %s; } catch (e) { emit('threw', "
              "e.name + ': ' + e.message); return; } emit('found', typeof found); }" % expression)
    rows = list(js_view(db, {"m": {"map": source}, "lib": {"m": "exports.a = 1;"}}, "m").rows())
    if expression.startswith("require"):
        assert rows == [["threw", "x", 'Error: invalid_require_path: Object has no property '
                                         '"fs"']]
    elif expression == "setTimeout":        # a declared global: made undefined
        assert rows == [["found", "x", "undefined"]]
    else:
        assert rows == [["threw", "x", f"ReferenceError: {expression} is not defined"]]


def test_an_infinite_loop_is_stopped_and_the_next_call_works():
    sandbox = Sandbox("test", timeout=0.3)
    sandbox.install("function spin(x) { while (true) {} }")
    sandbox.install("function echo(x) { return JSON.stringify(x); }")
    started = time.monotonic()
    with pytest.raises(JSTimeout, match=r"test: JavaScript ran longer than 0.3 s \(js_timeout\)"):
        sandbox.call("spin", "x")
    assert time.monotonic() - started < 5
    assert sandbox.call("echo", "back") == "back"     # a new isolate, with what was installed
    assert sandbox.resets == 1
    assert JSTimeout.error == "os_process_error"


def test_a_huge_allocation_is_stopped_and_the_next_call_works():
    sandbox = Sandbox("test", timeout=30, max_memory=32 << 20)
    sandbox.install("function hog() { var a = []; while (true) a.push({n: a.length, "
                    "s: 'x' + a.length}); }")
    sandbox.install("function echo(x) { return JSON.stringify(x); }")
    with pytest.raises(JSMemoryError, match=r"more than 32 MiB \(js_max_memory\)"):
        sandbox.call("hog")
    assert sandbox.call("echo", "back") == "back"
    assert sandbox.resets == 1


def test_a_runaway_map_fails_the_update_clearly_and_a_fixed_view_works(tmp_path):
    db = catalog(tmp_path, js_timeout=0.3).create("db")
    db["a"] = {"n": 1}
    db["b"] = {"spin": True}
    spec = design_views({"_id": "_design/run", "views": {"m": {
        "map": "function (doc) { while (doc.spin) {} emit(doc._id, 1); }"}}})["m"]
    view = View(db, spec)
    assert view.mapper.context.sandbox.timeout == 0.3        # the database's settings
    with pytest.raises(JSTimeout, match="_design/run"):
        view.update()
    assert view.state()["seq"] == 0                           # nothing half-applied
    del db["b"]
    view.update()
    assert list(view.rows()) == [["a", "a", 1]]


def test_a_function_that_throws_outside_the_harness_is_a_js_error():
    sandbox = Sandbox("test")
    sandbox.install("function boom() { throw new RangeError('no'); }")
    with pytest.raises(JSError, match="test: RangeError: no"):
        sandbox.call("boom")


def test_views_of_one_design_document_share_one_context():
    doc = {"_id": "_design/shared", "views": {"a": {"map": "function (doc) { emit(1, 1); }"},
                                              "b": {"map": "function (doc) { emit(2, 2); }"}}}
    specs = design_views(doc)
    (a, _), (b, _) = specs["a"].compile(), specs["b"].compile()
    assert a.context is b.context is design_context("_design/shared", {"views": {"lib": {}}})
    assert a({}) == [[1, 1]] and b({}) == [[2, 2]]


# -- process pools ----------------------------------------------------------------------
def test_a_js_map_pickles_as_its_spec():
    spec = design_views({"_id": "_design/p", "views": {"m": {
        "map": "function (doc) { emit(doc.n, 1); }"}}})["m"]
    mapper, _ = spec.compile({"js_timeout": 2.0, "js_max_memory": 64 << 20})
    again = pickle.loads(pickle.dumps(mapper))
    assert isinstance(again, JSMap) and again({"n": 4}) == [[4, 1]]
    assert again.context.sandbox.timeout == 2.0


@pytest.mark.slow
def test_a_parallel_build_maps_javascript_in_worker_processes(tmp_path):
    db = catalog(tmp_path).create("db")
    with db.transaction():
        for n in range(2 * build.CHUNK + 10):
            db[f"d{n:05d}"] = {"n": n, "tag": f"t{n % 7}"}
    views = {"m": {"map": "function (doc) { emit(doc.tag, doc.n); }",
                   "reduce": "function (k, v, re) { return sum(v); }"}}
    doc = {"_id": "_design/pool", "views": views}
    pooled = View(db, design_views(doc)["m"])
    assert build.parallel_build(pooled, processes=2)
    here = View(db, ViewSpec("py/m", "def fun(doc):\n    yield doc['tag'], doc['n']\n",
                             "_sum", "design"))
    here.update()
    assert list(pooled.rows()) == list(here.rows())
    assert list(pooled.reduce(pooled.reductions(), None, True)) == \
           list(here.reduce(here.reductions(), None, True))


# -- _approx_count_distinct (native, for JavaScript and Python views alike) -------------
def test_approx_count_distinct_estimates_distinct_keys_and_follows_updates(tmp_path):
    db = catalog(tmp_path).create("db")
    with db.transaction():
        for n in range(3000):
            db[f"d{n:05d}"] = {"k": n % 1500, "g": n % 2}
    view = js_view(db, {"c": {"map": "function (doc) { emit([doc.g, doc.k], null); }",
                              "reduce": "_approx_count_distinct"}}, "c")
    total = list(view.reduce(view.reductions(), None, False))[0]["value"]
    assert abs(total - 1500) <= 1500 * 0.05
    per_group = list(view.reduce(view.reductions(), 1, True))
    assert [r["key"] for r in per_group] == [[0], [1]]
    assert all(abs(r["value"] - 750) <= 750 * 0.05 for r in per_group)
    small = list(view.reduce(view.reductions(start=[0, 0], end=[0, 18]), None, False))
    assert small == [{"key": None, "value": 10}]        # keys 0, 2, ..., 18: exact when few
    for n in range(0, 20, 2):                            # a key's last row goes: one fewer
        del db[f"d{n:05d}"]
        del db[f"d{n + 1500:05d}"]
    view.update()
    assert list(view.reduce(view.reductions(start=[0, 0], end=[0, 18]), None, False)) == []
    assert list(view.reduce(view.reductions(start=[0, 0], end=[0, 40]), None, False)) == \
           [{"key": None, "value": 11}]                 # 20, 22, ..., 40
    py = View(db, ViewSpec("py/c", "def fun(doc):\n    yield [doc['g'], doc['k']], None\n",
                           "_approx_count_distinct", "design"))
    py.update()
    assert list(py.reduce(py.reductions(), None, False)) == \
           list(view.reduce(view.reductions(), None, False))
