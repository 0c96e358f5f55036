"""Building a view from scratch over a large database: a process pool maps, one writer.

The parent claims the build (a heartbeat in the view's state that other processes
wait on), notes the database's sequence, clears the view's storage, then walks the
document ids in order. It maps and writes the first chunk itself, timing both: when
mapping costs more than writing, the rest goes to a pool of worker processes (one
per core); otherwise one process is faster, since the single writer is the limit.
Workers get chunks of ids. Each worker opens
the database itself, reads its chunk's documents and returns the rows they emit; the
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

log = logging.getLogger("settee.views")

CHUNK = 1000
_worker_view = None


def _init_worker(opener, spec) -> None:
    global _worker_view
    from settee.store import Catalog

    from .engine import View
    settings, name = opener
    _worker_view = View(Catalog(settings).get(name), spec)


def _map_chunk(ids: list[str]) -> list[tuple[str, list]]:
    docs = _worker_view.db.versions.get_many(ids)
    return [(doc_id, _worker_view.map_doc(docs[doc_id])) for doc_id in ids if doc_id in docs]


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
    state = {"seq": 0, "rows": 0, "version": 1,
             "building": {"token": token, "beat": time.time(), "done": 0, "total": total}}
    done = 0
    chunks = _chunks(view)
    first = None
    if processes is None:
        first, processes = _first_chunk_decides(view, chunks, state)
        done = len(first) if first is not None else 0
    pool = None
    try:
        if first is not None and progress is not None:
            progress(len(first))
        if view.db.opener is not None and processes > 1:
            ctx = multiprocessing.get_context("forkserver")
            pool = ctx.Pool(processes, initializer=_init_worker,
                            initargs=(view.db.opener, view.spec))
            results = _pooled(pool, chunks, processes * 2)
        else:
            results = (_map_here(view, ids) for ids in chunks)
        for mapped in results:
            with view.store.transaction():
                view.write_rows(dict(mapped), state, fresh=True)
                done += len(mapped)
                state["building"].update(beat=time.time(), done=done)
                view.store[view.STATE] = state
            if progress is not None:
                progress(len(mapped))
            if done and done % (CHUNK * 20) == 0:
                log.info("view %s: built %d of %d docs", view.spec.name, done, total)
    except BaseException:
        with view.store.transaction():        # let another process take over at once
            failed = view.state()
            failed.pop("building", None)
            failed["seq"] = 0
            view.store[view.STATE] = failed
        raise
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    with view.store.transaction():
        state["seq"] = start_seq
        state.pop("building", None)
        view.store[view.STATE] = state
    elapsed = time.monotonic() - started
    log.info("view %s: built %d docs in %.1fs (%.0f docs/s, %d processes)", view.spec.name,
             done, elapsed, done / elapsed if elapsed else 0, processes if pool else 1)
    return True


def _map_here(view, ids: list[str]) -> list[tuple[str, list]]:
    return [(i, view.map_doc(d)) for i, d in view.db.versions.get_many(ids).items()]


def _first_chunk_decides(view, chunks, state) -> tuple[list | None, int]:
    """Map and write the first chunk here, timing both: a pool pays only when mapping
    costs more than writing (the one writer is otherwise the bottleneck, and worker
    processes only add start-up, pickling and contention for the cores)."""
    ids = next(chunks, None)
    if ids is None:
        return None, 1
    started = time.perf_counter()
    mapped = _map_here(view, ids)
    mapping = time.perf_counter() - started
    started = time.perf_counter()
    with view.store.transaction():
        view.write_rows(dict(mapped), state, fresh=True)
        state["building"].update(beat=time.time(), done=len(mapped))
        view.store[view.STATE] = state
    writing = time.perf_counter() - started
    processes = workers() if mapping > writing and view.db.opener is not None else 1
    log.info("view %s: mapping %.1f ms, writing %.1f ms per %d docs: %d process(es)",
             view.spec.name, mapping * 1000, writing * 1000, len(ids), processes)
    return mapped, processes


def _pooled(pool, chunks, window: int):
    """Results of ``_map_chunk`` over ``chunks`` in order, ``window`` tasks in flight."""
    pending: deque = deque()
    for chunk in chunks:
        pending.append(pool.apply_async(_map_chunk, (chunk,)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()
