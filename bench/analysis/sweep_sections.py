"""Sections 4-6 of the report: sensitivity to each dropout parameter, fANOVA importance (both from
rows of `sweep*` protocols), and published numbers against ours (rows of `paper*` protocols)."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from bench import leaderboard, plugins
from bench.analysis import figures, select
from bench.analysis.doc import Doc, campaign_hint, fmt

FANOVA_SEED = 0
MIN_TRIALS = 5          # distinct configs a method needs for its importance
SETTLED = 0.8           # a top parameter on top in at least this share of the bootstrap resamples is settled
PED_QUANTILE = 0.25     # PED-ANOVA's top quantile (the fallback without scikit-learn)


def evaluator():
    """(name, what its numbers mean, optuna evaluator): functional ANOVA with a fixed seed; optuna's
    fANOVA needs scikit-learn, and where that is not installed, PED-ANOVA (optuna, no extra
    dependency, deterministic) stands in, and the report says so."""
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return ("PED-ANOVA", "how strongly the parameter's value sets the best quarter of the settings "
                "apart from all of them (normalised to sum to 1)",
                PedAnovaImportanceEvaluator(target_quantile=PED_QUANTILE))
    return ("fANOVA", "the share of the validation loss's variance the parameter explains",
            FanovaImportanceEvaluator(seed=FANOVA_SEED))


def _with_loss(df: pd.DataFrame) -> pd.DataFrame:
    """Finished rows with their best validation loss, and diverged rows (`div`; their loss is set per
    group by sweep_groups): a diverged point is a result, the worst one."""
    df = df.copy()
    df["div"] = df.status != "ok"
    df["vloss"] = [math.nan if d else select.valid_loss(r) for d, r in zip(df["div"], df.itertuples(index=False))]
    df["cfg"] = [select.config_of(r) for r in df.itertuples(index=False)]
    return df[df["div"] | ~df.vloss.isna()]


def sweep_groups(df: pd.DataFrame):
    """(protocol, task, device, method, rows with valid loss and parsed config, cell), sorted; one
    group per cell type (a GRU's sweep is not an LSTM's), and only rows that keep the protocol's
    recipe (model, data, optimiser); methods without a dropout parameter (`none`) are left out:
    their rows are the scale's reference curves. A diverged row (`div`) gets the group's worst
    finished loss (`vloss`): it ranks with the worst settings instead of vanishing."""
    rows = _with_loss(df[df.protocol.str.startswith(select.SWEEP_PREFIX)])
    rows["cell"] = [leaderboard.cell_of(j) for j in rows.config_json]
    for (protocol, task, device, method, cell), g in rows.groupby(["protocol", "task", "device", "method", "cell"],
                                                                  sort=True):
        if select.dropout_params(method):
            fixed = select.recipe(method, protocol, task, cell)
            g = g[[select.same_recipe(c, fixed) for c in g.cfg]].copy()
            if (~g["div"]).any():
                g.loc[g["div"], "vloss"] = float(g.loc[~g["div"], "vloss"].max())
                yield protocol, task, device, method, g, cell


def group_parts(protocol: str, task: str, device: str, method: str, cell: str) -> tuple[str, ...]:
    """What names a sweep group in titles and figure files: the cell type only when not the default."""
    return (protocol, task, device, *(() if cell == select.DEFAULT_CELL else (cell,)), method)


class Panel(NamedTuple):
    x: list              # the values with a finished seed
    mean: list           # mean, lowest and highest finished seed's loss there
    lo: list
    hi: list
    n: list              # finished seeds per value
    default: float | None
    diverged: dict       # value -> diverged seeds (values where every seed diverged included)
    scored: dict         # value -> mean loss with each diverged seed at the group's worst loss


def sensitivity(g: pd.DataFrame, method: str, protocol: str, task: str, cell: str = select.DEFAULT_CELL):
    """parameter -> Panel of the validation loss over the rows whose other options (dropout rates,
    base methods, mask modes) are at the protocol's defaults; parameters with fewer than 2 values
    are left out. Also the defaults' note."""
    default, note = select.defaults(method, protocol, task, cell)
    options = select.chain_options(method)
    out = {}
    for p in select.dropout_params(method):
        pts, div, scored = {}, {}, {}
        for cfg, loss, d in zip(g.cfg, g.vloss, g["div"]):
            if p not in cfg:
                continue
            if all(select.same(cfg.get(o, default.get(o)), default.get(o)) for o in options if o != p):
                v = float(cfg[p])
                scored.setdefault(v, []).append(float(loss))
                if d:
                    div[v] = div.get(v, 0) + 1
                else:
                    pts.setdefault(v, []).append(float(loss))
        if len(scored) < 2:
            continue
        x = sorted(pts)
        out[p] = Panel(x, [float(np.mean(pts[v])) for v in x], [min(pts[v]) for v in x], [max(pts[v]) for v in x],
                       [len(pts[v]) for v in x], float(default[p]) if p in default else None, div,
                       {v: float(np.mean(scored[v])) for v in sorted(scored)})
    return out, note


