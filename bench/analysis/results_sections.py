"""Sections 1-3 of the report: per-table statistics against the baseline, ranks across tasks, and
learning curves. They read each method's default config of its protocol (select.default_rows)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.analysis import aggregate, budget, diverged, figures, select, stats, table_notes
from bench.analysis.doc import Doc, fmt, fmt_p

BASE = select.BASELINE


def quoted(methods) -> str:
    """Method names as code in the readings: the no-noise baseline is called `none`, which as a bare
    word reads as "no method" ("none peaked ..."), the opposite of what is meant."""
    return ", ".join(f"`{m}`" for m in methods)


def _better(diff: float, higher: bool) -> bool:
    return diff > 0 if higher else diff < 0


def compare(unit: pd.DataFrame) -> tuple[list[dict], bool]:
    """One dict per method of a (protocol, task, device) table, best mean first: its summary and,
    against the baseline, the difference of means, Welch p, Holm-adjusted p, Hedges' g, verdict."""
    higher = bool(unit.higher_is_better.iloc[0])
    ok = unit[unit.status == "ok"].sort_values("seed", kind="stable")
    seeds = {m: list(zip(ok[ok.method == m].seed.astype(int), ok[ok.method == m].test.astype(float)))
             for m in sorted(unit.method.unique())}
    vals = {m: [x for _, x in sv] for m, sv in seeds.items()}
    base = vals.get(BASE, [])
    out = []
    for m, v in vals.items():
        s = stats.summarize(v)
        d = dict(method=m, s=s, seeds=seeds[m], diverged=int(((unit.method == m) & (unit.status != "ok")).sum()),
                 diff=math.nan, p=math.nan, g=math.nan, p_holm=math.nan)
        if m != BASE and base and v:
            d["diff"] = s.mean - float(np.mean(base))
            d["p"] = stats.welch_p(v, base)
            d["g"] = stats.hedges_g(v, base)
        out.append(d)
    tested = [d for d in out if not math.isnan(d["p"])]
    for d, ph in zip(tested, stats.holm([d["p"] for d in tested])):
        d["p_holm"] = ph
    for d in out:
        if d["method"] == BASE:
            d["verdict"] = "baseline"
        elif d["s"].n == 0 and d["diverged"]:
            d["verdict"] = "every seed diverged"
        elif not base:
            d["verdict"] = f"no {BASE} rows"
        elif d["s"].n < 2 or len(base) < 2:
            d["verdict"] = "needs ≥ 2 seeds"
        elif math.isnan(d["p"]):
            d["verdict"] = "no spread to test"
        elif d["p_holm"] < stats.ALPHA:
            d["verdict"] = "better" if _better(d["diff"], higher) else "worse"
        else:
            d["verdict"] = "no clear difference"
    out.sort(key=lambda d: (math.isnan(d["s"].mean), -d["s"].mean if higher else d["s"].mean, d["method"]))
    return out, higher


def seeds_word(n: int) -> str:
    return "one seed" if n == 1 else f"{n} seeds"


def best_mean(shown: list[dict], what: str) -> str:
    """The reading's lead: the best mean of a table, best first, with the seeds it rests on. A
    single run is not called a mean; the best mean of the methods with >= 2 seeds follows it."""
    top = shown[0]
    if top["s"].n >= 2:
        return f"{quoted([top['method']])} has the best mean {what} ({fmt(top['s'].mean)}, {seeds_word(top['s'].n)})"
    lead = (f"{quoted([top['method']])} has the best {what} ({fmt(top['s'].mean)}), from one seed: "
            f"not yet a mean")
    multi = [d for d in shown if d["s"].n >= 2]
    if multi:
        lead += (f"; of the methods with ≥ 2 seeds {quoted([multi[0]['method']])} has the best mean "
                 f"({fmt(multi[0]['s'].mean)}, {seeds_word(multi[0]['s'].n)})")
    return lead


FAR = 4.0      # a seed this many pooled seed-to-seed stds from its method's median is named


def far_seeds(res: list[dict]) -> list[dict]:
    """Seeds far from their method's other seeds (methods with >= 3): |value - median of the method's
    seeds| (robust to one such seed) over the pooled seed-to-seed std of the table's other methods (those
    with >= 2 seeds) above FAR. With three seeds one such run carries its method's mean, std and test,
    so the reading names it."""
    out = []
    for d in res:
        if len(d["seeds"]) < 3:
            continue
        pooled = stats.pooled_std([[x for _, x in e["seeds"]] for e in res if e is not d])
        if not pooled > 0:
            continue
        med = float(np.median([x for _, x in d["seeds"]]))
        for seed, x in d["seeds"]:
            if abs(x - med) > FAR * pooled:
                out.append(dict(method=d["method"], seed=seed, value=x, median=med, ratio=abs(x - med) / pooled))
    return out


