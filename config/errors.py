"""The one error of configuration: a setting that is missing or invalid.

It lives here, with the settings, so that ``settee.config`` imports nothing of the
packages it configures; ``settee.store`` re-exports it for the code that checks a
setting when it is used (a backend's path, an encryption key, a schema to import).
"""
from __future__ import annotations


class ConfigurationError(ValueError):
    """A setting is missing or invalid; ``key`` names it."""

    error = "configuration_error"

    def __init__(self, key: str, reason: str):
        self.key = key
        self.reason = f"setting {key!r}: {reason}"
        self.fields = {"key": key}
        super().__init__(self.reason)

    def __str__(self) -> str:
        return self.reason
