"""View endpoints: ``/{db}/_design/{ddoc}/_view/{name}`` (design documents) and
``/{db}/_view/{name}`` (views from Python modules), with CouchDB's query parameters,
view ETags (they change when the index does) and ``_active_tasks``."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from itertools import islice

from settee.store import NotFound, StoreError
from settee.views import definitions
from settee.views.deadline import Deadline, QueryTimeout
from settee.views.engine import MISSING, View
from settee.views.indexes import Indexes, indexes_of

from . import attachments
from .conditional import none_match, not_modified
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
        p = Params(request.args)
        body = self.json_object(request) if request.method == "POST" else {}
        unknown = set(body) - VIEW_PARAMS
        if unknown:
            raise bad_request(f"unknown view parameters: {', '.join(sorted(unknown))}")

        def get(name, kind="json", default=None):
            if name in body:
                return body[name]
            return getattr(p, kind)(name) if name in request.args else default

        view = self.view_for(database, spec)
        update = get("update", "text", "true")
        if isinstance(update, bool):
            update = "true" if update else "false"
        stale = get("stale", "text")
        if stale in ("ok", "update_after"):
            update = "false" if stale == "ok" else "lazy"
        if update not in ("true", "false", "lazy"):
            raise bad_request("update must be true, false or lazy")
        if update == "true":
            view.update()
        elif update == "lazy":
            indexes_of(database).update_in_background(view)
        deadline = Deadline(self.settings["query_timeout"])    # the update above not counted
        state = view.state()
        etag = f'"{view.vid}-{state.get("version", 0)}"'
        if none_match(request, f"{view.vid}-{state.get('version', 0)}"):
            return not_modified({"ETag": etag})

        reduce_requested = get("reduce", "bool", None)
        group = get("group", "bool", False)
        group_level = get("group_level", "int", None)
        if group_level is not None and (not isinstance(group_level, int) or group_level < 0):
            raise bad_request("group_level must be a non-negative integer")
        reduce = view.reducer is not None if reduce_requested is None else reduce_requested
        if reduce and view.reducer is None:
            raise HTTPError(400, "query_parse_error", "Reduce is invalid for a map-only view.")
        if (group or group_level is not None) and view.reducer is None:
            raise HTTPError(400, "query_parse_error",
                            "Invalid use of grouping on a map view.")
        if (group or group_level is not None) and reduce_requested is False:
            raise HTTPError(400, "query_parse_error", "Invalid use of grouping with reduce=false")
        include_docs = get("include_docs", "bool", False)
        if include_docs and reduce:
            raise HTTPError(400, "query_parse_error",
                            "include_docs is invalid for reduce; add reduce=false")
        keys = get("keys")
        if keys is not None and not isinstance(keys, list):
            raise bad_request("`keys` must be an array")
        if "key" in body or "key" in request.args:
            keys = [get("key")]
        start = self.first_of(get, "startkey", "start_key")
        end = self.first_of(get, "endkey", "end_key")
        start_docid = self.first_of(get, "startkey_docid", "start_key_doc_id", kind="text")
        end_docid = self.first_of(get, "endkey_docid", "end_key_doc_id", kind="text")
        descending = get("descending", "bool", False)
        inclusive_end = get("inclusive_end", "bool", True)
        limit = get("limit", "int", None)
        skip = get("skip", "int", 0)
        for name, value in (("limit", limit), ("skip", skip)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 0):
                raise bad_request(f"{name} must be a non-negative integer")
        headers = {"ETag": etag, "Cache-Control": "must-revalidate"}
        page = (lambda rows: islice(rows, skip, None if limit is None else skip + limit))

        if reduce:
            if keys is not None and not (group or group_level is not None):
                raise HTTPError(400, "query_parse_error", "Multi-key fetches for reduce views "
                                "must use group=true")
            entries = view.reductions(start=start, end=end, keys=keys, descending=descending,
                                      inclusive_end=inclusive_end)
            rows, failure = answered(page(view.reduce(
                deadline.watch(entries), group_level if group_level is not None else None,
                group or group_level is not None)), deadline)
            return self.stream(request, Listing({}, "rows", rows, lambda: failure), headers)

        conflicts = get("conflicts", "bool", False)

        def map_rows():
            for key, doc_id, value in deadline.watch(view.rows(
                    start=start, end=end, keys=keys, descending=descending,
                    inclusive_end=inclusive_end, start_docid=start_docid, end_docid=end_docid)):
                row = {"id": doc_id, "key": key, "value": value}
                if include_docs:
                    linked = value.get("_id") if isinstance(value, dict) else None
                    target = linked if isinstance(linked, str) else doc_id
                    try:
                        doc = database[target]
                        if conflicts and doc.meta.conflicts:
                            doc["_conflicts"] = doc.meta.conflicts
                    except (NotFound, StoreError):
                        doc = None
                    row["doc"] = attachments.stubs(doc) if doc is not None else None
                yield row

        head = {"total_rows": state["rows"], "offset": skip}
        rows, failure = answered(page(map_rows()), deadline)
        seq = {"update_seq": str(state["seq"])} if get("update_seq", "bool", False) else {}
        return self.stream(request, Listing(head, "rows", rows, lambda: {**seq, **failure}),
                           headers)

    @staticmethod
    def first_of(get, *names, kind="json"):
        for name in names:
            value = get(name, kind, MISSING)
            if value is not MISSING:
                return value
        return MISSING if kind == "json" else None

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
        return self.respond(request, tasks)
