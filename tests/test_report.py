"""make report (bench/report.py, bench/analysis/): numbers against scipy and hand computations on
synthetic registries, every figure's series and labels, the Markdown's figure links, byte-identical
reruns, and the sections that say plainly what rows they lack."""
from __future__ import annotations

import json
import math
import random
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from bench import config as config_mod
from bench import plugins, report, results
from bench.analysis import select, stats
from bench.analysis.results_sections import compare, complete_block, far_seeds, pairwise
from bench.analysis import sweep_sections
from bench.analysis.sweep_sections import fanova, sensitivity, sweep_groups

REPO = Path(__file__).resolve().parent.parent


def cfg_of(task, method, protocol, **over):
    cell = {"cell": over["cell"]} if "cell" in over else {}        # a cell type's own defaults
    cfg = dict(config_mod.resolve(plugins.get_task(task), plugins.get_method(method), protocol, cell))
    cfg.update(over)
    return cfg


def row(task, method, protocol, seed, test, valid=None, curve=None, vloss=None, tag="", **over):
    """A full registry row of the protocol's config (default, or with `over` applied)."""
    cfg = cfg_of(task, method, protocol, **over)
    h = config_mod.config_hash(cfg)
    spec = plugins.get_task(task)
    metric = {"ptb": "ppl", "sst2": "accuracy", "sst5": "accuracy", "multi30k-de-en": "bleu"}[task]
    higher = metric != "ppl"
    curve = curve or [test * (1.3 if not higher else 0.8), test]
    vloss = vloss if vloss is not None else [5.0, 4.5]
    r = dict(schema_version=2, run_id=f"{task}.{method}.{protocol}.s{seed}.cpu.{h[:8]}{tag}", task=task,
             method=method, protocol=protocol, seed=seed, derived_seed=seed, status="ok", metric=metric,
             higher_is_better=higher, valid=valid if valid is not None else test, test=float(test),
             valid_metric="ppl" if task == "multi30k-de-en" else metric, metric_signature="",
             best_epoch=len(vloss), epochs=len(vloss), params=1000, wall_s=1.0, tokens_per_s=1.0,
             curve_train_loss=[5.0] * len(curve), curve_valid=[float(c) for c in curve],
             curve_valid_loss=[float(v) for v in vloss], curve_lr=[1.0] * len(curve),
             curve_wall_s=[1.0] * len(curve), probe_loss=[], device="cpu", device_name="cpu",
             cuda_version="", cpu_capability="AVX2", cpu_vendor="", cpu_model="", cpu_isa="", numerics="native",
             threads=2, rnn_path="fused", torch_version="2.13.0", lock_sha256="", git_commit="abc",
             git_dirty=False, plugin_sha256="", config_hash=h, config_json=json.dumps(cfg, sort_keys=True),
             finished_at="2026-01-01T00:00:00+00:00")
    assert spec.name == task
    return r


def at_test_size(monkeypatch, boot: int, aggregates: int, noise: int | None = None) -> None:
    """Clear the report's config caches and cut its bootstraps to test size (sweep importance,
    cross-task aggregates and, when given, the paired bootstrap over test examples)."""
    from bench.analysis import aggregate, testnoise
    for f in (select.default_hash, select.defaults, select.recipe):
        f.cache_clear()
    monkeypatch.setattr(sweep_sections, "BOOT_RESAMPLES", boot)
    monkeypatch.setattr(aggregate, "RESAMPLES", aggregates)
    if noise is not None:
        monkeypatch.setattr(testnoise, "RESAMPLES", noise)


@pytest.fixture(autouse=True)
def _fewer_resamples(monkeypatch):
    """The report's bootstraps at test size (the numbers are tested in tests/test_report_*.py)."""
    from bench.analysis import aggregate, testnoise
    monkeypatch.setattr(sweep_sections, "BOOT_RESAMPLES", 3)
    monkeypatch.setattr(aggregate, "RESAMPLES", 50)
    monkeypatch.setattr(testnoise, "RESAMPLES", 100)


ZAREMBA = [100.0, 101.0, 99.5]
GAL = [80.0, 80.8, 79.6]               # far below zaremba: better (ppl, lower is better)
NAIVE = [101.0, 99.5, 100.0]           # the same values as zaremba: no difference


@pytest.fixture
def sweep_protocol():
    """Fresh caches of the protocols' default configs around a test."""
    select.default_hash.cache_clear()
    select.defaults.cache_clear()
    select.recipe.cache_clear()
    yield
    select.default_hash.cache_clear()
    select.defaults.cache_clear()
    select.recipe.cache_clear()


def zoneout_loss(z_h, z_c):
    return 4.0 + 3.0 * (z_c - 0.4) ** 2 + 0.01 * z_h


