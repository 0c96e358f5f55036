"""The revision tree (store/revtree.py): CouchDB's couch_key_tree behaviour, alone."""
from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from settee.store.revtree import DELETED, STORED, RevTree, parse_rev


def tree_of(*paths) -> RevTree:
    """A tree from paths written ``("3-c", ["c", "b"])`` or ``("3-c", ["c", "b"], True)``
    (the last: the newest revision is a deletion)."""
    tree = RevTree()
    for rev, ids, *deleted in paths:
        tree.merge(parse_rev(rev)[0], ids, deleted=bool(deleted and deleted[0]))
    return tree


# -- merging ------------------------------------------------------------------------
def test_a_first_path_makes_a_chain_and_its_leaf_wins():
    tree = RevTree.from_path(3, ["c", "b", "a"])
    assert tree.leaf_revs() == ["3-c"] and tree.winner() == "3-c"
    assert tree.path("3-c") == ["3-c", "2-b", "1-a"]
    assert tree.revisions("2-b") == {"start": 2, "ids": ["b", "a"]}


def test_partial_paths_join_onto_the_history_they_share():
    tree = RevTree()
    assert tree.merge(1, ["a"]) == "new_leaf"
    assert tree.merge(2, ["b", "a"]) == "new_leaf"
    assert tree.merge(3, ["c", "b"]) == "new_leaf"
    assert tree.merge(4, ["d", "c"]) == "new_leaf"
    assert tree.revisions("4-d") == {"start": 4, "ids": ["d", "c", "b", "a"]}
    assert tree.leaf_revs() == ["4-d"]


def test_a_path_naming_a_roots_parent_joins_the_root_to_it():
    tree = tree_of(("3-c", ["c"]))               # ancestry unknown: a root at 3
    tree.merge(2, ["b", "a"])                    # a separate branch 1-a -> 2-b
    assert sorted(tree.leaf_revs()) == ["2-b", "3-c"]
    assert tree.merge(3, ["c", "b"]) == "internal_node"
    assert tree.path("3-c") == ["3-c", "2-b", "1-a"] and tree.leaf_revs() == ["3-c"]


def test_merge_says_what_it_made():
    tree = tree_of(("2-b", ["b", "a"]))
    assert tree.merge(2, ["c", "a"]) == "new_branch"       # a fork at 1-a
    assert tree.merge(3, ["d", "b"]) == "new_leaf"         # extends the leaf 2-b
    assert tree.merge(2, ["b", "a"]) == "internal_node"    # known
    assert tree.merge(5, ["x", "y"]) == "new_branch"       # unrelated: a new root
    assert sorted(tree.leaf_revs()) == ["2-c", "3-d", "5-x"]


def test_a_malformed_path_is_refused():
    with pytest.raises(ValueError):
        RevTree().merge(1, ["b", "a"])            # two revisions cannot end at 1
    with pytest.raises(ValueError):
        RevTree().merge(2, [])


# -- the winner, leaves and conflicts -------------------------------------------------
def test_a_live_leaf_beats_a_deleted_one_of_a_higher_generation():
    tree = tree_of(("1-b1", ["b1"]), ("3-a3", ["a3", "a2", "a1"], True))
    assert tree.winner() == "1-b1" and not tree.deleted
    assert [tuple(leaf) for leaf in tree.leaves()] == [("1-b1", False), ("3-a3", True)]
    assert tree.conflicts() == [] and tree.deleted_conflicts() == ["3-a3"]


def test_among_live_leaves_the_higher_generation_then_the_greater_hash_wins():
    tree = tree_of(("2-b", ["b", "a"]), ("2-c", ["c", "a"]), ("3-a", ["a", "z", "a"]))
    assert tree.winner() == "3-a"
    assert tree.conflicts() == ["2-c", "2-b"]
    tree = tree_of(("2-b", ["b", "a"]), ("2-c", ["c", "a"]))
    assert tree.winner() == "2-c" and tree.conflicts() == ["2-b"]


def test_generations_compare_as_numbers_not_strings():
    tree = tree_of(("9-z", ["z"]), ("10-a", ["a"]))
    assert tree.winner() == "10-a" and tree.conflicts() == ["9-z"]


def test_when_every_leaf_is_deleted_the_document_is_deleted():
    tree = tree_of(("2-b", ["b", "a"], True), ("2-c", ["c", "a"], True))
    assert tree.deleted and tree.winner() == "2-c"
    assert tree.deleted_conflicts() == ["2-b"]


# -- revs_diff, status ------------------------------------------------------------------
def test_revs_diff_knows_leaves_and_ancestors_and_names_possible_ancestors():
    tree = tree_of(("3-c", ["c", "b", "a"]), ("2-x", ["x", "a"], True))
    assert "2-b" in tree and "3-c" in tree and "4-q" not in tree
    assert tree.revs_diff(["1-a", "2-b", "2-x"]) == ([], [])
    assert tree.revs_diff(["4-d", "2-b", "4-d"]) == (["4-d"], ["3-c", "2-x"])
    assert tree.revs_diff(["3-q"]) == (["3-q"], ["2-x"])
    assert tree.revs_diff(["garbage"]) == (["garbage"], [])


def test_status_says_whether_a_body_is_stored():
    tree = RevTree.from_path(2, ["b", "a"])
    assert tree.status("2-b") == "available" and tree.status("1-a") == "missing"
    tree.merge(3, ["c", "b"], deleted=True)
    assert tree.status("3-c") == "deleted"
    tree.set_stored("2-b", False)
    assert tree.status("2-b") == "missing" and not tree.node("2-b").stored


