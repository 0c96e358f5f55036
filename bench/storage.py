#!/usr/bin/env python
"""The design talk's storage benchmark, on this machine, bare backends and full stack.

The talk "copies 849 manpages from the storage backend to memory and back" and
reports, per backend, the seconds to write them all, to list the keys and to read
them all back. This script does the same with the same 849 pages
(``manpages-849.jsonl.gz``, read where it lies: ``../shared/bench/`` beside the
project, or ``--data``), for every registered backend whose module imports, twice:

RAW
    The bare backend, as the talk measured it: each page is its JSON encoded with
    orjson; ``backend[id] = bytes`` once per page, each its own committed (and, for
    SQLite at the default ``synchronous=FULL``, fsynced) write; ``list(backend)``;
    ``backend[id]`` for every id.
STACK
    The same through a :class:`~settee.store.database.Database` opened from
    ``Catalog(load_settings(storage_data_dir=tmp, storage_backend=name))``, i.e.
    the default ``storage_stack`` (validation, timestamps, versioning, serialization,
    compression) over that backend: ``db[id] = page``; ``list(db)``; ``db[id]``.

Every measurement runs in a fresh temporary directory, ``--repeat`` times; the
table gives the medians, the stack/raw ratios and the talk's 2008 figures. Progress
goes to stderr, and only when it is a terminal. ``--json`` prints the results as
JSON instead of the table.

Run it from the project root: ``.venv/bin/python bench/storage.py`` (or
``make bench``).
"""
from __future__ import annotations

import argparse
import gc
import gzip
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    import orjson

    from settee.config import load_settings
    from settee.store import stack
    from settee.store.catalog import Catalog
    from settee.store.layers import compression
    from settee.store.stack import BACKENDS, storage_dir
except ImportError as e:     # pragma: no cover - the project is not installed
    sys.exit(f"bench/storage.py: {e}; install the project first (make install)")

#: The data file, beside the project: <project>/../shared/bench/ (never copied in).
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "bench" / "manpages-849.jsonl.gz"

#: The design talk's table (2008 hardware): backend -> (write s, list keys s, read s).
TALK_2008 = {
    "bsddb": (11.40, 0.80, 2.65),
    "sqlite": (33.76, 0.23, 4.32),
    "dbm": (14.27, 0.74, 2.62),
    "file": (2.15, 0.03, 9.90),
}
#: Which of the talk's backends each of ours is compared with. Python 3 ships no
#: bsddb (Berkeley DB); LMDB, written to replace it, stands beside its figures.
TALK_NAME = {"sqlite": "sqlite", "dbm": "dbm", "file": "file", "lmdb": "bsddb"}

PHASES = ("write", "list", "read")
DB_NAME = "manpages"
TARGET = ("sqlite", 3.0)     # full default stack on SQLite within 3x of raw SQLite


# -- data --------------------------------------------------------------------------
def load_pages(path: Path) -> list[dict]:
    with gzip.open(path, "rb") as f:
        pages = [orjson.loads(line) for line in f if line.strip()]
    ids = [p["_id"] for p in pages]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{path}: duplicate _id values")
    return pages


# -- one measurement -----------------------------------------------------------------
class Clock:
    """Times phases; collects garbage before each so one phase's litter is not billed
    to the next."""

    def __init__(self):
        self.times: dict[str, float] = {}

    def time(self, phase: str, fn):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        self.times[phase] = time.perf_counter() - start
        return result


def settings_for(tmp: str, backend: str):
    return load_settings(storage_data_dir=tmp, storage_backend=backend)


def open_raw(name: str, tmp: str):
    """The bare backend, opened the way the catalog opens it (same settings, same path)."""
    settings = settings_for(tmp, name)
    if name != "memory":
        os.makedirs(storage_dir(settings, DB_NAME), exist_ok=True)
    return BACKENDS[name](settings, DB_NAME)


def run_raw(name: str, pages: list[dict], tmp: str) -> dict[str, float]:
    items = [(p["_id"], orjson.dumps(p)) for p in pages]
    backend = open_raw(name, tmp)
    clock = Clock()
    try:
        def write():
            for key, value in items:
                backend[key] = value          # one committed write per page

        clock.time("write", write)
        keys = clock.time("list", lambda: list(backend))
        values = clock.time("read", lambda: [backend[key] for key in keys])
    finally:
        backend.close()
    expected = dict(items)
    if sorted(keys) != sorted(expected) or any(expected[k] != v for k, v in zip(keys, values)):
        raise RuntimeError(f"{name} raw: what was read back differs from what was written")
    return clock.times


