"""servebench as an operator runs it, against benchmarks/fast_sse_server.py on loopback: SIGTERM (as `timeout` and
systemd send it) stops a sweep like Ctrl-C at any moment and leaves valid files and an honest report; a kill leaves
the report of the last finished run; where the reports go is the first and the last line; the time the sweep
will take is printed before it starts and kept in the progress line. Plus the pieces behind them: the time
estimate, the line printed after each run, and a base URL ending in /v1."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from array import array
from pathlib import Path

import pytest

from lab.standin_process import StandinProcess
from tools.servebench.cli import run_line
from tools.servebench.client import RequestRecord, Target
from tools.servebench.estimate import ProbeSpeed, SweepClock, duration_text, run_seconds
from tools.servebench.load import RunPlan

REPO = Path(__file__).resolve().parents[3]
SERVER = REPO / "benchmarks" / "fast_sse_server.py"
TTFT, ITL, MAX_TOKENS = 0.05, 0.01, 16      # 0.2 s per request
NAN = re.compile(r"\bnan\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = StandinProcess(SERVER, ["--ttft", str(TTFT), "--itl", str(ITL)],
                             tmp_path_factory.mktemp("fast-sse") / "server.log")
    yield process.url
    process.stop()


def start(url: str, *args: str, output: Path | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """servebench as a subprocess; its first stderr line is read before this returns (by then it handles
    SIGTERM) and kept as `process.first_line`."""
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


def request_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------------------------ stopping
SWEEP = ("--concurrency", "4,8", "--runs", "2", "--warmup-waves", "1", "--waves", "3")   # ~4 s


def test_sigterm_at_random_moments_leaves_valid_files_and_an_honest_report(server, tmp_path):
    rng = random.Random()
    for trial in range(4):
        delay = rng.uniform(0.0, 3.0)
        output = tmp_path / f"trial{trial}"
        process = start(server, *SWEEP, output=output)
        time.sleep(delay)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = finish(process)
        context = f"SIGTERM {delay:.2f} s after the first line\n{stderr}"
        summary = json.loads((output / "summary.json").read_text())
        rows = request_rows(output / "requests.jsonl")
        report = (output / "report.md").read_text()
        assert not NAN.search(stdout + stderr), context
        if process.returncode == 0:     # the sweep ended before the signal came: then it must say so
            assert summary["state"] == "finished" and "Interrupted" not in report, context
            continue
        assert process.returncode == 143, context
        assert summary["state"] == "interrupted" and summary["interrupted"] is True, context
        assert "Interrupted by SIGTERM" in report, context
        complete = [(level["level"], run["run"]) for level in summary["levels"] for run in level["runs"]
                    if not run["metrics"]["interrupted"]]
        for level in summary["levels"]:
            assert (f"| {level['level']:g} | " in report.split("## Peak")[0]) == (level["complete_runs"] > 0), context
        if not complete:
            assert "Nothing was measured" in report and "Success Rate" not in report, context
        succeeded = sum(run["metrics"]["succeeded"] for level in summary["levels"] for run in level["runs"]
                        if (level["level"], run["run"]) in complete)
        assert succeeded == sum(1 for row in rows if row["phase"] == "measured" and row["ok"]
                                and (row["level"], row["run"]) in complete), context


def test_sigterm_in_the_warm_up_says_nothing_was_measured(server, tmp_path):
    process = start(server, "--concurrency", "4", "--runs", "1", "--warmup-waves", "20", "--waves", "2",
                    "--no-probe", output=tmp_path)
    time.sleep(1.0)     # warm-up: 20 waves of 0.2 s
    process.send_signal(signal.SIGTERM)
    stdout, stderr = finish(process)
    assert process.returncode == 143, stderr
    assert "level 4 run 1/1: interrupted in its warm-up" in stderr
    report = (tmp_path / "report.md").read_text()
    assert "Interrupted by SIGTERM during level 4 run 1 of 1, in its warm-up" in report
    assert "Nothing was measured" in report and "Success Rate" not in report and "1/1" not in report
    assert not NAN.search(stdout + stderr)
    rows = request_rows(tmp_path / "requests.jsonl")
    assert rows and {row["phase"] for row in rows} == {"warmup"}
    assert any(row["error_kind"] == "cancelled" for row in rows)


def test_a_kill_leaves_the_report_of_the_last_finished_run(server, tmp_path):
    process = start(server, "--concurrency", "4", "--runs", "20", "--warmup-waves", "1", "--waves", "2",
                    "--no-probe", output=tmp_path)
    summary_path, deadline = tmp_path / "summary.json", time.monotonic() + 20
    # summary.json is replaced whole, never half-written: it can be read while servebench runs.
    while not (summary_path.exists() and json.loads(summary_path.read_text())["levels"]):
        assert time.monotonic() < deadline and process.poll() is None, "no report after the first run"
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.6))
    process.kill()
    finish(process)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["state"] == "running" and summary["levels"][0]["complete_runs"] >= 1
    assert "Incomplete" in (tmp_path / "report.md").read_text()
    request_rows(tmp_path / "requests.jsonl")      # every line whole


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


def test_a_time_estimate_comes_before_the_sweep_and_the_progress_line_keeps_an_eta(server, tmp_path):
    # 9 request cycles of ~0.2 s: (1 + 8 waves) x 4 requests over 4 workers.
    process = start(server, "--concurrency", "4", "--runs", "1", "--warmup-waves", "1", "--waves", "8",
                    output=tmp_path)
    _, stderr = finish(process)
    assert process.returncode == 0, stderr
    lines = stderr.splitlines()
    estimate = next(number for number, line in enumerate(lines) if "at the probe's speed" in line)
    progress = next(number for number, line in enumerate(lines) if line.startswith("level 4 run 1/1: measured"))
    assert estimate < progress
    seconds = float(re.search(r"at least (\d+) s", lines[estimate]).group(1))
    assert 1 <= seconds <= 4, lines[estimate]
    assert re.search(r"sweep ETA (\w{3} )?\d\d:\d\d", lines[progress]), lines[progress]


# ------------------------------------------------------------------------------------------------ pieces
def test_a_run_takes_its_request_cycles_at_the_probe_speed():
    speed = ProbeSpeed(ttft=0.05, per_token=0.01)
    assert speed.request_seconds(101) == pytest.approx(1.05)
    closed = RunPlan(mode="concurrency", level=10, run=0, seed=0, start_at=0, concurrency=10, warmup_requests=20,
                     measured_requests=100)
    assert run_seconds(closed, 1.05) == pytest.approx(12 * 1.05)          # 120 requests over 10 workers
    spawned = RunPlan(mode="concurrency", level=10, run=0, seed=0, start_at=0, concurrency=10, warmup_requests=20,
                      measured_requests=100, spawn_rate=5)
    assert run_seconds(spawned, 1.05) == pytest.approx(9 / 5 + 12 * 1.05)
    opened = RunPlan(mode="rate", level=2, run=0, seed=0, start_at=0, rate=2, warmup_seconds=10, duration=60)
    assert run_seconds(opened, 1.05) == pytest.approx(71.05)


def test_the_probe_speed_comes_from_its_token_times():
    record = RequestRecord(0, "probe", 0.0)
    record.sent, record.token_times, record.output_tokens = 1.0, array("d", [1.25, 1.30, 1.45]), 8
    speed = ProbeSpeed.from_record(record)
    assert speed.ttft == pytest.approx(0.25) and speed.per_token == pytest.approx(0.2 / 7)


def test_the_eta_follows_how_fast_the_runs_really_go():
    clock = SweepClock([10.0, 10.0, 10.0], calibrated=True)
    assert clock.remaining(elapsed=0) == pytest.approx(30)
    clock.observe(elapsed=10, fraction=0.5)            # twice as slow as predicted
    assert clock.remaining(elapsed=10) == pytest.approx(10 + 40)
    clock.finish_run(elapsed=20)
    assert clock.remaining(elapsed=0) == pytest.approx(40)
    unknown = SweepClock([1.0, 1.0], calibrated=False)  # no probe: no estimate until requests finish
    assert unknown.remaining(elapsed=5) is None
    unknown.observe(elapsed=4, fraction=0.5)
    assert unknown.remaining(elapsed=4) == pytest.approx(4 + 8)


@pytest.mark.parametrize(("seconds", "text"), [(4.4, "4 s"), (59.6, "1 min 00 s"), (754, "12 min 34 s"),
                                               (11_100, "3 h 05 min")])
def test_durations_read_as_hours_minutes_and_seconds(seconds, text):
    assert duration_text(seconds) == text


def test_the_line_after_a_run_says_what_happened_without_nan():
    interrupted = {"run": 0, "measured_planned": 40, "metrics": {
        "requests": 0, "succeeded": 0, "failed": 0, "interrupted": True, "measured_sent": 0, "success_rate": 0.0,
        "errors": {}}}
    assert run_line("level 4 run 1/1", interrupted) == ("level 4 run 1/1: interrupted in its warm-up; left out of "
                                                        "the figures")
    refused = {"run": 0, "measured_planned": 3, "metrics": {
        "requests": 3, "succeeded": 0, "failed": 3, "interrupted": False, "measured_sent": 3, "success_rate": 0.0,
        "errors": {"http_503": 3}}}
    assert run_line("level 4 run 1/1", refused) == "level 4 run 1/1: no successful request (http_503 ×3)"


def test_a_base_url_ending_in_v1_is_the_server_root_as_for_the_smoke_test():
    assert Target.from_url("http://node01:8000/v1").path == "/v1/chat/completions"
    assert Target.from_url("http://node01:8000/v1/").path == "/v1/chat/completions"
    assert Target.from_url("http://lb/vllm/v1").path == "/vllm/v1/chat/completions"
    assert Target.from_url("http://lb/v1", "/chat/completions").path == "/v1/chat/completions"

