"""CouchDB's JavaScript environment for design documents, in :mod:`.javascript`'s
sandbox: what couchjs gives a design document's functions, and one compiled context
per design document.

A design document without ``"language"`` is JavaScript, as in CouchDB::

    {"views": {"by_code": {"map": "function (doc) { emit(doc.code, 1); }",
                           "reduce": "_count"},
               "lib": {"codes": "exports.upper = function (s) { return s.toUpperCase(); };"}}}

Its functions see, as in CouchDB: ``emit(key, value)``; ``log(message)`` (to
Python's logging, logger ``settee.views.javascript``, at INFO); ``sum(values)``;
``isArray(value)``; ``toJSON(value)``; ``require(path)``, which loads a CommonJS
module stored in the design document (for views, the strings under ``views.lib``:
``require('views/lib/codes')``; ``./`` and ``../`` from inside a module), each module
run once per context. A reduce is a built-in (``_sum``, ``_count``, ``_stats``,
``_approx_count_distinct``: computed natively in Python, :mod:`.reduce`) or a
JavaScript ``function (keys, values, rereduce)``.

A map function that throws for a document skips that document for that view (its
rows so far are dropped) and is logged, as CouchDB does; a call stopped at a limit
(``js_timeout``, ``js_max_memory``) raises instead: the view cannot be brought up to
date, and says why, until the design document is fixed.

:class:`DesignContext` is one design document's compiled code: one sandbox, this
environment, the modules ``require`` reaches, and the functions compiled into it,
each known by a handle. The views of one design document share one
(:func:`design_context`), and so will the design document's other functions
(validation, filters, shows) when Settee runs them. Documents go into a map call in
batches (one call per batch: a call into V8 has a fixed cost), reductions likewise.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from .javascript import DEFAULT_MAX_MEMORY, DEFAULT_TIMEOUT, JSCompileError, Sandbox
from .reduce import BUILTINS, ReduceError, Reducer, make_reducer
from .spec import InvalidDesignDoc, ViewSpec

log = logging.getLogger("settee.views.javascript")

MAX_BATCH_BYTES = 8 << 20       # JSON text per map call (documents in one batch)
CONTEXTS_KEPT = 64              # design contexts a process keeps (least recently used go)

#: The environment, installed once per isolate. Everything but the CouchDB functions
#: stays inside the closure; ``__settee`` (frozen, not writable) is what Python calls.
PRELUDE = r"""
(function (global) {
  var rows = null, logs = [], functions = {}, root = {}, modules = {};
  var MAX_LOGS = 1000, MAX_LOG = 10000;

  function describe(e) {
    try {
      if (e instanceof Error) return e.name + ": " + e.message;
      if (typeof e === "string") return e;
      return JSON.stringify(e);
    } catch (ignored) {
      return String(e);
    }
  }
  function compile(source) {
    var fn;
    try {
      fn = (0, eval)("(" + source + "\n)");
    } catch (e) {             // CouchDB also takes "function (doc) {...};"
      var trimmed = source.replace(/[\s;]+$/, "");
      if (trimmed === source) throw e;
      fn = (0, eval)("(" + trimmed + "\n)");
    }
    if (typeof fn !== "function") throw new TypeError("Expression does not eval to a function");
    return fn;
  }
  function takeLogs() { var out = logs; logs = []; return out; }

  global.emit = function (key, value) {
    if (rows === null) throw new Error("emit() is for map functions");
    rows.push([key === undefined ? null : key, value === undefined ? null : value]);
  };
  global.log = function (message) {
    if (typeof message !== "string") message = JSON.stringify(message);
    if (logs.length < MAX_LOGS) logs.push(String(message).slice(0, MAX_LOG));
  };
  global.sum = function (values) {
    var total = 0;
    for (var i = 0; i < values.length; i++) total += values[i];
    return total;
  };
  global.isArray = function (value) { return Array.isArray(value); };
  global.toJSON = function (value) { return JSON.stringify(value); };

  // CommonJS modules, resolved as CouchDB's couchjs resolves them.
  function invalid(text) { return new Error("invalid_require_path: " + text); }
  function resolve(names, mod, top) {
    if (names.length === 0) {
      if (typeof mod.current !== "string")
        throw invalid("Must require a JavaScript string, not: " + typeof mod.current);
      return {current: mod.current, parent: mod.parent, id: mod.id, exports: {}};
    }
    var n = names.shift();
    if (n === "..") {
      if (!(mod && mod.parent && mod.parent.parent)) throw invalid("Object has no parent");
      return resolve(names, {id: mod.id.slice(0, mod.id.lastIndexOf("/")),
                             parent: mod.parent.parent, current: mod.parent.current});
    } else if (n === ".") {
      if (!(mod && mod.parent)) throw invalid("Object has no parent");
      return resolve(names, {parent: mod.parent, current: mod.current, id: mod.id});
    } else if (top) {
      mod = {current: root};
    }
    var here = mod.current;
    if (here === null || typeof here !== "object" ||
        !Object.prototype.hasOwnProperty.call(here, n))
      throw invalid('Object has no property "' + n + '"');
    return resolve(names, {current: here[n], parent: mod, id: mod.id ? mod.id + "/" + n : n});
  }
  function requireFrom(name, module) {
    if (typeof name !== "string") throw invalid("require() takes a path string");
    var found = resolve(name.split("/"), module ? module.parent : undefined, true);
    if (!Object.prototype.hasOwnProperty.call(modules, found.id)) {
      modules[found.id] = {};         // a circular require gets the empty exports
      try {
        var body = new Function("module", "exports", "require", found.current);
        body.call(global, found, found.exports, function (name) { return requireFrom(name, found); });
      } catch (e) {                   // not cached: the next require runs it again
        delete modules[found.id];
        throw e;
      }
      modules[found.id] = found.exports;
    }
    return modules[found.id];
  }
  global.require = function (name) { return requireFrom(name, null); };

  Object.defineProperty(global, "__settee", {value: Object.freeze({
    fn: function (handle) { return functions[handle]; },
    root: function () { return root; },
    takeLogs: takeLogs,
    setRoot: function (text) { root = JSON.parse(text); modules = {}; return ""; },
    define: function (handle, source) {
      try { functions[handle] = compile(source); return ""; } catch (e) { return describe(e); }
    },
    checkModule: function (source) {
      try { new Function("module", "exports", "require", source); return ""; }
      catch (e) { return describe(e); }
    },
    map: function (handle, text) {
      var fn = functions[handle], docs = JSON.parse(text), out = new Array(docs.length);
      var errors = [], i, result;
      for (i = 0; i < docs.length; i++) {
        rows = [];
        try { fn(docs[i]); out[i] = rows; }
        catch (e) { out[i] = []; errors.push([i, describe(e)]); }
      }
      rows = null;
      try { result = JSON.stringify([out, errors, takeLogs()]); }
      catch (e) {              // a value JSON cannot hold (a BigInt, a cycle): whose?
        for (i = 0; i < out.length; i++) {
          try { JSON.stringify(out[i]); } catch (e2) { out[i] = []; errors.push([i, describe(e2)]); }
        }
        result = JSON.stringify([out, errors, takeLogs()]);
      }
      return result;
    },
    reduce: function (handle, text) {
      var fn = functions[handle], calls = JSON.parse(text), out = new Array(calls.length);
      for (var i = 0; i < calls.length; i++) {
        try {
          var value = fn(calls[i][0], calls[i][1], calls[i][2]);
          out[i] = [value === undefined ? null : value];
        } catch (e) { out[i] = [null, describe(e)]; }
      }
      return JSON.stringify([out, takeLogs()]);
    }
  })});
})(globalThis);
"""


def _quoted(text: str) -> str:
    return orjson.dumps(text).decode()


class DesignContext:
    """One design document's compiled JavaScript: a sandbox with CouchDB's environment,
    ``root`` as what ``require`` resolves paths in, and compiled functions by handle."""

    def __init__(self, name: str, root: Mapping, timeout: float = DEFAULT_TIMEOUT,
                 max_memory: int = DEFAULT_MAX_MEMORY):
        self.name = name
        self.sandbox = Sandbox(name, timeout, max_memory)
        self.sandbox.install(PRELUDE)
        self.sandbox.install(f"__settee.setRoot({_quoted(orjson.dumps(root).decode())})")
        self._handles: set[str] = set()
        self._extensions: set[str] = set()
        self._lock = threading.Lock()

    def extend(self, name: str, script: str) -> None:
        """Install ``script`` (another environment over this one: a design document's
        other functions, :mod:`.couchapp`) once, known as ``name``."""
        with self._lock:
            if name not in self._extensions:
                self.sandbox.install(script)
                self._extensions.add(name)

    def function(self, source: Any, what: str) -> str:
        """Compile function ``source`` here (once); its handle. ``what`` names it in
        the :class:`InvalidDesignDoc` raised when it does not compile."""
        if not isinstance(source, str) or not source.strip():
            raise InvalidDesignDoc(f"{what}: the source must be a non-empty string")
        handle = hashlib.sha1(source.encode()).hexdigest()[:20]
        with self._lock:
            if handle not in self._handles:
                try:
                    self.sandbox.install(f"__settee.define({_quoted(handle)}, {_quoted(source)})")
                except JSCompileError as e:
                    raise InvalidDesignDoc(f"{what}: {e.reason}") from None
                self._handles.add(handle)
        return handle

    def check_module(self, source: Any, what: str) -> None:
        """Raise :class:`InvalidDesignDoc` unless ``source`` compiles as a module."""
        if not isinstance(source, str):
            raise InvalidDesignDoc(f"{what}: a module must be a string of JavaScript")
        reason = self.sandbox.evaluate(f"__settee.checkModule({_quoted(source)})")
        if reason:
            raise InvalidDesignDoc(f"{what}: {reason}")

    def map(self, handle: str, docs: list) -> tuple[list[list], list[tuple[int, str]]]:
        """``(rows of each document, [(index, reason) of each document that threw])``."""
        rows: list[list] = []
        errors: list[tuple[int, str]] = []
        for start, text in _batches(docs):
            out, failed, logged = self.sandbox.call("__settee.map", handle, text)
            rows += out
            errors += [(start + i, reason) for i, reason in failed]
            self._log(logged)
        return rows, errors

    def reduce(self, handle: str, calls: list[list]) -> list[list]:
        """``[value]`` or ``[None, reason]`` for each ``[keys, values, rereduce]``."""
        out, logged = self.sandbox.call("__settee.reduce", handle,
                                        orjson.dumps(calls).decode())
        self._log(logged)
        return out

    def log(self, messages: list[str]) -> None:
        """Pass what the functions logged on to Python's logging."""
        self._log(messages)

    def _log(self, messages: list[str]) -> None:
        for message in messages:
            log.info("%s: %s", self.name, message)

    def close(self) -> None:
        self.sandbox.close()


