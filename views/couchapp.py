"""A design document's functions besides its views, as CouchDB's query server runs
them: ``validate_doc_update``, ``filters``, ``shows``, ``lists``, ``updates`` and
``rewrites`` (the function form), in :mod:`.couchjs`'s sandbox.

Each design document gets one context (:func:`functions_of`) whose ``require`` root
is the whole design document (attachments left out), as couchjs resolves it; the
functions are called with the design document as ``this``. Over CouchDB's view
environment (``log``, ``require``, ``sum``, ``isArray``, ``toJSON``) they see its
rendering one: ``start``, ``send``, ``getRow``, ``provides`` and ``registerType``
(the MIME types CouchDB registers by default, and the best match of ``Accept``).

What differs from couchjs: a list function gets its rows in the same call (the
sandbox cannot call back into Python for the next row), so ``getRow`` reads from an
array, and the whole response is answered at once; the rows of one list request are
bounded by the sandbox's memory limit (``js_max_memory``).

Errors, as CouchDB answers them: a validation that throws ``{forbidden: msg}`` is
:class:`Forbidden` (403), ``{unauthorized: msg}`` :class:`Unauthorized` (401), any
other value :class:`FunctionFailed` ``unknown_error`` (500); a show, list or update
that throws is ``render_error`` (500), one that throws ``["error", name, reason]``
or ``{error, reason}`` answers that name (``not_found`` 404, ``not_acceptable``
406, ``method_not_allowed`` 405, else 500). Validations and filters take batches of
documents: one call into V8 per batch.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from settee.store.exceptions import NotFound, StoreError

from .couchjs import DesignContext, design_context, limits
from .javascript import JSError
from .spec import InvalidDesignDoc

RENDER = r"""
(function (global) {
  var S = global.__settee;

  function describe(e) {
    try {
      if (e instanceof Error) return e.name + ": " + e.message;
      if (typeof e === "string") return e;
      return JSON.stringify(e);
    } catch (ignored) { return String(e); }
  }
  function thrown(e) {                // what a function threw, as JSON can carry it
    if (e instanceof Error) return ["js_error", e.name, e.message];
    try { JSON.stringify(e); return ["thrown", e === undefined ? null : e]; }
    catch (ignored) { return ["js_error", "Error", String(e)]; }
  }

  // -- MIME types, as CouchDB's render.js registers them
  var mimesByKey = {}, keysByMime = {};
  function registerType(key) {
    var mimes = Array.prototype.slice.call(arguments, 1);
    mimesByKey[key] = mimes;
    for (var i = 0; i < mimes.length; i++) keysByMime[mimes[i]] = key;
  }
  registerType("all", "*/*");
  registerType("text", "text/plain; charset=utf-8", "txt");
  registerType("html", "text/html; charset=utf-8");
  registerType("xhtml", "application/xhtml+xml", "xhtml");
  registerType("xml", "application/xml", "text/xml", "application/x-xml");
  registerType("js", "text/javascript", "application/javascript", "application/x-javascript");
  registerType("css", "text/css");
  registerType("ics", "text/calendar");
  registerType("csv", "text/csv");
  registerType("rss", "application/rss+xml");
  registerType("atom", "application/atom+xml");
  registerType("yaml", "application/x-yaml", "text/yaml");
  registerType("multipart_form", "multipart/form-data");
  registerType("url_encoded_form", "application/x-www-form-urlencoded");
  registerType("json", "application/json", "text/x-json");

  function strip(s) { return s.replace(/^\s+/, "").replace(/\s+$/, ""); }
  function parseRange(text) {
    var parts = text.split(";"), params = {}, full = strip(parts[0]), i, q;
    for (i = 1; i < parts.length; i++) {
      var kv = parts[i].split("=");
      if (kv.length === 2) params[strip(kv[0])] = strip(kv[1]);
    }
    if (full === "*") full = "*/*";
    q = params.q === undefined ? 1 : parseFloat(params.q);
    if (isNaN(q) || q > 1 || q < 0) q = 1;
    var types = full.split("/");
    return {type: types[0], subtype: types[1] || "*", params: params, q: q};
  }
  function bestMatch(supported, header) {
    var ranges = header.split(",").map(parseRange), best = null;
    supported.forEach(function (mime, index) {
      var target = parseRange(mime), fitness = -1, q = 0;
      ranges.forEach(function (r) {
        if ((r.type === target.type || r.type === "*" || target.type === "*") &&
            (r.subtype === target.subtype || r.subtype === "*" || target.subtype === "*")) {
          var fit = (r.type === target.type ? 100 : 0) + (r.subtype === target.subtype ? 10 : 0);
          for (var p in target.params)
            if (p !== "q" && r.params[p] === target.params[p]) fit += 1;
          if (fit > fitness) { fitness = fit; q = r.q; }
        }
      });
      var score = [fitness, q, index];
      if (best === null || score[0] > best[0][0] ||
          (score[0] === best[0][0] && (score[1] > best[0][1] ||
                                       (score[1] === best[0][1] && score[2] > best[0][2]))))
        best = [score, mime];
    });
    return best !== null && best[0][1] ? best[1] : "";
  }

  var providesUsed = false, mimeFuns = [], responseType = null;
  function resetProvides() { providesUsed = false; mimeFuns = []; responseType = null; }
  function runProvides(req, ddoc) {
    var bestKey = null, bestFun = null, headers = req.headers || {}, i;
    var accept = headers.Accept || headers.accept;
    if (req.query && req.query.format) {
      bestKey = req.query.format;
      responseType = (mimesByKey[bestKey] || [null])[0];
    } else if (accept) {
      var supported = [];
      mimeFuns.slice().reverse().forEach(function (mf) {
        if (mimesByKey[mf[0]]) supported = supported.concat(mimesByKey[mf[0]]);
      });
      responseType = bestMatch(supported, accept);
      bestKey = keysByMime[responseType];
    } else if (mimeFuns.length) {
      bestKey = mimeFuns[0][0];
      responseType = (mimesByKey[bestKey] || [null])[0];
    }
    for (i = 0; bestKey && i < mimeFuns.length; i++) {
      if (mimeFuns[i][0] === bestKey) { bestFun = mimeFuns[i][1]; break; }
    }
    if (bestFun) return bestFun.call(ddoc);
    var types = mimeFuns.map(function (mf) { return (mimesByKey[mf[0]] || []).join(", ") || mf[0]; });
    throw ["error", "not_acceptable", "Content-Type " + (accept || bestKey) +
           " not supported, try one of: " + types.join(", ")];
  }
  global.registerType = registerType;
  global.provides = function (type, fun) { providesUsed = true; mimeFuns.push([type, fun]); };

  // -- rendering: start, send, getRow
  var chunks = [], startResp = {}, rows = [], next = 0;
  function resetList(listRows) { chunks = []; startResp = {}; rows = listRows || []; next = 0; }
  global.start = function (resp) { startResp = resp || {}; };
  global.send = function (chunk) { chunks.push(String(chunk)); };
  global.getRow = function () { return next < rows.length ? rows[next++] : null; };

  function wrap(resp) { return (typeof resp === "string") ? {body: resp} : resp; }
  function withType(resp) {
    resp.headers = resp.headers || {};
    if (responseType) resp.headers["Content-Type"] = resp.headers["Content-Type"] || responseType;
    return resp;
  }
  function renderError(e) {
    if (Array.isArray(e) && e[0] === "error") return ["error", String(e[1]), String(e[2])];
    if (e && typeof e === "object" && e.error && e.reason)
      return ["error", String(e.error), String(e.reason)];
    return ["error", "render_error", "function raised error: " + describe(e)];
  }
  function answer(run) {
    var result;
    try { result = run(); } catch (e) { result = renderError(e); }
    return JSON.stringify([result, S.takeLogs()]);
  }
  function call(handle, args) { return S.fn(handle).apply(S.root(), args); }

  Object.defineProperty(global, "__setteeRender", {value: Object.freeze({
    validate: function (handle, itemsText, ctxText, secText) {
      var items = JSON.parse(itemsText), ctx = JSON.parse(ctxText), sec = JSON.parse(secText);
      var out = [];
      for (var i = 0; i < items.length; i++) {
        try { call(handle, [items[i][0], items[i][1], ctx, sec]); out.push(null); }
        catch (e) { out.push(thrown(e)); }
      }
      return JSON.stringify([out, S.takeLogs()]);
    },
    filter: function (handle, docsText, reqText) {
      return answer(function () {
        var docs = JSON.parse(docsText), req = JSON.parse(reqText), out = [];
        for (var i = 0; i < docs.length; i++) out.push(call(handle, [docs[i], req]) ? true : false);
        return ["ok", out];
      });
    },
    show: function (handle, docText, reqText) {
      var doc = JSON.parse(docText), req = JSON.parse(reqText);
      return answer(function () {
        try {
          resetList(); resetProvides();
          var resp = wrap(call(handle, [doc, req]) || {});
          if (chunks.length) {
            resp.headers = resp.headers || {};
            for (var h in startResp) resp.headers[h] = startResp[h];
            resp.body = chunks.join("") + (resp.body || "");
            resetList();
          }
          if (providesUsed) {
            var provided = wrap(runProvides(req, S.root()) || {});
            resp.body = (resp.body || "") + chunks.join("") + (provided.body || "");
            resp = withType(resp);
            resetList();
          }
          if (resp === null || (typeof resp !== "object" && typeof resp !== "string"))
            throw ["error", "render_error", "undefined response from show function"];
          return ["resp", wrap(resp)];
        } catch (e) {
          if (doc === null && req.id !== null && req.id !== undefined)
            throw ["error", "not_found", "document not found"];
          throw e;
        }
      });
    },
    list: function (handle, headText, reqText, rowsText) {
      return answer(function () {
        var head = JSON.parse(headText), req = JSON.parse(reqText);
        resetProvides(); resetList(JSON.parse(rowsText));
        var tail = call(handle, [head, req]);
        if (providesUsed) tail = runProvides(req, S.root());
        if (tail !== undefined && tail !== null) chunks.push(String(tail));
        var started = withType(startResp || {});
        var body = chunks.join("");
        resetList();
        return ["list", started, body];
      });
    },
    update: function (handle, docText, reqText) {
      return answer(function () {
        var req = JSON.parse(reqText);
        if (req.method === "GET")
          throw ["error", "method_not_allowed", "Update functions do not allow GET"];
        var result = call(handle, [JSON.parse(docText), req]);
        var resp = result ? result[1] : undefined;
        if (resp === null || (typeof resp !== "object" && typeof resp !== "string"))
          throw ["error", "render_error", "undefined response from update function"];
        return ["up", result[0] === undefined ? null : result[0], wrap(resp)];
      });
    },
    rewrite: function (handle, reqText) {
      return answer(function () {
        var req = JSON.parse(reqText), result;
        try { result = call(handle, [req]); }
        catch (e) {
          if (e && typeof e === "object" && (e.forbidden || e.unauthorized))
            return ["thrown", e];
          var failed = renderError(e);
          if (failed[1] === "render_error") failed[1] = "rewrite_error";
          throw failed;
        }
        if (!result) return ["no_dispatch_rule"];
        if (typeof result === "string") result = {path: result, method: req.method};
        return ["ok", result];
      });
    }
  })});
})(globalThis);
"""

#: CouchDB's statuses for the error names a rendering function may throw.
RENDER_STATUS = {"not_found": 404, "not_acceptable": 406, "method_not_allowed": 405,
                 "bad_request": 400, "forbidden": 403, "unauthorized": 401}


class Forbidden(StoreError):
    """A validation (or rewrite) threw ``{forbidden: message}``."""

    error = "forbidden"


class Unauthorized(StoreError):
    """A validation (or rewrite) threw ``{unauthorized: message}``."""

    error = "unauthorized"


class FunctionFailed(JSError):
    """A design document's function failed at request time: CouchDB's error name for
    it (``render_error``, ``unknown_error``, ...) and its status."""

    def __init__(self, error: str, reason: str, status: int = 500):
        super().__init__(reason)
        self.error, self.status = error, status


def thrown_error(value: list) -> StoreError:
    """The error for what a validation threw (``["js_error", name, message]`` or
    ``["thrown", value]``), as CouchDB answers it."""
    if value[0] == "js_error":
        return FunctionFailed("unknown_error", f"{value[1]}: {value[2]}")
    thrown = value[1]
    if isinstance(thrown, dict) and thrown:
        if "forbidden" in thrown:
            return Forbidden(_text(thrown["forbidden"]))
        if "unauthorized" in thrown:
            return Unauthorized(_text(thrown["unauthorized"]))
        return FunctionFailed("unknown_error", _text(next(iter(thrown.values()))))
    return FunctionFailed("unknown_error", _text(thrown))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _raise_failure(result: list) -> None:
    if result[0] == "error":
        name, reason = result[1], result[2]
        if name == "not_found":
            raise NotFound("document", reason)
        raise FunctionFailed(name, reason, RENDER_STATUS.get(name, 500))


class DesignFunctions:
    """The functions of one design document (``doc``, with its ``_id``), compiled in
    its context on first use."""

    def __init__(self, doc: Mapping, settings: Mapping | None = None):
        self.doc = doc
        self.id = doc["_id"]
        # not its revision: a context outlives the saves that change nothing it runs
        root = {k: v for k, v in doc.items() if k not in ("_attachments", "_rev")}
        self.context: DesignContext = design_context(self.id, root, *limits(settings))
        self.context.extend("couchapp", RENDER)

    def has(self, *path: str) -> bool:
        return isinstance(self._source(path), str)

    def _source(self, path) -> Any:
        point: Any = self.doc
        for part in path:
            if not isinstance(point, dict):
                return None
            point = point.get(part)
        return point

    def handle(self, *path: str) -> str:
        """The compiled function at ``path`` (``("shows", "name")``); 404 if none."""
        source = self._source(path)
        if source is None:
            raise NotFound(f"{self.id}/{'/'.join(path)}",
                           f"missing {path[0]} function {path[-1]} on design doc {self.id}")
        try:
            return self.context.function(source, f"{'.'.join(path)} of {self.id}")
        except InvalidDesignDoc as e:
            raise FunctionFailed("compilation_error", e.reason) from None

    def _call(self, function: str, *args) -> Any:
        result, logged = self.context.sandbox.call(function, *args)
        self.context.log(logged)
        return result

    def validate(self, items: list[tuple[dict, dict | None]], user_ctx: dict,
                 sec_obj: dict) -> list[StoreError | None]:
        """For each ``(newDoc, oldDoc)``: None if ``validate_doc_update`` passed it,
        else the error; one call for the batch."""
        handle = self.handle("validate_doc_update")
        out = self._call("__setteeRender.validate", handle, orjson.dumps(items).decode(),
                         orjson.dumps(user_ctx).decode(), orjson.dumps(sec_obj).decode())
        return [None if r is None else thrown_error(r) for r in out]

    def filter(self, name: str, docs: list, req: dict) -> list[bool]:
        """Whether filter ``name`` passes each of ``docs``; one call for the batch."""
        result = self._call("__setteeRender.filter", self.handle("filters", name),
                            orjson.dumps(docs).decode(), orjson.dumps(req).decode())
        _raise_failure(result)
        return result[1]

    def show(self, name: str, doc: dict | None, req: dict) -> dict:
        """Show ``name``'s response object (``body``/``json``/``base64``, ``headers``,
        ``code``)."""
        result = self._call("__setteeRender.show", self.handle("shows", name),
                            orjson.dumps(doc).decode(), orjson.dumps(req).decode())
        _raise_failure(result)
        return result[1]

    def list(self, name: str, head: dict, req: dict, rows: list) -> tuple[dict, str]:
        """``(start response, body)`` of list ``name`` over ``rows``."""
        result = self._call("__setteeRender.list", self.handle("lists", name),
                            orjson.dumps(head).decode(), orjson.dumps(req).decode(),
                            orjson.dumps(rows).decode())
        _raise_failure(result)
        return result[1], result[2]

    def update(self, name: str, doc: dict | None, req: dict) -> tuple[Any, dict]:
        """``(document to save or None, response object)`` of update ``name``."""
        result = self._call("__setteeRender.update", self.handle("updates", name),
                            orjson.dumps(doc).decode(), orjson.dumps(req).decode())
        _raise_failure(result)
        return result[1], result[2]

    def rewrite(self, req: dict) -> dict | None:
        """The rewrite function's answer (``{path, method, query, headers, body}`` or
        ``{code, ...}``), None where no rule dispatches."""
        result = self._call("__setteeRender.rewrite", self.handle("rewrites"),
                            orjson.dumps(req).decode())
        _raise_failure(result)
        if result[0] == "thrown":
            raise thrown_error(result)
        if result[0] == "no_dispatch_rule":
            return None
        if not isinstance(result[1], dict):
            raise FunctionFailed("rewrite_error", "bad rewrite")
        return result[1]


def functions_of(doc: Mapping, settings: Mapping | None = None) -> DesignFunctions:
    """The functions of design document ``doc`` (its context shared per process)."""
    language = doc.get("language", "javascript")
    if language != "javascript":
        raise FunctionFailed("bad_request", f"{doc.get('_id')} is written in {language!r}: "
                             "Settee runs these functions in JavaScript", 400)
    return DesignFunctions(doc, settings)
