"""An OpenAPI 3.0 description of Settee's HTTP API, served at ``GET /_openapi.json``.

Built from plain Python data (its building blocks: :mod:`.openapi_builders`): one
table of reusable parameters, one of schemas, and one :func:`paths` table (the node's
and CouchDB 3's further paths: :mod:`.openapi_node`) naming every route of
``server/app.py``'s ``endpoints()`` with its query parameters (typed), request body
and responses. Every error response
is CouchDB's ``{"error": NAME, "reason": TEXT}`` (``#/components/schemas/Error``).

Notes on the mapping:

* Path templates use ``{db}``, ``{docid}``, ``{ddoc}``, ``{view}``, ``{name}``; a ``/``
  inside a database name or document id is sent as ``%2F`` (one segment).
* JSON-valued query parameters (``key``, ``keys``, ``startkey``, ...) are strings
  holding JSON, as in CouchDB (``?startkey="a"``); their ``x-json`` marks them.
* ``COPY`` is not an OpenAPI method: documents' ``COPY`` is described under the path's
  ``x-copy`` extension.
* Request bodies are JSON; ``application/yaml`` is accepted wherever JSON is, and
  responses come as JSON (default), YAML or HTML by ``Accept``.
"""
from __future__ import annotations

import copy
from functools import lru_cache

import orjson

from .openapi_builders import (
    ANY,
    BOOL,
    ERROR_RESPONSES,
    INT,
    JSON,
    STR,
    STRINGS,
    _obj,
    _path_param,
    body,
    header,
    ok,
    operation,
    query,
    ref,
    schema,
)
from .openapi_node import SCHEMAS as NODE_SCHEMAS
from .openapi_node import paths as node_paths

VERSION = "0.1.0"


# -- reusable parameters -----------------------------------------------------------------

PARAMETERS = {
    "db": _path_param("db", "Database name: ^[a-z][a-z0-9_$()+/-]*$ (a / sent as %2F), "
                            "or _users / _replicator"),
    "docid": _path_param("docid", "Document id (a / sent as %2F); ids starting with _ are "
                                  "reserved"),
    "ddoc": _path_param("ddoc", "Design document name, without the _design/ prefix"),
    "view": _path_param("view", "View name"),
    "name": _path_param("name", "Index name"),
    "partition": _path_param("partition", "Partition name (a partitioned database's ids are "
                                          "partition:id)"),
    "func": _path_param("func", "The function's name in the design document"),
    "view_ddoc": _path_param("view_ddoc", "The design document of the view, without "
                                          "_design/"),
    "path": _path_param("path", "The rest of the path, for the rewrite rules"),
    "attachment": _path_param("name", "Attachment name (the rest of the path: it may "
                                      "contain /)"),
    "rev": query("rev", description="A revision, N-hash"),
    "If-Match": header("If-Match", "The revision the write is based on (an ETag)"),
    "If-None-Match": header("If-None-Match", "ETags already held: 304 when one matches"),
}

ALL_DOCS_QUERY = [
    query("key", "json"), query("keys", "json", "a JSON array of document ids"),
    query("startkey", "json"), query("start_key", "json"),
    query("endkey", "json"), query("end_key", "json"),
    query("descending", "boolean", default=False),
    query("include_docs", "boolean", default=False),
    query("conflicts", "boolean", default=False),
    query("inclusive_end", "boolean", default=True),
    query("update_seq", "boolean", default=False),
    query("limit", "integer"), query("skip", "integer", default=0),
]

VIEW_QUERY = [
    query("key", "json"), query("keys", "json", "a JSON array of keys"),
    query("startkey", "json"), query("start_key", "json"),
    query("endkey", "json"), query("end_key", "json"),
    query("startkey_docid"), query("start_key_doc_id"),
    query("endkey_docid"), query("end_key_doc_id"),
    query("inclusive_end", "boolean", default=True),
    query("descending", "boolean", default=False),
    query("limit", "integer"), query("skip", "integer", default=0),
    query("reduce", "boolean"), query("group", "boolean", default=False),
    query("group_level", "integer"),
    query("include_docs", "boolean", default=False),
    query("conflicts", "boolean", default=False),
    query("update", "enum", values=["true", "false", "lazy"], default="true"),
    query("stale", "enum", values=["ok", "update_after"]),
    query("update_seq", "boolean", default=False),
    query("sorted", "boolean"), query("stable", "boolean"),
    query("attachments", "boolean"), query("att_encoding_info", "boolean"),
]

