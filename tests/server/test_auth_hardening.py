"""Accounts an attacker would go after: hash parameters, names, the _users listing,
timing, and revocation across workers (server/auth.py)."""
from __future__ import annotations

import hashlib

import orjson
import pytest
from httpclient import make_app
from test_auth import ADMIN, basic, put, signup

from settee.server import auth as auth_module

FAST = 1000          # the tests' PBKDF2 iterations


def make(tmp_path):
    return make_app(tmp_path, auth_admin_user="admin", auth_admin_password="s3cret",
                    auth_pbkdf2_iterations=FAST)


@pytest.fixture
def app(tmp_path):
    return make(tmp_path)


def user_doc(name, **fields):
    return {"name": name, "type": "user", "roles": [], **fields}


# -- who chooses the hash ---------------------------------------------------------------
@pytest.mark.parametrize("fields", [
    {"password_scheme": "pbkdf2", "pbkdf2_prf": "sha256", "iterations": 30_000_000,
     "salt": "00", "derived_key": "00"},
    {"password_scheme": "pbkdf2", "pbkdf2_prf": "md5", "iterations": 1,
     "salt": "00", "derived_key": "00"},
    {"iterations": 1}])
def test_a_user_cannot_choose_their_own_hash(app, fields):
    r = put(app, "/_users/org.couchdb.user:eve", user_doc("eve", **fields), expect_errors=True)
    assert r.status_int == 403 and r.json["error"] == "forbidden"
    assert app.get("/_users/org.couchdb.user:eve", headers=ADMIN, expect_errors=True) \
        .status_int == 404


def test_a_password_sent_with_hash_fields_is_hashed_the_servers_way(app):
    body = user_doc("eve", password="pw", iterations=30_000_000, pbkdf2_prf="md5")
    assert put(app, "/_users/org.couchdb.user:eve", body).status_int == 201
    stored = app.get("/_users/org.couchdb.user:eve", headers=ADMIN).json
    assert stored["iterations"] == FAST and stored["pbkdf2_prf"] == "sha256"
    assert app.get("/_session", headers=basic("eve", "pw")).json["userCtx"]["name"] == "eve"


def test_a_user_may_send_their_own_record_back_unchanged(app):
    signup(app, "bob")
    doc = app.get("/_users/org.couchdb.user:bob", headers=basic("bob", "pw")).json
    doc["fullname"] = "Bob"
    r = put(app, "/_users/org.couchdb.user:bob", doc, headers=basic("bob", "pw"))
    assert r.status_int == 201


def test_an_admins_pre_hashed_record_is_checked(app):
    good = auth_module.hash_password("pw", FAST)
    assert put(app, "/_users/org.couchdb.user:old", user_doc("old", **good),
               headers=ADMIN).status_int == 201
    assert app.get("/_session", headers=basic("old", "pw")).json["userCtx"]["name"] == "old"
    for bad in ({**good, "iterations": 30_000_000}, {**good, "pbkdf2_prf": "md5"},
                {**good, "password_scheme": "simple"}, {**good, "salt": "not hex!"}):
        r = put(app, "/_users/org.couchdb.user:x", user_doc("x", **bad), headers=ADMIN,
                expect_errors=True)
        assert r.status_int == 400, bad


def test_a_smuggled_record_fails_its_login_without_running_it(app, monkeypatch):
    users = app.app.catalog.get("_users")
    users.save({"_id": "org.couchdb.user:slow", **user_doc("slow"), "password_scheme": "pbkdf2",
                "pbkdf2_prf": "sha256", "iterations": 30_000_000, "salt": "00",
                "derived_key": "00"})
    calls = []
    real = hashlib.pbkdf2_hmac
    monkeypatch.setattr(hashlib, "pbkdf2_hmac",
                        lambda *a: calls.append(a[3]) or real(*a))
    r = app.get("/_session", headers=basic("slow", "pw"), expect_errors=True)
    assert r.status_int == 401
    assert calls and max(calls) <= FAST * auth_module.MAX_ITERATIONS_FACTOR


@pytest.mark.parametrize("name, word", [("_admin", "underscore"), ("a:b", ":"), ("", "empty")])
def test_user_names_follow_couchdbs_rules(app, name, word):
    r = put(app, f"/_users/org.couchdb.user:{name}", user_doc(name, password="pw"),
            expect_errors=True)
    assert r.status_int == 403 and word in r.json["reason"]


