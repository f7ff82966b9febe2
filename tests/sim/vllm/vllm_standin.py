#!/usr/bin/env python3
"""Stand-in for `vllm serve` of the vllm/vllm-openai-rocm image serving DeepSeek V3.2 on AMD Instinct GPUs.

Stdlib only (Python 3.11, asyncio). Invoked like the image's entrypoint:

    python3 vllm_standin.py serve --model deepseek-ai/DeepSeek-V3.2 --tensor-parallel-size 8 --block-size 1 ...

It reproduces what a deployment can observe of vLLM 0.33.0 (the release set by VLLM_STANDIN_VERSION, default
0.33.0): the command line (every `vllm serve` option of the release, argparse's errors and exit code 2), the
start-up checks and failures with vLLM's log format and texts (GPU device nodes, AITER, the ROCm sparse-MLA rules,
the Hugging Face cache in offline mode, tensor parallelism beyond the GPUs present), a start-up time that is
shorter when the kernel caches are warm, the OpenAI-compatible HTTP API with vLLM's response shapes and error
bodies, Prometheus metrics, a token scheduler whose throughput saturates like a GPU server's, and SIGTERM
handling. README.md next to this file names the vLLM source each behaviour and text comes from, what is not
reproduced, and every SIM_* setting.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import glob
import hashlib
import heapq
import itertools
import json
import math
import os
import random
import re
import resource
import signal
import socket
import struct
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import quote, unquote

DEFAULT_VERSION = "0.33.0"
DEFAULT_MODEL = "Qwen/Qwen3-0.6B"  # `vllm serve` without a model (entrypoints/cli/serve.py)
PKG = "/usr/local/lib/python3.12/dist-packages/vllm"  # where the ROCm image installs vLLM


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


def env_flag(name: str, default: str = "0") -> bool:
    """vLLM's boolean environment parsing (envs.py): "1" or "true", any case."""
    return os.environ.get(name, default).strip().lower() in ("1", "true")


def version_tuple(text: str) -> tuple[int, int, int]:
    numbers = [int(part) for part in re.findall(r"\d+", text)[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------------------
# What differs between vLLM releases. Each rule was read in the wheels of 0.17.0, 0.18.0, 0.19.0, 0.22.0, 0.27.0,
# 0.30.0 and 0.33.0; a change is placed at the first sampled release that shows it (README: "Releases").
# ----------------------------------------------------------------------------------------------------------------

AITER_INDEXER_ERRORS = (
    # (first sampled release with the text, text); platforms/rocm.py / layers/sparse_attn_indexer.py forward_hip
    ((0, 0, 0), "Sparse attention indexer ROCm custom op requires ROCm Aiter ops to be enabled."),
    ((0, 22, 0), ("Sparse attention indexer ROCm path is only supported on AITER. "
                  "Please enable aiter with VLLM_ROCM_USE_AITER=1")),
    ((0, 30, 0), ("Sparse attention indexer ROCm path requires AITER or a supported native architecture "
                  "(gfx950/gfx11).")),
)


@dataclass(frozen=True)
class Release:
    version: str

    @property
    def number(self) -> tuple[int, int, int]:
        return version_tuple(self.version)

    @property
    def checks_sparse_backend_in_selector(self) -> bool:
        # 0.17 platforms/rocm.py get_attn_backend_cls: fp8 kv cache ValueError and `assert block_size == 1`.
        return self.number < (0, 18, 0)

    @property
    def offloading_misses_indexer_cache(self) -> bool:
        # 0.17 OffloadingConnector looks layers up as `Attention`; the indexer's k_cache is not one -> KeyError.
        return self.number < (0, 18, 0)

    @property
    def defaults_tokenizer_mode_for_dsv32(self) -> bool:
        # config/model.py: tokenizer_mode "auto" becomes "deepseek_v32" for DeepseekV32ForCausalLM from 0.18.
        return self.number >= (0, 18, 0)

    @property
    def has_shutdown_timeout(self) -> bool:
        return self.number >= (0, 18, 0)

    @property
    def omits_empty_tool_calls(self) -> bool:
        # chat_completion/protocol.py ChatMessage drops an empty `tool_calls` from 0.27.
        return self.number >= (0, 27, 0)

    @property
    def fp8_bmm_default(self) -> bool:
        # envs.py VLLM_ROCM_USE_AITER_FP8BMM: default "True" up to 0.30, "False" in 0.33.
        return self.number < (0, 33, 0)

    @property
    def indexer_runs_natively_on_gfx950(self) -> bool:
        return self.number >= (0, 30, 0)

    @property
    def server_start_message(self) -> str:
        return "Starting vLLM API server 0 on %s" if self.number < (0, 18, 0) else "Starting vLLM server on %s"

    def aiter_indexer_error(self) -> str:
        return [text for first, text in AITER_INDEXER_ERRORS if self.number >= first][-1]


# ----------------------------------------------------------------------------------------------------------------
# Logging in vLLM's format (logger.py): "(APIServer pid=1) INFO 11-29 01:02:03 [entry.py:139] message", to stdout;
# continuation lines repeat the prefix after "\r\n" (logging_utils/formatter.py NewLineFormatter).
# ----------------------------------------------------------------------------------------------------------------

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


@dataclass(frozen=True)
class Proc:
    name: str
    pid: int


class VllmLog:
    def __init__(self) -> None:
        self.prefix = os.environ.get("VLLM_LOGGING_PREFIX", "")
        self.threshold = LEVELS.get(os.environ.get("VLLM_LOGGING_LEVEL", "INFO").upper(), 20)
        stream_name = os.environ.get("VLLM_LOGGING_STREAM", "ext://sys.stdout")
        self.stream = sys.stderr if stream_name.endswith("stderr") else sys.stdout
        self.seen_once: set[str] = set()

    def log(self, proc: Proc, level: str, where: str, message: str, *, once: bool = False) -> None:
        if LEVELS[level] < self.threshold:
            return
        if once:
            if message in self.seen_once:
                return
            self.seen_once.add(message)
        stamp = time.strftime("%m-%d %H:%M:%S")
        head = f"{self.prefix}({proc.name} pid={proc.pid}) {level} {stamp} [{where}] "
        self.stream.write(head + message.replace("\n", "\r\n" + head) + "\n")
        self.stream.flush()

    def info(self, proc: Proc, where: str, message: str, **kwargs) -> None:
        self.log(proc, "INFO", where, message, **kwargs)

    def warning(self, proc: Proc, where: str, message: str) -> None:
        self.log(proc, "WARNING", where, message)

    def error(self, proc: Proc, where: str, message: str) -> None:
        self.log(proc, "ERROR", where, message)


def uvicorn_log(message: str, stream=None) -> None:
    """uvicorn's default handler: "INFO:     message" (logging config of uvicorn, stderr for the server)."""
    stream = stream or sys.stderr
    stream.write(f"INFO:     {message}\n")
    stream.flush()


# A Python traceback as an uncaught exception prints it. Frames are (path relative to the vLLM package, line,
# function, source line); the exception line is what tests and operators match on.
Frame = tuple[str, int, str, str]

CLI_FRAMES: list[Frame] = [
    ("!/usr/local/bin/vllm", 10, "<module>", "sys.exit(main())"),
    ("entrypoints/cli/main.py", 104, "main", "args.dispatch_function(args)"),
    ("entrypoints/cli/serve.py", 156, "cmd", "uvloop.run(run_server(args))"),
    ("entrypoints/launchers/api_server/entry.py", 178, "run_server",
     "await run_server_worker(listen_address, sock, args, **uvicorn_kwargs)"),
]
ENGINE_ARGS_FRAMES: list[Frame] = CLI_FRAMES + [
    ("entrypoints/launchers/api_server/entry.py", 193, "run_server_worker",
     "async with build_async_engine_client("),
    ("entrypoints/launchers/api_server/entry.py", 60, "build_async_engine_client",
     "async with build_async_engine_client_from_engine_args("),
    ("entrypoints/launchers/api_server/entry.py", 77, "build_async_engine_client_from_engine_args",
     "vllm_config = engine_args.create_engine_config(usage_context=usage_context)"),
]


def format_traceback(frames: list[Frame], exception_line: str) -> list[str]:
    lines = ["Traceback (most recent call last):"]
    for path, line, function, source in frames:
        location = path[1:] if path.startswith("!") else f"{PKG}/{path}"
        lines.append(f'  File "{location}", line {line}, in {function}')
        lines.append(f"    {source}")
    lines.extend(exception_line.split("\n"))
    return lines


def print_traceback(frames: list[Frame], exception_line: str) -> None:
    sys.stderr.write("\n".join(format_traceback(frames, exception_line)) + "\n")
    sys.stderr.flush()


class StartupFailure(Exception):
    """vLLM stopped during start-up; `exit_code` is what the container's main process returns."""

    def __init__(self, exit_code: int = 1) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


# ------------------------------------------------------------------------------------------------------------------
# The command line (utils/argparse_utils.py FlexibleArgumentParser, entrypoints/cli/main.py).
# ------------------------------------------------------------------------------------------------------------------

# Every option of `vllm serve` in vLLM 0.33.0, by how argparse takes it: extracted from the wheel's
# entrypoints/common/cli_args.py (make_arg_parser, FrontendArgs) and engine/arg_utils.py (EngineArgs.add_cli_args)
# with the config dataclasses' field types (engine/arg_utils.py _compute_kwargs). "|" joins aliases.
SERVE_OPTIONS = {
    "value": """
--chat-template --chat-template-content-format --default-chat-template-kwargs --reasoning-effort-map
--response-role --tool-call-parser --tool-parser-plugin --tool-strict-level --tool-server --cohere-format
--anthropic-disabled-thinking-effort --fingerprint-mode --fingerprint-value --host --uds --uvicorn-log-level
--disable-access-log-for-endpoints --allowed-origins --allowed-methods --allowed-headers --ssl-keyfile
--ssl-certfile --ssl-ca-certs --ssl-ciphers --root-path --middleware --config --runner --convert --tokenizer
--tokenizer-mode --dtype --hf-config-path --allowed-local-media-path --revision --code-revision
--tokenizer-revision --quantization|-q --quantization-config --logprobs-mode --config-format --hf-overrides
--model-class-overrides --pooler-config --generation-config --override-generation-config --sleep-mode-backend
--model-impl --io-processor-plugin --load-format --download-dir --safetensors-load-strategy
--model-loader-extra-config --pt-load-map-location --attention-backend --mamba-backend --mamba-ssu-algorithm
--reasoning-parser --reasoning-parser-plugin --distributed-executor-backend --master-addr --device-ids
--dcp-comm-backend --data-parallel-address|-dpa --data-parallel-backend|-dpb --all2all-backend --eplb-config
--expert-placement-strategy --worker-cls --worker-extension-cls --fault-tolerance-config --kv-cache-dtype
--prefix-caching-hash-algo --mamba-cache-dtype --mamba-ssm-cache-dtype --mamba-cache-mode --kv-offloading-backend
--offload-backend --limit-mm-per-prompt --media-io-kwargs --mm-processor-kwargs --mm-processor-cache-type
--mm-hasher-algorithm --mm-encoder-tp-mode --mm-encoder-attn-backend --mm-encoder-attn-dtype
--mm-encoder-fp8-scale-path --mm-encoder-fp8-scale-save-path --video-pruning-method --mm-tensor-ipc
--mm-processor-device --max-lora-rank --lora-dtype --default-mm-loras --logging-config --log-level
--log-config-file --show-hidden-metrics-for-version --otlp-traces-endpoint --per-request-spec-decode-metrics
--custom-histogram-buckets --jit-monitor-mode --scheduling-policy --scheduler-cls --ir-op-priority --moe-backend
--linear-backend --sparse-indexer-topk-backend --speculative-config|-sc --spec-method --spec-model
--watermark-config --diffusion-config|-dc --kv-transfer-config --kv-events-config --ec-transfer-config
--ec-manager-config --compilation-config|-cc --attention-config|-ac --engram-config --reasoning-config
--kernel-config --additional-config --structured-outputs-config --aux-output-config --profiler-config
--watchdog-config --optimization-level --performance-mode --weight-transfer-config --gdn-prefill-backend
--kda-prefill-backend --kda-decode-backend --model
""",
    "int": """
--max-log-len --sse-keep-alive-interval --port --grpc-port --data-parallel-supervisor-port
--dp-supervisor-probe-failure-threshold --ssl-cert-reqs --h11-max-incomplete-event-size --h11-max-header-count
--api-server-count|-asc --seed --max-model-len --max-logprobs --renderer-num-workers
--safetensors-prefetch-num-threads --safetensors-prefetch-block-size --mamba-cache-philox-rounds
--pipeline-parallel-size|-pp --master-port --nnodes|-n --node-rank|-r --distributed-timeout-seconds
--cpu-distributed-timeout-seconds --tensor-parallel-size|-tp --decode-context-parallel-size|-dcp
--dcp-kv-cache-interleave-size --cp-kv-cache-interleave-size --prefill-context-parallel-size|-pcp
--data-parallel-size|-dp --data-parallel-rank|-dpn --data-parallel-start-rank|-dpr --data-parallel-size-local|-dpl
--data-parallel-rpc-port|-dpp --ubatch-size --elastic-ep-max-dp-size --dbo-decode-token-threshold
--dp-sync-interval --dbo-prefill-token-threshold --max-parallel-loading-workers --block-size
--kv-cache-memory-bytes --num-gpu-blocks-override --prefix-cache-retention-interval --mamba-block-size
--prefix-match-unit --replayssm-buffer-len --offload-group-size --offload-num-in-group --offload-prefetch-step
--mm-shm-cache-max-object-size-mb --max-loras --max-cpu-loras --max-lora-cls-labels --max-num-batched-tokens
--max-num-scheduled-tokens --max-num-seqs --max-num-active-seqs --max-num-queued-reqs --max-num-queued-tokens
--long-prefill-token-threshold --prefill-schedule-interval --stream-interval --max-cudagraph-capture-size
--spec-tokens --shutdown-timeout
""",
    "float": """
--dp-supervisor-probe-interval-s --dp-supervisor-probe-timeout-s
--gpu-memory-utilization|--device-memory-utilization --kv-offloading-size --cpu-offload-gb --mm-processor-cache-gb
--mm-encoder-fp8-scale-save-margin --video-pruning-rate --mm-ipc-gpu-memory-gb --kv-cache-metrics-sample
--watermark
""",
    "list": """
--lora-modules --api-key --allowed-media-domains --served-model-name --sleep-preserve-parameter-names
--logits-processors --ignore-patterns --numa-bind-nodes --numa-bind-cpus --kv-cache-dtype-skip-layers
--cpu-offload-params --offload-params --lora-target-modules --collect-detailed-traces --cudagraph-capture-sizes
""",
    "optional": """
--hf-token
""",
    "flag": """
--headless --grpc --data-parallel-multi-port-external-lb|-dpm --disable-log-stats --aggregate-engine-logging
""",
    "bool": """
--trust-request-chat-template --trust-request-mm-kwargs --return-tokens-as-token-ids --enable-auto-tool-choice
--exclude-tools-when-tool-choice-none --enable-prompt-tokens-details --enable-per-request-metrics
--enable-server-load-tracking --enable-force-include-usage --enable-tokenizer-info-endpoint --enable-log-outputs
--enable-log-deltas --cohere-is-reasoning-model --log-error-stack --tokens-only --enable-scale-out
--disable-uvicorn-access-log --allow-credentials --enable-ssl-refresh --enable-request-id-headers
--disable-fastapi-docs --enable-offline-docs --enable-flash-late-interaction --trust-remote-code
--allow-deprecated-quantization --enforce-eager --enable-return-routed-experts --return-sampling-mask
--use-fp64-gumbel --enable-trace-replay --disable-sliding-window --disable-cascade-attn --skip-tokenizer-init
--enable-prompt-embeds --enable-sleep-mode --sleep-mode-offload-cudagraph --enable-cumem-allocator
--enable-nccl-comm-suspend --use-tqdm-on-load --enable-mamba-cache-stochastic-rounding --numa-bind
--dcp-q-replicate --data-parallel-hybrid-lb|-dph --data-parallel-external-lb|-dpe --enable-hc-sp
--enable-expert-parallel|-ep --enable-batch-sharded-sampling --enable-ep-weight-filter --enable-dbo
--enable-shm-tensor-arena --enable-elastic-ep --disable-nccl-for-dp-synchronization --enable-eplb
--ray-workers-use-nsight --disable-custom-all-reduce --enable-fault-tolerance --enable-prefix-caching
--kv-sharing-fast-prefill --swa-bounded-replay --enable-mamba-shared-prefix-checkpoint --use-replayssm
--language-model-only --enable-mm-embeds --mm-encoder-only --interleave-mm-strings --skip-mm-profiling
--mm-device-do-normalize --enable-lora --enable-tower-connector-lora --fully-sharded-loras
--specialize-active-lora --enable-mixed-moe-lora-format --enable-moe-shared-loras --kv-cache-metrics
--cudagraph-metrics --enable-layerwise-nvtx-tracing --enable-mfu-metrics --enable-logging-iteration-details
--jit-monitor-verbose --long-prefill-token-threshold-adaptive --enable-chunked-prefill --disable-chunked-mm-input
--scheduler-reserve-full-isl --disable-hybrid-kv-cache-manager --async-scheduling --enable-flashinfer-autotune
--monokernel --fail-on-environ-validation --enable-log-requests
""",
}
# Options whose values argparse restricts (Literal-typed config fields, explicit `choices`).
SERVE_CHOICES = {
    "--chat-template-content-format": "auto openai string",
    "--tool-strict-level": "auto function parameter",
    "--anthropic-disabled-thinking-effort": "auto high low max medium none xhigh",
    "--fingerprint-mode": "custom full hash none",
    "--uvicorn-log-level": "critical debug error info trace warning",
    "--runner": "auto draft generate pooling",
    "--convert": "auto classify embed none",
    "--dtype": "auto bfloat16 float float16 float32 half",
    "--logprobs-mode": "processed_logits processed_logprobs raw_logits raw_logprobs",
    "--safetensors-load-strategy": "eager lazy prefetch torchao",
    "--mamba-ssu-algorithm": "auto horizontal simple vertical",
    "--dcp-comm-backend": "a2a ag_rs",
    "--all2all-backend": (
        "allgather_reducescatter deepep_high_throughput deepep_low_latency deepep_v2 flashinfer_all2allv "
        "flashinfer_nvlink_one_sided flashinfer_nvlink_two_sided moonep mori_high_throughput mori_low_latency "
        "naive nixl_ep pplx"
    ),
    "--expert-placement-strategy": "linear round_robin",
    "--prefix-caching-hash-algo": "sha256 sha256_cbor xxhash xxhash_cbor",
    "--mamba-cache-dtype": "auto bfloat16 float16 float32",
    "--mamba-ssm-cache-dtype": "auto bfloat16 float16 float32",
    "--mamba-cache-mode": "align none",
    "--kv-offloading-backend": "lmcache native",
    "--offload-backend": "auto prefetch uva",
    "--mm-processor-cache-type": "lru shm",
    "--mm-hasher-algorithm": "blake3 sha256 sha512",
    "--mm-encoder-tp-mode": "data weights",
    "--mm-encoder-attn-dtype": "fp8",
    "--video-pruning-method": "evs vidcom2",
    "--mm-tensor-ipc": "direct_rpc torch_shm",
    "--lora-dtype": "auto bfloat16 float16",
    "--per-request-spec-decode-metrics": "detailed none summary",
    "--jit-monitor-mode": "error warn",
    "--scheduling-policy": "fcfs priority",
    "--spec-method": (
        "bailing_hybrid_mtp bailing_hybrid_v3_mtp custom_class deepseek_mtp dflash dots3_note_mtp draft_model "
        "dspark eagle eagle3 ernie_mtp exaone4_5_mtp exaone_moe_mtp extract_hidden_states gemma4_mtp "
        "glm4_moe_lite_mtp glm4_moe_mtp glm5_next_mtp glm_ocr_mtp hy_v3_mtp hy_v4_mtp inkling_mtp kimi_k3_mtp "
        "longcat_flash_mtp mimo_mtp mimo_v2_mtp minimax_m3_mtp mtp nemotron_h_mtp ngram ngram_gpu "
        "pangu_ultra_moe_mtp qwen3_5_mtp qwen3_next_mtp qwen4_exp_mtp step3p5_mtp step5_mtp suffix"
    ),
    "--performance-mode": "balanced interactivity throughput",
    "--gdn-prefill-backend": "flashinfer triton cutedsl aiter_flydsl sycl",
    "--kda-prefill-backend": "auto triton flashkda flashinfer fused",
    "--kda-decode-backend": "auto native flashinfer triton",
}
TOOL_PARSERS = """
apertus beam cohere_command3 cohere_command4 deepseek_v3 deepseek_v31 deepseek_v32 deepseek_v4 deepseek_v41
dots ernie45 functiongemma gemma4 gigachat3 glm45 glm47 granite granite-20b-fc granite4 hermes hf hunyuan_a13b
hy_v3 hy_v4 inkling internlm jamba k2_horizon kimi_k2 kimi_k3 lfm2 ling3 llama3_json llama4_json
llama4_pythonic longcat mimo minicpm5 minimax_m2 minimax_m3 mistral muse muse_glimmer musespark1x olmo3 openai
phi4_mini_json plamo3 poolside_v1 pythonic qwen3_coder qwen3_json qwen3_xml seed_oss step3 step3p5 step5 xlam
""".split()
REASONING_PARSERS = """
beam cohere_command3 cohere_command4 deepseek_r1 deepseek_v3 deepseek_v4 deepseek_v41 ernie45 gemma4 glm45
glm47 granite granite_thinking_parser hf holo2 hunyuan_a13b hy_v3 hy_v4 inkling k2_horizon kimi_k2 kimi_k3
ling3 mimo minicpmv minimax_m2 minimax_m2_append_think minimax_m3 mistral muse muse_glimmer musespark1x
nemotron_v3 olmo3 openai_gptoss plamo3 poolside_v1 qwen3 seed_oss step3 step3p5 step5
""".split()

SUBCOMMANDS = ("chat", "complete", "serve", "launch", "bench", "collect-env", "download-kernels", "preload",
               "run-batch", "snapshot")
SERVE_DESCRIPTION = """Launch a local OpenAI-compatible API server to serve LLM
completions via HTTP. Defaults to Qwen/Qwen3-0.6B if no model is specified.

Search by using: `--help=<ConfigGroup>` to explore options by section (e.g.,
--help=ModelConfig, --help=Frontend)
  Use `--help=all` to show all available flags at once.
"""
# Options typed with vLLM's human-readable integer parsers (engine/arg_utils.py _compute_kwargs).
HUMAN_READABLE_INT_OPTIONS = ("--max-num-batched-tokens", "--max-num-scheduled-tokens", "--kv-cache-memory-bytes",
                              "--safetensors-prefetch-block-size", "--max-num-queued-tokens")
JSON_CONFIG_OPTIONS = {"--kv-transfer-config": "KVTransferConfig", "--compilation-config": "CompilationConfig",
                       "--attention-config": "AttentionConfig", "--kv-events-config": "KVEventsConfig"}


def human_readable_int(value: str) -> int:
    """'1k' -> 1000, '1K' -> 1024, '25.6k' -> 25600 (utils/argparse_utils.py)."""
    value = value.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgGtT])", value)
    if match:
        number, suffix = match.groups()
        if suffix in "kmgt":
            return int(float(number) * 10 ** (3 * ("kmgt".index(suffix) + 1)))
        if "." in number:
            raise argparse.ArgumentTypeError(
                f"Decimals are not allowed with binary suffixes like {suffix}. "
                f"Did you mean to use {number}{suffix.lower()} instead?")
        return int(number) * 2 ** (10 * ("KMGT".index(suffix) + 1))
    return int(value)


