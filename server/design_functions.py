"""A design document's rendering functions over HTTP, as CouchDB 3 still serves them:

* ``/{db}/_design/{ddoc}/_show/{func}[/{docid}]``: ``function (doc, req)`` renders a
  document (or null) as any response;
* ``/{db}/_design/{ddoc}/_list/{func}/{view}`` and ``.../_list/{func}/{other}/{view}``:
  ``function (head, req)`` renders a view query's rows (``getRow``, ``send``,
  ``start``);
* ``/{db}/_design/{ddoc}/_update/{func}[/{docid}]``: ``function (doc, req)`` returns
  ``[doc, response]``; the document, if any, is written through the write rules
  (validated, as any write), and the answer carries ``X-Couch-Update-NewRev`` and
  ``X-Couch-Id``;
* ``/{db}/_design/{ddoc}/_rewrite/...``: the request sent on to the path the
  design document's ``rewrites`` give it, an array of rules (``from``, ``to``,
  ``method``, ``query``, ``formats``, with ``:name`` and ``*`` bindings) or a
  JavaScript function of ``req``. A rewrite stays inside its database (400
  ``insecure_rewrite_rule`` otherwise) and nests at most :data:`MAX_REWRITES` deep;
  the rewritten request is routed and authorized as if it came so.

The functions run in the design document's sandbox (views/couchapp.py); ``req`` is
CouchDB's (:mod:`.jsrequest`). Shows and lists answer with ``Content-Security-Policy:
sandbox``, as CouchDB does by default: their HTML comes from the database's origin.
"""
from __future__ import annotations

import base64
import binascii
from urllib.parse import quote, urlencode

import orjson
from werkzeug.wrappers import Response

from settee.store import Doc, NotFound
from settee.views import couchapp, definitions
from settee.views.deadline import Deadline, QueryTimeout

from .errors import HTTPError, bad_request
from .jsrequest import REQUESTED_PATH, raw_path, request_object
from .params import Params
from .views import ViewEndpoints, parse_view_query, query_timeout_error, view_for

MAX_REWRITES = 100
REWRITES = "settee.rewrites"        # the environ's count of rewrites so far
CSP = {"Content-Security-Policy": "sandbox"}
JSON_QUERY = ("key", "startkey", "start_key", "endkey", "end_key", "keys")


def external_response(resp, csp: bool, extra: dict | None = None,
                      code: int | None = None) -> Response:
    """A function's response object (``code``, ``headers``, ``body``, ``json`` or
    ``base64``) as the HTTP response, as CouchDB's send_external_response makes it."""
    if isinstance(resp, str):
        resp = {"body": resp}
    if not isinstance(resp, dict):
        raise HTTPError(500, "external_response_error", "Invalid data from external server")
    status, data, kind = 200, b"", "text/html; charset=utf-8"
    headers: dict = {}
    for key, value in resp.items():
        if key == "code":
            if not isinstance(value, int) or isinstance(value, bool) or not 100 <= value < 600:
                raise HTTPError(500, "external_response_error", f"Invalid code {value!r}")
            status = value
        elif key == "json":
            data, kind = orjson.dumps(value), "application/json"
        elif key == "body":
            data = (value if isinstance(value, str) else orjson.dumps(value).decode()).encode()
        elif key == "base64":
            try:
                data = base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError):
                raise HTTPError(500, "external_response_error", "Invalid base64") from None
            kind = "application/binary"
        elif key == "headers" and isinstance(value, dict):
            headers = {str(k): str(v) for k, v in value.items()
                       if "\n" not in str(k) + str(v) and "\r" not in str(k) + str(v)}
        elif key == "stop":
            continue
        else:
            raise HTTPError(500, "external_response_error",
                            f"Invalid data from external server: {key}")
    if not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = kind
    if csp:
        headers.update(CSP)
    headers.update(extra or {})
    return Response(data, status=code or status, headers=headers)


