"""Is traffic split evenly over a service's endpoints? A chi-square goodness-of-fit test.

kube-proxy picks an endpoint per new connection with `-m statistic --mode random`, so with k
ready endpoints each connection lands on each endpoint with probability 1/k. The null hypothesis
is that equal split; it is rejected when the chi-square p-value is below `ALPHA` (the false-alarm
rate: a healthy service is wrongly flagged with probability `ALPHA`).

Power: if one endpoint gets no traffic at all (dead, or its rule missing), the other k-1 share the
n answers and the statistic is at least n/(k-1) whatever the sample (the minimum is at an even
split of the rest). `requests_for` picks n so that n/(k-1) >= POWER_MARGIN x the critical value,
so such an endpoint is flagged with certainty, not just high probability.
Pure stdlib (no scipy): the upper regularized incomplete gamma function, Numerical Recipes style.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Per split check. A verify runs one check per (node, service port with several endpoints):
# at 0.001 a 100-service, 10-node cluster would raise about one false alarm per run, and this
# test suite's dozens of checks did raise one (p = 4e-4, in a fresh-Debian run). At 1e-6 a
# silent endpoint is still caught with certainty (`requests_for`): 200 requests for 2-3 endpoints.
ALPHA = 1e-6
MIN_SPLIT_REQUESTS = 200
MAX_SPLIT_REQUESTS = 2000
POWER_MARGIN = 2.0
MIN_EXPECTED = 5  # chi-square needs at least this many expected answers per endpoint
_EPS = 1e-14
_MAX_ITER = 1000


def _gamma_p_series(a: float, x: float) -> float:
    term = total = 1.0 / a
    n = a
    for _ in range(_MAX_ITER):
        n += 1
        term *= x / n
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_q_fraction(a: float, x: float) -> float:
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def chi2_sf(statistic: float, df: int) -> float:
    """P(X >= statistic) for X ~ chi-square with `df` degrees of freedom."""
    if df < 1:
        raise ValueError("degrees of freedom must be >= 1")
    if statistic <= 0:
        return 1.0
    a, x = df / 2.0, statistic / 2.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _gamma_p_series(a, x))
    return min(1.0, _gamma_q_fraction(a, x))


def chi2_critical(alpha: float, df: int) -> float:
    """The statistic whose survival probability is `alpha` (bisection; 1e-9 relative)."""
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    lo, hi = 0.0, max(10.0, 10.0 * df)
    while chi2_sf(hi, df) > alpha:
        hi *= 2
    while hi - lo > 1e-9 * hi:
        mid = (lo + hi) / 2
        if chi2_sf(mid, df) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def requests_for(endpoints: int, alpha: float = ALPHA) -> int:
    """Requests for a split test over `endpoints` so that a silent endpoint is always detected."""
    if endpoints < 2:
        return MIN_SPLIT_REQUESTS
    df = endpoints - 1
    need = math.ceil(POWER_MARGIN * df * chi2_critical(alpha, df))
    return min(MAX_SPLIT_REQUESTS, max(MIN_SPLIT_REQUESTS, need, MIN_EXPECTED * endpoints))


@dataclass(frozen=True, slots=True)
class SplitResult:
    """Outcome of a split test over the answers of one service."""

    ok: bool
    n: int
    df: int
    statistic: float
    p_value: float
    alpha: float
    counts: tuple[tuple[str, int], ...]

    def describe(self) -> str:
        if self.n == 0:
            return "no answers to test the split on"
        seen = ", ".join(f"{name} x{count}" for name, count in self.counts)
        return (f"chi-square {self.statistic:.1f} (df {self.df}), p = {self.p_value:.2g} "
                f"{'>=' if self.ok else '<'} alpha {self.alpha:g} over {self.n} answers: {seen}")


def split_test(counts: Mapping[str, int], endpoints: Sequence[str], alpha: float = ALPHA) -> SplitResult:
    """Chi-square goodness of fit of `counts` (answers per endpoint) against an equal split.

    Endpoints missing from `counts` count as 0; answers from names not in `endpoints` are
    ignored here (the caller reports them). With one endpoint there is nothing to test.
    """
    names = list(dict.fromkeys(endpoints))
    observed = [int(counts.get(name, 0)) for name in names]
    n = sum(observed)
    k = len(names)
    table = tuple(zip(names, observed, strict=True))
    if k < 2 or n == 0:
        return SplitResult(k < 2 and n > 0, n, max(k - 1, 0), 0.0, 1.0, alpha, table)
    expected = n / k
    statistic = sum((o - expected) ** 2 / expected for o in observed)
    p = chi2_sf(statistic, k - 1)
    return SplitResult(p >= alpha, n, k - 1, statistic, p, alpha, table)