def human_readable_int_or_auto(value: str) -> int:
    value = value.strip()
    if value == "-1" or value.lower() == "auto":
        return -1
    return human_readable_int(value)


def dataclass_parser(config_name: str):
    """JSON config options are pydantic dataclasses parsed from JSON; argparse shows pydantic's error."""
    def parse_dataclass(value: str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise argparse.ArgumentTypeError(
                f"1 validation error for {config_name}\n"
                f"  Invalid JSON: {error.msg.lower()} at line {error.lineno} column {error.colno} "
                f"[type=json_invalid, input_value={value!r}, input_type=str]") from None
    return parse_dataclass


class EnableDisableAction(argparse.Action):
    """argparse.BooleanOptionalAction as vLLM registers it: `--x`/`--no-x`, and `--enable-x` paired with
    `--disable-x` (utils/argparse_utils.py EnableDisableAction)."""

    def __init__(self, option_strings, dest, default=None, **kwargs):
        negative = {"--no-" + opt[2:] for opt in option_strings if opt.startswith("--")}
        for opt in option_strings:
            for prefix, inverse in (("--enable-", "--disable-"), ("--disable-", "--enable-")):
                if opt.startswith(prefix):
                    negative.add(inverse + opt[len(prefix):])
        self.negative_option_strings = negative
        super().__init__([*option_strings, *sorted(negative)], dest, nargs=0, default=default, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, option_string not in self.negative_option_strings)


def _serve_parser(subparsers) -> argparse.ArgumentParser:
    serve = subparsers.add_parser(
        "serve", help="Launch a local OpenAI-compatible API server to serve LLM completions via HTTP.",
        description=SERVE_DESCRIPTION, usage="vllm serve [model_tag] [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("model_tag", type=str, nargs="?",
                       help="The model tag to serve (optional if specified in config)")
    choices = {name: text.split() for name, text in SERVE_CHOICES.items()}
    for kind, text in SERVE_OPTIONS.items():
        for group in text.split():
            names = group.split("|")
            dest = names[0].lstrip("-").replace("-", "_")
            kwargs: dict = {"dest": dest, "default": None}
            if kind == "flag":
                kwargs.update(action="store_true", default=False)
            elif kind == "bool":
                kwargs["action"] = EnableDisableAction
            elif kind == "list":
                kwargs["nargs"] = "+"
            elif kind == "optional":
                kwargs.update(nargs="?", const=True)
            elif names[0] == "--max-model-len":
                kwargs["type"] = human_readable_int_or_auto
            elif names[0] in HUMAN_READABLE_INT_OPTIONS:
                kwargs["type"] = human_readable_int
            elif kind in ("int", "float"):
                kwargs["type"] = int if kind == "int" else float
            elif names[0] in JSON_CONFIG_OPTIONS:
                kwargs["type"] = dataclass_parser(JSON_CONFIG_OPTIONS[names[0]])
            elif names[0] in ("--default-chat-template-kwargs", "--reasoning-effort-map"):
                kwargs["type"] = json.loads  # cli_args.py BaseFrontendArgs._customize_cli_kwargs
            if names[0] in choices:
                kwargs["choices"] = choices[names[0]]
            serve.add_argument(*names, **kwargs)
    return serve


class CliParser(argparse.ArgumentParser):
    """The top-level `vllm` parser; it reports arguments the subcommand did not recognise."""

    def error(self, message: str):
        if message.startswith("unrecognized arguments:") and re.search(r"(^|\s)--task(=|\s|$)", message):
            message += ("\n\nHint: --task is not a vllm serve option. For embedding, reranking, or reward models, "
                        "use --runner pooling. To adapt a generative model for pooling, also use --convert embed, "
                        "--convert classify, or --convert reward.")
        super().error(message)


def build_cli_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="vllm", description="vLLM CLI")
    parser.add_argument("-v", "--version", action="version",
                        version=os.environ.get("VLLM_STANDIN_VERSION", DEFAULT_VERSION))
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    for name in SUBCOMMANDS:
        if name == "serve":
            _serve_parser(subparsers)
        else:
            subparsers.add_parser(name)
    return parser


def flexible_argv(argv: list[str], log: VllmLog) -> list[str]:
    """FlexibleArgumentParser.parse_args before argparse: `--model X` becomes the positional model, `_` in option
    names becomes `-`, `-O3` becomes `--optimization-level 3`, and `--a.b v` becomes `--a '{"b": v}'`."""
    main = Proc("MainProcess", os.getpid())
    if argv[:1] == ["serve"]:
        index = next((i for i, arg in enumerate(argv) if re.match(r"^--model(=.+|$)", arg)), None)
        if index is not None:
            log.warning(main, "argparse_utils.py:330",
                        "With `vllm serve`, you should provide the model as a positional argument or in a config "
                        "file instead of via the `--model` option. The `--model` option will be removed in a "
                        "future version.")
            if argv[index] == "--model":
                tag, rest = (argv[index + 1] if index + 1 < len(argv) else ""), index + 2
            else:
                tag, rest = argv[index].removeprefix("--model="), index + 1
            argv = ["serve", tag, *argv[1:index], *argv[rest:]]
        if (len(argv) > 1 and argv[1].startswith("-")
                and not any(re.match(r"^--config(=.+|$)", arg) for arg in argv)
                and any(re.match(r"^--served[-_]model[-_]name(=.+|$)", arg) for arg in argv)):
            raise ValueError("`model` should be provided as the first positional argument when using "
                             "`vllm serve`. i.e. `vllm serve <model> --<arg> <value>`.")
    processed: list[str] = []
    for i, arg in enumerate(argv):
        if arg.startswith("--") and not arg.startswith("--help="):
            key, sep, value = arg.partition("=")
            head, dot, tail = key.partition(".")
            processed.append(head.replace("_", "-") + dot + tail + sep + value)
        elif arg.startswith("-O") and arg != "-O":
            processed += ["--optimization-level", arg[3:] if arg[2:3] == "=" else arg[2:]]
        elif arg == "-O" and i + 1 < len(argv) and argv[i + 1] in {"0", "1", "2", "3"}:
            processed.append("--optimization-level")
        else:
            processed.append(arg)
    merged: dict[str, dict] = {}
    result: list[str] = []
    skip = False
    for i, arg in enumerate(processed):
        if skip:
            skip = False
            continue
        if arg.startswith("-") and "." in arg.split("=", 1)[0]:
            name, sep, value = arg.partition("=")
            if not sep:
                value, skip = (processed[i + 1] if i + 1 < len(processed) else ""), True
            key, *keys = name.rstrip("+").split(".")
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = value
            if name.endswith("+"):
                parsed = value.split(",")
            node = merged.setdefault(key, {})
            for part in keys[:-1]:
                node = node.setdefault(part, {})
            node[keys[-1]] = parsed
            continue
        result.append(arg)
    for key, value in merged.items():
        result += [key, json.dumps(value)]
    return result


def parse_serve_command(argv: list[str], log: VllmLog) -> argparse.Namespace:
    """Parse like `vllm <argv>`; argparse prints usage and exits 2 on bad input, as vLLM does."""
    parser = build_cli_parser()
    if "--config" in argv:
        # vLLM reads a YAML file here; the stand-in has no YAML parser.
        parser.error("--config: configuration files are not simulated by the vLLM stand-in")
    args = parser.parse_args(flexible_argv(argv, log))
    if args.subparser != "serve":
        if args.subparser is None:
            parser.print_help()
            raise SystemExit(0)
        sys.stderr.write(f"vllm {args.subparser}: not simulated by the vLLM stand-in (only `vllm serve` is)\n")
        raise SystemExit(2)
    defaults = vars(parser.parse_args(["serve"]))
    args.non_default = {key: value for key, value in vars(args).items() if defaults.get(key) != value}
    args.model = args.model_tag or args.model or DEFAULT_MODEL
    return args


# ----------------------------------------------------------------------------------------------------------------
# What the container sees: GPU device nodes, the KFD topology, the Hugging Face cache, the kernel caches.
# ----------------------------------------------------------------------------------------------------------------

GFX_BY_TARGET_VERSION = {90402: "gfx942", 90500: "gfx950", 90010: "gfx90a"}


@dataclass
class Gpus:
    count: int
    arch: str
    memory_gib: float


def discover_gpus() -> Gpus:
    """What amdsmi/torch would count: /dev/kfd plus one /dev/dri/renderD* per GPU (SIM_DEV_ROOT), narrowed by
    HIP/ROCR/CUDA_VISIBLE_DEVICES. Architecture and memory come from the KFD topology under SIM_SYSFS_ROOT when it
    is there (a real host, or the simulated node's bind-mounted /sys/class/kfd), else SIM_GPU_ARCH and
    SIM_GPU_MEMORY_GIB."""
    dev_root = os.environ.get("SIM_DEV_ROOT", "/dev")
    renders = glob.glob(os.path.join(dev_root, "dri", "renderD*"))
    count = len(renders) if os.path.exists(os.path.join(dev_root, "kfd")) else 0
    for variable in ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        visible = os.environ.get(variable)
        if visible is not None:
            count = min(count, len([item for item in visible.split(",") if item.strip()]))
    arch = os.environ.get("SIM_GPU_ARCH", "gfx942")
    memory = env_float("SIM_GPU_MEMORY_GIB", 192.0)
    topology = os.path.join(os.environ.get("SIM_SYSFS_ROOT", "/sys"), "class", "kfd", "kfd", "topology", "nodes")
    for node in sorted(glob.glob(os.path.join(topology, "*")), key=lambda path: int(os.path.basename(path))):
        properties = read_properties(os.path.join(node, "properties"))
        if properties.get("simd_count", 0) > 0:
            arch = GFX_BY_TARGET_VERSION.get(properties.get("gfx_target_version", 0), arch)
            bank = read_properties(os.path.join(node, "mem_banks", "0", "properties"))
            if bank.get("size_in_bytes"):
                memory = bank["size_in_bytes"] / 2**30
            break
    return Gpus(count=count, arch=arch, memory_gib=memory)


def read_properties(path: str) -> dict[str, int]:
    try:
        with open(path, encoding="ascii") as handle:
            pairs = (line.split() for line in handle)
            return {pair[0]: int(pair[1]) for pair in pairs if len(pair) == 2 and pair[1].lstrip("-").isdigit()}
    except OSError:
        return {}


def hf_hub_cache() -> str:
    """huggingface_hub/constants.py: HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


class ConfigNotCached(Exception):
    """transformers' OSError when config.json is neither cached nor downloadable (utils/hub.py cached_files)."""


def resolve_snapshot(model: str, revision: str | None) -> str:
    """The directory vLLM loads from: a local path, or the cached snapshot of `revision` (a commit, or a branch
    or tag resolved through refs/), as huggingface_hub does with HF_HUB_OFFLINE=1. The stand-in never downloads:
    a file missing from the cache fails as it does offline (or with the hub unreachable)."""
    if os.path.isdir(model):
        if not os.path.isfile(os.path.join(model, "config.json")):
            raise ConfigNotCached()
        return model
    repo = os.path.join(hf_hub_cache(), "models--" + model.replace("/", "--"))
    revision = revision or "main"
    commit = revision if re.fullmatch(r"[0-9a-f]{40}", revision) else None
    if commit is None:
        try:
            with open(os.path.join(repo, "refs", revision), encoding="ascii") as handle:
                commit = handle.read().strip()
        except OSError:
            raise ConfigNotCached() from None
    snapshot = os.path.join(repo, "snapshots", commit)
    if not os.path.isfile(os.path.join(snapshot, "config.json")):
        raise ConfigNotCached()
    return snapshot


class ShardError(Exception):
    """What safetensors raises when it opens a shard (safetensors_rust.SafetensorError, or the OSError)."""

    def __init__(self, exception_line: str) -> None:
        super().__init__(exception_line)
        self.exception_line = exception_line


MAX_SAFETENSORS_HEADER = 100_000_000


def check_safetensors(path: str) -> None:
    """Read a shard's header as safetensors' read_metadata does and raise its error for a damaged file: too
    short, a header length past the end, bad JSON, or tensors that do not cover the file exactly (truncated)."""
    def fail(reason: str) -> ShardError:
        return ShardError(f"safetensors_rust.SafetensorError: Error while deserializing header: {reason}")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise fail("header too small")
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_SAFETENSORS_HEADER:
                raise fail("header too large")
            if 8 + length > size:
                raise fail("invalid header length")
            raw = handle.read(length)
    except FileNotFoundError:
        raise ShardError("FileNotFoundError: No such file or directory (os error 2)") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise fail(f"invalid UTF-8 in header: {error.reason}") from None
    except json.JSONDecodeError as error:
        raise fail(f"invalid JSON in header: {error.msg.lower()} at line {error.lineno} column {error.colno}") \
            from None
    if not isinstance(header, dict):
        raise fail("invalid JSON in header: invalid type: expected a map at line 1 column 1")
    try:
        ends = [int(info["data_offsets"][1]) for name, info in header.items() if name != "__metadata__"]
    except (KeyError, IndexError, TypeError, ValueError):
        raise fail("invalid shape, data type, or offset for tensor") from None
    if max(ends, default=0) + 8 + length != size:
        raise fail("incomplete metadata, file not fully covered")


@dataclass
class Weights:
    """The checkpoint as vLLM's DefaultModelLoader finds it: *.safetensors in the snapshot, filtered by the index
    when there is one (model_loader/default_loader.py _prepare_weights)."""
    files: list[str]
    expected: int
    index_found: bool


def find_weights(snapshot: str) -> Weights:
    files = sorted(glob.glob(os.path.join(snapshot, "*.safetensors")))
    expected = len(files)
    index_path = os.path.join(snapshot, "model.safetensors.index.json")
    index_found = os.path.isfile(index_path)
    if index_found:
        try:
            with open(index_path, encoding="utf-8") as handle:
                wanted = set(json.load(handle).get("weight_map", {}).values())
        except (OSError, ValueError):
            wanted = set()
        if wanted:
            files = [path for path in files if os.path.basename(path) in wanted]
            expected = len(wanted)
    return Weights(files=files, expected=expected, index_found=index_found)


def cache_key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:10]


@dataclass
class KernelCache:
    """A cache directory a cold start fills and a warm start reuses; `marker` is the file the stand-in writes
    where the real cache keeps its artefacts."""
    directory: str
    marker: str

    @property
    def warm(self) -> bool:
        return os.path.isfile(os.path.join(self.directory, self.marker))

    def fill(self, content: dict) -> str | None:
        try:
            path = os.path.join(self.directory, self.marker)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(content, handle)
            return None
        except OSError as error:
            return str(error)


def triton_cache_dir() -> str:
    """Triton's kernel cache: TRITON_CACHE_DIR, else $TRITON_HOME/.triton/cache (TRITON_HOME: the home directory).
    AITER's FP8 BMM kernels are Triton kernels, compiled into it by the pre-compile step
    (model_executor/layers/attention/mla_attention.py)."""
    home = os.environ.get("TRITON_HOME") or os.path.expanduser("~")
    return os.environ.get("TRITON_CACHE_DIR") or os.path.join(home, ".triton", "cache")


def vllm_cache_root() -> str:
    """envs.py VLLM_CACHE_ROOT (default ~/.cache/vllm); torch.compile artefacts go to torch_compile_cache/."""
    return os.path.expanduser(os.environ.get("VLLM_CACHE_ROOT", "~/.cache/vllm"))


# ----------------------------------------------------------------------------------------------------------------
# The "model": deterministic replies shaped like DeepSeek V3.2's output, split into tokens. A token is a word with
# its leading space, a digit group or a punctuation mark; prompts are counted at ~4 characters per token.
# ----------------------------------------------------------------------------------------------------------------

TOKEN_RE = re.compile(r"\s*[^\W\d_]+|\s*\d{1,3}|\s*[^\w\s]|\s*_|\s+")
THINK_END = "</think>"
DSML = "｜DSML｜"
STOPWORDS = set("""a an and are as at be by can could do does for from get give how i in is it me my of on or please
should tell the this to up use what when where which who why will with would you your current now today""".split())
FILLER_WORDS = """model system answer result value approach method step detail example context reason process data
question point case time way part number idea form level term area fact rate change result structure pattern
simple clear useful common careful direct quick general specific main first next final small large important
explain describe consider compare check note follow show depend include provide apply improve measure""".split()
FILLER_TEMPLATES = (
    "The {0} depends on the {1} and the {2}.",
    "A {3} {0} usually makes the {1} easier to {4}.",
    "In this case, the {0} is {3} and the {1} is {5}.",
    "It helps to {4} the {0} before looking at the {1}.",
    "Each {0} has a {3} {1}, so the {2} stays {5}.",
    "We can {4} the {0} with a {3} {1}.",
)
GIBBERISH = [" ilio", "ANA", ",,", " stit", "Ġ", "tok", "]]", " quer", "Prox", " wm", "ela", "的", "ss", "??", " norm",
             "uxt", " alg", "->", "ynam", " ket", "obe"]  # what a model without (all) its weights emits


