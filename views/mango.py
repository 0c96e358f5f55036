"""Mango queries (``_find``) and the JSON indexes they use.

A JSON index is a view: ``POST /{db}/_index`` stores it, as CouchDB does, in a design
document with ``"language": "query"``; its map emits the array of the indexed fields'
values for every document that has them all. So it is stored, kept up to date and
built (in the background, in parallel) exactly like a map-reduce view.

A query picks an index whose fields the selector constrains (all of them, and the
``sort`` fields must be a prefix of the index's fields, in one direction), scans the
key range that the selector's conditions on the index's first field allow, and checks
every document against the whole selector. With no usable index it scans all
documents and says so in ``warning``; a ``sort`` with no usable index is an error,
as in CouchDB (``no_usable_index``). ``bookmark`` is an opaque position to resume from.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from settee.store.exceptions import BadRequest, NotFound

from .collation import MAX, MIN
from .deadline import Deadline, unlimited
from .selector import (
    MISSING,
    QueryError,
    compile_selector,
    get_field,
    parse_field,
    parse_sort,
    project,
    range_for,
    selector_fields,
)
from .spec import ViewSpec

DEFAULT_LIMIT = 25
ALL_DOCS = {"ddoc": None, "name": "_all_docs", "type": "special",
            "def": {"fields": [{"_id": "asc"}]}}


class NoUsableIndex(QueryError):
    """No index can serve the query's sort."""

    error = "no_usable_index"


def mango_mapper(fields: list[str]):
    paths = [parse_field(f) for f in fields]

    def fun(doc):
        values = []
        for path in paths:
            value = get_field(doc, path)
            if value is MISSING:
                return
            values.append(value)
        yield values, None
    return fun


def compile_spec(spec: ViewSpec, settings=None):
    """``(map, None)`` of a Mango index's spec (its fields as JSON): :data:`.spec.COMPILERS`."""
    return mango_mapper(orjson.loads(spec.map_source)), None


@dataclass(frozen=True)
class Index:
    ddoc: str                 # "_design/<name>"
    name: str
    fields: tuple[str, ...]
    direction: str            # "asc" or "desc", as declared

    @property
    def spec(self) -> ViewSpec:
        return ViewSpec(f"{self.ddoc[8:]}/{self.name}", orjson.dumps(list(self.fields)).decode(),
                        None, "mango")

    def describe(self) -> dict:
        return {"ddoc": self.ddoc, "name": self.name, "type": "json",
                "def": {"fields": [{f: self.direction} for f in self.fields]}}


def indexes_of(doc: dict) -> list[Index]:
    """The JSON indexes a ``"language": "query"`` design document declares."""
    if doc.get("language") != "query":
        return []
    found = []
    for name, view in (doc.get("views") or {}).items():
        fields = (view.get("options") or {}).get("def", {}).get("fields")
        if not isinstance(fields, list):
            continue
        names = [next(iter(f)) if isinstance(f, dict) else f for f in fields]
        directions = {next(iter(f.values())) for f in fields if isinstance(f, dict)} or {"asc"}
        found.append(Index(doc["_id"], name, tuple(names), directions.pop()))
    return found


def all_indexes(database) -> list[Index]:
    found = []
    for _, doc in database.docs("_design/", "_design/\uffff"):
        found.extend(indexes_of(doc))
    return found


def index_request(body: dict) -> tuple[list, str, str]:
    """Check a ``POST /_index`` body: (sort-style fields, name, ddoc)."""
    index = body.get("index")
    if not isinstance(index, dict) or not isinstance(index.get("fields"), list) \
            or not index["fields"]:
        raise QueryError("`index` must be an object with a non-empty `fields` array",
                         "bad_request")
    if body.get("type", "json") != "json":
        raise QueryError("Settee offers json indexes only", "invalid_index")
    fields = parse_sort(index["fields"])
    name = body.get("name")
    ddoc = body.get("ddoc")
    for value, what in ((name, "name"), (ddoc, "ddoc")):
        if value is not None and (not isinstance(value, str) or not value):
            raise QueryError(f"`{what}` must be a non-empty string", "bad_request")
    if "partial_filter_selector" in index:
        raise QueryError("partial indexes are not supported", "invalid_index")
    digest = hashlib.sha1(orjson.dumps(fields)).hexdigest()
    return fields, name or digest, ddoc or digest


