"""A database behind a URL: :class:`HttpPeer` speaks CouchDB's HTTP API (Settee's,
CouchDB's, PouchDB Server's).

urllib3 carries the requests: one connection pool per peer that the replication's
fetching threads share, kept alive between requests. A request that gets no answer,
a 5xx or a 429 is tried again with a doubling pause (``retries`` times, CouchDB's
``retries_per_request``) before the replication gives up on it.
"""
from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import urllib3

from .endpoints import Endpoint
from .peers import Peer, PeerError, PeerNotFound

log = logging.getLogger("settee.sync")

#: Seconds a request may wait for its answer (a long poll adds its own wait to it).
TIMEOUT = 30.0
BULK_GET_CHUNK = 100


class HttpPeer(Peer):
    def __init__(self, endpoint: Endpoint, *, retries: int = 5, backoff: float = 0.25,
                 connections: int = 8):
        assert endpoint.url is not None
        self.endpoint = endpoint
        self.base = endpoint.url
        self.name = endpoint.display()
        self.retries = retries
        self.backoff = backoff
        self.pool = urllib3.PoolManager(maxsize=connections, block=False, retries=False)
        self.headers = {"Accept": "application/json", "Content-Type": "application/json",
                        "User-Agent": "Settee replicator", **endpoint.headers}
        self.bulk_get = True          # until the server says it has no _bulk_get

    def lane(self) -> HttpPeer:
        return HttpPeer(self.endpoint, retries=self.retries, backoff=self.backoff,
                        connections=1)

    # -- requests -------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, *, query: dict | None = None,
                timeout: float = TIMEOUT, retry: bool = True) -> tuple[int, Any]:
        """``(status, JSON body)``; :class:`PeerError` when no answer came after the
        retries. A 4xx comes back to the caller, who knows what it means."""
        url = self.base + path + ("?" + urlencode(query) if query else "")
        data = orjson.dumps(body) if body is not None else None
        pause, attempt = self.backoff, 0
        while True:
            try:
                response = self.pool.request(method, url, body=data, headers=self.headers,
                                             timeout=urllib3.Timeout(connect=10.0, read=timeout),
                                             redirect=False)
                status = response.status
                try:
                    answer = orjson.loads(response.data) if response.data else None
                except orjson.JSONDecodeError:
                    answer = None
                if not (status >= 500 or status == 429):
                    return status, answer
                reason = (answer or {}).get("reason") if isinstance(answer, dict) else None
                error = PeerError(f"{method} {self.name}{path}: {status} {reason or ''}".strip(),
                                  status)
            except urllib3.exceptions.HTTPError as e:
                error = PeerError(f"{method} {self.name}{path}: {e.__class__.__name__}")
            attempt += 1
            if not retry or attempt > self.retries:
                raise error
            log.info("%s; trying again in %.2f s", error, pause)
            time.sleep(pause)
            pause = min(pause * 2, 10.0)

    def expect(self, status: int, answer: Any, what: str, ok=(200, 201, 202)) -> Any:
        if status in ok:
            return answer
        reason = answer.get("reason", "") if isinstance(answer, dict) else ""
        if status == 404:
            raise PeerNotFound(self.name)
        if status in (401, 403):
            raise PeerError(f"unauthorized to access {self.name} ({what}): {reason}", status,
                            "unauthorized")
        raise PeerError(f"{what} on {self.name}: {status} {reason}".strip(), status)

    # -- the protocol ---------------------------------------------------------------------
    def info(self):
        status, answer = self.request("GET", "/")
        if status == 404 or not isinstance(answer, dict):
            self.expect(status if status != 200 else 502, answer, "GET")
        return self.expect(status, answer, "GET")

    def create(self):
        status, answer = self.request("PUT", "/")
        self.expect(status, answer, "PUT", ok=(201, 202, 412))

    def changes(self, since, limit, spec, wait=0.0, stop=None):
        query: dict[str, Any] = {"style": "main_only" if spec.get("winning_revs_only")
                                 else "all_docs", "since": since, "limit": limit}
        if wait:
            query.update(feed="longpoll", timeout=int(wait * 1000),
                         heartbeat=max(1000, int(wait * 500)))
        body: dict[str, Any] = {}
        if spec.get("doc_ids") is not None:
            query["filter"] = "_doc_ids"
            body["doc_ids"] = spec["doc_ids"]
        elif spec.get("selector") is not None:
            query["filter"] = "_selector"
            body["selector"] = spec["selector"]
        elif spec.get("filter"):
            query["filter"] = spec["filter"]
            for key, value in (spec.get("query_params") or {}).items():
                query[key] = value if isinstance(value, str) else orjson.dumps(value).decode()
        status, answer = self.request("POST", "/_changes", body, query=query,
                                      timeout=TIMEOUT + wait)
        answer = self.expect(status, answer, "_changes")
        if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
            raise PeerError(f"_changes of {self.name} answered no results", 502)
        return answer["results"], answer.get("last_seq", since)

    def revs_diff(self, revs):
        if not revs:
            return {}
        status, answer = self.request("POST", "/_revs_diff", revs)
        return self.expect(status, answer, "_revs_diff") or {}

    def fetch(self, wanted):
        if self.bulk_get:
            try:
                return self.fetch_bulk(wanted)
            except PeerError as e:
                if e.status not in (400, 404, 405, 501):
                    raise
                self.bulk_get = False         # an older server: one document at a time
        docs = []
        for doc_id, revs in wanted:
            docs += self.fetch_one(doc_id, revs)
        return docs

    def fetch_bulk(self, wanted):
        items = [{"id": doc_id, "rev": rev} for doc_id, revs in wanted for rev in revs]
        docs = []
        for start in range(0, len(items), BULK_GET_CHUNK):
            status, answer = self.request("POST", "/_bulk_get",
                                          {"docs": items[start:start + BULK_GET_CHUNK]},
                                          query={"revs": "true", "attachments": "true",
                                                 "latest": "true"})
            answer = self.expect(status, answer, "_bulk_get")
            for result in answer.get("results", []):
                for entry in result.get("docs", []):
                    if isinstance(entry.get("ok"), dict):
                        docs.append(entry["ok"])
        return docs

    def fetch_one(self, doc_id: str, revs: list[str]) -> list[dict]:
        status, answer = self.request("GET", "/" + quote_id(doc_id), query={
            "open_revs": orjson.dumps(revs).decode(), "revs": "true", "attachments": "true",
            "latest": "true"})
        if status == 404:
            return []
        answer = self.expect(status, answer, "GET open_revs")
        return [item["ok"] for item in answer or [] if isinstance(item.get("ok"), dict)]

    def write(self, docs):
        if not docs:
            return []
        status, answer = self.request("POST", "/_bulk_docs", {"docs": docs, "new_edits": False})
        answer = self.expect(status, answer, "_bulk_docs")
        return [r for r in answer or [] if isinstance(r, dict) and "error" in r]

    def get_local(self, doc_id):
        status, answer = self.request("GET", "/" + quote_id(doc_id))
        if status == 404:
            return None
        return self.expect(status, answer, "GET " + doc_id)

    def put_local(self, doc_id, body):
        status, answer = self.request("PUT", "/" + quote_id(doc_id), body)
        return str(self.expect(status, answer, "PUT " + doc_id).get("rev"))

    def close(self):
        self.pool.clear()


def quote_id(doc_id: str) -> str:
    """A document id as a path: ``_design/x`` and ``_local/x`` keep their slash."""
    for prefix in ("_design/", "_local/"):
        if doc_id.startswith(prefix):
            return prefix + quote(doc_id[len(prefix):], safe="")
    return quote(doc_id, safe="")

