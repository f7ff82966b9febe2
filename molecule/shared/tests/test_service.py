"""The vLLM service runs from its unit with the verified image and weights, and keeps its secrets to itself."""

import json
import os
import pathlib

# In a scenario with load balancers too, these checks are the GPU nodes'.
testinfra_hosts = ["ansible://gpu_nodes"]


def test_unit_is_enabled_active_and_verified(host):
    service = host.service("vllm")
    assert service.is_enabled and service.is_running
    host.run_expect([0], "systemd-analyze verify /etc/systemd/system/vllm.service")


def test_secrets_file_is_root_only(host):
    env_file = host.file("/etc/vllm/vllm.env")
    assert env_file.user == "root" and env_file.group == "root"
    assert env_file.mode == 0o600


def test_container_runs_with_the_mandatory_settings(host):
    inspect = json.loads(host.check_output("docker inspect vllm"))[0]
    env = dict(item.split("=", 1) for item in inspect["Config"]["Env"])
    assert env["VLLM_ROCM_USE_AITER"] == "1"
    assert env["AITER_ENABLE_VSKIP"] == "0"
    assert env["HF_HUB_OFFLINE"] == "1"
    args = inspect["Args"]
    assert args[args.index("--block-size") + 1] == "1"
    assert args[args.index("--tensor-parallel-size") + 1] == "8"
    assert "--kv-cache-dtype" not in args
    devices = {device["PathOnHost"] for device in inspect["HostConfig"]["Devices"]}
    assert "/dev/kfd" in devices
    mounts = {mount["Destination"]: mount["Source"] for mount in inspect["Mounts"]}
    assert mounts["/root/.cache/huggingface"] == "/srv/huggingface"
    hf_cache = next(mount for mount in inspect["Mounts"] if mount["Destination"] == "/root/.cache/huggingface")
    assert hf_cache["RW"] is False
    assert {"/root/.triton", "/root/.cache/vllm", "/root/.aiter"} <= set(mounts)


def test_image_is_the_verified_one(host):
    fact = json.loads(host.file("/etc/ansible/facts.d/vllm_image.fact").content_string)
    assert fact["reference"] == "vllm/vllm-openai-rocm:v0.33.0"
    assert fact["digest"].startswith("sha256:")
    running = json.loads(host.check_output("docker inspect vllm"))[0]["Image"]
    assert running == fact["id"]


def test_weights_fact_records_a_commit(host):
    fact = json.loads(host.file("/etc/ansible/facts.d/model_weights.fact").content_string)
    assert len(fact["commit"]) == 40
    snapshot = host.file(
        f"/srv/huggingface/hub/models--deepseek-ai--DeepSeek-V3.2/snapshots/{fact['commit']}/config.json")
    assert snapshot.exists


def test_health_answers_on_the_published_address(host):
    url = json.loads(host.file("/etc/ansible/facts.d/vllm_service.fact").content_string)["url"]
    assert host.run(f"curl -fsS -o /dev/null -w '%{{http_code}}' {url}/health").stdout == "200"


def _api_key():
    return (pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "api_key").read_text().strip()


def test_api_key_only_in_the_root_only_env_file(host):
    key = _api_key()
    assert key in host.file("/etc/vllm/vllm.env").content_string
    # The node's connection is root already; sudo would write this command line, key included, to the journal.
    holders = host.run(f"grep -rl -F {key} /etc /srv /var/lib/vllm /opt /root")
    # The environment file, and its copy kept with the last configuration that passed the smoke test.
    assert sorted(holders.stdout.split()) == ["/etc/vllm/last-good/vllm.env", "/etc/vllm/vllm.env"]
    assert host.file("/etc/vllm/last-good/vllm.env").mode == 0o600
    assert key not in host.file("/etc/systemd/system/vllm.service").content_string
    command_lines = host.check_output("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '")
    assert key not in command_lines
    assert key not in host.check_output("journalctl --no-pager -o cat")


def test_v1_requires_the_key_and_health_does_not(host):
    url = json.loads(host.file("/etc/ansible/facts.d/vllm_service.fact").content_string)["url"]
    assert host.run(f"curl -s -o /dev/null -w '%{{http_code}}' {url}/v1/models").stdout == "401"
    authorized = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' -H 'Authorization: Bearer {_api_key()}' "
                          f"{url}/v1/models")
    assert authorized.stdout == "200"
