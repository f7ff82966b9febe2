"""site.yml refuses bad inventory values on the controller, before it contacts any host, with or without --limit.

The inventory's GPU nodes point at a closed loopback port over SSH: a play that tried to reach them would report
them UNREACHABLE. Each bad value must instead be refused by playbooks/validate.yml with a message naming the
variable, and no task may have connected (no fact gathering, no unreachable host).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest
import yaml
from hf_hub.hub_process import HubProcess  # tests/sim/, on sys.path through tests/conftest.py

REPO = pathlib.Path(__file__).resolve().parents[3]
KEY = "f3a94c0e7b21d58a6c9e04b7d1f2a3c5"
DIGEST = "sha256:" + "0" * 64

BAD_VALUES = [
    ("tp-16", {"vllm_service_tensor_parallel_size": 16}, "vllm_service_tensor_parallel_size is 16"),
    ("model-id-misspelt", {"model_weights_repo_id": "deepseek-ai/DeepSeek-V3.3"},
     "repository deepseek-ai/DeepSeek-V3.3 was not found"),
    ("tag-without-digest", {"vllm_image_digest": ""}, "vllm_image_digest is empty"),
    ("api-key-empty", {"vllm_service_api_key": ""}, "vllm_service_api_key is empty but the API listens"),
    ("api-key-placeholder", {"vllm_service_api_key": "change-me-to-a-long-random-string"}, "is a placeholder"),
    ("port-negative", {"vllm_service_port": -1}, "vllm_service_port must be from 1 to 65535"),
    ("kv-cache-fp8", {"vllm_service_extra_args": ["--kv-cache-dtype", "fp8"]},
     "vllm_service_extra_args sets --kv-cache-dtype fp8"),
    ("kv-cache-fp8-underscore", {"vllm_service_extra_args": ["--kv_cache_dtype", "fp8"]},
     "vLLM reads it as --kv-cache-dtype"),
    ("block-size-16", {"vllm_service_block_size": 16}, "vllm_service_block_size is 16"),
    ("variable-misspelt", {"vllm_servce_port": 9000}, "Did you mean vllm_service_port"),
    ("variable-unknown-in-role", {"vllm_service_prot": 9000}, "role vllm_service has no such variable"),
    ("rocm-unknown", {"rocm_version": "6.1.0"}, "rocm_version must be x.y.z of a release this role knows"),
    ("choice", {"docker_source": "snap"}, "value of docker_source must be one of"),
    ("vip-not-an-address", {"loadbalancer_vip_address": "10.20.0.300"},
     "loadbalancer_vip_address: '10.20.0.300' is not an IPv4 address"),
    ("vip-router-id", {"loadbalancer_vip_address": "192.0.2.100", "loadbalancer_listen_address": "192.0.2.100",
                       "loadbalancer_vip_router_id": 300}, "loadbalancer_vip_router_id is 300"),
    ("vip-same-priority", {"loadbalancer_vip_address": "192.0.2.100", "loadbalancer_listen_address": "192.0.2.100",
                           "loadbalancer_vip_priority": 120}, "loadbalancer_vip_priority is 120 on lb-a, lb-b"),
    ("vip-listen-address", {"loadbalancer_vip_address": "192.0.2.100"},
     "loadbalancer_listen_address is not set (HAProxy listens on the"),
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = HubProcess(["--shard-bytes", "16384"], tmp_path_factory.mktemp("hub") / "hub.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def inventory(hub, tmp_path_factory):
    unreachable = {"ansible_host": "127.0.0.1", "ansible_port": 9, "ansible_connection": "ssh"}
    path = tmp_path_factory.mktemp("inventory") / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {
        "children": {"gpu_nodes": {"hosts": {"node-a": unreachable, "node-b": unreachable}},
                     "loadbalancers": {"hosts": {"lb-a": unreachable, "lb-b": unreachable}}},
        "vars": {"model_weights_hf_endpoint": hub.url, "vllm_image_digest": DIGEST, "vllm_service_api_key": KEY,
                 "model_weights_retries": 1}}}))
    return path


def site(inventory: pathlib.Path, extra_vars: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ansible-playbook", "site.yml", "-i", str(inventory), "-e", json.dumps(extra_vars), *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})


def assert_refused_without_contact(run: subprocess.CompletedProcess, expected: str):
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-2000:]
    assert expected in output, output[-3000:]
    assert "UNREACHABLE" not in output and "Gathering Facts" not in output, output[-3000:]


@pytest.mark.parametrize(("extra_vars", "expected"), [case[1:] for case in BAD_VALUES],
                         ids=[case[0] for case in BAD_VALUES])
def test_bad_values_are_refused_before_any_host_is_contacted(inventory, extra_vars, expected):
    assert_refused_without_contact(site(inventory, extra_vars), expected)


@pytest.mark.parametrize(("extra_vars", "expected"), [case[1:] for case in BAD_VALUES[:4]],
                         ids=[case[0] for case in BAD_VALUES[:4]])
def test_limit_to_one_node_still_validates(inventory, extra_vars, expected):
    assert_refused_without_contact(site(inventory, extra_vars, "--limit", "node-b"), expected)


def test_good_values_pass_validation_and_only_then_contact_the_nodes(inventory):
    """The control case: with nothing wrong, validation passes and the preflight play tries the (closed) node."""
    run = site(inventory, {}, "--limit", "node-a")
    assert "UNREACHABLE" in run.stdout, (run.stdout + run.stderr)[-3000:]
    assert "Preflight checks on the GPU nodes" in run.stdout
