"""Authentication and authorization, CouchDB's model.

* **Server admins** come from the settings (``SETTEE_ADMIN_USER`` and
  ``SETTEE_ADMIN_PASSWORD``); the password is kept only as a PBKDF2-SHA256 hash.
  With no admin configured every request is an admin ("admin party"), and the server
  only listens on loopback (``settee serve`` refuses any other address).
* **Users** are documents ``org.couchdb.user:NAME`` in the ``_users`` database; a
  plain ``password`` field is replaced by its PBKDF2 hash when saved and never
  stored or returned. Users sign themselves up (``PUT`` of their own new document,
  with no roles) and may change their own document, but not their roles.
* **Per database**, ``_security`` names ``admins`` and ``members`` (names and roles).
  Members read and write documents; database admins also write design documents,
  indexes and ``_security``; only server admins create and delete databases. With no
  members a database is open to its admins only (CouchDB 3's default).
* Credentials: HTTP Basic, or the ``AuthSession`` cookie from ``POST /_session``
  (HMAC-signed with a secret shared by every worker, kept in the data directory).
  Bad or missing credentials where they are needed: 401 with ``WWW-Authenticate``;
  authenticated but not allowed: 403.

Password checks are deliberately slow (PBKDF2), so a verified credential is cached
in the process for a minute, keyed by a hash of name and password.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass

from settee.store.exceptions import BadRequest, NotFound

from .errors import HTTPError

USERS_DB = "_users"
USER_PREFIX = "org.couchdb.user:"
HASH_FIELDS = ("password_scheme", "pbkdf2_prf", "iterations", "salt", "derived_key")
CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class User:
    name: str | None
    roles: tuple[str, ...] = ()
    method: str | None = None          # "default" (Basic), "cookie", or None

    @property
    def is_admin(self) -> bool:
        return "_admin" in self.roles

    def ctx(self) -> dict:
        return {"name": self.name, "roles": list(self.roles)}


ANONYMOUS = User(None)
PARTY = User(None, ("_admin",))


def hash_password(password: str, iterations: int, salt: str | None = None) -> dict:
    salt = salt or secrets.token_hex(16)
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return {"password_scheme": "pbkdf2", "pbkdf2_prf": "sha256", "iterations": iterations,
            "salt": salt, "derived_key": key.hex()}


def password_matches(password: str, record: dict) -> bool:
    """Constant-time check of ``password`` against a stored PBKDF2 record."""
    try:
        prf = record.get("pbkdf2_prf", "sha1")
        key = hashlib.pbkdf2_hmac(prf, password.encode(), str(record["salt"]).encode(),
                                  int(record["iterations"]))
        return hmac.compare_digest(key.hex(), str(record["derived_key"]))
    except (KeyError, TypeError, ValueError):
        return False


def load_secret(settings) -> bytes:
    """The cookie-signing secret: from the settings, or a file all workers share."""
    if settings["auth_secret"]:
        return settings["auth_secret"].encode()
    if settings["storage_backend"] == "memory":
        return secrets.token_bytes(32)
    path = os.path.join(settings["storage_data_dir"], ".settee-secret")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, "rb") as f:
            return f.read()
    with os.fdopen(fd, "wb") as f:
        secret = secrets.token_hex(32).encode()
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())
    return secret


def empty_security() -> dict:
    return {"admins": {"names": [], "roles": []}, "members": {"names": [], "roles": []}}


def check_security(doc) -> dict:
    if not isinstance(doc, dict):
        raise BadRequest("_security must be a JSON object")
    for part in ("admins", "members"):
        section = doc.get(part, {})
        if not isinstance(section, dict):
            raise BadRequest(f"_security.{part} must be an object")
        for field in ("names", "roles"):
            values = section.get(field, [])
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise BadRequest(f"_security.{part}.{field} must be an array of strings")
    return doc


def _named(section: dict, user: User) -> bool:
    return (user.name is not None and user.name in section.get("names", [])) or \
        bool(set(user.roles) & set(section.get("roles", [])))


class Authenticator:
    """Who a request is, and what it may do."""

    def __init__(self, settings, catalog):
        self.settings = settings
        self.catalog = catalog
        self.iterations = settings["auth_pbkdf2_iterations"]
        self.timeout = settings["auth_session_timeout"]
        self.admins: dict[str, dict] = {}
        if settings["auth_admin_user"]:
            self.admins[settings["auth_admin_user"]] = hash_password(
                settings["auth_admin_password"], self.iterations)
        self.party = not self.admins
        self.secret = load_secret(settings)
        self._cache: dict[bytes, tuple[User, float]] = {}
        self._lock = threading.Lock()

    # -- who ------------------------------------------------------------------------
    def authenticate(self, request) -> User:
        if self.party:
            return PARTY
        header = request.headers.get("Authorization", "")
        if header[:6].lower() == "basic ":
            try:
                name, _, password = base64.b64decode(header[6:].strip(), validate=True) \
                    .decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise self.unauthorized("Malformed Basic credentials") from None
            user = self.login(name, password)
            if user is None:
                raise self.unauthorized("Name or password is incorrect.")
            return User(user.name, user.roles, "default")
        cookie = request.cookies.get("AuthSession")
        if cookie:
            name = self.cookie_name(cookie)
            if name is not None:
                roles = self.roles_of(name)
                if roles is not None:
                    return User(name, roles, "cookie")
        return ANONYMOUS

    def login(self, name: str, password: str) -> User | None:
        """The user for these credentials, or None; verified ones are cached briefly."""
        token = hashlib.sha256(f"{name}\x00{password}".encode()).digest()
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached and cached[1] > now:
            return cached[0]
        user = None
        if name in self.admins:
            if password_matches(password, self.admins[name]):
                user = User(name, ("_admin",))
        else:
            doc = self.user_doc(name)
            if doc is not None and password_matches(password, doc):
                user = User(name, tuple(r for r in doc.get("roles", []) if isinstance(r, str)))
        if user is not None:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[token] = (user, now + CACHE_SECONDS)
        return user

    def user_doc(self, name: str) -> dict | None:
        try:
            return self.catalog.get(USERS_DB).get(USER_PREFIX + name)
        except NotFound:
            return None

    def roles_of(self, name: str) -> tuple[str, ...] | None:
        if name in self.admins:
            return ("_admin",)
        doc = self.user_doc(name)
        return None if doc is None else tuple(r for r in doc.get("roles", []) if isinstance(r, str))

    # -- sessions -----------------------------------------------------------------------
    def cookie_for(self, name: str) -> str:
        payload = f"{name}:{int(time.time()):x}".encode()
        mac = hmac.new(self.secret, payload, hashlib.sha256).hexdigest()
        return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + mac

    def cookie_name(self, cookie: str) -> str | None:
        try:
            encoded, mac = cookie.rsplit(".", 1)
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            expected = hmac.new(self.secret, payload, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, mac):
                return None
            name, _, issued = payload.decode().rpartition(":")
            if time.time() - int(issued, 16) > self.timeout:
                return None
            return name
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None

    # -- what ----------------------------------------------------------------------------
    @staticmethod
    def unauthorized(reason: str) -> HTTPError:
        return HTTPError(401, "unauthorized", reason,
                         {"WWW-Authenticate": 'Basic realm="settee"'})

    def deny(self, user: User, reason: str) -> HTTPError:
        if user.name is None:
            return self.unauthorized(reason)
        return HTTPError(403, "forbidden", reason)

    def security(self, database) -> dict:
        return database.versions.inner.get("m/security") or {}

    def require_admin(self, user: User) -> None:
        if not user.is_admin:
            raise self.deny(user, "You are not a server admin.")

    def require_db_admin(self, user: User, database) -> None:
        if user.is_admin or _named(self.security(database).get("admins", {}), user):
            return
        raise self.deny(user, "You are not a db or server admin.")

    def require_member(self, user: User, database) -> None:
        if user.is_admin:
            return
        security = self.security(database)
        if _named(security.get("admins", {}), user) or _named(security.get("members", {}), user):
            return
        raise self.deny(user, "You are not allowed to access this db.")

    # -- _users documents -------------------------------------------------------------------
    def prepare_user_doc(self, user: User, docid: str, body: dict, current: dict | None) -> None:
        """Check a ``_users`` document write and hash its password in place."""
        if not docid.startswith(USER_PREFIX):
            if docid.startswith("_design/") or user.is_admin:
                return
            raise HTTPError(403, "forbidden", "Only org.couchdb.user: documents go in _users")
        if body.get("_deleted"):
            return
        name = docid[len(USER_PREFIX):]
        if body.get("name") != name or body.get("type") != "user":
            raise HTTPError(400, "doc_validation",
                            f"A user document needs name {name!r} and type \"user\"")
        roles = body.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise HTTPError(400, "doc_validation", "roles must be an array of strings")
        if not user.is_admin:
            allowed = current.get("roles", []) if current else []
            if roles != allowed:
                raise HTTPError(403, "forbidden", "Only admins may set roles")
        password = body.pop("password", None)
        if password is not None:
            if not isinstance(password, str) or not password:
                raise HTTPError(400, "doc_validation", "password must be a non-empty string")
            body.update(hash_password(password, self.iterations))
        elif current is not None:
            body.update({k: current[k] for k in HASH_FIELDS if k in current})

    def may_touch_user_doc(self, user: User, docid: str, method: str, exists: bool) -> bool:
        if user.is_admin:
            return True
        if not docid.startswith(USER_PREFIX):
            return False
        if user.name == docid[len(USER_PREFIX):]:
            return True
        return method == "PUT" and not exists          # signing up
