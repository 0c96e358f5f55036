"""The upkeep of view indexes, as CouchDB's API has it: ``GET
/{db}/_design/{ddoc}/_info``, ``POST /{db}/_view_cleanup``, ``POST
/{db}/_compact/{ddoc}``, and ``/{db}/_temp_view``, which CouchDB 3 no longer serves
(410 Gone)."""
from __future__ import annotations

import hashlib

from settee.views import definitions
from settee.views.engine import indexed_views
from settee.views.indexes import indexes_of

from .errors import HTTPError


class ViewIndexEndpoints:
    """Design documents' index information, clean-up and compaction."""

    def __init__(self, http):
        self.http = http

    def on_design_info(self, request, db, ddoc):
        """CouchDB's ``_info``: the design document's views together (their signature,
        language, sizes, whether an update runs, the sequence they are all up to)."""
        database = self.http.db(db)
        doc = database[f"_design/{ddoc}"]
        specs = definitions.design_views(doc)
        identities = sorted(spec.identity for spec in specs.values())
        stored = {vid: state for vid, _, state in indexed_views(database)
                  if vid in identities}
        indexes = indexes_of(database)
        running = any(indexes.updating(indexes.view(spec).vid) for spec in specs.values())
        seqs = [stored[vid].get("seq", 0) if vid in stored else 0 for vid in identities]
        return self.http.respond(request, {"name": ddoc, "view_index": {
            "signature": hashlib.md5("".join(identities).encode()).hexdigest(),
            "language": doc.get("language", "javascript"),
            # the indexes live in the database's storage, not in files of their own:
            # their bytes are counted in GET /{db}'s sizes, not here
            "sizes": {"file": 0, "external": 0, "active": 0},
            "updater_running": running or any(s.get("building") for s in stored.values()),
            "compact_running": False,
            "waiting_clients": 0,
            "waiting_commit": False,
            "update_seq": min(seqs) if seqs else 0,
            "purge_seq": 0,
        }})

    def on_view_cleanup(self, request, db):
        """Drop the indexes no design document uses any more (202, as CouchDB)."""
        database = self.http.db(db)
        indexes_of(database).drop_unused()
        return self.http.respond(request, {"ok": True}, 202)

    def on_compact_design(self, request, db, ddoc):
        """202 once the design document exists: Settee's indexes live in the database's
        own storage and are compacted with it (``POST /{db}/_compact``)."""
        database = self.http.db(db)
        database[f"_design/{ddoc}"]             # 404 for a design document that is not there
        return self.http.respond(request, {"ok": True}, 202)

    def on_temp_view(self, request, db):
        self.http.db(db)
        raise HTTPError(410, "gone", "Temporary views are not supported in CouchDB 3; "
                        "save the view in a design document")
