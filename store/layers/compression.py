"""The compression layer: zlib or LZ4 over bytes.

Assumes of the layer below: a ``MutableMapping[str, bytes]``; offers the same above.

Each stored value starts with a marker byte: ``Z`` + a zlib stream, ``L`` + an LZ4
block, or ``R`` + the raw bytes when compressing would not gain (values under
``min_size`` bytes, or values that do not shrink). Reading follows the marker, never
the setting, so a database written with one algorithm stays readable after the
setting changes, and values of both kinds can live side by side.

``algorithm`` chooses what new writes use. ``lz4`` (the default) is the fast one:
on the benchmark's 849 man pages it inflates in about 4 ms where zlib takes 25-35 ms
(SQLite itself reads them all in about 18 ms), for output about 10% larger than
zlib's level 1. ``zlib`` packs tighter at ``level`` 6-9 for data read less often.
zlib goes through the ``zlib-ng`` module when installed (the same stream format,
about twice as fast as the standard library's). :data:`ZLIB` names the one in use.
``level`` is zlib's 0-9; for LZ4, 0-1 is its fast mode and 2-9 its high-compression
mode at that level.
"""
from __future__ import annotations

import lz4.block

try:                                    # same format, same levels, about twice as fast
    from zlib_ng import zlib_ng as zlib
    ZLIB = f"zlib-ng {zlib.ZLIBNG_VERSION}"
except ImportError:
    import zlib  # type: ignore[no-redef]  # the same interface as zlib_ng's
    ZLIB = f"zlib {zlib.ZLIB_RUNTIME_VERSION}"

from ..base import CodecLayer
from ..exceptions import CorruptValue

ALGORITHMS = ("lz4", "zlib")


class Compression(CodecLayer[bytes, bytes]):
    """Compress values with ``algorithm`` at ``level`` when it saves space."""

    # Options: Layer.__init__ sets them.
    algorithm: str
    level: int
    min_size: int

    def __init__(self, inner, algorithm: str = "lz4", level: int = 1, min_size: int = 128):
        if algorithm not in ALGORITHMS:
            raise ValueError(f"compression algorithm must be one of {ALGORITHMS}")
        if not 0 <= level <= 9:
            raise ValueError("compression level must be 0-9")
        super().__init__(inner, algorithm=algorithm, level=level, min_size=min_size)
        if algorithm == "zlib":
            self._pack = (b"Z", lambda value: zlib.compress(value, level))
        elif level <= 1:
            self._pack = (b"L", lambda value: lz4.block.compress(value))
        else:
            self._pack = (b"L", lambda value: lz4.block.compress(
                value, mode="high_compression", compression=level))

    def encode(self, key: str, value: bytes) -> bytes:
        if len(value) >= self.min_size and self.level > 0:
            marker, pack = self._pack
            packed = pack(value)
            if len(packed) + 1 < len(value):
                return marker + packed
        return b"R" + value

    def decode(self, key: str, stored: bytes) -> bytes:
        marker = stored[:1]
        if marker == b"R":
            return stored[1:]
        try:
            if marker == b"L":
                return lz4.block.decompress(stored[1:])
            if marker == b"Z":
                return zlib.decompress(stored[1:])
        # zlib-ng's stubs declare its error an instance of Exception; it is the class.
        except (zlib.error, lz4.block.LZ4BlockError, ValueError) as e:  # type: ignore[misc]
            raise CorruptValue(key, f"bad {'LZ4' if marker == b'L' else 'zlib'} data ({e})") from e
        raise CorruptValue(key, f"unknown compression marker {marker!r}")


#: The name earlier code used; zlib at a level is ``Compression(inner, "zlib", level)``.
def ZlibCompression(inner, level: int = 6, min_size: int = 128) -> Compression:
    return Compression(inner, "zlib", level, min_size)
