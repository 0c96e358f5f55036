"""``POST /{db}/_explain``: the plan of a ``_find``, as CouchDB 3.4 shows it.

``index`` (the chosen one, null when none can serve the sort), the normalized
``selector``, ``opts`` (every option, defaults filled in), ``limit``, ``skip``,
``fields``, ``index_candidates`` (each other index: usable or not, why, its ranking,
whether it covers the query), ``selector_hints`` (which fields an index could serve),
``mrargs`` (the scan: ``start_key``/``end_key`` of the chosen range, ``"<MAX>"`` for
the greatest key, ``direction``, whether documents are read: ``include_docs``) and
``covering``.
"""
from __future__ import annotations

from typing import Any

from .mango_plan import Plan, candidates, end_key, selector_hints, shown, start_key


def explain_plan(chosen: Plan, query: Any, dbname: str, partitioned_db: bool,
                 covering: bool) -> dict:
    """The ``_explain`` answer for ``query`` (a parsed ``mango.Query``) run as ``chosen``."""
    fields = query.fields or []
    answer: dict[str, Any] = {
        "dbname": dbname,
        "index": chosen.index.describe() if chosen.index is not None else None,
        "partitioned": partitioned_db,
        "selector": chosen.norm,
        "opts": {"use_index": query.use_index, "bookmark": query.bookmark_text,
                 "limit": query.limit, "skip": query.skip,
                 "sort": {f: d for f, d in query.sort}, "fields": fields,
                 "partition": query.partition or "", "r": query.r,
                 "conflicts": query.conflicts, "stale": query.stale, "update": query.update,
                 "stable": query.stable, "execution_stats": query.execution_stats,
                 "allow_fallback": query.allow_fallback},
        "limit": query.limit, "skip": query.skip, "fields": fields,
        "index_candidates": candidates(chosen, query.fields),
        "selector_hints": selector_hints(chosen.norm),
    }
    if chosen.index is None:
        return answer
    start, end = start_key(chosen), end_key(chosen)
    if query.descending:
        start, end = end, start
    answer["mrargs"] = {"include_docs": query.r == 1 and not covering, "view_type": "map",
                        "reduce": False, "partition": query.partition,
                        "start_key": shown(start), "end_key": shown(end),
                        "direction": "rev" if query.descending else "fwd",
                        "stable": query.stable, "update": query.update,
                        "conflicts": query.conflicts}
    answer["covering"] = covering
    return answer