def _batches(docs: list) -> Iterator[tuple[int, str]]:
    """``(index of the first, JSON array text)`` of batches of at most MAX_BATCH_BYTES
    (a document larger than that goes alone)."""
    parts: list[bytes] = []
    size = start = 0
    for i, doc in enumerate(docs):
        text = orjson.dumps(doc)
        if parts and size + len(text) > MAX_BATCH_BYTES:
            yield start, (b"[" + b",".join(parts) + b"]").decode()
            parts, size, start = [], 0, i
        parts.append(text)
        size += len(text) + 1
    if parts:
        yield start, (b"[" + b",".join(parts) + b"]").decode()


_CONTEXTS: OrderedDict[tuple, DesignContext] = OrderedDict()
_CONTEXTS_LOCK = threading.Lock()


def design_context(name: str, root: Mapping, timeout: float = DEFAULT_TIMEOUT,
                   max_memory: int = DEFAULT_MAX_MEMORY) -> DesignContext:
    """The process's context of design document ``name`` with ``root`` (made once per
    name, root and limits; the least recently used beyond CONTEXTS_KEPT are closed,
    and made again if used again)."""
    key = (name, orjson.dumps(root, option=orjson.OPT_SORT_KEYS), timeout, max_memory)
    with _CONTEXTS_LOCK:
        found = _CONTEXTS.get(key)
        if found is not None:
            _CONTEXTS.move_to_end(key)
            return found
    made = DesignContext(name, root, timeout, max_memory)
    with _CONTEXTS_LOCK:
        found = _CONTEXTS.setdefault(key, made)
        _CONTEXTS.move_to_end(key)
        while len(_CONTEXTS) > CONTEXTS_KEPT:
            _, old = _CONTEXTS.popitem(last=False)
            old.close()
    if found is not made:
        made.close()
    return found


