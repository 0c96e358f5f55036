"""The timestamps layer: records when every revision was written.

Assumes of the layer below: a mapping of :class:`~.document.Doc` that persists
``Doc.meta`` (the versioning layer over serialization does). It stamps
``meta.timestamp`` (seconds since the epoch, UTC) on every write that does not carry
one already (a replicated revision keeps its original time); reads return it in
``meta.timestamp``, which the server sends as ``Last-Modified``.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from ..base import DocumentLayer
from ..document import Doc


class Timestamps(DocumentLayer):
    """Stamp each written revision with the time of the write."""

    clock: Callable[[], float]      # an option: Layer.__init__ sets it

    def __init__(self, inner, clock: Callable[[], float] = time.time):
        super().__init__(inner, clock=clock)

    def prepare(self, key: str, doc: Doc) -> Doc:
        if doc.meta.timestamp is None or doc.meta.new_edits:
            doc.meta.timestamp = self.clock()
        return doc
