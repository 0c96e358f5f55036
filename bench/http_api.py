#!/usr/bin/env python
"""HTTP benchmark: Settee under gunicorn, driven by wrk, beside a bare reference app.

Starts two servers on free loopback ports, each under the project's gunicorn
configuration (``config/gunicorn.conf.py``: the same workers, threads and worker
class, taken from Settee's settings), with the access log off:

settee
    ``settee serve`` on a fresh temporary data directory, with the default settings
    otherwise (SQLite, ``synchronous=FULL``: every write is fsynced before it is
    acknowledged; the default ``storage_stack``).
reference
    ``bench/reference_app.py``: bare werkzeug reading a 400-byte JSON value by key
    from SQLite and answering it with an ETag. Nothing written in Python on this stack
    (gunicorn + werkzeug + sqlite3) can serve a document faster, so it is the ceiling
    Settee's reads are compared with. It serves the very bytes and ETag Settee answers
    for the benchmark document.

Then runs one wrk load per scenario (``--connections`` connections over
``--wrk-threads`` threads for ``--duration``, after a short warm-up), each with a Lua
script that builds the requests and prints wrk's summary and latency percentiles as
JSON:

==============  =====================================================================
get             ``GET /bench/doc400``, a document whose JSON is 400 bytes
revalidate      the same with ``If-None-Match`` naming its current ETag (304)
all_docs        ``GET /bench/_all_docs?limit=100`` over 1,000 documents
put             ``PUT /bench/<unique id>`` of a new 400-byte document (ids from a
                per-thread counter)
post            ``POST /bench`` of a new document (the server makes the id)
bulk_docs       ``POST /manpages/_bulk_docs`` of the 849 man pages of
                ``manpages-849.jsonl.gz`` (6.2 MB), new ids each request;
                ``--bulk-connections`` connections, as each request is big
reference_get   the reference app's ``GET /doc400``
==============  =====================================================================

For each it reports requests per second, p50 and p99 latency, the servers' CPU time
per request (utime + stime of the gunicorn master and its workers from
``/proc/<pid>/stat``, before and after the run) and the ratio of its requests per
second to the reference GET's, and checks the targets (:data:`TARGETS`). wrk shares
the machine with the servers; the CPU the rest of the machine used during each run
is measured too (``/proc/stat``) and reported, so a loaded machine shows.
``--repeat N`` runs N rounds of all scenarios in turn and reports, per scenario, the
run with the median req/s and the median of its per-round ratios to the reference.
Write scenarios also check that the server stored as many documents as wrk counted.
Both servers run without a gunicorn control socket (``--no-control-socket``): it has
one path per user, and a second server would take it from the first.

``--profile DIR`` samples Settee's processes with py-spy during each scenario
(``pip install py-spy`` into the venv) and writes collapsed stacks per scenario.

wrk is installed with ``apt-get install -y wrk`` when missing. The man pages are read
where they lie, ``<project>/../shared/bench/`` (``$SHARED/bench/`` if ``SHARED`` is
set), or ``--data``; nothing is copied into the project.

Run from the project root with the project's environment::

    .venv/bin/python bench/http_api.py                 # the table
    .venv/bin/python bench/http_api.py --json          # the results as JSON
    .venv/bin/python bench/http_api.py --duration 30 --scenarios get,put
    .venv/bin/python bench/http_api.py --repeat 3      # on a busy machine

Progress goes to stderr, and only when it is a terminal.
"""
from __future__ import annotations

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import os
import platform  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
import uuid  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

try:
    import orjson

    import settee.config
    from settee.config import load_settings
except ImportError as e:     # pragma: no cover - the project is not installed
    sys.exit(f"bench/http_api.py: {e}; install the project first (make install)")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHARED") or ROOT.parent / "shared")
DEFAULT_DATA = SHARED / "bench" / "manpages-849.jsonl.gz"
GUNICORN_CONF = Path(settee.config.__file__).with_name("gunicorn.conf.py")


def worker_class() -> str:
    """The worker class the gunicorn configuration names (for the report)."""
    found = re.search(r'^worker_class = "([^"]+)"', GUNICORN_CONF.read_text(), re.M)
    return found.group(1) if found else "?"
