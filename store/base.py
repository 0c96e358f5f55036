"""The interface every backend and every layer offers.

A *store* is a ``MutableMapping`` plus three capabilities:

``transaction()``
    A re-entrant context manager. Everything done through the store (and every layer
    above it) inside the outermost ``with`` block is one atomic unit: other threads
    and other processes see all of it or none of it, and a read-check-write inside it
    cannot interleave with another writer. Leaving the block by an exception rolls
    back. How each backend achieves this is written in its module docstring.

``range(start, end, descending=..., inclusive_end=..., keys_only=...)``
    Ordered iteration over a key range (code-point order of ``str`` keys). Ordered
    backends answer in O(log n + k); scanning backends sort and say so in
    ``ordered = False``.

``close()``
    Releases files and connections. Lifecycle methods do their own work, then call
    the inner store's: no ``__getattr__`` forwarding.

Layers take the store they wrap as their first argument (:class:`Layer`). Codec
layers, which change values but not keys, subclass :class:`CodecLayer` and implement
``encode``/``decode`` only.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping, Sequence
from contextlib import AbstractContextManager
from itertools import islice
from typing import Any, Generic, TypeVar

from .document import Doc, as_doc, tombstone
from .exceptions import ITEM_ERRORS, InvalidKey, StoreError

V = TypeVar("V")
W = TypeVar("W")
S = TypeVar("S", bound="Store[Any]")

DELETE_BATCH = 5000           # keys deleted per transaction by delete_range


def _utf8_ok(text: str) -> bool:
    """Whether ``text`` has a UTF-8 encoding (a lone surrogate has none)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Missing:
    """The named sentinel for "absent" (``None`` can be a value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


def in_range(key: str, start: str | None, end: str | None, inclusive_end: bool) -> bool:
    """Whether ``key`` lies in ``[start, end]`` (or ``[start, end)``), bounds optional."""
    if start is not None and key < start:
        return False
    if end is not None and (key > end or (key == end and not inclusive_end)):
        return False
    return True


def prefix_end(prefix: str) -> str:
    """The smallest key greater than every key that starts with ``prefix``."""
    return prefix + "\U0010ffff"


class Store(MutableMapping[str, V], Generic[V]):
    """Abstract store: a mapping with transactions, ordered ranges and close()."""

    ordered = True

    def transaction(self) -> AbstractContextManager[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def in_transaction(self) -> bool:  # pragma: no cover - abstract
        """Whether this thread is inside one of this store's ``transaction()`` blocks."""
        raise NotImplementedError

    def range(self, start: str | None = None, end: str | None = None, *,
              descending: bool = False, inclusive_end: bool = True,
              keys_only: bool = False) -> Iterator[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def prefix(self, prefix: str, *, descending: bool = False,
               keys_only: bool = False) -> Iterator[Any]:
        """Items (or keys) whose key starts with ``prefix``, in order."""
        return self.range(prefix, prefix_end(prefix), descending=descending,
                          inclusive_end=False, keys_only=keys_only)

    def get_many(self, keys: list[str]) -> dict[str, V]:
        """The values of those ``keys`` that exist (one round trip where the backend can)."""
        found: dict[str, V] = {}
        for key in keys:
            try:
                found[key] = self[key]
            except KeyError:
                pass
        return found

    def encoder(self) -> Callable[[str, Any], bytes] | None:
        """``f(key, value)``: the bytes the backend at the bottom stores for a value
        written here, when every layer on the way down only encodes values (codecs);
        None when one does more (replication, documents). A bulk writer (a view build)
        can then encode in other processes and hand the bytes to the backend."""
        return None

    def bottom(self) -> Store[Any]:
        """The backend at the bottom of the stack (a backend is its own)."""
        return self

    def put_many(self, items) -> None:
        """Write every ``(key, value)`` of ``items`` in one transaction."""
        with self.transaction():
            for key, value in items:
                self[key] = value

    def set_many(self, items: Sequence[tuple[str, V]]) -> list[StoreError | None]:
        """Write each ``(key, value)`` of ``items`` in one transaction, each on its own:
        an item refused (by one of :data:`~.exceptions.ITEM_ERRORS`, returned in its
        place) leaves the others written; None in the place of one written. Any other
        error fails the whole batch. Layers that can write a batch at once override
        this (the versioning layer: one read and one write below for all of them)."""
        outcomes: list[StoreError | None] = []
        with self.transaction():
            for key, value in items:
                try:
                    self[key] = value
                    outcomes.append(None)
                except ITEM_ERRORS as e:
                    outcomes.append(e.with_traceback(None))
        return outcomes

    def delete_many(self, keys) -> None:
        """Delete those ``keys`` that exist, in one transaction."""
        with self.transaction():
            for key in keys:
                self.pop(key, None)

    def delete_range(self, start: str, end: str) -> int:
        """Delete every key in ``[start, end)``, a batch per transaction (so a large
        range never makes one huge transaction); returns how many."""
        dropped = 0
        while True:
            keys = list(islice(self.range(start, end, inclusive_end=False, keys_only=True),
                               DELETE_BATCH))
            if not keys:
                return dropped
            self.delete_many(keys)
            dropped += len(keys)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stored_as_is(key: str, value: bytes) -> bytes:
    return value


class Backend(Store[bytes]):
    """A storage backend: persists ``str`` keys and ``bytes`` values.

    Subclasses implement ``_get``, ``_put``, ``_delete``, ``_scan`` and the
    transaction hooks; this class checks keys and values once for all of them.
    """

    max_key_length = 4096

    def vacuum(self) -> None:
        """Give space freed by deletions back to the file system, where the backend can
        (SQLite rewrites its file; the file backend frees each file as it is deleted;
        LMDB, dbm and PostgreSQL keep freed space for reuse: PostgreSQL's autovacuum
        tends it)."""

    def size_on_disk(self) -> int:
        """Bytes the store takes on disk: 0 where it keeps none, or cannot tell."""
        return 0

    def encoder(self) -> Callable[[str, Any], bytes]:
        return _stored_as_is

    def put_checked(self, items) -> None:
        """``put_many`` of pairs that already went through this class's ``check_key``
        and ``check_value`` (in another process, say: a view build's workers)."""
        self.put_many(items)

    def check_key(self, key: object) -> str:
        if not isinstance(key, str):
            raise InvalidKey(f"keys are str, not {type(key).__name__}", key=repr(key))
        if not key:
            raise InvalidKey("the empty key cannot be stored", key=key)
        if len(key) > self.max_key_length:
            raise InvalidKey(f"key longer than {self.max_key_length} characters", key=key[:80])
        # isascii() is O(1); only non-ASCII keys can hold a surrogate, and those do not
        # encode as UTF-8 (the C codec finds one faster than a regular expression).
        if "\x00" in key or not (key.isascii() or _utf8_ok(key)):
            raise InvalidKey("keys may not contain NUL or unpaired surrogates", key=repr(key[:80]))
        return key

    @staticmethod
    def check_value(value: object) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        raise TypeError(f"backends store bytes, not {type(value).__name__}")

    def range(self, start=None, end=None, *, descending=False, inclusive_end=True,
              keys_only=False):
        """Scan-and-sort fallback for unordered backends (O(n log n))."""
        keys = sorted((k for k in self if in_range(k, start, end, inclusive_end)),
                      reverse=descending)
        for key in keys:
            if keys_only:
                yield key
                continue
            try:
                yield key, self[key]
            except KeyError:  # deleted by another writer since the scan
                continue


class Layer(Store[V], Generic[V, W]):
    """A store wrapping another store (``inner``); passes lifecycle calls down."""

    def __init__(self, inner: Store[W], **options):
        self.inner = inner
        for name, value in options.items():
            setattr(self, name, value)

    @property
    def ordered(self) -> bool:  # type: ignore[override]
        return self.inner.ordered

    def transaction(self) -> AbstractContextManager[Any]:
        return self.inner.transaction()

    def in_transaction(self) -> bool:
        return self.inner.in_transaction()

    def close(self) -> None:
        self.inner.close()

    def bottom(self) -> Store[Any]:
        """The backend at the bottom of the stack."""
        store: Store[Any] = self
        while isinstance(store, Layer):
            store = store.inner
        return store

    def find_layer(self, cls: type[S]) -> S | None:
        """The first layer of type ``cls`` at or below this one, if any."""
        store: Store[Any] = self
        while True:
            if isinstance(store, cls):
                return store
            if not isinstance(store, Layer):
                return None
            store = store.inner


class CodecLayer(Layer[V, W]):
    """A layer that transforms values symmetrically and leaves keys alone.

    Subclasses implement ``encode(key, value)`` (called by ``__setitem__``) and
    ``decode(key, stored)`` (called by every read); keys, iteration and deletion pass
    through unchanged.
    """

    def encode(self, key: str, value: V) -> W:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, key: str, stored: W) -> V:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, key: str) -> V:
        return self.decode(key, self.inner[key])

    def __setitem__(self, key: str, value: V) -> None:
        if not isinstance(key, str):        # encode() may use the key (encryption's AAD)
            raise InvalidKey(f"keys are strings, not {type(key).__name__}")
        self.inner[key] = self.encode(key, value)

    def __delitem__(self, key: str) -> None:
        del self.inner[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)

    def __contains__(self, key: object) -> bool:
        return key in self.inner

    def encoder(self) -> Callable[[str, Any], bytes] | None:
        below = self.inner.encoder()
        if below is None:
            return None
        encode = self.encode
        return lambda key, value: below(key, encode(key, value))

    def get_many(self, keys):
        return {k: self.decode(k, v) for k, v in self.inner.get_many(keys).items()}

    def put_many(self, items) -> None:
        self.inner.put_many((key, self.encode(key, value)) for key, value in items)

    def delete_many(self, keys) -> None:
        self.inner.delete_many(keys)

    def delete_range(self, start: str, end: str) -> int:
        return self.inner.delete_range(start, end)      # keys pass through unchanged

    def range(self, start=None, end=None, *, descending=False, inclusive_end=True,
              keys_only=False):
        items = self.inner.range(start, end, descending=descending,
                                 inclusive_end=inclusive_end, keys_only=keys_only)
        if keys_only:
            yield from items
            return
        for key, stored in items:
            yield key, self.decode(key, stored)