CHANGES_QUERY = [
    query("feed", "enum", values=["normal", "longpoll", "continuous", "eventsource"],
          default="normal"),
    query("since", description="a sequence number, 0 or now"),
    query("limit", "integer"),
    query("descending", "boolean", default=False),
    query("include_docs", "boolean", default=False),
    query("conflicts", "boolean", default=False),
    query("style", "enum", values=["main_only", "all_docs"], default="main_only"),
    query("timeout", "integer", "milliseconds a waiting feed waits", maximum=600_000,
          default=60_000),
    query("heartbeat", description="milliseconds between newlines of a waiting feed, or true"),
    query("filter", description="_doc_ids, _selector, _view or _design"),
    query("doc_ids", "json", "with filter=_doc_ids: a JSON array of ids"),
    query("view", description="with filter=_view: ddoc/view"),
]

DOC_READ_QUERY = [
    ref("parameters", "rev"),
    query("revs", "boolean", default=False), query("revs_info", "boolean", default=False),
    query("conflicts", "boolean", default=False), query("meta", "boolean", default=False),
    query("deleted_conflicts", "boolean", default=False),
    query("local_seq", "boolean", default=False),
    query("open_revs", description="all, or a JSON array of revisions"),
    ref("parameters", "If-None-Match"),
    header("If-Modified-Since", "An HTTP date: 304 when the document is not newer"),
]

DOC_WRITE_QUERY = [
    ref("parameters", "rev"), ref("parameters", "If-Match"),
    query("batch", "enum", values=["ok"]),
    query("new_edits", "boolean", default=True),
]

DOC_DELETE_QUERY = [ref("parameters", "rev"), ref("parameters", "If-Match")]


# -- schemas ------------------------------------------------------------------------------
NAMES_ROLES = _obj({"names": STRINGS, "roles": STRINGS})

