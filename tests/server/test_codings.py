"""Compressed request bodies (``Content-Encoding``), and the status lines' reason phrases."""
from __future__ import annotations

import gzip
import tracemalloc
import zlib

import orjson
import pytest
from httpclient import make_app

from settee.server.codings import inflate
from settee.server.errors import HTTPError


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, server_max_body=64 * 1024, server_max_document=32 * 1024)
    app.put("/db", status=201)
    return app


def send(app, method, path, data: bytes, coding: str, content_type="application/json",
         **kw):
    return app.request(path, method=method, body=data, content_type=content_type,
                       headers={"Content-Encoding": coding}, expect_errors=True, **kw)


def test_gzip_and_deflate_bodies_are_inflated(app):
    body = orjson.dumps({"name": "gzipped", "n": 1})
    r = send(app, "PUT", "/db/a", gzip.compress(body), "gzip")
    assert r.status_int == 201, r.body
    assert app.get("/db/a").json["name"] == "gzipped"
    r = send(app, "POST", "/db", zlib.compress(body), "deflate")
    assert r.status_int == 201, r.body
    raw = zlib.compressobj(wbits=-15)
    r = send(app, "POST", "/db", raw.compress(body) + raw.flush(), "deflate")
    assert r.status_int == 201, r.body
    docs = orjson.dumps({"docs": [{"_id": "b"}, {"_id": "c"}]})
    r = send(app, "POST", "/db/_bulk_docs", gzip.compress(docs), "gzip")
    assert r.status_int == 201 and [row["id"] for row in r.json] == ["b", "c"]
    r = send(app, "POST", "/db/_all_docs", gzip.compress(b'{"keys": ["a"]}'), "x-gzip")
    assert [row["id"] for row in r.json["rows"]] == ["a"]


def test_an_attachment_upload_may_be_gzipped(app):
    rev = app.put("/db/d", b"{}", content_type="application/json").json["rev"]
    data = b"hello attachment " * 100
    r = send(app, "PUT", f"/db/d/note.txt?rev={rev}", gzip.compress(data), "gzip",
             content_type="text/plain")
    assert r.status_int == 201, r.body
    got = app.get("/db/d/note.txt")
    assert got.body == data and got.content_type == "text/plain"


def test_the_size_limits_apply_to_the_inflated_body(app):
    doc = orjson.dumps({"pad": "x" * 40_000})           # 40 KB: small once gzipped
    r = send(app, "PUT", "/db/big", gzip.compress(doc), "gzip")
    assert r.status_int == 413 and r.json["error"] == "document_too_large", r.body
    bulk = orjson.dumps({"docs": [{"pad": "x" * 30_000} for _ in range(3)]})
    r = send(app, "POST", "/db/_bulk_docs", gzip.compress(bulk), "gzip")
    assert r.status_int == 413 and r.json["error"] == "too_large"
    assert "decompressed" in r.json["reason"]


def test_a_zip_bomb_is_refused_without_inflating_it_all():
    limit = 1 << 20
    squeeze = zlib.compressobj(9, wbits=31)
    chunk = bytes(1 << 20)
    bomb = b"".join(squeeze.compress(chunk) for _ in range(256)) + squeeze.flush()  # 256 MB
    assert len(bomb) < 300_000
    tracemalloc.start()
    try:
        with pytest.raises(HTTPError) as caught:
            inflate(bomb, "gzip", limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.status == 413
    assert peak < 8 * limit, peak           # a few limits' worth, never the 256 MB


def test_a_zip_bomb_over_http_is_a_413(app):
    bomb = gzip.compress(b"[" + b"1," * 5_000_000 + b"1]", 9)
    r = send(app, "POST", "/db/_bulk_docs", bomb, "gzip")
    assert r.status_int == 413 and r.json["error"] == "too_large"


def test_an_unknown_coding_is_415_and_a_corrupt_body_400(app):
    r = send(app, "POST", "/db", b"anything", "br")
    assert r.status_int == 415 and r.json["error"] == "bad_content_type"
    assert "br" in r.json["reason"]
    r = send(app, "POST", "/db", b"not gzip at all", "gzip")
    assert r.status_int == 400 and r.json["error"] == "bad_request"
    r = send(app, "POST", "/db", gzip.compress(b'{"a": 1}')[:-6], "gzip")
    assert r.status_int == 400 and "truncated" in r.json["reason"]
    r = send(app, "POST", "/db", gzip.compress(b'{"a": 1}'), "identity, gzip")
    assert r.status_int == 201


def test_status_lines_carry_rfc_9110_reason_phrases(app):
    seen = {}

    def remember(status, headers, exc_info=None):
        seen["status"] = status

    def status_of(method, path, **environ):
        from werkzeug.test import EnvironBuilder
        env = EnvironBuilder(path=path, method=method, **environ).get_environ()
        env["REQUEST_URI"] = path
        b"".join(app.app(env, remember))
        return seen["status"]

    assert status_of("GET", "/db/missing") == "404 Not Found"          # a Reply
    assert status_of("GET", "/db/_all_docs") == "200 OK"              # a streamed Response
    assert status_of("POST", "/db", data=b"{", content_type="application/json") == \
        "400 Bad Request"
    assert status_of("PUT", "/db", data=b"") == "412 Precondition Failed"
    big = b'{"a": "' + b"x" * 70_000 + b'"}'
    assert status_of("POST", "/db", data=big, content_type="application/json") == \
        "413 Content Too Large"
