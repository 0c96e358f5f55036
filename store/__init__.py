"""Settee's storage: backends, the layers stacked on them, and the embedded API.

``open_database(dir, name)`` gives a :class:`Database`, a mapping of documents over
the stack configured in the settings (see ``settee.config``).
"""
from .catalog import Catalog, open_database
from .database import Database
from .document import Doc, Document, Meta
from .exceptions import (BackendError, Conflict, CorruptValue, DecryptionError, Deleted,
                         NotFound, StoreError, ValidationFailed)

__all__ = ["Catalog", "Database", "Doc", "Document", "Meta", "open_database", "BackendError",
           "Conflict", "CorruptValue", "DecryptionError", "Deleted", "NotFound", "StoreError",
           "ValidationFailed"]
