"""POST /{db}/_purge: leaf revisions forgotten entirely, as CouchDB's purge."""
from __future__ import annotations

from httpclient import put


def conflicted(db):
    """d: 1-a -> 2-b (winner) and 1-a -> 2-c (replicated conflict)."""
    db.post_json("/db/_bulk_docs", {"new_edits": False, "docs": [
        {"_id": "d", "_rev": "2-b", "_revisions": {"start": 2, "ids": ["b", "a"]}, "v": "b"},
        {"_id": "d", "_rev": "2-c", "_revisions": {"start": 2, "ids": ["c", "a"]}, "v": "c"},
    ]}, status=201)


def test_purging_a_losing_leaf_resolves_the_conflict_without_a_trace(db):
    conflicted(db)
    winner = db.get("/db/d?conflicts=true").json
    loser = winner["_conflicts"][0]
    r = db.post_json("/db/_purge", {"d": [loser, "9-nope"]}, status=201).json
    assert r == {"purge_seq": None, "purged": {"d": [loser]}}
    doc = db.get("/db/d?conflicts=true&deleted_conflicts=true").json
    assert doc["_rev"] == winner["_rev"] and "_conflicts" not in doc
    assert [r["ok"]["_rev"] for r in db.get("/db/d?open_revs=all").json] == [winner["_rev"]]
    missing = db.post_json("/db/_revs_diff", {"d": [loser]}).json
    assert missing == {"d": {"missing": [loser]}}            # forgotten: it can come back
    assert db.get("/db").json["purge_seq"].startswith("1-")


def test_purging_the_winner_promotes_the_other_leaf(db):
    conflicted(db)
    winner = db.get("/db/d?conflicts=true").json
    db.post_json("/db/_purge", {"d": [winner["_rev"]]}, status=201)
    doc = db.get("/db/d").json
    assert doc["_rev"] == winner["_conflicts"][0] and doc["v"] == doc["_rev"][2:]


def test_purging_every_leaf_forgets_the_document_and_its_view_rows(db):
    put(db, "/db/_design/v", {"language": "python", "views": {"all": {
        "map": "def fun(doc):\n    yield doc['_id'], None\n"}}})
    rev = put(db, "/db/gone", {"x": 1}).json["rev"]
    put(db, "/db/kept", {"x": 2})
    assert len(db.get("/db/_design/v/_view/all").json["rows"]) == 2
    db.post_json("/db/_purge", {"gone": [rev]}, status=201)
    assert db.get("/db/gone", expect_errors=True).json["reason"] == "missing"   # no tombstone
    assert [r["id"] for r in db.get("/db/_all_docs").json["rows"]] == ["_design/v", "kept"]
    assert "gone" not in [c["id"] for c in db.get("/db/_changes").json["results"]]
    assert [r["id"] for r in db.get("/db/_design/v/_view/all").json["rows"]] == ["kept"]
    info = db.get("/db").json
    assert info["doc_count"] == 2 and info["doc_del_count"] == 0
    assert put(db, "/db/gone", {"x": 3}).json["rev"].startswith("1-")    # as if new


def test_a_purge_of_a_deleted_document_and_bad_requests(db):
    rev = put(db, "/db/t", {"x": 1}).json["rev"]
    tomb = db.delete(f"/db/t?rev={rev}").json["rev"]
    assert db.get("/db").json["doc_del_count"] == 1
    db.post_json("/db/_purge", {"t": [tomb]}, status=201)
    assert db.get("/db").json["doc_del_count"] == 0
    assert db.post_json("/db/_purge", {"x": "1-a"}, expect_errors=True).status_int == 400
    assert db.post_json("/db/_purge", {f"d{i}": [] for i in range(101)},
                        expect_errors=True).status_int == 400
    assert db.post_json("/db/_purge", {"nothere": ["1-a"]}).json["purged"] == {"nothere": []}
