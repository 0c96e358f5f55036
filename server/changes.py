"""The changes feed: ``GET|POST /{db}/_changes`` with feeds ``normal``, ``longpoll``,
``continuous`` and ``eventsource``.

A feed that waits learns of commits made by any worker process by polling the
database's sequence number (one small read every 20 ms, ``parking.POLL``; the read is
a B-tree lookup on SQLite). Under Settee's worker a waiting feed holds no thread: it
yields a :class:`~.parking.Park` and the worker polls for all its feeds at once
(:mod:`.parking`). Elsewhere it waits in place, and when the backend offers
``wait_for_change(mark, timeout)`` (PostgreSQL: LISTEN/NOTIFY, so commits on other
nodes too) it waits on that between reads of the sequence. Either way it honours
``timeout`` and ``heartbeat``, so no feed ever hangs a client: a longpoll answers at
the first change or at the timeout, a continuous feed ends after ``timeout`` ms
without changes (CouchDB's behaviour).

Filters (``filter=``) take changes in batches of :data:`FILTER_BATCH`: a design
document's JavaScript filter (``filter=ddoc/name``, ``function (doc, req)``) and a
JavaScript view's map (``filter=_view&view=ddoc/name``) get a batch in one V8 call.
A filter that throws for a document, like a map, passes it over (and is logged): the
batch is retried one document at a time, as CouchDB retries a batch that failed.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

import orjson
from werkzeug.wrappers import Response

from settee.store import NotFound, StoreError
from settee.views import couchapp, definitions
from settee.views.javascript import JSLimitError
from settee.views.selector import compile_selector

from . import attachments
from .errors import HTTPError, bad_request
from .jsrequest import request_object
from .params import Params
from .parking import PARK, Park, wait_in_place
from .representation import JSON, Listing, stream
from .seqs import format_seq, parse_since

log = logging.getLogger("settee.server")

DEFAULT_TIMEOUT_MS = 60_000
MAX_TIMEOUT_MS = 600_000
FILTER_BATCH = 256      # changes a filter takes at once (one call into V8 per batch)

#: A filter: the changes of a batch that pass, in order.
Filter = Callable[[list], list]


def filtered(changes: Iterable, accept: Filter | None, seen: dict | None = None) -> Iterator:
    """``changes`` that ``accept`` passes, read and filtered FILTER_BATCH at a time;
    ``seen["seq"]`` follows the last change read, passed or not."""
    if accept is None:
        for change in changes:
            if seen is not None:
                seen["seq"] = change.seq
            yield change
        return
    chunk: list = []
    for change in changes:
        if seen is not None:
            seen["seq"] = change.seq
        chunk.append(change)
        if len(chunk) >= FILTER_BATCH:
            yield from accept(chunk)
            chunk = []
    if chunk:
        yield from accept(chunk)


def each(predicate) -> Filter:
    """A filter of a predicate on one change."""
    return lambda chunk: [c for c in chunk if predicate(c)]


class ChangesEndpoints:
    """``/{db}/_changes``: normal, longpoll, continuous and eventsource feeds."""

    def __init__(self, http):
        self.http = http

    def on_changes(self, request, db):
        database = self.http.db(db)
        p = Params(request.args)
        body = self.http.json_object(request) if request.method == "POST" and request.content_length else {}
        feed = p.choice("feed", ("normal", "longpoll", "continuous", "eventsource"), "normal")
        since_text = p.text("since", request.headers.get("Last-Event-ID"))
        if "since" in body:
            since_text = body["since"]
        since = parse_since(since_text, database.update_seq())
        limit = p.int("limit", None, minimum=0)
        descending = p.bool("descending")
        include_docs = p.bool("include_docs")
        conflicts = p.bool("conflicts")
        full = p.bool("attachments")
        style = p.choice("style", ("main_only", "all_docs"), "main_only")
        timeout = p.int("timeout", DEFAULT_TIMEOUT_MS, maximum=MAX_TIMEOUT_MS) / 1000
        heartbeat = self.heartbeat(p)
        accept = self.change_filter(request, p, body, database)

        def entry(change):
            row = {"seq": format_seq(database, change.seq), "id": change.id, "changes": [{"rev": change.rev}]}
            if change.deleted:
                row["deleted"] = True
            if style == "all_docs" and change.others is not None:    # deleted ones too
                row["changes"] += [{"rev": rev} for rev in change.others]
            if include_docs or conflicts or (style == "all_docs" and change.others is None):
                try:
                    doc = database[(change.id, change.rev)]
                except NotFound:
                    doc = None
                if doc is not None and style == "all_docs" and change.others is None \
                        and doc.meta.tree is not None:       # an entry from before others
                    row["changes"] += [{"rev": leaf.rev} for leaf in doc.meta.tree.leaves()
                                       if leaf.rev != change.rev]
                if include_docs:
                    if doc is not None and conflicts and doc.meta.conflicts:
                        doc["_conflicts"] = doc.meta.conflicts
                    row["doc"] = attachments.stubs(doc, full) if doc is not None else None
            return row

        seen: dict = {"seq": None}          # the last change read, filtered out or not

        def batch(after: int):
            rows = filtered(database.changes(after, descending=descending), accept, seen)
            return list(islice(rows, limit)) if limit is not None else rows

        parking = bool(request.environ.get(PARK))

        current = database.update_seq

        def wait(after: int, deadline: float):
            """Until the sequence passes ``after`` or ``deadline``: yields heartbeats, and
            where the server parks waiting responses (parking.py), a :class:`Park`.
            Returns True when the server cut the wait short (it is stopping)."""
            next_beat = time.monotonic() + heartbeat if heartbeat else None
            waiter = database.change_waiter() if not parking else None
            while current() <= after:
                now = time.monotonic()
                if now >= deadline:
                    return
                if heartbeat and next_beat is not None and now >= next_beat:
                    yield b"\n"
                    next_beat = now + heartbeat
                park = Park(database, current, after, min(deadline, next_beat or deadline))
                if parking:
                    yield park
                    if park.cut:            # the server is stopping: end as at the timeout
                        return True
                else:
                    wait_in_place(park, waiter)

        if feed == "normal" or descending:
            return self.normal_feed(request, database, batch, entry, since, descending,
                                    seen, limit)
        if feed == "longpoll":
            return Response(self.longpoll(database, batch, entry, since, wait, timeout, seen,
                                          limit),
                            content_type="application/json", direct_passthrough=True)
        return Response(self.continuous(database, batch, entry, since, wait, timeout, limit,
                                        eventsource=feed == "eventsource"),
                        content_type="text/event-stream" if feed == "eventsource"
                        else "application/json", direct_passthrough=True)

    @staticmethod
    def heartbeat(p: Params) -> float | None:
        value = p.text("heartbeat")
        if value is None or value == "false":
            return None
        if value == "true":
            return 60.0
        try:
            ms = int(value)
        except ValueError:
            raise bad_request(f"Invalid heartbeat {value!r}") from None
        if ms <= 0:
            raise bad_request("heartbeat must be positive")
        return max(ms, 100) / 1000

    def change_filter(self, request, p: Params, body: dict, database) -> Filter | None:
        name = p.text("filter")
        if not name:
            return None
        if name == "_doc_ids":
            ids = body.get("doc_ids", p.json("doc_ids"))
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise bad_request("filter=_doc_ids needs doc_ids, a JSON array of ids")
            wanted = set(ids)
            return each(lambda change: change.id in wanted)
        if name == "_design":
            return each(lambda change: change.id.startswith("_design/"))
        if name == "_selector":
            if "selector" not in body:
                raise bad_request("filter=_selector needs a POST body with a `selector`")
            match = compile_selector(body["selector"])
            return each(self.doc_filter(database, match))
        if name == "_view":
            return self.view_filter(p, database)
        ddoc, _, fname = name.partition("/")
        if name.startswith("_") or not ddoc or not fname:
            raise HTTPError(404, "not_found", f"filter {name!r} does not exist; Settee offers "
                            "_doc_ids, _selector, _view, _design and ddoc/name")
        return self.design_filter(request, database, ddoc, fname)

    def view_filter(self, p: Params, database) -> Filter:
        """``filter=_view``: the changes whose document the view's map emits for."""
        ref = p.text("view") or ""
        ddoc, _, view = ref.partition("/")
        if not ddoc or not view:
            raise bad_request("filter=_view needs view=ddoc/name")
        mapper, _ = definitions.design_view(database, ddoc, view).compile(self.http.settings)
        many = getattr(mapper, "map_many", None)
        if many is None:                # Python: one document at a time
            return each(self.doc_filter(database, lambda doc: any(True for _ in mapper(doc) or ())))

        def accept(chunk: list) -> list:
            live = [(c, self.current(database, c)) for c in chunk if not c.deleted]
            live = [(c, doc) for c, doc in live if doc is not None]
            rows, failed = many([doc for _, doc in live])
            skipped = {i for i, _ in failed}
            return [c for i, ((c, _), emitted) in enumerate(zip(live, rows))
                    if emitted and i not in skipped]
        return accept

    def design_filter(self, request, database, ddoc: str, fname: str) -> Filter:
        """``filter=ddoc/name``: the design document's ``filters.name``, ``function (doc,
        req)``, over batches of changed documents (deletions as ``_deleted`` stubs)."""
        doc = database.get(f"_design/{ddoc}")
        if doc is None:
            raise HTTPError(404, "not_found", f"missing design document _design/{ddoc}")
        functions = couchapp.functions_of(doc, self.http.settings)
        functions.handle("filters", fname)          # 404 now if there is none
        data = self.http.data(request) if request.method == "POST" else None
        req = request_object(request, database, database.security(), body=data)

        def at_change(change) -> dict | None:
            if change.deleted:
                return {"_id": change.id, "_rev": change.rev, "_deleted": True}
            return self.current(database, change)

        def accept(chunk: list) -> list:
            docs = [(c, d) for c in chunk if (d := at_change(c)) is not None]
            try:
                passes = functions.filter(fname, [d for _, d in docs], req)
            except JSLimitError:
                raise
            except StoreError:          # one threw: which? one at a time, as CouchDB retries
                passes = [one(d) for _, d in docs]
            return [c for (c, _), ok in zip(docs, passes) if ok]

        def one(doc: dict) -> bool:
            try:
                return functions.filter(fname, [doc], req)[0]
            except JSLimitError:
                raise
            except StoreError as e:
                log.info("filter %s/%s threw for %s: %s", ddoc, fname, doc.get("_id"), e)
                return False
        return accept

    @staticmethod
    def current(database, change) -> dict | None:
        """The changed document at the change's revision (None if gone since)."""
        try:
            return database[(change.id, change.rev)]
        except StoreError:
            return None

    @staticmethod
    def doc_filter(database, predicate):
        """A predicate on the changed document's current body (deletions never match)."""
        def accept(change):
            if change.deleted:
                return False
            try:
                return bool(predicate(database[change.id]))
            except StoreError:
                return False
            except Exception:           # user code in a view's map: no match
                return False
        return accept

    def normal_feed(self, request, database, batch, entry, since, descending, seen, limit):
        state = {"seq": since, "rows": 0}

        def results():
            for change in batch(since):
                state["seq"] = change.seq
                state["rows"] += 1
                yield entry(change)

        def tail():
            last = state["seq"]
            if not descending and (limit is None or state["rows"] < limit):
                # Read to the end: a filter's last_seq is the last change read, passed
                # or not (CouchDB's), so a filtered reader does not read them again.
                last = max(last, seen["seq"] or 0)
            return {"last_seq": format_seq(database, last), "pending": 0}
        return self.http.stream(request, Listing({}, "results", results(), tail))

    @staticmethod
    def longpoll(database, batch, entry, since, wait, timeout, seen, limit):
        deadline = time.monotonic() + timeout
        rows = list(batch(since))
        if not rows:
            yield from wait(since, deadline)
            rows = list(batch(since))
        last = rows[-1].seq if rows else since
        if limit is None or len(rows) < limit:         # read to the end, as normal_feed
            last = max(last, seen["seq"] or 0)
        yield b"".join(stream(Listing({}, "results", [entry(c) for c in rows], lambda: {
            "last_seq": format_seq(database, last), "pending": 0}), JSON))

    @staticmethod
    def continuous(database, batch, entry, since, wait, timeout, limit, eventsource=False):
        sent, last = 0, since
        deadline = time.monotonic() + timeout
        while True:
            for change in batch(last):
                row = entry(change)
                last = change.seq
                data = orjson.dumps(row)
                yield (b"data: " + data + b"\nid: " + format_seq(database, last).encode()
                       + b"\n\n"
                       if eventsource else data + b"\n")
                sent += 1
                deadline = time.monotonic() + timeout
                if limit is not None and sent >= limit:
                    break
            if (limit is not None and sent >= limit) or time.monotonic() >= deadline:
                break
            if (yield from wait(last, deadline)):      # cut short: the server stops
                break
        if not eventsource:
            yield orjson.dumps({"last_seq": format_seq(database, last), "pending": 0}) + b"\n"
