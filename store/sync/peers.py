"""The two ends of a replication, behind one interface: :class:`Peer`.

A peer answers what the protocol asks of a database (CouchDB's Replication
Protocol): its info, its changes after a sequence, which revisions it lacks
(``_revs_diff``), revisions with their history (``revs=true``) and attachments, a
batch written as given (``new_edits=false``), and ``_local`` checkpoint documents.
:class:`LocalPeer` is a database of this process (:class:`~settee.store.Database`);
:class:`~.remote.HttpPeer` one behind a URL. Sequences are opaque values: a peer
hands them out and takes them back, nothing else reads them.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..database import Database
from ..document import Doc, Meta
from ..exceptions import BadRequest, Conflict, NotFound, StoreError
from ..layers.versioning import Change

#: Revisions a local source reads at a time.
FETCH_CHUNK = 256
#: A filter on a local source's changes: called with a :class:`Change`, true to keep.
ChangeFilter = Callable[[Change], bool]


class PeerError(Exception):
    """A peer failed to answer. ``status`` is the HTTP status (0: no answer at all);
    ``transient`` errors are worth retrying (network, 5xx, 429)."""

    def __init__(self, reason: str, status: int = 0, error: str = "replication_error"):
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason

    @property
    def transient(self) -> bool:
        return self.status == 0 or self.status >= 500 or self.status == 429


class PeerNotFound(PeerError):
    def __init__(self, what: str):
        super().__init__(f"could not open {what}", 404, "db_not_found")


class Peer:
    """What a replication needs of a database; see the module's docstring."""

    name: str = ""
    #: How many threads may usefully fetch from it at once: a remote peer answers
    #: requests in parallel; a database of this process reads under one interpreter.
    fetchers: int = 4

    def info(self) -> dict[str, Any]:
        """``GET /{db}``; :class:`PeerNotFound` when it does not exist."""
        raise NotImplementedError

    def create(self) -> None:
        raise NotImplementedError

    def changes(self, since: Any, limit: int, spec: dict, wait: float = 0.0,
                stop: threading.Event | None = None) -> tuple[list[dict], Any]:
        """Up to ``limit`` rows after ``since`` (``{"seq", "id", "changes": [{"rev"}],
        "deleted"?}``, every leaf: ``style=all_docs``; the winner alone when
        ``spec["winning_revs_only"]``) and the last seq. With ``wait``, wait up to that
        many seconds for a change when there is none."""
        raise NotImplementedError

    def revs_diff(self, revs: dict[str, list[str]]) -> dict[str, dict]:
        raise NotImplementedError

    def fetch(self, wanted: list[tuple[str, list[str]]]) -> list[dict]:
        """The revisions ``wanted`` (``(id, [rev, ...])``) with ``_revisions`` and
        attachment data; a revision it cannot give is left out."""
        raise NotImplementedError

    def write(self, docs: list[dict]) -> list[dict]:
        """``_bulk_docs`` with ``new_edits=false``: the errors, one dict each."""
        raise NotImplementedError

    def get_local(self, doc_id: str) -> dict | None:
        raise NotImplementedError

    def put_local(self, doc_id: str, body: dict) -> str:
        """Write ``_local/...`` (``body`` with the ``_rev`` it replaces, if any); the new rev."""
        raise NotImplementedError

    def lane(self) -> Peer:
        """The peer for one stage of a replication that runs beside another (the
        reading stage's ``_revs_diff`` beside the writing stage's ``_bulk_docs``): a
        remote peer gives one on a connection of its own, so that each stage keeps
        its connection (a server with several workers serves them on different
        ones) rather than taking whichever the other stage left; others are their
        own. Closed with :meth:`close` when it is not ``self``."""
        return self

    def close(self) -> None:
        pass


def as_row(change: Change, leaves: Iterable[str]) -> dict:
    row: dict[str, Any] = {"seq": str(change.seq), "id": change.id,
                           "changes": [{"rev": rev} for rev in leaves]}
    if change.deleted:
        row["deleted"] = True
    return row


def seq_number(since: Any) -> int:
    """A sequence this server handed out (``N`` or ``"N-..."``) as its number."""
    if since in (None, "", 0, "0"):
        return 0
    try:
        return max(0, int(str(since).split("-", 1)[0]))
    except ValueError:
        raise BadRequest(f"Malformed since_seq: {since!r}") from None


