"""Which CPUs a process runs on (``server_cpu_affinity``).

A gunicorn worker's threads take turns holding the interpreter lock, and a thread
that holds it while another worker's thread takes its CPU from it stops its whole
worker until it gets a CPU back. On a small machine that is most of what makes a
worker wait: under a durable write load on 2 CPUs, one worker per CPU made a third
fewer context switches and served a fifth more requests (measured). So each worker
is pinned to a CPU of its own (:func:`choose_cpu`, :func:`pin`), and what runs
beside it on more CPUs (a view build's pool) goes back to the CPUs the process had
before (:func:`unpinned`): the operator's choice (``taskset``, a cpuset), not every
CPU of the machine.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable

log = logging.getLogger("settee.server")

_before_pin: set[int] | None = None


def choose_cpu(allowed: Iterable[int], taken: Iterable[int | None], workers: int) -> int | None:
    """The CPU a new worker runs on: the first of ``allowed`` that no live worker
    (``taken``) has; None (anywhere) when there are more ``workers`` than CPUs
    allowed, as no CPU could be a worker's own, or just one worker, as no other
    worker's threads compete with its own."""
    allowed = sorted(allowed)
    if not 1 < workers <= len(allowed):
        return None
    busy = set(taken)
    return next((cpu for cpu in allowed if cpu not in busy), None)


def pin(cpu: int | None) -> bool:
    """Run this process (and the threads it starts) on ``cpu`` only; False if the
    system refused (the worker then runs wherever the kernel puts it)."""
    global _before_pin
    if cpu is None:
        return False
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as e:
        log.warning("worker %d stays on CPUs %s: %s", os.getpid(), sorted(before), e)
        return False
    _before_pin = before
    return True


def unpinned() -> set[int] | None:
    """The CPUs this process had before :func:`pin`, or None if it was never pinned
    (or the platform has no affinity)."""
    return _before_pin


def restore(cpus: Iterable[int] | None) -> None:
    """Run this process on ``cpus`` (a pinned parent's :func:`unpinned`); None: as is."""
    if cpus is None:
        return
    try:
        os.sched_setaffinity(0, set(cpus))
    except OSError as e:                     # a CPU gone since: stay where the kernel put us
        log.debug("process %d keeps its CPUs: %s", os.getpid(), e)
