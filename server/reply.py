"""A lean WSGI response for bodies rendered whole: most of Settee's answers.

werkzeug's ``Response`` keeps its headers in a ``Headers`` object, validates and
copies them, and on the way out re-joins ``Location`` with the request URL and
re-encodes it as a URI. For a document read or write that was most of the request's
own CPU (the rest being gunicorn's), so answers whose body is one ``bytes`` object go
out through :class:`Reply` instead: a status, a list of header pairs, a body.

What it keeps of werkzeug's behaviour: ``Content-Length`` on every answer that may have a body, none on ``1xx``/``204``/
``304`` (whose bodies are dropped), no body but the length on ``HEAD``, and cookies
through werkzeug's own :func:`~werkzeug.http.dump_cookie`. Header values must be
text without line breaks; they are made by Settee (revisions, percent-encoded
URLs), never copied from a request, and :meth:`Reply.add` checks the rest.
Streamed answers (``Listing``) still use werkzeug's ``Response``.

Status lines carry the reason phrases RFC 9110 writes (``400 Bad Request``), as
CouchDB sends them; werkzeug's ``Response`` upper-cases its own (``400 BAD REQUEST``),
so the application passes every status line through :func:`status_line` (app.py).
"""
from __future__ import annotations

from werkzeug.http import HTTP_STATUS_CODES, dump_cookie

#: RFC 9110's reason phrases where werkzeug's table says otherwise (older RFCs' names).
RFC_9110 = {413: "Content Too Large", 414: "URI Too Long", 416: "Range Not Satisfiable",
            422: "Unprocessable Content", 511: "Network Authentication Required"}
STATUS_LINES = {code: f"{code} {RFC_9110.get(code, text)}"
                for code, text in HTTP_STATUS_CODES.items()}


def status_line(status: str) -> str:
    """``status`` (``"400 BAD REQUEST"``) with RFC 9110's reason phrase for its code."""
    try:
        return STATUS_LINES.get(int(status[:3]), status)
    except ValueError:
        return status
_NO_BODY = frozenset({204, 304}) | frozenset(range(100, 200))


class Reply:
    """``Reply(body, status, headers, content_type)``: a WSGI application answering once."""

    __slots__ = ("status_code", "headers", "body")

    def __init__(self, body: bytes = b"", status: int = 200, headers: dict | None = None,
                 content_type: str | None = None):
        self.status_code = status
        self.body = body
        pairs = list(headers.items()) if headers else []
        if content_type is not None and status not in _NO_BODY:
            pairs.append(("Content-Type", content_type))
        self.headers = pairs

    def add(self, headers: dict) -> None:
        """Add headers (CORS, errors' extras): values checked for line breaks."""
        for name, value in headers.items():
            value = str(value)
            if "\n" in value or "\r" in value:
                raise ValueError(f"header {name} holds a line break")
            self.headers.append((name, value))

    def set_cookie(self, key: str, value: str = "", **options) -> None:
        self.headers.append(("Set-Cookie", dump_cookie(key, value, **options)))

    def delete_cookie(self, key: str, path: str = "/", **options) -> None:
        self.set_cookie(key, "", max_age=0, expires=0, path=path, **options)

    def __call__(self, environ, start_response):
        status = self.status_code
        headers = self.headers
        body = self.body
        if status in _NO_BODY:
            body = b""
        else:
            headers = [*headers, ("Content-Length", str(len(body)))]
            if environ.get("REQUEST_METHOD") == "HEAD":
                body = b""
        start_response(STATUS_LINES.get(status) or f"{status} Unknown", headers)
        return [body]
