"""servebench's reports: report.md says what a sweep measured and what it did not (an interrupted or unfinished
sweep included), the saturation point as the bracket of levels it lies in, the mean end-to-end latency and mean
ITL, a hint for a 401; summary.json and requests.jsonl stay valid whenever the process stops."""

import json
import math
from array import array

import pytest

from tools.servebench.client import CANCELLED, RequestRecord
from tools.servebench.metrics import run_metrics
from tools.servebench.report import (RequestLog, finer_levels, markdown, summarize_level, summarize_sweep,
                                     write_json)


def finished_run(throughput: float, *, e2e_mean: float = 21.5, itl_mean: float = 0.0205) -> dict:
    return {"requests": 10, "succeeded": 10, "failed": 0, "interrupted": False, "measured_sent": 10,
            "success_rate": 1.0, "errors": {}, "error_examples": {}, "short_outputs": 0,
            "tokens_source": {"usage": 10}, "output_throughput": throughput,
            "e2e": {"mean": e2e_mean, "p50": 21.0, "p99": 22.5}, "itl": {"mean": itl_mean, "p99": 0.05},
            "ttft": {"mean": 0.5}}


def level_of(level: float, *metrics: dict, planned: int = 100) -> dict:
    runs = [{"run": number, "seed": number, "measured_planned": planned, "metrics": run}
            for number, run in enumerate(metrics)]
    return summarize_level(level, "concurrency", runs)


def report_of(levels: list[dict], *, planned_levels: list[float], runs: int, state: str = "finished",
              signal: str | None = None, api_key: str = "set") -> dict:
    settings = {"url": "http://node01:8000", "model": "deepseek-ai/DeepSeek-V3.2", "mode": "concurrency",
                "levels": planned_levels, "runs": runs, "max_tokens": 1024, "prompt_tokens": 256,
                "warmup": "2 x concurrency", "measured": "10 x concurrency", "seed": 0, "spawn_rate": 0,
                "processes": 1, "event_loop": "uvloop", "timeout": 1800, "api_key": api_key,
                "api_key_env": "VLLM_API_KEY"}
    return {"settings": settings, "levels": levels, "sweep": summarize_sweep(levels, 0.05), "started": "now",
            "state": state, "interrupted": state == "interrupted", "stop_signal": signal}


def warmup_record() -> RequestRecord:
    record = RequestRecord(index=0, phase="warmup", scheduled=0.0, worker=0)
    record.status, record.token_times = 200, array("d", [0.1])
    record.error_kind, record.end = CANCELLED, 0.1
    return record


