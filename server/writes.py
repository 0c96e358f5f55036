"""The rules every write of a document obeys, whatever route it takes.

A document reaches the store by PUT, POST, DELETE, COPY, ``_bulk_docs`` (either
``new_edits``), an attachment's PUT or DELETE, an update function, or Mango's
``_index``. Each route calls the same :class:`WriteRules` before writing: who may
write a design document and whether its code compiles (:func:`require_code_author`),
``_users``' rules (auth.py), attachments checked and the document measured with them.
Then every route writes through :meth:`WriteRules.write` (one document) or
:meth:`WriteRules.validate` and its own batched writes (``_bulk_docs``): the design
documents' ``validate_doc_update`` functions (views/validate.py) run there, and
:meth:`WriteRules.design_saved` after a design document's write.
"""
from __future__ import annotations

from collections.abc import Callable

from settee.store import Doc, Meta, new_id
from settee.views import validate as validation
from settee.views.indexes import indexes_of

from . import attachments
from .auth import USERS_DB
from .errors import HTTPError, from_store

#: Design document languages whose code cannot reach the server: database admins may
#: write these (JavaScript runs in a V8 sandbox with no file, network or process
#: access, bounded in time and memory: views/javascript.py; "query" holds Mango index
#: fields). Any other language, Python above all, is code that runs as the server's
#: user.
DB_ADMIN_LANGUAGES = frozenset({"javascript", "query"})

CODE_AUTHOR_ONLY = ("Only server admins may save Python design documents: Python code runs "
                    "unsandboxed as the server")


def require_code_author(user, body: dict) -> None:
    """403 unless ``user`` may save design document ``body`` as it would run.

    Python in a design document cannot be sandboxed in-process: a database admin's
    view could read the data directory (the cookie secret) and become a server admin.
    So a design document in any language but :data:`DB_ADMIN_LANGUAGES` is written
    by server admins only, whether new, changed, copied, replicated or given an
    attachment. Every route that writes a design document calls this (through
    ``check_design``), before its code is compiled: compiling runs it. A deletion
    (``"_deleted": true``, as the store reads it) runs nothing and is the database
    admins' right, whatever body the client sends along with it.
    """
    if user.is_admin or body.get("_deleted") is True:
        return
    language = body.get("language", "javascript")
    if not isinstance(language, str) or language not in DB_ADMIN_LANGUAGES:
        raise HTTPError(403, "forbidden", CODE_AUTHOR_ONLY)


