"""What section 1 says under each table about how sure it is: diverged runs, the training budget,
the power of its tests, the noise of its fixed test set, and which family each verdict belongs to."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import budget, power, select, stats, testnoise
from bench.analysis.doc import Doc, fmt

BASE = select.BASELINE


def tests_of(m: int) -> str:
    return "the one test" if m == 1 else f"the {m} tests"


def pairs_of(m: int) -> str:
    return "the one pair" if m == 1 else f"all {m} pairs"


def _q(methods) -> str:
    return ", ".join(f"`{m}`" for m in methods)


def diverged_note(doc: Doc, res: list[dict]) -> None:
    div = [(d["method"], d["diverged"]) for d in res if d["diverged"]]
    if div:
        doc.add(f"*Diverged:* {', '.join(f'`{m}` {k}' for m, k in div)} run(s). They are shown in `n` as "
                "\"(+k diverged)\" and are results (the worst ones), but have no test number: the mean, the CI "
                "and the tests above are over the finished seeds. Where this table enters section 2's ranks, a "
                "diverged seed counts as its worst finished run.", "")


def budget_note(doc: Doc, unit: pd.DataFrame, higher_valid: bool) -> None:
    counts = budget.last_epoch_counts(unit)
    have = {m: c for m, c in counts.items() if c[1]}
    if not have:
        return
    k, n = sum(c[0] for c in have.values()), sum(c[1] for c in have.values())
    every = [m for m, c in sorted(have.items()) if c[0] == c[1]]
    epochs, ranks = budget.epoch_ranks(unit, higher_valid)
    doc.add(f"*Budget:* {k} of {n} finished seeds peaked at their last epoch"
            + (f"; every seed of {_q(every)} ({len(every)} of {len(have)} method{'s' if len(have) != 1 else ''}) did, so their numbers may "
               "measure how fast they converge within the budget rather than how well they regularise"
               if every else "") + "; by method: "
            + ", ".join(f"`{m}` {c[0]}/{c[1]}" for m, c in sorted(have.items())) + ". "
            + "Ranked by mean validation metric after each epoch (section 3's *ranking against budget*), "
            + budget.still_moving(epochs, ranks, k / n), "")


def power_note(doc: Doc, res: list[dict], n_pairs: int) -> None:
    """The smallest gap each family can resolve, and the seeds each observed gap against the baseline needs."""
    groups = [[x for _, x in d["seeds"]] for d in res if d["s"].n >= 2]
    sd = stats.pooled_std(groups)
    tested = [d for d in res if d["method"] != BASE and not math.isnan(d["p_holm"])]
    if not tested or not sd > 0:
        return
    counts = [d["s"].n for d in res if d["s"].n >= 2]
    n = int(np.median(counts))
    m = len(tested)
    a_base, a_pairs = stats.ALPHA / m, stats.ALPHA / max(n_pairs, 1)
    md_base, md_pairs = power.min_detectable(sd, n, a_base), power.min_detectable(sd, n, a_pairs)
    base = next((d for d in res if d["method"] == BASE), None)
    per, weak = [], []
    for d in sorted(tested, key=lambda d: (-abs(d["diff"]), d["method"])):
        sd_pair = stats.pooled_std([[x for _, x in d["seeds"]], [x for _, x in base["seeds"]]])
        n_pair = min(d["s"].n, base["s"].n)
        pw = power.power(d["diff"], sd_pair, n_pair, a_base)
        per.append(f"`{d['method']}` {fmt(abs(d['diff']))} (std {fmt(sd_pair, 3)}, power {pw:.0%} at {n_pair} "
                   f"seeds) → {power.fmt_seeds(power.seeds_needed(d['diff'], sd_pair, a_base))}")
        if d["verdict"] == "no clear difference" and not pw >= power.TARGET:
            weak.append(d["method"])
    untested = [d["method"] for d in res if d["method"] != BASE and d["s"].n == 1]
    spread = f" (the median; {min(counts)}–{max(counts)})" if min(counts) != max(counts) else ""
    more = power.PROJECTED_SEEDS
    at_more = (f"; at {more} seeds per method and the same std they would be "
               f"{fmt(power.min_detectable(sd, more, a_base))} and {fmt(power.min_detectable(sd, more, a_pairs))}"
               if n < more else "")
    doc.add(f"*Power:* with {n} seeds per method{spread} and the table's pooled seed-to-seed std {fmt(sd, 3)}, "
            f"the smallest difference resolved with 80% power is {fmt(md_base)} in the family of {tests_of(m)} "
            f"against `{BASE}` (Holm's first step, α/{m}) and {fmt(md_pairs)} in the family of "
            f"{pairs_of(n_pairs)} (α/{n_pairs}){at_more}. Each observed gap against `{BASE}`, with the "
            f"seed-to-seed std of its own two methods, its power at their seeds (the fewer of the two) and α/{m}, "
            f"and the seeds per method that would resolve it with 80% power: {'; '.join(per)}."
            + (f" Not tested, one seed: {_q(untested)}." if untested else "")
            + ((f" The `no clear difference` of {_q(weak)} has under 80% power at its gap: it is not evidence of "
                "no difference." if len(weak) == 1 else
                f" The `no clear difference` verdicts of {_q(weak)} have under 80% power at their gaps: they are "
                "not evidence of no difference.") if weak else "")
            + " (Two-sample t power from the noncentral t, equal seeds and one std on both sides, df 2n − 2: "
            "slightly optimistic for Welch's test; bench/analysis/power.py.)", "")


def family_note(doc: Doc, res: list[dict], pairs: list[dict]) -> None:
    """Which family each verdict belongs to, and the comparisons whose verdicts differ between them."""
    tested = [d for d in res if d["method"] != BASE and not math.isnan(d["p_holm"])]
    if not tested:
        return
    by_pair = {frozenset((p["a"], p["b"])): p for p in pairs}
    differ = []
    for d in tested:
        p = by_pair.get(frozenset((d["method"], BASE)))
        if p is None:
            continue
        clear_base = d["p_holm"] < stats.ALPHA
        if clear_base != p["clear"]:
            differ.append(f"`{d['method']}` against `{BASE}` is {'`' + d['verdict'] + '`' if clear_base else 'within seed noise'} "
                          f"in the family against the baseline ({len(tested)}) and {'clear' if p['clear'] else 'within seed noise'} "
                          f"in the all-pairs family ({len(pairs)})")
    doc.add(f"*Families:* the verdicts in the table belong to the family of {tests_of(len(tested))} against "
            f"`{BASE}` (Holm over {len(tested)}); the bold cells of the matrix below belong to the family of "
            f"{pairs_of(len(pairs))} (Holm over {len(pairs)})"
            + (", a stricter correction. " if len(pairs) > len(tested) else ". ")
            + ("They disagree on: " + "; ".join(differ) + "." if differ else
               "On the comparisons against the baseline both families agree."), "")


def noise_note(doc: Doc, unit: pd.DataFrame, res: list[dict], registry: Path | None, name: str) -> dict:
    """The paired bootstrap over test examples for each method against the baseline, or, without side
    files, a sentence that says so and the binomial fallback for accuracy. Returns the CIs."""
    task, metric = unit.task.iloc[0], unit.metric.iloc[0]
    sides, missing = testnoise.table_sides(unit, registry)
    pairs = [(d["method"], BASE) for d in res if d["method"] != BASE and d["s"].n]
    cis = {}
    if BASE in sides and len(sides) > 1:
        cis = testnoise.paired_bootstrap(task, sides, pairs, name)
    n_ok = int((unit.status == "ok").sum())
    if cis:
        doc.add(f"*Test-set noise:* a paired bootstrap over the test examples ({testnoise.RESAMPLES} resamples, "
                "the same examples for every run, each method's mean over its seeds that have a side file: "
                f"n seeds, against {len(sides[BASE])} of `{BASE}`), 95% percentile interval of each method − `{BASE}`:", "")
        doc.table([[a, len(sides[a]), fmt(d), f"[{fmt(lo)}, {fmt(hi)}]", f"{flip:.3f}",
                    ("beyond test noise" if lo > 0 or hi < 0 else "within test noise")
                    + ("; one seed: no seed noise in it" if len(sides[a]) == 1 else "")]
                   for (a, _), (d, lo, hi, flip) in sorted(cis.items(), key=lambda kv: kv[0][0])],
                  ["method", "n", f"Δ vs {BASE}", "95% interval", "resamples of the other sign", "reading"])
        in_table = {d["method"]: d["s"].n for d in res}
        part = [f"`{m}` {len(sides[m])} of {in_table[m]}" for m in sorted({a for a, _ in cis} | {BASE})
                if len(sides[m]) < in_table.get(m, 0)]
        if part:
            doc.add(f"Only some seeds have a side file ({', '.join(part)}): these Δ are over those seeds and can "
                    "differ from the table above, even in sign.", "")
        left = sorted({m for m, _ in pairs} - {a for a, _ in cis})
        if left or missing:
            doc.add(f"{len(missing)} of {n_ok} finished runs have no per-example side file"
                    + (f"; not bootstrapped: {_q(left)}" if left else "") + ".", "")
        return cis
    if not missing:             # every run has its side file, but there is nothing to pair it with
        doc.add(f"*Test-set noise:* all {n_ok} finished runs of this table have a per-example side file, but "
                + (f"it has no `{BASE}` run to pair the other methods with" if BASE not in sides else
                   f"it has no method besides `{BASE}`")
                + ", so no paired bootstrap over the test examples can be made for it.", "")
        return cis
    doc.add(f"*Test-set noise:* {len(missing)} of the {n_ok} finished runs of this table have no per-example "
            "side file (they were registered before side files existed), so no paired bootstrap over the test "
            "examples can be made for it; rerunning its seeds writes them.", "")
    if metric == "accuracy":
        mean = float(np.nanmean([d["s"].mean for d in res if d["s"].n]))
        se = testnoise.binomial_se(task, mean)
        if se is not None:
            doc.add(f"The fallback: one run's test accuracy near {fmt(mean)}% on {testnoise.TEST_SIZE[task]:,} "
                    f"sentences has a binomial standard error of 100·√(p(1−p)/n) = {fmt(se)} points; the gap "
                    f"between two runs on the same sentences has at most √2 times that, {fmt(math.sqrt(2) * se)}, "
                    "if their errors were independent (pairing shrinks it, by an amount only the side files "
                    "can tell).", "")
    else:
        doc.add(f"For {metric} there is no analytic fallback without the per-example numbers.", "")
    return cis

