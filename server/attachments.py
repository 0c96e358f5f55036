"""Attachments, as CouchDB has them: inline in ``_attachments`` or one by one.

Stored inline in the document (base64 ``data`` with ``content_type``, ``digest``,
``length`` and ``revpos``), so an attachment is versioned, replicated and compacted
with its document, within the document size limit. Reads answer *stubs*
(``"stub": true`` without the data) unless ``attachments=true``; a write may send
stubs for the attachments it keeps, and the data is carried over from the current
revision (a stub of an attachment the document does not have is 412
``missing_stub``). ``PUT /{db}/{doc}/{name}?rev=`` stores a body of any content type,
``GET`` answers the bytes with their content type, ``DELETE`` removes one.

Names starting with ``_`` are refused (400, as CouchDB), and so are empty ones.
``_local`` documents take no attachments (400, by either route, as CouchDB answers
the standalone one). A document's size counts its attachments: its JSON without the
attachment data plus each attachment's decoded length must stay within
``server_max_document`` (413 ``document_too_large``), so that many attachments, each
under the limit, cannot make a document far over it.
"""
from __future__ import annotations

import base64
import binascii
import hashlib

from werkzeug.wrappers import Response

from settee.store import Doc, Meta, NotFound

from .conditional import etag, if_match, none_match, not_modified
from .errors import HTTPError, bad_request
from .ids import check_docid
from .representation import dump_json

LOCAL_REFUSED = "_local documents do not accept attachments."


def digest_of(data: bytes) -> str:
    return "md5-" + base64.b64encode(hashlib.md5(data).digest()).decode()


def check_name(name) -> None:
    if not isinstance(name, str) or not name:
        raise bad_request("Attachment name must be a non-empty string")
    if name.startswith("_"):
        raise bad_request(f"Attachment name '{name}' starts with prohibited character '_'")


def check_holder(docid: str | None, body: dict) -> None:
    """``_local`` documents are not replicated or versioned: they keep no attachments.
    As CouchDB, a ``_local`` document written with ``_attachments`` is stored without
    them (its attachment URLs are refused, 400)."""
    if isinstance(docid, str) and docid.startswith("_local/"):
        body.pop("_attachments", None)


def document_size(doc: dict) -> int:
    """What ``doc`` counts toward the document size limit: its JSON with attachments
    as stubs (names and content types count too) plus each attachment's decoded
    length (base64 in the request is not charged its third more)."""
    atts = doc.get("_attachments")
    if not isinstance(atts, dict) or not atts:
        return len(dump_json(doc))
    stubbed = {name: {k: v for k, v in att.items() if k != "data"}
               if isinstance(att, dict) else att for name, att in atts.items()}
    lengths = sum(att.get("length", 0) for att in atts.values() if isinstance(att, dict))
    return len(dump_json({**doc, "_attachments": stubbed})) + lengths


def prepare(body: dict, current: dict | None, revpos: int) -> None:
    """Check ``body["_attachments"]``: fill digests, carry stubs over from ``current``."""
    attachments = body.get("_attachments")
    if attachments is None:
        return
    if not isinstance(attachments, dict):
        raise bad_request("_attachments must be an object")
    kept = (current or {}).get("_attachments") or {}
    for name, att in attachments.items():
        check_name(name)
        if not isinstance(att, dict):
            raise bad_request(f"attachment {name!r} must be an object")
        if att.get("stub"):
            old = kept.get(name)
            if old is None or "data" not in old:
                raise HTTPError(412, "missing_stub", f"Invalid attachment stub in "
                                f"{body.get('_id', 'the document')} for {name}")
            attachments[name] = old
            continue
        data = att.get("data")
        if not isinstance(data, str) or not isinstance(att.get("content_type", ""), str):
            raise bad_request(f"attachment {name!r} needs base64 `data` and a `content_type`")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"attachment {name!r}: `data` is not base64") from None
        attachments[name] = {"content_type": att.get("content_type", "application/octet-stream"),
                             "data": data, "digest": digest_of(raw), "length": len(raw),
                             "revpos": revpos}


