"""Per-request and per-run figures, with `vllm bench serve`'s definitions (vllm/benchmarks/serve.py
`calculate_metrics`, lib/endpoint_request_func.py), and the run's steady-state window.

Per request (times from the send, or from the scheduled arrival in open loop):
- TTFT = arrival of the first chunk carrying output - send;
- E2E latency = arrival of the last chunk carrying output - send (the usage chunk and [DONE] do not count);
- TPOT = (E2E - TTFT) / (output_tokens - 1), for output_tokens > 1;
- ITL = the gaps between consecutive output chunks, pooled over the run's requests;
- output_tokens = `usage.completion_tokens` of the final chunk (`tokens_source` "usage"), else the number of
  output chunks ("chunks").
Per run (sustained figures: warm-up, ramp and drain excluded):
- output throughput, closed loop = the sum over the workers of (output tokens of the worker's measured requests
  / the span of those requests, first send -> last output chunk). Each worker spans whole request cycles, so
  the figure is exact whatever the workers' relative phases (a window cut across clumped phases is not);
- output throughput, open loop = output tokens delivered, by every request in flight, between the first and
  the last measured arrival / that window's length (load is steady across it: arrivals go on afterwards);
- request throughput: the same with successful requests instead of tokens;
- burst throughput = the busiest whole second from the first measured send to the last measured token (vLLM's
  "peak output token throughput"). Tokens are spread over each request's chunks, so a chunk that carries
  several tokens (speculative decoding) counts them all.
"""

import math
from bisect import bisect_left, bisect_right
from collections import Counter

from .client import CANCELLED, RequestRecord
from .load import MEASURED
from .stats import mean, percentile, population_std

PERCENTILES = (50, 90, 99)
LAG_FLAG_SECONDS = 0.010  # open loop: a median send lag above this means the client could not keep the schedule


def request_times(record: RequestRecord, open_loop: bool) -> dict:
    """TTFT, E2E and TPOT of one finished request, in seconds."""
    origin = record.scheduled if open_loop else record.sent
    times = record.token_times
    if not times:
        return {"ttft": math.nan, "e2e": math.nan, "tpot": math.nan}
    ttft, e2e = times[0] - origin, times[-1] - origin
    tokens = record.tokens
    return {"ttft": ttft, "e2e": e2e, "tpot": (e2e - ttft) / (tokens - 1) if tokens > 1 else math.nan}


def distribution(values: list[float]) -> dict:
    values = [value for value in values if not math.isnan(value)]
    summary = {"mean": mean(values), "std": population_std(values)}
    summary.update({f"p{q}": percentile(values, q) for q in PERCENTILES})
    return summary


def _tokens_in(record: RequestRecord, start: float, end: float, default_ratio: float) -> float:
    times = record.token_times
    if not times:
        return 0.0
    chunks = bisect_right(times, end) - bisect_left(times, start)
    ratio = record.output_tokens / len(times) if record.output_tokens is not None else default_ratio
    return chunks * ratio


def _busiest_second(records: list[RequestRecord], start: float, end: float, default_ratio: float) -> float:
    seconds = int(end - start)
    if seconds < 1:
        return math.nan
    buckets = [0.0] * seconds
    for record in records:
        times = record.token_times
        if not times:
            continue
        ratio = record.output_tokens / len(times) if record.output_tokens is not None else default_ratio
        for at in times[bisect_left(times, start):bisect_left(times, start + seconds)]:
            buckets[int(at - start)] += ratio
    return max(buckets)


def _closed_loop_rates(finished: list[RequestRecord], ratio: float) -> tuple[float, float]:
    by_worker: dict[int, list[RequestRecord]] = {}
    for record in finished:
        by_worker.setdefault(record.worker, []).append(record)
    tokens_rate = requests_rate = 0.0
    for worker_records in by_worker.values():
        start = min(record.sent for record in worker_records)
        end = max(record.token_times[-1] if record.token_times else record.end for record in worker_records)
        if end <= start:
            continue
        tokens = sum(record.tokens if record.output_tokens is not None else len(record.token_times) * ratio
                     for record in worker_records)
        tokens_rate += tokens / (end - start)
        requests_rate += sum(1 for record in worker_records if record.ok) / (end - start)
    return tokens_rate, requests_rate


