"""The design talk's invoice demo: the Invoice schema and the accounts-receivable view.

Enabled by the ``examples`` setting (``SETTEE_EXAMPLES=invoices``), which validates the
``invoices`` database against :class:`InvoiceSchema` and serves
:func:`ar_by_accounting_code` there. An invoice::

    {"payments": [{"type": "VISA", "amount": 14.00}],
     "lineItems": [{"description": "Dive into Python", "amount": 17.00,
                    "allocation": {"code1": {"amount": 5.00, "paid": 5.00},
                                   "code2": {"amount": 12.00, "paid": 9.00}}}]}

Fields the schema does not name are allowed and kept (``type``, ``customer``,
``date`` on real invoices).
"""
from __future__ import annotations

from settee.store.layers.schemas import DictOf, DocumentSchema, JSONList, JSONNumber, JSONString
from settee.views.definitions import view

#: The database the demo applies to.
DATABASE = "invoices"


class PaymentSchema(DocumentSchema):
    type = JSONString(min=1)        # VISA, CHECK, ...
    amount = JSONNumber()


class AllocatedAmountSchema(DocumentSchema):
    """What one accounting code is owed for a line item, and how much of it is paid."""

    amount = JSONNumber()
    paid = JSONNumber()


class AllocationSchema(DictOf):
    """Accounting code -> ``{amount, paid}``."""

    validator = AllocatedAmountSchema


class LineItemSchema(DocumentSchema):
    description = JSONString()
    amount = JSONNumber()
    allocation = AllocationSchema()


class InvoiceSchema(DocumentSchema):
    payments = JSONList(PaymentSchema)
    lineItems = JSONList(LineItemSchema)


@view(DATABASE, reduce="_sum")
def ar_by_accounting_code(doc):
    """For each line item, for each accounting code of its allocation, ``(code,
    amount - paid)``; summed, what is still owed per accounting code."""
    for item in doc.get("lineItems") or ():
        for code, allocation in (item.get("allocation") or {}).items():
            yield code, allocation["amount"] - allocation["paid"]
