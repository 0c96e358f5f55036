"""CouchDB endpoints Settee does not implement: 501 ``not_implemented``, naming the feature.

A client that calls one learns that Settee lacks it, rather than a 405 (which says
another method would work) or "Database does not exist" (``/_node/...`` read as a
database name). One table: a path, the methods CouchDB serves there (for the API's
description; every method gets the 501) and the feature's name. Their rules come
after every real route in ``server/app.py``'s map, so an endpoint that gets built
wins over its line here, which can then go.
"""
from __future__ import annotations

from werkzeug.routing import Rule

from .errors import HTTPError

#: Every method a 501 route answers (the route must not answer 405 for any of them).
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "COPY"]

#: (path rule, CouchDB's methods there, the feature, why or what instead)
UNIMPLEMENTED: list[tuple[str, tuple[str, ...], str, str]] = [
    ("/_scheduler/<rest:rest>", ("GET",), "this scheduler endpoint",
     "Settee answers /_scheduler/jobs and /_scheduler/docs"),
    ("/_cluster_setup", ("GET", "POST"), "cluster setup (/_cluster_setup)",
     "Settee runs as one node; several share data through PostgreSQL"),
    ("/_reshard", ("GET",), "resharding (/_reshard)", "a Settee database is one shard"),
    ("/_reshard/<rest:rest>", ("GET", "POST", "PUT", "DELETE"), "resharding (/_reshard)",
     "a Settee database is one shard"),
    ("/_search_analyze", ("POST",), "full-text search (Clouseau)", ""),
    ("/_nouveau_analyze", ("POST",), "full-text search (Nouveau)", ""),
    ("/_config", ("GET",), "CouchDB 1's /_config",
     "Settee's configuration is read at /_node/_local/_config"),
    ("/_node/<seg:node>/_system", ("GET",), "node system statistics (/_node/{node}/_system)",
     "/_node/_local/_stats and /_node/_local/_prometheus have Settee's figures"),
    ("/_node/<seg:node>/_restart", ("POST",), "restarting a node over HTTP",
     "restart the service (gunicorn reloads on SIGHUP)"),
    ("/_node/<seg:node>/_smoosh/<rest:rest>", ("GET",), "the compaction daemon (smoosh)",
     "compact with POST /{db}/_compact"),
    ("/_node/<seg:node>/<rest:rest>", ("GET",), "this node endpoint", ""),
    ("/<seg:db>/_sync_shards", ("POST",), "shard synchronisation",
     "a Settee database is one shard"),
    ("/<seg:db>/_design/<seg:ddoc>/_search/<seg:index>", ("GET", "POST"),
     "full-text search (Clouseau)", ""),
    ("/<seg:db>/_design/<seg:ddoc>/_search_info/<seg:index>", ("GET",),
     "full-text search (Clouseau)", ""),
    ("/<seg:db>/_design/<seg:ddoc>/_nouveau/<seg:index>", ("GET", "POST"),
     "full-text search (Nouveau)", ""),
    ("/<seg:db>/_design/<seg:ddoc>/_nouveau_info/<seg:index>", ("GET",),
     "full-text search (Nouveau)", ""),
]


def rules() -> list[Rule]:
    """The 501 routes, for the end of the URL map, each naming its line of the table
    (the map must not redirect to defaults: ``Map(redirect_defaults=False)``)."""
    return [Rule(path, endpoint="not_implemented", methods=METHODS, defaults={"route": path})
            for path, *_ in UNIMPLEMENTED]


def not_implemented(feature: str, instead: str = "") -> HTTPError:
    reason = f"Settee does not implement {feature}"
    return HTTPError(501, "not_implemented", f"{reason}: {instead}" if instead else reason)


class UnimplementedEndpoints:
    """What Settee answers for a CouchDB endpoint it lacks: 501, naming the feature."""

    def __init__(self, table=UNIMPLEMENTED):
        self.features = {path: (feature, instead) for path, _, feature, instead in table}

    def on_not_implemented(self, request, route: str, **_):
        raise not_implemented(*self.features[route])
