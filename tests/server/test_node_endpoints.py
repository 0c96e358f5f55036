"""What the node says of itself, as CouchDB 3 answers: ``_dbs_info``, ``_membership``,
``/_node/{node}``, ``_versions``, ``_config`` (read only, secrets never shown) and
``_stats``."""
from __future__ import annotations

import orjson
import pytest
from httpclient import make_app

from settee.server.nodeconfig import mask

ADMIN = ("admin", "s3cret-pass")


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, auth_admin_user=ADMIN[0], auth_admin_password=ADMIN[1],
                   auth_secret="cookie-secret-value", server_bind="0.0.0.0:5985",
                   server_max_document=1_000_000, cors_origins=["https://a.example"],
                   postgres_dsn="postgresql://pguser:pgpass@db.example/settee",
                   encryption_key="k" * 64)
    app.authorization = ("Basic", ADMIN)
    return app


def err(r, status, error):
    assert r.status_int == status, r.body
    assert r.json["error"] == error and r.json["reason"], r.json


# -- _dbs_info ------------------------------------------------------------------------
def test_dbs_info_post_answers_each_key_missing_ones_not_found(app):
    app.put("/a", status=201)
    app.put("/b", status=201)
    r = app.post("/_dbs_info", orjson.dumps({"keys": ["a", "nope", "b", 7]}),
                 content_type="application/json")
    assert [row["key"] for row in r.json] == ["a", "nope", "b", 7]
    assert r.json[0]["info"]["db_name"] == "a" and "doc_count" in r.json[0]["info"]
    assert r.json[1] == {"key": "nope", "error": "not_found"}
    assert r.json[3] == {"key": 7, "error": "not_found"}


def test_dbs_info_get_lists_like_all_dbs(app):
    for name in ("a", "b", "c"):
        app.put(f"/{name}", status=201)
    rows = app.get('/_dbs_info?startkey="b"').json
    assert [row["key"] for row in rows] == ["b", "c"]
    assert all(row["info"]["db_name"] == row["key"] for row in rows)


def test_dbs_info_post_needs_keys_and_caps_them(app):
    r = app.post("/_dbs_info", b"{}", content_type="application/json", expect_errors=True)
    err(r, 400, "bad_request")
    r = app.post("/_dbs_info", orjson.dumps({"keys": ["a"] * 101}),
                 content_type="application/json", expect_errors=True)
    err(r, 400, "bad_request")


def test_node_endpoints_are_for_server_admins(app):
    app.authorization = None
    for path in ("/_dbs_info", "/_membership", "/_node/_local/_config", "/_stats",
                 "/_node/_local/_stats", "/_node/_local/_versions", "/_db_updates"):
        assert app.get(path, expect_errors=True).status_int == 401, path


# -- the node -----------------------------------------------------------------------------
def test_membership_and_node_name(app):
    members = app.get("/_membership").json
    assert members["all_nodes"] == members["cluster_nodes"] == ["nonode@nohost"]
    assert app.get("/_node/_local").json == {"name": "nonode@nohost"}
    assert app.get("/_node/nonode@nohost/_versions").status_int == 200
    err(app.get("/_node/other@host/_config", expect_errors=True), 404, "not_found")


def test_versions_names_what_runs_the_node(app):
    versions = app.get("/_node/_local/_versions").json
    assert versions["settee"]["version"] and versions["python"]["version"]
    assert versions["collation_driver"]["name"]


def test_shards_are_one_shard_on_this_node(app):
    app.put("/db", status=201)
    assert app.get("/db/_shards").json == {"shards": {"00000000-ffffffff": ["nonode@nohost"]}}
    assert app.get("/db/_shards/anydoc").json == {"range": "00000000-ffffffff",
                                                  "nodes": ["nonode@nohost"]}
    err(app.get("/missing/_shards", expect_errors=True), 404, "not_found")


# -- _config ---------------------------------------------------------------------------------
def test_config_shows_settee_settings_where_couchdb_clients_look(app):
    config = app.get("/_node/_local/_config").json
    assert config["couchdb"]["max_document_size"] == "1000000"
    assert config["chttpd"]["bind_address"] == "0.0.0.0" and config["chttpd"]["port"] == "5985"
    assert config["chttpd"]["max_http_request_size"] == str(64 * 1024 * 1024)
    assert config["log"]["level"] == "info"
    assert config["httpd"]["enable_cors"] == "true"
    assert config["cors"]["origins"] == "https://a.example"
    assert config["settee"]["storage_backend"] == "sqlite"
    assert "server_max_document" not in config["settee"]      # shown as couchdb's
    assert all(isinstance(v, str) for section in config.values() for v in section.values())


