#!/usr/bin/env python
"""Replication throughput: ``POST /_replicate`` of small documents between servers.

Two Settee servers, each ``settee``'s gunicorn configuration with two workers over
SQLite (``synchronous=FULL``) in a fresh temporary directory. The source gets
``--docs`` small documents (``{"_id": "doc000001", "i": 1, "name": "..."}``, about 60
bytes) by ``_bulk_docs``; then one one-shot ``POST /_replicate`` to the source,
whose target is the other server's URL (``create_target``), is timed from request
to answer, and the target's ``doc_count`` checked. Reported: seconds and documents
per second, for each target side by side:

=================  ===============================================================
settee -> settee   the other Settee
settee -> pouchdb  PouchDB Server (in memory), when npm can install it into
                   ``bench/.cache/pouchdb-server`` (gitignored); skipped, saying
                   why, otherwise
pouchdb -> settee  PouchDB 9 in node (its database in memory) pushing the same
                   documents to Settee (bench/pouch_push.js; the PouchDB the suite
                   installs, ``make pouchdb``)
pouchdb -> pouchdb the same push to PouchDB Server
=================  ===============================================================

Settee writes durably (SQLite ``synchronous=FULL``); PouchDB Server keeps its
databases in memory, so the comparison is tilted in its favour.

Run from the project root with the project's environment::

    .venv/bin/python bench/replication.py                  # 100,000 documents
    .venv/bin/python bench/replication.py --docs 10000 --no-pouchdb
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != HERE]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.append(str(HERE))                  # last: bench/ names shadow nothing
from liveserver import LiveServer, until  # noqa: E402
from pouchdb_server import install as install_pouchdb  # noqa: E402


def fill(url: str, count: int, chunk: int = 5000) -> None:
    assert requests.put(url).status_code in (201, 412)
    for start in range(0, count, chunk):
        docs = [{"_id": f"doc{i:06d}", "i": i, "name": f"item number {i}"}
                for i in range(start, min(count, start + chunk))]
        out = requests.post(url + "/_bulk_docs", json={"docs": docs})
        assert out.status_code == 201, out.text


def replicate(source_server: str, source: str, target: str, expected: int) -> dict:
    started = time.perf_counter()
    out = requests.post(source_server + "/_replicate", timeout=3600,
                        json={"source": source, "target": target, "create_target": True})
    seconds = time.perf_counter() - started
    if out.status_code != 200:
        return {"error": f"{out.status_code} {out.text[:200]}"}
    count = requests.get(target).json().get("doc_count")
    result = {"seconds": round(seconds, 2), "docs_per_s": round(expected / seconds),
              "docs_written": out.json()["history"][0]["docs_written"], "target_count": count}
    if count != expected:
        result["error"] = f"the target holds {count} documents, not {expected}"
    return result


def push(target: str, expected: int) -> dict:
    """PouchDB in node pushes ``expected`` new small documents to ``target``."""
    node = shutil.which("node")
    if not node or not (ROOT / "tests/server/pouchdb/node_modules/pouchdb-core").is_dir():
        return {"skipped": "node or PouchDB is missing (make pouchdb installs it)"}
    done = subprocess.run([node, str(HERE / "pouch_push.js"), target, str(expected)],
                          capture_output=True, text=True, timeout=3600)
    lines = done.stdout.strip().splitlines()
    out = json.loads(lines[-1]) if lines else {"error": done.stderr[-300:]}
    if "error" in out:
        return {"error": out["error"]}
    count = requests.get(target).json().get("doc_count")
    result = {"seconds": round(out["seconds"], 2), "docs_per_s": round(expected / out["seconds"]),
              "docs_written": out["docs_written"], "target_count": count}
    if count != expected:
        result["error"] = f"the target holds {count} documents, not {expected}"
    return result


def pouchdb_server() -> tuple[subprocess.Popen | None, str]:
    """PouchDB Server in memory on a free port, installed by npm into the cache
    folder; ``(None, why)`` when it cannot be."""
    binary, why = install_pouchdb()
    node = shutil.which("node")
    if binary is None or node is None:
        return None, why
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = Path(tempfile.mkdtemp(prefix="pouchdb-"))
    proc = subprocess.Popen([node, str(binary), "--in-memory", "--port", str(port),
                             "--host", "127.0.0.1", "--no-stdout-logs"], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return proc.poll() is not None
    until(up, 30)
    if proc.poll() is not None:
        return None, f"pouchdb-server did not start: {proc.stderr.read().decode()[-300:]}"
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--no-pouchdb", action="store_true", help="skip the PouchDB column")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="settee-bench-repl-") as tmp:
        source = LiveServer(Path(tmp) / "source", workers=2).start()
        target = LiveServer(Path(tmp) / "target", workers=2).start()
        try:
            started = time.perf_counter()
            fill(source.url + "/bench", args.docs)
            print(f"loaded {args.docs} documents into the source in "
                  f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
            results["settee -> settee"] = replicate(source.url, "bench",
                                                    target.url + "/bench", args.docs)
            results["pouchdb -> settee"] = push(target.url + "/pushed", args.docs)
            if args.no_pouchdb:
                results["settee -> pouchdb"] = {"skipped": "--no-pouchdb"}
            else:
                proc, url = pouchdb_server()
                if proc is None:
                    results["settee -> pouchdb"] = {"skipped": url}
                else:
                    try:
                        results["settee -> pouchdb"] = replicate(source.url, "bench",
                                                                 url + "/bench", args.docs)
                        results["pouchdb -> pouchdb"] = push(url + "/pushed", args.docs)
                    finally:
                        os.killpg(proc.pid, 15)
                        proc.wait()
        finally:
            source.stop()
            target.stop()
    if args.json:
        print(json.dumps({"docs": args.docs, "results": results}, indent=2))
        return
    print(f"replicating {args.docs:,} small documents with one POST /_replicate")
    print(f"{'':12}" + "".join(f"{name:>22}" for name in results))
    for row, unit in (("seconds", "s"), ("docs_per_s", "docs/s")):
        cells = []
        for value in results.values():
            cells.append(f"{value[row]:,} {unit}" if row in value else
                         value.get("skipped", value.get("error", ""))[:20])
        print(f"{row:12}" + "".join(f"{c:>22}" for c in cells))
    for into, name in (("settee -> settee", "settee -> pouchdb"),
                       ("pouchdb -> settee", "pouchdb -> pouchdb")):
        ours, theirs = results.get(into, {}), results.get(name, {})
        if "docs_per_s" in ours and "docs_per_s" in theirs:
            print(f"{into} / {name}: {ours['docs_per_s'] / theirs['docs_per_s']:.2f}x "
                  "(goal: at least 2x)")
    for name, value in results.items():
        if "skipped" in value or "error" in value:
            print(f"{name}: {value.get('skipped') or value.get('error')}")


if __name__ == "__main__":
    main()
