"""Mango selectors in CouchDB's normal form, and what the query planner reads from it.

CouchDB plans a ``_find`` over the normalized selector (``mango_selector:normalize``):
every object has one key; several keys are an explicit ``$and``; a bare value is
``{"$eq": value}``; nested field objects become dotted paths (``{"a": {"b": 1}}`` is
``{"a.b": {"$eq": 1}}``), pushed through ``$and``/``$or``/``$not``/``$nor``; and
negations are pushed down to the conditions (``$not $lt`` is ``$gte``, De Morgan on
``$and``/``$or``). This module builds that form (:func:`normalize`) and reads it as
CouchDB's planner does: the fields a selector names (:func:`fields`), those an index
can serve (:func:`indexable_fields`), whether a document it matches must have given
fields (:func:`has_required_fields`), whether a field is held to one value
(:func:`is_constant_field`), and each field's key range (:func:`field_ranges`).

The selector is validated first (``selector.compile_selector``); matching documents
stays with ``selector.py``, which applies negations the same way.
"""
from __future__ import annotations

from typing import Any

from .collation import MAX, MIN, Sentinel, sort_key
from .selector import compile_selector

#: The range of a field that no value can be in (``{"$gt": 5, "$lt": 1}``).
EMPTY = Sentinel("EMPTY")

#: A field's range: (lower operator, lower bound, upper operator, upper bound); an
#: open end is ``MIN``/``MAX``. ``$eq`` on both sides is a single value.
Range = tuple[str, Any, str, Any]
OPEN: Range = ("$gt", MIN, "$lt", MAX)

_COMBINATORS = ("$and", "$or", "$nor")
_ARRAY_MATCHERS = ("$elemMatch", "$allMatch", "$keyMapMatch")
_NEGATED = {"$lt": "$gte", "$lte": "$gt", "$eq": "$ne", "$ne": "$eq", "$gte": "$lt",
            "$gt": "$lte", "$in": "$nin", "$nin": "$in"}
_INDEXABLE = ("$lt", "$lte", "$eq", "$gt", "$gte", "$beginsWith", "$exists")


def normalize(selector: dict) -> dict:
    """``selector`` (validated) in CouchDB's normal form; ``{}`` stays ``{}``."""
    compile_selector(selector)
    if not selector:
        return {}
    return _negations(_fields(_ops(selector), ""))


def _ops(sel: Any) -> dict:
    if not isinstance(sel, dict) or not sel:
        return {"$eq": sel}
    if len(sel) > 1:
        return {"$and": [_ops({k: v}) for k, v in sel.items()]}
    [(key, arg)] = sel.items()
    if key in _COMBINATORS:
        return {key: [_ops(a) for a in arg]}
    if key == "$not" or key in _ARRAY_MATCHERS:
        return {key: _ops(arg)}
    if key.startswith("$"):
        return {key: arg}
    return {key: _ops(arg)}


def _fields(sel: dict, path: str) -> dict:
    if not sel:
        return {path: {"$eq": {}}} if path else {}
    [(key, arg)] = sel.items()
    if key in _COMBINATORS:
        return {key: [_fields(a, path) for a in arg]}
    if key == "$not":
        return {key: _fields(arg, path)}
    if key in _ARRAY_MATCHERS:
        return {path: {key: _fields(arg, "")}}
    if key.startswith("$"):
        return {path: sel}
    return _fields(arg, f"{path}.{key}" if path else key)


def _negations(sel: dict) -> dict:
    if not sel:
        return sel
    [(key, arg)] = sel.items()
    if key == "$not":
        return _negate(arg)
    if key == "$nor":
        return {"$and": [_negate(a) for a in arg]}
    if key in ("$and", "$or"):
        return {key: [_negations(a) for a in arg]}
    if key in _ARRAY_MATCHERS:
        return {key: _negations(arg)}
    return sel


def _negate(sel: dict) -> dict:
    if not sel:
        return {"$not": sel}
    [(key, arg)] = sel.items()
    if key == "$not":
        return _negations(arg)
    if key == "$nor":
        return {"$or": [_negations(a) for a in arg]}
    if key == "$and":
        return {"$or": [_negate(a) for a in arg]}
    if key == "$or":
        return {"$and": [_negate(a) for a in arg]}
    if key in _NEGATED:
        return {_NEGATED[key]: arg}
    if key == "$exists":
        return {key: not arg}
    if key.startswith("$"):
        return {"$not": sel}
    return {key: _negate(arg)}


# -- what the planner reads -------------------------------------------------------------
def _single(sel: dict) -> tuple[str, Any] | None:
    return next(iter(sel.items())) if len(sel) == 1 else None


def fields(norm: dict) -> list[str]:
    """Every field the normalized selector names (``mango_selector:fields``)."""
    entry = _single(norm)
    if entry is None:
        return []
    key, arg = entry
    if key.startswith("$"):
        if isinstance(arg, list):
            return [f for a in arg if isinstance(a, dict) for f in fields(a)]
        return fields(arg) if isinstance(arg, dict) else []
    return [key]


