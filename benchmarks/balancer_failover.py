"""Benchmark: how long clients of the balancers' virtual IP wait, and how many of their requests fail, when the
balancer holding the address goes down or its HAProxy dies.

Each run builds the namespace lab of lab/balancer_pair.py from scratch (two balancers running Debian's
keepalived and HAProxy with the loadbalancer and loadbalancer_vip roles' rendered configurations, two stand-in
vLLM servers, a client), puts client load on the virtual IP (--threads threads, each sending a ~0.1 s streamed
request on a new connection, then pausing up to --think seconds), injects the fault into the holder, and records:

    back after      time from the fault to the first answer through the virtual IP (a prober opens a new
                    connection every 20 ms with a 100 ms timeout)
    in flight       requests started before the fault and not finished at it; failed: how many of them failed
    failed later    requests started after the fault that failed, and how (refused: nothing reached a server)
    slowest later   the longest request started after the fault (TCP retransmits a lost SYN after 1 s, then 3 s)

and prints each run, then the median and the maximum over the runs. Needs root, ip, haproxy, keepalived and
socat (scripts/setup-dev-host.sh installs them); about 12 s a run.

    sudo .venv/bin/python -m benchmarks.balancer_failover                   # 10 runs of each fault, ~4 minutes
    sudo .venv/bin/python -m benchmarks.balancer_failover --runs 3 --faults balancer --advert-interval 1

(from the repository root: it imports lab and tests.helpers).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import statistics
import sys
import tempfile

from lab.balancer_pair import FAULTS, THINK, THREADS, BalancerPair, Failover, unavailable

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _spread(values: list[float], unit: str = "", digits: int = 0) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.{digits}f}{unit} / {max(values):.{digits}f}{unit}"


def summarize(fault: str, runs: list[Failover]) -> list[str]:
    """The lines printed for one fault: medians and maxima over its runs."""
    back = [run.vip_back_after for run in runs if run.vip_back_after is not None]
    never = len(runs) - len(back)
    kinds = sorted({failure["error"] for run in runs for failure in run.failed_new})
    last_failure = [max(failure["start"] for failure in run.failed_new) for run in runs if run.failed_new]
    rows = [
        ("back after", _spread(back, " s", 2) + (f"   (never in {never} run(s))" if never else "")),
        ("in flight at the fault", _spread([run.in_flight for run in runs])),
        ("of those failed", _spread([run.failed_in_flight for run in runs])),
        ("opened during the fault", _spread([run.opened_during_fault for run in runs])),
        ("of those failed", _spread([run.failed_opened_during_fault for run in runs])),
        ("failed, started later", _spread([len(run.failed_new) for run in runs])
         + (f"   ({', '.join(kinds)})" if kinds else "")),
        ("last of those, after", _spread(last_failure, " s", 2)),
        ("slowest started later", _spread([run.slowest_new for run in runs], " s", 2)),
        ("holder afterwards", ", ".join(sorted({run.holder_after for run in runs}))),
    ]
    return [f"{fault}, {len(runs)} runs: median / max"] + [f"  {label:<24}{value}" for label, value in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each fault")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    parser.add_argument("--advert-interval", type=float, help="loadbalancer_vip_advert_interval (role default: 0.5)")
    parser.add_argument("--threads", type=int, default=THREADS, help="client threads")
    parser.add_argument("--think", type=float, default=THINK, help="longest pause of a thread between two requests")
    parser.add_argument("--json", type=pathlib.Path, help="also write every run's result here")
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    from ansible.plugins.loader import filter_loader

    from tests.helpers.role_renderer import RoleRenderer

    filter_loader.add_directory(str(ROOT / "plugins" / "filter"))
    settings = {} if args.advert_interval is None else {"loadbalancer_vip_advert_interval": args.advert_interval}
    results: dict[str, list[Failover]] = {}
    for fault in args.faults.split(","):
        for number in range(1, args.runs + 1):
            with tempfile.TemporaryDirectory(prefix="balancer-failover-") as workdir, \
                    BalancerPair(pathlib.Path(workdir), RoleRenderer, **settings) as pair:
                result = pair.failover(fault, threads=args.threads, think=args.think)
            results.setdefault(fault, []).append(result)
            print(f"{number:>3} {result.summary()}", flush=True)
    print()
    for fault, runs in results.items():
        print("\n".join(summarize(fault, runs)))
    if args.json:
        args.json.write_text(json.dumps({fault: [dataclasses.asdict(run) for run in runs]
                                         for fault, runs in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
