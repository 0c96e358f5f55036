"""The JavaScript sandbox: one embedded V8 isolate per :class:`Sandbox`, reaching
nothing outside itself, each call bounded in time and memory.

The engine is V8 through mini-racer (``bench/js_engines.py`` measured it against
QuickJS: about twice as fast on a batch of documents; a call costs a fixed ~0.4 ms,
so callers pass batches). V8 embedded this way is ECMAScript and nothing more: no
``require``, ``fetch``, ``XMLHttpRequest``, ``process``, files, network or
processes. The sandbox also takes away, before any script runs, what mini-racer adds
(timers) and what would escape the memory cap: ``ArrayBuffer`` and its kin keep
their bytes outside V8's heap, where the heap limit does not count them, so typed
arrays, ``DataView``, ``SharedArrayBuffer``, ``Atomics`` and ``WebAssembly`` are
gone (see :data:`REMOVED`).

Each call runs under two limits (the ``js_timeout`` and ``js_max_memory``
settings): past either the call is stopped, raises :class:`JSTimeout` or
:class:`JSMemoryError`, and the isolate is thrown away. The next call gets a new
one, into which the scripts :meth:`Sandbox.install` kept are replayed, so a
sandbox holds no state a runaway call could have corrupted.

Scripts talk to Python in JSON text: a function installed in the isolate takes
strings and returns one, JSON, which :meth:`Sandbox.call` decodes. Nothing in the
isolate can call back into Python. The environment a design document's functions
see (``emit``, ``log``, ``require``...) is :mod:`.couchjs`'s; this module knows no
CouchDB.
"""
from __future__ import annotations

import atexit
import os
import threading
import weakref
from typing import Any

import orjson
from py_mini_racer import JSEvalException, JSOOMException, JSTimeoutException, MiniRacer

from settee.store.exceptions import BadRequest, StoreError

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_MEMORY = 256 << 20

#: Globals deleted from every new isolate: mini-racer's timers, and every way to
#: memory outside V8's heap (which the memory limit does not see).
REMOVED = ("setTimeout", "clearTimeout", "__timer_manager", "ArrayBuffer",
           "SharedArrayBuffer", "DataView", "Atomics", "WebAssembly", "Int8Array",
           "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array", "Int32Array",
           "Uint32Array", "Float16Array", "Float32Array", "Float64Array", "BigInt64Array",
           "BigUint64Array")
_HARDEN = ("(function (g) { %s.forEach(function (n) { if (!delete g[n]) g[n] = undefined; });"
           " })(globalThis);" % orjson.dumps(list(REMOVED)).decode())


class JSError(StoreError):
    """JavaScript threw where no one document is to blame."""

    error = "javascript_error"


class JSCompileError(BadRequest):
    """A script did not compile (or was refused by the script that compiles it)."""

    error = "compilation_error"


class JSLimitError(JSError):
    """A call was stopped at a limit; its isolate was thrown away. CouchDB's name for
    a query server that had to be stopped."""

    error = "os_process_error"


class JSTimeout(JSLimitError):
    """A call ran past ``js_timeout``."""


class JSMemoryError(JSLimitError):
    """A call's heap grew past ``js_max_memory``."""


