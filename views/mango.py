"""Mango queries (``_find``): the query's options, its run, bookmarks and statistics.

A query is checked (:func:`parse_query`, CouchDB's ``mango_opts:validate_find``),
planned (:mod:`.mango_plan`: which index, which key range) and run here: the rows of
the chosen index in that range are read in order, each document is matched against
the whole selector, ``skip`` and ``limit`` apply to the matches. When the index holds
every field the answer needs (``fields`` and the selector's), the documents are not
read at all (a covering index). ``_all_docs`` serves queries no JSON index can, with
a ``warning``. The indexes are in :mod:`.mango_index`, ``_explain`` in
:mod:`.mango_explain`.

``bookmark`` is an opaque position: the key and id of the last matching row while the
limit was not reached, so the next page starts after it, in either direction. A page
with no match gives back the bookmark it was given (``"nil"`` for the first).
"""
from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from .collation import MAX
from .deadline import Deadline, unlimited
from .mango_explain import explain_plan
from .mango_index import (  # noqa: F401 - the names other modules use from here
    ALL_DOCS,
    Index,
    all_indexes,
    compile_spec,
    drop_index,
    index_design_doc,
    index_request,
    indexes_of,
    list_indexes,
    mango_mapper,
)
from .mango_plan import (
    NoUsableIndex,
    Plan,
    covers,
    end_key,
    named,
    plan,
    required_fields,
    start_key,
)
from .normal import normalize
from .selector import MISSING, QueryError, compile_selector, parse_field, parse_sort, project

DEFAULT_LIMIT = 25
#: ``_find`` warns when it read more than this many documents per document returned.
SCAN_WARNING_RATIO = 10
KNOWN = {"selector", "fields", "sort", "limit", "skip", "bookmark", "use_index", "r",
         "conflicts", "update", "stable", "stale", "execution_stats", "allow_fallback",
         "partition"}


@dataclass
class Query:
    selector: dict
    match: Any
    fields: list[str] | None
    sort: list[tuple[str, str]]
    limit: int = DEFAULT_LIMIT
    skip: int = 0
    bookmark: Any = None          # the decoded position, or None
    bookmark_text: str = "nil"    # as sent
    use_index: list = field(default_factory=list)   # [], [ddoc] or [ddoc, name]
    update: bool = True
    execution_stats: bool = False
    conflicts: bool = False
    allow_fallback: bool = True
    stable: bool = False
    stale: Any = False            # false or "ok"
    r: int = 1
    partition: str | None = None
    norm: dict = field(default_factory=dict)

    @property
    def descending(self) -> bool:
        return bool(self.sort) and self.sort[0][1] == "desc"


def _use_index(value) -> list:
    """``use_index`` as CouchDB reads it: ``"ddoc"``, ``"ddoc/name"``, ``"_design/ddoc
    [/name]"``, ``[ddoc]`` or ``[ddoc, name]``; ``null`` and ``[]`` are none."""
    if value is None or value == []:
        return []
    if isinstance(value, str):
        parts = value.split("/")
        if parts[0] == "_design" and len(parts) in (2, 3):
            parts = parts[1:]
        if len(parts) in (1, 2) and all(parts):
            return parts
    elif isinstance(value, list) and len(value) in (1, 2) and \
            all(isinstance(v, str) and v for v in value):
        return list(value)
    raise QueryError(f"Invalid index name: {orjson.dumps(value).decode()}", "invalid_index_name")