def stubs(doc: dict, full: bool = False, since: int = 0) -> dict:
    """``doc`` as answered: attachment data replaced by stubs unless ``full``; with
    ``since`` (a generation the client already has), only attachments written after it
    (``revpos`` above it) carry their data, as CouchDB's ``atts_since``."""
    attachments = doc.get("_attachments")
    if not isinstance(attachments, dict):
        return doc
    # With its data an attachment is shown without "length", as CouchDB shows it.
    doc["_attachments"] = {
        name: {k: v for k, v in att.items() if k != "length"}
        if full and att.get("revpos", 0) > since
        else {k: v for k, v in att.items() if k != "data"} | {"stub": True}
        for name, att in attachments.items() if isinstance(att, dict)}
    return doc


def known_generation(doc, revs: list[str]) -> int:
    """The highest generation among ``revs`` that lie on ``doc``'s history (what
    ``atts_since`` names the client already holds); 0 when none does."""
    meta = getattr(doc, "meta", None)
    if meta is None or not meta.revisions:
        return 0
    history = {f"{meta.generation - i}-{h}" for i, h in enumerate(meta.revisions)}
    return max((int(rev.split("-", 1)[0]) for rev in revs if rev in history), default=0)


def as_asked(doc, full: bool, atts_since=None) -> dict:
    """``doc`` with its attachments as ``attachments=true`` and ``atts_since`` ask:
    ``atts_since`` (a JSON array of revs) asks for the data of attachments newer than
    the latest of them the document descends from, stubs for the rest."""
    if atts_since is None:
        return stubs(doc, full)
    if not isinstance(atts_since, list) or not all(isinstance(r, str) for r in atts_since):
        raise bad_request("atts_since must be a JSON array of revisions")
    return stubs(doc, True, known_generation(doc, atts_since))


class AttachmentEndpoints:
    """``/{db}/{docid}/{name}``: an attachment read, or written as a new revision of its
    document (through the write rules)."""

    def __init__(self, http, writes):
        self.http = http
        self.writes = writes

    def on_attachment(self, request, db, docid, name):
        return self.attachment(request, db, docid, name)

    def on_design_attachment(self, request, db, ddoc, name):
        return self.attachment(request, db, "_design/" + ddoc, name)

    def attachment(self, request, db, docid, name):
        if docid == "_local" or docid.startswith("_local/"):
            raise bad_request(LOCAL_REFUSED)       # /db/_local/x/att routes here as "_local"
        check_docid(docid)
        database = self.http.db(db)
        rev = request.args.get("rev")
        if request.method in ("GET", "HEAD"):
            doc = database[(docid, rev)] if rev else database[docid]
            att = (doc.get("_attachments") or {}).get(name)
            if not isinstance(att, dict) or "data" not in att:
                raise NotFound(f"{docid}/{name}", "Document is missing attachment")
            tag = etag(att.get("digest", ""))
            if none_match(request, att.get("digest", "")):
                return not_modified({"ETag": tag})
            return Response(base64.b64decode(att["data"]), content_type=att["content_type"],
                            headers={"ETag": tag, "Cache-Control": "must-revalidate"})
        self.http.check_writable()
        rev = rev or if_match(request)
        try:
            current = database[docid]
        except NotFound:
            current = None
            if rev is not None:
                raise
        body = {k: v for k, v in (current or {}).items() if k not in ("_id", "_rev")}
        attachments = dict(body.get("_attachments") or {})
        if request.method == "DELETE":
            if name not in attachments:
                raise NotFound(f"{docid}/{name}", "Document is missing attachment")
            del attachments[name]
        else:
            check_name(name)
            data = self.http.data(request)
            if len(data) > self.http.max_document:       # could never fit: no need to build it
                raise HTTPError(413, "document_too_large",
                                f"Attachment over the document size limit ({self.http.max_document} "
                                "bytes)")
            generation = int(current["_rev"].split("-")[0]) + 1 if current else 1
            attachments[name] = {"content_type": request.mimetype or "application/octet-stream",
                                 "data": base64.b64encode(data).decode(),
                                 "digest": digest_of(data), "length": len(data),
                                 "revpos": generation}
        if attachments:
            body["_attachments"] = attachments
        else:                   # the last one deleted: no empty _attachments left behind
            body.pop("_attachments", None)
        # the new revision is a write of the whole document: a design document's
        # checks (who may write it, its code) and the size limit with every attachment
        self.writes.check_design(request, database, docid, body)
        self.writes.check_size(body)
        doc = Doc(body, Meta(rev=rev))
        self.writes.write(request, database, docid, doc)
        return self.http.saved(request, db, docid, doc, 201 if request.method == "PUT" else 200)
