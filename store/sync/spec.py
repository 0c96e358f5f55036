"""What a replication is asked to do: a ``POST /_replicate`` body or a ``_replicator``
document, checked once (:func:`parse_spec`) into a :class:`Spec`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..exceptions import BadRequest
from .endpoints import Endpoint, full_id, parse_endpoint, replication_id

#: Fields of a ``_replicator`` document that the replicator writes, not the user.
STATE_FIELDS = ("_replication_state", "_replication_state_time", "_replication_state_reason",
                "_replication_id", "_replication_stats")


@dataclass
class Spec:
    source: Endpoint
    target: Endpoint
    continuous: bool = False
    create_target: bool = False
    doc_ids: list[str] | None = None
    selector: dict | None = None
    filter: str | None = None
    query_params: dict = field(default_factory=dict)
    since_seq: Any = None
    use_checkpoints: bool = True
    checkpoint_interval: float = 5.0       # seconds (CouchDB's setting is in ms)
    batch_size: int = 500                  # changes per batch (worker_batch_size)
    owner: str | None = None               # the _replicator document's user
    winning_revs_only: bool = False        # each document's winner alone, no conflicts

    def selection(self) -> dict:
        """The choice of documents, as peers take it (``Peer.changes``' spec)."""
        return {"doc_ids": self.doc_ids, "selector": self.selector, "filter": self.filter,
                "query_params": self.query_params,
                "winning_revs_only": True if self.winning_revs_only else None}

    def ids(self, server: str) -> tuple[str, str]:
        """``(base id, full id)`` of this replication on ``server``."""
        options = {**self.selection(), "continuous": self.continuous,
                   "create_target": self.create_target}
        base = replication_id(server, self.source, self.target, options)
        return base, full_id(base, options)


def flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"`{name}` must be true or false")
    return value


def parse_spec(body: Any) -> Spec:
    if not isinstance(body, dict):
        raise BadRequest("a replication is a JSON object")
    if "source" not in body or "target" not in body:
        raise BadRequest("a replication needs a `source` and a `target`")
    spec = Spec(parse_endpoint(body["source"], "source"), parse_endpoint(body["target"], "target"),
                continuous=flag(body, "continuous"), create_target=flag(body, "create_target"),
                winning_revs_only=flag(body, "winning_revs_only"),
                use_checkpoints=body.get("use_checkpoints", True) is not False)
    doc_ids = body.get("doc_ids")
    if doc_ids is not None:
        if not isinstance(doc_ids, list) or not all(isinstance(i, str) for i in doc_ids):
            raise BadRequest("`doc_ids` must be an array of document ids")
        spec.doc_ids = sorted(set(doc_ids))
    selector = body.get("selector")
    if selector is not None:
        if not isinstance(selector, dict):
            raise BadRequest("`selector` must be a JSON object")
        spec.selector = selector
    name = body.get("filter")
    if name is not None:
        if not isinstance(name, str) or not name:
            raise BadRequest("`filter` must be a filter's name: ddoc/name, or _doc_ids, "
                             "_selector, _design, _view")
        spec.filter = name
    if sum(x is not None for x in (spec.doc_ids, spec.selector, spec.filter)) > 1:
        raise BadRequest("`doc_ids`, `selector` and `filter` exclude each other")
    params = body.get("query_params", {})
    if not isinstance(params, dict):
        raise BadRequest("`query_params` must be a JSON object")
    spec.query_params = params
    if spec.filter == "_doc_ids" and spec.doc_ids is None:
        ids = params.get("doc_ids")
        if not isinstance(ids, list):
            raise BadRequest("filter _doc_ids needs `doc_ids`")
        spec.doc_ids, spec.filter = sorted(set(map(str, ids))), None
    if spec.filter == "_selector":
        raise BadRequest("use `selector` (a replication's own field) for filter _selector")
    if "since_seq" in body:
        since = body["since_seq"]
        if not isinstance(since, (str, int)) or isinstance(since, bool):
            raise BadRequest("`since_seq` must be a sequence the source gave")
        spec.since_seq = since
    for name, low, high in (("checkpoint_interval", 100, 3_600_000),
                            ("worker_batch_size", 1, 10_000)):
        if name in body:
            value = body[name]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise BadRequest(f"`{name}` must be an integer from {low} to {high}")
            if name == "checkpoint_interval":
                spec.checkpoint_interval = value / 1000
            else:
                spec.batch_size = value
    return spec