def pairwise(unit: pd.DataFrame) -> tuple[list[str], list[dict]]:
    """(the methods with >= 2 ok seeds, best mean first; one dict per pair of them): the better mean
    as `a`, the difference of means (a - b, in the table's metric), the Welch p, and that p
    Holm-adjusted over all the pairs of the table. `clear` when the adjusted p < ALPHA: the gap is
    larger than the seed-to-seed noise can explain."""
    ok = unit[unit.status == "ok"]
    order = [d["method"] for d in compare(unit)[0] if d["s"].n >= 2]             # best mean first
    vals = {m: ok[ok.method == m].test.astype(float).tolist() for m in order}
    out = [dict(a=a, b=b, diff=float(np.mean(vals[a]) - np.mean(vals[b])), p=stats.welch_p(vals[a], vals[b]))
           for i, a in enumerate(order) for b in order[i + 1:]]
    for d, ph in zip(out, stats.holm([d["p"] for d in out])):
        d["p_holm"] = ph
        d["clear"] = not math.isnan(ph) and ph < stats.ALPHA
    return order, out


def pairs_matrix(doc: Doc, unit: pd.DataFrame) -> None:
    """The all-pairs comparison of one table, as a lower-triangular matrix of differences."""
    order, pairs = pairwise(unit)
    if not pairs:
        return
    cell = {(d["b"], d["a"]): f"**{fmt(-d['diff'])}**" if d["clear"] else fmt(-d["diff"]) for d in pairs}
    rows = [[r] + [cell.get((r, c), "") for c in order[:-1]] for r in order[1:]]
    over = f"Holm-adjusted over all {len(pairs)} pairs" if len(pairs) > 1 else "one pair, so no adjustment"
    doc.add(f"Every pair ({len(pairs)}): row − column, in the table's metric; in bold where the Welch p "
            f"({over}) is below 0.05 (a gap the seed noise does not explain). Methods with ≥ 2 seeds, "
            f"best mean first.", "")
    doc.table(rows, ["method"] + order[:-1])
    clear = [d for d in pairs if d["clear"]]
    family = f" (Verdicts of the family of all {len(pairs)} pairs.)" if len(pairs) > 1 else ""
    if clear:
        said = "; ".join(f"{quoted([d['a']])} over {quoted([d['b']])} ({fmt(abs(d['diff']))})" for d in clear)
        rest = len(pairs) - len(clear)
        head = (f"{len(clear)} of the {len(pairs)} pairs differ" if len(pairs) > 1 else "the one pair differs")
        tail = f" The other {rest} gaps are within it." if rest > 1 else ""
        if rest == 1:
            d = next(d for d in pairs if not d["clear"])
            tail = f" The other gap, {quoted([d['a']])} against {quoted([d['b']])} ({fmt(abs(d['diff']))}), is within it."
        doc.add(f"*Reading:* {head} by more than seed noise: {said}.{tail}{family}", "")
    else:
        tested = [d for d in pairs if not math.isnan(d["p"])]
        low = min(tested, key=lambda d: d["p"]) if tested else None
        doc.add(f"*Reading:* {f'none of the {len(pairs)} gaps is' if len(pairs) > 1 else 'the one gap is not'} "
                "larger than seed noise at these seed counts"
                + (f" (the smallest p, {quoted([low['a']])} against {quoted([low['b']])}, is {fmt_p(low['p'])}, "
                   f"{fmt_p(low['p_holm'])} after Holm's correction)." if low else ".") + family, "")


