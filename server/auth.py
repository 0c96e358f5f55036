"""Authentication and authorization, CouchDB's model.

* **Server admins** come from the settings (``SETTEE_ADMIN_USER`` and
  ``SETTEE_ADMIN_PASSWORD``); the password is kept only as a PBKDF2-SHA256 hash.
  With no admin configured every request is an admin ("admin party"), and the server
  only listens on loopback (``settee serve`` refuses any other address).
* **Users** are documents ``org.couchdb.user:NAME`` in the ``_users`` database; a
  plain ``password`` field is replaced by its PBKDF2 hash when saved and never
  stored or returned. Users sign themselves up (``PUT`` of their own new document,
  with no roles) and may change their own document, but not their roles. Only the
  server chooses how a password is hashed (``auth_pbkdf2_iterations``, SHA-256): a
  non-admin's document may carry no hash fields of its own (403; its current ones,
  sent back unchanged, are fine), and a server admin's pre-hashed record (a restored
  dump) must be PBKDF2 with SHA-256 or SHA-1 and at most :data:`MAX_ITERATIONS_FACTOR`
  times the configured iterations. A stored record outside those bounds never costs
  a login more than that: it fails, and is logged. Names are not empty, do not start
  with ``_`` and hold no ``:`` (CouchDB's rules). Only server admins list ``_users``;
  a user reads their own document.
* **Per database**, ``_security`` names ``admins`` and ``members`` (names and roles).
  Members read and write documents; database admins also write design documents,
  indexes and ``_security``; only server admins create and delete databases. With no
  members a database is open to its admins only (CouchDB 3's default).
* Credentials: HTTP Basic, or the ``AuthSession`` cookie from ``POST /_session``
  (HMAC-signed with a secret shared by every worker, kept in the data directory).
  Bad or missing credentials where they are needed: 401 with ``WWW-Authenticate``;
  authenticated but not allowed: 403.

Password checks are deliberately slow (PBKDF2), so a verified credential is cached
in the process for a minute, keyed by a hash of name and password, and only for as
long as ``_users`` is unchanged: every worker reads the database's sequence (one small
read) before trusting its cache, so a password change, a deletion or a role removed
through any worker takes effect at once in all of them. A session cookie's signature
covers the user's password salt, as CouchDB's does: a new password ends every
session of the old one. An unknown name costs a login as much as a wrong password (a
PBKDF2 against a stand-in record), so timing does not tell which names exist.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass

from settee.store import BadRequest, NotFound

from .errors import HTTPError

log = logging.getLogger("settee.auth")

USERS_DB = "_users"
USER_PREFIX = "org.couchdb.user:"
HASH_FIELDS = ("password_scheme", "pbkdf2_prf", "iterations", "salt", "derived_key",
               "password_sha")
CACHE_SECONDS = 60.0
#: Hash functions a stored record may name (SHA-1: records made by CouchDB).
PRFS = ("sha256", "sha1")
#: A stored record may take at most this many times the configured iterations.
MAX_ITERATIONS_FACTOR = 10


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


def record_problem(record: dict, iterations_range: tuple[int, int]) -> str | None:
    """What is wrong with a stored password record, or None: PBKDF2, a known hash
    function, a bounded number of iterations, hex salt and key."""
    if record.get("password_scheme", "pbkdf2") != "pbkdf2":
        return f"password_scheme must be pbkdf2, not {record.get('password_scheme')!r}"
    if record.get("pbkdf2_prf", "sha1") not in PRFS:
        return f"pbkdf2_prf must be one of {', '.join(PRFS)}"
    iterations = record.get("iterations")
    low, high = iterations_range
    if type(iterations) is not int or not low <= iterations <= high:
        return f"iterations must be an integer from {low} to {high}"
    for field in ("salt", "derived_key"):
        value = record.get(field)
        if not isinstance(value, str) or not value or len(value) > 256 or \
                any(c not in "0123456789abcdefABCDEF" for c in value):
            return f"{field} must be hexadecimal text"
    return None


def password_matches(password: str, record: dict) -> bool:
    """Constant-time check of ``password`` against a stored PBKDF2 record (checked
    against :func:`record_problem` first)."""
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


def check_user_name(name: str) -> None:
    """CouchDB's rules for user names (its ``_users`` validation), as 403s."""
    if not name:
        raise HTTPError(403, "forbidden", "doc.name must not be empty")
    if name.startswith("_"):
        raise HTTPError(403, "forbidden", "Username may not start with underscore.")
    if ":" in name:
        raise HTTPError(403, "forbidden", "Character `:` is not allowed in usernames.")


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
        # What a stored record may take: at least what CouchDB's least is (or what this
        # server is set to, if less), at most ten times this server's setting.
        self.iterations_range = (min(1000, self.iterations),
                                 max(1000, self.iterations * MAX_ITERATIONS_FACTOR))
        self.timeout = settings["auth_session_timeout"]
        self.secret = load_secret(settings)
        self.admins: dict[str, dict] = {}
        if settings["auth_admin_user"]:
            name = settings["auth_admin_user"]
            # The same salt in every worker (a session cookie signed by one is checked
            # by another), and one no one else knows.
            salt = hmac.new(self.secret, f"admin:{name}".encode(), hashlib.sha256).hexdigest()
            self.admins[name] = hash_password(settings["auth_admin_password"],
                                              self.iterations, salt[:32])
        self.party = not self.admins
        # What an unknown name's password is checked against: the same work as a real one.
        self.stand_in = hash_password(secrets.token_hex(16), self.iterations)
        self._cache: dict[bytes, tuple[User, float]] = {}
        self._cache_seq: int | None = None
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
            user = self.cookie_user(cookie)
            if user is not None:
                return user
        return ANONYMOUS

    def users_seq(self) -> int | None:
        """``_users``' update sequence: what the credential cache is valid for."""
        try:
            return self.catalog.get(USERS_DB).update_seq()
        except NotFound:
            return None

    def login(self, name: str, password: str) -> User | None:
        """The user for these credentials, or None. Verified ones are cached for a
        minute while ``_users`` stays unchanged (checked on every call)."""
        token = hashlib.sha256(f"{name}\x00{password}".encode()).digest()
        now = time.monotonic()
        seq = self.users_seq()
        with self._lock:
            if seq != self._cache_seq:          # a user changed, here or in another worker
                self._cache.clear()
                self._cache_seq = seq
            cached = self._cache.get(token)
        if cached and cached[1] > now:
            return cached[0]
        user = None
        record = self.record(name)
        if record is None:
            password_matches(password, self.stand_in)       # as long as a wrong password
        elif password_matches(password, record):
            user = User(name, self.roles_in(name, record))
        if user is not None:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[token] = (user, now + CACHE_SECONDS)
        return user

    def record(self, name: str) -> dict | None:
        """The password record of ``name`` (a server admin's or a user document), or None
        when there is none, or none a login may be checked against (logged)."""
        if name in self.admins:
            return self.admins[name]
        doc = self.user_doc(name)
        if doc is None:
            return None
        problem = record_problem(doc, self.iterations_range)
        if problem is not None:
            log.warning("user %r cannot sign in: its password record is refused (%s)",
                        name, problem)
            return None
        return doc

    def roles_in(self, name: str, record: dict) -> tuple[str, ...]:
        """A user's roles; system roles (``_admin``...) come from the settings only, so
        one written into a user document (replicated, restored) grants nothing."""
        if name in self.admins:
            return ("_admin",)
        return tuple(r for r in record.get("roles", [])
                     if isinstance(r, str) and not r.startswith("_"))

    def user_doc(self, name: str) -> dict | None:
        try:
            return self.catalog.get(USERS_DB).get(USER_PREFIX + name)
        except NotFound:
            return None

    # -- sessions -----------------------------------------------------------------------
    def _signature(self, payload: bytes, record: dict) -> str:
        """The cookie's MAC: over its payload and the user's password salt, so that a
        new password (a new salt) ends every session signed for the old one."""
        salt = str(record.get("salt", "")).encode()
        return hmac.new(self.secret, payload + b"\x00" + salt, hashlib.sha256).hexdigest()

    def cookie_for(self, name: str) -> str:
        payload = f"{name}:{int(time.time()):x}".encode()
        mac = self._signature(payload, self.record(name) or {})
        return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + mac

    def cookie_user(self, cookie: str) -> User | None:
        """The user a session cookie is for, if its signature holds for the user's
        current record and it has not expired; roles as they are now."""
        try:
            encoded, mac = cookie.rsplit(".", 1)
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            name, _, issued = payload.decode().rpartition(":")
            if time.time() - int(issued, 16) > self.timeout:
                return None
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        record = self.record(name)
        if record is None or not hmac.compare_digest(self._signature(payload, record), mac):
            return None
        return User(name, self.roles_in(name, record), "cookie")

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
        return database.security()

    def require_admin(self, user: User) -> None:
        if not user.is_admin:
            raise self.deny(user, "You are not a server admin.")

    def is_db_admin(self, user: User, database) -> bool:
        return user.is_admin or _named(self.security(database).get("admins", {}), user)

    def require_db_admin(self, user: User, database) -> None:
        if self.is_db_admin(user, database):
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
        check_user_name(name)
        if body.get("name") != name or body.get("type") != "user":
            raise HTTPError(400, "doc_validation",
                            f"A user document needs name {name!r} and type \"user\"")
        roles = body.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise HTTPError(400, "doc_validation", "roles must be an array of strings")
        if any(r.startswith("_") for r in roles):
            raise HTTPError(403, "forbidden", "No system roles (starting with underscore) "
                            "in users db.")
        if not user.is_admin:
            allowed = current.get("roles", []) if current else []
            if roles != allowed:
                raise HTTPError(403, "forbidden", "Only admins may set roles")
        password = body.pop("password", None)
        if password is not None:             # the server's hash, whatever else was sent
            if not isinstance(password, str) or not password:
                raise HTTPError(400, "doc_validation", "password must be a non-empty string")
            body.update(hash_password(password, self.iterations))
            return
        sent = {k: body[k] for k in HASH_FIELDS if k in body}
        kept = {k: current[k] for k in HASH_FIELDS if current and k in current}
        if sent and not user.is_admin and any(kept.get(k) != v for k, v in sent.items()):
            raise HTTPError(403, "forbidden", "Only server admins may set password hash "
                            "fields; send a `password` and the server hashes it")
        body.update({**kept, **sent})
        if sent:                             # a server admin's pre-hashed record
            problem = record_problem(body, self.iterations_range)
            if problem is not None:
                raise HTTPError(400, "doc_validation", f"Password record refused: {problem}")

    def may_touch_user_doc(self, user: User, docid: str, method: str, exists: bool) -> bool:
        if user.is_admin:
            return True
        if not docid.startswith(USER_PREFIX):
            return False
        if user.name == docid[len(USER_PREFIX):]:
            return True
        return method == "PUT" and not exists          # signing up
