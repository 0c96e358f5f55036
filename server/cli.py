"""The ``settee`` command line."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("settee: the HTTP server is not built yet; use the embedded API "
          "(settee.store.open_database)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
