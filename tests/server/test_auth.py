"""Authentication and authorization: admins, users, _security, sessions, CORS."""
from __future__ import annotations

import base64

import orjson
import pytest
from httpclient import make_app


def basic(name, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


ADMIN = basic("admin", "s3cret")


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path, auth_admin_user="admin", auth_admin_password="s3cret",
                    auth_pbkdf2_iterations=1000, cors_origins=["https://app.example"],
                    cors_credentials=True)


def put(app, path, body, **kw):
    return app.put(path, orjson.dumps(body), content_type="application/json", **kw)


def signup(app, name, password="pw", roles=()):
    return put(app, f"/_users/org.couchdb.user:{name}",
               {"name": name, "password": password, "type": "user", "roles": list(roles)},
               headers=ADMIN if roles else {})


def test_anonymous_requests_need_credentials_where_it_matters(app):
    assert app.get("/").status_int == 200 and app.get("/_up").status_int == 200
    r = app.put("/db", expect_errors=True)
    assert r.status_int == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    assert app.get("/_all_dbs", expect_errors=True).status_int == 401
    assert app.put("/db", headers=ADMIN).status_int == 201
    assert app.get("/db", expect_errors=True).status_int == 401
    assert app.get("/db/_all_docs", expect_errors=True).status_int == 401


def test_bad_credentials_are_401_even_on_public_endpoints(app):
    r = app.get("/", headers=basic("admin", "wrong"), expect_errors=True)
    assert r.status_int == 401 and r.json["error"] == "unauthorized"
    r = app.get("/", headers={"Authorization": "Basic !!!"}, expect_errors=True)
    assert r.status_int == 401


def test_users_sign_up_and_their_password_is_never_stored_or_returned(app, tmp_path):
    assert signup(app, "bob").status_int == 201
    doc = app.get("/_users/org.couchdb.user:bob", headers=basic("bob", "pw")).json
    assert "password" not in doc and "derived_key" not in doc and doc["roles"] == []
    stored = app.get("/_users/org.couchdb.user:bob", headers=ADMIN).json
    assert stored["password_scheme"] == "pbkdf2" and "password" not in stored
    assert b"pw\"" not in (tmp_path / "data").joinpath("_users", "store.sqlite").read_bytes()
    other = app.get("/_users/org.couchdb.user:bob", headers=basic("eve", "x"), expect_errors=True)
    assert other.status_int == 401


def test_users_cannot_give_themselves_roles(app):
    signup(app, "bob")
    doc = app.get("/_users/org.couchdb.user:bob", headers=basic("bob", "pw")).json
    doc["roles"] = ["boss"]
    r = put(app, "/_users/org.couchdb.user:bob", doc, headers=basic("bob", "pw"),
            expect_errors=True)
    assert r.status_int == 403
    doc["roles"] = []
    doc["email"] = "bob@example.com"
    put(app, "/_users/org.couchdb.user:bob", doc, headers=basic("bob", "pw"), status=201)
    assert app.get("/", headers=basic("bob", "pw")).status_int == 200   # password kept


def test_members_read_and_write_others_are_forbidden(app):
    app.put("/db", headers=ADMIN)
    signup(app, "bob")
    signup(app, "eve")
    signup(app, "ops", roles=["ops"])
    assert app.get("/db", headers=basic("bob", "pw"), expect_errors=True).status_int == 403
    security = {"admins": {"names": [], "roles": ["ops"]},
                "members": {"names": ["bob"], "roles": []}}
    put(app, "/db/_security", security, headers=ADMIN)
    assert app.get("/db/_security", headers=ADMIN).json == security
    bob, eve, ops = basic("bob", "pw"), basic("eve", "pw"), basic("ops", "pw")
    put(app, "/db/doc", {"a": 1}, headers=bob, status=201)
    assert app.get("/db/doc", headers=bob).json["a"] == 1
    assert app.get("/db/doc", headers=eve, expect_errors=True).status_int == 403
    ddoc = {"language": "python", "views": {"v": {"map": "def fun(doc):\n    yield 1, 1"}}}
    assert put(app, "/db/_design/d", ddoc, headers=bob, expect_errors=True).status_int == 403
    bulk = {"docs": [{"_id": "_design/x", **ddoc}]}
    r = app.post("/db/_bulk_docs", orjson.dumps(bulk), content_type="application/json",
                 headers=bob, expect_errors=True)
    assert r.status_int == 403
    put(app, "/db/_design/d", {"options": {}}, headers=ops, status=201)  # a db admin by role
    assert put(app, "/db/_security", security, headers=bob, expect_errors=True).status_int == 403
    assert app.delete("/db", headers=ops, expect_errors=True).status_int == 403
    assert app.delete("/db", headers=ADMIN).status_int == 200


def test_cookie_sessions(app):
    signup(app, "bob")
    r = app.post("/_session", orjson.dumps({"name": "bob", "password": "pw"}),
                 content_type="application/json")
    assert r.json == {"ok": True, "name": "bob", "roles": []}
    cookie = r.headers["Set-Cookie"]
    assert "AuthSession=" in cookie and "HttpOnly" in cookie
    session = app.get("/_session").json
    assert session["userCtx"] == {"name": "bob", "roles": []}
    assert session["info"]["authenticated"] == "cookie"
    app.delete("/_session")
    assert app.get("/_session").json["userCtx"]["name"] is None
    bad = app.post("/_session", "name=bob&password=nope",
                   content_type="application/x-www-form-urlencoded", expect_errors=True)
    assert bad.status_int == 401
    form = app.post("/_session", "name=admin&password=s3cret",
                    content_type="application/x-www-form-urlencoded")
    assert form.json["roles"] == ["_admin"]


def test_forged_cookie_is_anonymous(app):
    app.set_cookie("AuthSession", "YWRtaW46MA.deadbeef")
    assert app.get("/_session").json["userCtx"]["name"] is None
    assert app.get("/_all_dbs", expect_errors=True).status_int == 401


def test_bad_security_documents_are_400(app):
    app.put("/db", headers=ADMIN)
    r = put(app, "/db/_security", {"members": {"names": "bob"}}, headers=ADMIN,
            expect_errors=True)
    assert r.status_int == 400


def test_cors_preflight_and_headers(app):
    r = app.options("/db", headers={"Origin": "https://app.example",
                                    "Access-Control-Request-Method": "PUT",
                                    "Access-Control-Request-Headers": "content-type"})
    assert r.status_int == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert "PUT" in r.headers["Access-Control-Allow-Methods"]
    got = app.get("/", headers={"Origin": "https://app.example"})
    assert got.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = app.get("/", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_admin_party_without_an_admin(tmp_path):
    app = make_app(tmp_path)
    assert app.get("/_session").json["userCtx"]["roles"] == ["_admin"]
    assert app.put("/db").status_int == 201
