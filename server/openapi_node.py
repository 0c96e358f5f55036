"""The OpenAPI description's node-level and CouchDB 3 compatibility paths: ``_dbs_info``,
``_db_updates``, ``_membership``, ``/_node/{node}/...`` (configuration, statistics,
versions), ``_stats``, a database's ``_shards``, ``_local_docs``,
``_purged_infos_limit`` and ``.../queries``, and every 501 route of
:mod:`.unimplemented`. :func:`paths` and :data:`SCHEMAS` join :mod:`.openapi`'s.
"""
from __future__ import annotations

from .openapi_builders import (
    ANY,
    BOOL,
    STR,
    STRINGS,
    _obj,
    _path_param,
    body,
    ok,
    operation,
    query,
    ref,
    schema,
)
from .unimplemented import UNIMPLEMENTED

OBJECT = {"type": "object"}
TEXT_MAP = {"type": "object", "additionalProperties": STR}

SCHEMAS = {
    "DbsInfoRequest": _obj({"keys": STRINGS}, ("keys",)),
    "DbsInfo": {"type": "array", "items": _obj({"key": ANY, "info": schema("DatabaseInfo"),
                                                "error": STR})},
    "DbUpdates": _obj({"results": {"type": "array", "items": _obj({
        "db_name": STR, "type": {"type": "string", "enum": ["created", "updated", "deleted"]},
        "seq": STR})}, "last_seq": STR}),
    "Membership": _obj({"all_nodes": STRINGS, "cluster_nodes": STRINGS}),
    "Node": _obj({"name": STR}),
    "Versions": {"type": "object", "additionalProperties": OBJECT},
    "Config": {"type": "object", "additionalProperties": TEXT_MAP,
               "description": "section -> key -> value (every value a string)"},
    "ConfigSection": TEXT_MAP,
    "ConfigValue": STR,
    "Stats": {"type": "object", "description": "nested groups of {value, type, desc}"},
    "Shards": _obj({"shards": {"type": "object", "additionalProperties": STRINGS}}),
    "DocShard": _obj({"range": STR, "nodes": STRINGS}),
    "PurgedInfosLimit": {"type": "integer", "minimum": 1},
    "Purge": {"type": "object", "additionalProperties": {"type": "array",
                                                          "items": {"type": "string"}},
              "description": "document id -> the leaf revisions to purge"},
    "PurgeResult": {"type": "object", "properties": {
        "purge_seq": {"nullable": True},
        "purged": {"type": "object", "additionalProperties": {
            "type": "array", "items": {"type": "string"}}}}},
    "QueriesRequest": _obj({"queries": {"type": "array", "items": OBJECT}}, ("queries",)),
    "QueriesResult": _obj({"results": {"type": "array", "items": schema("Rows")}}),
    "Accepted": _obj({"ok": BOOL, "id": STR}),
}

NODE = _path_param("node", "_local, or this node's name (nonode@nohost)")
DB = ref("parameters", "db")
LOCAL_DOCS_QUERY = [
    query("key", "json"), query("keys", "json", "a JSON array of _local/ ids"),
    query("startkey", "json"), query("endkey", "json"),
    query("descending", "boolean", default=False),
    query("include_docs", "boolean", default=False),
    query("inclusive_end", "boolean", default=True),
    query("limit", "integer"), query("skip", "integer", default=0),
]
DB_UPDATES_QUERY = [
    query("feed", "enum", values=["normal", "longpoll", "continuous", "eventsource"],
          default="normal"),
    query("since", description="a sequence, 0 or now"),
    query("limit", "integer"),
    query("descending", "boolean", default=False),
    query("timeout", "integer", "milliseconds a waiting feed waits", maximum=600_000,
          default=60_000),
    query("heartbeat", description="milliseconds between newlines of a waiting feed, or true"),
]
READ_ONLY = "Read only: a write is refused (403) with the Settee setting to change instead"


def _config_ops(op: str, params: list) -> dict:
    refused = {"403": ref("responses", "Forbidden")}
    item = {"parameters": params,
            "get": operation("Settee's configuration, as CouchDB's sections", "server",
                             {"200": ok({"config": "Config", "config_section": "ConfigSection",
                                         "config_key": "ConfigValue"}[op])},
                             op_id=f"get_{op}", errors_=(404,), description=READ_ONLY)}
    for method in ("put", "delete", "post"):
        item[method] = operation(f"Refused: {READ_ONLY.lower()}", "server", refused,
                                 op_id=f"{method}_{op}", errors_=(403, 404))
    return item


def _unimplemented() -> dict:
    out: dict = {}
    for rule, methods, feature, _ in UNIMPLEMENTED:
        template = (rule.replace("<seg:", "{").replace("<rest:", "{").replace(">", "}"))
        params = [_path_param(name, name) for name in
                  ("db", "node", "ddoc", "index", "rest") if "{" + name + "}" in template]
        item: dict = {"parameters": params} if params else {}
        slug = "".join(c if c.isalnum() else "_" for c in template).strip("_")
        for method in methods:
            item[method.lower()] = operation(
                f"Not implemented: {feature} (501 for every method)", "not implemented",
                {"501": ref("responses", "NotImplemented")}, op_id=f"{method.lower()}_{slug}")
        out[template] = item
    return out


