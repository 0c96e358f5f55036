"""What every endpoint group uses to read a request and answer it (:class:`Http`).

One instance per application: the representation of answers and errors (JSON, YAML or
HTML by ``Accept``), request bodies read within the size limits, the databases a request
opens (leased until its response is done), and the free-space floor for writes. Endpoint
groups receive it, and the other groups or rules they call, when the application is
built (:mod:`.app`); none reaches another through a shared ``self``.
"""
from __future__ import annotations

import re
import shutil
import time
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote

from werkzeug.wrappers import Request, Response

from . import codings
from . import representation as rep
from .conditional import etag
from .errors import HTTPError, bad_request
from .parking import CLOSE
from .reply import Reply

#: A body this large, or of no stated length, is not read to its end after an error
#: answered without reading it (a refused client's upload): the connection is closed.
DRAIN_LIMIT = 64 * 1024
#: Bodies a browser form can send to any site (with no preflight); JSON and YAML it can't.
FORM_TYPES = {"", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}

#: The environ key set once the request's body is inflated (:meth:`Http.data`).
INFLATED = "settee.inflated"

#: The databases the current request uses (:meth:`Http.db`), released when its
#: response is done. Per thread, as each request runs on one.
LEASES: ContextVar[list | None] = ContextVar("settee_leases", default=None)


def release(leases: list) -> None:
    for database in leases:
        database.release()
    leases.clear()


def check_body_type(request: Request) -> None:
    """415 unless a POST's body is JSON or YAML; a design document's PUT may not be one
    of the types a form sends. Other PUTs take any type, as CouchDB's do (curl -d)."""
    mimetype = request.mimetype
    if mimetype == rep.JSON or mimetype.endswith("+json") or mimetype in rep.YAML_BODY_TYPES:
        return
    if request.method == "POST" or (request.method == "PUT" and mimetype in FORM_TYPES
                                    and "/_design/" in request.path):
        raise HTTPError(415, "bad_content_type", "Content-Type must be application/json")


def unread_big_body(request: Request) -> bool:
    if "stream" in request.__dict__:
        return False                        # read (perhaps in part): gunicorn finishes it
    length = request.content_length
    if length is None:
        return "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    return length > DRAIN_LIMIT


_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def location(request, db: str, docid: str) -> str:
    """A document's absolute URL, every id character percent-encoded (no header can be
    split through an id). Built from the environ: werkzeug's ``host_url`` was a tenth
    of a write's CPU."""
    environ = request.environ
    host = environ.get("HTTP_HOST", "")
    if not _HOST.fullmatch(host):
        host = f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    prefix = docid.startswith(("_design/", "_local/"))
    tail = quote(docid, safe="/" if prefix else "")
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}/{quote(db, safe='')}/{tail}"


def content_type(kind: str) -> str:
    return kind + ("; charset=utf-8" if kind != rep.JSON else "")


class SetteeRequest(Request):
    """werkzeug's request, with who sent it (auth.py's user, set before dispatch)."""

    user: Any


