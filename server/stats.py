"""``/_node/{node}/_stats`` (and ``/_stats``): Settee's figures in CouchDB's shape.

CouchDB answers nested groups of metrics, each ``{"value": ..., "type": "counter" |
"gauge" | "histogram", "desc": ...}``; a path after ``_stats`` narrows the answer to
one group or metric (``/_node/_local/_stats/couchdb/request_time``). The values are
the ones Settee measures for Prometheus (:mod:`.metrics`), summed over every worker
process as a scrape sums them: requests by method and by status code, and the
request time histogram, from which ``n``, the mean, the median and the percentiles
come (a percentile is interpolated within its bucket). What Settee does not measure
(a histogram's min and max, its higher moments) is ``null``, never made up.
"""
from __future__ import annotations

import os
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from .cluster import check_node
from .errors import not_found

METHODS = ("COPY", "DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT")
STATUS_CODES = (200, 201, 202, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 406, 409,
                412, 413, 414, 415, 416, 417, 500, 501, 503)
PERCENTILES = (50, 75, 90, 95, 99, 999)
UNMEASURED = ("min", "max", "geometric_mean", "harmonic_mean", "variance",
              "standard_deviation", "skewness", "kurtosis")


def samples() -> list:
    """Every sample of Settee's Prometheus metrics, all workers' added up."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        families = registry.collect()
    else:
        families = REGISTRY.collect()
    return [sample for family in families for sample in family.samples]


def metric(value, kind: str, desc: str) -> dict:
    return {"value": value, "type": kind, "desc": desc}


def percentile(buckets: list[tuple[float, float]], n: float, q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram's cumulative ``buckets`` ((upper
    bound, count) in order), interpolated linearly within its bucket."""
    if not n:
        return None
    rank = q * n
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower                # past the last bound: its bound is all we know
            inside = count - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = upper, count
    return lower


def request_time(buckets: list[tuple[float, float]], n: float, total: float) -> dict:
    """CouchDB's ``request_time`` histogram (milliseconds) from the seconds' buckets."""
    ms = [(upper * 1000, count) for upper, count in buckets]
    value: dict[str, Any] = dict.fromkeys(UNMEASURED)
    value["n"] = int(n)
    value["arithmetic_mean"] = total * 1000 / n if n else 0
    value["median"] = percentile(ms, n, 0.5)
    value["percentile"] = [[p, percentile(ms, n, p / (1000 if p > 100 else 100))]
                           for p in PERCENTILES]
    previous = 0.0
    histogram = []
    for upper, count in ms:
        if upper != float("inf"):
            histogram.append([upper, int(count - previous)])
        previous = count
    value["histogram"] = histogram
    return metric(value, "histogram", "length of a request inside Settee, in milliseconds")


def statistics(catalog) -> dict:
    """The whole answer: CouchDB's ``couchdb`` group, and a ``settee`` group."""
    methods = dict.fromkeys(METHODS, 0.0)
    statuses: dict[str, float] = {str(code): 0.0 for code in STATUS_CODES}
    buckets: dict[float, float] = {}
    count = total = 0.0
    connections: dict[str, float] = {}
    for sample in samples():
        name, labels, value = sample.name, sample.labels, sample.value
        if name == "settee_http_requests_total":
            methods[labels["method"]] = methods.get(labels["method"], 0.0) + value
            statuses[labels["status"]] = statuses.get(labels["status"], 0.0) + value
        elif name == "settee_http_request_duration_seconds_bucket":
            bound = float(labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + value
        elif name == "settee_http_request_duration_seconds_count":
            count += value
        elif name == "settee_http_request_duration_seconds_sum":
            total += value
        elif name == "settee_connections":
            connections[labels["state"]] = connections.get(labels["state"], 0.0) + value
    couchdb = {
        "httpd": {"requests": metric(int(sum(methods.values())), "counter",
                                     "number of HTTP requests")},
        "httpd_request_methods": {m: metric(int(n), "counter", f"number of HTTP {m} requests")
                                  for m, n in sorted(methods.items())},
        "httpd_status_codes": {code: metric(int(n), "counter",
                                            f"number of HTTP {code} responses")
                               for code, n in sorted(statuses.items())},
        "request_time": request_time(sorted(buckets.items()), count, total),
        "open_databases": metric(catalog.open_count(), "gauge",
                                 "number of open databases (in the worker answering)"),
    }
    settee = {
        "databases": metric(len(catalog.names()), "gauge", "number of databases"),
        "connections": {state: metric(int(n), "gauge", f"client connections: {state}")
                        for state, n in sorted(connections.items())},
    }
    return {"couchdb": couchdb, "settee": settee}


class StatsEndpoints:
    """``GET /_node/{node}/_stats[/{group}/...]`` and ``GET /_stats``."""

    def __init__(self, http):
        self.http = http

    def on_stats(self, request, node: str = "_local", path: str = ""):
        check_node(node)
        answer: Any = statistics(self.http.catalog)
        for part in filter(None, path.split("/")):
            if not isinstance(answer, dict) or part not in answer:
                raise not_found(f"No statistic {path}")
            answer = answer[part]
        return self.http.respond(request, answer)
