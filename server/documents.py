"""Document endpoints: ``GET|HEAD|PUT|DELETE /{db}/{docid}``, ``POST /{db}``, design and
``_local`` documents, with CouchDB's revision, ETag and conditional-request rules."""
from __future__ import annotations

import re
import uuid

from werkzeug.wrappers import Response

from settee.store import REPLICATOR, Doc, Meta, NotFound, new_id, strip_credentials

from . import attachments
from .auth import HASH_FIELDS, USERS_DB
from .conditional import etag, http_date, if_match, none_match, not_modified, not_modified_since
from .errors import HTTPError, bad_request
from .ids import check_docid
from .params import Params
from .representation import dump_json

#: A revision: its generation, a dash, its id (CouchDB's ``couch_doc:parse_rev``).
REV = re.compile(r"[0-9]+-.+", re.DOTALL)
SPECIAL_FIELDS = {"_id", "_rev", "_deleted", "_revisions", "_attachments", "_conflicts",
                  "_deleted_conflicts", "_local_seq", "_revs_info"}


#: Names under /{db}/ that are endpoints, not documents: another method on them is a 405.
ENDPOINT_NAMES = {"_all_docs", "_design_docs", "_bulk_docs", "_bulk_get", "_revs_diff",
                  "_missing_revs", "_changes", "_compact", "_ensure_full_commit", "_revs_limit",
                  "_find", "_index", "_explain", "_security", "_view", "_purge",
                  "_purged_infos_limit", "_shards", "_local_docs"}


def check_rev(rev: str | None) -> str | None:
    """``rev`` if it is a revision as CouchDB parses one (``N-...``), else 400."""
    if rev is not None and not REV.fullmatch(rev):
        raise bad_request(f"Invalid rev format: {rev[:80]!r}")
    return rev


def check_fields(doc: dict) -> None:
    """400 for a top-level ``_`` field CouchDB does not know; ``_replication_*`` fields
    are the replicator's own (its state in ``_replicator`` documents and checkpoints)."""
    for name in doc:
        if isinstance(name, str) and name.startswith("_") and name not in SPECIAL_FIELDS \
                and not name.startswith("_replication_"):
            raise HTTPError(400, "doc_validation", f"Bad special document member: {name}")


def decorate(database, doc: Doc, p: Params, atts_since=None) -> dict:
    """Add what ``revs``, ``revs_info``, ``conflicts``, ``deleted_conflicts``,
    ``meta`` (the last three and revs_info) and ``local_seq`` ask for."""
    meta = doc.meta
    every = p.bool("meta")
    if p.bool("revs") and meta.revisions:
        doc["_revisions"] = {"start": meta.generation, "ids": meta.revisions}
    if (p.bool("revs_info") or every) and meta.revisions:
        doc["_revs_info"] = revs_info(doc)
    if (p.bool("conflicts") or every) and meta.conflicts:
        doc["_conflicts"] = meta.conflicts
    if (p.bool("deleted_conflicts") or every) and meta.tree is not None:
        if deleted := meta.tree.deleted_conflicts():
            doc["_deleted_conflicts"] = deleted
    if p.bool("local_seq") and meta.seq is not None:
        doc["_local_seq"] = str(meta.seq)
    if atts_since is None:
        atts_since = p.json("atts_since")
    return attachments.as_asked(doc, p.bool("attachments"), atts_since)


def with_latest(database, docid: str, revs: list[str]) -> list[str]:
    """``latest=true``: each of ``revs`` replaced by the leaves that descend from it
    (itself when it is one); a revision the tree lacks stays, to be answered missing."""
    out: list[str] = []
    for rev in revs:
        for leaf in database.latest(docid, rev) or [rev]:
            if leaf not in out:
                out.append(leaf)
    return out