class Http:
    """Request bodies, answers, errors and databases, for every endpoint group."""

    def __init__(self, settings, catalog):
        self.settings = settings
        self.catalog = catalog
        self.max_body = settings["server_max_body"]
        self.max_document = settings["server_max_document"]
        self.max_depth = settings["server_max_json_depth"]
        self._disk_checked = (0.0, 0)
        #: The HTML face's error page (:mod:`.admin`), for browsers; None: the plain one.
        self.error_page = None

    # -- answers --------------------------------------------------------------------
    @staticmethod
    def kind(request: Request) -> str:
        return rep.choose(request.environ.get("HTTP_ACCEPT"))

    def respond(self, request: Request, value, status: int = 200, headers=None) -> Reply:
        kind = self.kind(request)
        body = rep.render(value, kind, title=f"Settee {request.path}")
        return Reply(body, status, headers, content_type(kind))

    def stream(self, request: Request, listing: rep.Listing, headers=None) -> Response:
        kind = self.kind(request)
        listing.title = listing.title or f"Settee {request.path}"
        return Response(rep.stream(listing, kind), headers=headers, direct_passthrough=True,
                        content_type=content_type(kind))

    def saved(self, request: Request, db: str, docid: str, doc, status: int) -> Reply:
        """The answer to a document write: its new rev, ETag and Location."""
        headers = {"ETag": etag(doc.meta.rev), "Location": location(request, db, docid)}
        return self.respond(request, {"ok": True, "id": docid, "rev": doc.meta.rev},
                            status, headers)

    def accepted(self, request: Request, docid: str) -> Reply:
        """The answer to a ``batch=ok`` write, as CouchDB's: 202 with the id and no
        revision. (Settee has written it durably all the same.)"""
        return self.respond(request, {"ok": True, "id": docid}, 202)

    def error(self, request: Request, e: HTTPError) -> Response:
        if e.status in (408, 413) or unread_big_body(request):
            request.environ[CLOSE] = True      # not read on to the end of the body after this
        try:
            kind = self.kind(request)
        except HTTPError:           # nothing acceptable: the error itself still goes as JSON
            kind = rep.JSON
        if kind == rep.HTML and self.error_page is not None:
            return self.error_page(request, e)
        body = rep.render(e.body(), kind, title=f"{e.status} {e.error}")
        return Response(body, status=e.status, headers=e.headers, content_type=content_type(kind))

    # -- request bodies -------------------------------------------------------------
    def data(self, request: Request, limit: int | None = None) -> bytes:
        """The request body's bytes: 413 as soon as it passes ``limit`` (``max_body``),
        before reading when its length says so, else when one byte more arrives.

        A body sent compressed (``Content-Encoding``: :mod:`.codings`) is inflated, the
        limit applying to what it inflates to, and kept inflated as the request's data
        (what ``get_data`` and form parsing read from then on)."""
        limit = self.max_body if limit is None else min(limit, self.max_body)
        environ = request.environ
        if environ.get(INFLATED):
            data = request.get_data(cache=True)
            if len(data) > limit:
                raise HTTPError(413, "too_large", f"Request body over {limit} bytes")
            return data
        coding = environ.get("HTTP_CONTENT_ENCODING")
        if coding:
            codings.codings(coding)             # 415 before reading what can't be read
        length = request.content_length
        if length is not None and length > limit:
            raise HTTPError(413, "too_large", f"Request body over {limit} bytes")
        if "stream" not in request.__dict__:            # not opened yet: bound it
            request.max_content_length = limit + 1
        data = request.get_data(cache=True)
        if len(data) > limit:
            raise HTTPError(413, "too_large", f"Request body over {limit} bytes")
        if coding:
            data = codings.inflate(data, coding, limit)
            request._cached_data = data         # werkzeug's cache of the body's bytes
            environ[INFLATED] = True
        return data

    def body(self, request: Request, *, required: bool = True):
        """The request body as a JSON value (JSON or YAML), within the size limits.

        A POST (and a design document's PUT) must say it is JSON or YAML: a browser
        form on another site can send a body as text/plain or form data, never as
        those, so it cannot write through Settee's JSON endpoints (CouchDB's rule)."""
        check_body_type(request)
        data = self.data(request)
        if not data and not required:
            return None
        return rep.parse_body(data, request.mimetype, self.max_depth)

    def json_object(self, request: Request) -> dict:
        value = self.body(request)
        if not isinstance(value, dict):
            raise bad_request("Request body must be a JSON object")
        return value

    def document_body(self, request: Request) -> dict:
        """A request body that is one document: also within the document size limit.
        One with attachments is measured once they are decoded (the write rules'
        ``check_size``), as its base64 would charge them a third more."""
        check_body_type(request)
        data = self.data(request)
        if len(data) <= self.max_document:
            return self.json_object(request)
        # over as sent: only base64 attachments (measured decoded later) may make it fit
        body = self.json_object(request) if b"_attachments" in data else None
        if body is None or "_attachments" not in body:
            raise HTTPError(413, "document_too_large", f"Document over {self.max_document} bytes")
        return body

    # -- databases ------------------------------------------------------------------
    def db(self, name: str):
        """The open database ``name``, leased until the request's response is done (the
        catalog closes only databases nobody uses)."""
        database = self.catalog.get(name)
        leases = LEASES.get()
        if leases is not None:
            leases.append(database.lease())
        return database

    def database_gone(self) -> bool:
        """Whether a database this request uses was deleted (or deleted and made again)
        while it ran: then its failure is the database's absence, not a fault."""
        leases = LEASES.get() or []
        return any(self.catalog.gone(database) for database in leases)

    def check_writable(self) -> None:
        """507 before the disk is full: the free-space floor.

        Far above the floor the check is cached for a second; within ``max_body`` of
        it (a request can write that much) every write checks, so the floor cannot be
        overshot by a second's worth of writes.
        """
        floor = self.settings["storage_free_space_floor"]
        if not floor or self.catalog.in_memory:
            return
        checked_at, free = self._disk_checked
        now = time.monotonic()
        if now - checked_at > 1.0 or free < floor + self.max_body + (64 << 20):
            free = shutil.disk_usage(self.settings["storage_data_dir"]).free
            self._disk_checked = (now, free)
        if free < floor:
            raise HTTPError(507, "insufficient_storage",
                            f"Less than {floor} bytes free on the data volume; writes refused")
