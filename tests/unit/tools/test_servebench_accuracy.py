"""servebench against the vLLM stand-in (lab/vllm/vllm_standin.py) configured with a known decode rate per
stream, time to first token and total capacity: throughput, mean TTFT and p99 end-to-end latency within 5 % of
the truth computed from those knobs at every level; plus the probe's refusals, Ctrl-C, worker processes and the
open-loop mode. servebench runs as a real subprocess (`python -m servebench`), as an operator runs it.

The truth, for M output tokens per request (ignore_eos), TTFT T0, per-stream rate r and capacity K, at
concurrency C (the stand-in emits each first token T0 after admission, then decodes every running request at
min(r, K / requests decoding)):
- C * r <= K: every request decodes at r: E2E = T0 + (M - 1) / r, throughput = C * M / E2E;
- C * r > K: the engine decodes K tokens/s and the first token of each request comes free with its prefill, so
  throughput = K * M / (M - 1), and by Little's law E2E = C / (K / (M - 1)) = C * (M - 1) / K. This holds with the
  workers' phases spread out, which `--spawn-rate` ensures (all at once, a lockstep start would leave the engine
  idle during each common prefill); with the phases spread, the requests in prefill at any moment (K * T0 / (M - 1)
  of them, 12 here) barely change anyone's decode rate, so p99 stays near the mean.
- TTFT = T0 at every level (the stand-in admits up to 1024 requests at once). T0 is long enough that the
  stand-in's own few milliseconds of request handling stay well inside 5 %.
The stand-in is one Python process sharing two cores with everything else: when other work on the machine makes
it late, a sweep can miss by that much, so a sweep that misses is repeated once (with other seeds); an error in
servebench misses twice.
"""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[3]
STANDIN = REPO / "lab" / "vllm" / "vllm_standin.py"
MODEL = "deepseek-ai/DeepSeek-V3.2"
COMMIT = "3f1a2b4c5d6e7f8091a2b3c4d5e6f708192a3b4c"
API_KEY = "sk-servebench-test-3f9a"
TTFT, STREAM_RATE, CAPACITY, MAX_TOKENS = 0.3, 40.0, 2000.0, 51
LEVELS = (1, 10, 50, 100)   # 1 to 50 decode at r (50 * 40 = 2000 = K), 100 shares K
TOLERANCE = 0.05


def truth(concurrency: int) -> dict:
    if concurrency * STREAM_RATE <= CAPACITY:
        e2e = TTFT + (MAX_TOKENS - 1) / STREAM_RATE
        return {"throughput": concurrency * MAX_TOKENS / e2e, "ttft": TTFT, "e2e": e2e}
    return {"throughput": CAPACITY * MAX_TOKENS / (MAX_TOKENS - 1), "ttft": TTFT,
            "e2e": concurrency * (MAX_TOKENS - 1) / CAPACITY}


