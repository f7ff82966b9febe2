"""servebench's statistics and per-run figures: numpy's percentile method as `vllm bench serve` uses it, the
t-interval over runs, the saturation rule, vLLM's TTFT/TPOT/ITL/E2E definitions, sustained throughput that
does not depend on the workers' phases, the error breakdown, and the report built from them."""

import math
from array import array

import pytest

from tools.servebench.client import CANCELLED, RequestRecord
from tools.servebench.metrics import run_metrics
from tools.servebench.report import markdown, summarize_level, summarize_sweep
from tools.servebench.stats import percentile, population_std, saturation_point, spread, t_quantile_975

VENDOR_LEVELS = [10, 50, 100, 200, 500, 1000]
VENDOR_THROUGHPUT = [2857, 5694, 5518, 5486, 5657, 5786]  # the vendor guide's table and its 1,000 peak


# ------------------------------------------------------------------------------------------------ percentiles
@pytest.mark.parametrize(("values", "q", "expected"), [
    ([1, 2, 3, 4], 50, 2.5),
    ([1, 2, 3, 4], 99, 3.97),            # position 2.97: 3 + 0.97 * (4 - 3)
    ([10, 20, 30, 40, 50], 90, 46.0),
    ([7.0], 99, 7.0),
    ([5, 1, 4, 2, 3], 0, 1),
    ([5, 1, 4, 2, 3], 100, 5),
])
def test_percentile_interpolates_linearly_like_numpy(values, q, expected):
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_matches_numpy_on_random_samples():
    numpy = pytest.importorskip("numpy")
    rng = numpy.random.default_rng(7)
    for size in (2, 3, 17, 100, 1001):
        values = rng.exponential(2.0, size).tolist()
        for q in (1, 50, 90, 99, 99.9):
            assert percentile(values, q) == pytest.approx(float(numpy.percentile(values, q)))


