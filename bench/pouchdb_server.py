"""PouchDB Server 4.2, for the benchmarks that compare Settee with it.

Installed once by the machine's npm into ``bench/.cache/pouchdb-server`` (gitignored);
its native LevelDB module is loaded from the prebuilt binaries the package ships, so
nothing is compiled. Without node and npm a benchmark skips its column, saying why.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache" / "pouchdb-server"
PACKAGE = "pouchdb-server@4.2.0"
BIN = CACHE / "node_modules" / "pouchdb-server" / "bin" / "pouchdb-server"


def install() -> tuple[str | None, str]:
    """(pouchdb-server's executable, "") once installed; (None, why) when it cannot be."""
    if BIN.exists():
        return str(BIN), ""
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        return None, ("pouchdb-server needs node and npm, and this machine has "
                      f"{'no npm' if not npm else 'no node'} on its PATH")
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"installing {PACKAGE} into bench/.cache/pouchdb-server (once)", file=sys.stderr,
          flush=True)
    done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
                           PACKAGE], cwd=CACHE, capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not BIN.exists():
        return None, f"npm could not install {PACKAGE}: {done.stderr[-300:]}"
    return str(BIN), ""
