"""Mango's query planner: which index serves a ``_find``, and over which key range.

It follows CouchDB 3.4 (``mango_idx:get_usable_indexes``, ``mango_cursor:create``,
``mango_cursor_view:choose_best_index``):

1. The candidates are the indexes without a partial filter selector, plus any that
   ``use_index`` names (a partial index is used only when asked for by name), in
   the query's scope: a partitioned query (``/_partition/{p}/_find``) uses
   partitioned indexes, a global one the others; ``_all_docs`` serves both.
2. A JSON index is usable when every document the selector matches has all its
   fields (``_id``, ``_rev`` and the sort fields apart: ``$in``, ``$or`` in every
   branch, ``$exists: true`` count; ``$exists: false`` does not), and when it can
   serve the sort: the sort fields are a prefix of its fields, after any fields the
   selector holds to one value with ``$eq``. ``_all_docs`` is usable without a sort,
   or with a sort on ``_id`` when the selector constrains ``_id``. A sort no index
   serves is ``no_usable_index``.
3. ``use_index`` narrows the usable ones to that design document (and index). If it
   names none of them, the query falls back to the others (with a warning), unless
   ``allow_fallback`` is false: then it is ``invalid_index`` (400).
4. JSON indexes are preferred to ``_all_docs``. Among them the one whose leading
   fields cover most of the selector's indexable fields (``$lt $lte $eq $gt $gte
   $beginsWith $exists``) wins, then the one with fewer fields, then by name.

The chosen index is scanned over the range of its leading fields (``start_key`` and
``end_key`` as CouchDB computes them, ``MAX`` for an open end) and every document in
it is matched against the whole selector. :func:`candidates` explains the choice as
``_explain``'s ``index_candidates`` does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .collation import MAX, MIN
from .mango_index import ALL_DOCS, Index
from .normal import (
    EMPTY,
    Range,
    field_ranges,
    has_required_fields,
    indexable_fields,
    is_constant_field,
)
from .normal import fields as selector_fields
from .selector import QueryError

#: ``_all_docs``' catch-all range: every id (CouchDB's ``{'$gt', null, '$lt', max}``).
ALL_IDS: Range = ("$gt", None, "$lt", MAX)


class NoUsableIndex(QueryError):
    """No index can serve the query's sort."""

    error = "no_usable_index"


@dataclass
class Plan:
    """What a query runs on; ``index`` is None when nothing is usable (``_explain``)."""

    index: Index | None
    ranges: list                       # a Range per leading field, or [EMPTY]
    norm: dict                         # the normalized selector
    trace: dict = field(default_factory=dict)   # what :func:`candidates` reads

    @property
    def empty(self) -> bool:
        return any(r is EMPTY for r in self.ranges)


def wanted_index(use_index: list) -> tuple[str, str | None] | None:
    """``use_index`` (``[]``, ``[ddoc]`` or ``[ddoc, name]``) as (design doc id, name)."""
    if not use_index:
        return None
    ddoc = use_index[0] if use_index[0].startswith("_design/") else "_design/" + use_index[0]
    return ddoc, use_index[1] if len(use_index) > 1 else None


def named(indexes: list[Index], use_index: list) -> list[Index]:
    wanted = wanted_index(use_index)
    if wanted is None:
        return []
    return [ix for ix in indexes if ix.ddoc == wanted[0]
            and (wanted[1] is None or ix.name == wanted[1])]


def usable(index: Index, norm: dict, sort_fields: list[str]) -> tuple[bool, list[str]]:
    """(whether ``index`` can serve the query, CouchDB's reasons if not)."""
    reasons = []
    if index.special:
        if not sort_fields:
            return True, []
        if "_id" not in indexable_fields(norm):
            reasons.append("field_mismatch")
        if sort_fields != list(index.fields)[:len(sort_fields)]:
            reasons.append("sort_order_mismatch")
        return not reasons, reasons
    columns = list(index.fields)
    required = set(columns) - set(sort_fields) - {"_id", "_rev"}
    if not has_required_fields(norm, required):
        reasons.append("field_mismatch")
    if not can_use_sort(columns, sort_fields, norm):
        reasons.append("sort_order_mismatch")
    return not reasons, reasons


