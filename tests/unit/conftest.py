"""The role_renderer fixture: role variables and templates evaluated with Ansible's own templar, without a host."""

import pytest
from role_renderer import RoleRenderer  # tests/helpers/, on sys.path through tests/conftest.py


@pytest.fixture
def role_renderer():
    return RoleRenderer
