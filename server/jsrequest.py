"""The request object a design document's functions receive (``req``), as CouchDB
builds it (chttpd_external's ``json_req_obj``): ``info``, ``uuid``, ``id``,
``method``, ``requested_path``, ``path``, ``raw_path``, ``query`` (``key``,
``startkey``, ``endkey`` and ``descending`` decoded from JSON), ``headers``, ``body``
(the text, ``"undefined"`` without one), ``peer``, ``form``, ``cookie``, ``userCtx``
and ``secObj``. As CouchDB scrubs it by default (``scrub_json_request``), the
credentials stay out: no ``Authorization`` or ``Cookie`` header, ``cookie`` empty."""
from __future__ import annotations

from urllib.parse import parse_qsl, unquote

import orjson

from settee.store import new_id

#: The path a request had before a rewrite sent it on (the environ's key).
REQUESTED_PATH = "settee.requested_path"
JSON_QUERY_KEYS = ("key", "startkey", "endkey", "descending")
SCRUBBED = {"authorization", "cookie"}


def raw_path(request) -> str:
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.full_path
    return raw.split("#", 1)[0]


def segments(path: str) -> list[str]:
    return [unquote(part) for part in path.split("?", 1)[0].split("/") if part]


def query_object(request) -> dict:
    out: dict = {}
    for name, value in request.args.items(multi=False):
        if name in JSON_QUERY_KEYS:
            try:
                out[name] = orjson.loads(value)
                continue
            except orjson.JSONDecodeError:
                pass
        out[name] = value
    return out


def user_ctx(request, database) -> dict:
    return {"db": database.name, **request.user.ctx()}


def request_object(request, database, security: dict, docid: str | None = None,
                   body: bytes | None = None) -> dict:
    """``req`` for a function run for ``request`` over ``database`` (``docid``: the
    document the URL names, if any; ``body``: the request body, read by the caller
    within its limits)."""
    path = raw_path(request)
    text = body.decode("utf-8", "replace") if body else "undefined"
    form = {}
    if body and request.mimetype == "application/x-www-form-urlencoded":
        form = dict(parse_qsl(text, keep_blank_values=True))
    info = database.info()
    return {
        "info": {"db_name": database.name, "doc_count": info["doc_count"],
                 "doc_del_count": info["doc_del_count"],
                 "update_seq": str(info["update_seq"])},
        "uuid": new_id(),
        "id": docid,
        "method": request.method,
        "requested_path": segments(request.environ.get(REQUESTED_PATH, path)),
        "path": segments(path),
        "raw_path": path,
        "query": query_object(request),
        "headers": {k: v for k, v in request.headers.items() if k.lower() not in SCRUBBED},
        "body": text,
        "peer": request.remote_addr,
        "form": form,
        "cookie": {},
        "userCtx": user_ctx(request, database),
        "secObj": security,
    }