def can_use_sort(columns: list[str], sort_fields: list[str], norm: dict) -> bool:
    """The sort is a prefix of the columns, once the leading columns the selector
    holds to one value (``$eq``) are passed over (``mango_idx_view:can_use_sort``)."""
    if not sort_fields:
        return True
    for i, column in enumerate(columns):
        if column == sort_fields[0]:
            return columns[i:i + len(sort_fields)] == sort_fields
        if not is_constant_field(norm, column):
            return False
    return False


def noop(norm: dict) -> bool:
    """``{"$or": []}`` and its kind match nothing, so nothing is scanned
    (``mango_cursor:maybe_noop_range``)."""
    return len(norm) == 1 and next(iter(norm.items())) in (
        ("$all", []), ("$and", []), ("$or", []), ("$in", []))


def plan(indexes: list[Index], norm: dict, sort_fields: list[str], *, use_index: list,
         allow_fallback: bool = True, partition: str | None = None,
         explain: bool = False, partitioned_db: bool = False) -> Plan:
    """Choose the index for a query over ``indexes`` (``_all_docs`` among them)."""
    global_ = [ix for ix in indexes if not ix.partial]
    asked = named(indexes, use_index)
    pool = global_ + [ix for ix in asked if ix not in global_]
    in_scope = [ix for ix in pool if ix.special or ix.partitioned == (partition is not None)]
    verdicts = [(ix, usable(ix, norm, sort_fields)) for ix in in_scope]
    found = [ix for ix, (ok, _) in verdicts if ok]
    trace: dict[str, Any] = {"all": indexes, "global": global_, "scope": in_scope,
                             "usable": found, "verdicts": verdicts}
    if not found and not explain:
        if not partitioned_db:
            raise NoUsableIndex("No index exists for this sort, try indexing by the sort "
                                "fields.")
        scope = "partitioned" if partition is not None else "global"
        raise NoUsableIndex(f"No {scope} index exists for this sort, try indexing by the "
                            "sort fields.")
    chosen = named(found, use_index)
    if not chosen:
        if found and (allow_fallback or (not use_index and len(found) > 1)):
            chosen = found
        elif found:
            details = "" if not use_index else ", ".join(use_index)
            if not use_index:
                raise QueryError("You must specify an index with the `use_index` parameter.",
                                 "invalid_index")
            raise QueryError(f"_design/{details.removeprefix('_design/')} specified by "
                             "`use_index` could not be found or it is not suitable.",
                             "invalid_index")
    trace["filtered"] = chosen
    of_type = [ix for ix in chosen if not ix.special] or [ix for ix in chosen if ix.special]
    trace["of_type"] = of_type
    if not of_type:
        return Plan(None, [], norm, trace)
    ranges = field_ranges(norm)
    if of_type[0].special:
        ranges = ranges + [("_id", ALL_IDS)]
    composed = sorted(((ix, *_prefix(ix, ranges)) for ix in of_type),
                      key=lambda t: (t[2], len(t[0].fields), t[0].ddoc or "", t[0].name))
    trace["sorted"] = composed
    index, prefix, _ = composed[0]
    return Plan(index, [EMPTY] if noop(norm) else prefix, norm, trace)


def _prefix(index: Index, ranges: list) -> tuple[list, int]:
    """The ranges of the index's leading fields, and how many of the selector's
    indexable fields are left out (``composite_indexes``)."""
    found = []
    by_field: dict[str, Any] = {}
    for name, bounds in ranges:
        by_field.setdefault(name, bounds)
    for column in index.fields:
        if column not in by_field:
            break
        found.append(by_field[column])
    return found, len(ranges) - len(found)


# -- the key range --------------------------------------------------------------------
def start_key(plan: Plan) -> Any:
    """CouchDB's ``start_key``: an array for a JSON index, an id (or ``""``) for
    ``_all_docs``; None for an empty range."""
    if plan.empty or plan.index is None:
        return None
    if plan.index.special:
        lop, low, _, _ = plan.ranges[0]
        return "" if lop == "$gt" and low is MIN else low
    key = []
    for lop, low, _, _ in plan.ranges:
        if lop == "$gt" and low is MIN:
            break
        key.append(low)
    return key