class LocalPeer(Peer):
    """A database of this process. ``filters`` makes a :data:`ChangeFilter` of a
    filter spec (the server lends its own, which knows ``_selector``, ``_view`` and
    design filters); without it only ``_doc_ids`` and ``_design`` are known.
    ``written`` is told of each batch written (the server: design documents saved)."""

    fetchers = 1

    def __init__(self, database: Database, *,
                 filters: Callable[[Database, dict], ChangeFilter] | None = None,
                 written: Callable[[Database, list[dict]], None] | None = None,
                 leased: bool = False):
        self.database = database
        self.leased = leased              # release the database at close
        self.name = database.name
        self.filters = filters
        self.written = written

    def info(self) -> dict[str, Any]:
        info = self.database.info()
        return {"db_name": self.name, "update_seq": str(info["update_seq"]),
                "doc_count": info["doc_count"], "instance_start_time": "0"}

    def create(self) -> None:
        pass                                  # the opener made it: it exists

    def change_filter(self, spec: dict) -> ChangeFilter | None:
        name = spec.get("filter")
        if spec.get("doc_ids") is not None:
            wanted = set(spec["doc_ids"])
            return lambda change: change.id in wanted
        if not name and spec.get("selector") is None:
            return None
        if self.filters is not None:
            return self.filters(self.database, spec)
        if name == "_design":
            return lambda change: change.id.startswith("_design/")
        raise BadRequest(f"filter {name or '_selector'!r} is not known here")

    def changes(self, since, limit, spec, wait=0.0, stop=None):
        after = seq_number(since)
        accept = self.change_filter(spec)
        deadline = time.monotonic() + wait
        while True:
            kept, last = [], after
            for change in self.database.changes(after):
                last = change.seq
                if accept is not None and not accept(change):
                    continue
                kept.append(change)
                if len(kept) >= limit:
                    break
            rows = [as_row(change, revs) for change, revs in
                    zip(kept, self.leaf_revs(kept, bool(spec.get("winning_revs_only"))))]
            if rows or last != after or time.monotonic() >= deadline:
                return rows, str(last)
            if stop is not None and stop.wait(0.05):
                return rows, str(last)
            if stop is None:
                time.sleep(0.05)

    def leaf_revs(self, changes: list[Change], winners_only: bool) -> list[list[str]]:
        """Each change's leaves, the winner first: as its entry records them, else
        (an entry older than that) read from the trees, together."""
        if winners_only:
            return [[change.rev] for change in changes]
        unknown = [change.id for change in changes if change.others is None]
        leaves = self.database.leaves_many(unknown) if unknown else {}
        return [[change.rev, *change.others] if change.others is not None else
                ([leaf.rev for leaf in leaves.get(change.id, ())] or [change.rev])
                for change in changes]

    def revs_diff(self, revs):
        return self.database.revs_diff_many(revs)

    def fetch(self, wanted):
        docs = []
        pairs = [(doc_id, rev) for doc_id, revs in wanted for rev in revs]
        for start in range(0, len(pairs), FETCH_CHUNK):
            for doc in self.database.revisions(pairs[start:start + FETCH_CHUNK]):
                if doc is None:
                    continue
                body = dict(doc)
                meta = doc.meta
                if meta.revisions:
                    body["_revisions"] = {"start": meta.generation, "ids": meta.revisions}
                if meta.deleted:
                    body["_deleted"] = True
                docs.append(body)
        return docs

    def write(self, docs):
        errors = []
        database = self.database
        with database.transaction():
            saved = database.save_many([Doc(body, Meta(new_edits=False)) for body in docs],
                                       new_edits=False)
        for body, outcome in zip(docs, saved):
            if isinstance(outcome, StoreError):
                errors.append({"id": body.get("_id"), "rev": body.get("_rev"),
                               "error": outcome.error, "reason": str(outcome)})
        if self.written is not None:
            self.written(database, docs)
        return errors

    def get_local(self, doc_id):
        try:
            return dict(self.database[doc_id])
        except NotFound:
            return None

    def put_local(self, doc_id, body):
        doc = Doc(body)
        try:
            self.database[doc_id] = doc
        except Conflict as e:
            raise PeerError(f"{doc_id} on {self.name}: {e}", 409, "conflict") from None
        return str(doc.meta.rev)

    def close(self):
        if self.leased:
            self.leased = False
            self.database.release()
