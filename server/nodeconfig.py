"""``/_node/{node}/_config``: Settee's settings where a CouchDB client looks for them.

Read only. Settee's settings are read once at start (``config/settings.py``: the
settings file, ``SETTEE_*`` variables), so a write over HTTP could not take effect
and is refused (403 ``forbidden``, CouchDB's answer for a section it will not change
over HTTP), the reason naming the Settee setting and how to set it.

What is shown: the settings CouchDB has under its own section and key
(:data:`COUCHDB_KEYS`: ``couchdb/max_document_size``, ``chttpd/port``, ``log/level``,
...), the server admin in ``admins`` as CouchDB lists admins (a PBKDF2 hash, never the
password), and every other setting under ``settee`` by its own name. Secrets are never
shown: :func:`is_secret` settings are left out, and credentials inside a URL or a
PostgreSQL connection string are masked. As in CouchDB, every value is a string.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .cluster import check_node
from .errors import HTTPError, not_found


def _host(bind: str) -> str:
    return bind.rpartition(":")[0].strip("[]")


def _port(bind: str) -> str:
    return bind.rpartition(":")[2]


def _milliseconds(seconds: float) -> str:
    return str(int(seconds * 1000))


#: (CouchDB section, key) -> (the Settee setting, its value as CouchDB writes it)
COUCHDB_KEYS: dict[tuple[str, str], tuple[str, Callable[[Any], str]]] = {
    ("couchdb", "max_document_size"): ("server_max_document", str),
    ("couchdb", "database_dir"): ("storage_data_dir", str),
    ("couchdb", "view_index_dir"): ("storage_data_dir", str),
    ("couchdb", "max_dbs_open"): ("storage_max_dbs_open", str),
    ("couchdb", "os_process_timeout"): ("js_timeout", _milliseconds),
    ("chttpd", "bind_address"): ("server_bind", _host),
    ("chttpd", "port"): ("server_bind", _port),
    ("chttpd", "max_http_request_size"): ("server_max_body", str),
    ("chttpd_auth", "timeout"): ("auth_session_timeout", str),
    ("chttpd_auth", "iterations"): ("auth_pbkdf2_iterations", str),
    ("httpd", "enable_cors"): ("cors_origins", lambda origins: _text(bool(origins))),
    ("cors", "origins"): ("cors_origins", lambda origins: ", ".join(origins)),
    ("cors", "credentials"): ("cors_credentials", lambda value: _text(value)),
    ("log", "level"): ("server_log_level", str),
    ("fabric", "request_timeout"): ("query_timeout", _milliseconds),
}
#: Settings shown only through their CouchDB names above, not again under ``settee``.
SHOWN_AS_COUCHDB = {"server_max_document", "server_max_body", "server_log_level"}
#: Never shown, whatever their value.
SECRET_SUFFIXES = ("_secret", "_password", "_key", "_token")
URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s]*@")
DSN_PASSWORD = re.compile(r"\b(password|user)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.I)


def is_secret(setting: str) -> bool:
    return setting.endswith(SECRET_SUFFIXES)


def mask(text: str) -> str:
    """``text`` with the credentials of any URL in it (``user:password@``) and of a
    key=value connection string (``user=``, ``password=``) replaced by ``***``."""
    text = URL_CREDENTIALS.sub(lambda m: m["scheme"] + "***@", text)
    return DSN_PASSWORD.sub(lambda m: f"{m[1]}=***", text)


def _text(value) -> str:
    """A setting's value as a CouchDB configuration value: a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return mask(str(value))


def configuration(settings, admins: dict) -> dict[str, dict[str, str]]:
    """Every section CouchDB's clients may read, from ``settings`` and the server
    admins' password records (``Authenticator.admins``)."""
    sections: dict[str, dict[str, str]] = {}
    for (section, key), (setting, show) in COUCHDB_KEYS.items():
        sections.setdefault(section, {})[key] = show(settings[setting])
    sections["admins"] = {
        name: f"-pbkdf2:{record['pbkdf2_prf']}-{record['derived_key']},{record['salt']},"
              f"{record['iterations']}" for name, record in admins.items()}
    sections["settee"] = {
        setting: _text(value) for setting, value in sorted(settings.items())
        if not is_secret(setting) and setting not in SHOWN_AS_COUCHDB}
    return sections


def how_to_set(setting: str) -> str:
    return (f"set {setting} in the settings file (SETTEE_CONFIG) or as the environment "
            f"variable SETTEE_{setting.upper()}, then restart Settee")


def refusal(section: str | None, key: str | None) -> HTTPError:
    """The answer to a write: 403, saying which setting it is and how to set it."""
    head = "Settee's configuration is read-only over HTTP"
    if section == "admins":
        reason = (f"{head}: the server admin is auth_admin_user and auth_admin_password "
                  "(SETTEE_ADMIN_USER, SETTEE_ADMIN_PASSWORD); other users are documents "
                  "of the _users database")
    elif section is not None and key is not None and (section, key) in COUCHDB_KEYS:
        setting = COUCHDB_KEYS[(section, key)][0]
        reason = f"{head}: {section}/{key} is Settee's {setting}; {how_to_set(setting)}"
    elif section == "settee" and key is not None and not key.startswith("_"):
        reason = f"{head}: {how_to_set(key)}"
    else:
        where = "/".join(part for part in (section, key) if part)
        reason = (f"{head}" + (f"; Settee has no setting for {where}" if where else "") +
                  ": its settings are read at start from the settings file (SETTEE_CONFIG) "
                  "and SETTEE_* environment variables")
    return HTTPError(403, "forbidden", reason)


class ConfigEndpoints:
    """``GET /_node/{node}/_config[/{section}[/{key}]]``; writes refused (403)."""

    def __init__(self, http, auth):
        self.http = http
        self.auth = auth

    def sections(self) -> dict[str, dict[str, str]]:
        return configuration(self.http.settings, self.auth.admins)

    def on_config(self, request, node):
        check_node(node)
        if request.method not in ("GET", "HEAD"):
            raise refusal(None, None)
        return self.http.respond(request, self.sections())

    def on_config_section(self, request, node, section):
        check_node(node)
        if request.method not in ("GET", "HEAD"):
            raise refusal(section if section != "_reload" else None, None)
        return self.http.respond(request, self.sections().get(section, {}))

    def on_config_key(self, request, node, section, key):
        check_node(node)
        if request.method not in ("GET", "HEAD"):
            raise refusal(section, key)
        value = self.sections().get(section, {}).get(key)
        if value is None:
            raise not_found("unknown_config_value")
        return self.http.respond(request, value)