@pytest.fixture
def full(tmp_path, sweep_protocol):
    """A registry with every section's rows: cpu tables on 4 tasks, sweeps, paper rows, smoke."""
    reg = tmp_path / "registry"
    rows = []
    for s, (z, g, n) in enumerate(zip(ZAREMBA, GAL, NAIVE)):
        rows += [row("ptb", "zaremba", "cpu", s, z, curve=[150 + s, 120, z]),
                 row("ptb", "gal", "cpu", s, g, curve=[140 + s, 90, g]),
                 row("ptb", "naive", "cpu", s, n, curve=[150 + s, 100, n])]
    rows.append(row("ptb", "none", "cpu", 0, 130.0, curve=[140, 120, 130]))      # one seed
    # other tasks: accuracy / BLEU, higher is better; gal best on every task, then zaremba, naive
    for task, base in (("sst2", 80.0), ("sst5", 40.0), ("multi30k-de-en", 30.0)):
        for s in range(2):
            rows += [row(task, "gal", "cpu", s, base + 2 + 0.1 * s), row(task, "zaremba", "cpu", s, base + 0.1 * s),
                     row(task, "naive", "cpu", s, base - 1 + 0.1 * s)]
    rows.append(row("sst2", "zaremba", "cpu", 5, 79.0, epochs=2, tag="x"))   # not the default: left out
    # sweep: one-at-a-time grids of zoneout's z_h and z_c (2 seeds), then a random search
    for s in range(2):
        for zh in (0.0, 0.05, 0.1, 0.2):
            rows.append(row("ptb", "zoneout", "sweep", s, 100, vloss=[5.0, zoneout_loss(zh, 0.5) + 0.01 * s], z_h=zh))
        for zc in (0.3, 0.7):
            rows.append(row("ptb", "zoneout", "sweep", s, 100, vloss=[5.0, zoneout_loss(0.05, zc) + 0.01 * s], z_c=zc))
    rng = random.Random(3)
    for i in range(24):
        zh, zc = round(rng.uniform(0, 0.3), 4), round(rng.uniform(0.1, 0.8), 4)
        rows.append(row("ptb", "zoneout", "sweep", 0, 100, vloss=[5.0, zoneout_loss(zh, zc)], z_h=zh, z_c=zc))
    rows += [row("ptb", "zaremba", "paper", s, 85.0 + s) for s in range(2)]
    rows.append(row("ptb", "zaremba", "smoke", 0, 900.0))
    for r in rows:
        results.write_row(reg, r)
    return reg


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 (m=3): 3*0.01=0.03, 2*0.03=0.06, max(0.06, 1*0.04)=0.06
    out = stats.holm([0.01, 0.04, 0.03, math.nan])
    assert out[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(out[3])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])       # capped at 1
    assert stats.holm([]) == []


def test_hedges_g_by_hand():
    # means 2 and 4, variances 1 and 1: s_p = 1, d = -2, g = -2 * (1 - 3 / (4*6 - 9)) = -1.6
    assert stats.hedges_g([1, 2, 3], [3, 4, 5]) == pytest.approx(-1.6)
    # unequal n: a=[1,3] (var 2), b=[2,2,5] (var 3): s_p = sqrt((2 + 6)/3), d = (2 - 3)/s_p
    sp = math.sqrt(8 / 3)
    assert stats.hedges_g([1, 3], [2, 2, 5]) == pytest.approx(-1 / sp * (1 - 3 / (4 * 5 - 9)))
    assert math.isnan(stats.hedges_g([1], [2, 3]))


def test_table_statistics_against_scipy(full):
    df = results.read_registry(full)
    chosen, _ = select.default_rows(df[df.protocol == "cpu"])
    res, higher = compare(chosen[chosen.task == "ptb"])
    by = {d["method"]: d for d in res}
    assert not higher and [d["method"] for d in res][0] == "gal"
    p_gal = sps.ttest_ind(GAL, ZAREMBA, equal_var=False).pvalue
    p_naive = sps.ttest_ind(NAIVE, ZAREMBA, equal_var=False).pvalue
    assert by["gal"]["p"] == pytest.approx(p_gal) and by["naive"]["p"] == pytest.approx(p_naive)
    assert by["gal"]["p_holm"] == pytest.approx(min(1, 2 * p_gal))
    assert by["naive"]["p_holm"] == pytest.approx(max(2 * p_gal, p_naive))
    assert by["gal"]["verdict"] == "better"                     # clearly separated: significant after Holm
    assert by["naive"]["verdict"] == "no clear difference"      # identical values: not significant
    assert by["none"]["verdict"] == "needs ≥ 2 seeds" and math.isnan(by["none"]["p"])
    assert by["gal"]["diff"] == pytest.approx(np.mean(GAL) - np.mean(ZAREMBA))
    assert by["gal"]["g"] == pytest.approx(stats.hedges_g(GAL, ZAREMBA)) and by["gal"]["g"] < -5
    s = by["zaremba"]["s"]
    half = sps.t.ppf(0.975, 2) * np.std(ZAREMBA, ddof=1) / math.sqrt(3)
    assert (s.n, s.lo, s.hi) == (3, pytest.approx(np.mean(ZAREMBA) - half), pytest.approx(np.mean(ZAREMBA) + half))


