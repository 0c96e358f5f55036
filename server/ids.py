"""What a document id may be: one rule for every route that names one."""
from __future__ import annotations

from .errors import HTTPError


def illegal_docid(reason: str) -> HTTPError:
    return HTTPError(400, "illegal_docid", reason)


def check_docid(docid) -> str:
    """The one rule for a document id, wherever one comes from (the URL, a body's
    ``_id``, COPY's ``Destination``, a ``_bulk_docs`` item): 400 ``illegal_docid`` as
    CouchDB answers. Only ``_design/`` and ``_local/`` ids may start with ``_``: any
    other such id (``_all_docs``) names an endpoint, and a document under it could
    never be read or deleted again."""
    if not isinstance(docid, str):
        raise illegal_docid("Document id must be a string")
    if not docid:
        raise illegal_docid("Document id must not be empty")
    if docid in ("_design/", "_local/"):
        raise illegal_docid(f"Illegal document id `{docid}`")
    if docid.startswith("_") and not docid.startswith(("_design/", "_local/")):
        raise illegal_docid("Only reserved document ids may start with underscore.")
    if len(docid) > 4000:
        raise illegal_docid("Document id is too long")
    return docid
