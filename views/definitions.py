"""Where views come from: Python modules (deployed code) and design documents.

**Modules** register map functions with :func:`view`::

    from settee.views import view

    @view("invoices", reduce="_sum")
    def ar_by_accounting_code(doc):
        for item in doc.get("lineItems", []):
            for code, a in item["allocation"].items():
                yield code, a["amount"] - a["paid"]

served at ``GET /invoices/_view/ar_by_accounting_code``. The modules named in the
``views_modules`` setting are imported when the server starts.

**Design documents**, as in CouchDB, with ``"language": "python"``::

    {"language": "python",
     "views": {"by_code": {"map": "def fun(doc):\\n    yield doc['code'], 1",
                           "reduce": "_count"}}}

``map`` defines ``fun(doc)`` yielding ``(key, value)`` pairs; ``reduce`` is a built-in
(``_sum``, ``_count``, ``_stats``) or defines ``fun(keys, values, rereduce)`` (the
convention of couchdb-python's Python view server). Design documents run code in the
server, so only admins may write them.

A view's identity is a hash of its map and reduce source, per view: editing one view
of a design document rebuilds that view only.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from settee.store.exceptions import BadRequest, NotFound

from .reduce import BUILTINS, make_reducer


class InvalidDesignDoc(BadRequest):
    """A design document's views cannot be compiled."""

    error = "compilation_error"


@dataclass(frozen=True)
class ViewSpec:
    """What defines a view; picklable, so a process pool can compile it again."""

    name: str                  # "ddoc/view" for design docs, the view name for modules
    map_source: str            # Python source defining fun(doc), or "module:function"
    reduce_source: str | None  # a built-in name, Python source, "module:function" or None
    origin: str                # "design" or "module"

    @cached_property
    def identity(self) -> str:
        text = f"{self.origin}\x00{self.map_source}\x00{self.reduce_source}"
        if self.origin == "module":
            text += "\x00" + "".join(_source_of(ref) for ref in
                                     (self.map_source, self.reduce_source) if ref and ":" in ref)
        return hashlib.sha1(text.encode()).hexdigest()[:20]

    def compile(self):
        """(map function, reducer or None)."""
        if self.origin == "mango":
            import orjson

            from .mango import mango_mapper
            return mango_mapper(orjson.loads(self.map_source)), None
        if self.origin == "module":
            mapper = _resolve(self.map_source)
            reduce = self.reduce_source
            if reduce and reduce not in BUILTINS:
                reduce = _resolve(reduce)
            return mapper, make_reducer(reduce)
        mapper = compile_function(self.map_source, f"map of {self.name}")
        reduce = self.reduce_source
        if reduce and reduce not in BUILTINS:
            if reduce.startswith("_"):
                raise InvalidDesignDoc(f"unknown built-in reduce {reduce!r} in {self.name}")
            reduce = compile_function(reduce, f"reduce of {self.name}")
        return mapper, make_reducer(reduce)


def _resolve(ref: str) -> Callable:
    module, _, attr = ref.partition(":")
    target = importlib.import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def _source_of(ref: str) -> str:
    try:
        return inspect.getsource(_resolve(ref))
    except (OSError, TypeError, ImportError, AttributeError):
        return ref


def compile_function(source: str, what: str) -> Callable:
    """The function ``fun`` (or the last function) defined by ``source``."""
    if not isinstance(source, str) or not source.strip():
        raise InvalidDesignDoc(f"{what}: the source must be a non-empty string")
    try:
        code = compile(textwrap.dedent(source), f"<{what}>", "exec")
    except SyntaxError as e:
        raise InvalidDesignDoc(f"{what}: syntax error at line {e.lineno}: {e.msg}") from e
    namespace: dict = {"__name__": "settee_design_doc"}
    try:
        exec(code, namespace)        # admins only: design documents are deployed code
    except Exception as e:
        raise InvalidDesignDoc(f"{what}: {type(e).__name__}: {e}") from e
    function = namespace.get("fun")
    if not callable(function):
        functions = [v for v in namespace.values() if inspect.isfunction(v)]
        if not functions:
            raise InvalidDesignDoc(f"{what}: the source must define fun(...)")
        function = functions[-1]
    return function


