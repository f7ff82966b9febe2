"""Filters of the vllm_service role: the rules a vLLM configuration for DeepSeek V3.2 on ROCm must keep.

`vllm_config_problems` returns one message per broken rule, each naming the variable and the fix, so the role
can refuse a configuration before any host is changed.
"""

import ipaddress
import shlex

DOCUMENTATION = r"""
name: vllm_config_problems
short_description: List what is wrong with a vLLM service configuration for DeepSeek V3.2 on ROCm
description:
  - Checks the vllm_service role's variables against the rules in the vllm_service role README and returns a list of
    messages, empty when the configuration is valid.
positional: _input
options:
  _input:
    description:
      - A dict of the role's settings (see the role's tasks/validate.yml), plus C(gpu_count) and
        C(require_prefetched) (false before the prefetch step has recorded the image and the weights).
    type: dict
    required: true
"""

# The sparse MLA backend on ROCm supports block size 1 only; vLLM picks fp8_ds_mla for the KV cache itself.
MANDATORY_ENV = {"VLLM_ROCM_USE_AITER": "1", "AITER_ENABLE_VSKIP": "0", "HF_HUB_OFFLINE": "1"}
# Flags the role sets from its own variables; extra args may not set them a second time.
ROLE_OWNED_FLAGS = {
    "--model": "vllm_service_model",
    "--revision": "vllm_service_revision",
    "--tensor-parallel-size": "vllm_service_tensor_parallel_size",
    "-tp": "vllm_service_tensor_parallel_size",
    "--block-size": "vllm_service_block_size",
    "--quantization": "vllm_service_quantization",
    "-q": "vllm_service_quantization",
    "--tokenizer-mode": "vllm_service_tokenizer_mode",
    "--tool-call-parser": "vllm_service_tool_call_parser",
    "--reasoning-parser": "vllm_service_reasoning_parser",
    "--host": "vllm_service_listen_address",
    "--port": "vllm_service_port",
    "--api-key": "vllm_service_api_key",
    "--shutdown-timeout": "vllm_service_shutdown_timeout",
}
KV_OFFLOAD_FLAGS = ("--kv-offloading-size", "--kv-offloading-backend", "--cpu-offload-gb")
KV_OFFLOAD_CONNECTORS = ("OffloadingConnector", "LMCacheConnector", "LMCacheConnectorV1", "CPUConnector")
REASON_FP8_KV = (
    "the ROCm sparse MLA backend rejects an fp8 KV cache (ROCMAiterMLASparseBackend doesn't support fp8 "
    "kv_cache_dtype); vLLM already stores DeepSeek's KV cache as fp8_ds_mla"
)
REASON_OFFLOAD = (
    "KV cache offloading fails on DeepSeek V3.2's indexer cache "
    "(KeyError: 'model.layers.0.self_attn.indexer.k_cache'); use the GPUs' HBM instead"
)


def _flag_name(argument: str) -> str:
    return argument.split("=", 1)[0]


def _flag_value(arguments, index):
    argument = arguments[index]
    if "=" in argument:
        return argument.split("=", 1)[1]
    return arguments[index + 1] if index + 1 < len(arguments) else ""


def _extra_args_problems(extra_args):
    problems = []
    if isinstance(extra_args, str):
        extra_args = shlex.split(extra_args)
    for index, argument in enumerate(extra_args):
        flag = _flag_name(str(argument))
        if flag == "--kv-cache-dtype":
            if _flag_value(extra_args, index).startswith("fp8"):
                problems.append(f"vllm_service_extra_args sets --kv-cache-dtype fp8: {REASON_FP8_KV}. Remove it.")
        elif flag in KV_OFFLOAD_FLAGS:
            problems.append(f"vllm_service_extra_args sets {flag}: {REASON_OFFLOAD}. Remove it.")
        elif flag == "--kv-transfer-config":
            if any(connector in _flag_value(extra_args, index) for connector in KV_OFFLOAD_CONNECTORS):
                problems.append(f"vllm_service_extra_args sets a KV offloading connector: {REASON_OFFLOAD}. Remove it.")
        elif flag in ROLE_OWNED_FLAGS:
            problems.append(
                f"vllm_service_extra_args sets {flag}, which the role sets from {ROLE_OWNED_FLAGS[flag]}: "
                f"set that variable instead."
            )
    return problems


def _int_problem(config, name, low, high):
    value = config.get(name)
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, str) and value.isdigit()):
        return f"{name} must be a whole number from {low} to {high}, got {value!r}."
    if not low <= int(value) <= high:
        return f"{name} must be from {low} to {high}, got {value}."
    return None


