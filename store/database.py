"""The embedded API: a database is a mapping of document ids to documents.

::

    from settee.store import open_database
    db = open_database("./data", "invoices")
    db["inv1"] = {"payments": [], "lineItems": []}
    doc = db["inv1"]                    # {"_id": "inv1", "_rev": "1-…", …}
    doc["customer"] = "ACME"
    db["inv1"] = doc                    # names its _rev, so no conflict
    db["inv1", doc["_rev"]]             # an old revision, as in the design talk

The semantics are the server's: a write must name the current revision (``_rev``)
or it raises :class:`~.exceptions.Conflict`; ``del db[id]`` deletes the current
revision (the mapping protocol cannot name one; :meth:`Database.delete` checks it).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

import orjson

from . import keyspace
from .base import Backend, Layer, Store
from .document import CURRENT, Doc, Document, Meta, as_doc
from .exceptions import ITEM_ERRORS, BadRequest, IllegalDocId, IllegalPartition, StoreError
from .layers.versioning import Change, Versioning
from .revtree import Leaf
from .uuids import new_id

LOCAL_PREFIX = "_local/"
DEFAULT_PURGED_INFOS_LIMIT = 1000


class Database(MutableMapping[str, Document]):
    """One database: the top of its stack, plus what a document database adds."""

    def __init__(self, name: str, top: Store, backend: Backend):
        self.name = name
        self.top = top
        self.backend = backend
        versions = top.find_layer(Versioning) if isinstance(top, Layer) else None
        if versions is None:
            raise TypeError("a Database needs a versioning layer in its stack")
        self.versions: Versioning = versions
        self.opener: tuple | None = None      # (settings, name): how other processes open it
        self.settings: Mapping | None = None  # the catalog's (what bounds code run over it)
        self.last_used = 0.0                  # time.monotonic() of the last lookup (catalog)
        #: What other packages keep per open database (views: its indexes), gone with it.
        self.extensions: dict[str, Any] = {}
        self._leases: list[None] = []         # one entry per user (append, pop: atomic)
        self._props: dict | None = None       # props(), read once: set only at creation
        #: Called after each write of a document or of ``_security`` (the catalog's
        #: record of database updates); None for a database opened on its own.
        self.written: Callable[[], None] | None = None

    # -- who uses it (the catalog closes only databases nobody uses) -----------------
    def lease(self) -> Database:
        """Mark the database in use until :meth:`release`; returns it."""
        self._leases.append(None)
        return self

    def release(self) -> None:
        self._leases.pop()

    @property
    def in_use(self) -> bool:
        return bool(self._leases)

    # -- the mapping ------------------------------------------------------------
    def __getitem__(self, key) -> Doc:
        return self.top[key]

    def __setitem__(self, key: str, value: Document) -> None:
        self.check_id(key)
        self.top[key] = value
        self._written(key)

    def _written(self, key: str) -> None:
        if self.written is not None and not key.startswith("_local/"):
            self.written()

    def __delitem__(self, key: str) -> None:
        del self.top[key]
        self._written(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.versions)

    def __len__(self) -> int:
        return len(self.versions)

    def __contains__(self, key) -> bool:
        return key in self.versions

    # -- what the server needs ----------------------------------------------------
    def save(self, doc: Document, *, new_edits: bool = True, user: str | None = None) -> Doc:
        """Write ``doc`` (its ``_id``, or a new UUID); returns it with ``meta.rev`` set."""
        doc_id, doc = self._addressed(doc, new_edits, user)
        self.top[doc_id] = doc
        self._written(doc_id)
        return doc

    def _addressed(self, given: Document, new_edits: bool, user: str | None
                   ) -> tuple[str, Doc]:
        """``(id, Doc)`` of a document about to be written: its ``_id`` (checked) or a
        new UUID, and its meta saying how it is written and by whom."""
        doc = as_doc(dict(given) if not isinstance(given, Doc) else given)
        doc_id = doc.get("_id")
        if doc_id is None:
            doc_id = new_id()
        if not isinstance(doc_id, str) or not doc_id:
            raise BadRequest("_id must be a non-empty string")
        self.check_id(doc_id)
        doc.meta.new_edits = new_edits
        doc.meta.user = user
        return doc_id, doc

    def save_many(self, docs: list[Document], *, new_edits: bool = True,
                  user: str | None = None) -> list[Doc | StoreError]:
        """Write each of ``docs`` as :meth:`save` would, all in one transaction and one
        batch down the stack (:meth:`Store.set_many`): for each, its Doc with
        ``meta.rev`` set, or the error that refused it (the others are written)."""
        out: list[Doc | StoreError] = []
        items: list[tuple[str, Doc]] = []
        where: list[int] = []
        for given in docs:
            try:
                doc_id, doc = self._addressed(given, new_edits, user)
            except ITEM_ERRORS as e:
                out.append(e.with_traceback(None))
                continue
            where.append(len(out))
            out.append(doc)
            items.append((doc_id, doc))
        if items:
            for at, error in zip(where, self.top.set_many(items)):
                if error is not None:
                    out[at] = error
            self._written("")
        return out

    def delete(self, doc_id: str, rev: str | None, *, user: str | None = None) -> Doc:
        """Delete revision ``rev`` of ``doc_id``: a tombstone revision. Without ``rev``,
        as CouchDB's DELETE: a document that is not there (or deleted) is not found,
        one that is is a conflict."""
        if rev is None:
            self.top[doc_id]                  # NotFound, or Deleted
        doc = Doc({}, Meta(rev=rev, deleted=True, user=user))
        self.top[doc_id] = doc
        self._written(doc_id)
        return doc

    def get(self, key, default=None, *, rev: str | None = None):
        try:
            if rev is not None:
                # Store keys are str, but the document layers hand an (id, rev) key down
                # to the versioning layer, which reads that revision.
                return self.top[(key, rev)]  # type: ignore[index]
            return self.top[key]
        except KeyError:
            return default

    def docs(self, start: str | None = None, end: str | None = None, *,
             descending: bool = False, inclusive_end: bool = True) -> Iterator[tuple[str, Doc]]:
        """Live documents by id in [start, end], streamed in order."""
        return self.versions.range(start, end, descending=descending, inclusive_end=inclusive_end)

    def changes(self, since: int = 0, *, descending: bool = False) -> Iterator[Change]:
        return (change for change in self.versions.changes(since, descending=descending)
                if change.rev is not None)          # a purged document's marker: views only

    def info(self) -> dict[str, Any]:
        info = self.versions.info()
        return {"update_seq": info["seq"], "doc_count": info["docs"],
                "doc_del_count": info["deleted"], "purge_seq": info.get("purge_seq", 0),
                "size": self.backend.size_on_disk()}

    def purge(self, doc_id: str, revs: list[str]) -> list[str]:
        """Forget leaf revisions ``revs`` of ``doc_id`` entirely (CouchDB's purge); the
        revisions purged. A document with no leaf left is gone, without a tombstone."""
        return self.versions.purge(doc_id, revs)

    def update_seq(self) -> int:
        """The sequence of the last change (a small read)."""
        return self.versions.info()["seq"]

    def record(self, doc_id: str) -> Doc | None:
        """The current revision of ``doc_id``, deleted or not (None if never written)."""
        return self.versions.record(doc_id)

    def revs_diff(self, doc_id: str, revs: list[str]) -> list[str]:
        """Which of ``revs`` this database does not have."""
        return self.versions.revs_diff(doc_id, revs)

    def missing_revs(self, doc_id: str, revs: list[str]) -> tuple[list[str], list[str]]:
        """CouchDB's ``_revs_diff`` for one document: which of ``revs`` it lacks, and
        its leaves that could be their ancestors (``possible_ancestors``)."""
        return self.versions.missing_revs(doc_id, revs)

    def revs_diff_many(self, wanted: dict[str, list[str]], chunk: int = 256) -> dict[str, dict]:
        """The replication protocol's ``_revs_diff`` of many documents (id: revs): for
        each that lacks some, ``{"missing": [...]}`` with ``possible_ancestors`` when
        it has any; the records read ``chunk`` documents at a time."""
        out: dict[str, dict] = {}
        ids = list(wanted)
        for start in range(0, len(ids), chunk):
            part = {i: wanted[i] for i in ids[start:start + chunk]}
            for doc_id, (missing, ancestors) in self.versions.missing_revs_many(part).items():
                if missing:
                    out[doc_id] = {"missing": missing}
                    if ancestors:
                        out[doc_id]["possible_ancestors"] = ancestors
        return out

    def leaves(self, doc_id: str) -> list[Leaf]:
        """Every leaf revision of ``doc_id`` with its deleted flag, the winner first."""
        return self.versions.leaves(doc_id)

    def leaves_many(self, doc_ids: list[str]) -> dict[str, list[Leaf]]:
        """:meth:`leaves` of many documents at once (those never written left out)."""
        return self.versions.leaves_many(doc_ids)

    def revisions(self, wanted: list[tuple[str, str]]) -> list[Doc | None]:
        """Revisions by ``(id, rev)``, read together (as ``get(id, rev=rev)`` reads
        each); None for one the database lacks."""
        return self.versions.revisions(wanted)

    def latest(self, doc_id: str, rev: str) -> list[str]:
        """The leaf revisions that descend from ``rev`` (``latest=true``), winner first."""
        return self.versions.latest(doc_id, rev)

    def revs_limit(self) -> int:
        return self.versions.get_revs_limit()

    def set_revs_limit(self, limit: int) -> None:
        self.versions.set_revs_limit(limit)

    def security(self) -> dict:
        """The database's ``_security`` object (``{}`` until one is set)."""
        return self.versions.inner.get(keyspace.SECURITY) or {}

    def set_security(self, security: dict) -> None:
        store = self.versions.inner
        with store.transaction():
            store[keyspace.SECURITY] = security
        self._written(keyspace.SECURITY)

    def purged_infos_limit(self) -> int:
        """How many purges the database would remember (CouchDB's ``_purged_infos_limit``,
        1000 unless set)."""
        return self.versions.inner.get(keyspace.PURGED_INFOS_LIMIT) or DEFAULT_PURGED_INFOS_LIMIT

    def set_purged_infos_limit(self, limit: int) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise BadRequest("purged_infos_limit must be a positive integer")
        store = self.versions.inner
        with store.transaction():
            store[keyspace.PURGED_INFOS_LIMIT] = limit

    def local_docs(self, start: str | None = None, end: str | None = None, *,
                   descending: bool = False) -> Iterator[tuple[str, Doc]]:
        """``_local/`` documents by id in [start, end] (ids with their ``_local/``
        prefix), streamed in order, each with its ``_id`` and ``_rev``."""
        lo, hi = keyspace.LOCAL + LOCAL_PREFIX, keyspace.LOCAL + LOCAL_PREFIX + "\U0010ffff"
        if start is not None:
            lo = max(lo, keyspace.LOCAL + start)
        if end is not None:
            hi = min(hi, keyspace.LOCAL + end)
        for key, stored in self.versions.inner.range(lo, hi, descending=descending):
            doc_id = key[len(keyspace.LOCAL):]
            stored.meta.id = doc_id
            yield doc_id, Doc({"_id": doc_id, "_rev": stored.meta.rev, **stored}, stored.meta)

    def props(self) -> dict:
        """The database's properties (``{}``, or ``{"partitioned": true}``), as
        ``GET /{db}`` shows them; they are set once, when the database is created."""
        if self._props is None:
            self._props = self.versions.inner.get(keyspace.PROPS) or {}
        return self._props

    def set_props(self, props: dict) -> None:
        store = self.versions.inner
        with store.transaction():
            store[keyspace.PROPS] = props
        self._props = dict(props)

    def partitioned(self) -> bool:
        """Whether document ids are ``partition:id`` and queries may name a partition."""
        return bool(self.props().get("partitioned"))

    def check_id(self, doc_id) -> None:
        """In a partitioned database, a document id is ``partition:id`` (design and
        ``_local/`` documents apart): :class:`IllegalDocId` if not."""
        if not isinstance(doc_id, str) or doc_id.startswith(("_design/", "_local/")) \
                or not self.partitioned():
            return
        partition, colon, rest = doc_id.partition(":")
        if not colon or not rest:
            raise IllegalDocId("Doc id must be of form partition:id")
        check_partition(partition)

    def partition_info(self, partition: str) -> dict[str, int]:
        """``{docs, deleted, size}`` of the documents whose ids start with ``partition:``
        (size: their bodies' JSON bytes)."""
        lo = partition + ":"
        hi = lo + "\U0010ffff"
        docs = size = 0
        for _, doc in self.versions.range(lo, hi):
            docs += 1
            size += len(orjson.dumps(doc))
        deleted = sum(1 for _ in self.versions.inner.range(keyspace.TOMB + lo, keyspace.TOMB + hi,
                                                           keys_only=True))
        return {"docs": docs, "deleted": deleted, "size": size}

    def replication_lag(self) -> dict | None:
        """The replication layer's outbox (``{"pending": n, ...}``), or None without one."""
        from .layers.replication import Replication
        layer = self.top.find_layer(Replication) if isinstance(self.top, Layer) else None
        return None if layer is None else layer.lag()

    def change_waiter(self):
        """``wait(timeout)`` returning at a commit (or the timeout), where the backend is
        told of commits (PostgreSQL's LISTEN); None where a waiter must poll. Its mark
        is taken now, so a commit between this call and the first wait is not missed."""
        watch = getattr(self.backend, "wait_for_change", None)
        if watch is None:
            return None
        mark = watch(None, 0)

        def wait(timeout: float) -> None:
            nonlocal mark
            mark = watch(mark, timeout)
        return wait

    def compact(self) -> int:
        """Drop old revision bodies (conflict leaves stay), then let the backend give the
        space back (:meth:`Backend.vacuum`); returns how many bodies were dropped."""
        dropped = self.versions.compact()
        self.backend.vacuum()
        return dropped

    def transaction(self):
        return self.top.transaction()

    def close(self) -> None:
        self.top.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Database {self.name!r}>"


def check_partition(partition) -> None:
    """A partition name is a non-empty string without ``:`` that does not start with
    ``_``: :class:`IllegalPartition` if not."""
    reason = ("Partition must be a string" if not isinstance(partition, str) else
              "Partition must not be empty" if not partition else
              "Partition must not start with an underscore" if partition.startswith("_") else
              "Partition must not contain a colon" if ":" in partition else None)
    if reason is not None:
        raise IllegalPartition(reason)


__all__ = ["Database", "CURRENT", "check_partition"]
