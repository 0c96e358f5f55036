"""Fuzzing the HTTP API: thousands of random and malformed requests, no 5xx, data intact.

Requests are drawn by hypothesis from the routes of the OpenAPI description the server
serves (``/_openapi.json``), with hostile path segments (odd unicode, ``%2F``, ``%00``,
``%ff``, ``..``, very long and empty segments, ``_``-prefixed names), bogus query
parameters, odd headers and hostile bodies (bad JSON, invalid UTF-8, huge numbers, deep
nesting, non-object documents, escaped lone surrogates, giant arrays, YAML with tags,
anchors and aliases, JSON with duplicate keys).

Properties checked on every response:

* the status is below 500 and no exception escapes the application;
* every error (4xx) is ``{"error": NAME, "reason": TEXT}`` in the representation the
  request asked for (JSON unless ``Accept`` chose YAML or HTML);

and after each batch: the seeded documents of database ``keep`` are unchanged (same
revision and body, the deleted one still deleted, the view still answers), and in
every database ``GET /{db}``'s ``doc_count`` agrees with ``_all_docs``.

Most requests go to the in-process application (webtest, raw request path as
gunicorn gives it); a smaller batch goes to a real gunicorn with two workers. The
totals (requests sent, 5xx seen) are printed at the end of the module.

Writes to ``keep`` are limited to ones that cannot legitimately change a seed (no
``new_edits=false``, no known revision); every other write goes to scratch databases.
"""
from __future__ import annotations

import base64
import html
import http.client
import http.cookiejar
import re
import time
import warnings
from collections import Counter
from urllib.parse import quote

import orjson
import pytest
import yaml
from httpclient import make_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from liveserver import LiveServer
from webtest.lint import WSGIWarning

from settee.server.openapi import description

STATS: Counter = Counter()          # requests sent and 5xx seen, over the whole module
SPEC = description()
TEMPLATES = sorted(SPEC["paths"])
KEEP, SCRATCH = "keep", "fuzz"
SEED_IDS = ["known-1", "ünïcode/ид", "known-3"]
MAX_BODY = 4 * 1024 * 1024           # the limits the in-process app runs with
MAX_DOCUMENT = 1024 * 1024


# -- requests ----------------------------------------------------------------------------
class Req:
    """One request, as sent on the wire: ``path`` and ``query`` are raw (percent-encoded)."""

    def __init__(self, method: str, path: str, query: str = "", headers: dict | None = None,
                 body: bytes | None = None):
        self.method, self.path, self.query = method, path, query
        self.headers = headers if headers is not None else {}
        self.body = body

    def _repr_pretty_(self, printer, cycle):      # hypothesis prints failing examples so
        printer.text(repr(self))

    @property
    def target(self) -> str:
        return self.path + ("?" + self.query if self.query else "")

    def __repr__(self) -> str:       # what a failure report quotes
        body = self.body if self.body is None or len(self.body) <= 300 else \
            self.body[:300] + b"...(%d bytes)" % len(self.body)
        headers = {k: (v if len(v) <= 200 else v[:200] + f"...({len(v)} chars)")
                   for k, v in self.headers.items()}
        target = self.target if len(self.target) <= 500 else \
            self.target[:500] + f"...({len(self.target)} chars)"
        return f"Req({self.method} {target!r}, headers={headers!r}, body={body!r})"


# -- path segments -----------------------------------------------------------------------
HOSTILE_SEGMENTS = [
    "..", ".", "...", "%2e%2e", "%2E%2E%2F", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%2F..%2F..%2Ftmp%2Fx", "%2F", "%2F..", "a%2Fb", "%2f%2f", "%5C..%5C", "%00", "a%00b",
    "%ff", "%c3%28", "%ed%a0%80", "%ef%bf%bf", "%f4%90%80%80", "%", "%zz", "%2", "%%32%46",
    "_", "__", "_all_docs", "_design", "_local", "_foo", "_changes", "_users",
    "_replicator", "%5F%61ll_docs", "", "%20", "+", "%0d%0aSet-Cookie:%20x=1",
    "%0AX-Injected:%201", "%E2%80%AE", "%F0%9F%92%A9", "con", "nul", "a" * 5000,
    "%41" * 1500, "known-1", "%C3%BCn%C3%AFcode%2F%D0%B8%D0%B4", "known-3", "gone",
    "missing", "doc", "Capital", "a;b", "a,b", "a*b", "~user", "$", "(x)", "%7B%7D",
]

random_text = st.text(st.characters(codec="utf-8"), max_size=40).map(
    lambda t: quote(t, safe=""))
