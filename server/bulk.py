"""Bulk endpoints: ``_all_docs``, ``_design_docs``, ``_local_docs`` (and several
queries at once: ``.../queries``), ``_bulk_docs``, ``_bulk_get``, ``_revs_diff`` and
``_missing_revs``. Listings are streamed from ordered range scans."""
from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

from settee.store import BadRequest, Deleted, Doc, Meta, NotFound, StoreError, new_id

from . import attachments
from .documents import check_fields, check_rev, decorate, with_latest
from .errors import HTTPError, bad_request, from_store
from .ids import check_docid
from .params import NO_PARAMS, BodyOverURL, Params, check_keys_alone, queries_of, whole
from .partitions import partition_of
from .representation import Listing
from .seqs import format_seq

BULK_CHUNK = 1000       # documents written per transaction (one fsync per chunk)


def id_bound(value, *, lower: bool):
    """A JSON key as a doc-id bound, by CouchDB's collation (null/bool/number < str < array/object).

    Returns (bound, empty): ``empty`` when no string id can lie on that side of it.
    """
    if value is None or isinstance(value, (bool, int, float)):
        return None, not lower          # below every string
    if isinstance(value, str):
        return value, False
    return None, lower                  # above every string


def failure(doc_id, error: HTTPError) -> dict:
    """An item's error in a batch's answer."""
    return {"id": doc_id, "error": error.error, "reason": error.reason}


def item_error(doc_id, error: StoreError) -> dict:
    """A store error of one item, as its answer; the server's own failures (5xx) fail
    the whole request."""
    http = from_store(error)
    if http.status >= 500:
        raise error
    return failure(doc_id, http)


class Aborted(Exception):
    """An ``all_or_nothing`` batch with an item that failed: none of it is kept."""


def check_item(item, new_edits: bool) -> None:
    """What CouchDB checks of every ``_bulk_docs`` item before writing any (its
    ``doc_from_json_obj_validate``, ``validate_revs``, attachment names): one that
    fails makes the whole request a 400, as a PUT of it would be."""
    if not isinstance(item, dict):
        raise bad_request("Document must be a JSON object")
    check_fields(item)
    if "_id" in item:
        check_docid(item["_id"])
    if "_rev" in item and not isinstance(item["_rev"], str):
        raise bad_request("_rev must be a string")
    if new_edits:           # a replicated revision Settee cannot parse: that item's error
        check_rev(item.get("_rev"))
    if isinstance(item.get("_attachments"), dict):
        for name in item["_attachments"]:
            attachments.check_name(name)
    if not new_edits and "_rev" not in item and "_revisions" not in item:
        raise bad_request("When `new_edits: false`, the document needs `_rev` or "
                          "`_revisions` specified")


