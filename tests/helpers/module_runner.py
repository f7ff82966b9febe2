"""Runs one of the project's Ansible modules in the test's own process, the way the community collections test
theirs: arguments through patch_module_args, exit_json/fail_json turned into an exception carrying the result."""

import importlib
from unittest import mock

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args


class ModuleExit(Exception):
    def __init__(self, failed, result):
        super().__init__(result.get("msg"))
        self.failed, self.result = failed, result


def run_module(name: str, args: dict, check_mode: bool = False) -> tuple[bool, dict]:
    """plugins/modules/<name>.py's main() with `args`; returns (failed, result). The module imports the project's
    module_utils as `ansible.module_utils.<name>` (tests/unit/conftest.py gives that package their path)."""
    module = importlib.import_module(f"plugins.modules.{name}")

    def exit_json(self, **result):
        raise ModuleExit(False, result)

    def fail_json(self, msg, **result):
        raise ModuleExit(True, {"msg": msg, **result})

    if check_mode:
        args = {**args, "_ansible_check_mode": True}
    with (
        patch_module_args(args),
        mock.patch.object(AnsibleModule, "exit_json", exit_json),
        mock.patch.object(AnsibleModule, "fail_json", fail_json),
        pytest.raises(ModuleExit) as outcome,
    ):
        module.main()
    return outcome.value.failed, outcome.value.result
