"""View keys as strings whose code-point order is CouchDB's view collation order.

Index rows are stored under ``encode(key) + doc_id``, so a plain ordered range scan
of the backend walks the view in CouchDB's order and key ranges are key-string
ranges. The encoding is self-delimiting (a reader always knows where a key ends), so
the document id can follow it directly and rows with equal keys sort by id.

Order: ``null < false < true < numbers < strings < arrays < objects``; numbers by
value (``1 == 1.0``); arrays element by element, a prefix first; objects as their
``[key, value]`` pairs in document order, element by element.

Strings are ordered as :func:`settee.views.selector.sort_key` orders them (one
definition for views and Mango): an approximation of ICU's collation in three levels,
base characters without case or accents (punctuation in CouchDB's documented order,
then digits, then letters), then accents, then case with lowercase first, so
``"a" < "A" < "aa" < "b" < "B"`` as in CouchDB's collation table.
"""
from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any

from .selector import string_levels

END = "\x01"           # ends a string, an array or an object
CASE = "\x02"          # separates a string's case-blind part from its case bits
ESCAPE = "\x03"        # introduces an escaped control character inside a string
NULL, FALSE, TRUE, NUMBER, STRING, ARRAY, OBJECT = "\x10", "\x11", "\x12", "\x13", "\x14", "\x15", "\x16"
#: The greatest key: sorts after every encoded key (for inclusive upper bounds).
HIGH = "\U0010ffff"



def _number(value: float) -> str:
    """16 hex digits whose order is the numbers' order (IEEE-754 bits, sign-flipped)."""
    if value == 0:
        value = 0.0                       # -0.0 and 0.0 are one key
    bits = struct.unpack(">Q", struct.pack(">d", float(value)))[0]
    bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | (1 << 63)
    return f"{bits:016x}"


def _point(rank: int) -> str:
    """A non-negative rank as one character, order kept (surrogates skipped)."""
    cp = 0x30 + rank
    if cp >= 0xD800:
        cp += 0x800
    return chr(min(cp, 0x10FFFD))


def _raw(text: str) -> str:
    return "".join(ESCAPE + chr(0x40 + ord(c)) if c < "\x08" else c for c in text)


@lru_cache(maxsize=65536)
def _string(text: str) -> str:
    """The string's collation levels (:func:`~.selector.string_levels`) as one string:
    base characters, then accents, then case, then the code points as a tiebreak."""
    primary, accents, case, nfc = string_levels(text)
    return (STRING + "".join(chr(0x20 + cls) + _point(rank) for cls, rank in primary)
            + CASE + "".join("".join(map(chr, marks)) + "\x04" for marks in accents)
            + CASE + "".join("1" if c else "0" for c in case)
            + CASE + _raw(nfc) + END)


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
