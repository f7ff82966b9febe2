"""vllm_service_endpoint: the one place that says where a GPU node serves and what (docs/node-facts.md). What the
node published wins; else its variables, with the vllm_service and model_weights roles' defaults beneath; the
role writes its local fact with the same filter, and the fact reads back as it was written. Also run through
ansible-playbook, where the filter gets real hostvars (lazily templated) and a fact file read by `setup`."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from plugins.filter.vllm_service import vllm_service_endpoint

REPO = pathlib.Path(__file__).resolve().parents[3]
VLLM_DEFAULTS = yaml.safe_load((REPO / "roles/vllm_service/defaults/main.yml").read_text())
WEIGHTS_DEFAULTS = yaml.safe_load((REPO / "roles/model_weights/defaults/main.yml").read_text())
DEFAULT_PORT = VLLM_DEFAULTS["vllm_service_port"]
DEFAULT_MODEL = WEIGHTS_DEFAULTS["model_weights_repo_id"]
FACTS = {"default_ipv4": {"address": "10.30.0.11"}}
PUBLISHED = {"address": "10.40.0.11", "port": 8123, "url": "http://10.40.0.11:8123", "served_model_name": "ds",
             "revision": "c" * 40, "image": "vllm/vllm-openai-rocm:v0.33.0"}


def _endpoint(variables, name="node01"):
    return vllm_service_endpoint(variables, name)


@pytest.mark.parametrize(("variables", "address", "port"), [
    # Nothing known but the name: the name, and vllm_service's default port.
    ({}, "node01", DEFAULT_PORT),
    ({"ansible_host": "10.20.0.11"}, "10.20.0.11", DEFAULT_PORT),
    # Facts gathered: vllm_service's own default listen address, the default IPv4 address.
    ({"ansible_host": "10.20.0.11", "ansible_facts": FACTS}, "10.30.0.11", DEFAULT_PORT),
    # Set in the inventory.
    ({"ansible_host": "10.20.0.11", "ansible_facts": FACTS, "vllm_service_listen_address": "10.50.0.11",
      "vllm_service_port": 9000}, "10.50.0.11", 9000),
    # 0.0.0.0 listens everywhere: reached where the host is reached.
    ({"ansible_host": "10.20.0.11", "vllm_service_listen_address": "0.0.0.0", "vllm_service_port": "9000"},
     "10.20.0.11", 9000),
], ids=["name-only", "ansible-host", "facts", "inventory", "every-interface"])
def test_a_node_that_has_published_nothing_is_read_from_its_variables(variables, address, port):
    endpoint = _endpoint(variables)
    assert endpoint == {"address": address, "port": port, "url": f"http://{address}:{port}",
                        "served_model_name": DEFAULT_MODEL, "revision": "", "image": ""}


@pytest.mark.parametrize(("variables", "model"), [
    ({}, DEFAULT_MODEL),
    # The case playbooks/benchmark.yml got wrong: another repository, no served name.
    ({"model_weights_repo_id": "org/other-model"}, "org/other-model"),
    ({"model_weights_repo_id": "org/other-model", "vllm_service_model": "org/pinned"}, "org/pinned"),
    ({"model_weights_repo_id": "org/other-model", "vllm_service_served_model_name": "ds"}, "ds"),
], ids=["default", "repo-id", "service-model", "served-name"])
def test_the_served_model_name_follows_the_inventory(variables, model):
    assert _endpoint(variables)["served_model_name"] == model


def test_what_the_node_published_wins_over_its_variables():
    variables = {"ansible_host": "10.20.0.11", "ansible_facts": FACTS, "vllm_service_port": 9000,
                 "model_weights_repo_id": "org/other-model", "ansible_local": {"vllm_service": PUBLISHED}}
    assert _endpoint(variables) == PUBLISHED


def test_a_fact_of_an_older_release_is_read_from_its_url():
    older = {"url": "http://10.40.0.11:8123", "served_model_name": "ds", "image": "img:1", "revision": "abc"}
    assert _endpoint({"ansible_local": {"vllm_service": older}}) == {
        "address": "10.40.0.11", "port": 8123, "url": "http://10.40.0.11:8123", "served_model_name": "ds",
        "revision": "abc", "image": "img:1"}


@pytest.mark.parametrize(("overrides", "address", "port"), [
    ({}, "10.30.0.11", DEFAULT_PORT),
    ({"vllm_service_listen_address": "0.0.0.0", "vllm_service_port": 9000}, "10.30.0.11", 9000),
], ids=["defaults", "every-interface"])
def test_the_role_records_what_readers_read_back(role_renderer, overrides, address, port):
    """tasks/run.yml writes _vllm_service_endpoint as the local fact; read back, it is the same endpoint."""
    renderer = role_renderer("vllm_service", FACTS, overrides={
        "ansible_local": {"model_weights": {"repo_id": "org/other-model", "commit": "a" * 40},
                          "vllm_image": {"reference": "vllm/vllm-openai-rocm:v0.33.0"}},
        **overrides})
    record = json.loads(json.dumps(renderer.var("_vllm_service_endpoint")))
    assert record == {"address": address, "port": port, "url": f"http://{address}:{port}",
                      "served_model_name": "org/other-model", "revision": "a" * 40,
                      "image": "vllm/vllm-openai-rocm:v0.33.0"}
    assert _endpoint({"ansible_facts": {"default_ipv4": {"address": "10.99.0.1"}},
                      "ansible_local": {"vllm_service": record}}) == record


ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")


@pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(), reason="needs ansible-playbook next to this Python")
def test_real_hostvars_and_a_fact_file(tmp_path):
    """node01: templated inventory values, no fact; node02: a fact file as `setup` reads it (older release)."""
    facts_dir = tmp_path / "facts.d"
    facts_dir.mkdir()
    (facts_dir / "vllm_service.fact").write_text(json.dumps(
        {"url": "http://10.40.0.12:8123", "served_model_name": "ds", "image": "img:1", "revision": "abc"}))
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"gpu_nodes": {"hosts": {
        "node01": {**local, "ansible_host": "10.20.0.11", "vllm_service_port": "{{ 4500 * 2 }}",
                   "model_weights_repo_id": "org/other-model"},
        "node02": local}}}}}))
    (tmp_path / "play.yml").write_text(yaml.safe_dump([
        {"hosts": "node02", "gather_facts": False,
         "tasks": [{"ansible.builtin.setup": {"fact_path": str(facts_dir), "filter": "ansible_local"}}]},
        {"hosts": "localhost", "gather_facts": False,
         "tasks": [{"ansible.builtin.copy": {
             "dest": str(tmp_path / "endpoints.json"), "mode": "0644",
             "content": "{{ groups['gpu_nodes'] | map('extract', hostvars) | map('vllm_service_endpoint')"
                        " | list | to_json }}"}}]},
    ]))
    run = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "hosts.yml", "play.yml"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                                                     "ANSIBLE_NOCOLOR": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert json.loads((tmp_path / "endpoints.json").read_text()) == [
        {"address": "10.20.0.11", "port": 9000, "url": "http://10.20.0.11:9000",
         "served_model_name": "org/other-model", "revision": "", "image": ""},
        {"address": "10.40.0.12", "port": 8123, "url": "http://10.40.0.12:8123", "served_model_name": "ds",
         "revision": "abc", "image": "img:1"},
    ]
