"""The document-database contract, run against every backend and layer stack.

``DocumentContract`` is not collected (no ``Test`` prefix); each subclass names a
backend and a ``storage_stack`` and the whole contract runs against it, through
:class:`~settee.store.catalog.Catalog` as the server uses it.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import time

import orjson
import pytest

from settee.config import load_settings
from settee.store.catalog import Catalog
from settee.store.exceptions import BadRequest, Conflict, Deleted, NotFound, ValidationFailed
from settee.store.sync import LocalPeer

DEFAULT_STACK = ["validation", "timestamps", "versioning", "serialization", "compression"]
KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
from paths import SHARED_BENCH as BENCH  # noqa: E402

HOSTILE_IDS = ["ünïcødé-ключ-鍵", "emoji-😀", "a/b/c", "../../etc/passwd", "..", ".",
               "with space", "%2F..%2F", "-rf", "~outbox/x", "x" * 1000, "d/x", "CON"]

INVOICE = {"type": "invoice", "customer": "customer-00042", "date": "2026-03-15",
           "payments": [{"type": "VISA", "amount": 14.00}],
           "lineItems": [{"description": "Dive into Python", "amount": 17.00,
                          "allocation": {"code1": {"amount": 5.00, "paid": 5.00},
                                         "code2": {"amount": 12.00, "paid": 9.00}}}]}


def digest(char: str) -> str:
    return char * 32


class DocumentContract:
    backend = "memory"
    stack = DEFAULT_STACK

    def extra_settings(self, tmp_path) -> dict:
        return {}

    @pytest.fixture
    def catalog(self, tmp_path):
        settings = load_settings(env={}, storage_data_dir=str(tmp_path / "data"),
                                 storage_backend=self.backend, storage_stack=self.stack,
                                 examples=["invoices"],     # validation: the talk's schema
                                 **self.extra_settings(tmp_path))
        catalog = Catalog(settings)
        yield catalog
        catalog.close()

    @pytest.fixture
    def db(self, catalog):
        return catalog.create("db")

    # -- create, read, update ----------------------------------------------------------
    def test_a_new_document_gets_a_first_revision(self, db):
        doc = db.save({"_id": "a", "n": 1})
        assert doc.meta.rev.startswith("1-")
        got = db["a"]
        assert got == {"_id": "a", "_rev": doc.meta.rev, "n": 1}
        assert got.meta.rev == doc.meta.rev and got.meta.seq == doc.meta.seq

    def test_an_update_naming_the_current_rev_makes_the_next_revision(self, db):
        first = db.save({"_id": "a", "n": 1}).meta.rev
        second = db.save({"_id": "a", "_rev": first, "n": 2}).meta.rev
        assert second.startswith("2-") and second != first
        assert db["a"]["n"] == 2 and db["a"]["_rev"] == second

    def test_a_read_document_written_back_is_an_update(self, db):
        db["a"] = {"n": 1}
        doc = db["a"]
        doc["n"] = 2
        db["a"] = doc
        assert db["a"]["n"] == 2 and db["a"]["_rev"].startswith("2-")

    def test_an_empty_document_can_be_updated(self, db):
        first = db.save({"_id": "e"}).meta.rev
        second = db.save({"_id": "e", "_rev": first}).meta.rev
        assert second.startswith("2-")
        assert db.info()["doc_count"] == 1
        with pytest.raises(Conflict):
            db.save({"_id": "e"})

    def test_put_with_a_stale_rev_is_a_conflict_naming_both_revs(self, db):
        first = db.save({"_id": "a", "n": 1}).meta.rev
        second = db.save({"_id": "a", "_rev": first, "n": 2}).meta.rev
        with pytest.raises(Conflict) as info:
            db.save({"_id": "a", "_rev": first, "n": 3})
        assert (info.value.key, info.value.current, info.value.given) == ("a", second, first)
        assert db["a"]["n"] == 2

    def test_a_write_without_rev_on_an_existing_document_is_a_conflict(self, db):
        rev = db.save({"_id": "a"}).meta.rev
        with pytest.raises(Conflict) as info:
            db["a"] = {"n": 2}
        assert (info.value.current, info.value.given) == (rev, None)

    def test_a_rev_on_a_missing_document_is_a_conflict(self, db):
        with pytest.raises(Conflict):
            db.save({"_id": "nope", "_rev": "1-" + digest("a")})

    def test_a_missing_document_is_not_found_with_reason_missing(self, db):
        with pytest.raises(NotFound) as info:
            db["nope"]
        assert not isinstance(info.value, Deleted)
        assert info.value.reason == "missing" and info.value.key == "nope"
        assert "nope" not in db and db.get("nope") is None

    # -- deletion ------------------------------------------------------------------
    def test_delete_leaves_a_tombstone_read_as_deleted(self, db):
        rev = db.save({"_id": "a", "n": 1}).meta.rev
        gone = db.delete("a", rev)
        assert gone.meta.rev.startswith("2-")
        with pytest.raises(Deleted) as info:
            db["a"]
        assert info.value.reason == "deleted" and info.value.rev == gone.meta.rev
        assert "a" not in db and list(db) == []
        assert db["a", gone.meta.rev].get("_deleted") is True

    def test_delete_with_a_stale_rev_is_a_conflict(self, db):
        first = db.save({"_id": "a"}).meta.rev
        db.save({"_id": "a", "_rev": first})
        with pytest.raises(Conflict):
            db.delete("a", first)
        assert "a" in db

    def test_del_deletes_the_current_revision(self, db):
        db["a"] = {"n": 1}
        del db["a"]
        with pytest.raises(Deleted):
            db["a"]
        with pytest.raises(KeyError):
            del db["a"]
        with pytest.raises(KeyError):
            del db["never"]

    def test_a_deleted_document_can_be_recreated(self, db):
        rev = db.save({"_id": "a", "n": 1}).meta.rev
        gone = db.delete("a", rev).meta.rev
        again = db.save({"_id": "a", "n": 2}).meta.rev
        assert again.startswith("3-")
        assert db["a"]["n"] == 2 and db["a", gone]["_deleted"] is True
        assert db.info()["doc_count"] == 1 and db.info()["doc_del_count"] == 0

    # -- history -------------------------------------------------------------------
    def test_old_revisions_are_readable_until_compaction(self, db):
        revs = [db.save({"_id": "a", "n": 0}).meta.rev]
        for n in range(1, 4):
            revs.append(db.save({"_id": "a", "_rev": revs[-1], "n": n}).meta.rev)
        for n, rev in enumerate(revs):
            old = db["a", rev]
            assert old["n"] == n and old["_rev"] == rev
        assert db.get("a", rev=revs[0])["n"] == 0
        assert db.compact() == 3
        assert db["a", revs[-1]]["n"] == 3
        for rev in revs[:-1]:
            with pytest.raises(NotFound):
                db["a", rev]
        assert db["a"]["n"] == 3

    def test_revs_limit_trims_the_history_and_old_bodies(self, db):
        db.versions.set_revs_limit(3)
        assert db.versions.get_revs_limit() == 3
        revs = [db.save({"_id": "a", "n": 0}).meta.rev]
        for n in range(1, 6):
            revs.append(db.save({"_id": "a", "_rev": revs[-1], "n": n}).meta.rev)
        current = db["a"]
        assert len(current.meta.revisions) == 3
        assert current.meta.revisions[0] == revs[-1].split("-", 1)[1]
        assert db["a", revs[-2]]["n"] == 4 and db["a", revs[-3]]["n"] == 3
        for rev in revs[:-3]:
            with pytest.raises(NotFound):
                db["a", rev]

    # -- the changes feed ------------------------------------------------------------
    def test_changes_list_each_document_once_at_its_latest_seq(self, db):
        a = db.save({"_id": "a"}).meta.rev
        db.save({"_id": "b"})
        a2 = db.save({"_id": "a", "_rev": a}).meta.rev
        c = db.save({"_id": "c"}).meta.rev
        gone = db.delete("c", c).meta.rev
        changes = list(db.changes())
        assert [(ch.id, ch.rev, ch.deleted) for ch in changes] == [
            ("b", db["b"]["_rev"], False), ("a", a2, False), ("c", gone, True)]
        seqs = [ch.seq for ch in changes]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        assert seqs[-1] == db.info()["update_seq"] == 5

    def test_changes_since_a_seq_list_only_later_changes(self, db):
        for n in range(5):
            db.save({"_id": f"d{n}"})
        later = list(db.changes(since=3))
        assert [ch.id for ch in later] == ["d3", "d4"]
        assert [ch.id for ch in db.changes(since=5)] == []
        assert [ch.id for ch in db.changes(descending=True)][0] == "d4"

    def test_doc_count_and_del_count_follow_writes(self, db):
        revs = {i: db.save({"_id": f"d{i}"}).meta.rev for i in range(4)}
        db.delete("d0", revs[0])
        db.delete("d1", revs[1])
        info = db.info()
        assert (info["doc_count"], info["doc_del_count"]) == (2, 2)
        assert len(db) == 2 and sorted(db) == ["d2", "d3"]
        assert [doc_id for doc_id, _ in db.docs()] == ["d2", "d3"]

    # -- local documents -------------------------------------------------------------
    def test_local_documents_are_not_versioned_counted_or_in_changes(self, db):
        db.save({"_id": "_local/checkpoint", "seq": 1})
        assert db["_local/checkpoint"]["_rev"] == "0-1"
        db.save({"_id": "_local/checkpoint", "_rev": "0-1", "seq": 2})
        assert db["_local/checkpoint"]["_rev"] == "0-2"
        assert db["_local/checkpoint"]["seq"] == 2
        assert list(db.changes()) == [] and db.info()["doc_count"] == 0 and list(db) == []
        with pytest.raises(Conflict):
            db.save({"_id": "_local/checkpoint", "_rev": "0-1", "seq": 3})
        del db["_local/checkpoint"]
        with pytest.raises(NotFound):
            db["_local/checkpoint"]

    # -- replicated revisions and conflicts ---------------------------------------------
    def replicate_branches(self, db, order):
        """A doc at 1-a, then two replicated children 2-b and 2-c, in ``order``."""
        db.save({"_id": "x", "_rev": "1-" + digest("a"), "v": "base"}, new_edits=False)
        branches = {
            "b": {"_id": "x", "_rev": "2-" + digest("b"), "v": "b",
                  "_revisions": {"start": 2, "ids": [digest("b"), digest("a")]}},
            "c": {"_id": "x", "_rev": "2-" + digest("c"), "v": "c",
                  "_revisions": {"start": 2, "ids": [digest("c"), digest("a")]}},
        }
        for name in order:
            db.save(branches[name], new_edits=False)

    def test_replicated_revisions_are_stored_as_given(self, db):
        doc = db.save({"_id": "x", "_rev": "3-" + digest("f"), "v": 1}, new_edits=False)
        assert doc.meta.rev == "3-" + digest("f") and db["x"]["_rev"] == doc.meta.rev
        db.save({"_id": "x", "_rev": "3-" + digest("f"), "v": 1}, new_edits=False)
        assert len(list(db.changes())) == 1           # an already known rev is a no-op

    def test_replicated_branches_conflict_and_the_winner_is_deterministic(self, catalog):
        one, two = catalog.create("one"), catalog.create("two")
        self.replicate_branches(one, "bc")
        self.replicate_branches(two, "cb")
        for db in (one, two):
            doc = db["x"]
            assert doc["_rev"] == "2-" + digest("c") and doc["v"] == "c"
            assert doc.meta.conflicts == ["2-" + digest("b")]
            assert db["x", "2-" + digest("b")]["v"] == "b"
            assert db.info()["doc_count"] == 1

    def test_deleting_the_losing_revision_resolves_the_conflict(self, db):
        self.replicate_branches(db, "bc")
        gone = db.delete("x", "2-" + digest("b"))
        assert gone.meta.rev.startswith("3-")
        doc = db["x"]
        assert doc["_rev"] == "2-" + digest("c") and doc.meta.conflicts == []
        assert db.info()["doc_count"] == 1

    def test_deleting_the_winner_of_a_conflict_promotes_the_loser(self, db):
        self.replicate_branches(db, "bc")
        db.delete("x", "2-" + digest("c"))
        doc = db["x"]
        assert doc["_rev"] == "2-" + digest("b") and doc.meta.conflicts == []

    # -- batches (save_many: one read and one write below for many documents) ----------
    def test_a_batch_answers_each_document_as_a_write_of_it_alone_would(self, db):
        first = db.save({"_id": "old", "v": 0}).meta.rev
        out = db.save_many([
            {"_id": "new", "v": 1},                       # created
            {"_id": "old", "_rev": first, "v": 1},        # edited
            {"_id": "old", "_rev": first, "v": 2},        # its rev is no longer a leaf
            {"_id": "nobody", "_rev": "1-" + digest("a")},  # a rev of nothing
            {"_id": "_local/cp", "seq": 5},               # local: stored as such
            {"v": "no id"},                               # given one
            {"_id": "new", "_deleted": True},             # names no rev: a conflict
        ])
        assert [type(o).__name__ for o in out] == ["Doc", "Doc", "Conflict", "Conflict",
                                                   "Doc", "Doc", "Conflict"]
        assert out[0].meta.rev.startswith("1-") and db["new"]["v"] == 1
        assert out[1].meta.rev.startswith("2-") and db["old"]["v"] == 1
        assert db["_local/cp"]["seq"] == 5 and db[out[5].meta.id]["v"] == "no id"
        assert "nobody" not in db
        assert (db.info()["doc_count"], db.info()["update_seq"]) == (3, 4)
        assert [c.id for c in db.changes()] == ["new", "old", out[5].meta.id]

    def test_an_id_the_backend_cannot_store_is_refused_alone_in_a_batch(self, db):
        out = db.save_many([{"_id": "a"}, {"_id": "nul\x00id"}, {"_id": "b"}])
        assert isinstance(out[1], BadRequest) and sorted(db) == ["a", "b"]
        assert db.info()["update_seq"] == 2

    def test_a_batch_follows_its_own_writes(self, db):
        one = {"_id": "x", "v": 1}
        out = db.save_many([one])
        two = db.save_many([{"_id": "x", "_rev": out[0].meta.rev, "v": 2},
                            {"_id": "x", "_rev": "2-" + digest("0"), "v": 3}])
        assert isinstance(two[1], Conflict) and two[1].current == two[0].meta.rev
        out = db.save_many([{"_id": "y", "v": 1}, {"_id": "y", "_deleted": True}])
        assert isinstance(out[1], Conflict)     # y exists by then: a delete names its rev
        assert db["y"]["v"] == 1
        assert db["x"]["v"] == 2 and db.leaves("x") == [(two[0].meta.rev, False)]

    def test_a_replicated_batch_merges_every_path_once(self, db):
        out = db.save_many([
            {"_id": "x", "_rev": "2-" + digest("b"), "_revisions": {
                "start": 2, "ids": [digest("b"), digest("a")]}, "v": "b"},
            {"_id": "x", "_rev": "2-" + digest("c"), "_revisions": {
                "start": 2, "ids": [digest("c"), digest("a")]}, "v": "c"},
            {"_id": "x", "_rev": "2-" + digest("b"), "v": "again"},
            {"_id": "x", "_rev": "bad"},
        ], new_edits=False)
        assert isinstance(out[3], BadRequest) and not isinstance(out[0], Exception)
        assert db["x"]["v"] == "c" and db["x"].meta.conflicts == ["2-" + digest("b")]
        assert db["x", "2-" + digest("b")]["v"] == "b"
        assert len(list(db.changes())) == 1 and db.info()["update_seq"] == 2

    # -- the revision tree (CouchDB's rules, whatever order revisions arrive in) ---------
    def replicate(self, db, rev, ids=None, deleted=False, **body):
        doc = {"_id": "x", "_rev": rev, **body}
        if ids is not None:
            doc["_revisions"] = {"start": int(rev.split("-")[0]), "ids": ids}
        if deleted:
            doc["_deleted"] = True
        return db.save(doc, new_edits=False)

    def live_and_deleted(self, db, order):
        """Leaves 1-b1 (live) and 3-a3 (deleted, after 1-a1 and 2-a2), in ``order``."""
        for name in order:
            if name == "b":
                self.replicate(db, "1-b1", v="b1")
            else:
                self.replicate(db, "3-a3", ["a3", "a2", "a1"], deleted=True)

    @pytest.mark.parametrize("order", ["ab", "ba"])
    def test_a_live_leaf_beats_a_deleted_leaf_of_a_higher_generation(self, db, order):
        self.live_and_deleted(db, order)
        doc = db["x"]
        assert doc["_rev"] == "1-b1" and doc["v"] == "b1" and doc.meta.conflicts == []
        assert [tuple(leaf) for leaf in db.leaves("x")] == [("1-b1", False), ("3-a3", True)]
        assert db.record("x").meta.tree.deleted_conflicts() == ["3-a3"]
        assert (db.info()["doc_count"], db.info()["doc_del_count"]) == (1, 0)
        assert [(c.id, c.rev, c.deleted) for c in db.changes()] == [("x", "1-b1", False)]
        assert [c.others for c in db.changes()] == [("3-a3",)]     # its other leaves

    def test_replicas_fed_in_any_order_hold_the_same_tree_and_winner(self, catalog):
        paths = [("1-a", None, False), ("2-b", ["b", "a"], False), ("2-c", ["c", "a"], True),
                 ("3-d", ["d", "b", "a"], False), ("2-e", ["e", "a"], False)]
        trees = set()
        for n, order in enumerate([paths, paths[::-1], paths[2:] + paths[:2]]):
            db = catalog.create(f"replica{n}")
            for rev, ids, deleted in order:
                self.replicate(db, rev, ids, deleted, v=rev)
            record = db.record("x")        # the shape and the leaves; which inner bodies
            tree = record.meta.tree          # a replica holds is its own affair
            trees.add((record.meta.rev, tuple(tree.leaves()),
                       tuple(tuple(node[:3]) for node in tree.to_json())))
            assert db["x"]["v"] == "3-d" and db["x"].meta.conflicts == ["2-e"]
            assert db["x", "2-e"]["v"] == "2-e" and db["x", "2-c"]["_deleted"] is True
        assert len(trees) == 1

    def test_a_replicated_partial_path_joins_the_history_it_shares(self, db):
        self.replicate(db, "1-a")
        self.replicate(db, "2-b", ["b", "a"])
        self.replicate(db, "3-c", ["c", "b"])
        self.replicate(db, "4-d", ["d", "c"])
        doc = db["x"]
        assert doc["_rev"] == "4-d" and doc.meta.revisions == ["d", "c", "b", "a"]
        assert doc.meta.conflicts == [] and [leaf.rev for leaf in db.leaves("x")] == ["4-d"]

    def test_a_replicated_revision_is_the_one_its_revisions_name(self, db):
        """``_revisions`` win over a ``_rev`` at odds with them (CouchDB): PouchDB's
        replicator sends such pairs when a hash repeats in a history (its #789)."""
        self.replicate(db, "1-a", v=1)
        doc = db.save({"_id": "x", "_rev": "2-a", "_revisions": {"start": 1, "ids": ["a"]},
                       "v": 2}, new_edits=False)
        assert doc.meta.rev is None or doc.meta.rev == "1-a"     # had it: nothing written
        db.save({"_id": "x", "_rev": "3-c", "_revisions": {"start": 2, "ids": ["c", "a"]},
                 "v": 3}, new_edits=False)
        assert db["x"]["_rev"] == "2-c" and db["x"].meta.revisions == ["c", "a"]

    def test_revs_diff_knows_every_stored_revision_and_names_possible_ancestors(self, db):
        self.live_and_deleted(db, "ab")
        assert db.revs_diff("x", ["1-a1", "2-a2", "3-a3", "1-b1"]) == []
        assert db.missing_revs("x", ["2-zz", "1-a1"]) == (["2-zz"], ["1-b1"])
        assert db.missing_revs("x", ["5-q"]) == (["5-q"], ["1-b1", "3-a3"])
        assert db.missing_revs("nothing", ["1-a"]) == (["1-a"], [])

    def test_a_new_document_written_deleted_is_a_tombstone(self, db):
        gone = db.save({"_id": "x", "_deleted": True}).meta.rev
        assert gone.startswith("1-")
        with pytest.raises(Deleted) as info:
            db["x"]
        assert info.value.rev == gone and db["x", gone]["_deleted"] is True
        assert (db.info()["doc_count"], db.info()["doc_del_count"]) == (0, 1)
        assert [(c.id, c.rev, c.deleted) for c in db.changes()] == [("x", gone, True)]
        assert db.save({"_id": "x", "n": 1}).meta.rev.startswith("2-")
        with pytest.raises(NotFound):
            db.delete("never", None)                # DELETE without a rev: not there
        with pytest.raises(KeyError):
            del db["never"]

    def test_a_deleted_document_is_recreated_without_a_rev_not_with_its_tombstones(self, db):
        rev = db.save({"_id": "a"}).meta.rev
        gone = db.delete("a", rev).meta.rev
        with pytest.raises(Conflict):               # CouchDB: 409 naming the tombstone
            db.save({"_id": "a", "_rev": gone, "n": 2})
        with pytest.raises(Deleted):
            db.delete("a", gone)
        assert db.save({"_id": "a", "n": 2}).meta.rev.startswith("3-")

    def test_a_write_to_a_losing_branch_keeps_one_changes_row_with_the_winner(self, db):
        self.replicate(db, "1-a", v="a")
        self.replicate(db, "2-b", ["b", "a"], v="b")
        self.replicate(db, "3-" + digest("z"), [digest("z"), "c", "a"], v="z")
        winner = "3-" + digest("z")
        assert [(c.id, c.rev) for c in db.changes()] == [("x", winner)]
        edited = db.save({"_id": "x", "_rev": "2-b", "v": "b2"}).meta.rev   # still loses
        assert edited.startswith("3-") and db["x"]["_rev"] == winner
        self.replicate(db, "3-b3", ["b3", "b"], deleted=True)              # a dead branch
        changes = list(db.changes())
        assert [(c.id, c.rev, c.deleted) for c in changes] == [("x", winner, False)]
        assert changes[0].seq == db.info()["update_seq"]
        assert db["x"].meta.conflicts == [edited] and db["x", edited]["v"] == "b2"
        assert db["x"]["v"] == "z"

    def test_an_edit_must_name_a_leaf(self, db):
        self.replicate(db, "1-a")
        self.replicate(db, "2-b", ["b", "a"])
        self.replicate(db, "2-c", ["c", "a"])
        with pytest.raises(Conflict):
            db.save({"_id": "x", "_rev": "1-a"})    # an inner revision
        db.save({"_id": "x", "_rev": "2-b", "_deleted": True})      # a losing leaf
        assert db["x"]["_rev"] == "2-c" and db["x"].meta.conflicts == []
        assert [leaf.deleted for leaf in db.leaves("x")] == [False, True]

    def test_revs_limit_stems_every_branch_of_the_tree(self, db):
        db.versions.set_revs_limit(2)
        self.replicate(db, "4-d", ["d", "c", "b", "a"], v="d")
        assert db["x"].meta.revisions == ["d", "c"]
        self.replicate(db, "3-x", ["x", "b", "a"], v="x")   # a branch from a stemmed rev
        assert db["x"].meta.conflicts == ["3-x"] and db["x", "3-x"].meta.revisions == ["x", "b"]
        tree = db.record("x").meta.tree
        assert sorted(tree) == ["2-b", "3-c", "3-x", "4-d"]
        rev = db.save({"_id": "x", "_rev": "4-d", "v": "e"}).meta.rev
        assert db["x"]["_rev"] == rev and db["x"].meta.revisions == [rev[2:], "d"]
        with pytest.raises(NotFound):
            db["x", "3-c"]                          # stemmed: its body went with it

    def test_compaction_keeps_the_leaves_and_notes_what_it_dropped(self, db):
        self.replicate(db, "1-a", v="a")
        self.replicate(db, "2-b", ["b", "a"], v="b")
        self.replicate(db, "2-c", ["c", "a"], v="c")
        tree = db.record("x").meta.tree
        assert tree.status("1-a") == "available"
        assert db.compact() == 1                    # 1-a; both leaves stay
        tree = db.record("x").meta.tree
        assert (tree.status("1-a"), tree.status("2-b"), tree.status("2-c")) == (
            "missing", "available", "available")
        assert db["x", "2-b"]["v"] == "b" and db["x"]["v"] == "c"

    def test_a_database_of_the_format_before_trees_still_opens(self, db):
        """Records that kept their history and conflicts as lists: read as trees, and
        written back as trees at the next write."""
        below = db.versions.inner.inner               # under serialization: bytes

        def put(key, meta, body):
            below[key] = b"D" + orjson.dumps([meta, body])
        a, b, c, z = (digest(ch) for ch in "abcz")
        with db.transaction():
            put("d/x", {"rev": "3-" + z, "revisions": [z, b, a], "seq": 2,
                        "conflicts": ["2-" + c]}, {"v": "z"})
            put("r/x/2-" + c, {"rev": "2-" + c, "revisions": [c, a]}, {"v": "c"})
            put("r/x/2-" + b, {"rev": "2-" + b, "revisions": [b, a], "seq": 1}, {"v": "b"})
            below["s/0000000000000002"] = b"J" + orjson.dumps(["x", "3-" + z, False])
            below["m/info"] = b"J" + orjson.dumps({"seq": 2, "docs": 1, "deleted": 0})
        doc = db["x"]
        assert doc["v"] == "z" and doc.meta.revisions == [z, b, a]
        assert doc.meta.conflicts == ["2-" + c] and db["x", "2-" + b]["v"] == "b"
        assert db.revs_diff("x", ["1-" + a, "2-" + c, "2-" + b]) == []
        assert [leaf.rev for leaf in db.leaves("x")] == ["3-" + z, "2-" + c]
        assert [c.others for c in db.changes()] == [None]       # not recorded then
        rows, _ = LocalPeer(db).changes(0, 10, {})
        assert rows[0]["changes"] == [{"rev": "3-" + z}, {"rev": "2-" + c}]
        rev = db.save({"_id": "x", "_rev": "2-" + c, "v": "c2"}).meta.rev   # converts it
        tree = db.record("x").meta.tree
        assert tree.path(rev) == [rev, "2-" + c, "1-" + a] and tree.winner() == "3-" + z
        assert db["x"]["v"] == "z" and db["x"].meta.conflicts == [rev]
        assert db.compact() == 2                    # 2-b and 2-c, now inner revisions
        assert db["x", rev]["v"] == "c2" and list(db.changes())[-1].rev == "3-" + z

    # -- timestamps ------------------------------------------------------------------
    def test_every_revision_records_its_write_time(self, db):
        before = time.time()
        first = db.save({"_id": "a"}).meta.rev
        after = time.time()
        stamp = db["a"].meta.timestamp
        assert before <= stamp <= after
        db.save({"_id": "a", "_rev": first})
        assert db["a"].meta.timestamp >= stamp
        assert db["a", first].meta.timestamp == stamp

    # -- validation ------------------------------------------------------------------
    def test_an_invoice_is_stored_as_written(self, catalog):
        invoices = catalog.create("invoices")
        invoices["inv1"] = dict(INVOICE)
        got = invoices["inv1"]
        assert {k: v for k, v in got.items() if not k.startswith("_")} == INVOICE
        amount = got["lineItems"][0]["amount"]
        assert isinstance(amount, float)            # not FormEncode's int 17

    def test_a_bad_invoice_is_refused_naming_every_bad_field(self, catalog):
        invoices = catalog.create("invoices")
        bad = json.loads(json.dumps(INVOICE))
        bad["payments"][0]["amount"] = "14.00"
        bad["lineItems"][0]["amount"] = None
        del bad["lineItems"][0]["description"]
        bad["lineItems"][0]["allocation"]["code2"]["paid"] = True
        with pytest.raises(ValidationFailed) as info:
            invoices["bad"] = bad
        assert set(info.value.errors) == {
            "payments.0.amount", "lineItems.0.amount", "lineItems.0.description",
            "lineItems.0.allocation.code2.paid"}
        assert info.value.key == "bad"
        assert "bad" not in invoices and invoices.info()["update_seq"] == 0

    def test_a_bad_invoice_in_a_batch_is_refused_alone(self, catalog):
        invoices = catalog.create("invoices")
        bad = json.loads(json.dumps(INVOICE))
        bad["payments"][0]["amount"] = "14.00"
        out = invoices.save_many([{"_id": "a", **INVOICE}, {"_id": "bad", **bad},
                                  {"_id": "b", **INVOICE}])
        assert isinstance(out[1], ValidationFailed) and set(out[1].errors) == {
            "payments.0.amount"}
        assert sorted(invoices) == ["a", "b"] and invoices["a"].meta.timestamp is not None

    def test_other_databases_are_not_validated(self, db):
        db["free"] = {"payments": "anything"}
        assert db["free"]["payments"] == "anything"

    def test_deletions_design_and_local_documents_skip_validation(self, catalog):
        invoices = catalog.create("invoices")
        invoices["inv1"] = dict(INVOICE)
        invoices["_design/ar"] = {"views": {"by_code": {"map": "..."}}}
        invoices["_local/cp"] = {"seq": 1}
        del invoices["inv1"]
        invoices.save({"_id": "inv2", "_deleted": True, "_rev": "1-" + digest("0")},
                      new_edits=False)
        assert invoices.info()["doc_del_count"] == 2

    def test_the_bench_invoices_all_validate(self, catalog):
        path = BENCH / "make_invoices.py"
        if not path.exists():
            pytest.skip(f"{path} is not there")
        spec = importlib.util.spec_from_file_location("make_invoices", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault("make_invoices", module)
        spec.loader.exec_module(module)
        invoices = catalog.create("invoices")
        with invoices.transaction():
            for doc in module.invoices(50):
                invoices.save(doc)
        assert invoices.info()["doc_count"] == 50

    # -- ids -------------------------------------------------------------------------
    @pytest.mark.parametrize("doc_id", HOSTILE_IDS)
    def test_hostile_ids_are_stored_as_themselves(self, db, doc_id):
        rev = db.save({"_id": doc_id, "v": doc_id}).meta.rev
        assert db[doc_id]["v"] == doc_id and db[doc_id]["_id"] == doc_id
        assert list(db) == [doc_id] and [ch.id for ch in db.changes()] == [doc_id]
        db.save({"_id": doc_id, "_rev": rev, "v": 2})
        assert db[doc_id, rev]["v"] == doc_id
        db.delete(doc_id, db[doc_id]["_rev"])
        with pytest.raises(Deleted):
            db[doc_id]

    def test_ids_sharing_a_prefix_stay_apart(self, db):
        for doc_id in ("a", "a/", "a/b", "ab", "a\u00e9"):
            db[doc_id] = {"id": doc_id}
        assert sorted(db) == ["a", "a/", "a/b", "ab", "a\u00e9"]
        assert [d for d, _ in db.docs("a/", "a/b")] == ["a/", "a/b"]
        assert all(db[d]["id"] == d for d in db)


class TestMemoryDefaultStack(DocumentContract):
    backend = "memory"


class TestSQLiteDefaultStack(DocumentContract):
    backend = "sqlite"


class TestSQLiteEncryptedCompressed(DocumentContract):
    backend = "sqlite"
    stack = DEFAULT_STACK + ["encryption"]

    def extra_settings(self, tmp_path):
        return {"encryption_key": KEY}

    def test_nothing_readable_reaches_the_disk(self, catalog):
        db = catalog.create("secret")
        db["doc"] = {"customer": "customer-00042" * 20}
        with open(db.backend.path, "rb") as f:
            assert b"customer-00042" not in f.read()


class TestLMDBDefaultStack(DocumentContract):
    backend = "lmdb"

    @pytest.fixture(autouse=True)
    def _lmdb_available(self):
        pytest.importorskip("lmdb")
        try:
            importlib.import_module("settee.store.backends.lmdbstore")
        except ImportError as e:
            pytest.skip(f"the lmdb backend is not available: {e}")


class TestSQLiteReplicated(DocumentContract):
    backend = "sqlite"
    stack = DEFAULT_STACK + ["replication"]

    def extra_settings(self, tmp_path):
        return {"replication_target": f"sqlite:{tmp_path / 'backup'}",
                "replication_interval": 0.01}


class TestPostgreSQLDefaultStack(DocumentContract):
    backend = "postgresql"

    @pytest.fixture(autouse=True)
    def _dsn(self, postgres_dsn):
        self.dsn = postgres_dsn

    def extra_settings(self, tmp_path):
        return {"postgres_dsn": self.dsn}


def test_new_ids_are_couchdbs_sequential_ids_and_differ_across_processes():
    """CouchDB's default: a 26-digit random prefix, a 6-digit suffix rising by 1 to
    0xffe; ids in order (new docs share B-tree pages), unique, and a forked process
    draws a prefix of its own."""
    import os

    from settee.store.uuids import SequentialIds
    ids = SequentialIds()
    made = [ids.next() for _ in range(20000)]       # past one suffix overflow (~8k)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)
    assert len(set(made)) == len(made)
    prefixes = sorted({i[:26] for i in made})
    assert len(prefixes) >= 2                        # the suffix overflowed at least once
    for a, b in zip(made, made[1:]):
        if a[:26] == b[:26]:
            assert 1 <= int(b[26:], 16) - int(a[26:], 16) <= 0xFFE
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                     # the child: one id, then out
        os.write(write, ids.next().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read), os.close(write)
    mine = ids.next()
    assert child[:26] != mine[:26]
