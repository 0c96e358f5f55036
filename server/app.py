"""The WSGI application: CouchDB's HTTP API over Settee's databases.

One werkzeug :class:`Map` of named endpoints, each dispatched to an ``on_<endpoint>``
method (server and database endpoints here, documents in :mod:`.documents`, bulk
reads and writes in :mod:`.bulk`, the changes feed in :mod:`.changes`). Store errors
become HTTP errors in one table (:mod:`.errors`); representations are chosen in one
place (:mod:`.representation`). ``create_app(settings)`` builds the application;
gunicorn imports ``settee.server.wsgi:application``.

Paths are matched segment by segment on the *raw* request path, so that ``%2F``
inside a database name or document id (``couchdb-python%2F12``, ``_design%2Fname``)
stays inside its segment instead of splitting it.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from contextvars import ContextVar
from functools import partial
from urllib.parse import unquote

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import ClosingIterator

from settee.store import (
    Catalog,
    ConfigurationError,
    DatabaseExists,
    DatabaseNotFound,
    StoreError,
    new_id,
)
from settee.views.definitions import load_modules

from . import representation as rep
from .attachments import AttachmentEndpoints, document_size
from .auth import USERS_DB, Authenticator, check_security
from .bulk import BulkEndpoints
from .changes import ChangesEndpoints
from .documents import DocumentEndpoints
from .errors import HTTPError, bad_request, from_store, public_reason
from .mango import MangoEndpoints
from .metrics import MetricsEndpoints, observe
from .openapi import OpenAPIEndpoints
from .params import Params
from .parking import CLOSE
from .replication import ReplicationEndpoints
from .reply import Reply
from .views import ViewEndpoints

log = logging.getLogger("settee.server")
VERSION = "0.1.0"
SLASH = "\x00"   # stands for an encoded "/" inside one path segment while routing
DOCUMENT_METHODS = {"GET", "HEAD", "PUT", "DELETE", "COPY"}
DATABASE_METHODS = {"GET", "HEAD", "PUT", "DELETE", "POST"}
PUBLIC_ENDPOINTS = {"root", "up", "uuids", "session", "openapi"}
SERVER_ADMIN_ENDPOINTS = {"all_dbs", "active_tasks", "metrics"}
DB_ADMIN_ENDPOINTS = {"compact", "index_drop"}
DB_ADMIN_WRITES = {"security", "revs_limit", "design_doc", "index"}
SERVER_ENDPOINTS = {"_all_dbs", "_uuids", "_up", "_active_tasks", "_session", "_utils",
                    "_node", "_config", "_replicate", "_scheduler", "_membership",
                    "_cluster_setup", "_dbs_info", "_stats", "_metrics", "_openapi.json"}


#: What reading a request body raises when it stalls (the server's socket time limit:
#: a Python socket timeout, or the kernel's SO_RCVTIMEO as Settee's worker sets it).
STALLED = (TimeoutError, BlockingIOError)

#: Largest body of a POST /_session (a name and a password), which anyone may send.
SESSION_MAX_BODY = 64 * 1024
#: A body this large, or of no stated length, is not read to its end after an error
#: answered without reading it (a refused client's upload): the connection is closed.
DRAIN_LIMIT = 64 * 1024
#: Bodies a browser form can send to any site (with no preflight); JSON and YAML it can't.
FORM_TYPES = {"", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}


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


#: The databases the current request uses (:meth:`Settee.db`), released when its
#: response is done. Per thread, as each request runs on one.
LEASES: ContextVar[list | None] = ContextVar("settee_leases", default=None)


def release(leases: list) -> None:
    for database in leases:
        database.release()
    leases.clear()


def databases_kept_open(settings) -> int:
    """``storage_max_dbs_open``, lowered to what the open file limit allows. A SQLite
    database holds three files (data, log, shared memory) for each connection: one
    per thread that reads it, its writer and its checkpointer; and every client
    connection is a file too (``server_max_connections``)."""
    import resource
    wanted = settings["storage_max_dbs_open"]
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return wanted
    per_database = 3 * (settings["server_threads"] + 3)
    allowed = max(8, (soft - settings["server_max_connections"] - 64) // per_database)
    if allowed < wanted:
        log.info("keeping %d databases open, not %d (storage_max_dbs_open): the open file "
                 "limit is %d", allowed, wanted, soft)
    return min(wanted, allowed)


class SegmentConverter(BaseConverter):
    """One path segment; an encoded ``/`` inside it comes back as ``/``."""

    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        return value.replace(SLASH, "/")


class RestConverter(SegmentConverter):
    """The rest of the path, slashes included (attachment names may contain them)."""

    regex = ".+"
    part_isolating = False


def routing_path(environ) -> str:
    """The request path with each segment decoded and inner slashes kept apart."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        raw = raw.split("?", 1)[0].split("#", 1)[0]
        if raw.startswith(("http://", "https://")):      # absolute-form request target
            raw = "/" + raw.split("/", 3)[3] if raw.count("/") >= 3 else "/"
        segments = [unquote(s, errors="strict") for s in raw.split("/")]
    else:
        segments = environ.get("PATH_INFO", "/").encode("latin-1").decode(
            "utf-8", "strict").split("/")
    if any(SLASH in s for s in segments):     # else a %00 would come out as a "/"
        raise bad_request("The request path holds a NUL character (%00)")
    return "/".join(s.replace("/", SLASH) for s in segments)


