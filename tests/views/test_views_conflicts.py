"""Map functions see a document's conflicts (``_conflicts``), as CouchDB's do: a view of
conflicts is how applications find them."""
from __future__ import annotations

import orjson
from httpclient import make_app, put


def test_a_map_function_sees_the_conflicts_of_a_document(tmp_path):
    app = make_app(tmp_path)
    app.put("/db", status=201)
    put(app, "/db/_design/c", {"views": {"conflicts": {"map": (
        "function (doc) { if (doc._conflicts) { emit(doc._id, "
        "[doc._rev].concat(doc._conflicts)); } }")}}})
    branches = [{"_id": "x", "_rev": f"1-{c * 32}", "v": c} for c in "ab"]
    r = app.post("/db/_bulk_docs", orjson.dumps({"docs": branches, "new_edits": False}),
                 content_type="application/json")
    assert r.status_int == 201
    put(app, "/db/plain", {"v": 1})
    rows = app.get("/db/_design/c/_view/conflicts").json["rows"]
    assert rows == [{"id": "x", "key": "x", "value": ["1-" + "b" * 32, "1-" + "a" * 32]}]
    loser = rows[0]["value"][1]
    app.delete(f"/db/x?rev={loser}")                       # resolved: out of the view
    assert app.get("/db/_design/c/_view/conflicts").json["rows"] == []