def split_tokens(text: str) -> list[str]:
    return TOKEN_RE.findall(text)


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


def message_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def content_words(text: str) -> list[str]:
    return [word for word in re.findall(r"[a-z][a-z0-9]+", text.lower()) if word not in STOPWORDS]


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}".rstrip("0").rstrip(".")


def _sentence_pool(size: int = 256) -> list[tuple[str, int]]:
    rng = random.Random(20251)
    pool = []
    for _ in range(size):
        text = rng.choice(FILLER_TEMPLATES).format(*(rng.choice(FILLER_WORDS) for _ in range(6)))
        pool.append((text, len(split_tokens(" " + text))))
    return pool


SENTENCES = _sentence_pool()


class Filler:
    """Deterministic sentences for answers of any length (drawn from a fixed pool: cheap per request)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def sentence(self) -> str:
        return SENTENCES[self.rng.randrange(len(SENTENCES))][0]

    def text(self, tokens: int) -> str:
        parts: list[str] = []
        count = 0
        while count < tokens:
            text, length = SENTENCES[self.rng.randrange(len(SENTENCES))]
            parts.append(text)
            count += length
        return " ".join(parts)


@dataclass
class Reply:
    reasoning: str
    content: str
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments JSON)
    garbled: bool = False


def average_speed_reply(text: str) -> Reply | None:
    legs = re.findall(r"(\d+(?:\.\d+)?)\s*(km|kilometers|kilometres|miles|mi)\s+in\s+(\d+(?:\.\d+)?)\s*(?:hours?|h)\b",
                      text, flags=re.IGNORECASE)
    if not legs or "speed" not in text.lower():
        return None
    unit = "km" if legs[0][1].lower().startswith("k") else "mi"
    distance = sum(float(leg[0]) for leg in legs)
    hours = sum(float(leg[2]) for leg in legs)
    speed = format_number(distance / hours)
    steps_d = " + ".join(f"{format_number(float(leg[0]))} {unit}" for leg in legs)
    steps_t = " + ".join(f"{format_number(float(leg[2]))} h" for leg in legs)
    reasoning = (f"The train covers {len(legs)} legs. Average speed is total distance divided by total time, not the "
                 f"average of the two speeds. Total distance: {steps_d} = {format_number(distance)} {unit}. "
                 f"Total time: {steps_t} = {format_number(hours)} h. So the average speed is "
                 f"{format_number(distance)} / {format_number(hours)} = {speed} {unit}/h.")
    content = (f"**Step 1 – total distance:** {steps_d} = {format_number(distance)} {unit}\n"
               f"**Step 2 – total time:** {steps_t} = {format_number(hours)} h\n"
               f"**Step 3 – average speed:** {format_number(distance)} {unit} ÷ {format_number(hours)} h = "
               f"**{speed} {unit}/h**\n\nThe average speed is **{speed} {unit}/h**.")
    return Reply(reasoning=reasoning, content=content)


def arithmetic_reply(text: str) -> Reply | None:
    match = re.search(r"(-?\d+(?:\.\d+)?)\s*([+\-*/x×÷])\s*(-?\d+(?:\.\d+)?)", text)
    if not match or not re.search(r"\b(what|calculate|compute|how much)\b", text, re.IGNORECASE):
        return None
    left, operator, right = float(match.group(1)), match.group(2), float(match.group(3))
    if operator in "/÷" and right == 0:
        return None
    result = {"+": left + right, "-": left - right, "*": left * right, "x": left * right, "×": left * right,
              "/": left / right if right else 0.0, "÷": left / right if right else 0.0}[operator]
    expression = f"{match.group(1)} {operator} {match.group(3)}"
    return Reply(reasoning=f"Compute {expression}. The result is {format_number(result)}.",
                 content=f"{expression} = **{format_number(result)}**")


def identity_reply(text: str) -> Reply | None:
    if not re.search(r"\b(who are you|what are you|your name|hello|hi|hey)\b", text, re.IGNORECASE):
        return None
    return Reply(reasoning="The user greets me and asks who I am. I should introduce myself briefly.",
                 content="Hello! I'm DeepSeek-V3.2, an AI assistant created by DeepSeek. I can help with questions, "
                         "writing, analysis, math and code. How can I help you today?")


def generic_reply(text: str, seed: int) -> Reply:
    filler = Filler(seed)
    topic = " ".join(content_words(text)[:5]) or "this topic"
    length = filler.rng.randint(60, 220)
    reasoning = (f"The user is asking about {topic}. I should give a clear, well-structured answer. "
                 + filler.text(filler.rng.randint(25, 60)))
    content = f"Here is an overview of {topic}. " + filler.text(length)
    return Reply(reasoning=reasoning, content=content)


def tool_words(tool: dict) -> set[str]:
    function = tool.get("function") or {}
    name = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(function.get("name", ""))).replace("_", " ").replace("-", " ")
    return set(content_words(f"{name} {function.get('description', '')}")) - {"get", "set", "fetch", "function"}


def extract_place(text: str) -> str | None:
    match = re.search(r"\b(?:in|for|at|near|to|from|of)\s+((?:[A-Z][\w'.-]*)(?:\s+[A-Z][\w'.-]*)*)", text)
    if match:
        return match.group(1).rstrip(".")
    match = re.search(r"\b(?:in|for|at|near)\s+([a-z][a-z]+(?:\s+[a-z][a-z]+)?)\s*[?.!]?$", text.strip())
    return match.group(1).title() if match else None


def derive_arguments(tool: dict, text: str) -> dict:
    """Arguments the way a model fills them: from the request text, by each parameter's name, type and enum."""
    parameters = (tool.get("function") or {}).get("parameters") or {}
    properties = parameters.get("properties") or {}
    required = set(parameters.get("required") or [])
    numbers = re.findall(r"-?\d+(?:\.\d+)?", text)
    arguments: dict = {}
    for name, schema in properties.items():
        schema = schema if isinstance(schema, dict) else {}
        kind, lowered = schema.get("type", "string"), name.lower()
        value: object = None
        if schema.get("enum"):
            value = next((item for item in schema["enum"] if str(item).lower() in text.lower()),
                         schema["enum"][0] if name in required else None)
        elif kind in ("integer", "number"):
            if numbers:
                value = int(float(numbers[0])) if kind == "integer" else float(numbers[0])
            elif name in required:
                value = 1
        elif kind == "boolean":
            value = True if name in required else None
        elif kind == "string":
            if any(key in lowered for key in ("location", "city", "place", "address", "country", "destination",
                                              "origin", "region", "where")):
                value = extract_place(text) or (text.strip() if name in required else None)
            elif "unit" in lowered:
                value = next((unit for unit in ("celsius", "fahrenheit") if unit in text.lower()), None)
            elif "date" in lowered:
                found = re.search(r"\d{4}-\d{2}-\d{2}", text)
                value = found.group(0) if found else ("today" if name in required else None)
            elif name in required:
                value = text.strip()
        elif name in required:
            value = [] if kind == "array" else {}
        if value is not None:
            arguments[name] = value
    return arguments


def choose_tool(tools: list[dict], tool_choice, text: str) -> dict | None:
    if isinstance(tool_choice, dict):
        wanted = (tool_choice.get("function") or {}).get("name")
        return next((tool for tool in tools if (tool.get("function") or {}).get("name") == wanted), None)
    words = set(content_words(text))
    scored = [(len(words & tool_words(tool)), index) for index, tool in enumerate(tools)]
    best, index = max(scored, default=(0, -1))
    if best > 0 or (tool_choice == "required" and tools):
        return tools[index if best > 0 else 0]
    return None


def compose_reply(messages: list[dict], tools: list[dict] | None, tool_choice, use_tools: bool, garbled: bool,
                  seed: int) -> Reply:
    user_text = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"),
                     message_text(messages[-1]) if messages else "")
    if garbled:
        return Reply(reasoning="", content="", garbled=True)
    if use_tools and tools:
        tool = choose_tool(tools, tool_choice, user_text)
        if tool is not None:
            name = str((tool.get("function") or {}).get("name", ""))
            arguments = derive_arguments(tool, user_text)
            reasoning = (f"The user's request can be answered with the {name} tool. I will call it with "
                         + ", ".join(f"{key}={value}" for key, value in arguments.items()) + ".")
            return Reply(reasoning=reasoning, content="",
                         tool_calls=[(name, json.dumps(arguments, ensure_ascii=False))])
    for handler in (average_speed_reply, arithmetic_reply, identity_reply):
        reply = handler(user_text)
        if reply is not None:
            return reply
    return generic_reply(user_text, seed)


def dsml_markup(name: str, arguments_json: str) -> str:
    """DeepSeek V3.2's tool-call output (parser/deepseek_v32.py)."""
    params = []
    for key, value in json.loads(arguments_json).items():
        is_string = isinstance(value, str)
        text = value if is_string else json.dumps(value, ensure_ascii=False)
        params.append(f'<{DSML}parameter name="{key}" string="{"true" if is_string else "false"}">{text}'
                      f"</{DSML}parameter>")
    return (f"<{DSML}function_calls>\n<{DSML}invoke name=\"{name}\">\n" + "\n".join(params)
            + f"\n</{DSML}invoke>\n</{DSML}function_calls>")


def streamable_arguments(params: list[tuple[str, object]]) -> str:
    """The arguments JSON vLLM streams once `params` are parsed (ParserEngine._safe_arg_prefix): up to the last
    value, a string value without its closing quote (more text may follow), any other value not yet."""
    if not params:
        return ""
    text, value = json.dumps(dict(params), ensure_ascii=False), params[-1][1]
    return text[:-2] if isinstance(value, str) else text[:-1 - len(json.dumps(value, ensure_ascii=False))]


# Kinds of output tokens, as the reasoning and tool parsers sort them.
REASONING, CONTENT, MARKUP, EOS = "reasoning", "content", "markup", "eos"


@dataclass
class Piece:
    kind: str
    text: str
    tool_start: tuple[int, str] | None = None  # (index, name): the tool parser emits the call's header here
    tool_args: tuple[int, str] | None = None  # (index, JSON text): ... a piece of its arguments here
    tool_end: bool = False  # ... and, with the last piece, the call is complete


class Script:
    """The token sequence a request produces: the reply, then EOS; past EOS (ignore_eos, min_tokens) more text."""

    def __init__(self, reply: Reply, *, thinking: bool, splits_reasoning: bool, seed: int) -> None:
        self.filler = Filler(seed ^ 0x5EED)
        self.garbled = reply.garbled
        self.after_tools = bool(reply.tool_calls)
        self.pieces: list[Piece] = []
        if reply.garbled:
            self.eos_index = None  # a model without its weights does not find EOS
            self.thinking_garbled = thinking and splits_reasoning
            return
        if thinking:
            kind = REASONING if splits_reasoning else CONTENT
            self.pieces += [Piece(kind, token) for token in split_tokens(reply.reasoning)]
            self.pieces.append(Piece(MARKUP if splits_reasoning else CONTENT, THINK_END))
        for index, (name, arguments) in enumerate(reply.tool_calls):
            self._add_tool_call(index, name, arguments)
        if not reply.tool_calls:
            self.pieces += [Piece(CONTENT, token) for token in split_tokens(reply.content)]
        self.eos_index = len(self.pieces)
        self.pieces.append(Piece(EOS, ""))

    def _add_tool_call(self, index: int, name: str, arguments: str) -> None:
        markup = dsml_markup(name, arguments)
        # DSML tags are special tokens of the DeepSeek V3.2 tokenizer; the text between them is ordinary text.
        tokens = [token for part in re.split(r"(</?" + DSML + r"[a-z_]+)", markup) if part
                  for token in ([part] if part.startswith(("<" + DSML, "</" + DSML)) else split_tokens(part))]
        # vLLM 0.33's deepseek_v32 parser (parser/engine/parser_engine.py) sends the header with the first token
        # after the invoke tag, converts the arguments on each token that ends a tag ('>', arg_structural_chars)
        # and streams the part of the JSON that more text cannot change; the rest comes when the invoke closes.
        header_end = markup.index('">') + 2
        params = list(json.loads(arguments).items())
        checkpoints, cursor = [], header_end
        for position, (key, value) in enumerate(params):
            cursor = markup.index('">', markup.index(f'<{DSML}parameter name="{key}"', cursor)) + 2
            opened = params[:position] + ([(key, "")] if isinstance(value, str) else [])
            checkpoints.append((cursor, streamable_arguments(opened)))
            cursor = markup.index(f"</{DSML}parameter>", cursor) + len(f"</{DSML}parameter>")
            checkpoints.append((cursor, streamable_arguments(params[:position + 1])))
        checkpoints.append((markup.index(f"</{DSML}invoke>") + len(f"</{DSML}invoke>"), arguments))
        consumed, announced, streamed = 0, False, ""
        for token in tokens:
            start, consumed = consumed, consumed + len(token)
            piece = Piece(MARKUP, token)
            if start >= header_end and not announced:
                piece.tool_start, announced = (index, name), True
            reached = [text for end, text in checkpoints if end <= consumed]
            if reached and len(reached[-1]) > len(streamed):
                piece.tool_args, streamed = (index, reached[-1][len(streamed):]), reached[-1]
                piece.tool_end = streamed == arguments
            self.pieces.append(piece)

    def piece(self, index: int) -> Piece:
        while index >= len(self.pieces):
            if self.garbled:
                kind = REASONING if self.thinking_garbled else CONTENT
                self.pieces.append(Piece(kind, self.filler.rng.choice(GIBBERISH)))
            else:
                # Text past EOS: after a tool call the parser drops it; otherwise it is more content.
                kind = MARKUP if self.after_tools else CONTENT
                self.pieces += [Piece(kind, token) for token in split_tokens(" " + self.filler.sentence())]
        return self.pieces[index]


# ----------------------------------------------------------------------------------------------------------------
# Prometheus metrics with vLLM's names, labels and buckets (v1/metrics/loggers.py PrometheusStatLogger,
# v1/metrics/buckets.py), in prometheus_client's text format (counters as *_total plus a *_created gauge).
# ----------------------------------------------------------------------------------------------------------------

REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                           240.0, 480.0, 960.0, 1920.0, 7680.0)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
               80.0)
FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")


def go_float(value: float) -> str:
    """prometheus_client's floatToGoString."""
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return text


def one_two_five(limit: int) -> tuple[float, ...]:
    values, exponent = [], 0
    while True:
        for mantissa in (1, 2, 5):
            if mantissa * 10 ** exponent > limit:
                return tuple(float(v) for v in values)
            values.append(mantissa * 10 ** exponent)
        exponent += 1


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1


class Metrics:
    def __init__(self, model_name: str, max_model_len: int) -> None:
        self.labels = {"model_name": model_name, "engine": "0"}
        self.created = time.time()
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success = dict.fromkeys(FINISH_REASONS, 0)
        token_buckets = one_two_five(max_model_len)
        self.histograms = {
            "vllm:time_to_first_token_seconds": ("Histogram of time to first token in seconds.",
                                                 Histogram(TTFT_BUCKETS)),
            "vllm:inter_token_latency_seconds": ("Histogram of inter-token latency in seconds.",
                                                 Histogram(ITL_BUCKETS)),
            "vllm:request_time_per_output_token_seconds": (
                "Histogram of time_per_output_token_seconds per request.", Histogram(ITL_BUCKETS)),
            "vllm:e2e_request_latency_seconds": ("Histogram of e2e request latency in seconds.",
                                                 Histogram(REQUEST_LATENCY_BUCKETS)),
            "vllm:request_queue_time_seconds": ("Histogram of time spent in WAITING phase for request.",
                                                Histogram(REQUEST_LATENCY_BUCKETS)),
            "vllm:request_inference_time_seconds": ("Histogram of time spent in RUNNING phase for request.",
                                                    Histogram(REQUEST_LATENCY_BUCKETS)),
            "vllm:request_prefill_time_seconds": ("Histogram of time spent in PREFILL phase for request.",
                                                  Histogram(REQUEST_LATENCY_BUCKETS)),
            "vllm:request_decode_time_seconds": ("Histogram of time spent in DECODE phase for request.",
                                                 Histogram(REQUEST_LATENCY_BUCKETS)),
            "vllm:request_prompt_tokens": ("Number of prefill tokens processed.", Histogram(token_buckets)),
            "vllm:request_generation_tokens": ("Number of generation tokens processed.", Histogram(token_buckets)),
        }

    def observe(self, name: str, value: float) -> None:
        self.histograms[name][1].observe(value)

    def _labels(self, **extra: str) -> str:
        pairs = sorted({**self.labels, **extra}.items())
        return "{" + ",".join(f'{key}="{value}"' for key, value in pairs) + "}"

    def render(self, running: int, waiting: int, kv_usage: float) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[tuple[str, str, float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{sample}{labels} {go_float(value)}" for sample, labels, value in samples)

        def counter(name: str, help_text: str, values: list[tuple[str, float]]) -> None:
            family(name + "_total", "counter", help_text, [(name + "_total", labels, v) for labels, v in values])
            family(name + "_created", "gauge", help_text,
                   [(name + "_created", labels, self.created) for labels, _ in values])

        plain = self._labels()
        family("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
               [("vllm:num_requests_running", plain, running)])
        family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
               [("vllm:num_requests_waiting", plain, waiting)])
        family("vllm:num_requests_waiting_by_reason", "gauge",
               "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; "
               "'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). Sum of all "
               "reasons equals vllm:num_requests_waiting.",
               [("vllm:num_requests_waiting_by_reason", self._labels(reason="capacity"), waiting),
                ("vllm:num_requests_waiting_by_reason", self._labels(reason="deferred"), 0)])
        family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
               [("vllm:kv_cache_usage_perc", plain, kv_usage)])
        counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", [(plain, 0)])
        counter("vllm:prompt_tokens", "Number of prefill tokens processed.", [(plain, self.prompt_tokens)])
        counter("vllm:generation_tokens", "Number of generation tokens processed.",
                [(plain, self.generation_tokens)])
        counter("vllm:request_success", "Count of successfully processed requests.",
                [(self._labels(finished_reason=reason), count) for reason, count in self.success.items()])
        for name, (help_text, histogram) in self.histograms.items():
            samples, cumulative = [], 0
            for bound, count in zip((*histogram.buckets, math.inf), histogram.counts, strict=True):
                cumulative += count
                samples.append((name + "_bucket", self._labels(le=go_float(bound)), cumulative))
            samples += [(name + "_count", plain, histogram.count), (name + "_sum", plain, histogram.total)]
            family(name, "histogram", help_text, samples)
            family(name + "_created", "gauge", help_text, [(name + "_created", plain, self.created)])
        return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# A request in the engine: its script, how far it got, and what the reasoning and tool parsers made of it.
# ----------------------------------------------------------------------------------------------------------------

_sequence = itertools.count()


