"""Checkpoints: where a replication got to, kept as CouchDB keeps it.

A ``_local/<replication id>`` document on both the source and the target::

    {"session_id": ..., "source_last_seq": ..., "replication_id_version": 4,
     "history": [{"session_id", "start_time", "end_time", "start_last_seq",
                  "end_last_seq", "recorded_seq", "missing_checked", "missing_found",
                  "docs_read", "docs_written", "doc_write_failures"}, ...]}

A replication that starts reads both: when they name the same session it goes on
from ``source_last_seq``; else from the newest session both histories know (one side
may have been restored from a backup, or written by a run the other never saw); else
from the start. Keeping it on both sides is what makes that check possible.
"""
from __future__ import annotations

import logging
import time
from email.utils import formatdate
from typing import Any

from .endpoints import REPLICATION_ID_VERSION
from .peers import Peer, PeerError

log = logging.getLogger("settee.sync")

HISTORY_LIMIT = 50


def http_date(when: float | None = None) -> str:
    return formatdate(when if when is not None else time.time(), usegmt=True)


def local_id(rep_id: str) -> str:
    return "_local/" + rep_id


def resume_point(source_log: dict | None, target_log: dict | None) -> tuple[Any, list[dict]]:
    """Where to start (a source sequence, 0 for the beginning) and the history to keep,
    from the two checkpoints (either may be None)."""
    if not isinstance(source_log, dict) or not isinstance(target_log, dict):
        return 0, []
    found = source_log.get("history")
    history: list[dict] = found if isinstance(found, list) else []
    if source_log.get("session_id") == target_log.get("session_id") and \
            "source_last_seq" in source_log:
        return source_log["source_last_seq"], history
    found = target_log.get("history")
    theirs: list = found if isinstance(found, list) else []
    sessions = {entry.get("session_id") for entry in theirs if isinstance(entry, dict)}
    for at, entry in enumerate(history):
        if isinstance(entry, dict) and entry.get("session_id") in sessions:
            return entry.get("recorded_seq", 0), history[at:]
    return 0, []


class Checkpointer:
    """Writes one session's checkpoints to both peers."""

    def __init__(self, source: Peer, target: Peer, rep_id: str, session_id: str,
                 start_seq: Any, history: list[dict], source_log: dict | None,
                 target_log: dict | None):
        self.source, self.target = source, target
        self.doc_id = local_id(rep_id)
        self.session_id = session_id
        self.start_seq = start_seq
        self.start_time = http_date()
        self.history = history
        self.revs = {"source": (source_log or {}).get("_rev"),
                     "target": (target_log or {}).get("_rev")}
        self.recorded: Any = start_seq

    def record(self, seq: Any, stats: dict) -> None:
        """Write that the source's changes through ``seq`` are on the target."""
        entry = {"session_id": self.session_id, "start_time": self.start_time,
                 "end_time": http_date(), "start_last_seq": self.start_seq,
                 "end_last_seq": seq, "recorded_seq": seq,
                 "missing_checked": stats.get("revisions_checked", 0),
                 "missing_found": stats.get("missing_revisions_found", 0),
                 "docs_read": stats.get("docs_read", 0),
                 "docs_written": stats.get("docs_written", 0),
                 "doc_write_failures": stats.get("doc_write_failures", 0)}
        history = [entry] + [h for h in self.history
                             if isinstance(h, dict) and h.get("session_id") != self.session_id]
        body = {"session_id": self.session_id, "source_last_seq": seq,
                "replication_id_version": REPLICATION_ID_VERSION,
                "history": history[:HISTORY_LIMIT]}
        # the target first: a checkpoint only the source has is never used
        self.revs["target"] = self._put(self.target, "target", body)
        try:
            self.revs["source"] = self._put(self.source, "source", body)
        except PeerError as e:
            if e.status not in (401, 403):
                raise
            log.info("no checkpoint on the source %s (read only): %s", self.source.name, e)
        self.recorded = seq

    def _put(self, peer: Peer, side: str, body: dict) -> str:
        rev = self.revs[side]
        try:
            return peer.put_local(self.doc_id, {**body, **({"_rev": rev} if rev else {})})
        except PeerError as e:
            if e.status != 409:
                raise
        current = peer.get_local(self.doc_id) or {}       # written meanwhile: take its rev
        return peer.put_local(self.doc_id, {**body, **({"_rev": current["_rev"]}
                                                       if "_rev" in current else {})})
