"""The WSGI application: CouchDB's HTTP API over Settee's databases.

One werkzeug :class:`Map` of named endpoints; each is a method ``on_<endpoint>`` of one
endpoint group, and the groups are built here with what each uses, passed explicitly:

* :class:`~.http.Http` (every group): answers in the representation ``Accept`` asks
  for, request bodies within the limits, databases leased for the request;
* :class:`~.writes.WriteRules` (every group that writes documents): design documents'
  authority and compilation, ``_users``' rules, attachments and the size limit;
* :class:`~.auth.Authenticator`: who the request is; :meth:`Settee.authorize` says
  what they may call.

The groups: server (:mod:`.node`), databases (:mod:`.databases`), documents
(:mod:`.documents`), attachments (:mod:`.attachments`), bulk reads and writes
(:mod:`.bulk`), the changes feed (:mod:`.changes`), views (:mod:`.views`) and their
indexes' upkeep (:mod:`.view_indexes`), design documents' shows, lists, updates and
rewrites (:mod:`.design_functions`), Mango (:mod:`.mango`), metrics
(:mod:`.metrics`) and the API's description (:mod:`.openapi`). Store errors become HTTP errors in one table (:mod:`.errors`).
``create_app(settings)`` builds the application; gunicorn imports
``settee.server.wsgi:application``.

Paths are matched segment by segment on the *raw* request path, so that ``%2F``
inside a database name or document id (``couchdb-python%2F12``, ``_design%2Fname``)
stays inside its segment instead of splitting it.
"""
from __future__ import annotations

import io
import logging
import time
from collections.abc import Mapping
from functools import partial
from typing import Any
from urllib.parse import unquote, urlencode

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import ClosingIterator

from settee.store import (
    REPLICATOR,
    Catalog,
    ConfigurationError,
    DatabaseExists,
    DatabaseNotFound,
    StoreError,
)
from settee.views.definitions import load_modules

from . import unimplemented
from .admin import AdminPages
from .attachments import AttachmentEndpoints
from .auth import USERS_DB, Authenticator
from .bulk import BulkEndpoints
from .changes import ChangesEndpoints
from .cluster import ClusterEndpoints
from .databases import DatabaseEndpoints
from .dbupdates import DbUpdatesEndpoints
from .design_functions import REWRITES, DesignFunctionEndpoints
from .documents import DocumentEndpoints
from .errors import HTTPError, bad_request, from_store, public_reason
from .http import LEASES, Http, SetteeRequest, release
from .mango import MangoEndpoints
from .metrics import MetricsEndpoints, observe
from .node import NodeEndpoints
from .nodeconfig import ConfigEndpoints
from .openapi import OpenAPIEndpoints
from .parking import CLOSE
from .partitions import PartitionEndpoints
from .replication import ReplicationEndpoints
from .reply import Reply, status_line
from .stats import StatsEndpoints
from .view_indexes import ViewIndexEndpoints
from .views import ViewEndpoints
from .writes import WriteRules

log = logging.getLogger("settee.server")
SLASH = "\x00"   # stands for an encoded "/" inside one path segment while routing
DOCUMENT_METHODS = {"GET", "HEAD", "PUT", "DELETE", "COPY"}
DATABASE_METHODS = {"GET", "HEAD", "PUT", "DELETE", "POST"}
PUBLIC_ENDPOINTS = {"root", "up", "uuids", "session", "openapi", "not_implemented", "utils"}
SERVER_ADMIN_ENDPOINTS = {"all_dbs", "active_tasks", "metrics"}
DB_ADMIN_ENDPOINTS = {"compact", "index_drop", "view_cleanup", "compact_design", "purge"}
#: The answer to a request whose database was deleted while it ran (its files went
#: from under it): what the request would have got a moment later.
DATABASE_GONE = HTTPError(404, "not_found", "Database does not exist.")
#: What a member of ``_replicator`` who is not one of its admins may call: the
#: database's info, and its documents one at a time (another user's shown without its
#: credentials, documents.py). Listings, changes, queries and copies would show every
#: document as stored, credentials included.
REPLICATOR_MEMBER_CALLS = {("database", "GET"), ("database", "HEAD"), ("database", "POST"),
                           ("document", "GET"), ("document", "HEAD"), ("document", "PUT"),
                           ("document", "DELETE"), ("bulk_docs", "POST")}
