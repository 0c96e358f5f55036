"""Mango selectors, collation, projection and sort specs (settee.views.selector)."""
from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settee.store.exceptions import BadRequest
from settee.views.collation import MAX, MIN, collate, sort_key
from settee.views.selector import (
    MISSING,
    BadArgument,
    InvalidFields,
    InvalidOperator,
    InvalidSelector,
    InvalidSort,
    compile_selector,
    get_field,
    parse_field,
    parse_sort,
    project,
    range_for,
    selector_fields,
)


def matches(selector, doc):
    return compile_selector(selector)(doc)


def check(selector, yes, no):
    """``selector`` matches every document in ``yes`` and none in ``no``."""
    match = compile_selector(selector)
    for doc in yes:
        assert match(doc), (selector, doc)
    for doc in no:
        assert not match(doc), (selector, doc)


# --- condition operators -----------------------------------------------------------

def test_implicit_and_explicit_eq():
    check({"name": "x"}, [{"name": "x"}], [{"name": "y"}, {}, {"name": ["x"]}, {"name": None}])
    check({"name": {"$eq": "x"}}, [{"name": "x"}], [{"name": "X"}, {}])
    check({"n": 1}, [{"n": 1}, {"n": 1.0}], [{"n": True}, {"n": "1"}])
    check({"v": None}, [{"v": None}], [{}, {"v": False}])
    check({"a": [1, 2]}, [{"a": [1, 2]}], [{"a": [2, 1]}, {"a": [1, 2, 3]}, {"a": 1}])
    check({"o": {"$eq": {"b": 1}}}, [{"o": {"b": 1}}], [{"o": {"b": 1, "c": 2}}, {"o": {}}])
    check({"o": {}}, [{"o": {}}], [{"o": {"b": 1}}, {}])


def test_ne_does_not_match_missing_fields():
    check({"a": {"$ne": 1}}, [{"a": 2}, {"a": "1"}, {"a": None}, {"a": [1]}], [{"a": 1}, {}])


@pytest.mark.parametrize("op, yes, no", [
    ("$gt", [6, 5.5, "x", [], {}], [5, 5.0, 4, None, True]),
    ("$gte", [5, 5.0, 6, "", [0]], [4.9, False, None]),
    ("$lt", [4, -1, None, False, True], [5, 6, "a", [], {}]),
    ("$lte", [5, 5.0, None], [5.1, "5", [5]]),
])
def test_ranges_compare_across_types_by_collation(op, yes, no):
    check({"a": {op: 5}}, [{"a": v} for v in yes], [{"a": v} for v in no] + [{}])


def test_string_ranges_use_collation():
    check({"s": {"$gt": "a"}}, [{"s": "A"}, {"s": "b"}, {"s": "aa"}], [{"s": "a"}, {"s": "-"}])
    check({"s": {"$lt": "B"}}, [{"s": "b"}, {"s": "a"}, {"s": "A"}], [{"s": "B"}, {"s": "ba"}])


def test_id_compares_strings_by_code_point():
    check({"_id": {"$gt": "B"}}, [{"_id": "a"}, {"_id": "C"}], [{"_id": "A"}, {"_id": "B"}])


@pytest.mark.parametrize("selector,matched", [
    ({"$gt": {}}, True), ({"$gte": {}}, True), ({"$gt": []}, True), ({"$gte": []}, True),
    ({"$lt": {}}, False), ({"$lte": {}}, False), ({"$lte": []}, False), ({"$lt": [1]}, False),
    ({"$gt": None}, True), ({"$lte": None}, False), ({"$lt": False}, False),
    ({"$gt": 99}, True), ({"$lt": 99}, False),
])
def test_id_against_other_types_follows_erlang_term_order(selector, matched):
    """CouchDB compares ``_id`` by Erlang's term order (``cmp_raw``): numbers, atoms
    (null, true, false), objects, arrays, then strings; PouchDB's find tests rely on it."""
    assert matches({"_id": selector}, {"_id": "a"}) is matched
    check({"other": {"$gt": "B"}}, [{"other": "ba"}], [{"other": "a"}])


