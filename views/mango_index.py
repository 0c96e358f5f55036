"""Mango's JSON indexes: how they are declared, stored, listed and dropped.

A JSON index is a view: ``POST /{db}/_index`` stores it, as CouchDB does, in a design
document with ``"language": "query"``::

    "views": {"<name>": {"map": {"fields": {"name": "asc", "age": "asc"},
                                  "partial_filter_selector": {...normalized...}},
                          "reduce": "_count",
                          "options": {"def": <the index as sent>}}}

``options.def`` keeps the definition as the client sent it (``"fields": ["name",
"age"]`` stays so); ``GET /_index`` describes each index as CouchDB does, its fields
as ``[{"name": "asc"}, ...]``. The view's map emits the array of the indexed fields'
values for every document that has them all (and matches the partial filter
selector, if the index has one). So it is stored, kept up to date and built (in the
background, in parallel) exactly like a map-reduce view.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from settee.store.exceptions import NotFound

from .normal import normalize
from .selector import (
    MISSING,
    QueryError,
    compile_selector,
    get_field,
    parse_field,
    parse_sort,
)
from .spec import ViewSpec


def mango_mapper(fields: list[str], partial: dict | None = None):
    paths = [parse_field(f) for f in fields]
    match = compile_selector(partial) if partial else None

    def fun(doc):
        if match is not None and not match(doc):
            return
        values = []
        for path in paths:
            value = get_field(doc, path)
            if value is MISSING:
                return
            values.append(value)
        yield values, None
    return fun


def compile_spec(spec: ViewSpec, settings=None):
    """``(map, None)`` of a Mango index's spec: its fields as a JSON array, or an object
    with ``fields`` and ``partial_filter_selector`` (:data:`.spec.COMPILERS`)."""
    source = orjson.loads(spec.map_source)
    if isinstance(source, dict):
        return mango_mapper(source["fields"], source.get("partial_filter_selector")), None
    return mango_mapper(source), None


@dataclass(frozen=True, eq=False)
class Index:
    """One index a query may use: a JSON index, or ``_all_docs`` (``type: special``)."""

    ddoc: str | None          # "_design/<name>"; None for _all_docs
    name: str
    fields: tuple[str, ...]
    direction: str = "asc"    # "asc" or "desc", as declared
    type: str = "json"
    partial: dict | None = field(default=None)    # the partial filter selector
    partitioned: bool = False

    @property
    def spec(self) -> ViewSpec:
        source: Any = list(self.fields)
        if self.partial:
            source = {"fields": source, "partial_filter_selector": self.partial}
        return ViewSpec(f"{(self.ddoc or '')[8:]}/{self.name}", orjson.dumps(source).decode(),
                        None, "mango")

    @property
    def special(self) -> bool:
        return self.type == "special"

    def describe(self) -> dict:
        """The index as ``GET /_index`` and ``_explain`` show it (CouchDB's ``to_json``)."""
        definition: dict[str, Any] = {"fields": [{f: self.direction} for f in self.fields]}
        if self.special:
            return {"ddoc": None, "name": self.name, "type": "special", "def": definition}
        if self.partial:
            definition["partial_filter_selector"] = self.partial
        return {"ddoc": self.ddoc, "name": self.name, "type": self.type,
                "partitioned": self.partitioned, "def": definition}


ALL_DOCS = Index(None, "_all_docs", ("_id",), type="special")


def _declared_fields(view: dict) -> tuple[list[str], str] | None:
    """(fields, direction) of a stored index: from ``map.fields`` (an object, as
    CouchDB stores it), else from ``options.def.fields`` (any form a sort takes)."""
    mapped = view.get("map")
    if isinstance(mapped, dict) and isinstance(mapped.get("fields"), dict) and mapped["fields"]:
        items = list(mapped["fields"].items())
    else:
        declared = ((view.get("options") or {}).get("def") or {}).get("fields")
        if not isinstance(declared, list) or not declared:
            return None
        try:
            items = parse_sort(declared)
        except QueryError:
            return None
    if not all(isinstance(f, str) and d in ("asc", "desc") for f, d in items):
        return None
    return [f for f, _ in items], items[0][1]


def indexes_of(doc: dict, partitioned_db: bool = False) -> list[Index]:
    """The JSON indexes a ``"language": "query"`` design document declares.
    ``partitioned_db``: the database's default for a design doc that does not say."""
    if doc.get("language") != "query" or not isinstance(doc.get("views"), dict):
        return []
    options = doc.get("options")
    partitioned = options.get("partitioned") if isinstance(options, dict) else None
    if not isinstance(partitioned, bool):
        partitioned = partitioned_db
    found = []
    for name, view in doc["views"].items():
        if not isinstance(view, dict):
            continue
        declared = _declared_fields(view)
        if declared is None:
            continue
        mapped = view["map"] if isinstance(view.get("map"), dict) else {}
        partial = mapped.get("partial_filter_selector") or mapped.get("selector") or None
        if partial is not None and not isinstance(partial, dict):
            continue
        found.append(Index(doc["_id"], name, tuple(declared[0]), declared[1],
                           partial=partial, partitioned=partitioned))
    return found


def all_indexes(database, partitioned_db: bool = False) -> list[Index]:
    """``_all_docs`` first, then every JSON index of the database's design documents."""
    found = [ALL_DOCS]
    for _, doc in database.docs("_design/", "_design/\uffff"):
        found.extend(indexes_of(doc, partitioned_db))
    return found


@dataclass
class IndexRequest:
    """A checked ``POST /_index`` body."""

    definition: dict          # ``index`` as sent
    fields: list              # [(field, direction)]
    partial: dict             # normalized partial filter selector, or {}
    name: str
    ddoc: str                 # "_design/<name>"
    partitioned: bool | None  # None: the database's default


def index_request(body: dict) -> IndexRequest:
    """Check a ``POST /_index`` body (CouchDB's ``mango_opts:validate_idx_create``)."""
    index = body.get("index")
    if not isinstance(index, dict) or not isinstance(index.get("fields"), list) \
            or not index["fields"]:
        raise QueryError("`index` must be an object with a non-empty `fields` array",
                         "bad_request")
    if body.get("type", "json") != "json":
        raise QueryError("Settee offers json indexes only", "invalid_index")
    fields = parse_sort(index["fields"])
    unknown = set(index) - {"fields", "partial_filter_selector", "selector"}
    if unknown:
        raise QueryError(f"invalid key(s) in the index: {', '.join(sorted(unknown))}",
                         "invalid_index_json")
    partial = index.get("partial_filter_selector", index.get("selector", {}))
    if not isinstance(partial, dict):
        raise QueryError("`partial_filter_selector` must be a JSON object",
                         "invalid_selector_json")
    partial = normalize(partial)
    name, ddoc = body.get("name"), body.get("ddoc")
    for value, what in ((name, "name"), (ddoc, "ddoc")):
        if value is not None and (not isinstance(value, str) or not value):
            raise QueryError(f"`{what}` must be a non-empty string", "bad_request")
    partitioned = body.get("partitioned")
    if partitioned is not None and not isinstance(partitioned, bool):
        raise QueryError("`partitioned` must be true or false", "invalid_partitioned_value")
    # Named by its definition (the names an earlier Settee gave stay the same).
    digest = hashlib.sha1(orjson.dumps(fields if not partial and partitioned is None
                                       else [fields, partial, partitioned])).hexdigest()
    ddoc = ddoc or digest
    return IndexRequest(index, fields, partial, name or digest,
                        ddoc if ddoc.startswith("_design/") else "_design/" + ddoc, partitioned)


def index_design_doc(current: dict | None, request: IndexRequest) -> dict | None:
    """The design document with the requested index in it, or None if it is there
    already. A design document in another language than ``query`` is not touched:
    :class:`QueryError` ``invalid_ddoc_lang``, as in CouchDB."""
    doc: dict[str, Any] = {"language": "query", "views": {}}
    if current is not None:
        if current.get("language") != "query":
            raise QueryError("Existing design doc has an invalid language: "
                             f"{orjson.dumps(current.get('language')).decode()}",
                             "invalid_ddoc_lang")
        doc = {k: v for k, v in current.items() if k != "_id"}
        if not isinstance(doc.get("views"), dict):
            doc["views"] = {}
        else:
            doc["views"] = dict(doc["views"])
        options = current.get("options")
        existing = options.get("partitioned") if isinstance(options, dict) else None
        if request.partitioned is not None and request.partitioned != existing:
            raise QueryError("Requested partitioned option does not match existing value on "
                             f"design document {request.ddoc}", "invalid_partitioned_option")
    elif request.partitioned is not None:
        doc["options"] = {"partitioned": request.partitioned}
    view = {"map": {"fields": {f: d for f, d in request.fields},
                    "partial_filter_selector": request.partial},
            "reduce": "_count", "options": {"def": request.definition}}
    if doc["views"].get(request.name) == view:
        return None
    doc["views"][request.name] = view
    return doc


def list_indexes(database, partitioned_db: bool = False) -> dict:
    found = [ix.describe() for ix in all_indexes(database, partitioned_db)]
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
