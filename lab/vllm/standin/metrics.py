"""Prometheus metrics with vLLM's names, labels and buckets (v1/metrics/loggers.py PrometheusStatLogger,
v1/metrics/buckets.py), in prometheus_client's text format (counters as *_total plus a *_created gauge)."""

from __future__ import annotations

import bisect
import math
import time

REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                           240.0, 480.0, 960.0, 1920.0, 7680.0)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
               80.0)
FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")


def go_float(value: float) -> str:
    """prometheus_client's floatToGoString."""
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return text


def one_two_five(limit: int) -> tuple[float, ...]:
    values, exponent = [], 0
    while True:
        for mantissa in (1, 2, 5):
            if mantissa * 10 ** exponent > limit:
                return tuple(float(v) for v in values)
            values.append(mantissa * 10 ** exponent)
        exponent += 1


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1


class Metrics:
    def __init__(self, model_name: str, max_model_len: int) -> None:
        self.labels = {"model_name": model_name, "engine": "0"}
        self.created = time.time()
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success = dict.fromkeys(FINISH_REASONS, 0)
        token_buckets = one_two_five(max_model_len)
        self.histograms = {
            "vllm:time_to_first_token_seconds": ("Histogram of time to first token in seconds.",
                                                 Histogram(TTFT_BUCKETS)),
            "vllm:inter_token_latency_seconds": ("Histogram of inter-token latency in seconds.",
                                                 Histogram(ITL_BUCKETS)),
            "vllm:request_time_per_output_token_seconds": (
                "Histogram of time_per_output_token_seconds per request.", Histogram(ITL_BUCKETS)),
            "vllm:e2e_request_latency_seconds": ("Histogram of e2e request latency in seconds.",
                                                 Histogram(REQUEST_LATENCY_BUCKETS)),
            "vllm:request_queue_time_seconds": ("Histogram of time spent in WAITING phase for request.",
                                                Histogram(REQUEST_LATENCY_BUCKETS)),
            "vllm:request_inference_time_seconds": ("Histogram of time spent in RUNNING phase for request.",
                                                    Histogram(REQUEST_LATENCY_BUCKETS)),
            "vllm:request_prefill_time_seconds": ("Histogram of time spent in PREFILL phase for request.",
                                                  Histogram(REQUEST_LATENCY_BUCKETS)),
            "vllm:request_decode_time_seconds": ("Histogram of time spent in DECODE phase for request.",
                                                 Histogram(REQUEST_LATENCY_BUCKETS)),
            "vllm:request_prompt_tokens": ("Number of prefill tokens processed.", Histogram(token_buckets)),
            "vllm:request_generation_tokens": ("Number of generation tokens processed.", Histogram(token_buckets)),
        }

    def observe(self, name: str, value: float) -> None:
        self.histograms[name][1].observe(value)

    def _labels(self, **extra: str) -> str:
        pairs = sorted({**self.labels, **extra}.items())
        return "{" + ",".join(f'{key}="{value}"' for key, value in pairs) + "}"

    def render(self, running: int, waiting: int, kv_usage: float) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[tuple[str, str, float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{sample}{labels} {go_float(value)}" for sample, labels, value in samples)

        def counter(name: str, help_text: str, values: list[tuple[str, float]]) -> None:
            family(name + "_total", "counter", help_text, [(name + "_total", labels, v) for labels, v in values])
            family(name + "_created", "gauge", help_text,
                   [(name + "_created", labels, self.created) for labels, _ in values])

        plain = self._labels()
        family("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
               [("vllm:num_requests_running", plain, running)])
        family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
               [("vllm:num_requests_waiting", plain, waiting)])
        family("vllm:num_requests_waiting_by_reason", "gauge",
               "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; "
               "'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). Sum of all "
               "reasons equals vllm:num_requests_waiting.",
               [("vllm:num_requests_waiting_by_reason", self._labels(reason="capacity"), waiting),
                ("vllm:num_requests_waiting_by_reason", self._labels(reason="deferred"), 0)])
        family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
               [("vllm:kv_cache_usage_perc", plain, kv_usage)])
        counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", [(plain, 0)])
        counter("vllm:prompt_tokens", "Number of prefill tokens processed.", [(plain, self.prompt_tokens)])
        counter("vllm:generation_tokens", "Number of generation tokens processed.",
                [(plain, self.generation_tokens)])
        counter("vllm:request_success", "Count of successfully processed requests.",
                [(self._labels(finished_reason=reason), count) for reason, count in self.success.items()])
        for name, (help_text, histogram) in self.histograms.items():
            samples, cumulative = [], 0
            for bound, count in zip((*histogram.buckets, math.inf), histogram.counts, strict=True):
                cumulative += count
                samples.append((name + "_bucket", self._labels(le=go_float(bound)), cumulative))
            samples += [(name + "_count", plain, histogram.count), (name + "_sum", plain, histogram.total)]
            family(name, "histogram", help_text, samples)
            family(name + "_created", "gauge", help_text, [(name + "_created", plain, self.created)])
        return "\n".join(out) + "\n"