def test_in_and_nin():
    check({"a": {"$in": [1, "x", None]}},
          [{"a": 1}, {"a": 1.0}, {"a": "x"}, {"a": None}, {"a": [7, "x"]}],
          [{"a": 2}, {"a": "X"}, {"a": [7]}, {"a": []}, {}])
    check({"a": {"$in": [[1, 2]]}}, [{"a": [0, [1, 2]]}], [{"a": [1, 2]}])
    check({"a": {"$in": []}}, [], [{"a": 1}, {"a": []}, {}])
    check({"a": {"$nin": [1, "x"]}},
          [{"a": 2}, {"a": "X"}, {"a": [2, 3]}, {"a": []}], [{"a": 1}, {"a": [2, "x"]}, {}])
    check({"a": {"$nin": []}}, [{"a": 1}, {"a": []}], [{}])


def test_exists():
    check({"a": {"$exists": True}}, [{"a": None}, {"a": 0}, {"a": []}], [{}, {"b": 1}])
    check({"a": {"$exists": False}}, [{}, {"b": 1}], [{"a": None}, {"a": False}])
    check({"a.b": {"$exists": False}}, [{"a": 1}, {"a": {}}, {}], [{"a": {"b": None}}])


@pytest.mark.parametrize("name, value", [
    ("null", None), ("boolean", False), ("boolean", True), ("number", 0), ("number", 1.5),
    ("string", ""), ("array", []), ("object", {}),
])
def test_type(name, value):
    others = [None, True, 3, "s", [1], {"k": 1}]
    check({"a": {"$type": name}}, [{"a": value}],
          [{"a": o} for o in others if type(o) is not type(value) and not (
              name == "number" and isinstance(o, (int, float)) and not isinstance(o, bool))]
          + [{}])


def test_size():
    check({"a": {"$size": 2}}, [{"a": [1, 2]}, {"a": [[], {}]}],
          [{"a": [1]}, {"a": "ab"}, {"a": {"x": 1, "y": 2}}, {}])
    check({"a": {"$size": 0}}, [{"a": []}], [{"a": [0]}, {"a": ""}])


def test_mod_uses_erlang_rem_on_integers_only():
    check({"a": {"$mod": [3, 1]}}, [{"a": 4}, {"a": 1}, {"a": 7}],
          [{"a": 3}, {"a": -2}, {"a": 4.0}, {"a": "4"}, {"a": True}, {}])
    check({"a": {"$mod": [3, -1]}}, [{"a": -7}, {"a": -1}], [{"a": 2}, {"a": 5}])
    check({"a": {"$mod": [-3, 1]}}, [{"a": 7}], [{"a": -7}])


def test_regex_searches_anywhere_in_strings():
    check({"a": {"$regex": "b+c"}}, [{"a": "abbc"}, {"a": "bc"}], [{"a": "ac"}, {"a": ["bc"]}, {}])
    check({"a": {"$regex": "^x$"}}, [{"a": "x"}], [{"a": "xx"}, {"a": "ax"}])
    check({"a": {"$regex": "(?i)^abc"}}, [{"a": "ABCd"}], [{"a": "xabc"}])


def test_a_catastrophic_regex_runs_in_linear_time():
    # Python's re backtracks here 2**27 times (seconds, doubling with every "a");
    # RE2 reads the text once.
    match = compile_selector({"a": {"$regex": "^(a+)+$"}})
    started = time.perf_counter()
    assert not match({"a": "a" * 27 + "!"})
    assert match({"a": "a" * 27})
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("pattern, construct", [
    (r"(a)\1", "backreferences"), (r"(?P<x>a)(?P=x)", "backreferences"),
    (r"a(?=b)", "lookahead and lookbehind"), (r"(?<!x)a", "lookahead and lookbehind"),
    (r"(?>a+)b", "atomic groups"), (r"a++b", "possessive quantifiers"),
])
def test_a_regex_that_needs_backtracking_is_a_bad_argument_naming_the_construct(
        pattern, construct):
    with pytest.raises(BadArgument) as e:
        compile_selector({"a": {"$regex": pattern}})
    assert e.value.error == "bad_arg"
    assert construct in e.value.reason and "RE2" in e.value.reason