def test_every_pair_is_tested_with_holm_over_all_pairs(full):
    df = results.read_registry(full)
    chosen, _ = select.default_rows(df[df.protocol == "cpu"])
    order, pairs = pairwise(chosen[chosen.task == "ptb"])
    assert order == ["gal", "zaremba", "naive"] or order == ["gal", "naive", "zaremba"]
    assert "none" not in order                                          # one seed: not testable
    values = {"gal": GAL, "zaremba": ZAREMBA, "naive": NAIVE}
    raw = [sps.ttest_ind(values[d["a"]], values[d["b"]], equal_var=False).pvalue for d in pairs]
    assert [d["p"] for d in pairs] == pytest.approx(raw)
    assert [d["p_holm"] for d in pairs] == pytest.approx(stats.holm(raw))      # over all 3 pairs
    by = {frozenset((d["a"], d["b"])): d for d in pairs}
    for d in pairs:
        assert d["diff"] == pytest.approx(np.mean(values[d["a"]]) - np.mean(values[d["b"]]))
    assert by[frozenset(("gal", "zaremba"))]["a"] == "gal" and by[frozenset(("gal", "zaremba"))]["clear"]
    assert by[frozenset(("gal", "naive"))]["clear"]                     # clearly separated
    assert not by[frozenset(("zaremba", "naive"))]["clear"]             # identical values
    text = report.build(df).text()
    part = text.split("### cpu · ptb · cpu")[1].split("###")[0]
    assert "Every pair (3)" in part and "2 of the 3 pairs differ by more than seed noise" in part
    assert "`gal` over `zaremba`" in part and "`gal` over `naive`" in part
    a, b = [m for m in order if m != "gal"]
    assert f"The other gap, `{a}` against `{b}` (0.00), is within it." in part      # named, singular
    assert f"| **{np.mean(ZAREMBA) - np.mean(GAL):.2f}** |" in part     # row zaremba - column gal, bold


def test_ranks_and_friedman_against_scipy(full):
    doc = report.build(results.read_registry(full))
    text = doc.text()
    df = results.read_registry(full)
    chosen, _ = select.default_rows(df[df.protocol == "cpu"])
    means = chosen.groupby(["task", "method"]).test.mean().unstack("method")
    full_m, tasks_out, methods_out = complete_block(means)
    assert methods_out == ["none"] and not tasks_out                 # none ran on ptb only
    oriented = np.vstack([-full_m.loc[t].to_numpy() if t != "ptb" else full_m.loc[t].to_numpy()
                          for t in full_m.index])
    r = np.vstack([sps.rankdata(x) for x in oriented])
    mean_rank = dict(zip(full_m.columns, r.mean(axis=0)))
    # ptb: naive ties zaremba (the same values), ranks 2.5 each; elsewhere gal 1, zaremba 2, naive 3
    assert mean_rank == pytest.approx({"gal": 1.0, "naive": 2.875, "zaremba": 2.125})
    stat = sps.friedmanchisquare(*oriented.T).statistic
    assert f"Friedman χ² = {stat:.3f} over 4 tasks and 3 methods" in text
    assert re.search(r"^\| gal +\| 1\.00 +\| 1\.0 ", text, re.M)
    # the CD reading names methods as code, like every other reading (gal-zaremba 1.125 < CD 1.657)
    assert "`gal` ranks best (1.00) but is not told apart from `zaremba`." in text
    assert np.array_equal(stats.ranks(oriented, False), r)
    cd = stats.critical_difference(3, 4)
    assert cd == pytest.approx(2.343 * math.sqrt(3 * 4 / 24), rel=1e-3)      # Demsar's q_0.05 for k=3
    assert stats.cliques({"a": 1.0, "b": 1.5, "c": 3.0}, 1.0) == [["a", "b"]]
    # agreement across tasks: Kendall's W from Friedman's statistic, tau per pair of tasks (scipy)
    assert stats.kendall_w(stat, 4, 3) == pytest.approx(stat / (4 * 2))
    assert f"Kendall's W = {stat / 8:.3f}" in text
    tau = sps.kendalltau(r[list(full_m.index).index("ptb")], r[list(full_m.index).index("sst2")])
    assert stats.kendall_tau(r[list(full_m.index).index("ptb")], r[list(full_m.index).index("sst2")]) == \
        pytest.approx((tau.statistic, tau.pvalue))
    assert re.search(rf"^\| ptb · sst2 +\| {tau.statistic:.2f} ", text, re.M)