REFERENCE_APP = Path(__file__).resolve().parent / "reference_app.py"

DB = "bench"
BULK_DB = "manpages"
DOC_ID = "doc400"
DOC_SIZE = 400                 # bytes of JSON the GET answers (with _id and _rev)
SEED_DOCS = 1000               # documents in DB before the reads (for _all_docs)
MARK = "~~id~~"                # stands for the per-request id prefix in the bulk body

#: (scenario, metric, comparison, limit, text), checked after the run; "ratio" is req/s
#: over the reference GET's (same round, median over rounds). Targets are for 16 connections.
TARGETS = [
    ("get", "ratio", ">=", 0.65, "GET doc >= 65% of the reference GET's req/s"),
    ("put", "req_s", ">=", 2000, "PUT new doc >= 2,000 req/s (durable: fsync per write)"),
    ("put", "p99_ms", "<=", 25, "PUT new doc p99 <= 25 ms"),
    ("post", "req_s", ">=", 2000, "POST new doc >= 2,000 req/s (durable: fsync per write)"),
    ("post", "p99_ms", "<=", 25, "POST new doc p99 <= 25 ms"),
]
TARGET_CONNECTIONS = 16

SCENARIOS = ["reference_get", "get", "revalidate", "all_docs", "put", "post", "bulk_docs"]
TITLES = {
    "reference_get": "reference GET (werkzeug+sqlite)",
    "get": "GET doc",
    "revalidate": "GET If-None-Match (304)",
    "all_docs": "_all_docs?limit=100",
    "put": "PUT new doc",
    "post": "POST new doc",
    "bulk_docs": "_bulk_docs 849 man pages",
}