def test_begins_with():
    check({"a": {"$beginsWith": "ab"}}, [{"a": "ab"}, {"a": "abc"}],
          [{"a": "Ab"}, {"a": "xab"}, {"a": ["ab"]}, {}])


def test_all():
    check({"a": {"$all": [1, "x"]}}, [{"a": [1, "x"]}, {"a": ["x", 2, 1.0]}],
          [{"a": [1]}, {"a": 1}, {"a": "x"}, {}])
    check({"a": {"$all": [[1, 2]]}}, [{"a": [1, 2]}, {"a": [[1, 2], 3]}], [{"a": [2, 1]}])
    check({"a": {"$all": []}}, [], [{"a": []}, {"a": [1]}])


def test_elem_match_and_all_match():
    check({"a": {"$elemMatch": {"$gt": 3, "$lt": 6}}}, [{"a": [1, 4]}, {"a": [5]}],
          [{"a": [1, 7]}, {"a": [2, 8]}, {"a": []}, {"a": 4}, {}])
    check({"a": {"$elemMatch": {"k": "x", "n": {"$gte": 2}}}},
          [{"a": [{"k": "x", "n": 2}]}],
          [{"a": [{"k": "x", "n": 1}, {"k": "y", "n": 2}]}, {"a": ["x", 3]}])
    check({"a": {"$allMatch": {"$gt": 3}}}, [{"a": [4, 5]}, {"a": [9]}],
          [{"a": [4, 1]}, {"a": []}, {"a": 5}, {}])
    check({"a": {"$allMatch": {"k": {"$exists": True}}}}, [{"a": [{"k": 1}, {"k": None}]}],
          [{"a": [{"k": 1}, {}]}])
    check({"a": {"$elemMatch": {}}}, [{"a": [1, {}]}], [{"a": [1, {"b": 2}]}])


def test_key_map_match():
    check({"m": {"$keyMapMatch": {"$regex": "^x"}}}, [{"m": {"y": 1, "xa": 2}}],
          [{"m": {"y": 1}}, {"m": ["xa"]}, {"m": {}}, {}])


# --- combination operators, paths, missing fields ----------------------------------

def test_and_or_nor_not():
    docs = [{"a": 1, "b": 2}, {"a": 1, "b": 3}, {"a": 2, "b": 2}, {"a": 2}, {}]
    cases = {
        "and": ({"$and": [{"a": 1}, {"b": 2}]}, [0]),
        "implicit and": ({"a": 1, "b": 2}, [0]),
        "or": ({"$or": [{"a": 1}, {"b": 2}]}, [0, 1, 2]),
        "nor": ({"$nor": [{"a": 1}, {"b": 2}]}, []),
        "not": ({"$not": {"a": 1}}, [2, 3]),
        "not and": ({"$not": {"$and": [{"a": 1}, {"b": 2}]}}, [1, 2, 3]),
        "not or": ({"$not": {"$or": [{"a": 1}, {"b": 2}]}}, []),
        "not not": ({"$not": {"$not": {"a": 1}}}, [0, 1]),
        "nor one": ({"$nor": [{"b": 3}]}, [0, 2]),
        "field not": ({"a": {"$not": {"$gt": 1}}}, [0, 1]),
        "field or": ({"a": {"$or": [1, {"$gt": 1}]}}, [0, 1, 2, 3]),
        "field and": ({"b": {"$and": [{"$gt": 1}, {"$lt": 3}]}}, [0, 2]),
        "empty": ({}, [0, 1, 2, 3, 4]),
        "empty and": ({"$and": []}, [0, 1, 2, 3, 4]),
        "empty or": ({"$or": []}, [0, 1, 2, 3, 4]),
        "empty nor": ({"$nor": []}, [0, 1, 2, 3, 4]),
    }
    for name, (selector, expected) in cases.items():
        got = [i for i, d in enumerate(docs) if matches(selector, d)]
        assert got == expected, name


