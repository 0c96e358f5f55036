"""The compression layer: zlib over bytes.

Assumes of the layer below: a ``MutableMapping[str, bytes]``; offers the same above.

Each stored value starts with a marker byte: ``Z`` + zlib stream, or ``R`` + the raw
bytes when compressing would not gain (values under ``min_size`` bytes, or values
that do not shrink). Reading follows the marker; it never guesses.
"""
from __future__ import annotations

import zlib

from .base import CodecLayer
from .exceptions import CorruptValue


class ZlibCompression(CodecLayer[bytes, bytes]):
    """Compress values with zlib at ``level`` (0-9) when it saves space."""

    def __init__(self, inner, level: int = 6, min_size: int = 128):
        if not 0 <= level <= 9:
            raise ValueError("zlib level must be 0-9")
        super().__init__(inner, level=level, min_size=min_size)

    def encode(self, key: str, value: bytes) -> bytes:
        if len(value) >= self.min_size and self.level > 0:
            packed = zlib.compress(value, self.level)
            if len(packed) + 1 < len(value):
                return b"Z" + packed
        return b"R" + value

    def decode(self, key: str, stored: bytes) -> bytes:
        marker = stored[:1]
        if marker == b"R":
            return stored[1:]
        if marker == b"Z":
            try:
                return zlib.decompress(stored[1:])
            except zlib.error as e:
                raise CorruptValue(key, f"bad zlib data ({e})") from e
        raise CorruptValue(key, f"unknown compression marker {marker!r}")
