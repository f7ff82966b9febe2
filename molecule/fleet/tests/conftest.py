"""The fleet tests import fleet_lab.py, beside this file (pytest runs with --import-mode=importlib, which adds no
path)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