def test_negation_never_matches_missing_fields_except_through_exists():
    assert not matches({"$not": {"a": 1}}, {})
    assert not matches({"$nor": [{"a": 1}]}, {})
    assert not matches({"$not": {"a": {"$regex": "x"}}}, {})
    assert matches({"$not": {"a": {"$exists": True}}}, {})
    assert not matches({"$not": {"a": {"$exists": True}}}, {"a": 1})
    assert matches({"$not": {"a": {"$exists": False}}}, {"a": None})
    assert not matches({"$not": {"a": {"$exists": False}}}, {})
    assert matches({"$not": {"a": {"$in": [1]}}}, {"a": 2})
    assert not matches({"$not": {"a": {"$in": [1]}}}, {})


def test_nested_objects_and_dotted_paths():
    doc = {"a": {"b": {"c": 3}, "x.y": 1}, "tags": ["p", {"q": 1}], "a.b": "literal"}
    check({"a": {"b": {"c": 3}}}, [doc], [{"a": {"b": {"c": 4}}}, {"a": {"b": 3}}])
    check({"a.b.c": 3}, [doc], [{"a": {"b": [{"c": 3}]}}])
    check({"a.b.c": {"$gt": 2}}, [doc], [{"a": 5}])
    check({"a": {"b.c": 3}}, [doc], [])
    check({"a.x\\.y": 1}, [doc], [{"a": {"x": {"y": 1}}}])
    check({"a\\.b": "literal"}, [doc], [{"a": {"b": "literal"}}])
    check({"tags.0": "p", "tags.1.q": 1}, [doc], [{"tags": ["q", "p"]}, {"tags": {"0": "x"}}])
    check({"tags.5": {"$exists": False}}, [doc], [])
    check({"a": {"$gt": 0, "b": {"c": 3}}}, [doc], [{"a": {"b": {"c": 2}}}])


def test_get_field():
    doc = {"a": {"b": [10, {"c": None}]}, "d": 0}
    assert get_field(doc, "a.b.0") == 10
    assert get_field(doc, "a.b.1.c") is None
    assert get_field(doc, ("a", "b", "1", "c")) is None
    assert get_field(doc, "d") == 0
    for path in ["x", "a.x", "a.b.2", "a.b.-1", "a.b.x", "d.e", "a.b.0.c"]:
        assert get_field(doc, path) is MISSING, path
    assert parse_field("a\\.b.c") == ("a.b", "c")
    for bad in ["", "a..b", ".a", "a.", None, ["a"]]:
        with pytest.raises(InvalidSelector) as e:
            parse_field(bad)
        assert e.value.error == "invalid_field_name"


# --- malformed selectors ----------------------------------------------------------

