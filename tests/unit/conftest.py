"""The role_renderer fixture: role variables and templates evaluated with Ansible's own templar, without a host."""

import pytest
from role_renderer import RoleRenderer  # tests/helpers/, on sys.path through tests/conftest.py


# Session-wide: it is only the class, and module-scoped fixtures (a shared HAProxy) need it too.
@pytest.fixture(scope="session")
def role_renderer():
    return RoleRenderer
