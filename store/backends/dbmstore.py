"""The ``dbm`` backend: the standard library's ``dbm``, made transactional and crash-safe.

``DBMBackend(path)`` uses ``dbm.gnu`` where Python has it, else ``dbm.ndbm``, else
``dbm.dumb`` (pure Python, always present); a database that exists keeps the
implementation that made it (``dbm.whichdb``). Files: the dbm's own (for
``dbm.dumb``: ``<path>.dat`` holds values, ``<path>.dir`` one ``'key', (pos, size)``
line per key), plus ``<path>.lock``, ``<path>.journal`` and ``<path>.gen``.

Transactions: every write, even a single one, goes through the write-ahead journal
of :mod:`.journal` under the exclusive ``flock`` of ``<path>.lock``, because no dbm
write is atomic by itself (``dbm.dumb`` overwrites a value in place when the new one
fits, and rewrites ``.dir`` by renaming it to ``.bak`` and writing a new one). A
commit writes the fsynced journal, applies the operations, syncs the dbm, fsyncs
its files and directory, removes ``.bak``, then the journal.

Crash repair (``dbm.dumb``): a crash while a commit is applied can leave a value half
overwritten, a torn last line in ``.dir``, or ``.dir`` missing or half rewritten with
the complete previous one in ``.bak``. The journal is still there, so the next
lock-taker repairs before replaying it: it puts ``.bak`` back as ``.dir`` when there
is one (``.bak`` exists only during a commit, since every commit removes it, and it
indexes every key the transaction did not touch), cuts ``.dir`` after its last
well-formed line, reopens, and replays the journal, which rewrites every key the
transaction touched. ``.dat`` is only appended to or overwritten at keys being
rewritten, so nothing else needs mending. With ``dbm.gnu``/``dbm.ndbm`` the replay
makes every touched value whole again, but a crash that damages their file
structure cannot be mended here (only ``dbm.dumb`` is tested, by SIGKILL).

Other processes' writes: a dbm object caches its index (``dbm.dumb`` reads ``.dir``
once, at open), so each commit increments the generation number in ``<path>.gen``,
and a reader (holding the shared lock) reopens the dbm when the number moved.

Cost: ``dbm.dumb`` rewrites the whole ``.dir`` at every commit, so a commit is O(n)
in the number of keys; ranges scan and sort (``ordered = False``).
"""
from __future__ import annotations

import ast
import dbm
import importlib
import os
import struct
import threading
from typing import Any

from ..base import Backend
from .journal import Journaled, fsync_path

_GENERATION = struct.Struct(">Q")


def _available_module(names: tuple[str, ...]):
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(f"none of {', '.join(names)} can be imported")


def cut_torn_lines(dir_path: str) -> int:
    """Truncate a ``dbm.dumb`` index after its last well-formed line; bytes cut."""
    with open(dir_path, "rb") as f:
        data = f.read()
    keep = 0
    for line in data.split(b"\n")[:-1]:     # the piece after the last newline is torn
        try:
            key, (pos, size) = ast.literal_eval(line.decode("latin-1"))
            if not (isinstance(key, str) and isinstance(pos, int) and isinstance(size, int)):
                break
        except (SyntaxError, ValueError, TypeError):
            break
        keep += len(line) + 1
    if keep < len(data):
        os.truncate(dir_path, keep)
        fsync_path(dir_path)
    return len(data) - keep