SCHEMAS = {
    "Error": _obj({"error": STR, "reason": STR}, ("error", "reason")),
    "Ok": _obj({"ok": BOOL}, ("ok",)),
    "Welcome": _obj({"couchdb": STR, "version": STR, "settee": STR, "uuid": STR,
                     "features": STRINGS, "vendor": _obj({"name": STR, "version": STR})},
                    ("couchdb", "version")),
    "Up": _obj({"status": STR, "seeds": {"type": "object"}, "free_bytes": INT}, ("status",)),
    "UUIDs": _obj({"uuids": STRINGS}, ("uuids",)),
    "Names": STRINGS,
    "Tasks": {"type": "array", "items": {"type": "object"}},
    "Replication": _obj({"source": STR, "target": STR, "continuous": BOOL,
                         "create_target": BOOL, "cancel": BOOL, "replication_id": STR,
                         "doc_ids": STRINGS, "selector": {"type": "object"}, "filter": STR,
                         "query_params": {"type": "object"}, "since_seq": STR},
                        ("source", "target")),
    "ReplicationResult": _obj({"ok": BOOL, "session_id": STR, "_local_id": STR,
                               "history": {"type": "array", "items": {"type": "object"}}},
                              ("ok",)),
    "SchedulerJobs": _obj({"total_rows": INT, "offset": INT,
                           "jobs": {"type": "array", "items": {"type": "object"}}}),
    "SchedulerDocs": _obj({"total_rows": INT, "offset": INT,
                           "docs": {"type": "array", "items": {"type": "object"}}}),
    "SchedulerEntry": {"type": "object"},
    "Metrics": {"type": "string", "description": "Prometheus text exposition format"},
    "Session": _obj({"ok": BOOL, "userCtx": _obj({"name": {"type": "string", "nullable": True},
                                                  "roles": STRINGS}),
                     "info": {"type": "object"}}),
    "Login": _obj({"name": STR, "password": STR}, ("name", "password")),
    "LoginResult": _obj({"ok": BOOL, "name": STR, "roles": STRINGS}),
    "DatabaseInfo": _obj({"db_name": STR, "doc_count": INT, "doc_del_count": INT,
                          "update_seq": STR, "purge_seq": STR, "compact_running": BOOL,
                          "sizes": _obj({"file": INT, "external": INT, "active": INT}),
                          "disk_size": INT, "data_size": INT, "instance_start_time": STR},
                         ("db_name", "doc_count", "update_seq")),
    "Document": {"type": "object", "description": "Any JSON object; members starting with _ "
                 "are CouchDB's special ones (_id, _rev, _deleted, _revisions, ...)",
                 "properties": {"_id": STR, "_rev": STR, "_deleted": BOOL},
                 "additionalProperties": True},
    "DesignDocument": {"type": "object", "properties": {
        "_id": STR, "_rev": STR,
        "language": {"type": "string", "enum": ["javascript", "python", "query"],
                     "default": "javascript"},
        "views": {"type": "object", "additionalProperties": _obj(
            {"map": {"description": "JavaScript function (doc), or Python source defining "
                                    "fun(doc); views.lib: CommonJS modules for require()"},
             "reduce": {"type": "string", "description": "_sum, _count, _stats, "
                        "_approx_count_distinct, or a JavaScript or Python function"}},
            ("map",))}}, "additionalProperties": True},
    "DocResult": _obj({"ok": BOOL, "id": STR, "rev": STR}, ("ok", "id", "rev")),
    "OpenRevs": {"type": "array", "items": _obj({"ok": schema("Document"), "missing": STR})},
    "AllDocsRequest": _obj({"keys": {"type": "array", "items": ANY},
                            "limit": {"type": "integer", "minimum": 0},
                            "skip": {"type": "integer", "minimum": 0},
                            "include_docs": BOOL}),
    "Row": _obj({"id": STR, "key": ANY, "value": ANY, "doc": schema("Document"),
                 "error": STR}),
    "Rows": _obj({"total_rows": INT, "offset": INT, "update_seq": STR,
                  "rows": {"type": "array", "items": schema("Row")}}, ("rows",)),
    "BulkDocsRequest": _obj({"docs": {"type": "array", "items": schema("Document")},
                             "new_edits": BOOL, "all_or_nothing": BOOL}, ("docs",)),
    "BulkResult": {"type": "array", "items": _obj({"ok": BOOL, "id": {"type": "string",
                                                                      "nullable": True},
                                                   "rev": STR, "error": STR, "reason": STR})},
    "BulkGetRequest": _obj({"docs": {"type": "array", "items": _obj({"id": STR, "rev": STR},
                                                                     ("id",))}}, ("docs",)),
    "BulkGetResult": _obj({"results": {"type": "array", "items": _obj({
        "id": {"type": "string", "nullable": True},
        "docs": {"type": "array", "items": _obj({"ok": schema("Document"),
                                                 "error": {"type": "object"}})}})}}),
    "RevsRequest": {"type": "object", "additionalProperties": STRINGS,
                    "description": "document id -> revisions the client has"},
    "RevsDiff": {"type": "object", "additionalProperties": _obj({"missing": STRINGS})},
    "MissingRevs": _obj({"missing_revs": {"type": "object", "additionalProperties": STRINGS}}),
    "ChangesRequest": _obj({"since": ANY, "doc_ids": STRINGS,
                            "selector": {"type": "object"}}),
    "Changes": _obj({"results": {"type": "array", "items": _obj({
        "seq": STR, "id": STR, "deleted": BOOL, "doc": schema("Document"),
        "changes": {"type": "array", "items": _obj({"rev": STR})}})},
        "last_seq": STR, "pending": INT}),
    "RevsLimit": {"type": "integer", "minimum": 1},
    "Security": _obj({"admins": NAMES_ROLES, "members": NAMES_ROLES}),
    "ViewRequest": {"type": "object", "description": "the view's query parameters as JSON "
                    "members (key, keys, startkey, limit, reduce, group, ...)",
                    "additionalProperties": True},
    "FindRequest": _obj({"selector": {"type": "object"}, "fields": STRINGS,
                         "sort": {"type": "array", "items": ANY},
                         "limit": {"type": "integer", "minimum": 0},
                         "skip": {"type": "integer", "minimum": 0}, "bookmark": STR,
                         "use_index": ANY, "conflicts": BOOL, "update": BOOL,
                         "stable": BOOL, "stale": STR, "r": INT, "execution_stats": BOOL,
                         "allow_fallback": BOOL, "partition": STR}, ("selector",),
                        additional=False),
    "FindResult": _obj({"docs": {"type": "array", "items": schema("Document")},
                        "bookmark": STR, "warning": STR,
                        "execution_stats": {"type": "object"}}, ("docs",)),
    "Explain": _obj({"dbname": STR, "index": {"type": "object"}, "selector": ANY,
                     "opts": {"type": "object"}, "limit": INT, "skip": INT,
                     "fields": ANY, "mrargs": {"type": "object"},
                     "index_candidates": {"type": "array", "items": {"type": "object"}},
                     "selector_hints": {"type": "array", "items": {"type": "object"}},
                     "covering": BOOL, "partitioned": BOOL}),
    "PartitionInfo": _obj({"db_name": STR, "partition": STR, "doc_count": INT,
                           "doc_del_count": INT, "sizes": _obj({"active": INT, "external": INT})}),
    "IndexRequest": _obj({"index": _obj({"fields": {"type": "array", "items": ANY,
                                                    "minItems": 1}}, ("fields",)),
                          "name": STR, "ddoc": STR,
                          "type": {"type": "string", "enum": ["json"]}}, ("index",)),
    "IndexResult": _obj({"result": {"type": "string", "enum": ["created", "exists"]},
                         "id": STR, "name": STR}),
    "Indexes": _obj({"total_rows": INT, "indexes": {"type": "array",
                                                    "items": {"type": "object"}}}),
    "FullCommit": _obj({"ok": BOOL, "instance_start_time": STR}),
    "OpenAPI": {"type": "object", "description": "this document"},
    "DesignInfo": _obj({"name": STR, "view_index": {"type": "object"}}),
}