def section_tables(doc: Doc, df: pd.DataFrame, registry=None, others: pd.DataFrame | None = None) -> None:
    """`df`: the default-config rows; `others`: the same protocols' rows of other configs (listed under
    their table, outside its tests)."""
    doc.add("## 1. Each table: means, confidence intervals, tests against zaremba and between every pair", "",
            f"Per protocol, task and device: the test metric's mean, sample standard deviation, number of "
            f"seeds `n`, Student-t 95% confidence interval (CI) of the mean and each seed's value (a seed more "
            f"than {FAR:g} pooled seed-to-seed stds from its method's median is named under the figure); "
            f"then each method against "
            f"`{BASE}`, the field's baseline: the difference of means (method − {BASE}), the two-sided Welch "
            f"t-test p-value, that p-value Holm-corrected over the methods of the table (so that the chance "
            f"of any false 'better' or 'worse' in a table stays under 5%), and Hedges' g (the difference in "
            f"units of the pooled seed-to-seed standard deviation; about 0.2 is small, 0.8 large). "
            f"`better`/`worse` means the Holm-corrected p is below 0.05. One seed gives no CI and no test. "
            f"Under each figure, every pair of methods the same way (Welch, Holm over all the pairs of the "
            f"table): which gaps between methods are larger than seed noise. `last-epoch peaks`: the finished "
            f"seeds whose best validation epoch was their last. Then, per table, what it cannot tell: the "
            f"diverged runs, whether the budget decides its order, the smallest gap its seeds can resolve "
            f"(power), and how noisy its fixed test set is.", "")
    if df.empty:
        doc.add("No rows: this section needs finished runs of a results protocol (e.g. `make campaign "
                "PLAN=cpu`).", "")
        return
    for protocol, task, device in select.units(df):
        unit = df[(df.protocol == protocol) & (df.task == task) & (df.device == device)]
        res, higher = compare(unit)
        peaks = budget.last_epoch_counts(unit)
        metric = unit.metric.iloc[0]
        doc.add(f"### {select.unit_name(protocol, task, device)} — test {metric} "
                f"({'higher' if higher else 'lower'} is better)", "")
        rows = []
        for d in res:
            s = d["s"]
            n = f"{s.n}" + (f" (+{d['diverged']} diverged)" if d["diverged"] else "")
            ci = "—" if math.isnan(s.lo) else f"[{fmt(s.lo)}, {fmt(s.hi)}]"
            by_seed = ", ".join(f"s{seed} {fmt(x)}" for seed, x in d["seeds"])
            k, m = peaks.get(d["method"], (0, 0))
            rows.append([d["method"], fmt(s.mean), fmt(s.std), n, ci, by_seed, fmt(d["diff"]), fmt_p(d["p"]),
                         fmt_p(d["p_holm"]), fmt(d["g"]), d["verdict"], f"{k}/{m}" if m else "—"])
        doc.table(rows, ["method", "mean", "std", "n", "95% CI", "by seed", f"Δ vs {BASE}", "p (Welch)",
                         "p (Holm)", "Hedges' g", "verdict", "last-epoch peaks"])
        table_notes.diverged_note(doc, res)
        shown = [d for d in res if d["s"].n]
        if not shown:
            doc.add("Every run of this table diverged: nothing to plot.", "")
            continue
        fig = figures.means([(d["method"], d["s"].mean, d["s"].lo, d["s"].hi, d["s"].n, d["diverged"]) for d in shown],
                            metric, higher, select.unit_name(protocol, task, device),
                            BASE if any(d["method"] == BASE for d in shown) else None)
        better = [d["method"] for d in res if d["verdict"] == "better"]
        worse = [d["method"] for d in res if d["verdict"] == "worse"]
        tested = [d for d in res if d["method"] != BASE and not math.isnan(d["p_holm"])]
        if tested:
            verdict = (f"of the {len(tested)} method{'s' if len(tested) > 1 else ''} tested against {quoted([BASE])}, "
                       f"{quoted(better) or 'no method'} {'are' if len(better) > 1 else 'is'} clearly better and "
                       f"{quoted(worse) or 'no method'} {'are' if len(worse) > 1 else 'is'} clearly worse "
                       f"after Holm's correction (verdicts of the family of "
                       + ("this one test)." if len(tested) == 1 else f"these {len(tested)} tests)."))
        else:
            verdict = f"no method could be tested against {quoted([BASE])} (each side needs ≥ 2 seeds)."
        doc.figure(f"means_{select.slug(protocol, task, device)}.png", fig,
                   f"test {metric} by method, {protocol} {task}",
                   f"{best_mean(shown, f'test {metric}')}; {verdict}")
        far = far_seeds(res)
        if far:
            said = "; ".join(f"{quoted([f['method']])} seed {f['seed']} ({fmt(f['value'])}; the median of its seeds "
                             f"{fmt(f['median'])}, {f['ratio']:.1f}× the pooled seed-to-seed std of the other "
                             f"methods away)" for f in far)
            doc.add(f"*A seed far from the rest:* {said}. One such run carries its method's mean, std and test "
                    f"above; in section 3 its learning curve is an edge of its method's band.", "")
        _, pairs = pairwise(unit)
        table_notes.budget_note(doc, unit, valid_higher(unit))
        table_notes.power_note(doc, res, len(pairs))
        table_notes.noise_note(doc, unit, res, registry, select.unit_name(protocol, task, device))
        table_notes.family_note(doc, res, pairs)
        pairs_matrix(doc, unit)
        if others is not None:
            other_configs(doc, unit, others[(others.protocol == protocol) & (others.task == task)
                                            & (others.device == device)])