class DesignFunctionEndpoints:
    """Shows, lists, updates and rewrites. ``router`` (the application) answers a
    rewritten request as if it came so: ``router.rewritten(request, method, target,
    body, headers, depth)``."""

    def __init__(self, http, writes, router):
        self.http = http
        self.writes = writes
        self.router = router

    def functions(self, database, ddoc: str) -> tuple[dict, couchapp.DesignFunctions]:
        doc = database[f"_design/{ddoc}"]
        return doc, couchapp.functions_of(doc, self.http.settings)

    def req(self, request, database, docid: str | None = None) -> dict:
        body = self.http.data(request) if request.method not in ("GET", "HEAD") else None
        return request_object(request, database, database.security(), docid, body)

    # -- shows ------------------------------------------------------------------------
    def on_show(self, request, db, ddoc, func, docid=None):
        database = self.http.db(db)
        _, functions = self.functions(database, ddoc)
        functions.handle("shows", func)
        doc = None
        if docid is not None:
            doc = database.get(docid)
            if doc is not None and doc.meta.conflicts:
                doc["_conflicts"] = doc.meta.conflicts
        resp = functions.show(func, doc, self.req(request, database, docid))
        return external_response(resp, csp=True, extra={"Vary": "Accept"})

    # -- lists ------------------------------------------------------------------------
    def on_list(self, request, db, ddoc, func, view, view_ddoc=None):
        database = self.http.db(db)
        _, functions = self.functions(database, ddoc)
        functions.handle("lists", func)
        body = self.http.json_object(request) if request.method == "POST" else {}
        spec = definitions.design_view(database, view_ddoc or ddoc, view)
        index = view_for(database, spec)
        list_params = {k: v for k, v in body.items() if k == "keys"}
        q = parse_view_query(Params(request.args), list_params, index)
        if q.update == "true":
            index.update()
        deadline = Deadline(self.http.settings["query_timeout"])
        state = index.state()
        try:
            if q.reduce:
                entries = index.reductions(start=q.start, end=q.end, keys=q.keys,
                                           descending=q.descending,
                                           inclusive_end=q.inclusive_end)
                rows = list(q.page(index.reduce(deadline.watch(entries), q.group_level,
                                                q.group or q.group_level is not None)))
                head: dict = {}
            else:
                rows = list(q.page(ViewEndpoints.map_rows(database, index, q, deadline)))
                head = {"total_rows": state["rows"], "offset": q.skip}
        except QueryTimeout as e:
            raise query_timeout_error(e) from None
        if q.update_seq:
            head["update_seq"] = str(state["seq"])
        started, text = functions.list(func, head, self.req(request, database), rows)
        response = {k: v for k, v in started.items() if k in ("code", "headers")}
        return external_response({**response, "body": text}, csp=True)

    def on_list_other(self, request, db, ddoc, func, view_ddoc, view):
        return self.on_list(request, db, ddoc, func, view, view_ddoc)

    # -- updates ----------------------------------------------------------------------
    def on_update(self, request, db, ddoc, func, docid=None):
        self.http.check_writable()
        database = self.http.db(db)
        _, functions = self.functions(database, ddoc)
        functions.handle("updates", func)
        doc = database.get(docid) if docid is not None else None
        new, resp = functions.update(func, doc, self.req(request, database, docid))
        if new is None:
            return external_response(resp, csp=False, code=200)
        if not isinstance(new, dict) or not isinstance(new.get("_id"), str) or not new["_id"]:
            raise bad_request("An update function's document needs an _id")
        new_id = new["_id"]
        if new_id.startswith("_design/"):
            self.writes.check_design(request, database, new_id, new)
        self.writes.check_user_doc(request, database, new_id, new)
        self.writes.prepare_attachments(database, new_id, new)
        saved = self.writes.write(request, database, new_id, Doc(new))
        extra = {"X-Couch-Update-NewRev": saved.meta.rev, "X-Couch-Id": quote(new_id, safe="")}
        return external_response(resp, csp=False, extra=extra, code=201)

    # -- rewrites ---------------------------------------------------------------------
    def on_rewrite(self, request, db, ddoc, path=""):
        count = request.environ.get(REWRITES, 0)
        if count >= MAX_REWRITES:
            raise bad_request("Exceeded rewrite recursion limit")
        database = self.http.db(db)
        doc, functions = self.functions(database, ddoc)
        rules = doc.get("rewrites")
        prefix = f"/{quote(db, safe='')}/_design/{quote(ddoc, safe='')}"
        if isinstance(rules, list):
            target = rewrite_by_rules(rules, request.method, path, request.args)
            if target is None:
                raise NotFound(f"_design/{ddoc}/_rewrite", "missing")
            new_path, query = target
            body, headers, method = None, None, request.method
        elif isinstance(rules, str):
            req = self.req(request, database)
            req.pop("info", None), req.pop("form", None), req.pop("uuid", None)
            req.pop("id", None)
            result = functions.rewrite(req)
            if result is None:
                raise HTTPError(404, "rewrite_error", "Invalid path.")
            if "code" in result:
                return external_response({k: v for k, v in result.items()
                                          if k in ("code", "headers", "body")}, csp=False)
            new_path, query, method, headers, body = function_target(result, request)
        else:
            raise HTTPError(404, "rewrite_error", "Invalid path.")
        full = normalize(f"{prefix}/{new_path}")
        if not (full + "/").startswith(f"/{quote(db, safe='')}/"):
            raise bad_request("insecure_rewrite_rule: a rewrite stays inside its database")
        request.environ.setdefault(REQUESTED_PATH, raw_path(request))
        return self.router.rewritten(request, method, full + (f"?{query}" if query else ""),
                               body, headers, count + 1)