segment = st.one_of(
    st.sampled_from(HOSTILE_SEGMENTS),
    random_text,
    st.lists(st.sampled_from(HOSTILE_SEGMENTS[:40]), min_size=2, max_size=4).map("".join),
    st.from_regex(r"\A[a-z0-9_.%-]{1,12}\Z"),
)
db_segment = st.one_of(
    st.sampled_from([KEEP, SCRATCH, SCRATCH, "_users", "_replicator", "missing-db", "Bad",
                     "a..b", "a%2Fb", "a%2F..", "..", "%2e%2e", "%2F..", "_foo",
                     "x" * 300, "a$()+-_", "9lives"]),
    st.from_regex(r"\A[a-z][a-z0-9_$()+/-]{0,3}\Z").map(lambda n: quote(n, safe="")),
    segment,
)

METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE", "COPY", "PATCH", "OPTIONS",
           "TRACE", "PROPFIND", "get"]

# -- query parameters --------------------------------------------------------------------
KNOWN_PARAMS = sorted({p["name"] for item in SPEC["paths"].values()
                       for op in item.values() if isinstance(op, dict)
                       for p in op.get("parameters", ()) if "name" in p and p.get("in") == "query"}
                      | {p["name"] for p in SPEC["components"]["parameters"].values()
                         if p["in"] == "query"})
BOGUS_VALUES = [
    "abc", "-1", "-0", "0", "1", "1e999", "99999999999999999999999999", "9007199254740993",
    "true", "false", "TRUE", "yes", "", "null", "[", "]", "{", '{"a":', "[1,2", '"a"',
    '"\\ud800"', "%22%5Cud800%22", "%00", "%ff", "%", "%zz", "[[[[[[[[[[", "[" * 2000,
    '{"$gt":null}', "NaN", "Infinity", "1.5", "0x10", " 1", "1 ", "%E2%80%AE",
    "all", '["1-abc"]', "now", "0-", "-5-x", "longpoll", "continuous", "eventsource",
    "main_only", "all_docs", "_doc_ids", "_selector", "_view", "_design", "ok", "x/y",
    "%5B%22known-1%22%5D", "[\"known-1\",1,null,{}]", "a" * 3000,
]
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) |
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12)
param_value = st.one_of(
    st.sampled_from(BOGUS_VALUES),
    random_text,
    json_value.map(lambda v: quote(orjson.dumps(v).decode(), safe="")),
    st.integers().map(str),
)
param_name = st.one_of(st.sampled_from(KNOWN_PARAMS), st.sampled_from(["", "%00", "a[]", "&",
                                                                       "=", "%ff"]),
                       random_text)
query_string = st.one_of(
    st.just(""),
    st.lists(st.tuples(param_name, param_value), max_size=6).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)),
    st.sampled_from(["&&&", "=", "a", "a=1&a=2&a=3", "limit=1&limit=abc", "%", "?", "#x",
                     "skip=-1", "limit=abc", "count=1000000", "keys=[", "startkey=%22a",
                     "key=%00", "rev=%ff"]),
)



def resolve(param: dict) -> dict:
    if "$ref" in param:
        return SPEC["components"]["parameters"][param["$ref"].rsplit("/", 1)[1]]
    return param


def operation_params(template: str, method: str) -> list[dict]:
    """The query parameters the description gives for ``method`` on ``template``."""
    item = SPEC["paths"][template]
    op = item.get(method.lower()) or (item.get("x-copy") if method == "COPY" else None) or {}
    params = [resolve(p) for p in [*item.get("parameters", ()), *op.get("parameters", ())]]
    return [p for p in params if p["in"] == "query"]


INTEGER_VALUES = ["-1", "-0", "0", "1", "abc", "1.5", "1e3", "99999999999999999999",
                  str(2**53 + 1), str(2**63), "", " 7", "0x10", "%00"]
BOOLEAN_VALUES = ["true", "false", "TRUE", "yes", "no", "1", "0", "", "maybe", "%ff", "null"]


def typed_value(param: dict):
    """Values a parameter's type invites, right and wrong."""
    schema = param["schema"]
    if schema.get("type") == "integer":
        return st.one_of(st.sampled_from(INTEGER_VALUES), st.integers().map(str))
    if schema.get("type") == "boolean":
        return st.sampled_from(BOOLEAN_VALUES)
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), param_value)
    if param.get("x-json"):
        return st.one_of(json_value.map(lambda v: quote(orjson.dumps(v).decode(), safe="")),
                         param_value)
    return param_value


@st.composite
def spec_query(draw, template: str, method: str) -> str:
    """A query string mostly of the operation's own parameters, typed and mistyped."""
    params = operation_params(template, method)
    pairs = []
    for _ in range(draw(st.integers(0, 5))):
        if params and draw(st.integers(0, 3)):
            param = draw(st.sampled_from(params))
            pairs.append((param["name"], draw(typed_value(param))))
        else:
            pairs.append((draw(param_name), draw(param_value)))
    if draw(st.integers(0, 5)) == 0:
        return draw(query_string)
    return "&".join(f"{k}={v}" for k, v in pairs)


