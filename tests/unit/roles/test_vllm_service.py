"""The vllm_service unit carries the mandatory flags, and every forbidden setting is refused with its reason."""

import hashlib

import pytest

from plugins.filter.vllm_service import vllm_config_problems
from tests.helpers.systemd_unit import exec_start_argv

FACTS = {"default_ipv4": {"address": "10.20.0.11"}, "systemd": {"version": 252}}
BASE = {
    # What the prefetch step records (the model_weights role's local fact), which the unit's model comes from.
    "ansible_local": {"model_weights": {"repo_id": "deepseek-ai/DeepSeek-V3.2"}},
    "vllm_service_image": "vllm/vllm-openai-rocm:v0.33.0",
    "vllm_service_revision": "a" * 40,
    "vllm_service_hf_home": "/srv/huggingface",
    "_vllm_service_group_ids": ["44", "993"],
    # What the preflight step's amd_gpu_facts found.
    "amd_gpu": {"gfx_targets": ["gfx942"]},
}


def _exec_start(role_renderer, facts=FACTS, **overrides):
    unit = role_renderer("vllm_service", facts, overrides={**BASE, **overrides}).template("vllm.service.j2")
    return unit, exec_start_argv(unit)


def _flag(argv, name):
    return [argv[index + 1] for index, argument in enumerate(argv) if argument == name]


def test_default_unit_has_the_mandatory_flags(role_renderer):
    unit, argv = _exec_start(role_renderer)
    assert argv[:3] == ["/usr/bin/docker", "run", "--rm"]
    image_at = argv.index("vllm/vllm-openai-rocm:v0.33.0")
    docker_args, vllm_args = argv[:image_at], argv[image_at + 1:]
    assert _flag(docker_args, "--device") == ["/dev/kfd", "/dev/dri"]
    assert _flag(docker_args, "--group-add") == ["44", "993"]
    assert "--ipc=host" in docker_args
    assert set(_flag(docker_args, "--env")) >= {
        "VLLM_ROCM_USE_AITER=1", "AITER_ENABLE_VSKIP=0", "HF_HUB_OFFLINE=1", "VLLM_ENGINE_READY_TIMEOUT_S=1800"}
    assert _flag(docker_args, "--env-file") == ["/etc/vllm/vllm.env"]
    assert _flag(docker_args, "--publish") == ["10.20.0.11:8000:8000"]
    # Read-only: with HF_HUB_OFFLINE=1 vLLM 0.33 only reads the snapshot (no locks, refs or modules are written).
    assert "/srv/huggingface:/root/.cache/huggingface:ro" in _flag(docker_args, "--volume")
    # The kernel caches under their key: the image (here by its reference, no ID recorded) and the architecture.
    key = f"{hashlib.sha256(b'vllm/vllm-openai-rocm:v0.33.0').hexdigest()[:12]}-gfx942"
    assert {f"/var/lib/vllm/cache/{key}/triton:/root/.triton", f"/var/lib/vllm/cache/{key}/vllm:/root/.cache/vllm",
            f"/var/lib/vllm/cache/{key}/aiter:/root/.aiter"} <= set(_flag(docker_args, "--volume"))
    # The image's entrypoint is `vllm serve`: vLLM 0.33 takes the model as its first positional argument
    # (`--model` is deprecated there).
    assert vllm_args[0] == "deepseek-ai/DeepSeek-V3.2" and "--model" not in vllm_args
    assert _flag(vllm_args, "--revision") == ["a" * 40]
    assert _flag(vllm_args, "--tensor-parallel-size") == ["8"]
    assert _flag(vllm_args, "--block-size") == ["1"]
    assert _flag(vllm_args, "--quantization") == ["fp8"]
    assert _flag(vllm_args, "--tokenizer-mode") == ["deepseek_v32"]
    assert _flag(vllm_args, "--tool-call-parser") == ["deepseek_v32"]
    assert "--enable-auto-tool-choice" in vllm_args
    assert _flag(vllm_args, "--reasoning-parser") == ["deepseek_v3"]
    assert _flag(vllm_args, "--shutdown-timeout") == ["90"]
    assert "--kv-cache-dtype" not in argv
    assert "ExecStartPre=-/usr/bin/docker rm --force vllm" in unit
    assert "ExecStop=/usr/bin/docker stop --time 120 vllm" in unit
    assert "Restart=on-failure" in unit and "RestartSteps" not in unit


def test_secrets_never_reach_the_unit(role_renderer):
    unit, _ = _exec_start(role_renderer, vllm_service_api_key="s3cr3t-key-0123456789")
    assert "s3cr3t" not in unit


