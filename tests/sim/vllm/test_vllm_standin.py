"""The vLLM stand-in refuses what vLLM on ROCm refuses and answers with vLLM's shapes."""

import concurrent.futures
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

STANDIN = pathlib.Path(__file__).resolve().parent / "vllm_standin.py"
MODEL = "deepseek-ai/DeepSeek-V3.2"
FULL_FLAGS = ["--model", MODEL, "--tensor-parallel-size", "2", "--block-size", "1", "--quantization", "fp8",
              "--tokenizer-mode", "deepseek_v32", "--tool-call-parser", "deepseek_v32",
              "--enable-auto-tool-choice", "--reasoning-parser", "deepseek_v3"]
TRAIN = ("Solve step by step: If a train travels 120km in 2 hours, and then 180km in 3 hours, "
         "what is the average speed?")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A device tree with two GPUs, a complete HF cache and a kernel cache directory."""
    dev = tmp_path / "dev"
    (dev / "dri").mkdir(parents=True)
    for name in ("kfd", "dri/renderD128", "dri/renderD129"):
        (dev / name).touch()
    commit = "f" * 40
    repo = tmp_path / "hf" / "hub" / "models--deepseek-ai--DeepSeek-V3.2"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snapshot / "config.json").write_text("{}")
    shards = [f"model-0000{i}-of-000002.safetensors" for i in (1, 2)]
    (snapshot / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {f"layer.{i}": shard for i, shard in enumerate(shards)}}))
    for shard in shards:
        (snapshot / shard).write_bytes(b"x" * 16)
    env = dict(os.environ, SIM_DEV_ROOT=str(dev), HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1",
               VLLM_ROCM_USE_AITER="1", AITER_ENABLE_VSKIP="0", SIM_LOAD_SECONDS="0.3", SIM_WARMUP_SECONDS="0.6",
               SIM_KERNEL_CACHE_DIR=str(tmp_path / "triton"), SIM_TTFT_SECONDS="0.05")
    return {"env": env, "snapshot": snapshot, "dev": dev}


def run(lab, flags, **env):
    return subprocess.run([sys.executable, str(STANDIN), "serve", *flags], env={**lab["env"], **env},
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("flags", "env", "text", "code"),
    [
        ([], {"VLLM_ROCM_USE_AITER": "0"}, "only supported on AITER. Please enable aiter with VLLM_ROCM_USE_AITER=1", 1),
        ([], {"AITER_ENABLE_VSKIP": "1"}, "Memory access fault by GPU", 134),
        (["--kv-cache-dtype", "fp8"], {}, "ROCMAiterMLASparseBackend doesn't support fp8 kv_cache_dtype", 1),
        (["--kv-transfer-config", '{"kv_connector":"OffloadingConnector"}'], {},
         "KeyError: 'model.layers.0.self_attn.indexer.k_cache'", 1),
        (["--block-size", "16"], {}, "block_size 16 not supported", 1),
        (["--tensor-parallel-size", "8"], {}, "required GPUs (8) exceeds the total number of available GPUs (2)", 1),
        (["--unknown-flag"], {}, "unrecognized arguments: --unknown-flag", 2),
    ],
)
def test_refuses_to_start(lab, flags, env, text, code):
    result = run(lab, FULL_FLAGS + flags, **env)
    assert result.returncode == code
    assert text in result.stdout + result.stderr


def test_refuses_without_devices(lab):
    (lab["dev"] / "kfd").unlink()
    result = run(lab, FULL_FLAGS)
    assert result.returncode == 1 and "No HIP GPUs are available" in result.stdout


def test_refuses_incomplete_weights_offline(lab):
    (lab["snapshot"] / "model-00002-of-000002.safetensors").unlink()
    result = run(lab, FULL_FLAGS)
    assert result.returncode == 1
    assert "model-00002-of-000002.safetensors" in result.stdout


class Standin:
    def __init__(self, lab, flags, **env):
        self.port = free_port()
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, str(STANDIN), "serve", *flags, "--port", str(self.port), "--host", "127.0.0.1"],
            env={**lab["env"], **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.ready_after = self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return time.monotonic() - self.started
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the stand-in did not open its port")

    def request(self, path, payload=None, key=None):
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def stop(self):
        self.process.terminate()
        output, _ = self.process.communicate(timeout=10)
        return self.process.returncode, output


@pytest.fixture
def server(lab):
    standin = Standin(lab, FULL_FLAGS)
    yield standin
    standin.stop()


def test_warm_kernel_cache_starts_faster(lab):
    cold = Standin(lab, FULL_FLAGS)
    cold.stop()
    warm = Standin(lab, FULL_FLAGS)
    code, output = warm.stop()
    assert cold.ready_after - warm.ready_after > 0.4
    assert "skipping warm-up" in output and code == 0


def test_health_version_models(server):
    assert server.request("/health") == (200, "")
    assert json.loads(server.request("/version")[1]) == {"version": "0.33.0"}
    models = json.loads(server.request("/v1/models")[1])
    assert models["object"] == "list" and models["data"][0]["id"] == MODEL
    assert models["data"][0]["owned_by"] == "vllm"


def test_chat_tools_and_reasoning(server):
    chat = json.loads(server.request("/v1/chat/completions", {
        "model": MODEL, "messages": [{"role": "user", "content": "Hello, who are you?"}]})[1])
    assert chat["choices"][0]["message"]["content"] and chat["choices"][0]["message"]["reasoning"] is None
    tools = json.loads(server.request("/v1/chat/completions", {
        "model": MODEL, "messages": [{"role": "user", "content": "What is the weather in San Francisco?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]})[1])
    call = tools["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"location": "San Francisco"}
    assert tools["choices"][0]["finish_reason"] == "tool_calls"
    reasoning = json.loads(server.request("/v1/chat/completions", {
        "model": MODEL, "messages": [{"role": "user", "content": TRAIN}],
        "chat_template_kwargs": {"thinking": True}})[1])
    message = reasoning["choices"][0]["message"]
    assert message["reasoning"] and "60 km/h" in message["content"]


def test_errors_have_vllms_shape(server):
    status, body = server.request("/v1/chat/completions", {"model": "other", "messages": []})
    assert status == 404 and json.loads(body)["error"]["message"] == "The model `other` does not exist."


def test_tools_without_the_tool_flags_get_vllms_400(lab):
    flags = [flag for flag in FULL_FLAGS if flag != "--enable-auto-tool-choice"]
    standin = Standin(lab, flags)
    try:
        status, body = standin.request("/v1/chat/completions", {
            "model": MODEL, "messages": [{"role": "user", "content": "weather in Paris?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]})
    finally:
        standin.stop()
    assert status == 400
    assert json.loads(body)["error"]["message"] == (
        '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set')


def test_api_key_guards_v1_only(lab):
    standin = Standin(lab, FULL_FLAGS + ["--api-key", "k" * 20])
    try:
        assert standin.request("/v1/models") == (401, '{"error": "Unauthorized"}')
        assert standin.request("/v1/models", key="k" * 20)[0] == 200
        assert standin.request("/health")[0] == 200
    finally:
        standin.stop()


def test_streaming_reports_usage_and_respects_max_tokens(server):
    status, body = server.request("/v1/chat/completions", {
        "model": MODEL, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 12,
        "ignore_eos": True, "messages": [{"role": "user", "content": "Hello, who are you?"}]})
    events = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert status == 200 and events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["usage"]["completion_tokens"] == 12
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert len(content.split()) == 12


def test_throughput_saturates_at_the_configured_capacity(lab):
    standin = Standin(lab, FULL_FLAGS, SIM_TOKENS_PER_SECOND_PER_STREAM="100", SIM_MAX_TOKENS_PER_SECOND="400")

    def one():
        return standin.request("/v1/chat/completions", {
            "model": MODEL, "max_tokens": 100, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Hello"}]})

    try:
        started = time.monotonic()
        one()
        single = time.monotonic() - started
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            started = time.monotonic()
            list(pool.map(lambda _: one(), range(8)))
            crowded = time.monotonic() - started
    finally:
        standin.stop()
    # One stream: 100 tokens at 100 tok/s. Eight streams share 400 tok/s: 800 tokens take about 2 s.
    assert 0.9 < single < 1.4
    assert 1.8 < crowded < 2.6
