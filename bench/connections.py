#!/usr/bin/env python
"""Idle, slow and waiting connections: does the server still answer everyone else?

A database server holds many connections that are not sending requests: clients that
send their headers slowly (or never finish them: "slowloris"), and ``_changes``
feeds that wait for a change (PouchDB keeps one open per live sync). This benchmark
starts Settee (``settee serve``, its default workers and threads, SQLite at
``synchronous=FULL``) and measures, with wrk at ``--connections`` connections:

idle
    ``GET /bench/doc400`` req/s with nothing else connected.
loaded
    The same while ``--slowloris`` sockets each send a partial request head a byte
    every ``--drip`` seconds (re-connecting when the server closes them), and
    ``--feeds`` longpoll feeds (``feed=longpoll&since=now&timeout=60000``) are open
    (re-opened when one ends). Meanwhile a probe GETs ``/_up`` every 0.2 s (5 s time
    limit) and records how long each answer took.

Targets: loaded GET req/s >= 70% of idle; every ``/_up`` probe answered in < 1 s.

With ``--baseline REV`` (e.g. the commit before the change), it first runs GET and
durable PUT (``PUT /bench/<new id>``, each fsynced before it is answered) without
such load, alternating the two trees ``--rounds`` times in one run, and reports each
pair's ratio (this tree over REV): the machine's speed wanders, so only ratios
measured side by side count. The baseline runs from ``git archive REV`` in a
temporary directory, put first on ``PYTHONPATH`` (its own gunicorn configuration
and worker too). ``--baseline-loaded`` also runs the loaded scenario against REV.

Run from the project root with the project's environment::

    .venv/bin/python bench/connections.py
    .venv/bin/python bench/connections.py --baseline 735f1da --rounds 3

wrk is installed with apt when missing (bench/http_api.py's helper). Progress goes
to stderr when it is a terminal.
"""
from __future__ import annotations

import argparse
import json
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import http_api as h  # noqa: E402 - bench/http_api.py's helpers: servers, wrk, seeding

SLOW_HEAD = b"GET /bench/doc400 HTTP/1.1\r\nHost: bench\r\nX-Slow: "
FEED = (b"GET /bench/_changes?feed=longpoll&since=now&timeout=60000 HTTP/1.1\r\n"
        b"Host: bench\r\n\r\n")


# -- the trees under test ------------------------------------------------------------------
class Tree:
    """Where a server's code comes from: this checkout, or ``git archive REV``."""

    def __init__(self, name: str, pythonpath: str | None = None, conf: Path | None = None):
        self.name, self.pythonpath, self.conf = name, pythonpath, conf

    @classmethod
    def current(cls) -> Tree:
        return cls("this tree")

    @classmethod
    def archived(cls, rev: str, tmp: Path) -> Tree:
        """``rev``'s code as a ``settee`` package first on ``PYTHONPATH``: found before
        the project's editable install, which Python consults after ``sys.path``."""
        src = tmp / f"src-{rev}"
        src.mkdir()
        archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(src, filter="data")
        package = tmp / f"path-{rev}" / "settee"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        for part in ("store", "server", "views", "config"):
            (package / part).symlink_to(src / part)
        return cls(rev, str(package.parent), src / "config" / "gunicorn.conf.py")

    def start(self, args, tmp: Path, label: str):
        port = h.free_port()
        data = tmp / f"data-{label}"
        env = h.server_env(args, port, str(data))
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
            argv = [sys.executable, "-m", "gunicorn", "-c", str(self.conf)]
        else:
            argv = h.settee_argv()
        env["SETTEE_BIND"] = f"127.0.0.1:{port}"
        server = h.Server(f"{self.name} {label}", argv, env, port, "/_up",
                          str(tmp / f"{label}.log"))
        h.seed_settee(server.url)
        return server


# -- the load --------------------------------------------------------------------------
class Crowd:
    """``slow`` slowloris sockets and ``feeds`` longpoll feeds, kept open by one thread."""

    def __init__(self, port: int, slow: int, feeds: int, drip: float):
        self.port, self.slow, self.feeds, self.drip = port, slow, feeds, drip
        self.sel = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.reconnects = 0
        self.feed_answers = 0
        self.connect_errors = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def open(self, kind: str) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            self.connect_errors += 1
            return
        sock.setblocking(False)
        try:
            sock.send(SLOW_HEAD if kind == "slow" else FEED)
        except OSError:
            sock.close()
            return
        self.sel.register(sock, selectors.EVENT_READ, kind)

    def run(self) -> None:
        for i in range(max(self.slow, self.feeds)):
            if i < self.feeds:
                self.open("feed")
            if i < self.slow:
                self.open("slow")
        next_drip = time.monotonic() + self.drip
        while not self.stop.is_set():
            for key, _ in self.sel.select(timeout=0.1):
                sock, kind = key.fileobj, key.data
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data and kind == "feed":
                    self.feed_answers += 1      # an answer: ask again on a new connection
                if data and kind == "slow":
                    continue                    # a 408 on its way; the close follows
                self.sel.unregister(sock)
                sock.close()
                self.reconnects += 1
                self.open(kind)
            if time.monotonic() >= next_drip:
                next_drip += self.drip
                for key in list(self.sel.get_map().values()):
                    if key.data == "slow":
                        try:
                            key.fileobj.send(b"a")
                        except OSError:
                            pass
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()

    def __enter__(self) -> Crowd:
        self.thread.start()
        time.sleep(2.0)                          # all connected, feeds waiting
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)


