"""Request bodies sent compressed: ``Content-Encoding: gzip`` (or ``deflate``).

IBM's ``ibmcloudant`` client gzips every request body by default; CouchDB inflates
gzip bodies (``couch_httpd:maybe_decompress``). Settee inflates ``gzip`` (``x-gzip``)
and ``deflate`` (zlib-wrapped, or raw as some clients send it), and a list of them
applied in turn (``gzip, identity``). Any other coding is 415 ``bad_content_type``,
as CouchDB answers one it cannot read.

The size limits are the inflated body's: inflating stops one byte past the limit, so
a small body that would inflate to gigabytes (a "zip bomb") costs no more than the
limit's worth of memory and time before its 413. A body that is not what its coding
says (truncated, corrupt, or with bytes after its end) is 400.
"""
from __future__ import annotations

import zlib

from .errors import HTTPError, bad_request

GZIP_WBITS = 16 + zlib.MAX_WBITS          # a gzip header and trailer
ZLIB_WBITS = zlib.MAX_WBITS               # deflate as RFC 9110 names it: zlib-wrapped
RAW_WBITS = -zlib.MAX_WBITS               # bare deflate data, as some clients send
CODINGS = ("gzip", "x-gzip", "deflate", "identity")


def codings(header: str | None) -> list[str]:
    """The codings a ``Content-Encoding`` header names, in the order they were applied;
    415 for one Settee cannot undo."""
    if not header:
        return []
    names = [name.strip().lower() for name in header.split(",") if name.strip()]
    for name in names:
        if name not in CODINGS:
            raise HTTPError(415, "bad_content_type",
                            f"{name} content encoding is not supported (Settee reads gzip "
                            "and deflate)")
    return [name for name in names if name != "identity"]


def too_large(limit: int) -> HTTPError:
    return HTTPError(413, "too_large", f"Request body over {limit} bytes once decompressed")


def is_zlib(data: bytes) -> bool:
    """Whether ``data`` opens with a zlib header (RFC 1950: deflate, a check that
    makes the first two bytes a multiple of 31)."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def inflate_one(data: bytes, coding: str, limit: int) -> bytes:
    """``data`` with ``coding`` undone, at most ``limit`` bytes of it (413 past that)."""
    if coding in ("gzip", "x-gzip"):
        wbits = GZIP_WBITS
    else:
        wbits = ZLIB_WBITS if is_zlib(data) else RAW_WBITS
    out = bytearray()
    while True:                   # a gzip body may hold several members, one after another
        inflater = zlib.decompressobj(wbits)
        try:
            # max_length bounds the output: never more than one byte past the limit
            out += inflater.decompress(data, limit + 1 - len(out))
            while inflater.unconsumed_tail and len(out) <= limit:
                out += inflater.decompress(inflater.unconsumed_tail, limit + 1 - len(out))
        except zlib.error:
            raise bad_request(f"The request body is not valid {coding} data") from None
        if len(out) > limit:
            raise too_large(limit)
        if not inflater.eof:
            raise bad_request(f"The request body's {coding} data is truncated")
        data = inflater.unused_data
        if not data:
            return bytes(out)
        if wbits != GZIP_WBITS:
            raise bad_request(f"The request body holds bytes after its {coding} data")


def inflate(data: bytes, header: str | None, limit: int) -> bytes:
    """The body ``data`` as it was before the codings ``header`` names were applied."""
    for coding in reversed(codings(header)):
        if data:                            # an empty body stays empty
            data = inflate_one(data, coding, limit)
    return data