def test_agreement_names_tasks_that_order_alike_and_only_those():
    from bench.analysis.doc import Doc
    from bench.analysis.results_sections import agreement
    same = np.arange(1, 9, dtype=float)
    r = np.vstack([same, same, same[::-1]])                  # a, b alike; c the reverse
    stat = sps.friedmanchisquare(*r.T).statistic
    doc = Doc()
    agreement(doc, r, ["a", "b", "c"], stat)
    text = doc.text()
    sums = r.sum(axis=0)                                        # by hand: W = 12 S / (m^2 (k^3 - k))
    assert stats.kendall_w(stat, 3, 8) == pytest.approx(12 * ((sums - sums.mean()) ** 2).sum() / (9 * (8 ** 3 - 8)))
    assert "a and b (τ = 1.00)" in text                          # exact p 2/8! = 5e-5, Holm 1.5e-4
    assert "a and c" not in text and "b and c" not in text       # tau = -1: opposite, not alike
    assert re.search(r"^\| a · c +\| -1\.00 ", text, re.M)
    doc = Doc()
    agreement(doc, np.vstack([same, [3, 7, 1, 5, 8, 2, 6, 4]]), ["x", "y"], 0.0)      # tau 0.07, p 0.90
    assert "no pair of tasks orders the methods alike beyond chance" in doc.text()


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_figures_series_and_labels(full):
    doc = report.build(results.read_registry(full))
    figs = doc.figures
    assert sorted(figs) == sorted([
        "means_cpu_multi30k-de-en_cpu.png", "means_cpu_ptb_cpu.png", "means_cpu_sst2_cpu.png",
        "means_cpu_sst5_cpu.png", "cd_cpu.png", "curves_cpu_multi30k-de-en_cpu.png", "curves_cpu_ptb_cpu.png",
        "curves_cpu_sst2_cpu.png", "curves_cpu_sst5_cpu.png", "sweep_sweep_ptb_cpu_zoneout.png", "curves_sweep_ptb_cpu.png",
        "importance_sweep_ptb_cpu_zoneout.png", "means_paper_ptb_cpu.png", "curves_paper_ptb_cpu.png",
        "ranks_cpu_multi30k-de-en_cpu.png", "ranks_cpu_ptb_cpu.png", "ranks_cpu_sst2_cpu.png", "ranks_cpu_sst5_cpu.png",
        "evp_sweep_ptb_cpu.png"])
    ax = figs["means_cpu_ptb_cpu.png"].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["gal (n=3)", "naive (n=3)", "zaremba (n=3)", "none (n=1)"]
    assert len(ax.containers) == 4 and "test ppl (lower is better)" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["zaremba mean"]
    ax = figs["curves_cpu_ptb_cpu.png"].axes[0]
    assert [line.get_label() for line in ax.lines] == ["gal (n=3)", "naive (n=3)", "none (n=1)", "zaremba (n=3)"]
    assert list(ax.lines[0].get_ydata()) == pytest.approx([141, 90, np.mean(GAL)])
    assert len(ax.collections) == 3                          # bands for the three methods with 3 seeds
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "validation ppl"
    assert figs["curves_cpu_multi30k-de-en_cpu.png"].axes[0].get_ylabel() == "validation ppl"
    texts = _texts(figs["cd_cpu.png"].axes[0])
    assert "gal (1.00)" in texts and "zaremba (2.12)" in texts and "naive (2.88)" in texts
    assert any(t.startswith("CD = ") for t in texts)
    axes = figs["sweep_sweep_ptb_cpu_zoneout.png"].axes
    assert [a.get_xlabel() for a in axes] == ["z_h", "z_c"] and axes[0].get_ylabel() == "validation loss"
    assert list(axes[1].lines[0].get_xdata()) == [0.3, 0.5, 0.7]
    ax = figs["curves_sweep_ptb_cpu.png"].axes[0]         # the sweep scale's default configs
    assert ax.get_ylabel() == "validation ppl" and ax.lines
    text = doc.text()
    assert "### Scale of sweep · ptb · cpu" in text and "train_tokens=50000" in text
    assert "not those of the `cpu` or `paper` leaderboards" in text
    ax = figs["importance_sweep_ptb_cpu_zoneout.png"].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["z_h", "z_c"] and len(ax.patches) == 2
    assert ax.get_xlabel() == f"{sweep_sections.evaluator()[0]} importance (bars: 95% bootstrap interval)"


def test_sensitivity_and_importance(full):
    df = results.read_registry(full)
    g = list(sweep_groups(df))[0]
    assert g[:4] == ("sweep", "ptb", "cpu", "zoneout") and g[5] == "lstm"
    panels, note = sensitivity(g[4], "zoneout", "sweep", "ptb")
    assert note == "" and list(panels) == ["z_h", "z_c"]
    x, mean, lo, hi, ns, default = panels["z_c"][:6]
    assert x == [0.3, 0.5, 0.7] and ns == [2, 2, 2] and default == 0.5
    assert mean == pytest.approx([zoneout_loss(0.05, zc) + 0.005 for zc in x])
    assert hi[0] - lo[0] == pytest.approx(0.01)
    assert panels["z_h"][0] == [0.0, 0.05, 0.1, 0.2] and panels["z_h"][4] == [2, 2, 2, 2]
    imp, n, varying, one_at_a_time = fanova(g[4], "zoneout", "sweep", "ptb")
    assert not one_at_a_time                             # the random search varies both
    assert varying == ["z_h", "z_c"] and n == 24 + 6           # random draws + the distinct grid points
    assert imp["z_c"] > 0.8 and imp["z_c"] + imp["z_h"] == pytest.approx(1.0)
    text = report.build(df).text()
    assert "for zoneout on ptb, z_c matters most" in text
    assert re.search(rf"^\| sweep · ptb · cpu +\| zoneout +\| z_c +\| {imp['z_c']:.2f} \[[0-9.]+, [0-9.]+\] +\| \d+% +"
                     rf"\| z_h {imp['z_h']:.2f} +\| 30 +\| 0 +\| random search +\| no ", text, re.M)   # section 5's summary
    assert "the validation loss moves most with z_c" in text
    assert "No sweep rows yet for multi30k-de-en, sst2." in text


def test_without_scikit_learn_the_stand_in_is_named(full, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)             # import sklearn -> ImportError
    assert sweep_sections.evaluator()[0] == "PED-ANOVA"
    text = report.build(results.read_registry(full)).text()
    assert "**fANOVA is not available here:** optuna's fANOVA evaluator needs scikit-learn" in text
    assert "for zoneout on ptb, z_c matters most (PED-ANOVA importance" in text


