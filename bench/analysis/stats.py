"""The report's statistics. Test statistics come from scipy; only Holm's step-down adjustment and
Hedges' g (two formulas) are written here, each tested against a hand computation."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from bench.leaderboard import ci95

ALPHA = 0.05


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float          # sample standard deviation (ddof=1); nan for n < 2
    lo: float           # Student-t 95% CI of the mean; nan for n < 2
    hi: float


def summarize(values) -> Summary:
    v = [float(x) for x in values]
    n = len(v)
    mean = float(np.mean(v)) if n else math.nan
    std = float(np.std(v, ddof=1)) if n > 1 else math.nan
    lo, hi = ci95(v)
    return Summary(n, mean, std, lo, hi)


def welch_p(a, b) -> float:
    """Two-sided Welch t-test p-value (scipy.stats.ttest_ind, equal_var=False); nan when either
    side has fewer than 2 values or both have no spread."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if np.std(a, ddof=1) == 0 and np.std(b, ddof=1) == 0:
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def holm(pvalues) -> list[float]:
    """Holm's step-down adjustment (family-wise error), nan entries left out of the family:
    with the m p-values sorted ascending, p_(1) <= ... <= p_(m),
        adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) * p_(j)),
    returned in the input order. A test is rejected at level alpha when its adjusted p < alpha."""
    p = [float(x) for x in pvalues]
    idx = sorted((i for i, x in enumerate(p) if not math.isnan(x)), key=lambda i: (p[i], i))
    m = len(idx)
    out = [math.nan] * len(p)
    running = 0.0
    for j, i in enumerate(idx):
        running = max(running, min(1.0, (m - j) * p[i]))
        out[i] = running
    return out


def pooled_std(groups) -> float:
    """sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1)) over the groups with >= 2 values; 0 when there are none."""
    groups = [g for g in groups if len(g) >= 2]
    dof = sum(len(g) - 1 for g in groups)
    return math.sqrt(sum((len(g) - 1) * np.var(g, ddof=1) for g in groups) / dof) if dof else 0.0


def hedges_g(a, b) -> float:
    """Hedges' g of a minus b, Cohen's d with the small-sample correction:
        s_p = sqrt(((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / (n_a + n_b - 2))   (pooled sample std)
        d   = (mean_a - mean_b) / s_p
        g   = d * (1 - 3 / (4 (n_a + n_b) - 9))
    nan when either side has fewer than 2 values or s_p is 0."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return math.nan
    sp = pooled_std([a, b])
    if sp == 0:
        return math.nan
    d = (float(np.mean(a)) - float(np.mean(b))) / sp
    return d * (1 - 3 / (4 * (na + nb) - 9))


def ranks(matrix: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Rank of each method (column) within each task (row), 1 = best, ties averaged
    (scipy.stats.rankdata)."""
    m = np.asarray(matrix, dtype=float)
    return np.vstack([stats.rankdata(-row if higher_is_better else row) for row in m])


def friedman(matrix: np.ndarray):
    """scipy.stats.friedmanchisquare over the methods (columns), the tasks (rows) as blocks:
    (statistic, p-value)."""
    res = stats.friedmanchisquare(*np.asarray(matrix, dtype=float).T)
    return float(res.statistic), float(res.pvalue)


def kendall_w(friedman_stat: float, n: int, k: int) -> float:
    """Kendall's coefficient of concordance of n rankings (tasks) of k methods, from Friedman's
    statistic: W = chi2_F / (n (k - 1)); 1 = the same order on every task, 1/n expected when the
    orders are unrelated (E[chi2_F] = k - 1). scipy's chi2_F is tie-corrected, so this W is too."""
    return float(friedman_stat / (n * (k - 1)))


def kendall_tau(a, b) -> tuple[float, float]:
    """Kendall's tau-b between two rankings of the same methods and its two-sided p-value
    (scipy.stats.kendalltau); nan, nan when either ranking is constant."""
    res = stats.kendalltau(a, b)
    return float(res.statistic), float(res.pvalue)


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference of mean ranks (Demsar 2006), k methods over n tasks:
    CD = q_alpha * sqrt(k (k + 1) / (6 n)), q_alpha the studentized range quantile / sqrt(2)."""
    q = stats.studentized_range.ppf(1 - alpha, k, math.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n)))


def cliques(mean_ranks: dict[str, float], cd: float) -> list[list[str]]:
    """Maximal runs of methods (ordered by mean rank) whose ranks lie within cd of each other:
    the groups a critical-difference diagram joins by a bar (not told apart by the test)."""
    order = sorted(mean_ranks, key=lambda m: (mean_ranks[m], m))
    groups = []
    for i, first in enumerate(order):
        run = [m for m in order[i:] if mean_ranks[m] - mean_ranks[first] < cd]
        if len(run) > 1 and not any(set(run) <= set(g) for g in groups):
            groups.append(run)
    return groups
