"""CouchDB Mango selectors compiled to Python predicates, plus projection and sorting.

``compile_selector(selector)`` validates a ``_find`` selector and returns
``match(doc) -> bool``. The semantics follow CouchDB's ``mango_selector``:

* Several fields in one object are an implicit ``$and``; a bare value is an implicit
  ``$eq``; a nested object whose keys are not operators is a path
  (``{"a": {"b": 1}}`` is ``{"a.b": {"$eq": 1}}``); ``"a.b"`` is a path and ``\\.``
  a literal dot; a path segment of digits indexes an array (``"tags.0"``).
* A field missing from the document matches nothing except ``{"$exists": false}``,
  also under ``$not``/``$nor``: CouchDB pushes negations down to the conditions
  (``$not $eq`` becomes ``$ne`` and so on) before looking fields up, so
  ``{"$not": {"a": 1}}`` does not match a document without ``a``.
* Comparisons (``$eq $ne $gt $gte $lt $lte $in $nin``) use view collation across all
  types: ``{"$gt": 5}`` also matches strings, arrays and objects, ``1 == 1.0``. The
  field ``_id`` compares as CouchDB's ``cmp_raw`` does: Erlang's term order, strings
  by code point and after every other type (:func:`.collation.raw_key`).
* ``$eq`` compares the whole value (an array equals only an equal array); ``$in`` on an
  array field matches when any element is listed, ``$nin`` when none is.
* Empty ``$and``/``$or``/``$nor`` match everything, ``$in: []`` and ``$all: []``
  nothing, ``$nin: []`` every document that has the field.
* ``$mod`` matches integers only (``6.0`` is a float), with Erlang's ``rem`` (the
  remainder takes the dividend's sign); ``$regex`` searches with RE2 (a match
  anywhere, as Erlang's ``re:run``; see :func:`compile_regex`);
  ``$size``/``$elemMatch``/``$allMatch`` need an array (``$allMatch`` a non-empty
  one); ``$keyMapMatch`` matches an object's keys.

Where Settee differs from CouchDB: ``$regex`` is RE2 syntax, not PCRE (no
backreferences or lookarounds: those are errors; RE2 matches in linear time); string
collation approximates ICU (see :func:`.collation.sort_key`); ``$all`` compares by collation
(CouchDB by exact term, so ``1 != 1.0`` there); ``$type`` with an unknown type name,
``$mod`` with divisor 0, and an operator with no field anywhere at document level are
errors (CouchDB accepts the first, fails obscurely on the second and only rejects the
third at the top level). ``$text``, ``$where`` and the geo operators are unsupported.
"""
from __future__ import annotations

import functools
import json
import operator
import re
from typing import Any, Callable

import re2

from settee.store.exceptions import BadRequest

from .collation import MAX, MIN, Sentinel, raw_key, sort_key

#: What :func:`get_field` returns for a path the document does not have.
MISSING = Sentinel("MISSING")


class QueryError(BadRequest):
    """A ``_find`` query part is malformed (HTTP 400); ``error`` is CouchDB's name for it."""
    error = "bad_request"

    def __init__(self, reason: str, error: str | None = None, **fields):
        super().__init__(reason, **fields)
        if error is not None:
            self.error = error


class InvalidSelector(QueryError):
    """The selector is malformed."""
    error = "invalid_selector"


class InvalidOperator(InvalidSelector):
    """The selector names an operator CouchDB does not have."""
    error = "invalid_operator"


class BadArgument(InvalidSelector):
    """An operator's argument has the wrong type or value."""
    error = "bad_arg"

    def __init__(self, op: str, arg: Any, expected: str):
        super().__init__(f"Bad argument for operator {op}: {_show(arg)} ({expected})",
                         operator=op)


class InvalidSort(QueryError):
    """The ``sort`` of a query is malformed."""
    error = "invalid_sort_json"


class InvalidFields(QueryError):
    """The ``fields`` of a query is malformed."""
    error = "invalid_fields"


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _key_for(path: tuple) -> Callable[[Any], tuple]:
    return raw_key if path == ("_id",) else sort_key


