"""The store's errors.

Every error carries structured fields (ids, revisions, keys), not just a message, so
the HTTP layer can map it to a status code and CouchDB's error name in one table.
Errors that arise where a builtin is expected also subclass that builtin: a missing
document is a ``KeyError`` to mapping code.
"""
from __future__ import annotations


class StoreError(Exception):
    """Base of every error raised by ``settee.store``."""

    error = "store_error"

    def __init__(self, reason: str = "", **fields):
        super().__init__(reason)
        self.reason = reason or (self.__class__.__doc__ or self.error).splitlines()[0]
        self.fields = fields

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.reason


class NotFound(StoreError, KeyError):
    """The document or key does not exist."""

    error = "not_found"

    def __init__(self, key: str, reason: str = "missing", **fields):
        super().__init__(reason, key=key, **fields)
        self.key = key


class Deleted(NotFound):
    """The document existed and was deleted (a tombstone is its current revision)."""

    def __init__(self, key: str, rev: str | None = None):
        super().__init__(key, "deleted", rev=rev)
        self.rev = rev


class Conflict(StoreError):
    """The write did not name the document's current revision."""

    error = "conflict"

    def __init__(self, key: str, current: str | None, given: str | None):
        super().__init__("Document update conflict.", key=key, current=current, given=given)
        self.key, self.current, self.given = key, current, given


class BadRequest(StoreError, ValueError):
    """The document or request is malformed."""

    error = "bad_request"


class InvalidKey(BadRequest):
    """The key cannot be stored (empty, too long for the backend, or not a string)."""

    error = "illegal_docid"


class IllegalDocId(BadRequest):
    """A document id a partitioned database refuses (not ``partition:id``)."""

    error = "illegal_docid"


class IllegalPartition(BadRequest):
    """A partition name is empty, starts with ``_`` or holds a ``:``."""

    error = "illegal_partition"


class ValidationFailed(BadRequest):
    """The document does not match its database's schema."""

    error = "forbidden"

    def __init__(self, key: str, errors: dict[str, str]):
        listed = "; ".join(f"{field}: {msg}" for field, msg in sorted(errors.items()))
        super().__init__(f"Invalid document: {listed}", key=key, errors=errors)
        self.key, self.errors = key, errors


class CorruptValue(StoreError):
    """A stored value cannot be decoded: it was damaged or written by something else."""

    error = "corrupt_value"

    def __init__(self, key: str, reason: str):
        super().__init__(f"Stored value for {key!r} cannot be read: {reason}", key=key)
        self.key = key


class DecryptionError(CorruptValue):
    """A value cannot be decrypted: the encryption key is wrong, or the value was altered."""

    error = "decryption_failed"


# A setting that is missing or invalid: the settings' own error (not a StoreError: the
# settings are checked before any store exists), raised here too where a layer or a
# backend meets a setting.
from settee.config.errors import ConfigurationError as ConfigurationError  # noqa: E402


class BackendError(StoreError):
    """The storage backend failed; ``original`` keeps the driver's exception."""

    error = "backend_error"

    def __init__(self, reason: str, original: BaseException | None = None):
        super().__init__(reason, original=original)
        self.original = original


class StorageFull(BackendError):
    """The write cannot be made durable: the disk is full or below the free-space floor."""

    error = "insufficient_storage"


class DatabaseExists(StoreError):
    """A database of that name exists already."""

    error = "file_exists"


class DatabaseNotFound(NotFound):
    """No database of that name exists."""

    def __init__(self, name: str):
        super().__init__(name, "Database does not exist.")


#: The errors that refuse one item of a batch of writes (:meth:`Store.set_many`), as
#: they would refuse a write of it alone; any other error fails the whole batch.
ITEM_ERRORS = (NotFound, Conflict, BadRequest)
