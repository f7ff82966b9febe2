"""servebench's reports: a hint for a 401."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))

from servebench.report import markdown, summarize_level, summarize_sweep  # noqa: E402


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


# ------------------------------------------------------------------------------------------------ hints
def test_a_401_note_says_that_no_key_was_sent_and_how_to_set_one():
    refused = {**finished_run(0), "requests": 5, "succeeded": 0, "failed": 5, "success_rate": 0.0,
               "errors": {"http_401": 5}, "error_examples": {"http_401": "HTTP 401: Unauthorized"}}
    text = markdown(report_of([level_of(10, refused)], planned_levels=[10], runs=1, api_key="none"))
    note = next(line for line in text.splitlines() if line.startswith("- 10: http_401 ×5"))
    assert "no API key was sent" in note and "VLLM_API_KEY" in note and "--api-key-env" in note