# -- headers ------------------------------------------------------------------------------
latin1_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                    blacklist_characters="\x7f"), max_size=60)
HEADER_VALUES = {
    "Accept": ["application/json", "text/html", "application/yaml", "text/yaml",
               "image/png", "*/*;q=0", "garbage;;;", "", "application/json;q=abc",
               "*/*", "text/*", "application/*;q=0.5, text/html;q=0.9", ",,,", ";q=1"],
    "Content-Type": ["application/json", "application/yaml", "text/plain", "", "garbage",
                     "application/json; charset=latin-1", "multipart/form-data",
                     "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
                     "text/x-yaml", "application/vnd.x+json", "application/xml", ";;;",
                     "application/octet-stream", "text/html"],
    "If-Match": ['"1-abc"', "*", "garbage", 'W/"1-x"', '""', "W/", '"', ",,,", "1-" + "a" * 500],
    "If-None-Match": ['"1-abc"', "*", "garbage", 'W/"x", "y"', ",", '"'],
    "If-Modified-Since": ["garbage", "Thu, 01 Jan 1970 00:00:00 GMT", "Fri, 31 Dec 9999 "
                          "23:59:59 GMT", "-1", ""],
    "Authorization": ["Basic !!!", "Basic " + base64.b64encode(b"x:y").decode(),
                      "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(), "Basic",
                      "Basic ", "Bearer abc", "Digest x", "basic Og==", "Basic =" * 3],
    "Cookie": ["AuthSession=garbage", "AuthSession=", "AuthSession=a.b",
               "AuthSession=" + base64.urlsafe_b64encode(b"admin:0").decode() + ".00",
               "a=b; AuthSession=%ff", ";;;"],
    "Destination": ["copy-target", "known-1", "known-1?rev=1-abc", "", "_design/x",
                    "_local/x", "../../x", "?rev=", "a%2Fb", "_all_docs"],
    "Origin": ["http://evil.example", "null", ""],
    "Last-Event-ID": ["abc", "-1", "99999999999999999999"],
    "Content-Encoding": ["gzip", "deflate", "garbage"],
    "X-Forwarded-Host": ["evil.example", "", "a" * 300],
}
header_pair = st.one_of(
    st.sampled_from(sorted(HEADER_VALUES)).flatmap(
        lambda name: st.tuples(st.just(name), st.one_of(st.sampled_from(HEADER_VALUES[name]),
                                                        latin1_text))),
    st.tuples(st.from_regex(r"\AX-[A-Za-z0-9-]{1,20}\Z"), latin1_text),
)
headers_strategy = st.lists(header_pair, max_size=4).map(dict)
huge_header = st.sampled_from(["Accept", "If-None-Match", "X-Big", "Authorization",
                               "Cookie"]).map(lambda n: {n: "x" * 100_000})


# -- bodies -------------------------------------------------------------------------------
def nested(depth: int, kind: str = "list") -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def yaml_bomb(levels: int) -> bytes:
    lines = [b'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [".encode() + b",".join([f"*a{i - 1}".encode()] * 10)
                     + b"]")
    return b"\n".join(lines)