class Generation:
    def __init__(self, *, rid: str, prompt_tokens: int, max_tokens: int, script: Script, stop: list[str],
                 ignore_eos: bool, min_tokens: int, include_reasoning: bool, sink) -> None:
        self.rid, self.prompt_tokens, self.max_tokens, self.script = rid, prompt_tokens, max_tokens, script
        self.stop, self.ignore_eos, self.min_tokens = stop, ignore_eos, min_tokens
        self.include_reasoning, self.sink = include_reasoning, sink
        self.seq = next(_sequence)
        self.piece_index = 0
        self.emitted = 0
        self.reasoning: list[str] = []
        self.content: list[str] = []
        self.content_tail = ""
        self.tool_calls: dict[int, dict] = {}
        self.reasoning_tokens = 0
        self.finish_reason: str | None = None
        self.stop_reason: str | None = None
        self.arrival = self.admitted = self.first_token = self.last_token = 0.0
        self.state = "new"  # new, waiting, prefill, decode, finished
        self.due = 0.0

    @property
    def finished(self) -> bool:
        return self.state == "finished"

    def _next_piece(self) -> Piece:
        eos_index = self.script.eos_index
        if eos_index is not None and self.piece_index == eos_index and (
                self.ignore_eos or self.emitted < self.min_tokens):
            self.piece_index += 1  # EOS suppressed: the model keeps generating
        elif (eos_index is not None and self.piece_index > eos_index and not self.ignore_eos
              and self.emitted >= self.min_tokens):
            return Piece(EOS, "")
        piece = self.script.piece(self.piece_index)
        self.piece_index += 1
        return piece

    def advance(self) -> dict | None:
        """Produce one token; return the chat delta it yields (None: nothing to stream for it)."""
        piece = self._next_piece()
        self.emitted += 1
        delta: dict | None = None
        if piece.kind == REASONING:
            self.reasoning.append(piece.text)
            self.reasoning_tokens += 1
            delta = {"reasoning": piece.text} if self.include_reasoning else None
        elif piece.kind == CONTENT:
            delta = self._content(piece.text)
        elif piece.tool_start is not None:
            index, name = piece.tool_start
            call_id = f"chatcmpl-tool-{uuid.uuid4().int & (2**64 - 1):016x}"
            self.tool_calls[index] = {"id": call_id, "name": name, "arguments": "", "complete": False}
            delta = {"tool_calls": [{"id": call_id, "type": "function", "index": index,
                                     "function": {"name": name}}]}
        elif piece.tool_args is not None:
            index, arguments = piece.tool_args
            self.tool_calls[index]["arguments"] += arguments
            self.tool_calls[index]["complete"] = piece.tool_end
            delta = {"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}
        if self.finish_reason is None:
            if piece.kind == EOS:
                self.finish_reason = "stop"
            elif self.emitted >= self.max_tokens:
                self.finish_reason = "length"
        return delta

    def _content(self, text: str) -> dict | None:
        if self.stop:
            window = self.content_tail + text
            hits = [(window.find(s), s) for s in self.stop if s and window.find(s) >= 0]
            if hits:
                position, matched = min(hits)
                visible = max(0, position - len(self.content_tail))
                text = text[:visible] if position >= len(self.content_tail) else ""
                if position < len(self.content_tail):
                    kept = "".join(self.content)[:len("".join(self.content)) - len(self.content_tail) + position]
                    self.content = [kept]
                self.finish_reason, self.stop_reason = "stop", matched
            longest = max(len(s) for s in self.stop)
            self.content_tail = (self.content_tail + text)[-longest:]
        if text:
            self.content.append(text)
        return {"content": text} if text else None

    def content_text(self) -> str:
        return "".join(self.content)

    def reasoning_text(self) -> str:
        return "".join(self.reasoning)


# ----------------------------------------------------------------------------------------------------------------
# The engine. Each running request decodes at min(per-stream rate, capacity / number decoding): a virtual token
# clock V advances at that rate, and a request's k-th decode token is due when V reaches its start + k. Prefill
# (time to first token) is a per-request delay. Events are processed in time order, so token times are exact to
# the timer's wake-up, whatever the load; the scheduler admits at most max_num_seqs requests, the rest wait.
# ----------------------------------------------------------------------------------------------------------------

class Engine:
    def __init__(self, *, stream_rate: float, capacity: float, ttft: float, prefill_rate: float, max_num_seqs: int,
                 kv_tokens: int, metrics: Metrics, tick: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.stream_rate, self.capacity, self.ttft, self.prefill_rate = stream_rate, capacity, ttft, prefill_rate
        self.max_num_seqs, self.kv_tokens, self.metrics, self.tick = max_num_seqs, kv_tokens, metrics, tick
        self.waiting: deque[Generation] = deque()
        self.prefilling: list[tuple[float, int, Generation]] = []
        self.decoding: list[tuple[float, int, Generation]] = []
        self.running = 0
        self.n_decoding = 0
        self.kv_used = 0
        self.v = 0.0
        self.v_time = self.loop.time()
        self.last_run = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.accepting = True
        self.idle = asyncio.Event()
        self.idle.set()

    # -- clock
    def rate(self) -> float:
        return min(self.stream_rate, self.capacity / self.n_decoding) if self.n_decoding else 0.0

    def _advance(self, when: float) -> None:
        if when > self.v_time:
            self.v += self.rate() * (when - self.v_time)
            self.v_time = when

    def _decode_time(self) -> float:
        while self.decoding and self.decoding[0][2].finished:
            heapq.heappop(self.decoding)
        if not self.decoding or not self.n_decoding:
            return math.inf
        return self.v_time + max(0.0, self.decoding[0][0] - self.v) / self.rate()

    def _prefill_time(self) -> float:
        while self.prefilling and self.prefilling[0][2].finished:
            heapq.heappop(self.prefilling)
        return self.prefilling[0][0] if self.prefilling else math.inf

    # -- requests
    def submit(self, generation: Generation) -> None:
        now = self.loop.time()
        generation.arrival = now
        if not self.accepting:  # shutting down: the engine core rejects new requests as aborted
            generation.state = "finished"
            generation.finish_reason = "abort"
            generation.sink.finish(generation, now)
            return
        generation.state = "waiting"
        self.waiting.append(generation)
        self.idle.clear()
        self._process(now)
        self._arm()

    def abort(self, generation: Generation) -> None:
        if generation.finished:
            return
        now = self.loop.time()
        self._process(now)
        if generation.state == "waiting":
            self.waiting.remove(generation)
        generation.finish_reason = "abort"
        self._finish(generation, now)
        self._arm()

    def abort_all(self) -> int:
        victims = [*self.waiting, *(g for _, _, g in self.prefilling), *(g for _, _, g in self.decoding)]
        victims = [g for g in victims if not g.finished]
        for generation in victims:
            self.abort(generation)
        return len(victims)

    @property
    def unfinished(self) -> int:
        return self.running + len(self.waiting)

    def kv_usage(self) -> float:
        return min(1.0, self.kv_used / self.kv_tokens) if self.kv_tokens else 0.0

    def _admit(self, now: float) -> None:
        while self.waiting and self.running < self.max_num_seqs:
            generation = self.waiting.popleft()
            generation.state, generation.admitted = "prefill", now
            self.running += 1
            self.kv_used += generation.prompt_tokens
            delay = self.ttft + (generation.prompt_tokens / self.prefill_rate if self.prefill_rate > 0 else 0.0)
            heapq.heappush(self.prefilling, (now + delay, generation.seq, generation))

    def _first_token(self, generation: Generation, when: float) -> None:
        generation.first_token = generation.last_token = when
        self.metrics.prompt_tokens += generation.prompt_tokens
        self.metrics.observe("vllm:time_to_first_token_seconds", when - generation.arrival)
        self._emit(generation, when)
        if not generation.finished:
            generation.state = "decode"
            self.n_decoding += 1
            generation.due = self.v + 1.0
            heapq.heappush(self.decoding, (generation.due, generation.seq, generation))

    def _decode_token(self, generation: Generation, when: float) -> None:
        self.metrics.observe("vllm:inter_token_latency_seconds", when - generation.last_token)
        generation.last_token = when
        self._emit(generation, when)
        if not generation.finished:
            generation.due += 1.0
            heapq.heappush(self.decoding, (generation.due, generation.seq, generation))

    def _emit(self, generation: Generation, when: float) -> None:
        delta = generation.advance()
        self.metrics.generation_tokens += 1
        self.kv_used += 1
        done = generation.finish_reason is not None
        if not generation.sink.token(generation, delta, when, done) and not done:
            generation.finish_reason, done = "abort", True  # the client went away
        if done:
            self._finish(generation, when)

    def _finish(self, generation: Generation, when: float) -> None:
        if generation.state in ("prefill", "decode"):
            self._advance(when)
            if generation.state == "decode":
                self.n_decoding -= 1
            self.running -= 1
            self.kv_used -= generation.prompt_tokens + generation.emitted
        generation.state = "finished"
        metrics = self.metrics
        metrics.success[generation.finish_reason or "abort"] += 1
        metrics.observe("vllm:e2e_request_latency_seconds", when - generation.arrival)
        if generation.admitted:
            metrics.observe("vllm:request_queue_time_seconds", generation.admitted - generation.arrival)
            metrics.observe("vllm:request_inference_time_seconds", when - generation.admitted)
        if generation.first_token:
            metrics.observe("vllm:request_prefill_time_seconds", generation.first_token - generation.admitted)
            metrics.observe("vllm:request_decode_time_seconds", when - generation.first_token)
            if generation.emitted > 1:
                metrics.observe("vllm:request_time_per_output_token_seconds",
                                (when - generation.first_token) / (generation.emitted - 1))
        metrics.observe("vllm:request_prompt_tokens", generation.prompt_tokens)
        metrics.observe("vllm:request_generation_tokens", generation.emitted)
        generation.sink.finish(generation, when)
        self._admit(when)
        if not self.unfinished:
            self.idle.set()

    # -- the event loop
    def _process(self, now: float) -> None:
        self._admit(now)
        while True:
            prefill_at, decode_at = self._prefill_time(), self._decode_time()
            when = min(prefill_at, decode_at)
            if when > now:
                break
            if prefill_at <= decode_at:
                _, _, generation = heapq.heappop(self.prefilling)
                self._advance(prefill_at)
                self._first_token(generation, prefill_at)
            else:
                _, _, generation = heapq.heappop(self.decoding)
                self._advance(max(decode_at, self.v_time))
                self._decode_token(generation, max(decode_at, self.v_time))
        self._advance(now)

    def _run(self) -> None:
        self.timer = None
        now = self.loop.time()
        self.last_run = now
        self._process(now)
        self._arm()

    def _arm(self) -> None:
        # Decode events are batched to one wake-up per tick; prefill completions wake the loop on time.
        when = min(self._prefill_time(), max(self._decode_time(), self.last_run + self.tick))
        if when == math.inf:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            return
        if self.timer is not None:
            if self.timer.when() <= when:
                return
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._run)


# ----------------------------------------------------------------------------------------------------------------
# HTTP/1.1 as uvicorn serves it: keep-alive (VLLM_HTTP_TIMEOUT_KEEP_ALIVE), chunked streaming, "100 Continue",
# `date`/`server: uvicorn` headers and the access log line on stdout.
# ----------------------------------------------------------------------------------------------------------------

MAX_HEAD_BYTES = 64 * 1024
JSON_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class HttpError(Exception):
    pass


@dataclass
class HttpRequest:
    method: str
    path: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        return "close" not in connection and (self.version == "HTTP/1.1" or "keep-alive" in connection)


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> HttpRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise HttpError("request head too large") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise HttpError("invalid request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    request = HttpRequest(method=parts[0], path=parts[1], version=parts[2], headers=headers, body=b"")
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    length = int(headers.get("content-length", "0") or 0)
    if (chunked or length) and headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        if chunked:
            body = bytearray()
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                body += await reader.readexactly(size)
                await reader.readexactly(2)
            request.body = bytes(body)
        elif length:
            request.body = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ValueError):
        return None
    return request


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"date: {formatdate(usegmt=True)}",
             "server: uvicorn", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, payload) -> Response:
        return cls(status, JSON_DUMPS(payload).encode("utf-8"), "application/json")


def error_response(message: str, err_type: str = "BadRequestError", status: int = 400,
                   param: str | None = None) -> Response:
    """vLLM's ErrorResponse (entrypoints/serve/engine/protocol.py, serve/exception_handling/error_response.py)."""
    return Response.json(status, {"error": {"message": message, "type": err_type, "param": param, "code": status}})


def summarize_input(value) -> str:
    """serve/exception_handling/handlers/validation.py _summarize_error_input."""
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "...[truncated]"
    if isinstance(value, (list, tuple, dict)):
        return f"<{type(value).__name__} of {len(value)} items>"
    return str(value)


def validation_error(errors: list[dict | str]) -> Response:
    """FastAPI's RequestValidationError as vLLM's handler words it: "N validation error(s):" then one line per
    error, type "Bad Request", `param` from the first error's location."""
    rendered, param = [], None
    for error in errors[:10]:
        if isinstance(error, dict):
            error = dict(error)
            error["loc"] = ".".join(str(part) for part in error["loc"])
            error["input"] = summarize_input(error["input"])
            param = param or error["loc"]
        rendered.append(f"  {error}")
    label = "error" if len(errors) == 1 else "errors"
    message = f"{len(errors)} validation {label}:\n" + "\n".join(rendered)
    return error_response(message, "Bad Request", 400, param)


# ----------------------------------------------------------------------------------------------------------------
# Request validation in vLLM 0.33's order: pydantic's checks of the body (FastAPI's RequestValidationError, answered
# by handlers/validation.py), then the serving code's VLLMValidationErrors (exceptions.py, handlers/vllm_error.py).
# Pydantic errors carry `loc` as vLLM's handler cleans it: a union's branch names are left out.
# ----------------------------------------------------------------------------------------------------------------

VLLM_MAX_N_SEQUENCES = 16384  # envs.py default
# (field, type, nullable) in the models' field order, which is the order pydantic reports errors in.
CHAT_NUMBERS = (("max_tokens", int, True), ("max_completion_tokens", int, True), ("n", int, True),
                ("temperature", float, True), ("top_p", float, True))
COMPLETION_NUMBERS = (("max_tokens", int, True), ("n", int, False), ("temperature", float, True),
                      ("top_p", float, True))
INTEGER_TEXT = re.compile(r"\s*[+-]?\d+(?:\.0*)?\s*")
FIELD_MESSAGES = {"missing": "Field required", "list_type": "Input should be a valid list",
                  "string_type": "Input should be a valid string"}
SCALE_FAILED_LOG = "api_router.py:80"  # serve/elastic_ep/api_router.py logger.error("Scale failed: %s", e)


def field_error(kind: str, loc: tuple, value) -> dict:
    return {"type": kind, "loc": loc, "msg": FIELD_MESSAGES[kind], "input": value}


def vllm_validation_error(message: str, parameter: str | None = None, value=None) -> Response:
    """A VLLMValidationError as create_error_response answers it: 400 BadRequestError with the parameter as `param`,
    and "(parameter=…, value=…)" appended by the exception's __str__."""
    extras = [f"{name}={item}" for name, item in (("parameter", parameter), ("value", value)) if item is not None]
    return error_response(f"{message} ({', '.join(extras)})" if extras else message, param=parameter)


def lax_int(value, loc: tuple) -> tuple[int | None, dict | None]:
    """Pydantic's lax `int`: bools, integral floats and integer strings convert."""
    if isinstance(value, int):
        return int(value), None
    if isinstance(value, float) and value.is_integer():
        return int(value), None
    if isinstance(value, float) and not math.isfinite(value):
        return None, {"type": "finite_number", "loc": loc, "msg": "Input should be a finite number", "input": value}
    if isinstance(value, float):
        return None, {"type": "int_from_float", "loc": loc,
                      "msg": "Input should be a valid integer, got a number with a fractional part", "input": value}
    if isinstance(value, str) and INTEGER_TEXT.fullmatch(value):
        return int(value.strip().split(".")[0]), None
    if isinstance(value, str):
        return None, {"type": "int_parsing", "loc": loc,
                      "msg": "Input should be a valid integer, unable to parse string as an integer", "input": value}
    return None, {"type": "int_type", "loc": loc, "msg": "Input should be a valid integer", "input": value}


def lax_float(value, loc: tuple) -> tuple[float | None, dict | None]:
    """Pydantic's lax `float`: numbers, bools and numeric strings convert."""
    if isinstance(value, (int, float)):
        return float(value), None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value), None
        return None, {"type": "float_parsing", "loc": loc,
                      "msg": "Input should be a valid number, unable to parse string as a number", "input": value}
    return None, {"type": "float_type", "loc": loc, "msg": "Input should be a valid number", "input": value}


def number_errors(body: dict, fields: tuple) -> list[dict]:
    """Checks the numeric fields and puts the converted values in the body, as the model hands them on."""
    errors = []
    for name, kind, nullable in fields:
        if name not in body or (body[name] is None and nullable):
            continue
        value, error = (lax_int if kind is int else lax_float)(body[name], ("body", name))
        if error is None:
            body[name] = value
        else:
            errors.append(error)
    return errors


def int_list_errors(values: list, loc: tuple) -> list[dict]:
    errors = []
    for index, item in enumerate(values):
        value, error = lax_int(item, (*loc, index))
        if error is None:
            values[index] = value
        else:
            errors.append(error)
    return errors


def chat_field_errors(body: dict) -> list[dict]:
    """ChatCompletionRequest (chat_completion/protocol.py): `messages` is required and a list (an empty one passes),
    and the numbers the stand-in uses."""
    if "messages" not in body:
        errors = [field_error("missing", ("body", "messages"), body)]
    elif not isinstance(body["messages"], list):
        errors = [field_error("list_type", ("body", "messages"), body["messages"])]
    else:
        errors = []
    return errors + number_errors(body, CHAT_NUMBERS)


def completion_prompt_error(body: dict) -> Response | None:
    """CompletionRequest.validate_prompt_and_prompt_embeds, a "before" validator. Its VLLMValidationError is not a
    pydantic error: it escapes validation, and /invocations' search for a handler, as a 400."""
    if body.get("prompt") in (None, ""):
        return vllm_validation_error("Either prompt or prompt_embeds must be provided and non-empty.", "prompt")
    return None


def prompt_shape_valid(prompt) -> bool:
    """CompletionRequest.prompt: a text, token ids (>= 0), a list of texts or a list of token-id lists."""
    def token_ids(value) -> bool:
        return isinstance(value, list) and all(isinstance(item, int) and item >= 0 for item in value)

    return isinstance(prompt, str) or token_ids(prompt) or isinstance(prompt, list) and (
        all(isinstance(item, str) for item in prompt) or all(token_ids(item) for item in prompt))


def completion_field_errors(body: dict) -> list[dict]:
    """A prompt that is neither a text nor a list fails each branch of the prompt's union; then the numbers."""
    prompt, loc = body.get("prompt"), ("body", "prompt")
    errors = [] if isinstance(prompt, (str, list)) else [
        field_error("list_type", loc, prompt), field_error("list_type", loc, prompt),
        field_error("string_type", loc, prompt), field_error("list_type", loc, prompt)]
    return errors + number_errors(body, COMPLETION_NUMBERS)


def requested_output(body: dict, chat: bool) -> tuple[str, int | None]:
    """The output budget the request names: chat prefers max_completion_tokens; completions default to 16."""
    if chat and body.get("max_completion_tokens") is not None:
        return "max_completion_tokens", body["max_completion_tokens"]
    return "max_tokens", body.get("max_tokens", None if chat else 16)


def tokenize_errors(body: dict) -> list[dict]:
    """TokenizeRequest is a union of two models: each branch's errors, under the model's name in `loc`."""
    errors = []
    for model, field, kind, valid in (("TokenizeCompletionRequest", "prompt", "string_type", str),
                                      ("TokenizeChatRequest", "messages", "list_type", list)):
        loc = ("body", model, field)
        if field not in body:
            errors.append(field_error("missing", loc, body))
        elif not isinstance(body[field], valid):
            errors.append(field_error(kind, loc, body[field]))
    return errors


def detokenize_errors(body: dict) -> list[dict]:
    """DetokenizeRequest.tokens: list[Annotated[int, Field(ge=0, le=2**63 - 1)]]."""
    tokens, loc = body.get("tokens"), ("body", "tokens")
    if "tokens" not in body:
        return [field_error("missing", loc, body)]
    if not isinstance(tokens, list):
        return [field_error("list_type", loc, tokens)]
    errors = []
    for index, item in enumerate(tokens):
        token, error = lax_int(item, (*loc, index))
        if error is None and token < 0:
            error = {"type": "greater_than_equal", "loc": (*loc, index),
                     "msg": "Input should be greater than or equal to 0", "input": item, "ctx": {"ge": 0}}
        elif error is None and token > 2**63 - 1:
            error = {"type": "less_than_equal", "loc": (*loc, index),
                     "msg": f"Input should be less than or equal to {2**63 - 1}", "input": item,
                     "ctx": {"le": 2**63 - 1}}
        if error is None:
            tokens[index] = token
        else:
            errors.append(error)
    return errors


