"""Filters of the vllm_service role: the rules a vLLM configuration for DeepSeek V3.2 on ROCm must keep, and what a
serving node publishes.

`vllm_config_problems` returns one message per broken rule, each naming the variable and the fix, so the role
can refuse a configuration before any host is changed. `vllm_service_argv` is the one place that turns
vllm_service_extra_args into the arguments the unit passes (and the rules check). `vllm_service_endpoint` is the
one place that says where a GPU node serves and what (docs/node-facts.md): the role writes its local fact with it,
and every other reader (load balancers, Prometheus, the smoke test, the benchmark) reads a node through it.
"""

import ipaddress
import os
import shlex
from urllib.parse import urlsplit

import ansible.module_utils

# The project's module_utils under the name its modules import them by (plugins/README.md, "module_utils").
_MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)
from ansible.module_utils import inventory_hosts  # noqa: E402  pylint: disable=wrong-import-position

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
      - A dict of the role's settings (the role's vars/main.yml, C(_vllm_service_settings)), plus C(gpu_count) once
        the node's GPUs are known. C(vllm_service_listen_address) is null when it is the node's primary address
        and the node's facts are not gathered yet (the controller's checks).
    type: dict
    required: true
"""

# What a serving node publishes (its local fact vllm_service), in this order; docs/node-facts.md.
ENDPOINT_KEYS = ("address", "port", "url", "served_model_name", "revision", "image")

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
    "--served-model-name": "vllm_service_served_model_name",
    "--host": "vllm_service_listen_address",
    "--port": "vllm_service_port",
    "--shutdown-timeout": "vllm_service_shutdown_timeout",
}
# Tensor-parallel sizes one 8-GPU node can run that divide the model's 128 attention heads.
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)
# Words of the example vault file's and common placeholder keys.
PLACEHOLDER_WORDS = ("change-me", "changeme", "replace-me", "your-api-key", "your_api_key", "example", "placeholder")
KV_OFFLOAD_FLAGS = ("--kv-offloading-size", "--kv-offloading-backend")
# vLLM 0.33.0's connector factory (vllm/distributed/kv_transfer/kv_connector/factory.py): the connectors that
# move KV blocks out of HBM into CPU memory, local disk or a storage service (found anywhere in the value, so also
# inside a MultiConnector). The others (Nixl*, MoRIIO, Mooncake) transfer KV between prefill and decode servers.
KV_OFFLOAD_CONNECTORS = (
    "OffloadingConnector", "SimpleCPUOffloadConnector", "LMCacheConnectorV1", "LMCacheMPConnector",
    "MooncakeStoreConnector", "HF3FSKVConnector", "FlexKVConnectorV1", "HiSparseConnector", "ExampleConnector",
)
# The flags the guard looks for, longest first: argparse (allow_abbrev) also takes an unambiguous prefix.
GUARDED_FLAGS = sorted(
    {*ROLE_OWNED_FLAGS, *KV_OFFLOAD_FLAGS, "--kv-cache-dtype", "--kv-transfer-config", "--api-key"},
    key=len, reverse=True,
)
REASON_FP8_KV = (
    "the vendor guide forbids an fp8 KV cache for DeepSeek V3.2 on ROCm (the sparse MLA backend of the images "
    "it covers rejected it; vLLM 0.33 accepts it but already stores this model's KV cache in its own fp8_ds_mla "
    "layout, and an fp8 cache changes the attention numerics the guide validated)"
)
REASON_OFFLOAD = (
    "the vendor guide forbids KV cache offloading for DeepSeek V3.2 (it failed on the model's indexer cache, "
    "KeyError: 'model.layers.0.self_attn.indexer.k_cache'); keep the KV cache in the GPUs' HBM"
)


def vllm_service_argv(extra_args):
    """vllm_service_extra_args as a list of arguments: the one place that splits it. A list is taken as it is
    (each item one argument); a string is split like a shell command line."""
    if extra_args is None:
        return []
    if isinstance(extra_args, str):
        return shlex.split(extra_args)
    return [str(argument) for argument in extra_args]


def _canonical_flag(argument: str) -> str:
    """The flag an argument names, as vLLM's FlexibleArgumentParser reads it: in a long option, `_` and `-` are
    the same up to the first `.` (a dotted key, `--kv-transfer-config.kv_connector`, sets one field of a JSON
    option); a value after `=` is not part of the name."""
    name = argument.split("=", 1)[0]
    if not name.startswith("--"):
        return name
    head, dot, tail = name[2:].partition(".")
    return "--" + head.replace("_", "-") + dot + tail


def _guarded_flag(flag: str):
    """The guarded flag a canonical flag name stands for: itself, its dotted field, or a prefix argparse would
    complete to it; None when it is not guarded."""
    base = flag.split(".", 1)[0]
    for guarded in GUARDED_FLAGS:
        if base == guarded or (len(base.lstrip("-")) > 0 and len(base) > (3 if base.startswith("--") else 1)
                               and guarded.startswith(base) and base.startswith("--") == guarded.startswith("--")):
            return guarded
    return None


def _flag_value(arguments, index):
    argument = arguments[index]
    if "=" in argument:
        return argument.split("=", 1)[1]
    return arguments[index + 1] if index + 1 < len(arguments) else ""


def _extra_args_problems(extra_args):
    problems = []
    arguments = vllm_service_argv(extra_args)
    for index, argument in enumerate(arguments):
        if not argument.startswith("-"):
            continue
        written = argument.split("=", 1)[0]
        flag = _guarded_flag(_canonical_flag(argument))
        as_written = f"{written} (vLLM reads it as {flag})" if flag and written != flag else written
        if flag == "--api-key":
            problems.append(
                f"vllm_service_extra_args sets {as_written}: a key on the command line is visible in the unit and "
                "the process list. Set vllm_service_api_key (from ansible-vault; the role keeps it in a root-only "
                "environment file) instead."
            )
        elif flag == "--kv-cache-dtype":
            if _flag_value(arguments, index).startswith("fp8"):
                problems.append(f"vllm_service_extra_args sets {as_written} fp8: {REASON_FP8_KV}. Remove it.")
        elif flag in KV_OFFLOAD_FLAGS:
            problems.append(f"vllm_service_extra_args sets {as_written}: {REASON_OFFLOAD}. Remove it.")
        elif flag == "--kv-transfer-config":
            value = _flag_value(arguments, index)
            connectors = [name for name in KV_OFFLOAD_CONNECTORS if name in value]
            if connectors:
                problems.append(
                    f"vllm_service_extra_args sets a KV offloading connector ({', '.join(connectors)} in "
                    f"{written}): {REASON_OFFLOAD}. Remove it."
                )
        elif flag in ROLE_OWNED_FLAGS:
            problems.append(
                f"vllm_service_extra_args sets {as_written}, which the role sets from {ROLE_OWNED_FLAGS[flag]}: "
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


def _block_size_problem(block_size):
    if str(block_size) != "1":
        return (
            f"vllm_service_block_size is {block_size!r}: the vendor guide requires --block-size 1 for DeepSeek V3.2's "
            "sparse MLA backend on ROCm (vLLM 0.33 also accepts multiples of 16, which the guide has not "
            "validated). Set vllm_service_block_size to 1."
        )
    return None


def _tensor_parallel_problems(config):
    tp_size = config.get("vllm_service_tensor_parallel_size")
    problem = _int_problem(config, "vllm_service_tensor_parallel_size", 1, 8)
    if problem or int(tp_size) not in TENSOR_PARALLEL_SIZES:
        return [
            f"vllm_service_tensor_parallel_size is {tp_size!r}: it must be one of "
            f"{', '.join(map(str, TENSOR_PARALLEL_SIZES))} (one instance runs on one node, every supported node has "
            "8 GPUs, and the size must divide DeepSeek V3.2's 128 attention heads); the vendor guide uses 8."
        ]
    gpu_count = config.get("gpu_count")
    if gpu_count is not None and int(tp_size) > int(gpu_count):
        return [
            f"vllm_service_tensor_parallel_size is {tp_size} but the node shows {gpu_count} GPU(s): lower "
            "vllm_service_tensor_parallel_size or find the missing GPUs (amd-smi list, dmesg)."
        ]
    return []


def _api_key_problems(config):
    api_key = str(config.get("vllm_service_api_key") or "")
    # None: the node's primary address, which is known only once its facts are gathered (never loopback).
    address = config.get("vllm_service_listen_address")
    loopback = address is not None and ipaddress.ip_address(address).is_loopback
    if not api_key:
        if config.get("vllm_service_api_key_required", True) and not loopback:
            shown = address or "the node's primary address (the default)"
            return [
                f"vllm_service_api_key is empty but the API listens on {shown}: anyone who reaches it could use "
                "the model. Set vllm_service_api_key from ansible-vault (vault_vllm_api_key in "
                "inventories/prod/group_vars/all/vault.yml; generate one with `openssl rand -hex 32`), or set "
                "vllm_service_api_key_required to false to serve without authentication."
            ]
        return []
    if len(api_key) < 16 or any(character.isspace() for character in api_key):
        return [
            "vllm_service_api_key must be at least 16 characters without spaces (generate one with "
            "`openssl rand -hex 32` and keep it in ansible-vault)."
        ]
    if any(word in api_key.lower() for word in PLACEHOLDER_WORDS) or len(set(api_key)) <= 2:
        return [
            "vllm_service_api_key is a placeholder (like the one in vault.yml.example), which anyone can guess: "
            "generate a key with `openssl rand -hex 32` and put it in your vault file."
        ]
    return []


def vllm_config_problems(config):
    """Every broken rule of a vllm_service configuration, as messages naming the variable and the fix."""
    problems = [problem for problem in [_block_size_problem(config.get("vllm_service_block_size"))] if problem]
    problems.extend(_tensor_parallel_problems(config))
    port = _int_problem(config, "vllm_service_port", 1, 65535)
    drain = _int_problem(config, "vllm_service_shutdown_timeout", 0, 86400)
    stop = _int_problem(config, "vllm_service_stop_timeout", 1, 86400)
    problems.extend(problem for problem in (port, drain, stop) if problem)
    if config.get("vllm_service_kernel_cache_share"):
        cache_port = _int_problem(config, "vllm_service_kernel_cache_port", 1, 65535)
        if cache_port:
            problems.append(cache_port)
        elif not port and int(config["vllm_service_kernel_cache_port"]) == int(config["vllm_service_port"]):
            problems.append(
                f"vllm_service_kernel_cache_port is {config['vllm_service_kernel_cache_port']}, the port vLLM "
                "listens on (vllm_service_port): the kernel-cache server could not start beside it. Choose another "
                "port for vllm_service_kernel_cache_port (default 8091)."
            )
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
    problems.extend(_extra_args_problems(config.get("vllm_service_extra_args")))
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
    address = config.get("vllm_service_listen_address")
    address_valid = True
    if address is not None:
        try:
            ipaddress.ip_address(str(address))
        except ValueError:
            address_valid = False
            problems.append(
                f"vllm_service_listen_address is {address!r}, not an IP address: set the node address clients and "
                "the load balancer use (0.0.0.0 opens every interface)."
            )
    image = str(config.get("vllm_service_image") or "")
    if image and "@sha256:" not in image and ":" not in image.rsplit("/", 1)[-1]:
        problems.append(
            f"vllm_service_image {image!r} has neither a tag nor a digest, so every pull may bring another "
            "release: pin a release tag (and its digest)."
        )
    if address_valid:
        problems.extend(_api_key_problems(config))
    return problems


# --- what a serving node publishes ------------------------------------------------------------------------------

def _value(variables, name):
    """variables[name], or None when it is not set (a host's hostvars raise on a missing name, as a dict does)."""
    try:
        return variables[name]
    except (KeyError, TypeError):
        return None


def _configured_endpoint(variables, name):
    """The endpoint a node's variables describe: the vllm_service role's own values when the role passes them
    (tasks/run.yml), else what the inventory sets, with the roles' defaults beneath it."""
    listen = str(_value(variables, "vllm_service_listen_address") or "")
    # vllm_service's default listen address is the node's default IPv4 address; 0.0.0.0 is every interface.
    address = listen if listen not in ("", "0.0.0.0") else inventory_hosts.reachable_address(variables, name)
    port = _value(variables, "vllm_service_port")
    port = inventory_hosts.role_default("vllm_service_port") if port in (None, "") else port
    served_model_name = (_value(variables, "vllm_service_served_model_name") or _value(variables, "vllm_service_model")
                         or _value(variables, "model_weights_repo_id")
                         or inventory_hosts.role_default("model_weights_repo_id"))
    return {"address": address, "port": int(port), "url": f"http://{address}:{int(port)}",
            "served_model_name": str(served_model_name),
            "revision": str(_value(variables, "vllm_service_revision") or ""),
            "image": str(_value(variables, "vllm_service_image") or "")}


def vllm_service_endpoint(variables, name=None):
    """Where a GPU node serves vLLM's API and what: {address, port, url, served_model_name, revision, image}.

    What the node published (its local fact vllm_service, written by the role once the service answered, and put
    back with the unit by a rollback) when its facts were gathered; else what its variables describe, with the
    vllm_service and model_weights roles' defaults beneath (revision and image are then empty: nothing is known to
    serve)."""
    name = name or _value(variables, "inventory_hostname") or ""
    published = _value(_value(variables, "ansible_local") or {}, "vllm_service")
    configured = _configured_endpoint(variables, name)
    if not published:
        return configured
    endpoint = {key: published.get(key) for key in ENDPOINT_KEYS}
    if not endpoint["address"] or not endpoint["port"]:
        # Facts written before the address and the port were recorded hold only the URL.
        parts = urlsplit(str(published.get("url") or ""))
        endpoint["address"] = endpoint["address"] or parts.hostname or configured["address"]
        endpoint["port"] = endpoint["port"] or parts.port or configured["port"]
    endpoint["port"] = int(endpoint["port"])
    endpoint["url"] = endpoint["url"] or f"http://{endpoint['address']}:{endpoint['port']}"
    endpoint["served_model_name"] = endpoint["served_model_name"] or configured["served_model_name"]
    endpoint["revision"] = str(endpoint["revision"] or "")
    endpoint["image"] = str(endpoint["image"] or "")
    return endpoint


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {"vllm_config_problems": vllm_config_problems, "vllm_service_argv": vllm_service_argv,
                "vllm_service_endpoint": vllm_service_endpoint}
