"""The ``file`` backend: the design talk's FileStore, one file per key.

Layout of ``FileBackend(directory)``::

    directory/lock          the lock file (flock): shared for reads, exclusive for writes
    directory/journal       present only while a multi-key commit is applied
    directory/data/<name>   one file per key

File names. A key is never used as a path: its UTF-8 is written in hex, so names
hold only ``[0-9a-f]``, no key can name ``..`` or a subdirectory, and two keys that
differ only in case stay apart on case-insensitive file systems. A key of up to
100 UTF-8 bytes is stored as ``<hex>.v`` (200 characters, well under NAME_MAX=255),
whose content is the value; iteration decodes the name. A longer key (up to the
4096 characters every backend accepts) is stored as ``<sha256 of the key>.h``,
whose content is the key's length (4 bytes), the key, then the value, so iteration
reads the key from the file and a lookup checks it.

Writes. Every value is written to a temporary file in ``data/`` (``.tmp-*``),
fsynced, then renamed over the key's file: a reader sees the old value or the new
one, never a part. A single write outside a transaction is atomic and durable by
itself (rename, then fsync of ``data/``) and skips the journal; a delete is an
unlink, then that fsync.

Transactions (several keys) go through the write-ahead journal of
:mod:`.journal`: the exclusive lock is held for the whole transaction, writes are
buffered, and the commit writes one fsynced journal before renaming any file, so a
crash at any point leaves every key of the transaction old or every key new once
the store is next opened or locked (the journal is replayed; a torn one is
dropped). Temporary files a crash left behind are removed at open and at replay.

Cost: a lookup is one ``open``; iterating lists the directory (and reads the long
keys' files); ranges scan and sort (``ordered = False``), O(n log n).
"""
from __future__ import annotations

import hashlib
import os
import struct
import uuid

from ..base import Backend
from .journal import Journaled, fsync_path, write_all

_KEY_LENGTH = struct.Struct(">I")
SHORT, LONG = ".v", ".h"
TEMP_PREFIX = ".tmp-"


class FileBackend(Journaled, Backend):
    """Values in files named after their keys; see the module docstring."""

    ordered = False
    atomic_single_writes = True
    #: Longest hex name, in characters (so keys of up to half as many UTF-8 bytes).
    max_name = 200

    def __init__(self, directory: str):
        self.directory = directory
        self.data_dir = os.path.join(directory, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self._init_journal(os.path.join(directory, "lock"), os.path.join(directory, "journal"))

    # -- key <-> file ---------------------------------------------------------------
    def _file_name(self, raw: bytes) -> str:
        if len(raw) * 2 <= self.max_name:
            return raw.hex() + SHORT
        return hashlib.sha256(raw).hexdigest() + LONG

    def _path(self, key: str) -> tuple[str, bytes]:
        raw = key.encode()
        return os.path.join(self.data_dir, self._file_name(raw)), raw

    @staticmethod
    def _read_long(path: str) -> tuple[bytes, bytes]:
        """The full key and the value stored in a long key's file."""
        with open(path, "rb") as f:
            data = f.read()
        (size,) = _KEY_LENGTH.unpack_from(data)
        end = _KEY_LENGTH.size + size
        return data[_KEY_LENGTH.size:end], data[end:]

    # -- the journal's hooks --------------------------------------------------------
    def _load(self, key: str) -> bytes:
        path, raw = self._path(key)
        try:
            if path.endswith(SHORT):
                with open(path, "rb") as f:
                    return f.read()
            stored_key, value = self._read_long(path)
        except FileNotFoundError:
            raise KeyError(key) from None
        if stored_key != raw:        # a SHA-256 collision: the file belongs to another key
            raise KeyError(key)
        return value

    def _has(self, key: str) -> bool:
        path, _ = self._path(key)
        if path.endswith(SHORT):
            return os.path.exists(path)
        return super()._has(key)

    def _keys(self) -> list[str]:
        keys = []
        with os.scandir(self.data_dir) as entries:
            for entry in entries:
                name = entry.name
                if name.endswith(SHORT) and not name.startswith("."):
                    keys.append(bytes.fromhex(name[:-len(SHORT)]).decode())
                elif name.endswith(LONG) and not name.startswith("."):
                    keys.append(self._read_long(entry.path)[0].decode())
        return keys

    def _store(self, key: str, value: bytes, durable: bool) -> None:
        path, raw = self._path(key)
        if path.endswith(LONG):
            value = _KEY_LENGTH.pack(len(raw)) + raw + value
        temp = os.path.join(self.data_dir, f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                write_all(fd, value)
            finally:
                os.close(fd)
            os.replace(temp, path)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        if durable:
            fsync_path(self.data_dir, directory=True)

    def _remove(self, key: str, durable: bool) -> None:
        path, _ = self._path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        if durable:
            fsync_path(self.data_dir, directory=True)

    def _sync(self) -> None:
        # Each file was fsynced before its rename; this makes the renames durable.
        fsync_path(self.data_dir, directory=True)

    def _open_storage(self) -> None:
        # Make the directories themselves durable: fsyncing data/ later covers only
        # the entries inside it.
        fsync_path(self.directory, directory=True)
        fsync_path(os.path.dirname(os.path.abspath(self.directory)), directory=True)
        self._sweep_temporary_files()

    def _repair(self) -> None:
        self._sweep_temporary_files()

    def _sweep_temporary_files(self) -> None:
        """Remove temporary files of crashed writers (only writers, who hold the
        exclusive lock we hold now, create them, so none is in use)."""
        with os.scandir(self.data_dir) as entries:
            for entry in entries:
                if entry.name.startswith(TEMP_PREFIX):
                    try:
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        pass

    # -- extras -----------------------------------------------------------------------
    def size_on_disk(self) -> int:
        total = 0
        with os.scandir(self.data_dir) as entries:
            for entry in entries:
                try:
                    total += entry.stat().st_size
                except FileNotFoundError:
                    pass
        return total
