"""Issue 33: the report says how sure it is. Diverged runs (1), the training budget (2), power (3),
aggregates across tasks (5), verdict families (7), labels on noise (8), expected validation
performance (9). Test-set noise (4) is tests/test_report_testnoise.py, importance intervals (6)
tests/test_report_importance.py."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench import leaderboard, report, results
from bench.analysis import aggregate, budget, diverged, evp, figures, power, select, sweep_sections, table_notes
from bench.analysis.doc import Doc, fmt_p
from bench.analysis.results_sections import overfit, section_ranks
from test_registry import make_row
from test_report import at_test_size, row

NAN = float("nan")


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    at_test_size(monkeypatch, boot=3, aggregates=200)
    yield
    for f in (select.default_hash, select.defaults, select.recipe):
        f.cache_clear()


def div(r):
    return dict(r, status="diverged", test=NAN, valid=NAN)


# --- 1. diverged runs ------------------------------------------------------------------------

LOSS = {(0.3, 0): 4.452, (0.5, 0): 4.45, (0.5, 1): 4.46}


def zoneout_sweep(registry):
    """z_c at 0.3, 0.5, 0.7 with 2 seeds; seed 1 at 0.3 and both at 0.7 diverge (their curves stop).
    On finished seeds alone 0.3 (4.452) beats 0.5 (4.455); with its diverged seed at the worst
    finished loss (4.46) it does not (4.456)."""
    for s in range(2):
        for zc in (0.3, 0.5, 0.7):
            r = row("ptb", "zoneout", "sweep", s, 100, vloss=[5.0, LOSS.get((zc, s), 9.0)], z_c=zc)
            if (zc, s) not in LOSS:
                r = div(r)
            results.write_row(registry, r)


def test_a_diverged_sweep_point_is_marked_at_the_axis_edge_counted_and_ranked_worst(registry):
    zoneout_sweep(registry)
    df = results.read_registry(registry)
    (_, _, _, _, g, _), = list(sweep_sections.sweep_groups(df))
    assert len(g) == 6 and int(g["div"].sum()) == 3
    assert set(g[g["div"]].vloss) == {4.46}                       # the group's worst finished loss
    panels, _ = sweep_sections.sensitivity(g, "zoneout", "sweep", "ptb")
    p = panels["z_c"]
    assert p.x == [0.3, 0.5] and p.n == [1, 2] and p.diverged == {0.3: 1, 0.7: 2}
    assert p.scored[0.7] == pytest.approx(4.46) and p.scored[0.3] == pytest.approx((4.452 + 4.46) / 2)
    fig = figures.sweep(panels, "t")
    ax = fig.axes[0]
    marks = [ln for ln in ax.lines if ln.get_marker() == "x" and len(ln.get_xdata())]
    assert [list(m.get_xdata()) for m in marks] == [[0.3], [0.7]]
    assert all(list(m.get_ydata()) == [1.0] for m in marks)          # axes coordinates: the top edge
    assert [t.get_text() for t in ax.texts] == ["1", "2"]
    text = report.build(df).text()
    part = text.split("### sweep · ptb · cpu · zoneout")[1].split("###")[0]
    assert "6 row(s) in this sweep, 3 diverged" in part
    assert "z_c = 0.3: 1 of 2 seed(s) diverged; z_c = 0.7: 2 of 2 seed(s) diverged" in part
    assert "z_c is best at 0.5" in part           # 0.3's finished seed is lower, but its other seed diverged


def test_diverged_rows_rank_as_their_tables_worst_run():
    df = pd.DataFrame([dict(protocol="cpu", task="ptb", device="cpu", method=m, status=s, test=t,
                            higher_is_better=False) for m, s, t in
                       (("a", "ok", 90.0), ("a", "ok", 91.0), ("b", "ok", 95.0), ("b", "diverged", NAN))])
    out = diverged.scored(df)
    assert out.diverged.tolist() == [False, False, False, True] and out.test.iloc[3] == 95.0
    acc = df.assign(higher_is_better=True)
    assert diverged.scored(acc).test.iloc[3] == 90.0                # higher is better: the lowest


def test_section_2_counts_diverged_runs_instead_of_dropping_them(registry):
    # b is best on its finished seeds, but one of its two seeds on ptb diverged: it ranks with it
    for s in range(2):
        for task, base in (("ptb", 100.0), ("sst2", 80.0), ("sst5", 40.0)):
            sign = -1 if task == "ptb" else 1
            for m, d in (("zaremba", 0.0), ("gal", 1.5), ("naive", 2.0)):
                r = row(task, m, "cpu", s, base + sign * d + 0.1 * s)
                if task == "ptb" and m == "naive" and s == 1:
                    r = div(r)
                results.write_row(registry, r)
    doc = Doc()
    section_ranks(doc, results.read_registry(registry))
    text = doc.text()
    assert "1 of the ranked runs diverged and counts as its table's worst finished run: ptb · naive 1." in text
    # ptb naive: (98 + the worst finished 100.1) / 2 = 99.05, behind gal's 98.55: rank 2, not 1
    assert re.search(r"^\| naive +\| [0-9.]+ +\| 2\.0 ", text, re.M)


def test_section_2_counts_only_the_diverged_runs_of_the_tasks_it_ranks(registry):
    # multi30k lacks gal, so it is left out of the complete design: its diverged naive seed is not
    # one of the ranked runs (the note used to count it anyway)
    for s in range(2):
        for task, base in (("ptb", 100.0), ("sst2", 80.0), ("sst5", 40.0)):
            sign = -1 if task == "ptb" else 1
            for m, d in (("zaremba", 0.0), ("gal", 1.5), ("naive", 2.0)):
                results.write_row(registry, row(task, m, "cpu", s, base + sign * d + 0.1 * s))
        results.write_row(registry, row("multi30k-de-en", "zaremba", "cpu", s, 30.0 + s))
        results.write_row(registry, div(row("multi30k-de-en", "naive", "cpu", s, 30.0)))
    doc = Doc()
    section_ranks(doc, results.read_registry(registry))
    text = doc.text()
    assert "Left out to keep the design complete: task multi30k-de-en." in text
    assert "diverged and count" not in text and "multi30k-de-en · naive" not in text


# --- 2. budget -------------------------------------------------------------------------------

def test_seeds_that_peaked_at_the_last_epoch_and_the_ranking_at_every_epoch():
    rows = [row("ptb", "zaremba", "cpu", s, 100, curve=[150, 120, 110]) for s in range(2)]
    rows += [row("ptb", "gal", "cpu", 0, 100, curve=[140, 125, 105]),
             dict(row("ptb", "gal", "cpu", 1, 100, curve=[140, 100, 115]), best_epoch=2)]
    rows = [dict(r, best_epoch=r.get("best_epoch") if r["run_id"].startswith("ptb.gal") and r["seed"] == 1
                 else len(r["curve_valid"])) for r in rows]
    unit = pd.DataFrame(rows)
    assert budget.last_epoch_counts(unit) == {"gal": (1, 2), "zaremba": (2, 2)}
    assert budget.peaked_last(make_row_ns(curve=[], best=1)) is None
    epochs, ranks = budget.epoch_ranks(unit, higher=False)
    # means: gal 140, 112.5, 110; zaremba 150, 120, 110
    assert epochs == [1, 2, 3] and ranks == {"gal": [1.0, 1.0, 1.5], "zaremba": [2.0, 2.0, 1.5]}
    said = budget.still_moving(epochs, ranks, 0.75)
    assert "still moving at the end: between epochs 2 and 3 2 of 2 methods change rank" in said
    assert "75% of the seeds peaked at the last epoch: a longer budget may reorder" in said
    assert "not cut short" in budget.still_moving(epochs, ranks, 0.25)
    steady = {"a": [1.0, 2.0, 1.0, 1.0], "b": [2.0, 1.0, 2.0, 2.0]}
    assert budget.still_moving([1, 2, 3, 4], steady).startswith("the order has not changed since epoch 3 of 4")
    # a steady order with most seeds still improving at the end is not called settled
    assert budget.still_moving([1, 2, 3, 4], steady, 0.75).endswith(
        "; but 75% of the seeds peaked at the last epoch, so a longer budget may still reorder this table.")
    assert budget.still_moving([1, 2, 3, 4], steady, 0.25).endswith("between the last two epochs).")


def make_row_ns(curve, best):
    from types import SimpleNamespace
    return SimpleNamespace(curve_valid=curve, best_epoch=best)


def test_each_table_says_how_many_seeds_peaked_last_and_draws_the_ranking_against_budget(registry):
    for s in range(2):
        results.write_row(registry, row("ptb", "zaremba", "cpu", s, 100 + s, curve=[150, 120, 110 + s], vloss=[5, 4.8, 4.7]))
        results.write_row(registry, row("ptb", "gal", "cpu", s, 98 + s, curve=[140, 125, 105 + s], vloss=[5, 4.8, 4.6]))
    doc = report.build(results.read_registry(registry))
    text = doc.text()
    assert "*Budget:* 4 of 4 finished seeds peaked at their last epoch; every seed of `gal`, `zaremba`" in text
    assert re.search(r"\| last-epoch peaks +\|", text) and re.search(r"\| 2/2 +\|$", text, re.M)
    ax = doc.figures["ranks_cpu_ptb_cpu.png"].axes[0]
    assert [ln.get_label() for ln in ax.lines] == ["gal", "zaremba"]
    assert list(ax.lines[0].get_ydata()) == [1.0, 2.0, 1.0]               # gal: 140 < 150, 125 > 120, 105.5 < 110.5
    assert ax.get_ylim()[0] > ax.get_ylim()[1]                              # rank 1 on top
    assert "ranking against budget" in text and "still moving at the end" in text


def test_the_leaderboard_marks_a_line_whose_seeds_all_peaked_at_the_last_epoch(registry):
    heading = "cpu · ptb · LSTM · CPU · test ppl (lower is better)"
    cpu = dict(protocol="cpu")
    rows = [make_row("a", seed=0, test=100.0, best_epoch=3, epochs=3, curve_valid=[3.0, 2.0, 1.0], **cpu),
            make_row("b", seed=1, test=101.0, best_epoch=3, epochs=3, curve_valid=[3.0, 2.0, 1.5], **cpu),
            make_row("c", method="gal", seed=0, test=99.0, best_epoch=2, epochs=3, curve_valid=[3.0, 1.0, 2.0], **cpu),
            make_row("d", method="gal", seed=1, test=99.5, best_epoch=3, epochs=3, curve_valid=[3.0, 2.0, 1.0], **cpu),
            make_row("e", method="naive", seed=0, test=98.0, **cpu),                  # no curve: no mark
            make_row("f", method="zaremba", seed=0, test=98.0, best_epoch=3, epochs=3,
                     curve_valid=[3.0, 2.0, 1.0])]                                     # smoke: never marked
    for r in rows:
        results.write_row(registry, r)
    text = leaderboard.render(results.read_registry(registry))
    section = text.split(f"## {heading}\n")[1].split("\n## ")[0]
    names = [ln.split("|")[1].strip() for ln in section.splitlines() if ln.startswith("| ")][1:]
    assert sorted(names) == ["gal", "naive", "zaremba ¶"]
    assert f"- {leaderboard.LAST_EPOCH[0]} {leaderboard.LAST_EPOCH[1]}" in section
    smoke = text.split("## smoke · ptb · LSTM · CPU · test ppl (lower is better)\n")[1]
    assert "¶" not in smoke


# --- 3. power --------------------------------------------------------------------------------

def test_power_against_a_simulation_and_its_inverses():
    rng = np.random.default_rng(0)
    n, sd, delta, alpha = 3, 1.0, 2.5, 0.05
    a = rng.normal(0, sd, (40000, n))
    b = rng.normal(delta, sd, (40000, n))
    sim = float(np.mean(sps.ttest_ind(a, b, axis=1).pvalue < alpha))            # Student's t, df 2n - 2
    assert power.power(delta, sd, n, alpha) == pytest.approx(sim, abs=0.01)
    welch = float(np.mean(sps.ttest_ind(a, b, axis=1, equal_var=False).pvalue < alpha))
    assert welch <= power.power(delta, sd, n, alpha) + 0.01                      # optimistic for Welch, as said
    md = power.min_detectable(sd, n, alpha / 8)
    assert power.power(md, sd, n, alpha / 8) == pytest.approx(0.8, abs=1e-6)
    k = power.seeds_needed(1.0, sd, alpha / 8)
    assert power.power(1.0, sd, k, alpha / 8) >= 0.8 > power.power(1.0, sd, k - 1, alpha / 8)
    assert power.seeds_needed(1e-4, sd, 0.05) is None and power.fmt_seeds(None) == "> 1000"
    assert power.power(200.0, 0.5, 3, 0.05 / 8) == 1.0                          # scipy's nct tail: no nan


def test_each_table_prints_the_smallest_resolvable_gap_and_the_seeds_each_gap_needs(registry):
    vals = {"zaremba": [80.0, 80.6, 79.7], "gal": [80.9, 81.5, 80.2], "naive": [79.1, 79.9, 79.6]}
    for m, v in vals.items():
        for s, x in enumerate(v):
            results.write_row(registry, row("sst2", m, "cpu", s, x))
    text = report.build(results.read_registry(registry)).text()
    sd = math.sqrt(np.mean([np.var(v, ddof=1) for v in vals.values()]))
    md8, md3 = power.min_detectable(sd, 3, 0.05 / 2), power.min_detectable(sd, 3, 0.05 / 3)
    assert (f"*Power:* with 3 seeds per method and the table's pooled seed-to-seed std {sd:.3f}, the smallest "
            f"difference resolved with 80% power is {md8:.2f} in the family of the 2 tests against `zaremba` "
            f"(Holm's first step, α/2) and {md3:.2f} in the family of all 3 pairs (α/3); at 10 seeds per method "
            f"and the same std they would be {power.min_detectable(sd, 10, 0.025):.2f} and "
            f"{power.min_detectable(sd, 10, 0.05 / 3):.2f}.") in text
    gap = np.mean(vals["gal"]) - np.mean(vals["zaremba"])
    sd_gal = math.sqrt((np.var(vals["gal"], ddof=1) + np.var(vals["zaremba"], ddof=1)) / 2)
    pw = power.power(gap, sd_gal, 3, 0.025)
    assert (f"`gal` {gap:.2f} (std {sd_gal:.3f}, power {pw:.0%} at 3 seeds) → "
            f"{power.seeds_needed(gap, sd_gal, 0.025)}") in text
    assert ("The `no clear difference` verdicts of `gal`, `naive` have under 80% power at their gaps: they are "
            "not evidence of no difference.") in text
    # a one-seed method is named as untested; the pooled std is only the table's, not any pair's
    results.write_row(registry, row("sst2", "awd", "cpu", 0, 82.0))
    text = report.build(results.read_registry(registry)).text()
    assert "Not tested, one seed: `awd`." in text
    assert power.min_detectable(sd, 10, 0.025) < md8                  # more seeds resolve smaller gaps


def test_the_power_note_names_the_range_of_seed_counts_and_drops_the_projection_at_ten(registry):
    """A table whose methods have 10-11 seeds: the median count with its range, no projection."""
    rng = np.random.default_rng(3)
    for m, k in (("zaremba", 10), ("gal", 11), ("naive", 10)):
        for s in range(k):
            results.write_row(registry, row("sst2", m, "cpu", s, 80.0 + float(rng.normal())))
    text = report.build(results.read_registry(registry)).text()
    assert "*Power:* with 10 seeds per method (the median; 10–11) and the table's pooled" in text
    assert "at 10 seeds per method and the same std" not in text


# --- 5. aggregates ---------------------------------------------------------------------------

def test_normalised_scores_iqm_and_probability_of_improvement_by_hand():
    rows = []
    for task, higher, vals in (("a", True, {"none": [10, 10], "x": [20, 22], "zaremba": [15, 15]}),
                               ("b", False, {"none": [50, 50], "x": [40, 44], "zaremba": [30, 30]})):
        rows += [dict(task=task, method=m, status="ok", test=float(v)) for m, vs in vals.items() for v in vs]
    rows.append(dict(task="b", method="x", status="diverged", test=NAN))
    scores, left = aggregate.normalised(pd.DataFrame(rows), {"a": True, "b": False})
    assert not left
    # a: none 10, best other mean 21 -> scale 11; b (lower better): none -50, best -30 -> scale 20
    assert scores["a"]["x"] == pytest.approx([10 / 11, 12 / 11]) and scores["a"]["zaremba"] == pytest.approx([5 / 11] * 2)
    assert scores["b"]["x"] == pytest.approx([0.5, 0.3, 0.0])           # the diverged run: the task's worst
    assert scores["b"]["zaremba"] == pytest.approx([1.0, 1.0])
    iq, pi, tasks = aggregate.aggregates(scores, ["none", "x", "zaremba"], "zaremba", "t", resamples=300)
    allx = np.concatenate([scores["a"]["x"], scores["b"]["x"]])
    assert iq["x"][0] == pytest.approx(sps.trim_mean(allx, 0.25)) and iq["x"][1] <= iq["x"][0] <= iq["x"][2]
    assert pi["x"][0] == pytest.approx((1.0 + 0.0) / 2)                 # beats zaremba on a, never on b
    assert pi["none"][0] == pytest.approx(0.0) and "zaremba" not in pi
    assert aggregate.aggregates(scores, ["none", "x", "zaremba"], "zaremba", "t", resamples=300) == (iq, pi, tasks)
    x = np.arange(10.0)[None, :]
    assert aggregate._iqm_rows(x)[0] == pytest.approx(sps.trim_mean(x[0], 0.25))


def test_section_2_shows_the_iqm_table_and_says_sst2_and_sst5_share_sentences(registry):
    for s in range(3):
        for task, base in (("sst2", 80.0), ("sst5", 40.0), ("ptb", 100.0)):
            sign = -1 if task == "ptb" else 1
            for m, d in (("none", 0.0), ("zaremba", 1.0), ("gal", 2.0)):
                results.write_row(registry, row(task, m, "cpu", s, base + sign * (d + 0.1 * s)))
    doc = Doc()
    section_ranks(doc, results.read_registry(registry))
    text = doc.text()
    assert "SST-2 and SST-5 are built from the same sentences" in text and "not independent blocks" in text
    assert re.search(r"^\| gal +\| 1\.0\d +\| \[", text, re.M)                 # best of the others = 1
    assert re.search(r"^\| none +\| -?0\.0\d +\|", text, re.M)
    assert "P(> zaremba)" in text and "the probability of improving on `zaremba` excludes 0.5 for `gal`, `none`" in text


# --- 7. one verdict per comparison -----------------------------------------------------------

def test_every_verdict_names_its_family_and_the_disagreements_are_said():
    res = [dict(method="zaremba", p_holm=NAN, verdict="baseline"),
           dict(method="zoneout", p_holm=0.02, verdict="worse"), dict(method="gal", p_holm=0.5, verdict="no clear difference")]
    pairs = [dict(a="zaremba", b="zoneout", clear=False), dict(a="zaremba", b="gal", clear=False),
             dict(a="gal", b="zoneout", clear=False)]
    doc = Doc()
    table_notes.family_note(doc, res, pairs)
    text = doc.text()
    assert "the verdicts in the table belong to the family of the 2 tests against `zaremba` (Holm over 2)" in text
    assert ("`zoneout` against `zaremba` is `worse` in the family against the baseline (2) and within seed noise "
            "in the all-pairs family (3)") in text


# --- 8. labels on noise ----------------------------------------------------------------------

def test_overfitting_needs_a_drop_beyond_the_seed_spread():
    # (epochs, mean, low, high, n); higher is better (accuracy)
    series = {"tiny": ([1, 2, 3], [80.0, 81.0, 80.9], [79.0, 80.5, 80.4], [81.0, 81.5, 81.4], 3),     # 0.1 < 1.0
              "real": ([1, 2, 3], [80.0, 83.0, 80.0], [79.0, 82.8, 79.8], [81.0, 83.2, 80.2], 3),     # 3.0 > 0.4
              "last": ([1, 2, 3], [80.0, 81.0, 82.0], [79.0, 80.0, 81.0], [81.0, 82.0, 83.0], 3)}
    assert overfit(series, True) == (["real"], ["tiny"])


def test_sweep_panels_share_a_y_axis_and_accuracy_axes_say_percent(registry):
    panels = {p: sweep_sections.Panel([0.0, 0.5], [1.0 + i, 2.0 + i], [1.0, 2.0], [1.0, 2.0], [1, 1], None, {}, {})
              for i, p in enumerate(("a", "b", "c", "d"))}
    fig = figures.sweep(panels, "t")
    assert len(fig.axes) == 4
    assert all(fig.axes[0].get_shared_y_axes().joined(fig.axes[0], ax) for ax in fig.axes[1:])
    for s in range(2):
        results.write_row(registry, row("sst2", "zaremba", "cpu", s, 80.0 + s))
    doc = report.build(results.read_registry(registry))
    assert doc.figures["curves_cpu_sst2_cpu.png"].axes[0].get_ylabel() == "validation accuracy (%)"
    assert doc.figures["means_cpu_sst2_cpu.png"].axes[0].get_xlabel().startswith("test accuracy (%) (higher")


def test_the_sweep_scale_no_longer_claims_what_carries_over_and_the_leaderboard_counts_the_designs(registry):
    results.write_row(registry, row("ptb", "zoneout", "sweep", 0, 100, vloss=[5.0, 4.0]))          # the default
    results.write_row(registry, row("ptb", "zoneout", "sweep", 0, 100, vloss=[5.0, 4.1], z_c=0.3))  # one rate
    results.write_row(registry, row("ptb", "zoneout", "sweep", 0, 100, vloss=[5.0, 4.2], z_c=0.3, z_h=0.2))
    results.write_row(registry, row("ptb", "none", "sweep", 0, 100, vloss=[5.0, 4.3]))
    df = results.read_registry(registry)
    text = report.build(df).text()
    assert "what carries over is how the loss moves" not in text
    assert "nothing here shows that the sensitivities carry over" in text
    board = leaderboard.render(df)
    assert ("The 4 rows of `sweep*` protocols (short runs for the sensitivity and importance study: 3 at the "
            "defaults or varying one dropout rate at a time, 1 random draws of all of a method's rates)") in board


# --- 9. expected validation performance ------------------------------------------------------

def test_expected_best_after_k_settings_by_hand():
    mean, std = evp.expected_best([3.0, 1.0, 2.0])
    # k=1: the mean 2; k=2: P(best=1) = 1 - (2/3)^2 = 5/9, P(2) = (2/3)^2 - (1/3)^2 = 3/9, P(3) = 1/9
    assert mean == pytest.approx([2.0, 14 / 9, (19 / 27) * 1 + (7 / 27) * 2 + (1 / 27) * 3])
    assert std[0] == pytest.approx(np.std([1, 2, 3]))
    assert mean[0] > mean[1] > mean[2] and std[-1] < std[0]


def test_a_rank_swap_within_the_spreads_is_a_tie_not_a_budget_effect():
    # a: best with one setting, b best with all, intervals apart at both ends: a real swap;
    # c swaps with b too, but within b's spread at k = all (sweep ptb: 6.007 beside 6.008 ± 0.006)
    first = {"a": (6.00, 0.01), "b": (6.10, 0.01), "c": (6.20, 0.01)}
    last = {"a": (5.95, 0.005), "b": (5.90, 0.005), "c": (5.898, 0.005)}
    assert evp.clear_swaps(first, last) == ["a", "b", "c"]          # c and a swap clearly too
    last["a"] = (5.895, 0.005)                                      # a now ties both at the end
    assert evp.clear_swaps(first, last) == []


def test_a_figure_per_task_of_each_methods_expected_best_from_its_random_draws(registry):
    rng = np.random.default_rng(1)
    for m, keys, offset in (("zoneout", ("z_h", "z_c"), 0.0), ("zaremba", ("p_hid", "p_out"), 0.05)):
        for i in range(6):
            vals = {k: round(float(rng.uniform(0.05, 0.5)), 4) for k in keys}
            r = row("ptb", m, "sweep", 0, 100, vloss=[5.0, 4.0 + offset + 0.01 * i], **vals)
            results.write_row(registry, div(r) if (m == "zaremba" and i == 5) else r)
        results.write_row(registry, row("ptb", m, "sweep", 0, 100, vloss=[5.0, 3.0], **{keys[0]: 0.3}))  # one rate
    doc = report.build(results.read_registry(registry))
    text = doc.text().split("## 6. Tuning budget")[1].split("## 7.")[0]
    assert "### sweep · ptb · cpu" in text and re.search(r"^\| zoneout +\| 6 +\|", text, re.M)
    assert re.search(r"^\| zaremba +\| 6 +\| .* \| 1 +\|$", text, re.M)                 # one diverged draw
    ax = doc.figures["evp_sweep_ptb_cpu.png"].axes[0]
    assert [ln.get_label() for ln in ax.lines] == ["zaremba", "zoneout"]
    z = [4.0 + 0.01 * i for i in range(6)]
    assert list(ax.lines[1].get_ydata()) == pytest.approx(evp.expected_best(z)[0])       # the 3.0 grid point is not in it
    assert ax.get_xlabel() == "settings tried (k)"


def test_a_diverged_seed_of_a_results_table_is_said_in_sections_1_and_3_and_on_the_figure(registry):
    for s in range(3):
        results.write_row(registry, row("ptb", "zaremba", "cpu", s, 100.0 + s))
        r = row("ptb", "gal", "cpu", s, 90.0 + s)
        results.write_row(registry, div(r) if s == 2 else r)
    doc = report.build(results.read_registry(registry))
    text = doc.text()
    assert "| 2 (+1 diverged) |" in text and "*Diverged:* `gal` 1 run(s)." in text
    assert "1 run(s) of this table diverged (`gal` 1): they have no curve to the end and are not drawn." in text
    labels = [t.get_text() for t in doc.figures["means_cpu_ptb_cpu.png"].axes[0].get_yticklabels()]
    assert labels == ["gal (n=2, +1 diverged)", "zaremba (n=3)"]


def test_a_friedman_test_that_does_not_reject_is_not_read_as_equal_ranks(registry):
    # two tasks, the same order on both: Friedman cannot reject with 2 blocks (p 0.135), and the
    # reading used to say "the ranks do not differ more than chance"
    for s in range(2):
        for task, base, sign in (("ptb", 100.0, -1), ("sst2", 80.0, 1)):
            for m, d in (("zaremba", 0.0), ("gal", 1.5), ("naive", 2.0)):
                results.write_row(registry, row(task, m, "cpu", s, base + sign * d + 0.1 * s))
    doc = Doc()
    section_ranks(doc, results.read_registry(registry))
    text = doc.text()
    assert ("Friedman's test does not reject equal mean ranks at α = 0.05 (p = 0.135): with 2 tasks as its "
            "blocks it has little power, so this is no evidence that the methods rank alike") in text
    assert "do not differ more than chance" not in text and "says little about" not in text
    assert "With 3 methods per pair a τ test has little power" in text


# --- lines of other configs in a results protocol (issue 34: rnndrop at a rate that trains) ---

def test_a_results_line_of_another_config_is_listed_under_its_table_outside_its_tests(registry):
    """rnndrop's default diverges on every seed; a plan's `set = { p_c = 0.02 }` line trains. The
    line is listed under the table with its own numbers and one unadjusted Welch test against
    zaremba, and stays out of the table, its family and section 2."""
    for s, (z, r) in enumerate(((95.0, 110.0), (96.0, 111.0), (95.5, 112.0))):
        results.write_row(registry, row("ptb", "zaremba", "cpu", s, z))
        results.write_row(registry, row("ptb", "none", "cpu", s, z + 20))
        results.write_row(registry, div(row("ptb", "rnndrop", "cpu", s, 1.0)))
        results.write_row(registry, row("ptb", "rnndrop", "cpu", s, r, p_c=0.02))
    df = results.read_registry(registry)
    text = report.build(df).text()
    assert "4 row(s) of these protocols ran a config other than their protocol's default" not in text
    assert "3 row(s) of these protocols ran a config other than their protocol's default: section 1 lists" in text
    part = text.split("### cpu · ptb · cpu")[1].split("## 2.")[0]
    table = part.split("*Other configs on this table:*")[0]
    assert re.search(r"\| rnndrop +\| — .*0 \(\+3 diverged\)", table)        # the default line: diverged
    assert "0.02" not in table and "111.00" not in table
    other = part.split("*Other configs on this table:*")[1]
    assert "3 row(s)" in other
    p = sps.ttest_ind([110.0, 111.0, 112.0], [95.0, 96.0, 95.5], equal_var=False).pvalue
    line = next(ln for ln in other.splitlines() if ln.startswith("- `rnndrop"))
    assert "[p_c=0.02]" in line and "3 finished seeds" in line and "mean 111.00 ± 1.00" in line
    assert "by seed s0 110.00, s1 111.00, s2 112.00" in line
    assert "Δ 15.50" in line and f"Welch p {fmt_p(p)}" in line and "(worse, unadjusted)" in line
    # section 2 ranks the default (diverged: the table's worst run), never the other config
    ranks = text.split("## 2.")[1].split("## 3.")[0]
    assert "0.02" not in ranks
    assert "conditioned on surviving" not in line           # no seed of this line diverged


def test_a_line_of_another_config_with_diverged_seeds_says_its_mean_is_over_survivors(registry):
    """WikiText-2's rnndrop [p_c=0.01] pattern (2 of 6 seeds survive), on PTB rows (the logic does
    not depend on the task): the survivors' mean alone would read as the line's result."""
    for s in range(3):
        results.write_row(registry, row("ptb", "zaremba", "cpu", s, 136.0 + s))
        results.write_row(registry, row("ptb", "none", "cpu", s, 157.0 + s))
    for s in range(6):
        r = row("ptb", "rnndrop", "cpu", s, 135.5 + 0.1 * s, p_c=0.01)
        results.write_row(registry, r if s in (1, 5) else div(r))
    text = report.build(results.read_registry(registry)).text()
    other = text.split("### cpu · ptb · cpu")[1].split("*Other configs on this table:*")[1]
    line = next(ln for ln in other.splitlines() if ln.startswith("- `rnndrop"))
    assert "2 finished seeds (+4 diverged)" in line
    assert "over the 2 of 6 seeds that did not diverge, so they are conditioned on surviving" in line
