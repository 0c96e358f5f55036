"""Partitioned databases: ``GET /{db}/_partition/{partition}``, and the partition of a
query made under ``/{db}/_partition/{partition}/`` (``_all_docs``, views, ``_find``,
``_explain``: their endpoint groups call :func:`partition_of`).

A database created with ``PUT /{db}?partitioned=true`` says so in its info
(``props.partitioned``); its document ids are ``partition:id`` (the store refuses
others, design and ``_local/`` documents apart), and a query within one partition
reads only the documents whose ids start with ``partition:``.
"""
from __future__ import annotations

from settee.store import check_partition

from .errors import bad_request


def partition_of(database, partition: str) -> str:
    """``partition``, checked: a valid name (400 ``illegal_partition`` if not) of a
    partitioned database (400 if it is not)."""
    check_partition(partition)
    if not database.partitioned():
        raise bad_request("database is not partitioned")
    return partition


class PartitionEndpoints:
    """What a partition says of itself."""

    def __init__(self, http):
        self.http = http

    def on_partition_info(self, request, db, partition):
        database = self.http.db(db)
        info = database.partition_info(partition_of(database, partition))
        return self.http.respond(request, {
            "db_name": db, "partition": partition, "doc_count": info["docs"],
            "doc_del_count": info["deleted"],
            "sizes": {"active": info["size"], "external": info["size"]}})
