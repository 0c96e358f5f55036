"""Rendering the admin's pages: Jinja2 templates (escaping every value), the headers
every page carries, and the static files (CSS, JavaScript) served from this package.

Templates autoescape: a document id, a key, a value or an error reason holding HTML
comes out as text. URLs are built with the ``url`` filters, which percent-encode each
path segment. Pages carry a Content-Security-Policy allowing only this server's own
scripts and styles (no inline script runs, even one smuggled past the escaping), and
may not be framed (clickjacking).
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from werkzeug.wrappers import Response

from . import csrf

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Vary": "Accept, Cookie",
}
STATIC_TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8",
                "svg": "image/svg+xml", "txt": "text/plain; charset=utf-8",
                "png": "image/png"}


def db_path(db: str) -> str:
    return "/" + quote(db, safe="")


def doc_path(db: str, docid: str) -> str:
    """A document's path: ``_design/`` and ``_local/`` keep their slash, as CouchDB's do."""
    for prefix in ("_design/", "_local/"):
        if docid.startswith(prefix):
            return f"{db_path(db)}/{prefix}{quote(docid[len(prefix):], safe='')}"
    return f"{db_path(db)}/{quote(docid, safe='')}"


def attachment_path(db: str, docid: str, name: str) -> str:
    return f"{doc_path(db, docid)}/{quote(name, safe='/')}"


def query(base: str, **args: Any) -> str:
    """``base`` with the non-None ``args`` as its query string."""
    pairs = {k: v for k, v in args.items() if v is not None and v != ""}
    return base + ("?" + urlencode(pairs) if pairs else "")


def pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


def compact(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def size(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


@lru_cache(maxsize=None)
def static_file(name: str) -> tuple[bytes, str] | None:
    """A static file's bytes and their hash (its ETag and cache-busting version)."""
    if "/" in name or name.startswith("."):
        return None
    resource = resources.files(__package__).joinpath("static", name)
    if not resource.is_file():
        return None
    data = resource.read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:16]


def static_url(name: str) -> str:
    found = static_file(name)
    return f"/_utils/static/{name}" + (f"?v={found[1]}" if found else "")


def serve_static(request, name: str) -> Response:
    found = static_file(name)
    kind = STATIC_TYPES.get(name.rsplit(".", 1)[-1])
    if found is None or kind is None:
        return Response(b'{"error":"not_found","reason":"missing"}\n', 404,
                        content_type="application/json")
    data, version = found
    response = Response(data, content_type=kind, headers={
        "Cache-Control": "public, max-age=31536000, immutable" if request.args.get("v")
        else "public, max-age=300", "X-Content-Type-Options": "nosniff"})
    response.set_etag(version)
    return response.make_conditional(request)


def make_environment() -> Environment:
    env = Environment(loader=PackageLoader(__package__, "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True, auto_reload=False)
    env.filters.update(pretty=pretty, compact=compact, size=size, u=lambda s: quote(str(s),
                       safe=""))
    env.globals.update(db_path=db_path, doc_path=doc_path, attachment_path=attachment_path,
                       query=query, static=static_url, csrf_field=csrf.FIELD)
    return env


class Renderer:
    """Pages as responses: the template, the user, the CSRF token and the headers."""

    def __init__(self, secret: bytes):
        self.env = make_environment()
        self.secret = secret

    def context(self, request) -> dict:
        cookie = request.cookies.get(csrf.COOKIE)
        fresh = not cookie or len(cookie) != 32
        if fresh:
            cookie = csrf.new_cookie()
        request.environ["settee.csrf_cookie"] = cookie if fresh else None
        user = getattr(request, "user", None)
        return {"user": user, "token": csrf.token_for(self.secret, cookie),
                "here": request.full_path.rstrip("?"), "path": request.path}

    def page(self, request, template: str, status: int = 200, stream: bool = False,
             headers: dict | None = None, **values: Any) -> Response:
        context = self.context(request)
        context.update(values)
        tpl = self.env.get_template(template)
        body = tpl.generate(context) if stream else tpl.render(context)
        response = Response(
            (part.encode() for part in body) if stream else body, status,
            headers={**SECURITY_HEADERS, **(headers or {})},
            content_type="text/html; charset=utf-8", direct_passthrough=stream)
        cookie = request.environ.get("settee.csrf_cookie")
        if cookie:
            response.set_cookie(csrf.COOKIE, cookie, path="/", httponly=True,
                                samesite="Strict")
        return response
