"""Bad input: each invalid configuration makes site.yml stop before any change to the serving node.

Every case runs the real `ansible-playbook site.yml` against the node that the converge step brought to serving,
with one invalid value (or one condition on the node). The run must fail, its output must name the variable (or
the condition) and the fix, no file on the node may change (outside logs, caches and runtime state), and the
service must keep its running container.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import pathlib
from dataclasses import dataclass, field

import pytest
import yaml

from reliability_lab import NODE, ChangeWatch, PlaybookRun, node_sh, run_playbook, wait_healthy

GATED_HUB = "http://172.30.99.13:8080"
FULL_SIZE_HUB = "http://172.30.99.14:8080"
UNGRANTED_TOKEN = "hf_labUngrantedToken0123456789abcdefg"  # secret-scan: allow lab stand-in token, not a secret


@dataclass
class Case:
    id: str
    description: str
    extra_vars: dict
    expected: list[str]
    # A condition set up on the node for the run (and undone after it): see node_condition().
    condition: str | None = None
    inventory: dict = field(default_factory=dict)


CASES = [
    Case("block-size", "vllm_service_block_size 16", {"vllm_service_block_size": 16},
         ["vllm_service_block_size is 16", "Set vllm_service_block_size to 1"]),
    Case("kv-cache-fp8", "--kv-cache-dtype fp8 in vllm_service_extra_args",
         {"vllm_service_extra_args": ["--kv-cache-dtype", "fp8"]},
         ["vllm_service_extra_args sets --kv-cache-dtype fp8", "Remove it"]),
    Case("kv-cache-fp8-string", "--kv-cache-dtype=fp8_e4m3 hidden in an extra-args string",
         {"vllm_service_extra_args": "--max-num-seqs 64 --kv-cache-dtype=fp8_e4m3"},
         ["vllm_service_extra_args sets --kv-cache-dtype fp8"]),
    Case("kv-offloading", "KV offloading through --kv-offloading-size",
         {"vllm_service_extra_args": ["--kv-offloading-size", "64"]},
         ["vllm_service_extra_args sets --kv-offloading-size", "forbids KV cache offloading"]),
    Case("kv-offloading-connector", "an OffloadingConnector in --kv-transfer-config",
         {"vllm_service_extra_args": ["--kv-transfer-config", '{"kv_connector":"OffloadingConnector"}']},
         ["KV offloading connector"]),
    Case("tp-too-large", "vllm_service_tensor_parallel_size 16 (more GPUs than a node has)",
         {"vllm_service_tensor_parallel_size": 16},
         ["vllm_service_tensor_parallel_size is 16: it must be one of 1, 2, 4, 8"]),
    Case("gpu-missing", "one of the eight GPUs missing", {}, ["shows 7 AMD GPU(s)", "preflight_min_gpu_count"],
         condition="gpus:mi300x:7"),
    Case("unknown-gpu", "an unknown GPU architecture (MI250X, gfx90a)", {},
         ["GPU architecture(s) gfx90a", "preflight_supported_gfx_targets"], condition="gpus:mi250x:8"),
    Case("unsupported-os", "MI355X on Debian 12 with ROCm 7.0 (outside AMD's matrix)", {},
         ["AMD does not support MI355X on Debian 12", "rocm_allow_unsupported_os"], condition="gpus:mi355x:8"),
    Case("unsupported-kernel", "a backports kernel outside AMD's list (its headers exist)", {},
         ["Kernel 6.12.12+bpo-amd64 is not one AMD lists for Debian 12", "rocm_allow_unsupported_kernel"],
         condition="kernel:6.12.12+bpo-amd64"),
    Case("kernel-without-headers", "a kernel whose headers the distribution does not have", {},
         ["No headers for the running kernel 6.1.0-99-amd64", "linux-image-amd64"], condition="kernel:6.1.0-99-amd64"),
    Case("os-rhel", "a RHEL 9.4 node (in AMD's matrix, not supported by these roles yet)", {},
         ["runs RedHat 9", "do not support the Red Hat family yet", "use Ubuntu 22.04 or 24.04"],
         condition="os:rhel-9.4"),
    Case("unknown-rocm", "rocm_version 6.1.0 (not a release the role knows)", {"rocm_version": "6.1.0"},
         ["rocm_version must be x.y.z of a release this role knows"]),
    Case("gated-no-token", "no HF token for a gated repository",
         {"model_weights_hf_endpoint": GATED_HUB, "model_weights_hf_token": ""},
         ["gated repository and no token was given", "model_weights_hf_token"]),
    Case("token-malformed", "a malformed HF token", {"model_weights_hf_token": "my-token"},
         ["model_weights_hf_token, when set, must be a Hugging Face token"]),
    Case("token-no-access", "an HF token whose account has no access to the gated repository",
         {"model_weights_hf_endpoint": GATED_HUB, "model_weights_hf_token": UNGRANTED_TOKEN},
         ["the token's account has not been granted access", "model_weights_hf_token"]),
    Case("revision-missing", "a revision that does not exist",
         {"model_weights_revision": "0123456789abcdef0123456789abcdef01234567"},
         ["does not exist in deepseek-ai/DeepSeek-V3.2", "set model_weights_revision"]),
    Case("disk-too-small", "a disk too small for the weights (the hub reports the real 690 GB)",
         {"model_weights_hf_endpoint": FULL_SIZE_HUB, "model_weights_hf_token": ""},
         ["needs 689", "point model_weights_hf_home at a larger volume"]),
    Case("image-unpinned", "an image reference with neither tag nor digest",
         {"vllm_image_tag": "", "vllm_image_digest": ""}, ["pin a release tag"]),
    Case("port-taken", "the service port already taken by another process", {"vllm_service_port": 8001},
         ["Port 8001", "is already in use", "set vllm_service_port to a free port"], condition="listener:8001"),
    Case("address-foreign", "a listen address that is not the node's", {"vllm_service_listen_address": "10.99.0.7"},
         ["vllm_service_listen_address 10.99.0.7 is not an address of"]),
    Case("address-loopback-behind-lb", "a loopback listen address while a load balancer must reach the node",
         {"vllm_service_listen_address": "127.0.0.1"},
         ["(loopback only) but the load balancer(s) lb-example", "vllm_service_listen_address"],
         inventory={"loadbalancers": {"hosts": {"lb-example": {"ansible_host": "192.0.2.10"}}}}),
    Case("malformed-number", "a string where a number is expected", {"vllm_service_tensor_parallel_size": "eight"},
         ["vllm_service_tensor_parallel_size", "roles/vllm_service/README.md"]),
    Case("malformed-choice", "a value outside a variable's choices", {"docker_source": "snap"},
         ["docker_source", "roles/docker/README.md"]),
    Case("aiter-overridden", "VLLM_ROCM_USE_AITER=0 through vllm_service_extra_env",
         {"vllm_service_extra_env": {"VLLM_ROCM_USE_AITER": "0"}},
         ["vllm_service_extra_env sets VLLM_ROCM_USE_AITER=0", "Remove VLLM_ROCM_USE_AITER"]),
    Case("secret-in-env", "a secret passed as plain container environment",
         {"vllm_service_extra_env": {"HF_TOKEN": "hf_plaintext"}}, ["vllm_service_extra_env sets the secret HF_TOKEN"]),
    Case("drain-longer-than-stop", "a drain timeout longer than the stop timeout",
         {"vllm_service_shutdown_timeout": 300}, ["vllm_service_stop_timeout (120 s) must be longer"]),
    Case("api-key-empty", "no API key while the API listens on the node's address", {"vllm_service_api_key": ""},
         ["vllm_service_api_key is empty but the API listens on", "vllm_service_api_key_required"]),
    Case("api-key-placeholder", "the example vault file's placeholder key",
         {"vllm_service_api_key": "change-me-to-a-long-random-string"}, ["vllm_service_api_key is a placeholder"]),
    Case("api-key-in-args", "an API key on vLLM's command line, spelt with an underscore",
         {"vllm_service_extra_args": ["--api_key", "0123456789abcdef0123"]},
         ["vllm_service_extra_args sets --api_key (vLLM reads it as --api-key)", "Set vllm_service_api_key"]),
    Case("kv-cache-fp8-underscore", "--kv_cache_dtype fp8 (vLLM reads _ as -)",
         {"vllm_service_extra_args": ["--kv_cache_dtype", "fp8"]}, ["(vLLM reads it as --kv-cache-dtype) fp8"]),
    Case("variable-misspelt", "a misspelt variable (vllm_servce_port)", {"vllm_servce_port": 9000},
         ["vllm_servce_port is set in the inventory but no role reads it", "Did you mean vllm_service_port"]),
    Case("image-without-digest", "an image tag without its digest", {"vllm_image_digest": ""},
         ["vllm_image_digest is empty", "vllm_image_allow_unpinned"]),
    Case("memory-too-small", "less RAM than preflight_min_memory_gib", {"preflight_min_memory_gib": 100000},
         ["preflight_min_memory_gib is 100000"]),
]


@contextlib.contextmanager
def node_condition(condition: str | None):
    """gpus:<model>:<count> re-simulates the GPUs; listener:<port> starts another server on the port;
    kernel:<release> boots the node into another kernel (the node image's kernel-release stand-in); os:rhel-9.4
    makes the node present Red Hat Enterprise Linux 9.4."""
    if condition is None:
        yield
        return
    kind, _, argument = condition.partition(":")
    if kind == "gpus":
        model, count = argument.split(":")
        node_sh(f"simulate-amd-gpus --model {model} --count {count} && udevadm trigger 2>/dev/null; "
                "udev-coldplug-standin >/dev/null 2>&1 || true")
        try:
            yield
        finally:
            node_sh("simulate-amd-gpus && (udev-coldplug-standin >/dev/null 2>&1 || true)")
    elif kind == "kernel":
        node_sh(f"cp /etc/simulated-kernel-release /run/booted-kernel-release && echo {argument} "
                "> /etc/simulated-kernel-release")
        try:
            yield
        finally:
            node_sh("mv /run/booted-kernel-release /etc/simulated-kernel-release")
    elif kind == "os" and argument == "rhel-9.4":
        node_sh("printf 'Red Hat Enterprise Linux release 9.4 (Plow)\\n' > /etc/redhat-release && "
                "rm /etc/os-release && printf 'NAME=\"Red Hat Enterprise Linux\"\\nVERSION=\"9.4 (Plow)\"\\n"
                "ID=\"rhel\"\\nID_LIKE=\"fedora\"\\nVERSION_ID=\"9.4\"\\n' > /etc/os-release")
        try:
            yield
        finally:
            node_sh("rm /etc/redhat-release /etc/os-release && ln -s ../usr/lib/os-release /etc/os-release")
    elif kind == "listener":
        node_sh(f"systemd-run --unit=squatter --quiet python3 -m http.server {argument}")
        try:
            yield
        finally:
            node_sh("systemctl stop squatter")
    else:
        raise ValueError(condition)


@dataclass
class Outcome:
    run: PlaybookRun
    changed: list[str]
    untouched: bool


def attempt(case: Case, work_dir: pathlib.Path) -> Outcome:
    """site.yml with the case's configuration, watching the node for changes meanwhile."""
    args: tuple = ()
    if case.inventory:
        extra_inventory = work_dir / f"inventory-{case.id}.yml"
        extra_inventory.write_text(yaml.safe_dump({"all": {"children": case.inventory}}))
        args = ("-i", str(extra_inventory), "--limit", NODE)
    watch = ChangeWatch(case.id)
    with node_condition(case.condition):
        watch.start()
        run = run_playbook("site.yml", case.extra_vars, args=args, log_name=f"bad-input-{case.id}")
        return Outcome(run, watch.changes(), watch.service_untouched())


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    """Every case's outcome. The cases that only change variables run three at a time (they only read the node);
    those that change the node's condition run alone."""
    work_dir = tmp_path_factory.mktemp("bad-inputs")
    results = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        futures = {case.id: pool.submit(attempt, case, work_dir) for case in CASES if case.condition is None}
        results.update({case_id: future.result() for case_id, future in futures.items()})
    for case in CASES:
        if case.condition is not None:
            results[case.id] = attempt(case, work_dir)
    return results


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_refused_before_any_change(case, outcomes, record):
    """{case.description}"""
    outcome = outcomes[case.id]
    run = outcome.run
    message = next((line.strip() for line in run.output.splitlines() if case.expected[0] in line), "")
    shown = {name: "<hidden>" if "token" in name or "key" in name else value
             for name, value in case.extra_vars.items()}
    record(done=f"site.yml with {shown or case.condition}",
           observed=f"failed in {run.seconds:.0f} s: {message[:240]}; files changed on the node: "
                    f"{len(outcome.changed)}")
    assert run.rc != 0, "site.yml accepted the invalid configuration"
    for expected in case.expected:
        assert expected in run.output, f"{expected!r} missing from the output (reports/reliability/logs)"
    recap = [line for line in run.output.split("PLAY RECAP")[-1].splitlines() if line.startswith(NODE)]
    assert recap and "changed=0" in recap[0], recap
    assert outcome.changed == [], f"files changed on the node: {outcome.changed[:20]}"
    assert outcome.untouched, "the running service was restarted"
    wait_healthy(timeout=30)