JSON_BODIES = [
    b"", b" ", b"{", b'{"a":', b"}", b"null", b"[]", b'"str"', b"1", b"true", b"-0",
    b'{"n": -0}', b'{"n": -0.0}', b'{"n":1e999}', b'{"n":-1e999}', b'{"n":1e-999}',
    b'{"n":123456789012345678901234567890123}', b'{"n":18446744073709551616}',
    b'{"n":NaN}', b'{"n":Infinity}', b'{"s":"\\ud800"}', b'{"s":"\\udfff\\ud800"}',
    b'"\\ud800"', b'{"\\ud800":1}', b'{"a":"\xff\xfe"}', b"\xff\xfe{\x00}\x00",
    b"\xef\xbb\xbf{}", b'{"a":"\xed\xa0\x80"}', b"{'a': 1}", b'{"a":1,}', b"[1,]",
    b'{"a":"\\u0000"}', b'{"_id":"a","_id":"b"}', b'{"_id":"x","_id":"known-1"}',
    b'{"_rev":"1-a","_rev":"2-b"}', b'{"a":1,"a":{"b":2}}', nested(100_000),
    nested(70), nested(65, "dict"), nested(64, "dict"), nested(2000, "dict"),
    b"[" + b"0," * 200_000 + b"0]", b'{"docs":[' + b"{}," * 50_000 + b"{}]}",
    b'{"keys":[' + b'"k",' * 50_000 + b'"k"]}', b'{"_id":"_design/\\u0000"}',
    b'{"_id":""}', b'{"_id":123}', b'{"_id":null}', b'{"_id":"_bad"}', b'{"_id":[]}',
    b'{"_id":"../../x"}', b'{"_id":"a\\r\\nX-Injected: 1"}', b'{"_deleted":"yes"}',
    b'{"_rev":5}', b'{"_rev":"garbage"}', b'{"_revisions":{"start":-1,"ids":"x"}}',
    b'{"_attachments":{"a":{"data":"%%%"}}}', b'{"_unknown":1}', b'{"docs":null}',
    b'{"docs":[1,"a",null,[],{"_id":5}]}', b'{"docs":[{"_id":"x","_rev":"1-a"}],'
    b'"new_edits":"no"}', b'{"selector":{"$where":"1"}}', b'{"selector":{"a":{"$regex":"("}}}',
    b'{"selector":{"a":{"$regex":"(a+)+$"}}}', b'{"selector":[],"limit":-1}',
    b'{"selector":{},"sort":[{"a":"sideways"}],"bookmark":"%%%"}',
    b'{"selector":{"$or":"x"}}', b'{"selector":{"a":{"$in":5}}}',
    b'{"selector":{"a":{"$mod":[0,1]}}}', b'{"selector":{"a":{"$size":-1}}}',
    b'{"selector":{},"fields":[1]}', b'{"selector":{},"use_index":{}}',
    b'{"index":{"fields":[]}}', b'{"index":{"fields":[{"a":"up"}]}}',
    b'{"index":{"fields":["a"]},"ddoc":"","name":5}', b'{"index":{"fields":["a"]},'
    b'"ddoc":"../x","name":"n"}', b'{"admins":"x"}', b'{"members":{"names":[1]}}',
    b"0", b"-1", b"1.5", b"99999999999999999999", b'{"name":1,"password":[]}',
    b'{"name":"admin","password":"\\u0000"}', b'{"since":{"a":1}}', b'{"since":-5}',
    b'{"doc_ids":"x"}', b'{"known-1":"x"}', b'{"known-1":[1,2]}', b'{"":[]}',
    b'{"keys":{"a":1}}', b'{"keys":[null,1,[],{}]}', b'{"limit":-1}', b'{"skip":1.5}',
    b'{"reduce":"x","group_level":-1}', b'{"key":[[[[[[]]]]]]}', b'{"unknown":1}',
    b'{"views":{"v":{"map":"def fun(doc):\\n    yield doc, 1"}},"language":"python"}',
    b'{"views":{"v":{"map":5}},"language":"python"}', b'{"views":"x"}',
    b'{"language":["python"]}', b'{"views":{"v":{"map":"x","reduce":"_nope"}},'
    b'"language":"python"}',
]
YAML_BODIES = [
    b"!!python/object/apply:os.system ['true']",
    b"a: !!python/name:os.system",
    b"a: !!python/object/new:subprocess.Popen [['true']]",
    b"!!python/object:__main__.X {a: 1}",
    b"a: &x 1\nb: *x", b"a: &a [*a]", b"- &a [*a]", b"a: *undefined",
    b"base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2",
    yaml_bomb(4), yaml_bomb(5),
    b"[" * 5000 + b"]" * 5000, b"a:\n" + b"".join(b" " * i + b"- \n" for i in range(200)),
    b"n: 99999999999999999999999", b"n: .nan\nm: .inf", b"d: 2001-12-14t21:59:43.10-05:00",
    b"b: !!binary aGVsbG8=", b"s: !!set {a, b}", b"? [1, 2]\n: x", b"1: a\n2.5: b\nnull: c",
    b"--- a\n--- b", b"%YAML 9.9\n---\na: 1", b"\t- tab", b"a: \xff\xfe", b"a: '\\ud800'",
    b'a: "\\ud800"', b'"\\ud800": 1', b"key: [unclosed", b"- a\nb: c", b"", b"~", b"[]",
    b"a: !!str", b"!foo {a: 1}", b"a: !!int x", b"a: !!float yes",
]
body_strategy = st.one_of(
    st.sampled_from(JSON_BODIES).map(lambda b: (b, "application/json")),
    st.sampled_from(YAML_BODIES).map(lambda b: (b, "application/yaml")),
    st.tuples(st.sampled_from(JSON_BODIES + YAML_BODIES),
              st.sampled_from(HEADER_VALUES["Content-Type"])),
    st.binary(max_size=200).map(lambda b: (b, "application/json")),
    json_value.map(lambda v: (orjson.dumps(v), "application/json")),
    st.dictionaries(st.text(max_size=8), json_value, max_size=6).map(
        lambda d: (orjson.dumps(d), "application/json")),
    st.dictionaries(st.text(max_size=8), json_value, max_size=6).map(
        lambda d: (yaml.safe_dump(d).encode(), "application/yaml")),
)


# -- whole requests ------------------------------------------------------------------------
READ_POSTS = ("_all_docs", "_design_docs", "_bulk_get", "_revs_diff", "_missing_revs",
              "_changes", "_find", "_explain", "_view", "_ensure_full_commit")


def fill(template: str, db: str, names: list[str]) -> str:
    names = iter(names)
    return re.sub(r"\{(\w+)\}", lambda m: db if m.group(1) == "db" else next(names), template)


