"""A database's keyspace: every key prefix, named once.

One database is one keyspace of string keys in one backend, so one transaction covers
everything a write touches (the document, its old revision, the changes entry, a view's
rows). The layers and the view engine build their keys from these names; nothing else
spells a prefix out. Keys sort by code point, so each prefix is a contiguous range.

==========================  ===========================================================
``d/<id>``                  a live document: its revision tree and its winner's body
``t/<id>``                  a deleted document (every leaf deleted): the same, a tombstone
``r/<id>/<rev>``            the body of another leaf, or of an inner revision (compaction
                            drops those)
``s/<seq>``                 the changes log: ``[id, rev, deleted]`` at the doc's last seq
``l/<id>``                  ``_local/`` documents: not versioned, not in changes
``m/info``                  ``{seq, docs, deleted, revs_limit}``
``m/security``              the database's ``_security`` object
``m/props``                 the database's properties, set when it is created:
                            ``{"partitioned": true}`` for a partitioned database
``m/purged_infos_limit``    the purge history CouchDB would keep (``_purged_infos_limit``)
``vx/<vid>``                a view index that exists: ``{name, origin}``
``v/<vid>/i/<key><id>...``  a view's rows, by collation-encoded key then document id
``v/<vid>/m/<id>``          what a document emitted (to remove its old rows)
``v/<vid>/g/<key>``         a view's reduction per key
``v/<vid>/state``           a view's checkpoint: ``{seq, rows, version, building?}``
``~outbox/<key>``           the replication layer's outbox (below the documents' keys)
==========================  ===========================================================
"""
from __future__ import annotations

DOC, TOMB, OLD, SEQ, LOCAL = "d/", "t/", "r/", "s/", "l/"
INFO, SECURITY, PROPS = "m/info", "m/security", "m/props"
PURGED_INFOS_LIMIT = "m/purged_infos_limit"
VIEWS = "vx/"
OUTBOX = "~outbox/"


def view_base(vid: str) -> str:
    """The prefix of everything view ``vid`` stores (rows, map output, reductions, state)."""
    return f"v/{vid}/"


def view_state(vid: str) -> str:
    return view_base(vid) + "state"


def view_entry(vid: str) -> str:
    return VIEWS + vid
