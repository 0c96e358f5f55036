"""Settee's storage: backends, the layers stacked on them, and the embedded API.

``open_database(dir, name)`` gives a :class:`Database`, a mapping of documents over
the stack configured in the settings (see ``settee.config``).
"""
from . import exceptions
from .catalog import Catalog, open_database
from .database import Database, check_partition
from .document import Doc, Document, Meta
from .exceptions import (
                         BackendError,
                         BadRequest,
                         ConfigurationError,
                         Conflict,
                         CorruptValue,
                         DatabaseExists,
                         DatabaseNotFound,
                         DecryptionError,
                         Deleted,
                         InvalidKey,
                         NotFound,
                         StorageFull,
                         StoreError,
                         ValidationFailed,
)
from .sync import (
                   Endpoint,
                   HttpPeer,
                   LocalPeer,
                   Peer,
                   PeerError,
                   PeerNotFound,
                   Replication,
                   Spec,
                   parse_spec,
                   strip_credentials,
)
from .sync.scheduler import REPLICATOR, Scheduler, user_fields
from .uuids import new_id

__all__ = ["Catalog", "Database", "Doc", "Document", "Meta", "open_database", "new_id",
           "exceptions", "BackendError", "BadRequest", "ConfigurationError", "Conflict",
           "CorruptValue", "DatabaseExists", "DatabaseNotFound", "DecryptionError", "Deleted",
           "InvalidKey", "NotFound", "StorageFull", "StoreError", "ValidationFailed",
           "check_partition",
           # replication (store/sync/)
           "Endpoint", "HttpPeer", "LocalPeer", "Peer", "PeerError", "PeerNotFound",
           "REPLICATOR", "Replication", "Scheduler", "Spec", "parse_spec", "strip_credentials",
           "user_fields"]
