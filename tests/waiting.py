"""Waiting in tests: for a condition, with a deadline, never for a fixed time.

A fixed sleep is too short on a busy machine (the test flakes) and too long on an
idle one (the suite crawls). ``until`` polls the real condition instead and gives up
at a deadline, returning the condition's last value for the test to assert.
"""
from __future__ import annotations

import time


def until(predicate, timeout: float = 10.0, step: float = 0.05):
    """Poll ``predicate`` until it is true or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)
