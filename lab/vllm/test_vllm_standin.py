"""The vLLM stand-in as a deployment sees it: `vllm serve`'s command line, the start-up refusals with vLLM's texts
and exit codes, start-up time with cold and warm kernel caches, the HTTP API's shapes and errors, throughput that
saturates under concurrency, and SIGTERM. Every server is a real subprocess on a free 127.0.0.1 port."""

import asyncio
import json
import os
import pathlib
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Self

import pytest
import requests

HERE = pathlib.Path(__file__).resolve().parent
STANDIN = HERE / "vllm_standin.py"
SIMULATOR = HERE.parent / "node" / "simulate-amd-gpus"
MODEL = "deepseek-ai/DeepSeek-V3.2"
COMMIT = "3f1a2b4c5d6e7f8091a2b3c4d5e6f708192a3b4c"
WITHOUT_BLOCK_SIZE = ["--tensor-parallel-size", "8", "--quantization", "fp8", "--tokenizer-mode", "deepseek_v32",
                      "--tool-call-parser", "deepseek_v32", "--enable-auto-tool-choice", "--reasoning-parser",
                      "deepseek_v3"]
FULL_FEATURES = ["--block-size", "1", *WITHOUT_BLOCK_SIZE]  # the vendor guide's "Full Features Configuration"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get weather for a location",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}
TRAIN_QUESTION = ("Solve step by step: If a train travels 120km in 2 hours, and then 180km in 3 hours, what is the "
                  "average speed?")
FAST = {"SIM_LOAD_SECONDS": "0.05", "SIM_WARMUP_SECONDS": "0.05", "SIM_COMPILE_SECONDS": "0.05",
        "SIM_GRAPH_CAPTURE_SECONDS": "0.02", "SIM_TTFT_SECONDS": "0.02", "SIM_TOKENS_PER_SECOND_PER_STREAM": "2000",
        "SIM_MAX_TOKENS_PER_SECOND": "20000"}


# ------------------------------------------------------------------------------------------------------ fixtures
def write_shard(path: pathlib.Path, tensor: str, data_bytes: int = 64) -> None:
    header = json.dumps({tensor: {"dtype": "F8_E4M3", "shape": [data_bytes], "data_offsets": [0, data_bytes]}})
    header += " " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + bytes(data_bytes))


