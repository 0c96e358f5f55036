"""A worker keeps a bounded number of databases open (store/catalog.py), whatever
databases its clients name, and never closes one under its user."""
from __future__ import annotations

import os
import threading

import pytest
import requests
from liveserver import LiveServer

from settee.config import load_settings
from settee.store import Catalog


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def make_catalog(tmp_path, max_open: int) -> Catalog:
    return Catalog(load_settings(storage_data_dir=str(tmp_path / "data"),
                                 storage_max_dbs_open=max_open))


def test_the_least_recently_used_idle_database_is_closed(tmp_path):
    catalog = make_catalog(tmp_path, 3)
    try:
        for i in range(10):
            catalog.create(f"db{i}")["doc"] = {"n": i}
        assert catalog.open_count() == 3
        before = open_fds()
        for i in range(10):                      # every one reopens as it is needed
            assert catalog.get(f"db{i}")["doc"]["n"] == i
        assert catalog.open_count() == 3
        assert open_fds() <= before + 3
    finally:
        catalog.close()


def test_a_database_in_use_is_not_closed(tmp_path):
    catalog = make_catalog(tmp_path, 2)
    try:
        held = catalog.create("held").lease()
        held["doc"] = {"n": 1}
        for i in range(5):
            catalog.create(f"other{i}")
        assert catalog.get("held") is held       # still the same open database
        held.release()
        for i in range(5):
            catalog.get(f"other{i}")
        assert catalog.get("held") is not held   # closed once free, opened anew
        assert catalog.get("held")["doc"]["n"] == 1
    finally:
        catalog.close()


def test_databases_past_the_limit_stay_usable_from_many_threads(tmp_path):
    catalog = make_catalog(tmp_path, 4)
    names = [f"db{i}" for i in range(12)]
    for name in names:
        catalog.create(name)
    errors = []

    def work(k):
        try:
            for j in range(40):
                db = catalog.get(names[(k * 7 + j) % len(names)]).lease()
                try:
                    db[f"t{k}-{j}"] = {"j": j}
                    assert db[f"t{k}-{j}"]["j"] == j
                finally:
                    db.release()
        except Exception as e:                  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors
        assert sum(len(catalog.get(n)) for n in names) == 4 * 40
    finally:
        catalog.close()


@pytest.mark.slow
def test_anonymous_requests_over_many_databases_open_none(tmp_path):
    with LiveServer(tmp_path / "data", workers=1, threads=4, SETTEE_ADMIN_USER="admin",
                    SETTEE_ADMIN_PASSWORD="pw") as server:
        admin = ("admin", "pw")
        for i in range(60):
            requests.put(f"{server.url}/db{i:04d}", auth=admin).raise_for_status()
        pid = server.worker_pids(1)[0]
        before = open_fds(pid)
        with requests.Session() as s:
            for i in range(60):
                r = s.get(f"{server.url}/db{i:04d}")
                assert r.status_code == 401, r.text
            assert s.get(f"{server.url}/nonesuch").status_code == 404
        assert open_fds(pid) <= before + 2
        assert requests.get(server.url + "/_up", timeout=5).status_code == 200


@pytest.mark.slow
def test_a_worker_keeps_its_open_files_bounded(tmp_path):
    with LiveServer(tmp_path / "data", workers=1, threads=4,
                    SETTEE_STORAGE_MAX_DBS_OPEN="5") as server:
        with requests.Session() as s:
            for i in range(40):
                s.put(f"{server.url}/db{i:04d}").raise_for_status()
                s.put(f"{server.url}/db{i:04d}/doc", json={"i": i}).raise_for_status()
            pid = server.worker_pids(1)[0]
            peak = 0
            for _ in range(2):
                for i in range(40):
                    assert s.get(f"{server.url}/db{i:04d}/doc").json()["i"] == i
                    peak = max(peak, open_fds(pid))
        # 5 databases, each at most a few connections of 3 files, plus the server's own
        assert peak < 5 * 3 * 7 + 60, peak
