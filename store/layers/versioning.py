"""The versioning layer: CouchDB-style revisions, conflicts, tombstones and changes.

Assumes of the layer below: a transactional, ordered store of JSON values that keeps
:class:`~.document.Doc` metadata (serialization over any backend). Offers above: a
mapping of document ids to Docs, with ``db[id, rev]`` for old revisions (as in the
design talk's VersionedDict).

Keyspace below: the documents', changes' and info keys of :mod:`..keyspace` (one
database, one keyspace, so one transaction covers a write).

A write names the current revision or it is a :class:`~.exceptions.Conflict`; the
check, the new revision and the changes entry happen in one ``transaction()``, so two
writers (threads or processes) racing on one revision produce exactly one winner.
Revisions are ``N-<md5>`` of the parent revision and the body, so the same edit
made on two replicas gets the same revision. ``revs_limit`` bounds the remembered
history and the old bodies kept; ``compact()`` drops every old body but the conflict
leaves, as CouchDB's compaction does.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

from ..base import Layer, prefix_end
from ..document import CURRENT, RESERVED_FIELDS, Doc, Meta, as_doc, rev_generation
from ..exceptions import BackendError, BadRequest, Conflict, Deleted, NotFound
from ..keyspace import DOC, INFO, LOCAL, OLD, SEQ, TOMB
from .combining import Combiner
from .pending import Pending

LOCAL_PREFIX = "_local/"
SEQ_DIGITS = 16


class Change(NamedTuple):
    seq: int
    id: str
    rev: str
    deleted: bool


def seq_key(seq: int) -> str:
    return f"{SEQ}{seq:0{SEQ_DIGITS}d}"


def new_revision(parent: str | None, body: dict, deleted: bool) -> str:
    generation = rev_generation(parent) + 1 if parent else 1
    digest = hashlib.md5(orjson.dumps([deleted, parent or "", body], option=orjson.OPT_SORT_KEYS
                                      | orjson.OPT_NON_STR_KEYS)).hexdigest()
    return f"{generation}-{digest}"


def split_body(doc: Doc) -> dict:
    """The body without envelope fields; moves ``_rev``/``_deleted`` into ``doc.meta``."""
    meta = doc.meta
    if "_rev" in doc and meta.rev is None:
        rev = doc["_rev"]
        if not isinstance(rev, str):
            raise BadRequest("_rev must be a string")
        meta.rev = rev
    if doc.get("_deleted") is True:
        meta.deleted = True
    if "_revisions" in doc and not meta.revisions:
        revisions = doc["_revisions"]
        try:
            start, ids = int(revisions["start"]), list(revisions["ids"])
        except (KeyError, TypeError, ValueError) as e:
            raise BadRequest("_revisions must be {start: N, ids: [hash, ...]}") from e
        if not all(isinstance(i, str) for i in ids) or not start >= len(ids) > 0:
            raise BadRequest("_revisions must be {start: N, ids: [hash, ...]}: N at least "
                             "as many as the ids, and ids strings")
        meta.revisions = ids
    if meta.rev not in (None, CURRENT):
        try:
            rev_generation(meta.rev)
        except ValueError as e:
            raise BadRequest(f"Invalid rev format: {meta.rev!r}") from e
    return {k: v for k, v in doc.items() if k not in RESERVED_FIELDS}


class Versioning(Layer[Doc, Any]):
    """Revisions and conflicts over a store of JSON values; one instance per database."""

    revs_limit: int     # an option: Layer.__init__ sets it

    def __init__(self, inner, revs_limit: int = 1000):
        if revs_limit < 1:
            raise ValueError("revs_limit must be at least 1")
        super().__init__(inner, revs_limit=revs_limit)
        self._combiner = Combiner(self._write_batch, shared=(BackendError,))

    # -- reading ----------------------------------------------------------------
    def info(self) -> dict[str, int]:
        return self._counts(self.inner)

    @staticmethod
    def _counts(store) -> dict[str, int]:
        """A copy of the database's counts as ``store`` has them (zeros when new)."""
        info = store.get(INFO)
        return dict(info) if info else {"seq": 0, "docs": 0, "deleted": 0}

    def record(self, doc_id: str) -> Doc | None:
        """The current revision as stored (live or tombstone), or None."""
        found = self.inner.get_many([DOC + doc_id, TOMB + doc_id])
        live = found.get(DOC + doc_id)      # an empty body is falsy: compare with None
        return live if live is not None else found.get(TOMB + doc_id)

    @staticmethod
    def present(doc_id: str, stored: Doc) -> Doc:
        """A stored revision as the user sees it: ``_id`` and ``_rev`` first."""
        meta = stored.meta
        meta.id = doc_id
        head: dict[str, Any] = {"_id": doc_id, "_rev": meta.rev}
        if meta.deleted:
            head["_deleted"] = True
        head.update(stored)
        return Doc(head, meta)

    def __getitem__(self, key) -> Doc:
        if isinstance(key, tuple):
            return self.revision(*key)
        if key.startswith(LOCAL_PREFIX):
            return self.present(key, self._local(key))
        try:
            return self.present(key, self.inner[DOC + key])
        except KeyError:
            pass
        try:
            stored = self.inner[TOMB + key]
        except KeyError:
            raise NotFound(key) from None
        raise Deleted(key, stored.meta.rev)

    def revision(self, doc_id: str, rev: str) -> Doc:
        """The body of revision ``rev`` of ``doc_id`` (current, old or a conflict leaf)."""
        current = self.record(doc_id)
        if current is not None and current.meta.rev == rev:
            return self.present(doc_id, current)
        try:
            return self.present(doc_id, self.inner[f"{OLD}{doc_id}/{rev}"])
        except KeyError:
            raise NotFound(doc_id, "missing", rev=rev) from None

    def __iter__(self) -> Iterator[str]:
        start = len(DOC)
        for key in self.inner.range(DOC, prefix_end(DOC), inclusive_end=False, keys_only=True):
            yield key[start:]

    def __len__(self) -> int:
        return self.info()["docs"]

    def __contains__(self, key) -> bool:
        return isinstance(key, str) and DOC + key in self.inner

    def get_many(self, keys):
        found = self.inner.get_many([DOC + k for k in keys])
        return {k[len(DOC):]: self.present(k[len(DOC):], v) for k, v in found.items()}

    def range(self, start=None, end=None, *, descending=False, inclusive_end=True,
              keys_only=False):
        """Live documents with ids in [start, end], in id order."""
        lo = DOC + start if start is not None else DOC
        hi = DOC + end if end is not None else prefix_end(DOC)
        incl = inclusive_end if end is not None else False
        cut = len(DOC)
        for item in self.inner.range(lo, hi, descending=descending, inclusive_end=incl,
                                     keys_only=keys_only):
            if keys_only:
                yield item[cut:]
            else:
                yield item[0][cut:], self.present(item[0][cut:], item[1])

    def changes(self, since: int = 0, *, descending: bool = False) -> Iterator[Change]:
        """Each document once, at its latest sequence number, after ``since``."""
        items = self.inner.range(seq_key(since + 1), prefix_end(SEQ), inclusive_end=False,
                                 descending=descending)
        for key, (doc_id, rev, deleted) in items:
            yield Change(int(key[len(SEQ):]), doc_id, rev, deleted)

    def revs_diff(self, doc_id: str, revs: list[str]) -> list[str]:
        """Of ``revs``, those this database has never seen for ``doc_id``."""
        return self.unseen(self.record(doc_id), revs)

    @staticmethod
    def unseen(current: Doc | None, revs: list[str]) -> list[str]:
        """Of ``revs``, those not in the history of the stored record ``current``."""
        if current is None:
            return list(revs)
        known = {current.meta.rev, *current.meta.conflicts}
        generation = current.meta.generation
        for offset, digest in enumerate(current.meta.revisions):
            known.add(f"{generation - offset}-{digest}")
        return [r for r in revs if r not in known]

    # -- writing ----------------------------------------------------------------
    def __setitem__(self, key: str, value) -> None:
        doc = as_doc(value)
        body = split_body(doc)
        if key.startswith(LOCAL_PREFIX):
            return self._put_local(key, doc, body)
        item = (key, doc, body)
        if self.inner.in_transaction():      # the caller's transaction: write in it
            outcome = self._write_batch(lambda: [item])[0]
        else:                                # with whatever other threads write now
            outcome = self._combiner.submit(item)
        if isinstance(outcome, BaseException):
            try:
                raise outcome
            finally:                         # this frame, in the error's traceback,
                outcome = None               # would otherwise hold the error
        if outcome is not None:              # None: a replicated revision we had
            doc.meta.id = key
            doc.meta.rev, doc.meta.seq = outcome

    def __delitem__(self, key: str) -> None:
        """Delete the current revision (the mapping protocol cannot name a revision)."""
        if key.startswith(LOCAL_PREFIX):
            with self.inner.transaction():
                del self.inner[LOCAL + key]
            return
        self[key] = Doc({}, Meta(rev=CURRENT, deleted=True))

    def _write_batch(self, take) -> list:
        """Write the ``(key, doc, body)`` items ``take()`` returns in one transaction:
        one read of what they need, one write of what they produce (combining.py).
        An outcome per item: ``(rev, seq)``, None, or the error the item raises."""
        with self.inner.transaction():
            items = take()
            pending = Pending(self.inner)
            pending.prefetch([INFO, *(k for key, _, _ in items for k in (DOC + key, TOMB + key))])
            outcomes = []
            for key, doc, body in items:
                pending.begin()
                try:
                    outcomes.append(self._write(pending, key, doc, body))
                except (NotFound, Conflict, BadRequest) as e:
                    pending.undo()
                    # The item's answer, not a fault: without its traceback, whose
                    # frames hold this list and so the error (a cycle per conflict
                    # that only the garbage collector would free).
                    outcomes.append(e.with_traceback(None))
            pending.flush()
        return outcomes

    def _write(self, store, key, doc, body):
        """One document write against ``store`` (the batch's pending writes)."""
        info = self._counts(store)
        live = store.get(DOC + key)          # an empty body is falsy: compare with None
        current = live if live is not None else store.get(TOMB + key)
        if doc.meta.new_edits:
            winner, loser = self._edit(store, key, current, doc, body)
        else:
            winner, loser = self._replicate(store, key, current, doc, body)
        if winner is None:                   # a replicated revision we already have
            return None
        self._commit_revision(store, key, current, winner, loser, info)
        written = loser if loser is not None and loser is not current else winner
        return written.meta.rev, winner.meta.seq

    def _edit(self, store, key, current, doc, body):
        """A normal edit: the named revision must be current (or a conflict leaf)."""
        meta, given = doc.meta, doc.meta.rev
        if current is None:
            if meta.deleted:
                raise NotFound(key)
            if given not in (None, CURRENT):
                raise Conflict(key, None, given)
            parent, history = None, []
        elif given == CURRENT or given == current.meta.rev or (
                given is None and current.meta.deleted):
            if meta.deleted and current.meta.deleted:
                raise Deleted(key, current.meta.rev)
            parent, history = current.meta.rev, current.meta.revisions
        elif given in current.meta.conflicts:
            return self._edit_conflict_leaf(store, key, current, doc, body)
        else:
            raise Conflict(key, current.meta.rev, given)
        rev = new_revision(parent, body, meta.deleted)
        new = Doc(body, Meta(rev=rev, revisions=[rev.split("-", 1)[1], *history],
                             timestamp=meta.timestamp, deleted=meta.deleted,
                             conflicts=list(current.meta.conflicts) if current else []))
        if meta.deleted and new.meta.conflicts:
            return self._promote_conflict(store, key, new)
        return new, None

    def _promote_conflict(self, store, key, tomb):
        """Deleting the winner of a conflicted doc makes the best losing leaf win."""
        best = max(tomb.meta.conflicts, key=lambda r: (rev_generation(r), r))
        rest = [c for c in tomb.meta.conflicts if c != best]
        leaf = store.pop(f"{OLD}{key}/{best}")
        tomb.meta.conflicts = []
        return self._choose(tomb, leaf, rest)

    def _edit_conflict_leaf(self, store, key, current, doc, body):
        """Edit or delete a losing conflict branch (how conflicts are resolved)."""
        given = doc.meta.rev
        old = store.get(f"{OLD}{key}/{given}")
        history = old.meta.revisions if old is not None else [given.split("-", 1)[1]]
        rev = new_revision(given, body, doc.meta.deleted)
        leaf = Doc(body, Meta(rev=rev, revisions=[rev.split("-", 1)[1], *history],
                              timestamp=doc.meta.timestamp, deleted=doc.meta.deleted))
        conflicts = [c for c in current.meta.conflicts if c != given]
        store.pop(f"{OLD}{key}/{given}", None)
        return self._choose(current, leaf, conflicts)

    def _replicate(self, store, key, current, doc, body):
        """``new_edits=false``: store the revision as given, merging it into the tree."""
        meta = doc.meta
        if meta.rev in (None, CURRENT):
            raise BadRequest("a revision stored with new_edits=false needs its _rev")
        generation, digest = rev_generation(meta.rev), meta.rev.split("-", 1)[1]
        history = meta.revisions or [digest]
        if history[0] != digest:
            raise BadRequest("_revisions does not end in _rev")
        leaf = Doc(body, Meta(rev=meta.rev, revisions=history, timestamp=meta.timestamp,
                              deleted=meta.deleted))
        if current is None:
            return leaf, None
        if not self.unseen(current, [meta.rev]):
            return None, None
        cur = current.meta
        # Does the new revision extend the current one?
        offset = generation - cur.generation
        if 0 < offset < len(history) and history[offset] == cur.revisions[0]:
            leaf.meta.conflicts = list(cur.conflicts)
            return leaf, None
        conflicts = list(cur.conflicts)
        for c in cur.conflicts:         # or one of the conflict leaves?
            off = generation - rev_generation(c)
            if 0 < off < len(history) and history[off] == c.split("-", 1)[1]:
                conflicts.remove(c)
                store.pop(f"{OLD}{key}/{c}", None)
        return self._choose(current, leaf, conflicts)

    @staticmethod
    def _choose(current: Doc, leaf: Doc, conflicts: list[str]):
        """CouchDB's deterministic winner: live before deleted, then highest rev."""
        def rank(d):
            return (not d.meta.deleted, d.meta.generation, d.meta.rev)
        if rank(leaf) > rank(current):
            winner, loser = leaf, current
        else:
            winner, loser = current, leaf
        if not loser.meta.deleted:      # deleted branches are not conflicts
            conflicts.append(loser.meta.rev)  # type: ignore[arg-type]  # a leaf has its rev
        winner.meta.conflicts = sorted(set(conflicts) - {winner.meta.rev}, reverse=True)
        return winner, loser

    def _commit_revision(self, store, key, current, winner, loser, info):
        """Store ``winner`` (and the old bodies it keeps), its changes entry and the
        counts in ``store``, the batch's pending writes (written below together)."""
        limit = info.get("revs_limit") or self.revs_limit
        gone = []
        if len(winner.meta.revisions) > limit:
            gone = [f"{OLD}{key}/{winner.meta.generation - n}-{winner.meta.revisions[n]}"
                    for n in range(limit, len(winner.meta.revisions))]
            winner.meta.revisions = winner.meta.revisions[:limit]
        info["seq"] += 1
        winner.meta.seq = info["seq"]
        was_live = current is not None and not current.meta.deleted
        puts = [((TOMB if winner.meta.deleted else DOC) + key, winner)]
        if current is not None:
            gone.append(seq_key(current.meta.seq))
            if current is not winner:
                puts.append((f"{OLD}{key}/{current.meta.rev}", current))  # the old body
        if loser is not None and loser is not current:
            puts.append((f"{OLD}{key}/{loser.meta.rev}", loser))          # a losing leaf
        puts.append((seq_key(winner.meta.seq), [key, winner.meta.rev, winner.meta.deleted]))
        if winner.meta.deleted:
            if was_live:
                gone.append(DOC + key)
                info["docs"] -= 1
            if current is None or was_live:
                info["deleted"] += 1
        else:
            if current is not None and current.meta.deleted:
                gone.append(TOMB + key)
                info["deleted"] -= 1
            if not was_live:
                info["docs"] += 1
        puts.append((INFO, info))
        # Deletions first: a dropped old body may be the one stored again here (a
        # revs_limit of 1). Both go to the batch's pending writes: all or nothing.
        if gone:
            store.delete_many(gone)
        store.put_many(puts)

    # -- _local documents ---------------------------------------------------------
    def _local(self, key: str) -> Doc:
        try:
            return self.inner[LOCAL + key]
        except KeyError:
            raise NotFound(key) from None

    def _put_local(self, key: str, doc: Doc, body: dict) -> None:
        with self.inner.transaction():
            current = self.inner.get(LOCAL + key)
            given = doc.meta.rev
            if current is not None and given not in (current.meta.rev, CURRENT):
                raise Conflict(key, current.meta.rev, given)
            if current is None and given not in (None, CURRENT, "0-0"):
                raise Conflict(key, None, given)
            if doc.meta.deleted:
                if current is None:
                    raise NotFound(key)
                del self.inner[LOCAL + key]
                doc.meta.rev = "0-0"
                return
            number = int(current.meta.rev.split("-", 1)[1]) + 1 if current is not None else 1
            stored = Doc(body, Meta(rev=f"0-{number}", timestamp=doc.meta.timestamp))
            self.inner[LOCAL + key] = stored
        doc.meta.id, doc.meta.rev = key, stored.meta.rev

    # -- maintenance ----------------------------------------------------------------
    def set_revs_limit(self, limit: int) -> None:
        if not isinstance(limit, int) or limit < 1:
            raise BadRequest("revs_limit must be a positive integer")
        with self.inner.transaction():
            info = self.info()
            info["revs_limit"] = limit
            self.inner[INFO] = info

    def get_revs_limit(self) -> int:
        return self.info().get("revs_limit") or self.revs_limit

    def compact(self) -> int:
        """Drop the bodies of old revisions (keeping conflict leaves); returns how many."""
        dropped = 0
        batch: list[tuple[str, str, str]] = []      # (key, doc id, rev)
        for key in list(self.inner.range(OLD, prefix_end(OLD), inclusive_end=False,
                                         keys_only=True)):
            doc_id, _, rev = key[len(OLD):].rpartition("/")
            batch.append((key, doc_id, rev))
            if len(batch) >= 500:
                dropped += self._compact_batch(batch)
                batch = []
        if batch:
            dropped += self._compact_batch(batch)
        return dropped

    def _compact_batch(self, batch) -> int:
        dropped = 0
        with self.inner.transaction():
            for key, doc_id, rev in batch:
                current = self.record(doc_id)
                if current is None or rev not in current.meta.conflicts:
                    self.inner.pop(key, None)
                    dropped += 1
        return dropped
