"""Demos that ship with Settee, each off until the ``examples`` setting names it.

``invoices``
    The design talk's invoice demo (:mod:`.invoices`): the ``invoices`` database
    validates every document against the talk's Invoice schema, and serves the
    accounts-receivable view ``GET /invoices/_view/ar_by_accounting_code``.
"""
