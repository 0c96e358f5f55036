"""Mango endpoints: ``POST /{db}/_find``, ``POST /{db}/_explain``, ``GET|POST /{db}/_index``
and ``DELETE /{db}/_index/{ddoc}/json/{name}``, and ``_find``/``_explain`` within one
partition (``/{db}/_partition/{partition}/...``); the query engine is ``views/mango.py``."""
from __future__ import annotations

from settee.store import Doc, Meta
from settee.views import mango
from settee.views.deadline import Deadline, QueryTimeout

from . import attachments
from .partitions import partition_of
from .views import query_timeout_error, view_for


class MangoEndpoints:
    """Mango queries and indexes; an index is a design document, saved by the write rules."""

    def __init__(self, http, writes):
        self.http = http
        self.writes = writes

    def on_find(self, request, db, partition=None):
        database = self.http.db(db)
        query = mango.parse_query(self.http.json_object(request), partition)
        try:
            result = mango.find(database, view_for, query,
                                Deadline(self.http.settings["query_timeout"]),
                                partitioned_db=database.partitioned())
        except QueryTimeout as e:
            raise query_timeout_error(e) from None
        result["docs"] = [attachments.stubs(doc) for doc in result["docs"]]
        return self.http.respond(request, result)

    def on_explain(self, request, db, partition=None):
        database = self.http.db(db)
        query = mango.parse_query(self.http.json_object(request), partition)
        return self.http.respond(request, mango.explain(
            database, query, db, partitioned_db=database.partitioned()))

    def on_partition_find(self, request, db, partition):
        return self.on_find(request, db, partition_of(self.http.db(db), partition))

    def on_partition_explain(self, request, db, partition):
        return self.on_explain(request, db, partition_of(self.http.db(db), partition))

    def on_index(self, request, db):
        database = self.http.db(db)
        if request.method == "GET":
            return self.http.respond(request, mango.list_indexes(database,
                                                                 database.partitioned()))
        self.http.check_writable()
        wanted = mango.index_request(self.http.json_object(request))
        current = database.get(wanted.ddoc)
        body = mango.index_design_doc(current, wanted)
        if body is None:
            return self.http.respond(request, {"result": "exists", "id": wanted.ddoc,
                                               "name": wanted.name})
        self.writes.check_design(request, database, wanted.ddoc, body)
        self.writes.write(request, database, wanted.ddoc,
                          Doc(body, Meta(rev=current["_rev"] if current is not None else None)))
        return self.http.respond(request, {"result": "created", "id": wanted.ddoc,
                                           "name": wanted.name})

    def on_index_drop(self, request, db, ddoc, name):
        database = self.http.db(db)
        mango.drop_index(database, ddoc, name)
        self.writes.design_saved(database, ddoc if ddoc.startswith("_design/") else "_design/" + ddoc)
        return self.http.respond(request, {"ok": True})
