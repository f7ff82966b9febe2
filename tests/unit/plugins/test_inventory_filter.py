"""inventory_variable_problems names the inventory variables no role reads because they are misspelt."""

import importlib.util
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
ROLE_OPTIONS = {"vllm_service": {"vllm_service_port": {}, "vllm_service_api_key": {}},
                "vllm_image": ["vllm_image_tag", "vllm_image_digest"], "docker": ["docker_source"]}


def _problems(names):
    spec = importlib.util.spec_from_file_location("inventory_filter", REPO / "plugins/filter/inventory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.inventory_variable_problems(names, ROLE_OPTIONS)


@pytest.mark.parametrize(("name", "expected"), [
    ("vllm_servce_port", "no role reads it, so it would be ignored. Did you mean vllm_service_port"),
    ("vllm_service_prot", "role vllm_service has no such variable"),
    ("vllm_service_prot", "Did you mean vllm_service_port?"),
    ("vllm_image_digets", "Did you mean vllm_image_digest?"),
    ("docker_sorce", "role docker has no such variable"),
])
def test_a_misspelt_role_variable_is_named_with_its_likely_meaning(name, expected):
    problems = _problems([name])
    assert len(problems) == 1 and expected in problems[0], problems


@pytest.mark.parametrize("name", ["vllm_service_port", "ansible_host", "vault_vllm_api_key", "sim_gpu_model",
                                  "rolling_update_serial", "my_site_setting", "_internal"])
def test_options_and_unrelated_names_pass(name):
    assert _problems([name]) == []
