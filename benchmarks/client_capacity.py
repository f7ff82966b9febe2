"""Benchmark: how much streaming load one servebench process sustains on one core, compared with NVIDIA AIPerf.

Starts benchmarks/fast_sse_server.py pinned to one core: every request gets its first token --ttft seconds after
the server read it and then one token every --itl seconds, and the server records when it wrote each request's
first and last token (CLOCK_MONOTONIC). Then, for rising concurrency, runs servebench (tools/servebench) pinned
to another core, one process, closed loop, and joins its per-request records with the server's by X-Request-Id:

    read delay of the first token = when the client saw it - when the server wrote it
    read delay of the last token  = when the client saw it - when the server wrote it

These are the client's own distortion of TTFT and end-to-end latency (its event loop falling behind, its parsing,
the kernel's loopback hand-over); what the server was late by, or how long it took to read a request, is not
charged to the client. A level is sustained when the mean read delay of both stays within --budget-ms (1 ms)
in the best of --repeats attempts (a process that another program keeps off its core for a few milliseconds
says nothing about the client's own cost); the report gives p99 too, the client's CPU per chunk split into its
own (user) and the kernel's (system) part, and the server's lateness (a late server delivers less than the
offered load, and bursts).

A client's cost follows the chunks it reads, not the tokens: each chunk is one TCP segment, one wake-up and one
read. So the sweep is run for each of --stream-intervals: 1 is a chunk per token (vLLM's default); N is vLLM
0.33's `stream_interval` (per request, or the server's `--stream-interval`), where the first token comes alone
and then N tokens per chunk, which vLLM offers to cut its own per-chunk cost at high concurrency.

The same sweeps are then run with AIPerf 0.13.0 (PyPI `aiperf`, NVIDIA's load generator, GenAI-Perf's successor),
installed into its own venv (--aiperf-venv, created on first use) and pinned, with all its processes, to the same
single core; its per-request export (wall-clock times, converted to CLOCK_MONOTONIC) is joined the same way.
AIPerf needs a tokenizer: a tiny local one is written (this machine has no hub access), and token counts come
from the server's usage (--use-server-token-count), as servebench's do.

This is a benchmark, not a test: figures depend on the machine (and on whatever else runs on it).

    .venv/bin/python -m benchmarks.client_capacity                       # about 20 minutes
    .venv/bin/python -m benchmarks.client_capacity --levels 250,1000 --stream-intervals 4 --no-compare

(from the repository root: it imports lab).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from lab.standin_process import StandinProcess

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "benchmarks" / "fast_sse_server.py"
AIPERF_VERSION = "0.13.0"
TARGET_STREAMS = 1000
TARGET_TOKENS_PER_SECOND = 20 * 5786  # 20 times the vendor guide's peak (5,786 tok/s)


# ------------------------------------------------------------------------------------------------- helpers
def pinned(core: int):
    return lambda: os.sched_setaffinity(0, {core})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def server_stats(url: str, reset: bool = False) -> dict:
    with urllib.request.urlopen(f"{url}/stats{'?reset=1' if reset else ''}", timeout=60) as response:
        return json.load(response)


def run_measured(command: list[str], core: int, timeout: float, log, env: dict | None = None) -> dict:
    """Run a client pinned to `core`; return its wall seconds and the user and kernel CPU seconds of it and its
    children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(command, stdout=log, stderr=log, preexec_fn=pinned(core), timeout=timeout, check=True, env=env)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime}


def read_delays(arrivals: list[tuple[str, float | None, float | None]], server: dict) -> dict:
    """Join (request id, first-token arrival, last-token arrival), CLOCK_MONOTONIC seconds, with the server's
    write times; milliseconds out."""
    by_id = {record["id"]: record for record in server["requests"] if "last_written" in record}
    first, last = [], []
    for request_id, first_seen, last_seen in arrivals:
        record = by_id.get(request_id)
        if record is None or first_seen is None or last_seen is None:
            continue
        first.append((first_seen - record["first_written"]) * 1000)
        last.append((last_seen - record["last_written"]) * 1000)
    summary = {"matched": len(first)}
    for name, values in (("first_token", first), ("last_token", last)):
        summary[name] = {"mean": sum(values) / len(values) if values else math.nan,
                         "p50": percentile(values, 50), "p99": percentile(values, 99)}
    return summary


# ------------------------------------------------------------------------------------------------ clients
def request_seconds(args) -> float:
    return args.ttft + (args.tokens - 1) * args.itl


