"""Attachments, as CouchDB has them: inline in ``_attachments`` or one by one.

Stored inline in the document (base64 ``data`` with ``content_type``, ``digest``,
``length`` and ``revpos``), so an attachment is versioned, replicated and compacted
with its document, within the document size limit. Reads answer *stubs*
(``"stub": true`` without the data) unless ``attachments=true``; a write may send
stubs for the attachments it keeps, and the data is carried over from the current
revision (a stub of an attachment the document does not have is 412
``missing_stub``). ``PUT /{db}/{doc}/{name}?rev=`` stores a body of any content type,
``GET`` answers the bytes with their content type, ``DELETE`` removes one.
"""
from __future__ import annotations

import base64
import binascii
import hashlib

from werkzeug.wrappers import Response

from settee.store.document import Doc, Meta
from settee.store.exceptions import NotFound

from .errors import HTTPError, bad_request


def digest_of(data: bytes) -> str:
    return "md5-" + base64.b64encode(hashlib.md5(data).digest()).decode()


def prepare(body: dict, current: dict | None, revpos: int) -> None:
    """Check ``body["_attachments"]``: fill digests, carry stubs over from ``current``."""
    attachments = body.get("_attachments")
    if attachments is None:
        return
    if not isinstance(attachments, dict):
        raise bad_request("_attachments must be an object")
    kept = (current or {}).get("_attachments") or {}
    for name, att in attachments.items():
        if not isinstance(att, dict) or not name:
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


def stubs(doc: dict, full: bool = False) -> dict:
    """``doc`` as answered: attachment data replaced by stubs unless ``full``."""
    attachments = doc.get("_attachments")
    if full or not isinstance(attachments, dict):
        return doc
    doc["_attachments"] = {name: {k: v for k, v in att.items() if k != "data"} | {"stub": True}
                           for name, att in attachments.items() if isinstance(att, dict)}
    return doc


class AttachmentEndpoints:
    def on_attachment(self, request, db, docid, name):
        return self.attachment(request, db, docid, name)

    def on_design_attachment(self, request, db, ddoc, name):
        return self.attachment(request, db, "_design/" + ddoc, name)

    def attachment(self, request, db, docid, name):
        database = self.db(db)
        rev = request.args.get("rev")
        if request.method in ("GET", "HEAD"):
            doc = database[(docid, rev)] if rev else database[docid]
            att = (doc.get("_attachments") or {}).get(name)
            if not isinstance(att, dict) or "data" not in att:
                raise NotFound(f"{docid}/{name}", "Document is missing attachment")
            etag = f'"{att.get("digest", "")}"'
            if request.headers.get("If-None-Match", "").strip() == etag:
                return self.not_modified({"ETag": etag})
            return Response(base64.b64decode(att["data"]), content_type=att["content_type"],
                            headers={"ETag": etag, "Cache-Control": "must-revalidate"})
        self.check_writable()
        rev = rev or request.headers.get("If-Match", "").strip('"') or None
        try:
            current = database[docid]
        except NotFound:
            current = None
            if rev is not None:
                raise
        if docid.startswith("_design/"):        # creating one is a design write too
            self.auth.require_db_admin(request.user, database)
        body = {k: v for k, v in (current or {}).items() if k not in ("_id", "_rev")}
        attachments = dict(body.get("_attachments") or {})
        if request.method == "DELETE":
            if name not in attachments:
                raise NotFound(f"{docid}/{name}", "Document is missing attachment")
            del attachments[name]
        else:
            data = request.get_data()
            if len(data) > self.max_document:
                raise HTTPError(413, "document_too_large", "Attachment too large")
            generation = int(current["_rev"].split("-")[0]) + 1 if current else 1
            attachments[name] = {"content_type": request.mimetype or "application/octet-stream",
                                 "data": base64.b64encode(data).decode(),
                                 "digest": digest_of(data), "length": len(data),
                                 "revpos": generation}
        body["_attachments"] = attachments
        doc = Doc(body, Meta(rev=rev))
        database[docid] = doc
        return self.saved(request, db, docid, doc, 201 if request.method == "PUT" else 200)
