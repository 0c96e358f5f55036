"""Map-reduce views: the engine, where views come from, and Mango queries."""
from .definitions import view

__all__ = ["view"]