def scoring_errors(body: dict) -> list[dict]:
    """GenerativeScoringRequest (generate/generative_scoring/serving.py): query is str | list[int], items is
    list[str] | list[list[int]], label_token_ids is list[int]; all three are required."""
    errors = []
    query, loc = body.get("query"), ("body", "query")
    if "query" not in body:
        errors.append(field_error("missing", loc, body))
    elif isinstance(query, list) and (element_errors := int_list_errors(query, loc)):
        errors += [field_error("string_type", loc, query), *element_errors]
    elif not isinstance(query, (str, list)):
        errors += [field_error("string_type", loc, query), field_error("list_type", loc, query)]
    items, loc = body.get("items"), ("body", "items")
    if "items" not in body:
        errors.append(field_error("missing", loc, body))
    elif not isinstance(items, list):
        errors += [field_error("list_type", loc, items), field_error("list_type", loc, items)]
    elif not all(isinstance(item, str) for item in items):
        as_ids = [error for index, item in enumerate(items) for error in (
            int_list_errors(item, (*loc, index)) if isinstance(item, list)
            else [field_error("list_type", (*loc, index), item)])]
        if as_ids:
            errors += [field_error("string_type", (*loc, index), item) for index, item in enumerate(items)
                       if not isinstance(item, str)] + as_ids
    labels, loc = body.get("label_token_ids"), ("body", "label_token_ids")
    if "label_token_ids" not in body:
        errors.append(field_error("missing", loc, body))
    elif not isinstance(labels, list):
        errors.append(field_error("list_type", loc, labels))
    else:
        errors += int_list_errors(labels, loc)
    return errors


def unsupported_media_type(request: HttpRequest) -> Response | None:
    """api_utils.py validate_json_request, for routes whose handler reads the body itself."""
    if request.headers.get("content-type", "").lower().split(";", 1)[0] != "application/json":
        return validation_error(["Unsupported Media Type: Only 'application/json' is allowed"])
    return None


# No tokenizer: /tokenize and /detokenize answer with invented ids and pieces. The count is the estimate prompts are
# charged with (usage.prompt_tokens); ids 0 and 1 are DeepSeek V3.2's BOS and EOS, as in its vocabulary.
VOCAB_SIZE = 129280  # DeepSeek V3.2's config.json vocab_size: the range of label_token_ids
SPECIAL_TOKENS = {0: "<｜begin▁of▁sentence｜>", 1: "<｜end▁of▁sentence｜>"}
SYLLABLES = "ba be bi bo bu da de di do du ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu ra re ri ro " \
            "ru sa se si so su ta te ti to tu va ve vi vo vu".split()


def invented_token_ids(text: str, count: int, bos: bool) -> list[int]:
    rng = random.Random(text)
    ids = [0] if bos and count else []
    return ids + [rng.randrange(2, VOCAB_SIZE) for _ in range(count - len(ids))]


def token_piece(token_id: int) -> str:
    """The byte-level BPE spelling of an invented token: "Ġ" stands for a leading space."""
    if token_id in SPECIAL_TOKENS:
        return SPECIAL_TOKENS[token_id]
    high, low = divmod(token_id, len(SYLLABLES))
    return ("Ġ" if token_id % 3 == 0 else "") + SYLLABLES[low] + SYLLABLES[high % len(SYLLABLES)]


# FastAPI's pages (openapi_url, docs_url, redoc_url and the OAuth2 redirect of Swagger UI): same titles and
# references, shorter pages.
SWAGGER_CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"
DOCS_PAGES = {
    "/docs": ("FastAPI - Swagger UI",
              f'<link type="text/css" rel="stylesheet" href="{SWAGGER_CDN}/swagger-ui.css">',
              f'<div id="swagger-ui"></div><script src="{SWAGGER_CDN}/swagger-ui-bundle.js"></script><script>'
              "SwaggerUIBundle({url: '/openapi.json', dom_id: '#swagger-ui', "
              "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'})</script>"),
    "/docs/oauth2-redirect": ("Swagger UI: OAuth2 Redirect", "",
                              "<script>window.opener.swaggerUIRedirectOauth2 && window.close()</script>"),
    "/redoc": ("FastAPI - ReDoc", "",
               '<redoc spec-url="/openapi.json"></redoc>'
               '<script src="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"></script>'),
}
EMPTY_CONVERSATION_FRAMES: list[Frame] = [
    ("renderers/online_renderer.py", 821, "preprocess_chat",
     "(conversation,), (engine_input,) = await renderer.render_chat_async("),
    ("renderers/base.py", 1403, "render_chat_async", "for conv, prompt in await asyncio.gather(*rendered):"),
    ("renderers/deepseek_v32.py", 75, "render_messages_async", "prompt_raw = await self._apply_chat_template_async("),
    ("tokenizers/deepseek_v32.py", 42, "apply_chat_template", 'drop_thinking = messages[-1]["role"] == "user"'),
]


# ----------------------------------------------------------------------------------------------------------------
# The OpenAI-compatible API (entrypoints/openai/*, entrypoints/serve/*).
# ----------------------------------------------------------------------------------------------------------------

GUARDED_PREFIXES = ("/v1", "/v2", "/inference", "/cohere")  # serve/middleware/authenticate.py
# The routes of launchers/api_server/routers.py for a generate model with the default flags, in the app's order, less
# the guarded ones the stand-in does not simulate (README). Only the /v1 ones need the API key.
ROUTES = {"/load": ("GET",), "/version": ("GET",), "/kv_event_sources": ("GET",), "/health": ("GET",),
          "/metrics": ("GET",), "/tokenize": ("POST",), "/detokenize": ("POST",), "/v1/models": ("GET",),
          "/ping": ("GET", "POST"), "/invocations": ("POST",), "/v1/chat/completions": ("POST",),
          "/v1/completions": ("POST",), "/generative_scoring": ("POST",), "/scale_elastic_ep": ("POST",),
          "/is_scaling_elastic_ep": ("POST",)}
# FastAPI's own pages (openapi_url, docs_url, redoc_url), unless --disable-fastapi-docs; --enable-offline-docs drops
# /redoc and points /docs at vLLM's copy of Swagger UI (serve/instrumentator/offline_docs.py).
DOCS_ROUTES = {"/openapi.json": ("GET",), "/docs": ("GET",), "/docs/oauth2-redirect": ("GET",), "/redoc": ("GET",)}
CHAT_TEMPLATE_ERROR = ("As of transformers v4.44, default chat template is no longer allowed, so you must provide a "
                       "chat template if the tokenizer does not define one.")


@dataclass
class Deployment:
    """The served model as vLLM configured it at start-up."""
    model: str
    served_names: list[str]
    max_model_len: int
    has_chat_template: bool
    auto_tools: bool
    reasoning_parser: str
    default_chat_template_kwargs: dict
    api_keys: list[str]
    fingerprint: str | None
    garbled: bool
    log_requests: bool
    release: Release
    trust_request_chat_template: bool = False
    tokenizer_mode: str = "deepseek_v32"
    server_load_tracking: bool = False
    docs: str = "online"  # FastAPI's pages: "online", "offline" (--enable-offline-docs) or "none"
    data_parallel_size: int = 1


def served_routes(deployment: Deployment) -> dict[str, tuple[str, ...]]:
    docs = {"online": DOCS_ROUTES, "none": {},
            "offline": {path: methods for path, methods in DOCS_ROUTES.items() if path != "/redoc"}}
    return {**docs[deployment.docs], **ROUTES}


def random_id() -> str:
    return f"{uuid.uuid4().int & (2**64 - 1):016x}"  # vllm.utils.random_uuid


class StreamSink:
    """Turns engine tokens into SSE chunks on the client's transport (chat or text completion)."""

    def __init__(self, app: App, writer: asyncio.StreamWriter, *, chat: bool, rid: str, model: str,
                 include_usage: bool, continuous_usage: bool, named_tool: bool) -> None:
        self.app, self.writer, self.chat = app, writer, chat
        self.base = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                     "created": int(time.time()), "model": model}
        self.include_usage, self.continuous_usage, self.named_tool = include_usage, continuous_usage, named_tool
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.started = False
        self.final_delta: dict | None = None

    def _send(self, payload: dict | str) -> bool:
        if self.writer.transport.is_closing():
            return False
        data = payload if isinstance(payload, str) else JSON_DUMPS(payload)
        frame = f"data: {data}\n\n".encode()
        self.writer.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        return True

    def _usage(self, generation: Generation) -> dict:
        usage = {"prompt_tokens": generation.prompt_tokens,
                 "total_tokens": generation.prompt_tokens + generation.emitted,
                 "completion_tokens": generation.emitted}
        if self.chat and self.app.deployment.reasoning_parser:
            usage["completion_tokens_details"] = {"reasoning_tokens": generation.reasoning_tokens}
        return usage

    def _chunk(self, choice: dict, generation: Generation, *, final: bool) -> dict:
        chunk = {**self.base, "choices": [choice]}
        if self.continuous_usage:
            chunk["usage"] = self._usage(generation)
        if final and not self.include_usage and self.app.deployment.fingerprint:
            chunk["system_fingerprint"] = self.app.deployment.fingerprint
        chunk["kv_transfer_params"] = None
        return chunk

    def _open(self, generation: Generation) -> bool:
        """The first chunk carries the role (chat) once the engine reports the request's first output."""
        self.started = True
        if not self.chat:
            return True
        first = {**self.base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                           "logprobs": None, "finish_reason": None}]}
        if self.continuous_usage:
            first["usage"] = {"prompt_tokens": generation.prompt_tokens, "total_tokens": generation.prompt_tokens,
                              "completion_tokens": 0}
            if self.app.deployment.reasoning_parser:
                first["usage"]["completion_tokens_details"] = {"reasoning_tokens": 0}
        first.update(prompt_token_ids=None, prompt_text=None)
        return self._send(first)

    def token(self, generation: Generation, delta: dict | None, when: float, done: bool) -> bool:
        if not self.started and not self._open(generation):
            return False
        if done:
            self.final_delta = delta  # finish() sends it with the finish reason
            return True
        if self.chat:
            if delta is None:
                return not self.writer.transport.is_closing()
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None, "token_ids": None}
        else:
            choice = {"index": 0, "text": (delta or {}).get("content", ""), "logprobs": None,
                      "finish_reason": None, "stop_reason": None, "prompt_token_ids": None, "token_ids": None,
                      "weight_versions": None}
        return self._send(self._chunk(choice, generation, final=False))

    def finish(self, generation: Generation, when: float) -> None:
        if not self.writer.transport.is_closing():
            if not self.started:
                self._open(generation)
            last = self.final_delta or {}
            if self.chat:
                choice = {"index": 0, "delta": last, "logprobs": None,
                          "finish_reason": finish_reason_for(generation, self.named_tool),
                          "stop_reason": generation.stop_reason, "token_ids": None, "weight_versions": None}
            else:
                choice = {"index": 0, "text": last.get("content", ""), "logprobs": None,
                          "finish_reason": generation.finish_reason, "stop_reason": generation.stop_reason,
                          "prompt_token_ids": None, "token_ids": None, "weight_versions": None}
            self._send(self._chunk(choice, generation, final=True))
            if self.include_usage:
                usage_chunk = {**self.base, "choices": [], "usage": self._usage(generation)}
                if self.app.deployment.fingerprint:
                    usage_chunk["system_fingerprint"] = self.app.deployment.fingerprint
                self._send(usage_chunk)
            self._send("[DONE]")
            self.writer.write(b"0\r\n\r\n")
        if not self.done.done():
            self.done.set_result(None)


class CollectSink:
    """A non-streaming request: nothing to send until the end."""

    def __init__(self) -> None:
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def token(self, generation: Generation, delta: dict | None, when: float, done: bool) -> bool:
        return True

    def finish(self, generation: Generation, when: float) -> None:
        if not self.done.done():
            self.done.set_result(None)


def finish_reason_for(generation: Generation, named_tool: bool) -> str:
    """serve/utils/tool_calls_utils.py resolve_finish_reason."""
    reason = generation.finish_reason or "stop"
    if generation.tool_calls and reason == "stop" and not named_tool:
        return "tool_calls"
    return reason


def chat_prompt_tokens(messages: list[dict], tools: list | None, thinking: bool) -> int:
    """An approximation of the DeepSeek V3.2 encoding (tokenizers/deepseek_v32_encoding.py): BOS, a role token
    per message, ~4 characters per token of content, the tool definitions, and the assistant/think prefix."""
    total = 1 + sum(1 + estimate_tokens(message_text(message)) for message in messages) + 2
    if tools:
        total += 40 + estimate_tokens(json.dumps(tools))
    return total + (1 if thinking else 0)