# -- views --------------------------------------------------------------------------
def limits(settings: Mapping | None) -> tuple[float, int]:
    """``(js_timeout, js_max_memory)`` from ``settings`` (the defaults without)."""
    if settings is None:
        return DEFAULT_TIMEOUT, DEFAULT_MAX_MEMORY
    return (settings.get("js_timeout", DEFAULT_TIMEOUT),
            settings.get("js_max_memory", DEFAULT_MAX_MEMORY))


def view_spec(ddoc: str, name: str, map_source: str, reduce: str | None,
              lib: Mapping | None) -> ViewSpec:
    """The spec of JavaScript view ``name`` of design document ``_design/{ddoc}``: its
    map source and ``views.lib`` (the modules it may require) as JSON, so editing
    either rebuilds the view."""
    source = orjson.dumps({"map": map_source, "lib": lib}, option=orjson.OPT_SORT_KEYS)
    return ViewSpec(f"{ddoc}/{name}", source.decode(), reduce, "javascript")


def compile_spec(spec: ViewSpec, settings: Mapping | None = None):
    """``(map, reducer)`` of a JavaScript view spec (:data:`.spec.COMPILERS`)."""
    return _compile(spec, limits(settings))


def _compile(spec: ViewSpec, bounds: tuple[float, int]):
    ddoc = spec.name.split("/", 1)[0]
    parts = orjson.loads(spec.map_source)
    context = design_context(f"_design/{ddoc}", {"views": {"lib": parts.get("lib") or {}}},
                             *bounds)
    mapper = JSMap(context, context.function(parts["map"], f"map of {spec.name}"), spec, bounds)
    reduce = spec.reduce_source
    if reduce is None:
        return mapper, None
    if reduce.strip() in BUILTINS:
        return mapper, make_reducer(reduce.strip())
    if reduce.startswith("_"):
        raise InvalidDesignDoc(f"unknown built-in reduce {reduce!r} in {spec.name}; Settee "
                               f"has {', '.join(BUILTINS)} or JavaScript functions")
    return mapper, JSReduce(context, context.function(reduce, f"reduce of {spec.name}"))