# -- wrk and its scripts ---------------------------------------------------------------
LUA_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('@@BENCH@@{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"max_us":%.1f,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""

LUA_COUNTER = r"""
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
"""


def lua_string(text: str) -> str:
    """A Lua string literal for any text (decimal escapes for everything unusual)."""
    out = []
    for byte in text.encode():
        ch = chr(byte)
        out.append(ch if 32 <= byte < 127 and ch not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def lua_static(method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> str:
    lines = [f"wrk.method = {lua_string(method)}", f"wrk.path = {lua_string(path)}"]
    lines += [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"wrk.body = {lua_string(body.decode())}")
    return "\n".join(lines) + "\n" + LUA_DONE


def lua_put_unique(path_prefix: str, body: bytes) -> str:
    """``PUT path_prefix<thread>-<n>``: a new document every request."""
    return LUA_COUNTER + f"""
local body = {lua_string(body.decode())}
local headers = {{["Content-Type"] = "application/json"}}
function request()
  counter = counter + 1
  return wrk.format("PUT", {lua_string(path_prefix)} .. tid .. "-" .. counter, headers, body)
end
""" + LUA_DONE


def lua_bulk(path: str, template_file: str, run: str) -> str:
    """POST the bulk body of ``template_file`` with a fresh id prefix at every MARK."""
    return LUA_COUNTER + f"""
local pieces = {{}}
local headers = {{["Content-Type"] = "application/json"}}
function init(args)
  local f = assert(io.open({lua_string(template_file)}, "rb"))
  local text = f:read("*a")
  f:close()
  local start = 1
  while true do
    local i, j = string.find(text, {lua_string(MARK)}, start, true)
    if not i then
      pieces[#pieces + 1] = string.sub(text, start)
      break
    end
    pieces[#pieces + 1] = string.sub(text, start, i - 1)
    start = j + 1
  end
end
function request()
  counter = counter + 1
  local prefix = {lua_string(run)} .. "-" .. tid .. "-" .. counter .. "-"
  return wrk.format("POST", {lua_string(path)}, headers, table.concat(pieces, prefix))
end
""" + LUA_DONE


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("bench/http_api.py: wrk is not installed; as root: apt-get install -y wrk")
    note("installing wrk with apt-get")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE,
             "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    if subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], **quiet).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True, **quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, **quiet)
    found = shutil.which("wrk")
    if not found:
        sys.exit("bench/http_api.py: apt-get installed wrk, but it is not on PATH")
    return found


# -- CPU accounting ----------------------------------------------------------------------
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime in ticks) of ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    rest = text[text.rindex(b")") + 2:].split()
    return int(rest[1]), int(rest[11]) + int(rest[12])


def tree_ticks(master: int) -> dict[int, int]:
    """CPU ticks of the gunicorn master and each of its workers, by pid."""
    ticks = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat and (int(name) == master or stat[0] == master):
                ticks[int(name)] = stat[1]
    return ticks


def cpu_seconds(before: dict[int, int], after: dict[int, int]) -> float:
    # A worker that appeared meanwhile counts from zero; one that vanished is lost.
    return sum(t - before.get(pid, 0) for pid, t in after.items()) / CLOCK_TICK


def machine_busy() -> tuple[float, float]:
    """(busy seconds, total seconds) of all CPUs so far, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]                  # idle + iowait
    total = sum(values[:8])                       # user .. steal (guest is inside user)
    return (total - idle) / CLOCK_TICK, total / CLOCK_TICK


# -- servers -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A gunicorn master we started (in its own session), its log in a temp file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int,
                 ready_path: str, log_path: str):
        self.name, self.port, self.log_path = name, port, log_path
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     cwd=ROOT)
        self.wait_ready(ready_path)

    def wait_ready(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench/http_api.py: the {self.name} server exited "
                                 f"({self.proc.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"bench/http_api.py: the {self.name} server did not answer {path} "
                         f"within {timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")

    @property
    def pid(self) -> int:
        return self.proc.pid            # `settee serve` execs gunicorn: this is the master

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)      # gunicorn: graceful shutdown
            try:
                self.proc.wait(timeout=35)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def request(url: str, method: str = "GET", body=None, headers=None):
    """(status, headers, body) of one request; HTTP errors are answers too."""
    data = orjson.dumps(body) if body is not None and not isinstance(body, bytes) else body
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def expect(answer, *statuses: int, what: str):
    status, _, body = answer
    if status not in statuses:
        raise SystemExit(f"bench/http_api.py: {what}: HTTP {status}: {body[:300]!r}")
    return answer


# -- documents -----------------------------------------------------------------------------
def document(size: int = DOC_SIZE, doc_id: str = DOC_ID) -> dict:
    """A document whose JSON, with ``_id`` and a first ``_rev``, is ``size`` bytes."""
    doc = {"type": "invoice-note", "title": "Benchmark document", "customer": "ACME Corp.",
           "amount": 1234.5, "paid": False, "tags": ["bench", "http", "settee"],
           "lines": [{"code": "A1", "qty": 3}, {"code": "B2", "qty": 1}], "text": ""}
    frame = {"_id": doc_id, "_rev": "1-" + "0" * 32, **doc}
    doc["text"] = "x" * max(0, size - len(orjson.dumps(frame)))
    return doc


def bulk_template(data: Path, out: Path) -> tuple[int, int]:
    """Write the ``_bulk_docs`` body of the man pages with MARK before each id."""
    with gzip.open(data, "rb") as f:
        pages = [orjson.loads(line) for line in f if line.strip()]
    for page in pages:
        page["_id"] = MARK + page["_id"]
    body = orjson.dumps({"docs": pages})
    if body.count(MARK.encode()) != len(pages):
        raise SystemExit(f"bench/http_api.py: {data}: the marker occurs inside the pages")
    out.write_bytes(body)
    return len(pages), len(body)


# -- one run -------------------------------------------------------------------------------
@dataclass
class Result:
    scenario: str
    title: str
    server: str
    connections: int
    requests: int = 0
    seconds: float = 0.0
    req_s: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    cpu_ms_per_req: float | None = None
    server_cpu_pct: float = 0.0       # of one CPU
    wrk_cpu_pct: float = 0.0
    other_cpu_pct: float = 0.0        # the rest of the machine, of one CPU
    ratio: float | None = None
    errors: dict = field(default_factory=dict)
    docs_per_request: int = 1
    docs_written: int | None = None
    note: str = ""
    runs_req_s: list[float] = field(default_factory=list)
    cpu_ratio: float | None = None    # the reference GET's CPU ms/req over this one's


def run_wrk(wrk: str, script: Path, server: Server, *, connections: int, threads: int,
            seconds: float, timeout: float, label: str, bar_pos: str) -> dict:
    seconds = max(1, round(seconds))         # wrk takes whole seconds
    argv = [wrk, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s",
            f"--timeout={timeout:g}s", "--latency", "-s", str(script), server.url]
    with progress(seconds, f"{bar_pos} {label}") as bar:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        start = time.monotonic()
        while proc.poll() is None:
            time.sleep(0.25)
            bar.n = min(seconds, round(time.monotonic() - start, 1))
            bar.refresh()
        out, err = proc.communicate()
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("@@BENCH@@"):
            return json.loads(line[len("@@BENCH@@"):])
    raise SystemExit(f"bench/http_api.py: wrk gave no summary ({proc.returncode}):\n"
                     f"{out.decode(errors='replace')}\n{err.decode(errors='replace')}")


def measure(wrk: str, script: Path, server: Server, result: Result, *, threads: int,
            seconds: float, timeout: float, bar_pos: str,
            profile: tuple[str, Path] | None = None) -> Result:
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            [profile[0], "record", "--pid", str(server.pid), "--subprocesses", "--gil",
             "--rate", "200", "--duration", str(seconds), "--format", "raw",
             "--output", str(profile[1] / f"{result.scenario}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ticks = tree_ticks(server.pid)
    busy0, _ = machine_busy()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.monotonic()
    summary = run_wrk(wrk, script, server, connections=result.connections, threads=threads,
                      seconds=seconds, timeout=timeout, label=result.title, bar_pos=bar_pos)
    wall = time.monotonic() - wall0
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy1, _ = machine_busy()
    server_cpu = cpu_seconds(ticks, tree_ticks(server.pid))
    if spy is not None:
        spy.wait()
    wrk_cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    result.requests = summary["requests"]
    result.seconds = summary["duration_us"] / 1e6
    result.req_s = result.requests / result.seconds if result.seconds else 0.0
    result.p50_ms = summary["p50_us"] / 1000
    result.p90_ms = summary["p90_us"] / 1000
    result.p99_ms = summary["p99_us"] / 1000
    result.max_ms = summary["max_us"] / 1000
    result.cpu_ms_per_req = server_cpu * 1000 / result.requests if result.requests else None
    result.server_cpu_pct = 100 * server_cpu / wall
    result.wrk_cpu_pct = 100 * wrk_cpu / wall
    result.other_cpu_pct = max(0.0, 100 * ((busy1 - busy0) - server_cpu - wrk_cpu) / wall)
    result.errors = {k: summary[k] for k in ("connect", "read", "write", "status", "timeout")
                     if summary[k]}
    return result


def progress(total: float, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="s", file=sys.stderr, leave=False,
                disable=not sys.stderr.isatty(),
                bar_format="{desc}: {bar} {n:.0f}/{total:.0f} s")


def note(text: str) -> None:
    if sys.stderr.isatty():
        print(text, file=sys.stderr)


# -- the benchmark ---------------------------------------------------------------------------
def server_env(args, port: int, data_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"SETTEE_BIND": f"127.0.0.1:{port}", "SETTEE_DATA_DIR": data_dir,
                "SETTEE_SERVER_ACCESS_LOG": "", "SETTEE_SERVER_LOG_LEVEL": "warning"})
    if args.workers:
        env["SETTEE_WORKERS"] = str(args.workers)
    if args.server_threads:
        env["SETTEE_THREADS"] = str(args.server_threads)
    # The conf must see the same settings in both servers: drop the long-name twins.
    # No server admin: the servers listen on loopback, and wrk sends no credentials.
    for name in ("SETTEE_SERVER_BIND", "SETTEE_STORAGE_DATA_DIR", "SETTEE_SERVER_WORKERS",
                 "SETTEE_SERVER_THREADS", "SETTEE_ADMIN_USER", "SETTEE_ADMIN_PASSWORD",
                 "SETTEE_AUTH_ADMIN_USER", "SETTEE_AUTH_ADMIN_PASSWORD"):
        env.pop(name, None)
    return env


def settee_argv() -> list[str]:
    script = Path(sys.executable).with_name("settee")
    serve = [str(script)] if script.exists() else [sys.executable, "-m", "settee.server.cli"]
    # No gunicorn control socket: it lives at one path per user ($HOME/.gunicorn), so
    # two servers (or a developer's own) would take it from each other.
    return serve + ["serve", "--no-control-socket"]


def reference_argv(app_dir: Path) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "--no-control-socket",
            "--pythonpath", str(app_dir), "reference_app:application"]


def reference_app():
    import importlib.util
    spec = importlib.util.spec_from_file_location("reference_app", REFERENCE_APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seed_settee(url: str) -> tuple[bytes, str]:
    expect(request(f"{url}/{DB}", "PUT"), 201, what=f"PUT /{DB}")
    expect(request(f"{url}/{BULK_DB}", "PUT"), 201, what=f"PUT /{BULK_DB}")
    expect(request(f"{url}/{DB}/{DOC_ID}", "PUT", document()), 201, what=f"PUT {DOC_ID}")
    for start in range(0, SEED_DOCS, 250):
        docs = [{"_id": f"seed-{n:05d}", **document(doc_id=f"seed-{n:05d}")}
                for n in range(start, min(start + 250, SEED_DOCS))]
        expect(request(f"{url}/{DB}/_bulk_docs", "POST", {"docs": docs}), 201,
               what="seeding _bulk_docs")
    _, headers, body = expect(request(f"{url}/{DB}/{DOC_ID}"), 200, what=f"GET {DOC_ID}")
    return body, headers["ETag"]


def doc_count(url: str, db: str) -> int:
    return orjson.loads(expect(request(f"{url}/{db}"), 200, what=f"GET /{db}")[2])["doc_count"]


def check_targets(results: dict[str, Result], connections: int) -> list[dict]:
    checks = []
    for scenario, metric, op, limit, text in TARGETS:
        r = results.get(scenario)
        if r is None:
            continue
        value = getattr(r, metric)
        ok = value is not None and (value >= limit if op == ">=" else value <= limit)
        if r.errors:
            ok = False
        checks.append({"target": text, "scenario": scenario, "metric": metric, "value": value,
                       "limit": limit, "met": ok,
                       "note": "" if connections == TARGET_CONNECTIONS else
                       f"measured at {connections} connections, the target is for "
                       f"{TARGET_CONNECTIONS}"})
    return checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", default="10", help="seconds per scenario (default 10)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="seconds of warm-up load before each scenario (default 1; 0: none)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--bulk-connections", type=int, default=2,
                        help="connections for _bulk_docs, 6.2 MB a request (2)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of all scenarios; each reports its median run (1)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="wrk's per-request timeout in seconds (30)")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: Settee's)")
    parser.add_argument("--server-threads", type=int,
                        help="threads per worker (default: Settee's)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="manpages-849.jsonl.gz (default: ../shared/bench/ beside the "
                             "project, or $SHARED/bench/)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="sample Settee's gunicorn processes with py-spy (the thread "
                             "holding the GIL: where Python's CPU goes) during each scenario "
                             "and write DIR/<scenario>.txt (collapsed stacks of the last "
                             "round, for flamegraph.pl or speedscope); py-spy takes CPU too, "
                             "so the figures are not comparable (pip install py-spy into "
                             "the venv)")
    args = parser.parse_args(argv)
    seconds = int(args.duration.rstrip("s"))
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if "get" in scenarios and "reference_get" not in scenarios:
        scenarios.insert(0, "reference_get")           # the ratio needs it
    scenarios = [s for s in SCENARIOS if s in scenarios]
    if "bulk_docs" in scenarios and not args.data.is_file():
        parser.error(f"{args.data}: no such file (--data names the man pages)")

    py_spy = None
    if args.profile:
        py_spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
        if not py_spy:
            parser.error("--profile needs py-spy: .venv/bin/pip install py-spy")
        args.profile.mkdir(parents=True, exist_ok=True)
    wrk = ensure_wrk()
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout
    wrk_version = wrk_version.split("\n")[0].split(" Copyright")[0].strip()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="settee-bench-http-"))
    servers: list[Server] = []
    results: dict[str, Result] = {}
    runs: dict[str, list[Result]] = {}
    run = uuid.uuid4().hex[:8]
    try:
        # Settee, seeded; then the reference app with the bytes Settee answers.
        port = free_port()
        env = server_env(args, port, str(tmp / "data"))
        settings = load_settings(env=env)
        note(f"starting settee on 127.0.0.1:{port} ({settings['server_workers']} workers x "
             f"{settings['server_threads']} threads, {settings['storage_backend']}, "
             f"synchronous={settings['sqlite_synchronous']})")
        settee = Server("settee", settee_argv(), env, port, "/_up", str(tmp / "settee.log"))
        servers.append(settee)
        body, etag = seed_settee(settee.url)

        app_dir = tmp / "reference"
        app_dir.mkdir()
        (app_dir / "reference_app.py").symlink_to(REFERENCE_APP)
        ref_db = str(tmp / "reference.sqlite")
        reference_app().seed(ref_db, DOC_ID, body, etag.strip('"'))
        rport = free_port()
        renv = {**server_env(args, rport, str(tmp / "unused")), "REFERENCE_APP_DB": ref_db}
        note(f"starting the reference app on 127.0.0.1:{rport}")
        reference = Server("reference", reference_argv(app_dir), renv, rport, "/" + DOC_ID,
                           str(tmp / "reference.log"))
        servers.append(reference)
        ref_status, ref_headers, ref_body = request(f"{reference.url}/{DOC_ID}")
        if (ref_status, ref_body, ref_headers["ETag"]) != (200, body, etag):
            raise SystemExit("bench/http_api.py: the reference app does not answer Settee's bytes")

        # The scripts (a function of a tag unique to each run, so new ids stay new),
        # each request checked once by hand before wrk repeats it.
        doc = orjson.dumps(document())
        json_headers = {"Content-Type": "application/json"}
        scripts = {
            "reference_get": (reference, lambda tag: lua_static("GET", f"/{DOC_ID}", {})),
            "get": (settee, lambda tag: lua_static("GET", f"/{DB}/{DOC_ID}", {})),
            "revalidate": (settee, lambda tag: lua_static("GET", f"/{DB}/{DOC_ID}",
                                                          {"If-None-Match": etag})),
            "all_docs": (settee, lambda tag: lua_static("GET", f"/{DB}/_all_docs?limit=100", {})),
            "put": (settee, lambda tag: lua_put_unique(f"/{DB}/put-{tag}-", doc)),
            "post": (settee, lambda tag: lua_static("POST", f"/{DB}", json_headers, doc)),
        }
        checks = {
            "reference_get": lambda: expect(request(f"{reference.url}/{DOC_ID}"), 200,
                                            what="reference GET"),
            "get": lambda: expect(request(f"{settee.url}/{DB}/{DOC_ID}"), 200, what="GET"),
            "revalidate": lambda: expect(request(f"{settee.url}/{DB}/{DOC_ID}",
                                                 headers={"If-None-Match": etag}), 304,
                                         what="GET If-None-Match"),
            "all_docs": lambda: expect(request(f"{settee.url}/{DB}/_all_docs?limit=100"), 200,
                                       what="_all_docs"),
            "put": lambda: expect(request(f"{settee.url}/{DB}/check-{run}", "PUT", doc), 201,
                                  what="PUT"),
            "post": lambda: expect(request(f"{settee.url}/{DB}", "POST", doc), 201, what="POST"),
        }
        pages = 0
        if "bulk_docs" in scenarios:
            template = tmp / "bulk.json"
            pages, _ = bulk_template(args.data, template)
            scripts["bulk_docs"] = (settee, lambda tag: lua_bulk(
                f"/{BULK_DB}/_bulk_docs", str(template), tag))
            checks["bulk_docs"] = lambda: expect(request(
                f"{settee.url}/{BULK_DB}/_bulk_docs", "POST",
                template.read_bytes().replace(MARK.encode(), f"check-{run}-".encode())),
                201, what="_bulk_docs")
        for name in scenarios:
            checks[name]()
        rows = orjson.loads(request(f"{settee.url}/{DB}/_all_docs?limit=100")[2])["rows"]
        if len(rows) != 100:
            raise SystemExit(f"bench/http_api.py: _all_docs?limit=100 gave {len(rows)} rows")

        # Rounds of every scenario in turn (the reference next to Settee's GET), so a
        # change in the machine's load touches all of them alike.
        total = len(scenarios) * args.repeat
        number = 0
        for round_ in range(1, args.repeat + 1):
            for name in scenarios:
                number += 1
                position = f"[{number}/{total}]"
                server, make_lua = scripts[name]
                tag = f"{run}r{round_}"
                script = tmp / f"{name}.lua"
                script.write_text(make_lua(tag))
                connections = args.bulk_connections if name == "bulk_docs" else args.connections
                result = Result(name, TITLES[name], server.name, connections)
                db = BULK_DB if name == "bulk_docs" else DB
                writes = name in ("put", "post", "bulk_docs")
                if name != "bulk_docs" and args.warmup > 0:      # 6 MB requests need none
                    warm = tmp / f"{name}-warmup.lua"
                    warm.write_text(make_lua(tag + "w"))
                    run_wrk(wrk, warm, server, connections=connections,
                            threads=args.wrk_threads, seconds=args.warmup,
                            timeout=args.timeout, label=f"{result.title} (warm-up)",
                            bar_pos=position)
                count0 = doc_count(settee.url, db) if writes else 0
                measure(wrk, script, server, result, threads=args.wrk_threads, seconds=seconds,
                        timeout=args.timeout, bar_pos=position,
                        profile=(py_spy, args.profile) if py_spy and server is settee else None)
                if writes:
                    result.docs_per_request = pages if name == "bulk_docs" else 1
                    result.docs_written = doc_count(settee.url, db) - count0
                runs.setdefault(name, []).append(result)
                note(f"{position} {result.title}: {result.req_s:,.1f} req/s, "
                     f"p99 {result.p99_ms:.1f} ms")
        # Each scenario's figures are those of its run with the median req/s.
        for name, done in runs.items():
            ordered = sorted(done, key=lambda r: r.req_s)
            results[name] = ordered[(len(ordered) - 1) // 2]
            results[name].runs_req_s = [round(r.req_s, 1) for r in done]
    finally:
        for server in reversed(servers):
            server.stop()
        logs = {s.name: s.tail(40) for s in servers}
        shutil.rmtree(tmp, ignore_errors=True)

    for name, r in results.items():
        # Ratios per round (each against the reference GET of the same round), median.
        pairs = list(zip(runs[name], runs.get("reference_get", [])))
        ratios = sorted(x.req_s / y.req_s for x, y in pairs if y.req_s)
        cpu = sorted(y.cpu_ms_per_req / x.cpu_ms_per_req for x, y in pairs
                     if x.cpu_ms_per_req and y.cpu_ms_per_req)
        r.ratio = ratios[(len(ratios) - 1) // 2] if ratios else None
        r.cpu_ratio = cpu[(len(cpu) - 1) // 2] if cpu else None
        notes = []
        if r.docs_written is not None:
            expected = r.requests * r.docs_per_request
            if r.docs_per_request > 1:
                notes.append(f"{r.req_s * r.docs_per_request:,.0f} docs/s")
            if r.docs_written < expected:
                notes.append(f"only {r.docs_written} of {expected} docs stored!")
        if r.errors:
            notes.append("errors: " + ", ".join(f"{k} {v}" for k, v in r.errors.items()))
        if len(r.runs_req_s) > 1:
            notes.append("runs " + " / ".join(f"{v:,.0f}" for v in r.runs_req_s))
        r.note = "; ".join(notes)
    checks_out = check_targets(results, args.connections)
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "wrk": wrk_version,
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "settings": {"workers": settings["server_workers"],
                     "threads": settings["server_threads"], "worker_class": worker_class(),
                     "backend": settings["storage_backend"],
                     "sqlite_synchronous": settings["sqlite_synchronous"],
                     "stack": settings["storage_stack"], "duration_s": seconds,
                     "warmup_s": args.warmup, "repeat": args.repeat,
                     "connections": args.connections,
                     "bulk_connections": args.bulk_connections,
                     "wrk_threads": args.wrk_threads, "get_body_bytes": len(body)},
        "results": [asdict(r) for r in results.values()],
        "targets": checks_out,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, results, checks_out)
    if any(r.errors for r in results.values()):
        for name, log in logs.items():
            if log.strip():
                print(f"\n{name} server log (last lines):\n{log}", file=sys.stderr)
    return 0


def print_report(report: dict, results: dict[str, Result], checks: list[dict]) -> None:
    m, s = report["machine"], report["settings"]
    print(f"Settee over HTTP: gunicorn {s['workers']} workers x {s['threads']} threads "
          f"({s['worker_class']}), {s['backend']} synchronous={s['sqlite_synchronous']}, "
          f"stack {','.join(s['stack'])}")
    print(f"wrk {s['connections']} connections ({s['bulk_connections']} for _bulk_docs), "
          f"{s['wrk_threads']} threads, {s['duration_s']:g} s per scenario after "
          f"{s['warmup_s']:g} s warm-up" + (f", median of {s['repeat']} rounds"
                                             if s["repeat"] > 1 else "") +
          f"; GET body {s['get_body_bytes']} bytes")
    print(f"{m['cpus']} CPUs, {m['platform']}, Python {m['python']}, {m['wrk']}; load "
          f"average {m['loadavg_before'][0]:.2f} before, {m['loadavg_after'][0]:.2f} after")
    print()
    header = ("scenario", "req/s", "p50 ms", "p99 ms", "CPU ms/req", "vs ref",
              "server/wrk/other CPU %", "notes")
    rows = []
    for r in results.values():
        rows.append((r.title, f"{r.req_s:,.1f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}",
                     "-" if r.cpu_ms_per_req is None else f"{r.cpu_ms_per_req:.2f}",
                     "-" if r.ratio is None else f"{r.ratio:.0%}" if r.ratio >= 0.01
                     else f"{r.ratio:.2%}",
                     f"{r.server_cpu_pct:.0f}/{r.wrk_cpu_pct:.0f}/{r.other_cpu_pct:.0f}",
                     r.note))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    right = {1, 2, 3, 4, 5, 6}

    def line(cells):
        return "| " + " | ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    print(line(header))
    print("|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2)
                         for i, w in enumerate(widths)) + "|")
    for row in rows:
        print(line(row))
    print()
    print("CPU %: of one CPU, averaged over the run; 'other' is the rest of the machine "
          f"(not the servers, not wrk) on {m['cpus']} CPUs.")
    ref, get = results.get("reference_get"), results.get("get")
    if ref and get and get.cpu_ratio:
        print(f"GET doc costs {get.cpu_ms_per_req:.2f} ms of server CPU a request, the "
              f"reference {ref.cpu_ms_per_req:.2f} ms: given equal CPU, Settee would serve "
              f"{get.cpu_ratio:.0%} of the reference's requests (a figure the machine's "
              "load disturbs less than req/s).")
    busy = max((r.other_cpu_pct for r in results.values()), default=0)
    if busy > 25:
        print(f"Other processes used up to {busy:.0f}% of a CPU during the runs: the figures "
              "are lower and noisier than on an idle machine" +
              (" (try --repeat 3)." if s["repeat"] == 1 else "."))
    if checks:
        print("Targets:")
        for c in checks:
            value = c["value"]
            shown = "-" if value is None else (f"{value:.1%}" if c["metric"] == "ratio"
                                                else f"{value:,.1f}")
            extra = f" ({c['note']})" if c["note"] else ""
            print(f"  [{'met' if c['met'] else 'MISSED'}] {c['target']}: {shown}{extra}")
    print("(vs ref: req/s over the reference GET's req/s in the same round, median over the "
          "rounds; both servers run the same gunicorn workers, threads and worker class)")


if __name__ == "__main__":
    sys.exit(main())
