"""site.yml refuses bad inventory values on the controller, before it contacts any host, with or without --limit.

The inventory's GPU nodes point at a closed loopback port over SSH: a play that tried to reach them would report
them UNREACHABLE. Each bad value must instead be refused by playbooks/validate.yml with a message naming the
variable, and no task may have connected (no fact gathering, no unreachable host).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import shutil
import subprocess

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from tests.helpers.tls_certificates import CertificateAuthority, certificate_pem, key_pem, new_key
from lab.hf_hub.hub_process import HubProcess

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
    ("fanout-wait-short", {"model_weights_source": "fanout", "model_weights_peer_wait": 5},
     "model_weights_peer_wait a whole number of seconds of at least 30 (got 5)"),
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


# Each test's run is one ansible-playbook of its own, as it would be run alone; they are started together by the
# `runs` fixture (below), since each spends seconds of CPU in task workers that the others need not wait for.
RUNNERS = 4


def assert_refused_without_contact(run: subprocess.CompletedProcess, expected: str):
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-2000:]
    assert expected in output, output[-3000:]
    assert "UNREACHABLE" not in output and "Gathering Facts" not in output, output[-3000:]


def _site_arguments(item: pytest.Item, request: pytest.FixtureRequest, inventory: pathlib.Path,
                    tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The arguments of site() for the test `item`: what that test would run by itself."""
    params = item.callspec.params if hasattr(item, "callspec") else {}
    name = item.originalname
    if name == "test_bad_values_are_refused_before_any_host_is_contacted":
        return inventory, params["extra_vars"]
    if name == "test_limit_to_one_node_still_validates":
        return inventory, params["extra_vars"], "--limit", "node-b"
    if name == "test_good_values_pass_validation_and_only_then_contact_the_nodes":
        return inventory, {}, "--limit", "node-a"
    tls = request.getfixturevalue("tls")
    if name == "test_bad_tls_values_are_refused_before_any_host_is_contacted":
        return inventory, params["build"](tls)
    if name == "test_a_good_certificate_with_its_key_from_the_vault_passes_validation":
        key_in = params["key_in"]
        return (_prod_style_inventory(tmp_path_factory.mktemp(key_in), inventory, tls, key_in), {},
                "--vault-password-file", str(tls["directory"] / "vault-password"))
    raise AssertionError(f"{item.nodeid} has no site.yml run")


@pytest.fixture(scope="module")
def runs(request, inventory, tmp_path_factory):
    """The site.yml run of every selected test of this file, started together (RUNNERS at a time, in the tests'
    order), by test id. Each is the same run the test would make alone; a test waits for its own."""
    items = [item for item in request.session.items if item.path == request.path and "run" in item.fixturenames]
    pool = concurrent.futures.ThreadPoolExecutor(RUNNERS)
    try:
        yield {item.nodeid: pool.submit(site, *_site_arguments(item, request, inventory, tmp_path_factory))
               for item in items}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def run(runs, request) -> subprocess.CompletedProcess:
    """This test's site.yml run (see `runs`)."""
    return runs[request.node.nodeid].result()


@pytest.mark.parametrize(("extra_vars", "expected"), [case[1:] for case in BAD_VALUES],
                         ids=[case[0] for case in BAD_VALUES])
def test_bad_values_are_refused_before_any_host_is_contacted(run, extra_vars, expected):
    """site(inventory, extra_vars)"""
    assert_refused_without_contact(run, expected)


@pytest.mark.parametrize(("extra_vars", "expected"), [case[1:] for case in BAD_VALUES[:4]],
                         ids=[case[0] for case in BAD_VALUES[:4]])
def test_limit_to_one_node_still_validates(run, extra_vars, expected):
    """site(inventory, extra_vars, "--limit", "node-b")"""
    assert_refused_without_contact(run, expected)


def test_good_values_pass_validation_and_only_then_contact_the_nodes(run):
    """The control case: with nothing wrong, validation passes and the preflight play tries the (closed) node:
    site(inventory, {}, "--limit", "node-a")."""
    assert "UNREACHABLE" in run.stdout, (run.stdout + run.stderr)[-3000:]
    assert "Preflight checks on the GPU nodes" in run.stdout


# The load balancer's certificate and key, refused by playbooks/validate.yml on the controller too.
@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    authority = CertificateAuthority()
    certificate, key = authority.issue(("llm.example.internal",))
    expired, expired_key = authority.issue(("llm.example.internal",), days=-1, not_before_days=-30)
    (directory / "ca.pem").write_text(authority.pem)
    (directory / "chain.pem").write_text(certificate_pem(certificate))
    (directory / "vault-password").write_text("tls-test-vault-password\n")
    return {"directory": directory, "certificate": certificate_pem(certificate), "key": key_pem(key),
            "expired": certificate_pem(expired), "expired_key": key_pem(expired_key),
            "vault": VaultLib([("default", VaultSecret(b"tls-test-vault-password"))])}


