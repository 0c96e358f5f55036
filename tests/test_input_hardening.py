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
