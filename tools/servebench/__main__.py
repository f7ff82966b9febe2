"""Entry point: `python3 -m servebench` (with tools/ on PYTHONPATH) or `python3 tools/servebench/__main__.py`."""

import sys

if not __package__:  # run as a file: make the package importable from its parent directory
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servebench.cli import main  # noqa: E402  (after the path fix above)

if __name__ == "__main__":
    sys.exit(main())
