"""Does the training budget, not the regulariser, decide a table? From the learning curves the rows
hold: how many seeds peaked at the last epoch, and the methods' ranking after every epoch."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps


def peaked_last(row) -> bool | None:
    """Whether the run's best validation epoch is its last one (best_epoch is 1-based, as the
    trainer writes it); None without a learning curve (schema-1 rows, test fixtures)."""
    curve = row.curve_valid if row.curve_valid is not None else []
    if not len(curve):
        return None
    return int(row.best_epoch) == len(curve)


def last_epoch_counts(unit: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """method -> (finished seeds that peaked at their last epoch, finished seeds with a curve)."""
    out = {}
    for m, g in unit[unit.status == "ok"].groupby("method", sort=True):
        flags = [f for f in (peaked_last(r) for r in g.itertuples(index=False)) if f is not None]
        out[m] = (sum(flags), len(flags))
    return out


def all_peaked_last(rows: pd.DataFrame) -> bool:
    """True when the rows (finished seeds of one line) all have curves and all peaked at the last epoch."""
    flags = [peaked_last(r) for r in rows.itertuples(index=False)]
    return bool(flags) and all(f is True for f in flags)


def epoch_ranks(unit: pd.DataFrame, higher: bool) -> tuple[list[int], dict[str, list[float]]]:
    """(epochs 1..L at which every method has a mean, method -> its rank at each of them), ranking the
    methods by their mean validation metric over the finished seeds (1 = best, ties averaged)."""
    means = {}
    for m, g in unit[unit.status == "ok"].groupby("method", sort=True):
        cs = [[float(v) for v in c] for c in g.curve_valid if c is not None and len(c)]
        if cs:
            length = min(len(c) for c in cs)
            means[m] = [float(np.mean([c[e] for c in cs])) for e in range(length)]
    if len(means) < 2:
        return [], {}
    length = min(len(v) for v in means.values())
    names = sorted(means)
    ranks = {m: [] for m in names}
    for e in range(length):
        col = np.array([means[m][e] for m in names])
        r = sps.rankdata(-col if higher else col)
        for m, x in zip(names, r):
            ranks[m].append(float(x))
    return list(range(1, length + 1)), ranks


def peaked_share(unit: pd.DataFrame) -> float:
    """The share of the finished seeds with a curve that peaked at their last epoch (nan: none)."""
    counts = last_epoch_counts(unit).values()
    n = sum(c[1] for c in counts)
    return sum(c[0] for c in counts) / n if n else math.nan


def still_moving(epochs: list[int], ranks: dict[str, list[float]], share: float = math.nan) -> str:
    """One sentence: does the order change between the last two epochs, and since when is it fixed?
    `share`: the seeds that peaked at the last epoch; where under half did, the test numbers (taken at
    each seed's best epoch) do not hinge on the last epochs, and the sentence says so."""
    if not ranks:
        return "with fewer than two methods there is no ranking to read."
    if len(epochs) < 2:
        return "with one epoch there is no ranking over time to read."
    names = sorted(ranks)

    def order(e):
        return [ranks[m][e] for m in names]

    last = order(-1)
    moved = [m for m in names if ranks[m][-1] != ranks[m][-2]]
    settled = len(epochs)
    while settled > 1 and order(settled - 2) == last:
        settled -= 1
    tau = sps.kendalltau(order(-2), last).statistic
    tau = "—" if tau is None or math.isnan(tau) else f"{tau:.2f}"
    if moved:
        head = (f"the order is still moving at the end: between epochs {epochs[-2]} and {epochs[-1]} "
                f"{len(moved)} of {len(names)} methods change rank (Kendall τ {tau} between the two orders)")
        if share < 0.5:
            few = "no seed" if share == 0 else f"only {share:.0%} of the seeds"
            return (head + f"; but {few} peaked at the last epoch, so the test numbers, "
                    "taken at each seed's best epoch, are not cut short by the budget: the late moves reorder "
                    "curves past their peaks (overfitting or noise: section 3's reading of overfitting tells "
                    "them apart), not the test numbers.")
        return head + (f", and {share:.0%} of the seeds peaked at the last epoch: a longer budget may reorder "
                       "this table." if not math.isnan(share) else ", so a longer budget may reorder this table.")
    steady = (f"the order has not changed since epoch {epochs[settled - 1]} of {epochs[-1]} "
              f"(τ {tau} between the last two epochs)")
    if share >= 0.5:
        return steady + (f"; but {share:.0%} of the seeds peaked at the last epoch, so a longer budget may still "
                         "reorder this table.")
    return steady + "."