class App:
    def __init__(self, deployment: Deployment, engine: Engine, metrics: Metrics, log: VllmLog, api: Proc) -> None:
        self.deployment, self.engine, self.metrics, self.log, self.api = deployment, engine, metrics, log, api
        self.routes = served_routes(deployment)

    # -- entry point from the HTTP layer; returns None when the handler wrote a streaming response itself
    async def handle(self, request: HttpRequest, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> Response | int:
        path = unquote(request.path.split("?", 1)[0])  # uvicorn decodes the path; routing and the key check see that
        if (self.deployment.api_keys and request.method != "OPTIONS" and path.startswith(GUARDED_PREFIXES)
                and not self._authorized(request.headers.get("authorization", ""))):
            return Response.json(401, {"error": "Unauthorized"})
        if path.startswith("/metrics"):  # prometheus_client's app is also mounted there: any suffix, any method
            body = self.metrics.render(self.engine.running, len(self.engine.waiting), self.engine.kv_usage())
            return Response(200, body.encode(), "text/plain; version=0.0.4; charset=utf-8")
        methods = self.routes.get(path)
        if methods is None:
            return self._unrouted(request, path)
        method = "GET" if request.method == "HEAD" else request.method
        if method not in methods:
            return Response(405, JSON_DUMPS({"detail": "Method Not Allowed"}).encode(), "application/json",
                            [("allow", ", ".join(methods))])
        if path == "/health":
            return Response(200)
        if path == "/version":
            return Response.json(200, {"version": self.deployment.release.version})
        if path == "/v1/models":
            return Response.json(200, self._models())
        if path not in ("/v1/chat/completions", "/v1/completions"):
            return await self._serve_more(request, path, reader, writer)
        body = self._json_body(request)
        if isinstance(body, Response):
            return body
        if path == "/v1/chat/completions":
            return await self._chat(request, body, reader, writer)
        return await self._completion(request, body, reader, writer)

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        digest = hashlib.sha256(token.encode()).digest()
        return any(hashlib.sha256(key.encode()).digest() == digest for key in self.deployment.api_keys)

    def _models(self) -> dict:
        created = int(time.time())
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "vllm", "root": self.deployment.model,
             "parent": None, "max_model_len": self.deployment.max_model_len,
             "permission": [{"id": f"modelperm-{random_id()}", "object": "model_permission", "created": created,
                             "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                             "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                             "organization": "*", "group": None, "is_blocking": False}]}
            for name in self.deployment.served_names]}

    @staticmethod
    def _json_body(request: HttpRequest) -> dict | Response:
        """FastAPI reads the JSON body, then vLLM's validate_json_request checks the media type; pydantic checks
        the shape (api_utils.py, handlers/validation.py)."""
        media_type = request.headers.get("content-type", "").lower().split(";", 1)[0].strip()
        parsed = None
        if request.body and (media_type == "application/json" or media_type.endswith("+json")):
            try:
                parsed = json.loads(request.body)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                position = getattr(error, "pos", getattr(error, "start", 0))
                reason = getattr(error, "msg", "Expecting value")
                return validation_error([{"type": "json_invalid", "loc": ("body", position),
                                          "msg": "JSON decode error", "input": {}, "ctx": {"error": reason}}])
        if media_type != "application/json":
            return validation_error(["Unsupported Media Type: Only 'application/json' is allowed"])
        if parsed is None:
            return validation_error([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
        if not isinstance(parsed, dict):
            return validation_error([{"type": "model_attributes_type", "loc": ("body",),
                                      "msg": "Input should be a valid dictionary or object to extract fields from",
                                      "input": parsed}])
        return parsed

    def _check_model(self, body: dict) -> Response | None:
        """The chat route logs the refusal (chat_completion/serving.py render_chat_request); the others do not."""
        response = self._unknown_model(body)
        if response is not None:
            self.log.error(self.api, "serving.py:280", f"Error with model {response_summary(response)}")
        return response

    def _unknown_model(self, body: dict) -> Response | None:
        model = body.get("model")
        if model and model not in self.deployment.served_names:
            return error_response(
                f"The model `{model}` does not exist. Valid aliases: {', '.join(self.deployment.served_names)}.",
                "NotFoundError", 404, "model")
        return None

    def _output_budget_error(self, body: dict, *, chat: bool) -> Response | None:
        """TokenizeParams.__post_init__ (renderers/params.py), built from the request before the prompt is rendered:
        the output alone may not exceed the context. Output plus prompt beyond it is only clamped, later."""
        param, requested = requested_output(body, chat)
        max_len = self.deployment.max_model_len
        if requested is not None and requested > max_len:
            return vllm_validation_error(f"{param}={requested} cannot be greater than max_model_len={max_len}. "
                                         "Please request fewer output tokens.", param, requested)
        return None

    def _empty_conversation_error(self, messages: list, tools: list | None) -> Response | None:
        """DeepSeek V3.2's encoder reads messages[-1] (tokenizers/deepseek_v32.py apply_chat_template): without
        messages or tools that is an IndexError, which the catch-all handler answers 500 and uvicorn logs."""
        if messages or tools or self.deployment.tokenizer_mode != "deepseek_v32":
            return None
        sys.stderr.write("ERROR:    Exception in ASGI application\n")
        print_traceback(EMPTY_CONVERSATION_FRAMES, "IndexError: list index out of range")
        return error_response("list index out of range", "InternalServerError", 500)

    def _generation_limits(self, body: dict, prompt_tokens: int, *, chat: bool) -> int | Response:
        """After rendering, in vLLM's order: the prompt against the context (renderers/params.py _token_len_check),
        max_tokens clamped to what the context leaves (serve/utils/api_utils.py get_max_tokens), then
        SamplingParams._verify_args (sampling_params.py) on n, temperature, top_p and the clamped max_tokens."""
        max_len = self.deployment.max_model_len
        if prompt_tokens > max_len:
            return vllm_validation_error(
                f"This model's maximum context length is {max_len} tokens. However, your prompt contains "
                f"{prompt_tokens} input tokens, which exceeds this limit even without any output tokens. Please "
                "reduce the length of the input prompt.", "input_tokens", prompt_tokens)
        requested = requested_output(body, chat)[1]
        max_tokens = max_len - prompt_tokens if requested is None else min(max_len - prompt_tokens, requested)
        n = 1 if body.get("n") is None else body["n"]
        if n < 1:
            return vllm_validation_error(f"n must be at least 1, got {n}.")
        if n > VLLM_MAX_N_SEQUENCES:
            return vllm_validation_error(f"n must be at most {VLLM_MAX_N_SEQUENCES}, got {n}. To increase this "
                                         "limit, set the VLLM_MAX_N_SEQUENCES environment variable.")
        temperature, top_p = body.get("temperature"), body.get("top_p")
        if temperature is not None and not math.isfinite(temperature):
            return vllm_validation_error(f"temperature must be a finite number, got {temperature}.", "temperature",
                                         temperature)
        if temperature is not None and temperature < 0:
            return vllm_validation_error(f"temperature must be non-negative, got {temperature}.", "temperature",
                                         temperature)
        if temperature is not None and temperature > 2:
            return vllm_validation_error(f"temperature must be in [0, 2], got {temperature}.", "temperature",
                                         temperature)
        if top_p is not None and not 0 < top_p <= 1:
            return vllm_validation_error(f"top_p must be in (0, 1], got {top_p}.", "top_p", top_p)
        if max_tokens < 1:
            return vllm_validation_error(f"max_tokens must be at least 1, got {max_tokens}.", "max_tokens",
                                         max_tokens)
        if n > 1 and temperature is not None and temperature < 1e-5:
            return vllm_validation_error(f"n must be 1 when using greedy sampling, got {n}.")
        if n != 1:
            return error_response("n > 1 is not simulated by the vLLM stand-in")
        return max_tokens

    @staticmethod
    def _seed(body: dict, text: str) -> int:
        return int(hashlib.sha256(f"{body.get('seed')}|{text}".encode()).hexdigest()[:12], 16)

    def _stop(self, body: dict) -> list[str]:
        stop = body.get("stop") or []
        return [stop] if isinstance(stop, str) else [item for item in stop if isinstance(item, str)]

    async def _chat(self, request: HttpRequest, body: dict, reader, writer) -> Response | int:
        if errors := chat_field_errors(body):
            return validation_error(errors)
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        if (error := self._check_model(body)) is not None:
            return error
        tools = body.get("tools") or None
        tool_choice = body.get("tool_choice", "auto" if tools else "none")
        deployment = self.deployment
        if tool_choice not in (None, "none") and not deployment.auto_tools:
            # renderers/online_renderer.py render_chat: tool parsing unavailable
            if tool_choice == "auto":
                return error_response('"auto" tool choice requires --enable-auto-tool-choice and '
                                      "--tool-call-parser to be set")
            described = (f'function "{(tool_choice.get("function") or {}).get("name")}"'
                         if isinstance(tool_choice, dict) else f'"{tool_choice}"')
            return error_response(f"tool_choice={described} requires --tool-call-parser to be set")
        if (error := self._output_budget_error(body, chat=True)) is not None:
            return error
        if not deployment.has_chat_template and not (body.get("chat_template")
                                                     and deployment.trust_request_chat_template):
            return error_response(CHAT_TEMPLATE_ERROR)
        if (error := self._empty_conversation_error(messages, tools)) is not None:
            return error
        kwargs = {**deployment.default_chat_template_kwargs, **(body.get("chat_template_kwargs") or {})}
        thinking = bool(kwargs.get("thinking") or kwargs.get("enable_thinking"))
        prompt_tokens = chat_prompt_tokens(messages, tools, thinking)
        max_tokens = self._generation_limits(body, prompt_tokens, chat=True)
        if isinstance(max_tokens, Response):
            return max_tokens
        use_tools = tool_choice not in (None, "none") and deployment.auto_tools
        last_user = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
        reply = compose_reply(messages, tools, tool_choice, use_tools, deployment.garbled,
                              self._seed(body, last_user))
        splits = deployment.reasoning_parser in ("deepseek_v3", "deepseek_r1")
        script = Script(reply, thinking=thinking, splits_reasoning=splits, seed=self._seed(body, last_user))
        rid = "chatcmpl-" + (request.headers.get("x-request-id") or body.get("request_id") or random_id())
        return await self._run(request, body, reader, writer, chat=True, rid=rid, script=script,
                               prompt_tokens=prompt_tokens, max_tokens=max_tokens,
                               include_reasoning=body.get("include_reasoning", True) is not False,
                               named_tool=isinstance(tool_choice, dict))

    async def _completion(self, request: HttpRequest, body: dict, reader, writer) -> Response | int:
        if (error := completion_prompt_error(body)) is not None:
            return error
        if errors := completion_field_errors(body):
            return validation_error(errors)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if isinstance(prompt, list) and all(isinstance(item, int) for item in prompt):
            prompt_tokens, text = len(prompt), " ".join(map(str, prompt))
        elif isinstance(prompt, str):
            prompt_tokens, text = 1 + estimate_tokens(prompt), prompt
        else:
            return error_response("Several prompts in one request are not simulated by the vLLM stand-in")
        if (error := self._unknown_model(body)) is not None:
            return error
        if (error := self._output_budget_error(body, chat=False)) is not None:
            return error
        max_tokens = self._generation_limits(body, prompt_tokens, chat=False)
        if isinstance(max_tokens, Response):
            return max_tokens
        seed = self._seed(body, text)
        reply = Reply(reasoning="", content=Filler(seed).text(Filler(seed).rng.randint(40, 200)),
                      garbled=self.deployment.garbled)
        script = Script(reply, thinking=False, splits_reasoning=False, seed=seed)
        rid = "cmpl-" + (request.headers.get("x-request-id") or body.get("request_id") or random_id())
        return await self._run(request, body, reader, writer, chat=False, rid=rid, script=script,
                               prompt_tokens=prompt_tokens, max_tokens=max_tokens, include_reasoning=False,
                               named_tool=False)

    async def _run(self, request: HttpRequest, body: dict, reader, writer, *, chat: bool, rid: str,
                   script: Script, prompt_tokens: int, max_tokens: int, include_reasoning: bool,
                   named_tool: bool) -> Response | int:
        stream = bool(body.get("stream"))
        options = body.get("stream_options") or {}
        include_usage = stream and bool(options.get("include_usage"))
        sink = (StreamSink(self, writer, chat=chat, rid=rid, model=self.deployment.served_names[0],
                           include_usage=include_usage,
                           continuous_usage=include_usage and bool(options.get("continuous_usage_stats")),
                           named_tool=named_tool) if stream else CollectSink())
        generation = Generation(rid=rid, prompt_tokens=prompt_tokens, max_tokens=max_tokens, script=script,
                                stop=self._stop(body), ignore_eos=bool(body.get("ignore_eos")),
                                min_tokens=int(body.get("min_tokens") or 0), include_reasoning=include_reasoning,
                                sink=sink)
        if self.deployment.log_requests:
            self.log.info(self.api, "async_llm.py:415", f"Added request {rid}.")
        if stream:
            writer.write(response_head(200, [("content-type", "text/event-stream; charset=utf-8"),
                                             ("transfer-encoding", "chunked")]))
        self.engine.submit(generation)
        await self._wait(sink.done, generation, reader)
        if stream:
            return 200
        return Response.json(200, self._full_response(generation, chat=chat, named_tool=named_tool))

    async def _wait(self, done: asyncio.Future, generation: Generation, reader: asyncio.StreamReader) -> None:
        """Wait for the request, aborting it if the client disconnects (api_utils.py with_cancellation)."""
        gone = asyncio.ensure_future(reader.read(1))
        try:
            finished, _ = await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
            if done not in finished:
                self.engine.abort(generation)
                await done
        finally:
            gone.cancel()

    def _full_response(self, generation: Generation, *, chat: bool, named_tool: bool) -> dict:
        usage = {"prompt_tokens": generation.prompt_tokens,
                 "total_tokens": generation.prompt_tokens + generation.emitted,
                 "completion_tokens": generation.emitted, "prompt_tokens_details": None}
        if not chat:
            usage["completion_tokens_details"] = None
            choice = {"index": 0, "text": generation.content_text(), "logprobs": None,
                      "finish_reason": generation.finish_reason, "stop_reason": generation.stop_reason,
                      "token_ids": None, "prompt_logprobs": None, "prompt_token_ids": None, "routed_experts": None,
                      "weight_versions": None}
            return {"id": generation.rid, "object": "text_completion", "created": int(time.time()),
                    "model": self.deployment.served_names[0], "choices": [choice], "service_tier": None,
                    "system_fingerprint": self.deployment.fingerprint, "usage": usage,
                    "kv_transfer_params": None, "ec_transfer_params": None, "metrics": None}
        usage["completion_tokens_details"] = (
            {"reasoning_tokens": generation.reasoning_tokens} if self.deployment.reasoning_parser else None)
        calls = [{"id": call["id"], "type": "function", "function": {"name": call["name"],
                                                                     "arguments": call["arguments"]}}
                 for _, call in sorted(generation.tool_calls.items()) if call["complete"]]
        content = generation.content_text()
        message = {"role": "assistant", "content": content if content or not calls else None, "refusal": None,
                   "annotations": None, "audio": None, "function_call": None}
        if calls or not self.deployment.release.omits_empty_tool_calls:
            message["tool_calls"] = calls
        message["reasoning"] = (generation.reasoning_text() or None) if generation.include_reasoning else None
        choice = {"index": 0, "message": message, "logprobs": None,
                  "finish_reason": finish_reason_for(generation, named_tool), "stop_reason": generation.stop_reason,
                  "token_ids": None, "routed_experts": None, "weight_versions": None}
        return {"id": generation.rid, "object": "chat.completion", "created": int(time.time()),
                "model": self.deployment.served_names[0], "choices": [choice], "service_tier": None,
                "system_fingerprint": self.deployment.fingerprint, "usage": usage, "prompt_logprobs": None,
                "prompt_token_ids": None, "prompt_text": None, "kv_transfer_params": None,
                "ec_transfer_params": None, "metrics": None}


    # -- the routes outside the OpenAI API: serve/*, SageMaker's, generative scoring and FastAPI's pages
    def _unrouted(self, request: HttpRequest, path: str) -> Response:
        """Starlette's router redirects (307) to the path without (with) its trailing slash when that one has a
        route (redirect_slashes); otherwise FastAPI's 404."""
        other = path.rstrip("/") if path.endswith("/") else path + "/"
        if other not in self.routes:
            return Response.json(404, {"detail": "Not Found"})
        query = request.path.partition("?")[2]
        host = request.headers.get("host")
        url = (f"http://{host}" if host else "") + other + (f"?{query}" if query else "")
        return Response(307, headers=[("location", quote(url, safe=":/%#?=@[]!$&'()*+,;~"))])

    async def _serve_more(self, request: HttpRequest, path: str, reader, writer) -> Response | int:
        if path == "/ping":  # serve/sagemaker/api_router.py: /health under SageMaker's name, GET and POST
            return Response(200)
        if path == "/load":  # serve/instrumentator/basic.py: counted only with --enable-server-load-tracking
            return Response.json(200, {"server_load": self.engine.unfinished if self.deployment.server_load_tracking
                                       else 0})
        if path == "/kv_event_sources":  # no --kv-events-config: no publisher to report
            return Response.json(200, {})
        if path == "/is_scaling_elastic_ep":  # no external coordinator: the process-local state, idle
            return Response.json(200, {"is_scaling_elastic_ep": False, "phase": "idle", "epoch": None, "error": None,
                                       "requested_data_parallel_size": None})
        if path == "/scale_elastic_ep":
            return self._scale_elastic_ep(request)
        if path == "/invocations":
            return await self._invocations(request, reader, writer)
        if path in DOCS_ROUTES:
            return self._docs_page(path)
        body = self._json_body(request)
        if isinstance(body, Response):
            return body
        if path == "/tokenize":
            return self._tokenize(body)
        if path == "/detokenize":
            return self._detokenize(body)
        return self._generative_scoring(request, body)

    async def _invocations(self, request: HttpRequest, reader, writer) -> Response | int:
        """serve/sagemaker/api_router.py as model_hosting_container_standards' bootstrap leaves it: re-mounted
        without the validate_json_request dependency (any content type), behind its session and adapter transforms;
        the first request model the body validates as (chat, then completion) picks the handler."""
        try:
            body = json.loads(request.body)
        except json.JSONDecodeError as error:  # raised by the transforms as an HTTPException
            return error_response(f"JSON decode error: {error}", "Bad Request")
        except UnicodeDecodeError as error:  # a ValueError: the fallback handler's 400
            return error_response(str(error))
        # The session transform tests `"requestType" in body`, then inject_adapter_id(adapter_path="model") sets
        # body["model"] to the X-Amzn-SageMaker-Adapter-Identifier header, None without it: TypeErrors (400) on
        # anything but an object, and the request's own model name is dropped.
        if isinstance(body, list):
            return error_response("list indices must be integers or slices, not str")
        if isinstance(body, str):
            return error_response("'str' object does not support item assignment")
        if not isinstance(body, dict):
            return error_response(f"argument of type '{type(body).__name__}' is not iterable")
        body["model"] = request.headers.get("x-amzn-sagemaker-adapter-identifier")
        if not chat_field_errors(body) and all(isinstance(message, dict) for message in body["messages"]):
            return await self._chat(request, body, reader, writer)
        if (error := completion_prompt_error(body)) is not None:
            return error
        if completion_field_errors(body) or not prompt_shape_valid(body["prompt"]):
            return error_response("Cannot find suitable handler for request. Expected one of: "
                                  "['ChatCompletionRequest', 'CompletionRequest']")
        return await self._completion(request, body, reader, writer)

    def _tokenize(self, body: dict) -> Response:
        """serve/tokenize/serving.py create_tokenize: a prompt, or messages rendered as the chat route does."""
        if body.get("continue_final_message") and body.get("add_generation_prompt"):  # TokenizeChatRequest
            return vllm_validation_error("Cannot set both `continue_final_message` and `add_generation_prompt` "
                                         "to True.")
        chat = not isinstance(body.get("prompt"), str)
        if chat and not isinstance(body.get("messages"), list):
            return validation_error(tokenize_errors(body))
        if (error := self._unknown_model(body)) is not None:
            return error
        deployment = self.deployment
        if chat:
            messages = [m for m in body["messages"] if isinstance(m, dict)]
            tools = body.get("tools") or None
            if not deployment.has_chat_template and not (body.get("chat_template")
                                                         and deployment.trust_request_chat_template):
                return error_response(CHAT_TEMPLATE_ERROR)
            if (error := self._empty_conversation_error(messages, tools)) is not None:
                return error
            kwargs = {**deployment.default_chat_template_kwargs, **(body.get("chat_template_kwargs") or {})}
            count = chat_prompt_tokens(messages, tools, bool(kwargs.get("thinking") or kwargs.get("enable_thinking")))
            ids = invented_token_ids(json.dumps(messages), count, bos=True)  # the template writes the BOS
        else:
            special = body.get("add_special_tokens", True) is not False
            ids = invented_token_ids(body["prompt"], estimate_tokens(body["prompt"]) + special, bos=special)
        return Response.json(200, {"count": len(ids), "max_model_len": deployment.max_model_len, "tokens": ids,
                                   "token_strs": [token_piece(i) for i in ids] if body.get("return_token_strs")
                                   else None})

    def _detokenize(self, body: dict) -> Response:
        """serve/tokenize/serving.py create_detokenize; ids outside the vocabulary decode to nothing."""
        if errors := detokenize_errors(body):
            return validation_error(errors)
        if (error := self._unknown_model(body)) is not None:
            return error
        text = "".join(token_piece(i) for i in body["tokens"] if i < VOCAB_SIZE).replace("Ġ", " ")
        return Response.json(200, {"prompt": text})

    def _generative_scoring(self, request: HttpRequest, body: dict) -> Response:
        """generate/generative_scoring/serving.py: one forward pass per item for the probability of the first label
        token after query + item. The stand-in invents the log-probabilities (seeded by the texts) and does not
        schedule the passes."""
        if errors := scoring_errors(body):
            return validation_error(errors)
        if (error := self._unknown_model(body)) is not None:
            return error
        labels, items, query = body["label_token_ids"], body["items"], body["query"]
        for token_id in labels:
            if token_id < 0 or token_id >= VOCAB_SIZE:
                return error_response(f"label_token_id {token_id} is out of vocabulary range [0, {VOCAB_SIZE}). "
                                      "Please provide valid token IDs.")
        if not labels:
            return error_response("label_token_ids must contain at least one token ID.")
        if not items:
            return error_response("items must contain at least one item.")
        special = body.get("add_special_tokens", True) is not False
        query_tokens = len(query) if isinstance(query, list) else estimate_tokens(query) + special
        data, prompt_tokens = [], 0
        for index, item in enumerate(items):
            item_tokens = len(item) if isinstance(item, list) else estimate_tokens(item)
            prompt_tokens += min(query_tokens + item_tokens, self.deployment.max_model_len - 1)
            logprobs = {label: -random.Random(f"{query}|{item}|{label}").uniform(0.05, 12.0) for label in labels}
            if body.get("apply_softmax", True) is not False:  # normalised over the label tokens only
                top = max(logprobs.values())
                weights = {label: math.exp(value - top) for label, value in logprobs.items()}
                probabilities = {label: weight / sum(weights.values()) for label, weight in weights.items()}
            else:
                probabilities = {label: math.exp(value) for label, value in logprobs.items()}
            data.append({"index": index, "object": "score", "score": probabilities[labels[0]]})
        rid = request.headers.get("x-request-id") or body.get("request_id") or random_id()
        return Response.json(200, {
            "id": f"generative-scoring-{rid}", "object": "list", "created": int(time.time()),
            "model": self.deployment.served_names[0], "data": data,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + len(items),
                      "completion_tokens": len(items), "prompt_tokens_details": None,
                      "completion_tokens_details": None}})

    def _scale_elastic_ep(self, request: HttpRequest) -> Response:
        """serve/elastic_ep/api_router.py. The size already running is a no-op; any other fails in the engine client
        (EngineCoreClient.prepare_elastic_ep raises NotImplementedError) and is answered "Scale failed"."""
        if (error := unsupported_media_type(request)) is not None:
            return error
        try:
            body = json.loads(request.body)
        except json.JSONDecodeError:
            return error_response("Invalid JSON format", "Bad Request")
        except UnicodeDecodeError as error:
            return error_response(str(error))
        if not isinstance(body, dict):  # body.get raises AttributeError: the catch-all 500
            return error_response(f"'{type(body).__name__}' object has no attribute 'get'", "InternalServerError", 500)
        size, drain_timeout = body.get("new_data_parallel_size"), body.get("drain_timeout", 120)
        if size is None:
            return error_response("new_data_parallel_size is required", "Bad Request")
        if not isinstance(size, int) or size <= 0:
            return error_response("new_data_parallel_size must be a positive integer", "Bad Request")
        if not isinstance(drain_timeout, int) or drain_timeout <= 0:
            return error_response("drain_timeout must be a positive integer", "Bad Request")
        if size == self.deployment.data_parallel_size:
            return Response.json(200, {"message": f"Scaled to {size} data parallel engines"})
        self.log.error(self.api, SCALE_FAILED_LOG, "Scale failed: ")
        return error_response("Scale failed", "Internal Server Error", 500)

    def _docs_page(self, path: str) -> Response:
        if path == "/openapi.json":  # every route but FastAPI's own pages, as include_in_schema leaves them
            return Response.json(200, {
                "openapi": "3.1.0", "info": {"title": "FastAPI", "version": "0.1.0"},
                "paths": {route: {method.lower(): {"responses": {"200": {"description": "Successful Response"}}}
                                  for method in methods}
                          for route, methods in self.routes.items() if route not in DOCS_ROUTES}})
        title, head, body = DOCS_PAGES[path]
        page = f"<!DOCTYPE html><html><head>{head}<title>{title}</title></head><body>{body}</body></html>"
        if self.deployment.docs == "offline":  # vLLM's own copy of Swagger UI, under /static (not served here)
            page = page.replace(SWAGGER_CDN, "/static")
        return Response(200, page.encode(), "text/html; charset=utf-8")

def response_summary(response: Response) -> str:
    error = json.loads(response.body)["error"]
    return (f"error=ErrorInfo(message={error['message']!r}, type={error['type']!r}, param={error['param']!r}, "
            f"code={error['code']})")


class HttpServer:
    """Connections, keep-alive, access log; `close()` stops accepting and ends idle connections."""

    def __init__(self, app: App, sock: socket.socket, *, access_log: bool, quiet_paths: set[str],
                 keep_alive: float) -> None:
        self.app, self.sock, self.access_log, self.quiet_paths = app, sock, access_log, quiet_paths
        self.keep_alive = keep_alive
        self.server: asyncio.base_events.Server | None = None
        self.idle: set[asyncio.StreamWriter] = set()
        self.busy = 0
        self.drained = asyncio.Event()
        self.drained.set()
        self.closing = False

    async def start(self) -> None:
        if self.sock.family == socket.AF_UNIX:
            self.server = await asyncio.start_unix_server(self._connection, sock=self.sock, limit=MAX_HEAD_BYTES)
        else:
            self.server = await asyncio.start_server(self._connection, sock=self.sock, limit=MAX_HEAD_BYTES,
                                                     backlog=2048)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
        first = True
        try:
            while not self.closing:
                self.idle.add(writer)
                try:
                    if first:
                        request = await read_request(reader, writer)
                    else:
                        request = await asyncio.wait_for(read_request(reader, writer), self.keep_alive)
                except (TimeoutError, ConnectionError):
                    return
                except HttpError:
                    writer.write(response_head(400, [("content-type", "text/plain; charset=utf-8"),
                                                     ("connection", "close"), ("content-length", "11")])
                                 + b"Bad Request")
                    return
                finally:
                    self.idle.discard(writer)
                if request is None:
                    return
                first = False
                self.busy += 1
                self.drained.clear()
                try:
                    status = await self._respond(request, reader, writer)
                finally:
                    self.busy -= 1
                    if not self.busy:
                        self.drained.set()
                path = request.path.split("?", 1)[0]
                if self.access_log and path not in self.quiet_paths:
                    uvicorn_log(f'{client} - "{request.method} {request.path} {request.version}" {status} '
                                f"{HTTPStatus(status).phrase}", sys.stdout)
                await writer.drain()
                if not request.keep_alive:
                    return
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _respond(self, request: HttpRequest, reader, writer: asyncio.StreamWriter) -> int:
        result = await self.app.handle(request, reader, writer)
        if isinstance(result, int):
            return result
        headers = list(result.headers)
        headers.append(("content-length", str(len(result.body))))
        if result.content_type:
            headers.append(("content-type", result.content_type))
        if not request.keep_alive or self.closing:
            headers.append(("connection", "close"))
        writer.write(response_head(result.status, headers) + (b"" if request.method == "HEAD" else result.body))
        return result.status

    async def close(self, grace: float) -> None:
        self.closing = True
        if self.server is not None:
            self.server.close()
        for writer in list(self.idle):
            writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drained.wait(), grace)


