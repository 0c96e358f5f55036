"""The versioning layer: CouchDB-style revisions, conflicts, tombstones and changes.

Assumes of the layer below: a transactional, ordered store of JSON values that keeps
:class:`~.document.Doc` metadata (serialization over any backend). Offers above: a
mapping of document ids to Docs, with ``db[id, rev]`` for old revisions (as in the
design talk's VersionedDict).

Keyspace below: the documents', changes' and info keys of :mod:`..keyspace` (one
database, one keyspace, so one transaction covers a write).

A document is one record: its revision tree (:mod:`..revtree`, in ``meta.tree``)
and the body of the tree's winning revision, under ``d/<id>`` while the winner is
live and ``t/<id>`` once every leaf is deleted. The bodies of the other leaves, and
of inner revisions until compaction drops them, are under ``r/<id>/<rev>``.

A write names a leaf of the tree (normally the winner) or it is a
:class:`~.exceptions.Conflict`; a write with ``new_edits=false`` merges the
revision's ``_revisions`` path into the tree as replication does. The check, the
new revision and the changes entry happen in one ``transaction()``, so two writers
(threads or processes) racing on one revision produce exactly one winner. Revisions
are ``N-<md5>`` of the parent revision and the body, so the same edit made on two
replicas gets the same revision. ``revs_limit`` stems the tree (each branch keeps its
last ``revs_limit`` revisions) and drops the bodies of the revisions stemmed;
``compact()`` drops every body but the leaves', as CouchDB's compaction does.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

from ..base import Layer, prefix_end
from ..document import CURRENT, RESERVED_FIELDS, Doc, Meta, as_doc, rev_generation
from ..exceptions import ITEM_ERRORS, BackendError, BadRequest, Conflict, Deleted, NotFound
from ..keyspace import DOC, INFO, LOCAL, OLD, SEQ, TOMB
from ..revtree import Leaf, RevTree, parse_rev
from .combining import Combiner
from .pending import Pending

LOCAL_PREFIX = "_local/"
SEQ_DIGITS = 16


class Change(NamedTuple):
    seq: int
    id: str
    rev: str
    deleted: bool
    #: The document's other leaves (deleted ones too), highest first, as the changes
    #: entry records them; None for an entry written before it did (read the tree).
    others: tuple[str, ...] | None = None


def stored_rev(doc: Doc) -> str:
    """The rev of a revision as stored: every stored revision has one."""
    rev = doc.meta.rev
    assert rev is not None
    return rev


def seq_key(seq: int) -> str:
    return f"{SEQ}{seq:0{SEQ_DIGITS}d}"


def old_key(doc_id: str, rev: str) -> str:
    """Where the body of a revision other than the winner is kept."""
    return f"{OLD}{doc_id}/{rev}"


def new_revision(parent: str | None, body: dict, deleted: bool) -> str:
    generation = rev_generation(parent) + 1 if parent else 1
    digest = hashlib.md5(orjson.dumps([deleted, parent or "", body], option=orjson.OPT_SORT_KEYS
                                      | orjson.OPT_NON_STR_KEYS)).hexdigest()
    return f"{generation}-{digest}"


def legacy_tree(doc_id: str, stored: Doc, store=None) -> RevTree:
    """The tree of a record written before trees: it kept its own history
    (``meta.revisions``) and its live losing leaves (``meta.conflicts``), each with its
    history in its body's record under ``r/``, read from ``store`` when given (else a
    conflict is a leaf of unknown ancestry). Deleted losing branches were not kept then,
    so they are not in the tree; nor is any inner body marked stored (compaction used to
    keep none)."""
    meta = stored.meta
    assert meta.rev is not None                 # a stored record has its rev
    generation, digest = parse_rev(meta.rev)
    tree = RevTree.from_path(generation, meta.revisions or [digest], deleted=meta.deleted)
    for rev in meta.conflicts:
        old = store.get(old_key(doc_id, rev)) if store is not None else None
        start, digest = parse_rev(rev)
        history = old.meta.revisions if old is not None and old.meta.revisions else [digest]
        if history[0] == digest and start >= len(history):
            tree.merge(start, history, deleted=old is not None and old.meta.deleted)
    return tree


def split_body(doc: Doc, local: bool = False) -> dict:
    """The body without envelope fields; moves ``_rev``/``_deleted``/``_revisions`` into
    ``doc.meta`` (a ``local`` document keeps no history: its ``_revisions`` are ignored,
    as CouchDB ignores them)."""
    meta = doc.meta
    if local:
        doc.pop("_revisions", None)
    if "_rev" in doc and meta.rev is None:
        rev = doc["_rev"]
        if not isinstance(rev, str):
            raise BadRequest("_rev must be a string")
        meta.rev = rev
    if doc.get("_deleted") is True:
        meta.deleted = True
    start = None
    if "_revisions" in doc and not meta.revisions:
        revisions = doc["_revisions"]
        try:
            start, ids = int(revisions["start"]), list(revisions["ids"])
        except (KeyError, TypeError, ValueError) as e:
            raise BadRequest("_revisions must be {start: N, ids: [hash, ...]}") from e
        if not all(isinstance(i, str) and i for i in ids) or not start >= len(ids) > 0:
            raise BadRequest("_revisions must be {start: N, ids: [hash, ...]}: N at least "
                             "as many as the ids, and ids strings")
        meta.revisions = ids
        if not meta.new_edits:
            # A replicated revision is the one its _revisions name, whatever _rev says
            # (CouchDB's: "we already got the rev from the _revisions"); PouchDB sends
            # them at odds when a hash repeats in a history.
            meta.rev = f"{start}-{ids[0]}"
    if meta.rev not in (None, CURRENT):
        try:
            rev_generation(meta.rev)
        except ValueError as e:
            raise BadRequest(f"Invalid rev format: {meta.rev!r}") from e
        if start is not None and start != rev_generation(meta.rev):
            raise BadRequest("_revisions.start is not the generation of _rev")
    return {k: v for k, v in doc.items() if k not in RESERVED_FIELDS}


class Versioning(Layer[Doc, Any]):
    """Revisions and conflicts over a store of JSON values; one instance per database."""

    revs_limit: int     # an option: Layer.__init__ sets it

    def __init__(self, inner, revs_limit: int = 1000):
        if revs_limit < 1:
            raise ValueError("revs_limit must be at least 1")
        super().__init__(inner, revs_limit=revs_limit)
        self._combiner = Combiner(self._write_batch, shared=(BackendError,))
        # The backend's key check, made per document: a batch's writes reach the
        # backend together, where one bad key would fail them all.
        self._check_key = getattr(self.bottom(), "check_key", str)

    # -- reading ----------------------------------------------------------------
    def info(self) -> dict[str, int]:
        return self._counts(self.inner)

    @staticmethod
    def _counts(store) -> dict[str, int]:
        """A copy of the database's counts as ``store`` has them (zeros when new)."""
        info = store.get(INFO)
        return dict(info) if info else {"seq": 0, "docs": 0, "deleted": 0}

    def record(self, doc_id: str) -> Doc | None:
        """The document's record (its winning revision, live or deleted, with the tree
        in ``meta.tree``), or None."""
        found = self.inner.get_many([DOC + doc_id, TOMB + doc_id])
        live = found.get(DOC + doc_id)      # an empty body is falsy: compare with None
        stored = live if live is not None else found.get(TOMB + doc_id)
        if stored is None:
            return None
        return self._describe(stored, self.tree(doc_id, stored, self.inner))

    def records(self, doc_ids: list[str]) -> dict[str, Doc]:
        """The records of those of ``doc_ids`` that have one (as :meth:`record`), read
        in one ``get_many``."""
        found = self.inner.get_many([k for i in doc_ids for k in (DOC + i, TOMB + i)])
        out = {}
        for doc_id in doc_ids:
            live = found.get(DOC + doc_id)
            stored = live if live is not None else found.get(TOMB + doc_id)
            if stored is not None:
                out[doc_id] = self._describe(stored, self.tree(doc_id, stored, self.inner))
        return out

    def tree(self, doc_id: str, stored: Doc, store=None) -> RevTree:
        """The revision tree of the record ``stored``. A record of the format before
        trees has none: one is made of its history and conflicts (:func:`legacy_tree`)."""
        if stored.meta.tree is not None:
            return stored.meta.tree
        return legacy_tree(doc_id, stored, store)

    def leaves(self, doc_id: str) -> list[Leaf]:
        """Every leaf of the document's tree with its deleted flag, the winner first
        (``open_revs=all``, ``_deleted_conflicts``, ``style=all_docs``); [] if none."""
        return self.leaves_many([doc_id]).get(doc_id, [])

    def leaves_many(self, doc_ids: list[str]) -> dict[str, list[Leaf]]:
        """:meth:`leaves` of each of ``doc_ids`` that has a tree, read in one go."""
        return {doc_id: record.meta.tree.leaves()
                for doc_id, record in self.records(doc_ids).items()
                if record.meta.tree is not None}

    def latest(self, doc_id: str, rev: str) -> list[str]:
        """The leaves that descend from ``rev`` (``rev`` itself when it is a leaf), the
        winner first: what ``latest=true`` answers for it. [] if the tree lacks it."""
        current = self.record(doc_id)
        tree = current.meta.tree if current is not None else None
        if tree is None or rev not in tree:
            return []
        return [leaf.rev for leaf in tree.leaves() if rev in tree.path(leaf.rev)]

    @staticmethod
    def _describe(stored: Doc, tree: RevTree) -> Doc:
        """``stored`` (a revision of the document whose tree is ``tree``) with its meta's
        ``tree``, ``revisions`` (its path) and ``conflicts`` (the document's) filled."""
        meta = stored.meta
        meta.tree = tree
        if meta.rev is not None and meta.rev in tree:
            meta.revisions = tree.history(meta.rev)
        meta.conflicts = tree.conflicts()
        return stored

    def present(self, doc_id: str, stored: Doc, tree: RevTree | None = None) -> Doc:
        """A stored revision as the user sees it: ``_id`` and ``_rev`` first, its meta
        describing it (:meth:`_describe`)."""
        meta = stored.meta
        meta.id = doc_id
        if tree is None:
            tree = self.tree(doc_id, stored)
        self._describe(stored, tree)
        head: dict[str, Any] = {"_id": doc_id, "_rev": meta.rev}
        if meta.deleted:
            head["_deleted"] = True
        head.update(stored)
        return Doc(head, meta)

    def __getitem__(self, key) -> Doc:
        if isinstance(key, tuple):
            return self.revision(*key)
        if key.startswith(LOCAL_PREFIX):
            return self._plain(key, self._local(key))
        try:
            return self.present(key, self.inner[DOC + key])
        except KeyError:
            pass
        try:
            stored = self.inner[TOMB + key]
        except KeyError:
            raise NotFound(key) from None
        raise Deleted(key, stored.meta.rev)

    @staticmethod
    def _plain(doc_id: str, stored: Doc) -> Doc:
        stored.meta.id = doc_id
        return Doc({"_id": doc_id, "_rev": stored.meta.rev, **stored}, stored.meta)

    def revision(self, doc_id: str, rev: str) -> Doc:
        """The body of revision ``rev`` of ``doc_id`` (the winner, another leaf, or an
        inner revision not yet compacted away)."""
        current = self.record(doc_id)
        if current is not None and current.meta.rev == rev:
            return self.present(doc_id, current, current.meta.tree)
        try:
            old = self.inner[old_key(doc_id, rev)]
        except KeyError:
            raise NotFound(doc_id, "missing", rev=rev) from None
        return self.present(doc_id, old, current.meta.tree if current is not None else None)

    def revisions(self, wanted: list[tuple[str, str]]) -> list[Doc | None]:
        """The revisions ``wanted`` (``(id, rev)`` pairs) as :meth:`revision` reads
        each, None for one this database lacks: the records read in one go, the bodies
        of revisions other than the winners in another."""
        records = self.records(list(dict.fromkeys(doc_id for doc_id, _ in wanted)))
        others = [old_key(doc_id, rev) for doc_id, rev in wanted
                  if (record := records.get(doc_id)) is None or record.meta.rev != rev]
        found = self.inner.get_many(others) if others else {}
        out: list[Doc | None] = []
        for doc_id, rev in wanted:
            current = records.get(doc_id)
            if current is not None and current.meta.rev == rev:
                out.append(self.present(doc_id, current, current.meta.tree))
                continue
            old = found.get(old_key(doc_id, rev))
            out.append(None if old is None else self.present(
                doc_id, old, current.meta.tree if current is not None else None))
        return out

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
        """Each document once, at its latest sequence number, after ``since``, with its
        winning revision and (:attr:`Change.others`) its other leaves."""
        items = self.inner.range(seq_key(since + 1), prefix_end(SEQ), inclusive_end=False,
                                 descending=descending)
        for key, entry in items:
            yield Change(int(key[len(SEQ):]), entry[0], entry[1], entry[2],
                         tuple(entry[3]) if len(entry) > 3 else None)

    def revs_diff(self, doc_id: str, revs: list[str]) -> list[str]:
        """Of ``revs``, those this database has never seen for ``doc_id``."""
        return self.missing_revs(doc_id, revs)[0]

    def missing_revs(self, doc_id: str, revs: list[str]) -> tuple[list[str], list[str]]:
        """CouchDB's ``_revs_diff`` for one document: the revs of ``revs`` it lacks
        (every stored revision counts, leaf or ancestor), and the leaves that could be
        their ancestors (``possible_ancestors``)."""
        return self.missing_revs_many({doc_id: revs})[doc_id]

    def missing_revs_many(self, wanted: dict[str, list[str]]
                          ) -> dict[str, tuple[list[str], list[str]]]:
        """:meth:`missing_revs` of each document of ``wanted`` (id: revs), the records
        read in one go."""
        records = self.records(list(wanted))
        out: dict[str, tuple[list[str], list[str]]] = {}
        for doc_id, revs in wanted.items():
            current = records.get(doc_id)
            if current is None or current.meta.tree is None:
                out[doc_id] = (list(dict.fromkeys(revs)), [])
            else:
                out[doc_id] = current.meta.tree.revs_diff(revs)
        return out

    # -- writing ----------------------------------------------------------------
    def __setitem__(self, key: str, value) -> None:
        doc = as_doc(value)
        body = split_body(doc, key.startswith(LOCAL_PREFIX))
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

    def set_many(self, items):
        """Write a batch of documents as one: one read below of every record they
        touch, one write of what they produce (:meth:`_write_batch`), in the caller's
        transaction or one of its own. Each item as a write of it alone would be:
        written (its Doc's meta given its rev and seq), or refused, its error in its
        place."""
        outcomes: list = [None] * len(items)
        batch, where = [], []
        for at, (key, value) in enumerate(items):
            try:
                doc = as_doc(value)
                body = split_body(doc, key.startswith(LOCAL_PREFIX))
                if key.startswith(LOCAL_PREFIX):
                    self._put_local(key, doc, body)
                else:
                    batch.append((key, doc, body))
                    where.append(at)
            except ITEM_ERRORS as e:
                outcomes[at] = e.with_traceback(None)
        if batch:
            for at, (key, doc, _), outcome in zip(where, batch, self._write_batch(lambda: batch)):
                if isinstance(outcome, BaseException):
                    outcomes[at] = outcome
                elif outcome is not None:            # None: a replicated revision we had
                    doc.meta.id = key
                    doc.meta.rev, doc.meta.seq = outcome
        return outcomes

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
                except ITEM_ERRORS as e:
                    pending.undo()
                    # The item's answer, not a fault: without its traceback, whose
                    # frames hold this list and so the error (a cycle per conflict
                    # that only the garbage collector would free).
                    outcomes.append(e.with_traceback(None))
            pending.flush()
        return outcomes

    def _write(self, store, key, doc, body):
        """One document write against ``store`` (the batch's pending writes)."""
        live = store.get(DOC + key)          # an empty body is falsy: compare with None
        current = live if live is not None else store.get(TOMB + key)
        # A copy: the record may be the one an earlier item of the batch wrote.
        tree = self.tree(key, current, store).copy() if current is not None else RevTree()
        meta = doc.meta
        rev: str | None
        if meta.new_edits:
            rev = self._edit(key, tree, doc, body)
        else:
            rev = self._replicate(tree, doc)
            if rev is None:                  # a replicated revision we already have
                return None
        leaf = Doc(body, Meta(rev=rev, timestamp=meta.timestamp, deleted=meta.deleted))
        return rev, self._commit(store, key, current, tree, leaf)

    def _edit(self, key: str, tree: RevTree, doc: Doc, body: dict) -> str:
        """A normal edit: the named revision must be a leaf (normally the winner). Adds
        the new revision to ``tree``; returns it."""
        meta, given = doc.meta, doc.meta.rev
        if not tree:                         # a new document (a deleted one too)
            if given not in (None, CURRENT):
                raise Conflict(key, None, given)
            if meta.deleted and given == CURRENT:
                raise NotFound(key)          # del db[id] of nothing
            parent = None
        else:
            winner = tree.winner()
            if tree.deleted:                 # recreated from its winning tombstone
                if meta.deleted and given in (CURRENT, winner):
                    raise Deleted(key, winner)
                if given not in (None, CURRENT) or meta.deleted:
                    raise Conflict(key, winner, given)     # CouchDB: no rev on a re-create
                parent = winner
            elif given == CURRENT:
                parent = winner
            elif given is None or not tree.is_leaf(given):
                raise Conflict(key, winner, given)
            else:
                parent = given
        rev = new_revision(parent, body, meta.deleted)
        ids = [parse_rev(rev)[1]] + ([parse_rev(parent)[1]] if parent else [])
        tree.merge(rev_generation(rev), ids, deleted=meta.deleted)
        return rev

    @staticmethod
    def _replicate(tree: RevTree, doc: Doc) -> str | None:
        """``new_edits=false``: merge the revision's ``_revisions`` path into ``tree``;
        returns it, or None when the tree had it (nothing to write, as CouchDB)."""
        meta = doc.meta
        if meta.rev in (None, CURRENT):
            raise BadRequest("a revision stored with new_edits=false needs its _rev")
        generation, digest = parse_rev(meta.rev)
        ids = meta.revisions or [digest]
        if ids[0] != digest:
            raise BadRequest("_revisions does not end in _rev")
        if meta.rev in tree:
            return None
        tree.merge(generation, ids, deleted=meta.deleted)
        return meta.rev

    def _commit(self, store, key: str, current: Doc | None, tree: RevTree, leaf: Doc) -> int:
        """Store the document whose tree is now ``tree`` after the revision ``leaf`` was
        added to it: the record (tree and winner's body), the other bodies where they
        belong, the changes entry and the counts, in ``store`` (the batch's pending
        writes, written below together). Returns the document's new seq."""
        info = self._counts(store)
        dropped = tree.stem(info.get("revs_limit") or self.revs_limit)
        winner = tree.winner()
        deleted = tree.deleted
        gone = [old_key(key, rev) for rev in dropped]
        puts: list[tuple[str, Any]] = []
        if leaf.meta.rev != winner:
            puts.append((old_key(key, stored_rev(leaf)), leaf))  # a losing leaf
        if current is None:
            record = leaf
        else:
            was = stored_rev(current)
            assert current.meta.seq is not None             # a record has its seq
            gone.append(seq_key(current.meta.seq))
            if was == winner:
                record = current
            else:
                if was in tree:                                   # the old winner's body
                    puts.append((old_key(key, was), Doc(current, Meta(
                        rev=was, timestamp=current.meta.timestamp,
                        deleted=current.meta.deleted))))
                record = leaf if winner == leaf.meta.rev else self._promoted(store, key, tree,
                                                                            winner)
            if current.meta.deleted != deleted:
                gone.append((TOMB if current.meta.deleted else DOC) + key)
        info["seq"] += 1
        stored = Doc(record, Meta(rev=winner, seq=info["seq"], timestamp=record.meta.timestamp,
                                  deleted=deleted, tree=tree))
        puts.append(((TOMB if deleted else DOC) + key, stored))
        puts.append((seq_key(info["seq"]), [key, winner, deleted, tree.losers()]))
        self._count(info, None if current is None else current.meta.deleted, deleted)
        puts.append((INFO, info))
        for put_key, _ in puts:
            self._check_key(put_key)
        # Deletions first: a key dropped here may be written again (the record moving
        # between d/ and t/ and back, a revs_limit of 1). Both go to the batch's
        # pending writes: all or nothing.
        store.delete_many(gone)
        store.put_many(puts)
        return info["seq"]

    @staticmethod
    def _promoted(store, key: str, tree: RevTree, winner: str) -> Doc:
        """The body of ``winner``, a leaf that was losing, taken from its own key."""
        body = store.pop(old_key(key, winner), None)
        if body is None:                     # never stored (cannot happen to a leaf
            tree.set_stored(winner, False)   # written here): an empty body, said so
            body = Doc({}, Meta(rev=winner, deleted=tree.node(winner).deleted))
        return body

    @staticmethod
    def _count(info: dict, was_deleted: bool | None, deleted: bool) -> None:
        """Keep the live and deleted counts (``was_deleted`` None: a new document)."""
        if was_deleted is not None:
            info["deleted" if was_deleted else "docs"] -= 1
        info["deleted" if deleted else "docs"] += 1

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

    # -- purging ------------------------------------------------------------------------
    def purge(self, doc_id: str, revs: list[str]) -> list[str]:
        """CouchDB's purge: the leaves of ``revs`` leave the document's tree with the
        ancestors no other leaf shares, bodies and all, as if never written (no
        tombstone). Returns the revisions purged (only leaves are). The document, or
        a marker when none of it is left, moves to a new sequence number so that views
        drop what they had of it (the changes feed does not list markers)."""
        with self.inner.transaction():
            store = self.inner
            current = self.record(doc_id)
            tree = current.meta.tree if current is not None else None
            if current is None or tree is None:
                return []
            leaves = {leaf.rev: leaf.deleted for leaf in tree.leaves()}
            purged = [rev for rev in dict.fromkeys(revs) if rev in leaves]
            if not purged:
                return []
            kept = [rev for rev in leaves if rev not in purged]
            on_kept = {rev for leaf in kept for rev in tree.path(leaf)}
            for rev in tree:
                if rev not in on_kept:
                    store.pop(old_key(doc_id, rev), None)
            info = self._counts(store)
            info["purge_seq"] = info.get("purge_seq", 0) + 1
            info["seq"] += 1
            assert current.meta.seq is not None             # a record has its seq
            store.pop(seq_key(current.meta.seq), None)
            store.pop(DOC + doc_id, None)
            store.pop(TOMB + doc_id, None)
            info["deleted" if current.meta.deleted else "docs"] -= 1
            if not kept:                                     # nothing left: a marker
                store[seq_key(info["seq"])] = [doc_id, None, True]
                store[INFO] = info
                return purged
            remaining = RevTree()
            for leaf in kept:
                remaining.merge(parse_rev(leaf)[0], tree.history(leaf), deleted=leaves[leaf],
                                stored=False)
            for rev in remaining:
                remaining.set_stored(rev, tree.node(rev).stored)
            winner, deleted = remaining.winner(), remaining.deleted
            was = stored_rev(current)
            if winner == was:
                body: Doc = current
            else:
                if was in on_kept:                           # the old winner stays a leaf
                    store[old_key(doc_id, was)] = Doc(current, Meta(
                        rev=was, timestamp=current.meta.timestamp,
                        deleted=current.meta.deleted))
                body = self._promoted(store, doc_id, remaining, winner)
            store[(TOMB if deleted else DOC) + doc_id] = Doc(body, Meta(
                rev=winner, seq=info["seq"], timestamp=body.meta.timestamp, deleted=deleted,
                tree=remaining))
            store[seq_key(info["seq"])] = [doc_id, winner, deleted, remaining.losers()]
            info["deleted" if deleted else "docs"] += 1
            store[INFO] = info
            return purged

    def compact(self) -> int:
        """Drop the bodies of inner revisions (keeping every leaf's), noting it in the
        trees; returns how many were dropped. A record of the format before trees is
        rewritten with its tree on the way."""
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
        by_doc: dict[str, list[tuple[str, str]]] = {}
        for key, doc_id, rev in batch:
            by_doc.setdefault(doc_id, []).append((key, rev))
        with self.inner.transaction():
            for doc_id, olds in by_doc.items():
                found = self.inner.get_many([DOC + doc_id, TOMB + doc_id])
                where = DOC + doc_id if DOC + doc_id in found else TOMB + doc_id
                stored = found.get(where)
                if stored is None:              # no record left: every old body goes
                    for key, _ in olds:
                        self.inner.pop(key, None)
                        dropped += 1
                    continue
                tree = self.tree(doc_id, stored, self.inner).copy()
                changed = stored.meta.tree is None
                for key, rev in olds:
                    if tree.is_leaf(rev) and rev != stored.meta.rev:
                        continue
                    self.inner.pop(key, None)
                    dropped += 1
                    if rev in tree and tree.node(rev).stored:
                        tree.set_stored(rev, False)
                        changed = True
                if changed:
                    meta = stored.meta
                    self.inner[where] = Doc(stored, Meta(rev=meta.rev, seq=meta.seq,
                                                         timestamp=meta.timestamp,
                                                         deleted=meta.deleted, tree=tree))
        return dropped