def check_modules(spec: ViewSpec, settings: Mapping | None = None) -> None:
    """Every module under ``views.lib`` of a JavaScript spec must compile."""
    lib = orjson.loads(spec.map_source).get("lib")
    if lib is None:
        return
    if not isinstance(lib, dict):
        raise InvalidDesignDoc("views.lib must be an object of CommonJS modules")
    ddoc = spec.name.split("/", 1)[0]
    context = design_context(f"_design/{ddoc}", {"views": {"lib": lib}}, *limits(settings))

    def walk(node, path):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{path}/{key}")
            else:
                context.check_module(value, f"module {path}/{key}")
    walk(lib, "views/lib")


class JSMap:
    """A view's map function in its design context. Called with one document it
    returns its rows (raising what the function threw); :meth:`map_many` maps a
    batch in one call. Pickles as its spec (compiled again where it lands)."""

    def __init__(self, context: DesignContext, handle: str, spec: ViewSpec,
                 bounds: tuple[float, int]):
        self.context, self.handle, self.spec, self.bounds = context, handle, spec, bounds

    def map_many(self, docs: list) -> tuple[list[list], list[tuple[int, str]]]:
        return self.context.map(self.handle, docs)

    def __call__(self, doc) -> list:
        rows, errors = self.map_many([doc])
        if errors:
            raise ValueError(errors[0][1])
        return rows[0]

    def __reduce__(self):
        return _recompiled_map, (self.spec, self.bounds)


def _recompiled_map(spec: ViewSpec, bounds: tuple[float, int]) -> JSMap:
    return _compile(spec, bounds)[0]


class JSReduce(Reducer):
    """A JavaScript ``function (keys, values, rereduce)``; a batch of reductions is
    one call (:meth:`reduce_many`)."""

    name = "javascript"

    def __init__(self, context: DesignContext, handle: str):
        self.context, self.handle = context, handle

    def reduce(self, keys, values):
        return self._one([keys, values, False])

    def rereduce(self, values):
        return self._one([None, values, True])

    def reduce_many(self, groups):
        out = self.context.reduce(self.handle, [[keys, values, False] for keys, values in groups])
        return [ReduceError(f"reduce function failed: {r[1]}") if len(r) > 1 else r[0]
                for r in out]

    def _one(self, call):
        result = self.context.reduce(self.handle, [call])[0]
        if len(result) > 1:
            raise ReduceError(f"reduce function failed: {result[1]}")
        return result[0]