def end_key(plan: Plan) -> Any:
    """CouchDB's ``end_key``; ``MAX`` stands for its greatest key (``"<MAX>"``)."""
    if plan.empty or plan.index is None:
        return None
    if plan.index.special:
        return plan.ranges[0][3]
    key = []
    for _, _, hop, high in plan.ranges:
        if hop == "$lt" and high is MAX:
            break
        key.append(high)
    return key + [MAX]


def shown(key: Any) -> Any:
    """A key as ``_explain`` shows it: ``MAX`` is ``"<MAX>"``."""
    if key is MAX:
        return "<MAX>"
    if isinstance(key, list):
        return [shown(k) for k in key]
    return key


def covers(index: Index, fields: list[str] | None) -> bool:
    """Whether ``fields`` (all of them, the selector's too) are in the index's keys,
    so the documents need not be read (``mango_idx_view:covers``)."""
    if not fields or index.special:
        return False
    return set(fields) <= {"_id", *index.fields}


def required_fields(norm: dict, fields: list[str] | None) -> list[str] | None:
    """What a covering index must hold: the fields asked for and the selector's."""
    return None if not fields else sorted(set(fields) | set(selector_fields(norm)))


# -- _explain's index_candidates ------------------------------------------------------
def candidates(plan: Plan, fields: list[str] | None) -> list[dict]:
    """Every index but the chosen one, with why it was not chosen (CouchDB's
    ``extract_candidate_indexes``): ``usable``, ``reasons``, ``ranking``, ``covering``."""
    t = plan.trace
    chosen = plan.index

    def minus(a, b):
        return [ix for ix in a if ix not in b]
    partial = minus(t["all"], t["global"])
    out_of_scope = minus(t["global"], t["scope"])
    not_usable = minus(t["scope"], t["usable"])
    excluded = minus(t["usable"], t.get("filtered", []))
    unfavored = minus(t.get("filtered", []), t.get("of_type", []))
    ordered = t.get("sorted", [])
    rank = max(1, len(ordered))
    ranks = {}
    for name, group in (("unfavored", unfavored), ("excluded", excluded),
                        ("not_usable", not_usable), ("out_of_scope", out_of_scope),
                        ("partial", partial)):
        ranks[name] = rank
        rank += 1 if group else 0
    tags: dict[Index, dict] = {ix: {"usable": True, "reasons": [], "ranking": 0}
                               for ix in t["all"]}

    def tag(group, usable_, reason, ranking):
        for ix in group:
            entry = tags[ix]
            entry["usable"] = entry["usable"] and usable_
            entry["reasons"] += [reason] if reason else []
            entry["ranking"] += ranking
    tag(partial, False, "is_partial", ranks["partial"])
    tag(out_of_scope, False, "scope_mismatch", ranks["out_of_scope"])
    tag(not_usable, False, None, ranks["not_usable"])
    tag(excluded, True, "excluded_by_user", ranks["excluded"])
    tag(unfavored, True, "unfavored_type", ranks["unfavored"])
    for ix, (ok, reasons) in t["verdicts"]:
        if not ok:
            tags[ix]["reasons"] += reasons
    width = 0 if chosen is None else len(chosen.fields)
    for n, (ix, _, distance) in enumerate(ordered):
        reason = ("less_overlap" if distance > 0 else "too_many_fields"
                  if len(ix.fields) > width else "alphabetically_comes_after")
        tags[ix]["reasons"] += [reason]
        tags[ix]["ranking"] += n
    return [{"index": ix.describe(),
             "analysis": {"usable": entry["usable"],
                          "reasons": [{"name": entry["reasons"][0]}] if entry["reasons"] else [],
                          "ranking": entry["ranking"],
                          "covering": None if ix.special else covers(ix, fields)}}
            for ix, entry in tags.items() if ix is not chosen]


def selector_hints(norm: dict) -> list[dict]:
    """``_explain``'s ``selector_hints``: which of the selector's fields a JSON index
    could serve, and which not."""
    indexable = set(indexable_fields(norm))
    return [{"type": "json", "indexable_fields": sorted(indexable),
             "unindexable_fields": sorted(set(selector_fields(norm)) - indexable)}]


__all__ = ["ALL_DOCS", "NoUsableIndex", "Plan", "plan", "start_key", "end_key", "shown",
           "covers", "required_fields", "candidates", "selector_hints", "usable"]