def other_configs(doc: Doc, unit: pd.DataFrame, others: pd.DataFrame) -> None:
    """The lines of the table's protocol that ran a config other than their method's default (a plan's
    `set`, e.g. rnndrop at a rate that trains where its default diverges): each is `compare`d alone
    with the baseline's default rows (one test, so not Holm-corrected with the table), and kept out of
    the table's families and section 2."""
    if others.empty:
        return
    from bench.leaderboard import config_labels
    base = unit[unit.method == BASE]
    lines = []
    for method, g in others.groupby("method", sort=True):
        labels = config_labels(pd.concat([unit[unit.method == method], g], ignore_index=True))
        for h, c in g.groupby("config_hash", sort=True):
            name = method + labels[h]
            res, _ = compare(pd.concat([base, c.assign(method=name)], ignore_index=True))
            d = next(d for d in res if d["method"] == name)
            s = d["s"]
            what = [f"{s.n} finished seed{'s' if s.n != 1 else ''}"
                    + (f" (+{d['diverged']} diverged)" if d["diverged"] else "")]
            if s.n:
                what.append(f"mean {fmt(s.mean)}" + (f" ± {fmt(s.std)}, 95% CI [{fmt(s.lo)}, {fmt(s.hi)}]"
                                                     if s.n > 1 else ""))
                what.append("by seed " + ", ".join(f"s{seed} {fmt(x)}" for seed, x in d["seeds"]))
                k, m = budget.last_epoch_counts(c).get(method, (0, 0))
                if m:
                    what.append(f"{k}/{m} peaked at their last epoch")
            if not math.isnan(d["p"]):
                what.append(f"against `{BASE}`: Δ {fmt(d['diff'])}, Welch p {fmt_p(d['p'])} ({d['verdict']}, unadjusted)")
            if s.n and d["diverged"]:       # survivors only: not the line's expected result
                what.append(f"the mean and the test are over the {s.n} of {s.n + d['diverged']} seeds that did not "
                            "diverge, so they are conditioned on surviving: the line's result is its divergence "
                            "rate together with them")
            lines.append(f"- `{name}`: " + "; ".join(what) + ".")
    doc.add(f"*Other configs on this table:* {len(others)} row(s) of this protocol ran a config other than "
            "their method's default (a plan's `set`). They are shown here and on the leaderboard as lines of "
            "their own, but are not in the table, its tests or its pairs above, nor in section 2's ranks; each is "
            f"compared with `{BASE}`'s default by one Welch test outside the table's family (not Holm-corrected).",
            "", *lines, "")


