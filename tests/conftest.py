"""Makes the stand-ins' shared test helpers (tests/sim/) importable from every test file."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "sim"))
