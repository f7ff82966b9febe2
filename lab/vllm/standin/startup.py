"""Start-up: the order of vLLM's own steps, each with its log lines and the failure it can raise."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import sys
import time

from .container import (ConfigNotCached, Gpus, KernelCache, ShardError, cache_key, check_safetensors, discover_gpus,
                        env_flag, env_float, find_weights, hf_endpoint, resolve_snapshot, triton_cache_dir,
                        vllm_cache_root)
from .log import CLI_FRAMES, ENGINE_ARGS_FRAMES, Frame, Proc, StartupFailure, VllmLog, format_traceback, print_traceback
from .options import REASONING_PARSERS, TOOL_PARSERS
from .releases import Release

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
