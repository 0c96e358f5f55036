"""What a CouchDB cluster's node says of itself, answered as the one node Settee is:
``/_membership``, ``/_node/{node}``, ``/_node/{node}/_versions`` and ``/{db}/_shards``.

Settee serves every database whole from each worker (several servers share data
through PostgreSQL, not through shards), so it answers as a single-node CouchDB
does: one node, :data:`NODE` (CouchDB's own name for a node not set up as a cluster
member), and one shard per database covering every document id.
"""
from __future__ import annotations

import platform
import sqlite3
from functools import lru_cache

from .errors import not_found

#: The node's name, as ``/_membership`` lists it; ``_local`` names it too.
NODE = "nonode@nohost"
#: The one shard's range of document id hashes.
WHOLE_RANGE = "00000000-ffffffff"


def check_node(node: str) -> str:
    """``node`` if it names this node (``_local`` or :data:`NODE`), else 404."""
    if node not in ("_local", NODE):
        raise not_found(f"No node named {node}; this server is {NODE} (or _local)")
    return NODE


@lru_cache(maxsize=1)
def v8_version() -> str | None:
    """The V8 that runs design documents' JavaScript (asked once: it starts an isolate)."""
    try:
        from py_mini_racer import MiniRacer
        racer = MiniRacer()
        try:
            return str(racer.v8_version)
        finally:
            racer.close()
    except Exception:               # absent, or it fails to start: say nothing of it
        return None


def versions() -> dict:
    """``_versions``: what runs the node, in CouchDB's shape (Settee's own beside)."""
    from .node import VERSION
    out = {"settee": {"version": VERSION},
           "python": {"version": platform.python_version(),
                      "implementation": platform.python_implementation()},
           "collation_driver": {"name": "settee", "description": "CouchDB's view "
                                "collation, in Python (settee.views.collation)"},
           "storage": {"sqlite": sqlite3.sqlite_version}}
    engine = v8_version()
    if engine is not None:
        out["javascript_engine"] = {"name": "v8", "version": engine}
    return out


class ClusterEndpoints:
    """The node and its shards, as a one-node CouchDB answers for them."""

    def __init__(self, http):
        self.http = http

    def on_membership(self, request):
        return self.http.respond(request, {"all_nodes": [NODE], "cluster_nodes": [NODE]})

    def on_node(self, request, node):
        return self.http.respond(request, {"name": check_node(node)})

    def on_versions(self, request, node):
        check_node(node)
        return self.http.respond(request, versions())

    def on_shards(self, request, db):
        self.http.db(db)
        return self.http.respond(request, {"shards": {WHOLE_RANGE: [NODE]}})

    def on_doc_shard(self, request, db, docid):
        self.http.db(db)
        return self.http.respond(request, {"range": WHOLE_RANGE, "nodes": [NODE]})