def test_config_lists_admins_hashed_and_never_a_secret(app):
    config = app.get("/_node/_local/_config").json
    admin = config["admins"]["admin"]
    assert admin.startswith("-pbkdf2:sha256-") and admin.count(",") == 2
    text = orjson.dumps(config).decode()
    for secret in (ADMIN[1], "cookie-secret-value", "pgpass", "pguser", "k" * 64):
        assert secret not in text, secret
    assert "auth_secret" not in config["settee"] and "encryption_key" not in config["settee"]
    assert config["settee"]["postgres_dsn"] == "postgresql://***@db.example/settee"


def test_config_section_and_key(app):
    assert app.get("/_node/_local/_config/couchdb").json["max_document_size"] == "1000000"
    assert app.get("/_node/_local/_config/couchdb/max_document_size").json == "1000000"
    assert app.get("/_node/_local/_config/nosuchsection").json == {}
    r = app.get("/_node/_local/_config/couchdb/nosuchkey", expect_errors=True)
    assert r.status_int == 404 and r.json["reason"] == "unknown_config_value"
    r = app.get("/_node/_local/_config/settee/auth_secret", expect_errors=True)
    assert r.status_int == 404


@pytest.mark.parametrize("method, path, words", [
    ("PUT", "/_node/_local/_config/couchdb/max_document_size",
     ["server_max_document", "SETTEE_SERVER_MAX_DOCUMENT", "settings file"]),
    ("DELETE", "/_node/_local/_config/log/level", ["server_log_level", "SETTEE_SERVER_LOG_LEVEL"]),
    ("PUT", "/_node/_local/_config/settee/query_timeout", ["SETTEE_QUERY_TIMEOUT"]),
    ("PUT", "/_node/_local/_config/admins/bob", ["auth_admin_user", "_users"]),
    ("PUT", "/_node/_local/_config/ssl/enable", ["no setting for ssl/enable", "SETTEE_"]),
    ("POST", "/_node/_local/_config/_reload", ["read-only"]),
])
def test_config_writes_are_refused_naming_the_setting(app, method, path, words):
    r = app.request(path, method=method, body=b'"1"', content_type="application/json",
                    expect_errors=True)
    err(r, 403, "forbidden")
    for word in words:
        assert word in r.json["reason"], r.json["reason"]
    assert app.get("/_node/_local/_config/couchdb/max_document_size").json == "1000000"


def test_credentials_are_masked_in_any_form():
    assert mask("postgresql://u:p@h:5432/d") == "postgresql://***@h:5432/d"
    assert mask("host=h user=u password='a b' dbname=d") == \
        "host=h user=*** password=*** dbname=d"
    assert mask("http://example.com/x") == "http://example.com/x"


# -- _stats -------------------------------------------------------------------------------------
def test_stats_in_couchdb_shape_with_counts_that_move(app):
    before = app.get("/_node/_local/_stats").json["couchdb"]
    for _ in range(3):
        app.get("/nope", expect_errors=True)
    after = app.get("/_node/_local/_stats").json["couchdb"]
    assert after["httpd"]["requests"]["type"] == "counter"
    assert after["httpd"]["requests"]["value"] >= before["httpd"]["requests"]["value"] + 4
    assert after["httpd_status_codes"]["404"]["value"] >= \
        before["httpd_status_codes"]["404"]["value"] + 3
    assert after["httpd_request_methods"]["GET"]["value"] > 0
    timing = after["request_time"]
    assert timing["type"] == "histogram" and timing["value"]["n"] > 0
    assert timing["value"]["arithmetic_mean"] > 0 and timing["value"]["median"] is not None
    assert [p for p, _ in timing["value"]["percentile"]] == [50, 75, 90, 95, 99, 999]
    assert timing["value"]["min"] is None       # not measured: said so, not made up
    assert after["open_databases"]["type"] == "gauge"


def test_stats_path_narrows_and_top_level_stats(app):
    r = app.get("/_node/_local/_stats/couchdb/request_time").json
    assert r["type"] == "histogram"
    assert "couchdb" in app.get("/_stats").json
    err(app.get("/_node/_local/_stats/couchdb/nothing", expect_errors=True), 404, "not_found")


def test_stats_percentiles_interpolate_within_buckets():
    from settee.server.stats import percentile
    buckets = [(0.01, 0.0), (0.1, 10.0), (1.0, 10.0), (float("inf"), 10.0)]
    assert percentile(buckets, 10, 0.5) == pytest.approx(0.055)
    assert percentile(buckets, 0, 0.5) is None
