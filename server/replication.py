"""Replication over HTTP: ``POST /_replicate``, the ``_replicator`` database's
documents, ``GET /_scheduler/jobs`` and ``/_scheduler/docs``, and replications in
``_active_tasks``. Server admins only, as CouchDB (``_replicator`` documents aside).

The engine and the scheduler are the store's (``store/sync/``): this module makes
their peers (a local database name becomes a database of this server, leased while
the replication uses it, filtered by the changes feed's own filters; a URL becomes
an HTTP peer), checks ``_replicator`` documents as they are written, and answers
from the report the running scheduler keeps in ``_replicator`` (any worker can).
A one-shot ``_replicate`` runs in the request, as CouchDB's does, and answers its
history; a continuous one is handed to the scheduler and survives restarts.
"""
from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote

import orjson
from werkzeug.datastructures import MultiDict
from werkzeug.test import EnvironBuilder

from settee.store import (
    REPLICATOR,
    BadRequest,
    Catalog,
    DatabaseNotFound,
    HttpPeer,
    LocalPeer,
    PeerError,
    PeerNotFound,
    Replication,
    Scheduler,
    parse_spec,
    user_fields,
)

from .auth import PARTY
from .errors import HTTPError, bad_request
from .http import SetteeRequest
from .params import Params

#: What the scheduler's states are called in ``_scheduler/jobs`` (running ones only).
LISTED_JOB_STATES = ("running", "pending", "crashing")


def server_id(settings) -> str:
    """This server's uuid (``GET /``): part of every replication id made here."""
    return uuid.uuid5(uuid.NAMESPACE_URL, os.path.abspath(settings["storage_data_dir"])).hex


class HttpHelpers(Protocol):
    """What this group uses of the server's HTTP helpers."""

    settings: Any
    catalog: Catalog

    def respond(self, request, value, status: int = 200, headers=None) -> Any: ...

    def json_object(self, request) -> dict: ...

    def check_writable(self) -> None: ...


