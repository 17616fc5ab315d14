"""Paired statistics of the ablation studies: mean ± std, paired differences with Student-t intervals and
the smallest effect a study can resolve (used by ``benchmarks/ablation.py`` and its presets)."""

from __future__ import annotations

import math


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0.0 for one value)."""
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s


def t_quantile(df: int, q: float = 0.975) -> float:
    """Student-t quantile (scipy)."""
    from scipy.stats import t

    return float(t.ppf(q, df))


def paired_diff(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, float, int] | None:
    """Mean paired difference a - b over the common seeds, its 95 % t-interval half-width and the
    std of the differences; ``None`` with fewer than 2 common seeds."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    d = [a[s] - b[s] for s in seeds]
    m, sd = mean_std(d)
    half = t_quantile(len(d) - 1) * sd / math.sqrt(len(d))
    return m, half, sd, len(d)


def min_resolvable(sd: float, n: int, power: float = 0.8) -> float:
    """The smallest true paired difference that a two-sided 5 % paired t-test over ``n`` seeds detects
    with probability ``power``, for differences of standard deviation ``sd``:
    ``(t_{0.975, n-1} + t_{power, n-1}) * sd / sqrt(n)`` (the usual normal-shift approximation)."""
    if n < 2:
        return float("nan")
    return (t_quantile(n - 1) + t_quantile(n - 1, power)) * sd / math.sqrt(n)
