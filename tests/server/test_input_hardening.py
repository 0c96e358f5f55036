"""What a client sends, and what it is told: bodies, types and sizes, numbers kept
exactly, and error bodies that name no file of the server's."""
from __future__ import annotations

import io

import orjson
import pytest
from httpclient import make_app

from settee.store import Database
from settee.store.exceptions import BackendError, StorageFull


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    app.put("/db", status=201)
    return app


@pytest.mark.parametrize("error, status", [(StorageFull, 507), (BackendError, 500)])
def test_server_errors_name_no_file_of_the_server(app, tmp_path, monkeypatch, error, status):
    data_dir = str(tmp_path / "data")

    def fail(self, *args, **kwargs):
        raise error(f"{data_dir}/db/store.sqlite: database or disk is full")
    monkeypatch.setattr(Database, "__getitem__", fail)
    r = app.get("/db/doc", expect_errors=True)
    assert r.status_int == status
    assert data_dir not in r.text and "sqlite" not in r.text
    assert r.json["reason"]


def put_json(app, path, text: bytes, **kw):
    return app.put(path, text, content_type="application/json", expect_errors=True, **kw)


def put_yaml(app, path, text: str):
    return app.put(path, text.encode(), content_type="application/yaml", expect_errors=True)


@pytest.mark.parametrize("number", [2**53 + 1, 2**63 - 1, 2**64 - 1, -(2**63)])
def test_integers_within_64_bits_are_kept_exactly(app, number):
    assert put_json(app, "/db/n", b'{"n": %d}' % number).status_int == 201
    assert app.get("/db/n").json["n"] == number
    assert f'"n":{number}' in app.get("/db/n").text


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 10**30])
def test_longer_integers_are_refused_not_rounded(app, number):
    r = put_json(app, "/db/n", b'{"n": %d, "s": "12345678901234567890123"}' % number)
    assert r.status_int == 400 and str(number) in r.json["reason"]
    app.get("/db/n", status=404)


def test_long_digit_runs_inside_strings_are_fine(app):
    r = put_json(app, "/db/s", b'{"s": "123456789012345678901234567890"}')
    assert r.status_int == 201


@pytest.mark.parametrize("text, word", [("n: .nan\n", "NaN"), ("n: .inf\n", "infinity"),
                                        ("n: -.inf\n", "infinity"),
                                        ("n: !!set {a, b}\n", "set"),
                                        ("n: !!binary aGVsbG8=\n", "binary"),
                                        ("n: 18446744073709551616\n", "64-bit")])
def test_yaml_values_without_a_json_form_are_refused(app, text, word):
    r = put_yaml(app, "/db/y", text)
    assert r.status_int == 400 and word in r.json["reason"], r.json
    app.get("/db/y", status=404)


def test_yaml_timestamps_and_keys_become_their_json_text(app):
    r = put_yaml(app, "/db/y", "day: 2001-12-14\nwhen: 2001-12-14T21:59:43Z\n2: two\ntrue: yes\n")
    assert r.status_int == 201
    doc = app.get("/db/y").json
    assert doc["day"] == "2001-12-14" and doc["when"].startswith("2001-12-14T21:59:43")
    assert doc["2"] == "two" and doc["true"] is True


# -- what a browser form on another site can send ----------------------------------------
FORM_BODIES = [("text/plain", b'{"a": 1}'),
               ("application/x-www-form-urlencoded", b'{"a": 1}'),
               ("multipart/form-data; boundary=x", b'{"a": 1}'),
               ("", b'{"a": 1}')]
JSON_POSTS = ["/db", "/db/_bulk_docs", "/db/_bulk_get", "/db/_find", "/db/_index",
              "/db/_explain", "/db/_revs_diff", "/db/_all_docs", "/db/_changes"]


@pytest.mark.parametrize("content_type, body", FORM_BODIES)
@pytest.mark.parametrize("path", JSON_POSTS)
def test_json_posts_refuse_what_a_cross_site_form_sends(app, path, content_type, body):
    r = app.post(path, body, headers={"Content-Type": content_type} if content_type else {},
                 expect_errors=True)
    assert r.status_int == 415, (path, content_type, r.text)
    assert r.json == {"error": "bad_content_type",
                      "reason": "Content-Type must be application/json"}
    assert app.get("/db").json["doc_count"] == 0


@pytest.mark.parametrize("content_type", ["application/json", "application/yaml"])
def test_json_posts_take_json_and_yaml(app, content_type):
    body = b'{"_id": "p", "a": 1}' if content_type == "application/json" else b"_id: p\na: 1\n"
    assert app.post("/db", body, content_type=content_type).status_int == 201


@pytest.mark.parametrize("content_type, body", FORM_BODIES[:3])
def test_a_design_document_is_not_written_from_a_form(app, content_type, body):
    ddoc = b'{"views": {}}'
    r = app.put("/db/_design/x", ddoc, headers={"Content-Type": content_type},
                expect_errors=True)
    assert r.status_int == 415
    app.get("/db/_design/x", status=404)


def test_a_document_put_takes_what_curl_sends(app):
    r = app.put("/db/plain", b'{"a": 1}',
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_int == 201


# -- sizes ---------------------------------------------------------------------------
class Endless(io.RawIOBase):
    """A request body that never ends, counting what the server reads of it."""

    def __init__(self):
        self.read_bytes = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        buffer[:] = b"a" * len(buffer)
        self.read_bytes += len(buffer)
        return len(buffer)


def chunked_post(app, path, content_type, limit):
    body = Endless()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "CONTENT_TYPE": content_type,
               "wsgi.input": io.BufferedReader(body, 8192), "wsgi.input_terminated": True,
               "HTTP_TRANSFER_ENCODING": "chunked", "SERVER_NAME": "x", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http", "HTTP_HOST": "x", "SERVER_PROTOCOL": "HTTP/1.1"}
    answer = []
    out = b"".join(app.app(environ, lambda status, headers, exc=None: answer.append(status)))
    assert body.read_bytes <= limit + 64 * 1024, body.read_bytes
    return answer[0], orjson.loads(out), environ


@pytest.mark.parametrize("path, content_type, limit", [
    ("/db/_bulk_docs", "application/json", 1 << 20),
    ("/_session", "application/json", 64 * 1024),
    ("/_session", "application/x-www-form-urlencoded", 64 * 1024)])
def test_a_body_without_a_length_is_refused_as_it_passes_the_limit(tmp_path, path,
                                                                    content_type, limit):
    app = make_app(tmp_path, server_max_body=1 << 20)
    app.put("/db")
    status, body, environ = chunked_post(app, path, content_type, limit)
    assert status.startswith("413") and body["error"] == "too_large"
    assert environ["settee.close"] is True          # and the rest is not read


def test_a_body_with_a_length_over_the_limit_is_refused_unread(tmp_path):
    app = make_app(tmp_path, server_max_body=1 << 20)
    r = app.post("/_session", b"x" * 100, content_type="application/json",
                 headers={"Content-Length": str(100 << 20)}, expect_errors=True)
    assert r.status_int == 413


@pytest.mark.parametrize("text", ['a: "\\ud800"\n', '"\\ud800": 1\n'])
def test_yaml_half_characters_are_refused(app, text):
    assert put_yaml(app, "/db/y", text).status_int == 400


def test_yaml_keys_that_are_one_json_key_are_refused(app):
    r = put_yaml(app, "/db/y", '1: one\n"1": uno\n')
    assert r.status_int == 400 and "twice" in r.json["reason"]
