"""Documents and the per-operation context that travels with them down the stack.

The design talk left one problem open: "how to share state across the stack". A
layer deep down needs facts decided above it (the time of the write, the revision
the client named, whether the write replicates a revision as given) and facts
decided below must flow back up (the new revision, the sequence number).

Settee's answer: the value that travels through the document layers is a
:class:`Doc`, a ``dict`` (the document body, so every layer and every user can treat
it as one) carrying a :class:`Meta` record in its ``meta`` attribute. ``Meta`` *is*
the per-operation context: the timestamps layer writes ``meta.timestamp``, the
versioning layer reads ``meta.rev`` and writes back ``meta.rev`` and ``meta.seq``,
the server reads them off the same object after the write returns. Nothing is kept
in module globals or thread-locals, so two threads (or two gunicorn workers) can
never see each other's context, and a layer can be tested alone by handing it a Doc.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .revtree import RevTree

Document = dict[str, Any]

#: Body fields that belong to the envelope, not the document (CouchDB's names).
RESERVED_FIELDS = ("_id", "_rev", "_deleted", "_revisions", "_conflicts", "_revs_info",
                   "_local_seq", "_deleted_conflicts")


@dataclass(slots=True)
class Meta:
    """What the layers know about one revision of one document.

    On a write it is the operation's context; on a read it describes what was read.
    """

    id: str | None = None
    rev: str | None = None            # write: the rev the client named; read: this rev
    #: This revision's history, hashes newest first: on a write with new_edits=false the
    #: ``_revisions`` given; on a read, its path in the document's tree.
    revisions: list[str] = field(default_factory=list)
    seq: int | None = None            # position in the database's changes sequence
    timestamp: float | None = None    # seconds since the epoch, UTC
    deleted: bool = False
    conflicts: list[str] = field(default_factory=list)  # read: the losing live leaves
    new_edits: bool = True            # False: store the revision as given (replication)
    user: str | None = None           # who writes (set by the server)
    #: The document's revision tree: stored with its winning revision, and set on every
    #: revision read (the versioning layer fills ``revisions``/``conflicts`` from it).
    tree: RevTree | None = None

    # Records written before the tree stored "revisions" and "conflicts" instead; they
    # still load (into those fields), and the versioning layer makes a tree of them.
    _persisted = ("rev", "seq", "timestamp", "deleted", "tree")

    def to_json(self) -> dict[str, Any]:
        """The fields worth storing, skipping empty ones."""
        out = {}
        for name in self._persisted:
            value = getattr(self, name)
            if value:
                out[name] = value.to_json() if isinstance(value, RevTree) else value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Meta:
        if "tree" not in data:
            return cls(**data)
        data = dict(data)
        tree = RevTree.from_json(data.pop("tree"))
        return cls(**data, tree=tree)

    def copy(self) -> Meta:
        def copied(value: Any) -> Any:
            if isinstance(value, list):
                return list(value)
            return value.copy() if isinstance(value, RevTree) else value
        return Meta(**{f.name: copied(getattr(self, f.name)) for f in fields(self)})

    @property
    def generation(self) -> int:
        return rev_generation(self.rev) if self.rev else 0


class Doc(dict):
    """A document body with its :class:`Meta` (the per-operation context)."""

    __slots__ = ("meta",)

    def __init__(self, body: Any = (), meta: Meta | None = None, **kw):
        super().__init__(body, **kw)
        self.meta = meta if meta is not None else Meta()

    def __repr__(self) -> str:
        return f"Doc({dict.__repr__(self)}, rev={self.meta.rev!r})"

    def copy(self) -> Doc:
        return Doc(self, self.meta.copy())


def as_doc(value: Any) -> Doc:
    """``value`` as a :class:`Doc`; a plain mapping is copied into a fresh context."""
    if isinstance(value, Doc):
        return value
    if not isinstance(value, dict):
        from .exceptions import BadRequest
        raise BadRequest(f"Document must be a JSON object, not {type(value).__name__}")
    return Doc(value)


def rev_generation(rev: str) -> int:
    """The ``N`` of a revision ``N-hash``; ``ValueError`` when malformed."""
    number, sep, digest = rev.partition("-")
    if not sep or not digest or not number.isdigit():
        raise ValueError(f"invalid revision {rev!r}")
    return int(number)


#: A base revision meaning "whatever revision is current": what ``del db[id]`` names,
#: since the mapping protocol's delete cannot carry a revision.
CURRENT = "*"


def tombstone(rev: str | None = CURRENT) -> Doc:
    """The write that deletes a document: an empty body marked deleted."""
    return Doc({}, Meta(rev=rev, deleted=True))