# ----------------------------------------------------------------------------------------------------------------
# Start-up: the order of vLLM's own steps, each with its log lines and the failure it can raise.
# ----------------------------------------------------------------------------------------------------------------

LOGO = ("\n       █     █     █▄   ▄█\n"
        " ▄▄ ▄█ █     █     █ ▀▄▀ █  version {version}\n"
        "  █▄█▀ █     █     █     █  model   {model}\n"
        "   ▀▀  ▀▀▀▀▀ ▀▀▀▀▀ ▀     ▀\n")  # entrypoints/common/startup.py log_version_and_model (no colour)
OFFLINE_CONFIG_ERROR = ("OSError: We couldn't connect to '{endpoint}' to load the files, and couldn't find them in "
                        "the cached files.\nCheck your internet connection or see how to run the library in offline "
                        "mode at 'https://huggingface.co/docs/transformers/installation#offline-mode'.")
KV_OFFLOAD_CONNECTORS = ("OffloadingConnector", "CPUOffloadingConnector", "SimpleCPUOffloadConnector")
INDEXER_CACHE_LAYER = "model.layers.0.self_attn.indexer.k_cache"
# Bytes of KV cache per token for DeepSeek V3.2 (61 layers): MLA latent (512 + 64 rope) per layer, plus the sparse
# indexer's FP8 keys with scales (128 + 4).
KV_BYTES_PER_TOKEN = {"auto": 61 * (576 * 2 + 132), "bfloat16": 61 * (576 * 2 + 132), "float16": 61 * (576 * 2 + 132),
                      "fp8": 61 * (576 + 132), "fp8_e4m3": 61 * (576 + 132)}
ACTIVATION_PEAK_GIB = 6.0
CUDA_GRAPH_GIB = 0.52
WARM_CACHE_FRACTION = 0.1  # a warm cache loads in a tenth of the cold compile time


def pydantic_value_error(model: str, message: str) -> str:
    return (f"pydantic_core._pydantic_core.ValidationError: 1 validation error for {model}\n"
            f"  Value error, {message} [type=value_error, input_value=ArgsKwargs(...), input_type=ArgsKwargs]\n"
            f"    For further information visit https://errors.pydantic.dev/2.12/v/value_error")


class Startup:
    def __init__(self, args: argparse.Namespace, release: Release, log: VllmLog) -> None:
        self.args, self.release, self.log = args, release, log
        pid = os.getpid()
        self.api = Proc("APIServer", pid)
        self.core = Proc("EngineCore_DP0", pid + 97)
        self.began = 0.0
        self.engine_deadline: float | None = None

    def worker(self, rank: int) -> Proc:
        return Proc(f"Worker_TP{rank}", os.getpid() + 160 + rank)

    # -- failures
    def fail_api(self, frames: list[Frame], exception_line: str) -> None:
        print_traceback(frames, exception_line)
        raise StartupFailure(1)

    def fail_engine(self, exception_line: str, *, rank: int | None = 0, at_init: bool = False,
                    worker_frames: list[Frame] | None = None, core_frames: list[Frame] | None = None) -> None:
        """A failure inside the engine: the worker's (if any) and EngineCore's logged tracebacks, then the API
        server's own (v1/executor/multiproc_executor.py, v1/engine/core.py run_engine_core, v1/engine/utils.py)."""
        core_line = exception_line
        if rank is not None:
            worker_message = "WorkerProc failed to start." if at_init else "WorkerProc hit an exception."
            where = "multiproc_executor.py:1057" if at_init else "multiproc_executor.py:1189"
            self.log.error(self.worker(rank), where, worker_message + "\n"
                           + "\n".join(format_traceback(worker_frames or [], exception_line)))
            core_line = ("Exception: WorkerProc initialization failed due to an exception in a background process. "
                         "See stack trace for root cause." if at_init else
                         f"RuntimeError: Worker failed with error '{exception_line.split(': ', 1)[-1]}', please "
                         "check the stack trace above for the root cause")
        self.log.error(self.core, "core.py:1584", "EngineCore failed to start.\n" + "\n".join(format_traceback(
            [("v1/engine/core.py", 1551, "run_engine_core", "engine_core = EngineCoreProc(*args, **kwargs)"),
             *(core_frames or [])], core_line)))
        print_traceback(ENGINE_ARGS_FRAMES[:-1] + [
            ("entrypoints/launchers/api_server/entry.py", 93, "build_async_engine_client_from_engine_args",
             "async_llm = AsyncLLM.from_vllm_config("),
            ("v1/engine/utils.py", 1473, "wait_for_engine_startup", "raise RuntimeError(")],
            "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): "
            "{'EngineCore_DP0': 1}")
        raise StartupFailure(1)

    async def pause(self, seconds: float) -> None:
        """Time spent in a start-up step. With several API servers, they give up after VLLM_ENGINE_READY_TIMEOUT_S
        (v1/engine/core_client.py); a single API server waits for the engine as long as it takes."""
        if self.engine_deadline is not None and time.monotonic() + seconds > self.engine_deadline:
            await asyncio.sleep(max(0.0, self.engine_deadline - time.monotonic()))
            timeout = int(os.environ.get("VLLM_ENGINE_READY_TIMEOUT_S", "600"))
            self.fail_api(ENGINE_ARGS_FRAMES[:-1] + [("v1/engine/core_client.py", 763, "__init__",
                                                      "raise TimeoutError(")],
                          f"TimeoutError: Timed out waiting for engine core processes to start. This is often caused "
                          f"by slow weight loading for large models. Waited {timeout}s (configured by "
                          f"VLLM_ENGINE_READY_TIMEOUT_S). To increase the timeout, set the environment variable: "
                          f"VLLM_ENGINE_READY_TIMEOUT_S=<seconds>")
        await asyncio.sleep(seconds)

    # -- the steps
    def setup_server(self) -> socket.socket:
        """entrypoints/launchers/launcher.py setup_server: version, non-default args, parser names, the socket
        (bound now, listening only once the engine is up)."""
        args, log, api = self.args, self.log, self.api
        version = self.release.version
        if env_flag("VLLM_DISABLE_LOG_LOGO"):
            log.info(api, "startup.py:38", f"vLLM server version {version}, serving model {args.model}")
        else:
            log.info(api, "startup.py:38", LOGO.format(version=version, model=args.model))
        shown = {key: ("***" if key == "api_key" else value) for key, value in args.non_default.items()
                 if key not in ("subparser", "non_default")}
        log.info(api, "startup.py:96", f"non-default args: {shown}")
        setup_frames = CLI_FRAMES[:-1] + [
            ("entrypoints/launchers/api_server/entry.py", 177, "run_server",
             "listen_address, sock = setup_server(args, reuse_port=False)"),
            ("entrypoints/launchers/launcher.py", 431, "setup_server", "validate_api_server_args(args)")]
        if args.enable_auto_tool_choice and args.tool_call_parser not in TOOL_PARSERS:
            self.fail_api(setup_frames + [("entrypoints/common/cli_args.py", 615, "validate_api_server_args",
                                           "raise KeyError(")],
                          "KeyError: " + repr(f"invalid tool call parser: {args.tool_call_parser} "
                                              f"(chose from {{ {','.join(TOOL_PARSERS)} }})"))
        if self.reasoning_parser and self.reasoning_parser not in REASONING_PARSERS:
            self.fail_api(setup_frames + [("entrypoints/common/cli_args.py", 624, "validate_api_server_args",
                                           "raise KeyError(")],
                          "KeyError: " + repr(f"invalid reasoning parser: {self.reasoning_parser} "
                                              f"(chose from {{ {','.join(REASONING_PARSERS)} }})"))
        try:
            if args.uds:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.bind(args.uds)
            else:
                family = socket.AF_INET6 if ":" in (args.host or "") else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((args.host or "", self.port))
        except OSError as error:
            self.fail_api(setup_frames[:-1] + [
                ("entrypoints/launchers/launcher.py", 442, "setup_server",
                 "sock = create_server_socket(sock_addr, reuse_port=reuse_port)"),
                ("entrypoints/launchers/launcher.py", 406, "create_server_socket", "sock.bind(addr)")],
                f"OSError: [Errno {error.errno}] {error.strerror}")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < min(hard, 65535):  # utils/system_utils.py set_ulimit
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65535), hard))
        return sock

    @property
    def port(self) -> int:
        return self.args.port if self.args.port is not None else 8000

    @property
    def reasoning_parser(self) -> str:
        value = self.args.reasoning_parser or ""
        return "" if value.lower() == "none" else value

    def listen_address(self) -> str:
        if self.args.uds:
            return f"unix:{self.args.uds}"
        host = self.args.host or "0.0.0.0"
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def engine_config(self) -> dict:
        """engine/arg_utils.py create_engine_config: the device, the model's config.json, model/cache/parallel
        settings. Returns what the engine and the API need."""
        args, log, api = self.args, self.log, self.api
        frames = list(ENGINE_ARGS_FRAMES)
        gpus = discover_gpus()
        if gpus.count == 0:
            # No /dev/kfd or render node: amdsmi finds no GPU, vLLM falls back to UnspecifiedPlatform whose
            # device type "" reaches torch.device("") (config/device.py __post_init__).
            self.fail_api(frames + [
                ("engine/arg_utils.py", 2058, "create_engine_config",
                 "device_config = DeviceConfig(device=cast(Device, current_platform.device_type))"),
                ("config/device.py", 76, "__post_init__", "self.device = torch.device(self.device_type)")],
                "RuntimeError: Device string must not be empty")
        try:
            snapshot = resolve_snapshot(args.model, args.revision)
        except ConfigNotCached:
            self.fail_api(frames + [
                ("engine/arg_utils.py", 2069, "create_engine_config", "maybe_override_with_speculators("),
                ("transformers_utils/config.py", 832, "maybe_override_with_speculators",
                 "config_dict, _ = PreTrainedConfig.get_config_dict("),
                ("!/usr/local/lib/python3.12/dist-packages/transformers/utils/hub.py", 621, "cached_files",
                 "raise OSError(")],
                OFFLINE_CONFIG_ERROR.format(endpoint=hf_endpoint()))
        try:
            with open(os.path.join(snapshot, "config.json"), encoding="utf-8") as handle:
                hf_config = json.load(handle)
        except ValueError:
            self.fail_api(frames, f"OSError: It looks like the config file at '{snapshot}/config.json' is not a "
                                  "valid JSON file.")
        architecture = (hf_config.get("architectures") or ["DeepseekV32ForCausalLM"])[0]
        model_frames = frames + [("engine/arg_utils.py", 2079, "create_engine_config",
                                  "model_config = self.create_model_config()")]
        log.info(api, "model.py:744", f"Resolved architecture: {architecture}")
        tokenizer_mode = (args.tokenizer_mode or "auto").lower()
        if tokenizer_mode == "auto" and architecture == "DeepseekV32ForCausalLM" \
                and self.release.defaults_tokenizer_mode_for_dsv32:
            tokenizer_mode = "deepseek_v32"
            log.info(api, "model.py:770", f"Defaulting to tokenizer_mode='deepseek_v32' for {architecture}")
        checkpoint_quant = (hf_config.get("quantization_config") or {}).get("quant_method")
        if args.quantization and checkpoint_quant and args.quantization != checkpoint_quant:
            self.fail_api(model_frames, pydantic_value_error(
                "ModelConfig", f"Quantization method specified in the model config ({checkpoint_quant}) does not "
                               f"match the quantization method specified in the `quantization` argument "
                               f"({args.quantization})."))
        derived = int(hf_config.get("max_position_embeddings") or 163840)
        max_model_len = derived if args.max_model_len in (None, -1) else args.max_model_len
        if max_model_len > derived and not env_flag("VLLM_ALLOW_LONG_MAX_MODEL_LEN"):
            self.fail_api(model_frames, pydantic_value_error(
                "ModelConfig", f"User-specified max_model_len ({max_model_len}) is greater than the derived "
                               f"max_model_len (max_position_embeddings={derived} or model_max_length=None in "
                               f"model's config.json). To allow overriding this maximum, set the env var "
                               f"VLLM_ALLOW_LONG_MAX_MODEL_LEN=1. VLLM_ALLOW_LONG_MAX_MODEL_LEN must be used with "
                               f"extreme caution. If the model uses relative position encoding (RoPE), positions "
                               f"exceeding derived_max_model_len lead to nan. If the model uses absolute position "
                               f"encoding, positions exceeding derived_max_model_len will cause a CUDA array "
                               f"out-of-bounds error."))
        log.info(api, "model.py:2170", f"Using max model len {max_model_len}")
        kv_dtype = args.kv_cache_dtype or "auto"
        if kv_dtype not in ("auto", "float16", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc", "fp8_ds_mla"):
            self.fail_api(frames, pydantic_value_error(
                "CacheConfig", f"Invalid kv_cache_dtype: {kv_dtype!r}. Valid values are: ['auto', 'float16', "
                               f"'bfloat16', 'fp8', 'fp8_e4m3', 'fp8_e5m2', 'fp8_inc', 'fp8_ds_mla', ...]"))
        if kv_dtype.startswith("fp8"):
            log.info(api, "cache.py:484", f"Using {kv_dtype} data type to store kv cache. It reduces the GPU memory "
                                          "footprint and boosts the performance. Meanwhile, it may cause accuracy "
                                          "drop without a proper scaling factor")
        transfer = args.kv_transfer_config or {}
        offloading = (isinstance(transfer, dict) and transfer.get("kv_connector") in KV_OFFLOAD_CONNECTORS) \
            or bool(args.kv_offloading_size)
        return {"gpus": gpus, "snapshot": snapshot, "hf_config": hf_config, "architecture": architecture,
                "tokenizer_mode": tokenizer_mode, "max_model_len": max_model_len, "kv_dtype": kv_dtype,
                "quantization": args.quantization or checkpoint_quant, "offloading": offloading}

    def config_summary(self, config: dict) -> str:
        args = self.args
        return (f"model='{args.model}', speculative_config=None, tokenizer='{args.model}', skip_tokenizer_init=False, "
                f"tokenizer_mode={config['tokenizer_mode']}, revision={args.revision}, tokenizer_revision=None, "
                f"trust_remote_code={bool(args.trust_remote_code)}, dtype=torch.bfloat16, "
                f"max_seq_len={config['max_model_len']}, download_dir={args.download_dir}, "
                f"load_format={args.load_format or 'auto'}, tensor_parallel_size={args.tensor_parallel_size or 1}, "
                f"pipeline_parallel_size={args.pipeline_parallel_size or 1}, data_parallel_size=1, "
                f"quantization={config['quantization']}, enforce_eager={bool(args.enforce_eager)}, "
                f"kv_cache_dtype={config['kv_dtype']}, device_config=cuda, "
                f"structured_outputs_config=StructuredOutputsConfig(backend='auto', "
                f"reasoning_parser='{self.reasoning_parser}'), seed=0, "
                f"served_model_name={(args.served_model_name or [args.model])[0]}, enable_prefix_caching=True, "
                f"enable_chunked_prefill=True, block_size={args.block_size or 1}")

    async def start_engine(self, config: dict) -> dict:
        """v1/engine/core.py EngineCore + v1/executor/multiproc_executor.py workers: devices, attention backend,
        weights, profile run, KV cache, CUDA graphs. Returns the KV cache size; raises StartupFailure."""
        args, log, release = self.args, self.log, self.release
        gpus: Gpus = config["gpus"]
        world = (args.tensor_parallel_size or 1) * (args.pipeline_parallel_size or 1)
        began = time.monotonic()
        if (args.api_server_count or 1) > 1:
            self.engine_deadline = began + int(os.environ.get("VLLM_ENGINE_READY_TIMEOUT_S", "600"))
        log.info(self.core, "core.py:140",
                 f"Initializing a V1 LLM engine (v{release.version}) with config: {self.config_summary(config)}")
        worker0 = self.worker(0)
        init_frames: list[Frame] = [
            ("v1/executor/multiproc_executor.py", 1040, "worker_main", "worker = WorkerProc(*args, **kwargs)"),
            ("v1/executor/multiproc_executor.py", 790, "__init__", "self.worker.init_device()"),
        ]
        if world > gpus.count:
            # v1/worker/gpu_worker.py init_device; ParallelConfig checks the GPU count only on CUDA.
            check = ("v1/worker/gpu_worker.py", 487, "init_device",
                     "assert self.local_rank < torch.accelerator.device_count(), (")
            self.fail_engine(f"AssertionError: DP adjusted local rank {gpus.count} is out of bounds for "
                             f"{gpus.count} devices.", rank=gpus.count, at_init=True,
                             worker_frames=[*init_frames, check],
                             core_frames=[("v1/executor/multiproc_executor.py", 891, "wait_for_ready", "raise e")])
        load_frames = init_frames[:1] + [
            ("v1/executor/multiproc_executor.py", 802, "__init__", "self.worker.load_model()"),
            ("v1/worker/gpu_worker.py", 386, "load_model", "self.model_runner.load_model(load_dummy_weights=...)"),
            ("model_executor/model_loader/base_loader.py", 64, "load_model", "self.load_weights(model, model_config)")]
        block_size = args.block_size if args.block_size is not None else 1
        if release.checks_sparse_backend_in_selector:
            select_frames = load_frames[:3] + [("platforms/rocm.py", 366, "get_attn_backend_cls", "raise ValueError(")]
            if config["kv_dtype"].startswith("fp8"):
                self.fail_engine("ValueError: ROCMAiterMLASparseBackend doesn't support fp8 kv_cache_dtype.",
                                 at_init=True, worker_frames=select_frames)
            if block_size != 1:
                self.fail_engine("AssertionError: Sparse MLA backend on ROCm only supports block size 1 for now.",
                                 at_init=True, worker_frames=select_frames[:-1] + [
                                     ("platforms/rocm.py", 369, "get_attn_backend_cls", "assert block_size == 1, (")])
            log.info(worker0, "rocm.py:372", "Using Sparse MLA backend.", once=True)
        else:
            log.info(worker0, "rocm.py:904", "Using ROCM_AITER_MLA_SPARSE backend out of potential backends: "
                                             "['ROCM_AITER_MLA_SPARSE'].", once=True)
        load_started = time.monotonic()
        weights_gib = env_float("SIM_MODEL_WEIGHTS_GIB", 642.0) / world
        if weights_gib > gpus.memory_gib:
            self.fail_engine(f"torch.OutOfMemoryError: HIP out of memory. Tried to allocate 7.00 GiB. GPU 0 has a "
                             f"total capacity of {gpus.memory_gib:.2f} GiB of which 0 bytes is free. Of the allocated "
                             f"memory {gpus.memory_gib - 1:.2f} GiB is allocated by PyTorch, and 0.50 GiB is reserved "
                             f"by PyTorch but unallocated.", at_init=True, worker_frames=load_frames)
        fraction = await self.load_weights(config, load_frames)
        aiter = env_flag("VLLM_ROCM_USE_AITER", "False")
        fp8_bmm = aiter and env_flag("VLLM_ROCM_USE_AITER_FP8BMM", "1" if release.fp8_bmm_default else "0")
        if fp8_bmm:
            await self.fp8_bmm_precompile(gpus)
        log.info(worker0, "gpu_model_runner.py:5089", f"Model loading took {weights_gib:.2f} GiB memory and "
                                                      f"{time.monotonic() - load_started:.6f} seconds")
        profile_started = time.monotonic()
        if not args.enforce_eager:
            await self.torch_compile(config, world)
        if not aiter and not (gpus.arch == "gfx950" and release.indexer_runs_natively_on_gfx950):
            self.fail_engine(f"RuntimeError: {release.aiter_indexer_error()}", worker_frames=[
                ("v1/executor/multiproc_executor.py", 1180, "worker_busy_loop", "output = func(*args, **kwargs)"),
                ("v1/worker/gpu_worker.py", 612, "determine_available_memory", "self.model_runner.profile_run()"),
                ("model_executor/layers/sparse_attn_indexer.py", 1204, "forward_hip", "raise RuntimeError(")],
                core_frames=[("v1/engine/core.py", 255, "_initialize_kv_caches",
                              "available_gpu_memory = self.model_executor.determine_available_memory()")])
        util = args.gpu_memory_utilization if args.gpu_memory_utilization is not None else 0.9
        available_gib = gpus.memory_gib * util - weights_gib - ACTIVATION_PEAK_GIB
        kv_frames = [("v1/engine/core.py", 268, "_initialize_kv_caches", "kv_cache_configs = get_kv_cache_configs(")]
        if available_gib <= 0:
            self.fail_engine("ValueError: No available memory for the cache blocks. Try increasing "
                             "`gpu_memory_utilization` when initializing the engine (this flag also controls CPU "
                             "memory reservation on the CPU backend, despite its name). See "
                             "https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details.",
                             rank=None, core_frames=kv_frames)
        per_token = KV_BYTES_PER_TOKEN.get(config["kv_dtype"], KV_BYTES_PER_TOKEN["auto"])
        kv_tokens = int(available_gib * 2**30 / per_token)
        max_model_len = config["max_model_len"]
        if kv_tokens < max_model_len:
            self.fail_engine(f"ValueError: To serve at least one request with the model's max seq len "
                             f"({max_model_len}), ({max_model_len * per_token / 2**30:.2f} GiB KV cache is needed, "
                             f"which is larger than the available KV cache memory ({available_gib:.2f} GiB). Based "
                             f"on the available memory, the estimated maximum model length is {kv_tokens}. Try "
                             f"increasing `gpu_memory_utilization` (which also controls CPU memory on the CPU backend) "
                             f"or decreasing `max_model_len` when initializing the engine. See "
                             f"https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details.",
                             rank=None, core_frames=kv_frames)
        log.info(worker0, "gpu_worker.py:773", f"Available KV cache memory: {available_gib:.2f} GiB")
        log.info(self.core, "kv_cache_utils.py:1147",
                 f"GPU KV cache size: {kv_tokens:,} tokens, Maximum concurrency for {max_model_len:,} tokens per "
                 f"request: {kv_tokens / max_model_len:.2f}x")
        if config["offloading"] and release.offloading_misses_indexer_cache:
            self.fail_engine(f"KeyError: '{INDEXER_CACHE_LAYER}'", worker_frames=[
                ("v1/worker/gpu_worker.py", 655, "initialize_from_config",
                 "self.model_runner.initialize_kv_cache(kv_cache_config)"),
                ("distributed/kv_transfer/kv_connector/v1/offloading_connector.py", 600, "register_kv_caches",
                 "layer_name: layers[layer_name].get_attn_backend()")],
                core_frames=[("v1/engine/core.py", 281, "_initialize_kv_caches",
                              "self.model_executor.initialize_from_config(kv_cache_configs)")])
        if aiter and gpus.arch == "gfx942" and os.environ.get("AITER_ENABLE_VSKIP", "1") != "0":
            self.vskip_crash(gpus)
        if not args.enforce_eager:
            capture = env_float("SIM_GRAPH_CAPTURE_SECONDS", 0.3)
            await self.pause(capture)
            log.info(worker0, "gpu_model_runner.py:6517",
                     f"Graph capturing finished in {round(capture)} secs, took {CUDA_GRAPH_GIB:.2f} GiB")
        log.info(self.core, "core.py:413", "init engine (profile, create kv cache, warmup model) took "
                                           f"{time.monotonic() - profile_started:.2f} s")
        return {"kv_tokens": kv_tokens, "garbled": fraction < 1.0 or (args.load_format == "dummy")}

    async def load_weights(self, config: dict, frames: list[Frame]) -> float:
        """model_executor/model_loader/default_loader.py: the snapshot's *.safetensors, filtered by the index;
        each shard's header as safetensors reads it. Missing shards are not an error there (an FP8 checkpoint is
        not weight-tracked): the model runs with uninitialised weights. Returns the fraction loaded."""
        args, log = self.args, self.log
        worker0 = self.worker(0)
        started = time.monotonic()
        if args.load_format == "dummy":
            await self.pause(0.05)
            log.info(worker0, "default_loader.py:507", f"Loading weights took {time.monotonic() - started:.2f} "
                                                       "seconds")
            return 0.0
        weights = find_weights(config["snapshot"])
        weight_frames = frames + [
            ("model_executor/model_loader/default_loader.py", 495, "load_weights",
             "loaded_weights = model.load_weights(self.get_all_weights(model_config, model))"),
            ("model_executor/model_loader/weight_utils.py", 1140, "safetensors_weights_iterator",
             "with safe_open(st_file, framework=\"pt\") as f:")]
        if not weights.files:
            self.fail_engine(f"RuntimeError: Cannot find any model weights with `{args.model}`", at_init=True,
                             worker_frames=frames + [("model_executor/model_loader/default_loader.py", 259,
                                                      "_prepare_weights", "raise RuntimeError(")])
        if not weights.index_found and len(weights.files) > 1:
            log.info(worker0, "weight_utils.py:580", "No model.safetensors.index.json found in local cache.")
        for path in weights.files:
            try:
                check_safetensors(path)
            except ShardError as error:
                self.fail_engine(error.exception_line, at_init=True, worker_frames=weight_frames)
        fraction = min(1.0, len(weights.files) / max(1, weights.expected))
        await self.pause(env_float("SIM_LOAD_SECONDS", 3.0) * fraction)
        log.info(worker0, "default_loader.py:507", f"Loading weights took {time.monotonic() - started:.2f} seconds")
        return fraction

    async def fp8_bmm_precompile(self, gpus: Gpus) -> None:
        """AITER's Triton FP8 BMM kernels, pre-compiled for batch sizes 1..1024 after loading
        (model_executor/layers/attention/mla_attention.py); Triton keeps them in its cache directory."""
        cache = KernelCache(os.path.join(triton_cache_dir(), cache_key("fp8_bmm", gpus.arch, self.release.version)),
                            "batched_gemm_a8w8_a_per_token_group_prequant_w_per_batched_tensor_quant.json")
        warm = cache.warm
        seconds = env_float("SIM_WARMUP_SECONDS", 2.0) * (WARM_CACHE_FRACTION if warm else 1.0)
        started = time.monotonic()
        await self.pause(seconds)
        elapsed = time.monotonic() - started
        sys.stderr.write(f"[Aiter Triton] Pre-compiling fp8 BMM kernel: 100%|██████████| 1024/1024 "
                         f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}<00:00, {1024 / max(elapsed, 1e-3):.2f}"
                         f"it/s]\n")
        sys.stderr.flush()
        if not warm and (problem := cache.fill({"arch": gpus.arch, "kernel": "fp8_bmm"})):
            self.log.warning(self.worker(0), "mla_attention.py:1320", f"Triton cache not written: {problem}")

    async def torch_compile(self, config: dict, world: int) -> None:
        """vLLM's torch.compile cache (compilation/backends.py) under VLLM_CACHE_ROOT/torch_compile_cache."""
        args, log, worker0 = self.args, self.log, self.worker(0)
        key = cache_key(self.release.version, args.model, args.revision, world, config["quantization"],
                        config["kv_dtype"], args.block_size, config["max_model_len"])
        directory = os.path.join(vllm_cache_root(), "torch_compile_cache", key, "rank_0_0", "backbone")
        cache = KernelCache(directory, "vllm_compile_cache.py")
        warm = cache.warm
        log.info(worker0, "backends.py:1126", f"Using cache directory: {directory} for vLLM's torch.compile")
        seconds = env_float("SIM_COMPILE_SECONDS", 1.0) * (WARM_CACHE_FRACTION if warm else 1.0)
        await self.pause(seconds)
        if warm:
            log.info(worker0, "backends.py:311", "Directly load the compiled graph(s) for compile range (1, 16384) "
                                                 f"from the cache, took {seconds:.3f} s")
        else:
            log.info(worker0, "backends.py:418",
                     f"Compiling a graph for compile range (1, 16384) takes {seconds:.2f} s")
            if problem := cache.fill({"model": args.model, "world": world}):
                log.warning(worker0, "backends.py:1126", f"torch.compile cache not written: {problem}")
        log.info(worker0, "monitor.py:34", f"torch.compile took {seconds:.2f} s in total")

    def vskip_crash(self, gpus: Gpus) -> None:
        """AITER's MLA decode kernel with AITER_ENABLE_VSKIP unset (true) faults on MI300X/MI325X during the
        warm-up: the HIP runtime aborts the worker, the executor notices, the engine fails to start."""
        sys.stderr.write("Memory access fault by GPU node-2 (Agent handle: 0x55d1c2a3e7f0) on address "
                         "0x7f2b4c000000. Reason: Unknown.\n")
        sys.stderr.flush()
        self.log.error(self.core, "multiproc_executor.py:380",
                       "Worker proc VllmWorker-0 died unexpectedly (exit code: -6), shutting down executor.")
        self.fail_engine("RuntimeError: Executor failed.", rank=None, core_frames=[
            ("v1/engine/core.py", 300, "_initialize_kv_caches", "self.model_executor.compile_or_warm_up_model()"),
            ("v1/executor/multiproc_executor.py", 464, "collective_rpc", 'raise RuntimeError("Executor failed.")')])


