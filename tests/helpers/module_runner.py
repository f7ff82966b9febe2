"""Runs one of the project's Ansible modules in the test's own process, the way the community collections test
theirs: arguments through patch_module_args, exit_json/fail_json turned into an exception carrying the result."""

import importlib.util
import pathlib
from unittest import mock

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

MODULES = pathlib.Path(__file__).resolve().parents[2] / "plugins" / "modules"


class ModuleExit(Exception):
    def __init__(self, failed, result):
        super().__init__(result.get("msg"))
        self.failed, self.result = failed, result


def run_module(name: str, args: dict, check_mode: bool = False) -> tuple[bool, dict]:
    """plugins/modules/<name>.py's main() with `args`; returns (failed, result)."""
    spec = importlib.util.spec_from_file_location(f"{name}_module", MODULES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

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
