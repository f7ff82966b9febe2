"""The hub's rate limits per bucket over fixed windows, with the RateLimit headers it sends."""

from __future__ import annotations

import threading
import time

RATE_LIMIT_BUCKETS = ("api", "resolvers")
DEFAULT_RATE_LIMIT_WINDOW = 300  # the hub counts requests over 5-minute windows


class RateLimits:
    """The hub's rate limits: requests per bucket over fixed windows, announced on every answer of a limited
    bucket with the IETF draft headers the hub sends (`RateLimit: "api";r=<left>;t=<seconds to the reset>` and
    `RateLimit-Policy: "fixed window";"api";q=<limit>;w=<window>`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.set({}, DEFAULT_RATE_LIMIT_WINDOW)

    def set(self, limits: dict[str, int], window: float) -> None:
        unknown = set(limits) - set(RATE_LIMIT_BUCKETS)
        if unknown or window <= 0 or any(not isinstance(n, int) or n < 0 for n in limits.values()):
            raise ValueError(f"rate limits are requests per bucket among {RATE_LIMIT_BUCKETS} and a window > 0 s")
        with self._lock:
            self.limits, self.window = dict(limits), float(window)
            self._started, self._used = time.monotonic(), dict.fromkeys(limits, 0)

    def describe(self) -> dict:
        with self._lock:
            return {"rate_limits": dict(self.limits), "rate_limit_window": self.window}

    def take(self, bucket: str) -> tuple[bool, dict]:
        """Count a request of `bucket`: (allowed, headers to send with the answer)."""
        with self._lock:
            limit = self.limits.get(bucket)
            if limit is None:
                return True, {}
            elapsed = time.monotonic() - self._started
            if elapsed >= self.window:  # a new window: the counts start again
                self._started += elapsed // self.window * self.window
                self._used = dict.fromkeys(self.limits, 0)
            allowed = self._used[bucket] < limit
            self._used[bucket] += allowed
            reset = max(1, round(self._started + self.window - time.monotonic()))
            headers = {"RateLimit": f'"{bucket}";r={limit - self._used[bucket]};t={reset}',
                       "RateLimit-Policy": f'"fixed window";"{bucket}";q={limit};w={round(self.window)}'}
            if not allowed:
                headers["Retry-After"] = reset
            return allowed, headers
