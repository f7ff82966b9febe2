"""What the request handlers of the three listeners share: the repository, tokens, faults, throttle, rate
limits, counters, the access log and the URL-signing secret."""

from __future__ import annotations

import hashlib
import hmac
import sys
import threading
import uuid
from dataclasses import dataclass, field

from .faults import FaultBook, Throttle
from .ratelimits import RateLimits
from .repo import HubFile, Repo


class Stats:
    """Request counters, per repository file and per API call, for tests to assert on."""

    FILE_KEYS = ("head", "get", "range_get", "redirect", "bytes_sent", "bodies_completed", "bodies_cut",
                 "with_token")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._files: dict[str, dict[str, int]] = {}
            self._api: dict[str, int] = {}
            self._statuses: dict[str, int] = {}
            self._requests = 0

    def file_event(self, path: str, key: str, amount: int = 1) -> None:
        with self._lock:
            counters = self._files.setdefault(path, dict.fromkeys(self.FILE_KEYS, 0))
            counters[key] += amount

    def api_call(self, name: str) -> None:
        with self._lock:
            self._api[name] = self._api.get(name, 0) + 1

    def response(self, status: int) -> None:
        """Count a request by its answer's status; 0 (shown as "-") when it got no answer."""
        key = str(status) if status else "-"
        with self._lock:
            self._requests += 1
            self._statuses[key] = self._statuses.get(key, 0) + 1

    def as_json(self) -> dict:
        with self._lock:
            return {
                "requests": self._requests,
                "statuses": dict(self._statuses),
                "api": dict(self._api),
                "files": {path: dict(counters) for path, counters in sorted(self._files.items())},
            }


@dataclass
class HubState:
    """Everything the request handlers share."""

    repo: Repo
    tokens: frozenset[str] = frozenset()
    tokens_without_access: frozenset[str] = frozenset()
    gated: bool = False
    tree_page_size: int = 1000
    faults: FaultBook = field(default_factory=FaultBook)
    throttle: Throttle = field(default_factory=Throttle)
    stats: Stats = field(default_factory=Stats)
    log: object = sys.stderr
    cdn_port: int = 0
    bridge_port: int = 0
    rate_limits: RateLimits = field(default_factory=RateLimits)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards branch moves and log lines
    secret: bytes = field(default_factory=lambda: uuid.uuid4().bytes)

    def __post_init__(self) -> None:
        self.blobs: dict[str, HubFile] = {}  # sha256 -> file, filled as the hub hands out CDN redirects
        self.xet_blobs: dict[str, HubFile] = {}  # Xet hash -> file, filled as the hub hands out bridge redirects

    def write_log(self, line: str) -> None:
        with self.lock:
            self.log.write(line + "\n")
            self.log.flush()

    def sign(self, path: str, expires: int | str) -> str:
        return hmac.new(self.secret, f"{path}|{expires}".encode(), hashlib.sha256).hexdigest()
