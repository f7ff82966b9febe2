"""benchmarks/balancer_failover.py: the medians and maxima it prints over the runs of one fault."""

from benchmarks.balancer_failover import summarize
from lab.balancer_pair import Failover


def _run(back, in_flight, failed_new, slowest, holder="lb02"):
    return Failover(fault="haproxy", holder_before="lb01", holder_after=holder, fault_took=0.002,
                    vip_back_after=back, requests=300, in_flight=in_flight, failed_in_flight=in_flight,
                    opened_during_fault=1, failed_opened_during_fault=in_flight % 2,
                    failed_new=[{"start": start, "error": "refused"} for start in failed_new], slowest_new=slowest)


def test_summary_gives_median_and_maximum_over_the_runs():
    runs = [_run(0.8, 4, [0.1, 0.5], 0.4), _run(1.2, 6, [], 0.3), _run(None, 5, [0.2, 0.3, 0.9], 0.2, "none")]
    assert summarize("haproxy", runs) == [
        "haproxy, 3 runs: median / max",
        "  back after              1.00 s / 1.20 s   (never in 1 run(s))",
        "  in flight at the fault  5 / 6",
        "  of those failed         5 / 6",
        "  opened during the fault 1 / 1",
        "  of those failed         0 / 1",
        "  failed, started later   2 / 3   (refused)",
        "  last of those, after    0.70 s / 0.90 s",
        "  slowest started later   0.30 s / 0.40 s",
        "  holder afterwards       lb02, none",
    ]
