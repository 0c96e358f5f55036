"""Document ids for ``POST /{db}`` and ``GET /_uuids``: CouchDB's ``sequential`` ids.

CouchDB's default algorithm: 32 hex digits, a random 26-digit prefix and a 6-digit
suffix that grows by a random step of 1 to 0xffe; when it would pass 0xfff000 a new
prefix is drawn. Ids made one after another are neighbours in key order, so new
documents land on the same few B-tree pages instead of all over the index (random
UUIDs make each insert touch, and log, a page of its own), and they still cannot be
guessed or collide: every process draws its own prefix (after a fork too).
"""
from __future__ import annotations

import os
import random
import threading

_MAX_SUFFIX = 0xFFF000


class SequentialIds:
    def __init__(self):
        self._lock = threading.Lock()
        self._pid = -1
        self._prefix = ""
        self._suffix = 0
        self._random = random.Random()

    def _new_prefix(self) -> None:
        self._prefix = os.urandom(13).hex()
        self._suffix = self._random.randrange(0x1000)

    def next(self) -> str:
        with self._lock:
            if self._pid != os.getpid():          # first use, or a forked child
                self._pid = os.getpid()
                self._random.seed(os.urandom(16))
                self._new_prefix()
            self._suffix += self._random.randint(1, 0xFFE)
            if self._suffix > _MAX_SUFFIX:
                self._new_prefix()
                self._suffix += self._random.randint(1, 0xFFE)
            return f"{self._prefix}{self._suffix:06x}"


_ids = SequentialIds()
new_id = _ids.next