# ------------------------------------------------------------------------------------------------ figures
def test_details_show_the_mean_end_to_end_latency_and_the_mean_itl():
    text = markdown(report_of([level_of(10, finished_run(2857, e2e_mean=21.5, itl_mean=0.0205))],
                              planned_levels=[10], runs=1))
    header = next(line for line in text.splitlines() if line.startswith("| Concurrent | Throughput ±"))
    row = next(line for line in text.splitlines() if line.startswith("| 10 | 2,857 ±"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[columns.index("E2E mean")] == "21.50 s"
    assert cells[columns.index("ITL mean")] == "20.5 ms"


# ------------------------------------------------------------------------------------------------ saturation
def test_the_saturation_point_lies_between_two_levels_and_a_finer_sweep_is_suggested():
    # The knee is at 64: throughput still grows from 50 to 100, not beyond 100. The rule picks the grid point
    # 100; the truth is only known to lie above 50 and at or below 100.
    levels = [level_of(level, finished_run(throughput))
              for level, throughput in ((10, 640), (50, 3200), (100, 4096), (200, 4100))]
    report = report_of(levels, planned_levels=[10, 50, 100, 200], runs=1)
    assert report["sweep"]["saturation"]["between"] == [50, 100]
    text = markdown(report)
    assert "Saturation Point: between 50 and 100 concurrent requests" in text
    assert "--concurrency 50,60,70,80,90,100" in text
    assert "~100" not in text


def test_a_saturation_at_the_lowest_level_lies_at_or_below_it():
    levels = [level_of(level, finished_run(throughput)) for level, throughput in ((10, 4000), (50, 4010))]
    report = report_of(levels, planned_levels=[10, 50], runs=1)
    assert report["sweep"]["saturation"]["between"] == [None, 10]
    assert "Saturation Point: at or below 10 concurrent requests" in markdown(report)


@pytest.mark.parametrize(("low", "high", "whole", "expected"), [
    (50, 100, True, [50, 60, 70, 80, 90, 100]),
    (10, 50, True, [10, 20, 30, 40, 50]),
    (200, 500, True, [200, 250, 300, 350, 400, 450, 500]),
    (1, 10, True, [1, 2, 4, 6, 8, 10]),
    (2.0, 4.0, False, [2.0, 2.5, 3.0, 3.5, 4.0]),
    (0.5, 1.2, False, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2]),
])
def test_a_finer_sweep_takes_about_five_round_steps_across_the_bracket(low, high, whole, expected):
    assert finer_levels(low, high, whole) == pytest.approx(expected)


# ------------------------------------------------------------------------------------------------ interrupted
def test_a_sweep_stopped_in_its_only_warm_up_claims_no_success_and_no_complete_run():
    metrics = run_metrics([warmup_record()], open_loop=False, max_tokens=1024, complete=False)
    assert metrics["interrupted"]
    report = report_of([level_of(10, metrics)], planned_levels=[10], runs=1, state="interrupted", signal="SIGTERM")
    text = markdown(report)
    assert "Interrupted by SIGTERM during level 10 run 1 of 1, in its warm-up" in text
    assert "Nothing was measured" in text
    assert "Success Rate" not in text and "1/1" not in text and "Peak Throughput" not in text


def test_an_interrupted_report_says_what_was_interrupted_and_what_was_measured():
    stopped = {**finished_run(3000), "requests": 37, "succeeded": 37, "interrupted": True, "measured_sent": 40}
    levels = [level_of(10, finished_run(1000), finished_run(1010)), level_of(50, finished_run(3000), stopped)]
    text = markdown(report_of(levels, planned_levels=[10, 50, 100], runs=2, state="interrupted",
                              signal="SIGINT"))
    assert "Interrupted by Ctrl-C (SIGINT) during level 50 run 2 of 2, after 37 of 100 measured requests" in text
    assert "Measured: 10 (2 of 2 runs), 50 (1 of 2 runs). Not measured: 100." in text
    assert "| 50 | 3,000 tok/s |" in text        # the complete run stays in the figures


def test_a_report_written_while_the_sweep_runs_says_it_is_incomplete():
    text = markdown(report_of([level_of(10, finished_run(1000))], planned_levels=[10, 50], runs=1, state="running"))
    assert "Incomplete" in text and "no longer running" in text
    assert "Measured: 10 (1 of 1 run). Not measured: 50." in text
    assert "Saturation Point: not reached by the levels measured so far (the sweep did not finish)" in text


def test_the_report_written_before_the_first_run_claims_nothing():
    text = markdown(report_of([], planned_levels=[10, 50], runs=1, state="running"))
    assert "Incomplete:** written before the first run finished" in text
    assert "Nothing was measured: no run finished. Not measured: 10, 50." in text
    assert "Saturation Point" not in text and "Success Rate" not in text


# ------------------------------------------------------------------------------------------------ hints
def test_a_401_note_says_that_no_key_was_sent_and_how_to_set_one():
    refused = {**finished_run(0), "requests": 5, "succeeded": 0, "failed": 5, "success_rate": 0.0,
               "errors": {"http_401": 5}, "error_examples": {"http_401": "HTTP 401: Unauthorized"}}
    text = markdown(report_of([level_of(10, refused)], planned_levels=[10], runs=1, api_key="none"))
    note = next(line for line in text.splitlines() if line.startswith("- 10: http_401 ×5"))
    assert "no API key was sent" in note and "VLLM_API_KEY" in note and "--api-key-env" in note


# ------------------------------------------------------------------------------------------------ files
def test_the_request_log_is_valid_json_lines_after_every_run(tmp_path):
    path = tmp_path / "requests.jsonl"
    with RequestLog(path) as log:
        log.add([{"run": 0, "index": 0, "ttft": math.nan}, {"run": 0, "index": 1, "ttft": 0.2}])
        written = [json.loads(line) for line in path.read_text().splitlines()]   # still open: a stop now
        assert written == [{"run": 0, "index": 0, "ttft": None}, {"run": 0, "index": 1, "ttft": 0.2}]
        log.add([{"run": 1, "index": 0, "ttft": 0.3}])
    assert len(path.read_text().splitlines()) == 3 and log.count == 3


def test_a_summary_that_fails_half_way_leaves_the_previous_one_intact(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"levels": [1, 2]})
    with pytest.raises(TypeError):
        write_json(path, {"levels": [3], "not JSON": object()})
    assert json.loads(path.read_text()) == {"levels": [1, 2]}
    assert [item.name for item in tmp_path.iterdir()] == ["summary.json"]