def section_sensitivity(doc: Doc, df: pd.DataFrame) -> None:
    doc.add("## 4. Sensitivity to each dropout rate", "",
            "For every method and each of its dropout parameters (its probabilities `p_*`/`z_*` and the "
            "strengths `kappa`, `gamma`, its base method's included), the best validation loss over the "
            "epochs against the parameter's value, all other options at the protocol's defaults (dotted "
            "line: the default value): the mean over seeds and the band from the lowest to the highest "
            "seed. (On PTB and Multi30k that is the loss at the best epoch; SST picks its best epoch by "
            "accuracy, where the loss swings with a few over-confident mistakes, so the minimum is read.) "
            "Read from rows of `sweep*` protocols.", "")
    groups = list(sweep_groups(df))
    have = sorted({grp[1] for grp in groups})
    missing = [t for t in select.SWEEP_TASKS if t not in have]
    if not groups:
        doc.add(f"**No rows yet.** This section needs rows of a `sweep*` protocol (one-at-a-time grids of "
                f"each dropout parameter around the defaults, ≥ 2 seeds per value) on "
                f"{', '.join(select.SWEEP_TASKS)}; they would come from {campaign_hint('sweep', 'such grids')}.", "")
        return
    if missing:
        doc.add(f"No sweep rows yet for {', '.join(missing)}.", "")
    section_scale(doc, df)
    for protocol, task, device, method, g, cell in groups:
        panels, note = sensitivity(g, method, protocol, task, cell)
        parts = group_parts(protocol, task, device, method, cell)
        name = " · ".join(parts)
        doc.add(f"### {name}", "")
        if note:
            doc.add(f"Note: {note}.", "")
        if not panels:
            doc.add(f"{len(g)} row(s), but no dropout parameter of {method} has ≥ 2 values with the "
                    f"others at their defaults.", "")
            continue
        few = sorted(p for p, v in panels.items() if v.n and min(v.n) < 2)
        if few:
            doc.add(f"Some values of {', '.join(few)} have a single seed: no band there (needs ≥ 2 seeds).", "")
        n_div = int(g["div"].sum())
        doc.add(f"{len(g)} row(s) in this sweep, {n_div} diverged"
                + (" (red × at the top edge of the panels, with the count; in the readings and in section 5 "
                   "a diverged seed counts as the sweep's worst finished loss)." if n_div else "."), "")
        swing = {p: max(v.scored.values()) - min(v.scored.values()) for p, v in panels.items()}
        top = sorted(swing, key=lambda p: (-swing[p], p))[0]
        best = {p: min(v.scored, key=lambda x: (v.scored[x], x)) for p, v in panels.items()}
        absent = [p for p in select.dropout_params(method) if p not in panels]
        fig = figures.sweep(panels, name)
        noise, _ = seed_spread(g[~g["div"]], select.dropout_params(method))
        diverged = "; ".join(
            f"{p} = {val:g}: {k} of {k + (pv.n[pv.x.index(val)] if val in pv.x else 0)} seed(s) diverged"
            for p, pv in panels.items() for val, k in sorted(pv.diverged.items()))
        reading = (f"the validation loss moves most with {top} (by {fmt(swing[top], 3)} across its values"
                   + (f"; two seeds of one setting differ by up to {fmt(noise, 3)}" if noise is not None else "")
                   + "); " + "; ".join(f"{p} is best at {best[p]:g}" for p in panels) + "."
                   + (f" Diverged: {diverged}; those values rank as the worst." if diverged else "")
                   + (" Every swing is within that seed spread: these best values are not told apart "
                      "from noise." if noise is not None and swing[top] <= noise else "")
                   + (f" Not swept: {', '.join(absent)}." if absent else ""))
        doc.figure(f"sweep_{select.slug(*parts)}.png", fig,
                   f"validation loss against each dropout rate of {method}", reading)


