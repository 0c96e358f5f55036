"""The JSON API as the admin's pages use it: in-process calls, for the browser's user.

Every page reads and writes through the same endpoints a client uses (routed and
authorized as the user's own request), so the HTML face shows exactly what the JSON
API answers, and never allows more than it does.
"""
from __future__ import annotations

from typing import Any

import orjson

from .render import db_path, doc_path


class Api:
    """``call`` (the application's) bound to one browser request."""

    def __init__(self, call, request):
        self.call = call
        self.request = request
        self.headers: dict = {}

    def send(self, method: str, path: str, args: dict | None = None, body: Any = None,
             raw: bytes | None = None, content_type: str = "application/json") -> Any:
        data = raw if raw is not None else (b"" if body is None else orjson.dumps(body))
        args = {k: (v if isinstance(v, str) else orjson.dumps(v).decode())
                for k, v in (args or {}).items() if v is not None}
        status, self.headers, out = self.call(self.request, method, path, args, data,
                                              content_type)
        return orjson.loads(out) if out.strip() else None

    def get(self, path: str, **args: Any) -> Any:
        return self.send("GET", path, args)

    def post(self, path: str, body: Any, **args: Any) -> Any:
        return self.send("POST", path, args, body)

    def put(self, path: str, body: Any, **args: Any) -> Any:
        return self.send("PUT", path, args, body)

    def delete(self, path: str, **args: Any) -> Any:
        return self.send("DELETE", path, args)

    # -- the resources the pages use most -------------------------------------------
    def db_info(self, db: str) -> dict:
        return self.get(db_path(db))

    def doc(self, db: str, docid: str, **args: Any) -> dict:
        return self.get(doc_path(db, docid), **args)