def test_hardening_opt_outs_and_extras(role_renderer):
    _, argv = _exec_start(
        role_renderer,
        vllm_service_cap_sys_ptrace=False,
        vllm_service_seccomp_unconfined=False,
        vllm_service_extra_args=["--max-model-len", "65536"],
        vllm_service_extra_env={"VLLM_LOGGING_LEVEL": "DEBUG"},
        vllm_service_served_model_name="deepseek-v3.2",
        vllm_service_listen_address="0.0.0.0",
        vllm_service_port=9000,
    )
    assert "--cap-add=SYS_PTRACE" not in argv and "seccomp=unconfined" not in argv
    assert _flag(argv, "--max-model-len") == ["65536"]
    assert "VLLM_LOGGING_LEVEL=DEBUG" in _flag(argv, "--env")
    assert _flag(argv, "--served-model-name") == ["deepseek-v3.2"]
    assert _flag(argv, "--publish") == ["0.0.0.0:9000:8000"]


def test_systemd_254_gets_restart_backoff(role_renderer):
    unit, _ = _exec_start(role_renderer, facts={**FACTS, "systemd": {"version": 255}})
    assert "RestartSteps=5" in unit and "RestartMaxDelaySec=10min" in unit


def test_env_file_holds_the_api_key_only_when_set(role_renderer):
    with_key = role_renderer("vllm_service", FACTS, overrides={**BASE, "vllm_service_api_key": "k" * 32})
    assert "VLLM_API_KEY=" + "k" * 32 in with_key.template("vllm.env.j2")
    without = role_renderer("vllm_service", FACTS, overrides=BASE)
    assert "VLLM_API_KEY" not in without.template("vllm.env.j2")


KEY = "f3a94c0e7b21d58a6c9e04b7d1f2a3c5"


def _settings(**overrides):
    settings = {
        "vllm_service_image": "vllm/vllm-openai-rocm:v0.33.0", "vllm_service_revision": "a" * 40,
        "vllm_service_tensor_parallel_size": 8, "vllm_service_block_size": 1, "vllm_service_quantization": "fp8",
        "vllm_service_extra_args": [], "vllm_service_extra_env": {}, "vllm_service_listen_address": "10.0.0.1",
        "vllm_service_port": 8000, "vllm_service_api_key": KEY, "vllm_service_api_key_required": True,
        "gpu_count": 8, "vllm_service_shutdown_timeout": 90, "vllm_service_stop_timeout": 120,
        "vllm_service_kernel_cache_share": True, "vllm_service_kernel_cache_port": 8091,
    }
    settings.update(overrides)
    return settings


def test_defaults_are_valid():
    assert vllm_config_problems(_settings()) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"vllm_service_block_size": 16}, "vllm_service_block_size is 16"),
        ({"vllm_service_extra_args": ["--kv-cache-dtype", "fp8"]}, "--kv-cache-dtype fp8"),
        ({"vllm_service_extra_args": ["--kv-cache-dtype=fp8_e4m3"]}, "--kv-cache-dtype fp8"),
        ({"vllm_service_extra_args": "--max-num-seqs 64 --kv-cache-dtype fp8"}, "--kv-cache-dtype fp8"),
        ({"vllm_service_extra_args": ["--kv-transfer-config",
                                      '{"kv_connector":"OffloadingConnector","kv_role":"kv_both"}']},
         "KV offloading connector"),
        ({"vllm_service_extra_args": ["--kv-offloading-size", "64"]}, "--kv-offloading-size"),
        ({"vllm_service_extra_args": ["--block-size", "16"]}, "set that variable instead"),
        ({"vllm_service_tensor_parallel_size": 8, "gpu_count": 7}, "shows 7 GPU(s)"),
        ({"vllm_service_tensor_parallel_size": "eight"}, "vllm_service_tensor_parallel_size is 'eight'"),
        ({"vllm_service_tensor_parallel_size": 16}, "must be one of 1, 2, 4, 8"),
        ({"vllm_service_tensor_parallel_size": 3}, "must be one of 1, 2, 4, 8"),
        ({"vllm_service_port": 70000}, "vllm_service_port must be from 1 to 65535"),
        ({"vllm_service_port": -1}, "vllm_service_port must be from 1 to 65535, got -1"),
        ({"vllm_service_kernel_cache_port": 0}, "vllm_service_kernel_cache_port must be from 1 to 65535, got 0"),
        ({"vllm_service_kernel_cache_port": "cache"}, "vllm_service_kernel_cache_port must be a whole number"),
        ({"vllm_service_kernel_cache_port": 8000}, "the port vLLM listens on (vllm_service_port)"),
        ({"vllm_service_quantization": "awq"}, "vllm_service_quantization is 'awq'"),
        ({"vllm_service_extra_env": {"VLLM_ROCM_USE_AITER": "0"}}, "VLLM_ROCM_USE_AITER=1"),
        ({"vllm_service_extra_env": {"AITER_ENABLE_VSKIP": "1"}}, "AITER_ENABLE_VSKIP=0"),
        ({"vllm_service_extra_env": {"VLLM_API_KEY": "x"}}, "secret VLLM_API_KEY"),
        ({"vllm_service_listen_address": "node1.example"}, "not an IP address"),
        ({"vllm_service_api_key": "short"}, "at least 16 characters"),
        ({"vllm_service_image": "vllm/vllm-openai-rocm"}, "neither a tag nor a digest"),
        ({"vllm_service_stop_timeout": 60}, "vllm_service_stop_timeout (60 s) must be longer"),
        ({"vllm_service_shutdown_timeout": -1}, "vllm_service_shutdown_timeout must be"),
        ({"vllm_service_extra_args": ["--shutdown-timeout", "0"]}, "set that variable instead"),
    ],
)
def test_forbidden_settings_are_refused_with_the_variable_named(overrides, expected):
    problems = vllm_config_problems(_settings(**overrides))
    assert len(problems) == 1, problems
    assert expected in problems[0]


