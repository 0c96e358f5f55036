"""Representations: reading request bodies and rendering responses as JSON, YAML or HTML.

JSON is the default (no ``Accept``, ``*/*``, ``application/json`` and ``text/plain``
all get ``application/json``, as CouchDB sends). YAML (``application/yaml``, also
asked for as ``application/x-yaml`` or ``text/yaml``) and a readable HTML page
(``text/html`` preferred, as browsers ask) are Settee's extensions. The choice uses
werkzeug's ``Accept`` parsing with q-values; nothing acceptable is 406.

Large results (``_all_docs``, ``_changes``, views) are :class:`Listing` objects and
are streamed row by row in every representation, never built whole in memory.
"""
from __future__ import annotations

import datetime
import html
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
import yaml
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from settee.store import Doc

from .errors import HTTPError

JSON, YAML, HTML = "application/json", "application/yaml", "text/html"
OFFERS = [JSON, YAML, HTML, "text/plain", "application/x-yaml", "text/yaml", "text/event-stream"]
#: ``text/event-stream``: what a browser's EventSource asks for (``_changes?feed=
#: eventsource``, whose answer is that type whatever is asked; its errors are JSON).
ALIASES = {"text/plain": JSON, "application/x-yaml": YAML, "text/yaml": YAML,
           "text/event-stream": JSON}
JSON_BODY_TYPES = {"", "application/json", "text/plain", "application/x-www-form-urlencoded",
                   "application/octet-stream"}
YAML_BODY_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}


def choose(header: str | None) -> str:
    """The representation for a request's ``Accept`` header (its text, or None)."""
    if header is None:
        return JSON
    best = _best_offer(header)
    if best is None:
        raise HTTPError(406, "not_acceptable",
                        "Settee answers application/json, application/yaml or text/html")
    return best


@lru_cache(maxsize=512)
def _best_offer(header: str) -> str | None:
    """Parsing and matching with q-values is most of a small GET's own work; clients
    send the same few headers again and again."""
    accept = parse_accept_header(header, MIMEAccept)
    if not accept:
        return JSON
    best = accept.best_match(OFFERS)
    return None if best is None else ALIASES.get(best, best)


# -- request bodies --------------------------------------------------------------
def depth_ok(value: Any, limit: int) -> bool:
    """Whether ``value`` nests at most ``limit`` containers deep (iterative, a level of
    the tree at a time)."""
    containers = (dict, list)
    level = [value] if isinstance(value, containers) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return False
        below: list = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            below += [child for child in children if isinstance(child, containers)]
        level = below
    return True


class BodyLoader(yaml.SafeLoader):
    """Safe YAML for request bodies: no aliases, and nesting bounded while parsing.

    An alias (``*name``) can expand a few hundred bytes into a value of billions of
    nodes ("billion laughs"), past every size limit; and PyYAML composes nested nodes
    recursively, so a deep enough body would exhaust the stack before the depth check.
    """

    def __init__(self, stream, max_depth: int):
        super().__init__(stream)
        self.max_depth, self.depth = max_depth, 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not accepted in request bodies",
                self.peek_event().start_mark)
        self.depth += 1
        if self.depth > self.max_depth + 1:     # + 1: a scalar inside the deepest container
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {self.max_depth} levels",
                self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def parse_body(data: bytes, mimetype: str, max_depth: int) -> Any:
    """The request body as a JSON value; 400 when malformed, 415 when unreadable."""
    mimetype = (mimetype or "").lower()
    if mimetype in YAML_BODY_TYPES:
        try:
            loader = BodyLoader(data.decode("utf-8"), max_depth)
            try:
                value = loader.get_single_data()
            finally:
                loader.dispose()
        except UnicodeDecodeError as e:
            raise HTTPError(400, "bad_request", f"Request body is not valid UTF-8: {e}") from e
        except yaml.YAMLError as e:
            raise HTTPError(400, "bad_request", f"Invalid YAML: {e}") from e
        except (ValueError, TypeError, OverflowError) as e:    # "!!int x", "!!float yes"
            raise HTTPError(400, "bad_request", f"Invalid YAML value: {e}") from e
        value = _yaml_to_json(value)
    elif mimetype in JSON_BODY_TYPES or mimetype.endswith("+json"):
        if not data.strip():
            raise HTTPError(400, "bad_request", "Request body is empty; expected JSON")
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            reason = "invalid UTF-8 JSON" if "utf-8" in str(e).lower() else f"Invalid JSON: {e}"
            raise HTTPError(400, "bad_request", reason) from e
        if LONG_NUMBER.search(data):
            check_integers(data)
    else:
        raise HTTPError(415, "bad_content_type",
                        f"Content-Type {mimetype!r} cannot be read; send application/json "
                        "or application/yaml")
    if not depth_ok(value, max_depth):
        raise HTTPError(400, "bad_request", f"JSON nested deeper than {max_depth} levels")
    return value


#: Integers Settee stores exactly: 64 bits, as orjson reads and writes them. JSON has
#: no limit, and orjson reads a longer integer as the nearest float, silently.
INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1
#: A run of digits that may be such an integer (19 digits and more): the only bodies
#: read a second time, by the standard library, which hands over each integer's text.
LONG_NUMBER = re.compile(rb"[0-9]{19}")


def too_large(number: int) -> HTTPError:
    return HTTPError(400, "bad_request", f"The integer {number} is outside the 64-bit range "
                     "Settee keeps exactly; send it as a string")


