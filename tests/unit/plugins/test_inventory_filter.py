"""inventory_variable_problems names the inventory variables no role reads because they are misspelt;
inventory_host_address(es) is where other hosts reach a host, role_default a role's plain default read from it."""

import pathlib

import pytest
import yaml

from plugins.filter import inventory

REPO = pathlib.Path(__file__).resolve().parents[3]
ROLE_OPTIONS = {"vllm_service": {"vllm_service_port": {}, "vllm_service_api_key": {}},
                "vllm_image": ["vllm_image_tag", "vllm_image_digest"], "docker": ["docker_source"]}


def _problems(names):
    return inventory.inventory_variable_problems(names, ROLE_OPTIONS)


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


@pytest.mark.parametrize(("variables", "addresses"), [
    ({}, ["node01"]),
    ({"ansible_host": "10.20.0.11"}, ["10.20.0.11"]),
    ({"ansible_host": "10.20.0.11", "ansible_facts": {"default_ipv4": {"address": "10.30.0.11"}}},
     ["10.30.0.11", "10.20.0.11"]),
    # Gathered without a default route: no default IPv4 address.
    ({"ansible_host": "", "ansible_facts": {"default_ipv4": {}}}, ["node01"]),
    ({"ansible_host": "10.30.0.11", "ansible_facts": {"default_ipv4": {"address": "10.30.0.11"}}}, ["10.30.0.11"]),
], ids=["name", "ansible-host", "facts-first", "no-default-route", "same-address-once"])
def test_where_other_hosts_reach_a_host(variables, addresses):
    assert inventory.inventory_host_addresses(variables, "node01") == addresses
    assert inventory.inventory_host_address(variables, "node01") == addresses[0]


def test_role_default_reads_the_owning_role():
    defaults = yaml.safe_load((REPO / "roles/loadbalancer/defaults/main.yml").read_text())
    assert inventory.role_default("loadbalancer_port") == defaults["loadbalancer_port"]
    # The longest role name wins: loadbalancer_vip's variable, not loadbalancer's.
    assert inventory.role_default("loadbalancer_vip_router_id") == yaml.safe_load(
        (REPO / "roles/loadbalancer_vip/defaults/main.yml").read_text())["loadbalancer_vip_router_id"]


@pytest.mark.parametrize(("variable", "message"), [
    ("vllm_service_prot", "no role under"),
    ("vllm_service_listen_address", "is a template"),
], ids=["unknown", "templated"])
def test_role_default_refuses_what_it_cannot_know(variable, message):
    with pytest.raises(ValueError, match=message):
        inventory.role_default(variable)
