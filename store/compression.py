"""The compression layer: zlib over bytes.

Assumes of the layer below: a ``MutableMapping[str, bytes]``; offers the same above.

Each stored value starts with a marker byte: ``Z`` + zlib stream, or ``R`` + the raw
bytes when compressing would not gain (values under ``min_size`` bytes, or values
that do not shrink). Reading follows the marker; it never guesses.

Speed: zlib is most of what the default stack costs over a bare backend (level 6 on
the benchmark's 849 man pages: about 0.2 s to compress, 0.035 s to inflate, against
0.02 s for SQLite to read them all). When the ``zlib-ng`` package is installed its
drop-in module is used instead of the standard library's: the same zlib stream
format (RFC 1950) at the same levels, each side reads what the other wrote, about
twice as fast both ways. :data:`ZLIB` names the implementation in use.
"""
from __future__ import annotations

try:                                    # same format, same levels, about twice as fast
    from zlib_ng import zlib_ng as zlib
    ZLIB = f"zlib-ng {zlib.ZLIBNG_VERSION}"
except ImportError:
    import zlib
    ZLIB = f"zlib {zlib.ZLIB_RUNTIME_VERSION}"

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