def parse_query(body: dict, partition: str | None = None) -> Query:
    """Check a ``_find``/``_explain`` body; ``partition`` from the path, if any."""
    if not isinstance(body, dict):
        raise QueryError("the request body must be a JSON object", "bad_request")
    unknown = set(body) - KNOWN
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
    for name in fields or ():
        parse_field(name)
    limit, skip = body.get("limit", DEFAULT_LIMIT), body.get("skip", 0)
    for name, value in (("limit", limit), ("skip", skip)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise QueryError(f"`{name}` must be a non-negative integer", "invalid_" + name)
    for name in ("update", "execution_stats", "conflicts", "allow_fallback", "stable"):
        if name in body and not isinstance(body[name], bool):
            raise QueryError(f"`{name}` must be true or false", "bad_request")
    r = body.get("r", 1)
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise QueryError("`r` must be a positive integer", "bad_request")
    stale = body.get("stale", False)
    if stale not in (False, "ok"):
        raise QueryError("`stale` must be \"ok\" or false", "bad_request")
    sent = body.get("partition", "")
    if not isinstance(sent, str):
        raise QueryError("`partition` must be a string", "bad_request")
    if partition is not None and sent and sent != partition:
        raise QueryError(f"Partition {sent} does not match the partition of the path",
                         "bad_request")
    partition = partition or sent or None
    text = body.get("bookmark")
    return Query(selector, match, fields, parse_sort(body.get("sort", [])), limit, skip,
                 decode_bookmark(text), text or "nil", _use_index(body.get("use_index")),
                 body.get("update", True) and stale != "ok", body.get("execution_stats", False),
                 body.get("conflicts", False), body.get("allow_fallback", True),
                 body.get("stable", False) or stale == "ok", stale, r, partition,
                 normalize(selector))


# -- bookmarks ------------------------------------------------------------------------
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
        raise QueryError(f"Invalid bookmark value: {orjson.dumps(text).decode()}",
                         "invalid_bookmark") from None


# -- planning -------------------------------------------------------------------------
def choose(database, query: Query, *, explain: bool = False,
           partitioned_db: bool = False) -> Plan:
    """The plan of ``query`` over the database's indexes (:func:`.mango_plan.plan`)."""
    return plan(all_indexes(database, partitioned_db), query.norm, [f for f, _ in query.sort],
                use_index=query.use_index, allow_fallback=query.allow_fallback,
                partition=query.partition, explain=explain, partitioned_db=partitioned_db)


def covering(chosen: Plan, query: Query) -> bool:
    """Whether the chosen index alone answers the query (``r`` above 1 reads documents)."""
    return chosen.index is not None and query.r == 1 and \
        covers(chosen.index, required_fields(query.norm, query.fields))


def derived(index: Index, key: list, doc_id: str) -> dict:
    """A document built from an index row: its id and the indexed fields' values."""
    doc: dict = {"_id": doc_id}
    for name, value in zip(index.fields, key):
        path = parse_field(name)
        target = doc
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return doc


# -- running ---------------------------------------------------------------------------
def _all_docs_rows(database, chosen: Plan, query: Query, after):
    """(id, doc, key) of ``_all_docs`` in the plan's id range (ids compare as strings:
    CouchDB's raw collation puts every other JSON value below them)."""
    low, high = start_key(chosen), end_key(chosen)
    lo = low if isinstance(low, str) and low else None
    if high is MAX:
        hi = None
    elif isinstance(high, str):
        hi = high
    else:
        return
    if query.partition is not None:
        first, last = query.partition + ":", query.partition + ":\U0010ffff"
        lo = first if lo is None or lo < first else lo
        hi = last if hi is None or hi > last else hi
    if after:
        if query.descending:
            hi = after[1] if hi is None or after[1] < hi else hi
        else:
            lo = after[1] if lo is None or after[1] > lo else lo
    if lo is not None and hi is not None and lo > hi:
        return
    for doc_id, doc in database.docs(lo, hi, descending=query.descending):
        if doc_id.startswith("_design/") or (after and doc_id == after[1]):
            continue
        yield doc_id, doc, doc_id


def _index_rows(database, view_for, chosen: Plan, query: Query, after, deadline: Deadline):
    """(id, None, key) of the chosen JSON index's rows in the plan's key range."""
    assert chosen.index is not None
    view = view_for(database, chosen.index.spec)
    if query.update:
        view.update()
        deadline.restart()
    start, end = start_key(chosen), end_key(chosen)
    if query.descending:
        start, end = end, start
    start_docid = None
    if after:
        start, start_docid = after
    prefix = None if query.partition is None else query.partition + ":"
    for key, doc_id, _ in view.rows(start=start, end=end, descending=query.descending,
                                    start_docid=start_docid):
        if after and doc_id == after[1] and key == after[0]:
            continue
        if prefix is not None and not doc_id.startswith(prefix):
            continue
        yield doc_id, None, key


@dataclass
class Stats:
    keys: int = 0
    docs: int = 0
    quorum_docs: int = 0
    returned: int = 0
    started: float = field(default_factory=time.perf_counter)

    def as_json(self) -> dict:
        return {"total_keys_examined": self.keys, "total_docs_examined": self.docs,
                "total_quorum_docs_examined": self.quorum_docs,
                "results_returned": self.returned,
                "execution_time_ms": round((time.perf_counter() - self.started) * 1000, 3)}


def find(database, view_for, query: Query, deadline: Deadline | None = None, *,
         partitioned_db: bool = False) -> dict:
    """Run ``query``: ``{docs, bookmark, warning?, execution_stats?}``.

    ``deadline`` bounds the whole run (the answer is built whole, at most ``limit``
    documents): :class:`~.deadline.QueryTimeout` when it passes. The index update
    before the scan is not counted: it is the index's work, shared by every query.
    """
    stats = Stats()
    deadline = deadline or unlimited()
    chosen = choose(database, query, partitioned_db=partitioned_db)
    index = chosen.index
    assert index is not None
    after = query.bookmark
    if after is not None and index.special:
        after = [after[1], after[1]]
    docs: list[dict] = []
    position = None
    from_index = covering(chosen, query)
    if chosen.empty or query.limit == 0:
        rows: Any = ()
    elif index.special:
        rows = _all_docs_rows(database, chosen, query, after)
    else:
        rows = _index_rows(database, view_for, chosen, query, after, deadline)
    skipped = 0
    for doc_id, doc, key in rows:
        deadline.check()
        stats.keys += 1
        if doc is not None:
            stats.docs += 1
        elif from_index:
            doc = derived(index, key, doc_id)
        else:
            doc = database.get(doc_id)
            if doc is None:
                continue
            if query.r > 1:
                stats.quorum_docs += 1
            else:
                stats.docs += 1
        if not query.match(doc):
            continue
        position = [key, doc_id]
        if skipped < query.skip:
            skipped += 1
            continue
        if query.conflicts and getattr(doc, "meta", None) is not None and doc.meta.conflicts:
            doc["_conflicts"] = list(doc.meta.conflicts)
        docs.append(project(doc, query.fields) if query.fields else doc)
        if len(docs) >= query.limit:
            break
    stats.returned = len(docs)
    result: dict[str, Any] = {"docs": docs, "bookmark": encode_bookmark(position)
                              if position else query.bookmark_text}
    warnings = _warnings(chosen, query, stats)
    if warnings:
        result["warning"] = "\n".join(warnings)
    if query.execution_stats:
        result["execution_stats"] = stats.as_json()
    return result


def _warnings(chosen: Plan, query: Query, stats: Stats) -> list[str]:
    """CouchDB's: a ``use_index`` not used, no index but ``_all_docs``, many documents
    read per document returned."""
    found = []
    index = chosen.index
    if query.use_index and index is not None and not named([index], query.use_index):
        ddoc = query.use_index[0].removeprefix("_design/")
        found.append(f"_design/{ddoc} was not used because it does not contain a valid index "
                     "for this query." if len(query.use_index) == 1 else
                     f"_design/{ddoc}, {query.use_index[1]} was not used because it is not "
                     "a valid index for this query.")
    if index is not None and index.special:
        found.append("No matching index found, create an index to optimize query time.")
    scanned = stats.docs + stats.quorum_docs
    if scanned / max(stats.returned, 1) > SCAN_WARNING_RATIO:
        found.append("The number of documents examined is high in proportion to the number "
                     "of results returned. Consider adding a more specific index to improve "
                     "this.")
    return found


def explain(database, query: Query, dbname: str, *, partitioned_db: bool = False) -> dict:
    """``_explain``'s answer (:mod:`.mango_explain`)."""
    chosen = choose(database, query, explain=True, partitioned_db=partitioned_db)
    return explain_plan(chosen, query, dbname, partitioned_db, covering(chosen, query))


__all__ = ["QueryError", "NoUsableIndex", "MISSING", "Query", "find", "explain",
           "list_indexes", "drop_index", "parse_query", "index_request", "index_design_doc",
           "indexes_of", "mango_mapper", "compile_spec"]
