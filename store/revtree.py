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


def rev_key(rev: str) -> tuple[int, str]:
    """The order of revisions: by generation, then by hash (as CouchDB compares them)."""
    return parse_rev(rev)


class Leaf(NamedTuple):
    rev: str
    deleted: bool


class Node:
    """One revision: its parent's rev (None for a root) and its flags."""

    __slots__ = ("parent", "flags")

    def __init__(self, parent: str | None, flags: int = 0):
        self.parent = parent
        self.flags = flags

    @property
    def deleted(self) -> bool:
        return bool(self.flags & DELETED)

    @property
    def stored(self) -> bool:
        return bool(self.flags & STORED)

    def __repr__(self) -> str:
        return f"Node(parent={self.parent!r}, flags={self.flags})"


class RevTree:
    """A document's revisions as a tree (see the module's docstring)."""

    __slots__ = ("_nodes", "_leaves")

    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {}
        self._leaves: list[str] | None = None       # cache, cleared by every change

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
        order: list[str] = []
        nodes = tree._nodes
        for entry in data:
            pos, digest, parent, flags = entry
            if not isinstance(pos, int) or pos < 1 or not isinstance(digest, str) or not digest:
                raise ValueError(f"malformed revision tree node {entry!r}")
            rev = f"{pos}-{digest}"
            if parent == -1:
                up = None
            elif isinstance(parent, int) and 0 <= parent < len(order):
                up = order[parent]
            else:
                raise ValueError(f"revision tree node {entry!r}: no parent at {parent!r}")
            order.append(rev)
            nodes[rev] = Node(up, int(flags))
        return tree

    def to_json(self) -> list[list[Any]]:
        """The stored form: ``[[pos, hash, parent index or -1, flags], ...]``."""
        order = sorted(self._nodes, key=rev_key)
        index = {rev: i for i, rev in enumerate(order)}
        out = []
        for rev in order:
            pos, digest = parse_rev(rev)
            node = self._nodes[rev]
            out.append([pos, digest, index[node.parent] if node.parent is not None else -1,
                        node.flags])
        return out

    def copy(self) -> RevTree:
        tree = RevTree()
        tree._nodes = {rev: Node(n.parent, n.flags) for rev, n in self._nodes.items()}
        return tree

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RevTree):
            return NotImplemented
        return ({r: (n.parent, n.flags) for r, n in self._nodes.items()}
                == {r: (n.parent, n.flags) for r, n in other._nodes.items()})

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
        revs = [f"{start - i}-{digest}" for i, digest in enumerate(ids)]
        for rev in revs:
            parse_rev(rev)
        nodes = self._nodes
        kind = self._kind(revs)
        parent: str | None = None
        for depth in range(len(revs) - 1, -1, -1):      # oldest first
            rev = revs[depth]
            node = nodes.get(rev)
            if node is None:
                flags = ((DELETED if deleted else 0) | (STORED if stored else 0)
                         if depth == 0 else 0)
                nodes[rev] = Node(parent, flags)
                self._leaves = None
            else:
                if node.parent is None and parent is not None:
                    node.parent = parent                 # a root learns its ancestry
                    self._leaves = None
                if depth == 0 and not node.stored:       # a body (or a word) for it now
                    node.flags = (STORED | (DELETED if deleted else 0) if stored
                                  else node.flags | (DELETED if deleted else 0))
            parent = rev
        return kind

    def _kind(self, revs: list[str]) -> MergeKind:
        """What merging the path ``revs`` (newest first) makes: the newest revision the
        tree knows is where the new ones hang (new ancestors only extend a root up)."""
        nodes = self._nodes
        if revs[0] in nodes:
            return "internal_node"
        known = next((rev for rev in revs if rev in nodes), None)
        if known is None:
            return "new_leaf" if not nodes else "new_branch"
        return "new_leaf" if self.is_leaf(known) else "new_branch"

    def stem(self, limit: int) -> list[str]:
        """Keep the last ``limit`` revisions of each branch; returns the revs dropped."""
        if limit < 1:
            raise ValueError("a revision limit is at least 1")
        nodes = self._nodes
        kept: dict[str, int] = {}       # rev -> the most revisions still to keep above it
        for leaf in self.leaf_revs():
            rev: str | None = leaf
            left = limit
            while rev is not None and left > 0 and kept.get(rev, 0) < left:
                kept[rev] = left
                rev, left = nodes[rev].parent, left - 1
        dropped = [rev for rev in nodes if rev not in kept]
        if dropped:
            for rev in dropped:
                del nodes[rev]
            for node in nodes.values():
                if node.parent is not None and node.parent not in nodes:
                    node.parent = None
            self._leaves = None
        return sorted(dropped, key=rev_key)

    def set_stored(self, rev: str, stored: bool) -> None:
        """Note whether the body of ``rev`` is stored (compaction drops inner bodies)."""
        node = self._nodes[rev]
        node.flags = (node.flags | STORED) if stored else (node.flags & ~STORED)

    # -- reading ------------------------------------------------------------------------
    def __contains__(self, rev: object) -> bool:
        return rev in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def node(self, rev: str) -> Node:
        """The node of ``rev``; ``KeyError`` when the tree lacks it."""
        return self._nodes[rev]

    def leaf_revs(self) -> list[str]:
        if self._leaves is None:
            parents = {n.parent for n in self._nodes.values()}
            self._leaves = [rev for rev in self._nodes if rev not in parents]
        return self._leaves

    def is_leaf(self, rev: str) -> bool:
        return rev in self._nodes and rev in self.leaf_revs()

    def leaves(self) -> list[Leaf]:
        """Every leaf with its deleted flag, the winner first, then in CouchDB's order
        (live before deleted, then by generation and hash, highest first)."""
        nodes = self._nodes
        return [Leaf(rev, nodes[rev].deleted)
                for rev in sorted(self.leaf_revs(), key=self._rank, reverse=True)]

    def _rank(self, rev: str) -> tuple[bool, int, str]:
        pos, digest = parse_rev(rev)
        return (not self._nodes[rev].deleted, pos, digest)

    def winner(self) -> str:
        """The revision every replica shows: a live leaf before a deleted one, then the
        higher generation, then the greater hash. ``ValueError`` on an empty tree."""
        leaves = self.leaf_revs()
        if not leaves:
            raise ValueError("an empty revision tree has no winner")
        return max(leaves, key=self._rank)

    @property
    def deleted(self) -> bool:
        """True when every leaf is a deletion: the document is deleted."""
        return all(self._nodes[rev].deleted for rev in self.leaf_revs())

    def conflicts(self) -> list[str]:
        """The live leaves that lose (``_conflicts``), highest first."""
        return [leaf.rev for leaf in self.leaves()[1:] if not leaf.deleted]

    def deleted_conflicts(self) -> list[str]:
        """The deleted leaves that lose (``_deleted_conflicts``), highest first."""
        return [leaf.rev for leaf in self.leaves()[1:] if leaf.deleted]

    def path(self, rev: str) -> list[str]:
        """``rev`` and its known ancestors, newest first; ``KeyError`` when unknown."""
        nodes = self._nodes
        out = [rev]
        parent = nodes[rev].parent
        while parent is not None:
            out.append(parent)
            parent = nodes[parent].parent
        return out

    def revisions(self, rev: str) -> dict[str, Any]:
        """``_revisions`` of ``rev``: ``{"start": N, "ids": [hash, ...]}``, newest first."""
        path = self.path(rev)
        return {"start": parse_rev(rev)[0], "ids": [parse_rev(r)[1] for r in path]}

    def status(self, rev: str) -> str:
        """``revs_info``'s status of a known ``rev``: ``missing`` (no body stored),
        ``deleted`` or ``available``."""
        node = self._nodes[rev]
        if not node.stored:
            return "missing"
        return "deleted" if node.deleted else "available"

    def missing(self, revs: Iterable[str]) -> list[str]:
        """Of ``revs``, those the tree does not hold (as leaf or ancestor), in order,
        each once."""
        seen: set[str] = set()
        out = []
        for rev in revs:
            if rev not in self._nodes and rev not in seen:
                seen.add(rev)
                out.append(rev)
        return out

    def revs_diff(self, revs: Iterable[str]) -> tuple[list[str], list[str]]:
        """CouchDB's ``_revs_diff`` for one document: the missing revs, and the leaves
        that could be their ancestors (a generation below the highest missing one)."""
        missing = self.missing(revs)
        if not missing:
            return [], []
        top = max((parse_rev(r)[0] for r in missing if _valid(r)), default=0)
        return missing, [leaf.rev for leaf in self.leaves() if parse_rev(leaf.rev)[0] < top]


def _valid(rev: str) -> bool:
    try:
        parse_rev(rev)
    except ValueError:
        return False
    return True