@pytest.mark.parametrize("selector, error", [
    ([], "invalid_selector_json"),
    ("a", "invalid_selector_json"),
    (None, "invalid_selector_json"),
    ({"a": {"$foo": 1}}, "invalid_operator"),
    ({"$foo": [1]}, "invalid_operator"),
    ({"a": {"$where": "1"}}, "not_supported"),
    ({"$text": "x"}, "not_supported"),
    ({"$gt": 1}, "invalid_selector"),
    ({"$and": [{"$eq": 1}]}, "invalid_selector"),
    ({"$or": [1]}, "invalid_selector"),
    ({"$elemMatch": {"a": 1}}, "invalid_selector"),
    ({"a": {"$in": 1}}, "bad_arg"),
    ({"a": {"$nin": "xy"}}, "bad_arg"),
    ({"a": {"$all": {}}}, "bad_arg"),
    ({"$and": {"a": 1}}, "bad_arg"),
    ({"$or": "a"}, "bad_arg"),
    ({"$nor": None}, "bad_arg"),
    ({"$not": [{"a": 1}]}, "bad_arg"),
    ({"a": {"$not": 5}}, "bad_arg"),
    ({"a": {"$exists": 1}}, "bad_arg"),
    ({"a": {"$exists": "true"}}, "bad_arg"),
    ({"a": {"$size": "2"}}, "bad_arg"),
    ({"a": {"$size": 2.0}}, "bad_arg"),
    ({"a": {"$size": -1}}, "bad_arg"),
    ({"a": {"$size": True}}, "bad_arg"),
    ({"a": {"$mod": [0, 1]}}, "bad_arg"),
    ({"a": {"$mod": [2]}}, "bad_arg"),
    ({"a": {"$mod": [2, 1.5]}}, "bad_arg"),
    ({"a": {"$mod": 2}}, "bad_arg"),
    ({"a": {"$type": "integer"}}, "bad_arg"),
    ({"a": {"$type": 1}}, "bad_arg"),
    ({"a": {"$regex": "("}}, "bad_arg"),
    ({"a": {"$regex": 5}}, "bad_arg"),
    ({"a": {"$beginsWith": 5}}, "bad_arg"),
    ({"a": {"$elemMatch": [1]}}, "bad_arg"),
    ({"a": {"$allMatch": 3}}, "bad_arg"),
    ({"a": {"$keyMapMatch": "x"}}, "bad_arg"),
    ({"a": {"$eq": {1, 2}}}, "bad_arg"),
    ({"a..b": 1}, "invalid_field_name"),
    ({"a": {"": 1}}, "invalid_field_name"),
    ({1: 2}, "invalid_field_name"),
    ({"a": {"$elemMatch": {"b": {"$foo": 1}}}}, "invalid_operator"),
])
def test_malformed_selectors_are_bad_requests(selector, error):
    with pytest.raises(InvalidSelector) as e:
        compile_selector(selector)
    assert isinstance(e.value, BadRequest) and isinstance(e.value, ValueError)
    assert e.value.error == error
    assert e.value.reason


def test_error_classes_and_reasons():
    with pytest.raises(InvalidOperator, match=r"Invalid operator: \$foo"):
        compile_selector({"a": {"$foo": 1}})
    with pytest.raises(BadArgument, match=r"\$in: 1 \(expected an array\)"):
        compile_selector({"a": {"$in": 1}})
    with pytest.raises(BadArgument, match="divisor"):
        compile_selector({"a": {"$mod": [0, 0]}})
    with pytest.raises(InvalidSelector, match="missing a field name"):
        compile_selector({"$gt": 1})


# --- collation --------------------------------------------------------------------

#: CouchDB's documented collation table (docs "Views Collation", view_collation.js).
COUCHDB_TABLE = [
    None, False, True,
    1, 2, 3.0, 4,
    "a", "A", "aa", "b", "B", "ba", "bb",
    ["a"], ["b"], ["b", "c"], ["b", "c", "a"], ["b", "d"], ["b", "d", "e"],
    {"a": 1}, {"a": 2}, {"b": 1}, {"b": 2}, {"b": 2, "a": 1}, {"b": 2, "c": 2},
]

#: The documented order of the printable ASCII characters (space first).
ASCII_SEQUENCE = (" `^_-,;:!?.'\"()[]{}@*/\\&#%+<=>|~$0123456789"
                  + "".join(c + c.upper() for c in "abcdefghijklmnopqrstuvwxyz"))


