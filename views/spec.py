"""What defines a view (:class:`ViewSpec`), and how its functions are compiled.

A spec is picklable, so a process pool compiles it again in each worker. Its
``origin`` says where its functions come from: ``design`` (Python source in a design
document), ``module`` (``module:function`` of deployed code) or an origin another
module registers a compiler for by name in :data:`COMPILERS` (Mango's JSON indexes:
``mango``; JavaScript design documents: ``javascript``), so this module imports
none of its users.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from settee.store.exceptions import BadRequest

from .reduce import BUILTINS, make_reducer

#: origin -> "module:function" that compiles a spec of that origin:
#: ``function(spec, settings) -> (map, reducer or None)``; resolved when a spec of
#: that origin is compiled.
COMPILERS = {"mango": "settee.views.mango:compile_spec",
             "javascript": "settee.views.couchjs:compile_spec"}


class InvalidDesignDoc(BadRequest):
    """A design document's views cannot be compiled."""

    error = "compilation_error"


@dataclass(frozen=True)
class ViewSpec:
    """What defines a view; picklable, so a process pool can compile it again."""

    name: str                  # "ddoc/view" for design docs, the view name for modules
    map_source: str            # Python source defining fun(doc), or "module:function"
    reduce_source: str | None  # a built-in name, Python source, "module:function" or None
    origin: str                # "design", "module", or one of COMPILERS

    @cached_property
    def identity(self) -> str:
        text = f"{self.origin}\x00{self.map_source}\x00{self.reduce_source}"
        if self.origin == "module":
            text += "\x00" + "".join(_source_of(ref) for ref in
                                     (self.map_source, self.reduce_source) if ref and ":" in ref)
        return hashlib.sha1(text.encode()).hexdigest()[:20]

    def compile(self, settings: Mapping | None = None):
        """(map function, reducer or None). ``settings`` (the server's) bound what a
        compiler runs, where it runs code in a sandbox (JavaScript's limits)."""
        if self.origin in COMPILERS:
            return _resolve(COMPILERS[self.origin])(self, settings)
        if self.origin == "module":
            mapper = _resolve(self.map_source)
            reduce = self.reduce_source
            if reduce and reduce not in BUILTINS:
                return mapper, make_reducer(_resolve(reduce))
            return mapper, make_reducer(reduce)
        mapper = compile_function(self.map_source, f"map of {self.name}")
        reduce = self.reduce_source
        if reduce and reduce not in BUILTINS:
            if reduce.startswith("_"):
                raise InvalidDesignDoc(f"unknown built-in reduce {reduce!r} in {self.name}")
            return mapper, make_reducer(compile_function(reduce, f"reduce of {self.name}"))
        return mapper, make_reducer(reduce)


def _resolve(ref: str) -> Callable:
    module, _, attr = ref.partition(":")
    target: Any = importlib.import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def _source_of(ref: str) -> str:
    try:
        return inspect.getsource(_resolve(ref))
    except (OSError, TypeError, ImportError, AttributeError):
        return ref


def compile_function(source: str, what: str, names: Mapping | None = None) -> Callable:
    """The function ``fun`` (or the last function) defined by ``source``; ``names``
    are given to it as globals."""
    if not isinstance(source, str) or not source.strip():
        raise InvalidDesignDoc(f"{what}: the source must be a non-empty string")
    try:
        code = compile(textwrap.dedent(source), f"<{what}>", "exec")
    except SyntaxError as e:
        raise InvalidDesignDoc(f"{what}: syntax error at line {e.lineno}: {e.msg}") from e
    namespace: dict = {"__name__": "settee_design_doc", **(names or {})}
    try:
        exec(code, namespace)        # admins only: design documents are deployed code
    except Exception as e:
        raise InvalidDesignDoc(f"{what}: {type(e).__name__}: {e}") from e
    function = namespace.get("fun")
    if not callable(function):
        functions = [v for k, v in namespace.items()
                     if inspect.isfunction(v) and not (names and k in names)]
        if not functions:
            raise InvalidDesignDoc(f"{what}: the source must define fun(...)")
        function = functions[-1]
    return function
