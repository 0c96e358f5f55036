"""The scheduler: runs the replications that ``_replicator`` documents and continuous
``_replicate`` requests ask for, in one place, and says how they do.

Every process of a server (each gunicorn worker) has a :class:`Scheduler`; one of
them at a time holds an exclusive lock on a file of the data directory and runs the
jobs, the others wait for the lock (the kernel hands it on when its holder dies, and
the next holder starts the jobs again from their checkpoints). Whatever a worker
must answer comes from the ``_replicator`` database, which every process reads:

* its documents ask for replications (design documents aside); deleting one stops
  its job; a one-shot job that completes, or a document that is not a valid
  replication, gets ``_replication_state`` (``completed``/``failed``),
  ``_replication_state_time``, ``_replication_id`` (and ``_replication_stats`` or
  ``_replication_state_reason``) written back, as CouchDB 3 writes them;
* ``_local/settee-transient`` holds the continuous ``_replicate`` requests (until
  cancelled), so they too survive a restart;
* ``_local/settee-scheduler`` is the running scheduler's report: every job with its
  state and figures (``_scheduler/jobs``, ``_scheduler/docs``, ``_active_tasks``).
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import orjson

from ..catalog import Catalog
from ..database import Database
from ..document import Doc
from ..exceptions import Conflict, DatabaseExists, NotFound, StoreError
from .endpoints import Endpoint
from .engine import Replication
from .peers import Peer
from .spec import STATE_FIELDS, Spec, parse_spec

log = logging.getLogger("settee.sync")

REPLICATOR = "_replicator"
TRANSIENT = "_local/settee-transient"
REPORT = "_local/settee-scheduler"
LOCK_FILE = ".replicator.lock"
TERMINAL = ("completed", "failed")

#: Makes the peer of one end of a replication: ``(endpoint, spec) -> Peer``.
PeerMaker = Callable[[Endpoint, Spec], Peer]


def iso_time(when: float | None = None) -> str:
    moment = datetime.fromtimestamp(when if when is not None else time.time(), timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def user_fields(doc: dict) -> dict:
    """A ``_replicator`` document without what the replicator writes into it."""
    return {k: v for k, v in doc.items() if k not in STATE_FIELDS and k not in ("_id", "_rev")}


class Job:
    """One replication the scheduler keeps: from a document or a transient request."""

    def __init__(self, key: str, body: dict, doc_id: str | None, server: str):
        self.key, self.body, self.doc_id = key, body, doc_id
        self.fingerprint = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        self.spec: Spec | None = None
        self.id: str | None = None
        self.error: str | None = None
        try:
            self.spec = parse_spec(body)
            self.spec.owner = body.get("owner") if isinstance(body.get("owner"), str) else None
            self.id = self.spec.ids(server)[1]
        except StoreError as e:
            self.error = str(e)
        self.state = "failed" if self.error else "pending"
        self.error_count = 0
        self.retry_at = 0.0
        self.start_time = time.time()
        self.last_updated = self.start_time
        self.history: list[dict] = [{"timestamp": iso_time(), "type": "added"}]
        self.thread: threading.Thread | None = None
        self.replication: Replication | None = None
        self.result: dict | None = None

    def note(self, kind: str, **fields) -> None:
        self.last_updated = time.time()
        self.history.insert(0, {"timestamp": iso_time(), "type": kind, **fields})
        del self.history[20:]

    def info(self) -> dict[str, Any]:
        stats = dict(self.replication.stats) if self.replication is not None else {}
        if self.error:
            stats["error"] = self.error
        return stats

    def report(self) -> dict[str, Any]:
        spec = self.spec
        return {"key": self.key, "doc_id": self.doc_id, "id": self.id, "state": self.state,
                "error_count": self.error_count, "info": self.info(),
                "source": spec.source.display() if spec else None,
                "target": spec.target.display() if spec else None,
                "user": spec.owner if spec else None,
                "continuous": bool(spec and spec.continuous),
                "start_time": iso_time(self.start_time), "last_updated": iso_time(self.last_updated),
                "history": self.history,
                "task": self.replication.task() | {"doc_id": self.doc_id,
                                                   "database": REPLICATOR if self.doc_id else None}
                if self.replication is not None and self.state == "running" else None}


class Scheduler:
    """See the module's docstring. ``kick()`` starts it in this process (idempotent)."""

    def __init__(self, catalog: Catalog, server: str, make_peer: PeerMaker, *,
                 lock_dir: str | None, tick: float = 0.5, max_backoff: float = 300.0):
        self.catalog = catalog
        self.server = server
        self.make_peer = make_peer
        self.lock_path = os.path.join(lock_dir, LOCK_FILE) if lock_dir else None
        self.tick = tick
        self.max_backoff = max_backoff
        self.jobs: dict[str, Job] = {}
        self.wake = threading.Event()
        self.closing = threading.Event()
        self._started = threading.Lock()
        self._thread: threading.Thread | None = None
        self._report_written = 0.0
        self.dirty = False                    # a job changed state: report it now
        self.running_here = False

    # -- what any process does ------------------------------------------------------
    def kick(self) -> None:
        """Make sure this process takes part (waits for the lock, or runs), and look
        at the documents again now."""
        with self._started:
            if self._thread is None:
                self._thread = threading.Thread(target=self._supervise, daemon=True,
                                                name="settee-replicator")
                self._thread.start()
        self.wake.set()

    def database(self, create: bool = False) -> Database | None:
        try:
            return self.catalog.get(REPLICATOR)
        except NotFound:
            if not create:
                return None
        try:
            return self.catalog.create(REPLICATOR)
        except DatabaseExists:
            return self.catalog.get(REPLICATOR)

    def report(self) -> dict[str, Any]:
        """The running scheduler's last report (``{"jobs": [...]}``)."""
        db = self.database()
        if db is None:
            return {"jobs": []}
        try:
            return dict(db[REPORT])
        except NotFound:
            return {"jobs": []}

    def add_transient(self, body: dict, full_id: str) -> None:
        self._edit_transient(lambda jobs: jobs.__setitem__(full_id, body))
        self.kick()

    def cancel_transient(self, full_id: str) -> bool:
        found = []
        self._edit_transient(lambda jobs: found.append(jobs.pop(full_id, None) is not None))
        self.kick()
        return found[-1]

    def _edit_transient(self, change: Callable[[dict], None]) -> None:
        db = self.database(create=True)
        assert db is not None
        while True:
            try:
                current = dict(db[TRANSIENT])
            except NotFound:
                current = {}
            jobs = dict(current.get("jobs", {}))
            change(jobs)
            body = {"jobs": jobs}
            if "_rev" in current:
                body["_rev"] = current["_rev"]
            try:
                db[TRANSIENT] = body
                return
            except Conflict:
                continue

    # -- what the process holding the lock does -------------------------------------------
    def _supervise(self) -> None:
        lock = None
        if self.lock_path is not None:
            lock = open(self.lock_path, "a")
            while not self.closing.is_set():
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    self.closing.wait(1.0)
        self.running_here = True
        log.info("replicator: running the replication jobs in process %d", os.getpid())
        try:
            while not self.closing.is_set():
                try:
                    self.step()
                except Exception:
                    log.exception("replicator: a scheduling step failed")
                self.wake.wait(self.tick)
                self.wake.clear()
        finally:
            for job in self.jobs.values():
                self._stop(job)
            if lock is not None:
                lock.close()

    def close(self) -> None:
        self.closing.set()
        self.wake.set()

    def wanted(self) -> dict[str, tuple[dict, str | None]]:
        """Every replication asked for now: key -> (body, document id)."""
        db = self.database()
        if db is None:
            return {}
        out: dict[str, tuple[dict, str | None]] = {}
        for doc_id, doc in db.docs():
            if not doc_id.startswith("_design/"):
                out["doc:" + doc_id] = ({**user_fields(doc),
                                         **{k: doc[k] for k in STATE_FIELDS if k in doc}}, doc_id)
        try:
            transient = db[TRANSIENT].get("jobs", {})
        except NotFound:
            transient = {}
        for full_id, body in transient.items():
            out["transient:" + full_id] = (body, None)
        return out

    def step(self) -> None:
        wanted = self.wanted()
        changed = False
        for key in list(self.jobs):
            job = self.jobs[key]
            body = wanted.get(key, (None, None))[0]
            if body is None or orjson.dumps(user_fields(body), option=orjson.OPT_SORT_KEYS) \
                    != job.fingerprint:
                self._stop(job)                     # its document went or changed
                del self.jobs[key]
                changed = True
        for key, (body, doc_id) in wanted.items():
            if key in self.jobs:
                continue
            job = Job(key, user_fields(body), doc_id, self.server)
            terminal = body.get("_replication_state")
            if terminal in TERMINAL:
                job.state = terminal                # done before: not run again
            elif job.error and doc_id is not None:
                self._write_back(job, "failed", {"_replication_state_reason": job.error})
            self.jobs[key] = job
            changed = True
        now = time.time()
        for job in self.jobs.values():
            if job.state in ("pending", "crashing") and now >= job.retry_at:
                self._start(job)
                changed = True
        if changed or self.dirty or now - self._report_written >= 1.0:
            self.dirty = False
            self._publish()

    def _start(self, job: Job) -> None:
        assert job.spec is not None
        job.state = "running"
        job.note("started")
        try:
            source = self.make_peer(job.spec.source, job.spec)
            target = self.make_peer(job.spec.target, job.spec)
        except Exception as e:
            self._crashed(job, e)
            return
        job.replication = Replication(job.spec, source, target, self.server)
        job.thread = threading.Thread(target=self._run, args=(job, source, target), daemon=True,
                                      name=f"settee-replication-{job.id}")
        job.thread.start()

    def _run(self, job: Job, source: Peer, target: Peer) -> None:
        replication = job.replication
        assert replication is not None
        try:
            job.result = replication.run()
            if not replication.stopped.is_set():
                job.error_count = 0
                job.state = "completed"
                job.note("finished")
                if job.doc_id is not None:
                    stats = {k: replication.stats[k] for k in (
                        "revisions_checked", "missing_revisions_found", "docs_read",
                        "docs_written", "doc_write_failures", "checkpointed_source_seq")}
                    stats["start_time"] = iso_time(replication.started_on)
                    self._write_back(job, "completed", {"_replication_stats": stats})
                else:                               # a finished transient job is forgotten
                    self.cancel_transient(job.key.split(":", 1)[1])
        except Exception as e:
            if not replication.stopped.is_set():
                self._crashed(job, e)
        finally:
            source.close()
            target.close()
            self.dirty = True
            self.wake.set()

    def _crashed(self, job: Job, error: BaseException) -> None:
        job.error_count += 1
        job.error = f"{getattr(error, 'error', type(error).__name__)}: {error}"
        job.state = "crashing"
        job.retry_at = time.time() + min(self.max_backoff, 2.0 ** job.error_count)
        job.note("crashed", reason=job.error)
        log.warning("replication %s crashed (%d in a row): %s", job.id, job.error_count, job.error)

    def _stop(self, job: Job) -> None:
        if job.replication is not None:
            job.replication.stop()
        if job.thread is not None and job.thread is not threading.current_thread():
            job.thread.join(timeout=10)

    def _write_back(self, job: Job, state: str, fields: dict) -> None:
        """Write a terminal state into the job's document, as CouchDB 3 does."""
        db = self.database()
        if db is None or job.doc_id is None:
            return
        try:
            current = db[job.doc_id]
            if user_fields(current) != job.body:
                return                              # changed meanwhile: the new one counts
            body = {**user_fields(current), "_rev": current["_rev"],
                    "_replication_state": state, "_replication_state_time": iso_time(),
                    **({"_replication_id": job.id} if job.id else {}), **fields}
            db[job.doc_id] = Doc(body)
            job.state = state
        except (Conflict, NotFound):
            pass

    def _publish(self) -> None:
        db = self.database()
        if db is None:
            return
        report = {"pid": os.getpid(), "updated": iso_time(),
                  "jobs": [job.report() for job in self.jobs.values()]}
        try:
            current = db.get(REPORT)
            if current is not None:
                report["_rev"] = current["_rev"]
            db[REPORT] = report
            self._report_written = time.time()
        except StoreError:
            log.exception("replicator: the report could not be written")
