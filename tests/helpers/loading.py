"""Loads a Python file that no import can reach: an executable whose name has no `.py` (the stand-ins'
commands, e.g. lab/node/simulate-amd-gpus). Everything else is imported by its package path from the
repository root (pytest.ini's pythonpath), and the project's module_utils as `ansible.module_utils.<name>`
(tests/unit/conftest.py)."""

import importlib.machinery
import importlib.util
import pathlib
import sys
import types


def load_file(path: pathlib.Path, name: str) -> types.ModuleType:
    """The Python source at `path` as module `name`, registered in sys.modules (dataclasses look their module up
    there)."""
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
