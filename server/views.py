"""View endpoints: ``/{db}/_design/{ddoc}/_view/{name}`` (design documents) and
``/{db}/_view/{name}`` (views from Python modules), with CouchDB's query parameters,
view ETags (they change when the index does) and ``_active_tasks``."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from settee.store import NotFound, StoreError
from settee.views import definitions
from settee.views.deadline import Deadline, QueryTimeout
from settee.views.engine import MISSING, View
from settee.views.indexes import Indexes, indexes_of

from . import attachments
from .conditional import etag, none_match, not_modified
from .errors import HTTPError, bad_request
from .params import Params
from .representation import Listing

log = logging.getLogger("settee.server")

VIEW_PARAMS = {"key", "keys", "startkey", "start_key", "endkey", "end_key", "startkey_docid",
               "start_key_doc_id", "endkey_docid", "end_key_doc_id", "inclusive_end",
               "descending", "limit", "skip", "reduce", "group", "group_level", "include_docs",
               "update", "stale", "conflicts", "update_seq", "sorted", "attachments",
               "att_encoding_info", "stable"}


#: Design document languages Settee never runs in its own process: database admins
#: may write these (JavaScript is stored, not run; "query" holds Mango index fields).
#: Any other language, Python above all, is code that runs as the server's user.
DB_ADMIN_LANGUAGES = frozenset({"javascript", "query"})

CODE_AUTHOR_ONLY = ("Only server admins may save Python design documents: Python code runs "
                    "unsandboxed as the server")


def require_code_author(user, body: dict) -> None:
    """403 unless ``user`` may save design document ``body`` as it would run.

    Python in a design document cannot be sandboxed in-process: a database admin's
    view could read the data directory (the cookie secret) and become a server admin.
    So a design document in any language but :data:`DB_ADMIN_LANGUAGES` is written
    by server admins only, whether new, changed, copied, replicated or given an
    attachment. Every route that writes a design document calls this (through
    ``check_design``), before its code is compiled: compiling runs it. A deletion
    (``"_deleted": true``, as the store reads it) runs nothing and is the database
    admins' right, whatever body the client sends along with it.
    """
    if user.is_admin or body.get("_deleted") is True:
        return
    language = body.get("language", "javascript")
    if not isinstance(language, str) or language not in DB_ADMIN_LANGUAGES:
        raise HTTPError(403, "forbidden", CODE_AUTHOR_ONLY)


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
    q.update_seq = get("update_seq", "bool", False)
    return q


class ViewEndpoints:
    @staticmethod
    def view_for(database, spec) -> View:
        return indexes_of(database).view(spec)

    def on_design_view(self, request, db, ddoc, view):
        database = self.db(db)
        return self.query_view(request, database, definitions.design_view(database, ddoc, view))

    def on_module_view(self, request, db, view):
        database = self.db(db)
        return self.query_view(request, database, definitions.module_view(
            db, view, self.settings["views_modules"]))

    # -- queries ----------------------------------------------------------------------
    def query_view(self, request, database, spec):
        """A view query: its parameters read and checked (:func:`parse_view_query`),
        the index brought up to date as ``update`` says, then rows or reductions."""
        body = self.json_object(request) if request.method == "POST" else {}
        view = self.view_for(database, spec)
        q = parse_view_query(Params(request.args), body, view)
        if q.update == "true":
            view.update()
        elif q.update == "lazy":
            indexes_of(database).update_in_background(view)
        deadline = Deadline(self.settings["query_timeout"])    # the update above not counted
        state = view.state()
        version = f"{view.vid}-{state.get('version', 0)}"
        if none_match(request, version):
            return not_modified({"ETag": etag(version)})
        headers = {"ETag": etag(version), "Cache-Control": "must-revalidate"}
        if q.reduce:
            entries = view.reductions(start=q.start, end=q.end, keys=q.keys,
                                      descending=q.descending, inclusive_end=q.inclusive_end)
            rows, failure = answered(q.page(view.reduce(
                deadline.watch(entries), q.group_level, q.group or q.group_level is not None)),
                deadline)
            return self.stream(request, Listing({}, "rows", rows, lambda: failure), headers)
        rows, failure = answered(q.page(self.map_rows(database, view, q, deadline)), deadline)
        seq = {"update_seq": str(state["seq"])} if q.update_seq else {}
        return self.stream(request, Listing({"total_rows": state["rows"], "offset": q.skip},
                                            "rows", rows, lambda: {**seq, **failure}), headers)

    @staticmethod
    def map_rows(database, view, q: ViewQuery, deadline: Deadline):
        """A map query's rows, with their documents when ``include_docs`` asks."""
        for key, doc_id, value in deadline.watch(view.rows(
                start=q.start, end=q.end, keys=q.keys, descending=q.descending,
                inclusive_end=q.inclusive_end, start_docid=q.start_docid,
                end_docid=q.end_docid)):
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
                row["doc"] = attachments.stubs(doc) if doc is not None else None
            yield row

    # -- design documents ---------------------------------------------------------------
    def check_design(self, request, database, docid: str, body: dict) -> None:
        """A write of a design document, by any route: database admins only; Python
        only from server admins (require_code_author), and its views must compile."""
        if not docid.startswith("_design/"):
            return
        self.auth.require_db_admin(request.user, database)
        require_code_author(request.user, body)
        Indexes.check_design(docid, body)

    @staticmethod
    def design_saved(database, docid: str) -> None:
        indexes_of(database).design_saved(docid)

    # -- tasks --------------------------------------------------------------------------
    def on_active_tasks(self, request):
        tasks = []
        for name in self.catalog.names():
            try:
                tasks += indexes_of(self.catalog.get(name)).tasks()
            except StoreError:
                continue
        return self.respond(request, tasks + self.replication.tasks())
