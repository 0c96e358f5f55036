"""CouchDB endpoints Settee lacks: 501 not_implemented naming the feature, whatever the
method, never a 405 or a database that does not exist."""
from __future__ import annotations

import pytest
from httpclient import make_app

from settee.server.unimplemented import METHODS, UNIMPLEMENTED


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(tmp_path_factory.mktemp("unimplemented"), auth_admin_user="admin",
                   auth_admin_password="pw")
    app.authorization = ("Basic", ("admin", "pw"))
    app.put("/db", status=201)
    return app


def concrete(rule: str) -> str:
    return (rule.replace("<seg:db>", "db").replace("<seg:node>", "_local")
            .replace("<seg:ddoc>", "d").replace("<seg:index>", "i")
            .replace("<rest:rest>", "some/thing"))


@pytest.mark.parametrize("path", sorted({concrete(rule) for rule, *_ in UNIMPLEMENTED}))
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_every_missing_endpoint_is_501_naming_it(app, path, method):
    r = app.request(path, method=method, expect_errors=True)
    assert r.status_int == 501, (path, method, r.body)
    assert r.json["error"] == "not_implemented"
    assert r.json["reason"].startswith("Settee does not implement ")


@pytest.mark.parametrize("path, words", [
    ("/_scheduler/jobs", "scheduler"),
    ("/_scheduler/docs/_replicator/x", "scheduler"), ("/_cluster_setup", "cluster"),
    ("/_reshard", "resharding"), ("/_reshard/jobs", "resharding"),
    ("/_node/_local/_system", "system"), ("/_node/nonode@nohost/_restart", "restart"),
    ("/_node/_local/_whatever", "node endpoint"),
    ("/db/_design/d/_search/i", "full-text"),
])
def test_the_reason_names_the_feature(app, path, words):
    r = app.post(path, expect_errors=True)
    assert r.status_int == 501 and words in r.json["reason"], r.json


def test_anyone_is_told_what_is_missing(tmp_path):
    app = make_app(tmp_path, auth_admin_user="admin", auth_admin_password="pw")
    r = app.post("/_reshard/jobs", expect_errors=True)
    assert r.status_int == 501


def test_the_501_routes_take_every_method():
    assert {"GET", "HEAD", "POST", "PUT", "DELETE", "COPY"} <= set(METHODS)
