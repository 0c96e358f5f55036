"""Where a replication reads and writes: a local database's name, or a URL.

CouchDB takes either a string (``"db"``, ``"http://user:pass@host:5984/db"``) or an
object ``{"url": ..., "headers": {"Authorization": ...}}``. Credentials in a URL
become an ``Authorization: Basic`` header and leave the URL, so that what is shown
(``_scheduler``, ``_active_tasks``) and what names the replication never holds a
password.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import orjson

from ..exceptions import BadRequest

#: The version of the way replication ids are made (CouchDB's is 4).
REPLICATION_ID_VERSION = 4


@dataclass(frozen=True)
class Endpoint:
    """A source or target: ``name`` for a database of this server, else ``url``."""

    name: str | None = None
    url: str | None = None            # http(s)://host[:port]/path, no credentials, no "/" end
    headers: dict[str, str] = field(default_factory=dict)
    user: str | None = None           # the URL's user name (shown, part of the id)

    @property
    def local(self) -> bool:
        return self.name is not None

    def display(self) -> str:
        """As shown to users: the URL with its user and the password masked."""
        if self.url is None:
            return str(self.name)
        if not self.user:
            return self.url + "/"
        parts = urlsplit(self.url)
        netloc = f"{quote(self.user, safe='')}:*****@{parts.netloc}"
        return urlunsplit(parts._replace(netloc=netloc)) + "/"

    def identity(self) -> str:
        """What the replication id takes of it: the database, not the secrets."""
        return self.display()


def parse_endpoint(value, what: str = "source") -> Endpoint:
    """``value`` of a ``_replicate`` body or ``_replicator`` document as an
    :class:`Endpoint`; :class:`BadRequest` when it is neither a name nor a URL."""
    headers: dict[str, str] = {}
    if isinstance(value, dict):
        given = value.get("headers", {})
        if not isinstance(given, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in given.items()):
            raise BadRequest(f"{what}.headers must be an object of strings")
        headers = dict(given)
        auth = value.get("auth")
        if isinstance(auth, dict) and isinstance(auth.get("basic"), dict):
            basic = auth["basic"]
            headers["Authorization"] = basic_auth(str(basic.get("username", "")),
                                                  str(basic.get("password", "")))
        value = value.get("url")
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{what} must be a database name or a URL "
                         f"(a string, or an object with a `url`)")
    if "://" not in value:
        if headers:
            raise BadRequest(f"{what}: headers need a URL, not a local database name")
        return Endpoint(name=value)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"{what}: {parts.scheme}:// is not a URL Settee replicates with; "
                         "use http:// or https://")
    path = parts.path.rstrip("/")
    if not path:
        raise BadRequest(f"{what}: the URL names no database")
    user = unquote(parts.username) if parts.username else None
    if user is not None and not any(k.lower() == "authorization" for k in headers):
        headers["Authorization"] = basic_auth(user, unquote(parts.password or ""))
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return Endpoint(url=urlunsplit((parts.scheme, netloc, path, "", "")), headers=headers,
                    user=user)


def basic_auth(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Basic {token}"


def replication_id(server: str, source: Endpoint, target: Endpoint, options: dict) -> str:
    """The base id of a replication: the same for the same server, endpoints and
    choice of documents, so a job started again finds its checkpoints. ``options``
    holds what selects documents (filter, doc_ids, selector, query_params)."""
    chosen = {k: options[k] for k in ("filter", "doc_ids", "selector", "query_params",
                                      "winning_revs_only") if options.get(k) is not None}
    term = [REPLICATION_ID_VERSION, server, source.identity(), target.identity(), chosen]
    return hashlib.md5(orjson.dumps(term, option=orjson.OPT_SORT_KEYS)).hexdigest()


def full_id(base: str, options: dict) -> str:
    """The id as CouchDB shows it: ``<base>+continuous+create_target`` as chosen."""
    return base + ("+continuous" if options.get("continuous") else "") + (
        "+create_target" if options.get("create_target") else "")


def strip_credentials(body: dict) -> dict:
    """A replication document as shown to a user who does not own it (CouchDB's rule
    for ``_replicator``): its endpoints without a password in their URL, and without
    their ``headers`` and ``auth``; everything else as stored."""
    out = dict(body)
    for side in ("source", "target"):
        value = out.get(side)
        if isinstance(value, str):
            out[side] = _without_password(value)
        elif isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in ("headers", "auth")}
            if isinstance(value.get("url"), str):
                value["url"] = _without_password(value["url"])
            out[side] = value
    return out


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None and not parts.username:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