# --- fields --------------------------------------------------------------------------

_UNESCAPED_DOT = re.compile(r"(?<!\\)\.")


def parse_field(field: str) -> tuple[str, ...]:
    """``"a.b\\.c"`` -> ``("a", "b.c")``; an empty segment is an ``invalid_field_name``.

    As in CouchDB, every backslash is removed from the segments after splitting.
    """
    parts = _split_field(field) if isinstance(field, str) else ("",)
    if "" in parts:
        raise InvalidSelector(f"Invalid field name: {_show(field)}", "invalid_field_name")
    return parts


@functools.lru_cache(maxsize=4096)
def _split_field(field: str) -> tuple[str, ...]:
    return tuple(p.replace("\\", "") for p in _UNESCAPED_DOT.split(field))


def _join_field(path: tuple) -> str:
    return ".".join(p.replace(".", "\\.") for p in path)


def _lookup(value: Any, path: tuple) -> Any:
    for name in path:
        if isinstance(value, dict):
            value = value.get(name, MISSING)      # MISSING fails the next step, if any
        elif isinstance(value, list) and name.isascii() and name.isdigit() \
                and int(name) < len(value):
            value = value[int(name)]
        else:
            return MISSING
    return value


def get_field(doc: Any, path: str | tuple) -> Any:
    """The value at dotted ``path`` (or a parsed tuple of segments) in ``doc``, or ``MISSING``.

    A segment of ASCII digits indexes an array; a path through a scalar, or past an
    array's end, is ``MISSING``.
    """
    return _lookup(doc, parse_field(path) if isinstance(path, str) else tuple(path))


def project(doc: dict, fields: list[str] | None) -> dict:
    """CouchDB's ``fields``: a new document with only the listed paths, nesting kept.

    ``None`` or ``[]`` returns ``doc`` itself. Paths missing from ``doc`` are left out;
    ``_id`` and ``_rev`` appear only if listed. As in CouchDB, a path through an array
    index is rebuilt as an object (``"a.0"`` gives ``{"a": {"0": ...}}``). Values are
    shared with ``doc``, not copied.
    """
    if fields is not None and not (isinstance(fields, list)
                                   and all(isinstance(f, str) for f in fields)):
        raise InvalidFields(f"Fields must be an array of strings, not: {_show(fields)}")
    if not fields:
        return doc
    out: dict = {}
    for field in fields:
        path = parse_field(field)
        value = _lookup(doc, path)
        if value is MISSING:
            continue
        target = out
        for name in path[:-1]:
            target = target.setdefault(name, {})
            if not isinstance(target, dict):   # an earlier field put a non-object here
                break
        else:
            target[path[-1]] = value
    return out


def parse_sort(sort: Any) -> list[tuple[str, str]]:
    """CouchDB's ``sort``: ``["a", {"b": "desc"}]`` -> ``[("a", "asc"), ("b", "desc")]``.

    Each item is a field name (ascending) or a one-key object mapping a field name to
    ``"asc"`` or ``"desc"``. As in CouchDB, all directions must be the same
    (``unsupported_mixed_sort``). ``None`` is no sort (``[]``).
    """
    if sort is None:
        return []
    if not isinstance(sort, list):
        raise InvalidSort(f"Sort must be an array of sort specs, not: {_show(sort)}")
    spec = []
    for item in sort:
        if isinstance(item, dict) and len(item) == 1:
            [(name, direction)] = item.items()
            if direction not in ("asc", "desc"):
                raise InvalidSort(f"Invalid sort direction: {_show(direction)}",
                                  "invalid_sort_dir")
        else:
            name, direction = item, "asc"
        if not isinstance(name, str) or not name:
            raise InvalidSort(f"Invalid sort field: {_show(item)}", "invalid_sort_field")
        parse_field(name)
        spec.append((name, direction))
    if len({d for _, d in spec}) > 1:
        raise InvalidSort("Sorts currently only support a single direction for all fields.",
                          "unsupported_mixed_sort")
    return spec