def complete_block(matrix: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Drop the task (row) or method (column) with the most missing values, one at a time (ties:
    methods before tasks, then by name), until every task has every method: the design Friedman's
    test needs. Returns the complete matrix, the dropped tasks and the dropped methods."""
    m, tasks_out, methods_out = matrix.copy(), [], []
    while m.size and m.isna().any().any():
        col_na, row_na = m.isna().sum(axis=0), m.isna().sum(axis=1)
        worst_col = sorted(col_na.index, key=lambda c: (-col_na[c], c))[0]
        worst_row = sorted(row_na.index, key=lambda r: (-row_na[r], r))[0]
        if col_na[worst_col] / max(len(m.index), 1) >= row_na[worst_row] / max(len(m.columns), 1):
            methods_out.append(worst_col)
            m = m.drop(columns=worst_col)
        else:
            tasks_out.append(worst_row)
            m = m.drop(index=worst_row)
    return m, tasks_out, methods_out


FEW_SEEDS = 3          # section 2 names the (task, method) means that rest on fewer seeds than this


def one_device_per_task(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict, list[str]]:
    """The rows of one protocol with, per task, only one device's table: the one with the most methods
    that have >= 1 ok seed, then the most seeds, then by name. Returns (those rows, task -> device, the
    tables left out as 'task on device (k methods)')."""
    keep, source, unused = [], {}, []
    for task, g in rows.groupby("task", sort=True):
        sizes = {d: (gd.method.nunique(), len(gd)) for d, gd in g.groupby("device", sort=True)}
        best = sorted(sizes, key=lambda d: (-sizes[d][0], -sizes[d][1], d))[0]
        source[task] = best
        keep.append(g[g.device == best])
        unused += [f"{task} on {d} ({sizes[d][0]} method{'s' if sizes[d][0] != 1 else ''})"
                   for d in sorted(sizes) if d != best]
    return pd.concat(keep), source, unused


def section_ranks(doc: Doc, df: pd.DataFrame) -> None:
    doc.add("## 2. Across tasks: mean ranks, Friedman test, critical differences", "",
            "Within each task the methods are ranked by their mean test metric (1 = best, ties share the "
            "average rank); a method's mean rank is its average over the tasks. The Friedman test asks "
            "whether the ranks differ more than chance would make them; the critical-difference (CD) "
            "diagram (Nemenyi post-hoc test, α = 0.05) joins by a thick line the methods whose mean ranks "
            "lie closer than CD, i.e. that the tasks cannot tell apart. Only tasks on which every compared "
            "method ran enter (a complete design); the others are named. A task whose runs were made on "
            "several kinds of device is ranked on one of them (the table with the most methods). A diverged "
            "run counts as its table's worst finished run (a lenient stand-in: it has no number). SST-2 and "
            "SST-5 are built from the same sentences (SST-2 is SST-5 without the neutral ones, relabelled), "
            "so they are not independent blocks: with both in, the tests here count one source of evidence "
            "twice and their p-values are optimistic.", "")
    ok = diverged.scored(df)
    if ok.empty:
        doc.add("No rows: this section needs the same methods on at least 2 tasks (e.g. `make campaign "
                "PLAN=cpu`).", "")
        return
    by_protocol = {}
    for protocol in sorted(set(ok.protocol)):
        sub, source, unused = one_device_per_task(ok[ok.protocol == protocol])
        doc.add(f"### {protocol}", "")
        if protocol.startswith(select.SWEEP_PREFIX):
            doc.add(f"`{protocol}` rows at each method's default rates: the sweeps' small model on a slice of "
                    "the data (section 4), a cheaper second view of the order. Its absolute numbers are not "
                    "the leaderboard's.", "")
        if len(set(source.values())) > 1 or unused:
            doc.add("Each task's ranks come from one device's table (seeds of different devices are never "
                    "pooled; a ranking within one task is): "
                    + ", ".join(f"{t} from {d}" for t, d in sorted(source.items()))
                    + (f"; not used: {', '.join(unused)}" if unused else "") + ".", "")
        means = sub.groupby(["task", "method"]).test.mean().unstack("method").sort_index().sort_index(axis=1)
        higher = {t: bool(g.higher_is_better.iloc[0]) for t, g in sub.groupby("task")}
        by_protocol[protocol] = means, higher
        full, tasks_out, methods_out = complete_block(means)
        if tasks_out or methods_out:
            doc.add("Left out to keep the design complete: "
                    + "; ".join(filter(None, [f"task{'s' if len(tasks_out) > 1 else ''} {', '.join(sorted(tasks_out))}"
                                              if tasks_out else "",
                                              f"method{'s' if len(methods_out) > 1 else ''} "
                                              f"{', '.join(sorted(methods_out))}" if methods_out else ""]))
                    + ".", "")
        k, n = len(full.columns), len(full.index)
        seeds = sub.groupby(["task", "method"]).size()
        ranked = sub[sub.task.isin(full.index) & sub.method.isin(full.columns)]
        n_div = int(ranked.diverged.sum())
        if n_div:
            doc.add(f"{n_div} of the ranked runs diverged and {'count' if n_div > 1 else 'counts'} as "
                    f"{'their' if n_div > 1 else 'its'} table's worst finished run: "
                    + ", ".join(f"{t} · {m} {int(k)}" for (t, m), k in
                                ranked[ranked.diverged].groupby(["task", "method"]).size().items()) + ".", "")
        few = {t: [f"{m} ({seeds[t, m]})" for m in full.columns if seeds[t, m] < FEW_SEEDS] for t in full.index}
        if any(few.values()):
            doc.add(f"Ranks resting on fewer than {FEW_SEEDS} seeds (a mean of 1 or 2 runs moves by about a seed's "
                    "spread): " + "; ".join(f"{t}: {', '.join(v)}" for t, v in few.items() if v) + ".", "")
        if k < 3 or n < 2:
            doc.add(f"Needs ≥ 3 methods on ≥ 2 tasks; here {k} method(s) on {n} task(s) in a complete design.", "")
            continue
        r = np.vstack([stats.ranks(full.loc[[t]].to_numpy(), higher[t]) for t in full.index])
        mean_rank = dict(zip(full.columns, r.mean(axis=0)))
        # Friedman on the ranks: the same statistic as on the raw values, with every task oriented
        stat, p = stats.friedman(r)
        cd = stats.critical_difference(k, n)
        groups = stats.cliques(mean_rank, cd)
        order = sorted(mean_rank, key=lambda m: (mean_rank[m], m))
        rows = [[m, fmt(mean_rank[m])] + [fmt(v, 1) for v in r[:, list(full.columns).index(m)]] for m in order]
        mixed = len(set(source.values())) > 1
        doc.table(rows, ["method", "mean rank"] + [f"rank on {t}" + (f" ({source[t]})" if mixed else "")
                                                   for t in full.index])
        doc.add(f"Friedman χ² = {stat:.3f} over {n} tasks and {k} methods, p = {fmt_p(p)}; "
                f"Nemenyi CD = {cd:.2f} ranks.", "")
        fig = figures.cd_diagram(mean_rank, cd, groups, f"{protocol}: mean rank over {n} tasks")
        if p < stats.ALPHA:
            lead = f"the ranks differ more than chance (Friedman p = {fmt_p(p)}); "
        else:
            lead = (f"Friedman's test does not reject equal mean ranks at α = 0.05 (p = {fmt_p(p)}): with {n} "
                    f"tasks as its blocks it has little power, so this is no evidence that the methods rank "
                    f"alike; ")
        tied = [g for g in groups if order[0] in g]
        together = (f"{quoted([order[0]])} ranks best ({fmt(mean_rank[order[0]])}) but is not told apart from "
                    f"{quoted(x for x in tied[0] if x != order[0])}." if tied else
                    f"{quoted([order[0]])} ranks best ({fmt(mean_rank[order[0]])}), ahead of every other method by more than CD.")
        doc.figure(f"cd_{select.slug(protocol)}.png", fig, f"critical-difference diagram, {protocol}",
                   lead + together)
        agreement(doc, r, list(full.index), stat)
        aggregate.section(doc, sub[sub.task.isin(full.index) & sub.method.isin(full.columns)], higher, protocol,
                          BASE, FEW_SEEDS)
    scale_agreement(doc, by_protocol)


def scale_agreement(doc: Doc, by_protocol: dict) -> None:
    """Does the order on a task carry over from one protocol (scale) to another? `by_protocol`: protocol
    -> (task x method means, task -> higher is better), as section_ranks built them. Per task ranked by
    two protocols, Kendall's tau between their ranks of the methods both ran (>= 3), Holm over all."""
    rows, taus = [], []
    protocols = sorted(by_protocol)
    for i, a in enumerate(protocols):
        for b in protocols[i + 1:]:
            (means_a, higher), (means_b, _) = by_protocol[a], by_protocol[b]
            for task in sorted(set(means_a.index) & set(means_b.index)):
                ma, mb = means_a.loc[task].dropna(), means_b.loc[task].dropna()
                common = sorted(set(ma.index) & set(mb.index))
                if len(common) < 3:
                    continue
                ra = stats.ranks(ma[common].to_numpy()[None, :], higher[task])[0]
                rb = stats.ranks(mb[common].to_numpy()[None, :], higher[task])[0]
                rows.append((task, a, b, len(common)))
                taus.append(stats.kendall_tau(ra, rb))
    if not rows:
        return
    adj = stats.holm([p for _, p in taus])
    doc.add("### From one protocol to another", "",
            "Does a task's order of the methods at one scale predict its order at another? Kendall's τ "
            "between the two protocols' ranks of the methods both ran on the task, and Holm's correction "
            f"over the {len(rows)} comparison(s):", "")
    doc.table([[t, f"{a} · {b}", str(k), fmt(tau), fmt_p(p), fmt_p(q)]
               for (t, a, b, k), (tau, p), q in zip(rows, taus, adj)],
              ["task", "protocols", "methods", "Kendall τ", "p", "Holm p"])
    alike = [f"{t} ({a} · {b}, τ = {fmt(tau)})" for (t, a, b, _), (tau, _), q in zip(rows, taus, adj)
             if tau > 0 and q < stats.ALPHA]
    reading = ("the order carries over for " + "; ".join(alike) + "." if alike else
               "no task keeps its order from one protocol to the other beyond chance after Holm's correction "
               "(every Holm p ≥ 0.05). With this few methods per task (and the sweep protocols' few seeds) a τ "
               "test has little power: this does not show that the order at one scale is unrelated to the "
               "order at the other.")
    doc.add(f"*Reading:* {reading}", "")


def agreement(doc: Doc, r: np.ndarray, tasks: list[str], friedman_stat: float) -> None:
    """Does the order of the methods carry over from task to task? Kendall's W over all tasks and
    Kendall's tau between each pair of tasks' ranks (Holm-corrected over the pairs)."""
    n, k = r.shape
    w = stats.kendall_w(friedman_stat, n, k)
    pairs = [(a, b) for i, a in enumerate(tasks) for b in tasks[i + 1:]]
    taus = [stats.kendall_tau(r[tasks.index(a)], r[tasks.index(b)]) for a, b in pairs]
    adj = stats.holm([p for _, p in taus])
    doc.add(f"Does the order hold from task to task? Kendall's W = {w:.3f} (1: the same order on every task; "
            f"1/{n} = {1 / n:.2f} expected when the orders are unrelated; its test is the Friedman test above). "
            f"Kendall's τ between the ranks of each pair of tasks, its p-value, and Holm's correction over the "
            f"{len(pairs)} pair(s):", "")
    doc.table([[f"{a} · {b}", fmt(t), fmt_p(p), fmt_p(q)] for (a, b), (t, p), q in zip(pairs, taus, adj)],
              ["tasks", "Kendall τ", "p", "Holm p"])
    agree = [f"{a} and {b} (τ = {fmt(t)})" for (a, b), (t, _), q in zip(pairs, taus, adj)
             if t > 0 and q < stats.ALPHA]
    if agree:
        reading = "the order on one task predicts the order on another for " + "; ".join(agree) + "."
    else:
        reading = (f"no pair of tasks orders the methods alike beyond chance after Holm's correction (every Holm "
                   f"p ≥ 0.05). With {k} methods per pair a τ test has little power, so this does not show that "
                   "the orders are unrelated; W above chance would say they share some order, and its test is "
                   "Friedman's.")
    doc.add(f"*Reading:* W = {w:.3f} (chance {1 / n:.2f}); {reading}", "")


def curve_stats(curves: list[list[float]]):
    """(epochs 1..L, mean, low, high, n) over seeds; epoch e averages the seeds that reached it."""
    length = max(len(c) for c in curves)
    x, mean, lo, hi = [], [], [], []
    for e in range(length):
        vals = [c[e] for c in curves if len(c) > e and not math.isnan(c[e])]
        if not vals:
            continue
        x.append(e + 1)
        mean.append(float(np.mean(vals)))
        lo.append(float(np.min(vals)))
        hi.append(float(np.max(vals)))
    return x, mean, lo, hi, len(curves)


def valid_higher(unit: pd.DataFrame) -> bool:
    """Whether a higher validation metric is better: the test metric's direction when both are the
    same metric, lower for a perplexity or loss (e.g. Multi30k selects on valid ppl, tests BLEU)."""
    vm, tm = unit.valid_metric.iloc[0], unit.metric.iloc[0]
    if vm == tm:
        return bool(unit.higher_is_better.iloc[0])
    return not any(w in str(vm).lower() for w in ("ppl", "perplexity", "loss"))


def section_curves(doc: Doc, df: pd.DataFrame, names: list[str]) -> None:
    doc.add("## 3. Learning curves", "",
            "The validation metric after each epoch: per method the mean over seeds (line) and the band "
            "from the lowest to the highest seed. A mean curve that turns the wrong way after its best epoch "
            "by more than its seeds' spread at the last epoch is called overfitting, which is what the "
            "regularisers are meant to prevent. Under it, the *ranking against budget*: the methods' ranks "
            "by mean validation metric after each epoch, and whether the order still moves at the end.", "")
    ok = df[df.status == "ok"]
    if ok.empty:
        doc.add("No rows: learning curves need finished runs of a results protocol (e.g. `make campaign "
                "PLAN=cpu`).", "")
        return
    for protocol, task, device in select.units(ok):
        unit = ok[(ok.protocol == protocol) & (ok.task == task) & (ok.device == device)]
        doc.add(f"### {select.unit_name(protocol, task, device)}", "")
        gone = df[(df.protocol == protocol) & (df.task == task) & (df.device == device) & (df.status != "ok")]
        if len(gone):
            doc.add(f"{len(gone)} run(s) of this table diverged ("
                    + ", ".join(f"`{m}` {k}" for m, k in gone.groupby("method").size().items())
                    + "): they have no curve to the end and are not drawn.", "")
        unit_curves(doc, unit, names, ranks=True)


def unit_curves(doc: Doc, unit: pd.DataFrame, names: list[str], ranks: bool = False) -> None:
    """The learning-curve figure of one (protocol, task, device) table and its reading."""
    protocol, task, device = unit.protocol.iloc[0], unit.task.iloc[0], unit.device.iloc[0]
    vm = unit.valid_metric.iloc[0]
    higher = valid_higher(unit)
    series, counts = {}, {}
    for m, g in unit.groupby("method", sort=True):
        cs = [[float(v) for v in c] for c in g.curve_valid if c is not None and len(c)]
        if cs:
            series[m], counts[m] = curve_stats(cs), len(cs)
    if not series:
        doc.add("Its rows have no learning curves (schema-1 rows).", "")
        return
    fig = figures.curves(series, f"validation {figures.with_unit(vm)}", select.unit_name(protocol, task, device), names)
    best = {m: (max if higher else min)(s[1]) for m, s in series.items()}
    last = {m: s[1][-1] for m, s in series.items()}
    top = sorted(last, key=lambda m: (-last[m] if higher else last[m], m))[0]
    turned, within = overfit(series, higher)
    mean = "mean " if counts[top] >= 2 else ""
    reading = (f"after the last epoch {quoted([top])} has the best {mean}validation {vm} ({fmt(last[top])}, "
               f"{seeds_word(counts[top])}); ")
    reading += (f"{quoted(turned)} peaked before the last epoch and then got worse by more than the spread of "
                f"{'its' if len(turned) == 1 else 'their'} seeds (overfitting)." if turned
                else "no method's mean curve got worse after its best epoch by more than its seeds' spread.")
    if within:
        reading += (f" {quoted(within)} peaked earlier too, but the drop is within the seeds' spread at the "
                    "last epoch: not called overfitting.")
    doc.figure(f"curves_{select.slug(protocol, task, device)}.png", fig,
               f"validation {vm} per epoch, {protocol} {task}", reading)
    if not ranks:
        return
    epochs, r = budget.epoch_ranks(unit, higher)
    if len(epochs) >= 2:
        fig = figures.rank_curves(epochs, r, f"ranking against budget: {select.unit_name(protocol, task, device)}",
                                  names)
        lead = sorted(r, key=lambda m: (r[m][-1], m))[0]
        doc.figure(f"ranks_{select.slug(protocol, task, device)}.png", fig,
                   f"rank by validation {vm} after each epoch, {protocol} {task}",
                   f"ranked by mean validation {vm} after each epoch, {quoted([lead])}"
                   f"{' (one seed)' if counts.get(lead) == 1 else ''} leads at the last one; "
                   + budget.still_moving(epochs, r, budget.peaked_share(unit)))


def overfit(series: dict, higher: bool) -> tuple[list[str], list[str]]:
    """(methods whose mean curve peaked before the last epoch and then dropped by more than the spread
    of their seeds at the last epoch, those whose drop is within it). A single seed has no spread of
    its own: the median spread of the table's methods with >= 2 seeds stands in (none: not called)."""
    spreads = [s[3][-1] - s[2][-1] for s in series.values() if s[4] > 1]
    fallback = float(np.median(spreads)) if spreads else None
    turned, within = [], []
    for m in sorted(series):
        x, mean, lo, hi, n = series[m]
        if len(mean) < 2:
            continue
        b = (max if higher else min)(mean)
        if mean.index(b) == len(mean) - 1 or mean[-1] == b:
            continue
        spread = hi[-1] - lo[-1] if n > 1 else fallback
        (turned if spread is not None and abs(mean[-1] - b) > spread else within).append(m)
    return turned, within
