"""A document's revision tree, as CouchDB keeps it (couch_key_tree), in plain Python.

Every revision ``N-hash`` of a document is a node; an edit adds a child to the
revision it was based on, so concurrent edits (on two replicas, then replicated)
make branches. The leaves are the document's open revisions: one of them wins by a
rule every replica applies alike (:meth:`RevTree.winner`), the other live ones are
its conflicts, and the deleted ones are deleted branches (tombstones are leaves too).

Merging
    A revision arrives with its ancestry, ``_revisions`` ``{start, ids}``: the path
    ``start-ids[0]`` (the revision), ``start-1-ids[1]`` (its parent) and so on.
    :meth:`RevTree.merge` adds the nodes it lacks. A revision id names one revision
    (its hash covers its parent), so a node is keyed by its id alone and a path that
    shares any node with the tree joins it there: after ``1-a``, ``2-b [b,a]``,
    ``3-c [c,b]`` and ``4-d [d,c]`` the path of ``4-d`` is ``[d,c,b,a]``. A path
    whose oldest node is unknown starts a new root (its ancestors were stemmed, or
    never sent); a later path naming that root's parent joins the two. A path that
    gives a known revision another parent than the tree's keeps the tree's (it cannot
    come from honest replicas: the hash covers the parent). Merging the
    same paths in any order gives the same tree (nodes keyed by id, flags kept by a
    fixed rule), and merging a path twice changes nothing.

Stemming
    :meth:`RevTree.stem` keeps the last ``limit`` revisions of every branch (a
    leaf and its ``limit - 1`` nearest ancestors) and drops the rest; a kept node
    whose parent went becomes a root. Stemming twice changes nothing.

What a node knows
    Its parent (or none: a root), whether that revision is a deletion, and whether
    its body is stored (``revs_info``'s ``available``; compaction drops the bodies of
    inner revisions and clears it).

The stored form (JSON, :meth:`RevTree.to_json`)
    A list of nodes ``[pos, hash, parent, flags]`` sorted by ``(pos, hash)``, so
    parents come before their children and one tree has exactly one form whatever
    order it was built in. ``parent`` is the index of the parent node in the list,
    or -1 for a root; ``flags`` is the sum of :data:`DELETED` (1) and :data:`STORED`
    (2). Each revision is stored once, however many branches share it, and the
    list is flat: a history of a thousand revisions is a thousand short entries,
    not a thousand nested levels.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, NamedTuple

DELETED = 1
STORED = 2

MergeKind = Literal["new_leaf", "new_branch", "internal_node"]


def parse_rev(rev: str) -> tuple[int, str]:
    """``"N-hash"`` as ``(N, "hash")``; ``ValueError`` when malformed."""
    number, sep, digest = rev.partition("-") if isinstance(rev, str) else ("", "", "")
    if not sep or not digest or not number.isdigit() or int(number) < 1:
        raise ValueError(f"invalid revision {rev!r}")
    return int(number), digest


Key = tuple[int, str]     # a revision inside the tree: (generation, hash)


def _key(rev: str) -> Key | None:
    """``rev`` as a key, or None when it is no revision (so in no tree)."""
    try:
        return parse_rev(rev)
    except ValueError:
        return None


def _rev(key: Key) -> str:
    return f"{key[0]}-{key[1]}"


class Leaf(NamedTuple):
    rev: str
    deleted: bool


class Node(NamedTuple):
    """What the tree knows of one revision: its parent's rev (None: a root), its flags."""

    parent: str | None
    flags: int

    @property
    def deleted(self) -> bool:
        return bool(self.flags & DELETED)

    @property
    def stored(self) -> bool:
        return bool(self.flags & STORED)


