"""Replication between two real Settee servers (gunicorn, two workers each): push and
pull with credentials, continuous jobs, _replicator documents, the _scheduler's
answers, and a job that resumes from its checkpoint after a restart."""
from __future__ import annotations

import base64
import os
import signal

import pytest
import requests
from liveserver import LiveServer, until

pytestmark = pytest.mark.slow

ADMIN = ("admin", "s3cret")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """``a`` in admin party; ``b`` with a server admin (its URLs carry credentials)."""
    root = tmp_path_factory.mktemp("replication")
    a = LiveServer(root / "a", workers=2).start()
    b = LiveServer(root / "b", workers=2, SETTEE_ADMIN_USER=ADMIN[0],
                   SETTEE_ADMIN_PASSWORD=ADMIN[1], SETTEE_AUTH_PBKDF2_ITERATIONS=1000).start()
    yield a, b
    a.stop()
    b.stop()


def url_with_credentials(server, db):
    return server.url.replace("http://", f"http://{ADMIN[0]}:{ADMIN[1]}@") + "/" + db


def fill(base, db, count, start=0, auth=None):
    requests.put(f"{base}/{db}", auth=auth)
    docs = [{"_id": f"doc{i:05d}", "i": i} for i in range(start, start + count)]
    out = requests.post(f"{base}/{db}/_bulk_docs", json={"docs": docs}, auth=auth)
    assert out.status_code == 201, out.text


def count(base, db, auth=None):
    out = requests.get(f"{base}/{db}", auth=auth)
    return out.json().get("doc_count") if out.status_code == 200 else None


def test_push_and_pull_with_credentials_and_attachments(servers):
    a, b = servers
    fill(a.url, "pushed", 50)
    att = base64.b64encode(b"\x00\x01binary").decode()
    requests.put(f"{a.url}/pushed/withatt", json={"_attachments": {"x.bin": {
        "content_type": "application/octet-stream", "data": att}}})
    out = requests.post(f"{a.url}/_replicate", json={
        "source": "pushed", "target": url_with_credentials(b, "pushed"),
        "create_target": True})
    assert out.status_code == 200, out.text
    assert out.json()["history"][0]["docs_written"] == 51
    got = requests.get(f"{b.url}/pushed/withatt/x.bin", auth=ADMIN)
    assert got.content == b"\x00\x01binary"
    # pull back into a new database, credentials as a header object
    token = base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
    out = requests.post(f"{a.url}/_replicate", json={
        "source": {"url": f"{b.url}/pushed", "headers": {"Authorization": f"Basic {token}"}},
        "target": "pulled", "create_target": True})
    assert out.status_code == 200, out.text
    assert count(a.url, "pulled") == 51
    # without credentials b refuses: an error with a reason, not a 500
    out = requests.post(f"{a.url}/_replicate", json={"source": f"{b.url}/pushed",
                                                     "target": "pulled"})
    assert out.status_code == 401 and out.json()["error"] == "unauthorized"


def test_continuous_replicate_runs_until_cancelled(servers):
    a, b = servers
    fill(a.url, "live", 5)
    body = {"source": "live", "target": url_with_credentials(b, "live"),
            "create_target": True, "continuous": True}
    out = requests.post(f"{a.url}/_replicate", json=body)
    assert out.status_code == 202 and out.json()["_local_id"].endswith("+continuous+create_target")
    job_id = out.json()["_local_id"]
    assert until(lambda: count(b.url, "live", ADMIN) == 5, 20)
    fill(a.url, "live", 5, start=5)
    assert until(lambda: count(b.url, "live", ADMIN) == 10, 20)
    jobs = until(lambda: requests.get(f"{a.url}/_scheduler/jobs").json()["jobs"], 10)
    assert [j["id"] for j in jobs] == [job_id]
    assert ":*****@" in jobs[0]["target"] and "s3cret" not in str(jobs)
    # the running scheduler reports at least every second: any worker answers from that
    tasks = until(lambda: [t for t in requests.get(f"{a.url}/_active_tasks").json()
                           if t["type"] == "replication" and t["docs_written"] == 10], 10)
    assert tasks and tasks[0]["replication_id"] == job_id
    assert tasks[0]["continuous"] is True and "changes_pending" in tasks[0]
    out = requests.post(f"{a.url}/_replicate", json={"replication_id": job_id, "cancel": True})
    assert out.status_code == 200, out.text
    assert until(lambda: requests.get(f"{a.url}/_scheduler/jobs").json()["jobs"] == [], 15)
    fill(a.url, "live", 1, start=10)
    assert not until(lambda: count(b.url, "live", ADMIN) == 11, 2)