class WriteRules:
    """The checks before a document write and the work after it; one per application."""

    def __init__(self, auth, max_document: int):
        self.auth = auth
        self.max_document = max_document
        #: database name -> check(request, database, docid, body) for the documents of
        #: a system database with rules of its own (``_replicator``: replication.py);
        #: ``_users``' are the auth module's (check_user_doc).
        self.document_rules: dict[str, Callable] = {}

    def check_design(self, request, database, docid: str, body: dict) -> None:
        """A write of a design document, by any route: database admins only; Python
        only from server admins (require_code_author), and its views must compile."""
        if not docid.startswith("_design/"):
            return
        self.auth.require_db_admin(request.user, database)
        require_code_author(request.user, body)
        indexes_of(database).check_design(docid, body)

    @staticmethod
    def design_saved(database, docid: str) -> None:
        """After a design document's write: its new views build in the background."""
        indexes_of(database).design_saved(docid)

    def check_user_doc(self, request, database, docid: str, body: dict) -> None:
        """In ``_users``: roles only by admins, plain passwords hashed (auth.py); in
        another system database, its own rules (:attr:`document_rules`)."""
        rule = self.document_rules.get(database.name)
        if rule is not None:
            rule(request, database, docid, body)
            return
        if database.name != USERS_DB:
            return
        current = database.get(docid)
        self.auth.prepare_user_doc(request.user, docid, body, current)

    def prepare_attachments(self, database, docid: str | None, body: dict,
                            rev: str | None = None, new_edits: bool = True) -> None:
        """Check ``body``'s attachments (names, data; stubs from the current revision
        when ``rev`` or ``_rev`` names one) and then its size with them: 413 if over."""
        if "_attachments" not in body:
            return
        attachments.check_holder(docid, body)
        rev = rev or body.get("_rev")
        current = database.get(docid) if new_edits and docid is not None and rev else None
        revpos = int(current["_rev"].split("-")[0]) + 1 if current else 1
        attachments.prepare(body, current, revpos)
        self.check_size(body)

    def check_size(self, doc) -> None:
        """413 unless ``doc`` with its attachments fits (attachments.document_size)."""
        if attachments.document_size(doc) > self.max_document:
            raise HTTPError(413, "document_too_large",
                            f"Document over {self.max_document} bytes with its attachments")

    # -- validate_doc_update, and the write itself ------------------------------------
    def validate(self, request, database, docs: list[tuple[str, dict]]
                 ) -> list[HTTPError | None]:
        """For each ``(docid, doc)`` about to be written: None if the database's
        ``validate_doc_update`` functions let it through, else the error to answer.
        Not validated, as in CouchDB: ``_local/`` documents, and server admins'
        writes of design documents. One call per design document for the batch."""
        out: list[HTTPError | None] = [None] * len(docs)
        user = request.user
        wanted = [i for i, (docid, _) in enumerate(docs) if not docid.startswith("_local/")
                  and not (user.is_admin and docid.startswith("_design/"))]
        if not wanted:
            return out
        ddocs = validation.validating_design_docs(database)
        if not ddocs:
            return out
        items = [(new_doc(*docs[i]), old_doc(database, docs[i][0])) for i in wanted]
        user_ctx = {"db": database.name, **user.ctx()}
        errors = validation.validate(ddocs, items, user_ctx, self.auth.security(database),
                                     getattr(database, "settings", None))
        for i, error in zip(wanted, errors):
            if error is not None:
                out[i] = from_store(error)
        return out

    def write(self, request, database, docid: str | None, doc: Doc) -> Doc:
        """Write ``doc`` as ``docid`` (a new id when None) once the validations pass it
        (:meth:`validate`); its revision is in ``doc.meta``. A design document's views
        then build (:meth:`design_saved`)."""
        if docid is None:
            given = doc.get("_id")
            docid = given if isinstance(given, str) else new_id()
        error = self.validate(request, database, [(docid, doc)])[0]
        if error is not None:
            raise error
        doc.pop("_id", None)
        database[docid] = doc
        doc.meta.id = docid
        if docid.startswith("_design/"):
            self.design_saved(database, docid)
        return doc

    def delete(self, request, database, docid: str, rev: str | None) -> Doc:
        """Delete revision ``rev`` of ``docid`` (a tombstone), validated as a write."""
        return self.write(request, database, docid, Doc({}, Meta(rev=rev, deleted=True)))


def new_doc(docid: str, doc: dict) -> dict:
    """``newDoc`` as a validation sees it: the body with ``_id``, the ``_rev`` it names,
    ``_deleted: true`` for a deletion, attachments as stubs."""
    meta = getattr(doc, "meta", None)
    body = {k: v for k, v in doc.items() if k not in ("_id", "_rev")}
    out: dict = {"_id": docid}
    rev = (meta.rev if meta is not None else None) or doc.get("_rev")
    if isinstance(rev, str) and rev != "*":
        out["_rev"] = rev
    out.update(body)
    if (meta is not None and meta.deleted) or doc.get("_deleted") is True:
        out["_deleted"] = True
    if isinstance(out.get("_attachments"), dict):
        attachments.stubs(out)
    return out


def old_doc(database, docid: str) -> dict | None:
    """``oldDoc``: the current revision (None for a new or deleted document)."""
    current = database.get(docid)
    if current is None:
        return None
    out = dict(current)
    if isinstance(out.get("_attachments"), dict):
        attachments.stubs(out)
    return out
