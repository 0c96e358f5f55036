"""Design documents' ``validate_doc_update``: whether a write may happen, as CouchDB
decides it.

Every design document of the database with a ``validate_doc_update`` runs, in design
document id order, for every write but those of ``_local/`` documents::

    function (newDoc, oldDoc, userCtx, secObj) {
      if (!newDoc._deleted && !newDoc.author)
        throw({forbidden: "documents need an author"});
    }

``newDoc`` is the document as it would be stored (``_id``, ``_rev`` if it names one,
``_deleted: true`` for a deletion), ``oldDoc`` the revision it replaces (``null`` for
a new document or one written over a deletion), ``userCtx`` ``{db, name, roles}`` and
``secObj`` the database's ``_security``. Throwing ``{forbidden: message}`` refuses the
write with 403, ``{unauthorized: message}`` with 401; anything else thrown is
CouchDB's 500 ``unknown_error`` (:mod:`.couchapp`). The documents of one request go to
each validation in one call.

A Python design document (``"language": "python"``, server admins' code, unsandboxed)
may have one too: source defining ``fun(new_doc, old_doc, user_ctx, sec_obj)``, which
raises ``Forbidden(message)`` or ``Unauthorized(message)`` (both given to it by name);
any other exception is ``unknown_error``.

Which writes skip validation (server admins' writes of design documents, as CouchDB
says) is the caller's rule.
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping

from settee.store.exceptions import StoreError

from .couchapp import Forbidden, FunctionFailed, Unauthorized, functions_of
from .spec import InvalidDesignDoc, compile_function

FIELD = "validate_doc_update"

#: Compiled Python validations by source hash (deployed code: few, kept).
_PYTHON: dict[str, Callable] = {}
_PYTHON_LOCK = threading.Lock()


def validating_design_docs(database) -> list[dict]:
    """The design documents of ``database`` with a validation, by id."""
    return [doc for _, doc in database.docs("_design/", "_design/\uffff")
            if isinstance(doc.get(FIELD), str) and doc.get(FIELD).strip()]


def validate(ddocs: list[dict], items: list[tuple[dict, dict | None]], user_ctx: dict,
             sec_obj: dict, settings: Mapping | None = None) -> list[StoreError | None]:
    """For each ``(newDoc, oldDoc)`` of ``items``: None where the validation of every
    design document of ``ddocs`` (:func:`validating_design_docs`) passes it, else the
    first refusal, design documents in id order."""
    results: list[StoreError | None] = [None] * len(items)
    if not items:
        return results
    for ddoc in ddocs:
        pending = [i for i, r in enumerate(results) if r is None]
        if not pending:
            break
        batch = [items[i] for i in pending]
        if ddoc.get("language", "javascript") == "python":
            found = [_python(ddoc, new, old, user_ctx, sec_obj) for new, old in batch]
        else:
            found = functions_of(ddoc, settings).validate(batch, user_ctx, sec_obj)
        for i, error in zip(pending, found):
            results[i] = error
    return results


def _python(ddoc: dict, new: dict, old: dict | None, user_ctx: dict,
            sec_obj: dict) -> StoreError | None:
    source = ddoc[FIELD]
    key = hashlib.sha1(source.encode()).hexdigest()
    function = _PYTHON.get(key)
    if function is None:
        try:
            function = compile_function(source, f"{FIELD} of {ddoc['_id']}",
                                        {"Forbidden": Forbidden, "Unauthorized": Unauthorized})
        except InvalidDesignDoc as e:
            return FunctionFailed("compilation_error", e.reason)
        with _PYTHON_LOCK:
            _PYTHON[key] = function
    try:
        function(new, old, user_ctx, sec_obj)
    except (Forbidden, Unauthorized) as e:
        return e
    except Exception as e:          # the design document's code: CouchDB's unknown_error
        return FunctionFailed("unknown_error", f"{type(e).__name__}: {e}")
    return None


def check(doc: dict, settings: Mapping | None = None) -> None:
    """Before a design document is saved: its validation must compile."""
    source = doc.get(FIELD)
    if source is None:
        return
    if not isinstance(source, str):
        raise InvalidDesignDoc(f"{FIELD} must be a string")
    if doc.get("language", "javascript") == "python":
        compile_function(source, f"{FIELD} of {doc.get('_id')}",
                         {"Forbidden": Forbidden, "Unauthorized": Unauthorized})
    elif doc.get("language", "javascript") == "javascript":
        try:
            functions_of(doc, settings).handle(FIELD)
        except FunctionFailed as e:
            raise InvalidDesignDoc(e.reason) from None
