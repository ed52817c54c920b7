"""Aggregates across tasks that do not hang on a mean rank (after Agarwal et al. 2021, rliable):
task-normalised scores, their interquartile mean (IQM) with stratified-bootstrap CIs, and the
probability of improvement with CIs. Written with numpy and scipy.stats.trim_mean (rliable 1.2.0
would bring arch, statsmodels, seaborn and absl-py for these few lines); the same definitions as
rliable's `metrics.aggregate_iqm` and `metrics.probability_of_improvement`.

Normalised score of one run on a task: (x - none) / |best - none|, oriented so that higher is
better, `none` the mean of the unregularised method on that task and `best` the best mean of the
other methods: 0 = no regularisation, 1 = the task's best method (-1 for that method where
`none` itself is best). A diverged run scores as the task's worst finished run."""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench.analysis.doc import fmt

RESAMPLES = 2000
SEED = 2021
NONE = "none"


def normalised(sub: pd.DataFrame, higher: dict[str, bool]) -> tuple[dict, list[str]]:
    """({task: {method: array of its runs' scores}}, tasks left out because `none` or a second method
    is missing there)."""
    out, left = {}, []
    for task, g in sub.groupby("task", sort=True):
        ok = g[g.status == "ok"]
        means = ok.groupby("method").test.mean()
        if NONE not in means.index or len(means) < 2:
            left.append(task)
            continue
        sign = 1.0 if higher[task] else -1.0
        others = means.drop(NONE) * sign
        none = means[NONE] * sign
        scale = abs(others.max() - none)
        if not scale > 0:
            left.append(task)
            continue
        scores = {m: (gm.test.to_numpy(float) * sign - none) / scale
                  for m, gm in ok.groupby("method", sort=True)}
        worst = min(float(v.min()) for v in scores.values())
        for m, gm in g.groupby("method", sort=True):
            n_div = int((gm.status != "ok").sum())
            if n_div:
                scores[m] = np.concatenate([scores.get(m, np.array([])), np.full(n_div, worst)])
        out[task] = scores
    return out, left


def iqm(x: np.ndarray) -> float:
    return float(sps.trim_mean(x, 0.25))


def _iqm_rows(x: np.ndarray) -> np.ndarray:
    """The IQM of each row (scipy.stats.trim_mean's cut: int(0.25 n) values off each end)."""
    n = x.shape[1]
    cut = int(0.25 * n)
    return np.sort(x, axis=1)[:, cut:n - cut].mean(axis=1)


def _prob_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 over the pairs of runs (the Mann-Whitney U statistic over n m), for each
    row of x (resamples x n) against the same row of y (resamples x m)."""
    gt = (x[:, :, None] > y[:, None, :]).mean(axis=(1, 2))
    eq = (x[:, :, None] == y[:, None, :]).mean(axis=(1, 2))
    return gt + 0.5 * eq


def aggregates(scores: dict, methods: list[str], baseline: str, name: str, resamples: int | None = None):
    """(method -> (IQM, lo, hi), method -> (P(method > baseline), lo, hi), the tasks used) over the
    tasks where every one of `methods` has runs; percentile 95% CIs from a stratified bootstrap (each
    task's runs of each method resampled with replacement, tasks kept)."""
    b = RESAMPLES if resamples is None else resamples
    tasks = [t for t in sorted(scores) if all(m in scores[t] and len(scores[t][m]) for m in methods)]
    rng = np.random.default_rng([SEED, zlib.crc32(name.encode())])
    point = {t: {m: np.asarray(scores[t][m], float)[None, :] for m in methods} for t in tasks}
    boot = {t: {m: v[0][rng.integers(0, v.shape[1], (b, v.shape[1]))] for m, v in point[t].items()} for t in tasks}

    def stats_of(sample):
        iq = {m: _iqm_rows(np.concatenate([sample[t][m] for t in tasks], axis=1)) for m in methods}
        pi = {m: np.mean([_prob_improvement(sample[t][m], sample[t][baseline]) for t in tasks], axis=0)
              for m in methods if m != baseline and baseline in methods}
        return iq, pi

    (iq0, pi0), (iqb, pib) = stats_of(point), stats_of(boot)

    def ci(v):
        lo, hi = np.percentile(v, [2.5, 97.5])
        return float(lo), float(hi)

    iq = {m: (float(iq0[m][0]), *ci(iqb[m])) for m in methods}
    pi = {m: (float(pi0[m][0]), *ci(pib[m])) for m in pi0}
    return iq, pi, tasks


def section(doc, sub: pd.DataFrame, higher: dict, protocol: str, base: str, few: int) -> None:
    """Beside the mean ranks: IQM of task-normalised scores and the probability of improving on the
    baseline, with stratified-bootstrap CIs (section 2, beside the mean ranks; `few`: below this many runs per method
    and task the intervals are called too coarse)."""
    rows = sub.assign(status=["diverged" if d else "ok" for d in sub.diverged])
    scores, left = normalised(rows, higher)
    methods = sorted({m for t in scores for m in scores[t]})
    methods = [m for m in methods if all(m in scores[t] for t in scores)]
    if len(scores) < 2 or len(methods) < 2:
        return
    iq, pi, tasks = aggregates(scores, methods, base, protocol)
    none_best = [t for t in tasks if all(v.mean() <= 1e-12 for m, v in scores[t].items() if m != NONE)]
    fewest = min(len(scores[t][m]) for t in tasks for m in methods)
    order = sorted(iq, key=lambda m: (-iq[m][0], m))
    doc.add(f"Normalised scores (rliable-style, {RESAMPLES} stratified-bootstrap resamples, seed "
            f"{SEED}): each run's test number on a 0–1 scale per task, 0 = `none`'s mean and 1 = the "
            "best mean of the other methods (where `none` is itself best"
            + (f", as on {', '.join(none_best)}" if none_best else "") + ", that method scores −1 and the "
            "others below it); the interquartile mean (IQM: the mean of the middle 50% of all runs × tasks) and "
            f"P(method > `{base}`), the chance that a run of the method beats a run of `{base}` on a task, "
            f"averaged over the {len(tasks)} tasks; 95% percentile intervals, resampling each task's runs. "
            + (f"Left out (no `none` or no second method): {', '.join(left)}. " if left else "")
            + "SST-2 and SST-5 share their sentences: two correlated tasks, not two independent ones.", "")
    doc.table([[m, fmt(iq[m][0]), f"[{fmt(iq[m][1])}, {fmt(iq[m][2])}]",
                fmt(pi[m][0]) if m in pi else "—", f"[{fmt(pi[m][1])}, {fmt(pi[m][2])}]" if m in pi else "—"]
               for m in order], ["method", "IQM", "95% CI", f"P(> {base})", "95% CI "])
    clear = [m for m in order if m in pi and (pi[m][1] > 0.5 or pi[m][2] < 0.5)]
    if fewest < few:
        tail = (f"with {fewest} run(s) per method and task the bootstrap has only a handful of distinct "
                "resamples, so these intervals are too coarse to read as evidence.")
    elif clear:
        tail = f"the probability of improving on `{base}` excludes 0.5 for {', '.join(f'`{m}`' for m in clear)}."
    else:
        tail = f"no method's probability of improving on `{base}` excludes 0.5 (a coin flip)."
    doc.add(f"*Reading:* `{order[0]}` has the highest IQM ({fmt(iq[order[0]][0])}); {tail}", "")