def paths() -> dict:
    server = "server"
    rows = {"200": ok("Rows")}
    out = {
        "/_dbs_info": {
            "get": operation("Every database's info (_all_dbs' parameters)", server,
                             {"200": ok("DbsInfo")}, op_id="get_dbs_info",
                             params=[query("descending", "boolean", default=False),
                                     query("startkey", "json"), query("endkey", "json"),
                                     query("limit", "integer"), query("skip", "integer")]),
            "post": operation("The info of the databases named (at most 100)", server,
                              {"200": ok("DbsInfo")}, request=body("DbsInfoRequest"),
                              op_id="post_dbs_info", errors_=(413, 415)),
        },
        "/_db_updates": {"get": operation(
            "Databases created, updated and deleted, as a feed (server admins)", server,
            {"200": ok("DbUpdates")}, params=DB_UPDATES_QUERY, op_id="db_updates")},
        "/_membership": {"get": operation("The nodes: this one", server,
                                          {"200": ok("Membership")}, op_id="membership")},
        "/_stats": {"get": operation("Statistics, as /_node/_local/_stats", server,
                                     {"200": ok("Stats")}, op_id="stats")},
        "/_node/{node}": {"parameters": [NODE], "get": operation(
            "The node's name", server, {"200": ok("Node")}, op_id="node", errors_=(404,))},
        "/_node/{node}/_versions": {"parameters": [NODE], "get": operation(
            "What runs the node", server, {"200": ok("Versions")}, op_id="versions",
            errors_=(404,))},
        "/_node/{node}/_stats": {"parameters": [NODE], "get": operation(
            "Statistics in CouchDB's shape", server, {"200": ok("Stats")},
            op_id="node_stats", errors_=(404,))},
        "/_node/{node}/_stats/{path}": {
            "parameters": [NODE, _path_param("path", "group/metric, e.g. couchdb/request_time")],
            "get": operation("One group or metric of the statistics", server,
                             {"200": ok("Stats")}, op_id="node_stats_path", errors_=(404,))},
        "/_node/{node}/_config": _config_ops("config", [NODE]),
        "/_node/{node}/_config/{section}": _config_ops(
            "config_section", [NODE, _path_param("section", "a configuration section")]),
        "/_node/{node}/_config/{section}/{key}": _config_ops(
            "config_key", [NODE, _path_param("section", "a configuration section"),
                           _path_param("key", "a key of the section")]),
        "/{db}/_shards": {"parameters": [DB], "get": operation(
            "The database's shards: one, on this node", "databases", {"200": ok("Shards")},
            op_id="shards", errors_=(404,))},
        "/{db}/_shards/{docid}": {
            "parameters": [DB, ref("parameters", "docid")],
            "get": operation("The shard a document is in", "databases",
                             {"200": ok("DocShard")}, op_id="doc_shard", errors_=(404,))},
        "/{db}/_purged_infos_limit": {
            "parameters": [DB],
            "get": operation("Purges the database would remember", "databases",
                             {"200": ok("PurgedInfosLimit")}, op_id="get_purged_infos_limit",
                             errors_=(404,)),
            "put": operation("Set the purges the database would remember (database admins)",
                             "databases", {"200": ok("Ok")}, request=body("PurgedInfosLimit"),
                             op_id="put_purged_infos_limit", errors_=(404, 413, 415)),
        },
        "/{db}/_purge": {
            "parameters": [DB],
            "post": operation("Forget leaf revisions entirely (database admins)", "databases",
                              {"201": ok("PurgeResult", "Created")}, request=body("Purge"),
                              op_id="purge", errors_=(404, 413, 415)),
        },
        "/{db}/_local_docs": {
            "parameters": [DB],
            "get": operation("Local documents by id", "local documents", rows,
                             params=LOCAL_DOCS_QUERY, op_id="get_local_docs", errors_=(404,)),
            "post": operation("Local documents by id (parameters in the body)",
                              "local documents", rows, params=LOCAL_DOCS_QUERY,
                              request=body("AllDocsRequest"), op_id="post_local_docs",
                              errors_=(404, 413, 415)),
        },
        "/{db}/_all_docs/queries": {"parameters": [DB], "post": operation(
            "Several _all_docs queries at once", "documents", {"200": ok("QueriesResult")},
            request=body("QueriesRequest"), op_id="all_docs_queries",
            errors_=(404, 413, 415))},
        "/{db}/_design_docs/queries": {"parameters": [DB], "post": operation(
            "Several _design_docs queries at once", "design documents",
            {"200": ok("QueriesResult")}, request=body("QueriesRequest"),
            op_id="design_docs_queries", errors_=(404, 413, 415))},
        "/{db}/_design/{ddoc}/_view/{view}/queries": {
            "parameters": [DB, ref("parameters", "ddoc"), ref("parameters", "view")],
            "post": operation("Several queries of one view at once", "views",
                              {"200": ok("QueriesResult")}, request=body("QueriesRequest"),
                              op_id="design_view_queries", errors_=(404, 413, 415))},
    }
    out.update(_unimplemented())
    return out
