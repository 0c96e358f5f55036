"""The catalog: which databases exist, creating, opening and deleting them.

Each database lives in its own directory under ``storage_data_dir`` (its name
percent-encoded), whatever the backend, so creating is one ``mkdir`` (atomic: two
workers racing to create get one winner), deleting is one ``rename`` to a trash name
then a removal (other workers never see half a database), and listing is
``listdir``. A worker caches open databases and notices by the directory's inode
when another worker deleted or re-created one. The ``memory`` backend keeps its
databases in the process instead.
"""
from __future__ import annotations

import os
import re
import shutil
import threading
import uuid
from urllib.parse import unquote

from .database import Database
from .exceptions import BadRequest, DatabaseExists, DatabaseNotFound
from .stack import backend_factory, build_stack, check_stack, storage_dir, storage_name

#: CouchDB's rule for database names.
DB_NAME = re.compile(r"^[a-z][a-z0-9_$()+/-]*\Z")
MAX_NAME = 238


class IllegalDatabaseName(BadRequest):
    """The database name does not follow CouchDB's rule."""

    error = "illegal_database_name"


#: System databases, allowed despite the leading underscore.
SYSTEM_DBS = {"_users", "_replicator"}


def check_name(name: str) -> str:
    if name in SYSTEM_DBS:
        return name
    if not isinstance(name, str) or not DB_NAME.match(name) or len(name) > MAX_NAME:
        raise IllegalDatabaseName(
            f"Name: '{name}'. Only lowercase characters (a-z), digits (0-9), and any of the "
            "characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.")
    return name


class Catalog:
    """All databases of one data directory (or of one process, for ``memory``)."""

    def __init__(self, settings):
        self.settings = settings
        self.factory = backend_factory(settings)
        check_stack(list(settings["storage_stack"]))   # fail at start, not at first open
        self.in_memory = settings["storage_backend"] == "memory"
        self.root = settings["storage_data_dir"]
        if not self.in_memory:
            os.makedirs(self.root, exist_ok=True)
        self._open: dict[str, tuple[Database, int]] = {}
        self._lock = threading.RLock()

    def _inode(self, name: str) -> int | None:
        if self.in_memory:
            return 0 if name in self._open else None
        try:
            return os.stat(storage_dir(self.settings, name)).st_ino
        except FileNotFoundError:
            return None

    def names(self) -> list[str]:
        if self.in_memory:
            return sorted(self._open)
        found = []
        for entry in os.listdir(self.root):
            if entry.startswith(".") or not os.path.isdir(os.path.join(self.root, entry)):
                continue
            found.append(unquote(entry))
        return sorted(n for n in found if DB_NAME.match(n) or n in SYSTEM_DBS)

    def exists(self, name: str) -> bool:
        return self._inode(name) is not None

    def create(self, name: str) -> Database:
        check_name(name)
        with self._lock:
            if self.in_memory:
                if name in self._open:
                    raise DatabaseExists(f"The database {name!r} could not be created, "
                                         "the file already exists.")
                return self._load(name, 0)
            try:
                os.mkdir(storage_dir(self.settings, name))
            except FileExistsError:
                raise DatabaseExists(f"The database {name!r} could not be created, "
                                     "the file already exists.") from None
            try:
                return self.get(name)
            except BaseException:       # leave no half-made database behind
                shutil.rmtree(storage_dir(self.settings, name), ignore_errors=True)
                raise

    def get(self, name: str) -> Database:
        """The open database ``name``; :class:`DatabaseNotFound` if it does not exist."""
        inode = self._inode(name)
        with self._lock:
            cached = self._open.get(name)
            if inode is None:
                if cached is not None:
                    self._forget(name)
                raise DatabaseNotFound(name)
            if cached is not None and cached[1] == inode:
                return cached[0]
            if cached is not None:
                self._forget(name)
            return self._load(name, inode)

    def _load(self, name: str, inode: int) -> Database:
        backend = self.factory(self.settings, name)
        db = Database(name, build_stack(backend, self.settings, name), backend)
        # How another process opens this database (a view build's process pool).
        db.opener = None if self.in_memory else (self.settings, name)
        self._open[name] = (db, inode)
        return db

    def _forget(self, name: str) -> None:
        db, _ = self._open.pop(name)
        db.close()

    def delete(self, name: str) -> None:
        with self._lock:
            if not self.exists(name):
                raise DatabaseNotFound(name)
            if name in self._open:
                self._forget(name)
            if self.in_memory:
                return
            path = storage_dir(self.settings, name)
            trash = os.path.join(self.root, f".deleted-{uuid.uuid4().hex}-{storage_name(name)}")
            try:
                os.rename(path, trash)
            except FileNotFoundError:
                raise DatabaseNotFound(name) from None
            shutil.rmtree(trash, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            for name in list(self._open):
                self._forget(name)


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
