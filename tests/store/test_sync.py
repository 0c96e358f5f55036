"""The replication loop (store/sync/) between two databases of this process: what it
copies, where it resumes, and that replicas converge whatever the order."""
from __future__ import annotations

import base64
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settee.config import load_settings
from settee.store import Catalog, Conflict, Doc, Meta
from settee.store.sync import LocalPeer, Replication, parse_spec
from settee.store.sync.checkpoints import resume_point

COUNTER = itertools.count()


@pytest.fixture
def catalog(tmp_path):
    catalog = Catalog(load_settings(env={}, storage_backend="memory",
                                    storage_data_dir=str(tmp_path)))
    yield catalog
    catalog.close()


def fresh(catalog, prefix="db"):
    return catalog.create(f"{prefix}{next(COUNTER)}")


def replicate(source, target, **options):
    spec = parse_spec({"source": source.name, "target": target.name, **options})
    return Replication(spec, LocalPeer(source), LocalPeer(target), "test").run()


def state(db) -> dict:
    """Every document's leaves (deleted flags too) and winner's body."""
    out = {}
    for change in db.changes():
        record = db.record(change.id)
        out[change.id] = (sorted(db.leaves(change.id)), record.meta.rev,
                          dict(db.get(change.id, rev=record.meta.rev)))
    return out


def test_one_way_copies_documents_deletions_and_attachments(catalog):
    a, b = fresh(catalog), fresh(catalog)
    data = base64.b64encode(b"hello").decode()
    a["one"] = {"n": 1, "_attachments": {"greeting.txt": {
        "content_type": "text/plain", "data": data, "digest": "md5-x", "length": 5,
        "revpos": 1}}}
    a["two"] = {"n": 2}
    a.delete("two", a["two"]["_rev"])
    result = replicate(a, b)
    assert result["ok"] and result["history"][0]["docs_written"] == 2
    assert b["one"]["_attachments"]["greeting.txt"]["data"] == data
    assert b.record("two").meta.deleted
    assert state(a) == state(b)


def test_a_second_run_resumes_from_the_checkpoint(catalog):
    a, b = fresh(catalog), fresh(catalog)
    for i in range(30):
        a[f"d{i}"] = {"i": i}
    first = replicate(a, b)
    again = replicate(a, b)
    assert again.get("no_changes") and again["history"][0]["missing_checked"] == 0
    a["late"] = {"i": 99}
    third = replicate(a, b)
    assert third["history"][0]["missing_checked"] == 1
    assert third["history"][0]["start_last_seq"] == first["source_last_seq"]
    log = a["_local/" + parse_spec({"source": a.name, "target": b.name}).ids("test")[0]]
    assert log["source_last_seq"] == third["source_last_seq"]
    assert [h["session_id"] for h in log["history"]][:1] == [third["session_id"]]
    assert {"start_time", "end_time", "recorded_seq", "docs_written"} <= set(log["history"][0])


def test_resume_point_takes_the_newest_session_both_sides_know():
    source = {"session_id": "s3", "source_last_seq": 30,
              "history": [{"session_id": "s3", "recorded_seq": 30},
                          {"session_id": "s2", "recorded_seq": 20}]}
    assert resume_point(source, {"session_id": "s3"}) == (30, source["history"])
    target = {"session_id": "s9", "history": [{"session_id": "s2", "recorded_seq": 20}]}
    assert resume_point(source, target)[0] == 20
    assert resume_point(source, {"session_id": "x", "history": []}) == (0, [])
    assert resume_point(None, target) == (0, [])


def test_doc_ids_and_since_seq_choose_what_is_copied(catalog):
    a = fresh(catalog)
    for i in range(5):
        a[f"d{i}"] = {"i": i}
    b = fresh(catalog)
    replicate(a, b, doc_ids=["d1", "d3"])
    assert sorted(b) == ["d1", "d3"]
    c = fresh(catalog)
    replicate(a, c, since_seq=3)
    assert sorted(c) == ["d3", "d4"]


def conflict_on_both_sides(catalog):
    a, b = fresh(catalog), fresh(catalog)
    a["doc"] = {"v": 0}
    replicate(a, b)
    a["doc"] = {**a["doc"], "v": "a"}
    b["doc"] = {**b["doc"], "v": "b"}
    b["doc"] = {**b["doc"], "v": "b2"}
    return a, b