def multipart_revisions(results: list[dict]) -> Response:
    """``open_revs`` as CouchDB answers ``Accept: multipart/mixed`` (its replicator
    asks so): one part per revision, the document as JSON (attachments inline, as
    ``attachments=true`` asked), or ``{"missing": rev}`` marked as an error."""
    boundary = uuid.uuid4().hex
    parts = []
    for result in results:
        error = "ok" not in result
        body = dump_json(result if error else result["ok"])
        kind = 'application/json; error="true"' if error else "application/json"
        parts.append(f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + body
                     + b"\r\n")
    parts.append(f"--{boundary}--".encode())
    return Response(b"".join(parts), content_type=f'multipart/mixed; boundary="{boundary}"')


def revs_info(doc: Doc) -> list[dict]:
    """This revision's path, each with whether its body is kept (the tree knows)."""
    meta, tree = doc.meta, doc.meta.tree
    if tree is None or meta.rev is None or meta.rev not in tree:
        return [{"rev": meta.rev, "status": "deleted" if meta.deleted else "available"}]
    return [{"rev": rev, "status": tree.status(rev)} for rev in tree.path(meta.rev)]


class DocumentEndpoints:
    """One document at a time: reads with CouchDB's parameters, and writes through the
    write rules (:class:`.writes.WriteRules`); ``POST /{db}`` comes here from the
    database endpoints."""

    def __init__(self, http, writes, auth):
        self.http = http
        self.writes = writes
        self.auth = auth

    def on_document(self, request, db, docid):
        if docid in ENDPOINT_NAMES:
            raise HTTPError(405, "method_not_allowed", f"{docid} does not take this method")
        return self.document(request, db, check_docid(docid))

    def on_design_doc(self, request, db, ddoc):
        return self.document(request, db, "_design/" + ddoc)

    def on_local_doc(self, request, db, docid):
        return self.document(request, db, "_local/" + docid)

    def document(self, request, db, docid):
        method = request.method
        if method in ("GET", "HEAD"):
            return self.get_document(request, db, docid)
        if method == "PUT":
            return self.put_document(request, db, docid)
        if method == "DELETE":
            return self.delete_document(request, db, docid)
        return self.copy_document(request, db, docid)

    # -- reading ----------------------------------------------------------------------
    def get_document(self, request, db, docid):
        database = self.http.db(db)
        p = Params(request.args)
        if "open_revs" in request.args:
            return self.open_revs(request, database, docid, p)
        rev = check_rev(p.text("rev"))
        if rev and p.bool("latest"):
            rev = with_latest(database, docid, [rev])[0]
        doc = database[(docid, rev)] if rev else database[docid]
        meta = doc.meta
        headers = {"ETag": etag(meta.rev), "Cache-Control": "must-revalidate"}
        if meta.timestamp:
            headers["Last-Modified"] = http_date(int(meta.timestamp))
        if none_match(request, meta.rev) or not_modified_since(request, meta.timestamp):
            return not_modified(headers)
        if request.args:                # revs, revs_info, conflicts, attachments, ...
            decorate(database, doc, p)
        else:
            attachments.stubs(doc)
        return self.http.respond(request, self.shown(request, database, doc), headers=headers)

    def shown(self, request, database, doc: dict) -> dict:
        """A document as its reader may see it: a ``_users`` document without its
        password hash unless to server admins; a ``_replicator`` document of another
        user without its credentials unless to the database's admins (CouchDB's rules)."""
        user = request.user
        if database.name == USERS_DB and not user.is_admin:
            for field in HASH_FIELDS:
                doc.pop(field, None)
        elif database.name == REPLICATOR and doc.get("owner") != user.name \
                and not self.auth.is_db_admin(user, database):
            return strip_credentials(doc)
        return doc

    def open_revs(self, request, database, docid, p: Params):
        wanted = p.text("open_revs")
        if wanted == "all":
            revs = [leaf.rev for leaf in database.leaves(docid)]    # deleted ones too
            if not revs:
                raise HTTPError(404, "not_found", "missing")
        else:
            revs = p.json("open_revs")
            if not isinstance(revs, list) or not all(isinstance(r, str) for r in revs):
                raise bad_request("open_revs must be \"all\" or a JSON array of revisions")
            for rev in revs:
                check_rev(rev)                      # CouchDB: 400 for one it cannot parse
            if p.bool("latest"):
                revs = with_latest(database, docid, revs)
        results: list[dict] = []
        for rev in revs:
            try:
                results.append({"ok": self.shown(request, database,
                                                 decorate(database, database[(docid, rev)], p))})
            except NotFound:
                results.append({"missing": rev})
        if "multipart/mixed" in request.headers.get("Accept", ""):
            return multipart_revisions(results)
        return self.http.respond(request, results)

    # -- writing ----------------------------------------------------------------------
    def put_document(self, request, db, docid):
        self.http.check_writable()
        database = self.http.db(db)
        body = self.http.document_body(request)
        check_fields(body)
        p = Params(request.args)
        rev = self.base_revision(request, body, p)
        doc = Doc(body, Meta(rev=rev, new_edits=p.bool("new_edits", True)))
        doc.pop("_id", None)
        self.writes.check_design(request, database, docid, doc)
        self.writes.check_user_doc(request, database, docid, doc)
        self.writes.prepare_attachments(database, docid, doc, rev)
        self.writes.write(request, database, docid, doc)
        if p.text("batch") == "ok":
            return self.http.accepted(request, docid)
        return self.http.saved(request, db, docid, doc, 201)

    def post_document(self, request, db):
        self.http.check_writable()
        database = self.http.db(db)
        body = self.http.document_body(request)
        check_fields(body)
        if "_id" not in body:
            if database.name == USERS_DB:
                raise bad_request("documents in _users need an _id")
            body["_id"] = new_id()      # before the rules: a new id is checked as any other
        docid = check_docid(body["_id"])
        self.writes.check_design(request, database, docid, body)
        self.writes.check_user_doc(request, database, docid, body)
        self.writes.prepare_attachments(database, docid, body)
        doc = self.writes.write(request, database, docid, Doc(body))
        if request.args.get("batch") == "ok":
            return self.http.accepted(request, doc.meta.id)
        return self.http.saved(request, db, doc.meta.id, doc, 201)

    def delete_document(self, request, db, docid):
        self.http.check_writable()
        database = self.http.db(db)
        rev = check_rev(Params(request.args).text("rev") or if_match(request))
        if docid.startswith("_design/"):
            self.auth.require_db_admin(request.user, database)
        doc = self.writes.delete(request, database, docid, rev)
        return self.http.saved(request, db, docid, doc, 200)

    def copy_document(self, request, db, docid):
        self.http.check_writable()
        database = self.http.db(db)
        destination = request.headers.get("Destination")
        if not destination:
            raise bad_request("COPY needs a Destination header")
        target, _, query = destination.partition("?")
        target = check_docid(target)
        rev = Params(request.args).text("rev")
        source = database[(docid, rev)] if rev else database[docid]
        body = {k: v for k, v in source.items() if k not in ("_id", "_rev", "_deleted")}
        target_rev = query[4:] if query.startswith("rev=") else None
        # a copy is a write of the target: the same checks as a PUT of it (a design
        # document runs code, so only admins may make one, even by copying)
        self.writes.check_design(request, database, target, body)
        self.writes.check_user_doc(request, database, target, body)
        attachments.check_holder(target, body)
        self.writes.check_size(body)      # the source may predate a lower limit
        doc = Doc(body, Meta(rev=target_rev))
        self.writes.write(request, database, target, doc)
        return self.http.saved(request, db, target, doc, 201)

    @staticmethod
    def base_revision(request, body: dict, p: Params) -> str | None:
        revs = {r for r in (body.get("_rev"), p.text("rev"), if_match(request)) if r}
        if len(revs) > 1:
            raise bad_request("Document rev from request body and query string have "
                              "different values")
        rev = revs.pop() if revs else None
        if rev is not None and not isinstance(rev, str):
            raise bad_request("_rev must be a string")
        return check_rev(rev)
