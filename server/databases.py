"""Database endpoints: ``/{db}`` (info, create (``?partitioned=true``: partitioned),
delete; a POST is a new document),
``_security``, ``_compact``, ``_ensure_full_commit``, ``_revs_limit`` and
``_purged_infos_limit``. ``q`` and ``n`` on create are checked and otherwise ignored:
a Settee database is one shard, its one copy."""
from __future__ import annotations

from urllib.parse import quote

from .auth import check_security
from .errors import HTTPError, bad_request
from .seqs import format_seq

#: Names at the top of the path that are server endpoints, never databases.
#: CouchDB's limits on one purge request (max_document_id_number, max_revisions_number).
MAX_PURGE_DOCS, MAX_PURGE_REVS = 100, 1000

SERVER_ENDPOINTS = {"_all_dbs", "_uuids", "_up", "_active_tasks", "_session", "_utils",
                    "_node", "_config", "_replicate", "_scheduler", "_membership",
                    "_cluster_setup", "_dbs_info", "_stats", "_metrics", "_openapi.json"}


def database_info(database) -> dict:
    info = database.info()
    seq = format_seq(database, info["update_seq"])
    return {"db_name": database.name, "doc_count": info["doc_count"],
            "doc_del_count": info["doc_del_count"], "update_seq": seq,
            "purge_seq": format_seq(database, info["purge_seq"]), "compact_running": False,
            "sizes": {"file": info["size"], "external": info["size"], "active": info["size"]},
            "disk_size": info["size"], "data_size": info["size"],
            "disk_format_version": 8, "committed_update_seq": info["update_seq"],
            "instance_start_time": "0",
            "props": database.props(), "cluster": {"q": 1, "n": 1, "w": 1, "r": 1}}


class DatabaseEndpoints:
    """One database as a whole; ``POST /{db}`` is handed to the document endpoints."""

    def __init__(self, http, documents, design_saved):
        self.http = http
        self.documents = documents
        self.design_saved = design_saved        # the write rules': a purged design doc

    def on_database(self, request, db):
        http, method = self.http, request.method
        if db in SERVER_ENDPOINTS:
            raise HTTPError(405, "method_not_allowed", f"{db} does not take {method}")
        if method in ("GET", "HEAD"):
            return http.respond(request, database_info(http.db(db)))
        if method == "PUT":
            http.check_writable()
            partitioned = request.args.get("partitioned", "false")
            if partitioned not in ("true", "false"):
                raise bad_request("`partitioned` must be true or false")
            for option in ("q", "n"):      # a cluster's shards and replicas: Settee has one
                value = request.args.get(option, "1")
                if not value.isdigit() or int(value) < 1:
                    raise bad_request(f"The `{option}` value should be a positive integer.")
            http.catalog.create(db, {"partitioned": True} if partitioned == "true" else None)
            return http.respond(request, {"ok": True}, 201, {"Location": "/" + quote(db, safe="")})
        if method == "DELETE":
            if "rev" in request.args:
                raise bad_request("You tried to DELETE a database with a ?rev= parameter. "
                                  "Did you mean to DELETE a document instead?")
            http.catalog.delete(db)
            return http.respond(request, {"ok": True})
        return self.documents.post_document(request, db)

    def on_security(self, request, db):
        database = self.http.db(db)
        if request.method == "GET":
            return self.http.respond(request, database.security())
        database.set_security(check_security(self.http.json_object(request)))
        return self.http.respond(request, {"ok": True})

    def on_compact(self, request, db):
        database = self.http.db(db)
        database.compact()
        return self.http.respond(request, {"ok": True}, 202)

    def on_ensure_full_commit(self, request, db):
        self.http.db(db)
        return self.http.respond(request, {"ok": True, "instance_start_time": "0"}, 201)

    def on_revs_limit(self, request, db):
        database = self.http.db(db)
        if request.method == "GET":
            return self.http.respond(request, database.revs_limit())
        limit = self.http.body(request)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise bad_request("The revs_limit must be a positive integer")
        database.set_revs_limit(limit)
        return self.http.respond(request, {"ok": True})

    def on_purge(self, request, db):
        """``POST /{db}/_purge`` ``{docid: [rev, ...]}``: those leaf revisions forgotten
        entirely (CouchDB's purge; database admins). Answers which were purged."""
        self.http.check_writable()
        database = self.http.db(db)
        body = self.http.json_object(request)
        if len(body) > MAX_PURGE_DOCS:
            raise bad_request(f"Exceeded maximum number of documents ({MAX_PURGE_DOCS}) "
                              "in one purge")
        for docid, revs in body.items():
            if not isinstance(revs, list) or not all(isinstance(r, str) for r in revs):
                raise bad_request(f"revisions of {docid!r} must be an array of strings")
            if len(revs) > MAX_PURGE_REVS:
                raise bad_request(f"Exceeded maximum number of revisions ({MAX_PURGE_REVS}) "
                                  "in one purge")
        purged = {docid: database.purge(docid, revs) for docid, revs in body.items()}
        for docid in body:
            if docid.startswith("_design/") and purged[docid]:
                self.design_saved(database, docid)
        return self.http.respond(request, {"purge_seq": None, "purged": purged}, 201)

    def on_purged_infos_limit(self, request, db):
        """How many purges the database would remember (stored, as CouchDB's; Settee
        keeps no list of past purges, only their count, ``purge_seq``)."""
        database = self.http.db(db)
        if request.method == "GET":
            return self.http.respond(request, database.purged_infos_limit())
        limit = self.http.body(request)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise bad_request("`purged_infos_limit` must be positive integer")
        database.set_purged_infos_limit(limit)
        return self.http.respond(request, {"ok": True})