def _open_loop_rates(records: list[RequestRecord], measured: list[RequestRecord], ratio: float
                     ) -> tuple[float, float]:
    start = min(record.scheduled for record in measured)
    end = max(record.scheduled for record in measured)
    if end <= start:
        return math.nan, math.nan
    tokens = sum(_tokens_in(record, start, end, ratio) for record in records)
    completed = sum(1 for record in records if record.ok and start <= record.token_times[-1] <= end)
    return tokens / (end - start), completed / (end - start)


def run_metrics(records: list[RequestRecord], *, open_loop: bool, max_tokens: int, complete: bool = True) -> dict:
    """The figures of one run: see the module docstring. `interrupted` is set when the run did not complete (a
    stop before its measured requests all finished, even one in the warm-up) or measured requests were cancelled;
    such a run is kept in the raw records but left out of the summaries."""
    measured = [record for record in records if record.phase == MEASURED]
    finished = [record for record in measured if record.error_kind != CANCELLED]
    good = [record for record in finished if record.ok]
    failed = [record for record in finished if not record.ok]
    errors = Counter(record.error_kind or "unknown" for record in failed)
    examples = {}
    for record in failed:
        examples.setdefault(record.error_kind or "unknown", record.error)
    result = {"requests": len(finished), "succeeded": len(good), "failed": len(failed),
              "interrupted": not complete or len(finished) < len(measured), "measured_sent": len(measured),
              "success_rate": len(good) / len(finished) if finished else math.nan,
              "errors": dict(errors), "error_examples": examples,
              "short_outputs": sum(1 for record in good if record.tokens < max_tokens),
              "tokens_source": dict(Counter(record.tokens_source for record in good))}
    if not good:
        return result

    per_request = [request_times(record, open_loop) for record in good]
    itls = [later - earlier for record in good
            for earlier, later in zip(record.token_times, record.token_times[1:])]
    with_usage = [record for record in good if record.output_tokens is not None and record.token_times]
    ratio = (sum(r.output_tokens for r in with_usage) / sum(len(r.token_times) for r in with_usage)
             if with_usage else 1.0)
    window_start = min(record.scheduled if open_loop else record.sent for record in measured)
    window_end = max(record.token_times[-1] for record in good)
    window = window_end - window_start
    if open_loop:
        output_throughput, request_throughput = _open_loop_rates(records, measured, ratio)
    else:
        output_throughput, request_throughput = _closed_loop_rates(finished, ratio)
    mean_output = mean(record.tokens for record in good)
    prompts = [record.prompt_tokens for record in good if record.prompt_tokens is not None]
    in_flight = math.fsum(max(0.0, min(record.end or window_end, window_end) - max(record.sent, window_start))
                          for record in records) / window if window > 0 else math.nan
    result.update({
        "window_seconds": window,
        "output_throughput": output_throughput,
        "request_throughput": request_throughput,
        "total_token_throughput": (output_throughput + request_throughput * mean(prompts)
                                   if prompts else math.nan),
        "burst_throughput": _busiest_second(records, window_start, window_end, ratio),
        "mean_in_flight": in_flight,
        "mean_output_tokens": mean_output,
        "mean_prompt_tokens": mean(prompts) if prompts else math.nan,
        "ttft": distribution([times["ttft"] for times in per_request]),
        "tpot": distribution([times["tpot"] for times in per_request]),
        "itl": distribution(itls),
        "e2e": distribution([times["e2e"] for times in per_request]),
    })
    if open_loop:
        lags = [record.sent - record.scheduled for record in finished]
        result["send_lag"] = {"p50": percentile(lags, 50), "p99": percentile(lags, 99)}
        result["client_lagging"] = result["send_lag"]["p50"] > LAG_FLAG_SECONDS
    return result


def flatten(metrics: dict) -> dict[str, float]:
    """The numeric figures of a run as `name` / `name.stat` keys, for summaries over runs."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict) and key in ("ttft", "tpot", "itl", "e2e", "send_lag"):
            flat.update({f"{key}.{stat}": number for stat, number in value.items()})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[key] = float(value)
    return flat
