"""Settee's settings: one table of defaults with component-prefixed keys.

The server's own settings are defined here; each layer and backend declares its own
(:func:`declare`, called by the store's registries when they register it), so the
table is complete once ``settee.store`` is imported, as the server, the command line
and ``open_database`` do before they load settings.

Precedence, lowest first: :data:`DEFAULTS`, the settings file (TOML; its path from
``SETTEE_CONFIG`` or the ``path`` argument), ``SETTEE_<KEY>`` environment variables
(``SETTEE_STORAGE_BACKEND=lmdb``), then explicit overrides. A few short environment
names are aliases (:data:`ENV_ALIASES`: ``SETTEE_BIND``, ``SETTEE_DATA_DIR``, ...).

In the file, keys are written flat (``storage_backend = "sqlite"``) or by component
(``[storage]`` then ``backend = "sqlite"``). Every value is checked once, at start:
a bad one raises :class:`~.errors.ConfigurationError` naming the key.
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError

#: key -> (default, type, help). ``list`` values are comma-separated in the environment,
#: ``dict`` values are ``name=value`` pairs separated by commas.
DEFAULTS: dict[str, tuple[Any, type, str]] = {
    "server_bind": ("127.0.0.1:5984", str, "address:port gunicorn listens on (port 0: "
                    "any free port, named in the log's \"Listening at\" line)"),
    "server_workers": (2, int, "gunicorn worker processes"),
    "server_threads": (16, int, "threads per worker, each serving one request at a time "
                       "(waiting feeds and idle or slow connections hold none)"),
    "server_timeout": (60, int, "seconds before a silent worker is restarted"),
    "server_cpu_affinity": ("auto", str, "auto: each worker on a CPU of its own when there "
                            "are 2+ workers and no more than CPUs; off: where the kernel puts it"),
    "server_max_connections": (2048, int, "open connections per worker; a new one past "
                               "this is answered 503 and closed"),
    "server_header_timeout": (20.0, float, "seconds a client has to send a request's "
                              "headers (408 and closed after)"),
    "server_io_timeout": (60.0, float, "seconds a request's body read or a response's "
                          "write may stall before the connection is dropped"),
    "server_max_body": (64 * 1024 * 1024, int, "largest request body in bytes (413 above)"),
    "server_max_document": (8 * 1024 * 1024, int, "largest document in bytes (413 above)"),
    "server_max_json_depth": (64, int, "deepest JSON nesting accepted (400 above)"),
    "server_log_level": ("info", str, "debug, info, warning or error"),
    "server_access_log": ("-", str, "access log file, - for stdout, empty for none"),
    "storage_backend": ("sqlite", str, "memory, file, dbm, sqlite, lmdb, postgresql, or a "
                        "backend registered with settee.store.stack.register_backend "
                        "(checked against the registry when the store opens)"),
    "storage_data_dir": ("./data", str, "directory holding one store per database"),
    "storage_stack": (["validation", "timestamps", "versioning", "serialization", "compression"],
                      list, "layers from top to bottom over the backend"),
    "storage_max_dbs_open": (500, int, "databases a worker keeps open; the least "
                             "recently used idle one is closed past this"),
    "storage_free_space_floor": (64 * 1024 * 1024, int,
                                 "refuse writes (507) when less disk is free, in bytes"),
    "query_timeout": (60.0, float, "seconds a _find may run, or a view query read rows "
                      "without answering one (503 timeout above)"),
    "js_timeout": (5.0, float, "seconds one call into a design document's JavaScript may "
                   "run (a view maps a batch of documents per call); past it the call is "
                   "stopped and its V8 isolate replaced"),
    "js_max_memory": (256 * 1024 * 1024, int, "bytes of heap one JavaScript isolate (one per "
                      "design document) may hold; past it the call is stopped and the "
                      "isolate replaced"),
    "views_modules": ([], list,
                      "Python modules whose registered views are served at /{db}/_view/{name}"),
    "examples": ([], list, "demos to enable (settee.examples): invoices, the design talk's "
                 "Invoice schema and accounts-receivable view on the invoices database"),
    "auth_admin_user": ("", str, "server admin name"),
    "auth_admin_password": ("", str, "server admin password (hashed at start)"),
    "auth_secret": ("", str, "cookie-signing secret; default: one kept in the data directory"),
    "auth_session_timeout": (600, int, "seconds an AuthSession cookie stays valid"),
    "auth_pbkdf2_iterations": (100_000, int, "PBKDF2-SHA256 iterations for password hashes"),
    "cors_origins": ([], list, "origins allowed by CORS (* for any); empty: CORS off"),
    "cors_credentials": (False, bool, "allow credentials (cookies, Authorization) in CORS"),
}

ENV_ALIASES = {
    "SETTEE_BIND": "server_bind",
    "SETTEE_WORKERS": "server_workers",
    "SETTEE_THREADS": "server_threads",
    "SETTEE_DATA_DIR": "storage_data_dir",
    "SETTEE_BACKEND": "storage_backend",
    "SETTEE_STACK": "storage_stack",
    "SETTEE_ADMIN_USER": "auth_admin_user",
    "SETTEE_ADMIN_PASSWORD": "auth_admin_password",
}

CHOICES = {
    "server_log_level": ("debug", "info", "warning", "error"),
    "server_cpu_affinity": ("auto", "off"),
}
RANGES: dict[str, tuple[float, float]] = {
    "server_workers": (1, 256), "server_threads": (1, 256), "server_timeout": (1, 86400),
    "server_max_body": (1024, 1 << 40), "server_max_document": (64, 1 << 40),
    "server_max_json_depth": (2, 10_000),
    "storage_free_space_floor": (0, 1 << 50), "query_timeout": (0.001, 86400),
    "js_timeout": (0.001, 3600), "js_max_memory": (16 << 20, 1 << 40),
    "server_max_connections": (16, 1 << 20), "server_header_timeout": (0.1, 3600),
    "server_io_timeout": (0.1, 86400), "storage_max_dbs_open": (1, 1 << 20),
    "auth_session_timeout": (1, 10**8), "auth_pbkdf2_iterations": (1, 10**8),
}


#: ``examples`` name -> (validation_schemas, views_modules) it adds.
EXAMPLES = {
    "invoices": ({"invoices": "settee.examples.invoices:InvoiceSchema"},
                 ["settee.examples.invoices"]),
}


@dataclass(frozen=True)
class Setting:
    """One setting a component declares (:func:`declare`): a layer's or a backend's."""

    key: str                  # <component>_<name>, e.g. compression_level
    default: Any
    kind: type                # str, int, float, bool, list or dict
    help: str
    choices: tuple[str, ...] | None = None
    range: tuple[float, float] | None = None


def declare(*settings: Setting) -> None:
    """Add a component's settings to the table, where its code is registered (the
    store's layer and backend registries do it for theirs: ``register_layer(...,
    settings=[...])``), so the settings a component reads are defined beside it.
    Declaring a key again with a different definition is a mistake in the code."""
    for setting in settings:
        entry = (setting.default, setting.kind, setting.help)
        if DEFAULTS.get(setting.key, entry) != entry:
            raise ValueError(f"setting {setting.key!r} is declared twice, differently")
        DEFAULTS[setting.key] = entry
        if setting.choices:
            CHOICES[setting.key] = setting.choices
        if setting.range:
            RANGES[setting.key] = setting.range


class Settings(dict):
    """The checked settings: a dict of key -> value, read once at start."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _convert(key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(key, f"expected true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, bool):
            raise ConfigurationError(key, f"expected a number, got {value!r}")
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise ConfigurationError(key, f"expected {'an integer' if kind is int else 'a number'}, "
                                          f"got {value!r}") from None
    if kind is list:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ConfigurationError(key, f"expected a list of names, got {value!r}")
    if kind is dict:
        if isinstance(value, str):
            pairs = {}
            for part in filter(None, (p.strip() for p in value.split(","))):
                name, sep, target = part.partition("=")
                if not sep or not name.strip():
                    raise ConfigurationError(key, f"expected name=value pairs, got {part!r}")
                pairs[name.strip()] = target.strip()
            return pairs
        if isinstance(value, Mapping):
            return {str(k): str(v) for k, v in value.items()}
        raise ConfigurationError(key, f"expected a table of name = value, got {value!r}")
    if not isinstance(value, str):
        raise ConfigurationError(key, f"expected text, got {value!r}")
    return value