def servebench_level(args, url: str, level: int, interval: int, work: Path, log) -> dict:
    output = work / f"servebench-{interval}-{level}"
    command = [sys.executable, "-m", "servebench", "--url", url, "--model", "fast", "--concurrency", str(level),
               "--runs", "1", "--waves", str(args.waves), "--warmup-waves", "1",
               "--spawn-rate", f"{level / request_seconds(args):.3f}", "--max-tokens", str(args.tokens),
               "--prompt-tokens", "16", "--no-probe", "--no-chart", "--quiet", "--output-dir", str(output)]
    if interval > 1:
        command += ["--extra-body", json.dumps({"stream_interval": interval})]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tools")}
    usage = run_measured(command, args.client_core, args.level_timeout, log, env)
    summary = json.loads((output / "summary.json").read_text())
    rows = [json.loads(line) for line in (output / "requests.jsonl").read_text().splitlines()]
    run = summary["levels"][0]["runs"][0]
    origin = run["clock_origin"]  # requests.jsonl's times count from this perf_counter instant
    arrivals = [(row["request_id"], origin + row["sent"] + row["ttft"] if row["ttft"] is not None else None,
                 origin + row["sent"] + row["e2e"] if row["e2e"] is not None else None)
                for row in rows if row["phase"] == "measured"]
    run = run["metrics"]
    return {"arrivals": arrivals, "tokens_per_second": run.get("output_throughput", math.nan),
            "success_rate": run.get("success_rate", math.nan), **usage}


def ensure_aiperf(venv: Path, log) -> Path:
    """AIPerf in its own venv, and a tiny word-level tokenizer for it (no hub here)."""
    python = venv / "bin" / "python"
    if not (venv / "bin" / "aiperf").exists():
        print(f"installing aiperf=={AIPERF_VERSION} into {venv} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"aiperf=={AIPERF_VERSION}"], check=True,
                       stdout=log, stderr=log, timeout=1800)
    tokenizer = venv / "servebench-tokenizer"
    if not (tokenizer / "tokenizer.json").exists():
        script = ("import sys\nfrom tokenizers import Tokenizer, models, pre_tokenizers\n"
                  "from transformers import PreTrainedTokenizerFast\n"
                  "vocab = {w: i for i, w in enumerate(['[UNK]', '[BOS]', '[EOS]'] + [f'w{i}' for i in range(2000)])}\n"
                  "tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token='[UNK]'))\n"
                  "tok.pre_tokenizer = pre_tokenizers.Whitespace()\n"
                  "PreTrainedTokenizerFast(tokenizer_object=tok, unk_token='[UNK]', bos_token='[BOS]',"
                  " eos_token='[EOS]').save_pretrained(sys.argv[1])\n")
        subprocess.run([str(python), "-c", script, str(tokenizer)], check=True, stdout=log, stderr=log, timeout=300)
    return tokenizer


