"""Queries in the browser: a view with its parameters (key ranges, reduce, group
level), paged by key; Mango on the ``_index`` page: the indexes listed, created and
deleted, a ``_find`` run (paged by bookmark) or explained."""
from __future__ import annotations

from urllib.parse import quote

import orjson

from ..errors import HTTPError
from .actions import field
from .paging import paged
from .render import db_path, doc_path

DEFAULT_QUERY = '{\n  "selector": {"_id": {"$gt": null}},\n  "limit": 25\n}'


def view_args(q: dict) -> dict:
    """The form's group level as the API says it: ``exact`` is ``group=true``."""
    q = dict(q)
    if q.get("group_level") == "exact":
        del q["group_level"]
        q["group"] = "true"
    return q


def view_page(ctx, db: str, path: str, title: str, definition: dict | None, ddoc: str | None):
    api, args = ctx.api, ctx.args
    reducible = bool(definition and definition.get("reduce")) if definition else True
    error = None
    try:
        window = paged(lambda q: api.get(path, **view_args(q)), args)
    except HTTPError as e:
        if e.status >= 500 or e.status in (401, 403, 404):
            raise
        window, error = None, e
    return ctx.render("view.html", status=error.status if error else 200, db=db, title=title,
                      base=path, window=window, error=error, definition=definition,
                      ddoc=ddoc, reducible=reducible, args=args)


def design_view(ctx, db: str, ddoc: str, view: str):
    design = ctx.api.doc(db, "_design/" + ddoc)
    definition = (design.get("views") or {}).get(view)
    path = f"{doc_path(db, '_design/' + ddoc)}/_view/{quote(view, safe='')}"
    return view_page(ctx, db, path, f"_design/{ddoc}/_view/{view}",
                     definition if isinstance(definition, dict) else None, "_design/" + ddoc)


def module_view(ctx, db: str, view: str):
    return view_page(ctx, db, f"{db_path(db)}/_view/{quote(view, safe='')}", f"_view/{view}",
                     None, None)


def mango(ctx, db: str):
    """``_index``: the indexes, a form to make one, and a Mango query run or explained."""
    api, args = ctx.api, ctx.args
    info = api.db_info(db)
    indexes = api.get(db_path(db) + "/_index").get("indexes", [])
    text = args.get("q") or DEFAULT_QUERY
    result = explained = error = None
    if args.get("q"):
        try:
            body = orjson.loads(text)
            if not isinstance(body, dict):
                raise HTTPError(400, "bad_request", "A Mango query is a JSON object")
            if args.get("bookmark"):
                body["bookmark"] = args["bookmark"]
            if args.get("explain"):
                explained = api.post(db_path(db) + "/_explain", body)
            else:
                body.setdefault("execution_stats", True)
                result = api.post(db_path(db) + "/_find", body)
        except orjson.JSONDecodeError as e:
            error = HTTPError(400, "bad_request", f"The query is not JSON: {e}")
        except HTTPError as e:
            if e.status >= 500 or e.status in (401, 403, 404):
                raise
            error = e
    columns: list[str] = []
    for doc in (result or {}).get("docs", [])[:50]:
        columns += [k for k in doc if k not in columns and k not in ("_id", "_rev")]
    return ctx.render("mango.html", status=error.status if error else 200, db=db, info=info,
                      indexes=indexes, text=text, result=result, explained=explained,
                      error=error, columns=columns[:8])


# -- writes ------------------------------------------------------------------------
def create_index(ctx, redirect):
    db = field(ctx, "db")
    form = ctx.request.form
    fields = [f for f in form.get("fields", "").replace(",", " ").split() if f]
    body: dict = {"index": {"fields": fields}, "type": "json"}
    if form.get("name"):
        body["name"] = form["name"]
    if form.get("ddoc"):
        body["ddoc"] = form["ddoc"]
    ctx.api.post(db_path(db) + "/_index", body)
    return redirect(db_path(db) + "/_index")


def drop_index(ctx, redirect):
    db, ddoc, name = field(ctx, "db"), field(ctx, "ddoc"), field(ctx, "name")
    ddoc = ddoc[len("_design/"):] if ddoc.startswith("_design/") else ddoc
    ctx.api.delete(f"{db_path(db)}/_index/{quote(ddoc, safe='')}/json/{quote(name, safe='')}")
    return redirect(db_path(db) + "/_index")


PAGES = {"design_view": design_view, "module_view": module_view, "index": mango}
ACTIONS = {"create-index": create_index, "drop-index": drop_index}
