"""Entry point: `python3 -m tools.servebench` from the repository root, or `python3 -m servebench` with tools/ on
PYTHONPATH."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