def test_fanova_with_scikit_learn(full):
    pytest.importorskip("sklearn")
    name, _, ev = sweep_sections.evaluator()
    assert name == "fANOVA" and type(ev).__name__ == "FanovaImportanceEvaluator"
    g = list(sweep_groups(results.read_registry(full)))[0][4]
    first = fanova(g, "zoneout", "sweep", "ptb")
    assert first == fanova(g, "zoneout", "sweep", "ptb")          # seeded: the same numbers every time
    assert first[0]["z_c"] > 0.8


def test_dropout_params_of_each_method():
    assert select.dropout_params("zoneout") == ["z_h", "z_c", "p_emb", "p_hid", "p_out"]
    assert "p_weight" in select.dropout_params("awd")
    assert select.dropout_params("fraternal")[0] == "kappa" and "p_weight" in select.dropout_params("fraternal")
    assert select.dropout_params("curriculum") == ["gamma", "p_emb", "p_hid", "p_out"]
    assert select.dropout_params("none") == []


def test_published_and_notes(full):
    text = report.build(results.read_registry(full)).text()
    line = [ln for ln in text.splitlines() if ln.startswith("| paper ")][0]
    assert "| 85.50 ± 0.71 " in line and "| 82.70 " in line and "| 2.80 " in line and "Zaremba et al. 2014" in line
    assert "Sections 1–3 leave out the `smoke` protocol (1 rows)" in text
    assert "1 row(s) of these protocols ran a config other than" in text
    assert "900.00" not in text                                   # the smoke row is not in the tables


def test_markdown_references_every_figure_and_rerun_is_byte_identical(full, tmp_path):
    out = tmp_path / "out"
    md = report.write(full, out)
    text = md.read_text()
    files = sorted(p.name for p in (out / "figures").glob("*.png"))
    linked = re.findall(r"!\[[^\]]*\]\(figures/([^)]+)\)", text)
    assert sorted(linked) == files and len(files) == 19
    lines = text.splitlines()
    for i, ln in enumerate(lines):                               # each figure has its reading beside it
        if ln.startswith("!["):
            assert lines[i + 2].startswith("*Reading:* ")
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "figures" / "stale.png").write_bytes(b"old")
    assert report.main(["--registry", str(full), "--out", str(out)]) == 0
    after = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before                                       # same bytes, the stale figure gone


def test_sections_say_what_they_lack(registry, tmp_path):
    results.write_row(registry, row("ptb", "zaremba", "smoke", 0, 900.0))
    results.write_row(registry, row("ptb", "gal", "smoke", 0, 800.0))
    text = report.build(results.read_registry(registry)).text()
    assert text.count("**No rows yet.**") == 3 and "`sweep*` protocol" in text and "PLAN=gpu" in text
    assert "No rows: this section needs finished runs" in text
    smoke = report.build(results.read_registry(registry), include_smoke=True)
    assert "### smoke · ptb · cpu — test ppl (lower is better)" in smoke.text()
    assert "needs ≥ 2 seeds" in smoke.text() and "Needs ≥ 3 methods on ≥ 2 tasks" in smoke.text()
    assert sorted(smoke.figures) == ["curves_smoke_ptb_cpu.png", "means_smoke_ptb_cpu.png", "ranks_smoke_ptb_cpu.png"]
    empty = report.build(results.read_registry(tmp_path / "nothing")).text()
    assert "The registry holds 0 run(s)" in empty


def test_makefile_has_a_report_target():
    mk = (REPO / "Makefile").read_text()
    assert re.search(r"^report: install\n\t\$\(PY\) -m bench.report", mk, re.M)
    assert "make report " in mk


def test_devices_are_never_pooled_and_undefined_sweep_protocols_are_said(registry):
    for s in range(2):
        results.write_row(registry, row("ptb", "zaremba", "cpu", s, 100.0 + s))
        results.write_row(registry, dict(row("ptb", "zaremba", "cpu", s, 90.0 + s, tag="g"), device="cuda"))
        for zc in (0.3, 0.5, 0.7):           # a `sweep` protocol this checkout does not define
            r = row("ptb", "zoneout", "cpu", s, 100.0, vloss=[5.0, 4.0 + zc + 0.01 * s], z_c=zc)
            results.write_row(registry, dict(r, protocol="sweep-gone", run_id=r["run_id"] + ".sweep"))
    text = report.build(results.read_registry(registry)).text()
    assert "### cpu · ptb · cpu — test ppl" in text and "### cpu · ptb · cuda — test ppl" in text
    assert "| zaremba  | 100.50 |" in text and "| zaremba  | 90.50  |" in text
    assert "protocol 'sweep-gone' does not resolve for ptb · zoneout here" in text
    assert ("sweep-gone · ptb · zoneout: the protocol's default config cannot be resolved and its rows have "
            "3 configs; left out. (Section 2's ranking of the sweeps' default points.)") in text
    assert ("the validation loss moves most with z_c (by 0.400 across its values; two seeds of one setting "
            "differ by up to 0.010)") in text and "not told apart from noise" not in text