def reason_of(error: Exception) -> str:
    """The first line of a V8 error ("TypeError: boom"), without V8's location."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    if first.startswith(("<anonymous>:", "undefined:")):
        first = first.split(": ", 1)[-1]
    return first


class Sandbox:
    """One V8 isolate with the scripts installed in it; thread-safe (calls take turns).

    ``name`` says whose code runs here, in errors and logs. ``timeout`` is the
    seconds one call may run, ``max_memory`` the bytes its heap may hold.
    """

    def __init__(self, name: str, timeout: float = DEFAULT_TIMEOUT,
                 max_memory: int = DEFAULT_MAX_MEMORY):
        self.name, self.timeout, self.max_memory = name, timeout, max_memory
        self._scripts: list[str] = []
        self._racer: MiniRacer | None = None
        self._functions: dict[str, Any] = {}
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self.resets = 0                 # isolates thrown away after a limit
        _LIVE.add(self)

    # -- running code -----------------------------------------------------------------
    def install(self, script: str) -> None:
        """Run ``script`` now and in every isolate this sandbox makes later. The
        script evaluates to ``""`` (or undefined) or to the reason it refuses to be
        installed (a function that does not compile): then :class:`JSCompileError`,
        and the script is not kept."""
        with self._lock:
            result = self._run(lambda racer: racer.eval(script, timeout_sec=self.timeout))
            if isinstance(result, str) and result:
                raise JSCompileError(result)
            self._scripts.append(script)

    def evaluate(self, script: str) -> Any:
        """The value of ``script`` (a string, number, boolean or None), run once."""
        with self._lock:
            return self._run(lambda racer: racer.eval(script, timeout_sec=self.timeout))

    def call(self, function: str, *args: str | int | float | bool | None) -> Any:
        """Call global function ``function`` with ``args``; it returns JSON text,
        decoded here."""
        with self._lock:
            def run(racer):
                found = self._functions.get(function)
                if found is None:
                    found = self._functions[function] = racer.eval(function)
                return found(*args, timeout_sec=self.timeout)
            text = self._run(run)
        if not isinstance(text, str):
            raise JSError(f"{self.name}: {function} returned {type(text).__name__}, "
                          "not JSON text")
        return orjson.loads(text)

    def _run(self, step):
        racer = None
        try:
            racer = self._isolate()
            return step(racer)
        except JSTimeoutException:
            self._discard()
            raise JSTimeout(f"{self.name}: JavaScript ran longer than {self.timeout:g} s "
                            "(js_timeout) and was stopped") from None
        except JSOOMException:
            self._discard()
            raise self._memory_error() from None
        except JSEvalException as e:
            if racer is not None and racer.was_hard_memory_limit_reached():
                self._discard()
                raise self._memory_error() from None
            raise JSError(f"{self.name}: {reason_of(e)}") from None

    def _memory_error(self) -> JSMemoryError:
        return JSMemoryError(f"{self.name}: JavaScript used more than "
                             f"{self.max_memory / (1 << 20):g} MiB (js_max_memory) and was "
                             "stopped")

    # -- the isolate's life -------------------------------------------------------------
    def _isolate(self) -> MiniRacer:
        if self._pid != os.getpid():        # a forked copy: the parent's isolate is not ours
            self._racer, self._functions, self._pid = None, {}, os.getpid()
        if self._racer is None:
            racer = MiniRacer()
            try:
                racer.set_hard_memory_limit(self.max_memory)
                racer.eval(_HARDEN)
                for script in self._scripts:
                    racer.eval(script, timeout_sec=self.timeout)
            except BaseException:
                racer.close()
                raise
            self._racer = racer
        return self._racer

    def _discard(self) -> None:
        racer, self._racer, self._functions = self._racer, None, {}
        self.resets += 1
        if racer is None:
            return
        try:
            # The stopped call's completion reaches Python after the stop: one more
            # (trivial) call waits for it, else it would arrive at a closed isolate.
            racer.eval("0", timeout_sec=1.0)
        except Exception:               # a broken isolate: closed all the same
            pass
        try:
            racer.close()
        except Exception:
            pass

    def close(self) -> None:
        """Free the isolate now; the next call makes another (with the scripts)."""
        with self._lock:
            racer, self._racer, self._functions = self._racer, None, {}
            if racer is not None and self._pid == os.getpid():
                racer.close()


#: Every sandbox alive, closed before the interpreter's shutdown: mini-racer closes an
#: isolate by joining its thread, which a finalizing interpreter may never run again.
_LIVE: weakref.WeakSet[Sandbox] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for sandbox in list(_LIVE):
        try:
            sandbox.close()
        except Exception:               # exiting anyway
            pass