# -- design documents ------------------------------------------------------------
def design_views(doc: dict, check: bool = False) -> dict[str, ViewSpec]:
    """The Python views of design document ``doc`` (``{}`` for other languages)."""
    views = doc.get("views") or {}
    if not isinstance(views, dict):
        raise InvalidDesignDoc("`views` must be an object of view definitions")
    language = doc.get("language", "javascript")
    if language == "query":                     # Mango JSON indexes
        from .mango import indexes_of
        return {ix.name: ix.spec for ix in indexes_of(doc)}
    ddoc = doc.get("_id", "_design/?")[len("_design/"):]
    specs = {}
    for name, definition in views.items():
        if not isinstance(definition, dict) or not isinstance(definition.get("map"), str):
            raise InvalidDesignDoc(f"view {name!r} needs a `map` source string")
        reduce = definition.get("reduce")
        if reduce is not None and not isinstance(reduce, str):
            raise InvalidDesignDoc(f"reduce of view {name!r} must be a string")
        specs[name] = ViewSpec(f"{ddoc}/{name}", definition["map"], reduce, "design")
    if language != "python":
        return {}
    if check:
        for spec in specs.values():
            spec.compile()
    return specs


def check_design_doc(doc: dict) -> None:
    """Raise :class:`InvalidDesignDoc` unless every Python view compiles."""
    language = doc.get("language", "javascript")
    if not isinstance(language, str):
        raise InvalidDesignDoc("`language` must be a string")
    design_views(doc, check=True)


def design_view(database, ddoc: str, name: str) -> ViewSpec:
    doc = database[f"_design/{ddoc}"]
    if doc.get("language", "javascript") != "python" and name in (doc.get("views") or {}):
        raise BadRequest(f"view {ddoc}/{name} is written in {doc.get('language', 'javascript')}; "
                         "Settee runs Python views (\"language\": \"python\")")
    specs = design_views(doc)
    if name not in specs:
        raise NotFound(f"_design/{ddoc}/_view/{name}", "missing_named_view")
    return specs[name]


# -- module views ------------------------------------------------------------------
MODULE_VIEWS: dict[tuple[str, str], ViewSpec] = {}


def view(db: str, name: str | None = None, reduce: str | Callable | None = None):
    """Register the decorated map function as view ``name`` of database ``db``."""
    def register(function: Callable) -> Callable:
        view_name = name or function.__name__
        reduce_ref = reduce
        if callable(reduce):
            reduce_ref = f"{reduce.__module__}:{reduce.__qualname__}"
        MODULE_VIEWS[(db, view_name)] = ViewSpec(
            view_name, f"{function.__module__}:{function.__qualname__}", reduce_ref, "module")
        return function
    return register


def load_modules(names: list[str]) -> None:
    for name in names:
        importlib.import_module(name)


def served(spec: ViewSpec, modules: list[str] | None) -> bool:
    """Whether ``spec`` comes from one of ``modules`` (None: any registered view). The
    registry is the process's; a server serves the views of its own settings only."""
    return modules is None or spec.map_source.partition(":")[0] in modules


def module_view(db: str, name: str, modules: list[str] | None = None) -> ViewSpec:
    spec = MODULE_VIEWS.get((db, name))
    if spec is None or not served(spec, modules):
        raise NotFound(f"_view/{name}", "missing_named_view")
    return spec


def module_views(db: str, modules: list[str] | None = None) -> list[ViewSpec]:
    """The module views of database ``db`` (from ``modules`` only, if given)."""
    return [spec for (name, _), spec in MODULE_VIEWS.items()
            if name == db and served(spec, modules)]