def confine(req: Req) -> Req:
    """Keep ``keep``'s seeds safe from legitimate writes: see the module docstring."""
    parts = req.path.split("/")
    if len(parts) < 2 or parts[1] != KEEP or req.method in ("GET", "HEAD", "get"):
        return req
    rest = parts[2:]
    tail = "/".join(rest)
    safe = False
    if req.method == "POST" and rest and any(r in READ_POSTS for r in rest):
        safe = True
    elif req.method in ("PUT", "DELETE", "COPY") and len(rest) == 1 and rest[0] in (
            quote(i, safe="") for i in SEED_IDS):
        safe = True            # an update without the current revision: must be refused
    elif req.method in ("PUT", "DELETE") and tail == "_design/fuzz":
        safe = True
    elif req.method == "COPY" and len(rest) == 1:
        safe = True            # copies create new documents, never touch the source
    if safe:
        kept = [p for p in req.query.split("&")
                if not p.lower().startswith(("new_edits", "rev=", "rev%", "batch"))]
        req.query = "&".join(kept)
        req.headers.pop("If-Match", None)
        if req.method == "COPY":
            req.headers["Destination"] = "copy-of-seed"
        if req.body and b"new_edits" in req.body:
            req.body = b"{}"
        return req
    parts[1] = SCRATCH
    req.path = "/".join(parts)
    return req


def bound_feeds(req: Req) -> Req:
    """A waiting ``_changes`` feed waits by design (up to its ``timeout``, 60 s by
    default): give every feed request a short timeout first (the first value counts)."""
    if ("_changes" in req.path or "_db_updates" in req.path) and "feed" in req.query:
        req.query = "timeout=20&" + req.query
    return req