def test_across_tasks_each_task_is_ranked_on_the_device_with_the_most_methods(registry):
    # ptb: three methods on cuda, one on the cpu (which would rank it alone); sst2 and sst5 on the cpu
    for s in range(2):
        for m, v in (("gal", 80.0), ("zaremba", 90.0), ("naive", 100.0)):
            results.write_row(registry, dict(row("ptb", m, "cpu", s, v + s, tag="g"), device="cuda"))
        results.write_row(registry, row("ptb", "naive", "cpu", s, 70.0 + s))      # best, but alone
        for task, base in (("sst2", 80.0), ("sst5", 40.0)):
            for m, d in (("gal", 2.0), ("zaremba", 1.0), ("naive", 0.0)):
                results.write_row(registry, row(task, m, "cpu", s, base + d + 0.1 * s))
    text = report.build(results.read_registry(registry)).text()
    part = text.split("## 2. Across tasks")[1].split("## 3.")[0]
    assert "ptb from cuda, sst2 from cpu, sst5 from cpu; not used: ptb on cpu (1 method)." in part
    assert "| method   | mean rank   | rank on ptb (cuda)   | rank on sst2 (cpu)   | rank on sst5 (cpu)   |" in part
    assert re.search(r"^\| gal +\| 1\.00 +\| 1\.0 ", part, re.M)         # the cpu naive row did not enter
    assert "over 3 tasks and 3 methods" in part and "cd_cpu.png" in part
    assert "### cpu · ptb · cpu" in text and "### cpu · ptb · cuda" in text     # section 1 keeps both
    # every mean here rests on 2 seeds: said, task by task; a third seed of one cell drops it from the list
    assert ("Ranks resting on fewer than 3 seeds (a mean of 1 or 2 runs moves by about a seed's spread): "
            "ptb: gal (2), naive (2), zaremba (2); sst2: gal (2), naive (2), zaremba (2); sst5: gal (2), "
            "naive (2), zaremba (2).") in part
    results.write_row(registry, dict(row("ptb", "gal", "cpu", 2, 80.5, tag="g"), device="cuda"))
    part = report.build(results.read_registry(registry)).text().split("## 2. Across tasks")[1]
    assert "ptb: naive (2), zaremba (2); sst2:" in part


ORDER = ("gal", "zaremba", "naive", "semeniuta", "zoneout", "none")    # best first


def test_sweep_defaults_are_ranked_too_and_each_task_compared_across_protocols(registry, sweep_protocol):
    # sst2: the same order on cpu and at the sweep scale; ptb: the sweep's order only; sst5: cpu only
    for s in range(2):
        for i, m in enumerate(ORDER):
            results.write_row(registry, row("sst2", m, "cpu", s, 85.0 - i + 0.1 * s))
            results.write_row(registry, row("sst5", m, "cpu", s, 45.0 - i + 0.1 * s))
            results.write_row(registry, row("sst2", m, "sweep", s, 75.0 - i + 0.1 * s))
            results.write_row(registry, row("ptb", m, "sweep", s, 300.0 + 10 * i + s))
        results.write_row(registry, row("ptb", "gal", "sweep", s, 10.0, p_word=0.3))    # a sweep point
    df = results.read_registry(registry)
    doc = report.build(df)
    part = doc.text().split("## 2. Across tasks")[1].split("## 3.")[0]
    sweep = part.split("### sweep")[1].split("### From one protocol")[0]
    assert "rows at each method's default rates" in sweep and "not the leaderboard's" in sweep
    assert "over 2 tasks and 6 methods" in sweep and re.search(r"^\| gal +\| 1\.00 +\| 1\.0 +\| 1\.0 ", sweep, re.M)
    assert "cd_sweep.png" in doc.figures
    tau, p = stats.kendall_tau(np.arange(6.0), np.arange(6.0))
    assert (tau, p) == pytest.approx((1.0, 2 / math.factorial(6)))             # exact: 2 of 6! orders
    assert re.search(r"^\| sst2 +\| cpu · sweep +\| 6 +\| 1\.00 ", part, re.M)
    assert "ptb" not in part.split("### From one protocol")[1].split("*Reading:*")[0].split("Holm p")[1]
    assert "the order carries over for sst2 (cpu · sweep, τ = 1.00)." in part
    # reversed at the sweep scale: no task keeps its order
    for f in (registry / "sst2").rglob("*.sweep.*.parquet"):
        f.unlink()
    for s in range(2):
        for i, m in enumerate(ORDER):
            results.write_row(registry, row("sst2", m, "sweep", s, 70.0 + i + 0.1 * s))
    part = report.build(results.read_registry(registry)).text().split("## 2. Across tasks")[1]
    assert re.search(r"^\| sst2 +\| cpu · sweep +\| 6 +\| -1\.00 ", part, re.M)
    assert "no task keeps its order from one protocol to the other beyond chance" in part


