"""How large a gap a table can resolve with its seeds. Method: the two-sided two-sample t-test with
n seeds per side and the table's pooled seed-to-seed standard deviation s on both sides; its power at
a difference delta is that of the noncentral t (scipy.stats.nct) with 2n - 2 degrees of freedom and
noncentrality delta / (s sqrt(2 / n)). With equal n Welch's test has the same statistic, and its
degrees of freedom equal 2n - 2 when the two samples' variances agree and are fewer otherwise: for
the Welch tests of the report these numbers are slightly optimistic, never pessimistic. A table's verdicts are Holm-corrected over a family of m tests, and Holm's
first step needs p < alpha / m: the level used here (the bound any one test of the family meets)."""
from __future__ import annotations

import math

from scipy import optimize
from scipy import stats as sps

TARGET = 0.8
MAX_SEEDS = 1000
PROJECTED_SEEDS = 10        # the seeds of the SST plans (issue 34): what a table with fewer would resolve there


def power(delta: float, sd: float, n: int, alpha: float) -> float:
    """Power of the two-sided two-sample t-test, n per side, to detect |delta| at level alpha."""
    if n < 2 or not sd > 0:
        return math.nan
    df = 2 * n - 2
    ncp = abs(delta) / (sd * math.sqrt(2.0 / n))
    t = sps.t.ppf(1 - alpha / 2, df)
    upper, lower = sps.nct.sf(t, df, ncp), sps.nct.cdf(-t, df, ncp)
    # far in the tail scipy's nct can return nan for a probability that is 0 (or 1)
    upper = (1.0 if ncp > t else 0.0) if math.isnan(upper) else upper
    lower = 0.0 if math.isnan(lower) else lower
    return float(min(1.0, upper + lower))


def min_detectable(sd: float, n: int, alpha: float, target: float = TARGET) -> float:
    """The smallest |difference| resolved with the target power (nan without spread or seeds)."""
    if n < 2 or not sd > 0:
        return math.nan
    hi = sd
    while power(hi, sd, n, alpha) < target:
        hi *= 2
    return float(optimize.brentq(lambda d: power(d, sd, n, alpha) - target, 0.0, hi, xtol=1e-10 * sd))


def seeds_needed(delta: float, sd: float, alpha: float, target: float = TARGET) -> int | None:
    """The smallest seeds per side (>= 2) that resolve |delta| with the target power; None past
    MAX_SEEDS or without a gap or spread."""
    if not sd > 0 or not abs(delta) > 0:
        return None
    if power(delta, sd, MAX_SEEDS, alpha) < target:
        return None
    lo, hi = 2, MAX_SEEDS                   # power grows with n: bisect
    if power(delta, sd, lo, alpha) >= target:
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if power(delta, sd, mid, alpha) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def fmt_seeds(n: int | None) -> str:
    return f"> {MAX_SEEDS}" if n is None else str(n)
