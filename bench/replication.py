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
pdbserver ->       PouchDB Server's own ``POST /_replicate`` from a second PouchDB
pdbserver          Server holding the same documents: the peer's whole stack doing
                   what settee -> settee does
=================  ===============================================================

Settee writes durably (SQLite ``synchronous=FULL``); PouchDB Server keeps its
databases in memory, so the comparison is tilted in its favour. Both Settee servers
run with ``server_cpu_affinity=off``: two servers that each pin their workers to the
machine's CPUs pin a source and a target worker to the same one.

Run from the project root with the project's environment::

    .venv/bin/python bench/replication.py                  # 100,000 documents, 3 rounds
    .venv/bin/python bench/replication.py --docs 10000 --repeat 1 --no-pouchdb

Each round runs the four columns one after the other, into fresh target databases
(deleted once measured); a ratio is taken within each round, and the median and the
spread of the rounds' ratios are reported, as this machine's speed wanders.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
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
    answer = out.json()               # CouchDB's shape (a history), or PouchDB's (flat)
    written = (answer.get("history") or [answer])[0].get("docs_written")
    result = {"seconds": round(seconds, 2), "docs_per_s": round(expected / seconds),
              "docs_written": written, "target_count": count}
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
              "docs_written": out["docs_written"], "target_count": count,
              "client_cpu": round(out.get("cpu", 0.0), 2)}
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


COLUMNS = ["settee -> settee", "pouchdb -> settee", "settee -> pouchdb", "pouchdb -> pouchdb",
           "pdbserver -> pdbserver"]
PAIRS = [("settee -> settee", "settee -> pouchdb"), ("pouchdb -> settee", "pouchdb -> pouchdb"),
         ("settee -> settee", "pdbserver -> pdbserver")]


def drop(url: str) -> None:
    """Delete a target database once measured, so every round starts alike."""
    requests.delete(url, timeout=600)


def one_round(n: int, docs: int, source, target, pouch_url: str | None,
              pouch_source: str | None) -> dict[str, dict]:
    """Each column once, side by side, into fresh target databases."""
    results: dict[str, dict] = {}
    into = f"{target.url}/bench-{n}"
    results["settee -> settee"] = replicate(source.url, "bench", into, docs)
    drop(into)
    results["pouchdb -> settee"] = push(f"{target.url}/pushed-{n}", docs)
    drop(f"{target.url}/pushed-{n}")
    if pouch_url is not None:
        results["settee -> pouchdb"] = replicate(source.url, "bench", f"{pouch_url}/bench-{n}",
                                                 docs)
        drop(f"{pouch_url}/bench-{n}")
        results["pouchdb -> pouchdb"] = push(f"{pouch_url}/pushed-{n}", docs)
        drop(f"{pouch_url}/pushed-{n}")
        if pouch_source is not None:       # PouchDB Server's own _replicate, as ours
            results["pdbserver -> pdbserver"] = replicate(pouch_source, "bench",
                                                          f"{pouch_url}/mirror-{n}", docs)
            drop(f"{pouch_url}/mirror-{n}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of the four columns; ratios are taken round by round")
    parser.add_argument("--no-pouchdb", action="store_true", help="skip the PouchDB column")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rounds: list[dict[str, dict]] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="settee-bench-repl-") as tmp:
        # Two servers on one machine: each would pin its two workers to CPUs 0 and 1
        # (server_cpu_affinity=auto), and a source worker and a target worker pinned
        # to the same CPU halve the run (measured: 8-19k docs/s pinned, 15-18k not);
        # PouchDB Server is not pinned. So neither Settee is.
        source = LiveServer(Path(tmp) / "source", workers=2,
                            SETTEE_SERVER_CPU_AFFINITY="off").start()
        target = LiveServer(Path(tmp) / "target", workers=2,
                            SETTEE_SERVER_CPU_AFFINITY="off").start()
        proc = proc_source = None
        try:
            started = time.perf_counter()
            fill(source.url + "/bench", args.docs)
            print(f"loaded {args.docs} documents into the source in "
                  f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
            pouch_url = None
            if args.no_pouchdb:
                for name in COLUMNS[2:]:
                    skipped[name] = "--no-pouchdb"
            else:
                proc, why = pouchdb_server()
                if proc is None:
                    for name in COLUMNS[2:]:
                        skipped[name] = why
                else:
                    pouch_url = why
                    proc_source, source_url = pouchdb_server()
                    if proc_source is None:
                        skipped["pdbserver -> pdbserver"] = source_url
                    else:
                        fill(source_url + "/bench", args.docs)
            pouch_source = source_url if proc_source is not None else None
            for n in range(args.repeat):
                rounds.append(one_round(n, args.docs, source, target, pouch_url, pouch_source))
                print(f"round {n + 1}/{args.repeat}: " + ", ".join(
                    f"{name} {value.get('docs_per_s', value.get('skipped') or value.get('error'))}"
                    for name, value in rounds[-1].items()), file=sys.stderr, flush=True)
        finally:
            for running in (proc, proc_source):
                if running is not None:
                    os.killpg(running.pid, 15)
                    running.wait()
            source.stop()
            target.stop()
    ratios = {}
    for ours, theirs in PAIRS:
        pairs = [r[ours]["docs_per_s"] / r[theirs]["docs_per_s"] for r in rounds
                 if "docs_per_s" in r.get(ours, {}) and "docs_per_s" in r.get(theirs, {})]
        if pairs:
            ratios[f"{ours} / {theirs}"] = pairs
    if args.json:
        print(json.dumps({"docs": args.docs, "rounds": rounds, "ratios": ratios,
                          "skipped": skipped}, indent=2))
        return
    print(f"replicating {args.docs:,} small documents, {args.repeat} rounds "
          "(docs/s per round)")
    for name in COLUMNS:
        if name in skipped:
            print(f"{name:24} skipped: {skipped[name]}")
            continue
        cells = [f"{r[name]['docs_per_s']:,}" if "docs_per_s" in r.get(name, {}) else
                 (r.get(name, {}).get("error") or "?")[:40] for r in rounds]
        print(f"{name:24} " + "  ".join(f"{c:>8}" for c in cells))
    for name, pairs in ratios.items():
        print(f"{name}: median {statistics.median(pairs):.2f}x, pairs "
              f"{min(pairs):.2f}x-{max(pairs):.2f}x (goal: at least 2x)")
    # PouchDB replicates one batch at a time, so its own processor time is a floor
    # under a push's time whatever the server: the best ratio a server could reach.
    bounds = [r["pouchdb -> pouchdb"]["seconds"] / r["pouchdb -> settee"]["client_cpu"]
              for r in rounds if r.get("pouchdb -> settee", {}).get("client_cpu")
              and "seconds" in r.get("pouchdb -> pouchdb", {})]
    if bounds:
        cpu = [r["pouchdb -> settee"]["client_cpu"] for r in rounds
               if r.get("pouchdb -> settee", {}).get("client_cpu")]
        print(f"PouchDB's own processor time pushing to Settee: {min(cpu)}-{max(cpu)} s; "
              "a server that took no time at all would reach "
              f"{statistics.median(bounds):.2f}x (median of the rounds)")


if __name__ == "__main__":
    main()