def index_design_doc(current: dict | None, fields, name: str) -> dict:
    doc: dict[str, Any] = {"language": "query", "views": {}}
    if current is not None:
        doc = {k: v for k, v in current.items() if k not in ("_id",)}
        doc.setdefault("views", {})
    doc["language"] = "query"
    doc["views"][name] = {"map": {"fields": {f: d for f, d in fields}}, "reduce": "_count",
                          "options": {"def": {"fields": [{f: d} for f, d in fields]}}}
    return doc


# -- queries ------------------------------------------------------------------------
@dataclass
class Query:
    selector: dict
    match: Any
    fields: list[str] | None
    sort: list[tuple[str, str]]
    limit: int
    skip: int
    bookmark: Any
    use_index: Any
    update: bool
    execution_stats: bool
    conflicts: bool


def parse_query(body: dict) -> Query:
    if not isinstance(body, dict):
        raise QueryError("the request body must be a JSON object", "bad_request")
    known = {"selector", "fields", "sort", "limit", "skip", "bookmark", "use_index", "r",
             "conflicts", "update", "stable", "stale", "execution_stats", "allow_fallback"}
    unknown = set(body) - known
    if unknown:
        raise QueryError(f"invalid key(s) in the query: {', '.join(sorted(unknown))}",
                         "invalid_key")
    if "selector" not in body:
        raise QueryError("the query needs a `selector`", "missing_required_key")
    selector = body["selector"]
    match = compile_selector(selector)
    fields = body.get("fields")
    if fields is not None and (not isinstance(fields, list)
                               or not all(isinstance(f, str) for f in fields)):
        raise QueryError("`fields` must be an array of field names", "invalid_fields")
    limit, skip = body.get("limit", DEFAULT_LIMIT), body.get("skip", 0)
    for name, value in (("limit", limit), ("skip", skip)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise QueryError(f"`{name}` must be a non-negative integer", "invalid_" + name)
    for name in ("update", "execution_stats", "conflicts"):
        if name in body and not isinstance(body[name], bool):
            raise QueryError(f"`{name}` must be true or false", "bad_request")
    return Query(selector, match, fields, parse_sort(body.get("sort", [])), limit, skip,
                 decode_bookmark(body.get("bookmark")), body.get("use_index"),
                 body.get("update", True), body.get("execution_stats", False),
                 body.get("conflicts", False))


def encode_bookmark(position) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode_bookmark(text) -> Any:
    if text in (None, "", "nil"):
        return None
    try:
        if not isinstance(text, str):
            raise ValueError
        position = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(position, list) or len(position) != 2 or \
                not isinstance(position[1], str):
            raise ValueError
        return position
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise QueryError("Invalid bookmark value", "invalid_bookmark") from None


def choose_index(query: Query, indexes: list[Index]) -> Index | None:
    """The index to use, or None for a full scan; :class:`NoUsableIndex` if sort can't be served."""
    constrained = selector_fields(query.selector)
    sort_fields = [f for f, _ in query.sort]
    directions = {d for _, d in query.sort}
    usable = [ix for ix in indexes
              if set(ix.fields) <= constrained | set(sort_fields) and ix.fields[0] in constrained
              | set(sort_fields) and tuple(sort_fields) == ix.fields[:len(sort_fields)]]
    if query.use_index:
        wanted = query.use_index if isinstance(query.use_index, list) else [query.use_index]
        ddoc = wanted[0] if wanted[0].startswith("_design/") else "_design/" + wanted[0]
        named = [ix for ix in usable if ix.ddoc == ddoc
                 and (len(wanted) < 2 or ix.name == wanted[1])]
        if named:
            usable = named
    if sort_fields and sort_fields != ["_id"]:
        if len(directions) > 1:
            raise QueryError("Sorts currently only support a single direction for all fields.",
                             "unsupported_mixed_sort")
        if not usable:
            raise NoUsableIndex("No index exists for this sort, try indexing by the sort fields.")
    if not usable:
        return None
    return max(usable, key=lambda ix: (len(set(ix.fields) & constrained), -len(ix.fields)))


def key_range(query: Query, index: Index) -> tuple[Any, Any]:
    """View startkey/endkey (arrays) from the conditions on the index's first field."""
    bounds = range_for(query.selector, index.fields[0])
    if bounds is None:
        return MISSING, MISSING
    lower, _, upper, _ = bounds
    start = MISSING if lower is MIN else [lower]
    end = MISSING if upper is MAX else [upper, {}]
    return start, end


def find(database, view_for, query: Query, deadline: Deadline | None = None) -> dict:
    """Run ``query``: ``{docs, bookmark, warning?, execution_stats?}`` and the plan.

    ``deadline`` bounds the whole run (the answer is built whole, at most ``limit``
    documents): :class:`~.deadline.QueryTimeout` when it passes. The index update
    before the scan is not counted: it is the index's work, shared by every query.
    """
    deadline = deadline or unlimited()
    index = choose_index(query, all_indexes(database))
    descending = bool(query.sort) and query.sort[0][1] == "desc"
    examined = 0
    docs: list[dict] = []
    position = None
    after = query.bookmark
    if index is None:
        start = after[1] if after else None
        items = database.docs(start, None, descending=descending)
        candidates = ((doc_id, doc, doc_id) for doc_id, doc in items
                      if not (after and doc_id == after[1]) and not doc_id.startswith("_design/"))
        warning = "No matching index found, create an index to optimize query time."
    else:
        view = view_for(database, index.spec)
        if query.update:
            view.update()
            deadline.restart()
        start, end = key_range(query, index)
        if descending:
            start, end = end, start
        if after:
            start = after[0]
        rows = view.rows(start=start, end=end, descending=descending,
                         start_docid=after[1] if after else None)
        candidates = ((doc_id, None, key) for key, doc_id, _ in rows
                      if not (after and [key, doc_id] == after))
        warning = None
    skipped = 0
    for doc_id, doc, key in candidates:
        deadline.check()
        if doc is None:
            try:
                doc = database[doc_id]
            except NotFound:
                continue
        examined += 1
        if not query.match(doc):
            continue
        if skipped < query.skip:
            skipped += 1
            continue
        if query.conflicts and doc.meta.conflicts:
            doc["_conflicts"] = doc.meta.conflicts
        docs.append(project(doc, query.fields) if query.fields else doc)
        position = [key if index is not None else None, doc_id]
        if len(docs) >= query.limit:
            break
    result: dict[str, Any] = {"docs": docs,
                              "bookmark": encode_bookmark(position) if position else "nil"}
    if warning:
        result["warning"] = warning
    if query.execution_stats:
        result["execution_stats"] = {"total_keys_examined": examined if index else 0,
                                     "total_docs_examined": examined,
                                     "results_returned": len(docs)}
    return result


def explain(database, query: Query, dbname: str) -> dict:
    index = choose_index(query, all_indexes(database))
    start, end = key_range(query, index) if index else (MISSING, MISSING)
    plain = (lambda v: None if v is MISSING else v)
    return {"dbname": dbname, "index": index.describe() if index else ALL_DOCS,
            "selector": query.selector,
            "opts": {"use_index": query.use_index or [], "bookmark": "nil", "limit": query.limit,
                     "skip": query.skip, "sort": {f: d for f, d in query.sort},
                     "fields": query.fields or "all_fields", "conflicts": query.conflicts,
                     "update": query.update},
            "limit": query.limit, "skip": query.skip, "fields": query.fields or "all_fields",
            "mrargs": {"start_key": plain(start), "end_key": plain(end),
                       "direction": "rev" if query.sort and query.sort[0][1] == "desc" else "fwd",
                       "include_docs": True, "reduce": False, "update": query.update,
                       "view_type": "map" if index else "all_docs"}}


def list_indexes(database) -> dict:
    found = [ALL_DOCS] + [ix.describe() for ix in all_indexes(database)]
    return {"total_rows": len(found), "indexes": found}


def drop_index(database, ddoc: str, name: str) -> None:
    ddoc = ddoc if ddoc.startswith("_design/") else "_design/" + ddoc
    doc = database.get(ddoc)
    if doc is None or name not in (doc.get("views") or {}) or doc.get("language") != "query":
        raise NotFound(f"{ddoc}/{name}", "Index not found")
    views = {k: v for k, v in doc["views"].items() if k != name}
    if views:
        database[ddoc] = {**{k: v for k, v in doc.items() if k != "views"}, "views": views}
    else:
        database.delete(ddoc, doc["_rev"])


__all__ = ["BadRequest", "find", "explain", "list_indexes", "drop_index", "parse_query",
           "index_request", "index_design_doc", "indexes_of", "mango_mapper", "compile_spec"]