def endpoints() -> Map:
    r = Rule
    db = "/<seg:db>"
    return Map([
        r("/", endpoint="root", methods=["GET"]),
        r("/_all_dbs", endpoint="all_dbs", methods=["GET"]),
        r("/_uuids", endpoint="uuids", methods=["GET"]),
        r("/_up", endpoint="up", methods=["GET"]),
        r("/_active_tasks", endpoint="active_tasks", methods=["GET"]),
        r("/_session", endpoint="session", methods=["GET", "POST", "DELETE"]),
        r("/_openapi.json", endpoint="openapi", methods=["GET"]),
        r("/_replicate", endpoint="replicate", methods=["POST"]),
        r("/_scheduler/jobs", endpoint="scheduler_jobs", methods=["GET"]),
        r("/_scheduler/jobs/<seg:jobid>", endpoint="scheduler_job", methods=["GET"]),
        r("/_scheduler/docs", endpoint="scheduler_docs", methods=["GET"]),
        r("/_scheduler/docs/<seg:repdb>", endpoint="scheduler_docs", methods=["GET"]),
        r("/_scheduler/docs/<seg:repdb>/<seg:docid>", endpoint="scheduler_doc", methods=["GET"]),
        r("/_node/_local/_prometheus", endpoint="metrics", methods=["GET"]),
        r("/_metrics", endpoint="metrics", methods=["GET"]),
        r(db, endpoint="database", methods=["GET", "PUT", "DELETE", "POST"]),
        r(db + "/", endpoint="database", methods=["GET", "PUT", "DELETE", "POST"]),
        r(db + "/_all_docs", endpoint="all_docs", methods=["GET", "POST"]),
        r(db + "/_design_docs", endpoint="design_docs", methods=["GET", "POST"]),
        r(db + "/_bulk_docs", endpoint="bulk_docs", methods=["POST"]),
        r(db + "/_bulk_get", endpoint="bulk_get", methods=["POST"]),
        r(db + "/_revs_diff", endpoint="revs_diff", methods=["POST"]),
        r(db + "/_missing_revs", endpoint="missing_revs", methods=["POST"]),
        r(db + "/_changes", endpoint="changes", methods=["GET", "POST"]),
        r(db + "/_compact", endpoint="compact", methods=["POST"]),
        r(db + "/_ensure_full_commit", endpoint="ensure_full_commit", methods=["POST"]),
        r(db + "/_revs_limit", endpoint="revs_limit", methods=["GET", "PUT"]),
        r(db + "/_security", endpoint="security", methods=["GET", "PUT"]),
        r(db + "/_design/<seg:ddoc>/_view/<seg:view>", endpoint="design_view",
          methods=["GET", "POST"]),
        r(db + "/_view/<seg:view>", endpoint="module_view", methods=["GET", "POST"]),
        r(db + "/_find", endpoint="find", methods=["POST"]),
        r(db + "/_explain", endpoint="explain", methods=["POST"]),
        r(db + "/_index", endpoint="index", methods=["GET", "POST"]),
        r(db + "/_index/<seg:ddoc>/json/<seg:name>", endpoint="index_drop", methods=["DELETE"]),
        r(db + "/_index/_design/<seg:ddoc>/json/<seg:name>", endpoint="index_drop",
          methods=["DELETE"]),
        r(db + "/_design/<seg:ddoc>", endpoint="design_doc",
          methods=["GET", "PUT", "DELETE", "COPY"]),
        r(db + "/_local/<seg:docid>", endpoint="local_doc", methods=["GET", "PUT", "DELETE"]),
        r(db + "/<seg:docid>", endpoint="document", methods=["GET", "PUT", "DELETE", "COPY"]),
        r(db + "/<seg:docid>/<rest:name>", endpoint="attachment",
          methods=["GET", "PUT", "DELETE"]),
        r(db + "/_design/<seg:ddoc>/<rest:name>", endpoint="design_attachment",
          methods=["GET", "PUT", "DELETE"]),
    ], converters={"seg": SegmentConverter, "rest": RestConverter}, strict_slashes=False,
       merge_slashes=False)


