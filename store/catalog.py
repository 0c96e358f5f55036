"""The catalog: which databases exist, creating, opening and deleting them.

Where a backend family keeps its databases is a :class:`~.locations.Locations`
driver (:mod:`.locations`), chosen by backend name (``LOCATIONS`` in :mod:`.stack`);
the catalog asks it only four things: a database's *generation* (None when it does
not exist), the names, create, drop. The catalog also keeps the record of database
events (:mod:`.dbupdates`, for ``/_db_updates``): creations and deletions as it makes
them, and each open database tells it of its writes.

A worker caches open databases and notices by the generation when another worker
(or node) deleted or re-created one. It keeps at most ``max_open`` of them open
(``storage_max_dbs_open``, CouchDB's ``max_dbs_open``): past that, opening one closes
the least recently used database that nothing is using (:meth:`Database.lease`: a
request, a feed, a view build), so the files a worker holds stay bounded whatever
databases its clients name. A database in use is never closed under its user; while
every open database is in use, the catalog holds more than ``max_open`` for a while.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from functools import partial

from .database import Database
from .dbupdates import LOCATION as UPDATES
from .dbupdates import DbUpdates
from .exceptions import ConfigurationError, DatabaseExists, DatabaseNotFound
from .layers.encryption import parse_key
from .locations import DirectoryLocations, IllegalDatabaseName, Locations
from .stack import LOCATIONS, backend_factory, build_stack, check_stack

log = logging.getLogger("settee.store")

#: CouchDB's rule for database names.
DB_NAME = re.compile(r"^[a-z][a-z0-9_$()+/-]*\Z")
MAX_NAME = 238


#: System databases, allowed despite the leading underscore.
SYSTEM_DBS = {"_users", "_replicator"}


def check_data_dir(root: str) -> None:
    """Create the data directory if need be; fail at start, naming the setting, when it
    cannot be created or written (not with a 500 at the first write)."""
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as e:
        raise ConfigurationError("storage_data_dir",
                                 f"cannot create {root}: {e.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigurationError("storage_data_dir", f"{root} is not writable by this user")


def check_name(name: str) -> str:
    if name in SYSTEM_DBS:
        return name
    if not isinstance(name, str) or not DB_NAME.match(name) or len(name) > MAX_NAME:
        raise IllegalDatabaseName(
            f"Name: '{name}'. Only lowercase characters (a-z), digits (0-9), and any of the "
            "characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.")
    return name


class Catalog:
    """All databases of one installation: a data directory, a process (``memory``),
    or a PostgreSQL schema (``postgresql``)."""

    def __init__(self, settings, max_open: int | None = None):
        self.settings = settings
        self.max_open = max_open or settings["storage_max_dbs_open"]
        self.factory = backend_factory(settings)
        check_stack(list(settings["storage_stack"]))   # fail at start, not at first open
        if "encryption" in settings["storage_stack"]:
            parse_key(settings["encryption_key"])
        self.in_memory = settings["storage_backend"] == "memory"
        self.root = settings["storage_data_dir"]
        if not self.in_memory:
            check_data_dir(self.root)
        make = LOCATIONS.get(settings["storage_backend"], DirectoryLocations)
        self.locations: Locations = make(settings, self.factory)
        self._open: dict[str, tuple[Database, int]] = {}
        self._lock = threading.RLock()
        #: What happened to which database, for ``/_db_updates`` (:mod:`.dbupdates`).
        self.updates = DbUpdates(self._open_updates)

    def _open_updates(self):
        """The backend store of the record of database events (created on first use)."""
        self.locations.create(UPDATES)          # False: it is there already
        generation = self.locations.generation(UPDATES)
        assert generation is not None
        return self.locations.open(UPDATES, generation)

    def _record(self, name: str, event: str) -> None:
        try:
            self.updates.record(name, event)
        except Exception:       # the database is made (or gone) all the same
            log.exception("could not record that database %r was %s", name, event)

    def names(self) -> list[str]:
        return sorted(n for n in self.locations.names() if DB_NAME.match(n) or n in SYSTEM_DBS)

    def exists(self, name: str) -> bool:
        return name != UPDATES and self.locations.generation(name) is not None

    def create(self, name: str, props: dict | None = None) -> Database:
        """A new database ``name``; ``props`` are its properties (``Database.props``)."""
        check_name(name)
        for attempt in range(3):
            with self._lock:
                if not self.locations.create(name):
                    raise DatabaseExists(f"The database {name!r} could not be created, "
                                         "the file already exists.")
                generation = self.locations.generation(name)
                try:
                    database = self.get(name)
                    if props:
                        database.set_props(props)
                except BaseException:
                    if attempt < 2 and self.locations.generation(name) != generation:
                        # Deleted under us (another worker's DELETE of the same name,
                        # a client creating and destroying at once): make it again.
                        continue
                    self.locations.drop(name)   # leave no half-made database behind
                    raise
            break
        self._record(name, "created")
        return database

    def get(self, name: str) -> Database:
        """The open database ``name``; :class:`DatabaseNotFound` if it does not exist."""
        generation = self.locations.generation(name) if name != UPDATES else None
        cached = self._open.get(name)       # the common case, without the lock
        if cached is not None and generation is not None and cached[1] == generation:
            cached[0].last_used = time.monotonic()
            return cached[0]
        with self._lock:
            cached = self._open.get(name)
            if generation is None:
                if cached is not None:
                    self._forget(name)
                raise DatabaseNotFound(name)
            if cached is not None and cached[1] == generation:
                return cached[0]
            if cached is not None:
                self._forget(name)
            return self._load(name, generation)

    def _load(self, name: str, generation: int) -> Database:
        backend = self.locations.open(name, generation)
        try:
            db = Database(name, build_stack(backend, self.settings, name), backend)
        except BaseException:
            backend.close()
            raise
        # How another process opens this database (a view build's process pool).
        db.opener = (self.settings, name) if self.locations.shared else None
        db.settings = self.settings
        db.written = partial(self.updates.touched, name)
        db.last_used = time.monotonic()
        self._open[name] = (db, generation)
        if len(self._open) > self.max_open:
            self._close_idle(keep=name)
        return db

    def _close_idle(self, keep: str) -> None:
        """Close least recently used databases that nothing uses, down to ``max_open``."""
        excess = len(self._open) - self.max_open
        for name in sorted(self._open, key=lambda n: self._open[n][0].last_used):
            if excess <= 0:
                return
            db = self._open[name][0]
            if name == keep or db.in_use:
                continue
            self._forget(name)
            excess -= 1
        if excess > 0:
            log.debug("%d databases open, %d over storage_max_dbs_open: all in use",
                      len(self._open), excess)

    def gone(self, database: Database) -> bool:
        """Whether ``database`` (opened here) was deleted, or deleted and made again,
        since: its files went from under whoever was using it."""
        generation = self.locations.generation(database.name)
        cached = self._open.get(database.name)
        return (generation is None or cached is None or cached[0] is not database
                or cached[1] != generation)

    def open_count(self) -> int:
        return len(self._open)

    def _forget(self, name: str) -> None:
        db, _ = self._open.pop(name)
        db.close()

    def delete(self, name: str) -> None:
        with self._lock:
            if not self.exists(name):
                raise DatabaseNotFound(name)
            if name in self._open:
                self._forget(name)
            if not self.locations.drop(name):
                raise DatabaseNotFound(name)
        self._record(name, "deleted")

    def close(self) -> None:
        self.updates.close()
        with self._lock:
            for name in list(self._open):
                self._forget(name)
            self.locations.close()


def open_database(data_dir: str, name: str = "db", **settings) -> Database:
    """Open (creating if need be) database ``name`` in ``data_dir`` for embedded use.

    ``settings`` override the defaults and ``SETTEE_*`` variables, e.g.
    ``open_database("./data", "invoices", storage_backend="lmdb")``.
    """
    from settee.config import load_settings
    catalog = Catalog(load_settings(storage_data_dir=data_dir, **settings))
    try:
        return catalog.create(name)
    except DatabaseExists:
        return catalog.get(name)