def run_stack(name: str, pages: list[dict], tmp: str) -> dict[str, float]:
    catalog = Catalog(settings_for(tmp, name))
    clock = Clock()
    try:
        db = catalog.create(DB_NAME)

        def write():
            for page in pages:
                db[page["_id"]] = page        # a new document: one transaction each

        clock.time("write", write)
        keys = clock.time("list", lambda: list(db))
        docs = clock.time("read", lambda: [db[key] for key in keys])
    finally:
        catalog.close()
    by_id = {p["_id"]: p for p in pages}
    if sorted(keys) != sorted(by_id):
        raise RuntimeError(f"{name} stack: the ids listed differ from the ids written")
    for key, doc in zip(keys, docs):
        page = by_id[key]
        if doc["_id"] != key or any(doc.get(f) != v for f, v in page.items()):
            raise RuntimeError(f"{name} stack: document {key!r} read back differs")
    return clock.times


# -- backends ----------------------------------------------------------------------
def available_backends(requested: list[str] | None, tmp_root: str | None
                       ) -> tuple[list[str], dict[str, str]]:
    """The backends to measure, and why the others are left out."""
    names = requested or list(BACKENDS)
    elsewhere = getattr(stack, "LOCATIONS", {})     # backends with their own catalog driver
    usable, skipped = [], {}
    for name in names:
        if name not in BACKENDS:
            skipped[name] = f"unknown backend (known: {', '.join(BACKENDS)})"
            continue
        if name in elsewhere and name != "memory":
            skipped[name] = ("keeps its databases outside storage_data_dir, so a fresh "
                             "temporary directory would not isolate the runs")
            continue
        tmp = tempfile.mkdtemp(prefix=f"settee-bench-probe-{name}-", dir=tmp_root)
        try:
            open_raw(name, tmp).close()
        except ImportError as e:
            skipped[name] = f"module does not import: {e}"
            continue
        except Exception as e:
            skipped[name] = f"cannot be opened: {type(e).__name__}: {e}"
            continue
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        usable.append(name)
    return usable, skipped


# -- the run -----------------------------------------------------------------------
def progress_bar(total: int):
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, file=sys.stderr, unit="run", leave=False)


def benchmark(backends: list[str], pages: list[dict], repeat: int, tmp_root: str | None
              ) -> tuple[dict, dict[str, str]]:
    runs = {name: {"raw": {p: [] for p in PHASES}, "stack": {p: [] for p in PHASES}}
            for name in backends}
    failed: dict[str, str] = {}
    bar = progress_bar(repeat * len(backends) * 2)
    try:
        for round_no in range(repeat):
            for name in backends:
                for mode, run in (("raw", run_raw), ("stack", run_stack)):
                    if bar is not None:
                        bar.set_description(f"{name} {mode} {round_no + 1}/{repeat}")
                    if name not in failed:
                        tmp = tempfile.mkdtemp(prefix=f"settee-bench-{name}-{mode}-",
                                               dir=tmp_root)
                        try:
                            times = run(name, pages, tmp)
                        except Exception as e:       # a backend being written may break
                            failed[name] = f"{mode}: {type(e).__name__}: {e}"
                        else:
                            for phase in PHASES:
                                runs[name][mode][phase].append(times[phase])
                        finally:
                            shutil.rmtree(tmp, ignore_errors=True)
                    if bar is not None:
                        bar.update()
    finally:
        if bar is not None:
            bar.close()
    return runs, failed


