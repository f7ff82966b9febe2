"""Following a vLLM service through its start-up: which phase its log has reached, and whether it crashed.

A cold start of DeepSeek V3.2 loads ~690 GB of weights, profiles memory, compiles kernels and captures graphs
for many minutes before `/health` answers; these helpers turn the service's journal into a one-line phase for
the operator, and systemd's view of the unit into an early, explained failure instead of a long timeout.
"""

from __future__ import annotations

import re

# Log lines vLLM 0.33 prints on the way up (the file:line prefixes vary by release, the texts do not), in the
# order they appear; the latest one seen names the phase.
PHASE_MARKERS = (
    ("non-default args:", "parsing the configuration"),
    ("Loading safetensors checkpoint shards", "loading the weights"),
    ("Loading weights took", "weights loaded, profiling memory"),
    ("Available KV cache memory", "KV cache allocated, compiling and warming up kernels"),
    ("Graph capturing finished", "graphs captured, starting the engine"),
    ("init engine (profile, create kv cache, warmup model) took", "engine ready, starting the API server"),
    ("Starting vLLM server on", "API server starting"),
    ("Starting vLLM API server", "API server starting"),
    ("Application startup complete.", "API server up, waiting for /health"),
)
# tqdm's shard counter, as vLLM logs it while it loads: "... 45% Completed | 74/163 [01:02<01:20, ...]".
_SHARD_PROGRESS = re.compile(r"Loading safetensors checkpoint shards:\s+\d+% Completed \| (\d+)/(\d+)")


def startup_phase(lines, previous: str = "container starting") -> str:
    """The phase the newest of `lines` shows, or `previous` when none of them marks one."""
    phase = previous
    for line in lines:
        shards = _SHARD_PROGRESS.search(line)
        if shards:
            phase = f"loading the weights ({shards.group(1)}/{shards.group(2)} shards)"
            continue
        for marker, name in PHASE_MARKERS:
            if marker in line:
                phase = name
                break
    return phase


# An exception line as Python prints it: "torch.OutOfMemoryError: HIP out of memory...", "RuntimeError: ...".
_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?[A-Z]\w*(?:Error|Exception)\b(?::|$)")


def error_lines(lines, limit: int = 6) -> list[str]:
    """The exception lines of a failed start, first seen first, without repeats: the root cause is usually the
    first (a worker's), the last one only says that the engine failed."""
    found = []
    for line in lines:
        text = line.strip()
        if _EXCEPTION_LINE.match(text) and text not in found:
            found.append(text)
    return found[:limit]


def parse_systemctl_show(text: str) -> dict:
    """`systemctl show -p A -p B unit` output (A=x lines) as a dict."""
    properties = {}
    for line in text.splitlines():
        name, separator, value = line.partition("=")
        if separator:
            properties[name] = value
    return properties


def crash_reason(baseline: dict, current: dict) -> str | None:
    """Why the unit is no longer on its way up since `baseline` was taken, or None while it still is.

    systemd counts automatic restarts in NRestarts (a manual restart resets it), so a higher count means the
    service exited and Restart= brought it back; `failed` or an `auto-restart` wait means it exited just now.
    """
    status = current.get("ExecMainStatus", "?")
    if current.get("ActiveState") == "failed":
        return f"the service failed (main process exit status {status}, result {current.get('Result', '?')})"
    if current.get("SubState") == "auto-restart":
        return f"the service exited (status {status}) and systemd is about to restart it"
    if int(current.get("NRestarts") or 0) > int(baseline.get("NRestarts") or 0):
        return f"the service exited (status {status}) and systemd restarted it"
    if current.get("ActiveState") == "inactive":
        return "the service is stopped (someone or something stopped it during start-up)"
    return None
