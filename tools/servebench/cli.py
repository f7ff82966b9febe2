"""Command line: a sweep of load levels, N runs each, progress on stderr, reports in an output directory.

    PYTHONPATH=tools python3 -m servebench --url http://node:8000 --model deepseek-ai/DeepSeek-V3.2

Writes `report.md` (the vendor guide's table and the details), `summary.json` (every figure per run and per
level), `requests.jsonl` (one raw record per request and line) and `chart.png`; the first two also when the
sweep starts and after every run, so that a sweep killed outright still leaves the report of its last finished
run. Ctrl-C or SIGTERM
(`timeout`, systemd) stops at once: in-flight requests are cancelled, the interrupted run is kept in the raw
records but left out of the figures, and the reports are written, saying where the sweep stopped; a second
signal aborts, leaving the reports of the last finished run. Exit status: 0, 2 when the probe request fails,
128 + the signal's number when stopped (130 for Ctrl-C, 143 for SIGTERM).
"""

import argparse
import asyncio
import datetime
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

from .chart import draw
from .client import RequestRecord, Target, now
from .estimate import ProbeSpeed, SweepClock, duration_text, run_seconds
from .load import Control, RunPlan
from .metrics import run_metrics
from .report import (RequestLog, auth_hint, interruption, markdown, request_row, summarize_level, summarize_sweep,
                     write_reports)
from .runner import Settings, event_loop_factory, execute_run

DEFAULT_CONCURRENCY = "10,50,100,200,500,1000"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _levels(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError("levels must be positive")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servebench", description="Concurrency (or request-rate) sweep against an OpenAI-compatible "
        "streaming chat endpoint, with vllm bench serve's metric definitions. See docs/benchmarking.md.")
    parser.add_argument("--url", required=True, help="base URL of the server or load balancer, "
                        "e.g. http://node01:8000 (no credentials in it)")
    parser.add_argument("--model", required=True, help="served model name sent in each request")
    parser.add_argument("--endpoint", default="/v1/chat/completions", help="path appended to the URL")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--concurrency", type=_levels, help=f"closed-loop levels (default {DEFAULT_CONCURRENCY})")
    shape.add_argument("--request-rate", type=_levels, help="open-loop levels in requests/s, Poisson arrivals")
    parser.add_argument("--runs", type=int, default=5, help="runs per level (default 5)")
    parser.add_argument("--waves", type=float, default=10, help="closed loop: measured requests per run = "
                        "waves x concurrency (default 10)")
    parser.add_argument("--warmup-waves", type=float, default=2, help="closed loop: warm-up requests per run = "
                        "warmup-waves x concurrency (default 2)")
    parser.add_argument("--duration", type=float, default=60, help="open loop: seconds of measured arrivals per "
                        "run (default 60)")
    parser.add_argument("--warmup-seconds", type=float, default=10, help="open loop: seconds of warm-up arrivals "
                        "per run (default 10)")
    parser.add_argument("--spawn-rate", type=float, default=0, help="closed loop: start the workers at this many "
                        "per second; requests sent before the last one started are warm-up (default 0: all at "
                        "once, as vllm bench serve)")
    parser.add_argument("--max-tokens", type=int, default=1024, help="output tokens per request, sent with "
                        "ignore_eos (default 1024)")
    parser.add_argument("--prompt-tokens", type=int, default=256, help="approximate prompt length (default 256)")
    parser.add_argument("--extra-body", type=json.loads, default={}, help="JSON object merged into each request")
    parser.add_argument("--seed", type=int, default=0, help="base of the per-run prompt seeds (default 0)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes sharing each run (default 1)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one request may take (default 1800)")
    parser.add_argument("--saturation-threshold", type=float, default=0.05, help="saturation rule: the lowest "
                        "level no later level beats by this fraction (default 0.05)")
    parser.add_argument("--api-key-env", default="VLLM_API_KEY", help="environment variable holding the API key "
                        "(default VLLM_API_KEY); the key is never written to a report")
    parser.add_argument("--output-dir", type=Path, help="where reports go (default reports/benchmark/<UTC time> "
                        "in the current directory)")
    parser.add_argument("--save-token-times", action="store_true", help="add every output chunk's arrival time "
                        "to requests.jsonl (large)")
    parser.add_argument("--no-probe", action="store_true", help="skip the single request sent before the sweep")
    parser.add_argument("--no-chart", action="store_true", help="do not draw chart.png")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def eta_text(seconds_left: float | None) -> str:
    if seconds_left is None:
        return "sweep ETA once requests finish"
    moment = time.localtime(time.time() + seconds_left)
    day = "" if moment.tm_yday == time.localtime().tm_yday else time.strftime("%a ", moment)
    return f"sweep ETA {day}{time.strftime('%H:%M', moment)} ({duration_text(seconds_left)} left)"