def test_percentile_of_nothing_is_nan_and_population_std_divides_by_n():
    assert math.isnan(percentile([], 50))
    assert population_std([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(2.0)


# ------------------------------------------------------------------------------------------------ spread
def test_t_quantiles_are_students_and_approach_the_normal():
    assert t_quantile_975(4) == pytest.approx(2.776)   # n = 5 runs
    assert t_quantile_975(1) == pytest.approx(12.706)
    assert 2.021 > t_quantile_975(50) > 2.000           # interpolated between 40 and 60
    assert t_quantile_975(10_000) == pytest.approx(1.96, abs=0.002)


def test_spread_over_five_runs_gives_the_95_percent_t_interval():
    result = spread([100.0, 102.0, 98.0, 101.0, 99.0])
    assert result.n == 5 and result.mean == pytest.approx(100.0)
    assert result.std == pytest.approx(math.sqrt(2.5))                  # sample standard deviation
    assert result.cv == pytest.approx(math.sqrt(2.5) / 100)
    half = 2.776 * math.sqrt(2.5) / math.sqrt(5)
    assert (result.ci95_low, result.ci95_high) == pytest.approx((100 - half, 100 + half))


def test_spread_of_one_run_has_no_interval_and_ignores_nan():
    result = spread([5.0, math.nan])
    assert result.n == 1 and result.mean == 5.0 and math.isnan(result.ci95_low)


# ------------------------------------------------------------------------------------------------ saturation
def test_saturation_of_the_vendor_table_is_50():
    assert saturation_point(VENDOR_LEVELS, VENDOR_THROUGHPUT, 0.05) == 50


def test_saturation_needs_every_later_level_below_the_threshold():
    # 200 -> 500 grows 4 %, but 1000 is 8 % above 200: saturation is 500, not 200.
    assert saturation_point([100, 200, 500, 1000], [1000, 2000, 2080, 2160], 0.05) == 500
    assert saturation_point([100, 200, 500, 1000], [1000, 2000, 2080, 2160], 0.10) == 200


def test_saturation_is_not_reached_while_throughput_still_grows():
    assert saturation_point([1, 10, 50], [100, 1000, 5000], 0.05) is None
    assert saturation_point([10], [100], 0.05) is None


# ------------------------------------------------------------------------------------------------ run figures
def record(worker: int, sent: float, token_times: list[float], *, tokens: int | None = None, phase="measured",
           error_kind: str = "", status: int = 200) -> RequestRecord:
    result = RequestRecord(index=0, phase=phase, scheduled=sent, worker=worker)
    result.sent, result.status, result.error_kind = sent, status, error_kind
    result.token_times = array("d", token_times)
    result.output_tokens = tokens if tokens is not None else (len(token_times) or None)
    result.end = token_times[-1] if token_times else sent
    return result


def test_request_figures_follow_vllm_bench_serve():
    # TTFT 0.2 s, then 4 more chunks 0.1 s apart; usage says 5 tokens.
    run = run_metrics([record(0, 10.0, [10.2, 10.3, 10.4, 10.5, 10.6])], open_loop=False, max_tokens=5)
    assert run["ttft"]["mean"] == pytest.approx(0.2)
    assert run["e2e"]["p99"] == pytest.approx(0.6)
    assert run["tpot"]["mean"] == pytest.approx((0.6 - 0.2) / (5 - 1))
    assert run["itl"]["p50"] == pytest.approx(0.1)
    assert run["short_outputs"] == 0 and run["tokens_source"] == {"usage": 1}


def test_tokens_come_from_usage_not_from_chunks():
    # Speculative decoding: 3 chunks carrying 6 tokens. TPOT and throughput count tokens.
    run = run_metrics([record(0, 0.0, [1.0, 2.0, 3.0], tokens=6)], open_loop=False, max_tokens=6)
    assert run["tpot"]["mean"] == pytest.approx((3.0 - 1.0) / 5)
    assert run["output_throughput"] == pytest.approx(6 / 3.0)
    assert run["itl"]["mean"] == pytest.approx(1.0)  # ITL stays per chunk, as in vLLM


def test_a_stream_without_usage_is_counted_in_chunks_and_flagged_short():
    chunks_only = record(0, 0.0, [0.5, 0.6, 0.7])
    chunks_only.output_tokens = None
    run = run_metrics([chunks_only], open_loop=False, max_tokens=8)
    assert run["tokens_source"] == {"chunks": 1}
    assert run["short_outputs"] == 1


def test_closed_loop_throughput_does_not_depend_on_clumped_phases():
    # Two workers, cycle 1 s: 0.5 s prefill (no tokens) then 5 tokens. Worker 1 lags worker 0 by 0.3 s, so a
    # window cut from the first send to the last token would see 2 cycles plus 0.3 s of mostly-prefill time.
    records = []
    for worker, offset in ((0, 0.0), (1, 0.3)):
        for cycle in range(2):
            start = offset + cycle
            records.append(record(worker, start, [start + 0.5 + 0.1 * k for k in range(5)]))
    run = run_metrics(records, open_loop=False, max_tokens=5)
    # Each worker delivers 10 tokens over 1.9 s (its first send to its last token).
    assert run["output_throughput"] == pytest.approx(2 * 10 / 1.9)
    assert run["request_throughput"] == pytest.approx(2 * 2 / 1.9)


def test_open_loop_counts_tokens_delivered_between_the_first_and_last_measured_arrival():
    # Window: first to last measured arrival, [1.0, 3.0]. Tokens inside it: the warm-up request's second, the
    # first measured request's two; the second measured request's come after 3.0, the cool-down's too.
    records = [record(-1, 0.0, [0.5, 1.5], phase="warmup"), record(-1, 1.0, [1.2, 1.4]),
               record(-1, 3.0, [3.2, 3.4]), record(-1, 3.5, [3.9, 4.0], phase="cooldown")]
    run = run_metrics(records, open_loop=True, max_tokens=2)
    assert run["output_throughput"] == pytest.approx(3 / 2.0)
    assert run["ttft"]["mean"] == pytest.approx(0.2)                     # from the scheduled arrival


def test_errors_are_broken_down_and_cancelled_requests_mark_the_run_interrupted():
    ok = record(0, 0.0, [0.1, 0.2])
    refused = record(1, 0.0, [], error_kind="http_503", status=503)
    refused.error = "HTTP 503: ServiceUnavailableError: queue full"
    broken = record(2, 0.0, [0.1], error_kind="stream_error")
    broken.error = "BadRequestError: Internal server error"
    stopped = record(3, 0.0, [0.1], error_kind=CANCELLED)
    run = run_metrics([ok, refused, broken, stopped], open_loop=False, max_tokens=2)
    assert run["requests"] == 3 and run["succeeded"] == 1
    assert run["success_rate"] == pytest.approx(1 / 3)
    assert run["errors"] == {"http_503": 1, "stream_error": 1}
    assert run["error_examples"]["http_503"].startswith("HTTP 503")
    assert run["interrupted"] is True


# ------------------------------------------------------------------------------------------------ report
def vendor_like_report() -> dict:
    levels = []
    for level, throughput in zip(VENDOR_LEVELS, VENDOR_THROUGHPUT):
        runs = []
        for run in range(5):
            metrics = {"requests": 10, "succeeded": 10, "failed": 0, "interrupted": False, "success_rate": 1.0,
                       "errors": {}, "error_examples": {}, "short_outputs": 0, "tokens_source": {"usage": 10},
                       "output_throughput": throughput + run - 2, "e2e": {"p99": 22.5 + run * 0.1},
                       "ttft": {"mean": 0.5}}
            runs.append({"run": run, "seed": run, "metrics": metrics})
        levels.append(summarize_level(level, "concurrency", runs))
    settings = {"url": "http://lb:8000", "model": "deepseek-ai/DeepSeek-V3.2", "mode": "concurrency", "runs": 5,
                "max_tokens": 1024, "prompt_tokens": 256, "warmup": "2 x concurrency", "measured": "10 x concurrency",
                "seed": 0, "spawn_rate": 0, "processes": 1, "event_loop": "uvloop", "timeout": 600}
    return {"settings": settings, "levels": levels, "sweep": summarize_sweep(levels, 0.05), "started": "now",
            "state": "finished"}


def test_markdown_has_the_vendor_table_shape_peak_and_saturation():
    text = markdown(vendor_like_report())
    assert "| Concurrent | Throughput | p99 Latency |" in text
    assert "| 10 | 2,857 tok/s | 22.70 s |" in text        # mean of 5 runs; p99 is the mean of per-run p99s
    assert "Multi-run means (n=5)" in text
    assert "Peak Throughput: 5,786 tok/s at 1,000 concurrent" in text
    assert "Saturation Point: between 10 and 50 concurrent requests" in text   # the guide: "~50"
    assert "100% Success Rate at all tested levels" in text
