"""Makes the shared test helpers (tests/sim/ for the stand-ins, tests/helpers/) importable from every test file."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "sim"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "helpers"))
