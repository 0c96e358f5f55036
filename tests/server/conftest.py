"""Fixtures shared by the HTTP tests."""
from __future__ import annotations

import pytest
from httpclient import make_app


@pytest.fixture
def db(tmp_path):
    """An in-process server (no admin: every request is an admin's) with database ``db``."""
    app = make_app(tmp_path)
    app.put("/db", status=201)
    return app


@pytest.fixture
def js_calls(monkeypatch):
    """The names of the calls made into JavaScript design functions, in order (to count
    how many a batch takes)."""
    from settee.views import couchapp
    calls: list[str] = []
    original = couchapp.DesignFunctions._call

    def counted(self, function, *args):
        calls.append(function)
        return original(self, function, *args)
    monkeypatch.setattr(couchapp.DesignFunctions, "_call", counted)
    return calls
