"""benchmarks/weights_fanout.py: the table it prints from its runs (the runs themselves need root and namespaces)."""

from benchmarks.weights_fanout import table


def _run(strategy, nodes, seconds, internet, ideal=5.0):
    return {"strategy": strategy, "nodes": nodes, "seconds": seconds, "ratio": seconds / ideal,
            "internet": internet, "hub_fallbacks": 0}


def test_table_gives_times_ratios_to_the_ideal_and_to_one_node_and_internet_bytes():
    runs = [_run("hub", 1, 5.5, 1.0), _run("seed", 1, 5.6, 1.0), _run("fanout", 1, 5.4, 1.0),
            _run("hub", 8, 44.0, 8.0), _run("seed", 8, 43.0, 1.0), _run("fanout", 8, 7.7, 1.0)]
    assert table(runs, [1, 8], ["hub", "seed", "fanout"]).splitlines() == [
        "| N | every node from the hub | single seed (today) | fan-out | fan-out ÷ one node "
        "| internet bytes ÷ model (hub / seed / fanout) |",
        "|---:|---:|---:|---:|---:|---:|",
        "| 1 | 5.5 s = 1.10× | 5.6 s = 1.12× | 5.4 s = 1.08× | 0.98 | 1.00 / 1.00 / 1.00 |",
        "| 8 | 44.0 s = 8.80× | 43.0 s = 8.60× | 7.7 s = 1.54× | 1.40 | 8.00 / 1.00 / 1.00 |",
    ]


def test_table_of_one_strategy_and_missing_runs():
    printed = table([_run("fanout", 1, 5.0, 1.0), _run("fanout", 4, 6.0, 1.0)], [1, 2, 4], ["fanout"])
    assert printed.splitlines()[2:] == ["| 1 | 5.0 s = 1.00× | 1.00 | 1.00 |", "| 2 | - | - | - |",
                                      "| 4 | 6.0 s = 1.20× | 1.20 | 1.00 |"]
