"""Reduce functions: the built-ins ``_sum``, ``_count``, ``_stats``,
``_approx_count_distinct``, and Python ones (JavaScript ones: :mod:`.couchjs`).

A reducer turns the values of rows into one value (``reduce``) and combines such
results (``rereduce``), as CouchDB's ``fun(keys, values, rereduce)``. The built-ins
are also *invertible*: a stored reduction can have rows added to it and taken out of
it (``add``/``remove``), so updating one document costs work in proportion to that
document, not to the number of rows under its keys. ``remove`` answers
:data:`RECOMPUTE` when it cannot take a value out (the minimum of ``_stats``), and
the engine then recomputes that key from its rows. A Python reducer is not
invertible: the keys a document touches are recomputed from their rows.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

from settee.store.exceptions import BadRequest

from .collation import encode

RECOMPUTE = object()


class ReduceError(BadRequest):
    """A reduce function failed or was given values it cannot reduce."""

    error = "reduce_error"


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReduceError(f"_sum and _stats reduce numbers (or arrays of numbers), got {value!r}")
    return value


def _add(a: Any, b: Any) -> Any:
    """Sum numbers, or arrays of numbers element-wise (the shorter one padded with 0)."""
    if isinstance(a, list) or isinstance(b, list):
        a = a if isinstance(a, list) else [a]
        b = b if isinstance(b, list) else [b]
        longer = max(len(a), len(b))
        return [_add(a[i] if i < len(a) else 0, b[i] if i < len(b) else 0) for i in range(longer)]
    return _number(a) + _number(b)


def _negate(a: Any) -> Any:
    return [_negate(x) for x in a] if isinstance(a, list) else -_number(a)


class Reducer:
    name = "custom"
    invertible = False

    def reduce(self, keys: list, values: list) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def rereduce(self, values: list) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def reduce_many(self, groups: list[tuple[list, list]]) -> list:
        """:meth:`reduce` of each ``(keys, values)``; a :class:`ReduceError` in place of
        each that failed (a JavaScript reducer does them all in one call)."""
        out: list = []
        for keys, values in groups:
            try:
                out.append(self.reduce(keys, values))
            except ReduceError as e:
                out.append(e)
        return out

    def add(self, reduction: Any, values: list) -> Any:
        return self.rereduce([reduction, self.reduce([], values)])

    def remove(self, reduction: Any, values: list) -> Any:
        return RECOMPUTE

    def output(self, reduction: Any) -> Any:
        """What a query shows of a (stored or re-reduced) reduction: itself, but for
        a reduction that is a sketch of its answer."""
        return reduction


class Sum(Reducer):
    name, invertible = "_sum", True

    def reduce(self, keys, values):
        # Plain numbers (the common case) add up in C; bools and arrays take the
        # element-wise path, which also names a value that is not a number.
        if all(type(v) is int or type(v) is float for v in values):
            return sum(values)
        total: Any = 0
        for value in values:
            total = _add(total, value)
        return total

    rereduce = lambda self, values: self.reduce([], values)  # noqa: E731

    def remove(self, reduction, values):
        return _add(reduction, _negate(self.reduce([], values)))


class Count(Reducer):
    name, invertible = "_count", True

    def reduce(self, keys, values):
        return len(values)

    def rereduce(self, values):
        return sum(values)

    def remove(self, reduction, values):
        return reduction - len(values)


class Stats(Reducer):
    name, invertible = "_stats", True

    @staticmethod
    def _one(value) -> dict:
        if isinstance(value, dict) and {"sum", "count", "min", "max", "sumsqr"} <= value.keys():
            return value
        value = _number(value)
        return {"sum": value, "count": 1, "min": value, "max": value, "sumsqr": value * value}

    def reduce(self, keys, values):
        return self.rereduce([self._one(v) for v in values])

    def rereduce(self, values):
        out = {"sum": 0, "count": 0, "min": math.inf, "max": -math.inf, "sumsqr": 0}
        for s in values:
            if not s or not s["count"]:
                continue
            out["sum"] += s["sum"]
            out["count"] += s["count"]
            out["min"] = min(out["min"], s["min"])
            out["max"] = max(out["max"], s["max"])
            out["sumsqr"] += s["sumsqr"]
        if not out["count"]:
            out["min"] = out["max"] = 0
        return out

    def remove(self, reduction, values):
        gone = self.reduce([], values)
        if gone["count"] and (gone["min"] <= reduction["min"] or gone["max"] >= reduction["max"]):
            return RECOMPUTE
        return {"sum": reduction["sum"] - gone["sum"], "count": reduction["count"] - gone["count"],
                "min": reduction["min"], "max": reduction["max"],
                "sumsqr": reduction["sumsqr"] - gone["sumsqr"]}


class ApproxCountDistinct(Reducer):
    """CouchDB's ``_approx_count_distinct``: how many distinct keys, estimated with a
    HyperLogLog of 2**11 registers (about 2% off; small counts, by linear counting,
    near exact). A reduction is the sketch, sparse (``[[register, rank], ...]``), and
    a query shows its estimate (:meth:`output`). Keys are hashed as they collate
    (``1`` and ``1.0`` are one key). The engine keeps a reduction per key, and a key's
    sketch is the same whatever its rows: adding and removing rows leave it as is."""

    name, invertible = "_approx_count_distinct", True
    P = 11
    M = 1 << P

    def _register(self, key) -> tuple[int, int]:
        x = int.from_bytes(hashlib.blake2b(encode(key).encode(), digest_size=8).digest(), "big")
        rest = x & ((1 << (64 - self.P)) - 1)
        return x >> (64 - self.P), (64 - self.P) - rest.bit_length() + 1

    @staticmethod
    def _merge(sketches) -> list:
        registers: dict[int, int] = {}
        for sketch in sketches:
            for index, rank in sketch or ():
                if rank > registers.get(index, 0):
                    registers[index] = rank
        return sorted([i, r] for i, r in registers.items())

    def reduce(self, keys, values):
        return self._merge([[self._register(k[0]) for k in keys or ()]])

    def rereduce(self, values):
        return self._merge(values)

    def add(self, reduction, values):
        return reduction

    def remove(self, reduction, values):
        return reduction

    def output(self, reduction):
        m = self.M
        registers = dict(map(tuple, reduction or ()))
        zeros = m - len(registers)
        estimate = (0.7213 / (1 + 1.079 / m)) * m * m / (
            zeros + sum(2.0 ** -r for r in registers.values()))
        if estimate <= 2.5 * m and zeros:
            estimate = m * math.log(m / zeros)
        return int(round(estimate))


class PythonReducer(Reducer):
    """A Python ``fun(keys, values, rereduce)``, as couchdb-python's view server calls it."""

    def __init__(self, function: Callable):
        self.function = function

    def reduce(self, keys, values):
        return self._call(keys, values, False)

    def rereduce(self, values):
        return self._call(None, values, True)

    def _call(self, keys, values, rereduce):
        try:
            return self.function(keys, values, rereduce)
        except Exception as e:
            raise ReduceError(f"reduce function failed: {type(e).__name__}: {e}") from e


BUILTINS = {"_sum": Sum, "_count": Count, "_stats": Stats,
            "_approx_count_distinct": ApproxCountDistinct}


def make_reducer(spec: str | Callable | None) -> Reducer | None:
    """A reducer from ``"_sum"``-style names, a Python callable, or None (map only)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec not in BUILTINS:
            raise BadRequest(f"unknown built-in reduce {spec!r}; Settee has "
                             f"{', '.join(BUILTINS)} or Python functions")
        return BUILTINS[spec]()
    if callable(spec):
        return PythonReducer(spec)
    raise BadRequest("reduce must be a built-in name or a function")