def test_collation_table():
    for i, a in enumerate(COUCHDB_TABLE):
        for j, b in enumerate(COUCHDB_TABLE):
            assert collate(a, b) == (i > j) - (i < j), (a, b)
    shuffled = COUCHDB_TABLE[:]
    random.Random(7).shuffle(shuffled)
    assert sorted(shuffled, key=sort_key) == COUCHDB_TABLE


def test_ascii_collation_sequence():
    assert sorted(ASCII_SEQUENCE) != list(ASCII_SEQUENCE)
    assert "".join(sorted(ASCII_SEQUENCE, key=sort_key)) == ASCII_SEQUENCE


def test_documented_string_rules():
    # "abc < Abc < ABC < abc1 < AbcZZZZZ" from the docs' key-range section
    words = ["abc", "Abc", "ABC", "abc1", "AbcZZZZZ"]
    assert sorted(reversed(words), key=sort_key) == words
    assert collate("a", "aa") < 0 and collate("A", "aa") < 0 and collate("a", "AA") < 0
    assert collate("~", "0") < 0 and collate("9", "a") < 0
    assert sorted(["É", "f", "é", "E", "e"], key=sort_key) == ["e", "E", "é", "É", "f"]
    assert collate("é", "e\u0301") == 0           # canonically equivalent
    assert collate("abc", "abc\ufff0") < 0


def test_collation_of_numbers_and_containers():
    assert collate(1, 1.0) == 0 and collate(-0.0, 0) == 0
    assert collate(10, 9.5) == 1 and collate(-1e300, -5) == -1
    assert collate(True, 0) < 0 and collate(False, True) < 0 and collate(None, False) < 0
    assert collate([], [None]) < 0 and collate([2], [1, 5]) > 0 and collate([1], [1.0]) == 0
    assert collate({}, {"a": None}) < 0 and collate({"a": 1}, {"A": 0}) < 0
    assert collate([{}], [[]]) > 0 and collate("zzz", []) < 0 and collate([], {}) < 0
    assert sort_key(MIN) < sort_key(None) and sort_key({"z": [{}]}) < sort_key(MAX)
    with pytest.raises(TypeError):
        sort_key(object())


# --- projection and sort specs -----------------------------------------------------

def test_project():
    doc = {"_id": "d", "_rev": "1-x", "a": {"b": 1, "c": [1, 2]}, "d": None, "e": [5, 6]}
    assert project(doc, ["a.b", "d"]) == {"a": {"b": 1}, "d": None}
    assert project(doc, ["_id", "a.c", "missing", "a.zz"]) == {"_id": "d", "a": {"c": [1, 2]}}
    assert project(doc, ["a", "a.b"]) == {"a": {"b": 1, "c": [1, 2]}}
    assert project(doc, ["a.b", "a"]) == {"a": {"b": 1, "c": [1, 2]}}
    assert project(doc, ["e.1"]) == {"e": {"1": 6}}
    assert project(doc, ["d", "d.x"]) == {"d": None}
    assert project(doc, []) is doc and project(doc, None) is doc
    assert doc == {"_id": "d", "_rev": "1-x", "a": {"b": 1, "c": [1, 2]}, "d": None, "e": [5, 6]}
    for bad in ["a", [1], {"a": 1}, ["a", None]]:
        with pytest.raises(InvalidFields) as e:
            project(doc, bad)
        assert e.value.error == "invalid_fields"


def test_parse_sort():
    assert parse_sort(["a", "b.c"]) == [("a", "asc"), ("b.c", "asc")]
    assert parse_sort([{"a": "desc"}, {"b": "desc"}]) == [("a", "desc"), ("b", "desc")]
    assert parse_sort([{"a": "asc"}, "b"]) == [("a", "asc"), ("b", "asc")]
    assert parse_sort([]) == [] and parse_sort(None) == []
    for bad, error in [
        ("a", "invalid_sort_json"), ({"a": "asc"}, "invalid_sort_json"),
        ([{"a": "up"}], "invalid_sort_dir"), ([{"a": 1}], "invalid_sort_dir"),
        ([""], "invalid_sort_field"), ([1], "invalid_sort_field"),
        ([{"a": "asc", "b": "asc"}], "invalid_sort_field"), ([{}], "invalid_sort_field"),
        (["a", {"b": "desc"}], "unsupported_mixed_sort"),
        (["a..b"], "invalid_field_name"),
    ]:
        with pytest.raises(BadRequest) as e:
            parse_sort(bad)
        assert e.value.error == error, bad
    with pytest.raises(InvalidSort):
        parse_sort([{"a": "desc"}, "b"])


