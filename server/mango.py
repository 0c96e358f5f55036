"""Mango endpoints: ``POST /{db}/_find``, ``POST /{db}/_explain``, ``GET|POST /{db}/_index``
and ``DELETE /{db}/_index/{ddoc}/json/{name}`` (the query engine is ``views/mango.py``)."""
from __future__ import annotations

from settee.store import Doc, Meta
from settee.views import mango
from settee.views.deadline import Deadline, QueryTimeout

from . import attachments
from .views import query_timeout_error, view_for


class MangoEndpoints:
    """Mango queries and indexes; an index is a design document, saved by the write rules."""

    def __init__(self, http, writes):
        self.http = http
        self.writes = writes

    def on_find(self, request, db):
        database = self.http.db(db)
        query = mango.parse_query(self.http.json_object(request))
        try:
            result = mango.find(database, view_for, query,
                                Deadline(self.http.settings["query_timeout"]))
        except QueryTimeout as e:
            raise query_timeout_error(e) from None
        result["docs"] = [attachments.stubs(doc) for doc in result["docs"]]
        return self.http.respond(request, result)

    def on_explain(self, request, db):
        database = self.http.db(db)
        query = mango.parse_query(self.http.json_object(request))
        return self.http.respond(request, mango.explain(database, query, db))

    def on_index(self, request, db):
        database = self.http.db(db)
        if request.method == "GET":
            return self.http.respond(request, mango.list_indexes(database))
        self.http.check_writable()
        fields, name, ddoc = mango.index_request(self.http.json_object(request))
        docid = ddoc if ddoc.startswith("_design/") else "_design/" + ddoc
        current = database.get(docid)
        if current is not None and name in (current.get("views") or {}) and \
                [ix for ix in mango.indexes_of(current)
                 if ix.name == name and list(ix.fields) == [f for f, _ in fields]]:
            return self.http.respond(request, {"result": "exists", "id": docid, "name": name})
        body = mango.index_design_doc(current, fields, name)
        self.writes.write(request, database, docid,
                          Doc(body, Meta(rev=current["_rev"] if current is not None else None)))
        return self.http.respond(request, {"result": "created", "id": docid, "name": name})

    def on_index_drop(self, request, db, ddoc, name):
        database = self.http.db(db)
        mango.drop_index(database, ddoc, name)
        self.writes.design_saved(database, ddoc if ddoc.startswith("_design/") else "_design/" + ddoc)
        return self.http.respond(request, {"ok": True})
