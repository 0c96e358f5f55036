import os
import sys

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

# Property tests: no per-example deadline (a loaded machine is not a failure), and in
# CI the same examples every run, so a red build is reproducible.
settings.register_profile("settee", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow],
                          derandomize=bool(os.environ.get("CI")))
settings.load_profile("settee")


@pytest.fixture(scope="session")
def postgres_server_dsn():
    """The DSN of a PostgreSQL for the tests: ``SETTEE_TEST_POSTGRES_DSN``, or a throwaway
    server (tests/pgserver.py) started once per session; skips when neither is possible."""
    dsn = os.environ.get("SETTEE_TEST_POSTGRES_DSN")
    if dsn:
        yield dsn
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[postgresql]')")
    from pgserver import PostgresServer
    server = PostgresServer()
    try:
        server.start()
    except Exception as e:
        pytest.skip(f"no PostgreSQL could be started: {e}")
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture
def postgres_dsn(postgres_server_dsn):
    """A DSN of its own for each test: a fresh, empty schema (one Settee installation)."""
    from pgserver import fresh_schema
    return fresh_schema(postgres_server_dsn)