# --- index planning ------------------------------------------------------------------

def test_selector_fields():
    assert selector_fields({}) == set()
    assert selector_fields({"a": 1, "b": {"$gt": 2}, "c": {"$in": [1]}}) == {"a", "b"}
    assert selector_fields({"$and": [{"x.y": {"$lte": 1}}, {"$and": [{"z": None}]}]}) \
        == {"x.y", "z"}
    assert selector_fields({"a": {"b": {"c": 1}}, "d": {"$exists": True}}) == {"a.b.c"}
    assert selector_fields({"$or": [{"a": 1}], "$not": {"b": 1}, "c": {"$ne": 1}}) == set()
    assert selector_fields({"a\\.b": {"$eq": [1]}, "o": {}}) == {"a\\.b", "o"}
    assert selector_fields({"a": {"$and": [{"$gt": 1}], "$elemMatch": {"q": 1}}}) == {"a"}
    with pytest.raises(InvalidOperator):
        selector_fields({"a": {"$bad": 1}})


def test_range_for():
    assert range_for({"a": 5}, "a") == (5, True, 5, True)
    assert range_for({"a": {"$gt": 1, "$lte": 9}}, "a") == (1, False, 9, True)
    assert range_for({"a": {"$gte": 1}}, "a") == (1, True, MAX, True)
    assert range_for({"a": {"$lt": "x"}}, "a") == (MIN, True, "x", False)
    assert range_for({"$and": [{"a": {"$gt": 1}}, {"a": {"$gte": 3}}, {"a": {"$lt": 7}},
                               {"a": {"$lte": 7}}]}, "a") == (3, True, 7, False)
    assert range_for({"a": {"$gte": 2, "$gt": 2}}, "a") == (2, False, MAX, True)
    assert range_for({"a": {"$gt": 1}, "$and": [{"a": {"$gt": "s"}}]}, "a") \
        == ("s", False, MAX, True)
    assert range_for({"a": {"$gt": 8, "$lt": 2}}, "a") == (8, False, 2, False)   # empty
    assert range_for({"a.b": {"$gt": 1}}, "a.b") == range_for({"a": {"b": {"$gt": 1}}}, "a.b")
    assert range_for({"_id": {"$gt": "a", "$gte": "B"}}, "_id") == ("a", False, MAX, True)
    assert range_for({"a": {"$ne": 1}, "b": 2}, "a") is None
    assert range_for({"$or": [{"a": 1}]}, "a") is None


# --- property test against an independent evaluator ----------------------------------

FIELDS = ["a", "b", "n.x"]
STRINGS = ["", "a", "A", "aa", "b", "B"]            # listed in CouchDB's collation order
SCALARS = [None, False, True, -1, 0, 1, 1.0, 1.5, 2, *STRINGS]
values = st.recursive(st.sampled_from(SCALARS),
                      lambda inner: st.lists(inner, max_size=3), max_leaves=4)


def ref_cmp(x, y):
    """CouchDB collation written out for the test's small value domain."""
    def rank(v):
        if v is None:
            return 0
        if isinstance(v, bool):
            return 1 + v
        if isinstance(v, (int, float)):
            return 3
        return 4 if isinstance(v, str) else 5
    if rank(x) != rank(y):
        return -1 if rank(x) < rank(y) else 1
    if rank(x) < 3:
        return 0
    if isinstance(x, str):
        x, y = STRINGS.index(x), STRINGS.index(y)
    if isinstance(x, list):
        for p, q in zip(x, y):
            c = ref_cmp(p, q)
            if c:
                return c
        x, y = len(x), len(y)
    return (x > y) - (x < y)


