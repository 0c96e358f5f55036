"""Paging a listing (``_all_docs``, a view) by key, never by ``skip``.

A page asks for one row more than it shows: that row's key (and document id, for a
view whose keys repeat) is where the next page starts. The previous page is the same
query run the other way from the page's first row (``before``), one row dropped.
Each page costs its own rows, however deep it is in the listing, and every page is a
plain URL (bookmarks and the back button work).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import bad_request

DEFAULT_SIZE = 100
MAX_SIZE = 10_000
#: The listing parameters a page passes through to the API as they are (JSON values).
PASSED = ("startkey", "endkey", "key", "keys", "startkey_docid", "endkey_docid",
          "descending", "inclusive_end", "include_docs", "reduce", "group", "group_level",
          "update", "stale", "conflicts", "sorted")


@dataclass
class Window:
    rows: list[dict]
    size: int
    next: dict[str, str] | None = None          # the next page's query arguments
    prev: dict[str, str] | None = None
    first: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)   # the listing's other fields


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(text: str, name: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise bad_request(f"{name} must be JSON (a string in double quotes)") from None


def page_size(args) -> int:
    text = args.get("limit") or str(DEFAULT_SIZE)
    if not text.isdigit() or not 1 <= int(text) <= MAX_SIZE:
        raise bad_request(f"limit must be a whole number from 1 to {MAX_SIZE}")
    return int(text)


def identity(row: dict) -> dict[str, str]:
    out = {"startkey": dumps(row.get("key"))}
    if "id" in row and row.get("key") != row.get("id"):
        out["startkey_docid"] = row["id"]         # a plain string, as CouchDB takes it
    return out


def paged(fetch: Callable[[dict], dict], args, prefix: str | None = None) -> Window:
    """One page of the listing ``fetch(query)`` answers, for the browser's ``args``
    (its query string); ``prefix``: only ids (keys) starting with it."""
    size = page_size(args)
    base = {name: args[name] for name in PASSED if args.get(name)}
    keep = {name: args[name] for name in ("limit", "prefix", "descending", "include_docs",
                                          "reduce", "group", "group_level", "endkey",
                                          "inclusive_end") if args.get(name)}
    descending = base.get("descending") == "true"
    if prefix:
        low, high = dumps(prefix), dumps(prefix + "\ufff0")
        start = base.get("startkey")
        if start is None or loads(start, "startkey") < prefix:
            base["startkey"] = high if descending else low
        base["endkey"] = low if descending else high
    if args.get("before"):
        loads(args["before"], "before")
        back = {k: v for k, v in base.items() if k not in ("startkey", "startkey_docid",
                                                            "endkey", "endkey_docid")}
        back["descending"] = "false" if descending else "true"
        back["startkey"] = args["before"]
        if args.get("before_docid"):
            back["startkey_docid"] = args["before_docid"]
        if prefix:
            back["endkey"] = dumps(prefix + "\ufff0") if descending else dumps(prefix)
        back["limit"] = str(size + 2)
        answer = fetch(back)
        rows = answer.get("rows", [])
        mark = (loads(args["before"], "before"), args.get("before_docid") or None)
        while rows and (rows[0].get("key"), rows[0].get("id") if mark[1] is not None
                        else None) == mark:
            rows = rows[1:]
        more = len(rows) > size
        rows = rows[:size][::-1]
        next_args = {"startkey": args["before"], **({"startkey_docid": args["before_docid"]}
                                                    if args.get("before_docid") else {})}
        window = Window(rows, size, next={**keep, **next_args})
        if more and rows:
            window.prev = {**keep, **before_of(rows[0])}
    else:
        answer = fetch({**base, "limit": str(size + 1)})
        rows = answer.get("rows", [])
        window = Window(rows[:size], size)
        if len(rows) > size:
            window.next = {**keep, **identity(rows[size])}
        if (args.get("startkey") or args.get("key")) and rows and not args.get("key"):
            window.prev = {**keep, **before_of(rows[0])}
    window.first = keep
    window.extra = {k: v for k, v in answer.items() if k != "rows"}
    return window


def before_of(row: dict) -> dict[str, str]:
    out = {"before": dumps(row.get("key"))}
    if "id" in row and row.get("key") != row.get("id"):
        out["before_docid"] = row["id"]
    return out