# -- the paths ------------------------------------------------------------------------------
P = PARAMETERS
DB = ref("parameters", "db")
ETAG = {"ETag": {"schema": STR, "description": "the revision, quoted"}}
SAVED = {**ETAG, "Location": {"schema": STR, "description": "the document's URL, "
                                                            "percent-encoded"}}


def doc_path(kind: str, id_param: str, id_text: str) -> dict:
    """GET/HEAD/PUT/DELETE (and COPY) of one document kind: plain, design or _local."""
    tag = {"document": "documents", "design": "design documents",
           "local": "local documents"}[kind]
    doc_schema = "DesignDocument" if kind == "design" else "Document"
    params = [DB, ref("parameters", id_param)]
    get = operation(f"Read {id_text}", tag, {"200": ok(doc_schema, headers=ETAG),
                                             "304": {"description": "Not modified"}},
                    params=DOC_READ_QUERY, op_id=f"get_{kind}", errors_=(404,))
    head = operation(f"Headers of {id_text}", tag, {"200": {"description": "OK",
                                                            "headers": ETAG}},
                     params=DOC_READ_QUERY, op_id=f"head_{kind}", errors_=(404,))
    head["responses"] = {k: {"description": v.get("description", "error")}
                         if "$ref" not in v else {"description": "error, no body"}
                         for k, v in head["responses"].items()}
    put = operation(f"Create or update {id_text}", tag,
                    {"201": ok("DocResult", "Saved", SAVED),
                     "202": ok("Accepted", "Accepted (batch=ok): no rev")},
                    params=DOC_WRITE_QUERY, request=body(doc_schema), op_id=f"put_{kind}",
                    errors_=(404, 409, 413, 415, 507))
    delete = operation(f"Delete {id_text}", tag, {"200": ok("DocResult", "Deleted", SAVED)},
                       params=DOC_DELETE_QUERY, op_id=f"delete_{kind}",
                       errors_=(404, 409, 507))
    item = {"parameters": params, "get": get, "head": head, "put": put, "delete": delete}
    if kind != "local":
        item["x-copy"] = operation(
            f"Copy {id_text} (HTTP method COPY)", tag,
            {"201": ok("DocResult", "Copied", SAVED)},
            params=[ref("parameters", "rev"),
                    {**header("Destination", "target id, optionally ?rev=REV"),
                     "required": True}],
            op_id=f"copy_{kind}", errors_=(404, 409, 507))
    return item


def attachment_path(id_param: str, tag: str) -> dict:
    """GET/HEAD/PUT/DELETE of one attachment of a document (or design document)."""
    kind = "design_" if id_param == "ddoc" else ""
    raw = {"description": "The attachment's bytes, in its own content type",
           "headers": ETAG, "content": {"*/*": {"schema": {"type": "string",
                                                           "format": "binary"}}}}
    read = [ref("parameters", "rev"), ref("parameters", "If-None-Match")]
    head = operation("Headers of an attachment", tag, {"200": {"description": "OK",
                                                               "headers": ETAG}},
                     params=read, op_id=f"head_{kind}attachment", errors_=(404,))
    head["responses"] = {k: {"description": "no body"} for k in head["responses"]}
    return {
        "parameters": [DB, ref("parameters", id_param), ref("parameters", "attachment")],
        "get": operation("Read an attachment", tag, {"200": raw, "304": {
            "description": "Not modified"}}, params=read, op_id=f"get_{kind}attachment",
            errors_=(404,)),
        "head": head,
        "put": operation("Add or replace an attachment (the body, any content type)", tag,
                         {"201": ok("DocResult", "Saved", SAVED)},
                         params=DOC_DELETE_QUERY,
                         request={"required": True, "content": {"*/*": {"schema": {
                             "type": "string", "format": "binary"}}}},
                         op_id=f"put_{kind}attachment", errors_=(404, 409, 413, 507)),
        "delete": operation("Remove an attachment", tag,
                            {"200": ok("DocResult", "Deleted", SAVED)},
                            params=DOC_DELETE_QUERY, op_id=f"delete_{kind}attachment",
                            errors_=(404, 409, 507)),
    }


