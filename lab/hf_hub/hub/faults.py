"""Fault injection: the faults set at start-up or through /_sim/faults (validated, matched to requests, counted),
the global bandwidth throttle and the corruption of served bytes."""

from __future__ import annotations

import fnmatch
import threading
import time

_FAULT_FIELDS = {
    "status": {"status"},
    "hang": {"seconds"},
    "stall": {"seconds", "after_bytes"},
    "drop": {"after_bytes", "mode"},
    "corrupt": set(),
}
_COMMON_FAULT_FIELDS = {"kind", "file", "path", "method", "times", "for_seconds"}


def _normalize_fault(spec: dict) -> dict:
    """Validate a fault spec (see README.md) and add its run-time state."""
    if not isinstance(spec, dict) or spec.get("kind") not in _FAULT_FIELDS:
        raise ValueError(f"fault needs a kind among {sorted(_FAULT_FIELDS)}: {spec!r}")
    kind = spec["kind"]
    unknown = set(spec) - _COMMON_FAULT_FIELDS - _FAULT_FIELDS[kind]
    if unknown:
        raise ValueError(f"unknown fields for a {kind} fault: {sorted(unknown)}")
    fault = {"status": 503} if kind == "status" else {"after_bytes": 0, "mode": "close"} if kind == "drop" else {}
    fault.update(spec)
    if kind in ("hang", "stall") and not isinstance(fault.get("seconds"), (int, float)):
        raise ValueError(f"a {kind} fault needs seconds")
    if kind == "stall" and "after_bytes" not in fault:
        raise ValueError("a stall fault needs after_bytes")
    if kind == "status" and not 400 <= int(fault["status"]) <= 599:
        raise ValueError("status must be a 4xx or 5xx code")
    if kind == "drop" and fault["mode"] not in ("close", "reset"):
        raise ValueError("drop mode is close or reset")
    for name in ("times", "after_bytes"):
        if name in fault and (not isinstance(fault[name], int) or fault[name] < 0):
            raise ValueError(f"{name} must be a non-negative integer")
    fault["remaining"] = fault.pop("times", None)
    window = fault.pop("for_seconds", None)
    fault["expires_at"] = time.monotonic() + float(window) if window is not None else None
    fault["fired"] = 0
    return fault


def _fault_view(fault: dict, now: float) -> dict:
    view = {key: value for key, value in fault.items() if key != "expires_at"}
    if fault["expires_at"] is not None:
        view["seconds_left"] = round(max(0.0, fault["expires_at"] - now), 3)
    return view


class FaultBook:
    """Active faults. Each fires on matching requests until its `times` or `for_seconds` run out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[dict] = []

    def replace(self, specs: list[dict]) -> None:
        faults = [_normalize_fault(spec) for spec in specs]
        with self._lock:
            self._faults = faults

    def describe(self) -> list[dict]:
        now = time.monotonic()
        with self._lock:
            return [_fault_view(fault, now) for fault in self._faults]

    def take(self, kind: str, method: str, url_path: str, file_path: str | None) -> dict | None:
        """The first live fault of `kind` matching the request, counted as fired."""
        now = time.monotonic()
        with self._lock:
            for fault in self._faults:
                if fault["kind"] != kind or fault["remaining"] == 0:
                    continue
                if fault["expires_at"] is not None and now >= fault["expires_at"]:
                    continue
                if fault.get("method") and fault["method"].upper() != method:
                    continue
                if "path" in fault and not fnmatch.fnmatchcase(url_path, fault["path"]):
                    continue
                if "file" in fault and (file_path is None or not fnmatch.fnmatchcase(file_path, fault["file"])):
                    continue
                if fault["remaining"] is not None:
                    fault["remaining"] -= 1
                fault["fired"] += 1
                return dict(fault)
        return None


class Throttle:
    """Global bandwidth limit shared by every response body (hub and CDN)."""

    def __init__(self, bytes_per_second: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rate = bytes_per_second or None
        self._next_free = 0.0

    @property
    def rate(self) -> int | None:
        return self._rate

    def set(self, bytes_per_second: int | None) -> None:
        with self._lock:
            self._rate = bytes_per_second or None
            self._next_free = 0.0

    def chunk_size(self) -> int:
        rate = self._rate
        return 64 * 1024 if rate is None else max(1024, min(64 * 1024, rate // 20))

    def delay_for(self, nbytes: int) -> float:
        """Reserve a slot for `nbytes` and return how long to wait before sending them."""
        with self._lock:
            if self._rate is None:
                return 0.0
            now = time.monotonic()
            self._next_free = max(now, self._next_free) + nbytes / self._rate
            return self._next_free - now


def corrupted(data: bytes, offset: int) -> bytes:
    """Flip the byte at every 4 KiB boundary: same size, different sha256, whichever range is served."""
    flipped = bytearray(data)
    for position in range(-offset % 4096, len(flipped), 4096):
        flipped[position] ^= 0x5A
    return bytes(flipped)