# --- compiling -----------------------------------------------------------------------

Pred = Callable[[Any], bool]
TYPES = {"null", "boolean", "number", "string", "array", "object"}
UNSUPPORTED = {"$text", "$where", "$geoWithin", "$geoIntersects", "$near", "$nearSphere"}
_CMP = {"$eq": operator.eq, "$ne": operator.ne, "$gt": operator.gt, "$gte": operator.ge,
        "$lt": operator.lt, "$lte": operator.le}
CONDITIONS = set(_CMP) | {"$in", "$nin", "$exists", "$type", "$size", "$mod", "$regex",
                          "$beginsWith", "$all", "$elemMatch", "$allMatch", "$keyMapMatch"}
_MISSING_NAME = "One or more conditions is missing a field name."


_TYPE_NAMES = ((bool, "boolean"), ((int, float), "number"), (str, "string"), (list, "array"))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return next((name for t, name in _TYPE_NAMES if isinstance(value, t)), "object")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rem(value: int, divisor: int) -> int:
    """Erlang's ``rem``: truncated division, the remainder has the dividend's sign."""
    r = abs(value) % abs(divisor)
    return -r if value < 0 else r


def compile_selector(selector: dict) -> Pred:
    """Validate ``selector`` and return ``match(doc) -> bool`` (see the module docstring).

    Raises :class:`InvalidSelector` (or a subclass) with CouchDB's error name:
    ``invalid_selector_json`` (not an object), ``invalid_selector`` (a condition with no
    field), ``invalid_operator``, ``not_supported``, ``bad_arg``, ``invalid_field_name``.
    """
    if not isinstance(selector, dict):
        raise InvalidSelector(f"Selector must be a JSON object, not: {_show(selector)}",
                              "invalid_selector_json")
    return _object(selector, None, False)


def _true(_: Any) -> bool:
    return True


def _combine(parts: list[Pred], any_: bool) -> Pred:
    if not parts:
        return _true
    if len(parts) == 1:
        return parts[0]
    if any_:
        return lambda v: any(p(v) for p in parts)
    return lambda v: all(p(v) for p in parts)


def _object(sel: dict, path: tuple | None, neg: bool) -> Pred:
    """An object in selector position. ``path`` is None at document level (a field
    must come first), ``()`` for an ``$elemMatch`` element itself. ``neg`` is set
    under an odd number of negations, which are applied as CouchDB pushes them down:
    De Morgan on the combinators, the condition's complement at the leaves."""
    if not sel:
        return _true if path is None else _condition("$eq", {}, path, neg)
    return _combine([_entry(k, v, path, neg) for k, v in sel.items()], any_=neg)


def _operand(value: Any, path: tuple | None, neg: bool) -> Pred:
    if isinstance(value, dict):
        return _object(value, path, neg)
    if path is None:
        raise InvalidSelector(_MISSING_NAME)
    return _condition("$eq", value, path, neg)


def _entry(key: str, value: Any, path: tuple | None, neg: bool) -> Pred:
    if not isinstance(key, str) or not key.startswith("$"):
        return _operand(value, parse_field(key) if path is None else path + parse_field(key), neg)
    if key in ("$and", "$or", "$nor"):
        if not isinstance(value, list):
            raise BadArgument(key, value, "expected an array of selectors")
        sub_neg = (not neg) if key == "$nor" else neg
        parts = [_operand(v, path, sub_neg) for v in value]
        # $and -> all, $or -> any, $nor -> all of the negations; negation swaps all/any.
        return _combine(parts, any_=(key == "$or") != neg)
    if key == "$not":
        if not isinstance(value, dict):
            raise BadArgument(key, value, "expected an object")
        return _object(value, path, not neg)
    if key in CONDITIONS:
        if path is None:
            raise InvalidSelector(_MISSING_NAME)
        return _condition(key, value, path, neg)
    if key in UNSUPPORTED:
        raise InvalidSelector(f"Unsupported operator: {key}", "not_supported")
    raise InvalidOperator(f"Invalid operator: {key}")


