"""Prometheus metrics at ``/_node/_local/_prometheus`` (and ``/_metrics``), for admins.

Counters and histograms are kept per process by prometheus-client; under gunicorn,
``PROMETHEUS_MULTIPROC_DIR`` (set by ``config/gunicorn.conf.py``, cleaned at start,
dead workers marked in ``child_exit``) lets every worker's numbers add up in one
scrape, whichever worker answers it. Gauges about the data (databases, documents,
disk, view index lag, replication outbox lag) are computed when scraped, so they
are the same whichever worker answers.
"""
from __future__ import annotations

import os
import shutil

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from settee.store import StoreError
from settee.views.engine import indexed_views

REQUESTS = Counter("settee_http_requests_total", "HTTP requests by method and status",
                   ["method", "status"])
LATENCY = Histogram("settee_http_request_duration_seconds", "HTTP request latency",
                    ["method"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
                                         2.5, 5, 10, 30, 60))
RSS = Gauge("settee_process_resident_memory_bytes", "Resident memory of each process",
            multiprocess_mode="all")
#: Kept by the gunicorn worker (server/worker.py), summed over the live workers.
CONNECTIONS = Gauge("settee_connections", "Open client connections: all of them (open), "
                    "those whose request head is still arriving (reading_head), and those "
                    "whose response waits for a change, holding no thread (waiting)",
                    ["state"], multiprocess_mode="livesum")


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class DataCollector:
    """Gauges read from the data when scraped."""

    def __init__(self, http):
        self.http = http

    def collect(self):
        catalog = self.http.catalog
        dbs = GaugeMetricFamily("settee_databases", "Databases")
        docs = GaugeMetricFamily("settee_documents", "Live documents", labels=["db"])
        deleted = GaugeMetricFamily("settee_deleted_documents", "Deleted documents", labels=["db"])
        lag = GaugeMetricFamily("settee_view_index_lag", "Changes a view index has yet to apply",
                                labels=["db", "view"])
        outbox = GaugeMetricFamily("settee_replication_outbox_pending",
                                   "Writes waiting to be copied to the backup store", labels=["db"])
        names = catalog.names()
        dbs.add_metric([], len(names))
        for name in names:
            try:
                db = catalog.get(name)
                info = db.info()
            except StoreError:
                continue
            docs.add_metric([name], info["doc_count"])
            deleted.add_metric([name], info["doc_del_count"])
            for vid, view, state in indexed_views(db):
                lag.add_metric([name, view.get("name", vid)],
                               max(0, info["update_seq"] - state.get("seq", 0)))
            lag_of_backup = db.replication_lag()
            if lag_of_backup is not None:
                outbox.add_metric([name], lag_of_backup["pending"])
        yield from (dbs, docs, deleted, lag, outbox)
        if not catalog.in_memory:
            usage = shutil.disk_usage(self.http.settings["storage_data_dir"])
            disk = GaugeMetricFamily("settee_disk_bytes", "Data volume", labels=["kind"])
            disk.add_metric(["free"], usage.free)
            disk.add_metric(["used"], usage.used)
            disk.add_metric(["total"], usage.total)
            yield disk


_seen = [0]
_children: dict = {}          # (method, status) -> the labelled counter and histogram


def observe(method: str, status: int, seconds: float) -> None:
    pair = _children.get((method, status))
    if pair is None:              # labels() costs more than the increment itself
        pair = _children[(method, status)] = (REQUESTS.labels(method, str(status)),
                                              LATENCY.labels(method))
    pair[0].inc()
    pair[1].observe(seconds)
    _seen[0] += 1
    if _seen[0] % 64 == 1:                  # every worker keeps its RSS gauge fresh
        RSS.set(rss_bytes())


def render(http) -> tuple[bytes, str]:
    RSS.set(rss_bytes())
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY
        registry = REGISTRY
    data = generate_latest(registry)
    local = CollectorRegistry()
    local.register(DataCollector(http))
    return data + generate_latest(local), CONTENT_TYPE_LATEST


class MetricsEndpoints:
    """``/_node/_local/_prometheus`` (and ``/_metrics``): Prometheus' text format."""

    def __init__(self, http):
        self.http = http

    def on_metrics(self, request):
        from werkzeug.wrappers import Response
        body, content_type = render(self.http)
        return Response(body, content_type=content_type)
