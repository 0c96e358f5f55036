"""Building blocks for FormEncode document schemas, checked by the validation layer
(``validation_schemas``; the design talk's Invoice, in ``settee.examples.invoices``,
is built from them).

FormEncode was made for HTML forms, where every value arrives as text and is
converted: its ``Number`` accepts ``"17"`` and ``True``, its ``UnicodeString``
accepts ``42``, its ``ForEach`` turns ``null`` into ``[]``. A document is JSON with
real types, so the leaf validators here are strict (:class:`JSONNumber`,
:class:`JSONString`, :class:`JSONList`), and :class:`DictOf` fills the one gap
FormEncode leaves for documents: a mapping of arbitrary keys (accounting codes) to
values that all pass one validator.

Every field named in a schema is required. Fields a schema does not name are allowed
and kept (new fields as the application grows), since the validation layer stores the
document as written.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from formencode import FancyValidator, ForEach, Invalid, NoDefault, Schema, validators

from .validation import formencode  # noqa: F401  (imported there, quietly)


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


class Strict:
    """Mix-in for JSON validators: ``null`` is a value of the wrong type, not "empty".

    FormEncode treats ``None``/``""``/``[]`` as empty and lets them through unless
    ``not_empty``; here every value is type-checked, and lists are values too
    (``accept_iterator``), so each error names the type that was found.
    """

    accept_iterator = True
    message: Callable[..., str]     # FormEncode's Validator.message, in the class mixed with

    def is_empty(self, value):
        return False

    def wrong_type(self, key: str, value: Any, state: Any) -> Invalid:
        return Invalid(self.message(key, state, kind=_type_name(value)), value, state)


class JSONNumber(Strict, validators.Number):
    """A JSON number (not a string of digits, not a boolean, not null)."""

    messages = dict(notNumber="must be a number, not %(kind)s")

    def _convert_to_python(self, value, state):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.wrong_type("notNumber", value, state)
        return value


class JSONString(Strict, validators.UnicodeString):
    """A JSON string (``""`` passes unless ``min`` says otherwise)."""

    messages = dict(notString="must be a string, not %(kind)s",
                    tooShort="must be at least %(min)i character(s) long")

    def _convert_to_python(self, value, state):
        if not isinstance(value, str):
            raise self.wrong_type("notString", value, state)
        return value


class JSONList(Strict, ForEach):
    """A JSON array whose every item passes the given validators (a required field)."""

    convert_to_list = False
    messages = dict(notList="must be an array, not %(kind)s")

    def __init__(self, *args, **kw):
        kw.setdefault("if_missing", NoDefault)     # ForEach defaults a missing field to []
        super().__init__(*args, **kw)

    def _attempt_convert(self, value, state, validate):
        if not isinstance(value, list):
            raise self.wrong_type("notList", value, state)
        return super()._attempt_convert(value, state, validate)


class DictOf(Strict, FancyValidator):
    """A JSON object whose every value passes ``validator``; keys are free (strings).

    Errors are reported per key (``error_dict``), so the path of a bad entry names
    its key: ``allocation.code2.paid``.
    """

    validator: Any = None
    __unpackargs__ = ("validator",)
    messages = dict(notObject="must be an object, not %(kind)s")

    def _convert_to_python(self, value, state):
        if not isinstance(value, dict):
            raise self.wrong_type("notObject", value, state)
        converted, errors = {}, {}
        for key, item in value.items():
            try:
                converted[key] = self.validator.to_python(item, state)
            except Invalid as e:
                errors[key] = e
        if errors:
            listed = "; ".join(f"{key}: {e}" for key, e in errors.items())
            raise Invalid(listed, value, state, error_dict=errors)
        return converted


class DocumentSchema(Strict, Schema):
    """A JSON object with the named fields; other fields are allowed and kept."""

    allow_extra_fields = True
    filter_extra_fields = False
    messages = dict(notObject="must be an object, not %(kind)s")

    def _convert_to_python(self, value, state):
        if not isinstance(value, dict):
            raise self.wrong_type("notObject", value, state)
        return super()._convert_to_python(value, state)


__all__ = ["DocumentSchema", "DictOf", "JSONList", "JSONNumber", "JSONString", "Strict"]