def indexable_fields(norm: dict) -> list[str]:
    """Fields of the top-level ``$and`` held by ``$lt $lte $eq $gt $gte $beginsWith
    $exists``: those whose values a JSON index's key range can serve; sorted."""
    entry = _single(norm)
    if entry is None:
        return []
    key, arg = entry
    if key == "$and":
        return sorted({f for a in arg for f in indexable_fields(a)})
    if key.startswith("$"):
        return []
    cond = _single(arg)
    return [key] if cond is not None and cond[0] in _INDEXABLE else []


def has_required_fields(norm: dict, required) -> bool:
    """Whether every document the selector matches has all ``required`` fields: each
    is named by a condition of the top-level ``$and`` other than ``$exists: false``,
    or by one in every branch of an ``$or`` (``mango_selector:has_required_fields``)."""
    return not _remainder([norm], list(required))


def _remainder(sels: list, required: list) -> list:
    if not required:
        return []
    rest = list(required)
    for sel in sels:
        entry = _single(sel) if isinstance(sel, dict) else None
        if entry is None:
            continue
        key, arg = entry
        if key == "$and" and isinstance(arg, list):
            rest = _remainder(arg, rest)
        elif key == "$or" and isinstance(arg, list):
            rest = sorted({f for a in arg for f in _remainder([a], rest)})
        elif not key.startswith("$") and arg != {"$exists": False}:
            rest = [f for f in rest if f != key]
        if not rest:
            break
    return rest


def is_constant_field(norm: dict, field: str) -> bool:
    """Whether the top-level ``$and`` holds ``field`` to one value with ``$eq``."""
    entry = _single(norm)
    if entry is None:
        return False
    key, arg = entry
    if key == "$and" and isinstance(arg, list):
        return any(is_constant_field(a, field) for a in arg if isinstance(a, dict))
    if key == field:
        cond = _single(arg)
        return cond is not None and cond[0] == "$eq"
    return False


def field_ranges(norm: dict) -> list[tuple[str, Range | Sentinel]]:
    """``(field, range)`` for each indexable field, in field order; a field whose range
    is empty ends the list, as the only entry (``mango_idx_view:field_ranges``)."""
    found: list[tuple[str, Range | Sentinel]] = []
    for name in indexable_fields(norm):
        bounds = field_range(norm, name)
        if bounds is EMPTY:
            return [(name, EMPTY)]
        found.append((name, bounds))
    return found


def field_range(norm: dict, name: str) -> Range | Sentinel:
    """The key range of ``name`` the top-level ``$and`` allows, or :data:`EMPTY`."""
    return _range(norm, name, OPEN)


def _range(sel: dict, name: str, bounds):
    entry = _single(sel)
    if entry is None or bounds is EMPTY:
        return bounds
    key, arg = entry
    if key == "$and":
        for a in arg:
            bounds = _range(a, name, bounds)
        return bounds
    if key == name:
        cond = _single(arg)
        return _narrow(cond, bounds) if cond is not None else bounds
    return bounds


def _position(low, arg, high) -> str:
    key = sort_key(arg)
    if key < sort_key(low):
        return "min"
    if key == sort_key(low):
        return "low"
    high_key = sort_key(high)
    return "mid" if key < high_key else "high" if key == high_key else "max"


def _narrow(cond: tuple[str, Any], bounds: Range) -> Range | Sentinel:
    """``bounds`` narrowed by one condition (``mango_idx_view:range/5``)."""
    op, arg = cond
    lop, low, hop, high = bounds
    if op == "$beginsWith":
        # CouchDB also bounds above by arg + U+FFFF; that string has no place in this
        # collation (noncharacters are ignored), so the range is open above and the
        # matcher does the rest.
        op = "$gte"
    if op not in ("$lt", "$lte", "$eq", "$gte", "$gt"):
        return bounds
    try:
        where = _position(low, arg, high)
    except TypeError:
        return bounds
    eq: Range = ("$eq", arg, "$eq", arg)
    low_closed, high_closed = lop in ("$gte", "$eq"), hop in ("$lte", "$eq")
    if op == "$lt":
        if where in ("min", "low"):
            return EMPTY
        return bounds if where == "max" else (lop, low, "$lt", arg)
    if op == "$lte":
        if where == "min":
            return EMPTY
        if where == "low":
            return eq if low_closed else EMPTY
        return (lop, low, "$lte", arg) if where == "mid" else bounds
    if op == "$eq":
        if where == "low":
            return eq if low_closed else EMPTY
        if where == "high":
            return eq if high_closed else EMPTY
        return eq if where == "mid" else EMPTY
    if op == "$gte":
        if where == "max":
            return EMPTY
        if where == "high":
            return eq if high_closed else EMPTY
        return ("$gte", arg, hop, high) if where == "mid" else bounds
    if where in ("high", "max"):                                      # $gt
        return EMPTY
    return bounds if where == "min" else ("$gt", arg, hop, high)
