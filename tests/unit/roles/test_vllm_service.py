"""The vllm_service unit carries the mandatory flags, and every forbidden setting is refused with its reason."""

import importlib.util
import pathlib

import pytest
from systemd_unit import exec_start_argv

REPO = pathlib.Path(__file__).resolve().parents[3]
FACTS = {"default_ipv4": {"address": "10.20.0.11"}, "systemd": {"version": 252}}
BASE = {
    "vllm_service_image": "vllm/vllm-openai-rocm:v0.33.0",
    "vllm_service_revision": "a" * 40,
    "vllm_service_hf_home": "/srv/huggingface",
    "_vllm_service_group_ids": ["44", "993"],
}


def _filter():
    spec = importlib.util.spec_from_file_location("vllm_service_filter", REPO / "plugins/filter/vllm_service.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.vllm_config_problems


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
    assert "/srv/huggingface:/root/.cache/huggingface" in _flag(docker_args, "--volume")
    assert {"/var/lib/vllm/cache/triton:/root/.triton", "/var/lib/vllm/cache/vllm:/root/.cache/vllm",
            "/var/lib/vllm/cache/aiter:/root/.aiter"} <= set(_flag(docker_args, "--volume"))
    assert _flag(vllm_args, "--model") == ["deepseek-ai/DeepSeek-V3.2"]
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


def _settings(**overrides):
    settings = {
        "vllm_service_image": "vllm/vllm-openai-rocm:v0.33.0", "vllm_service_revision": "a" * 40,
        "vllm_service_tensor_parallel_size": 8, "vllm_service_block_size": 1, "vllm_service_quantization": "fp8",
        "vllm_service_extra_args": [], "vllm_service_extra_env": {}, "vllm_service_listen_address": "10.0.0.1",
        "vllm_service_port": 8000, "vllm_service_api_key": "", "gpu_count": 8,
        "vllm_service_shutdown_timeout": 90, "vllm_service_stop_timeout": 120,
    }
    settings.update(overrides)
    return settings


def test_defaults_are_valid():
    assert _filter()(_settings()) == []


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
        ({"vllm_service_tensor_parallel_size": "eight"}, "must be a whole number"),
        ({"vllm_service_port": 70000}, "vllm_service_port must be from 1 to 65535"),
        ({"vllm_service_quantization": "awq"}, "vllm_service_quantization is 'awq'"),
        ({"vllm_service_extra_env": {"VLLM_ROCM_USE_AITER": "0"}}, "VLLM_ROCM_USE_AITER=1"),
        ({"vllm_service_extra_env": {"AITER_ENABLE_VSKIP": "1"}}, "AITER_ENABLE_VSKIP=0"),
        ({"vllm_service_extra_env": {"VLLM_API_KEY": "x"}}, "secret VLLM_API_KEY"),
        ({"vllm_service_listen_address": "node1.example"}, "not an IP address"),
        ({"vllm_service_api_key": "short"}, "at least 16 characters"),
        ({"vllm_service_image": "vllm/vllm-openai-rocm"}, "neither a tag nor a digest"),
        ({"vllm_service_image": ""}, "run the prefetch playbook"),
        ({"vllm_service_revision": ""}, "vllm_service_revision is empty"),
        ({"vllm_service_stop_timeout": 60}, "vllm_service_stop_timeout (60 s) must be longer"),
        ({"vllm_service_shutdown_timeout": -1}, "vllm_service_shutdown_timeout must be from 0"),
        ({"vllm_service_extra_args": ["--shutdown-timeout", "0"]}, "set that variable instead"),
    ],
)
def test_forbidden_settings_are_refused_with_the_variable_named(overrides, expected):
    problems = _filter()(_settings(**overrides))
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_image_by_digest_is_accepted():
    assert _filter()(_settings(vllm_service_image="registry:5000/vllm/vllm-openai-rocm@sha256:" + "b" * 64)) == []


def test_before_prefetch_the_missing_image_and_revision_are_not_yet_errors():
    problems = _filter()(_settings(vllm_service_image="", vllm_service_revision="", require_prefetched=False))
    assert problems == []
    assert "neither a tag nor a digest" in _filter()(
        _settings(vllm_service_image="vllm/vllm-openai-rocm", require_prefetched=False))[0]