def _check(key: str, value: Any) -> Any:
    if key in CHOICES:                  # any case; the value is the choice's own spelling
        spelled = {choice.lower(): choice for choice in CHOICES[key]}.get(value.lower())
        if spelled is None:
            raise ConfigurationError(key, f"{value!r} is not one of {', '.join(CHOICES[key])}")
        value = spelled
    if key in RANGES:
        low, high = RANGES[key]
        if not low <= value <= high:
            raise ConfigurationError(key, f"{value!r} is outside {low}..{high}")
    if key == "server_bind":
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigurationError(key, f"expected host:port, got {value!r}")
    return value


def _flatten(data: Mapping[str, Any], path: str) -> dict[str, Any]:
    flat = {}
    for name, value in data.items():
        if isinstance(value, Mapping) and name not in DEFAULTS:
            for sub, subvalue in value.items():
                flat[f"{name}_{sub}"] = subvalue
        else:
            flat[name] = value
    for key in flat:
        if key not in DEFAULTS:
            raise ConfigurationError(key, f"unknown setting in {path}")
    return flat


def load_settings(path: str | None = None, env: Mapping[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Defaults, then the file, then ``SETTEE_*`` variables, then ``overrides``; checked."""
    env = os.environ if env is None else env
    values = {key: default for key, (default, _, _) in DEFAULTS.items()}
    path = path or env.get("SETTEE_CONFIG")
    if path:
        try:
            with open(path, "rb") as f:
                values.update(_flatten(tomllib.load(f), path))
        except OSError as e:
            raise ConfigurationError("SETTEE_CONFIG", f"cannot read {path}: {e.strerror}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigurationError("SETTEE_CONFIG", f"{path} is not valid TOML: {e}") from e
    # Short aliases first, so that a full name (SETTEE_SERVER_BIND) set beside its alias
    # (SETTEE_BIND) wins whatever the order of the environment.
    for name in sorted(env, key=lambda n: n not in ENV_ALIASES):
        text = env[name]
        if name in ENV_ALIASES:
            values[ENV_ALIASES[name]] = text
        elif name.startswith("SETTEE_") and name != "SETTEE_CONFIG":
            key = name[len("SETTEE_"):].lower()
            if key not in DEFAULTS:
                raise ConfigurationError(name, "unknown setting in the environment")
            values[key] = text
    for key, value in overrides.items():
        if key not in DEFAULTS:
            raise ConfigurationError(key, "unknown setting")
        values[key] = value
    settings = Settings({key: _check(key, _convert(key, values[key], DEFAULTS[key][1]))
                         for key in DEFAULTS})
    if settings["auth_admin_user"] and not settings["auth_admin_password"]:
        raise ConfigurationError("auth_admin_password", "a server admin needs a password "
                                 f"(auth_admin_user is {settings['auth_admin_user']!r})")
    return _with_examples(settings)


def _with_examples(settings: Settings) -> Settings:
    """The demos ``examples`` names, added to the schemas and view modules (the
    settings' own entries win)."""
    for name in settings["examples"]:
        if name not in EXAMPLES:
            raise ConfigurationError("examples", f"{name!r} is not one of "
                                                 f"{', '.join(EXAMPLES)}")
        schemas, modules = EXAMPLES[name]
        settings["validation_schemas"] = {**schemas, **settings.get("validation_schemas", {})}
        settings["views_modules"] = [*settings["views_modules"],
                                     *(m for m in modules if m not in settings["views_modules"])]
    return settings
