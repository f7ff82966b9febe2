"""servebench as an operator runs it, against benchmarks/fast_sse_server.py on loopback: where the reports go is
the first and the last line. Plus a base URL ending in /v1."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from standin_process import StandinProcess

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tools"))

from servebench.client import Target  # noqa: E402

SERVER = REPO / "benchmarks" / "fast_sse_server.py"
TTFT, ITL, MAX_TOKENS = 0.05, 0.01, 16      # 0.2 s per request


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = StandinProcess(SERVER, ["--ttft", str(TTFT), "--itl", str(ITL)],
                             tmp_path_factory.mktemp("fast-sse") / "server.log")
    yield process.url
    process.stop()


def start(url: str, *args: str, output: Path | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """servebench as a subprocess; its first stderr line is read before this returns and kept as
    `process.first_line`."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "tools")}
    env.pop("VLLM_API_KEY", None)
    command = [sys.executable, "-m", "servebench", "--url", url, "--model", "fast", "--max-tokens", str(MAX_TOKENS),
               "--prompt-tokens", "16", "--no-chart", *args]
    if output is not None:
        command += ["--output-dir", str(output)]
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.first_line = process.stderr.readline()
    return process


def finish(process: subprocess.Popen) -> tuple[str, str]:
    stdout, stderr = process.communicate(timeout=30)
    return stdout, process.first_line + stderr


# ------------------------------------------------------------------------------------------------ output
def test_the_first_and_the_last_line_say_where_the_reports_went(server, tmp_path):
    process = start(server, "--concurrency", "2", "--runs", "1", "--warmup-waves", "0", "--waves", "1", cwd=tmp_path)
    stdout, stderr = finish(process)
    assert process.returncode == 0, stderr
    (output,) = (tmp_path / "reports" / "benchmark").iterdir()
    assert (output / "report.md").exists()
    assert f"{output}/" in process.first_line
    # stdout (the table) comes before the last stderr line: flushed before it
    assert stdout.strip() and f"{output}/" in stderr.splitlines()[-1]


# ------------------------------------------------------------------------------------------------ pieces
def test_a_base_url_ending_in_v1_is_the_server_root_as_for_the_smoke_test():
    assert Target.from_url("http://node01:8000/v1").path == "/v1/chat/completions"
    assert Target.from_url("http://node01:8000/v1/").path == "/v1/chat/completions"
    assert Target.from_url("http://lb/vllm/v1").path == "/vllm/v1/chat/completions"
    assert Target.from_url("http://lb/v1", "/chat/completions").path == "/v1/chat/completions"

