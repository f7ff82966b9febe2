"""Fixtures of the unit tests (role_renderer, started), and ansible.cfg's module_utils path.

The project is not a collection: its modules import plugins/module_utils/<name>.py as `ansible.module_utils.<name>`
through ansible.cfg's module_utils path. The package gets the same path here, so that the tests import them the
same way (the module objects the module under test uses) and `plugins.modules.<name>` imports.
"""

import pathlib

import ansible.module_utils
import pytest

from tests.helpers.role_renderer import RoleRenderer

MODULE_UTILS = str(pathlib.Path(__file__).resolve().parents[2] / "plugins" / "module_utils")
if MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(MODULE_UTILS)


# Session-wide: it is only the class, and module-scoped fixtures (a shared HAProxy) need it too.
@pytest.fixture(scope="session")
def role_renderer():
    return RoleRenderer


@pytest.fixture
def started():
    """Starts what a live test needs (`started(Kind, *args)`, each with a stop()); stops all of it afterwards, the
    last started first."""
    running = []

    def start(kind, *args, **kwargs):
        instance = kind(*args, **kwargs)
        running.append(instance)
        return instance

    yield start
    for instance in reversed(running):
        instance.stop()