class RevTree:
    """A document's revisions as a tree (see the module's docstring)."""

    __slots__ = ("_parent", "_flags", "_leaves")

    def __init__(self) -> None:
        # Two dicts keyed by (generation, hash): the parent's key (None: a root) and
        # the flags. Cheaper to load than an object per node, for long histories.
        self._parent: dict[Key, Key | None] = {}
        self._flags: dict[Key, int] = {}
        self._leaves: list[Key] | None = None       # cache, cleared by every change

    # -- building -----------------------------------------------------------------
    @classmethod
    def from_path(cls, start: int, ids: Sequence[str], *, deleted: bool = False,
                  stored: bool = True) -> RevTree:
        tree = cls()
        tree.merge(start, ids, deleted=deleted, stored=stored)
        return tree

    @classmethod
    def from_json(cls, data: Iterable[Sequence[Any]]) -> RevTree:
        tree = cls()
        order: list[Key] = []
        parents, flags = tree._parent, tree._flags
        for entry in data:
            pos, digest, parent, bits = entry
            if (type(pos) is not int or pos < 1 or type(digest) is not str or not digest
                    or type(bits) is not int):
                raise ValueError(f"malformed revision tree node {entry!r}")
            key = (pos, digest)
            if parent == -1:
                parents[key] = None
            elif type(parent) is int and 0 <= parent < len(order):
                parents[key] = order[parent]
            else:
                raise ValueError(f"revision tree node {entry!r}: no parent at {parent!r}")
            flags[key] = bits
            order.append(key)
        return tree

    def to_json(self) -> list[list[Any]]:
        """The stored form: ``[[pos, hash, parent index or -1, flags], ...]``."""
        order = sorted(self._parent)
        index = {key: i for i, key in enumerate(order)}
        parents, flags = self._parent, self._flags
        return [[key[0], key[1], -1 if (up := parents[key]) is None else index[up], flags[key]]
                for key in order]

    def copy(self) -> RevTree:
        tree = RevTree()
        tree._parent = dict(self._parent)
        tree._flags = dict(self._flags)
        return tree

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RevTree):
            return NotImplemented
        return self._parent == other._parent and self._flags == other._flags

    __hash__ = None  # type: ignore[assignment]     # mutable

    def __repr__(self) -> str:
        return f"RevTree({self.to_json()!r})"

    # -- merging ----------------------------------------------------------------------
    def merge(self, start: int, ids: Sequence[str], *, deleted: bool = False,
              stored: bool = True) -> MergeKind:
        """Add the path ``_revisions`` ``{start, ids}`` (newest first); ``deleted`` and
        ``stored`` describe its newest revision (its ancestors arrive without a body).

        Returns CouchDB's answer: ``new_leaf`` when the new revisions extend a leaf
        (or start the tree), ``new_branch`` when they fork from an inner revision or
        start a new root, ``internal_node`` when the revision was known already. A
        known node with a stored body keeps its flags; one without takes those given
        with a body (a deleted flag given without one is added), so the order of
        merges does not matter. A known root learns its parent.
        """
        if not ids or start < len(ids):
            raise ValueError(f"a path of {len(ids)} revisions cannot start at {start}")
        keys = [(start - i, digest) for i, digest in enumerate(ids)]
        if not all(isinstance(digest, str) and digest for _, digest in keys):
            raise ValueError(f"invalid revision ids {ids!r}")
        parents, flags = self._parent, self._flags
        kind = self._kind(keys)
        mine = (DELETED if deleted else 0) | (STORED if stored else 0)
        parent: Key | None = None
        for depth in range(len(keys) - 1, -1, -1):      # oldest first
            key = keys[depth]
            if key not in parents:
                parents[key] = parent
                flags[key] = mine if depth == 0 else 0
                self._leaves = None
            else:
                if parents[key] is None and parent is not None:
                    parents[key] = parent                # a root learns its ancestry
                    self._leaves = None
                if depth == 0 and not flags[key] & STORED:   # a body (or a word) now
                    flags[key] = mine if stored else flags[key] | mine
            parent = key
        return kind

    def _kind(self, keys: list[Key]) -> MergeKind:
        """What merging the path ``keys`` (newest first) makes: the newest revision the
        tree knows is where the new ones hang (new ancestors only extend a root up)."""
        parents = self._parent
        if keys[0] in parents:
            return "internal_node"
        known = next((key for key in keys if key in parents), None)
        if known is None:
            return "new_leaf" if not parents else "new_branch"
        return "new_leaf" if known in self._leaf_keys() else "new_branch"

    def stem(self, limit: int) -> list[str]:
        """Keep the last ``limit`` revisions of each branch; returns the revs dropped."""
        if limit < 1:
            raise ValueError("a revision limit is at least 1")
        parents = self._parent
        kept: dict[Key, int] = {}       # key -> the most revisions still to keep above it
        for leaf in self._leaf_keys():
            key: Key | None = leaf
            left = limit
            while key is not None and left > 0 and kept.get(key, 0) < left:
                kept[key] = left
                key, left = parents[key], left - 1
        if len(kept) == len(parents):
            return []
        dropped = sorted(key for key in parents if key not in kept)
        for key in dropped:
            del parents[key], self._flags[key]
        for key, up in parents.items():
            if up is not None and up not in parents:
                parents[key] = None
        self._leaves = None
        return [_rev(key) for key in dropped]

    def set_stored(self, rev: str, stored: bool) -> None:
        """Note whether the body of ``rev`` is stored (compaction drops inner bodies)."""
        key = parse_rev(rev)
        bits = self._flags[key]
        self._flags[key] = (bits | STORED) if stored else (bits & ~STORED)

    # -- reading ------------------------------------------------------------------------
    def __contains__(self, rev: object) -> bool:
        return isinstance(rev, str) and _key(rev) in self._parent

    def __len__(self) -> int:
        return len(self._parent)

    def __iter__(self) -> Iterator[str]:
        return (_rev(key) for key in self._parent)

    def node(self, rev: str) -> Node:
        """The node of ``rev``; ``KeyError`` when the tree lacks it."""
        key = _key(rev)
        if key not in self._parent:
            raise KeyError(rev)
        up = self._parent[key]
        return Node(None if up is None else _rev(up), self._flags[key])

    def _leaf_keys(self) -> list[Key]:
        if self._leaves is None:
            inner = set(self._parent.values())
            self._leaves = [key for key in self._parent if key not in inner]
        return self._leaves

    def leaf_revs(self) -> list[str]:
        return [_rev(key) for key in self._leaf_keys()]

    def is_leaf(self, rev: str) -> bool:
        return _key(rev) in self._leaf_keys()

    def _rank(self, key: Key) -> tuple[bool, int, str]:
        return (not self._flags[key] & DELETED, key[0], key[1])

    def leaves(self) -> list[Leaf]:
        """Every leaf with its deleted flag, the winner first, then in CouchDB's order
        (live before deleted, then by generation and hash, highest first)."""
        return [Leaf(_rev(key), bool(self._flags[key] & DELETED))
                for key in sorted(self._leaf_keys(), key=self._rank, reverse=True)]

    def winner(self) -> str:
        """The revision every replica shows: a live leaf before a deleted one, then the
        higher generation, then the greater hash. ``ValueError`` on an empty tree."""
        leaves = self._leaf_keys()
        if not leaves:
            raise ValueError("an empty revision tree has no winner")
        return _rev(max(leaves, key=self._rank))

    @property
    def deleted(self) -> bool:
        """True when every leaf is a deletion: the document is deleted."""
        return all(self._flags[key] & DELETED for key in self._leaf_keys())

    def losers(self) -> list[str]:
        """Every leaf but the winner, deleted ones too, highest first."""
        if len(self._leaf_keys()) == 1:
            return []
        return [leaf.rev for leaf in self.leaves()[1:]]

    def conflicts(self) -> list[str]:
        """The live leaves that lose (``_conflicts``), highest first."""
        leaves = self._leaf_keys()
        if len(leaves) == 1:
            return []
        return [leaf.rev for leaf in self.leaves()[1:] if not leaf.deleted]

    def deleted_conflicts(self) -> list[str]:
        """The deleted leaves that lose (``_deleted_conflicts``), highest first."""
        return [leaf.rev for leaf in self.leaves()[1:] if leaf.deleted]

    def _path(self, rev: str) -> list[Key]:
        key = _key(rev)
        if key not in self._parent:
            raise KeyError(rev)
        parents = self._parent
        out = [key]
        while (key := parents[key]) is not None:
            out.append(key)
        return out

    def path(self, rev: str) -> list[str]:
        """``rev`` and its known ancestors, newest first; ``KeyError`` when unknown."""
        return [_rev(key) for key in self._path(rev)]

    def history(self, rev: str) -> list[str]:
        """The hashes of :meth:`path` (``_revisions``' ids)."""
        return [key[1] for key in self._path(rev)]

    def revisions(self, rev: str) -> dict[str, Any]:
        """``_revisions`` of ``rev``: ``{"start": N, "ids": [hash, ...]}``, newest first."""
        return {"start": parse_rev(rev)[0], "ids": self.history(rev)}

    def status(self, rev: str) -> str:
        """``revs_info``'s status of a known ``rev``: ``missing`` (no body stored),
        ``deleted`` or ``available``."""
        node = self.node(rev)
        if not node.stored:
            return "missing"
        return "deleted" if node.deleted else "available"

    def missing(self, revs: Iterable[str]) -> list[str]:
        """Of ``revs``, those the tree does not hold (as leaf or ancestor), in order,
        each once."""
        return [rev for rev in dict.fromkeys(revs) if rev not in self]

    def revs_diff(self, revs: Iterable[str]) -> tuple[list[str], list[str]]:
        """CouchDB's ``_revs_diff`` for one document: the missing revs, and the leaves
        that could be their ancestors (a generation below the highest missing one)."""
        missing = self.missing(revs)
        if not missing:
            return [], []
        top = max((key[0] for r in missing if (key := _key(r)) is not None), default=0)
        return missing, [leaf.rev for leaf in self.leaves() if parse_rev(leaf.rev)[0] < top]
