"""How long a sweep takes: every planned run's duration at the probe's speed, printed before the sweep, and the
time left while it runs, rescaled by how fast the runs really go (under load requests are slower than the
probe's single stream, so the first figure is a lower bound).

A closed-loop run is about ceil((warm-up + measured requests) / concurrency) request cycles, after the spawn
ramp; an open-loop run is its warm-up and measured seconds of arrivals, plus one request for the last measured
one to finish.
"""

import math
from dataclasses import dataclass

from .load import RunPlan


@dataclass(frozen=True)
class ProbeSpeed:
    """One stream alone, as the probe request saw it."""
    ttft: float       # seconds from the send to the first output chunk
    per_token: float  # seconds per output token after the first

    @classmethod
    def from_record(cls, record) -> "ProbeSpeed":
        times, tokens = record.token_times, record.tokens
        return cls(ttft=times[0] - record.sent,
                   per_token=(times[-1] - times[0]) / (tokens - 1) if tokens > 1 else 0.0)

    def request_seconds(self, max_tokens: int) -> float:
        return self.ttft + (max_tokens - 1) * self.per_token


def run_seconds(plan: RunPlan, request_seconds: float) -> float:
    if plan.mode == "rate":
        return plan.warmup_seconds + plan.duration + request_seconds
    ramp = (plan.concurrency - 1) / plan.spawn_rate if plan.spawn_rate else 0.0
    return ramp + math.ceil((plan.warmup_requests + plan.measured_requests) / plan.concurrency) * request_seconds


class SweepClock:
    """The time left in a sweep: the planned runs' predicted durations, times how much longer than predicted the
    latest evidence says runs take. Without a probe the predictions have no scale until requests finish."""

    def __init__(self, predictions: list[float], calibrated: bool) -> None:
        self.predictions = predictions
        self.scale = 1.0 if calibrated else None
        self.current = 0

    def observe(self, elapsed: float, fraction: float) -> None:
        """The current run is `fraction` done after `elapsed` seconds."""
        if fraction > 0:
            self.scale = elapsed / fraction / self.predictions[self.current]

    def finish_run(self, elapsed: float) -> None:
        self.observe(elapsed, 1.0)
        self.current += 1

    def remaining(self, elapsed: float) -> float | None:
        """Seconds left, `elapsed` seconds into the current run; None while unknown."""
        if self.scale is None:
            return None
        current = max(self.predictions[self.current] * self.scale - elapsed, 0.0)
        return current + math.fsum(self.predictions[self.current + 1:]) * self.scale


def duration_text(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
