"""Where the tests find the project and the shared folder beside it (``$SHARED``)."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHARED") or ROOT.parent / "shared")
SHARED_BENCH = SHARED / "bench"