def vllm_config_problems(config):
    """Every broken rule of a vllm_service configuration, as messages naming the variable and the fix."""
    problems = []
    block_size = config.get("vllm_service_block_size")
    if str(block_size) != "1":
        problems.append(
            f"vllm_service_block_size is {block_size!r}: DeepSeek V3.2's sparse MLA backend on ROCm needs "
            "--block-size 1. Set vllm_service_block_size to 1."
        )
    for name, low, high in (("vllm_service_tensor_parallel_size", 1, 64), ("vllm_service_port", 1, 65535)):
        problem = _int_problem(config, name, low, high)
        if problem:
            problems.append(problem)
    gpu_count = config.get("gpu_count")
    tp_size = config.get("vllm_service_tensor_parallel_size")
    if gpu_count is not None and str(tp_size).isdigit() and int(tp_size) > int(gpu_count):
        problems.append(
            f"vllm_service_tensor_parallel_size is {tp_size} but the node shows {gpu_count} GPU(s): lower "
            "vllm_service_tensor_parallel_size or find the missing GPUs (amd-smi list, dmesg)."
        )
    drain = _int_problem(config, "vllm_service_shutdown_timeout", 0, 86400)
    stop = _int_problem(config, "vllm_service_stop_timeout", 1, 86400)
    problems.extend(problem for problem in (drain, stop) if problem)
    if not drain and not stop and int(config["vllm_service_stop_timeout"]) <= int(config["vllm_service_shutdown_timeout"]):
        problems.append(
            f"vllm_service_stop_timeout ({config['vllm_service_stop_timeout']} s) must be longer than "
            f"vllm_service_shutdown_timeout ({config['vllm_service_shutdown_timeout']} s), or `docker stop` kills "
            "vLLM while it still drains requests: raise vllm_service_stop_timeout."
        )
    quantization = config.get("vllm_service_quantization")
    if quantization != "fp8":
        problems.append(
            f"vllm_service_quantization is {quantization!r}: the DeepSeek V3.2 checkpoint is FP8; set it to fp8."
        )
    problems.extend(_extra_args_problems(config.get("vllm_service_extra_args") or []))
    for name, value in (config.get("vllm_service_extra_env") or {}).items():
        if name in MANDATORY_ENV and str(value) != MANDATORY_ENV[name]:
            problems.append(
                f"vllm_service_extra_env sets {name}={value}, but the service needs {name}={MANDATORY_ENV[name]} "
                "(AITER is required by the sparse indexer, VSKIP crashes MI300X/MI325X, the weights are "
                f"prefetched). Remove {name} from vllm_service_extra_env."
            )
        if name in ("VLLM_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
            problems.append(
                f"vllm_service_extra_env sets the secret {name}; it would be visible in the unit and process "
                "list. Use vllm_service_api_key (kept in a root-only environment file) instead."
            )
    address = str(config.get("vllm_service_listen_address", ""))
    try:
        ipaddress.ip_address(address)
    except ValueError:
        problems.append(
            f"vllm_service_listen_address is {address!r}, not an IP address: set the node address clients and the "
            "load balancer use (0.0.0.0 opens every interface)."
        )
    image = str(config.get("vllm_service_image") or "")
    prefetched = config.get("require_prefetched", True)
    if not image and prefetched:
        problems.append(
            "vllm_service_image is empty: run the prefetch playbook (playbooks/prefetch.yml) first, which pulls and "
            "verifies the image and records it, or set vllm_service_image to a reference with a tag or digest."
        )
    elif image and "@sha256:" not in image and ":" not in image.rsplit("/", 1)[-1]:
        problems.append(
            f"vllm_service_image {image!r} has neither a tag nor a digest, so every pull may bring another "
            "release: pin a release tag (and its digest)."
        )
    if not config.get("vllm_service_revision") and prefetched:
        problems.append(
            "vllm_service_revision is empty: run the prefetch playbook (playbooks/prefetch.yml) first, which "
            "downloads and verifies the weights and records their commit."
        )
    api_key = config.get("vllm_service_api_key") or ""
    if api_key and (len(api_key) < 16 or any(character.isspace() for character in api_key)):
        problems.append(
            "vllm_service_api_key must be at least 16 characters without spaces (generate one with "
            "`openssl rand -hex 32` and keep it in ansible-vault)."
        )
    return problems


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {"vllm_config_problems": vllm_config_problems}