# ------------------------------------------------------------------------------------------------ stand-in
def make_node(root: Path) -> dict:
    """What the stand-in looks for (as lab/vllm/test_vllm_standin.py lays it out): 8 GPU device nodes and a
    DeepSeek V3.2 snapshot with one tiny shard in an offline Hugging Face cache."""
    snapshot = root / "hf" / "hub" / f"models--{MODEL.replace('/', '--')}" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(COMMIT)
    (snapshot / "config.json").write_text(json.dumps({
        "architectures": ["DeepseekV32ForCausalLM"], "model_type": "deepseek_v32", "max_position_embeddings": 163840,
        "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}}))
    header = json.dumps({"model.layers.1.mlp.weight": {"dtype": "F8_E4M3", "shape": [64], "data_offsets": [0, 64]}})
    header += " " * (-len(header) % 8)
    shard = "model-00001-of-000001.safetensors"
    (snapshot / shard).write_bytes(struct.pack("<Q", len(header)) + header.encode() + bytes(64))
    (snapshot / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {"model.layers.1.mlp.weight": shard}}))
    devices = root / "dev"
    (devices / "dri").mkdir(parents=True)
    (devices / "kfd").touch()
    for index in range(8):
        (devices / "dri" / f"card{index}").touch()
        (devices / "dri" / f"renderD{128 + index}").touch()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SIM_", "VLLM_", "HF_", "AITER", "TRITON", "XDG_"))}
    env.update(HOME=str(root / "home"), HF_HOME=str(root / "hf"), HF_HUB_OFFLINE="1", SIM_DEV_ROOT=str(devices),
               SIM_SYSFS_ROOT=str(root / "sys"), VLLM_ROCM_USE_AITER="1", AITER_ENABLE_VSKIP="0",
               SIM_LOAD_SECONDS="0.05", SIM_WARMUP_SECONDS="0.05", SIM_COMPILE_SECONDS="0.05",
               SIM_GRAPH_CAPTURE_SECONDS="0.02", SIM_TTFT_SECONDS=str(TTFT),
               SIM_TOKENS_PER_SECOND_PER_STREAM=str(STREAM_RATE), SIM_MAX_TOKENS_PER_SECOND=str(CAPACITY),
               VLLM_API_KEY=API_KEY)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """`vllm serve` as the stand-in, API key set, on a free loopback port; ready when /health answers (the
    stand-in, like vLLM, prints no READY line, so lab/standin_process.py does not fit it)."""
    root = tmp_path_factory.mktemp("standin")
    port = free_port()
    with open(root / "stdout.log", "w") as out, open(root / "stderr.log", "w") as err:
        process = subprocess.Popen(
            [sys.executable, str(STANDIN), "serve", MODEL, "--tensor-parallel-size", "8", "--block-size", "1",
             "--quantization", "fp8", "--tokenizer-mode", "deepseek_v32", "--host", "127.0.0.1", "--port", str(port),
             "--disable-uvicorn-access-log", "--disable-log-stats"], env=make_node(root), stdout=out, stderr=err)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            assert process.poll() is None, (root / "stderr.log").read_text()
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the stand-in did not become ready"
            time.sleep(0.05)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def servebench(url: str, output: Path, *args: str, key: str | None = API_KEY, timeout: float = 120):
    env = {key_: value for key_, value in os.environ.items() if key_ != "VLLM_API_KEY"}
    env["PYTHONPATH"] = str(REPO / "tools")
    if key is not None:
        env["SERVEBENCH_TEST_KEY"] = key
    command = [sys.executable, "-m", "servebench", "--url", url, "--model", MODEL, "--api-key-env",
               "SERVEBENCH_TEST_KEY", "--output-dir", str(output), "--max-tokens", str(MAX_TOKENS),
               "--prompt-tokens", "32", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def within(measured: float, expected: float) -> bool:
    return abs(measured / expected - 1) <= TOLERANCE


# ------------------------------------------------------------------------------------------------ accuracy
def sweep_misses(summary: dict) -> list[str]:
    misses = []
    for level in summary["levels"]:
        expected, figures = truth(int(level["level"])), level["figures"]
        measured = {"throughput": figures["output_throughput"]["mean"], "ttft": figures["ttft.mean"]["mean"],
                    "e2e": figures["e2e.p99"]["mean"]}
        misses += [f"C={level['level']:g} {name}: {measured[name]:.4g} vs {expected[name]:.4g}"
                   for name in expected if not within(measured[name], expected[name])]
    return misses


def test_sweep_matches_the_configured_truth_at_every_level(standin, tmp_path):
    attempts = []
    for attempt, seed in enumerate(("0", "500")):
        output = tmp_path / f"attempt{attempt}"
        result = servebench(standin, output, "--concurrency", ",".join(map(str, LEVELS)), "--runs", "2",
                            "--warmup-waves", "1", "--waves", "2", "--spawn-rate", "50", "--seed", seed)
        assert result.returncode == 0, result.stderr
        summary = json.loads((output / "summary.json").read_text())
        attempts.append(sweep_misses(summary))
        if not attempts[-1]:
            break
    assert not attempts[-1], "\n".join(f"attempt {number + 1}: " + "; ".join(misses)
                                       for number, misses in enumerate(attempts))
    for level in summary["levels"]:
        assert level["success_rate"] == 1 and level["complete_runs"] == 2
        assert level["tokens_source"] == {"usage": level["requests"]} and level["short_outputs"] == 0

    report = (output / "report.md").read_text()
    assert "| Concurrent | Throughput | p99 Latency |" in report and "Multi-run means (n=2)" in report
    assert "Peak Throughput:" in report and "at 100 concurrent" in report
    rows = [json.loads(line) for line in (output / "requests.jsonl").read_text().splitlines()]
    measured_rows = [row for row in rows if row["phase"] == "measured"]
    assert len(measured_rows) == sum(2 * 2 * level for level in LEVELS)
    assert all(row["ok"] and row["output_tokens"] == MAX_TOKENS for row in measured_rows)
    for path in tmp_path.rglob("*.*"):
        assert API_KEY not in path.read_bytes().decode("latin-1"), f"the API key leaked into {path}"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in result.stderr
    else:
        assert (output / "chart.png").read_bytes().startswith(b"\x89PNG")


def test_worker_processes_share_one_run(standin, tmp_path):
    result = servebench(standin, tmp_path, "--concurrency", "50", "--runs", "1", "--warmup-waves", "1", "--waves",
                        "2", "--spawn-rate", "100", "--processes", "2", "--no-chart", "--no-probe")
    assert result.returncode == 0, result.stderr
    figures = json.loads((tmp_path / "summary.json").read_text())["levels"][0]["figures"]
    assert within(figures["output_throughput"]["mean"], truth(50)["throughput"])
    assert within(figures["e2e.p99"]["mean"], truth(50)["e2e"])
    rows = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert len({row["request_id"] for row in rows}) == len(rows)  # ids stay unique across processes


def test_open_loop_times_from_the_schedule(standin, tmp_path):
    # 20 requests/s, each 1.55 s: about 31 in flight, all decoding at r.
    result = servebench(standin, tmp_path, "--request-rate", "20", "--runs", "1", "--warmup-seconds", "1",
                        "--duration", "4", "--no-chart", "--no-probe")
    assert result.returncode == 0, result.stderr
    level = json.loads((tmp_path / "summary.json").read_text())["levels"][0]
    run = level["runs"][0]["metrics"]
    assert within(run["ttft"]["mean"], TTFT) and within(run["e2e"]["p99"], truth(1)["e2e"])
    assert run["send_lag"]["p50"] < 0.010 and not run["client_lagging"]
    # Poisson arrivals: 4 s of them carry sampling noise, so only the order of magnitude is checked here.
    assert 0.75 < run["output_throughput"] / (20 * MAX_TOKENS) < 1.25
    assert "| 20 req/s |" in (tmp_path / "report.md").read_text()


# ------------------------------------------------------------------------------------------------ operation
@pytest.mark.parametrize(("args", "key", "message"), [
    (("--model", "gpt-4"), API_KEY, "http_404: HTTP 404: NotFoundError: The model `gpt-4` does not exist."),
    ((), None, "http_401: HTTP 401: Unauthorized"),
    ((), "sk-wrong", "http_401: HTTP 401: Unauthorized"),
])
def test_the_probe_stops_a_sweep_that_cannot_work(standin, tmp_path, args, key, message):
    result = servebench(standin, tmp_path, "--concurrency", "1", *args, key=key, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.parametrize(("key", "hint"), [
    (None, "no API key was sent: SERVEBENCH_TEST_KEY is unset or empty; export SERVEBENCH_TEST_KEY=<key>, or "
           "name the variable that holds the key with --api-key-env (default VLLM_API_KEY)"),
    ("sk-wrong", "the server refused the API key in SERVEBENCH_TEST_KEY"),
])
def test_a_401_from_the_probe_says_whether_a_key_was_sent_and_where_it_comes_from(standin, tmp_path, key, hint):
    result = servebench(standin, tmp_path, "--concurrency", "1", key=key, timeout=30)
    assert result.returncode == 2
    assert hint in result.stderr


def test_ctrl_c_stops_and_keeps_what_was_measured(standin, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "tools"), "SERVEBENCH_TEST_KEY": API_KEY}
    process = subprocess.Popen(
        [sys.executable, "-m", "servebench", "--url", standin, "--model", MODEL, "--api-key-env",
         "SERVEBENCH_TEST_KEY", "--output-dir", str(tmp_path), "--max-tokens", str(MAX_TOKENS), "--concurrency", "10",
         "--runs", "3", "--warmup-waves", "1", "--waves", "40", "--no-chart", "--no-probe"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)  # inside the first run: warm-up (1 wave, 1.6 s) done, measured requests in flight
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "stopping" in stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["interrupted"] is True
    run = summary["levels"][0]["runs"][0]["metrics"]
    assert run["interrupted"] and run["succeeded"] > 0 and run["failed"] == 0
    assert summary["levels"][0]["complete_runs"] == 0
    rows = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert any(row["error_kind"] == "cancelled" for row in rows)
    assert sum(1 for row in rows if row["phase"] == "measured" and row["ok"]) == run["succeeded"]
    assert "Interrupted by Ctrl-C (SIGINT) during level 10 run 1 of 3" in (tmp_path / "report.md").read_text()
    assert "Interrupted" in stdout