# vLLM's parser reads `_` as `-` in a long option's name (before any `.`), fills a JSON option field by field from
# a dotted flag, and (argparse's allow_abbrev) completes an unambiguous prefix.
@pytest.mark.parametrize(
    ("extra_args", "expected"),
    [
        (["--kv_cache_dtype", "fp8"], "--kv_cache_dtype (vLLM reads it as --kv-cache-dtype) fp8"),
        (["--kv_cache_dtype=fp8_e5m2"], "--kv-cache-dtype) fp8"),
        (["--kv-cache-d", "fp8"], "(vLLM reads it as --kv-cache-dtype) fp8"),
        (["--kv_offloading_size", "64"], "(vLLM reads it as --kv-offloading-size)"),
        (["--kv_offloading_backend=native"], "(vLLM reads it as --kv-offloading-backend)"),
        (["--block_size", "16"], "(vLLM reads it as --block-size), which the role sets from vllm_service_block_size"),
        (["--tensor_parallel_size", "16"], "sets from vllm_service_tensor_parallel_size"),
        (["--api-key", "s3cr3t"], "a key on the command line is visible"),
        (["--api_key=s3cr3t"], "(vLLM reads it as --api-key): a key on the command line"),
        (["--kv-transfer-config", '{"kv_connector":"SimpleCPUOffloadConnector","kv_role":"kv_both"}'],
         "SimpleCPUOffloadConnector"),
        (["--kv-transfer-config", '{"kv_connector":"LMCacheMPConnector","kv_role":"kv_both"}'], "LMCacheMPConnector"),
        (["--kv_transfer_config.kv_connector", "OffloadingConnector"], "KV offloading connector"),
        (["--kv-transfer-config.kv_connector=LMCacheConnectorV1"], "LMCacheConnectorV1"),
        ("--max-num-seqs 64 --kv_cache_dtype fp8", "vLLM reads it as --kv-cache-dtype"),
        (["-t", "4"], "(vLLM reads it as -tp), which the role sets from vllm_service_tensor_parallel_size"),
        (["-tp=4"], "-tp, which the role sets from vllm_service_tensor_parallel_size"),
        (["--kv-transfer-config", '{"kv_connector":"MultiConnector","kv_connector_extra_config":{"connectors":'
          '[{"kv_connector":"NixlConnector"},{"kv_connector":"HiSparseConnector"}]}}'], "HiSparseConnector"),
    ],
)
def test_flag_guard_reads_flags_as_vllm_does(extra_args, expected):
    problems = vllm_config_problems(_settings(vllm_service_extra_args=extra_args))
    assert len(problems) == 1, problems
    assert expected in problems[0]


@pytest.mark.parametrize("extra_args", [
    ["--max-num-seqs", "64"], ["--kv-cache-dtype", "auto"], ["--kv-transfer-config", '{"kv_connector":"NixlConnector"}'],
    "--max-model-len 65536 --enable-prefix-caching",
])
def test_harmless_extra_args_pass(extra_args):
    assert vllm_config_problems(_settings(vllm_service_extra_args=extra_args)) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"vllm_service_api_key": ""}, "vllm_service_api_key is empty but the API listens on 10.0.0.1"),
        ({"vllm_service_api_key": "", "vllm_service_listen_address": "0.0.0.0"}, "listens on 0.0.0.0"),
        # On the controller, before facts: the default address is the node's primary one, never loopback.
        ({"vllm_service_api_key": "", "vllm_service_listen_address": None}, "the node's primary address"),
        ({"vllm_service_api_key": "change-me-to-a-long-random-string"}, "is a placeholder"),
        ({"vllm_service_api_key": "x" * 40}, "is a placeholder"),
    ],
)
def test_an_open_or_guessable_api_is_refused(overrides, expected):
    problems = vllm_config_problems(_settings(**overrides))
    assert len(problems) == 1, problems
    assert expected in problems[0]


