"""PouchDB 9 syncing with a live Settee: push, pull, live sync, and a conflict resolved
on the server and on the client, after which both sides hold the same leaves and the
same winner (the scenarios are tests/server/pouchdb/sync.js; PouchDB is installed by
``make test`` where npm is found)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from liveserver import LiveServer

HERE = Path(__file__).parent / "pouchdb"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(not (HERE / "node_modules" / "pouchdb-core").is_dir(),
                       reason="PouchDB is not installed (make test installs it with npm "
                              "where npm is found)"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("pouchdb") / "data", workers=2) as live:
        yield live


def run(server, scenario: str) -> dict:
    done = subprocess.run(["node", str(HERE / "sync.js"), server.url, scenario],
                          capture_output=True, text=True, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    assert done.returncode == 0 and "error" not in result, (result, done.stderr[-2000:])
    return result


def test_push_then_pull_carries_every_document_edit_deletion_and_attachment(server):
    result = run(server, "push_pull")
    assert result["push"]["ok"] and result["pull"]["ok"]
    assert result["push"]["written"] == 300
    source, pulled, remote = result["source"], result["pulled"], result["server"]
    assert source == remote == pulled
    assert remote["doc-0007"]["winner"] == {"error": 404}                 # deleted
    assert remote["doc-0014"]["leaves"][0][1] is False                    # edited, live
    assert result["attachment"] == "attachment of 25"


def test_live_sync_carries_writes_both_ways(server):
    result = run(server, "live")
    assert result["server_put"] == 201
    assert result["pouch"] == result["server"]
    assert result["server"]["from-server"]["winner"]["body"] == 3


@pytest.mark.parametrize("scenario", ["resolved_on_server", "resolved_in_pouch"])
def test_a_resolved_conflict_converges_and_stays_resolved(server, scenario):
    result = run(server, scenario)
    before = result["before"]["c"]
    assert len(before["winner"]["conflicts"]) == 1, before    # it was conflicted
    pouch, remote = result["pouch"]["c"], result["server"]["c"]
    assert pouch == remote, result
    assert remote["winner"]["conflicts"] == []                # and it stays resolved
    live = [rev for rev, deleted in remote["leaves"] if not deleted]
    assert live == [remote["winner"]["rev"]]
    where = "on the server" if scenario == "resolved_on_server" else "in pouchdb"
    assert remote["winner"]["body"] == f"resolved {where}"