def check_integers(data: bytes) -> None:
    """400 if the JSON ``data`` holds an integer orjson would have read as a float."""
    def parse_int(text: str) -> int:
        number = int(text)
        if not INT_MIN <= number <= INT_MAX:
            raise too_large(number)
        return number
    try:
        json.loads(data, parse_int=parse_int)
    except ValueError:             # orjson read it: the standard library's quirks aside
        pass


def _yaml_to_json(value: Any, path: str = "body") -> Any:
    """YAML's values as JSON ones, or 400 naming the first that has no JSON form.

    Timestamps become ISO 8601 text and non-string mapping keys their JSON text
    (``1`` -> ``"1"``, ``true`` -> ``"true"``); NaN and infinities (``.nan``,
    ``.inf``), sets, binary and integers beyond 64 bits are refused, never changed.
    """
    if isinstance(value, str):
        return _text(value, path)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise too_large(value)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise HTTPError(400, "bad_request", f"{path} is {value}: JSON has no NaN or "
                            "infinity")
        return value
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return [_yaml_to_json(item, f"{path}.{i}") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = _yaml_key(key, path)
            if name in out:             # 1 and "1": one JSON key, and one value lost
                raise HTTPError(400, "bad_request", f"{path} has the key {name!r} twice "
                                "once written as JSON")
            out[name] = _yaml_to_json(item, f"{path}.{name}")
        return out
    kinds: dict[type, str] = {set: "a set (!!set)", bytes: "binary (!!binary)"}
    kind = kinds.get(type(value),
                                                                 type(value).__name__)
    raise HTTPError(400, "bad_request", f"{path} is {kind}, which has no JSON form")


def _text(value: str, path: str) -> str:
    """``value``, if it is text JSON can carry (YAML's ``"\\ud800"`` is half a character)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPError(400, "bad_request", f"{path} holds a lone surrogate (half of a "
                        "UTF-16 pair), which is not text") from None
    return value


def _yaml_key(key: Any, path: str) -> str:
    if isinstance(key, str):
        return _text(key, path)
    if isinstance(key, bool) or key is None:
        return orjson.dumps(key).decode()
    if isinstance(key, (int, float, datetime.date)):
        return str(_yaml_to_json(key, path))
    raise HTTPError(400, "bad_request", f"{path} has a key of type {type(key).__name__}, "
                    "which has no JSON form")


# -- responses ----------------------------------------------------------------------
@dataclass
class Listing:
    """A streamed result: ``head`` fields, then ``rows`` under ``key``, then ``tail()``."""

    head: dict[str, Any]
    key: str
    rows: Iterable[Any]
    tail: Callable[[], dict[str, Any]] = field(default=lambda: {})
    title: str = ""


def dump_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


class Dumper(yaml.SafeDumper):
    """Safe YAML, which also knows documents (``Doc`` is a dict with metadata)."""


Dumper.add_representer(Doc, yaml.representer.SafeRepresenter.represent_dict)


def dump_yaml(value: Any) -> bytes:
    return yaml.dump(value, Dumper=Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False).encode()


def render(value: Any, kind: str, title: str = "Settee") -> bytes:
    if kind == YAML:
        return dump_yaml(value)
    if kind == HTML:
        return page(title, pretty(value))
    return dump_json(value) + b"\n"


def stream(listing: Listing, kind: str) -> Iterator[bytes]:
    if kind == YAML:
        return _stream_yaml(listing)
    if kind == HTML:
        return _stream_html(listing)
    return _stream_json(listing)


def _stream_json(listing: Listing) -> Iterator[bytes]:
    head = dump_json(listing.head)
    opening = head[:-1] + (b"," if listing.head else b"") + b'"' + listing.key.encode() + b'":['
    yield opening
    first = True
    batch: list[bytes] = []
    for row in listing.rows:
        batch.append((b"\n" if first else b",\n") + dump_json(row))
        first = False
        if len(batch) >= 64:
            yield b"".join(batch)
            batch = []
    if batch:
        yield b"".join(batch)
    # CouchDB's layout, which clients parse line by line: one row per line, then the
    # closing bracket on a line of its own and the tail's fields on the next.
    tail = listing.tail()
    yield b"\n]" + (b",\n" + dump_json(tail)[1:] if tail else b"}") + b"\n"


def _stream_yaml(listing: Listing) -> Iterator[bytes]:
    if listing.head:
        yield dump_yaml(listing.head)
    rows = iter(listing.rows)
    first = next(rows, None)
    if first is None:
        yield f"{listing.key}: []\n".encode()
    else:
        yield f"{listing.key}:\n".encode() + dump_yaml([first])
        for row in rows:
            yield dump_yaml([row])
    tail = listing.tail()
    if tail:
        yield dump_yaml(tail)


def _stream_html(listing: Listing) -> Iterator[bytes]:
    top, bottom = page(listing.title or "Settee", b"\x00").split(b"\x00")
    yield top
    if listing.head:
        yield pretty(listing.head)
    yield f"<h2>{html.escape(listing.key)}</h2><ol>".encode()
    for row in listing.rows:
        yield b"<li>" + pretty(row) + b"</li>\n"
    yield b"</ol>"
    tail = listing.tail()
    if tail:
        yield pretty(tail)
    yield bottom


def pretty(value: Any) -> bytes:
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    return f"<pre>{html.escape(text)}</pre>".encode()


def page(title: str, body: bytes) -> bytes:
    head = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            "</title><style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}"
            "pre{background:#f6f6f6;padding:.6em;overflow:auto}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>")
    return head.encode() + body + b"</body></html>\n"