def _arg_key(op: str, arg: Any, key: Callable[[Any], tuple]) -> tuple:
    try:
        return key(arg)
    except TypeError:
        raise BadArgument(op, arg, "expected a JSON value") from None


def _condition(op: str, arg: Any, path: tuple, neg: bool) -> Pred:
    """A leaf: look ``path`` up, then test the value (or its complement under ``neg``)."""
    test = _test(op, arg, _key_for(path))
    exists = arg if op == "$exists" else None

    def leaf(root: Any) -> bool:
        value = _lookup(root, path)
        if value is MISSING:       # only {"$exists": false}, after negation, matches
            return exists is not None and exists == neg
        return test(value) != neg
    return leaf


def _test(op: str, arg: Any, key: Callable[[Any], tuple]) -> Pred:
    if op in _CMP:
        compare, bound = _CMP[op], _arg_key(op, arg, key)
        return lambda v: compare(key(v), bound)
    if op in ("$in", "$nin", "$all"):
        if not isinstance(arg, list):
            raise BadArgument(op, arg, "expected an array")
        keys = {_arg_key(op, a, key) for a in arg}
        if op == "$all":
            whole = _arg_key(op, arg[0], key) if len(arg) == 1 and isinstance(arg[0], list) \
                else None
            return lambda v: isinstance(v, list) and bool(keys) and (
                keys <= {key(e) for e in v} or key(v) == whole)
        if op == "$in":
            return lambda v: (any(key(e) in keys for e in v) if isinstance(v, list)
                              else key(v) in keys)
        return lambda v: (not any(key(e) in keys for e in v) if isinstance(v, list)
                          else key(v) not in keys)
    if op == "$exists":
        if not isinstance(arg, bool):
            raise BadArgument(op, arg, "expected true or false")
        return lambda v: arg
    if op == "$type":
        if arg not in TYPES:
            raise BadArgument(op, arg, "expected one of " + ", ".join(sorted(TYPES)))
        return lambda v: _type_name(v) == arg
    if op == "$size":
        if not _is_int(arg) or arg < 0:
            raise BadArgument(op, arg, "expected a non-negative integer")
        return lambda v: isinstance(v, list) and len(v) == arg
    if op == "$mod":
        if not (isinstance(arg, list) and len(arg) == 2 and all(map(_is_int, arg))):
            raise BadArgument(op, arg, "expected [divisor, remainder], two integers")
        divisor, remainder = arg
        if divisor == 0:
            raise BadArgument(op, arg, "the divisor must not be 0")
        return lambda v: _is_int(v) and _rem(v, divisor) == remainder
    if op in ("$regex", "$beginsWith"):
        if not isinstance(arg, str):
            raise BadArgument(op, arg, "expected a string")
        if op == "$beginsWith":
            return lambda v: isinstance(v, str) and v.startswith(arg)
        pattern = compile_regex(arg)
        return lambda v: isinstance(v, str) and pattern.search(v) is not None
    # $elemMatch, $allMatch, $keyMapMatch: a sub-selector on each element (or key)
    if not isinstance(arg, dict):
        raise BadArgument(op, arg, "expected an object")
    sub = _object(arg, (), False)
    if op == "$elemMatch":
        return lambda v: isinstance(v, list) and any(sub(e) for e in v)
    if op == "$allMatch":
        return lambda v: isinstance(v, list) and bool(v) and all(sub(e) for e in v)
    return lambda v: isinstance(v, dict) and any(sub(k) for k in v)


# --- regular expressions -------------------------------------------------------------

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False     # a bad pattern is the client's 400, not a line on stderr

