#!/usr/bin/env python
"""The reference for ``bench/http_api.py``: the least a Python server on Settee's stack can do.

A bare werkzeug WSGI application that reads one JSON value by key from SQLite and
returns it with its ``ETag`` (``304`` when ``If-None-Match`` names it). It runs under
the same gunicorn configuration as Settee (``config/gunicorn.conf.py``: the same
workers, threads and worker class), so its requests per second are the ceiling any
Python document server on this stack (gunicorn + werkzeug + sqlite3) can reach, and
``bench/http_api.py`` reports Settee's figures as a fraction of it.

What it does per request is what Settee cannot avoid doing for ``GET /db/doc``: parse
the request (werkzeug ``Request``), route on the path, one ``SELECT`` on a primary
key through a per-thread connection (WAL, as Settee's SQLite backend), build a
werkzeug ``Response``. What it leaves out is Settee's own work: URL map matching,
revision records, decompression, JSON decoding and re-encoding, content negotiation.

    python bench/reference_app.py --seed FILE.sqlite KEY VALUE_FILE ETAG   # make the store
    REFERENCE_APP_DB=FILE.sqlite gunicorn -c config/gunicorn.conf.py \\
        --pythonpath DIR reference_app:application                      # serve it

where DIR holds this file (or a link to it).

``GET /<key>`` answers the stored value; any other key is a JSON 404.
"""
from __future__ import annotations

import os
import sqlite3
import sys
import threading

from werkzeug.wrappers import Request, Response

#: The SQLite file to serve (the environment, since gunicorn imports this module).
DB_PATH_VARIABLE = "REFERENCE_APP_DB"
NOT_FOUND = b'{"error":"not_found","reason":"missing"}'

_local = threading.local()


def connection() -> sqlite3.Connection:
    """This thread's connection (re-opened after a fork, like Settee's backend)."""
    con = getattr(_local, "con", None)
    if con is None or _local.pid != os.getpid():
        con = sqlite3.connect(os.environ[DB_PATH_VARIABLE], isolation_level=None,
                              check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        _local.con, _local.pid = con, os.getpid()
    return con


def application(environ, start_response):
    request = Request(environ)
    key = request.path[1:]
    row = connection().execute("SELECT value, etag FROM kv WHERE key = ?", (key,)).fetchone()
    if row is None:
        response = Response(NOT_FOUND, status=404, content_type="application/json")
    else:
        value, tag = row
        headers = {"ETag": f'"{tag}"', "Cache-Control": "must-revalidate"}
        if tag in request.if_none_match:
            response = Response(status=304, headers=headers)
        else:
            response = Response(value, headers=headers, content_type="application/json")
    return response(environ, start_response)


def seed(path: str, key: str, value: bytes, etag: str) -> None:
    """Create (or replace) the store at ``path`` holding ``key`` -> ``value``."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE IF NOT EXISTS kv "
                    "(key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL, etag TEXT NOT NULL) "
                    "WITHOUT ROWID")
        con.execute("INSERT OR REPLACE INTO kv (key, value, etag) VALUES (?, ?, ?)",
                    (key, value, etag))
    finally:
        con.close()


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] != "--seed":
        sys.exit(__doc__)
    _, _, db_path, seed_key, value_file, seed_etag = sys.argv
    with open(value_file, "rb") as f:
        seed(db_path, seed_key, f.read(), seed_etag)