def function_target(result: dict, request):
    """``(path, query, method, headers, body)`` of a rewrite function's answer."""
    path = result.get("path")
    if not isinstance(path, str):
        raise HTTPError(500, "rewrite_error", "Rewrite result must produce a new path.")
    method = result.get("method", request.method)
    if not isinstance(method, str):
        raise HTTPError(500, "rewrite_error", "bad method")
    path, _, inline = path.partition("?")
    query = result.get("query")
    if isinstance(query, dict):
        query_text = urlencode({k: v if isinstance(v, str) else orjson.dumps(v).decode()
                                for k, v in query.items()})
    else:
        query_text = inline or request.query_string.decode("latin-1")
    headers = result.get("headers") if isinstance(result.get("headers"), dict) else None
    body = result.get("body")
    return (path.lstrip("/"), query_text, method, headers,
            body.encode() if isinstance(body, str) else None)


def normalize(path: str) -> str:
    """``path`` with ``.`` and ``..`` segments resolved (a ``..`` above the root stays)."""
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            else:
                out.append("..")
        else:
            out.append(part)
    return "/" + "/".join(out)


def split(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def rewrite_by_rules(rules: list, method: str, path: str, args) -> tuple[str, str] | None:
    """The first rule matching ``method`` and ``path`` (the part after ``_rewrite/``):
    ``(target path relative to the design document, query string)``, as CouchDB's
    chttpd_rewrite makes them; None if no rule matches."""
    parts = split(path)
    query = {k: decode(k, v) for k, v in args.items(multi=False)}
    for rule in rules:
        if not isinstance(rule, dict) or not isinstance(rule.get("to"), str):
            continue
        wanted = rule.get("method", "*")
        if wanted != "*" and wanted != method:
            continue
        from_parts = split(rule["from"]) if isinstance(rule.get("from"), str) else ["*"]
        bound = bind(from_parts, parts)
        if bound is None:
            continue
        bindings, rest = bound
        given_formats = rule.get("formats")
        formats: dict = given_formats if isinstance(given_formats, dict) else {}
        bindings = {k: formatted(v, formats.get(k)) for k, v in bindings.items()}
        every = {**query, **bindings}
        given_query = rule.get("query")
        rule_query: dict = given_query if isinstance(given_query, dict) else {}
        made = {k: substitute(v, every) for k, v in rule_query.items()}
        final = {**{k: v for k, v in every.items() if k not in made}, **made}
        target: list[str] = []
        for part in split(rule["to"]):
            if part == "*":
                target += rest
                break
            if part.startswith(":"):
                value = final.get(part[1:])
                target.append("undefined" if value is None else text(value))
            else:
                target.append(part)
        query_text = urlencode({k: orjson.dumps(v).decode() if k in JSON_QUERY else text(v)
                                for k, v in final.items() if k != "*"})
        return "/".join(quote(p, safe="") if p not in ("..", ".") else p for p in target), \
            query_text
    return None


def bind(pattern: list[str], parts: list[str]) -> tuple[dict, list[str]] | None:
    bindings: dict = {}
    for i, token in enumerate(pattern):
        if token == "*":
            bindings["*"] = "/".join(parts[i:])
            return bindings, parts[i:]
        if i >= len(parts):
            return None
        if token.startswith(":"):
            bindings[token[1:]] = parts[i]
        elif token != parts[i]:
            return None
    return (bindings, []) if len(pattern) == len(parts) else None


def decode(name: str, value: str):
    if name in JSON_QUERY:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def substitute(value, bindings: dict):
    if isinstance(value, str):
        if value == "*":
            return bindings.get("*", value)
        if value.startswith(":"):
            return bindings.get(value[1:], value)
        return value
    if isinstance(value, list):
        return [bindings.get(v[1:], v) if isinstance(v, str) and v.startswith(":") else v
                for v in value]
    return value


def formatted(value: str, kind) -> object:
    if kind == "int":
        try:
            return int(value)
        except ValueError:
            return value
    if kind == "bool" and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def text(value) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()