class Probe:
    """GET /_up every ``every`` seconds; each answer's time (None: no answer in 5 s)."""

    def __init__(self, url: str, every: float = 0.2):
        self.url, self.every = url + "/_up", every
        self.times: list[float | None] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    r.read()
                self.times.append(time.monotonic() - started)
            except OSError:
                self.times.append(None)
            self.stop.wait(max(0.0, self.every - (time.monotonic() - started)))

    def __enter__(self) -> Probe:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)


# -- scenarios ---------------------------------------------------------------------------
def wrk_rate(wrk: str, script: Path, server, args, label: str) -> dict:
    ticks = h.tree_ticks(server.pid)
    summary = h.run_wrk(wrk, script, server, connections=args.connections,
                        threads=args.wrk_threads, seconds=args.duration, timeout=5,
                        label=label, bar_pos="")
    seconds = summary["duration_us"] / 1e6
    errors = sum(summary[k] for k in ("connect", "read", "write", "status", "timeout"))
    cpu = h.cpu_seconds(ticks, h.tree_ticks(server.pid))
    return {"req_s": summary["requests"] / seconds if seconds else 0.0,
            "p99_ms": summary["p99_us"] / 1000, "errors": errors,
            "cpu_us": 1e6 * cpu / summary["requests"] if summary["requests"] else None}


def scripts(tmp: Path) -> dict[str, Path]:
    body = json.dumps(h.document()).encode()
    made = {"get": h.lua_static("GET", f"/{h.DB}/{h.DOC_ID}", {}),
            "put": h.lua_put_unique(f"/{h.DB}/w", body)}
    paths = {}
    for name, text in made.items():
        paths[name] = tmp / f"{name}.lua"
        paths[name].write_text(text)
    return paths


def alternate(wrk, lua, trees, args, tmp) -> dict:
    """GET and PUT without load, the trees in turn, ``--rounds`` times."""
    runs: dict[str, dict[str, list[float]]] = {
        t.name: {"get": [], "put": [], "get_cpu": [], "put_cpu": []} for t in trees}
    for r in range(args.rounds):
        order = trees if r % 2 == 0 else trees[::-1]
        for tree in order:
            server = tree.start(args, tmp, f"plain-{r}-{len(runs[tree.name]['get'])}"
                                f"-{tree.name.replace(' ', '_')}")
            try:
                for scenario in ("get", "put"):
                    h.note(f"round {r + 1}/{args.rounds}: {tree.name} {scenario}")
                    rate = wrk_rate(wrk, lua[scenario], server, args, f"{tree.name} {scenario}")
                    runs[tree.name][scenario].append(rate["req_s"])
                    runs[tree.name][scenario + "_cpu"].append(rate["cpu_us"] or 0.0)
            finally:
                server.stop()
    return runs


def under_load(wrk, lua, tree, args, tmp) -> dict:
    server = tree.start(args, tmp, f"loaded-{tree.name.replace(' ', '_')}")
    try:
        h.note(f"{tree.name}: GET, idle")
        idle = wrk_rate(wrk, lua["get"], server, args, "GET idle")
        with Probe(server.url) as idle_probe:
            time.sleep(2)
        h.note(f"{tree.name}: opening {args.slowloris} slow sockets and {args.feeds} feeds")
        with Crowd(server.port, args.slowloris, args.feeds, args.drip) as crowd, \
                Probe(server.url) as probe:
            loaded = wrk_rate(wrk, lua["get"], server, args, "GET loaded")
        answered = [t for t in probe.times if t is not None]
        return {"tree": tree.name, "idle": idle, "loaded": loaded,
                "ratio": loaded["req_s"] / idle["req_s"] if idle["req_s"] else 0.0,
                "up_probes": len(probe.times), "up_unanswered": len(probe.times) - len(answered),
                "up_max_ms": 1000 * max(answered) if answered else None,
                "up_p50_ms": 1000 * statistics.median(answered) if answered else None,
                "up_idle_max_ms": 1000 * max(t for t in idle_probe.times if t is not None)
                if any(t is not None for t in idle_probe.times) else None,
                "feed_answers": crowd.feed_answers, "reconnects": crowd.reconnects,
                "connect_errors": crowd.connect_errors}
    finally:
        server.stop()