class Settee(AttachmentEndpoints, DocumentEndpoints, BulkEndpoints, ChangesEndpoints, ViewEndpoints,
             MangoEndpoints, MetricsEndpoints, OpenAPIEndpoints):
    """The application: one catalog of databases, one URL map."""

    def __init__(self, settings):
        self.settings = settings
        self.catalog = Catalog(settings, max_open=databases_kept_open(settings))
        self.auth = Authenticator(settings, self.catalog)
        if not self.auth.party and not self.catalog.exists(USERS_DB):
            try:                        # where users live; several workers may race here
                self.catalog.create(USERS_DB)
            except DatabaseExists:
                pass
        load_modules(settings["views_modules"])
        self.url_map = endpoints()
        self.max_body = settings["server_max_body"]
        self.max_document = settings["server_max_document"]
        self.max_depth = settings["server_max_json_depth"]
        self._disk_checked = (0.0, 0)
        self.replication = ReplicationEndpoints(self, self.auth, self.change_filter,
                                                self.design_saved)

    # -- WSGI ---------------------------------------------------------------------
    def __call__(self, environ, start_response):
        # Not kept in the environ (werkzeug's default): request and environ would
        # refer to each other, a cycle per request for the garbage collector.
        request = Request(environ, populate_request=False)
        # One byte past the limit: werkzeug stops a body without a length (chunked) there
        # without a word, and body() tells 413 from a body that fits.
        request.max_content_length = self.max_body + 1
        cors = self.cors_headers(request)
        if cors and request.method == "OPTIONS" and \
                "Access-Control-Request-Method" in request.headers:
            response = self.preflight(request, cors)
        else:
            started = time.perf_counter()
            leases: list = []
            token = LEASES.set(leases)
            try:
                response = self.dispatch(request)
            finally:
                LEASES.reset(token)
            if cors:
                if isinstance(response, Reply):
                    response.add(cors)
                else:
                    response.headers.update(cors)
            observe(request.method, response.status_code, time.perf_counter() - started)
            if leases:
                if isinstance(response, Reply) or not response.is_streamed:
                    release(leases)
                else:                   # the databases stay in use until the stream ends
                    return ClosingIterator(response(environ, start_response),
                                           partial(release, leases))
        return response(environ, start_response)

    # -- CORS (for browser clients such as PouchDB) -------------------------------------
    def cors_headers(self, request: Request) -> dict:
        origin = request.headers.get("Origin")
        origins = self.settings["cors_origins"]
        if not origin or not origins or ("*" not in origins and origin not in origins):
            return {}
        credentials = self.settings["cors_credentials"]
        headers = {"Access-Control-Allow-Origin": origin if credentials or "*" not in origins
                   else "*",
                   "Access-Control-Expose-Headers": "Cache-Control, Content-Type, ETag, "
                                                    "Location, Last-Modified",
                   "Vary": "Origin"}
        if credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return headers

    @staticmethod
    def preflight(request: Request, cors: dict) -> Response:
        headers = dict(cors)
        headers["Access-Control-Allow-Methods"] = "GET, HEAD, POST, PUT, DELETE, COPY, OPTIONS"
        headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", "Accept, Authorization, Content-Type, Origin")
        headers["Access-Control-Max-Age"] = "600"
        response = Response(status=204, headers=headers)
        del response.headers["Content-Type"]          # a 204 has no body, so no type
        return response

    def dispatch(self, request: Request) -> Response:
        try:
            try:
                path = routing_path(request.environ)
            except UnicodeDecodeError:
                raise bad_request("The request path is not valid UTF-8") from None
            endpoint, values = self.route(request, path)
            request.user = self.auth.authenticate(request)
            self.authorize(request, endpoint, values)
            handler = getattr(self, f"on_{endpoint}", None) or getattr(
                self.replication, f"on_{endpoint}")       # an endpoint group of its own
            return handler(request, **values)
        except HTTPError as e:
            return self.error(request, e)
        except ConfigurationError as e:   # a setting met at first use (a schema, a key)
            log.error("configuration error on %s %s: %s", request.method, request.path, e)
            return self.error(request, HTTPError(500, e.error, public_reason(e)))
        except StoreError as e:
            if from_store(e).status >= 500:
                log.exception("store error on %s %s", request.method, request.path)
            return self.error(request, from_store(e))
        except MethodNotAllowed as e:
            allowed = ", ".join(e.valid_methods or [])
            return self.error(request, HTTPError(405, "method_not_allowed",
                                                 f"Only {allowed} allowed", {"Allow": allowed}))
        except NotFound:
            return self.error(request, HTTPError(404, "not_found", "missing"))
        except HTTPException as e:        # werkzeug's own: 413, 400 from form parsing, ...
            if isinstance(e.__context__, STALLED):          # werkzeug's ClientDisconnected
                return self.stalled(request)
            name = {413: "too_large"}.get(e.code, "bad_request")
            return self.error(request, HTTPError(e.code or 400, name, e.description or name))
        except STALLED:
            return self.stalled(request)
        except Exception:                 # a bug: say so in JSON, log the traceback
            log.exception("unhandled error on %s %s", request.method, request.path)
            return self.error(request, HTTPError(500, "unknown_error",
                                                 "internal server error (logged)"))

    def stalled(self, request: Request) -> Response:
        """The request's body stopped arriving (``server_io_timeout``): 408, and the
        connection is closed (what is left of the body will not be read)."""
        request.environ[CLOSE] = True
        return self.error(request, HTTPError(408, "request_timeout",
                                             "The request body stopped arriving"))

    def route(self, request: Request, path: str) -> tuple[str, dict]:
        """The endpoint and its arguments. ``/{db}/{docid}`` and ``/{db}``, most
        requests, are matched here directly (the same answers the map gives, without
        its cost: a fifth of a POST's own work)."""
        parts = path.split("/")
        if (len(parts) == 3 and request.method in DOCUMENT_METHODS and parts[1] and parts[2]
                and parts[1][0] != "_" and parts[2][0] != "_"):
            return "document", {"db": parts[1].replace(SLASH, "/"),
                                "docid": parts[2].replace(SLASH, "/")}
        if (len(parts) == 2 and request.method in DATABASE_METHODS and parts[1]
                and parts[1][0] != "_"):
            return "database", {"db": parts[1].replace(SLASH, "/")}
        adapter = self.url_map.bind_to_environ(request.environ)
        return adapter.match(path_info=path, method=request.method)

    # -- helpers shared by the endpoint mixins --------------------------------------
    def kind(self, request: Request) -> str:
        return rep.choose(request.environ.get("HTTP_ACCEPT"))

    def respond(self, request: Request, value, status: int = 200, headers=None) -> Reply:
        kind = self.kind(request)
        body = rep.render(value, kind, title=f"Settee {request.path}")
        return Reply(body, status, headers,
                     kind + ("; charset=utf-8" if kind != rep.JSON else ""))

    def stream(self, request: Request, listing: rep.Listing, headers=None) -> Response:
        kind = self.kind(request)
        listing.title = listing.title or f"Settee {request.path}"
        return Response(rep.stream(listing, kind), headers=headers, direct_passthrough=True,
                        content_type=kind + ("; charset=utf-8" if kind != rep.JSON else ""))

    def error(self, request: Request, e: HTTPError) -> Response:
        if e.status in (408, 413) or unread_big_body(request):
            request.environ[CLOSE] = True      # not read on to the end of the body after this
        try:
            kind = self.kind(request)
        except HTTPError:           # nothing acceptable: the error itself still goes as JSON
            kind = rep.JSON
        body = rep.render(e.body(), kind, title=f"{e.status} {e.error}")
        return Response(body, status=e.status, headers=e.headers,
                        content_type=kind + ("; charset=utf-8" if kind != rep.JSON else ""))

    def data(self, request: Request, limit: int | None = None) -> bytes:
        """The request body's bytes: 413 as soon as it passes ``limit`` (``max_body``),
        before reading when its length says so, else when one byte more arrives."""
        limit = self.max_body if limit is None else min(limit, self.max_body)
        length = request.content_length
        if length is not None and length > limit:
            raise HTTPError(413, "too_large", f"Request body over {limit} bytes")
        if "stream" not in request.__dict__:            # not opened yet: bound it
            request.max_content_length = limit + 1
        data = request.get_data(cache=True)
        if len(data) > limit:
            raise HTTPError(413, "too_large", f"Request body over {limit} bytes")
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
        One with attachments is measured once they are decoded (check_document_size),
        as its base64 would charge them a third more."""
        check_body_type(request)
        data = self.data(request)
        if len(data) <= self.max_document:
            return self.json_object(request)
        # over as sent: only base64 attachments (measured decoded later) may make it fit
        body = self.json_object(request) if b"_attachments" in data else None
        if body is None or "_attachments" not in body:
            raise HTTPError(413, "document_too_large", f"Document over {self.max_document} bytes")
        return body

    def check_document_size(self, doc) -> None:
        """413 unless ``doc`` with its attachments fits (attachments.document_size)."""
        if document_size(doc) > self.max_document:
            raise HTTPError(413, "document_too_large",
                            f"Document over {self.max_document} bytes with its attachments")

    def db(self, name: str):
        """The open database ``name``, leased until the request's response is done (the
        catalog closes only databases nobody uses)."""
        database = self.catalog.get(name)
        leases = LEASES.get()
        if leases is not None:
            leases.append(database.lease())
        return database

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

    # -- server endpoints -----------------------------------------------------------
    def on_root(self, request):
        return self.respond(request, {
            "couchdb": "Welcome", "version": "3.3.3", "settee": VERSION,
            "git_sha": "settee", "uuid": uuid.uuid5(uuid.NAMESPACE_URL,
                                                    os.path.abspath(self.settings["storage_data_dir"])).hex,
            "features": ["settee-python-views", "settee-yaml"],
            "vendor": {"name": "Settee", "version": VERSION}})

    def on_all_dbs(self, request):
        p = Params(request.args)
        names = self.catalog.names()
        if p.bool("descending"):
            names.reverse()
        start, end = p.first("startkey", "start_key"), p.first("endkey", "end_key")
        desc = p.bool("descending")
        if not all(isinstance(key, (str, type(None))) for key in (start, end)):
            raise bad_request("startkey and endkey of _all_dbs must be JSON strings")
        if start is not None:
            names = [n for n in names if (n <= start if desc else n >= start)]
        if end is not None:
            names = [n for n in names if (n >= end if desc else n <= end)]
        skip = p.int("skip", 0)
        limit = p.int("limit")
        names = names[skip:skip + limit if limit is not None else None]
        return self.respond(request, names)

    def on_uuids(self, request):
        count = Params(request.args).int("count", 1, minimum=1, maximum=1000)
        return self.respond(request, {"uuids": [new_id() for _ in range(count)]},
                            headers={"Cache-Control": "must-revalidate, no-cache",
                                     "Pragma": "no-cache"})

    def on_up(self, request):
        data_dir = self.settings["storage_data_dir"]
        if self.catalog.in_memory:
            return self.respond(request, {"status": "ok", "seeds": {}})
        try:
            probe = os.path.join(data_dir, f".up-{os.getpid()}")
            with open(probe, "wb") as f:
                f.write(b"ok")
            os.unlink(probe)
            free = shutil.disk_usage(data_dir).free
        except OSError as e:
            raise HTTPError(503, "unavailable", f"storage not writable: {e.strerror}") from e
        floor = self.settings["storage_free_space_floor"]
        if free < floor:
            raise HTTPError(503, "unavailable", f"{free} bytes free, below the floor of {floor}")
        return self.respond(request, {"status": "ok", "seeds": {}, "free_bytes": free})

    def on_session(self, request):
        if request.method == "GET":
            user = request.user
            info = {"authentication_handlers": ["cookie", "default"]}
            if user.method:
                info["authenticated"] = user.method
            return self.respond(request, {"ok": True, "userCtx": user.ctx(), "info": info})
        if request.method == "DELETE":
            response = self.respond(request, {"ok": True})
            response.delete_cookie("AuthSession", path="/")
            return response
        if request.mimetype == "application/x-www-form-urlencoded":
            self.data(request, SESSION_MAX_BODY)        # bounded, then parsed from memory
            form = request.form
            name, password = form.get("name"), form.get("password")
        else:
            self.data(request, SESSION_MAX_BODY)
            body = self.json_object(request)
            name, password = body.get("name"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise bad_request("POST /_session needs a name and a password")
        user = self.auth.login(name, password)
        if user is None:
            raise HTTPError(401, "unauthorized", "Name or password is incorrect.")
        response = self.respond(request, {"ok": True, "name": user.name, "roles": list(user.roles)})
        response.set_cookie("AuthSession", self.auth.cookie_for(user.name), path="/",
                            max_age=self.settings["auth_session_timeout"], httponly=True,
                            samesite="Lax")
        return response

    # -- authorization ------------------------------------------------------------------
    def authorize(self, request, endpoint: str, values: dict) -> None:
        """May ``request.user`` call ``endpoint``? Raises 401/403 if not (see auth.py)."""
        user, method, auth = request.user, request.method, self.auth
        if user.is_admin or endpoint in PUBLIC_ENDPOINTS:
            return
        db = values.get("db")
        if db is None or endpoint in SERVER_ADMIN_ENDPOINTS or (
                endpoint == "database" and method in ("PUT", "DELETE")):
            auth.require_admin(user)
            return
        writes = method not in ("GET", "HEAD")
        admin_only = endpoint in DB_ADMIN_ENDPOINTS or (writes and endpoint in DB_ADMIN_WRITES)
        if user.name is None and db != USERS_DB:
            # No _security names the anonymous user: the answer needs only whether the
            # database exists, and its storage stays closed.
            if not self.catalog.exists(db):
                raise DatabaseNotFound(db)
            raise auth.deny(user, "You are not a db or server admin." if admin_only
                            else "You are not allowed to access this db.")
        database = self.db(db)
        if db == USERS_DB:
            docid = values.get("docid")
            if endpoint == "document" and docid is not None and auth.may_touch_user_doc(
                    user, docid, method, docid in database):
                return
            auth.require_admin(user)            # listing users is for server admins
            return
        if admin_only:
            auth.require_db_admin(user, database)
        else:
            auth.require_member(user, database)

    def on_security(self, request, db):
        database = self.db(db)
        if request.method == "GET":
            return self.respond(request, database.security())
        database.set_security(check_security(self.json_object(request)))
        return self.respond(request, {"ok": True})

    # -- databases --------------------------------------------------------------------
    def on_database(self, request, db):
        method = request.method
        if db in SERVER_ENDPOINTS:
            raise HTTPError(405, "method_not_allowed", f"{db} does not take {method}")
        if method in ("GET", "HEAD"):
            return self.respond(request, self.database_info(self.db(db)))
        if method == "PUT":
            self.check_writable()
            self.catalog.create(db)
            return self.respond(request, {"ok": True}, 201,
                                {"Location": "/" + quote_segment(db)})
        if method == "DELETE":
            if "rev" in request.args:
                raise bad_request("You tried to DELETE a database with a ?rev= parameter. "
                                  "Did you mean to DELETE a document instead?")
            self.catalog.delete(db)
            return self.respond(request, {"ok": True})
        return self.post_document(request, db)

    def database_info(self, database) -> dict:
        info = database.info()
        seq = str(info["update_seq"])
        return {"db_name": database.name, "doc_count": info["doc_count"],
                "doc_del_count": info["doc_del_count"], "update_seq": seq,
                "purge_seq": "0", "compact_running": False,
                "sizes": {"file": info["size"], "external": info["size"], "active": info["size"]},
                "disk_size": info["size"], "data_size": info["size"],
                "disk_format_version": 8, "committed_update_seq": info["update_seq"],
                "instance_start_time": "0",
                "props": {}, "cluster": {"q": 1, "n": 1, "w": 1, "r": 1}}

    def on_compact(self, request, db):
        database = self.db(db)
        database.compact()
        return self.respond(request, {"ok": True}, 202)

    def on_ensure_full_commit(self, request, db):
        self.db(db)
        return self.respond(request, {"ok": True, "instance_start_time": "0"}, 201)

    def on_revs_limit(self, request, db):
        database = self.db(db)
        if request.method == "GET":
            return self.respond(request, database.revs_limit())
        limit = self.body(request)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise bad_request("The revs_limit must be a positive integer")
        database.set_revs_limit(limit)
        return self.respond(request, {"ok": True})


def quote_segment(text: str) -> str:
    from urllib.parse import quote
    return quote(text, safe="")


def create_app(settings=None) -> Settee:
    """The WSGI application for ``settings`` (default: defaults, file and environment)."""
    if settings is None:
        from settee.config import load_settings
        settings = load_settings()
    return Settee(settings)
