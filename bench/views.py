#!/usr/bin/env python3
"""Map-reduce view benchmark on the design talk's invoices (make_invoices.py data).

    .venv/bin/python bench/views.py [--sizes 10000 100000] [--json]

For each size: load the invoices into a fresh SQLite database (default stack), then
  * build the ``ar_by_accounting_code`` index from scratch with one process and with
    the process pool (each build in its own subprocess; peak RSS of the builder and of
    its largest worker, from getrusage),
  * query through the WSGI application in-process: by key (reduce=false, limit=10),
    by key range, one group=true over the whole view, and the first query after
    updating one document (the incremental path), medians of repeated runs,
  * optionally (--wrk) the key query under wrk against gunicorn.
Targets (this 2-core machine): build >= 10,000 docs/s with peak RSS <= 300 MB;
group=true at 100k docs <= 50 ms; first query after a one-document update <= 10 ms
at 100k docs; key query >= 1,000 req/s under wrk.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "bench"
VIEW = "/invoices/_view/ar_by_accounting_code"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def settings(data_dir: str):
    from settee.config import load_settings
    return load_settings(env={}, storage_data_dir=data_dir, server_access_log="",
                         examples=["invoices"])


def load(data_dir: str, count: int, make_invoices: Path) -> float:
    """Generate and load ``count`` invoices; returns seconds."""
    from tqdm import tqdm

    from settee.store import Catalog
    db = Catalog(settings(data_dir)).create("invoices")
    proc = subprocess.Popen([sys.executable, str(make_invoices), str(count)],
                            stdout=subprocess.PIPE, text=True)
    started = time.perf_counter()
    batch = []
    with tqdm(total=count, desc=f"load {count}", file=sys.stderr,
              disable=not sys.stderr.isatty()) as bar:
        for line in proc.stdout:
            batch.append(json.loads(line))
            if len(batch) == 1000:
                with db.transaction():
                    for doc in batch:
                        db.save(doc)
                bar.update(len(batch))
                batch = []
        with db.transaction():
            for doc in batch:
                db.save(doc)
        bar.update(len(batch))
    proc.wait()
    return time.perf_counter() - started


def build_child(data_dir: str, processes: int) -> None:
    """Subprocess mode: build the view from scratch, print seconds and peak RSS."""
    from settee.store import Catalog
    from settee.views.build import parallel_build
    from settee.views.definitions import load_modules, module_view
    from settee.views.engine import View, drop_view
    load_modules(["settee.examples.invoices"])
    db = Catalog(settings(data_dir)).get("invoices")
    view = View(db, module_view("invoices", "ar_by_accounting_code"))
    docs = db.versions.info()["docs"]
    # A build from scratch: the rows of the previous run (1 process, then N) are
    # dropped first, untimed, as a view never built before has none to clear.
    drop_view(db.versions.inner, view.vid)
    started = time.perf_counter()
    parallel_build(view, processes=processes)
    view.update()
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "docs": docs, "rows": view.state()["rows"],
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def build(data_dir: str, processes: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--build-child", data_dir, str(processes)],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["docs_per_s"] = result["docs"] / result["seconds"]
    return result


def timed(client, url: str, repeat: int) -> tuple[float, object]:
    times, body = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        body = response.get_data()
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, body[:300]
    return statistics.median(times) * 1000, json.loads(body)


def queries(data_dir: str, repeat: int) -> dict:
    from werkzeug.test import Client

    from settee.server.app import create_app
    app = create_app(settings(data_dir))
    client = Client(app)
    client.get(VIEW + "?limit=1")                     # bring the index up to date
    out = {}
    out["key_ms"], _ = timed(client, VIEW + '?key="code7"&reduce=false&limit=10', repeat)
    out["range_ms"], _ = timed(client, VIEW + '?startkey="code1"&endkey="code2"&reduce=false'
                               '&limit=100', repeat)
    out["group_ms"], body = timed(client, VIEW + "?group=true", repeat)
    out["groups"] = len(body["rows"])
    out["reduce_all_ms"], _ = timed(client, VIEW, repeat)
    db = app.catalog.get("invoices")
    after = []
    for i in range(repeat):
        doc = db["invoice-00000042"]
        doc["lineItems"][0]["allocation"] = {
            code: {"amount": a["amount"], "paid": round(a["paid"] * 0.5, 2) if i % 2 else a["amount"]}
            for code, a in doc["lineItems"][0]["allocation"].items()}
        db["invoice-00000042"] = doc
        started = time.perf_counter()
        response = client.get(VIEW + "?group=true")
        response.get_data()
        after.append(time.perf_counter() - started)
    out["first_after_update_ms"] = statistics.median(after) * 1000
    return out


def wrk_key_query(data_dir: str, seconds: int) -> dict:
    """req/s and latencies of the key query under wrk (16 connections) against gunicorn."""
    import http_api as h  # bench/http_api.py (this script's directory is on the path)
    wrk = h.ensure_wrk()
    port = h.free_port()
    env = dict(os.environ, SETTEE_BIND=f"127.0.0.1:{port}", SETTEE_DATA_DIR=data_dir,
               SETTEE_SERVER_ACCESS_LOG="", SETTEE_SERVER_LOG_LEVEL="warning")
    for name in ("SETTEE_SERVER_BIND", "SETTEE_STORAGE_DATA_DIR", "SETTEE_ADMIN_USER",
                 "SETTEE_ADMIN_PASSWORD", "SETTEE_AUTH_ADMIN_USER", "SETTEE_AUTH_ADMIN_PASSWORD"):
        env.pop(name, None)
    path = VIEW + '?key="code7"&reduce=false&limit=10'
    with tempfile.TemporaryDirectory() as tmp:
        server = h.Server("settee", h.settee_argv(), env, port, path, os.path.join(tmp, "log"))
        try:
            script = Path(tmp) / "get.lua"
            script.write_text(h.lua_static("GET", path, {}))
            summary = h.run_wrk(wrk, script, server, connections=16, threads=2,
                                seconds=seconds, timeout=30, label="key query", bar_pos="")
        finally:
            server.stop()
    return {"req_s": summary["requests"] / (summary["duration_us"] / 1e6),
            "p50_ms": summary["p50_us"] / 1000, "p99_ms": summary["p99_us"] / 1000,
            "errors": sum(summary[k] for k in ("connect", "read", "write", "status", "timeout"))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--data", type=Path, default=SHARED / "make_invoices.py",
                        help="path to make_invoices.py")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--wrk-seconds", type=int, default=10,
                        help="key query under wrk at the largest size (0: skip)")
    parser.add_argument("--build-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build_child:
        build_child(args.build_child[0], int(args.build_child[1]))
        return 0
    from settee.views.build import workers
    results = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="settee-views-") as tmp:
            data_dir = os.path.join(tmp, "data")
            result = {"docs": size, "load_s": load(data_dir, size, args.data)}
            log(f"{size}: loaded in {result['load_s']:.1f}s; building with 1 process")
            result["build_1"] = build(data_dir, 1)
            log(f"{size}: building with {workers()} processes")
            result["build_n"] = build(data_dir, workers())
            result["processes"] = workers()
            log(f"{size}: queries")
            result.update(queries(data_dir, args.repeat))
            if args.wrk_seconds and size == max(args.sizes):
                log(f"{size}: key query under wrk")
                result["wrk"] = wrk_key_query(data_dir, args.wrk_seconds)
            results.append(result)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"{'docs':>8} {'build 1p docs/s':>16} {'build Np docs/s':>16} {'peak RSS MB':>12} "
          f"{'key ms':>7} {'range ms':>9} {'group ms':>9} {'reduce ms':>10} {'after-update ms':>16}")
    for r in results:
        rss = max(r["build_n"]["rss_mb"], r["build_n"]["worker_rss_mb"], r["build_1"]["rss_mb"])
        print(f"{r['docs']:>8} {r['build_1']['docs_per_s']:>16.0f} {r['build_n']['docs_per_s']:>16.0f}"
              f" {rss:>12.0f} {r['key_ms']:>7.2f} {r['range_ms']:>9.2f} {r['group_ms']:>9.2f}"
              f" {r['reduce_all_ms']:>10.2f} {r['first_after_update_ms']:>16.2f}")
    print(f"(N = {results[0]['processes']} processes; peak RSS = the largest of the builder "
          "and its workers)")
    for r in results:
        if "wrk" in r:
            w = r["wrk"]
            print(f"key query under wrk at {r['docs']} docs (16 connections, gunicorn): "
                  f"{w['req_s']:,.0f} req/s, p50 {w['p50_ms']:.2f} ms, p99 {w['p99_ms']:.2f} ms, "
                  f"{w['errors']} errors")
    print("targets: build >= 10,000 docs/s, peak RSS <= 300 MB, group=true <= 50 ms at 100k, "
          "first query after a one-document update <= 10 ms at 100k, key query >= 1,000 req/s "
          "under wrk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
