"""A batch of writes (``Database.save_many``, one read and one write below for all of
them) is the same as writing its documents one by one: the same answers, the same
trees, winners, changes and counts, whatever the batch holds."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settee.config import load_settings
from settee.store import Catalog, StoreError

COUNTER = itertools.count()
IDS = ["a", "b", "_local/c"]
REVS = [None, "1-a", "2-b", "2-c", "3-d", "1-x"]       # some will be leaves, some not
PATHS = {"1-a": ["a"], "2-b": ["b", "a"], "2-c": ["c", "a"], "3-d": ["d", "b", "a"],
         "1-x": ["x"]}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    catalog = Catalog(load_settings(env={}, storage_backend="memory",
                                    storage_data_dir=str(tmp_path_factory.mktemp("batches"))))
    yield catalog
    catalog.close()


def item(doc_id: str, rev: str | None, deleted: bool, value: int, new_edits: bool) -> dict:
    doc: dict = {"_id": doc_id, "v": value}
    if rev is not None:
        doc["_rev"] = rev
        if not new_edits:
            doc["_revisions"] = {"start": int(rev.split("-")[0]), "ids": PATHS[rev]}
    if deleted:
        doc["_deleted"] = True
    return doc


batches = st.tuples(st.booleans(), st.lists(st.tuples(
    st.sampled_from(IDS), st.sampled_from(REVS), st.booleans(), st.integers(0, 3)),
    min_size=1, max_size=6))


def answer(outcome) -> tuple:
    if isinstance(outcome, StoreError):
        return ("error", type(outcome).__name__)
    return ("ok", outcome.meta.rev)


def state(db) -> dict:
    out = {"info": {k: v for k, v in db.info().items() if k != "size"},
           "changes": [tuple(c) for c in db.changes()]}
    for doc_id in IDS:
        record = db.record(doc_id) if not doc_id.startswith("_local/") else None
        out[doc_id] = (db.leaves(doc_id), record and dict(record),
                       dict(db.get(doc_id) or {}))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(batches, min_size=1, max_size=5))
def test_a_batch_is_its_documents_written_one_by_one(catalog, plan):
    batched = catalog.create(f"batched{next(COUNTER)}")
    single = catalog.create(f"single{next(COUNTER)}")
    for new_edits, entries in plan:
        docs = [item(*entry, new_edits=new_edits) for entry in entries]
        if not new_edits:
            docs = [d for d in docs if "_rev" in d]
        got = [answer(o) for o in batched.save_many([dict(d) for d in docs],
                                                    new_edits=new_edits)]
        want = []
        for doc in docs:
            try:
                want.append(answer(single.save(dict(doc), new_edits=new_edits)))
            except StoreError as e:
                want.append(answer(e))
        assert got == want
        assert state(batched) == state(single)