def rows_get_post(summary: str, tag: str, params: list, request: str, op: str,
                  response: str = "Rows", errors_=(404,)) -> dict:
    return {
        "parameters": [DB],
        "get": operation(summary, tag, {"200": ok(response)}, params=params,
                         op_id=f"get_{op}", errors_=errors_),
        "post": operation(summary + " (parameters in the body)", tag,
                          {"200": ok(response)}, params=params, request=body(request),
                          op_id=f"post_{op}", errors_=(*errors_, 413, 415)),
    }


def replication_paths() -> dict:
    tag, page = "replication", [query("limit", "integer"), query("skip", "integer", default=0)]
    name = {"name": "repdb", "in": "path", "required": True, "schema": STR,
            "description": "a replicator database: _replicator"}
    docid = {"name": "docid", "in": "path", "required": True, "schema": STR}
    jobid = {"name": "jobid", "in": "path", "required": True, "schema": STR}
    return {
        "/_replicate": {"post": operation(
            "Replicate (one-shot: answers when done; continuous: runs until cancelled)", tag,
            {"200": ok("ReplicationResult"), "202": ok("ReplicationResult", "Accepted")},
            request=body("Replication"), op_id="replicate", errors_=(404, 413, 415, 502))},
        "/_scheduler/jobs": {"get": operation("Running replications", tag,
                                              {"200": ok("SchedulerJobs")}, params=page,
                                              op_id="scheduler_jobs")},
        "/_scheduler/jobs/{jobid}": {"parameters": [jobid], "get": operation(
            "One running replication", tag, {"200": ok("SchedulerEntry")},
            op_id="scheduler_job", errors_=(404,))},
        "/_scheduler/docs": {"get": operation("Replications of _replicator documents", tag,
                                              {"200": ok("SchedulerDocs")}, params=page,
                                              op_id="scheduler_docs")},
        "/_scheduler/docs/{repdb}": {"parameters": [name], "get": operation(
            "Replications of one replicator database's documents", tag,
            {"200": ok("SchedulerDocs")}, params=page, op_id="scheduler_db_docs",
            errors_=(404,))},
        "/_scheduler/docs/{repdb}/{docid}": {"parameters": [name, docid], "get": operation(
            "The replication of one _replicator document", tag, {"200": ok("SchedulerEntry")},
            op_id="scheduler_doc", errors_=(404,))},
    }


HTML_PAGE = {"200": {"description": "OK", "content": {"text/html": {"schema": STR}}}}


