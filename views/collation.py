"""View keys as strings whose code-point order is CouchDB's view collation order.

Index rows are stored under ``encode(key) + doc_id``, so a plain ordered range scan
of the backend walks the view in CouchDB's order and key ranges are key-string
ranges. The encoding is self-delimiting (a reader always knows where a key ends), so
the document id can follow it directly and rows with equal keys sort by id.

Order: ``null < false < true < numbers < strings < arrays < objects``; numbers by
value (``1 == 1.0``); arrays element by element, a prefix first; objects as their
``[key, value]`` pairs in document order, element by element.

Strings follow the Unicode Collation Algorithm only approximately (CouchDB uses ICU):
compared first without case, punctuation and symbols before digits before letters;
then, between strings equal without case, lowercase before uppercase. So
``"a" < "A" < "aa" < "b" < "B"`` as in CouchDB's collation table. Where ICU would
order two punctuation marks differently, Settee orders them by code point.
"""
from __future__ import annotations

import struct
from functools import lru_cache
import unicodedata
from typing import Any

END = "\x01"           # ends a string, an array or an object
CASE = "\x02"          # separates a string's case-blind part from its case bits
ESCAPE = "\x03"        # introduces an escaped control character inside a string
NULL, FALSE, TRUE, NUMBER, STRING, ARRAY, OBJECT = "\x10", "\x11", "\x12", "\x13", "\x14", "\x15", "\x16"
#: The greatest key: sorts after every encoded key (for inclusive upper bounds).
HIGH = "\U0010ffff"

_PUNCT, _DIGIT, _LETTER = "\x05", "\x06", "\x07"


def _number(value: float) -> str:
    """16 hex digits whose order is the numbers' order (IEEE-754 bits, sign-flipped)."""
    if value == 0:
        value = 0.0                       # -0.0 and 0.0 are one key
    bits = struct.unpack(">Q", struct.pack(">d", float(value)))[0]
    bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | (1 << 63)
    return f"{bits:016x}"


def _char_class(c: str) -> str:
    if c.isdigit():
        return _DIGIT
    if c.isalpha():
        return _LETTER
    return _PUNCT


def _char_code(c: str) -> str:
    if c < "\x08":
        return ESCAPE + chr(0x40 + ord(c))
    return _char_class(c) + c


# ASCII through str.translate (fast); other characters one by one.
_ASCII = {i: _char_code(chr(i)) for i in range(128)}
_ASCII_CASE = {i: "1" if chr(i).isupper() else "0" for i in range(128)}


@lru_cache(maxsize=65536)
def _string(text: str) -> str:
    if text.isascii():
        return STRING + text.lower().translate(_ASCII) + CASE + text.translate(_ASCII_CASE) + END
    folded = unicodedata.normalize("NFC", text).casefold()
    case = "".join("1" if c.isupper() else "0" for c in text)
    return STRING + "".join(map(_char_code, folded)) + CASE + case + END


def encode(key: Any) -> str:
    """``key`` (any JSON value) as an order-preserving, self-delimiting string."""
    if key is None:
        return NULL
    if key is False:
        return FALSE
    if key is True:
        return TRUE
    if isinstance(key, (int, float)):
        return NUMBER + _number(key)
    if isinstance(key, str):
        return _string(key)
    if isinstance(key, (list, tuple)):
        return ARRAY + "".join(encode(item) for item in key) + END
    if isinstance(key, dict):
        return OBJECT + "".join(encode(k) + encode(v) for k, v in key.items()) + END
    raise TypeError(f"view keys are JSON values, not {type(key).__name__}")


def group_key(key: Any, level: int | None) -> Any:
    """The key a row is grouped under at ``group_level`` (arrays cut to ``level`` items)."""
    if level is None or not isinstance(key, list):
        return key
    return key[:level]
