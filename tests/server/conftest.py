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
