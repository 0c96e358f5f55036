"""The validation layer: every written document must pass its database's schema.

Assumes of the layer below: a mapping of :class:`~.document.Doc` (timestamps or
versioning). Offers above: the same mapping; reads pass through untouched.

On every write the document's *body* — its fields without the ``_``-prefixed
envelope (``_id``, ``_rev``, ``_attachments``, ...) — goes through the schema's
``to_python`` (a FormEncode validator, as in the design talk's ``ValidatingDict``).
What is stored is the document as written, never FormEncode's converted output:
validation decides *whether* a document is stored, not *what* is stored (FormEncode
would turn ``17.0`` into ``17`` and drop nothing useful).

Not validated: tombstones (``meta.deleted`` or ``_deleted: true``: deleting a
document that no longer matches a changed schema must stay possible), design
documents (``_design/``: they hold code, not data) and ``_local/`` documents
(replication checkpoints).

A failure raises :class:`~.exceptions.ValidationFailed` whose ``errors`` maps *every*
bad field, as a dotted path (``lineItems.0.amount``), to its message, so a client
fixes a document in one round trip, not one field per attempt.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Any

from ..base import DocumentLayer
from ..document import Doc
from ..exceptions import ConfigurationError, ValidationFailed

with warnings.catch_warnings():
    # FormEncode 2.1 imports the stdlib ``cgi`` module (for file uploads, which a
    # document store never sees); Python 3.11-3.12 warn on that import, and the test
    # suite turns warnings into errors. Python 3.13 has no cgi and FormEncode copes.
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*'cgi'")
    import formencode
from formencode import Invalid

#: Prefixes of document ids that are never validated.
EXEMPT_PREFIXES = ("_design/", "_local/")
#: The key under which an error about the whole document (not one field) is reported.
ROOT = "(document)"


def flatten_errors(errors: Any, path: str = "", out: dict[str, str] | None = None
                   ) -> dict[str, str]:
    """FormEncode's nested ``unpack_errors()`` as ``{"dotted.path": message}``.

    Dicts are fields, lists are item indexes (``None`` marks a good item).
    """
    out = {} if out is None else out
    if isinstance(errors, dict):
        for name, sub in errors.items():
            flatten_errors(sub, f"{path}.{name}" if path else str(name), out)
    elif isinstance(errors, (list, tuple)):
        for index, sub in enumerate(errors):
            if sub is not None:
                flatten_errors(sub, f"{path}.{index}" if path else str(index), out)
    elif errors is not None:
        out[path or ROOT] = str(errors).strip()
    return out


def validation_errors(schema: Any, body: dict) -> dict[str, str]:
    """Every bad field of ``body`` under ``schema`` (empty when it is valid)."""
    try:
        schema.to_python(body)
    except Invalid as e:
        return flatten_errors(e.unpack_errors()) or {ROOT: str(e)}
    return {}


def is_exempt(key: str, doc: Doc) -> bool:
    """Whether a write is not validated: tombstones, design and local documents."""
    return (doc.meta.deleted or doc.get("_deleted") is True
            or key.startswith(EXEMPT_PREFIXES))


class Validation(DocumentLayer):
    """Refuse writes whose body does not pass ``schema.to_python``.

    ``schema`` is a FormEncode validator, class or instance (the invoice demo's ``InvoiceSchema``), or
    anything with a ``to_python(value)`` that raises ``formencode.Invalid``.
    """

    schema: Any         # an option: Layer.__init__ sets it

    def __init__(self, inner, schema: Any):
        if not callable(getattr(schema, "to_python", None)):
            raise TypeError(f"a schema needs a to_python method, not {schema!r}")
        super().__init__(inner, schema=schema)

    def prepare(self, key: str, doc: Doc) -> Doc:
        if not is_exempt(key, doc):
            body = {name: field for name, field in doc.items()
                    if not (isinstance(name, str) and name.startswith("_"))}
            errors = validation_errors(self.schema, body)
            if errors:
                raise ValidationFailed(key, errors)
        return doc


def import_schema(path: str, setting: str = "validation_schemas") -> Any:
    """The object named by ``"package.module:Attribute"`` (``Attribute`` may be dotted)."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(setting, f"{path!r} is not module:Attribute")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigurationError(setting, f"cannot import {module_name!r}: {e}") from e
    try:
        for name in attribute.split("."):
            found = getattr(found, name)
    except AttributeError as e:
        raise ConfigurationError(setting, f"{module_name!r} has no {attribute!r}") from e
    if not callable(getattr(found, "to_python", None)):
        raise ConfigurationError(setting, f"{path!r} is not a validator (no to_python)")
    return found


def validation_layer(inner, settings, db: str) -> Validation | None:
    """The registry's factory: a :class:`Validation` for ``db``, or None if it has no schema."""
    schemas = settings["validation_schemas"] or {}
    path = schemas.get(db)
    if not path:
        return None
    return Validation(inner, import_schema(path))


__all__ = ["Validation", "validation_layer", "validation_errors", "flatten_errors",
           "import_schema", "formencode", "Invalid"]
