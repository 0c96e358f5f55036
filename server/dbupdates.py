"""``GET /_db_updates``: which databases were created, updated and deleted, as a feed.

Read from the catalog's record of database events (``settee.store``'s
``dbupdates``): each row is ``{"db_name", "type", "seq"}``, each database's latest
event of each type once. The feeds are ``_changes``' (:mod:`.changes`): ``normal``
answers at once, ``longpoll`` at the first event after ``since`` (or at
``timeout``), ``continuous`` sends a line per event until ``timeout`` passes without
one, then ``{"last_seq"}``, and ``eventsource`` sends events as ``data:``/``id:``
blocks. ``heartbeat`` (ms) sends a newline (eventsource: a heartbeat event) while
nothing happens. A waiting feed parks without holding a thread where the server
offers it (:mod:`.parking`). Server admins only, as in CouchDB.

"updated" events are written within a tenth of a second of the write that makes
them; the feed first writes those of its own process, so a client sees its own
writes at once.
"""
from __future__ import annotations

import time

import orjson
from werkzeug.wrappers import Response

from .changes import DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, ChangesEndpoints
from .params import Params
from .parking import PARK, Park, wait_in_place
from .representation import Listing
from .seqs import format_seq, parse_since

FEEDS = ("normal", "longpoll", "continuous", "eventsource")


class DbUpdatesEndpoints:
    """``/_db_updates``: normal, longpoll, continuous and eventsource feeds."""

    def __init__(self, http):
        self.http = http

    def on_db_updates(self, request):
        record = self.http.catalog.updates
        record.flush()
        p = Params(request.args)
        feed = p.choice("feed", FEEDS, "normal")
        since = parse_since(p.text("since", request.headers.get("Last-Event-ID")),
                            record.last_seq())
        limit = p.int("limit", None, minimum=0)
        descending = p.bool("descending")
        timeout = p.int("timeout", DEFAULT_TIMEOUT_MS, maximum=MAX_TIMEOUT_MS) / 1000
        heartbeat = ChangesEndpoints.heartbeat(p)
        parking = bool(request.environ.get(PARK))

        def row(event) -> dict:
            return {"db_name": event.db_name, "type": event.type,
                    "seq": format_seq(record, event.seq)}

        def events(after: int, count: int | None):
            if count == 0:
                return []
            out = []
            for event in record.since(after, descending=descending):
                out.append(event)
                if count is not None and len(out) >= count:
                    break
            return out

        def wait(after: int, deadline: float):
            """Until an event after ``after`` or ``deadline``; yields heartbeats, and
            parks where the server can. True when the server cut the wait short."""
            next_beat = time.monotonic() + heartbeat if heartbeat else None
            while record.last_seq() <= after:
                now = time.monotonic()
                if now >= deadline:
                    return False
                if next_beat is not None and now >= next_beat:
                    yield (b"event: heartbeat\ndata: \n\n" if feed == "eventsource"
                           else b"\n")
                    next_beat = now + (heartbeat or 0)
                park = Park(record, record.last_seq, after, min(deadline, next_beat or deadline))
                if parking:
                    yield park
                    if park.cut:
                        return True
                else:
                    wait_in_place(park)
            return False

        if feed == "normal" or descending:
            found = events(since, limit)
            last = found[-1].seq if found and not descending else record.last_seq()
            return self.http.stream(request, Listing(
                {}, "results", (row(e) for e in found),
                lambda: {"last_seq": format_seq(record, last)}))

        def longpoll():
            found = events(since, limit)
            if not found and limit != 0:
                yield from wait(since, time.monotonic() + timeout)
                found = events(since, limit)
            last = found[-1].seq if found else since
            yield orjson.dumps({"results": [row(e) for e in found],
                                "last_seq": format_seq(record, last)}) + b"\n"

        def continuous():
            sent, last = 0, since
            deadline = time.monotonic() + timeout
            while limit is None or sent < limit:
                for event in events(last, None if limit is None else limit - sent):
                    last, sent = event.seq, sent + 1
                    data = orjson.dumps(row(event))
                    if feed == "eventsource":
                        yield (b"data: " + data + b"\nid: " +
                               orjson.dumps(format_seq(record, last)) + b"\n\n")
                    else:
                        yield data + b"\n"
                    deadline = time.monotonic() + timeout
                if (limit is not None and sent >= limit) or time.monotonic() >= deadline:
                    break
                if (yield from wait(last, deadline)):
                    break
            if feed == "continuous":
                yield orjson.dumps({"last_seq": format_seq(record, last)}) + b"\n"

        if feed == "longpoll":
            return Response(longpoll(), content_type="application/json",
                            direct_passthrough=True)
        return Response(continuous(), direct_passthrough=True,
                        content_type="text/event-stream" if feed == "eventsource"
                        else "application/json",
                        headers={"Cache-Control": "no-cache"} if feed == "eventsource"
                        else None)
