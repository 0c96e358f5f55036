"""The postgresql backend beyond the contract: failures, catalog, and several server nodes.

The nodes are separate gunicorn processes (tests/liveserver.py, two workers each) on
one throwaway PostgreSQL (tests/pgserver.py), each on a fresh schema.
"""
from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from liveserver import LiveServer
from pgserver import fresh_schema
from waiting import until

psycopg = pytest.importorskip("psycopg")

from paths import SHARED_BENCH  # noqa: E402

from settee.config import load_settings  # noqa: E402
from settee.store.backends.postgresql import (  # noqa: E402
    MIGRATIONS,
    CommitOutcomeUnknown,
    ConnectionLost,
    PostgreSQLBackend,
)
from settee.store.catalog import Catalog  # noqa: E402
from settee.store.exceptions import DatabaseNotFound, InvalidKey  # noqa: E402

MAKE_INVOICES = SHARED_BENCH / "make_invoices.py"


def terminate_other_connections(dsn: str) -> int:
    """pg_terminate_backend every other client connection of this PostgreSQL database."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        return len(admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE pid <> "
            "pg_backend_pid() AND datname = current_database() AND backend_type = 'client backend'"
        ).fetchall())


@pytest.fixture
def store(postgres_dsn):
    s = PostgreSQLBackend(postgres_dsn, "db")
    yield s
    s.close()


# -- the backend ---------------------------------------------------------------------------
def test_key_order_is_code_point_order_across_the_utf8_lengths(store):
    keys = ["\x7f", "\x80", "\u07ff", "\u0800", "\ud7ff", "\ue000", "\uffef", "\uffff",
            "\U00010000", "\U0001f600", "\U0010ffff", "a\U0010ffff", "a"]
    for key in keys:
        store[key] = key.encode()
    assert list(store.range(keys_only=True)) == sorted(keys)
    assert list(store.range("\ud7ff", "\U00010000", keys_only=True)) == [
        "\ud7ff", "\ue000", "\uffef", "\uffff", "\U00010000"]


def test_keys_too_long_for_the_index_are_refused_and_unstorable_keys_are_missing(store):
    store["é" * 1300] = b"2600 bytes"
    with pytest.raises(InvalidKey):
        store["é" * 1301] = b"2602 bytes"
    assert "a\x00b" not in store and store.get("\ud800") is None
    assert list(store.range("\x00", "é\x00", keys_only=True)) == []


def test_a_read_on_a_dead_connection_is_retried_once(store, postgres_dsn):
    store["k"] = b"v"
    assert store["k"] == b"v"                # the pool now holds an idle connection
    assert terminate_other_connections(postgres_dsn) >= 1
    assert store["k"] == b"v"                # met a dead connection, retried on a fresh one
    assert store.get_many(["k"]) == {"k": b"v"}


def test_a_lost_connection_during_commit_is_reported_as_maybe_committed(store, postgres_dsn):
    store["before"] = b"1"
    with pytest.raises(CommitOutcomeUnknown, match="may or may not have committed"):
        with store.transaction():
            store["k"] = b"v"
            with psycopg.connect(postgres_dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s, 5000)",
                              (store._tx.conn.info.backend_pid,))
    assert "k" not in store and store["before"] == b"1"     # not retried behind our back
    store["after"] = b"2"
    assert store["after"] == b"2"


def test_a_lost_connection_inside_a_transaction_rolls_it_back(store, postgres_dsn):
    with pytest.raises(ConnectionLost):
        with store.transaction():
            store["k"] = b"v"
            with psycopg.connect(postgres_dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s, 5000)",
                              (store._tx.conn.info.backend_pid,))
            store["k2"] = b"v"
    assert "k" not in store and "k2" not in store


def test_wait_for_change_wakes_on_a_commit_through_another_connection(postgres_dsn):
    waiter, writer = PostgreSQLBackend(postgres_dsn, "db"), PostgreSQLBackend(postgres_dsn, "db")
    other = PostgreSQLBackend(postgres_dsn, "other")
    try:
        assert until(lambda: waiter.listening), "the listener did not connect"
        mark = waiter.wait_for_change(None, 0)
        start = time.monotonic()
        assert waiter.wait_for_change(mark, 0.3) == mark            # nothing: the timeout
        assert 0.25 < time.monotonic() - start < 2
        threading.Timer(0.2, lambda: other.__setitem__("x", b"1")).start()
        threading.Timer(0.5, lambda: writer.__setitem__("x", b"1")).start()
        start = time.monotonic()
        woke = waiter.wait_for_change(mark, 10)
        assert woke != mark and 0.4 < time.monotonic() - start < 2   # not woken by "other"
    finally:
        for b in (waiter, writer, other):
            b.close()


# -- the throwaway server ------------------------------------------------------------------
def test_a_tcp_port_taken_before_postgresql_binds_it_is_traded_for_another(monkeypatch):
    """tests/pgserver.py with ``tcp``: a port found free and taken before PostgreSQL
    binds it (here by a socket listening on it) makes it start again on another port."""
    import pgserver
    if pgserver.find_bindir() is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        candidates = [taken.getsockname()[1]]
        real = pgserver.candidate_port
        monkeypatch.setattr(pgserver, "candidate_port",
                            lambda: candidates.pop() if candidates else real())
        with pgserver.PostgresServer(tcp=True) as server:
            assert not candidates and server.port != taken.getsockname()[1]
            assert pgserver.PORT_TAKEN in server.log(since=0), server.log()
            with psycopg.connect(server.tcp_dsn) as conn:
                assert conn.execute("SELECT current_database()").fetchone() == ("settee",)


# -- the catalog ---------------------------------------------------------------------------
def settings_for(dsn: str, tmp_path):
    return load_settings(env={}, storage_data_dir=str(tmp_path / "data"),
                         storage_backend="postgresql", postgres_dsn=dsn)


def test_the_backend_needs_a_dsn(tmp_path):
    from settee.store.exceptions import ConfigurationError
    with pytest.raises(ConfigurationError, match="postgres_dsn"):
        Catalog(settings_for("", tmp_path))


def test_another_node_deleting_and_recreating_a_database_is_noticed(postgres_dsn, tmp_path):
    one = Catalog(settings_for(postgres_dsn, tmp_path))
    two = Catalog(settings_for(postgres_dsn, tmp_path))
    try:
        one.create("shared")["a"] = {"v": 1}
        stale = two.get("shared")
        assert stale["a"]["v"] == 1 and two.get("shared") is stale and two.names() == ["shared"]
        one.delete("shared")
        with pytest.raises(DatabaseNotFound):        # at once: the write transaction checks
            stale["b"] = {"v": 2}
        one.create("shared")["c"] = {"v": 3}
        assert until(lambda: two.get("shared") is not stale, timeout=2, step=0.01), \
            "the re-created database was not noticed"    # the catalog's notification
        fresh = two.get("shared")
        assert "a" not in fresh and "b" not in fresh and fresh["c"]["v"] == 3
        one.delete("shared")
        assert until(lambda: not two.exists("shared"), timeout=2, step=0.01), \
            "the deleted database was not noticed"
        with pytest.raises(DatabaseNotFound):
            two.get("shared")
    finally:
        one.close()
        two.close()


# -- several server nodes ------------------------------------------------------------------
def node_env(dsn: str) -> dict[str, str]:
    return {"SETTEE_STORAGE_BACKEND": "postgresql", "SETTEE_POSTGRES_DSN": dsn,
            "SETTEE_EXAMPLES": "invoices"}


@pytest.fixture(scope="module")
def nodes(postgres_server_dsn, tmp_path_factory):
    dsn = fresh_schema(postgres_server_dsn, "nodes")
    base = tmp_path_factory.mktemp("pg-nodes")
    with LiveServer(base / "a", workers=2, **node_env(dsn)) as a, \
            LiveServer(base / "b", workers=2, **node_env(dsn)) as b:
        yield a, b


@pytest.fixture
def db(nodes, request):
    a, b = (node.url for node in nodes)
    name = "pg-" + request.node.name.lower().replace("_", "-")[:60]
    assert requests.put(f"{a}/{name}").status_code == 201
    yield f"{a}/{name}", f"{b}/{name}"
    requests.delete(f"{a}/{name}")


def test_a_write_through_one_node_is_read_through_the_other(db, nodes):
    a, b = db
    rev = requests.put(f"{a}/doc", json={"x": 1}).json()["rev"]
    got = requests.get(f"{b}/doc").json()
    assert got["x"] == 1 and got["_rev"] == rev
    rev2 = requests.put(f"{b}/doc", json={"x": 2, "_rev": rev}).json()["rev"]
    assert requests.get(f"{a}/doc").json()["_rev"] == rev2
    assert a.rsplit("/", 1)[1] in requests.get(f"{nodes[1].url}/_all_dbs").json()


def test_racing_writers_on_both_nodes_get_one_winner_per_revision(db):
    a, b = db
    rev = requests.put(f"{a}/hot", json={"n": 0}).json()["rev"]
    for round_ in range(10):
        def attempt(i, base=rev, n=round_ + 1):
            return requests.put(f"{(a, b)[i % 2]}/hot", json={"n": n, "by": i, "_rev": base})
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(attempt, range(8)))
        assert sorted(r.status_code for r in results) == [201] + [409] * 7
        rev = next(r for r in results if r.status_code == 201).json()["rev"]
    assert requests.get(f"{b}/hot").json()["n"] == 10 and rev.startswith("11-")


def test_a_longpoll_on_one_node_wakes_quickly_on_a_write_through_the_other(db, nodes):
    a, b = db
    box = {}

    def poll():
        r = requests.get(f"{a}/_changes", params={"feed": "longpoll", "since": "now",
                                                  "timeout": 20000})
        box["at"], box["r"] = time.monotonic(), r

    t = threading.Thread(target=poll)
    t.start()
    assert nodes[0].await_waiting(1), "the longpoll is not waiting on its node"
    written = time.monotonic()
    assert requests.put(f"{b}/from-b", json={"x": 1}).status_code == 201
    t.join(25)
    assert [c["id"] for c in box["r"].json()["results"]] == ["from-b"]
    assert box["at"] - written < 2


def test_concurrent_writers_on_both_nodes_make_one_gap_free_sequence(db):
    a, b = db

    def writer(i):
        for j in range(25):
            r = requests.put(f"{(a, b)[i % 2]}/w{i}-{j:02d}", json={"i": i, "j": j})
            assert r.status_code == 201, r.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    for node in (a, b):
        changes = requests.get(f"{node}/_changes").json()["results"]
        assert [int(c["seq"].split("-")[0]) for c in changes] == list(range(1, 201))
        assert len({c["id"] for c in changes}) == 200
        assert requests.get(node).json()["update_seq"].startswith("200-")


def load_make_invoices():
    spec = importlib.util.spec_from_file_location("make_invoices", MAKE_INVOICES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_views_queried_on_either_node_agree(nodes):
    if not MAKE_INVOICES.is_file():
        pytest.skip(f"{MAKE_INVOICES} is missing")
    a, b = (f"{node.url}/invoices" for node in nodes)
    generate = [sys.executable, str(MAKE_INVOICES), "600"]
    docs = [json.loads(line) for line in subprocess.run(
        generate, capture_output=True, text=True, check=True).stdout.splitlines()]
    expected = json.loads(subprocess.run(generate + ["--expect"], capture_output=True,
                                         text=True, check=True).stdout)
    requests.delete(a)
    assert requests.put(a).status_code == 201
    try:
        for i, node in enumerate((a, b)):          # half the invoices through each node
            r = requests.post(f"{node}/_bulk_docs", json={"docs": docs[i::2]})
            assert r.status_code == 201 and all(x.get("ok") for x in r.json())
        view = "/_view/ar_by_accounting_code?group=true"

        def grouped(node):
            rows = requests.get(node + view).json()["rows"]
            return {r["key"]: round(r["value"], 2) for r in rows}
        assert grouped(a) == expected and grouped(b) == expected
        # Deletions through B are applied incrementally by whichever node asks first.
        gone = docs[:50]
        revs = {d["id"]: d["value"]["rev"] for d in requests.get(
            f"{a}/_all_docs", params={"limit": 50}).json()["rows"]}
        for d in gone:
            assert requests.delete(f"{b}/{d['_id']}", params={"rev": revs[d["_id"]]}).ok
        remaining = load_make_invoices().expected_ar_by_code(docs[50:])
        assert grouped(a) == remaining and grouped(b) == remaining
    finally:
        requests.delete(a)


def test_two_nodes_starting_at_once_on_an_empty_schema_migrate_it_once(
        postgres_server_dsn, tmp_path):
    dsn = fresh_schema(postgres_server_dsn, "migrate")
    servers = [LiveServer(tmp_path / name, workers=2, **node_env(dsn)) for name in "ab"]
    try:
        with ThreadPoolExecutor(2) as pool:        # four workers migrate at once
            list(pool.map(lambda s: s.start(), servers))
        a, b = (s.url for s in servers)
        assert requests.put(f"{a}/fresh").status_code == 201
        assert requests.put(f"{a}/fresh/doc", json={"v": 1}).status_code == 201
        assert requests.get(f"{b}/fresh/doc").json()["v"] == 1
        with psycopg.connect(dsn) as conn:
            versions = conn.execute("SELECT version FROM settee_migrations ORDER BY 1").fetchall()
        assert versions == [(v,) for v, _ in MIGRATIONS]
    finally:
        for s in servers:
            s.stop()


def test_settee_dump_from_sqlite_then_load_into_postgresql_keeps_revisions(postgres_dsn, tmp_path):
    import os
    sqlite = Catalog(load_settings(env={}, storage_data_dir=str(tmp_path / "sqlite")))
    notes = sqlite.create("notes")
    notes["a"] = {"n": 1}
    doc = notes["a"]
    doc["n"] = 2
    notes["a"] = doc
    notes["b"] = {"n": 3}
    revs = {i: notes[i]["_rev"] for i in ("a", "b")}
    sqlite.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTEE_")}
    cli = [sys.executable, "-m", "settee.server.cli"]
    dump = subprocess.run(cli + ["dump", "notes"], capture_output=True, text=True, check=True,
                          env={**env, "SETTEE_DATA_DIR": str(tmp_path / "sqlite")})
    (tmp_path / "notes.jsonl").write_text(dump.stdout)
    subprocess.run(cli + ["load", "notes", str(tmp_path / "notes.jsonl")], check=True,
                   capture_output=True, env={**env, "SETTEE_DATA_DIR": str(tmp_path / "pg"),
                                             **node_env(postgres_dsn)})
    pg = Catalog(settings_for(postgres_dsn, tmp_path))
    try:
        moved = pg.get("notes")
        assert {i: moved[i]["_rev"] for i in ("a", "b")} == revs and moved["a"]["n"] == 2
        assert moved.info()["doc_count"] == 2
    finally:
        pg.close()


def test_put_many_and_delete_many_are_one_transaction_each(store):
    store.put_many([(f"k{i:03d}", b"%d" % i) for i in range(300)] + [("k000", b"again")])
    assert len(store) == 300 and store["k000"] == b"again" and store["k299"] == b"299"
    with pytest.raises(InvalidKey):
        store.put_many([("ok", b"1"), ("", b"2")])
    assert "ok" not in store
    store.delete_many([f"k{i:03d}" for i in range(0, 300, 2)] + ["missing", "a\x00"])
    assert len(store) == 150 and "k000" not in store and store["k001"] == b"1"
