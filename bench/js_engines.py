#!/usr/bin/env python3
"""Which embedded JavaScript engine maps documents fastest: V8 (mini-racer) or QuickJS.

    .venv/bin/python bench/js_engines.py [--docs 100000] [--batch 1 100 1000]

Generates ``--docs`` invoices with make_invoices.py (the shared folder beside the
project), then maps them all through the typical accounts-receivable map function

    function (doc) {
      if (doc.type !== "invoice") return;
      doc.lineItems.forEach(function (item) {
        for (var code in item.allocation) {
          var a = item.allocation[code];
          emit(code, a.amount - a.paid);
        }
      });
    }

in each engine, one call per document (``--batch 1``) and one call per batch of
documents. Each call passes JSON text in and gets JSON text back (the engines'
own conversions of nested objects are slower or absent), with the per-call time
limit armed as the view server will arm it. Prints documents per second per
engine and batch size, and Python's own map over the same documents as a baseline.
Every engine must emit the same rows as Python; the script checks it. QuickJS is
measured when its package (``quickjs``, not a dependency of Settee) is installed.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from js_views import JS_MAP  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "bench"

MAP = JS_MAP        # the accounts-receivable map of bench/js_views.py


# One document (JSON text) in, its rows (JSON text) out; a batch: an array of
# documents in, an array of row lists out.
HARNESS = """
var __rows = [];
function emit(k, v) { __rows.push([k, v]); }
var __map = (%s);
function __one(text) { __rows = []; __map(JSON.parse(text)); return JSON.stringify(__rows); }
function __batch(text) {
  var docs = JSON.parse(text), out = new Array(docs.length);
  for (var i = 0; i < docs.length; i++) { __rows = []; __map(docs[i]); out[i] = __rows; }
  return JSON.stringify(out);
}
""" % MAP


def python_map(doc):
    if doc.get("type") != "invoice":
        return []
    return [[code, a["amount"] - a["paid"]]
            for item in doc["lineItems"] for code, a in item["allocation"].items()]


class QuickJS:
    name = "quickjs"

    def __init__(self):
        import quickjs
        self.version = "quickjs " + _version("quickjs")
        self.ctx = quickjs.Context()
        self.ctx.set_time_limit(5)
        self.ctx.set_memory_limit(256 << 20)
        self.ctx.eval(HARNESS)
        self.one, self.batch = self.ctx.get("__one"), self.ctx.get("__batch")

    def call(self, fn, text: str) -> str:
        return (self.one if fn == "one" else self.batch)(text)


class V8:
    name = "mini-racer"

    def __init__(self):
        from py_mini_racer import MiniRacer
        self.ctx = MiniRacer()
        self.version = f"mini-racer {_version('mini-racer')} (V8 {self.ctx.v8_version})"
        self.ctx.set_hard_memory_limit(256 << 20)
        self.ctx.eval(HARNESS)
        self.one, self.batch = self.ctx.eval("__one"), self.ctx.eval("__batch")

    def call(self, fn, text: str) -> str:
        return (self.one if fn == "one" else self.batch)(text, timeout_sec=5)


def _version(dist: str) -> str:
    from importlib.metadata import version
    return version(dist)


def run(engine, docs: list[dict], texts: list[bytes], batch: int, expected: list) -> float:
    started = time.perf_counter()
    rows = []
    if batch == 1:
        for text in texts:
            rows.append(orjson.loads(engine.call("one", text.decode())))
    else:
        for i in range(0, len(docs), batch):
            rows += orjson.loads(engine.call("batch", orjson.dumps(docs[i:i + batch]).decode()))
    seconds = time.perf_counter() - started
    if rows != expected:
        raise SystemExit(f"{engine.name} batch {batch}: rows differ from Python's")
    return len(docs) / seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--data", type=Path, default=SHARED / "make_invoices.py",
                        help="path to make_invoices.py")
    args = parser.parse_args(argv)
    spec = importlib.util.spec_from_file_location("make_invoices", args.data)
    make_invoices = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_invoices)
    docs = list(make_invoices.invoices(args.docs))
    texts = [orjson.dumps(d) for d in docs]
    gc.collect()
    gc.freeze()          # the documents are not the collector's to scan again per run

    started = time.perf_counter()
    expected = [python_map(d) for d in docs]
    python_rate = len(docs) / (time.perf_counter() - started)
    print(f"{args.docs:,} invoices, {sum(map(len, expected)):,} rows; Python "
          f"{sys.version.split()[0]}")
    print(f"{'engine':<34} {'batch':>6} {'docs/s':>10} {'vs Python':>10}")
    print(f"{'Python (the same map, in-process)':<34} {'-':>6} {python_rate:>10,.0f} {1:>10.2f}")
    for make in (QuickJS, V8):
        try:
            engine = make()
        except ImportError as e:          # QuickJS is not one of Settee's dependencies
            print(f"{make.name:<34} skipped: {e.name} is not installed "
                  f"(pip install {e.name} to compare it)")
            continue
        for batch in args.batch:
            rate = run(engine, docs, texts, batch, expected)
            print(f"{engine.version:<34} {batch:>6} {rate:>10,.0f} {rate / python_rate:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