DB_ADMIN_WRITES = {"security", "revs_limit", "purged_infos_limit", "design_doc", "index"}
#: The configuration answers every method: a write is refused with the reason (403).
CONFIG_METHODS = ["GET", "PUT", "DELETE", "POST"]



#: What reading a request body raises when it stalls (the server's socket time limit:
#: a Python socket timeout, or the kernel's SO_RCVTIMEO as Settee's worker sets it).
STALLED = (TimeoutError, BlockingIOError)
JSON_TYPE = "application/json"

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
        r("/_utils", endpoint="utils", methods=["GET", "POST"]),
        r("/_utils/<rest:path>", endpoint="utils", methods=["GET", "POST"]),
        r("/_node/_local/_prometheus", endpoint="metrics", methods=["GET"]),
        r("/_metrics", endpoint="metrics", methods=["GET"]),
        r("/_dbs_info", endpoint="dbs_info", methods=["GET", "POST"]),
        r("/_db_updates", endpoint="db_updates", methods=["GET"]),
        r("/_membership", endpoint="membership", methods=["GET"]),
        r("/_stats", endpoint="stats", methods=["GET"]),
        r("/_node/<seg:node>", endpoint="node", methods=["GET"]),
        r("/_node/<seg:node>/_versions", endpoint="versions", methods=["GET"]),
        r("/_node/<seg:node>/_stats", endpoint="stats", methods=["GET"]),
        r("/_node/<seg:node>/_stats/<rest:path>", endpoint="stats", methods=["GET"]),
        r("/_node/<seg:node>/_config", endpoint="config", methods=CONFIG_METHODS),
        r("/_node/<seg:node>/_config/<seg:section>", endpoint="config_section",
          methods=CONFIG_METHODS),
        r("/_node/<seg:node>/_config/<seg:section>/<seg:key>", endpoint="config_key",
          methods=CONFIG_METHODS),
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
        r(db + "/_purged_infos_limit", endpoint="purged_infos_limit", methods=["GET", "PUT"]),
        r(db + "/_purge", endpoint="purge", methods=["POST"]),
        r(db + "/_shards", endpoint="shards", methods=["GET"]),
        r(db + "/_shards/<seg:docid>", endpoint="doc_shard", methods=["GET"]),
        r(db + "/_local_docs", endpoint="local_docs", methods=["GET", "POST"]),
        r(db + "/_all_docs/queries", endpoint="all_docs_queries", methods=["POST"]),
        r(db + "/_design_docs/queries", endpoint="design_docs_queries", methods=["POST"]),
        r(db + "/_design/<seg:ddoc>/_view/<seg:view>/queries", endpoint="design_view_queries",
          methods=["POST"]),
        r(db + "/_security", endpoint="security", methods=["GET", "PUT"]),
        r(db + "/_design/<seg:ddoc>/_view/<seg:view>", endpoint="design_view",
          methods=["GET", "POST"]),
        r(db + "/_view/<seg:view>", endpoint="module_view", methods=["GET", "POST"]),
        r(db + "/_partition/<seg:partition>", endpoint="partition_info", methods=["GET"]),
        r(db + "/_partition/<seg:partition>/_all_docs", endpoint="partition_all_docs",
          methods=["GET", "POST"]),
        r(db + "/_partition/<seg:partition>/_design/<seg:ddoc>/_view/<seg:view>",
          endpoint="partition_view", methods=["GET", "POST"]),
        r(db + "/_partition/<seg:partition>/_find", endpoint="partition_find", methods=["POST"]),
        r(db + "/_partition/<seg:partition>/_explain", endpoint="partition_explain",
          methods=["POST"]),
        r(db + "/_design/<seg:ddoc>/_info", endpoint="design_info", methods=["GET"]),
        r(db + "/_design/<seg:ddoc>/_show/<seg:func>", endpoint="show",
          methods=["GET", "POST"]),
        r(db + "/_design/<seg:ddoc>/_show/<seg:func>/<rest:docid>", endpoint="show",
          methods=["GET", "POST"]),
        r(db + "/_design/<seg:ddoc>/_list/<seg:func>/<seg:view>", endpoint="list",
          methods=["GET", "POST"]),
        r(db + "/_design/<seg:ddoc>/_list/<seg:func>/<seg:view_ddoc>/<seg:view>",
          endpoint="list_other", methods=["GET", "POST"]),
        r(db + "/_design/<seg:ddoc>/_update/<seg:func>", endpoint="update",
          methods=["GET", "POST", "PUT", "DELETE"]),
        r(db + "/_design/<seg:ddoc>/_update/<seg:func>/<rest:docid>", endpoint="update",
          methods=["GET", "POST", "PUT", "DELETE"]),
        r(db + "/_design/<seg:ddoc>/_rewrite", endpoint="rewrite",
          methods=["GET", "HEAD", "POST", "PUT", "DELETE", "COPY"]),
        r(db + "/_design/<seg:ddoc>/_rewrite/<rest:path>", endpoint="rewrite",
          methods=["GET", "HEAD", "POST", "PUT", "DELETE", "COPY"]),
        r(db + "/_view_cleanup", endpoint="view_cleanup", methods=["POST"]),
        r(db + "/_compact/<seg:ddoc>", endpoint="compact_design", methods=["POST"]),
        r(db + "/_temp_view", endpoint="temp_view", methods=["GET", "POST"]),
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
        *unimplemented.rules(),          # last: a real route wins over its 501
    ], converters={"seg": SegmentConverter, "rest": RestConverter}, strict_slashes=False,
       merge_slashes=False, redirect_defaults=False)