def test_only_admins_list_users(app):
    signup(app, "bob")
    for path in ("/_users", "/_users/_all_docs", "/_users/_changes"):
        assert app.get(path, expect_errors=True).status_int == 401, path
        assert app.get(path, headers=basic("bob", "pw"), expect_errors=True).status_int == 403
        assert app.get(path, headers=ADMIN).status_int == 200
    r = app.post("/_users/_find", orjson.dumps({"selector": {}}),
                 content_type="application/json", expect_errors=True)
    assert r.status_int == 401
    assert app.get("/_users/org.couchdb.user:bob", headers=basic("bob", "pw")).status_int == 200


def test_an_unknown_name_costs_a_login_as_much_as_a_wrong_password(app, monkeypatch):
    signup(app, "bob")
    calls = []
    real = hashlib.pbkdf2_hmac
    monkeypatch.setattr(hashlib, "pbkdf2_hmac", lambda *a: calls.append(a[3]) or real(*a))
    app.get("/_session", headers=basic("bob", "wrong"), expect_errors=True)
    known = list(calls)
    calls.clear()
    app.get("/_session", headers=basic("nobody", "wrong"), expect_errors=True)
    assert known == [FAST] and calls == known


# -- revocation -------------------------------------------------------------------------
def change_password(app, name, password):
    doc = app.get(f"/_users/org.couchdb.user:{name}", headers=ADMIN).json
    doc["password"] = password
    assert put(app, f"/_users/org.couchdb.user:{name}", doc, headers=ADMIN).status_int == 201


def test_a_new_password_ends_old_credentials_and_sessions_at_once(app):
    signup(app, "bob")
    assert app.get("/_session", headers=basic("bob", "pw")).json["userCtx"]["name"] == "bob"
    app.post("/_session", orjson.dumps({"name": "bob", "password": "pw"}),
             content_type="application/json")
    assert app.get("/_session").json["userCtx"]["name"] == "bob"      # the cookie works
    change_password(app, "bob", "new")
    assert app.get("/_session", headers=basic("bob", "pw"), expect_errors=True) \
        .status_int == 401
    assert app.get("/_session").json["userCtx"]["name"] is None         # cookie refused
    assert app.get("/_session", headers=basic("bob", "new")).status_int == 200


def test_a_deleted_user_and_a_removed_role_take_effect_in_another_worker(tmp_path):
    one, two = make(tmp_path), make(tmp_path)        # two workers over one data directory
    one.put("/db", headers=ADMIN)
    signup(one, "bob", roles=["staff"])
    put(one, "/db/_security", {"members": {"roles": ["staff"]}}, headers=ADMIN)
    assert two.get("/db", headers=basic("bob", "pw")).status_int == 200   # cached in two
    doc = one.get("/_users/org.couchdb.user:bob", headers=ADMIN).json
    doc["roles"] = []
    put(one, "/_users/org.couchdb.user:bob", doc, headers=ADMIN)
    assert two.get("/db", headers=basic("bob", "pw"), expect_errors=True).status_int == 403
    rev = one.get("/_users/org.couchdb.user:bob", headers=ADMIN).json["_rev"]
    one.delete(f"/_users/org.couchdb.user:bob?rev={rev}", headers=ADMIN)
    assert two.get("/_session", headers=basic("bob", "pw"), expect_errors=True) \
        .status_int == 401


def test_an_admins_session_holds_in_every_worker(tmp_path):
    one, two = make(tmp_path), make(tmp_path)
    one.post("/_session", orjson.dumps({"name": "admin", "password": "s3cret"}),
             content_type="application/json")
    cookie = one.cookies["AuthSession"]
    two.set_cookie("AuthSession", cookie)
    assert two.get("/_session").json["userCtx"]["roles"] == ["_admin"]


def test_no_system_roles_in_users_not_even_from_a_server_admin(app):
    r = put(app, "/_users/org.couchdb.user:mallory",
            user_doc("mallory", password="pw", roles=["_admin"]), headers=ADMIN,
            expect_errors=True)
    assert r.status_int == 403 and "system roles" in r.json["reason"]
    users = app.app.catalog.get("_users")          # one that came by replication or a dump
    users.save({"_id": "org.couchdb.user:mallory", **user_doc("mallory", roles=["_admin"]),
                **auth_module.hash_password("pw", FAST)})
    ctx = app.get("/_session", headers=basic("mallory", "pw")).json["userCtx"]
    assert ctx["name"] == "mallory" and ctx["roles"] == []
    assert app.get("/_all_dbs", headers=basic("mallory", "pw"), expect_errors=True) \
        .status_int == 403
