"""The sweep's summary (peak, saturation, spread over runs), its Markdown report and its JSON files, written so
that a stop at any moment leaves them valid.

The first table has the vendor guide's shape (Concurrent | Throughput | p99 Latency, "Multi-run means");
the details table and the notes below it say exactly which figure each column is.
"""

import json
import math
import os
from pathlib import Path

from .metrics import flatten
from .stats import saturation_point, spread

_SPREAD_KEYS = ("output_throughput", "request_throughput", "total_token_throughput", "burst_throughput",
                "success_rate", "mean_in_flight", "ttft.mean", "ttft.p50", "ttft.p90", "ttft.p99", "tpot.mean",
                "tpot.p99", "itl.mean", "itl.p50", "itl.p99", "e2e.mean", "e2e.p50", "e2e.p90", "e2e.p99",
                "send_lag.p50", "send_lag.p99")


def summarize_level(level: float, mode: str, runs: list[dict]) -> dict:
    """Mean, spread and 95 % interval over the level's complete runs; p99s are means of per-run p99s."""
    complete = [run for run in runs if not run["metrics"]["interrupted"]]
    flats = [flatten(run["metrics"]) for run in complete]
    figures = {key: spread([flat.get(key, math.nan) for flat in flats]).as_dict() for key in _SPREAD_KEYS
               if any(key in flat for flat in flats)}
    errors: dict[str, int] = {}
    examples: dict[str, str] = {}
    for run in runs:
        for kind, count in run["metrics"]["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
        for kind, text in run["metrics"]["error_examples"].items():
            examples.setdefault(kind, text)
    requests = sum(run["metrics"]["requests"] for run in runs)
    succeeded = sum(run["metrics"]["succeeded"] for run in runs)
    return {"level": level, "mode": mode, "complete_runs": len(complete), "runs": runs, "figures": figures,
            "requests": requests, "succeeded": succeeded,
            "success_rate": succeeded / requests if requests else math.nan,
            "errors": errors, "error_examples": examples,
            "short_outputs": sum(run["metrics"]["short_outputs"] for run in runs),
            "client_lagging_runs": sum(1 for run in runs if run["metrics"].get("client_lagging")),
            "tokens_source": _add_counts(run["metrics"]["tokens_source"] for run in runs)}


def _add_counts(dicts) -> dict:
    total: dict[str, int] = {}
    for counts in dicts:
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
    return total


def _mean(level: dict, key: str) -> float:
    return level["figures"].get(key, {}).get("mean", math.nan)


def summarize_sweep(levels: list[dict], threshold: float) -> dict:
    measured = [level for level in levels if level["complete_runs"]]
    throughputs = [_mean(level, "output_throughput") for level in measured]
    peak = None
    if measured and not all(math.isnan(value) for value in throughputs):
        best = max(range(len(measured)), key=lambda index: -math.inf if math.isnan(throughputs[index])
                   else throughputs[index])
        peak = {"level": measured[best]["level"], "output_throughput": measured[best]["figures"]["output_throughput"],
                "burst_throughput": max((_mean(level, "burst_throughput") for level in measured
                                         if not math.isnan(_mean(level, "burst_throughput"))), default=math.nan)}
    saturation = saturation_point([level["level"] for level in measured], throughputs, threshold)
    # The rule picks a level of the grid: the knee lies above the level before it (throughput still grew
    # from there) and at or below this one.
    below = None if saturation is None else max(
        (level["level"] for level, value in zip(measured, throughputs)
         if not math.isnan(value) and level["level"] < saturation), default=None)
    requests = sum(level["requests"] for level in levels)
    succeeded = sum(level["succeeded"] for level in levels)
    return {"peak": peak,
            "saturation": {"level": saturation, "between": None if saturation is None else [below, saturation],
                           "threshold": threshold},
            "success_rate": succeeded / requests if requests else math.nan}


def finer_levels(low: float, high: float, whole: bool) -> list[float]:
    """About five steps from `low` to `high`, the inner levels on multiples of a round step (1, 2 or 5 times a
    power of ten): the levels of a sweep that narrows down a saturation point known to lie between them."""
    rough = (high - low) / 5
    power = 10 ** math.floor(math.log10(rough))
    step = min((power * factor for factor in (1, 2, 5, 10)), key=lambda candidate: abs(candidate - rough))
    if whole:
        step = max(1, round(step))
    # The tolerances keep a bound that is a multiple of the step (up to float error) out of the inner levels.
    first, last = math.floor(low / step + 1e-9) + 1, math.ceil(high / step - 1e-9)
    return [low, *(round(multiple * step, 9) for multiple in range(first, last)), high]


def auth_hint(key_sent: bool, key_env: str) -> str:
    """What to do about a 401: vLLM answers it to a request without the key and to one with a wrong key."""
    if key_sent:
        return f"the server refused the API key in {key_env}; check it against the server's --api-key"
    return (f"no API key was sent: {key_env} is unset or empty; export {key_env}=<key>, or name the variable that "
            "holds the key with --api-key-env (default VLLM_API_KEY)")


# ------------------------------------------------------------------------------------------------ Markdown
def _number(value: float, digits: int = 0) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _seconds(value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.1f} ms"


def _level_label(level: float, mode: str) -> str:
    return f"{level:,.0f}" if mode == "concurrency" else f"{level:g} req/s"


def _runs(count: int) -> str:
    return f"{count} run" + ("" if count == 1 else "s")


def _percent(value: float) -> str:
    if math.isnan(value):
        return "–"
    return "100%" if value == 1 else f"{value * 100:.2f}%"


def interruption(run: dict) -> str:
    """Where in its run a stop came: in the warm-up, or after how many of the measured requests."""
    metrics = run["metrics"]
    if not metrics["measured_sent"]:
        return "in its warm-up"
    planned = f" of {run['measured_planned']:,}" if run.get("measured_planned") else ""
    return f"after {metrics['requests']:,}{planned} measured requests"


_SIGNAL_TEXT = {"SIGINT": "Ctrl-C (SIGINT)"}


def _coverage(report: dict) -> str:
    """Which planned levels have figures, from how many of their runs, and which have none."""
    settings = report["settings"]
    complete = {level["level"]: level["complete_runs"] for level in report["levels"]}
    labels = {level: _level_label(level, settings["mode"]) for level in settings["levels"]}
    measured = [f"{labels[level]} ({complete[level]} of {_runs(settings['runs'])})"
                for level in settings["levels"] if complete.get(level)]
    missing = [labels[level] for level in settings["levels"] if not complete.get(level)]
    text = f"Measured: {', '.join(measured)}." if measured else "Nothing was measured: no run finished."
    return text + (f" Not measured: {', '.join(missing)}." if missing else "")


def _state_lines(report: dict) -> list[str]:
    """A report written during the sweep, or after a stop, says so first: where it stopped, what it covers."""
    state, settings = report["state"], report["settings"]
    runs = [(level, run) for level in report["levels"] for run in level["runs"]]
    last = None
    if runs:
        level, run = runs[-1]
        last = f"level {_level_label(level['level'], level['mode'])} run {run['run'] + 1} of {settings['runs']}"
    if state == "running":
        written = f"written after {last}" if last else "written before the first run finished"
        return [f"**Incomplete:** {written}, while servebench was running; if it is no longer running, it was "
                "stopped before it could write its final report. " + _coverage(report), ""]
    if state != "interrupted":
        return []
    signal = _SIGNAL_TEXT.get(report["stop_signal"], report["stop_signal"])
    if last is None:
        return [f"**Interrupted by {signal} before the first run.** {_coverage(report)}", ""]
    stopped = runs[-1][1]
    if not stopped["metrics"]["interrupted"]:  # the stop came once its measured requests had all finished
        return [f"**Interrupted by {signal} after {last}.** {_coverage(report)}", ""]
    return [f"**Interrupted by {signal} during {last}, {interruption(stopped)}.** That run is left out of the "
            f"figures; its requests are in requests.jsonl. {_coverage(report)}", ""]


def markdown(report: dict) -> str:
    settings, levels = report["settings"], report["levels"]
    closed = settings["mode"] == "concurrency"
    head = "Concurrent" if closed else "Request rate"
    runs = settings["runs"]
    lines = [f"# Serving benchmark: {settings['model']}", "",
             f"{settings['url']} · {report['started']} · "
             + ("closed loop (fixed concurrency)" if closed else "open loop (Poisson arrivals)")
             + f" · {runs} run(s) per level · {settings['max_tokens']} output tokens per request "
             f"(ignore_eos) · ~{settings['prompt_tokens']} prompt tokens",
             "", *_state_lines(report)]
    # Only levels with a complete run have figures: an interrupted run's are partial.
    measured = [level for level in levels if level["complete_runs"]]
    if measured:
        lines += [f"## {'Concurrency' if closed else 'Request-rate'} scaling", "",
                  f"| {head} | Throughput | p99 Latency |", "|---:|---:|---:|"]
        for level in measured:
            lines.append(f"| {_level_label(level['level'], level['mode'])} | "
                         f"{_number(_mean(level, 'output_throughput'))} tok/s | "
                         f"{_seconds(_mean(level, 'e2e.p99'))} |")
        counts = sorted({level["complete_runs"] for level in measured})
        lines += ["", f"Multi-run means (n={'/'.join(map(str, counts))}). Throughput: sustained output tokens/s "
                  "over each run's steady window; p99 Latency: mean over runs of each run's p99 end-to-end latency.",
                  "", *_peak_lines(report)]
    lines += _details_lines(report, measured)
    lines += _notes_lines(report)
    lines += _definitions_lines(report)
    return "\n".join(lines)


def _peak_lines(report: dict) -> list[str]:
    settings, levels, sweep = report["settings"], report["levels"], report["sweep"]
    closed = settings["mode"] == "concurrency"
    lines = ["## Peak performance", ""]
    peak = sweep["peak"]
    if peak:
        lines.append(f"- Peak Throughput: {_number(peak['output_throughput']['mean'])} tok/s at "
                     f"{_level_label(peak['level'], settings['mode'])}{' concurrent' if closed else ''} "
                     f"(sustained, mean of {_runs(peak['output_throughput']['n'])}; busiest single second: "
                     f"{_number(peak['burst_throughput'])} tok/s)")
    saturation = sweep["saturation"]
    threshold = f"{saturation['threshold'] * 100:g}%"
    unit = " concurrent requests" if closed else ""
    if saturation["level"] is not None:
        below, level = saturation["between"]
        label = _level_label(level, settings["mode"])
        if below is None:
            lines.append(f"- Saturation Point: at or below {label}{unit}, the lowest level measured (no higher "
                         f"level adds {threshold} or more throughput); lower levels would narrow it down")
        else:
            finer = ",".join(f"{value:g}" for value in finer_levels(below, level, whole=closed))
            lines.append(f"- Saturation Point: between {_level_label(below, settings['mode'])} and {label}{unit} "
                         f"(throughput still grew by {threshold} or more above {below:g}, not above {level:g}); "
                         f"a finer sweep narrows it down: `--{'concurrency' if closed else 'request-rate'} {finer}`")
    elif report["state"] != "finished":
        lines.append("- Saturation Point: not reached by the levels measured so far (the sweep did not finish)")
    else:
        lines.append(f"- Saturation Point: not reached (throughput still grew by {threshold} or more at the "
                     "highest level measured)")
    failing = [level for level in levels if level["requests"] and level["success_rate"] < 1]
    if not failing:
        lines.append("- 100% Success Rate at all tested levels")
    for level in failing:
        kinds = ", ".join(f"{kind} ×{count}" for kind, count in sorted(level["errors"].items()))
        lines.append(f"- Success rate {_percent(level['success_rate'])} at "
                     f"{_level_label(level['level'], level['mode'])} ({kinds})")
    lines.append("")
    return lines


def _details_lines(report: dict, measured: list[dict]) -> list[str]:
    if not measured:
        return []
    head = "Concurrent" if report["settings"]["mode"] == "concurrency" else "Request rate"
    lines = ["## Details", "",
             f"| {head} | Throughput ± 95% CI | CV | Requests/s | TTFT mean | TTFT p99 | TPOT mean | ITL mean "
             "| ITL p99 | E2E mean | E2E p50 | E2E p99 | Burst (1 s) | In flight | Success | Runs |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for level in measured:
        figures = level["figures"]
        throughput = figures.get("output_throughput", {})
        half = (throughput.get("ci95", [math.nan, math.nan])[1] - throughput.get("mean", math.nan)
                if throughput.get("n", 0) > 1 else math.nan)
        lines.append(
            f"| {_level_label(level['level'], level['mode'])} | {_number(throughput.get('mean', math.nan))} ± "
            f"{_number(half)} | {_percent(throughput.get('cv', math.nan))} | "
            f"{_number(_mean(level, 'request_throughput'), 2)} | {_seconds(_mean(level, 'ttft.mean'))} | "
            f"{_seconds(_mean(level, 'ttft.p99'))} | {_seconds(_mean(level, 'tpot.mean'))} | "
            f"{_seconds(_mean(level, 'itl.mean'))} | {_seconds(_mean(level, 'itl.p99'))} | "
            f"{_seconds(_mean(level, 'e2e.mean'))} | {_seconds(_mean(level, 'e2e.p50'))} | "
            f"{_seconds(_mean(level, 'e2e.p99'))} | {_number(_mean(level, 'burst_throughput'))} | "
            f"{_number(_mean(level, 'mean_in_flight'), 1)} | {_percent(level['success_rate'])} | "
            f"{level['complete_runs']}/{len(level['runs'])} |")
    lines.append("")
    return lines


def _notes_lines(report: dict) -> list[str]:
    settings = report["settings"]
    notes = []
    for level in report["levels"]:
        label = _level_label(level["level"], level["mode"])
        if level["short_outputs"]:
            notes.append(f"- {label}: {level['short_outputs']} request(s) returned fewer than "
                         f"{settings['max_tokens']} tokens (the server ignored `ignore_eos`/`max_tokens`?)")
        if level["tokens_source"].get("chunks"):
            notes.append(f"- {label}: {level['tokens_source']['chunks']} request(s) had no `usage` chunk; their "
                         "output tokens are counted as chunks")
        if level["client_lagging_runs"]:
            notes.append(f"- {label}: in {level['client_lagging_runs']} run(s) the median send lag exceeded 10 ms: "
                         "the client could not keep the arrival schedule; add --processes")
        for kind, text in sorted(level["error_examples"].items()):
            hint = (f"; {auth_hint(settings['api_key'] == 'set', settings['api_key_env'])}" if kind == "http_401"
                    else "")
            notes.append(f"- {label}: {kind} ×{level['errors'].get(kind, 0)}, e.g. `{text[:160]}`{hint}")
    return ["## Notes", "", *notes, ""] if notes else []


def _definitions_lines(report: dict) -> list[str]:
    settings = report["settings"]
    closed = settings["mode"] == "concurrency"
    threshold = f"{report['sweep']['saturation']['threshold'] * 100:g}%"
    return ["## How these figures are defined", "",
            "As `vllm bench serve` defines them (see docs/benchmarking.md): TTFT = first output chunk − send; "
            "E2E = last output chunk − send; TPOT = (E2E − TTFT) / (output tokens − 1); ITL = gaps between "
            "output chunks; output tokens from the server's `usage`. Throughput counts the tokens delivered "
            "during each run's steady window (first measured send → last measured token), warm-up and drain "
            "excluded; Burst is vLLM's \"peak output token throughput\" (busiest second)."
            + ("" if closed else " Open loop: times count from each request's scheduled arrival."), "",
            f"Settings: warm-up {settings['warmup']}, measured {settings['measured']} per run, seeds "
            f"{settings['seed']}+run, spawn rate {settings['spawn_rate'] or 'all at once'} (workers/s), "
            f"{settings['processes']} process(es), "
            f"{settings['event_loop']}, request timeout {settings['timeout']:g} s, saturation threshold "
            f"{threshold}.", ""]


# ---------------------------------------------------------------------------------------------------- JSON
def _clean(value):
    """JSON has no NaN: write null."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    return value


def write_atomically(path, text: str) -> None:
    """Write beside `path`, then rename over it: whenever the process stops, `path` holds the old text or the
    new one, whole."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_json(path, data) -> None:
    write_atomically(path, json.dumps(_clean(data), indent=1) + "\n")


def write_reports(directory: Path, report: dict) -> None:
    """summary.json and report.md: after every run (state "running") and at the end."""
    write_json(directory / "summary.json", report)
    write_atomically(directory / "report.md", markdown(report))


def request_row(record, *, level: float, run: int, open_loop: bool, max_tokens: int, run_start: float,
                token_times: bool) -> dict:
    """One raw per-request record; times in seconds, `sent`/`scheduled` relative to the run's start."""
    times = record.token_times
    origin = record.scheduled if open_loop else record.sent
    row = {"level": level, "run": run, "index": record.index, "request_id": record.request_id, "phase": record.phase,
           "scheduled": record.scheduled - run_start, "sent": record.sent - run_start,
           "ttft": times[0] - origin if times else None, "e2e": times[-1] - origin if times else None,
           "output_tokens": record.tokens if times or record.output_tokens is not None else 0,
           "tokens_source": record.tokens_source, "output_chunks": len(times),
           "prompt_tokens": record.prompt_tokens, "short": bool(record.ok and record.tokens < max_tokens),
           "ok": record.ok, "status": record.status, "error_kind": record.error_kind or None,
           "error": record.error or None}
    if row["output_tokens"] and row["output_tokens"] > 1 and times:
        row["tpot"] = (row["e2e"] - row["ttft"]) / (row["output_tokens"] - 1)
    if open_loop:
        row["send_lag"] = record.sent - record.scheduled
    if token_times:
        row["token_times"] = [round(at - origin, 6) for at in times]
    return row


class RequestLog:
    """requests.jsonl: one JSON object per request and line, appended run by run, so memory stays flat however
    long the sweep. Line-buffered: each line reaches the file whole, so the file stays valid JSON lines whenever
    the process stops. A context manager."""

    def __init__(self, path) -> None:
        self.path = path
        self.count = 0

    def __enter__(self) -> "RequestLog":
        self.handle = open(self.path, "w", buffering=1)  # noqa: SIM115  (closed by __exit__)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()

    def add(self, rows) -> None:
        for row in rows:
            self.handle.write(json.dumps(_clean(row), separators=(",", ":")) + "\n")
            self.count += 1
