"""The sweep chart: throughput (top) and p99 latency (bottom) against the level, with 95 % intervals.

matplotlib (Agg backend, no display needed) is optional: without it `draw` returns a message and the other
reports are written as usual.
"""

import math


def draw(report: dict, path) -> str | None:
    """Write the PNG; return None on success or a sentence saying why there is no chart."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart (pip install matplotlib)"
    levels = [level for level in report["levels"] if level["complete_runs"]]
    if not levels:
        return "no complete run: no chart"
    settings, sweep = report["settings"], report["sweep"]
    closed = settings["mode"] == "concurrency"
    x = [level["level"] for level in levels]

    def series(key: str):
        means, errors = [], []
        for level in levels:
            figure = level["figures"].get(key, {})
            average = figure.get("mean", math.nan)
            low = figure.get("ci95", [math.nan, math.nan])[0]
            means.append(average)
            errors.append(0.0 if low is None or math.isnan(low) else average - low)
        return means, errors

    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 7), constrained_layout=True)
    throughput, throughput_error = series("output_throughput")
    top.errorbar(x, throughput, yerr=throughput_error, marker="o", capsize=4, label="sustained output tok/s")
    burst, _ = series("burst_throughput")
    top.plot(x, burst, linestyle=":", marker=".", color="grey", label="busiest second")
    peak = sweep.get("peak")
    if peak:
        top.plot([peak["level"]], [peak["output_throughput"]["mean"]], marker="*", markersize=16, color="gold",
                 markeredgecolor="black", linestyle="none", label="peak")
    saturation = sweep["saturation"]["level"]
    below = sweep["saturation"]["between"][0] if saturation is not None else None
    for axis in (top, bottom):
        if saturation is not None:
            axis.axvline(saturation, linestyle="--", color="tab:red", alpha=0.7)
            if below is not None:  # the saturation point lies somewhere in this span, not on the line
                axis.axvspan(below, saturation, color="tab:red", alpha=0.08)
        axis.grid(True, which="both", alpha=0.3)
    if saturation is not None:
        span = f"{below:g}–{saturation:g}" if below is not None else f"≤ {saturation:g}"
        top.annotate(f"saturation {span}", (saturation, 0), xycoords=("data", "axes fraction"),
                     xytext=(4, 6), textcoords="offset points", color="tab:red")
    top.set_ylabel("output tokens/s")
    top.set_ylim(bottom=0)
    top.legend(loc="lower right")
    top.set_title(f"{settings['model']}: mean of {settings['runs']} run(s) per level, 95% intervals")

    e2e, e2e_error = series("e2e.p99")
    ttft, ttft_error = series("ttft.p99")
    bottom.errorbar(x, e2e, yerr=e2e_error, marker="o", capsize=4, color="tab:purple", label="p99 end-to-end")
    bottom.errorbar(x, ttft, yerr=ttft_error, marker="s", capsize=4, color="tab:green", label="p99 TTFT")
    bottom.set_ylabel("seconds")
    bottom.set_ylim(bottom=0)
    bottom.legend(loc="upper left")
    bottom.set_xlabel("concurrent requests (closed loop)" if closed else "request rate, req/s (open loop, Poisson)")
    if len(x) > 1 and min(x) > 0 and max(x) / min(x) >= 20:
        bottom.set_xscale("log")
    bottom.set_xticks(x)
    bottom.set_xticklabels([f"{value:g}" for value in x])
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None
