"""Statistics: percentiles as numpy computes them, summaries over repeated runs, and the saturation rule.

- `percentile(values, q)`: numpy's default "linear" method (what `vllm bench serve` calls): sort, take the
  position (n - 1) * q / 100 and interpolate between its neighbours.
- Per-request distributions use the population standard deviation (numpy's `np.std`, as vLLM does); the spread
  over runs uses the sample standard deviation (n - 1) and Student's t for the 95 % interval.
- Saturation: the lowest level whose throughput no later level exceeds by `threshold` or more.
"""

import math
from dataclasses import dataclass

# Two-sided 95 % quantiles of Student's t (0.975) by degrees of freedom.
_T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
          11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
          20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
          29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
_Z_975 = 1.960


def percentile(values, q: float) -> float:
    """numpy.percentile(values, q) with the default linear interpolation; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def mean(values) -> float:
    values = list(values)
    return math.fsum(values) / len(values) if values else math.nan


def population_std(values) -> float:
    values = list(values)
    if not values:
        return math.nan
    average = mean(values)
    return math.sqrt(math.fsum((value - average) ** 2 for value in values) / len(values))


def t_quantile_975(degrees: int) -> float:
    """Student's t 0.975 quantile; between tabulated values, linear in 1/df (exact to 3 decimals)."""
    if degrees < 1:
        return math.nan
    if degrees in _T_975:
        return _T_975[degrees]
    keys = sorted(_T_975)
    if degrees > keys[-1]:
        lower, upper, t_lower, t_upper = keys[-1], math.inf, _T_975[keys[-1]], _Z_975
    else:
        upper = next(key for key in keys if key > degrees)
        lower = max(key for key in keys if key < degrees)
        t_lower, t_upper = _T_975[lower], _T_975[upper]
    weight = (1 / lower - 1 / degrees) / (1 / lower - (0 if upper == math.inf else 1 / upper))
    return t_lower + (t_upper - t_lower) * weight


@dataclass(frozen=True)
class Spread:
    """A figure over n runs: mean, sample standard deviation, coefficient of variation, 95 % t-interval."""
    n: int
    mean: float
    std: float
    cv: float
    ci95_low: float
    ci95_high: float

    def as_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "std": self.std, "cv": self.cv,
                "ci95": [self.ci95_low, self.ci95_high]}


def spread(values) -> Spread:
    values = [value for value in values if not math.isnan(value)]
    n = len(values)
    if n == 0:
        return Spread(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    average = mean(values)
    if n == 1:
        return Spread(1, average, math.nan, math.nan, math.nan, math.nan)
    std = math.sqrt(math.fsum((value - average) ** 2 for value in values) / (n - 1))
    half = t_quantile_975(n - 1) * std / math.sqrt(n)
    cv = std / average if average else math.nan
    return Spread(n, average, std, cv, average - half, average + half)


def saturation_point(levels: list[float], throughputs: list[float], threshold: float) -> float | None:
    """The lowest level beyond which throughput grows by less than `threshold` (a fraction): no later level's
    throughput reaches (1 + threshold) times its own. None when only the last level qualifies, since nothing
    was measured beyond it (the sweep did not reach saturation)."""
    pairs = sorted((level, value) for level, value in zip(levels, throughputs) if not math.isnan(value))
    for position, (level, value) in enumerate(pairs[:-1]):
        later = [other for _, other in pairs[position + 1:]]
        if max(later) < value * (1 + threshold):
            return level
    return None