NEGATED = {"$eq": "$ne", "$ne": "$eq", "$gt": "$lte", "$lte": "$gt", "$lt": "$gte",
           "$gte": "$lt", "$in": "$nin", "$nin": "$in"}


def ref_normalize(sel, negate=False):
    """Selector -> tree of ("and"|"or", [...]) and ("leaf", field, op, arg), with
    negations pushed to the leaves the way CouchDB's normalizer does."""
    parts = []
    for key, value in sel.items():
        if key in ("$and", "$or"):
            kind = "and" if (key == "$and") != negate else "or"
            parts.append((kind, [ref_normalize(s, negate) for s in value]))
        elif key == "$not":
            parts.append(ref_normalize(value, not negate))
        else:
            op, arg = next(iter(value.items())) if isinstance(value, dict) else ("$eq", value)
            if negate:
                op, arg = ("$exists", not arg) if op == "$exists" else (NEGATED[op], arg)
            parts.append(("leaf", key, op, arg))
    return ("or" if negate else "and", parts)


def ref_eval(node, doc):
    if node[0] == "and":
        return all(ref_eval(n, doc) for n in node[1])
    if node[0] == "or":
        return not node[1] or any(ref_eval(n, doc) for n in node[1])
    _, field, op, arg = node
    value = doc
    for name in field.split("."):
        value = value.get(name, MISSING) if isinstance(value, dict) else MISSING
    if value is MISSING:
        return op == "$exists" and arg is False
    if op == "$exists":
        return arg
    if op in ("$in", "$nin"):
        found = any(ref_cmp(e, a) == 0 for e in (value if isinstance(value, list) else [value])
                    for a in arg)
        return found if op == "$in" else not found
    c = ref_cmp(value, arg)
    return {"$eq": c == 0, "$ne": c != 0, "$gt": c > 0, "$gte": c >= 0,
            "$lt": c < 0, "$lte": c <= 0}[op]


@st.composite
def documents(draw):
    doc = {}
    for field in ["a", "b"]:
        if draw(st.booleans()):
            doc[field] = draw(values)
    if draw(st.booleans()):
        doc["n"] = {"x": draw(values)} if draw(st.booleans()) else draw(values)
    return doc


leaves = st.one_of(
    st.builds(lambda f, v: {f: v}, st.sampled_from(FIELDS), st.sampled_from(SCALARS)),
    st.builds(lambda f, op, v: {f: {op: v}}, st.sampled_from(FIELDS),
              st.sampled_from(["$eq", "$ne", "$gt", "$lt"]), values),
    st.builds(lambda f, v: {f: {"$in": v}}, st.sampled_from(FIELDS), st.lists(values, max_size=3)),
    st.builds(lambda f, v: {f: {"$exists": v}}, st.sampled_from(FIELDS), st.booleans()),
)
selectors = st.recursive(leaves, lambda inner: st.one_of(
    st.builds(lambda s: {"$and": s}, st.lists(inner, max_size=3)),
    st.builds(lambda s: {"$or": s}, st.lists(inner, max_size=3)),
    st.builds(lambda s: {"$not": s}, inner),
), max_leaves=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(selector=selectors, docs=st.lists(documents(), min_size=1, max_size=5))
def test_matches_independent_evaluator(selector, docs):
    match = compile_selector(selector)
    expected = ref_normalize(selector)
    for doc in docs:
        assert match(doc) == ref_eval(expected, doc), (selector, doc)


@settings(max_examples=200, deadline=None)
@given(st.lists(values, max_size=8))
def test_sort_key_agrees_with_independent_collation(items):
    for x in items:
        for y in items:
            assert collate(x, y) == ref_cmp(x, y), (x, y)
