"""View keys as strings whose code-point order is CouchDB's view collation order.

Index rows are stored under ``encode(key) + doc_id``, so a plain ordered range scan
of the backend walks the view in CouchDB's order and key ranges are key-string
ranges. The encoding is self-delimiting (a reader always knows where a key ends), so
the document id can follow it directly and rows with equal keys sort by id.

Order: ``null < false < true < numbers < strings < arrays < objects``; numbers by
value (``1 == 1.0``); arrays element by element, a prefix first; objects as their
``[key, value]`` pairs in document order, element by element.

Strings are ordered as :func:`sort_key` orders them (one definition for views and
Mango): an approximation of ICU's collation in three levels,
base characters without case or accents (punctuation in CouchDB's documented order,
then digits, then letters), then accents, then case with lowercase first, so
``"a" < "A" < "aa" < "b" < "B"`` as in CouchDB's collation table.
"""
from __future__ import annotations

import struct
import unicodedata
from functools import lru_cache
from typing import Any


class Sentinel:
    """A named value apart from every JSON value."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: Open ends of a range (Mango's ``range_for``); :func:`sort_key` puts them below and
#: above every value.
MIN, MAX = Sentinel("MIN"), Sentinel("MAX")

#: ASCII punctuation and symbols in the order of CouchDB's documented collation sequence
#: (space first); all of them sort before digits, digits before letters.
_PUNCT = " `^_-,;:!?.'\"()[]{}@*/\\&#%+<=>|~$"
_PUNCT_RANK = {c: i for i, c in enumerate(_PUNCT)}


def _primary(c: str) -> tuple[int, int]:
    if c in _PUNCT_RANK:
        return (0, _PUNCT_RANK[c])
    if c.isdigit():
        return (1, unicodedata.digit(c, 0))
    if c.isalnum():
        return (2, ord(c))
    return (0, len(_PUNCT) + ord(c))     # other symbols: after ASCII ones, by code point


@lru_cache(maxsize=8192)
def string_levels(text: str) -> tuple:
    """Three UCA-like levels (base letters, accents, case) and an NFC tiebreak."""
    primary: list = []
    accents: list[list[int]] = []
    case: list[int] = []
    for c in unicodedata.normalize("NFD", text):
        if unicodedata.combining(c):
            if accents:
                accents[-1].append(ord(c))
            continue
        if unicodedata.category(c)[0] == "C":   # controls and format characters: ignored
            continue
        primary.extend(_primary(f) for f in c.casefold())
        accents.append([])
        case.append(1 if c.isupper() or c.istitle() else 0)
    return (tuple(primary), tuple(map(tuple, accents)), tuple(case),
            unicodedata.normalize("NFC", text))


def sort_key(value: Any) -> tuple:
    """A key for ``sorted(key=...)`` that orders JSON values by CouchDB view collation.

    ``null < false < true < numbers < strings < arrays < objects``; numbers by value
    (``1`` and ``1.0`` are equal); arrays element by element, a prefix first; objects
    as their ``[key, value]`` pairs in document order, element by element.

    Strings approximate ICU's Unicode Collation Algorithm in three levels: first the
    case-folded base letters without accents (ASCII punctuation in the order of
    CouchDB's documented sequence, then other symbols, then digits, then letters);
    then accents; then case, lowercase first; so ``"a" < "A" < "aa" < "b" < "B"``.
    Strings equal on all three levels are ordered by code point (canonically
    equivalent strings are equal). Letters of different scripts are ordered by code
    point, not by ICU's tables. ``MIN``/``MAX`` sort below/above everything.
    """
    if value is None:
        return (0,)
    if value is False:
        return (1,)
    if value is True:
        return (2,)
    if isinstance(value, (int, float)):
        return (3, value)
    if isinstance(value, str):
        return (4, string_levels(value))
    if isinstance(value, (list, tuple)):
        return (5, tuple(sort_key(v) for v in value))
    if isinstance(value, dict):
        return (6, tuple((sort_key(k), sort_key(v)) for k, v in value.items()))
    if value is MIN:
        return (-1,)
    if value is MAX:
        return (7,)
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def raw_key(value: Any) -> tuple:
    """``_id`` comparisons: CouchDB's ``cmp_raw``, Erlang's order of the JSON terms.

    ``numbers < false < null < true < objects < arrays < strings``: atoms sort by
    name, an object is a one-element tuple of its ``{key, value}`` pairs (tuples
    before lists), ``[]`` before every other array, strings by their UTF-8 bytes
    (code point order). So ``{"_id": {"$gt": {}}}`` matches every document, and
    ``{"_id": {"$lt": {}}}`` none, as in CouchDB.
    """
    if isinstance(value, str):
        return (4, value)
    if value is None or isinstance(value, bool):
        return (1, "null" if value is None else "true" if value else "false")
    if isinstance(value, (int, float)):
        return (0, value)
    if isinstance(value, dict):
        return (2, tuple((raw_key(k), raw_key(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (3, tuple(raw_key(v) for v in value))
    if value is MIN:
        return (-1,)
    if value is MAX:
        return (5,)
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def collate(a: Any, b: Any) -> int:
    """-1, 0 or 1 as ``a`` sorts before, with or after ``b`` in view collation."""
    ka, kb = sort_key(a), sort_key(b)
    return (ka > kb) - (ka < kb)


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
    """The string's collation levels (:func:`string_levels`) as one string:
    base characters, then accents, then case, then the code points as a tiebreak."""
    primary, accents, case, nfc = string_levels(text)
    return (STRING + "".join(chr(0x20 + cls) + _point(rank) for cls, rank in primary)
            + CASE + "".join("".join(map(chr, marks)) + "\x04" for marks in accents)
            + CASE + "".join("1" if c else "0" for c in case)
            + CASE + _raw(nfc) + END)


def encode(key: Any) -> str:
    """``key`` (any JSON value, or ``MAX``) as an order-preserving, self-delimiting string."""
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
    if key is MAX:          # a range's open upper end (Mango's end keys): above every key
        return HIGH
    raise TypeError(f"view keys are JSON values, not {type(key).__name__}")


def group_key(key: Any, level: int | None) -> Any:
    """The key a row is grouped under at ``group_level`` (arrays cut to ``level`` items)."""
    if level is None or not isinstance(key, list):
        return key
    return key[:level]
