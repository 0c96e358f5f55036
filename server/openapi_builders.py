"""The OpenAPI description's building blocks: parameters, bodies, responses and
operations as plain dicts, and the error responses every operation may give. Used by
:mod:`.openapi` and :mod:`.openapi_node`."""
from __future__ import annotations

JSON = "application/json"


# -- small builders ---------------------------------------------------------------------
def ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def schema(name: str) -> dict:
    return ref("schemas", name)


def query(name: str, kind: str = "string", description: str = "", **extra) -> dict:
    """A query parameter; ``kind`` "json" is a string holding a JSON value."""
    if kind == "json":
        spec = {"type": "string"}
        extra.setdefault("x-json", True)
        description = description or f"a JSON value, e.g. {name}=\"abc\""
    elif kind == "boolean":
        spec = {"type": "boolean"}
    elif kind == "integer":
        spec = {"type": "integer", "minimum": extra.pop("minimum", 0)}
        if "maximum" in extra:
            spec["maximum"] = extra.pop("maximum")
    elif kind == "enum":
        spec = {"type": "string", "enum": extra.pop("values")}
    else:
        spec = {"type": kind}
    if "default" in extra:
        spec["default"] = extra.pop("default")
    param = {"name": name, "in": "query", "required": False, "schema": spec}
    if description:
        param["description"] = description
    param.update(extra)
    return param


def header(name: str, description: str) -> dict:
    return {"name": name, "in": "header", "required": False, "schema": {"type": "string"},
            "description": description}


def body(name: str, description: str = "", required: bool = True) -> dict:
    content = {JSON: {"schema": schema(name)}, "application/yaml": {"schema": schema(name)}}
    out = {"required": required, "content": content}
    if description:
        out["description"] = description
    return out


def ok(name: str, description: str = "OK", headers: dict | None = None) -> dict:
    out = {"description": description, "content": {JSON: {"schema": schema(name)}}}
    if headers:
        out["headers"] = headers
    return out


def errors(*statuses: int) -> dict:
    """Error responses: always 400, 401, 403, 404?, 406, 500 plus ``statuses``."""
    codes = {400, 401, 403, 406, 500, *statuses}
    return {str(code): ref("responses", ERROR_RESPONSES[code][0]) for code in sorted(codes)}


def operation(summary: str, tag: str, responses: dict, *, params=(), request=None,
              errors_: tuple = (), op_id: str, description: str = "") -> dict:
    out = {"summary": summary, "tags": [tag], "operationId": op_id,
           "parameters": list(params), "responses": {**responses, **errors(*errors_)}}
    if description:
        out["description"] = description
    if request is not None:
        out["requestBody"] = request
    return out


# -- the error responses ---------------------------------------------------------------
ERROR_RESPONSES = {
    400: ("BadRequest", "Malformed request: bad JSON, a bad parameter, a bad id"),
    401: ("Unauthorized", "Credentials missing or wrong (with WWW-Authenticate)"),
    403: ("Forbidden", "Authenticated but not allowed"),
    404: ("NotFound", "No such database, document, view or route"),
    405: ("MethodNotAllowed", "The route does not take this method (with Allow)"),
    406: ("NotAcceptable", "Nothing the Accept header allows"),
    409: ("Conflict", "Document update conflict: the revision is not the current one"),
    412: ("PreconditionFailed", "The database already exists"),
    413: ("TooLarge", "Request body or document over the configured limit"),
    415: ("UnsupportedMediaType", "A body in a media type or content coding (gzip and "
                                  "deflate are read) Settee cannot read"),
    417: ("ExpectationFailed", "all_or_nothing: a document failed, none was written"),
    500: ("ServerError", "A server fault, with a reason; the traceback is logged"),
    501: ("NotImplemented", "A CouchDB endpoint Settee does not implement, named"),
    502: ("BadGateway", "A replication's peer failed to answer (after retries)"),
    503: ("Unavailable", "Storage not writable or below the free-space floor"),
    507: ("InsufficientStorage", "A write refused: the disk is (nearly) full"),
}



def _path_param(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"},
            "description": description}



def _obj(properties: dict, required: tuple = (), additional=True) -> dict:
    out = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    if additional is not True:
        out["additionalProperties"] = additional
    return out


STR, INT, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
ANY: dict = {}
STRINGS = {"type": "array", "items": STR}