#: PCRE constructs RE2 refuses, each found by a (rough) pattern, to name in the error.
_NEEDS_BACKTRACKING = (
    (re.compile(r"\\[1-9]|\\[gk][{<'0-9-]|\(\?P="), "backreferences"),
    (re.compile(r"\(\?<?[=!]"), "lookahead and lookbehind assertions"),
    (re.compile(r"\(\?>"), "atomic groups"),
    (re.compile(r"[*+?}]\+"), "possessive quantifiers"),
    (re.compile(r"\(\?(?:R|[+-]?[0-9]|&)"), "recursion"),
    (re.compile(r"\(\?\("), "conditionals"),
    (re.compile(r"\\Z"), "\\Z (write \\n?\\z)"),
)


def compile_regex(pattern: str):
    """``pattern`` compiled by RE2, which matches in time linear in the text.

    Python's ``re`` (like PCRE) backtracks: ``^(a+)+$`` against 32 ``a`` and a ``!``
    takes minutes, holding the interpreter lock, so one query froze a whole worker.
    RE2 has no backtracking, so it has no backreferences, lookarounds, atomic groups,
    possessive quantifiers or recursion: such a pattern is a :class:`BadArgument`
    that names the construct.
    """
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except UnicodeEncodeError:        # a lone surrogate: the pattern is not UTF-8
        raise BadArgument("$regex", pattern, "expected valid Unicode") from None
    except re2.error as e:
        message = e.args[0] if e.args else ""
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        named = [name for finder, name in _NEEDS_BACKTRACKING if finder.search(pattern)]
        if named:
            message = (f"{message}; not supported by RE2, the linear-time engine of "
                       f"$regex: {', '.join(named)}")
        raise BadArgument("$regex", pattern,
                          f"invalid regular expression: {message}") from None


# --- index planning ------------------------------------------------------------------

_RANGE_OPS = ("$eq", "$gt", "$gte", "$lt", "$lte")


def _conjuncts(sel: dict, path: tuple | None):
    """(path, op, arg) for each $eq/range condition of the selector's top-level $and."""
    for k, v in sel.items():
        if k == "$and":
            for s in v:
                if isinstance(s, dict):
                    yield from _conjuncts(s, path)
                else:
                    yield path, "$eq", s
        elif k in _RANGE_OPS:
            yield path, k, v
        elif not k.startswith("$"):
            p = parse_field(k) if path is None else path + parse_field(k)
            if isinstance(v, dict) and v:
                yield from _conjuncts(v, p)
            else:
                yield p, "$eq", v


def selector_fields(selector: dict) -> set[str]:
    """Dotted paths that the selector's top-level ``$and`` (explicit or implicit,
    nested paths included) constrains with ``$eq`` or a range operator: the fields an
    index could serve. Conditions under ``$or``/``$not``/``$nor`` and other operators
    do not count. Literal dots in names come back escaped (``\\.``)."""
    compile_selector(selector)   # validates
    return {_join_field(p) for p, _, _ in _conjuncts(selector, None)}


def range_for(selector: dict, field: str) -> tuple[Any, bool, Any, bool] | None:
    """``(lower, lower_inclusive, upper, upper_inclusive)`` for ``field`` from the
    top-level ``$eq``/``$gt``/``$gte``/``$lt``/``$lte`` conditions, intersected; None
    when there are none. An open end is ``MIN``/``MAX`` (inclusive). Bounds compare by
    view collation (``_id`` by code point), as the matcher does; the range may be empty
    (lower above upper). Documents in the range must still be matched: it is a superset.
    """
    compile_selector(selector)
    target = parse_field(field)
    key = _key_for(target)
    found = [(op, arg) for path, op, arg in _conjuncts(selector, None) if path == target]
    if not found:
        return None
    # The tightest bound: the greatest lower (exclusive wins a tie), the least upper.
    lows = [(key(a), op == "$gt", a) for op, a in found if op in ("$eq", "$gt", "$gte")]
    highs = [(key(a), op != "$lt", a) for op, a in found if op in ("$eq", "$lt", "$lte")]
    _, exclusive, lower = max(lows, key=lambda t: t[:2]) if lows else ((), False, MIN)
    _, upper_inc, upper = min(highs, key=lambda t: t[:2]) if highs else ((), True, MAX)
    return lower, not exclusive, upper, upper_inc