# ----------------------------------------------------------------------------------------------------------------
# Serving, and shutdown on SIGTERM (entrypoints/launchers/launcher.py serve_http, v1/engine/core.py).
# ----------------------------------------------------------------------------------------------------------------

INTERRUPTED = -2  # start-up interrupted by SIGTERM: exit as Python does on an uncaught KeyboardInterrupt
# "Available routes are:" (launchers/launcher.py serve_http): app.routes in order. SageMaker's bootstrap replaces
# GET /ping and POST /invocations, which moves them to the end.
ROUTE_LIST = (("/openapi.json", "GET, HEAD"), ("/docs", "GET, HEAD"), ("/docs/oauth2-redirect", "GET, HEAD"),
              ("/redoc", "GET, HEAD"), ("/load", "GET"), ("/version", "GET"), ("/kv_event_sources", "GET"),
              ("/health", "GET"), ("/metrics", "GET"), ("/tokenize", "POST"), ("/detokenize", "POST"),
              ("/v1/models", "GET"), ("/ping", "POST"), ("/v1/chat/completions", "POST"), ("/v1/completions", "POST"),
              ("/generative_scoring", "POST"), ("/scale_elastic_ep", "POST"), ("/is_scaling_elastic_ep", "POST"),
              ("/ping", "GET"), ("/invocations", "POST"))


def fingerprint(args: argparse.Namespace, release: Release, config: dict) -> str | None:
    """entrypoints/serve/utils/fingerprint.py: vllm-<version>[-tpN][-ppN]-<hash8>."""
    mode = args.fingerprint_mode or "full"
    if mode == "none":
        return None
    if mode == "custom":
        return args.fingerprint_value
    digest = cache_key(args.model, args.revision, config["quantization"], config["kv_dtype"])[:8]
    parts = [f"vllm-{release.version}"]
    if mode == "full":
        parts += [f"{name}{size}" for name, size in (("tp", args.tensor_parallel_size or 1),
                                                      ("pp", args.pipeline_parallel_size or 1)) if size > 1]
    return "-".join(parts + [digest])


async def log_stats(log: VllmLog, api: Proc, engine: Engine, metrics: Metrics, interval: float) -> None:
    """v1/metrics/loggers.py LoggingStatLogger: one line per interval while the engine is busy."""
    last = (time.monotonic(), metrics.prompt_tokens, metrics.generation_tokens)
    while True:
        await asyncio.sleep(interval)
        now = time.monotonic()
        prompt_rate = (metrics.prompt_tokens - last[1]) / (now - last[0])
        generation_rate = (metrics.generation_tokens - last[2]) / (now - last[0])
        last = (now, metrics.prompt_tokens, metrics.generation_tokens)
        if engine.unfinished or prompt_rate or generation_rate:
            log.info(api, "loggers.py:335",
                     f"Engine 000: Avg prompt throughput: {prompt_rate:.1f} tokens/s, Avg generation throughput: "
                     f"{generation_rate:.1f} tokens/s, Running: {engine.running} reqs, Waiting: "
                     f"{len(engine.waiting)} reqs, GPU KV cache usage: {engine.kv_usage() * 100:.1f}%, Prefix cache "
                     f"hit rate: 0.0%")


async def serve(args: argparse.Namespace, release: Release, log: VllmLog) -> int:
    startup = Startup(args, release, log)
    api, core = startup.api, startup.core
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    stop = asyncio.Event()
    phase = {"ready": False, "signal": "SIGTERM"}

    def on_signal(name: str) -> None:
        if phase["ready"]:
            phase["signal"] = name
            stop.set()
        else:
            main_task.cancel()  # entry.py run_server: `_interrupt_init` raises KeyboardInterrupt("terminated")

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signal.Signals(signum).name)
    try:
        sock = startup.setup_server()
        config = startup.engine_config()
        engine_info = await startup.start_engine(config)
    except StartupFailure as failure:
        return failure.exit_code
    except asyncio.CancelledError:
        print_traceback(CLI_FRAMES + [("entrypoints/launchers/api_server/entry.py", 170, "_interrupt_init",
                                       'raise KeyboardInterrupt("terminated")')], "KeyboardInterrupt: terminated")
        return INTERRUPTED

    served = args.served_model_name or [args.model]
    max_model_len = config["max_model_len"]
    deployment = Deployment(
        model=args.model, served_names=served, max_model_len=max_model_len,
        has_chat_template=config["tokenizer_mode"] == "deepseek_v32" or args.chat_template is not None,
        auto_tools=bool(args.enable_auto_tool_choice and args.tool_call_parser),
        reasoning_parser=startup.reasoning_parser,
        default_chat_template_kwargs=args.default_chat_template_kwargs or {},
        api_keys=[key for key in (args.api_key or [os.environ.get("VLLM_API_KEY")]) if key],
        fingerprint=fingerprint(args, release, config), garbled=engine_info["garbled"],
        log_requests=bool(args.enable_log_requests), release=release,
        trust_request_chat_template=bool(args.trust_request_chat_template), tokenizer_mode=config["tokenizer_mode"],
        server_load_tracking=bool(args.enable_server_load_tracking),
        docs="none" if args.disable_fastapi_docs else "offline" if args.enable_offline_docs else "online",
        data_parallel_size=args.data_parallel_size or 1)
    metrics = Metrics(served[0], max_model_len)
    engine = Engine(stream_rate=env_float("SIM_TOKENS_PER_SECOND_PER_STREAM", 100.0),
                    capacity=env_float("SIM_MAX_TOKENS_PER_SECOND", 5700.0),
                    ttft=env_float("SIM_TTFT_SECONDS", 0.2), prefill_rate=env_float("SIM_PREFILL_TOKENS_PER_SECOND", 0),
                    max_num_seqs=args.max_num_seqs or 1024, kv_tokens=engine_info["kv_tokens"], metrics=metrics,
                    tick=env_float("SIM_ENGINE_TICK_SECONDS", 0.002))
    app = App(deployment, engine, metrics, log, api)
    log.info(api, "entry.py:135", "Supported tasks: ('generate',)")
    if deployment.auto_tools:
        log.info(api, "parser_manager.py:36", '"auto" tool choice has been enabled.')
    log.info(api, "entry.py:139", release.server_start_message % startup.listen_address())
    log.info(api, "launcher.py:188", "Available routes are:")
    for path, method in ROUTE_LIST:
        if path in app.routes:
            log.info(api, "launcher.py:197", f"Route: {path}, Methods: {method}")
    quiet = {path.strip() for path in (args.disable_access_log_for_endpoints or "").split(",") if path.strip()}
    http = HttpServer(app, sock, access_log=not args.disable_uvicorn_access_log, quiet_paths=quiet,
                      keep_alive=env_float("VLLM_HTTP_TIMEOUT_KEEP_ALIVE", 5))
    uvicorn_log(f"Started server process [{os.getpid()}]")
    uvicorn_log("Waiting for application startup.")
    uvicorn_log("Application startup complete.")
    await http.start()
    phase["ready"] = True
    stats = None
    if not args.disable_log_stats:
        stats = asyncio.ensure_future(log_stats(log, api, engine, metrics,
                                                env_float("VLLM_LOG_STATS_INTERVAL", 10.0)))
    await stop.wait()

    timeout = (args.shutdown_timeout or 0) if release.has_shutdown_timeout else 0
    mode = "abort" if timeout == 0 else "drain"
    log.info(api, "launcher.py:256", "[shutdown] API server: shutdown triggered")
    log.info(api, "launcher.py:273", f"[shutdown] API server: stopping engine client mode={mode} timeout={timeout}s")
    log.info(api, "core_client.py:792", f"[shutdown] MPClient: start timeout={timeout}s")
    log.info(api, "core_client.py:794", "[shutdown] MPClient: stopping engine manager")
    log.info(core, "core.py:1526", f"[shutdown] EngineCore: trigger received signal={phase['signal']}")
    log.info(core, "core.py:1713", f"[shutdown] EngineCore: start mode={mode} timeout={timeout}s")
    engine.accepting = False
    in_flight = engine.unfinished
    if mode == "abort":
        if in_flight:
            log.info(core, "core.py:1722", f"[shutdown] EngineCore: aborting in-flight requests count={in_flight}")
        engine.abort_all()
    else:
        if in_flight:
            log.info(core, "core.py:1733", f"[shutdown] EngineCore: draining in-flight requests count={in_flight} "
                                           f"timeout={timeout}s")
        try:
            await asyncio.wait_for(engine.idle.wait(), timeout)
        except TimeoutError:
            engine.abort_all()  # the engine process is stopped after the timeout
    log.info(core, "core.py:1743", "[shutdown] EngineCore: request processing complete; starting resource teardown")
    log.info(core, "core.py:1573", "[shutdown] EngineCore: exiting busy loop")
    for message in ("engine manager stopped", "cleaning up background resources", "complete"):
        log.info(api, "core_client.py:796", f"[shutdown] MPClient: {message}")
    log.info(api, "launcher.py:281", "[shutdown] API server: engine client stopped")
    log.info(api, "launcher.py:284", "[shutdown] API server: signalling HTTP server shutdown")
    log.info(api, "launcher.py:306", "[shutdown] API server: shutting down FastAPI HTTP server")
    if stats is not None:
        stats.cancel()
    uvicorn_log("Shutting down")
    await http.close(grace=5.0)
    uvicorn_log("Waiting for application shutdown.")
    uvicorn_log("Application shutdown complete.")
    uvicorn_log(f"Finished server process [{os.getpid()}]")
    return 0


def main(argv: list[str]) -> int:
    log = VllmLog()
    release = Release(os.environ.get("VLLM_STANDIN_VERSION", DEFAULT_VERSION))
    try:
        args = parse_serve_command(argv, log)
    except ValueError as error:  # FlexibleArgumentParser.parse_args raises before argparse runs
        print_traceback(CLI_FRAMES[:2] + [("utils/argparse_utils.py", 356, "parse_args", "raise ValueError(")],
                        f"ValueError: {error}")
        return 1
    validate_frames = [CLI_FRAMES[0], ("entrypoints/cli/main.py", 100, "main", "cmd.validate(args)"),
                       ("entrypoints/cli/serve.py", 159, "validate", "validate_parsed_serve_args(args)")]
    if args.enable_auto_tool_choice and not args.tool_call_parser:  # cli_args.py validate_parsed_serve_args
        print_traceback(validate_frames, "TypeError: Error: --enable-auto-tool-choice requires --tool-call-parser")
        return 1
    if args.enable_log_outputs and not args.enable_log_requests:
        print_traceback(validate_frames, "TypeError: Error: --enable-log-outputs requires --enable-log-requests")
        return 1
    code = asyncio.run(serve(args, release, log))
    if code == INTERRUPTED:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