class ProgressLine:
    """One status line on stderr, rewritten in place on a terminal, every 10 s otherwise, with the sweep's ETA
    from `clock`, which it keeps up to date."""

    def __init__(self, quiet: bool, clock: SweepClock) -> None:
        self.quiet, self.tty, self.clock = quiet, sys.stderr.isatty(), clock
        self.label, self.plan = "", None
        self.run_started = self.last_time = now()
        self.last_chunks, self.last_print = 0, 0.0

    def start(self, label: str, plan: RunPlan) -> None:
        self.label, self.plan = label, plan
        self.last_chunks, self.run_started = 0, now()
        self.last_time = self.run_started

    def tick(self, progress) -> None:
        moment = now()
        rate = (progress.token_chunks - self.last_chunks) / max(moment - self.last_time, 1e-9)
        self.last_chunks, self.last_time = progress.token_chunks, moment
        elapsed = moment - self.run_started
        if self.plan.mode == "concurrency":  # an open-loop run lasts its planned seconds, whatever the speed
            planned = self.plan.warmup_requests + self.plan.measured_requests
            self.clock.observe(elapsed, min(1.0, progress.finished / planned))
        if self.quiet or (not self.tty and moment - self.last_print < 10):
            return
        self.last_print = moment
        total = f"/{self.plan.measured_requests}" if self.plan.measured_requests else ""
        text = (f"{self.label}: measured {progress.measured_done}{total} done, {progress.started} started, "
                f"{rate:,.0f} chunks/s, {progress.errors} errors, {eta_text(self.clock.remaining(elapsed))}")
        print(f"\r{text:<110}" if self.tty else text, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def done(self, text: str) -> None:
        self.clock.finish_run(now() - self.run_started)
        if not self.quiet:
            print(f"\r{text:<110}" if self.tty else text, file=sys.stderr, flush=True)


async def probe(settings: Settings, key_env: str) -> tuple[str, ProbeSpeed]:
    """One short request before the sweep: the URL, key, model name and streaming shape work, or why not; and
    how fast one stream alone goes, for the time estimate."""
    client = settings.client(run_seed=0, run_tag="sbprobe")
    client.factory.max_tokens = min(settings.max_tokens, 8)
    record = RequestRecord(0, "probe", now())
    try:
        await client.send(record, None)
    finally:
        client.close_all()
    if not record.ok:
        hint = f"; {auth_hint(bool(settings.api_key), key_env)}" if record.status == 401 else ""
        raise RuntimeError(f"{record.error_kind}: {record.error}{hint}")
    source = "usage" if record.output_tokens is not None else "chunk count (no usage chunk!)"
    speed = ProbeSpeed.from_record(record)
    return (f"probe ok: TTFT {speed.ttft * 1000:.1f} ms, {record.tokens} tokens counted from {source}, "
            f"{speed.per_token * 1000:.1f} ms per token", speed)


async def unless_stopped(coroutine, control: Control):
    """The coroutine's result, or None when a stop comes first (the coroutine is then cancelled)."""
    task = asyncio.ensure_future(coroutine)
    stopped = asyncio.ensure_future(control.stop_event.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
    return task.result()


def plan_for(args, level: float, run: int, seed: int) -> RunPlan:
    if args.request_rate:
        return RunPlan(mode="rate", level=level, run=run, seed=seed, start_at=0.0, rate=level,
                       warmup_seconds=args.warmup_seconds, duration=args.duration)
    concurrency = int(level)
    return RunPlan(mode="concurrency", level=level, run=run, seed=seed, start_at=0.0, concurrency=concurrency,
                   warmup_requests=math.ceil(args.warmup_waves * concurrency),
                   measured_requests=max(1, math.ceil(args.waves * concurrency)), spawn_rate=args.spawn_rate)


def _figure(value: float, spec: str) -> str:
    return "–" if math.isnan(value) else format(value, spec)


def run_line(label: str, run: dict) -> str:
    """The line printed after a run: its headline figures, or why it has none."""
    metrics = run["metrics"]
    if metrics["interrupted"]:
        return f"{label}: interrupted {interruption(run)}; left out of the figures"
    if not metrics["succeeded"]:
        kinds = ", ".join(f"{kind} ×{count}" for kind, count in sorted(metrics["errors"].items()))
        return f"{label}: no successful request ({kinds or 'none measured'})"
    return (f"{label}: {_figure(metrics['output_throughput'], ',.0f')} tok/s, TTFT mean "
            f"{metrics['ttft']['mean'] * 1000:,.1f} ms, p99 E2E {metrics['e2e']['p99']:.2f} s, success "
            f"{metrics['success_rate'] * 100:.1f}%")


async def sweep(args, settings: Settings, control: Control, log: RequestLog, line: ProgressLine,
                checkpoint) -> list[dict]:
    """Every run of every level, until done or stopped; `checkpoint` gets the level summaries after each run."""
    levels = args.request_rate or args.concurrency
    open_loop = bool(args.request_rate)
    mode = "rate" if open_loop else "concurrency"
    summaries = []
    for level_number, level in enumerate(levels):
        runs = []
        for run in range(args.runs):
            if control.stopping:
                break
            seed = args.seed + level_number * 1000 + run
            plan = plan_for(args, level, run, seed)
            label = f"level {level:g} run {run + 1}/{args.runs}"
            line.start(label, plan)
            started = now()
            deadline = args.timeout + (plan.warmup_seconds + plan.duration) * 2 + 60
            records, complete = await execute_run(plan, settings, control, args.processes, line.tick,
                                                  deadline_seconds=deadline)
            metrics = run_metrics(records, open_loop=open_loop, max_tokens=args.max_tokens, complete=complete)
            # clock_origin: the perf_counter (CLOCK_MONOTONIC) instant that requests.jsonl's times count from.
            runs.append({"run": run, "seed": seed, "clock_origin": started,
                         "measured_planned": None if open_loop else plan.measured_requests, "metrics": metrics})
            log.add(request_row(record, level=level, run=run, open_loop=open_loop, max_tokens=args.max_tokens,
                                run_start=started, token_times=args.save_token_times) for record in records)
            line.done(run_line(label, runs[-1]))
            checkpoint([*summaries, summarize_level(level, mode, runs)])
        if runs:
            summaries.append(summarize_level(level, mode, runs))
        if control.stopping:
            break
    return summaries


def sweep_clock(args, speed: ProbeSpeed | None) -> SweepClock:
    """Every planned run's duration at the probe's speed; without a probe, in units of one request (the clock
    calibrates itself once requests finish)."""
    request_seconds = speed.request_seconds(args.max_tokens) if speed else 1.0
    predictions = [run_seconds(plan_for(args, level, run, seed=0), request_seconds)
                   for level in args.request_rate or args.concurrency for run in range(args.runs)]
    return SweepClock(predictions, calibrated=speed is not None)


def estimate_line(args, speed: ProbeSpeed | None, clock: SweepClock) -> str:
    """How long the sweep takes at the probe's speed: the default sweep takes hours against a real node."""
    levels = args.request_rate or args.concurrency
    runs = f"{_count(len(levels) * args.runs, 'run')} ({_count(len(levels), 'level')} x {args.runs})"
    if speed is None:
        return f"{runs}; without the probe, how long they take is known once requests finish"
    return (f"{runs} take at least {duration_text(clock.remaining(elapsed=0))} at the probe's speed "
            f"({speed.request_seconds(args.max_tokens):.3g} s per request of {args.max_tokens:,} tokens, one stream "
            "alone; loaded requests are slower)")


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def settings_record(args, settings: Settings, loop_name: str) -> dict:
    """The sweep's settings as the reports show them; the key only as "set" or "none"."""
    open_loop = bool(args.request_rate)
    return {
        "url": settings.url, "endpoint": settings.endpoint, "model": settings.model,
        "mode": "rate" if open_loop else "concurrency",
        "levels": args.request_rate or args.concurrency, "runs": args.runs,
        "warmup": f"{args.warmup_seconds:g} s" if open_loop else f"{args.warmup_waves:g} x concurrency",
        "measured": f"{args.duration:g} s of arrivals" if open_loop else f"{args.waves:g} x concurrency",
        "max_tokens": args.max_tokens, "prompt_tokens": args.prompt_tokens, "seed": args.seed,
        "spawn_rate": args.spawn_rate, "processes": args.processes, "event_loop": loop_name,
        "timeout": args.timeout, "saturation_threshold": args.saturation_threshold,
        "api_key": "set" if settings.api_key else "none", "api_key_env": args.api_key_env}


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


async def run(args, settings: Settings, loop_name: str) -> int:
    control = Control()
    loop = asyncio.get_running_loop()
    stopped_by: list[signal.Signals] = []

    def stop(signum: signal.Signals) -> None:
        stopped_by.append(signum)
        print(f"\nservebench: {signum.name}: stopping; in-flight requests are cancelled, reports follow (a second "
              "Ctrl-C or SIGTERM aborts, leaving the reports of the last finished run)", file=sys.stderr)
        control.stop_event.set()
        for each in STOP_SIGNALS:  # the default actions again, so that a second signal aborts whatever runs
            loop.remove_signal_handler(each)

    # SIGTERM as well as Ctrl-C: `timeout` and systemd stop a process with it.
    for each in STOP_SIGNALS:
        loop.add_signal_handler(each, stop, each)
    # The default directory is relative to where servebench was started: the first and the last line say where.
    output = (args.output_dir or Path("reports/benchmark") / datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y%m%dT%H%M%SZ")).absolute()
    print(f"servebench: reports go to {output}/", file=sys.stderr, flush=True)
    speed = None
    if not args.no_probe:
        try:
            probed = await unless_stopped(probe(settings, args.api_key_env), control)
        except (RuntimeError, OSError, ValueError) as error:
            print(f"servebench: the probe request to {settings.url} failed: {error}; no reports written",
                  file=sys.stderr)
            return 2
        if probed:
            message, speed = probed
            print(f"servebench: {message}", file=sys.stderr)
    clock = sweep_clock(args, speed)
    print(f"servebench: {estimate_line(args, speed, clock)}", file=sys.stderr)
    output.mkdir(parents=True, exist_ok=True)
    started = _utc_now()
    shown_settings = settings_record(args, settings, loop_name)

    def report_of(levels: list[dict], state: str) -> dict:
        return {"tool": "servebench", "started": started, "written": _utc_now(), "state": state,
                "interrupted": state == "interrupted", "stop_signal": stopped_by[0].name if stopped_by else None,
                "settings": shown_settings, "levels": levels,
                "sweep": summarize_sweep(levels, args.saturation_threshold)}

    def checkpoint(levels_so_far: list[dict]) -> None:
        write_reports(output, report_of(levels_so_far, "running"))

    with RequestLog(output / "requests.jsonl") as log:
        checkpoint([])  # from here on, however servebench stops, the directory holds a valid report
        levels = await sweep(args, settings, control, log, ProgressLine(args.quiet, clock), checkpoint)
    report = report_of(levels, "interrupted" if control.stopping else "finished")
    write_reports(output, report)
    chart_problem = None if args.no_chart else draw(report, output / "chart.png")
    if chart_problem:
        print(f"servebench: {chart_problem}", file=sys.stderr)
    print(markdown(report).split("\n## Details")[0], flush=True)  # before the last line, also in a merged log
    print(f"servebench: reports in {output}/ ({log.count} request records)", file=sys.stderr)
    return 128 + stopped_by[0] if stopped_by else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.request_rate and not args.concurrency:
        args.concurrency = _levels(DEFAULT_CONCURRENCY)
    if args.runs < 1 or args.processes < 1 or args.max_tokens < 1:
        build_parser().error("--runs, --processes and --max-tokens must be at least 1")
    try:
        Target.from_url(args.url, args.endpoint)
    except ValueError as error:
        build_parser().error(str(error))
    settings = Settings(url=args.url, model=args.model, max_tokens=args.max_tokens,
                        prompt_tokens=args.prompt_tokens, timeout=args.timeout,
                        api_key=os.environ.get(args.api_key_env, ""), endpoint=args.endpoint,
                        extra_body=args.extra_body)
    factory, loop_name = event_loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run(args, settings, loop_name))
