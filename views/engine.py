"""The incremental map-reduce engine: one persisted index per view.

Storage, in the database's own keyspace below the versioning layer (so the rows are
compressed and encrypted like documents, and one transaction covers an update):

=========================  ===================================================
``v/<vid>/i/<key><id>``    an index row ``[key, doc id, value]``; ``<key>`` is the
                           collation encoding, so a range scan is the view order
``v/<vid>/m/<id>``         the rows a document emitted (to take them out again)
``v/<vid>/g/<key>``        ``[key, reduction, rows]``: the reduction of one key
``v/<vid>/state``          ``{seq, rows, version, building}``: the checkpoint
``vx/<vid>``               which views have storage (for clean-up and tasks)
=========================  ===================================================

The index follows the database's changes sequence from its checkpoint: a query
first applies the changes committed since (unless ``update=false``), in batches, each
in one transaction with the checkpoint, so it catches up after a restart, after writes
by other workers and after bulk loads, and two workers never apply a change twice.
An update costs work in proportion to the changed documents: their old rows come out,
their new rows go in, and the stored reductions of the keys they touch are adjusted
(``add``/``remove`` for the built-ins, recomputed from that key's rows otherwise).
Queries by key or range are range scans, O(log n + rows); a reduce reads stored
per-key reductions, never every row. A first build of a large database maps in a
process pool (:mod:`.build`).
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from itertools import islice, takewhile
from typing import Any

from settee.store import keyspace
from settee.store.base import prefix_end

from .collation import HIGH, encode, group_key
from .reduce import RECOMPUTE, ReduceError
from .selector import MISSING  # "no bound": the one absent-value sentinel of views

log = logging.getLogger("settee.views")

BATCH = 1000                 # changes applied per transaction
PARALLEL_THRESHOLD = 5000    # pending changes from scratch above which the build is parallel
STALE_BUILD = 60.0           # seconds without a heartbeat before a build is taken over
ROW_SEP = "\x01"





class View:
    """A view of one database: its index, kept up to date, and its queries."""

    def __init__(self, database, spec):
        self.db = database
        self.spec = spec
        self.vid = spec.identity
        self.mapper, self.reducer = spec.compile(getattr(database, "settings", None))
        self.store = database.versions.inner
        # what the backend stores for a row, when the layers below only encode
        self.raw = self.store.encoder()
        base = keyspace.view_base(self.vid)
        # The view's keyspace: index rows, each document's map output, reductions per
        # key, and the view's state (checkpoint, row count, version).
        self.rows_prefix, self.mapped_prefix = base + "i/", base + "m/"
        self.reductions_prefix, self.state_key = base + "g/", keyspace.view_state(self.vid)
        self.base = base
        self.map_errors = 0

    # -- state ------------------------------------------------------------------------
    def state(self) -> dict:
        state = self.store.get(self.state_key)
        return dict(state) if state is not None else {"seq": 0, "rows": 0, "version": 0}

    def pending(self) -> int:
        return max(0, self.db.versions.info()["seq"] - self.state()["seq"])

    # -- mapping ----------------------------------------------------------------------
    def map_doc(self, doc: dict) -> list[list]:
        """The ``[key, value]`` rows ``doc`` emits; a map that raises emits nothing."""
        try:
            rows = []
            for item in self.mapper(doc) or ():
                key, value = item
                encode(key)                     # a key that is not JSON fails here
                rows.append([key, value])
            return rows
        except Exception as e:                  # user code: skip the doc, keep the view
            self.map_failed(doc, f"{type(e).__name__}: {e}")
            return []

    def documents(self, ids: list[str]) -> dict[str, dict]:
        """The live documents of ``ids`` (id -> document) as map functions see them:
        with ``_conflicts`` when they have any, as CouchDB's indexer reads them (a view
        of conflicts is the usual way to find them)."""
        docs = self.db.versions.get_many(ids)
        for doc in docs.values():
            if doc.meta.conflicts:
                doc["_conflicts"] = list(doc.meta.conflicts)
        return docs

    def map_docs(self, docs: dict[str, dict]) -> dict[str, list]:
        """The rows of each of ``docs`` (id -> document), as :meth:`map_doc` maps one;
        a mapper with ``map_many`` (JavaScript) gets them all in one call. A mapper
        stopped at a limit raises: the view cannot be updated past that document."""
        many = getattr(self.mapper, "map_many", None)
        if many is None:
            return {doc_id: self.map_doc(doc) for doc_id, doc in docs.items()}
        ids = list(docs)
        rows, errors = many([docs[i] for i in ids])
        for index, reason in errors:
            self.map_failed(docs[ids[index]], reason)
        return dict(zip(ids, rows))

    def map_failed(self, doc: dict, reason: str) -> None:
        self.map_errors += 1
        if self.map_errors <= 10 or self.map_errors % 1000 == 0:
            log.warning("view %s: map failed on doc %r: %s (%d failures so far)",
                        self.spec.name, doc.get("_id"), reason, self.map_errors)

    # -- updating ---------------------------------------------------------------------
    def update(self, progress=None, until: int | None = None) -> dict:
        """Apply every change committed so far (up to sequence ``until``, if given);
        returns the new state."""
        self.register()
        while True:
            target = self.db.versions.info()["seq"]
            if until is not None:
                target = min(target, until)
            state = self.state()
            if state["seq"] >= target:
                return state
            building = state.get("building")
            if building and time.time() - building["beat"] < STALE_BUILD:
                time.sleep(0.05)                # another process builds: wait for it
                continue
            if state["seq"] == 0 and target >= PARALLEL_THRESHOLD:
                from .build import parallel_build
                parallel_build(self, progress=progress)
                continue
            with self.store.transaction():
                state = self.state()
                if state.get("building") and time.time() - state["building"]["beat"] < STALE_BUILD:
                    continue
                def upto(change, last: int = target) -> bool:
                    return change.seq <= last
                changes = list(islice(takewhile(upto, self.db.versions.changes(state["seq"])),
                                      BATCH))
                if not changes:
                    return state
                self.apply(changes, state)
                self.store[self.state_key] = state
            if progress is not None:
                progress(len(changes))

    def register(self) -> None:
        if self.store.get(keyspace.view_entry(self.vid)) is None:
            self.store[keyspace.view_entry(self.vid)] = {"name": self.spec.name,
                                                         "origin": self.spec.origin}

    def apply(self, changes, state: dict) -> None:
        """Apply ``changes`` (in the caller's transaction); updates ``state``."""
        ids = [c.id for c in changes if not c.id.startswith("_design/")]
        found = self.map_docs(self.documents(ids))
        mapped = {doc_id: found.get(doc_id, []) for doc_id in ids}
        self.write_rows(mapped, state)
        state["seq"] = changes[-1].seq

    def write_rows(self, mapped: dict[str, list], state: dict) -> None:
        """Replace the rows of each document in ``mapped`` with its new rows."""
        store = self.store
        olds = store.get_many([self.mapped_prefix + i for i in mapped])
        touched: dict[str, list] = {}
        puts: list = []
        gone: list[str] = []
        for doc_id, new in mapped.items():
            old = olds.get(self.mapped_prefix + doc_id) or []
            if new == old:
                continue
            for n, (key, value) in enumerate(old):
                enc = encode(key)
                gone.append(f"{self.rows_prefix}{enc}{doc_id}{ROW_SEP}{n}")
                touched.setdefault(enc, [key, [], []])[2].append(value)
            for n, (key, value) in enumerate(new):
                enc = encode(key)
                puts.append((f"{self.rows_prefix}{enc}{doc_id}{ROW_SEP}{n}", [key, doc_id, value]))
                touched.setdefault(enc, [key, [], []])[1].append([key, doc_id, value])
            if new:
                puts.append((self.mapped_prefix + doc_id, new))
            elif old:
                gone.append(self.mapped_prefix + doc_id)
            state["rows"] += len(new) - len(old)
        if gone:
            store.delete_many(gone)
        if puts:
            puts.sort()             # in key order: the B-tree takes them page by page
            store.put_many(puts)
            state["version"] = state.get("version", 0) + 1
        elif gone:
            state["version"] = state.get("version", 0) + 1
        if self.reducer is not None and touched:
            self.update_reductions(touched)

    # -- a build from scratch, a chunk of documents at a time (see build.py) ----------
    def fresh_chunk(self, mapped: list[tuple[str, list]]) -> tuple[list, dict, int]:
        """The writes for documents that have no rows yet: ``(puts, partials, rows)``.

        ``puts`` in key order (the B-tree takes them page by page), already encoded
        for the backend when the layers below only encode (so a pool worker does that
        work, not the one writer); ``partials`` the reduction of each key over these
        documents' rows; ``rows`` how many rows. Pure: no reads, no writes."""
        puts: list = []
        groups: dict[str, list] = {}
        rows = 0
        reducing = self.reducer is not None
        encoded: dict[str, str] = {}             # string keys repeat: encode each once
        for doc_id, new in mapped:
            if not new:
                continue
            for n, (key, value) in enumerate(new):
                if type(key) is str:
                    enc = encoded.get(key)
                    if enc is None:
                        enc = encoded[key] = encode(key)
                else:
                    enc = encode(key)
                puts.append((f"{self.rows_prefix}{enc}{doc_id}{ROW_SEP}{n}", [key, doc_id, value]))
                if reducing:
                    group = groups.get(enc)
                    if group is None:
                        group = groups[enc] = [key, [], []]
                    group[1].append([key, doc_id])
                    group[2].append(value)
            puts.append((self.mapped_prefix + doc_id, new))
            rows += len(new)
        puts.sort()
        raw = self.raw
        if raw is not None:             # the one writer will only insert them
            bottom = self.store.bottom()
            puts = [(bottom.check_key(k), bottom.check_value(raw(k, v))) for k, v in puts]
        partials = {}
        if groups:
            reduced = self.reducer.reduce_many([(keys, values) for _, keys, values
                                                in groups.values()])
            for (enc, (key, _, values)), reduction in zip(groups.items(), reduced):
                if isinstance(reduction, ReduceError):
                    partials[enc] = [key, None, len(values), reduction.reason]
                else:
                    partials[enc] = [key, reduction, len(values)]
        return puts, partials, rows

    def write_fresh(self, chunk: tuple[list, dict, int], state: dict) -> None:
        """Write a :meth:`fresh_chunk` (in the caller's transaction); updates ``state``."""
        puts, partials, rows = chunk
        if puts:
            if self.raw is not None:
                self.store.bottom().put_checked(puts)   # encoded and checked by fresh_chunk
            else:
                self.store.put_many(puts)
            state["version"] = state.get("version", 0) + 1
        state["rows"] += rows
        if not partials:
            return
        existing = self.store.get_many([self.reductions_prefix + enc for enc in partials])
        updates = []
        for enc, partial in partials.items():
            current = existing.get(self.reductions_prefix + enc)
            if current is None:
                updates.append((self.reductions_prefix + enc, partial))
                continue
            key, count = partial[0], current[2] + partial[2]
            try:
                if len(current) < 4 and len(partial) < 4:
                    reduction = self.reducer.rereduce([current[1], partial[1]])
                else:                               # an error on one side: from the rows
                    reduction = self.reduce_rows(self.key_rows(enc))
                updates.append((self.reductions_prefix + enc, [key, reduction, count]))
            except ReduceError as e:
                updates.append((self.reductions_prefix + enc, [key, None, count, e.reason]))
        self.store.put_many(updates)

    def update_reductions(self, touched: dict[str, list]) -> None:
        reducer, store = self.reducer, self.store
        existing = store.get_many([self.reductions_prefix + e for e in touched])
        for enc, (key, added, removed) in touched.items():
            current = existing.get(self.reductions_prefix + enc)
            count = (current[2] if current else 0) + len(added) - len(removed)
            if count <= 0:
                store.pop(self.reductions_prefix + enc, None)
                continue
            values = [row[2] for row in added]
            try:
                if current is None and not removed:
                    reduction = reducer.reduce([[r[0], r[1]] for r in added], values)
                elif current is not None and len(current) < 4 and (
                        not removed or reducer.invertible):
                    # Adding rows only: any reduce combines (re-reduce); taking rows
                    # out needs an invertible one, else that key is recomputed.
                    reduction = current[1]
                    if removed:
                        reduction = reducer.remove(reduction, removed)
                    if reduction is not RECOMPUTE and values:
                        reduction = reducer.add(reduction, values)
                else:
                    reduction = RECOMPUTE
                if reduction is RECOMPUTE:
                    reduction = self.reduce_rows(self.key_rows(enc))
                store[self.reductions_prefix + enc] = [key, reduction, count]
            except ReduceError as e:            # kept, and reported when a query reduces
                store[self.reductions_prefix + enc] = [key, None, count, e.reason]

    def key_rows(self, enc: str) -> Iterator[list]:
        prefix = self.rows_prefix + enc
        return (row for _, row in self.store.range(prefix, prefix + HIGH))

    def reduce_rows(self, rows) -> Any:
        """Reduce rows in chunks, then re-reduce the chunks (bounded memory)."""
        partials = []
        chunk = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= 1000:
                partials.append(self.reducer.reduce([[r[0], r[1]] for r in chunk],
                                                    [r[2] for r in chunk]))
                chunk = []
        if chunk or not partials:
            partials.append(self.reducer.reduce([[r[0], r[1]] for r in chunk],
                                                [r[2] for r in chunk]))
        return partials[0] if len(partials) == 1 else self.reducer.rereduce(partials)

    def claim_build(self) -> str | None:
        """Mark a from-scratch build as ours (a heartbeat other processes respect)."""
        token = uuid.uuid4().hex
        with self.store.transaction():
            state = self.state()
            building = state.get("building")
            if building and time.time() - building["beat"] < STALE_BUILD:
                return None
            state["building"] = {"token": token, "beat": time.time(), "done": 0, "total": 0}
            self.store[self.state_key] = state
        return token

    def clear(self) -> int:
        """Drop every row and reduction of this view, keeping its state (the build claim)."""
        return clear_prefix(self.store, self.base, keep=self.state_key)

    # -- querying -----------------------------------------------------------------------
    def bounds(self, prefix: str, start, end, *, descending: bool, inclusive_end: bool,
               start_docid: str | None = None, end_docid: str | None = None,
               docids: bool = True):
        """(lo, hi, inclusive) of a backend range scan, from CouchDB's parameters."""
        def low(key, docid, inclusive):
            if key is MISSING:
                return prefix
            if not docids or docid is None:
                return prefix + encode(key) + ("" if inclusive else HIGH)
            return prefix + encode(key) + docid + ("" if inclusive else ROW_SEP + HIGH)

        def high(key, docid, inclusive):
            if key is MISSING:
                return prefix_end(prefix), False
            if not docids:
                return prefix + encode(key), inclusive
            if docid is None:
                return prefix + encode(key) + (HIGH if inclusive else ""), inclusive
            return prefix + encode(key) + docid + (ROW_SEP + HIGH if inclusive else ""), inclusive

        if descending:
            hi, _ = high(start, start_docid, True)
            lo = low(end, end_docid, inclusive_end)
            return lo, hi, True
        lo = low(start, start_docid, True)
        hi, incl = high(end, end_docid, inclusive_end)
        return lo, hi, incl

    def rows(self, *, start=MISSING, end=MISSING, keys=None, descending=False, inclusive_end=True,
             start_docid=None, end_docid=None) -> Iterator[list]:
        """Index rows ``[key, id, value]`` in view order (or in the order of ``keys``)."""
        if keys is not None:
            for key in keys:
                prefix = self.rows_prefix + encode(key)
                yield from (row for _, row in self.store.range(prefix, prefix + HIGH,
                                                               descending=descending))
            return
        lo, hi, incl = self.bounds(self.rows_prefix, start, end, descending=descending,
                                   inclusive_end=inclusive_end, start_docid=start_docid,
                                   end_docid=end_docid)
        for _, row in self.store.range(lo, hi, descending=descending, inclusive_end=incl):
            yield row

    def reductions(self, *, start=MISSING, end=MISSING, keys=None, descending=False,
                   inclusive_end=True) -> Iterator[list]:
        """Stored per-key reductions ``[key, reduction, rows]`` in view order."""
        if keys is not None:
            found = self.store.get_many([self.reductions_prefix + encode(k) for k in keys])
            for key in keys:
                entry = found.get(self.reductions_prefix + encode(key))
                if entry is not None:
                    yield entry
            return
        lo, hi, incl = self.bounds(self.reductions_prefix, start, end, descending=descending,
                                   inclusive_end=inclusive_end, docids=False)
        for _, entry in self.store.range(lo, hi, descending=descending, inclusive_end=incl):
            yield entry

    def reduce(self, entries, group_level: int | None, group: bool) -> Iterator[dict]:
        """Rows of a reduce query: one overall, one per key, or one per key prefix."""
        def check(batch):
            for entry in batch:
                if len(entry) > 3:          # the stored reduction of this key failed
                    raise ReduceError(f"reduce failed for key {entry[0]!r}: {entry[3]}")

        def value_of(batch):
            check(batch)
            if len(batch) == 1:
                return self.reducer.output(batch[0][1])
            return self.reducer.output(self.reducer.rereduce([e[1] for e in batch]))

        if not group and group_level is None:
            batch = list(entries)
            if not batch:
                return
            check(batch)                    # before any re-reduce: it would hide the key
            while len(batch) > 1000:        # re-reduce in chunks to bound memory
                batch = [[None, self.reducer.rereduce([e[1] for e in batch[i:i + 1000]]), 0]
                         for i in range(0, len(batch), 1000)]
            yield {"key": None, "value": value_of(batch)}
            return
        current, batch = MISSING, []
        for entry in entries:
            key = group_key(entry[0], group_level) if group_level is not None else entry[0]
            if batch and key != current:
                yield {"key": current, "value": value_of(batch)}
                batch = []
            current = key
            batch.append(entry)
        if batch:
            yield {"key": current, "value": value_of(batch)}


def indexed_views(database) -> Iterator[tuple[str, dict, dict]]:
    """``(vid, {name, origin}, state)`` of every view index stored in ``database``."""
    store = database.versions.inner
    for key, entry in store.prefix(keyspace.VIEWS):
        vid = key[len(keyspace.VIEWS):]
        yield vid, entry, store.get(keyspace.view_state(vid)) or {}


def clear_prefix(store, prefix: str, keep: str | None = None) -> int:
    """Delete every key under ``prefix`` but ``keep``, in batched transactions."""
    end = prefix_end(prefix)
    if keep is None:
        return store.delete_range(prefix, end)
    # no key lies between ``keep`` and ``keep + "\x01"``: keys hold no NUL
    return store.delete_range(prefix, keep) + store.delete_range(keep + "\x01", end)


def drop_view(store, vid: str) -> int:
    """Delete all storage of view ``vid`` (its definition is gone)."""
    dropped = clear_prefix(store, keyspace.view_base(vid))
    with store.transaction():
        store.pop(keyspace.view_entry(vid), None)
    return dropped