def test_readings_name_the_none_baseline_as_code_not_as_the_word_none(registry, sweep_protocol):
    # `none` (no noise) clearly worse than zaremba: the reading used to say "none are clearly better
    # and none clearly worse", which reads as "no method is worse", the opposite of the table
    for s, z in enumerate(ZAREMBA):
        results.write_row(registry, row("ptb", "zaremba", "cpu", s, z, curve=[150 + s, 120, z]))
        results.write_row(registry, row("ptb", "none", "cpu", s, z + 30, curve=[140 + s, 120, z + 30]))
    text = report.build(results.read_registry(registry)).text()
    assert "of the 1 method tested against `zaremba`, no method is clearly better and `none` is clearly worse" in text
    assert "`zaremba` over `none`" in text and "`none` peaked before the last epoch" in text
    assert "none are clearly" not in text and "none clearly" not in text
    # one pair: counted in the singular, and no Holm adjustment over "all 1 pairs"
    assert "*Reading:* the one pair differs by more than seed noise: `zaremba` over `none`" in text
    assert "(one pair, so no adjustment)" in text
    assert not re.search(r"\b1 pairs|\b1 methods|other 0 gaps|1 of the 1\b", text)


def test_a_seed_far_from_its_methods_others_is_named_and_every_seed_is_listed(registry, sweep_protocol):
    # gal's seed 2 (as on Multi30k `cpu`: 26.0 BLEU beside 35.0 and 35.4) carries gal's mean
    # and std: the reading names it; seeds within ordinary noise (naive's, zaremba's) are not named
    outlier = [80.0, 80.8, 110.0]
    for s in range(3):
        results.write_row(registry, row("ptb", "zaremba", "cpu", s, ZAREMBA[s]))
        results.write_row(registry, row("ptb", "naive", "cpu", s, NAIVE[s]))
        results.write_row(registry, row("ptb", "gal", "cpu", s, outlier[s]))
    df = results.read_registry(registry)
    res, _ = compare(df)
    far = far_seeds(res)
    pooled = math.sqrt((np.var(ZAREMBA, ddof=1) + np.var(NAIVE, ddof=1)) / 2)
    assert [(f["method"], f["seed"]) for f in far] == [("gal", 2)]
    assert far[0]["median"] == pytest.approx(80.8) and far[0]["ratio"] == pytest.approx(29.2 / pooled)
    part = report.build(df).text().split("### cpu · ptb · cpu")[1].split("###")[0]
    assert "*A seed far from the rest:* `gal` seed 2 (110.00; the median of its seeds 80.80, " in part
    assert re.search(r"\| s0 80\.00, s1 80\.80, s2 110\.00 +\|", part)
    assert re.search(r"\| s0 100\.00, s1 101\.00, s2 99\.50 +\|", part)
    # the same table without the outlier names nothing
    assert far_seeds([d if d["method"] != "gal" else {**d, "seeds": [(0, 80.0), (1, 80.8), (2, 79.6)]}
                      for d in res]) == []


def test_one_at_a_time_points_give_main_effects_and_none_only_draws_the_scale(registry, sweep_protocol):
    for s in range(2):
        results.write_row(registry, row("sst2", "none", "sweep", s, 70.0, curve=[65, 72, 71], vloss=[0.6, 0.55, 0.62]))
    for p_cell in (0.0, 0.1, 0.4, 0.6):
        results.write_row(registry, row("sst2", "semeniuta", "sweep", 0, 75.0, vloss=[0.6, 0.5 + p_cell], p_cell=p_cell))
    for p_out in (0.0, 0.1, 0.4):
        results.write_row(registry, row("sst2", "semeniuta", "sweep", 0, 75.0, vloss=[0.6, 0.5 + p_out / 10], p_out=p_out))
    df = results.read_registry(registry)
    assert [g[3] for g in sweep_groups(df)] == ["semeniuta"]          # none has no rate to sweep
    imp, n, varying, one_at_a_time = fanova(list(sweep_groups(df))[0][4], "semeniuta", "sweep", "sst2")
    assert one_at_a_time and imp["p_cell"] > imp["p_out"]
    doc = report.build(df)
    text = doc.text()
    assert "### sweep · sst2 · cpu · none" not in text
    assert "main effects only, without interactions" in text
    assert "curves_sweep_sst2_cpu.png" in doc.figures and "`none` peaked before the last epoch" in text


def test_a_sweep_of_one_parameter_gets_no_importance_only_its_sensitivity(registry, sweep_protocol):
    # Multi30k's sweep varies each method's main rate only: fANOVA would give it all of the share
    for z_c in (0.0, 0.1, 0.2, 0.3, 0.5, 0.7):
        results.write_row(registry, row("multi30k-de-en", "zoneout", "sweep", 0, 30.0,
                                        vloss=[3.0, 2.0 + (z_c - 0.3) ** 2], z_c=z_c))
    df = results.read_registry(registry)
    imp, n, varying, _ = fanova(list(sweep_groups(df))[0][4], "zoneout", "sweep", "multi30k-de-en")
    assert imp is None and n == 6 and varying == ["z_c"]
    doc = report.build(df)
    text = doc.text()
    assert "Only z_c varies here (6 settings): with one parameter there is no share to split" in text
    assert not [f for f in doc.figures if f.startswith("importance_")]
    assert "sweep_sweep_multi30k-de-en_cpu_zoneout.png" in doc.figures            # section 4 still has it
    assert "The parameter that matters most, per method" not in text              # nothing to summarise