SCALE_KEYS = ("layers", "hidden_size", "emb_size", "train_tokens", "train_examples", "eval_tokens",
              "eval_examples", "epochs", "batch_size", "bptt", "optimizer", "lr", "lr_decay", "lr_decay_start",
              "beam_size")


def section_scale(doc: Doc, df: pd.DataFrame) -> None:
    """Per sweep table: the scale it ran at (the task's protocol entry) and the learning curves of
    every method's default config, `none` included, which show whether the scale is one where
    dropout matters (the unregularised model's validation curve turns the wrong way)."""
    from bench.analysis.results_sections import unit_curves
    sweep = df[(df.status == "ok") & df.protocol.str.startswith(select.SWEEP_PREFIX)]
    chosen, _ = select.default_rows(sweep)
    names = sorted(set(plugins.list_methods()) | set(df.method))
    for protocol, task, device in select.units(chosen):
        unit = chosen[(chosen.protocol == protocol) & (chosen.task == task) & (chosen.device == device)]
        doc.add(f"### Scale of {select.unit_name(protocol, task, device)}", "")
        try:
            fixed = plugins.get_task(task).protocols.get(protocol, {})
        except Exception as exc:                      # a task plugin that no longer loads
            fixed, why = {}, f" (task {task!r} does not load here: {exc})"
        else:
            why = ""
        scale = ", ".join(f"{k}={fixed[k]}" for k in SCALE_KEYS if k in fixed and fixed[k] not in (0, None))
        doc.add(f"These points ran at the `{protocol}` scale of {task}: {scale or 'unknown' + why}; every "
                "method with the same recipe, its dropout options at its `cpu` defaults except the one "
                "varied. A short run on a slice of the data, so the absolute numbers are not those of "
                "the `cpu` or `paper` leaderboards, and nothing here shows that the sensitivities carry "
                "over to those scales (section 2, *From one protocol to another*, tests whether the order "
                "of the methods does). The learning curves of the defaults (`none`: no dropout at all):", "")
        unit_curves(doc, unit, names)


def trials_of(g: pd.DataFrame, method: str, protocol: str, task: str, cell: str = select.DEFAULT_CELL):
    """(setting of the varying dropout parameters -> its losses, varying parameters, their values,
    whether every setting varies at most one of them from its default), other options at their
    defaults; a diverged row enters with the group's worst loss (sweep_groups)."""
    default, _ = select.defaults(method, protocol, task, cell)
    params = select.dropout_params(method)
    others = [o for o in select.chain_options(method) if o not in params]
    keep = [(cfg, loss) for cfg, loss in zip(g.cfg, g.vloss)
            if all(select.same(cfg.get(o, default.get(o)), default.get(o)) for o in others)]
    values = {p: sorted({float(cfg.get(p, default.get(p, math.nan))) for cfg, _ in keep}) for p in params}
    varying = [p for p in params if len(values[p]) > 1 and not any(math.isnan(v) for v in values[p])]
    trials = {}
    for cfg, loss in keep:
        key = tuple(float(cfg.get(p, default.get(p))) for p in varying)
        trials.setdefault(key, []).append(loss)
    base = tuple(float(default.get(p, math.nan)) for p in varying)
    one_at_a_time = all(sum(not select.same(a, b) for a, b in zip(key, base)) <= 1 for key in trials)
    return trials, varying, values, one_at_a_time


