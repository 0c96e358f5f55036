"""Documents in the browser: the editor page (JSON or YAML), saving with the edited
revision, a conflict shown and resolved, conflicting revisions (from replication)
compared and one kept, deletion, the revision history, and attachments listed,
downloaded, uploaded and deleted."""
from __future__ import annotations

from typing import Any

from .. import representation as rep
from ..errors import HTTPError, bad_request
from .actions import field
from .render import attachment_path, db_path, doc_path, pretty, query

#: Fields the editor leaves out: the URL, the form and the page show them instead.
META = ("_id", "_rev", "_attachments", "_revs_info", "_conflicts", "_deleted_conflicts",
        "_revisions")
FORMATS = {"json": rep.JSON, "yaml": rep.YAML}


def editable(doc: dict, kind: str) -> str:
    body = {k: v for k, v in doc.items() if k not in META}
    if kind == "yaml":
        return rep.dump_yaml(body).decode() if body else "{}\n"
    return pretty(body)


def document(ctx, db: str, docid: str, text: str | None = None, error: Any = None,
             status: int = 200, theirs: dict | None = None, kind: str | None = None):
    """The editor page of ``docid``; ``text`` and ``error`` when a save was refused."""
    api, args = ctx.api, ctx.args
    kind = kind or (args["format"] if args.get("format") in FORMATS else "json")
    rev = (args.get("rev") or None) if text is None else None
    doc = api.doc(db, docid, rev=rev, revs_info="true", conflicts="true")
    current = doc if rev is None else api.doc(db, docid)
    views = sorted((doc.get("views") or {}).items()) if docid.startswith("_design/") and \
        isinstance(doc.get("views"), dict) else []
    return ctx.render(
        "document.html", status=status, db=db, docid=docid, doc=doc, kind=kind,
        text=editable(doc, kind) if text is None else text, error=error, theirs=theirs,
        old=rev is not None and rev != current.get("_rev"), current_rev=current.get("_rev"),
        conflicts=current.get("_conflicts", []), revs=doc.get("_revs_info", []),
        attachments=sorted((doc.get("_attachments") or {}).items()), views=views)


def design_doc(ctx, db: str, ddoc: str):
    return document(ctx, db, "_design/" + ddoc)


def local_doc(ctx, db: str, docid: str):
    return document(ctx, db, "_local/" + docid)


def new_document(ctx):
    db = ctx.args.get("db", "")
    if not db:
        raise bad_request("Which database? (?db=...)")
    info = ctx.api.db_info(db)
    uuid = ctx.api.get("/_uuids")["uuids"][0]
    return ctx.render("new.html", db=db, info=info, docid=ctx.args.get("id") or uuid,
                      text="{\n  \n}", error=None, kind="json")


def parse(text: str, kind: str) -> dict:
    value = rep.parse_body(text.encode(), FORMATS[kind], 64)
    if not isinstance(value, dict):
        raise bad_request("A document is a JSON object: { ... }")
    return value


# -- writes ------------------------------------------------------------------------
def save(ctx, redirect):
    """Save the editor's text as the revision after the one edited: a 409 shows both."""
    form, api = ctx.request.form, ctx.api
    db, docid = field(ctx, "db"), field(ctx, "id")
    rev, kind = form.get("rev", ""), form.get("format", "json")
    text = form.get("body", "")
    if kind not in FORMATS:
        raise bad_request("format must be json or yaml")
    new = not rev
    try:
        body = parse(text, kind)
        if rev:
            body["_rev"] = rev
            if "_attachments" not in body:      # kept, as the editor does not show them
                edited = api.doc(db, docid, rev=rev)
                if edited.get("_attachments"):
                    body["_attachments"] = {name: {**stub, "stub": True} for name, stub
                                            in edited["_attachments"].items()}
        body.pop("_id", None)
        api.put(doc_path(db, docid), body)
    except HTTPError as e:
        if e.status not in (400, 409, 403, 413, 415) and not (e.status == 404 and new):
            raise
        if new:
            return ctx.render("new.html", status=e.status, db=db, docid=docid, text=text,
                              error=e, kind=kind, info=api.db_info(db))
        theirs = api.doc(db, docid) if e.status == 409 else None
        return document(ctx, db, docid, text=text, error=e, status=e.status, theirs=theirs,
                        kind=kind)
    return redirect(query(doc_path(db, docid), format=kind if kind != "json" else None,
                          saved="1"))


def delete(ctx, redirect):
    db, docid, rev = field(ctx, "db"), field(ctx, "id"), field(ctx, "rev")
    ctx.api.delete(doc_path(db, docid), rev=rev)
    return redirect(db_path(db))


def resolve(ctx, redirect):
    """Keep one of a document's conflicting revisions: its body becomes the winner's
    next revision, and every other leaf is deleted (CouchDB's way of resolving)."""
    api = ctx.api
    db, docid, keep = field(ctx, "db"), field(ctx, "id"), field(ctx, "keep")
    current = api.doc(db, docid, conflicts="true")
    losers = list(current.get("_conflicts", []))
    if keep != current["_rev"]:
        if keep not in losers:
            raise bad_request(f"{keep} is not one of the document's conflicting revisions")
        chosen = api.doc(db, docid, rev=keep)
        chosen["_rev"] = current["_rev"]
        if chosen.get("_attachments"):
            chosen.pop("_attachments")          # the kept body; the winner's attachments go
        api.put(doc_path(db, docid), chosen)
    for rev in losers:
        api.delete(doc_path(db, docid), rev=rev)
    return redirect(doc_path(db, docid))


def upload(ctx, redirect):
    db, docid = field(ctx, "db"), field(ctx, "id")
    rev = ctx.request.form.get("rev", "")
    sent = ctx.request.files.get("file")
    if sent is None or not sent.filename:
        raise bad_request("Choose a file to upload")
    name = ctx.request.form.get("name") or sent.filename
    try:
        data = sent.read()
    finally:
        sent.close()
    ctx.api.send("PUT", attachment_path(db, docid, name), {"rev": rev} if rev else {},
                 raw=data, content_type=sent.mimetype or "application/octet-stream")
    return redirect(doc_path(db, docid))


def delete_attachment(ctx, redirect):
    db, docid = field(ctx, "db"), field(ctx, "id")
    name, rev = field(ctx, "name"), field(ctx, "rev")
    ctx.api.delete(attachment_path(db, docid, name), rev=rev)
    return redirect(doc_path(db, docid))


PAGES = {"document": document, "design_doc": design_doc, "local_doc": local_doc}
ACTIONS = {"save": save, "delete": delete, "resolve": resolve, "upload": upload,
           "delete-attachment": delete_attachment}
