#!/usr/bin/env python3
"""A JavaScript view beside the same view in Python, over the design talk's invoices.

    .venv/bin/python bench/js_views.py [--docs 100000] [--repeat 20] [--json]

Loads ``--docs`` invoices (make_invoices.py, in the shared folder beside the
project) into a fresh SQLite database, saves two design documents with the
accounts-receivable view, one in JavaScript (as a CouchDB user writes it)::

    function (doc) {
      if (doc.type !== "invoice") return;
      doc.lineItems.forEach(function (item) {
        for (var code in item.allocation) {
          var a = item.allocation[code];
          emit(code, a.amount - a.paid);
        }
      });
    }

and one in Python (``"language": "python"``), both reduced with ``_sum``. Then, for
each: the index built from scratch (a subprocess each, as a server's first query
builds it: the process pool when it pays; peak RSS of the builder and its largest
worker), and queries through the WSGI application in-process (medians of
``--repeat``): group=true over the whole view, a key (reduce=false, limit=10), a key
range, and the first group=true after a one-document update (the incremental path).
Prints both, and JavaScript's time over Python's (goal: within 2x). The two views
must answer the same groups (to the cent); the script checks it.
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

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import views as invoices_bench  # noqa: E402  bench/views.py: loading the invoices

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "bench"

JS_MAP = """function (doc) {
  if (doc.type !== "invoice") return;
  doc.lineItems.forEach(function (item) {
    for (var code in item.allocation) {
      var a = item.allocation[code];
      emit(code, a.amount - a.paid);
    }
  });
}"""
PY_MAP = """def fun(doc):
    if doc.get("type") != "invoice":
        return
    for item in doc["lineItems"]:
        for code, a in item["allocation"].items():
            yield code, a["amount"] - a["paid"]
"""
DESIGNS = {
    "js": {"views": {"ar": {"map": JS_MAP, "reduce": "_sum"}}},
    "py": {"language": "python", "views": {"ar": {"map": PY_MAP, "reduce": "_sum"}}},
}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def build_child(data_dir: str, ddoc: str) -> None:
    """Subprocess mode: build view ``ddoc/ar`` from scratch; print seconds and peak RSS."""
    from settee.store import Catalog
    from settee.views.definitions import design_view
    from settee.views.engine import View, drop_view
    db = Catalog(invoices_bench.settings(data_dir)).get("invoices")
    view = View(db, design_view(db, ddoc, "ar"))
    drop_view(db.versions.inner, view.vid)      # from scratch (untimed)
    started = time.perf_counter()
    view.update()
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "docs": db.versions.info()["docs"],
                      "rows": view.state()["rows"],
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "worker_rss_mb": resource.getrusage(
                          resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def build(data_dir: str, ddoc: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--build-child", data_dir, ddoc],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["docs_per_s"] = result["docs"] / result["seconds"]
    return result


def queries(data_dir: str, ddoc: str, repeat: int) -> tuple[dict, dict]:
    from werkzeug.test import Client

    from settee.server.app import create_app
    app = create_app(invoices_bench.settings(data_dir))
    client = Client(app)
    url = f"/invoices/_design/{ddoc}/_view/ar"
    timed = invoices_bench.timed
    client.get(url + "?limit=1")                       # the index is up to date
    out: dict = {}
    out["group_ms"], _ = timed(client, url + "?group=true", repeat)
    out["key_ms"], _ = timed(client, url + '?key="code7"&reduce=false&limit=10', repeat)
    out["range_ms"], _ = timed(client, url + '?startkey="code1"&endkey="code2"&reduce=false'
                               '&limit=100', repeat)
    db = app.catalog.get("invoices")
    after = []
    for i in range(repeat):
        doc = db["invoice-00000042"]
        doc["lineItems"][0]["allocation"] = {
            code: {"amount": a["amount"], "paid": round(a["amount"] * 0.5, 2) if i % 2
                   else a["amount"]}
            for code, a in doc["lineItems"][0]["allocation"].items()}
        db["invoice-00000042"] = doc
        started = time.perf_counter()
        response = client.get(url + "?group=true")
        body = response.get_data()
        after.append(time.perf_counter() - started)
    out["after_update_ms"] = statistics.median(after) * 1000
    # after the same edits of the same document: both views must answer the same
    groups = {row["key"]: round(row["value"], 2) for row in orjson.loads(body)["rows"]}
    return out, groups


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--data", type=Path, default=SHARED / "make_invoices.py",
                        help="path to make_invoices.py")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--build-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build_child:
        build_child(*args.build_child)
        return 0
    results: dict = {"docs": args.docs}
    with tempfile.TemporaryDirectory(prefix="settee-js-views-") as tmp:
        data_dir = os.path.join(tmp, "data")
        results["load_s"] = invoices_bench.load(data_dir, args.docs, args.data)
        from settee.store import Catalog
        db = Catalog(invoices_bench.settings(data_dir)).get("invoices")
        for name, design in DESIGNS.items():
            db[f"_design/{name}"] = design
        groups = {}
        for name in ("py", "js"):          # Python first: the machine warms up on both alike
            log(f"{args.docs}: building the {name} view")
            results[name] = {"build": build(data_dir, name)}
            log(f"{args.docs}: querying the {name} view")
            timings, groups[name] = queries(data_dir, name, args.repeat)
            results[name].update(timings)
    if groups["py"] != groups["js"]:
        raise SystemExit("the JavaScript and Python views answer different groups")
    py, js = results["py"], results["js"]
    results["ratios"] = {"build": js["build"]["seconds"] / py["build"]["seconds"],
                         **{k: js[k] / py[k] for k in ("group_ms", "key_ms", "range_ms",
                                                        "after_update_ms")}}
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"{args.docs:,} invoices, {py['build']['rows']:,} rows per view; loaded in "
          f"{results['load_s']:.1f} s")
    print(f"{'':<28} {'Python':>10} {'JavaScript':>11} {'JS / Py':>8}")

    def line(label, p, j, fmt="{:>10.2f}"):
        print(f"{label:<28} {fmt.format(p)} {fmt.format(j):>11} {j / p:>8.2f}")
    line("build s", py["build"]["seconds"], js["build"]["seconds"])
    print(f"{'build docs/s':<28} {py['build']['docs_per_s']:>10,.0f} "
          f"{js['build']['docs_per_s']:>11,.0f}")
    rss = lambda r: max(r["build"]["rss_mb"], r["build"]["worker_rss_mb"])  # noqa: E731
    line("build peak RSS MB", rss(py), rss(js), "{:>10.0f}")
    line("group=true ms", py["group_ms"], js["group_ms"])
    line("key query ms", py["key_ms"], js["key_ms"])
    line("key range ms", py["range_ms"], js["range_ms"])
    line("group after an update ms", py["after_update_ms"], js["after_update_ms"])
    ratio = results["ratios"]["build"]
    print(f"goal: the JavaScript build within 2x of Python's: {ratio:.2f}x, "
          f"{'met' if ratio <= 2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
