"""Building a view from scratch over a large database: a process pool maps, one writer.

The parent claims the build (a heartbeat in the view's state that other processes
wait on), notes the database's sequence, clears the view's storage, then walks the
document ids in order. It maps and writes the first chunk itself, timing both: when
mapping costs more than writing and the whole build would take a while, the rest goes
to a pool of worker processes (one per core); otherwise one process is faster, since
the single writer is the limit. Workers get chunks of ids. Each worker opens the
database itself, reads its chunk's documents, maps them and returns the rows ready to
store (sorted, encoded for the backend, with each key's partial reduction); the
parent writes them, one transaction per chunk, with progress (a callback, the log,
and ``done``/``total`` in the state for ``_active_tasks``). At most two chunks per
worker are in flight, so memory stays bounded whatever the database's size. At the
end the checkpoint is the sequence noted at the start: changes made during the build
are then applied incrementally, so nothing is missed.

Workers start with ``forkserver`` (the server's process has threads, which ``fork``
does not copy safely). Without a way to reopen the database (the ``memory`` backend)
the build maps in-process instead.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections import deque
from itertools import islice
from typing import Any

from settee.config.affinity import restore, unpinned

log = logging.getLogger("settee.views")

CHUNK = 1000
POOL_WORTH_SECONDS = 2.0     # estimated one-process build time below which no pool starts
_worker_view = None


def _init_worker(opener, spec, cpus, view_class) -> None:
    """A pool process's start: the view to map with (``view_class``: the building
    view's own class, passed by reference, so this module imports no engine)."""
    global _worker_view
    from settee.store import Catalog
    restore(cpus)                # a pinned server worker's pool: the CPUs it had before
    settings, name = opener
    _worker_view = view_class(Catalog(settings).get(name), spec)


def _map_chunk(ids: list[str]) -> tuple[int, tuple[list, dict, int]]:
    return _map_here(_worker_view, ids)


def _chunks(view):
    ids = (i for i in view.db.versions.range(keys_only=True) if not i.startswith("_design/"))
    while True:
        chunk = list(islice(ids, CHUNK))
        if not chunk:
            return
        yield chunk


def workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def parallel_build(view, progress=None, processes: int | None = None) -> bool:
    """Build ``view`` from scratch; False when another process is already building it."""
    token = view.claim_build()
    if token is None:
        return False
    started = time.monotonic()
    start_seq = view.db.versions.info()["seq"]
    total = view.db.versions.info()["docs"]
    view.clear()
    state: dict[str, Any] = {
        "seq": 0, "rows": 0, "version": 1,
        "building": {"token": token, "beat": time.time(), "done": 0, "total": total}}
    done = 0
    chunks = _chunks(view)
    first = None
    if processes is None:
        first, processes = _first_chunk_decides(view, chunks, state, total)
        done = first or 0
    pool = None
    try:
        if first and progress is not None:
            progress(first)
        if view.db.opener is not None and processes > 1:
            ctx = multiprocessing.get_context("forkserver")
            pool = ctx.Pool(processes, initializer=_init_worker,
                            initargs=(view.db.opener, view.spec, unpinned(), type(view)))
            results = _pooled(pool, chunks, processes * 2)
        else:
            results = (_map_here(view, ids) for ids in chunks)
        for ids, chunk in results:
            with view.store.transaction():
                view.write_fresh(chunk, state)
                done += ids
                state["building"].update(beat=time.time(), done=done)
                view.store[view.state_key] = state
            if progress is not None:
                progress(ids)
            if done and done % (CHUNK * 20) == 0:
                log.info("view %s: built %d of %d docs", view.spec.name, done, total)
    except BaseException:
        with view.store.transaction():        # let another process take over at once
            failed = view.state()
            failed.pop("building", None)
            failed["seq"] = 0
            view.store[view.state_key] = failed
        raise
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    with view.store.transaction():
        state["seq"] = start_seq
        state.pop("building", None)
        view.store[view.state_key] = state
    elapsed = time.monotonic() - started
    log.info("view %s: built %d docs in %.1fs (%.0f docs/s, %d processes)", view.spec.name,
             done, elapsed, done / elapsed if elapsed else 0, processes if pool else 1)
    return True


def _map_here(view, ids: list[str]) -> tuple[int, tuple[list, dict, int]]:
    """Read, map and encode a chunk: ``(documents, fresh_chunk)``, ready to write."""
    docs = view.documents(ids)
    return len(docs), view.fresh_chunk(list(view.map_docs(docs).items()))


def _first_chunk_decides(view, chunks, state, total: int) -> tuple[int | None, int]:
    """Map and write the first chunk here, timing both: a pool pays only when mapping
    (reading, mapping, encoding the rows: what the workers do) costs more than writing
    and the build is long (the one writer is otherwise the bottleneck, and worker
    processes only add start-up, pickling and contention for the cores)."""
    ids = next(chunks, None)
    if ids is None:
        return None, 1
    started = time.perf_counter()
    count, chunk = _map_here(view, ids)
    mapping = time.perf_counter() - started
    started = time.perf_counter()
    with view.store.transaction():
        view.write_fresh(chunk, state)
        state["building"].update(beat=time.time(), done=count)
        view.store[view.state_key] = state
    writing = time.perf_counter() - started
    # The rest, done here, would take about this long; a pool pays back its start-up
    # (a fresh interpreter per worker, pickling every chunk back) only on a long build.
    rest = max(0, total - count) / max(count, 1) * (mapping + writing)
    processes = workers() if (mapping > writing and rest >= POOL_WORTH_SECONDS
                              and view.db.opener is not None) else 1
    log.info("view %s: mapping %.1f ms, writing %.1f ms per %d docs, ~%.1f s to go: "
             "%d process(es)", view.spec.name, mapping * 1000, writing * 1000, len(ids),
             rest, processes)
    return count, processes


def _pooled(pool, chunks, window: int):
    """Results of ``_map_chunk`` over ``chunks`` in order, ``window`` tasks in flight."""
    pending: deque = deque()
    for chunk in chunks:
        pending.append(pool.apply_async(_map_chunk, (chunk,)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()