def test_a_body_arriving_for_a_known_revision_is_noted():
    tree = RevTree.from_path(2, ["b", "a"])
    tree.merge(1, ["a"])
    assert tree.status("1-a") == "available"


# -- stemming ---------------------------------------------------------------------------
def test_stemming_keeps_the_last_revisions_of_each_branch():
    tree = tree_of(("5-e", ["e", "d", "c", "b", "a"]), ("2-x", ["x", "a"]))
    dropped = tree.stem(2)
    assert dropped == ["2-b", "3-c"]
    assert tree.path("5-e") == ["5-e", "4-d"] and tree.path("2-x") == ["2-x", "1-a"]
    assert tree.stem(2) == []


def test_a_stemmed_tree_still_joins_a_later_revision():
    tree = RevTree.from_path(4, ["d", "c", "b", "a"])
    tree.stem(2)
    assert tree.merge(5, ["e", "d", "c", "b", "a"]) == "new_leaf"
    tree.stem(2)
    assert tree.path("5-e") == ["5-e", "4-d"] and len(tree) == 2


def test_stemming_to_one_keeps_only_the_leaves():
    tree = tree_of(("3-c", ["c", "b", "a"]), ("2-x", ["x", "a"]))
    tree.stem(1)
    assert sorted(tree) == ["2-x", "3-c"] and tree.winner() == "3-c"


# -- the stored form --------------------------------------------------------------------
def test_the_stored_form_is_flat_sorted_and_round_trips():
    tree = tree_of(("2-b", ["b", "a"]), ("2-c", ["c", "a"], True))
    data = tree.to_json()
    assert data == [[1, "a", -1, 0], [2, "b", 0, STORED], [2, "c", 0, STORED | DELETED]]
    again = RevTree.from_json(orjson.loads(orjson.dumps(data)))
    assert again == tree and again.to_json() == data


def test_a_long_history_stores_each_revision_once_and_shallowly():
    ids = [f"{n:032x}" for n in range(1000, 0, -1)]
    tree = RevTree.from_path(1000, ids)
    data = orjson.dumps(tree.to_json())          # orjson refuses deeply nested values
    assert len(data) < 60 * 1000
    assert RevTree.from_json(orjson.loads(data)).revisions("1000-" + ids[0])["ids"] == ids


def test_a_malformed_stored_form_is_refused():
    with pytest.raises(ValueError):
        RevTree.from_json([[1, "a", 3, 0]])
    with pytest.raises(ValueError):
        RevTree.from_json([[0, "a", -1, 0]])


# -- properties -------------------------------------------------------------------------
@st.composite
def histories(draw):
    """A true revision tree (each rev with its parent and deleted flag), and paths
    replicas would send: a revision with some of its nearest ancestors."""
    count = draw(st.integers(1, 14))
    parents: dict[str, str | None] = {}
    deleted: dict[str, bool] = {}
    revs: list[str] = []
    for n in range(count):
        parent = draw(st.sampled_from([None, *revs])) if revs and n else None
        if n and parent is None and draw(st.booleans()):
            parent = revs[-1]
        pos = parse_rev(parent)[0] + 1 if parent else draw(st.integers(1, 3))
        rev = f"{pos}-h{n:02d}{draw(st.sampled_from('abc'))}"
        parents[rev], deleted[rev] = parent, draw(st.booleans())
        revs.append(rev)
    paths = []
    for rev in draw(st.lists(st.sampled_from(revs), min_size=1, max_size=12)):
        chain = [rev]
        for _ in range(draw(st.integers(0, 6))):
            up = parents[chain[-1]]
            if up is None:
                break
            chain.append(up)
        paths.append((parse_rev(rev)[0], [parse_rev(r)[1] for r in chain], deleted[rev]))
    return paths


def merged(paths) -> RevTree:
    tree = RevTree()
    for start, ids, deleted in paths:
        tree.merge(start, ids, deleted=deleted)
    return tree


@given(histories(), st.randoms(use_true_random=False))
def test_merging_the_same_paths_in_any_order_gives_the_same_tree(paths, rnd: random.Random):
    one = merged(paths)
    shuffled = list(paths)
    rnd.shuffle(shuffled)
    two = merged(shuffled)
    assert one.to_json() == two.to_json()
    assert one.winner() == two.winner() and one.leaves() == two.leaves()


@given(histories())
def test_merging_is_idempotent(paths):
    tree = merged(paths)
    before = tree.to_json()
    for start, ids, deleted in paths:
        assert tree.merge(start, ids, deleted=deleted) == "internal_node"
    assert tree.to_json() == before


@given(histories())
def test_every_merged_revision_is_known_with_its_ancestry(paths):
    tree = merged(paths)
    for start, ids, _ in paths:
        rev = f"{start}-{ids[0]}"
        assert tree.missing([rev]) == [] and tree.revisions(rev)["ids"][:len(ids)] == ids


@given(histories(), st.integers(1, 5))
def test_stemming_is_idempotent_and_keeps_every_leaf(paths, limit):
    tree = merged(paths)
    leaves = tree.leaves()
    tree.stem(limit)
    once = tree.to_json()
    assert tree.stem(limit) == [] and tree.to_json() == once
    assert tree.leaves() == leaves
    near = {rev for leaf in leaves for rev in tree.path(leaf.rev)[:limit]}
    assert near == set(tree)                      # nothing past any branch's last `limit`
    for leaf in leaves:                           # each branch keeps its last `limit`
        assert len(tree.path(leaf.rev)) >= min(limit, len(merged(paths).path(leaf.rev)))


@given(histories())
def test_the_stored_form_round_trips(paths):
    tree = merged(paths)
    assert RevTree.from_json(orjson.loads(orjson.dumps(tree.to_json()))) == tree