def rfc_status(start_response):
    """``start_response`` that sends RFC 9110's reason phrase for the status code, not
    werkzeug's upper-cased one (``400 Bad Request``, as CouchDB writes it)."""
    def start(status, headers, exc_info=None):
        return start_response(status_line(status), headers, exc_info)
    return start


def handlers(*groups) -> dict:
    """Endpoint name -> handler, from the groups' ``on_<endpoint>`` methods; a name
    claimed by two groups is a mistake in the code, refused at start."""
    table: dict = {}
    for group in groups:
        for attr in dir(group):
            if attr.startswith("on_") and callable(getattr(group, attr)):
                name = attr[3:]
                if name in table:
                    raise TypeError(f"endpoint {name!r} is handled by two groups")
                table[name] = getattr(group, attr)
    return table


class Settee:
    """The application: one catalog of databases, one URL map, the endpoint groups."""

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
        self.http = http = Http(settings, self.catalog)
        writes = WriteRules(self.auth, http.max_document)
        documents = DocumentEndpoints(http, writes, self.auth)
        changes = ChangesEndpoints(http)
        self.replication = replication = ReplicationEndpoints(http, self.auth, changes,
                                                              writes.design_saved)
        writes.document_rules[REPLICATOR] = replication.check_doc
        self.handlers = handlers(
            NodeEndpoints(http, self.auth), DatabaseEndpoints(http, documents, writes.design_saved), documents,
            AttachmentEndpoints(http, writes), BulkEndpoints(http, writes, self.auth),
            changes, ViewEndpoints(http, replication.tasks), ViewIndexEndpoints(http),
            DesignFunctionEndpoints(http, writes, self),
            MangoEndpoints(http, writes), MetricsEndpoints(http), OpenAPIEndpoints(http),
            PartitionEndpoints(http), replication,
            ConfigEndpoints(http, self.auth), StatsEndpoints(http), ClusterEndpoints(http),
            DbUpdatesEndpoints(http), unimplemented.UnimplementedEndpoints())
        # The HTML face: browsers' GETs of the same URLs, and the admin's form writes.
        self.admin = AdminPages(http, self.call, self.auth.secret)
        self.handlers["utils"] = self.admin.on_utils
        http.error_page = self.admin.error_page
        missing = {rule.endpoint for rule in self.url_map.iter_rules()} - set(self.handlers)
        if missing:
            raise TypeError(f"endpoints without a handler: {sorted(missing)}")

    # -- WSGI ---------------------------------------------------------------------
    def __call__(self, environ, start_response):
        # Not kept in the environ (werkzeug's default): request and environ would
        # refer to each other, a cycle per request for the garbage collector.
        request = SetteeRequest(environ, populate_request=False)
        # One byte past the limit: werkzeug stops a body without a length (chunked) there
        # without a word, and body() tells 413 from a body that fits.
        request.max_content_length = self.http.max_body + 1
        cors = self.cors_headers(request)
        response: Response | Reply
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
                    return ClosingIterator(response(environ, rfc_status(start_response)),
                                           partial(release, leases))
        if isinstance(response, Reply):     # its status lines are RFC 9110's already
            return response(environ, start_response)
        return response(environ, rfc_status(start_response))

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

    def dispatch(self, request: SetteeRequest) -> Response | Reply:
        try:
            try:
                path = routing_path(request.environ)
            except UnicodeDecodeError:
                raise bad_request("The request path is not valid UTF-8") from None
            endpoint, values = self.route(request, path)
            request.user = self.auth.authenticate(request)
            self.authorize(request, endpoint, values)
            if self.admin.faces(request, endpoint):
                return self.admin.page(request, endpoint, values)
            return self.handlers[endpoint](request, **values)
        except HTTPError as e:
            return self.http.error(request, e)
        except ConfigurationError as e:   # a setting met at first use (a schema, a key)
            log.error("configuration error on %s %s: %s", request.method, request.path, e)
            return self.http.error(request, HTTPError(500, e.error, public_reason(e)))
        except StoreError as e:
            if from_store(e).status >= 500:
                if self.http.database_gone():
                    return self.http.error(request, DATABASE_GONE)
                log.exception("store error on %s %s", request.method, request.path)
            return self.http.error(request, from_store(e))
        except MethodNotAllowed as e:
            allowed = ", ".join(e.valid_methods or [])
            return self.http.error(request, HTTPError(405, "method_not_allowed",
                                                 f"Only {allowed} allowed", {"Allow": allowed}))
        except NotFound:
            return self.http.error(request, HTTPError(404, "not_found", "missing"))
        except HTTPException as e:        # werkzeug's own: 413, 400 from form parsing, ...
            if isinstance(e.__context__, STALLED):          # werkzeug's ClientDisconnected
                return self.stalled(request)
            name = "too_large" if e.code == 413 else "bad_request"
            return self.http.error(request, HTTPError(e.code or 400, name, e.description or name))
        except STALLED:
            return self.stalled(request)
        except Exception:                 # a bug: say so in JSON, log the traceback
            if self.http.database_gone():
                return self.http.error(request, DATABASE_GONE)
            log.exception("unhandled error on %s %s", request.method, request.path)
            return self.http.error(request, HTTPError(500, "unknown_error",
                                                 "internal server error (logged)"))

    def rewritten(self, request: Request, method: str, target: str, body: bytes | None,
                  headers: dict | None, depth: int) -> Response | Reply:
        """The answer to ``request`` sent on to ``target`` (a path and query, from a
        design document's rewrite): routed, authenticated and authorized anew."""
        environ = dict(request.environ)
        path, _, query = target.partition("?")
        environ.update({"REQUEST_METHOD": method.upper(), "RAW_URI": target,
                        "REQUEST_URI": target, "QUERY_STRING": query, REWRITES: depth,
                        "PATH_INFO": unquote(path).encode().decode("latin-1")})
        if body is not None:
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        elif "stream" in request.__dict__:      # read already: the bytes go on
            data = request.get_data(cache=True)
            environ["wsgi.input"] = io.BytesIO(data)
            environ["CONTENT_LENGTH"] = str(len(data))
        for name, value in (headers or {}).items():
            key = name.upper().replace("-", "_")
            environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = \
                str(value)
        forwarded = SetteeRequest(environ, populate_request=False)
        forwarded.max_content_length = self.http.max_body + 1
        return self.dispatch(forwarded)

    def call(self, request: SetteeRequest, method: str, path: str, args: dict | None = None,
             body: bytes = b"", content_type: str = JSON_TYPE) -> tuple[int, dict, bytes]:
        """The JSON API called in-process for ``request``'s user, as a client would call
        it (``path`` percent-encoded): routed and authorized the same way. Returns the
        status, headers and JSON body; an error is raised as an :class:`HTTPError`."""
        environ = {k: v for k, v in request.environ.items()
                   if not k.startswith(("HTTP_IF_", "HTTP_ACCEPT", "HTTP_ORIGIN"))}
        environ.update({"REQUEST_METHOD": method, "REQUEST_URI": path, "RAW_URI": path,
                        "PATH_INFO": unquote(path).encode().decode("latin-1"),
                        "QUERY_STRING": urlencode(args or {}), "HTTP_ACCEPT": JSON_TYPE,
                        "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body)),
                        "wsgi.input": io.BytesIO(body)})
        sub = SetteeRequest(environ, populate_request=False)
        sub.max_content_length = self.http.max_body + 1
        try:
            endpoint, values = self.route(sub, routing_path(environ))
            sub.user = request.user
            self.authorize(sub, endpoint, values)
            response = self.handlers[endpoint](sub, **values)
        except StoreError as e:
            raise from_store(e) from None
        except MethodNotAllowed:
            raise HTTPError(405, "method_not_allowed", f"{method} {path}") from None
        except NotFound:
            raise HTTPError(404, "not_found", "missing") from None
        if isinstance(response, Reply):
            return response.status_code, dict(response.headers), response.body
        try:
            data = b"".join(response.iter_encoded())
        finally:
            response.close()
        return response.status_code, dict(response.headers), data

    def stalled(self, request: Request) -> Response:
        """The request's body stopped arriving (``server_io_timeout``): 408, and the
        connection is closed (what is left of the body will not be read)."""
        request.environ[CLOSE] = True
        return self.http.error(request, HTTPError(408, "request_timeout",
                                             "The request body stopped arriving"))

    def route(self, request: Request, path: str) -> tuple[str, Mapping[str, Any]]:
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

    # -- authorization ------------------------------------------------------------------
    def authorize(self, request, endpoint: str, values: Mapping[str, Any]) -> None:
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
        database = self.http.db(db)
        if db == USERS_DB:
            docid = values.get("docid")
            if endpoint == "document" and docid is not None and auth.may_touch_user_doc(
                    user, docid, method, docid in database):
                return
            auth.require_admin(user)            # listing users is for server admins
            return
        if db == REPLICATOR and not auth.is_db_admin(user, database):
            auth.require_member(user, database)
            if (endpoint, method) not in REPLICATOR_MEMBER_CALLS:
                raise auth.deny(user, "Only admins list, query or follow _replicator; its "
                                "members read and write its documents one at a time.")
            return
        if admin_only:
            auth.require_db_admin(user, database)
        else:
            auth.require_member(user, database)


def create_app(settings=None) -> Settee:
    """The WSGI application for ``settings`` (default: defaults, file and environment)."""
    if settings is None:
        from settee.config import load_settings
        settings = load_settings()
    return Settee(settings)
