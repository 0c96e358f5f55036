"""HTTP errors: one table from the store's errors to CouchDB's statuses and names.

Every error leaves the server as ``{"error": NAME, "reason": TEXT}`` with the status
CouchDB uses for it. Domain code raises store errors or :class:`HTTPError`; nothing
else in ``server/`` chooses a status for an error.
"""
from __future__ import annotations

from settee.store import exceptions as store
from settee.views.couchapp import Forbidden, FunctionFailed, Unauthorized
from settee.views.javascript import JSError, JSLimitError


class HTTPError(Exception):
    """An error response: status, CouchDB error name, reason, extra headers."""

    def __init__(self, status: int, error: str, reason: str, headers: dict | None = None):
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": self.error, "reason": self.reason}


def bad_request(reason: str) -> HTTPError:
    return HTTPError(400, "bad_request", reason)


def not_found(reason: str = "missing") -> HTTPError:
    return HTTPError(404, "not_found", reason)


#: store error class -> (status, CouchDB error name or None to use the class's own).
#: Looked up along the class's MRO, most specific first.
STATUS = {
    store.DatabaseNotFound: (404, "not_found"),
    store.Deleted: (404, "not_found"),
    store.NotFound: (404, "not_found"),
    store.Conflict: (409, "conflict"),
    store.DatabaseExists: (412, "file_exists"),
    store.ValidationFailed: (403, "forbidden"),
    Forbidden: (403, "forbidden"),              # validate_doc_update threw {forbidden}
    Unauthorized: (401, "unauthorized"),        # ... {unauthorized}
    store.InvalidKey: (400, "bad_request"),
    store.BadRequest: (400, None),
    store.StorageFull: (507, "insufficient_storage"),
    store.DecryptionError: (500, "decryption_failed"),
    store.CorruptValue: (500, "corrupt_value"),
    store.BackendError: (500, "backend_error"),
    JSLimitError: (500, None),      # os_process_error, as CouchDB names a stopped query server
    JSError: (500, None),
    store.StoreError: (500, None),
}


#: What a client is told of the server's own failures: their reasons name files of the
#: data directory (a backend's message starts with its path), which a client has no
#: business knowing. The whole reason goes to the server's log (app.py's dispatch).
#: A stored value that cannot be read names its document's key, not a file: told as is.
PUBLIC_REASONS = {
    store.CorruptValue: None,
    JSError: None,      # a design document's JavaScript failed: its reason names no file
    store.StorageFull: "The data volume is full; writes are refused until space is freed",
    store.ConfigurationError: "The server is misconfigured; its log says how",
    store.StoreError: "The storage failed; the server's log has the details",
}


def public_reason(error: store.StoreError | store.ConfigurationError) -> str:
    for cls in type(error).__mro__:
        if cls in PUBLIC_REASONS:
            return PUBLIC_REASONS[cls] or error.reason
    return error.reason                       # pragma: no cover - StoreError is there


def from_store(error: store.StoreError) -> HTTPError:
    if isinstance(error, FunctionFailed):      # a design function's: its own status
        return HTTPError(error.status, error.error, error.reason)
    for cls in type(error).__mro__:
        if cls in STATUS:
            status, name = STATUS[cls]
            reason = public_reason(error) if status >= 500 else error.reason
            return HTTPError(status, name or error.error, reason)
    return HTTPError(500, "unknown_error", str(error))  # pragma: no cover - StoreError is in STATUS
