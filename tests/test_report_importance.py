"""Issue 33, point 6: importance with uncertainty (a bootstrap of the settings: each parameter's
share with an interval, how often it is the top one), the design said plainly (one-at-a-time:
main effects only; random-search settings have one seed), diverged settings kept as the worst."""
from __future__ import annotations

import random
import re

import pytest

from bench import report, results
from bench.analysis import sweep_sections
from bench.analysis.sweep_sections import fanova, fanova_bootstrap, sweep_groups
from test_report import at_test_size, row


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    at_test_size(monkeypatch, boot=6, aggregates=50)


def random_search(registry, weight_c: float, n: int = 14, diverge: int | None = None):
    rng = random.Random(5)
    for i in range(n):
        zh, zc = round(rng.uniform(0, 0.5), 4), round(rng.uniform(0.0, 0.9), 4)
        r = row("ptb", "zoneout", "sweep", 0, 100, vloss=[5.0, 4.0 + weight_c * zc / 0.9 + (1 - weight_c) * zh / 0.5], z_h=zh, z_c=zc)
        if i == diverge:
            r = dict(r, status="diverged", test=float("nan"), valid=float("nan"))
        results.write_row(registry, r)


def test_the_share_gets_a_bootstrap_interval_and_a_top_frequency(registry):
    random_search(registry, 0.95)
    g = list(sweep_groups(results.read_registry(registry)))[0][4]
    ci, top = fanova_bootstrap(g, "zoneout", "sweep", "ptb")
    assert set(ci) == set(top) == {"z_h", "z_c"} and sum(top.values()) == pytest.approx(1.0)
    assert top["z_c"] == 1.0 and 0 <= ci["z_c"][0] <= ci["z_c"][1] <= 1 and ci["z_c"][0] > ci["z_h"][1]
    assert fanova_bootstrap(g, "zoneout", "sweep", "ptb") == (ci, top)            # seeded
    assert len({tuple(v) for v in fanova_bootstrap(g, "zoneout", "sweep", "ptb", resamples=2)[0].values()}) == 2
    text = report.build(results.read_registry(registry)).text()
    assert "over 6 bootstrap resamples of the settings" in text
    assert "Top in the resamples: z_c 100%." in text and "95% bootstrap interval [" in text
    assert re.search(r"^\| sweep · ptb · cpu \| zoneout +\| z_c +\| ", text, re.M)            # settled: no mark
    assert "averaged over seeds" not in text and "has one seed, so its value is that single run's" in text
    assert "main effects only" in text


def test_an_unsettled_top_parameter_is_said(registry):
    random_search(registry, 0.5)                                   # both rates move the loss alike
    text = report.build(results.read_registry(registry)).text()
    part = text.split("## 5.")[1]
    assert "which parameter matters most is not settled by these 14 settings" in part
    assert re.search(r"^\| sweep · ptb · cpu \| zoneout +\| z_[ch] \(not settled\) ", part, re.M)   # the summary too


def test_a_diverged_setting_enters_the_importance_as_the_worst(registry):
    random_search(registry, 0.95, diverge=3)
    df = results.read_registry(registry)
    g = list(sweep_groups(df))[0][4]
    imp, n, _, _ = fanova(g, "zoneout", "sweep", "ptb")
    assert n == 14 and imp is not None                             # 13 finished + the diverged one
    assert g[g["div"]].vloss.iloc[0] == g[~g["div"]].vloss.max()
    assert "| 14         | 1          | random search" in report.build(df).text()
