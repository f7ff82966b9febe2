"""The role_renderer fixture: role variables and templates evaluated with Ansible's own templar, without a host."""

import pytest
from role_renderer import RoleRenderer  # tests/helpers/, on sys.path through tests/conftest.py


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
