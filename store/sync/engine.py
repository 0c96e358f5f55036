"""The replication loop, as CouchDB's Replication Protocol has it.

1. Both peers answer (the target is made first with ``create_target``); the
   checkpoints of both are read and compared (:mod:`.checkpoints`).
2. Changes of the source after that point, a batch at a time, every leaf of each
   document (``style=all_docs``), chosen by ``doc_ids``, ``selector`` or ``filter``.
3. The target says which of those revisions it lacks (``_revs_diff``).
4. Those are read from the source with their history (``revs=true``) and attachment
   data, by a few threads at once.
5. They are written to the target as given (``_bulk_docs`` with ``new_edits=false``):
   the target merges each history into its revision tree, so both sides end with the
   same tree, leaves and winner, whatever the order of the replications.
6. Every ``checkpoint_interval`` and at the end, the point reached is recorded.

A continuous replication then waits for the source's next changes (a long poll)
until it is stopped.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .checkpoints import Checkpointer, local_id, resume_point
from .endpoints import REPLICATION_ID_VERSION
from .peers import Peer, PeerNotFound, seq_number
from .spec import Spec

log = logging.getLogger("settee.sync")

#: Seconds a continuous replication's long poll waits for a change (then asks again,
#: and sees whether it was stopped).
WAIT = 3.0
#: Threads that read missing revisions from the source at once.
FETCHERS = 4


class Replication:
    """One run of a replication between two peers. ``run()`` returns CouchDB's
    answer to a one-shot ``_replicate``; ``stop()`` ends it from another thread."""

    def __init__(self, spec: Spec, source: Peer, target: Peer, server: str, *,
                 wait: float = WAIT, fetchers: int = FETCHERS):
        self.spec = spec
        self.source, self.target = source, target
        self.rep_id, self.id = spec.ids(server)
        self.session_id = uuid.uuid4().hex
        self.wait = wait
        self.fetchers = fetchers
        self.stopped = threading.Event()
        self.started_on = time.time()
        self.updated_on = self.started_on
        self.stats: dict[str, Any] = {
            "revisions_checked": 0, "missing_revisions_found": 0, "docs_read": 0,
            "docs_written": 0, "doc_write_failures": 0, "changes_pending": None,
            "source_seq": None, "through_seq": 0, "checkpointed_source_seq": 0}
        self.checkpointer: Checkpointer | None = None

    def stop(self) -> None:
        self.stopped.set()

    # -- the run ------------------------------------------------------------------
    def open(self) -> tuple[dict | None, dict | None]:
        """Check both peers answer (make the target if asked); their checkpoints."""
        source_info = self.source.info()
        try:
            self.target.info()
        except PeerNotFound:
            if not self.spec.create_target:
                raise
            self.target.create()
            self.target.info()
        self.stats["source_seq"] = source_info.get("update_seq")
        if not self.spec.use_checkpoints:
            return None, None
        doc_id = local_id(self.rep_id)
        return self.source.get_local(doc_id), self.target.get_local(doc_id)

    def run(self) -> dict[str, Any]:
        source_log, target_log = self.open()
        since, history = resume_point(source_log, target_log)
        if self.spec.since_seq is not None:
            since = self.spec.since_seq
        self.stats["through_seq"] = self.stats["checkpointed_source_seq"] = since
        self.checkpointer = Checkpointer(self.source, self.target, self.rep_id, self.session_id,
                                         since, history, source_log, target_log)
        # Two stages at once: a reader (changes, revs_diff, the missing revisions) a
        # batch or two ahead of the writer (bulk_docs, checkpoints), so that the source
        # and the target work at the same time.
        batches: queue.Queue = queue.Queue(maxsize=2)
        halt = threading.Event()
        differ = self.target.lane()          # the reading stage's way to the target
        with ThreadPoolExecutor(self.fetchers, thread_name_prefix="settee-fetch") as pool:
            reader = threading.Thread(target=self.read, args=(since, batches, pool, halt,
                                                              differ),
                                      daemon=True, name=f"settee-read-{self.rep_id[:8]}")
            reader.start()
            try:
                self.write_batches(batches)
            finally:
                halt.set()
                reader.join()
                if differ is not self.target:
                    differ.close()
        self.checkpoint()
        return self.result(since, history)

    def write_batches(self, batches: queue.Queue) -> None:
        last_checkpoint = time.monotonic()
        interval = self.spec.checkpoint_interval
        while True:
            try:             # waiting a while: what was written still gets its checkpoint
                item = batches.get(timeout=min(1.0, interval))
            except queue.Empty:
                item = ()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            if item:
                docs, last = item
                if docs:
                    self.write(docs)
                self.stats["through_seq"] = last
                self.updated_on = time.time()
            if time.monotonic() - last_checkpoint >= interval:
                self.checkpoint()
                last_checkpoint = time.monotonic()

    def read(self, since: Any, batches: queue.Queue, pool: ThreadPoolExecutor,
             halt: threading.Event, differ: Peer) -> None:
        """The reading stage: ``(docs, last seq)`` batches into ``batches``, then None
        (caught up, one-shot; or stopped), or the error that ended it."""
        def put(item) -> bool:
            while not halt.is_set():
                try:
                    batches.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        spec, selection = self.spec, self.spec.selection()
        caught_up = False
        try:
            while not (self.stopped.is_set() or halt.is_set()):
                wait = self.wait if spec.continuous and caught_up else 0.0
                rows, last = self.source.changes(since, spec.batch_size, selection, wait,
                                                 self.stopped)
                last = last if last is not None else since
                caught_up = not rows
                if rows or last != since:
                    if not put((self.missing(rows, pool, differ) if rows else [], last)):
                        return
                since = last
                if caught_up and not spec.continuous:
                    break
            put(None)
        except BaseException as e:
            put(e)

    def missing(self, rows: list[dict], pool: ThreadPoolExecutor, differ: Peer) -> list[dict]:
        """Of a batch of changes, the revisions the target lacks (asked of ``differ``,
        the target), read from the source."""
        revs: dict[str, list[str]] = {}
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                continue
            wanted = revs.setdefault(row["id"], [])
            wanted += [c["rev"] for c in row.get("changes", []) if isinstance(c, dict)
                       and isinstance(c.get("rev"), str) and c["rev"] not in wanted]
        stats = self.stats
        stats["revisions_checked"] += sum(len(r) for r in revs.values())
        diff = differ.revs_diff(revs)
        missing = [(doc_id, entry["missing"]) for doc_id, entry in diff.items()
                   if isinstance(entry, dict) and entry.get("missing")]
        stats["missing_revisions_found"] += sum(len(m) for _, m in missing)
        if not missing:
            return []
        fetchers = max(1, min(self.fetchers, self.source.fetchers))
        if fetchers == 1:
            docs = self.source.fetch(missing)
        else:
            size = max(25, -(-len(missing) // fetchers))
            parts = [missing[i:i + size] for i in range(0, len(missing), size)]
            docs = [doc for part in pool.map(self.source.fetch, parts) for doc in part]
        stats["docs_read"] += len(docs)
        return docs

    def write(self, docs: list[dict]) -> None:
        errors = self.target.write(docs)
        for error in errors:
            log.warning("replication %s: %s not written: %s", self.id, error.get("id"),
                        error.get("reason") or error.get("error"))
        self.stats["docs_written"] += len(docs) - len(errors)
        self.stats["doc_write_failures"] += len(errors)

    def checkpoint(self) -> None:
        """Record the point reached (when it moved), and how far behind the source is."""
        checkpointer, stats = self.checkpointer, self.stats
        if checkpointer is None:
            return
        try:
            stats["source_seq"] = self.source.info().get("update_seq", stats["source_seq"])
            stats["changes_pending"] = max(0, seq_number(stats["source_seq"])
                                           - seq_number(stats["through_seq"]))
        except Exception:                        # only a figure: the next one will do
            pass
        if self.spec.use_checkpoints and stats["through_seq"] != checkpointer.recorded:
            checkpointer.record(stats["through_seq"], stats)
            stats["checkpointed_source_seq"] = stats["through_seq"]

    def result(self, start: Any, history: list[dict]) -> dict[str, Any]:
        """CouchDB's answer to a one-shot ``_replicate``."""
        checkpointer = self.checkpointer
        assert checkpointer is not None
        out: dict[str, Any] = {"ok": True, "session_id": self.session_id,
                               "source_last_seq": self.stats["through_seq"],
                               "replication_id_version": REPLICATION_ID_VERSION}
        if self.stats["through_seq"] == start and not self.stats["docs_read"]:
            out["no_changes"] = True
        entry = {"session_id": self.session_id, "start_time": checkpointer.start_time,
                 "start_last_seq": start, "end_last_seq": self.stats["through_seq"],
                 "recorded_seq": checkpointer.recorded,
                 "missing_checked": self.stats["revisions_checked"],
                 "missing_found": self.stats["missing_revisions_found"],
                 **{k: self.stats[k] for k in ("docs_read", "docs_written",
                                               "doc_write_failures")}}
        out["history"] = [entry] + [h for h in history if isinstance(h, dict)][:49]
        return out

    def task(self) -> dict[str, Any]:
        """This replication as ``_active_tasks`` shows it (CouchDB's fields)."""
        spec = self.spec
        return {"type": "replication", "replication_id": self.id, "doc_id": None,
                "database": None, "user": spec.owner, "continuous": spec.continuous,
                "source": spec.source.display(), "target": spec.target.display(),
                "checkpoint_interval": int(spec.checkpoint_interval * 1000),
                "started_on": int(self.started_on), "updated_on": int(self.updated_on),
                "pid": f"<{self.session_id[:8]}>", "node": "settee@localhost",
                **self.stats}
