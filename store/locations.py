"""Where a backend family keeps its databases: the catalog's storage questions.

:class:`DirectoryLocations`, the default, keeps each database in its own directory
under ``storage_data_dir`` (its name percent-encoded: :func:`storage_name`), so
creating is one ``mkdir`` (atomic: two workers racing to create get one winner),
deleting is one ``rename`` to a trash name then a removal (other workers never see
half a database), listing is ``listdir``, and the generation is the directory's
inode. :class:`MemoryLocations` keeps the ``memory`` backend's databases in the
process; the ``postgresql`` backend keeps them as rows of a table
(:class:`~.backends.postgresql.PostgreSQLLocations`). Which family a backend uses is
registered beside it (``LOCATIONS`` in :mod:`.stack`).
"""
from __future__ import annotations

import errno
import os
import shutil
import uuid
from urllib.parse import quote, unquote

from .exceptions import BadRequest


class IllegalDatabaseName(BadRequest):
    """The database name does not follow CouchDB's rule."""

    error = "illegal_database_name"


def storage_name(db: str) -> str:
    """A database name as a file name: ``/`` and anything unusual percent-encoded."""
    return quote(db, safe="").replace(".", "%2E")


def storage_dir(settings, db: str) -> str:
    """The directory that holds database ``db``'s files (one directory per database)."""
    return os.path.join(settings["storage_data_dir"], storage_name(db))


class Locations:
    """Where one backend family keeps its databases: the catalog's storage questions.

    ``generation(name)`` is a number that is the same for as long as database ``name``
    exists and changes when it is deleted and re-created (None: it does not exist);
    ``create``/``drop`` return False when the database already exists / does not
    exist. ``open(name, generation)`` returns the backend of that generation.
    ``shared`` says whether another process can open a database by name.
    """

    shared = True

    def __init__(self, settings, factory):
        self.settings, self.factory = settings, factory

    def generation(self, name: str) -> int | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def names(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def create(self, name: str) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def drop(self, name: str) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def open(self, name: str, generation: int):
        return self.factory(self.settings, name)

    def close(self) -> None:
        pass


class DirectoryLocations(Locations):
    """One directory per database under ``storage_data_dir``; the generation is its inode."""

    def __init__(self, settings, factory):
        super().__init__(settings, factory)
        self.root = settings["storage_data_dir"]
        os.makedirs(self.root, exist_ok=True)

    def generation(self, name: str) -> int | None:
        try:
            return os.stat(storage_dir(self.settings, name)).st_ino
        except FileNotFoundError:
            return None
        except OSError as e:            # a name too long for a file name was never created
            if e.errno == errno.ENAMETOOLONG:
                return None
            raise

    def names(self) -> list[str]:
        return [unquote(entry) for entry in os.listdir(self.root)
                if not entry.startswith(".") and os.path.isdir(os.path.join(self.root, entry))]

    def create(self, name: str) -> bool:
        try:
            os.mkdir(storage_dir(self.settings, name))
        except FileExistsError:
            return False
        except OSError as e:            # percent-encoded, a legal name can outgrow NAME_MAX
            if e.errno == errno.ENAMETOOLONG:
                raise IllegalDatabaseName(f"Name: '{name}'. Too long as a file name once "
                                          "encoded; use a shorter name.") from None
            raise
        return True

    def drop(self, name: str) -> bool:
        path = storage_dir(self.settings, name)
        trash = os.path.join(self.root, f".deleted-{uuid.uuid4().hex}-{storage_name(name)}")
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True


class MemoryLocations(Locations):
    """The ``memory`` backend's databases: names kept in the process, gone with it."""

    shared = False

    def __init__(self, settings, factory):
        super().__init__(settings, factory)
        self._names: set[str] = set()

    def generation(self, name: str) -> int | None:
        return 0 if name in self._names else None

    def names(self) -> list[str]:
        return list(self._names)

    def create(self, name: str) -> bool:
        if name in self._names:
            return False
        self._names.add(name)
        return True

    def drop(self, name: str) -> bool:
        if name not in self._names:
            return False
        self._names.discard(name)
        return True

    def close(self) -> None:
        self._names.clear()
