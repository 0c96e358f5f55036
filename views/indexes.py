"""One database's view indexes, and the lifecycle of the design documents that define
them: what the server (and an embedded user) asks of views, in one object per database.

``indexes_of(database)`` is that object (made once, kept on the database, so it goes
when the database is closed and re-opened). It holds:

* the :class:`~.engine.View` of each view definition, one per identity;
* background updates, at most one running per view (a second request while one runs
  does not start another: it would only repeat the same work);
* the design documents' lifecycle: :meth:`check_design` before a save (its views must
  compile), :meth:`design_saved` after it (build the new views in the background up to
  the save, drop the indexes no definition uses any more).

Who may save a design document is the server's question (HTTP, users), not this one.
"""
from __future__ import annotations

import logging
import threading

from settee.store import StoreError

from . import definitions
from .engine import View, drop_view, indexed_views

log = logging.getLogger("settee.views")


def indexes_of(database) -> Indexes:
    """The :class:`Indexes` of ``database`` (one per open database)."""
    found = database.extensions.get("views")
    if found is None:
        found = database.extensions.setdefault("views", Indexes(database))
    return found


class Indexes:
    def __init__(self, database):
        self.database = database
        self._views: dict[str, View] = {}
        self._updating: set[str] = set()
        self._lock = threading.Lock()

    def view(self, spec) -> View:
        """The view of definition ``spec`` (made once per identity)."""
        found = self._views.get(spec.identity)
        if found is None:
            with self._lock:
                found = self._views.setdefault(spec.identity, View(self.database, spec))
        return found

    # -- updates ----------------------------------------------------------------------
    def updating(self, vid: str) -> bool:
        """Whether a background update of view ``vid`` runs now."""
        return vid in self._updating

    def update_in_background(self, view: View, until: int | None = None) -> bool:
        """Bring ``view`` up to date on a thread of its own, unless one already does;
        whether a thread was started."""
        with self._lock:
            if view.vid in self._updating:
                return False
            self._updating.add(view.vid)
        threading.Thread(target=self._update, args=(view, until), daemon=True,
                         name=f"view {self.database.name}/{view.spec.name}").start()
        return True

    def _update(self, view: View, until: int | None) -> None:
        try:
            view.update(until=until)
        except Exception:               # a background catch-up: logged; the next query retries
            log.exception("background update of view %s/%s failed", self.database.name,
                          view.spec.name)
        finally:
            with self._lock:
                self._updating.discard(view.vid)

    # -- design documents -------------------------------------------------------------
    def check_design(self, docid: str, body: dict) -> None:
        """Before a design document is saved: its language must be one Settee runs and
        its views must compile (a deletion has none to check). Raises the definitions'
        errors (400s)."""
        if body.get("_deleted") is not True:
            definitions.check_design_doc({**body, "_id": docid},
                                         getattr(self.database, "settings", None))

    def design_saved(self, docid: str) -> None:
        """After a design document is saved: build its views in the background, up to
        the save (later changes are a query's to apply, as its ``update`` says), and
        drop the indexes no definition uses any more."""
        until = self.database.update_seq()
        threading.Thread(target=self._after_design_change, args=(docid, until),
                         daemon=True, name=f"views {self.database.name}").start()

    def _after_design_change(self, docid: str, until: int) -> None:
        try:
            self.drop_unused()
            doc = self.database.get(docid)
            if doc is None:
                return
            for spec in definitions.design_views(doc).values():
                self.view(spec).update(until=until)
        except Exception:
            log.exception("building the views of %s/%s failed", self.database.name, docid)

    def drop_unused(self) -> int:
        """Drop the stored indexes that no module view and no design document defines;
        how many."""
        database = self.database
        live = {spec.identity for (db, _), spec in definitions.MODULE_VIEWS.items()
                if db == database.name}
        for _, doc in database.docs("_design/", "_design/\uffff"):
            try:
                live.update(s.identity for s in definitions.design_views(doc).values())
            except StoreError:
                continue
        unused = [vid for vid, _, _ in indexed_views(database) if vid not in live]
        for vid in unused:
            drop_view(database.versions.inner, vid)
        return len(unused)

    # -- tasks ------------------------------------------------------------------------
    def tasks(self) -> list[dict]:
        """CouchDB's ``_active_tasks`` entries of this database's index builds."""
        found = []
        for _, info, state in indexed_views(self.database):
            building = state.get("building")
            if building:
                found.append({"type": "indexer", "database": self.database.name,
                              "design_document": info.get("name"),
                              "changes_done": building.get("done", 0),
                              "total_changes": building.get("total", 0),
                              "progress": int(100 * building.get("done", 0)
                                              / max(1, building.get("total", 0))),
                              "started_on": int(building.get("beat", 0)),
                              "updated_on": int(building.get("beat", 0))})
        return found