def paths() -> dict:
    server, dbs = "server", "databases"
    out = {
        "/": {"get": operation("Welcome", server, {"200": ok("Welcome")}, op_id="root")},
        "/_all_dbs": {"get": operation(
            "Names of all databases", server, {"200": ok("Names")}, op_id="all_dbs",
            params=[query("descending", "boolean", default=False),
                    query("startkey", "json"), query("start_key", "json"),
                    query("endkey", "json"), query("end_key", "json"),
                    query("limit", "integer"), query("skip", "integer", default=0)])},
        "/_uuids": {"get": operation(
            "Fresh UUIDs", server, {"200": ok("UUIDs")}, op_id="uuids",
            params=[query("count", "integer", minimum=1, maximum=1000, default=1)])},
        "/_up": {"get": operation("Health: storage writable, disk above the floor", server,
                                  {"200": ok("Up")}, op_id="up", errors_=(503,))},
        "/_active_tasks": {"get": operation("View index builds in progress", server,
                                            {"200": ok("Tasks")}, op_id="active_tasks")},
        "/_session": {
            "get": operation("Who am I", "sessions", {"200": ok("Session")},
                             op_id="get_session"),
            "post": operation("Log in: sets the AuthSession cookie", "sessions",
                              {"200": ok("LoginResult", headers={"Set-Cookie": {
                                  "schema": STR}})},
                              request={"required": True, "content": {
                                  JSON: {"schema": schema("Login")},
                                  "application/x-www-form-urlencoded": {
                                      "schema": schema("Login")}}},
                              op_id="post_session", errors_=(413, 415)),
            "delete": operation("Log out", "sessions", {"200": ok("Ok")},
                                op_id="delete_session"),
        },
        "/_utils": {"get": operation(
            "The web admin's start page (HTML): the databases", "admin", HTML_PAGE,
            op_id="admin_start")},
        "/_utils/{path}": {
            "get": operation("The web admin's static files and pages (HTML)", "admin",
                             HTML_PAGE, params=[_path_param("path", "A file or page")],
                             op_id="admin_page", errors_=(404,)),
            "post": operation(
                "A web admin form write (same-origin and CSRF-token checked), then a "
                "redirect", "admin", {"303": {"description": "Done: see Location"}},
                params=[_path_param("path", "The action: create-database, save, ...")],
                request={"required": True, "content": {
                    "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                    "multipart/form-data": {"schema": {"type": "object"}}}},
                op_id="admin_action", errors_=(404, 409, 413, 415))},
        "/_node/_local/_prometheus": {"get": operation(
            "Prometheus metrics", server, {"200": {"description": "OK", "content": {
                "text/plain": {"schema": schema("Metrics")}}}}, op_id="prometheus")},
        "/_metrics": {"get": operation(
            "Prometheus metrics", server, {"200": {"description": "OK", "content": {
                "text/plain": {"schema": schema("Metrics")}}}}, op_id="metrics")},
        "/_openapi.json": {"get": operation("This description", server,
                                            {"200": ok("OpenAPI")}, op_id="openapi")},
        **replication_paths(),
        "/{db}": {
            "parameters": [DB],
            "get": operation("Database information", dbs, {"200": ok("DatabaseInfo")},
                             op_id="get_database", errors_=(404,)),
            "head": {"summary": "Whether the database exists", "tags": [dbs],
                     "operationId": "head_database",
                     "responses": {"200": {"description": "exists"},
                                   "404": {"description": "missing"}}},
            "put": operation("Create the database (server admins)", dbs,
                             {"201": ok("Ok", "Created", {"Location": {"schema": STR}})},
                             params=[query("partitioned", "boolean", default=False)],
                             op_id="put_database", errors_=(412, 507)),
            "delete": operation("Delete the database (server admins)", dbs,
                                {"200": ok("Ok")}, op_id="delete_database",
                                errors_=(404,)),
            "post": operation("Create a document with a generated (or its own) _id",
                              "documents", {"201": ok("DocResult", "Saved", SAVED)},
                              request=body("Document"), op_id="post_document",
                              errors_=(404, 409, 413, 415, 507)),
        },
        "/{db}/_all_docs": rows_get_post("All documents by id", "documents", ALL_DOCS_QUERY,
                                         "AllDocsRequest", "all_docs"),
        "/{db}/_design_docs": rows_get_post("Design documents by id", "design documents",
                                            ALL_DOCS_QUERY, "AllDocsRequest", "design_docs"),
        "/{db}/_bulk_docs": {"parameters": [DB], "post": operation(
            "Write many documents", "bulk", {"201": ok("BulkResult")},
            request=body("BulkDocsRequest"), op_id="bulk_docs",
            errors_=(404, 413, 415, 417, 507))},
        "/{db}/_bulk_get": {"parameters": [DB], "post": operation(
            "Read many documents (and revisions)", "bulk", {"200": ok("BulkGetResult")},
            params=[query("revs", "boolean", default=False)],
            request=body("BulkGetRequest"), op_id="bulk_get", errors_=(404, 413, 415))},
        "/{db}/_revs_diff": {"parameters": [DB], "post": operation(
            "Which of these revisions are missing", "bulk", {"200": ok("RevsDiff")},
            request=body("RevsRequest"), op_id="revs_diff", errors_=(404, 413, 415))},
        "/{db}/_missing_revs": {"parameters": [DB], "post": operation(
            "Missing revisions (the older form of _revs_diff)", "bulk",
            {"200": ok("MissingRevs")}, request=body("RevsRequest"), op_id="missing_revs",
            errors_=(404, 413, 415))},
        "/{db}/_changes": {
            "parameters": [DB],
            "get": operation("The changes feed", "changes", {"200": ok("Changes")},
                             params=CHANGES_QUERY + [header("Last-Event-ID", "since, for "
                                                                             "eventsource")],
                             op_id="get_changes", errors_=(404,)),
            "post": operation("The changes feed, filter arguments in the body", "changes",
                              {"200": ok("Changes")}, params=CHANGES_QUERY,
                              request=body("ChangesRequest", required=False),
                              op_id="post_changes", errors_=(404, 413, 415)),
        },
        "/{db}/_compact": {"parameters": [DB], "post": operation(
            "Compact the database (database admins)", dbs, {"202": ok("Ok", "Accepted")},
            op_id="compact", errors_=(404,))},
        "/{db}/_ensure_full_commit": {"parameters": [DB], "post": operation(
            "A no-op: every acknowledged write is already durable", dbs,
            {"201": ok("FullCommit")}, op_id="ensure_full_commit", errors_=(404,))},
        "/{db}/_revs_limit": {
            "parameters": [DB],
            "get": operation("Revisions remembered per document", dbs,
                             {"200": ok("RevsLimit")}, op_id="get_revs_limit",
                             errors_=(404,)),
            "put": operation("Set the revisions remembered per document", dbs,
                             {"200": ok("Ok")}, request=body("RevsLimit"),
                             op_id="put_revs_limit", errors_=(404, 413, 415)),
        },
        "/{db}/_security": {
            "parameters": [DB],
            "get": operation("The database's admins and members", "security",
                             {"200": ok("Security")}, op_id="get_security", errors_=(404,)),
            "put": operation("Set the database's admins and members (database admins)",
                             "security", {"200": ok("Ok")}, request=body("Security"),
                             op_id="put_security", errors_=(404, 413, 415)),
        },
        "/{db}/_design/{ddoc}/_view/{view}": {
            **rows_get_post("Query a design document's view", "views", VIEW_QUERY,
                            "ViewRequest", "design_view"),
            "parameters": [DB, ref("parameters", "ddoc"), ref("parameters", "view")],
        },
        "/{db}/_view/{view}": {
            **rows_get_post("Query a view defined in a Python module", "views", VIEW_QUERY,
                            "ViewRequest", "module_view"),
            "parameters": [DB, ref("parameters", "view")],
        },
        "/{db}/_find": {"parameters": [DB], "post": operation(
            "Mango query", "mango", {"200": ok("FindResult")}, request=body("FindRequest"),
            op_id="find", errors_=(404, 413, 415))},
        "/{db}/_explain": {"parameters": [DB], "post": operation(
            "How a Mango query would run", "mango", {"200": ok("Explain")},
            request=body("FindRequest"), op_id="explain", errors_=(404, 413, 415))},
        "/{db}/_partition/{partition}": {"parameters": [DB, ref("parameters", "partition")],
                                         "get": operation(
            "A partition's document count and size", dbs, {"200": ok("PartitionInfo")},
            op_id="partition_info", errors_=(404,))},
        "/{db}/_partition/{partition}/_all_docs": {
            **rows_get_post("One partition's documents by id", "documents", ALL_DOCS_QUERY,
                            "AllDocsRequest", "partition_all_docs"),
            "parameters": [DB, ref("parameters", "partition")],
        },
        "/{db}/_partition/{partition}/_design/{ddoc}/_view/{view}": {
            **rows_get_post("Query a view within one partition (map only)", "views",
                            VIEW_QUERY, "ViewRequest", "partition_view"),
            "parameters": [DB, ref("parameters", "partition"), ref("parameters", "ddoc"),
                           ref("parameters", "view")],
        },
        "/{db}/_partition/{partition}/_find": {
            "parameters": [DB, ref("parameters", "partition")], "post": operation(
                "Mango query within one partition", "mango", {"200": ok("FindResult")},
                request=body("FindRequest"), op_id="partition_find", errors_=(404, 413, 415))},
        "/{db}/_partition/{partition}/_explain": {
            "parameters": [DB, ref("parameters", "partition")], "post": operation(
                "How a Mango query within one partition would run", "mango",
                {"200": ok("Explain")}, request=body("FindRequest"), op_id="partition_explain",
                errors_=(404, 413, 415))},
        "/{db}/_index": {
            "parameters": [DB],
            "get": operation("Mango indexes", "mango", {"200": ok("Indexes")},
                             op_id="get_index", errors_=(404,)),
            "post": operation("Create a Mango JSON index", "mango",
                              {"200": ok("IndexResult")}, request=body("IndexRequest"),
                              op_id="post_index", errors_=(404, 409, 413, 415, 507)),
        },
        "/{db}/_index/{ddoc}/json/{name}": {
            "parameters": [DB, ref("parameters", "ddoc"), ref("parameters", "name")],
            "delete": operation("Drop a Mango index", "mango", {"200": ok("Ok")},
                                op_id="drop_index", errors_=(404, 409)),
        },
        "/{db}/_index/_design/{ddoc}/json/{name}": {
            "parameters": [DB, ref("parameters", "ddoc"), ref("parameters", "name")],
            "delete": operation("Drop a Mango index (ddoc with its prefix)", "mango",
                                {"200": ok("Ok")}, op_id="drop_index_design",
                                errors_=(404, 409)),
        },
        "/{db}/_design/{ddoc}": doc_path("design", "ddoc", "a design document"),
        "/{db}/_local/{docid}": doc_path("local", "docid", "a local (unreplicated) document"),
        "/{db}/{docid}": doc_path("document", "docid", "a document"),
        "/{db}/{docid}/{name}": attachment_path("docid", "attachments"),
        "/{db}/_design/{ddoc}/{name}": attachment_path("ddoc", "attachments"),
        **design_function_paths(),
    }
    out.update(node_paths())
    return out


def design_function_paths() -> dict:
    """Design documents' shows, lists, updates and rewrites; their indexes' upkeep."""
    tag, ddoc, func = "design functions", ref("parameters", "ddoc"), ref("parameters", "func")
    any_body = {"description": "What the function answers, in its own content type",
                "content": {"*/*": {"schema": {"type": "string"}}}}

    def rendered(summary: str, op: str, methods: tuple, params: list, created=False) -> dict:
        out: dict = {"parameters": [DB, ddoc, func, *params]}
        for method in methods:
            responses = {"200": any_body, **({"201": any_body} if created else {})}
            out[method] = operation(summary, tag, responses, op_id=f"{method}_{op}",
                                    errors_=(400, 404, 406, 409, 413, 415))
        return out
    docid, view = ref("parameters", "docid"), ref("parameters", "view")
    writes = ("post", "put")
    rewrite = {m: operation("Send the request on by the design document's rewrites", tag,
                            {"200": any_body}, op_id=f"{m}_rewrite{{}}", errors_=(400, 404))
               for m in ("get", "post", "put", "delete")}
    return {
        "/{db}/_design/{ddoc}/_show/{func}": rendered(
            "Render no document with a show function", "show", ("get", "post"), []),
        "/{db}/_design/{ddoc}/_show/{func}/{docid}": rendered(
            "Render a document with a show function", "show_doc", ("get", "post"), [docid]),
        "/{db}/_design/{ddoc}/_list/{func}/{view}": rendered(
            "Render a view query with a list function", "list", ("get", "post"), [view]),
        "/{db}/_design/{ddoc}/_list/{func}/{view_ddoc}/{view}": rendered(
            "Render another design document's view with a list function", "list_other",
            ("get", "post"), [ref("parameters", "view_ddoc"), view]),
        "/{db}/_design/{ddoc}/_update/{func}": rendered(
            "Make a document with an update function", "update", writes, [], True),
        "/{db}/_design/{ddoc}/_update/{func}/{docid}": rendered(
            "Change a document with an update function", "update_doc", writes, [docid], True),
        "/{db}/_design/{ddoc}/_rewrite": {
            "parameters": [DB, ddoc],
            **{m: {**o, "operationId": o["operationId"].format("")} for m, o in rewrite.items()}},
        "/{db}/_design/{ddoc}/_rewrite/{path}": {
            "parameters": [DB, ddoc, ref("parameters", "path")],
            **{m: {**o, "operationId": o["operationId"].format("_path")}
               for m, o in rewrite.items()}},
        "/{db}/_design/{ddoc}/_info": {"parameters": [DB, ddoc], "get": operation(
            "The design document's view index", "views", {"200": ok("DesignInfo")},
            op_id="design_info", errors_=(404,))},
        "/{db}/_view_cleanup": {"parameters": [DB], "post": operation(
            "Drop the view indexes no design document uses (database admins)", "views",
            {"202": ok("Ok", "Accepted")}, op_id="view_cleanup", errors_=(404,))},
        "/{db}/_compact/{ddoc}": {"parameters": [DB, ddoc], "post": operation(
            "Compact a design document's views (database admins): with the database",
            "views", {"202": ok("Ok", "Accepted")}, op_id="compact_design", errors_=(404,))},
        "/{db}/_temp_view": {"parameters": [DB], **{m: operation(
            "Temporary views: gone, as in CouchDB 3", "views", {"410": {
                "description": "Gone", "content": {JSON: {"schema": schema("Error")}}}},
            op_id=f"{m}_temp_view") for m in ("get", "post")}},
    }


@lru_cache(maxsize=1)
def _description() -> dict:
    """The document, built once; a JSON round trip gives every shared piece its own copy
    (so a YAML rendering has no anchors and aliases)."""
    return orjson.loads(orjson.dumps(_build()))


def _build() -> dict:
    responses = {name: {"description": text,
                        "content": {JSON: {"schema": schema("Error")}}}
                 for name, text in ERROR_RESPONSES.values()}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Settee", "version": VERSION,
                 "description": "CouchDB's HTTP API over Settee's document databases. "
                                "Every error is {\"error\": NAME, \"reason\": TEXT}."},
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in (
            "server", "sessions", "databases", "documents", "design documents",
            "local documents", "attachments", "bulk", "changes", "security", "views",
            "mango", "design functions", "replication", "not implemented")],
        "paths": paths(),
        "components": {
            "schemas": {**SCHEMAS, **NODE_SCHEMAS},
            "parameters": PARAMETERS,
            "responses": responses,
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "AuthSession"},
            },
        },
        "security": [{}, {"basic": []}, {"cookie": []}],
    }


def description() -> dict:
    """The OpenAPI document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_description())


class OpenAPIEndpoints:
    """``GET /_openapi.json`` (public): the API's description."""

    def __init__(self, http):
        self.http = http

    def on_openapi(self, request):
        return self.http.respond(request, _description())