def test_conflicts_made_on_both_sides_converge_both_ways(catalog):
    a, b = conflict_on_both_sides(catalog)
    replicate(a, b)
    replicate(b, a)
    assert state(a) == state(b)
    leaves = [leaf.rev for leaf in a.leaves("doc")]
    assert len(leaves) == 2 and a["doc"]["v"] == "b2"        # the longer branch wins
    assert a["doc"].meta.conflicts == b["doc"].meta.conflicts == leaves[1:]


def test_a_resolved_conflict_replicates_as_resolved(catalog):
    a, b = conflict_on_both_sides(catalog)
    replicate(a, b)
    loser = b["doc"].meta.conflicts[0]
    b.delete("doc", loser)
    replicate(b, a)
    assert a["doc"].meta.conflicts == [] and state(a) == state(b)


def test_winning_revs_only_copies_each_documents_winner_alone(catalog):
    a, b = conflict_on_both_sides(catalog)
    replicate(a, b)                             # b now holds both branches
    clean = fresh(catalog)
    result = replicate(b, clean, winning_revs_only=True)
    assert result["ok"] and result["history"][0]["docs_written"] == 1
    assert [leaf.rev for leaf in clean.leaves("doc")] == [b["doc"]["_rev"]]
    assert clean["doc"]["v"] == "b2" and clean["doc"].meta.conflicts == []
    assert clean["doc"].meta.revisions == b["doc"].meta.revisions    # its history comes along
    plain = parse_spec({"source": b.name, "target": clean.name})
    winners = parse_spec({"source": b.name, "target": clean.name, "winning_revs_only": True})
    assert plain.ids("test")[0] != winners.ids("test")[0]     # checkpoints of their own
    replicate(b, clean)                         # a normal replication brings the loser
    assert len(clean.leaves("doc")) == 2


def test_a_write_failure_is_counted_not_fatal(catalog):
    a, b = fresh(catalog), fresh(catalog)
    a["ok"] = {"v": 1}
    target = LocalPeer(b)
    real = target.write

    def refuse_some(docs):
        return real([d for d in docs if d["_id"] != "ok"]) + [
            {"id": "ok", "error": "forbidden", "reason": "no"}]
    target.write = refuse_some
    a["also"] = {"v": 2}
    spec = parse_spec({"source": a.name, "target": b.name})
    result = Replication(spec, LocalPeer(a), target, "test").run()
    assert result["history"][0]["doc_write_failures"] == 1
    assert result["history"][0]["docs_written"] == 1 and "also" in b


# -- convergence, as a property -----------------------------------------------------
IDS = ["x", "y", "z"]
edit = st.tuples(st.sampled_from(["edit", "delete", "sync"]), st.sampled_from([0, 1]),
                 st.sampled_from(IDS), st.integers(0, 3))


def apply(db, action, doc_id, value):
    record = db.record(doc_id)
    try:
        if action == "delete":
            if record is not None and not record.meta.deleted:
                db.delete(doc_id, record.meta.rev)
            return
        body = {"v": value, "by": db.name}
        if record is not None:
            leaves = [leaf.rev for leaf in db.leaves(doc_id) if not leaf.deleted]
            # sometimes edit a losing branch, as a client that saw a conflict might
            rev = leaves[value % len(leaves)] if leaves else None
            db.save(Doc({"_id": doc_id, **body}, Meta(rev=rev)))
        else:
            db.save({"_id": doc_id, **body})
    except Conflict:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(edit, max_size=25), first=st.sampled_from([0, 1]))
def test_random_histories_converge_in_any_order(catalog, steps, first):
    pair = [fresh(catalog, "p"), fresh(catalog, "q")]
    for action, side, doc_id, value in steps:
        if action == "sync":
            replicate(pair[side], pair[1 - side])
        else:
            apply(pair[side], action, doc_id, value)
    replicate(pair[first], pair[1 - first])
    replicate(pair[1 - first], pair[first])
    assert state(pair[0]) == state(pair[1])
    for doc_id in state(pair[0]):
        winner = pair[0].record(doc_id).meta.rev
        assert winner == pair[1].record(doc_id).meta.rev
