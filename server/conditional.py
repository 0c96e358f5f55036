"""Conditional requests, one set of rules for every resource: ETags, ``If-None-Match``,
``If-Match``, ``Last-Modified``/``If-Modified-Since``, and the 304 answer.

An entity tag is quoted and strong (``"1-abc"``: a document's revision, an
attachment's digest, a view's identity and version). A list in ``If-None-Match`` is
read element by element; a proxy's weak ``W/`` prefix is ignored (what it names is
still the same bytes here), and ``*`` matches anything that exists.
"""
from __future__ import annotations

import email.utils
from functools import lru_cache

from .reply import Reply


def etag(value: str) -> str:
    """The ``ETag`` header's text for ``value``."""
    return f'"{value}"'


def _tags(header: str) -> list[str]:
    tags = []
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag:
            tags.append(tag.strip('"') if tag != "*" else tag)
    return tags


def none_match(request, value: str) -> bool:
    """Whether ``If-None-Match`` names ``value`` (or is ``*``): the client has it."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    tags = _tags(header)
    return "*" in tags or value in tags


def if_match(request) -> str | None:
    """The revision ``If-Match`` names (a write's base revision), or None."""
    header = request.headers.get("If-Match")
    if not header:
        return None
    tags = _tags(header)
    return tags[0] if tags else None


@lru_cache(maxsize=4096)
def http_date(seconds: int) -> str:
    """``Last-Modified`` text for a timestamp (cached: many GETs, few distinct seconds)."""
    return email.utils.formatdate(seconds, usegmt=True)


def not_modified_since(request, timestamp) -> bool:
    """Whether ``If-Modified-Since`` covers ``timestamp`` (``If-None-Match``, when sent,
    decides instead, as RFC 9110 says)."""
    since = request.if_modified_since
    if since is None or not timestamp or request.headers.get("If-None-Match"):
        return False
    return int(timestamp) <= int(since.timestamp())


def not_modified(headers) -> Reply:
    return Reply(status=304, headers=headers)
