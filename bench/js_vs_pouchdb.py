#!/usr/bin/env python3
"""The same JavaScript view in Settee and in pouchdb-server 4.2, side by side.

    .venv/bin/python bench/js_vs_pouchdb.py [--docs 100000] [--repeat 10] [--json]

Loads ``--docs`` invoices (make_invoices.py, in the shared folder beside the
project) into each, saves the accounts-receivable view of bench/js_views.py (the
same JavaScript map, reduced with ``_sum``) and times, in each:

* the view's build from scratch: Settee's as bench/js_views.py builds it (a
  subprocess, as a server's first query does), pouchdb-server's as its first query
  (``?limit=1&reduce=false``) over HTTP: the index built, nothing else;
* ``group=true`` over the whole view, median of ``--repeat`` (Settee through its
  WSGI application in-process, pouchdb-server over HTTP on the loopback).

Both must answer the same groups, to the cent; the script checks it. Prints both
times and pouchdb-server's over Settee's (the goal: a build at least 5x faster).

pouchdb-server is installed by this script with the machine's npm into
``bench/.cache/pouchdb-server`` (gitignored) on first use; without node and npm
the comparison is skipped, saying so.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import js_views  # noqa: E402  bench/js_views.py: the view, the Settee side
import pouchdb_server  # noqa: E402  bench/pouchdb_server.py: its install

import views as invoices_bench  # noqa: E402  bench/views.py: loading the invoices

HERE = Path(__file__).resolve().parent
DESIGN = {"_id": "_design/js", "views": {"ar": {"map": js_views.JS_MAP, "reduce": "_sum"}}}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, method: str = "GET", body=None, timeout: float = 3600) -> object:
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return orjson.loads(response.read())


def pouchdb(executable: str, docs: int, make_invoices: Path, repeat: int, tmp: str) -> dict:
    folder = Path(tmp) / "pouchdb"
    folder.mkdir()
    port = free_port()
    server = subprocess.Popen([executable, "--port", str(port), "--dir", str(folder),
                               "--config", str(folder / "config.json"), "-n"],
                              cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                call(base + "/")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("pouchdb-server did not start") from None
                time.sleep(0.2)
        call(base + "/invoices", "PUT")
        started = time.perf_counter()
        source = subprocess.Popen([sys.executable, str(make_invoices), str(docs)],
                                  stdout=subprocess.PIPE, text=True)
        assert source.stdout is not None
        batch: list = []
        for line in source.stdout:
            batch.append(json.loads(line))
            if len(batch) == 1000:
                call(base + "/invoices/_bulk_docs", "POST", {"docs": batch})
                batch = []
        if batch:
            call(base + "/invoices/_bulk_docs", "POST", {"docs": batch})
        source.wait()
        load_s = time.perf_counter() - started
        log(f"pouchdb-server: {docs} invoices loaded in {load_s:.1f} s; building the view")
        call(base + "/invoices/_design/js", "PUT", DESIGN)
        view = base + "/invoices/_design/js/_view/ar"
        started = time.perf_counter()
        first = call(view + "?limit=1&reduce=false")
        build_s = time.perf_counter() - started
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            grouped = call(view + "?group=true")
            times.append(time.perf_counter() - started)
        assert isinstance(first, dict) and isinstance(grouped, dict)
        groups = {row["key"]: round(row["value"], 2) for row in grouped["rows"]}
        return {"load_s": load_s, "build_s": build_s, "rows": first["total_rows"],
                "group_ms": statistics.median(times) * 1000, "groups": groups}
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def settee(docs: int, make_invoices: Path, repeat: int, tmp: str) -> dict:
    from werkzeug.test import Client

    from settee.server.app import create_app
    from settee.store import Catalog
    data_dir = os.path.join(tmp, "settee")
    load_s = invoices_bench.load(data_dir, docs, make_invoices)
    db = Catalog(invoices_bench.settings(data_dir)).get("invoices")
    db["_design/js"] = {k: v for k, v in DESIGN.items() if k != "_id"}
    db.close()
    log(f"Settee: {docs} invoices loaded in {load_s:.1f} s; building the view")
    built = js_views.build(data_dir, "js")
    client = Client(create_app(invoices_bench.settings(data_dir)))
    url = "/invoices/_design/js/_view/ar"
    client.get(url + "?limit=1")
    group_ms, body = invoices_bench.timed(client, url + "?group=true", repeat)
    groups = {row["key"]: round(row["value"], 2) for row in body["rows"]}
    return {"load_s": load_s, "build_s": built["seconds"], "rows": built["rows"],
            "group_ms": group_ms, "groups": groups}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--data", type=Path, default=js_views.SHARED / "make_invoices.py",
                        help="path to make_invoices.py")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    executable, why = pouchdb_server.install()
    if executable is None:
        log(f"skipped: {why}")
        return 0
    with tempfile.TemporaryDirectory(prefix="settee-vs-pouchdb-") as tmp:
        ours = settee(args.docs, args.data, args.repeat, tmp)
        theirs = pouchdb(executable, args.docs, args.data, args.repeat, tmp)
    if ours.pop("groups") != theirs.pop("groups"):
        raise SystemExit("Settee and pouchdb-server answer different groups")
    ratios = {"build": theirs["build_s"] / ours["build_s"],
              "group": theirs["group_ms"] / ours["group_ms"]}
    if args.json:
        print(orjson.dumps({"docs": args.docs, "settee": ours, "pouchdb_server": theirs,
                            "ratios": ratios}, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"{args.docs:,} invoices, {ours['rows']:,} rows in the view "
          f"(pouchdb-server: {theirs['rows']:,})")
    print(f"{'':<22} {'Settee':>10} {'pouchdb-server':>15} {'ratio':>8}")
    print(f"{'load s (untimed)':<22} {ours['load_s']:>10.1f} {theirs['load_s']:>15.1f}")
    print(f"{'view build s':<22} {ours['build_s']:>10.2f} {theirs['build_s']:>15.2f} "
          f"{ratios['build']:>7.1f}x")
    print(f"{'group=true ms':<22} {ours['group_ms']:>10.2f} {theirs['group_ms']:>15.2f} "
          f"{ratios['group']:>7.1f}x")
    print(f"goal: Settee's build at least 5x faster than pouchdb-server's: "
          f"{ratios['build']:.1f}x, {'met' if ratios['build'] >= 5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
