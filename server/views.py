"""View endpoints: ``/{db}/_design/{ddoc}/_view/{name}`` (design documents) and
``/{db}/_view/{name}`` (views from Python modules), with CouchDB's query parameters,
view ETags (they change when the index does) and ``_active_tasks``."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice

from settee.store import NotFound, StoreError
from settee.views import definitions
from settee.views.deadline import Deadline, QueryTimeout
from settee.views.engine import View
from settee.views.indexes import indexes_of
from settee.views.selector import MISSING

from . import attachments
from .conditional import etag, none_match, not_modified
from .errors import HTTPError, bad_request
from .params import NO_PARAMS, Params, check_keys_alone, queries_of, whole
from .partitions import partition_of
from .representation import Listing
from .seqs import format_seq

log = logging.getLogger("settee.server")

VIEW_PARAMS = {"key", "keys", "startkey", "start_key", "endkey", "end_key", "startkey_docid",
               "start_key_doc_id", "endkey_docid", "end_key_doc_id", "inclusive_end",
               "descending", "limit", "skip", "reduce", "group", "group_level", "include_docs",
               "update", "stale", "conflicts", "update_seq", "sorted", "attachments",
               "att_encoding_info", "stable"}


def query_timeout_error(e: QueryTimeout) -> HTTPError:
    """A query past ``query_timeout``: 503 with CouchDB's error name, ``timeout``.

    CouchDB answers 500 for it. Settee answers 503 (Service Unavailable): nothing is
    broken, the server declined to spend longer on this request, and the same query
    may pass when the server is less busy or with a narrower range; a 500 here means
    a bug (logged with its traceback). Clients that look at ``error`` see CouchDB's.
    """
    return HTTPError(503, e.error, e.reason)


def answered(rows, deadline: Deadline) -> tuple[Iterator, dict]:
    """``rows`` (a query's answer, streamed) started now, and what went wrong later.

    The first row is read before the response starts, so a query that runs out of
    time before it has anything to answer (a large ``skip``, a key range with
    nothing to show) is a 503. After that the status is sent: a timeout ends the
    rows, and the dict returned, for the listing's tail, gets ``error`` and
    ``reason``, so a client sees a complete JSON answer that says it is cut short.
    Each row sent counts as progress for the deadline (see ``views/deadline.py``).
    """
    rows = iter(rows)
    failure: dict = {}
    try:
        first = next(rows, MISSING)
    except QueryTimeout as e:
        raise query_timeout_error(e) from None

    def stream():
        if first is MISSING:
            return
        yield first
        try:
            for row in rows:
                deadline.progress()
                yield row
        except QueryTimeout as e:
            failure.update(error=e.error, reason=e.reason)
    return stream(), failure


@dataclass
class ViewQuery:
    """A view query's parameters, read and checked (CouchDB's names and rules)."""

    update: str = "true"                # true, false or lazy
    reduce: bool = False
    group: bool = False
    group_level: int | None = None
    include_docs: bool = False
    attachments: bool = False  # include_docs' documents with their attachments' data
    conflicts: bool = False
    keys: list | None = None
    start: object = MISSING
    end: object = MISSING
    start_docid: str | None = None
    end_docid: str | None = None
    descending: bool = False
    inclusive_end: bool = True
    limit: int | None = None
    skip: int = 0
    update_seq: bool = False

    def page(self, rows):
        return islice(rows, self.skip, None if self.limit is None else self.skip + self.limit)


def parse_view_query(p: Params, body: dict, view: View) -> ViewQuery:
    """The query's parameters, from the URL or a POST's body (the body wins); 400 for a
    bad one, as CouchDB words them."""
    unknown = set(body) - VIEW_PARAMS
    if unknown:
        raise bad_request(f"unknown view parameters: {', '.join(sorted(unknown))}")

    def get(name, kind="json", default=None):
        if name in body:
            return body[name]
        return getattr(p, kind)(name) if name in p.args else default

    def first_of(*names, kind="json"):
        for name in names:
            value = get(name, kind, MISSING)
            if value is not MISSING:
                return value
        return MISSING if kind == "json" else None

    q = ViewQuery()
    update = get("update", "text", "true")
    if isinstance(update, bool):
        update = "true" if update else "false"
    stale = get("stale", "text")
    if stale in ("ok", "update_after"):
        update = "false" if stale == "ok" else "lazy"
    if update not in ("true", "false", "lazy"):
        raise bad_request("update must be true, false or lazy")
    q.update = update
    reduce_requested = get("reduce", "bool", None)
    q.group = get("group", "bool", False)
    q.group_level = get("group_level", "int", None)
    if q.group_level is not None and (not isinstance(q.group_level, int) or q.group_level < 0):
        raise bad_request("group_level must be a non-negative integer")
    grouped = q.group or q.group_level is not None
    q.reduce = view.reducer is not None if reduce_requested is None else reduce_requested
    if q.reduce and view.reducer is None:
        raise HTTPError(400, "query_parse_error", "Reduce is invalid for a map-only view.")
    if grouped and view.reducer is None:
        raise HTTPError(400, "query_parse_error", "Invalid use of grouping on a map view.")
    if grouped and reduce_requested is False:
        raise HTTPError(400, "query_parse_error", "Invalid use of grouping with reduce=false")
    q.include_docs = get("include_docs", "bool", False)
    if q.include_docs and q.reduce:
        raise HTTPError(400, "query_parse_error",
                        "include_docs is invalid for reduce; add reduce=false")
    check_keys_alone(p.args, body)
    keys = get("keys")
    if keys is not None and not isinstance(keys, list):
        raise bad_request("`keys` must be an array")
    if "key" in body or "key" in p.args:
        keys = [get("key")]
    q.keys = keys
    if q.reduce and keys is not None and not grouped:
        raise HTTPError(400, "query_parse_error", "Multi-key fetches for reduce views "
                        "must use group=true")
    q.start = first_of("startkey", "start_key")
    q.end = first_of("endkey", "end_key")
    q.start_docid = first_of("startkey_docid", "start_key_doc_id", kind="text")
    q.end_docid = first_of("endkey_docid", "end_key_doc_id", kind="text")
    q.descending = get("descending", "bool", False)
    q.inclusive_end = get("inclusive_end", "bool", True)
    q.limit = get("limit", "int", None)
    q.skip = get("skip", "int", 0)
    for name, value in (("limit", q.limit), ("skip", q.skip)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 0):
            raise bad_request(f"{name} must be a non-negative integer")
    q.conflicts = get("conflicts", "bool", False)
    q.attachments = get("attachments", "bool", False)
    q.update_seq = get("update_seq", "bool", False)
    return q


def view_for(database, spec) -> View:
    """The view ``spec`` of ``database`` (its index, opened or built once per database)."""
    return indexes_of(database).view(spec)


class ViewEndpoints:
    """View queries, and ``_active_tasks``: the index builds', then ``more_tasks()``
    (the replications')."""

    def __init__(self, http, more_tasks: Callable[[], list] = list):
        self.http = http
        self.more_tasks = more_tasks

    def on_design_view(self, request, db, ddoc, view):
        database = self.http.db(db)
        return self.query_view(request, database, definitions.design_view(database, ddoc, view))

    def on_partition_view(self, request, db, partition, ddoc, view):
        """A design view's rows within one partition (map only: its stored reductions
        span every partition)."""
        database = self.http.db(db)
        return self.query_view(request, database, definitions.design_view(database, ddoc, view),
                               partition_of(database, partition) + ":")

    def on_module_view(self, request, db, view):
        database = self.http.db(db)
        return self.query_view(request, database, definitions.module_view(
            db, view, self.http.settings["views_modules"]))

    # -- queries ----------------------------------------------------------------------
    def query_view(self, request, database, spec, prefix: str | None = None):
        """A view query: its parameters read and checked (:func:`parse_view_query`),
        the index brought up to date as ``update`` says, then rows or reductions.
        ``prefix``: only the rows of documents whose ids start with it (a partition)."""
        body = self.http.json_object(request) if request.method == "POST" else {}
        view = view_for(database, spec)
        q = self.prepare(database, view, parse_view_query(Params(request.args), body, view),
                         prefix)
        state = view.state()
        version = f"{view.vid}-{state.get('version', 0)}"
        if none_match(request, version):
            return not_modified({"ETag": etag(version)})
        headers = {"ETag": etag(version), "Cache-Control": "must-revalidate"}
        return self.http.stream(request, self.listing(database, view, q, prefix), headers)

    def on_design_view_queries(self, request, db, ddoc, view):
        """``POST .../_view/{view}/queries``: several queries of one view (each an object
        of its parameters) answered together, ``{"results": [...]}``."""
        database = self.http.db(db)
        spec = definitions.design_view(database, ddoc, view)
        index = view_for(database, spec)
        results = []
        for query in queries_of(self.http.json_object(request)):
            q = self.prepare(database, index, parse_view_query(NO_PARAMS, query, index), None)
            results.append(whole(self.listing(database, index, q, None)))
        return self.http.respond(request, {"results": results})

    @staticmethod
    def prepare(database, view, q: ViewQuery, prefix: str | None) -> ViewQuery:
        """``q``, checked against where it runs, with the index updated as it asks."""
        if prefix is not None and q.reduce:
            raise bad_request("Settee does not reduce within a partition; query with "
                              "reduce=false")
        if q.update == "true":
            view.update()
        elif q.update == "lazy":
            indexes_of(database).update_in_background(view)
        return q

    def listing(self, database, view, q: ViewQuery, prefix: str | None) -> Listing:
        """The rows (or reductions) of query ``q``, streamed as they are read."""
        deadline = Deadline(self.http.settings["query_timeout"])    # the update not counted
        state = view.state()
        if q.reduce:
            entries = view.reductions(start=q.start, end=q.end, keys=q.keys,
                                      descending=q.descending, inclusive_end=q.inclusive_end)
            rows, failure = answered(q.page(view.reduce(
                deadline.watch(entries), q.group_level, q.group or q.group_level is not None)),
                deadline)
            return Listing({}, "rows", rows, lambda: failure)
        rows, failure = answered(q.page(self.map_rows(database, view, q, deadline, prefix)),
                                 deadline)
        seq = {"update_seq": format_seq(database, state["seq"])} if q.update_seq else {}
        return Listing({"total_rows": state["rows"], "offset": q.skip}, "rows", rows,
                       lambda: {**seq, **failure})

    @staticmethod
    def map_rows(database, view, q: ViewQuery, deadline: Deadline, prefix: str | None = None):
        """A map query's rows, with their documents when ``include_docs`` asks (only
        those of ids starting with ``prefix``, if given)."""
        for key, doc_id, value in deadline.watch(view.rows(
                start=q.start, end=q.end, keys=q.keys, descending=q.descending,
                inclusive_end=q.inclusive_end, start_docid=q.start_docid,
                end_docid=q.end_docid)):
            if prefix is not None and not doc_id.startswith(prefix):
                continue
            row = {"id": doc_id, "key": key, "value": value}
            if q.include_docs:
                linked = value.get("_id") if isinstance(value, dict) else None
                target = linked if isinstance(linked, str) else doc_id
                try:
                    doc = database[target]
                    if q.conflicts and doc.meta.conflicts:
                        doc["_conflicts"] = doc.meta.conflicts
                except (NotFound, StoreError):
                    doc = None
                row["doc"] = attachments.stubs(doc, q.attachments) if doc is not None else None
            yield row

    # -- tasks --------------------------------------------------------------------------
    def on_active_tasks(self, request):
        tasks = []
        for name in self.http.catalog.names():
            try:
                tasks += indexes_of(self.http.catalog.get(name)).tasks()
            except StoreError:
                continue
        return self.http.respond(request, tasks + self.more_tasks())
