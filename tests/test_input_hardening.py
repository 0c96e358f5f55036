"""What a client sends, and what it is told: bodies, types and sizes, numbers kept
exactly, and error bodies that name no file of the server's."""
from __future__ import annotations

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