def aiperf_level(args, url: str, level: int, interval: int, work: Path, tokenizer: Path, log) -> dict:
    output = work / f"aiperf-{interval}-{level}"
    measured = int(args.waves * level)
    command = [str(args.aiperf_venv / "bin" / "aiperf"), "profile", "--model", "fast", "--url", url,
               "--endpoint-type", "chat", "--streaming", "--tokenizer", str(tokenizer), "--use-server-token-count",
               "--concurrency", str(level), "--request-count", str(measured),
               "--warmup-request-count", str(level), "--concurrency-ramp-duration", f"{request_seconds(args):.3f}",
               "--extra-inputs", f"max_tokens:{args.tokens}", "--extra-inputs", "ignore_eos:true",
               "--isl", "16", "--ui", "none", "--no-server-metrics", "--no-gpu-telemetry",
               "--output-artifact-dir", str(output)]
    if interval > 1:
        command += ["--extra-inputs", f"stream_interval:{interval}"]
    usage = run_measured(command, args.client_core, args.level_timeout, log)
    wall_minus_monotonic = time.time() - time.perf_counter()  # AIPerf stamps requests with wall-clock ns
    arrivals = []
    for line in (output / "profile_export.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["metadata"].get("benchmark_phase") != "profiling":
            continue
        start = record["metadata"]["request_start_ns"] / 1e9 - wall_minus_monotonic
        metrics = record.get("metrics", {})
        ttft = metrics.get("time_to_first_token", {}).get("value")
        latency = metrics.get("request_latency", {}).get("value")
        arrivals.append((record["metadata"]["x_request_id"], start + ttft / 1000 if ttft is not None else None,
                         start + latency / 1000 if latency is not None else None))
    summary = json.loads((output / "profile_export_aiperf.json").read_text())
    errors = summary.get("error_summary") or []
    return {"arrivals": arrivals, "tokens_per_second": summary["output_token_throughput"]["avg"],
            "success_rate": 1.0 if not errors else math.nan, **usage}


# --------------------------------------------------------------------------------------------------- main
def measure(name: str, run_level, level: int, interval: int, args, url: str) -> dict:
    server_stats(url, reset=True)
    measured = run_level(level, interval)
    stats = server_stats(url)
    cpu = measured["user"] + measured["sys"]
    chunks = max(stats["chunks_written"], 1)
    result = {"tool": name, "level": level, "stream_interval": interval,
              "offered_tokens_per_second": level / args.itl,
              "tokens_per_second": measured["tokens_per_second"], "success_rate": measured["success_rate"],
              "chunks_per_token": stats["chunks_written"] / max(stats["tokens_written"], 1),
              "client_core_busy": cpu / measured["wall"],
              "client_user_us_per_chunk": measured["user"] / chunks * 1e6,
              "client_kernel_us_per_chunk": measured["sys"] / chunks * 1e6,
              # What one core would stream at 100 % busy at this cost per token (latency aside).
              "projected_tokens_per_second_per_core": stats["tokens_written"] / max(cpu, 1e-9),
              "server_lateness_ms": stats["lateness_mean"] * 1000,
              "read_delay_ms": read_delays(measured["arrivals"], stats)}
    delays = result["read_delay_ms"]
    result["worst_mean_delay_ms"] = max(delays["first_token"]["mean"], delays["last_token"]["mean"])
    print(f"{name:>14} interval {interval} {level:>5} streams: {result['tokens_per_second']:>9,.0f} tok/s, read "
          f"delay first {delays['first_token']['mean']:.2f} ms, last {delays['last_token']['mean']:.2f} ms (p99 "
          f"{delays['last_token']['p99']:.1f}), client core {result['client_core_busy']:.0%}, server late "
          f"{result['server_lateness_ms']:.2f} ms", file=sys.stderr)
    return result


def sweep(name: str, run_level, levels: list[int], interval: int, args, url: str) -> list[dict]:
    """Each level --repeats times, keeping the attempt with the smallest delay: on a machine shared with other
    work, a process descheduled for a few milliseconds says nothing about the client's own cost."""
    results = []
    for level in levels:
        attempts = []
        for _ in range(args.repeats):
            try:
                attempts.append(measure(name, run_level, level, interval, args, url))
            except (subprocess.SubprocessError, OSError, KeyError, ValueError) as error:
                print(f"{name} at {level}: failed ({error}); see the log", file=sys.stderr)
                return results
        result = min(attempts, key=lambda attempt: attempt["worst_mean_delay_ms"])
        result["attempts_sustained"] = sum(1 for a in attempts if a["worst_mean_delay_ms"] <= args.budget_ms)
        result["attempts"] = len(attempts)
        result["sustained"] = result["worst_mean_delay_ms"] <= args.budget_ms
        results.append(result)
        if not result["sustained"] and len(results) > 1 and not results[-2]["sustained"]:
            break  # two levels past its limit: higher ones only take longer
    return results


def best(results: list[dict]) -> dict | None:
    sustained = [result for result in results if result["sustained"]]
    return max(sustained, key=lambda result: result["tokens_per_second"]) if sustained else None


def table(results: list[dict]) -> str:
    lines = ["| tool | tokens per chunk (stream interval) | streams | offered tok/s | measured tok/s | first-token "
             "read delay mean / p99 (ms) | last-token read delay mean / p99 (ms) | client core busy | client CPU "
             "per chunk, user + kernel (µs) | tok/s per core at that cost | server late (ms) | sustained "
             "(attempts) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        d = r["read_delay_ms"]
        lines.append(f"| {r['tool']} | {1 / r['chunks_per_token']:.2f} ({r['stream_interval']}) | {r['level']:,} | "
                     f"{r['offered_tokens_per_second']:,.0f} | {r['tokens_per_second']:,.0f} | "
                     f"{d['first_token']['mean']:.2f} / {d['first_token']['p99']:.2f} | "
                     f"{d['last_token']['mean']:.2f} / {d['last_token']['p99']:.2f} | {r['client_core_busy']:.0%} | "
                     f"{r['client_user_us_per_chunk']:.1f} + {r['client_kernel_us_per_chunk']:.1f} | "
                     f"{r['projected_tokens_per_second_per_core']:,.0f} | {r['server_lateness_ms']:.2f} | "
                     f"{'yes' if r['sustained'] else 'no'} ({r['attempts_sustained']}/{r['attempts']}) |")
    return "\n".join(lines)


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int_list, default=[100, 250, 500, 750, 1000, 1250, 1500, 2000],
                        help="concurrent streams to try with servebench")
    parser.add_argument("--compare-levels", type=int_list, default=[10, 25, 50, 100, 250],
                        help="concurrent streams to try with AIPerf")
    parser.add_argument("--stream-intervals", type=int_list, default=[1, 4],
                        help="tokens per chunk to sweep (vLLM's stream_interval): 1 is a chunk per token")
    parser.add_argument("--ttft", type=float, default=0.05, help="server's time to first token (s)")
    parser.add_argument("--itl", type=float, default=0.008, help="server's gap between tokens (s): 125 tok/s per "
                        "stream, so 1,000 streams offer 125,000 tok/s")
    parser.add_argument("--tokens", type=int, default=250, help="tokens per request")
    parser.add_argument("--waves", type=float, default=2, help="measured requests per level = waves x streams")
    parser.add_argument("--budget-ms", type=float, default=1.0, help="largest mean read delay of the client (ms)")
    parser.add_argument("--repeats", type=int, default=3, help="attempts per level; the best one counts")
    parser.add_argument("--client-core", type=int, default=0)
    parser.add_argument("--server-core", type=int, default=1)
    parser.add_argument("--level-timeout", type=float, default=600, help="seconds one level may take")
    parser.add_argument("--no-compare", action="store_true", help="do not run AIPerf")
    parser.add_argument("--aiperf-venv", type=Path, default=Path(tempfile.gettempdir()) / "servebench-aiperf-venv")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs two cores: one for the server, one for the client")

    results = []
    with tempfile.TemporaryDirectory(prefix="client-capacity-") as tmp:
        work = Path(tmp)
        with open(work / "log.txt", "w") as log:
            server = StandinProcess(SERVER, ["--ttft", str(args.ttft), "--itl", str(args.itl)], work / "server.log",
                                    core=args.server_core)
            url = server.url
            try:
                tokenizer = None if args.no_compare else ensure_aiperf(args.aiperf_venv, log)
                for interval in args.stream_intervals:
                    results += sweep("servebench", lambda level, n: servebench_level(args, url, level, n, work, log),
                                     args.levels, interval, args, url)
                    if tokenizer:
                        results += sweep(f"aiperf {AIPERF_VERSION}",
                                         lambda level, n: aiperf_level(args, url, level, n, work, tokenizer, log),
                                         args.compare_levels, interval, args, url)
            finally:
                server.stop()
        if args.output:
            (work / "log.txt").replace(args.output.with_suffix(".log"))

    print(f"\nOne client process pinned to core {args.client_core}; server pinned to core {args.server_core}; "
          f"{1 / args.itl:.0f} tok/s per stream, TTFT {args.ttft * 1000:.0f} ms, {args.tokens} tokens per request; "
          f"sustained = mean read delay of first and last tokens <= {args.budget_ms:g} ms in the best of "
          f"{args.repeats} attempts.\n")
    print(table(results))
    print()
    for interval in args.stream_intervals:
        at_interval = [r for r in results if r["stream_interval"] == interval]
        ours = best([r for r in at_interval if r["tool"] == "servebench"])
        theirs = best([r for r in at_interval if r["tool"] != "servebench"])
        for name, result in (("servebench", ours), (f"aiperf {AIPERF_VERSION}", theirs)):
            if result:
                print(f"stream interval {interval}, {name}: highest sustained {result['level']:,} streams, "
                      f"{result['tokens_per_second']:,.0f} tok/s")
            elif name == "servebench" or not args.no_compare:
                print(f"stream interval {interval}, {name}: no level sustained")
        if ours and theirs:
            print(f"stream interval {interval}, ratio servebench / aiperf: {ours['level'] / theirs['level']:.2f}x "
                  f"streams, {ours['tokens_per_second'] / theirs['tokens_per_second']:.2f}x tok/s")
        if ours:
            met = ours["level"] >= TARGET_STREAMS and ours["tokens_per_second"] >= TARGET_TOKENS_PER_SECOND
            print(f"stream interval {interval}, goal ({TARGET_STREAMS:,} streams and {TARGET_TOKENS_PER_SECOND:,} "
                  f"tok/s): {'met' if met else 'not met'} ({ours['level'] / TARGET_STREAMS:.2f}x streams, "
                  f"{ours['tokens_per_second'] / TARGET_TOKENS_PER_SECOND:.2f}x tok/s)")
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