class ReplicationEndpoints:
    """The endpoint group. ``changes`` is the changes feed's group (a local source's
    changes are chosen by its filters); ``design_saved(database, docid)`` is told of
    design documents replicated into a local database."""

    def __init__(self, http: HttpHelpers, auth, changes, design_saved: Callable):
        self.http, self.auth = http, auth
        self.changes, self.design_saved = changes, design_saved
        self.catalog = catalog = http.catalog
        self.server_uuid = server_id(http.settings)
        lock_dir = None if catalog.in_memory else http.settings["storage_data_dir"]
        self.scheduler = Scheduler(catalog, self.server_uuid, self.make_peer, lock_dir=lock_dir)
        self.one_shots: dict[int, Replication] = {}       # running in this process's requests
        self.one_shots_lock = threading.Lock()
        if self.catalog.exists(REPLICATOR):
            self.scheduler.kick()                         # jobs from before a restart

    # -- peers -------------------------------------------------------------------------
    def make_peer(self, endpoint, spec):
        if not endpoint.local:
            return HttpPeer(endpoint)
        if spec.owner is not None and not (self.auth.party or spec.owner in self.auth.admins):
            raise PeerError(f"{spec.owner} may not name local databases ({endpoint.name}); "
                            "only server admins may: use a URL with credentials", 403,
                            "unauthorized")
        try:
            database = self.catalog.get(endpoint.name)
        except DatabaseNotFound:
            if endpoint is not spec.target or not spec.create_target:
                raise PeerNotFound(endpoint.name) from None
            self.http.check_writable()
            database = self.catalog.create(endpoint.name)
        return LocalPeer(database.lease(), filters=self.local_filter, written=self.replicated,
                         leased=True)

    def local_filter(self, database, selection: dict):
        """A local source's changes chosen as its ``_changes`` would choose them."""
        args = MultiDict({k: v if isinstance(v, str) else orjson.dumps(v).decode()
                          for k, v in (selection.get("query_params") or {}).items()})
        body = {}
        if selection.get("selector") is not None:
            args["filter"] = "_selector"
            body["selector"] = selection["selector"]
        else:
            args["filter"] = selection["filter"]
        request = SetteeRequest(EnvironBuilder(
            method="GET", path=f"/{quote(database.name, safe='')}/_changes",
            query_string=args).get_environ())
        request.user = PARTY                  # the replication's own reading of its source
        try:
            accept = self.changes.change_filter(request, Params(args), body, database)
        except HTTPError as e:
            raise PeerError(e.reason, e.status, e.error) from None
        if accept is None:
            return None
        return lambda change: bool(accept([change]))

    def replicated(self, database, docs: list[dict]) -> None:
        for doc in docs:
            if str(doc.get("_id", "")).startswith("_design/"):
                self.design_saved(database, doc["_id"])

    # -- POST /_replicate ----------------------------------------------------------------
    def on_replicate(self, request):
        body = self.http.json_object(request)
        if body.get("cancel") is True:
            return self.cancel_replication(request, body)
        spec = parse_spec(body)
        rep_id = spec.ids(self.server_uuid)[1]
        if spec.continuous:
            self.scheduler.add_transient({k: v for k, v in body.items() if k != "cancel"}, rep_id)
            return self.http.respond(request, {"ok": True, "_local_id": rep_id}, 202)
        try:
            source = self.make_peer(spec.source, spec)
            try:
                target = self.make_peer(spec.target, spec)
            except BaseException:
                source.close()
                raise
        except PeerError as e:
            raise self.peer_error(e) from None
        replication = Replication(spec, source, target, self.server_uuid)
        key = id(replication)
        with self.one_shots_lock:
            self.one_shots[key] = replication
        try:
            result = replication.run()
        except PeerError as e:
            raise self.peer_error(e) from None
        finally:
            with self.one_shots_lock:
                del self.one_shots[key]
            source.close()
            target.close()
        return self.http.respond(request, result)

    @staticmethod
    def peer_error(e: PeerError) -> HTTPError:
        if e.status == 404:         # db_not_found, or a filter the source has not
            return HTTPError(404, e.error if e.error != "replication_error" else "not_found",
                             e.reason)
        if e.status in (401, 403):
            return HTTPError(401 if e.status == 401 else 403, "unauthorized", e.reason)
        if 400 <= e.status < 500:
            return HTTPError(400, e.error, e.reason)
        return HTTPError(502, "replication_failed", e.reason)

    def cancel_replication(self, request, body: dict):
        rep_id = body.get("replication_id") or body.get("id")
        if rep_id is None:
            try:
                rep_id = parse_spec(body).ids(self.server_uuid)[1]
            except BadRequest as e:
                raise bad_request(f"cancel needs a `replication_id`, or the replication's "
                                  f"source and target: {e}") from None
        if not isinstance(rep_id, str):
            raise bad_request("`replication_id` must be a string")
        if not self.scheduler.cancel_transient(rep_id):
            raise HTTPError(404, "not_found", f"no replication {rep_id} to cancel")
        return self.http.respond(request, {"ok": True, "_local_id": rep_id})

    # -- _replicator documents -------------------------------------------------------------
    def check_doc(self, request, database, docid: str, body: dict) -> None:
        """A write of a ``_replicator`` document: a replication CouchDB would take
        (else 403, as its validation function answers), owned by its writer unless
        that is a server admin; then the scheduler looks at it."""
        if docid.startswith(("_design/", "_local/")) or body.get("_deleted") is True:
            self.scheduler.kick()
            return
        user = request.user
        fields = user_fields(body)
        try:
            parse_spec(fields)
        except BadRequest as e:
            raise HTTPError(403, "forbidden", str(e)) from None
        if not user.is_admin:
            owner = body.setdefault("owner", user.name)
            current = database.get(docid)
            if owner != user.name or (current is not None and current.get("owner") != user.name):
                raise HTTPError(403, "forbidden", "a _replicator document's owner is the "
                                "user who wrote it; only it and server admins may change it")
        self.scheduler.kick()

    # -- _scheduler ------------------------------------------------------------------------
    def jobs_report(self) -> list[dict]:
        """The running scheduler's jobs, each with the process that runs it (``pid``)."""
        self.scheduler.kick()
        report = self.scheduler.report()
        return [{**job, "pid": f"<{report.get('pid')}>"} for job in report.get("jobs", [])]

    @staticmethod
    def job_entry(job: dict) -> dict:
        return {"database": REPLICATOR if job["doc_id"] else None, "doc_id": job["doc_id"],
                "id": job["id"], "pid": job["pid"], "node": "settee@localhost",
                "source": job["source"], "target": job["target"], "user": job["user"],
                "info": job["info"], "history": job["history"], "start_time": job["start_time"]}

    @staticmethod
    def doc_entry(job: dict) -> dict:
        terminal = job["state"] in ("completed", "failed")
        return {"database": REPLICATOR, "doc_id": job["doc_id"],
                "id": None if terminal else job["id"], "node": "settee@localhost",
                "source": job["source"], "target": job["target"], "state": job["state"],
                "info": job["info"] or None, "error_count": job["error_count"],
                "last_updated": job["last_updated"], "start_time": job["start_time"],
                "source_proxy": None, "target_proxy": None}

    def listing(self, request, key: str, rows: list[dict]):
        p = Params(request.args)
        skip, limit = p.int("skip", 0) or 0, p.int("limit")
        page = rows[skip:skip + limit if limit is not None else None]
        return self.http.respond(request, {"total_rows": len(rows), "offset": skip, key: page})

    def on_scheduler_jobs(self, request):
        rows = [self.job_entry(j) for j in self.jobs_report() if j["state"] in LISTED_JOB_STATES]
        return self.listing(request, "jobs", rows)

    def on_scheduler_job(self, request, jobid):
        for job in self.jobs_report():
            if job["id"] == jobid and job["state"] in LISTED_JOB_STATES:
                return self.http.respond(request, self.job_entry(job))
        raise HTTPError(404, "not_found", "unknown_job")

    def on_scheduler_docs(self, request, repdb: str | None = None):
        if repdb is not None and repdb != REPLICATOR:
            raise HTTPError(404, "not_found", f"{repdb} is not a replicator database")
        rows = [self.doc_entry(j) for j in self.jobs_report() if j["doc_id"] is not None]
        return self.listing(request, "docs", rows)

    def on_scheduler_doc(self, request, repdb, docid):
        if repdb != REPLICATOR:
            raise HTTPError(404, "not_found", f"{repdb} is not a replicator database")
        for job in self.jobs_report():
            if job["doc_id"] == docid:
                return self.http.respond(request, self.doc_entry(job))
        raise HTTPError(404, "not_found", "unknown_doc")

    def tasks(self) -> list[dict]:
        """``_active_tasks`` entries: the scheduler's running jobs, and this process's
        one-shot replications."""
        tasks = [job["task"] for job in self.scheduler.report().get("jobs", [])
                 if job.get("task")] if self.catalog.exists(REPLICATOR) else []
        with self.one_shots_lock:
            tasks += [r.task() for r in self.one_shots.values()]
        return tasks
