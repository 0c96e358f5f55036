"""Pages of the server and its databases: the database list, a database (its
documents paged by key, searched by id prefix, design documents apart), its
``_changes`` (live through an event source), ``_security``, ``_active_tasks`` and
``_session``."""
from __future__ import annotations

from ..errors import HTTPError
from .paging import dumps, paged
from .render import db_path

DBS_PER_PAGE = 100
USERS_DB = "_users"


def databases(ctx):
    """The database list, with document counts and sizes; paged by name."""
    api, args = ctx.api, ctx.args
    start = args.get("start") or None
    try:
        names = api.get("/_all_dbs", startkey=dumps(start) if start else None,
                        limit=DBS_PER_PAGE + 1)
    except HTTPError as e:
        if e.status not in (401, 403):
            raise
        return ctx.render("databases.html", status=e.status, rows=[], denied=e, next=None)
    rows = []
    for name in names[:DBS_PER_PAGE]:
        try:
            rows.append(api.db_info(name))
        except HTTPError as e:
            rows.append({"db_name": name, "error": e.reason})
    following = names[DBS_PER_PAGE] if len(names) > DBS_PER_PAGE else None
    return ctx.render("databases.html", rows=rows, next=following, denied=None, start=start)


def root(ctx):
    return databases(ctx)


def all_dbs(ctx):
    return databases(ctx)


def database(ctx, db: str, design: bool = False):
    """A database: its documents, a page at a time, by key; its design documents apart."""
    api, args = ctx.api, ctx.args
    info = api.db_info(db)
    prefix = "_design/" if design else (args.get("prefix") or None)
    path = db_path(db) + ("/_design_docs" if design else "/_all_docs")
    window = paged(lambda q: api.get(path, **q), args, prefix=None if design else prefix)
    designs = window.rows if design else api.get(db_path(db) + "/_design_docs",
                                                 limit=200)["rows"]
    return ctx.render("database.html", db=db, info=info, window=window, designs=designs,
                      prefix=prefix if not design else "", design=design,
                      base=path, users=db == USERS_DB)


def all_docs(ctx, db: str):
    return database(ctx, db)


def design_docs(ctx, db: str):
    return database(ctx, db, design=True)


def changes(ctx, db: str):
    """The latest changes, newest first; the page follows new ones live (JavaScript)."""
    api = ctx.api
    info = api.db_info(db)
    limit = ctx.args.get("limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        limit = "50"
    feed = api.get(db_path(db) + "/_changes", descending="true", limit=limit)
    return ctx.render("changes.html", db=db, info=info, results=feed.get("results", []),
                      last_seq=info.get("update_seq"))


def security(ctx, db: str):
    api = ctx.api
    info = api.db_info(db)
    current = api.get(db_path(db) + "/_security") or {}
    return ctx.render("security.html", db=db, info=info, security=current)


def active_tasks(ctx):
    tasks = ctx.api.get("/_active_tasks")
    return ctx.render("tasks.html", tasks=tasks)


def replication(ctx, **_):
    """Replication jobs (``_replicator`` documents, as the scheduler reports them) and
    a form that starts one."""
    docs = ctx.api.get("/_scheduler/docs")
    return ctx.render("replication.html", docs=docs.get("docs", []))


def session(ctx, **_):
    info = ctx.api.get("/_session")
    return ctx.render("session.html", session=info, next=ctx.args.get("next", ""))


PAGES = {"root": root, "all_dbs": all_dbs, "database": database, "all_docs": all_docs,
         "design_docs": design_docs, "changes": changes, "security": security,
         "active_tasks": active_tasks, "session": session, "scheduler_docs": replication}