def make_hf_cache(root: pathlib.Path, shards: int = 4) -> pathlib.Path:
    """A Hugging Face cache holding a (tiny) DeepSeek V3.2 snapshot, laid out as huggingface_hub leaves it."""
    repo = root / "hub" / f"models--{MODEL.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (snapshot / "config.json").write_text(json.dumps({
        "architectures": ["DeepseekV32ForCausalLM"], "model_type": "deepseek_v32", "max_position_embeddings": 163840,
        "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}}))
    weight_map = {}
    for index in range(1, shards + 1):
        name = f"model-{index:05d}-of-{shards:06d}.safetensors"
        write_shard(snapshot / name, f"model.layers.{index}.mlp.weight")
        weight_map[f"model.layers.{index}.mlp.weight"] = name
    (snapshot / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return snapshot


def make_devices(root: pathlib.Path, gpus: int = 8, kfd: bool = True) -> pathlib.Path:
    (root / "dri").mkdir(parents=True)
    if kfd:
        (root / "kfd").touch()
    for index in range(gpus):
        (root / "dri" / f"card{index}").touch()
        (root / "dri" / f"renderD{128 + index}").touch()
    return root


def container_env(tmp: pathlib.Path) -> dict:
    """The environment the service gives the container (AITER on, VSKIP off, offline hub), on a fresh node."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SIM_", "VLLM_", "HF_", "AITER", "TRITON", "XDG_"))}
    env.update(FAST, HOME=str(tmp / "home"), HF_HOME=str(tmp / "hf"), HF_HUB_OFFLINE="1",
               SIM_DEV_ROOT=str(make_devices(tmp / "dev")), SIM_SYSFS_ROOT=str(tmp / "sys"),
               VLLM_ROCM_USE_AITER="1", AITER_ENABLE_VSKIP="0")
    return env


@pytest.fixture
def node(tmp_path):
    """A container's view: 8 GPU device nodes, the weights in the HF cache, the image's mandatory environment."""
    snapshot = make_hf_cache(tmp_path / "hf")
    return {"env": container_env(tmp_path), "snapshot": snapshot, "tmp": tmp_path}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_standin(env: dict, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(STANDIN), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


class Server:
    """`vllm serve` as a subprocess; its stdout/stderr go to files so a chatty server never blocks on a pipe."""

    def __init__(self, env: dict, tmp: pathlib.Path, *args: str, name: str = "server") -> None:
        self.port = free_port()
        self.started = time.monotonic()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path, self.stderr_path = tmp / f"{name}.out", tmp / f"{name}.err"
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(STANDIN), "serve", MODEL, "--host", "127.0.0.1", "--port", str(self.port),
                 *args], env=env, stdout=out, stderr=err)

    def wait_ready(self, timeout: float = 20) -> float:
        """Seconds from the start until /health answers; connections are refused until then."""
        while time.monotonic() - self.started < timeout:
            assert self.process.poll() is None, self.logs()
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return time.monotonic() - self.started
            except requests.ConnectionError:
                time.sleep(0.02)
        raise AssertionError("not ready in time\n" + self.logs())

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def logs(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()

    def __enter__(self) -> Self:
        self.wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One full-features server (the guide's flags) with an API key, shared by the API tests."""
    tmp = tmp_path_factory.mktemp("served")
    make_hf_cache(tmp / "hf")
    with Server(container_env(tmp), tmp, *FULL_FEATURES, "--api-key", "s3cret") as server:
        server.session = requests.Session()
        server.session.headers["Authorization"] = "Bearer s3cret"
        yield server


def chat(server, timeout: float = 30, **body):
    body.setdefault("model", MODEL)
    return server.session.post(server.url + "/v1/chat/completions", json=body, timeout=timeout)


def stream_chat(server, **body):
    """The SSE events of a streamed chat completion, parsed; the last one must be [DONE]."""
    body.setdefault("model", MODEL)
    response = server.session.post(server.url + "/v1/chat/completions", json={**body, "stream": True},
                                   stream=True, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["transfer-encoding"] == "chunked"
    events = [line[len(b"data: "):].decode() for line in response.iter_lines() if line]
    assert events[-1] == "[DONE]"
    return [json.loads(event) for event in events[:-1]]


# ------------------------------------------------------------------------------------------------- command line
def test_unknown_flag_is_rejected_by_argparse_with_exit_2(node):
    result = run_standin(node["env"], "serve", "--model", MODEL, "--tensor-parallel-size", "8", "--foo", "1")
    assert result.returncode == 2
    assert "With `vllm serve`, you should provide the model as a positional argument" in result.stdout
    assert result.stderr.startswith("usage: vllm [-h] [-v]\n")
    assert result.stderr.rstrip().endswith("vllm: error: unrecognized arguments: --foo 1")


def test_bad_values_are_rejected_by_the_serve_parser(node):
    result = run_standin(node["env"], "serve", MODEL, "--port", "eighty")
    assert result.returncode == 2
    assert result.stderr == ("usage: vllm serve [model_tag] [options]\n"
                             "vllm serve: error: argument --port: invalid int value: 'eighty'\n")
    result = run_standin(node["env"], "serve", MODEL, "--dtype", "fp4")
    assert result.returncode == 2
    assert "argument --dtype: invalid choice: 'fp4'" in result.stderr


def test_auto_tool_choice_needs_a_parser_and_parsers_must_exist(node):
    result = run_standin(node["env"], "serve", MODEL, "--enable-auto-tool-choice")
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith("TypeError: Error: --enable-auto-tool-choice requires --tool-call-parser")
    result = run_standin(node["env"], "serve", MODEL, "--reasoning-parser", "deepseek_v9")
    assert result.returncode == 1
    assert "KeyError: 'invalid reasoning parser: deepseek_v9 (chose from { beam," in result.stderr


def test_version_flag_and_the_current_name_of_disable_log_requests_are_accepted(node):
    assert run_standin(node["env"], "--version").stdout == "0.33.0\n"
    # --disable-log-requests is the inverse of --enable-log-requests; unknown flags fail before any check.
    result = run_standin(dict(node["env"], SIM_DEV_ROOT=str(node["tmp"] / "nodev")), "serve", MODEL,
                         "--disable-log-requests", "--trust-remote-code", "--max-num-seqs", "64",
                         "--gpu-memory-utilization", "0.9", "--max-model-len", "32k")
    assert result.returncode == 1
    assert "non-default args: {'model_tag': 'deepseek-ai/DeepSeek-V3.2'" in result.stdout
    assert "'max_model_len': 32000" in result.stdout


# ------------------------------------------------------------------------------------------- start-up refusals
API_TRACEBACK_END = ("RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): "
                     "{'EngineCore_DP0': 1}")


@pytest.mark.parametrize("kfd, gpus", [(False, 8), (True, 0)], ids=["no-kfd", "no-render-nodes"])
def test_no_gpu_device_nodes(node, kfd, gpus):
    devices = make_devices(node["tmp"] / "nodev", gpus=gpus, kfd=kfd)
    result = run_standin(dict(node["env"], SIM_DEV_ROOT=str(devices)), "serve", MODEL, *FULL_FEATURES)
    assert result.returncode == 1
    assert "(APIServer pid=" in result.stdout and "non-default args:" in result.stdout
    assert result.stderr.rstrip().endswith("RuntimeError: Device string must not be empty")


@pytest.mark.parametrize("version, text", [
    ("0.33.0", ("Sparse attention indexer ROCm path requires AITER or a supported native architecture "
                "(gfx950/gfx11).")),
    ("0.27.0", ("Sparse attention indexer ROCm path is only supported on AITER. Please enable aiter with "
                "VLLM_ROCM_USE_AITER=1")),
    ("0.17.0", "Sparse attention indexer ROCm custom op requires ROCm Aiter ops to be enabled."),
])
def test_aiter_disabled_fails_in_the_sparse_indexer(node, version, text):
    env = dict(node["env"], VLLM_STANDIN_VERSION=version)
    env.pop("VLLM_ROCM_USE_AITER")
    result = run_standin(env, "serve", MODEL, *FULL_FEATURES)
    assert result.returncode == 1
    assert "Loading weights took" in result.stdout  # the indexer runs in the profile run, after loading
    assert "(Worker_TP0 pid=" in result.stdout and f"RuntimeError: {text}" in result.stdout
    assert "EngineCore failed to start." in result.stdout
    assert result.stderr.rstrip().endswith(API_TRACEBACK_END)


def test_mi355x_runs_the_indexer_without_aiter_from_0_30(node):
    """gfx950 has a native indexer path in 0.30+; the architecture comes from the simulated node's KFD topology."""
    subprocess.run([sys.executable, str(SIMULATOR), "--root", str(node["tmp"] / "mi355x"), "--model", "mi355x"],
                   check=True, capture_output=True, timeout=60)
    env = dict(node["env"], SIM_SYSFS_ROOT=str(node["tmp"] / "mi355x" / "sys"),
               SIM_DEV_ROOT=str(node["tmp"] / "mi355x" / "dev"))
    env.pop("VLLM_ROCM_USE_AITER")
    with Server(env, node["tmp"], *FULL_FEATURES) as server:
        assert "Available KV cache memory: 172.9" in server.logs()  # 287.98 GiB x 0.9 - 80.25 - 6
    assert server.process.returncode == 0


def test_vskip_left_at_its_default_crashes_mi300x_during_warm_up(node):
    env = dict(node["env"])
    env.pop("AITER_ENABLE_VSKIP")
    result = run_standin(env, "serve", MODEL, *FULL_FEATURES)
    assert result.returncode == 1
    assert "Memory access fault by GPU node-2 (Agent handle: " in result.stderr
    assert "Worker proc VllmWorker-0 died unexpectedly (exit code: -6), shutting down executor." in result.stdout
    assert result.stderr.rstrip().endswith(API_TRACEBACK_END)


@pytest.mark.parametrize("extra, text", [
    (["--kv-cache-dtype", "fp8"], "ValueError: ROCMAiterMLASparseBackend doesn't support fp8 kv_cache_dtype."),
    (["--block-size", "64"], "AssertionError: Sparse MLA backend on ROCm only supports block size 1 for now."),
    (["--kv-transfer-config", '{"kv_connector": "OffloadingConnector", "kv_role": "kv_both"}'],
     "KeyError: 'model.layers.0.self_attn.indexer.k_cache'"),
], ids=["fp8-kv-cache", "block-size", "kv-offloading"])
def test_rules_of_the_release_the_guide_was_written_for(node, extra, text):
    args = WITHOUT_BLOCK_SIZE + extra
    result = run_standin(dict(node["env"], VLLM_STANDIN_VERSION="0.17.0"), "serve", MODEL, *args)
    assert result.returncode == 1
    assert text in result.stdout and "EngineCore failed to start." in result.stdout
    assert result.stderr.rstrip().endswith(API_TRACEBACK_END)


def test_release_0_33_accepts_fp8_kv_cache_other_block_sizes_and_kv_offloading(node):
    with Server(node["env"], node["tmp"], *WITHOUT_BLOCK_SIZE, "--block-size", "64", "--kv-cache-dtype", "fp8",
                "--kv-transfer-config", '{"kv_connector": "OffloadingConnector", "kv_role": "kv_both"}') as server:
        assert "Using fp8 data type to store kv cache." in server.logs()


def test_tensor_parallelism_beyond_the_gpus_present(node):
    devices = make_devices(node["tmp"] / "four", gpus=4)
    result = run_standin(dict(node["env"], SIM_DEV_ROOT=str(devices)), "serve", MODEL, *FULL_FEATURES)
    assert result.returncode == 1
    assert "(Worker_TP4 pid=" in result.stdout and "WorkerProc failed to start." in result.stdout
    assert "AssertionError: DP adjusted local rank 4 is out of bounds for 4 devices." in result.stdout
    assert result.stderr.rstrip().endswith(API_TRACEBACK_END)


def test_weights_absent_from_the_offline_cache(node):
    env = dict(node["env"], HF_HOME=str(node["tmp"] / "empty"))
    result = run_standin(env, "serve", MODEL, *FULL_FEATURES)
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith(
        "OSError: We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in the "
        "cached files.\nCheck your internet connection or see how to run the library in offline mode at "
        "'https://huggingface.co/docs/transformers/installation#offline-mode'.")
    # A pinned revision that is not in the cache fails the same way; the cached one resolves.
    result = run_standin(node["env"], "serve", MODEL, "--revision", "0" * 40, *FULL_FEATURES)
    assert result.returncode == 1 and "OSError: We couldn't connect to" in result.stderr


@pytest.mark.parametrize("damage, text", [
    (lambda path: path.write_bytes(b""), "Error while deserializing header: header too small"),
    (lambda path: path.write_bytes(path.read_bytes()[:-10]),
     "Error while deserializing header: incomplete metadata, file not fully covered"),
    (lambda path: path.unlink() or path.symlink_to(path.parent / "missing-blob"),
     "FileNotFoundError: No such file or directory (os error 2)"),
], ids=["empty", "truncated", "dangling-symlink"])
def test_damaged_shard_fails_while_loading(node, damage, text):
    damage(node["snapshot"] / "model-00002-of-000004.safetensors")
    result = run_standin(node["env"], "serve", MODEL, *FULL_FEATURES)
    assert result.returncode == 1
    assert "(Worker_TP0 pid=" in result.stdout and text in result.stdout
    assert result.stderr.rstrip().endswith(API_TRACEBACK_END)


def test_missing_shards_start_a_model_that_talks_nonsense(node):
    """vLLM does not check an FP8 checkpoint for completeness: the server comes up and the output is garbage."""
    (node["snapshot"] / "model-00003-of-000004.safetensors").unlink()
    with Server(node["env"], node["tmp"], *FULL_FEATURES) as server:
        response = requests.post(server.url + "/v1/chat/completions", timeout=30, json={
            "model": MODEL, "max_tokens": 30, "messages": [{"role": "user", "content": TRAIN_QUESTION}]})
    answer = response.json()["choices"][0]
    assert response.status_code == 200 and answer["finish_reason"] == "length"
    assert "60 km/h" not in answer["message"]["content"]


def test_address_in_use(node):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_standin(node["env"], "serve", MODEL, "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith("OSError: [Errno 98] Address already in use")


def test_sigterm_during_start_up_exits_like_an_interrupted_python(node):
    server = Server(dict(node["env"], SIM_LOAD_SECONDS="30"), node["tmp"], *FULL_FEATURES)
    deadline = time.monotonic() + 10
    while "Initializing a V1 LLM engine" not in server.stdout_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.stop() == -signal.SIGINT
    assert server.stderr_path.read_text().rstrip().endswith("KeyboardInterrupt: terminated")


# ------------------------------------------------------------------------------------------ start-up timing
def test_port_refuses_connections_until_loaded_then_warm_start_is_faster(node):
    env = dict(node["env"], SIM_LOAD_SECONDS="0.6", SIM_COMPILE_SECONDS="0.8", SIM_WARMUP_SECONDS="0.8",
               VLLM_ROCM_USE_AITER_FP8BMM="1", TRITON_CACHE_DIR=str(node["tmp"] / "triton"),
               VLLM_CACHE_ROOT=str(node["tmp"] / "vllm-cache"))
    cold = Server(env, node["tmp"], *FULL_FEATURES, name="cold")
    deadline = time.monotonic() + 10
    while "Loading weights took" not in cold.stdout_path.read_text() and time.monotonic() < deadline:
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", cold.port), 1):
            pass
        time.sleep(0.05)
    cold_seconds = cold.wait_ready()
    assert cold.stop() == 0
    logs = cold.logs()
    assert "Loading weights took 0.6" in logs
    assert "Compiling a graph for compile range (1, 16384) takes 0.8" in logs
    assert "[Aiter Triton] Pre-compiling fp8 BMM kernel: 100%" in logs
    assert "Starting vLLM server on http://127.0.0.1:" in logs and "INFO:     Application startup complete." in logs
    assert list((node["tmp"] / "triton").rglob("*.json")) and list((node["tmp"] / "vllm-cache").rglob("*.py"))

    warm = Server(env, node["tmp"], *FULL_FEATURES, name="warm")
    warm_seconds = warm.wait_ready()
    assert warm.stop() == 0
    assert "Directly load the compiled graph(s) for compile range (1, 16384) from the cache" in warm.logs()
    # The warm start saves nine tenths of the compile and the warm-up (1.44 s); the rest of either start is the same
    # work, which a loaded machine stretches alike.
    assert cold_seconds >= 2.2 and cold_seconds - warm_seconds >= 1.0, (cold_seconds, warm_seconds)


# ------------------------------------------------------------------------------------------------- endpoints
def test_health_version_models(served):
    health = requests.get(served.url + "/health", timeout=5)
    assert (health.status_code, health.content, health.headers["server"]) == (200, b"", "uvicorn")
    assert requests.get(served.url + "/version", timeout=5).json() == {"version": "0.33.0"}
    models = served.session.get(served.url + "/v1/models", timeout=5).json()
    assert models["object"] == "list"
    card = models["data"][0]
    assert {key: card[key] for key in ("id", "object", "owned_by", "root", "max_model_len")} == {
        "id": MODEL, "object": "model", "owned_by": "vllm", "root": MODEL, "max_model_len": 163840}
    assert card["permission"][0]["object"] == "model_permission"


def test_api_key_guards_only_v1_paths(served):
    assert requests.get(served.url + "/v1/models", timeout=5).status_code == 401
    wrong = requests.get(served.url + "/v1/models", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert (wrong.status_code, wrong.json()) == (401, {"error": "Unauthorized"})
    assert requests.get(served.url + "/metrics", timeout=5).status_code == 200
    assert requests.get(served.url + "/nowhere", timeout=5).json() == {"detail": "Not Found"}


def test_chat_completion_shape_and_usage(served):
    response = chat(served, messages=[{"role": "user", "content": "Hello, who are you?"}])
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion" and body["model"] == MODEL
    assert body["system_fingerprint"].startswith("vllm-0.33.0-tp8-")
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] is None
    assert list(choice["message"]) == ["role", "content", "refusal", "annotations", "audio", "function_call",
                                       "reasoning"]  # 0.33 leaves out an empty tool_calls
    assert choice["message"]["role"] == "assistant" and "DeepSeek" in choice["message"]["content"]
    assert choice["message"]["reasoning"] is None
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}


def test_max_tokens_and_ignore_eos_bound_the_output(served):
    body = chat(served, max_tokens=7, messages=[{"role": "user", "content": "Describe the sea"}]).json()
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 7
    body = chat(served, max_tokens=500, ignore_eos=True, messages=[{"role": "user", "content": "Hi"}]).json()
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 500
    body = chat(served, max_tokens=500, messages=[{"role": "user", "content": "Hi"}]).json()
    assert body["choices"][0]["finish_reason"] == "stop" and body["usage"]["completion_tokens"] < 500


def test_streaming_chunks_role_usage_and_done(served):
    events = stream_chat(served, max_tokens=12, ignore_eos=True,
                         messages=[{"role": "user", "content": "Write about rivers"}])
    assert all(event["object"] == "chat.completion.chunk" for event in events)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    assert not any("usage" in event for event in events)
    texts = [event["choices"][0]["delta"].get("content") for event in events[1:]]
    assert len(texts) == 12 and all(texts)  # one chunk per token, the last one with the finish reason

    events = stream_chat(served, max_tokens=12, ignore_eos=True, stream_options={"include_usage": True},
                         messages=[{"role": "user", "content": "Write about rivers"}])
    usage_chunk = events[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 12
    assert usage_chunk["system_fingerprint"].startswith("vllm-0.33.0")

    events = stream_chat(served, max_tokens=5, ignore_eos=True,
                         stream_options={"include_usage": True, "continuous_usage_stats": True},
                         messages=[{"role": "user", "content": "Write about rivers"}])
    assert [event["usage"]["completion_tokens"] for event in events[:-1]] == [0, 1, 2, 3, 4, 5]


def test_reasoning_only_when_thinking_is_requested(served):
    plain = chat(served, messages=[{"role": "user", "content": TRAIN_QUESTION}]).json()["choices"][0]["message"]
    assert plain["reasoning"] is None and "60 km/h" in plain["content"]
    thinking = chat(served, chat_template_kwargs={"thinking": True},
                    messages=[{"role": "user", "content": TRAIN_QUESTION}]).json()
    message = thinking["choices"][0]["message"]
    assert "300" in message["reasoning"] and "60 km/h" in message["content"]
    assert "</think>" not in message["content"]
    assert thinking["usage"]["completion_tokens_details"]["reasoning_tokens"] > 10
    events = stream_chat(served, chat_template_kwargs={"thinking": True},
                         messages=[{"role": "user", "content": TRAIN_QUESTION}])
    reasoning = "".join(e["choices"][0]["delta"].get("reasoning", "") for e in events)
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    assert reasoning == message["reasoning"] and content == message["content"]


def test_streamed_reasoning_deltas_are_vllm_0_33s(served):
    """reasoning/deepseek_r1_reasoning_parser.py (what deepseek_v3 delegates to with thinking on): each token before
    </think> is DeltaMessage(reasoning=...), the lone </think> token yields no chunk, later tokens are content;
    serving.py dumps the deltas with exclude_unset, so a delta has only the field that is set."""
    events = stream_chat(served, chat_template_kwargs={"thinking": True}, stream_options={"include_usage": True},
                         messages=[{"role": "user", "content": TRAIN_QUESTION}])
    deltas = [event["choices"][0]["delta"] for event in events[1:-2]]
    kinds = [next(iter(delta)) for delta in deltas]
    assert all(len(delta) == 1 for delta in deltas)
    first_content = kinds.index("content")
    assert first_content > 10 and set(kinds[:first_content]) == {"reasoning"}
    assert set(kinds[first_content:]) == {"content"}
    assert not any("</think>" in text for delta in deltas for text in delta.values())
    assert events[-2]["choices"][0]["finish_reason"] == "stop" and events[-2]["choices"][0]["delta"] == {}
    usage = events[-1]["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == first_content
    assert usage["completion_tokens"] == len(deltas) + 2  # with </think> and EOS, which send nothing


@pytest.mark.parametrize("city", ["San Francisco", "Paris"])
def test_tool_call_with_arguments_from_the_prompt(served, city):
    body = chat(served, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": f"What is the weather in {city}?"}])
    choice = body.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"location": city}
    # A question no tool answers gets text.
    other = chat(served, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": TRAIN_QUESTION}]).json()
    assert other["choices"][0]["finish_reason"] == "stop" and "60 km/h" in other["choices"][0]["message"]["content"]


FORECAST_TOOL = {"type": "function", "function": {
    "name": "get_forecast", "description": "Weather forecast for a location",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["location", "days"]}}}


@pytest.mark.parametrize("tool, question, pieces", [
    (WEATHER_TOOL, "What is the weather in San Francisco?", ['{"location": "', "San Francisco", '"}']),
    # A string value streams once its parameter's header is parsed, a number only once the call closes.
    (FORECAST_TOOL, "What is the weather forecast in Paris for 3 days?",
     ['{"location": "', "Paris", '", "days": ', "3}"]),
])
def test_streamed_tool_call_deltas_are_vllm_0_33s(served, tool, question, pieces):
    """parser/engine/parser_engine.py: _emit_name_delta sends index, id, type and the name (no arguments) on the
    first argument token after the invoke header; _compute_arg_delta then streams the prefix-stable JSON on tokens
    with a '>' (arg_structural_chars of parser/deepseek_v32.py) and _handle_tool_end flushes the rest."""
    events = stream_chat(served, tools=[tool], messages=[{"role": "user", "content": question}])
    deltas = [e["choices"][0]["delta"] for e in events]
    calls = [call for delta in deltas for call in delta.get("tool_calls", [])]
    assert all(len(delta["tool_calls"]) == 1 for delta in deltas if "tool_calls" in delta)
    header, *arguments = calls
    assert re.fullmatch(r"chatcmpl-tool-[0-9a-f]{16}", header.pop("id"))
    assert header == {"type": "function", "index": 0, "function": {"name": tool["function"]["name"]}}
    assert all(sorted(call) == ["function", "index"] and call["index"] == 0 for call in arguments)
    assert [call["function"] for call in arguments] == [{"arguments": piece} for piece in pieces]
    assert not any(delta.get("content") for delta in deltas)
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls" and deltas[-1] == {}
    # The non-streamed answer carries the same call.
    (call,) = chat(served, tools=[tool], messages=[{"role": "user", "content": question}]).json()[
        "choices"][0]["message"]["tool_calls"]
    assert call["function"]["arguments"] == "".join(pieces)


def test_completions_endpoint(served):
    body = served.session.post(served.url + "/v1/completions", timeout=30,
                               json={"model": MODEL, "prompt": "Once upon a time", "max_tokens": 9}).json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 9
    assert isinstance(body["choices"][0]["text"], str) and body["choices"][0]["text"]


def test_request_errors_in_vllm_shape(served):
    missing = chat(served, model="deepseek-ai/DeepSeek-V4", messages=[{"role": "user", "content": "hi"}])
    assert missing.status_code == 404
    assert missing.json() == {"error": {
        "message": "The model `deepseek-ai/DeepSeek-V4` does not exist. Valid aliases: deepseek-ai/DeepSeek-V3.2.",
        "type": "NotFoundError", "param": "model", "code": 404}}
    bad_json = served.session.post(served.url + "/v1/chat/completions", data=b"{not json",
                                   headers={"Content-Type": "application/json"}, timeout=5)
    error = bad_json.json()["error"]
    assert bad_json.status_code == 400 and error["type"] == "Bad Request" and error["param"] == "body.1"
    assert error["message"].startswith("1 validation error:\n  {'type': 'json_invalid', 'loc': 'body.1', "
                                       "'msg': 'JSON decode error'")
    zero = chat(served, max_tokens=0, messages=[{"role": "user", "content": "hi"}])
    assert (zero.status_code, zero.json()["error"]) == (400, {
        "message": "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)",
        "type": "BadRequestError", "param": "max_tokens", "code": 400})
    form = served.session.post(served.url + "/v1/chat/completions", data=b"{}", timeout=5,
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.json()["error"]["message"] == ("1 validation error:\n  Unsupported Media Type: Only "
                                               "'application/json' is allowed")


# ---------------------------------------------------------------------------------- routes outside the key's reach
HELLO = {"messages": [{"role": "user", "content": "Hello, who are you?"}], "max_tokens": 5}
ONCE = {"prompt": "Once upon a time", "max_tokens": 4}
UNAUTHORIZED = (401, {"error": "Unauthorized"})


def bad_request(message: str, param: str | None = None, err_type: str = "BadRequestError", code: int = 400):
    return code, {"error": {"message": message, "type": err_type, "param": param, "code": code}}


def object_is(name: str):
    return lambda response: response.json()["object"] == name


@pytest.mark.parametrize("method, path, body, status, expected", [
    # vLLM's AuthenticationMiddleware checks the decoded path's prefix, not the route: /v1x is refused too.
    ("POST", "/v1/chat/completions", HELLO, *UNAUTHORIZED),
    ("POST", "/v1/completions", ONCE, *UNAUTHORIZED),
    ("GET", "/v1/models", None, *UNAUTHORIZED),
    ("GET", "/%761/models", None, *UNAUTHORIZED),
    ("GET", "/v1x", None, *UNAUTHORIZED),
    ("POST", "/inference/v1/generate", {}, *UNAUTHORIZED),
    ("POST", "/v2/rerank", {}, *UNAUTHORIZED),
    ("POST", "/cohere/v2/chat", {}, *UNAUTHORIZED),
    ("OPTIONS", "/v1/chat/completions", None, 405, {"detail": "Method Not Allowed"}),
    ("GET", "/V1/models", None, 404, {"detail": "Not Found"}),
    # SageMaker's routes run chat and text completions for anyone.
    ("POST", "/invocations", HELLO, 200, object_is("chat.completion")),
    ("POST", "/invocations", ONCE, 200, object_is("text_completion")),
    ("POST", "/%69nvocations", HELLO, 200, object_is("chat.completion")),
    ("POST", "/invocations/", HELLO, 307, lambda response: response.headers["location"].endswith("/invocations")),
    ("GET", "/invocations", None, 405, {"detail": "Method Not Allowed"}),
    ("GET", "/ping", None, 200, b""),
    ("POST", "/ping", None, 200, b""),
    # The tokenizer and a forward pass per item, also for anyone.
    ("POST", "/tokenize", {"prompt": "Hello world"}, 200,
     lambda response: response.json()["max_model_len"] == 163840
     and response.json()["count"] == len(response.json()["tokens"]) == 4 and response.json()["token_strs"] is None),
    ("POST", "/tokenize", {"messages": HELLO["messages"], "return_token_strs": True}, 200,
     lambda response: response.json()["tokens"][0] == 0 and len(response.json()["token_strs"]) > 4),
    ("POST", "/detokenize", {"tokens": [0, 100, 200]}, 200,
     lambda response: response.json()["prompt"].startswith("<｜begin▁of▁sentence｜>")),
    ("POST", "/generative_scoring", {"query": "Is Paris in France?", "items": [" Yes", " No"],
                                     "label_token_ids": [9891, 2332]}, 200,
     lambda response: response.json()["object"] == "list" and [item["index"] for item in response.json()["data"]]
     == [0, 1] and response.json()["usage"]["completion_tokens"] == 2),
    # What the server is, how busy, and how it can be resized.
    ("GET", "/load", None, 200, {"server_load": 0}),
    ("GET", "/kv_event_sources", None, 200, {}),
    ("GET", "/metrics/", None, 200, lambda response: "vllm:num_requests_running" in response.text),
    ("POST", "/metrics", None, 200, lambda response: "vllm:num_requests_running" in response.text),
    ("POST", "/is_scaling_elastic_ep", None, 200, {"is_scaling_elastic_ep": False, "phase": "idle", "epoch": None,
                                                   "error": None, "requested_data_parallel_size": None}),
    ("POST", "/scale_elastic_ep", {"new_data_parallel_size": 1}, 200,
     {"message": "Scaled to 1 data parallel engines"}),
    ("POST", "/scale_elastic_ep", {"new_data_parallel_size": 2}, *bad_request(
        "Scale failed", err_type="Internal Server Error", code=500)),
    ("POST", "/scale_elastic_ep", {}, *bad_request("new_data_parallel_size is required", err_type="Bad Request")),
    ("GET", "/openapi.json", None, 200, lambda response: "/invocations" in response.json()["paths"]),
    ("GET", "/docs", None, 200, lambda response: "Swagger UI" in response.text),
    ("GET", "/redoc", None, 200, lambda response: "ReDoc" in response.text),
], ids=lambda value: value if isinstance(value, str) else None)
def test_routes_outside_the_guarded_prefixes_answer_without_a_key(served, method, path, body, status, expected):
    prepared = requests.Request(method, served.url, json=body).prepare()
    prepared.url = served.url + path  # as written: requests would decode %76 and %69 itself
    with requests.Session() as session:
        response = session.send(prepared, timeout=30, allow_redirects=False)
    assert response.status_code == status, response.text
    if callable(expected):
        assert expected(response), response.text
    elif isinstance(expected, bytes):
        assert response.content == expected
    else:
        assert response.json() == expected


def test_start_up_log_lists_the_routes_served(served):
    routes = [line.split("Route: ", 1)[1] for line in served.logs().splitlines() if "Route: " in line]
    assert "/invocations, Methods: POST" in routes and "/tokenize, Methods: POST" in routes
    assert routes[0] == "/openapi.json, Methods: GET, HEAD"


@pytest.mark.parametrize("data, headers, status, expected", [
    (json.dumps(HELLO), {"Content-Type": "text/plain"}, 200, "chat.completion"),  # no media-type check here
    (json.dumps({**HELLO, "model": "no-such-model"}), {}, 200, "chat.completion"),  # `model` is overwritten
    (json.dumps(HELLO), {"X-Amzn-SageMaker-Adapter-Identifier": "no-such-adapter"}, *bad_request(
        "The model `no-such-adapter` does not exist. Valid aliases: deepseek-ai/DeepSeek-V3.2.", "model",
        "NotFoundError", 404)),
    (b"{not json", {}, *bad_request("JSON decode error: Expecting property name enclosed in double quotes: line 1 "
                                    "column 2 (char 1)", err_type="Bad Request")),
    (b"", {}, *bad_request("JSON decode error: Expecting value: line 1 column 1 (char 0)", err_type="Bad Request")),
    (b"{}", {}, *bad_request("Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)",
                             "prompt")),
    (b'{"messages": "hi"}', {}, *bad_request(
        "Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)", "prompt")),
    (b'{"prompt": 5}', {}, *bad_request("Cannot find suitable handler for request. Expected one of: "
                                        "['ChatCompletionRequest', 'CompletionRequest']")),
    (b"[]", {}, *bad_request("list indices must be integers or slices, not str")),
    (b"7", {}, *bad_request("argument of type 'int' is not iterable")),
    (b'{"messages": []}', {}, *bad_request("list index out of range", err_type="InternalServerError", code=500)),
], ids=["text-plain", "model-ignored", "adapter-header", "bad-json", "empty", "no-shape", "messages-not-a-list",
        "prompt-not-text", "array", "number", "empty-messages"])
def test_invocations_picks_the_handler_by_the_body(served, data, headers, status, expected):
    """serve/sagemaker/api_router.py behind model_hosting_container_standards' transforms, with no key."""
    response = requests.post(served.url + "/invocations", data=data, timeout=30,
                             headers={"Content-Type": "application/json", **headers})
    assert response.status_code == status, response.text
    if isinstance(expected, str):
        assert response.json()["object"] == expected
    else:
        assert response.json() == expected


def test_docs_can_be_turned_off_and_load_counts_requests_in_flight(node):
    """--disable-fastapi-docs removes FastAPI's pages; with --enable-server-load-tracking /load counts the requests
    in flight, those that came in through /invocations included."""
    with Server(node["env"], node["tmp"], *FULL_FEATURES, "--api-key", "k", "--disable-fastapi-docs",
                "--enable-server-load-tracking") as server:
        for page in ("/openapi.json", "/docs", "/redoc"):
            assert requests.get(server.url + page, timeout=5).json() == {"detail": "Not Found"}
        assert requests.get(server.url + "/load", timeout=5).json() == {"server_load": 0}
        with requests.post(server.url + "/invocations", stream=True, timeout=30,
                           json={**HELLO, "max_tokens": 20000, "ignore_eos": True, "stream": True}) as stream:
            lines = stream.iter_lines()  # held: a dropped iterator closes the connection, which aborts the request
            assert next(lines).startswith(b"data: ")
            assert requests.get(server.url + "/load", timeout=5).json() == {"server_load": 1}


# ------------------------------------------------------------------------------------------ request validation
TOO_MANY = "max_tokens=10000000 cannot be greater than max_model_len=163840. Please request fewer output tokens. " \
           "(parameter=max_tokens, value=10000000)"


def missing(field: str, items: int):
    return bad_request(f"1 validation error:\n  {{'type': 'missing', 'loc': 'body.{field}', 'msg': 'Field "
                       f"required', 'input': '<dict of {items} items>'}}", f"body.{field}", "Bad Request")


@pytest.mark.parametrize("path, body, status, expected", [
    ("/v1/chat/completions", {"messages": []}, *bad_request("list index out of range", err_type="InternalServerError",
                                                            code=500)),
    ("/v1/chat/completions", {"model": MODEL}, *missing("messages", 1)),
    ("/v1/chat/completions", {**HELLO, "max_tokens": 10_000_000}, *bad_request(TOO_MANY, "max_tokens")),
    ("/v1/chat/completions", {**HELLO, "max_completion_tokens": 200_000}, *bad_request(
        "max_completion_tokens=200000 cannot be greater than max_model_len=163840. Please request fewer output "
        "tokens. (parameter=max_completion_tokens, value=200000)", "max_completion_tokens")),
    ("/v1/chat/completions", {**HELLO, "max_tokens": 163_840}, 200, None),  # prompt + max_tokens > context: clamped
    ("/v1/chat/completions", {**HELLO, "max_tokens": -5}, *bad_request(
        "max_tokens must be at least 1, got -5. (parameter=max_tokens, value=-5)", "max_tokens")),
    ("/v1/chat/completions", {**HELLO, "max_tokens": "many"}, *bad_request(
        "1 validation error:\n  {'type': 'int_parsing', 'loc': 'body.max_tokens', 'msg': 'Input should be a valid "
        "integer, unable to parse string as an integer', 'input': 'many'}", "body.max_tokens", "Bad Request")),
    ("/v1/chat/completions", {**HELLO, "temperature": 3}, *bad_request(
        "temperature must be in [0, 2], got 3.0. (parameter=temperature, value=3.0)", "temperature")),
    ("/v1/chat/completions", {**HELLO, "temperature": -0.5}, *bad_request(
        "temperature must be non-negative, got -0.5. (parameter=temperature, value=-0.5)", "temperature")),
    ("/v1/chat/completions", {**HELLO, "top_p": 0}, *bad_request(
        "top_p must be in (0, 1], got 0.0. (parameter=top_p, value=0.0)", "top_p")),
    ("/v1/chat/completions", {**HELLO, "n": 0}, *bad_request("n must be at least 1, got 0.")),
    # The order of the checks: the model first, then max_tokens against the context, then the sampling parameters.
    ("/v1/chat/completions", {**HELLO, "model": "gpt-4", "max_tokens": 10_000_000}, *bad_request(
        "The model `gpt-4` does not exist. Valid aliases: deepseek-ai/DeepSeek-V3.2.", "model", "NotFoundError", 404)),
    ("/v1/chat/completions", {**HELLO, "temperature": 3, "max_tokens": 10_000_000}, *bad_request(
        TOO_MANY, "max_tokens")),
    ("/v1/completions", {"max_tokens": 3}, *bad_request(
        "Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)", "prompt")),
    ("/v1/completions", {**ONCE, "max_tokens": 10_000_000}, *bad_request(TOO_MANY, "max_tokens")),
    ("/v1/chat/completions", (b"{not json", "application/json"), *bad_request(
        "1 validation error:\n  {'type': 'json_invalid', 'loc': 'body.1', 'msg': 'JSON decode error', 'input': "
        "'<dict of 0 items>', 'ctx': {'error': 'Expecting property name enclosed in double quotes'}}", "body.1",
        "Bad Request")),
    ("/v1/chat/completions", (json.dumps(HELLO), "application/x-www-form-urlencoded"), *bad_request(
        "1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed", None, "Bad Request")),
], ids=["empty-messages", "no-messages", "max-tokens-over-context", "max-completion-tokens-over-context",
        "max-tokens-clamped", "negative-max-tokens", "max-tokens-not-a-number", "temperature-high", "temperature-low",
        "top-p-zero", "n-zero", "model-first", "context-before-sampling", "no-prompt", "completion-max-tokens",
        "bad-json", "form"])
def test_request_validation_like_vllm(served, path, body, status, expected):
    if isinstance(body, dict):
        response = served.session.post(served.url + path, json={"model": MODEL, **body}, timeout=30)
    else:
        data, content_type = body
        response = served.session.post(served.url + path, data=data, headers={"Content-Type": content_type},
                                       timeout=30)
    assert response.status_code == status, response.text
    if expected is None:
        assert response.json()["choices"][0]["finish_reason"] == "stop"
    else:
        assert response.json() == expected

def test_metrics_follow_the_requests(served):
    before = metric_values(served)
    chat(served, max_tokens=11, ignore_eos=True, messages=[{"role": "user", "content": "Count"}])
    after = metric_values(served)
    label = f'{{engine="0",model_name="{MODEL}"}}'
    assert after[f"vllm:generation_tokens_total{label}"] - before[f"vllm:generation_tokens_total{label}"] == 11
    assert after[f"vllm:prompt_tokens_total{label}"] > before[f"vllm:prompt_tokens_total{label}"]
    success = f'vllm:request_success_total{{engine="0",finished_reason="length",model_name="{MODEL}"}}'
    assert after[success] == before[success] + 1
    assert after[f"vllm:time_to_first_token_seconds_count{label}"] == \
        before[f"vllm:time_to_first_token_seconds_count{label}"] + 1
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:inter_token_latency_seconds_count", "vllm:e2e_request_latency_seconds_sum"):
        assert name + label in after
    assert f'vllm:time_to_first_token_seconds_bucket{{engine="0",le="+Inf",model_name="{MODEL}"}}' in after


def metric_values(server) -> dict:
    text = requests.get(server.url + "/metrics", timeout=5).text
    assert "# TYPE vllm:time_to_first_token_seconds histogram" in text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_without_the_full_features_flags(node):
    """The guide's Quick Start (no tool parser, the tokenizer mode set to "hf"): tools and chat are refused."""
    env = dict(node["env"], VLLM_API_KEY="from-env")
    with Server(env, node["tmp"], "--tensor-parallel-size", "8", "--tokenizer-mode", "hf") as server:
        headers = {"Authorization": "Bearer from-env"}
        assert requests.get(server.url + "/v1/models", timeout=5).status_code == 401
        tools = requests.post(server.url + "/v1/chat/completions", headers=headers, timeout=5, json={
            "model": MODEL, "tools": [WEATHER_TOOL], "messages": [{"role": "user", "content": "Weather in Rome?"}]})
        assert tools.status_code == 400
        assert tools.json() == {"error": {
            "message": '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
            "type": "BadRequestError", "param": None, "code": 400}}
        plain = requests.post(server.url + "/v1/chat/completions", headers=headers, timeout=5, json={
            "model": MODEL, "messages": [{"role": "user", "content": "Hello, who are you?"}]})
        assert plain.status_code == 400
        assert plain.json()["error"]["message"] == (
            "As of transformers v4.44, default chat template is no longer allowed, so you must provide a chat "
            "template if the tokenizer does not define one.")
        completion = requests.post(server.url + "/v1/completions", headers=headers, timeout=5,
                                   json={"model": MODEL, "prompt": "Hello", "max_tokens": 3})
        assert completion.status_code == 200


# --------------------------------------------------------------------------------------- throughput and queueing
async def timed_stream(port: int, max_tokens: int) -> tuple[float, float, float, int]:
    """(sent, first token, last token, tokens) of one streamed request, on a raw connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Tell a long story"}],
                       "max_tokens": max_tokens, "ignore_eos": True, "stream": True}).encode()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    sent, stamps = time.monotonic(), []
    while True:
        line = await reader.readline()
        if not line or line.startswith(b"data: [DONE]"):
            break
        if line.startswith(b"data: ") and b'"content":"' in line and b'"role"' not in line:
            stamps.append(time.monotonic())
    writer.close()
    return sent, stamps[0], stamps[-1], len(stamps)


def run_streams(port: int, count: int, max_tokens: int):
    async def all_streams():
        return await asyncio.gather(*(timed_stream(port, max_tokens) for _ in range(count)))
    return asyncio.run(all_streams())


def test_throughput_is_per_stream_rate_alone_and_shared_capacity_under_load(node):
    env = dict(node["env"], SIM_TOKENS_PER_SECOND_PER_STREAM="40", SIM_MAX_TOKENS_PER_SECOND="400",
               SIM_TTFT_SECONDS="0.4")
    with Server(env, node["tmp"], *FULL_FEATURES, "--disable-uvicorn-access-log") as server:
        ((sent, first, last, tokens),) = run_streams(server.port, 1, 41)
        assert tokens == 41
        assert (tokens - 1) / (last - first) == pytest.approx(40, rel=0.04)
        assert first - sent == pytest.approx(0.4, rel=0.05)

        results = run_streams(server.port, 40, 41)
        assert all(result[3] == 41 for result in results)
        per_stream = [(tokens - 1) / (last - first) for _, first, last, tokens in results]
        assert sum(per_stream) / len(per_stream) == pytest.approx(400 / 40, rel=0.05)
        window = max(r[2] for r in results) - min(r[1] for r in results)
        assert sum(r[3] - 1 for r in results) / window == pytest.approx(400, rel=0.05)


def test_max_num_seqs_queues_the_rest(node):
    env = dict(node["env"], SIM_TOKENS_PER_SECOND_PER_STREAM="50", SIM_TTFT_SECONDS="0.02")
    with Server(env, node["tmp"], *FULL_FEATURES, "--max-num-seqs", "2") as server:
        async def scenario():
            streams = [asyncio.ensure_future(timed_stream(server.port, 25)) for _ in range(4)]
            await asyncio.sleep(0.2)
            values = await asyncio.to_thread(metric_values, server)
            return values, await asyncio.gather(*streams)
        values, results = asyncio.run(scenario())
    label = f'{{engine="0",model_name="{MODEL}"}}'
    assert values[f"vllm:num_requests_running{label}"] == 2 and values[f"vllm:num_requests_waiting{label}"] == 2
    first_tokens = sorted(result[1] - result[0] for result in results)
    assert first_tokens[2] > 0.45  # the last two start when the first two (25 tokens at 50/s) are done


# -------------------------------------------------------------------------------------------------- SIGTERM
def test_sigterm_drains_in_flight_requests_within_the_shutdown_timeout(node):
    env = dict(node["env"], SIM_TOKENS_PER_SECOND_PER_STREAM="25")
    server = Server(env, node["tmp"], *FULL_FEATURES, "--shutdown-timeout", "10")
    with server:
        async def scenario():
            stream = asyncio.ensure_future(timed_stream(server.port, 30))
            await asyncio.sleep(0.3)
            server.process.send_signal(signal.SIGTERM)
            return await stream
        sent, _, last, tokens = asyncio.run(scenario())
        assert server.process.wait(timeout=10) == 0
    assert tokens == 30 and last - sent > 1.0
    logs = server.logs()
    assert "[shutdown] EngineCore: draining in-flight requests count=1 timeout=10s" in logs
    assert "INFO:     Finished server process" in logs
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/health", timeout=2)


def test_sigterm_without_shutdown_timeout_aborts_in_flight_requests(node):
    env = dict(node["env"], SIM_TOKENS_PER_SECOND_PER_STREAM="25")
    with Server(env, node["tmp"], *FULL_FEATURES) as server:
        response = requests.post(server.url + "/v1/chat/completions", stream=True, timeout=10, json={
            "model": MODEL, "stream": True, "max_tokens": 100, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Talk"}]})
        lines = response.iter_lines()
        next(line for line in lines if b'"content":"' in line and b'"role"' not in line)
        server.process.send_signal(signal.SIGTERM)
        events = [json.loads(line[6:]) for line in lines if line.startswith(b"data: {")]
        assert events[-1]["choices"][0]["finish_reason"] == "abort"
        assert server.process.wait(timeout=10) == 0
    assert "[shutdown] EngineCore: aborting in-flight requests count=1" in server.logs()
