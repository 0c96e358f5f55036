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

**Design documents**, as in CouchDB: JavaScript (no ``"language"``, or
``"javascript"``), run in a sandbox (:mod:`.couchjs`), or ``"language": "python"``::

    {"language": "python",
     "views": {"by_code": {"map": "def fun(doc):\\n    yield doc['code'], 1",
                           "reduce": "_count"}}}

``map`` defines ``fun(doc)`` yielding ``(key, value)`` pairs; ``reduce`` is a built-in
(``_sum``, ``_count``, ``_stats``) or defines ``fun(keys, values, rereduce)`` (the
convention of couchdb-python's Python view server). Python design documents run code
in the server, unsandboxed, so only server admins may write them; JavaScript ones are
sandboxed, and database admins may (the server says who may save what).

A view's identity is a hash of its map and reduce source, per view: editing one view
of a design document rebuilds that view only.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

from settee.store.exceptions import BadRequest, NotFound

from . import couchjs, mango, validate
from .spec import InvalidDesignDoc, ViewSpec, compile_function  # noqa: F401 - re-exported

# -- design documents ------------------------------------------------------------
#: The languages of design documents Settee runs ("query": Mango's JSON indexes).
LANGUAGES = ("javascript", "python", "query")


def design_views(doc: dict, check: bool = False, settings=None) -> dict[str, ViewSpec]:
    """The views of design document ``doc`` (``{}`` for a language Settee does not run).
    With ``check``, every view is compiled (``settings`` bound the JavaScript that
    compiling runs) and an unknown language is refused."""
    views = doc.get("views") or {}
    if not isinstance(views, dict):
        raise InvalidDesignDoc("`views` must be an object of view definitions")
    language = doc.get("language", "javascript")
    if language == "query":                     # Mango JSON indexes
        return {ix.name: ix.spec for ix in mango.indexes_of(doc)}
    if language not in LANGUAGES:
        if check:
            raise InvalidDesignDoc(f"language {language!r}: Settee runs design documents in "
                                   "javascript (the default), python and query")
        return {}
    ddoc = doc.get("_id", "_design/?")[len("_design/"):]
    javascript = language == "javascript"
    lib = views.get("lib") if javascript else None
    if javascript and "lib" in views and not isinstance(lib, dict):
        raise InvalidDesignDoc("views.lib must be an object of CommonJS modules")
    specs = {}
    for name, definition in views.items():
        if javascript and name == "lib":        # CouchDB's modules for require(), no view
            continue
        if not isinstance(definition, dict) or not isinstance(definition.get("map"), str):
            raise InvalidDesignDoc(f"view {name!r} needs a `map` source string")
        reduce = definition.get("reduce")
        if reduce is not None and not isinstance(reduce, str):
            raise InvalidDesignDoc(f"reduce of view {name!r} must be a string")
        if javascript:
            specs[name] = couchjs.view_spec(ddoc, name, definition["map"], reduce, lib)
        else:
            specs[name] = ViewSpec(f"{ddoc}/{name}", definition["map"], reduce, "design")
    if check:
        for spec in specs.values():
            spec.compile(settings)
        if javascript and specs:
            couchjs.check_modules(next(iter(specs.values())), settings)
    return specs


def check_design_doc(doc: dict, settings=None) -> None:
    """Raise :class:`InvalidDesignDoc` unless the design document's language is one
    Settee runs, every view compiles, and so does its ``validate_doc_update``."""
    language = doc.get("language", "javascript")
    if not isinstance(language, str):
        raise InvalidDesignDoc("`language` must be a string")
    design_views(doc, check=True, settings=settings)
    validate.check(doc, settings)


def design_view(database, ddoc: str, name: str) -> ViewSpec:
    doc = database[f"_design/{ddoc}"]
    language = doc.get("language", "javascript")
    if language not in LANGUAGES and name in (doc.get("views") or {}):
        raise BadRequest(f"view {ddoc}/{name} is written in {language}; Settee runs "
                         "views in javascript and python")
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
        reduce_ref = (f"{reduce.__module__}:{reduce.__qualname__}" if callable(reduce)
                      else reduce)
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