def summarize(runs: dict, failed: dict[str, str], skipped: dict[str, str], pages, args,
              settings) -> dict:
    results = {}
    for name, modes in runs.items():
        if name in failed:
            continue
        entry = {}
        for mode in ("raw", "stack"):
            entry[mode] = {p: statistics.median(modes[mode][p]) for p in PHASES}
            entry[mode]["runs"] = modes[mode]
        entry["ratio"] = {p: entry["stack"][p] / entry["raw"][p] if entry["raw"][p] else None
                          for p in PHASES}
        talk = TALK_NAME.get(name)
        entry["talk_2008"] = ({"backend": talk, **dict(zip(PHASES, TALK_2008[talk]))}
                              if talk else None)
        results[name] = entry
    target_name, limit = TARGET
    target = {"backend": target_name, "limit": limit, "text":
              "full default stack on SQLite within 3x of raw SQLite for writes and reads"}
    if target_name in results:
        ratio = results[target_name]["ratio"]
        target.update(write=ratio["write"], read=ratio["read"],
                      met=ratio["write"] <= limit and ratio["read"] <= limit)
    else:
        target.update(write=None, read=None, met=None)
    return {
        "data": {"file": Path(args.data).name, "pages": len(pages),
                 "json_bytes": sum(len(orjson.dumps(p)) for p in pages)},
        "repeat": args.repeat,
        "statistic": "median",
        "storage_stack": list(settings["storage_stack"]),
        "sqlite_synchronous": settings["sqlite_synchronous"],
        "compression_algorithm": settings["compression_algorithm"],
        "compression_level": settings["compression_level"],
        "zlib": getattr(compression, "ZLIB", "zlib"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backends": results,
        "failed": failed,
        "skipped": skipped,
        "target": target,
    }


# -- output ------------------------------------------------------------------------
def fmt(seconds: float | None, digits: int = 3) -> str:
    return "-" if seconds is None else f"{seconds:.{digits}f}"


def ratio_text(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def table(summary: dict) -> str:
    head = ["backend", "raw write s", "raw list s", "raw read s",
            "stack write s", "stack list s", "stack read s",
            "write ÷", "list ÷", "read ÷",
            "2008 backend", "2008 write s", "2008 list s", "2008 read s"]
    rows = []
    for name, entry in summary["backends"].items():
        talk = entry["talk_2008"]
        rows.append([name,
                     *(fmt(entry["raw"][p]) for p in PHASES),
                     *(fmt(entry["stack"][p]) for p in PHASES),
                     *(ratio_text(entry["ratio"][p]) for p in PHASES),
                     talk["backend"] if talk else "-",
                     *((fmt(talk[p], 2) for p in PHASES) if talk else ("-",) * 3)])
    shown = {r[0] for r in rows}
    for talk_name, figures in TALK_2008.items():      # the talk's rows we could not run
        if not any(TALK_NAME.get(n) == talk_name for n in shown):
            rows.append([f"({talk_name})", *("-",) * 9, talk_name,
                         *(fmt(v, 2) for v in figures)])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(head)]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) if i == 0 or i == 10 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def report(summary: dict) -> str:
    data = summary["data"]
    lines = [
        f"Settee storage benchmark: {data['pages']} man pages ({data['file']}, "
        f"{data['json_bytes'] / 1e6:.1f} MB as JSON), median of {summary['repeat']} runs, "
        f"seconds.",
        f"raw = bare backend, orjson bytes, one committed write per page; "
        f"stack = Database over [{', '.join(summary['storage_stack'])}]; "
        f"sqlite synchronous={summary['sqlite_synchronous']}; "
        f"compression: {summary['compression_algorithm']} at level {summary['compression_level']}"
        f" (zlib through {summary['zlib']}).",
        "÷ = stack / raw. 2008 = the design talk's figures (2008 hardware; lmdb stands "
        "beside bsddb, which Python 3 no longer ships). memory is not durable.",
        f"Python {summary['python']} on {summary['platform']}; 1-minute load average "
        f"{summary['load_average']['before']:.2f} before, "
        f"{summary['load_average']['after']:.2f} after, {summary['load_average']['cpus']} CPUs "
        f"(other work on the machine moves every figure).",
        "",
        table(summary),
        "",
    ]
    target = summary["target"]
    if target["met"] is None:
        lines.append(f"Target ({target['text']}): not measured, "
                     f"{target['backend']} was not run.")
    else:
        lines.append(f"Target ({target['text']}): writes {ratio_text(target['write'])}, "
                     f"reads {ratio_text(target['read'])}: "
                     f"{'met' if target['met'] else 'NOT met'}.")
    for name, reason in summary["skipped"].items():
        lines.append(f"skipped {name}: {reason}")
    for name, reason in summary["failed"].items():
        lines.append(f"FAILED {name}: {reason}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The design talk's storage benchmark: 849 man pages written, listed "
                    "and read back, per backend, bare and through the full default stack.")
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="manpages-849.jsonl.gz (default: ../shared/bench/ beside "
                             "the project)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per measurement; the median is reported (default 3)")
    parser.add_argument("--backend", action="append", dest="backends", metavar="NAME",
                        help="measure only this backend (repeatable; default: every "
                             "registered backend whose module imports)")
    parser.add_argument("--tmpdir", default=None,
                        help="where the temporary databases go (default: the system's "
                             "temporary directory; put it on the disk you mean to measure)")
    parser.add_argument("--json", action="store_true",
                        help="print the results as JSON instead of the table")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if not Path(args.data).is_file():
        parser.error(f"no data file at {args.data} (pass --data)")

    pages = load_pages(Path(args.data))
    backends, skipped = available_backends(args.backends, args.tmpdir)
    if not backends:
        print("no backend to measure: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()),
              file=sys.stderr)
        return 1
    load_before = os.getloadavg()[0]
    runs, failed = benchmark(backends, pages, args.repeat, args.tmpdir)
    load = (load_before, os.getloadavg()[0])
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as tmp:
        settings = settings_for(tmp, "sqlite")
    summary = summarize(runs, failed, skipped, pages, args, settings)
    summary["load_average"] = {"before": load[0], "after": load[1], "cpus": os.cpu_count()}
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(report(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