class DBMBackend(Journaled, Backend):
    """A dbm file, journaled; see the module docstring."""

    ordered = False
    atomic_single_writes = False
    #: Implementations to use for a new database, best first.
    modules = ("dbm.gnu", "dbm.ndbm", "dbm.dumb")

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        kind = dbm.whichdb(path)
        if kind:
            self._module = importlib.import_module(kind)
        elif os.path.exists(path + ".dat"):   # dbm.dumb caught with .dir renamed to .bak
            self._module = importlib.import_module("dbm.dumb")
        else:
            self._module = _available_module(self.modules)
        self._dumb = self._module.__name__ == "dbm.dumb"
        # dbm.gnu locks its file against every other opener unless told not to ("u");
        # our flock does the locking instead.
        self._flag = "wu" if self._module.__name__ == "dbm.gnu" else "w"
        # The open dbm object (of whichever module the file needs), or None when closed:
        # the journal's hooks open it (_refresh) before they read or write.
        self._db: Any = None
        self._generation: int | None = None
        self._gen_fd, self._gen_pid = -1, -1
        # Serializes this process's use of the dbm object, which is not thread-safe;
        # always taken after the flock, never held while waiting for it.
        self._mutex = threading.RLock()
        self._init_journal(path + ".lock", path + ".journal")

    # -- the generation number ------------------------------------------------------
    def _gen_descriptor(self) -> int:
        if self._gen_pid != os.getpid():
            self._gen_fd = os.open(self.path + ".gen", os.O_RDWR | os.O_CREAT, 0o644)
            self._gen_pid = os.getpid()
        return self._gen_fd

    def _read_generation(self) -> int:
        data = os.pread(self._gen_descriptor(), _GENERATION.size, 0)
        return _GENERATION.unpack(data)[0] if len(data) == _GENERATION.size else 0

    def _bump_generation(self) -> int:
        # No fsync: the number only needs to be seen by processes running now.
        generation = self._read_generation() + 1
        os.pwrite(self._gen_descriptor(), _GENERATION.pack(generation), 0)
        return generation

    # -- the dbm object ---------------------------------------------------------------
    def _mark_clean(self, db) -> None:
        """Stop a ``dbm.dumb`` object from rewriting ``.dir`` when it is closed.

        dbm.dumb's close() (and its __del__) rewrites .dir from the object's in-memory
        index whenever it was ever written to; its sync() does not reset that flag.
        An object whose index went stale (another process committed since), or whose
        commit failed half-way (``_repair`` is about to mend the files), would then
        overwrite good files. We always sync explicitly, so closing never needs to.
        """
        if self._dumb:
            db._modified = False

    def _close_db(self) -> None:
        db, self._db = self._db, None
        if db is None:
            return
        self._mark_clean(db)
        try:
            db.close()
        except OSError:
            pass

    def _refresh(self) -> None:
        with self._mutex:
            generation = self._read_generation()
            if self._db is not None and generation == self._generation:
                return
            self._close_db()
            self._db = self._module.open(self.path, self._flag)
            self._generation = generation

    def _files(self) -> list[str]:
        suffixes = (".dat", ".dir") if self._dumb else ("", ".db", ".pag", ".dir")
        return [self.path + s for s in suffixes if os.path.exists(self.path + s)]

    # -- the journal's hooks ----------------------------------------------------------
    def _open_storage(self) -> None:
        if self._dumb:
            exists = [os.path.exists(self.path + s) for s in (".dat", ".dir", ".bak")]
            # .dir is missing with .bak present only mid-commit (the journal's _repair
            # mends that); .dat without either is a crash while the files were created.
            if exists[0] and (exists[1] or exists[2] or os.path.exists(self._journal_path)):
                return
        elif dbm.whichdb(self.path):
            return
        db = self._module.open(self.path, "c")   # dbm.dumb writes its empty .dir at close
        db.close()
        for name in self._files():
            fsync_path(name)
        fsync_path(os.path.dirname(os.path.abspath(self.path)), directory=True)

    def _load(self, key: str) -> bytes:
        with self._mutex:
            return self._db[key.encode()]

    def _has(self, key: str) -> bool:
        with self._mutex:
            return key.encode() in self._db

    def _keys(self) -> list[str]:
        with self._mutex:
            return [k.decode() for k in self._db.keys()]

    def _store(self, key: str, value: bytes, durable: bool) -> None:
        with self._mutex:
            self._db[key.encode()] = value

    def _remove(self, key: str, durable: bool) -> None:
        with self._mutex:
            try:
                del self._db[key.encode()]
            except KeyError:
                return
            if self._dumb:
                # dbm.dumb rewrote .dir at once; make it durable before another delete
                # renames it to .bak, so .bak is always a complete index (see _repair).
                fsync_path(self.path + ".dir")

    def _sync(self) -> None:
        with self._mutex:
            if hasattr(self._db, "sync"):
                self._db.sync()
                self._mark_clean(self._db)
            else:                          # dbm.ndbm flushes only when closed
                self._close_db()
                self._db = self._module.open(self.path, self._flag)
            for name in self._files():
                fsync_path(name)
            fsync_path(os.path.dirname(os.path.abspath(self.path)), directory=True)
            if self._dumb:
                # Made durable with the journal's removal (same directory), and a
                # .bak is only ever used while a journal exists.
                try:
                    os.unlink(self.path + ".bak")
                except FileNotFoundError:
                    pass
            self._generation = self._bump_generation()

    def _repair(self) -> None:
        with self._mutex:
            self._close_db()
            if not self._dumb:
                return
            directory, backup = self.path + ".dir", self.path + ".bak"
            if os.path.exists(backup):
                os.replace(backup, directory)
            if os.path.exists(directory):
                cut_torn_lines(directory)
            fsync_path(os.path.dirname(os.path.abspath(self.path)), directory=True)

    # -- extras -----------------------------------------------------------------------
    def size_on_disk(self) -> int:
        return sum(os.path.getsize(name) for name in self._files())

    def close(self) -> None:
        with self._mutex:
            self._close_db()
            if self._gen_pid == os.getpid() and self._gen_fd >= 0:
                os.close(self._gen_fd)
            self._gen_fd, self._gen_pid = -1, -1
        super().close()