@pytest.mark.parametrize("overrides", [
    {"vllm_service_api_key": "", "vllm_service_listen_address": "127.0.0.1"},
    {"vllm_service_api_key": "", "vllm_service_api_key_required": False},
])
def test_no_key_on_loopback_or_with_the_explicit_opt_out(overrides):
    assert vllm_config_problems(_settings(**overrides)) == []


def test_image_by_digest_is_accepted():
    image = "registry:5000/vllm/vllm-openai-rocm@sha256:" + "b" * 64
    assert vllm_config_problems(_settings(vllm_service_image=image)) == []


def test_before_prefetch_the_missing_image_and_revision_are_not_errors_of_the_configuration():
    assert vllm_config_problems(_settings(vllm_service_image="", vllm_service_revision="")) == []


@pytest.mark.parametrize("extra_args", [["--max-num-seqs", "64", "--chat-template", "/a b.jinja"],
                                        "--max-num-seqs 64 --chat-template '/a b.jinja'"])
def test_extra_args_as_a_list_or_a_string_render_the_same_arguments(role_renderer, extra_args):
    _, argv = _exec_start(role_renderer, vllm_service_extra_args=extra_args)
    assert _flag(argv, "--max-num-seqs") == ["64"]
    assert _flag(argv, "--chat-template") == ["/a b.jinja"]


def test_unit_runs_the_image_by_its_id_so_a_new_tag_for_it_changes_nothing(role_renderer):
    image_id = "sha256:" + "c" * 64
    unit_a, argv = _exec_start(role_renderer, vllm_service_image_id=image_id)
    unit_b, _ = _exec_start(role_renderer, vllm_service_image_id=image_id,
                            vllm_service_image="vllm/vllm-openai-rocm:v0.33.0-relabelled")
    assert image_id in argv and "vllm/vllm-openai-rocm:v0.33.0" not in unit_a
    assert unit_a == unit_b


def test_start_is_bounded_and_groups_follow_gpu_access(role_renderer):
    unit, _ = _exec_start(role_renderer)
    assert "TimeoutStartSec=300" in unit and "infinity" not in unit
    renderer = role_renderer("vllm_service", FACTS, overrides={**BASE, "gpu_access_render_group": "gpu"})
    assert renderer.var("vllm_service_gpu_groups") == ["video", "gpu"]


@pytest.mark.parametrize("image_id, gfx_targets, key", [
    ("sha256:3f2a9c1b7d8e" + "0" * 52, ["gfx942"], "3f2a9c1b7d8e-gfx942"),
    ("sha256:3f2a9c1b7d8e" + "0" * 52, ["gfx950"], "3f2a9c1b7d8e-gfx950"),
    ("sha256:0123456789ab" + "f" * 52, ["gfx942"], "0123456789ab-gfx942"),
])
def test_kernel_caches_are_mounted_from_the_directory_of_their_image_and_architecture(role_renderer, image_id,
                                                                                     gfx_targets, key):
    """Another image or another architecture gets a directory of its own, so a cache compiled for one is never
    mounted for the other (README "Kernel caches")."""
    _, argv = _exec_start(role_renderer, vllm_service_image_id=image_id, amd_gpu={"gfx_targets": gfx_targets})
    mounts = [volume for volume in _flag(argv, "--volume") if volume.startswith("/var/lib/vllm/cache/")]
    assert sorted(mounts) == [f"/var/lib/vllm/cache/{key}/aiter:/root/.aiter",
                              f"/var/lib/vllm/cache/{key}/triton:/root/.triton",
                              f"/var/lib/vllm/cache/{key}/vllm:/root/.cache/vllm"]


def test_the_kernel_cache_server_admits_only_the_gpu_nodes(role_renderer):
    facts = {**FACTS, "default_ipv4": {"address": "10.20.0.11"}}
    hostvars = {"gpu-1": {"ansible_facts": {"default_ipv4": {"address": "10.20.0.11"}}},
                "gpu-2": {"ansible_facts": {"default_ipv4": {"address": "10.20.0.12"}}},
                "gpu-3": {"ansible_facts": {}}}
    config = role_renderer("vllm_service", facts, overrides={
        **BASE, "groups": {"gpu_nodes": ["gpu-1", "gpu-2", "gpu-3"], "loadbalancers": ["lb-1"]},
        "hostvars": hostvars}).template("vllm-kernel-cache.conf.j2")
    allowed = [line.split()[1].rstrip(";") for line in config.splitlines() if line.strip().startswith("allow ")]
    assert allowed == ["10.20.0.11", "10.20.0.12", "127.0.0.1"]
    assert "listen 10.20.0.11:8091;" in config and "deny all;" in config
    assert "root /var/lib/vllm/cache/exports;" in config