class DocumentLayer(Layer[Doc, Doc]):
    """A document layer that acts on writes only; reads and scans pass through.

    Deletion is a write too: ``del layer[key]`` writes a tombstone through
    ``__setitem__``, so every document layer sees it (and can stamp or check it).
    """

    def prepare(self, key: str, doc: Doc) -> Doc:
        """What the layer does to ``doc`` on its way down under ``key``: it returns the
        same Doc (its meta carries the new rev back up), or raises to refuse it. A
        layer that only checks or stamps documents overrides this alone, and writes
        of one document and of a batch (:meth:`set_many`) both go through it."""
        return doc

    def __setitem__(self, key: str, value) -> None:
        self.inner[key] = self.prepare(key, as_doc(value))

    def set_many(self, items):
        if type(self).__setitem__ is not DocumentLayer.__setitem__:
            return super().set_many(items)      # a layer that writes its own way
        outcomes: list[StoreError | None] = [None] * len(items)
        passed, where = [], []
        for at, (key, value) in enumerate(items):
            try:
                passed.append((key, self.prepare(key, as_doc(value))))
                where.append(at)
            except ITEM_ERRORS as e:
                outcomes[at] = e.with_traceback(None)
        for at, outcome in zip(where, self.inner.set_many(passed)):
            outcomes[at] = outcome
        return outcomes

    def __getitem__(self, key):
        return self.inner[key]

    def __delitem__(self, key: str) -> None:
        self[key] = tombstone()

    def __iter__(self):
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)

    def __contains__(self, key) -> bool:
        return key in self.inner

    def get_many(self, keys):
        return self.inner.get_many(keys)

    def range(self, *args, **kw):
        return self.inner.range(*args, **kw)