def test_continuous_pull_follows_a_remote_source(servers):
    a, b = servers
    fill(b.url, "remote", 3, auth=ADMIN)
    out = requests.post(f"{a.url}/_replicate", json={
        "source": url_with_credentials(b, "remote"), "target": "followed",
        "create_target": True, "continuous": True})
    assert out.status_code == 202, out.text
    assert until(lambda: count(a.url, "followed") == 3, 20)
    fill(b.url, "remote", 3, start=3, auth=ADMIN)         # arrives during a long poll
    assert until(lambda: count(a.url, "followed") == 6, 20)
    cancel = requests.post(f"{a.url}/_replicate", json={
        "source": url_with_credentials(b, "remote"), "target": "followed",
        "create_target": True, "continuous": True, "cancel": True})
    assert cancel.status_code == 200 and cancel.json()["_local_id"] == out.json()["_local_id"]


def test_replicator_documents_start_report_and_stop_jobs(servers):
    a, b = servers
    fill(a.url, "src", 20)
    requests.put(f"{a.url}/_replicator")
    once = requests.put(f"{a.url}/_replicator/once", json={
        "source": "src", "target": url_with_credentials(b, "once"), "create_target": True})
    assert once.status_code == 201, once.text
    doc = until(lambda: (d := requests.get(f"{a.url}/_replicator/once").json()).get(
        "_replication_state") == "completed" and d, 20)
    assert doc and doc["_replication_state_time"].endswith("Z") and doc["_replication_id"]
    assert doc["_replication_stats"]["docs_written"] == 20
    state = until(lambda: (s := requests.get(f"{a.url}/_scheduler/docs/_replicator/once")
                           .json()).get("state") == "completed" and s, 5)
    assert state and state["doc_id"] == "once" and state["id"] is None
    # a continuous one, stopped by deleting its document
    requests.put(f"{a.url}/_replicator/follow", json={
        "source": "src", "target": url_with_credentials(b, "follow"), "create_target": True,
        "continuous": True})
    assert until(lambda: count(b.url, "follow", ADMIN) == 20, 20)
    running = until(lambda: requests.get(f"{a.url}/_scheduler/docs/_replicator/follow")
                    .json().get("state") == "running", 10)
    assert running
    listed = requests.get(f"{a.url}/_scheduler/docs").json()
    assert {d["doc_id"] for d in listed["docs"]} >= {"once", "follow"}
    rev = requests.get(f"{a.url}/_replicator/follow").json()["_rev"]
    assert requests.delete(f"{a.url}/_replicator/follow?rev={rev}").status_code == 200
    assert until(lambda: all(j["doc_id"] != "follow" for j in
                             requests.get(f"{a.url}/_scheduler/jobs").json()["jobs"]), 15)
    fill(a.url, "src", 1, start=20)
    assert not until(lambda: count(b.url, "follow", ADMIN) == 21, 2)


def test_a_job_resumes_from_its_checkpoint_after_a_restart(tmp_path, servers):
    _, b = servers
    a = LiveServer(tmp_path / "a", workers=2).start()
    try:
        fill(a.url, "big", 300)
        requests.put(f"{a.url}/_replicator")
        requests.put(f"{a.url}/_replicator/keep", json={
            "source": "big", "target": url_with_credentials(b, "kept"), "create_target": True,
            "continuous": True, "checkpoint_interval": 200})
        assert until(lambda: count(b.url, "kept", ADMIN) == 300, 30)
        assert until(lambda: requests.get(f"{a.url}/_scheduler/jobs").json()["jobs"][0]["info"]
                     .get("checkpointed_source_seq") == "300", 15)
        a.kill()                                    # a crash, not a shutdown
        a.start()
        fill(a.url, "big", 10, start=300)
        assert until(lambda: count(b.url, "kept", ADMIN) == 310, 30)
        jobs = until(lambda: requests.get(f"{a.url}/_scheduler/jobs").json()["jobs"], 10)
        info = jobs[0]["info"]
        # it went on from its checkpoint: it checked the ten new changes, not all 310
        assert until(lambda: requests.get(f"{a.url}/_scheduler/jobs").json()["jobs"][0]["info"]
                     ["revisions_checked"] == 10, 10), info
    finally:
        a.stop()


def test_when_the_worker_running_the_jobs_dies_another_takes_them_over(servers):
    a, b = servers
    fill(a.url, "handover", 5)
    requests.put(f"{a.url}/_replicator")
    requests.put(f"{a.url}/_replicator/handover", json={
        "source": "handover", "target": url_with_credentials(b, "handover"),
        "create_target": True, "continuous": True})
    assert until(lambda: count(b.url, "handover", ADMIN) == 5, 20)
    jobs = requests.get(f"{a.url}/_scheduler/jobs").json()["jobs"]
    pid = int(next(j for j in jobs if j["doc_id"] == "handover")["pid"].strip("<>"))
    assert pid in a.worker_pids(2)
    os.kill(pid, signal.SIGKILL)
    fill(a.url, "handover", 5, start=5)
    assert until(lambda: count(b.url, "handover", ADMIN) == 10, 30)
    jobs = requests.get(f"{a.url}/_scheduler/jobs").json()["jobs"]
    assert int(next(j for j in jobs if j["doc_id"] == "handover")["pid"].strip("<>")) != pid
