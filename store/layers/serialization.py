"""The serialization layer: JSON values above, bytes below (orjson).

Assumes of the layer below: a ``MutableMapping[str, bytes]``.

Every stored value starts with one tag byte so that reading never guesses:
``J`` + JSON for a plain JSON value, ``D`` + JSON ``[meta, body]`` for a
:class:`~.document.Doc` (a document body with its metadata). YAML is only a
representation for HTTP; nothing here ever pickles.
"""
from __future__ import annotations

from typing import Any

import orjson

from ..base import CodecLayer
from ..document import Doc, Meta
from ..exceptions import BadRequest, CorruptValue


class JSONSerializer(CodecLayer[Any, bytes]):
    """JSON values (and Docs with their metadata) over a bytes store."""

    option = orjson.OPT_NON_STR_KEYS

    def encode(self, key: str, value: Any) -> bytes:
        try:
            if isinstance(value, Doc):
                return b"D" + orjson.dumps([value.meta.to_json(), value], option=self.option)
            return b"J" + orjson.dumps(value, option=self.option)
        except TypeError as e:
            raise BadRequest(f"value of {key!r} cannot be stored as JSON: {e}") from e

    def decode(self, key: str, stored: bytes) -> Any:
        tag, payload = stored[:1], stored[1:]
        try:
            if tag == b"D":
                meta, body = orjson.loads(payload)
                return Doc(body, Meta.from_json(meta))
            if tag == b"J":
                return orjson.loads(payload)
        except (orjson.JSONDecodeError, TypeError, ValueError) as e:
            raise CorruptValue(key, f"bad JSON ({e})") from e
        raise CorruptValue(key, f"unknown serialization tag {tag!r}")
