"""The form writes of the server and its databases, posted to ``/_utils/<action>``:
signing in and out, creating and deleting a database (the name typed again to
confirm), compaction, ``_security``, and new users. Each calls the JSON API and
redirects (303) to the page showing the result; the CSRF checks come first
(:func:`.csrf.check`, in :meth:`AdminPages.on_utils`)."""
from __future__ import annotations

from ..errors import HTTPError, bad_request
from .render import db_path, doc_path

USERS_DB = "_users"
REPLICATOR = "_replicator"


def field(ctx, name: str, required: bool = True) -> str:
    value = ctx.request.form.get(name, "")
    if required and not value:
        raise bad_request(f"The form's {name!r} is empty")
    return value


def local(target: str, default: str = "/_utils") -> str:
    """A path on this server to go to next (never another site's URL)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def words(text: str) -> list[str]:
    """Names or roles, as typed: separated by commas or white space."""
    return [w for w in text.replace(",", " ").split() if w]


def sign_in(ctx, redirect):
    ctx.api.post("/_session", {"name": field(ctx, "name"), "password": field(ctx, "password")})
    cookie = ctx.api.headers.get("Set-Cookie")
    return redirect(local(ctx.request.form.get("next", "")), [cookie] if cookie else [])


def sign_out(ctx, redirect):
    ctx.api.delete("/_session")
    cookie = ctx.api.headers.get("Set-Cookie")
    return redirect("/_utils/session", [cookie] if cookie else [])


def create_database(ctx, redirect):
    name = field(ctx, "name").strip()
    ctx.api.put(db_path(name), None)
    return redirect(db_path(name))


def delete_database(ctx, redirect):
    name = field(ctx, "db")
    if ctx.request.form.get("confirm", "") != name:
        raise bad_request("To delete a database, type its name again to confirm")
    ctx.api.delete(db_path(name))
    return redirect("/_utils")


def compact(ctx, redirect):
    db = field(ctx, "db")
    ctx.api.post(db_path(db) + "/_compact", {})
    return redirect(db_path(db))


def save_security(ctx, redirect):
    db = field(ctx, "db")
    form = ctx.request.form
    body = {part: {"names": words(form.get(f"{part}_names", "")),
                   "roles": words(form.get(f"{part}_roles", ""))}
            for part in ("admins", "members")}
    ctx.api.put(db_path(db) + "/_security", body)
    return redirect(db_path(db) + "/_security")


def create_user(ctx, redirect):
    name = field(ctx, "name").strip()
    docid = "org.couchdb.user:" + name
    body = {"_id": docid, "name": name, "type": "user",
            "roles": words(ctx.request.form.get("roles", "")),
            "password": field(ctx, "password")}
    try:
        try:
            ctx.api.put(doc_path(USERS_DB, docid), body)
        except HTTPError as e:
            if e.status != 404:
                raise
            ctx.api.put(db_path(USERS_DB), None)       # none yet (an admin party's server)
            ctx.api.put(doc_path(USERS_DB, docid), body)
    except HTTPError as e:
        if e.status == 409:
            raise HTTPError(409, "conflict", f"The user {name!r} exists already") from None
        raise
    return redirect(db_path(USERS_DB))


def replicate(ctx, redirect):
    """Start a replication: a ``_replicator`` document (the database made first if
    there is none); the scheduler runs it and reports it at ``/_scheduler/docs``."""
    form = ctx.request.form
    body = {"source": field(ctx, "source").strip(), "target": field(ctx, "target").strip(),
            "continuous": form.get("continuous") == "true",
            "create_target": form.get("create_target") == "true"}
    docid = form.get("id", "").strip()
    try:
        ctx.api.get(db_path(REPLICATOR))
    except HTTPError as e:
        if e.status != 404:
            raise
        ctx.api.put(db_path(REPLICATOR), None)
    if docid:
        ctx.api.put(doc_path(REPLICATOR, docid), body)
    else:
        ctx.api.post(db_path(REPLICATOR), body)
    return redirect("/_scheduler/docs")


ACTIONS = {"sign-in": sign_in, "sign-out": sign_out, "create-database": create_database,
           "delete-database": delete_database, "compact": compact,
           "security": save_security, "create-user": create_user, "replicate": replicate}
