"""The web admin's page weights and render times (bench/README.md).

Builds an in-process Settee (a temporary data directory) holding 5,000 documents, then
fetches each page as a browser asks for it (``Accept: text/html``) and prints its size
in bytes (compressed with gzip too, as a proxy would send it) and the median time to
render it over ``--repeat`` runs; ``_all_docs`` as JSON beside, for scale.

    .venv/bin/python bench/admin_pages.py [--docs 5000] [--repeat 9]
"""
from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from httpclient import make_app  # noqa: E402

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = make_app(Path(tmp))
        app.put("/db")
        docs = [{"_id": f"d{i:05d}", "n": i, "name": f"item {i}", "tags": ["a", "b"]}
                for i in range(args.docs)]
        docs.append({"_id": "_design/d", "views": {"by_n": {
            "map": "function (doc) { if (doc.n !== undefined) emit(doc.n, null); }"}}})
        app.post("/db/_bulk_docs", orjson.dumps({"docs": docs}), content_type="application/json")
        app.get("/db/_design/d/_view/by_n?limit=1")             # the index built first
        pages = [("/_utils", BROWSER), ("/db", BROWSER), ("/db/d00042", BROWSER),
                 (f"/db/_all_docs?limit={args.docs}", BROWSER),
                 (f"/db/_all_docs?limit={args.docs}&include_docs=true", BROWSER),
                 (f"/db/_design/d/_view/by_n?limit={args.docs}", BROWSER),
                 (f"/db/_all_docs?limit={args.docs}", {}),
                 ("/_utils/static/admin.css", {}), ("/_utils/static/admin.js", {})]
        print(f"{'page':58} {'bytes':>9} {'gzip':>8} {'median ms':>10}")
        for url, headers in pages:
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                body = app.get(url, headers=headers).body
                times.append((time.perf_counter() - started) * 1000)
            kind = "html" if headers else "json" if "static" not in url else "static"
            print(f"{url + ' (' + kind + ')':58} {len(body):9d} "
                  f"{len(gzip.compress(body)):8d} {statistics.median(times):10.1f}")


if __name__ == "__main__":
    main()
