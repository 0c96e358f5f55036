"""Running test threads together."""
from __future__ import annotations

import threading


def run_threads(count, target):
    """Start ``count`` threads running ``target(i)`` and wait for all of them."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread is still running"
