"""``python -m agent ...`` (see ``agent/README.md``)."""

from __future__ import annotations

import sys

from agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