@st.composite
def api_requests(draw, *, bodies: bool = True, huge_headers: bool = True,
                 max_target: int | None = None):
    template = draw(st.sampled_from(TEMPLATES))
    db = draw(db_segment)
    names = draw(st.lists(segment, min_size=4, max_size=4))     # _list/{func}/{view_ddoc}/{view}
    path = fill(template, db, names)
    shape = draw(st.integers(0, 9))
    if shape == 0:
        path += "/"
    elif shape == 1:
        path = path.replace("/", "//", 1)
    elif shape == 2:
        path += "/" + draw(segment)
    methods = [m.upper() for m, op in SPEC["paths"][template].items()
               if m in ("get", "put", "post", "delete", "head")]
    if "x-copy" in SPEC["paths"][template]:
        methods.append("COPY")
    method = draw(st.one_of(st.sampled_from(methods), st.sampled_from(METHODS)))
    headers = draw(headers_strategy)
    if huge_headers and draw(st.integers(0, 30)) == 0:
        headers.update(draw(huge_header))
    body = None
    if bodies and (method in ("PUT", "POST", "COPY") or draw(st.integers(0, 10)) == 0):
        data, content_type = draw(body_strategy)
        body = data
        headers.setdefault("Content-Type", content_type)
    req = Req(method, path, draw(spec_query(template, method)), headers, body)
    req = bound_feeds(confine(req))
    if max_target is not None and len(req.target) > max_target:
        req.path = req.path[:max_target // 2]
        req.query = req.query[:max_target // 2]
    return req


BODY_TARGETS = sorted((method.upper(), template) for template, item in SPEC["paths"].items()
                      for method, op in item.items()
                      if isinstance(op, dict) and "requestBody" in op)
docid_segment = st.one_of(st.sampled_from(["new-doc", "known-1", "copy-target", "a%2Fb",
                                           "org.couchdb.user%3Abob"]),
                          random_text.filter(lambda t: not t.startswith("_")), segment)


@st.composite
def body_requests(draw):
    """Requests that reach a body parser: a route that reads one, an existing database."""
    method, template = draw(st.sampled_from(BODY_TARGETS))
    db = draw(st.sampled_from([SCRATCH, SCRATCH, SCRATCH, KEEP, "_users"]))
    names = [draw(docid_segment), draw(st.sampled_from(["fuzz", "x", "by_a"])),
             draw(st.sampled_from(["by_a", "att", "a%2Fb", "x"]))]
    if template.endswith("{ddoc}") or "{ddoc}/_view" in template:
        names[0] = draw(st.sampled_from(["fuzz", "x", "new"]))
    path = fill(template, db, names)
    data, content_type = draw(body_strategy)
    headers = {"Content-Type": content_type}
    if draw(st.integers(0, 4)) == 0:
        headers.update(draw(headers_strategy))
    return bound_feeds(confine(Req(method, path, draw(spec_query(template, method)), headers,
                                   data)))


@st.composite
def raw_paths(draw):
    """Paths not built from a route: any number of hostile segments."""
    segments = draw(st.lists(st.one_of(segment, db_segment), min_size=0, max_size=6))
    method = draw(st.sampled_from(METHODS))
    req = Req(method, "/" + "/".join(segments), draw(query_string), draw(headers_strategy))
    if method in ("PUT", "POST"):
        req.body, ctype = draw(body_strategy)
        req.headers.setdefault("Content-Type", ctype)
    return bound_feeds(confine(req))


# -- checking responses ------------------------------------------------------------------------
def error_body(status: int, content_type: str, body: bytes) -> dict:
    """The error object of an error response, in whichever representation it came."""
    kind = content_type.split(";")[0].strip()
    if kind == "application/json":
        return orjson.loads(body)
    if kind == "application/yaml":
        return yaml.safe_load(body)
    if kind == "text/html":
        inner = re.search(rb"<pre>(.*?)</pre>", body, re.S)
        assert inner, body[:300]
        return orjson.loads(html.unescape(inner.group(1).decode()))
    raise AssertionError(f"error response {status} of type {content_type!r}: {body[:300]!r}")


def check(req: Req, status: int, content_type: str, body: bytes, where: str) -> None:
    STATS[f"requests ({where})"] += 1
    if status == 501:       # a CouchDB endpoint Settee lacks, said so (server/unimplemented.py)
        if req.method != "HEAD":
            assert error_body(status, content_type, body)["error"] == "not_implemented", body
        STATS[f"501 ({where})"] += 1
        return
    if status >= 500:
        STATS[f"5xx ({where})"] += 1
    assert status < 500, f"{status} for {req!r}: {body[:500]!r}"
    if status >= 400 and req.method != "HEAD":
        value = error_body(status, content_type, body)
        assert isinstance(value, dict), value
        assert isinstance(value.get("error"), str) and value["error"], value
        assert isinstance(value.get("reason"), str) and value["reason"], value


# -- in-process ---------------------------------------------------------------------------------
class Client:
    """What both clients share: ``send(req)`` is theirs, ``raw`` is built on it."""

    def send(self, req: Req):  # pragma: no cover - abstract
        raise NotImplementedError

    def raw(self, method, target, body=None, content_type="application/json"):
        headers = {"Content-Type": content_type} if body is not None else {}
        status, ctype, data = self.send(Req(method, target, headers=headers, body=body))
        return status, (orjson.loads(data) if ctype.startswith("application/json") and data
                        else data)


class NoCookies(http.cookiejar.CookieJar):
    """Each request on its own, as the fuzzer draws it: no cookie kept from an answer
    (the web admin's pages set one), and none looked at: webtest's cookie jar needs
    the request's URL, which a path that is not UTF-8 does not have."""

    def add_cookie_header(self, request):
        pass

    def extract_cookies(self, response, request):
        pass


class InProcess(Client):
    def __init__(self, tmp_path):
        self.app = make_app(tmp_path, server_max_body=MAX_BODY, server_max_document=MAX_DOCUMENT,
                            sqlite_synchronous="OFF", storage_free_space_floor=0)
        self.app.cookiejar = NoCookies()
        self.data_dir = tmp_path / "data"

    def send(self, req: Req):
        """(status, content type, body); an exception from the application propagates."""
        headers = {k: v for k, v in req.headers.items() if k not in ("Transfer-Encoding",
                                                                      "Content-Length")}
        kw = {"method": req.method, "headers": headers, "expect_errors": True}
        if req.body is not None:
            kw["body"] = req.body
        with warnings.catch_warnings():     # webtest's lint: "Unknown REQUEST_METHOD"
            warnings.simplefilter("ignore", WSGIWarning)
            response = self.app.request(req.target, **kw)
        return response.status_int, response.headers.get("Content-Type", ""), response.body

    def ensure_scratch(self):
        if not self.app.app.catalog.exists(SCRATCH):
            self.raw("PUT", "/" + SCRATCH)


class Live(Client):
    """A real gunicorn, spoken to with http.client (which sends the target as given)."""

    def __init__(self, server):
        self.server = server
        self.conn = None

    def _connection(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        return self.conn

    def send(self, req: Req):
        for attempt in (1, 2):
            conn = self._connection()
            try:
                # a client percent-encodes what cannot go in a request line (" 1")
                target = re.sub(r"[^\x21-\x7e]", lambda m: quote(m.group()), req.target)
                conn.putrequest(req.method, target, skip_accept_encoding=True)
                for name, value in req.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding"):
                        conn.putheader(name, value.encode("latin-1"))
                body = req.body or b""
                if body or req.method in ("PUT", "POST"):
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body or None)
                response = conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, response.getheader("Content-Type", ""), data
            except (ConnectionError, http.client.RemoteDisconnected,
                    http.client.BadStatusLine):
                self.close()            # a keep-alive connection closed under us: once more
                if attempt == 2:
                    raise
            except BaseException:
                self.close()            # never leave a half-sent request on the connection
                raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def ensure_scratch(self):
        self.raw("PUT", "/" + SCRATCH)


# -- seeds and the data check ----------------------------------------------------------------
DESIGN = {"language": "python",
          "views": {"by_a": {"map": "def fun(doc):\n    if 'a' in doc:\n        yield doc['a'], 1",
                             "reduce": "_count"}}}


def seed(client) -> dict:
    """Create ``keep`` (seeds) and ``fuzz`` (scratch); the expected state of the seeds."""
    assert client.raw("PUT", "/" + KEEP)[0] == 201
    client.ensure_scratch()
    expected = {}
    bodies = [{"a": 1, "nested": {"x": [1, 2.5, None, "ü"]}},
              {"a": 2, "text": "ünïcode \u2028 \U0001F4A9", "big": 2**63 - 1},
              {"a": 3, "version": 1}]
    for docid, body in zip(SEED_IDS, bodies):
        status, out = client.raw("PUT", f"/{KEEP}/{quote(docid, safe='')}", orjson.dumps(body))
        assert status == 201, out
        expected[docid] = {**body, "_id": docid, "_rev": out["rev"]}
    doc = expected["known-3"]                      # a history of three revisions
    for version in (2, 3):
        body = {**doc, "version": version}
        status, out = client.raw("PUT", f"/{KEEP}/known-3", orjson.dumps(body))
        assert status == 201, out
        doc = expected["known-3"] = {**body, "_rev": out["rev"]}
    status, out = client.raw("PUT", f"/{KEEP}/gone", b"{}")
    assert client.raw("DELETE", f"/{KEEP}/gone?rev={out['rev']}")[0] == 200
    status, out = client.raw("PUT", f"/{KEEP}/_design/fuzz", orjson.dumps(DESIGN))
    assert status == 201, out
    expected["_design/fuzz"] = {**DESIGN, "_id": "_design/fuzz", "_rev": out["rev"]}
    status, out = client.raw("PUT", f"/{KEEP}/_local/seed", b'{"checkpoint": 42}')
    assert status == 201, out
    expected["_local/seed"] = {"checkpoint": 42}
    return expected


def verify(client, expected: dict) -> None:
    """The seeds unchanged; every database's doc_count agrees with its _all_docs."""
    for docid, doc in expected.items():
        if docid.startswith(("_design/", "_local/")):
            target = f"/{KEEP}/{docid}"
        else:
            target = f"/{KEEP}/{quote(docid, safe='')}"
        status, got = client.raw("GET", target)
        assert status == 200, (docid, got)
        if docid.startswith("_local/"):
            got = {k: v for k, v in got.items() if not k.startswith("_")}
        assert got == doc, (docid, got, doc)
    status, got = client.raw("GET", f"/{KEEP}/gone")
    assert status == 404 and got["reason"] == "deleted", got
    status, rows = client.raw("GET", f"/{KEEP}/_design/fuzz/_view/by_a?reduce=false")
    assert status == 200, rows
    seeded = [r for r in rows["rows"] if r["id"] in SEED_IDS]
    assert sorted((r["key"], r["id"]) for r in seeded) == \
        sorted((expected[i]["a"], i) for i in SEED_IDS)
    status, names = client.raw("GET", "/_all_dbs")
    assert status == 200 and KEEP in names, names
    for name in names:
        status, info = client.raw("GET", "/" + quote(name, safe=""))
        assert status == 200, (name, info)
        status, listing = client.raw("GET", f"/{quote(name, safe='')}/_all_docs")
        assert status == 200, (name, listing)
        assert info["doc_count"] == listing["total_rows"] == len(listing["rows"]), \
            (name, info["doc_count"], listing["total_rows"], len(listing["rows"]))


# -- the tests ------------------------------------------------------------------------------------
# The project's profile (conftest.py) decides derandomization: the same examples in CI.
FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def totals(request):
    yield STATS
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    requests_sent = sum(v for k, v in STATS.items() if k.startswith("requests"))
    server_errors = sum(v for k, v in STATS.items() if k.startswith("5xx"))
    line = (f"fuzzing: {requests_sent} requests sent, {server_errors} responses >= 500 "
            f"({', '.join(f'{k}: {v}' for k, v in sorted(STATS.items()))})")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("\n" + line)
    else:  # pragma: no cover
        print(line)


@pytest.fixture(scope="module")
def inproc(tmp_path_factory, totals):
    client = InProcess(tmp_path_factory.mktemp("fuzz"))
    client.expected = seed(client)
    return client


def run_in_process(client, strategy, examples: int):
    @settings(FUZZ, max_examples=examples)
    @given(req=strategy)
    def one(req):
        client.ensure_scratch()
        status, content_type, body = client.send(req)
        check(req, status, content_type, body, "in-process")

    one()
    verify(client, client.expected)


def test_openapi_paths_are_the_routes(inproc):
    """The fuzzer draws from the OpenAPI paths: they must be the server's routes."""
    app = inproc.app.app
    routes = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<\w+:(\w+)>", r"{\1}", rule.rule).rstrip("/") or "/"
        routes.add(path)
    assert routes == set(SPEC["paths"])
    served = inproc.app.get("/_openapi.json")
    assert served.json["openapi"].startswith("3.0") and served.json["paths"] == SPEC["paths"]
    for template, item in SPEC["paths"].items():
        ops = {m for m in item if m in ("get", "put", "post", "delete", "head")}
        rule_methods = {m.lower() for rule in app.url_map.iter_rules()
                        if (re.sub(r"<\w+:(\w+)>", r"{\1}", rule.rule).rstrip("/") or "/")
                        == template for m in rule.methods}
        assert ops <= rule_methods, (template, ops, rule_methods)
        for op in item.values():
            if isinstance(op, dict) and "responses" in op:
                assert "400" in op["responses"] or op.get("operationId") == "head_database"


def test_fuzz_routes_query_parameters_and_headers(inproc):
    run_in_process(inproc, api_requests(bodies=False), 1500)


def test_fuzz_request_bodies(inproc):
    run_in_process(inproc, body_requests(), 1500)


def test_fuzz_any_route_any_body(inproc):
    run_in_process(inproc, api_requests(), 800)


def test_fuzz_raw_paths(inproc):
    run_in_process(inproc, raw_paths(), 700)


def test_fuzz_against_gunicorn_with_two_workers(tmp_path, totals):
    with LiveServer(tmp_path / "data", workers=2, threads=4,
                    SETTEE_SERVER_MAX_BODY=MAX_BODY, SETTEE_SERVER_MAX_DOCUMENT=MAX_DOCUMENT,
                    SETTEE_STORAGE_FREE_SPACE_FLOOR=0) as server:
        client = Live(server)
        expected = seed(client)
        # within gunicorn's limits: longer lines are its own 4xx (test_hostile checks them)
        strategy = api_requests(huge_headers=False, max_target=6000)
        started = time.monotonic()

        @settings(FUZZ, max_examples=1000)
        @given(req=strategy)
        def one(req):
            if time.monotonic() - started > 5 and STATS["requests (gunicorn)"] % 50 == 0:
                client.ensure_scratch()
            status, content_type, body = client.send(req)
            if status in (400, 414, 431) and body.startswith(b"<html>") and \
                    b"<title>Bad Request</title>" in body:
                STATS["requests (gunicorn)"] += 1     # refused by gunicorn, not the app
                STATS["refused by gunicorn"] += 1
                return
            check(req, status, content_type, body, "gunicorn")

        try:
            one()
            client.ensure_scratch()
            verify(client, expected)
        finally:
            client.close()
        log = server.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert "WORKER TIMEOUT" not in log and log.count("Booting worker") == 2, log[-3000:]


def test_the_data_check_notices_a_changed_seed_or_a_miscount(tmp_path):
    """The check after each batch can fail: a changed seed, a deleted one come back."""
    client = InProcess(tmp_path)
    expected = seed(client)
    verify(client, expected)
    changed = {**expected["known-1"], "a": 99}
    assert client.raw("PUT", f"/{KEEP}/known-1", orjson.dumps(changed))[0] == 201
    with pytest.raises(AssertionError):
        verify(client, expected)
    client = InProcess(tmp_path / "again")
    expected = seed(client)
    assert client.raw("PUT", f"/{KEEP}/gone", b'{"back": true}')[0] == 201
    with pytest.raises(AssertionError):
        verify(client, expected)


#: Requests the fuzzing found answered 500, before the fixes named beside them.
FOUND = [
    # store/catalog.py: a database name longer than a file name may be (ENAMETOOLONG)
    Req("DELETE", "/" + "a" * 300 + "/_index/../json/.."),
    Req("GET", "/" + "x" * 300),
    Req("PUT", "/a" + "%2F" * 100),
    # server/representation.py: PyYAML's constructors and composer raising past the 400s
    Req("POST", "/_session", headers={"Content-Type": "application/yaml"}, body=b"a: !!int x"),
    Req("PUT", f"/{SCRATCH}/y", headers={"Content-Type": "application/yaml"},
        body=b"a: !!float yes"),
    Req("POST", f"/{SCRATCH}/_find", headers={"Content-Type": "application/yaml"},
        body=b"[" * 5000 + b"]" * 5000),
    Req("PUT", f"/{SCRATCH}/bomb", headers={"Content-Type": "application/yaml"},
        body=yaml_bomb(8)),
    # server/app.py: _all_dbs compared names with a non-string key
    Req("GET", "/_all_dbs/", "end_key=-1"),
    Req("GET", "/_all_dbs", "startkey=%5B%5D&descending=true"),
]


@pytest.mark.parametrize("req", FOUND, ids=lambda r: f"{r.method} {r.target[:40]}")
def test_requests_the_fuzzing_found(tmp_path, req):
    client = InProcess(tmp_path)
    client.ensure_scratch()
    status, content_type, body = client.send(req)
    check(req, status, content_type, body, "regressions")
    assert 400 <= status < 500, (status, body)