# -- report ------------------------------------------------------------------------------
def report_pairs(runs: dict, trees: list[Tree]) -> list[str]:
    current, base = trees[0].name, trees[1].name
    lines = ["| scenario | this tree req/s | baseline req/s | ratio per pair | median | spread |",
             "|---|---|---|---|--:|---|"]
    for scenario in ("get", "put"):
        ours, theirs = runs[current][scenario], runs[base][scenario]
        ratios = [a / b for a, b in zip(ours, theirs) if b]
        lines.append(
            f"| {scenario.upper()} | {', '.join(f'{v:,.0f}' for v in ours)} "
            f"| {', '.join(f'{v:,.0f}' for v in theirs)} "
            f"| {', '.join(f'{r:.2f}' for r in ratios)} "
            f"| {statistics.median(ratios):.2f} | {min(ratios):.2f}-{max(ratios):.2f} |")
    lines += ["", "Server CPU per request (µs, all processes; lower is better):", "",
              "| scenario | this tree | baseline | ratio per pair | median |", "|---|---|---|---|--:|"]
    for scenario in ("get", "put"):
        ours, theirs = runs[current][scenario + "_cpu"], runs[base][scenario + "_cpu"]
        ratios = [a / b for a, b in zip(ours, theirs) if b]
        lines.append(f"| {scenario.upper()} | {', '.join(f'{v:.0f}' for v in ours)} "
                     f"| {', '.join(f'{v:.0f}' for v in theirs)} "
                     f"| {', '.join(f'{r:.2f}' for r in ratios)} "
                     f"| {statistics.median(ratios):.2f} |")
    return lines


def report_load(result: dict) -> list[str]:
    def ms(v):
        return "-" if v is None else f"{v:,.0f}"
    ok = result["ratio"] >= 0.70 and not result["up_unanswered"] and \
        (result["up_max_ms"] or 1e9) < 1000
    return [
        f"**{result['tree']}**: GET idle {result['idle']['req_s']:,.0f} req/s, loaded "
        f"{result['loaded']['req_s']:,.0f} req/s ({100 * result['ratio']:.0f}% of idle; "
        f"p99 {result['loaded']['p99_ms']:.1f} ms, {result['loaded']['errors']} wrk errors); "
        f"/_up: {result['up_probes']} probes, {result['up_unanswered']} unanswered in 5 s, "
        f"median {ms(result['up_p50_ms'])} ms, max {ms(result['up_max_ms'])} ms "
        f"(idle max {ms(result['up_idle_max_ms'])} ms); feeds answered meanwhile "
        f"{result['feed_answers']}, crowd reconnects {result['reconnects']}, connect errors "
        f"{result['connect_errors']}. Targets (>= 70%, every /_up < 1 s): "
        f"{'met' if ok else 'NOT met'}."]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--slowloris", type=int, default=200, help="slow sockets (200)")
    parser.add_argument("--feeds", type=int, default=1000, help="open longpoll feeds (1000)")
    parser.add_argument("--drip", type=float, default=2.0,
                        help="seconds between a slow socket's bytes (2)")
    parser.add_argument("--baseline", help="a git revision to compare GET and PUT with")
    parser.add_argument("--baseline-loaded", action="store_true",
                        help="run the loaded scenario against the baseline too")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument("--workers", type=int, default=0, help="server workers (default: Settee's)")
    parser.add_argument("--server-threads", type=int, default=0,
                        help="threads per worker (default: Settee's)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < args.slowloris + args.feeds + 256:
        sys.exit(f"bench/connections.py: the open file limit ({hard}) is too low for "
                 f"{args.slowloris + args.feeds} sockets")
    wrk = h.ensure_wrk()
    results: dict = {}
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="settee-conn-") as tmp_name:
        tmp = Path(tmp_name)
        lua = scripts(tmp)
        trees = [Tree.current()]
        if args.baseline:
            trees.append(Tree.archived(args.baseline, tmp))
            runs = alternate(wrk, lua, trees, args, tmp)
            results["alternating"] = runs
            lines += [f"GET and durable PUT without load, {args.rounds} alternating rounds "
                      f"of {args.duration:g} s at {args.connections} connections "
                      f"(this tree vs {args.baseline}):", ""] + report_pairs(runs, trees) + [""]
        loaded_trees = trees if args.baseline_loaded else trees[:1]
        results["loaded"] = []
        for tree in loaded_trees:
            result = under_load(wrk, lua, tree, args, tmp)
            results["loaded"].append(result)
            lines += report_load(result) + [""]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{args.slowloris} slow sockets (a byte every {args.drip:g} s) and {args.feeds} "
              f"open longpoll feeds; wrk {args.connections} connections, "
              f"{args.duration:g} s per run.\n")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
