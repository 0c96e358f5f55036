"""Query parameters, parsed and checked: a bad value is a 400 naming the parameter;
a POST body's members over the URL's (:class:`BodyOverURL`), and the ``queries`` of
a request that asks several at once (``_all_docs/queries``, a view's ``queries``)."""
from __future__ import annotations

from typing import Any, overload

import orjson
from werkzeug.datastructures import MultiDict

from .errors import HTTPError, bad_request
from .representation import Listing

TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


class Params:
    """Typed access to a request's query string (a werkzeug MultiDict)."""

    def __init__(self, args):
        self.args = args

    def __contains__(self, name: str) -> bool:
        return name in self.args

    def _get(self, name: str):
        # ``name in`` first: MultiDict.get raises and catches a KeyError for a missing
        # name, a measurable cost on every request.
        return self.args.get(name) if name in self.args else None

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self._get(name)
        return default if value is None else value

    def bool(self, name: str, default: bool = False) -> bool:
        value = self._get(name)
        if value is None:
            return default
        if value.lower() in TRUE:
            return True
        if value.lower() in FALSE:
            return False
        raise bad_request(f"Invalid boolean parameter {name}={value!r}; use true or false")

    @overload
    def int(self, name: str, default: int, *, minimum: int = ...,
            maximum: int = ...) -> int: ...

    @overload
    def int(self, name: str, default: None = None, *, minimum: int = ...,
            maximum: int = ...) -> int | None: ...

    def int(self, name: str, default: int | None = None, *, minimum: int = 0,
            maximum: int = 2**53) -> int | None:
        value = self._get(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise bad_request(f"Invalid integer parameter {name}={value!r}") from None
        if not minimum <= number <= maximum:
            raise bad_request(f"Parameter {name} must be between {minimum} and {maximum}")
        return number

    def json(self, name: str, default: Any = None) -> Any:
        value = self._get(name)
        if value is None:
            return default
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            raise bad_request(f"Parameter {name} is not valid JSON: {value[:80]!r}") from None

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.args.get(name, default)
        if value not in choices:
            raise bad_request(f"Parameter {name} must be one of {', '.join(choices)}")
        return value

    def first(self, *names: str, kind: str = "json") -> Any:
        """The first of several aliases given (``startkey`` or ``start_key``)."""
        for name in names:
            if name in self.args:
                return getattr(self, kind)(name)
        return None


class BodyOverURL:
    """A query's parameters: a JSON body's members (JSON values) over the URL's
    (text); a member of the wrong type is a 400 naming it."""

    def __init__(self, p: Params, body: dict):
        self.p, self.body = p, body

    def json(self, name: str, default: Any = None) -> Any:
        if name in self.body:
            return self.body[name]
        return self.p.json(name, default)

    def bool(self, name: str, default: bool = False) -> bool:
        if name not in self.body:
            return self.p.bool(name, default)
        value = self.body[name]
        if not isinstance(value, bool):
            raise bad_request(f"{name} must be true or false")
        return value

    def int(self, name: str) -> int | None:
        if name not in self.body:
            return self.p.int(name)
        value = self.body[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad_request(f"{name} must be a non-negative integer")
        return value


#: No URL parameters: what each query of a ``queries`` request is read over.
NO_PARAMS = Params(MultiDict())
#: Most queries one ``queries`` request may hold.
MAX_QUERIES = 100


RANGE_PARAMS = ("key", "startkey", "start_key", "endkey", "end_key")


def check_keys_alone(url, body: dict) -> None:
    """``keys`` names rows one by one: with a key or a range as well it is a 400, as
    CouchDB answers (``url``: the query string's parameters, anything with ``in``)."""
    if "keys" in body or "keys" in url:
        if any(name in body or name in url for name in RANGE_PARAMS):
            raise HTTPError(400, "query_parse_error",
                            "`keys` is incompatible with `key`, `start_key` and `end_key`")


def queries_of(body: dict) -> list[dict]:
    """The ``queries`` of a ``.../queries`` request: a list of objects, 400 if not."""
    queries = body.get("queries")
    if not isinstance(queries, list) or not all(isinstance(q, dict) for q in queries):
        raise bad_request("`queries` must be an array of query objects")
    if len(queries) > MAX_QUERIES:
        raise bad_request(f"At most {MAX_QUERIES} queries per request")
    return queries


def whole(listing: Listing) -> dict:
    """A listing as one JSON object: its head, its rows, its tail."""
    return {**listing.head, listing.key: list(listing.rows), **listing.tail()}