class BulkEndpoints:
    """Many documents at a time; writes go through the write rules, as single ones do."""

    def __init__(self, http, writes, auth):
        self.http = http
        self.writes = writes
        self.auth = auth

    def on_all_docs(self, request, db, prefix: str | None = None):
        database = self.http.db(db)
        body = self.http.json_object(request) if request.method == "POST" else {}
        return self.http.stream(request, self.all_docs(database, Params(request.args), body,
                                                       prefix))

    def on_local_docs(self, request, db):
        """``_local/`` documents, listed as ``_all_docs`` lists documents (CouchDB gives
        no ``total_rows`` or ``offset`` for them)."""
        database = self.http.db(db)
        body = self.http.json_object(request) if request.method == "POST" else {}
        return self.http.stream(request, self.all_docs(database, Params(request.args), body,
                                                       local=True))

    def on_all_docs_queries(self, request, db, prefix: str | None = None):
        """``POST /{db}/_all_docs/queries``: several ``_all_docs`` queries (each an
        object of its parameters) answered together, ``{"results": [...]}``."""
        database = self.http.db(db)
        results = [whole(self.all_docs(database, NO_PARAMS, query, prefix))
                   for query in queries_of(self.http.json_object(request))]
        return self.http.respond(request, {"results": results})

    def on_design_docs_queries(self, request, db):
        return self.on_all_docs_queries(request, db, prefix="_design/")

    def all_docs(self, database, p: Params, body: dict, prefix: str | None = None,
                 local: bool = False) -> Listing:
        """An ``_all_docs`` listing; its parameters from ``body`` (a POST's JSON, or one
        query of ``queries``) over the URL's ``p``. ``prefix``: only ids under it
        (``_design_docs``, a partition); ``local``: ``_local/`` documents."""
        get = BodyOverURL(p, body)
        check_keys_alone(p, body)
        keys = get.json("keys")
        if keys is not None and not isinstance(keys, list):
            raise bad_request("`keys` must be an array of document ids")
        # key is a range of one id (CouchDB): a deleted or missing document gives no
        # row, where keys gives its row (deleted, or not_found)
        single = "key" in body or "key" in p
        descending = get.bool("descending")
        include_docs = get.bool("include_docs")
        conflicts = get.bool("conflicts")
        full = get.bool("attachments")
        limit = get.int("limit")
        skip = get.int("skip") or 0
        info = database.info()

        def row(doc_id, doc):
            value = {"rev": doc.meta.rev}
            out = {"id": doc_id, "key": doc_id, "value": value}
            if include_docs:
                if conflicts and doc.meta.conflicts:
                    doc["_conflicts"] = doc.meta.conflicts
                out["doc"] = attachments.stubs(doc, full)
            return out

        if keys is not None:
            rows = self.rows_for_keys(database, keys, row, include_docs)
        else:
            start = get.json("startkey", get.json("start_key"))
            end = get.json("endkey", get.json("end_key"))
            if single:
                start = end = get.json("key")
            start, empty1 = id_bound(start, lower=not descending) if start is not None else (None, False)
            end, empty2 = id_bound(end, lower=descending) if end is not None else (None, False)
            lo, hi = (end, start) if descending else (start, end)
            if prefix is not None:      # _design_docs, a partition: only ids under the prefix
                top = prefix + "\U0010ffff"
                lo = lo if lo is not None and lo > prefix else prefix
                hi = hi if hi is not None and hi < top else top
            if empty1 or empty2:
                items: Iterator[tuple[str, Any]] = iter(())
            elif local:
                items = database.local_docs(lo, hi, descending=descending)
            else:
                items = database.docs(lo, hi, descending=descending, inclusive_end=True)
            if not get.bool("inclusive_end", True) and end is not None:
                items = ((i, d) for i, d in items if i != end)
            rows = (row(i, d) for i, d in items)
        rows = islice(rows, skip, None if limit is None else skip + limit)
        head = {"total_rows": None if local else info["doc_count"],
                "offset": None if local else skip}
        tail = (lambda: {"update_seq": format_seq(database, info["update_seq"])}) if get.bool("update_seq") else (lambda: {})
        return Listing(head, "rows", rows, tail)

    def on_partition_all_docs(self, request, db, partition):
        """``_all_docs`` of one partition: the ids that start with ``partition:``."""
        partition_of(self.http.db(db), partition)
        return self.on_all_docs(request, db, prefix=partition + ":")

    def on_design_docs(self, request, db):
        return self.on_all_docs(request, db, prefix="_design/")

    @staticmethod
    def rows_for_keys(database, keys, row, include_docs):
        for key in keys:
            if not isinstance(key, str):
                yield {"key": key, "error": "not_found"}
                continue
            try:
                yield row(key, database[key])
            except Deleted as e:
                out: dict[str, Any] = {"id": key, "key": key,
                                       "value": {"rev": e.rev, "deleted": True}}
                if include_docs:
                    out["doc"] = None
                yield out
            except (NotFound, BadRequest):
                yield {"key": key, "error": "not_found"}

    # -- writes -----------------------------------------------------------------------
    def on_bulk_docs(self, request, db):
        self.http.check_writable()
        database = self.http.db(db)
        body = self.http.json_object(request)
        docs = body.get("docs")
        if not isinstance(docs, list):
            raise bad_request("POST body must include `docs` parameter.")
        new_edits = body.get("new_edits", True)
        if not isinstance(new_edits, bool):
            raise bad_request("`new_edits` parameter must be a boolean.")
        all_or_nothing = body.get("all_or_nothing", False) is True and new_edits
        for item in docs:
            check_item(item, new_edits)     # one malformed document: the request is a 400
            if new_edits and "_id" not in item:
                item["_id"] = new_id()      # before the rules: a new id is checked as any other
            if isinstance(item.get("_id"), str):
                if item["_id"].startswith("_design/"):      # members: the whole batch is 403
                    self.auth.require_db_admin(request.user, database)
                self.writes.check_user_doc(request, database, item["_id"], item)
        results: list[dict] = []
        check_sizes = len(request.get_data(cache=True)) > self.http.max_document
        if all_or_nothing:
            try:
                with database.transaction():        # the chunk's own joins this one
                    results = self.write_chunk(request, database, docs, new_edits,
                                               check_sizes)
                    if any("error" in r for r in results):
                        raise Aborted
            except Aborted:
                return self.http.respond(request, [r for r in results if "error" in r], 417)
        else:
            for start in range(0, len(docs), BULK_CHUNK):
                results += self.write_chunk(request, database, docs[start:start + BULK_CHUNK],
                                            new_edits, check_sizes)
        for item in docs:
            if isinstance(item, dict) and str(item.get("_id", "")).startswith("_design/"):
                self.writes.design_saved(database, item["_id"])
        if not new_edits:
            results = [r for r in results if "error" in r]
        return self.http.respond(request, results, 201)

    def write_chunk(self, request, database, items: list, new_edits: bool,
                    check_size: bool) -> list[dict]:
        """A chunk of a batch: each item checked (:meth:`prepare`), the ones that pass
        validated together (``validate_doc_update``, one call per design document),
        then written in one transaction. Each item gets its own answer, an error (as
        CouchDB) rather than the batch's."""
        results: list[dict] = []
        ready: list[tuple[int, str, Doc]] = []
        for item in items:
            prepared = self.prepare(request, database, item, new_edits, check_size)
            if isinstance(prepared, dict):
                results.append(prepared)
            else:
                ready.append((len(results), *prepared))
                results.append({})
        refused = self.writes.validate(request, database, [(i, d) for _, i, d in ready])
        passed = []
        for (at, doc_id, doc), error in zip(ready, refused):
            if error is not None:
                results[at] = failure(doc_id, error)
            else:
                passed.append((at, doc_id, doc))
        with database.transaction():
            saved = database.save_many([doc for _, _, doc in passed], new_edits=new_edits)
        for (at, doc_id, _), outcome in zip(passed, saved):
            results[at] = (item_error(doc_id, outcome) if isinstance(outcome, StoreError)
                           else {"ok": True, "id": outcome.meta.id, "rev": outcome.meta.rev})
        return results

    def prepare(self, request, database, item, new_edits: bool, check_size: bool
                ) -> tuple[str, Doc] | dict:
        """One item, as the write will take it (``(id, doc)``; a new id if it has none),
        or its error. The same checks as a PUT of it: id and fields (already checked of
        every item by :func:`check_item`), design document (who may write it, whether
        it compiles), attachments, and size with its attachments (``check_size``:
        always for one with attachments, else when the batch's body alone is over the
        limit)."""
        if not isinstance(item, dict):
            return {"id": None, "error": "bad_request", "reason": "Document must be a JSON object"}
        doc_id = item.get("_id")            # given, or made new by on_bulk_docs
        try:
            if not new_edits:               # with new_edits, check_item checked it
                check_rev(item.get("_rev"))
            if doc_id is not None:
                self.writes.check_design(request, database, doc_id, item)
            doc = Doc(item, Meta(new_edits=new_edits))
            self.writes.prepare_attachments(database, doc_id, doc, new_edits=new_edits)
            if check_size and "_attachments" not in doc:
                self.writes.check_size(doc)
            if doc_id is None:
                raise BadRequest("_id must be a non-empty string")
            return doc_id, doc
        except HTTPError as e:
            return failure(doc_id, e)
        except StoreError as e:
            return item_error(doc_id, e)

    # -- replication helpers -------------------------------------------------------------
    def on_bulk_get(self, request, db):
        database = self.http.db(db)
        body = self.http.json_object(request)
        wanted = body.get("docs")
        if not isinstance(wanted, list):
            raise bad_request("POST body must include `docs` parameter.")
        p = Params(request.args)
        results = []
        for item in wanted:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                results.append({"id": None, "docs": [{"error": {
                    "id": None, "rev": None, "error": "bad_request",
                    "reason": "every item needs a string `id`"}}]})
                continue
            doc_id, rev = item["id"], item.get("rev")
            revs: list = [rev]
            if isinstance(rev, str) and p.bool("latest"):
                revs = with_latest(database, doc_id, [rev])
            entries = []
            for rev in revs:
                try:
                    doc = database[(doc_id, rev)] if rev else database[doc_id]
                    entries.append({"ok": decorate(database, doc, p, item.get("atts_since"))})
                except StoreError as e:
                    http = from_store(e)
                    if http.status >= 500:
                        raise
                    entries.append({"error": {"id": doc_id, "rev": rev or "undefined",
                                              "error": http.error, "reason": http.reason}})
            results.append({"id": doc_id, "docs": entries})
        return self.http.respond(request, {"results": results})

    def revs_request(self, request):
        body = self.http.json_object(request)
        for doc_id, revs in body.items():
            if not isinstance(revs, list) or not all(isinstance(r, str) for r in revs):
                raise bad_request(f"revisions of {doc_id!r} must be a list of strings")
        return body

    def on_revs_diff(self, request, db):
        database = self.http.db(db)
        return self.http.respond(request, database.revs_diff_many(self.revs_request(request),
                                                                  BULK_CHUNK))

    def on_missing_revs(self, request, db):
        database = self.http.db(db)
        out = {doc_id: missing for doc_id, revs in self.revs_request(request).items()
               if (missing := database.revs_diff(doc_id, revs))}
        return self.http.respond(request, {"missing_revs": out})
