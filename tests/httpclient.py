"""webtest's TestApp, sending the raw request path as a real server does.

WSGI's ``PATH_INFO`` is percent-decoded, which loses the difference between ``/`` and
``%2F``; gunicorn also passes the raw target (``RAW_URI``), and Settee routes on it.
This request class passes the URL as given in ``REQUEST_URI`` the same way.
"""
from __future__ import annotations

import warnings

import orjson
from webtest import TestApp, TestRequest
from webtest.lint import WSGIWarning


class RawRequest(TestRequest):
    @classmethod
    def blank(cls, path, environ=None, *args, **kw):
        environ = dict(environ or {})
        environ.setdefault("REQUEST_URI", path)
        return super().blank(path, environ, *args, **kw)


class SetteeTestApp(TestApp):
    RequestClass = RawRequest


def make_app(tmp_path, **settings):
    from settee.config import load_settings
    from settee.server.app import create_app
    settings.setdefault("storage_data_dir", str(tmp_path / "data"))
    return SetteeTestApp(create_app(load_settings(env={}, **settings)))


def put(app, path, body, **kw):
    """PUT ``body`` as JSON."""
    return app.put(path, orjson.dumps(body), content_type="application/json", **kw)


def request(app, path, method, **kw):
    """Any method, COPY included (webtest's lint warns of methods it does not know),
    whatever the status."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WSGIWarning)
        return app.request(path, method=method, expect_errors=True, **kw)
