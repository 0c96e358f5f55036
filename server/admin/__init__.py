"""The HTML face of every resource: a web admin at the same URLs as the JSON API.

A browser (``Accept`` preferring ``text/html``) that GETs ``/``, ``/_utils``, a
database, ``_all_docs``, a document, a view, ``_index``, ``_changes``,
``_active_tasks`` or ``_session`` gets a page of this package; every other client gets
the JSON it always got. Pages read through the JSON API in-process, for the browser's
own user (:mod:`.api`); writes are HTML forms posted to ``/_utils/<action>``, each
checked against cross-site forgery (:mod:`.csrf`), each calling the JSON API in turn,
then redirecting to the page that shows the result.

Modules: :mod:`.render` (Jinja2 templates, headers, static files), :mod:`.paging`
(pages by key), :mod:`.browse` (the server and databases), :mod:`.editing`
(documents, conflicts, attachments), :mod:`.queries` (views, Mango), :mod:`.actions`
(the form writes of the server and databases). Templates and static files lie beside
them (``templates/``, ``static/``); the JavaScript is small, plain and optional for
reading.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from werkzeug.wrappers import Response

from .. import representation as rep
from ..errors import HTTPError, not_found
from . import actions, browse, csrf, editing, queries
from .api import Api
from .render import Renderer, db_path, serve_static


class Ctx:
    """What a page or an action works with: the request, the API for its user, pages."""

    def __init__(self, request, api: Api, renderer: Renderer):
        self.request = request
        self.api = api
        self.renderer = renderer
        self.args = request.args

    def render(self, template: str, status: int = 200, **values) -> Response:
        return self.renderer.page(self.request, template, status, **values)

    def stream(self, template: str, **values) -> Response:
        return self.renderer.page(self.request, template, stream=True, **values)


def redirect(location: str, cookies: list[str] | None = None) -> Response:
    response = Response(b"", 303, headers={"Location": location, "Cache-Control": "no-store"})
    for cookie in cookies or []:
        response.headers.add("Set-Cookie", cookie)
    return response


class AdminPages:
    """Pages for browsers' GETs, and ``/_utils`` (the start page, static files, actions)."""

    def __init__(self, http, call, secret: bytes):
        self.http = http
        self.call = call
        self.secret = secret
        self.renderer = Renderer(secret)
        self.pages: dict[str, Any] = {**browse.PAGES, **editing.PAGES, **queries.PAGES}
        self.actions = {**actions.ACTIONS, **editing.ACTIONS, **queries.ACTIONS}

    def ctx(self, request) -> Ctx:
        return Ctx(request, Api(self.call, request), self.renderer)

    def faces(self, request, endpoint: str) -> bool:
        """Whether a page answers this request: a browser's GET of a resource that has one."""
        if endpoint not in self.pages or request.method not in ("GET", "HEAD"):
            return False
        try:
            return self.http.kind(request) == rep.HTML
        except HTTPError:               # nothing Settee renders: the endpoint's own answer
            return False

    def page(self, request, endpoint: str, values: Mapping[str, Any]) -> Response:
        return self.pages[endpoint](self.ctx(request), **values)

    def on_utils(self, request, path: str = "") -> Response:
        """``/_utils``: the start page (GET), static files, and the form writes (POST)."""
        path = path.strip("/")
        if request.method == "GET":
            if path.startswith("static/"):
                return serve_static(request, path[len("static/"):])
            if path in ("", "index.html"):
                return browse.databases(self.ctx(request))
            if path == "session":
                return browse.session(self.ctx(request))
            if path == "go":                    # "open a database by name"
                return redirect(db_path(request.args.get("db", "")))
            if path == "new-document":
                return editing.new_document(self.ctx(request))
            raise not_found()
        action = self.actions.get(path)
        if action is None:
            raise not_found(f"no admin action {path!r}")
        self.http.data(request)                 # the form, within the body limit
        csrf.check(request, self.secret)
        return action(self.ctx(request), redirect)

    def error_page(self, request, e: HTTPError) -> Response:
        """An error for a browser: what went wrong (the JSON error too), and a sign-in
        form where signing in may help."""
        headers = {k: v for k, v in e.headers.items() if k != "WWW-Authenticate"}
        return self.renderer.page(request, "error.html", e.status, error=e, body=e.body(),
                                  headers=headers)
