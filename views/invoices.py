"""The design talk's view over the ``invoices`` database: accounts receivable by code.

map: for each line item, for each accounting code of its allocation, emit
``(code, amount - paid)``; reduce: sum. ``GET /invoices/_view/ar_by_accounting_code
?group=true`` answers what is still owed per accounting code.
"""
from __future__ import annotations

from .definitions import view


@view("invoices", reduce="_sum")
def ar_by_accounting_code(doc):
    for item in doc.get("lineItems") or ():
        for code, allocation in (item.get("allocation") or {}).items():
            yield code, allocation["amount"] - allocation["paid"]
