"""Update sequences as CouchDB 2+ writes them: ``"N-<opaque>"`` strings.

Settee's sequence is one number per database. Clients of CouchDB 2 and later treat
``seq``, ``last_seq`` and ``update_seq`` as opaque strings (PouchDB's checkpointing
expects ``"1-..."``), so they are answered as ``"<N>-<token>"``; the token is the same
for a database for as long as it has its name. ``since`` takes those strings back,
plain numbers, ``0`` and ``now``.
"""
from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from .errors import bad_request


@lru_cache(maxsize=4096)
def _token(name: str) -> str:
    digest = hashlib.sha1(name.encode()).digest()[:9]
    return "g1" + base64.urlsafe_b64encode(digest).decode()


def format_seq(database, seq: int) -> str:
    """Sequence number ``seq`` of ``database`` as clients see it."""
    return f"{seq}-{_token(database.name)}"


def parse_since(value, current: int) -> int:
    """The sequence number a ``since`` (or ``Last-Event-ID``) names."""
    if value in (None, "", "0", 0):
        return 0
    if value == "now":
        return current
    if isinstance(value, bool):
        raise bad_request(f"Malformed since parameter: {value!r}")
    text = value.split("-", 1)[0] if isinstance(value, str) else value
    try:
        since = int(text)
    except (TypeError, ValueError):
        raise bad_request(f"Malformed since parameter: {value!r}") from None
    if since < 0:
        raise bad_request("since must not be negative")
    return since
