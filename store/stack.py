"""Composing a database's stack from settings: the backend and layer registries.

``storage_stack`` lists layers from top to bottom; each name is looked up in
:data:`LAYERS`, each backend name in :data:`BACKENDS`. Adding a feature to Settee is
adding a layer class and one entry here (or calling :func:`register_layer` from your
own module before the server starts).

Layers come in four kinds, and the stack must keep them in this order, top down:
``document`` layers (values are documents: validation, timestamps), ``versioning``
(documents to revision records), the ``serializer`` (records to bytes), then
``bytes`` layers (compression, encryption, replication), then the backend.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from settee.config.settings import Setting, declare

from .base import Backend, Store
from .exceptions import ConfigurationError
from .locations import MemoryLocations, storage_dir

KINDS = ("document", "versioning", "serializer", "bytes")


@dataclass(frozen=True)
class LayerSpec:
    kind: str
    factory: Callable[[Store, Any, str], Store | None]   # (inner, settings, db) -> layer


LAYERS: dict[str, LayerSpec] = {}
#: backend name -> factory(settings, db) opening (creating if need be) db's backend.
#: File-based backends keep each database in its own directory (:func:`storage_dir`);
#: a backend whose databases live elsewhere also registers a catalog driver.
BACKENDS: dict[str, Callable[[Any, str], Backend]] = {}
#: backend name -> Locations(settings, factory): where its databases live, for the
#: catalog (:class:`~.catalog.Locations`); absent: one directory per database.
LOCATIONS: dict[str, Callable[[Any, Callable], Any]] = {}


def register_layer(name: str, kind: str, factory, settings: Iterable[Setting] = ()) -> None:
    """Add layer ``name``; ``settings`` are the ones its factory reads (keys
    ``<name>_...``), added to the settings table (:func:`settee.config.settings.declare`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    declare(*settings)
    LAYERS[name] = LayerSpec(kind, factory)


def register_backend(name: str, factory, locations=None,
                     settings: Iterable[Setting] = ()) -> None:
    """Add backend ``name``; ``settings`` as for :func:`register_layer`."""
    declare(*settings)
    BACKENDS[name] = factory
    if locations is not None:
        LOCATIONS[name] = locations


def check_stack(names: list[str]) -> None:
    """Fail with the setting's name unless the layers exist and are in a valid order."""
    rank = -1
    for name in names:
        if name not in LAYERS:
            raise ConfigurationError("storage_stack", f"unknown layer {name!r}; "
                                     f"known: {', '.join(sorted(LAYERS))}")
        kind_rank = KINDS.index(LAYERS[name].kind)
        if kind_rank < rank:
            raise ConfigurationError("storage_stack", f"layer {name!r} ({LAYERS[name].kind}) "
                                     "is out of order: document layers, then versioning, then serialization, then bytes layers")
        rank = kind_rank
    if len(set(names)) != len(names):
        raise ConfigurationError("storage_stack", "a layer is named twice")
    if "versioning" not in names or "serialization" not in names:
        raise ConfigurationError("storage_stack", "a document database needs at least "
                                 "'versioning' and 'serialization'")


def backend_factory(settings):
    """The registered factory of ``storage_backend``: the registry is the one list of
    backends (the settings cannot know what another package registered)."""
    name = settings["storage_backend"]
    if name not in BACKENDS:
        raise ConfigurationError("storage_backend", f"unknown backend {name!r}; "
                                 f"registered: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name]


def build_stack(backend: Store, settings, db: str) -> Store:
    """Wrap ``backend`` in the configured layers, bottom first; returns the top."""
    names = list(settings["storage_stack"])
    check_stack(names)
    store = backend
    for name in reversed(names):
        layer = LAYERS[name].factory(store, settings, db)
        if layer is not None:           # a layer may decline (no schema for this db)
            store = layer
    return store


# -- the built-in registry ---------------------------------------------------------
def _memory(settings, db):
    from .backends.memory import MemoryBackend
    return MemoryBackend()


def _sqlite(settings, db):
    from .backends.sqlite import SQLiteBackend
    return SQLiteBackend(os.path.join(storage_dir(settings, db), "store.sqlite"),
                         synchronous=settings["sqlite_synchronous"])


def _file(settings, db):
    from .backends.filestore import FileBackend
    return FileBackend(os.path.join(storage_dir(settings, db), "files"))


def _dbm(settings, db):
    from .backends.dbmstore import DBMBackend
    return DBMBackend(os.path.join(storage_dir(settings, db), "store.dbm"))


def _lmdb(settings, db):
    from .backends.lmdbstore import LMDBBackend
    return LMDBBackend(os.path.join(storage_dir(settings, db), "lmdb"),
                       map_size=settings["lmdb_map_size"])


def _memory_locations(settings, factory):
    return MemoryLocations(settings, factory)


def postgres_dsn(settings) -> str:
    dsn = settings["postgres_dsn"]
    if not dsn:
        raise ConfigurationError("postgres_dsn", "the postgresql backend needs a connection "
                                 "string (SETTEE_POSTGRES_DSN, e.g. postgresql://user@host/db)")
    return dsn


def _postgresql(settings, db):
    from .backends.postgresql import PostgreSQLBackend
    return PostgreSQLBackend(postgres_dsn(settings), db)


def _postgresql_locations(settings, factory):
    from .backends.postgresql import PostgreSQLLocations
    return PostgreSQLLocations(postgres_dsn(settings))


def _validation(inner, settings, db):
    from .layers.validation import validation_layer
    return validation_layer(inner, settings, db)     # None when db has no schema


def _replication(inner, settings, db):
    from .layers.replication import replication_layer
    return replication_layer(inner, settings, db, BACKENDS)    # None without a target


def _serialization(inner, settings, db):
    from .layers.serialization import JSONSerializer
    return JSONSerializer(inner)


def _compression(inner, settings, db):
    from .layers.compression import Compression
    return Compression(inner, algorithm=settings["compression_algorithm"],
                       level=settings["compression_level"],
                       min_size=settings["compression_min_size"])


def _encryption(inner, settings, db):
    from .layers.encryption import AESGCMEncryption
    return AESGCMEncryption(inner, key=settings["encryption_key"])


def _timestamps(inner, settings, db):
    from .layers.timestamps import Timestamps
    return Timestamps(inner)


def _versioning(inner, settings, db):
    from .layers.versioning import Versioning
    return Versioning(inner, revs_limit=settings["versioning_revs_limit"])


register_backend("memory", _memory, locations=_memory_locations)
register_backend("sqlite", _sqlite, settings=[
    Setting("sqlite_synchronous", "FULL", str, "FULL: fsync at every commit; NORMAL: not on "
            "commit", choices=("OFF", "NORMAL", "FULL", "EXTRA"))])
register_backend("file", _file)
register_backend("dbm", _dbm)
register_backend("lmdb", _lmdb, settings=[
    Setting("lmdb_map_size", 1 << 34, int, "largest LMDB file in bytes",
            range=(1 << 20, 1 << 50))])
register_backend("postgresql", _postgresql, locations=_postgresql_locations, settings=[
    Setting("postgres_dsn", "", str, "PostgreSQL connection string for the postgresql backend")])
register_layer("validation", "document", _validation, settings=[
    Setting("validation_schemas", {}, dict, "database name = module:Schema (FormEncode)")])
register_layer("replication", "bytes", _replication, settings=[
    Setting("replication_target", "", str, "backup store, as backend:path "
            "(e.g. sqlite:/backup)"),
    Setting("replication_interval", 0.5, float, "seconds between outbox drains",
            range=(0.001, 3600))])
register_layer("timestamps", "document", _timestamps)
register_layer("versioning", "versioning", _versioning, settings=[
    Setting("versioning_revs_limit", 1000, int, "revisions remembered per document",
            range=(1, 1_000_000))])
register_layer("serialization", "serializer", _serialization)
register_layer("compression", "bytes", _compression, settings=[
    Setting("compression_algorithm", "lz4", str, "lz4 (fast) or zlib (smaller) for new "
            "writes", choices=("lz4", "zlib")),
    Setting("compression_level", 1, int, "0-9: zlib's level; LZ4: 0-1 fast, 2-9 high "
            "compression", range=(0, 9)),
    Setting("compression_min_size", 128, int, "values shorter than this are stored as is",
            range=(0, 1 << 30))])
register_layer("encryption", "bytes", _encryption, settings=[
    Setting("encryption_key", "", str, "AES-256 key, 64 hex digits or base64 "
            "(encryption layer)")])