def test_a_gru_sweep_is_its_own_group_and_rows_of_another_recipe_are_left_out(registry, sweep_protocol):
    for s in range(2):
        for zh in (0.0, 0.1, 0.3):
            results.write_row(registry, row("ptb", "zoneout", "sweep", s, 100, vloss=[5.0, 4.0 + zh + 0.01 * s], z_h=zh))
            results.write_row(registry, row("ptb", "zoneout", "sweep", s, 100, vloss=[7.0, 6.0 - zh], z_h=zh, cell="gru"))
        results.write_row(registry, row("ptb", "zoneout", "sweep", s, 100, vloss=[5.0, 1.0], z_h=0.2, lr=0.5))
    groups = list(sweep_groups(results.read_registry(registry)))
    assert [(g[3], g[5], len(g[4])) for g in groups] == [("zoneout", "gru", 6), ("zoneout", "lstm", 6)]
    gru, lstm = groups
    assert set(gru[4].cfg.map(lambda c: c["z_c"])) == {0.0}                 # the GRU's own default z_c
    panels, _ = sensitivity(gru[4], "zoneout", "sweep", "ptb", "gru")
    assert panels["z_h"][0] == [0.0, 0.1, 0.3] and panels["z_h"][1] == pytest.approx([6.0, 5.9, 5.7])
    panels, _ = sensitivity(lstm[4], "zoneout", "sweep", "ptb")
    assert panels["z_h"][0] == [0.0, 0.1, 0.3] and 0.2 not in panels["z_h"][0]    # lr=0.5's row left out
    doc = report.build(results.read_registry(registry))
    assert "### sweep · ptb · cpu · gru · zoneout" in doc.text() and "### sweep · ptb · cpu · zoneout" in doc.text()
    assert {"sweep_sweep_ptb_cpu_gru_zoneout.png", "sweep_sweep_ptb_cpu_zoneout.png"} <= set(doc.figures)


def test_the_sweep_reads_the_best_validation_loss_and_says_when_a_swing_is_seed_noise(registry, sweep_protocol):
    from types import SimpleNamespace
    assert select.valid_loss(SimpleNamespace(curve_valid_loss=[0.7, 0.55, 1.4, math.nan], best_epoch=3)) == 0.55
    assert math.isnan(select.valid_loss(SimpleNamespace(curve_valid_loss=None, best_epoch=1)))
    for s in range(2):                       # p_cell moves the loss by 0.02, two seeds differ by 0.1
        for p_cell in (0.0, 0.25, 0.5):
            results.write_row(registry, row("sst2", "semeniuta", "sweep", s, 75.0,
                                            vloss=[0.9, 0.5 + 0.1 * s + 0.04 * p_cell, 1.3], p_cell=p_cell))
    text = report.build(results.read_registry(registry)).text()
    assert ("moves most with p_cell (by 0.020 across its values; two seeds of one setting differ by up to "
            "0.100)") in text
    assert "Every swing is within that seed spread: these best values are not told apart from noise." in text
    for p_out in (0.0, 0.2, 0.4):            # enough settings for an importance, all within the noise
        results.write_row(registry, row("sst2", "semeniuta", "sweep", 0, 75.0, vloss=[0.9, 0.51 + 0.01 * p_out],
                                        p_out=p_out))
    text = report.build(results.read_registry(registry)).text()
    assert "this split may be seed noise" in text and "(0.100): this split" in text


def test_stored_values_compare_across_json_lists_and_config_tuples():
    assert select.same([1, 0.5], (1.0, 0.5)) and not select.same([1, 0.5], (1.0, 0.6))
    assert select.same_recipe({"lr": 1, "sizes": [2, 3]}, {"lr": 1.0, "sizes": (2, 3), "absent": 1})
    assert not select.same_recipe({"lr": 0.5}, {"lr": 1.0})


def test_a_best_result_from_one_seed_is_not_called_a_mean(registry):
    # WikiText-2 `cpu` once read "`naive` has the best mean test ppl (133.14)" from one naive seed
    # beside three of zaremba: a single run is named as such, then the best mean of >= 2 seeds
    for s, z in enumerate(ZAREMBA):
        results.write_row(registry, row("ptb", "zaremba", "cpu", s, z, curve=[150 + s, 120, z]))
    results.write_row(registry, row("ptb", "naive", "cpu", 0, 90.0, curve=[140, 110, 90.0]))
    part = report.build(results.read_registry(registry)).text().split("### cpu · ptb · cpu")[1].split("###")[0]
    zmean = f"{np.mean(ZAREMBA):.2f}"
    assert ("`naive` has the best test ppl (90.00), from one seed: not yet a mean; of the methods with "
            f"≥ 2 seeds `zaremba` has the best mean ({zmean}, 3 seeds)") in part
    assert "has the best mean test ppl" not in part
    curves = report.build(results.read_registry(registry)).text().split("validation ppl per epoch")[1]
    assert "after the last epoch `naive` has the best validation ppl (90.00, one seed)" in curves
    assert "`naive` (one seed) leads at the last one" in curves
    # with a second seed it is a mean, and the seed count is said
    results.write_row(registry, row("ptb", "naive", "cpu", 1, 91.0, curve=[141, 111, 91.0]))
    text = report.build(results.read_registry(registry)).text()
    assert "`naive` has the best mean test ppl (90.50, 2 seeds);" in text
    assert "after the last epoch `naive` has the best mean validation ppl (90.50, 2 seeds)" in text
