"""Settings: one table of defaults, overridable by a settings file and the environment."""
from .settings import DEFAULTS, Settings, load_settings

__all__ = ["DEFAULTS", "Settings", "load_settings"]
