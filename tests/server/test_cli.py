"""The settee command line: dump, load (keeping revisions), compact, serve's safety check."""
from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from settee.config import load_settings
from settee.server.cli import is_loopback, main
from settee.store import Catalog


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("SETTEE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def catalog(tmp_path):
    return Catalog(load_settings(env={}, storage_data_dir=str(tmp_path / "data")))


def test_dump_then_load_into_another_database_keeps_revisions(env, capsysbinary):
    db = catalog(env).create("src")
    db["a"] = {"n": 1}
    doc = db["a"]
    doc["n"] = 2
    db["a"] = doc
    db["b"] = {"n": 3}
    assert main(["dump", "src"]) == 0
    dumped = capsysbinary.readouterr().out
    lines = [orjson.loads(line) for line in dumped.splitlines()]
    assert [d["_id"] for d in lines] == ["a", "b"]
    assert lines[0]["_revisions"]["start"] == 2
    path = env / "dump.jsonl"
    path.write_bytes(dumped)
    assert main(["load", "copy", str(path)]) == 0
    copy = catalog(env).get("copy")
    assert copy["a"]["_rev"] == db["a"]["_rev"] and copy["a"]["n"] == 2
    assert copy.versions.revs_diff("a", [lines[0]["_rev"]]) == []


def test_dump_then_load_keeps_conflicts_and_deleted_documents(env, capsysbinary):
    db = catalog(env).create("tree")
    for rev, ids, value in (("2-b", ["b", "a"], "b"), ("2-c", ["c", "a"], "c"),
                            ("3-d", ["d", "b", "a"], None)):
        doc = {"_id": "x", "_rev": rev, "_revisions": {"start": int(rev[0]), "ids": ids}}
        if value is None:
            doc["_deleted"] = True
        else:
            doc["v"] = value
        db.save(doc, new_edits=False)
    db["gone"] = {"n": 1}
    db.delete("gone", db["gone"]["_rev"])
    assert main(["dump", "tree"]) == 0
    dumped = capsysbinary.readouterr().out
    lines = [orjson.loads(line) for line in dumped.splitlines()]
    assert [(d["_id"], d["_rev"]) for d in lines] == [
        ("x", "2-c"), ("x", "3-d"), ("gone", db.record("gone").meta.rev)]
    path = env / "tree.jsonl"
    path.write_bytes(dumped)
    assert main(["load", "copy", str(path)]) == 0
    copy = catalog(env).get("copy")
    for doc_id in ("x", "gone"):
        assert copy.leaves(doc_id) == db.leaves(doc_id)
        assert copy.record(doc_id).meta.rev == db.record(doc_id).meta.rev
    assert copy["x"]["v"] == "c" and copy.record("gone").meta.deleted
    assert copy.info()["doc_del_count"] == 1 and copy.info()["doc_count"] == 1


def test_load_reports_bad_lines_and_fails(env, capsys):
    path = env / "mixed.jsonl"
    path.write_text('{"_id": "ok"}\nnot json\n[1]\n')
    assert main(["load", "mixed", str(path)]) == 1
    err = capsys.readouterr().err
    assert "loaded 1 documents" in err and "2 failed" in err
    assert "ok" in catalog(env).get("mixed")


def test_compact_drops_old_bodies(env, capsys):
    db = catalog(env).create("c")
    db["a"] = {"n": 1}
    first = db["a"]["_rev"]
    db["a"] = {**db["a"], "n": 2}
    assert db["a", first]["n"] == 1
    assert main(["compact", "c"]) == 0
    with pytest.raises(KeyError):
        catalog(env).get("c")["a", first]


def test_missing_database_is_a_clear_error(env, capsys):
    assert main(["dump", "nope"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_serve_refuses_a_public_address_without_an_admin(tmp_path):
    env = {**os.environ, "SETTEE_BIND": "0.0.0.0:5999", "SETTEE_DATA_DIR": str(tmp_path)}
    env.pop("SETTEE_ADMIN_USER", None)
    r = subprocess.run([sys.executable, "-m", "settee.server.cli", "serve"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "refusing" in r.stderr


def test_loopback_addresses():
    assert is_loopback("127.0.0.1:5984") and is_loopback("localhost:1") and is_loopback("[::1]:5")
    assert not is_loopback("0.0.0.0:5984") and not is_loopback("10.1.2.3:80")


def test_a_bad_setting_fails_at_start_naming_the_key(tmp_path):
    env = {**os.environ, "SETTEE_COMPRESSION_LEVEL": "11", "SETTEE_DATA_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "settee.server.cli", "dump", "x"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "compression_level" in r.stderr


def test_index_builds_every_view_of_a_database(env, capsys, monkeypatch):
    monkeypatch.setenv("SETTEE_EXAMPLES", "invoices")          # the talk's view too
    db = catalog(env).create("invoices")
    db["i1"] = {"payments": [], "lineItems": [{"description": "x", "amount": 3.0,
                                               "allocation": {"c1": {"amount": 3.0, "paid": 1.0}}}]}
    db["_design/app"] = {"language": "python",
                         "views": {"ids": {"map": "def fun(doc):\n    yield doc['_id'], None"}}}
    assert main(["index", "invoices"]) == 0
    err = capsys.readouterr().err
    assert "ar_by_accounting_code: 1 rows" in err and "app/ids: 1 rows" in err


def test_loading_a_missing_file_is_one_line_and_creates_nothing(env, capsys):
    assert main(["load", "fresh", str(env / "nonesuch.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nonesuch.jsonl" in err
    assert not catalog(env).exists("fresh")


@pytest.mark.parametrize("where", ["before", "after"])
def test_the_data_directory_can_be_named_on_the_command_line(tmp_path, capsysbinary, where):
    other = tmp_path / "elsewhere"
    Catalog(load_settings(env={}, storage_data_dir=str(other))).create("x")["a"] = {"n": 1}
    option = ["--data-dir", str(other)]
    argv = option + ["dump", "x"] if where == "before" else ["dump", "x"] + option
    assert main(argv) == 0
    assert orjson.loads(capsysbinary.readouterr().out.splitlines()[0])["n"] == 1


@pytest.mark.parametrize("argv", [["serve", "--bind", "0.0.0.0:5999"],
                                  ["serve", "-b", "0.0.0.0:5999"],
                                  ["serve", "--bind=0.0.0.0:5999"]])
def test_serve_checks_an_address_given_on_the_command_line(tmp_path, argv):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTEE_")}
    env["SETTEE_DATA_DIR"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-m", "settee.server.cli", *argv], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "0.0.0.0" not in r.stdout
    assert "refusing" in r.stderr or "settee serve's own options" in r.stderr


def test_serve_help_lists_its_options():
    r = subprocess.run([sys.executable, "-m", "settee.server.cli", "serve", "--help"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert all(option in r.stdout for option in ("--bind", "--workers", "--threads",
                                                 "--data-dir", "--config"))


@pytest.mark.parametrize("setting, env", [
    ("auth_admin_password", {"SETTEE_ADMIN_USER": "admin"}),
    ("encryption_key", {"SETTEE_STACK": "versioning,serialization,encryption",
                        "SETTEE_ENCRYPTION_KEY": "not-a-key"}),
    ("storage_data_dir", {"SETTEE_DATA_DIR": "/proc/settee-cannot-be-made-here"}),
])
def test_a_server_that_cannot_run_stops_at_start_in_one_line(tmp_path, setting, env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("SETTEE_")}
    r = subprocess.run([sys.executable, "-m", "settee.server.cli", "serve"],
                       env={**base, "SETTEE_DATA_DIR": str(tmp_path / "data"), **env},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if not line.startswith("settee: no server")]
    assert len(lines) == 1 and setting in lines[0], r.stderr
