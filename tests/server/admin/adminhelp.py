"""What the web admin's tests share: a browser's Accept, an app, form tokens."""
from __future__ import annotations

import re

from httpclient import make_app

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def browser_app(tmp_path, **settings):
    app = make_app(tmp_path, **settings)
    app.extra_environ = {"HTTP_HOST": "localhost:80"}
    return app


def page(app, url, status=200):
    r = app.get(url, headers=BROWSER, status=status)
    assert r.content_type == "text/html", (url, r.content_type)
    return r


def token(response) -> str:
    found = re.search(r'name="_csrf" value="([0-9a-f]+)"', response.text)
    assert found, response.text[:500]
    return found.group(1)


def post_form(app, action, fields, response=None, status=303, headers=None):
    """A form write as a browser sends it: the token of a page it got first."""
    response = response or app.get("/_utils", headers=BROWSER, status="*")
    data = {"_csrf": token(response), **fields}
    return app.post("/_utils/" + action, data, headers={**BROWSER, **(headers or {})},
                    status=status)