def importances(items: list, varying: list[str], values: dict, ev) -> dict[str, float]:
    """parameter -> importance from [(setting, value)] trials of an in-memory optuna study."""
    import warnings

    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.importance import get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {p: FloatDistribution(values[p][0], values[p][-1]) for p in varying}
    study = optuna.create_study(direction="minimize")
    for key, value in items:
        study.add_trial(optuna.trial.create_trial(params=dict(zip(varying, key)), distributions=dists,
                                                  value=float(value)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # e.g. PED-ANOVA's advice to run more trials
        imp = get_param_importances(study, evaluator=ev, params=varying)
    return {p: float(imp[p]) for p in varying}


def fanova(g: pd.DataFrame, method: str, protocol: str, task: str, cell: str = select.DEFAULT_CELL):
    """(parameter -> fANOVA importance, number of trials, varying parameters, whether every trial
    varies at most one of them from its default) from the rows: one trial per distinct setting of
    the varying dropout parameters (its value the mean validation loss of its seeds: random-search
    settings have one), other options at their defaults; an in-memory optuna study and
    `evaluator()` (fANOVA, seed FANOVA_SEED). None instead of the importances when there are too few
    trials or fewer than 2 varying parameters."""
    trials, varying, values, one_at_a_time = trials_of(g, method, protocol, task, cell)
    if len(varying) < 2 or len(trials) < MIN_TRIALS:      # one parameter: nothing to share out
        return None, len(trials), varying, False
    items = [(key, float(np.mean(trials[key]))) for key in sorted(trials)]
    return importances(items, varying, values, evaluator()[2]), len(trials), varying, one_at_a_time


BOOT_RESAMPLES = 50      # bootstrap resamples of the settings (section 5's intervals)
BOOT_SEED = 0
BOOT_TREES = 16          # fANOVA trees per resample (the point estimate keeps optuna's 64)


def fanova_bootstrap(g: pd.DataFrame, method: str, protocol: str, task: str, cell: str = select.DEFAULT_CELL,
                     resamples: int | None = None):
    """(parameter -> (2.5%, 97.5%) percentiles of its importance, parameter -> share of resamples in
    which it is the top one) over bootstrap resamples of the settings (drawn with replacement, seed
    BOOT_SEED); None when fanova gives none."""
    trials, varying, values, _ = trials_of(g, method, protocol, task, cell)
    if len(varying) < 2 or len(trials) < MIN_TRIALS:
        return None
    items = [(key, float(np.mean(trials[key]))) for key in sorted(trials)]
    name, _, ev = evaluator()
    rng = np.random.default_rng(BOOT_SEED)
    draws, tops = [], {p: 0 for p in varying}
    n = resamples if resamples is not None else BOOT_RESAMPLES
    for _ in range(n):
        pick = [items[i] for i in rng.integers(0, len(items), len(items))]
        if name == "fANOVA":
            from optuna.importance import FanovaImportanceEvaluator
            ev = FanovaImportanceEvaluator(seed=FANOVA_SEED, n_trees=BOOT_TREES)
        imp = importances(pick, varying, values, ev)
        draws.append(imp)
        tops[sorted(imp, key=lambda p: (-imp[p], p))[0]] += 1
    ci = {p: tuple(float(x) for x in np.percentile([d[p] for d in draws], [2.5, 97.5])) for p in varying}
    return ci, {p: tops[p] / n for p in varying}


def seed_spread(g: pd.DataFrame, params: list[str]) -> tuple[float | None, float]:
    """(the largest difference between seeds of one setting, None without a repeated setting; the
    range of the settings' mean losses), a setting being the values of `params`."""
    by = {}
    for cfg, loss in zip(g.cfg, g.vloss):
        by.setdefault(tuple(float(cfg.get(p, math.nan)) for p in params), []).append(float(loss))
    spreads = [max(v) - min(v) for v in by.values() if len(v) >= 2]
    means = [float(np.mean(v)) for v in by.values()]
    return (max(spreads) if spreads else None), (max(means) - min(means) if means else 0.0)


def section_importance(doc: Doc, df: pd.DataFrame) -> None:
    name, meaning, _ = evaluator()
    doc.add("## 5. Which dropout rate matters most (importance)", "",
            "Per method, its `sweep*` rows whose other options are at their defaults become trials of an "
            "in-memory optuna study, one trial per setting: a random-search setting (all of the method's "
            "rates drawn at once) has one seed, so its value is that single run's validation loss; a "
            "one-at-a-time grid point has its seeds' mean. A diverged run enters with the sweep's worst "
            "finished loss. optuna's "
            f"functional-ANOVA (fANOVA) evaluator, seed {FANOVA_SEED}, splits the variance of the validation "
            "loss between the parameters: a share near 1 means that parameter alone explains the changes in "
            f"the loss. A method needs ≥ {MIN_TRIALS} distinct settings. Settings that vary one parameter at "
            "a time give main effects only: no interaction between two rates can show. The interval is "
            f"the 2.5–97.5% range of the share over {BOOT_RESAMPLES} bootstrap resamples of the settings "
            f"(seed {BOOT_SEED}; {BOOT_TREES} fANOVA trees per resample against optuna's 64 for the share "
            "itself, to keep `make report` within minutes), and *top in* how often each parameter "
            "came out on top.", "")
    if name != "fANOVA":
        doc.add(f"**fANOVA is not available here:** optuna's fANOVA evaluator needs scikit-learn, which is "
                f"not installed (not in requirements.lock), so optuna's {name} evaluator (top quantile "
                f"{PED_QUANTILE}) stands in; its numbers say {meaning}.", "")
    groups = list(sweep_groups(df))
    if not groups:
        doc.add(f"**No rows yet.** This section needs rows of a `sweep*` protocol with random draws of all "
                f"of a method's dropout parameters (≥ {MIN_TRIALS} draws per method and task); they would come "
                f"from {campaign_hint('sweep', 'seeded random searches')}.", "")
        return
    found = []                       # per group: its fANOVA, its bootstrap, the seed noise against the loss's reach
    for protocol, task, device, method, g, cell in groups:
        imp = fanova(g, method, protocol, task, cell)
        boot = fanova_bootstrap(g, method, protocol, task, cell) if imp[0] is not None else None
        found.append(((protocol, task, device, method, g, cell), imp, boot,
                      seed_spread(g[~g["div"]], select.dropout_params(method))))
    summary = []
    for (protocol, task, device, method, g, cell), (imp, n, _, one_at_a_time), boot, (noise, reach) in found:
        if imp is not None:
            order = sorted(imp, key=lambda p: (-imp[p], p))
            ci, top = boot
            summary.append([" · ".join(group_parts(protocol, task, device, method, cell)[:-1]), method,
                            order[0] + ("" if top[order[0]] >= SETTLED else " (not settled)"),
                            f"{imp[order[0]]:.2f} [{ci[order[0]][0]:.2f}, {ci[order[0]][1]:.2f}]",
                            f"{top[order[0]]:.0%}",
                            ", ".join(f"{p} {imp[p]:.2f}" for p in order[1:2]) or "—",
                            str(n), str(int(g["div"].sum())), "one at a time" if one_at_a_time else "random search",
                            "yes" if noise is not None and reach <= noise else "no"])
    if summary:
        doc.add("The parameter that matters most, per method (details and figures below; *share* with its "
                "bootstrap interval; *top in*: the share of resamples in which it is the top one; *seed "
                "noise?*: the settings' mean losses span no more than two seeds of one setting differ):", "")
        doc.table(summary, ["sweep", "method", "matters most", "share [95%]", "top in", "next", "settings",
                            "diverged", "settings from", "seed noise?"])
        doc.add(f"*Not settled*: the top parameter came out on top in fewer than {SETTLED:.0%} of the resamples. "
                "Where a method has random-search settings this section reads them (every rate drawn over its "
                "whole range at once), while section 4 moves one rate at a time around the defaults: the two can "
                "name different rates, one for the whole range, the other for the neighbourhood of the "
                "defaults.", "")
    for (protocol, task, device, method, g, cell), (imp, n, varying, one_at_a_time), boot, (noise, reach) in found:
        parts = group_parts(protocol, task, device, method, cell)
        title = " · ".join(parts)
        doc.add(f"### {title}", "")
        if imp is None and len(varying) == 1:
            doc.add(f"Only {varying[0]} varies here ({n} settings): with one parameter there is no share to "
                    f"split (it would get all of it); section 4 shows how the loss moves with it.", "")
            continue
        if imp is None:
            doc.add(f"{n} distinct setting(s) of {', '.join(varying) or 'no varying parameter'}: needs ≥ "
                    f"{MIN_TRIALS} for fANOVA.", "")
            continue
        if one_at_a_time:
            doc.add("These settings vary one parameter at a time (section 4's points, no random search "
                    "here yet): the importances are main effects only, without interactions.", "")
        order = sorted(imp, key=lambda p: (-imp[p], p))
        ci, top = boot
        fig = figures.importance(imp, f"{title} ({n} settings)", f"{name} importance", ci)
        rest = ", ".join(f"{p} {imp[p]:.2f}" for p in order[1:])
        tops = ", ".join(f"{p} {top[p]:.0%}" for p in sorted(top, key=lambda p: (-top[p], p)) if top[p])
        stable = top[order[0]] >= SETTLED
        doc.figure(f"importance_{select.slug(*parts)}.png", fig,
                   f"{name} importance of {method}'s dropout parameters",
                   f"for {method} on {task}, {order[0]} matters most ({name} importance {imp[order[0]]:.2f} "
                   f"of 1, 95% bootstrap interval [{ci[order[0]][0]:.2f}, {ci[order[0]][1]:.2f}], over {n} settings)"
                   + (f"; then {rest}." if rest else ".")
                   + f" Top in the resamples: {tops}"
                   + ("." if stable else f": which parameter matters most is not settled by these {n} settings.")
                   + (f" But the settings' mean losses span only {fmt(reach, 3)}, no more than two seeds of one "
                      f"setting differ ({fmt(noise, 3)}): this split may be seed noise."
                      if noise is not None and reach <= noise else ""))


def section_published(doc: Doc, df: pd.DataFrame) -> None:
    doc.add("## 7. Published numbers against ours", "",
            "Every row of a `paper*` protocol (the published recipe, default config): our mean over seeds "
            "next to the paper's number and the difference (ours − published).", "")
    ok = df[(df.status == "ok") & df.protocol.str.startswith(select.PAPER_PREFIX)]
    if ok.empty:
        doc.add(f"**No rows yet.** This section needs rows of the `paper*` protocols (GPU scale): "
                f"{campaign_hint('gpu', 'the paper protocols')}.", "")
        return
    rows = []
    for (protocol, task, method, device), g in ok.groupby(["protocol", "task", "method", "device"], sort=True):
        pub, broken = leaderboard.published(method, protocol, task)
        pub = pub or {}
        n = len(g)
        t, v = g.test.mean(), g.valid.mean()
        std = g.test.std(ddof=1) if n > 1 else math.nan
        pt, pv = pub.get("test"), pub.get("valid")
        rows.append([protocol, task, method, device, str(n), f"{fmt(t)} ± {fmt(std)}", fmt(pt),
                     fmt(t - pt) if pt is not None else "—", fmt(v), fmt(pv),
                     fmt(v - pv) if pv is not None else "—",
                     pub.get("source", "plugin not loaded: " + broken if broken else "no published number")])
    doc.table(rows, ["protocol", "task", "method", "device", "n", "test (ours)", "test (published)", "Δ test",
                     "valid (ours)", "valid (published)", "Δ valid", "source"])