TLS_BAD_VALUES = [
    ("tls-key-of-another-certificate",
     lambda tls: {"loadbalancer_tls_certificate": tls["certificate"],
                  "loadbalancer_tls_private_key": key_pem(new_key())},
     "loadbalancer_tls_private_key does not belong to the server certificate in loadbalancer_tls_certificate"),
    ("tls-expired",
     lambda tls: {"loadbalancer_tls_certificate": tls["expired"], "loadbalancer_tls_private_key": tls["expired_key"]},
     "loadbalancer_tls_certificate: the server certificate (CN=llm.example.internal) expired on"),
    ("tls-name-not-covered",
     lambda tls: {"loadbalancer_tls_certificate": tls["certificate"], "loadbalancer_tls_private_key": tls["key"],
                  "loadbalancer_tls_server_name": "llm.example.com"},
     "not for llm.example.com (loadbalancer_tls_server_name)"),
    ("tls-key-file-missing",
     lambda tls: {"loadbalancer_tls_certificate": tls["certificate"],
                  "loadbalancer_tls_private_key_file": str(tls["directory"] / "absent.key")},
     "absent.key, which is not a file on the controller"),
    ("tls-http-mode", lambda tls: {"loadbalancer_http_mode": "upgrade"},
     "value of loadbalancer_http_mode must be one of"),
]


@pytest.mark.parametrize(("build", "expected"), [case[1:] for case in TLS_BAD_VALUES],
                         ids=[case[0] for case in TLS_BAD_VALUES])
def test_bad_tls_values_are_refused_before_any_host_is_contacted(run, tls, build, expected):
    """site(inventory, build(tls))"""
    assert_refused_without_contact(run, expected)
    assert tls["key"].splitlines()[1] not in run.stdout + run.stderr


def _prod_style_inventory(directory: pathlib.Path, inventory: pathlib.Path, tls: dict, key_in: str) -> pathlib.Path:
    """The test's inventory with TLS set as inventories/prod/ shows it: the chain in files/, the key in the vault
    (group_vars/all/vault.yml) or in an ansible-vault encrypted file, mapped in group_vars/loadbalancers/."""
    (directory / "files").mkdir(parents=True)
    (directory / "group_vars" / "all").mkdir(parents=True)
    (directory / "group_vars" / "loadbalancers").mkdir()
    shutil.copy(inventory, directory / "hosts.yml")
    shutil.copy(tls["directory"] / "chain.pem", directory / "files" / "llm.example.internal.fullchain.pem")
    shutil.copy(tls["directory"] / "ca.pem", directory / "files" / "internal-ca.pem")
    settings = {"loadbalancer_tls_certificate_file": "{{ inventory_dir }}/files/llm.example.internal.fullchain.pem",
                "loadbalancer_tls_server_name": "llm.example.internal",
                "loadbalancer_tls_ca_file": "{{ inventory_dir }}/files/internal-ca.pem"}
    if key_in == "vault-variable":
        settings["loadbalancer_tls_private_key"] = "{{ vault_loadbalancer_tls_private_key }}"
        (directory / "group_vars" / "all" / "vault.yml").write_bytes(
            tls["vault"].encrypt(yaml.safe_dump({"vault_loadbalancer_tls_private_key": tls["key"]})))
    else:
        settings["loadbalancer_tls_private_key_file"] = "{{ inventory_dir }}/files/llm.example.internal.key"
        (directory / "files" / "llm.example.internal.key").write_bytes(tls["vault"].encrypt(tls["key"]))
    (directory / "group_vars" / "loadbalancers" / "main.yml").write_text(yaml.safe_dump(settings))
    return directory


@pytest.mark.parametrize("key_in", ["vault-variable", "vault-file"])
def test_a_good_certificate_with_its_key_from_the_vault_passes_validation(run, tls, key_in):
    """The control case, as inventories/prod/ shows it: the chain checked against the CA and the name, the key
    decrypted from the vault; validation passes and the preflight play goes on to the (closed) nodes:
    site(_prod_style_inventory(directory, inventory, tls, key_in), {}, "--vault-password-file", ...)."""
    output = run.stdout + run.stderr
    # The balancers answer in any order: lb-a's result is somewhere in the task's block.
    check = run.stdout.split("TASK [loadbalancer : Check the certificate, its chain and its private key]")
    assert len(check) == 2 and "ok: [lb-a]" in check[1].split("TASK [")[0], output[-3000:]
    assert "UNREACHABLE" in run.stdout and "Preflight checks on the GPU nodes" in run.stdout, output[-3000:]
    assert tls["key"].splitlines()[1] not in output
