import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from bench import config, consistency, leaderboard, plugins, results
from bench.errors import UsageError
from test_registry import make_row

GOLDEN = Path(__file__).parent / "golden" / "LEADERBOARD.md"
H200 = dict(device="cuda", device_name="NVIDIA H200", cuda_version="12.8")
H100 = dict(device="cuda", device_name="NVIDIA H100", cuda_version="12.8")


def default_cfg(method="zaremba", protocol="paper", task="ptb", **overrides) -> dict:
    """The protocol's resolved config (as the runner records it), with `overrides` on top."""
    cfg = dict(config.resolve(plugins.get_task(task), plugins.get_method(method), protocol, {}))
    cfg.update(overrides)
    return cfg


def cfg_row(run_id, cfg, **kw):
    """A registry row that ran `cfg` (its hash and JSON as the runner writes them)."""
    return make_row(run_id, config_hash=config.config_hash(cfg), config_json=json.dumps(cfg, sort_keys=True), **kw)


def board(registry, rows) -> str:
    for r in rows:
        results.write_row(registry, r)
    return leaderboard.render(results.read_registry(registry))


def table(text, heading) -> list[dict]:
    """The rows of the table under '## <heading>' as {header: cell}."""
    section = text.split(f"## {heading}\n")[1].split("\n## ")[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return [dict(zip(cells[0], row)) for row in cells[2:]]


def notes(text, heading) -> list[str]:
    section = text.split(f"## {heading}\n")[1].split("\n## ")[0]
    return [ln[2:] for ln in section.splitlines() if ln.startswith("- ")]


def line(text, heading, method) -> dict:
    hits = [r for r in table(text, heading) if r["method"] == method]
    assert len(hits) == 1, (method, table(text, heading))
    return hits[0]


PAPER_PTB = "paper · ptb · LSTM · CPU · test ppl (lower is better)"


def fill(registry):
    base, lr05 = default_cfg(), default_cfg(lr=0.5)
    gal = default_cfg("gal")
    rows = [
        cfg_row("a", base, seed=0, test=84.0, valid=88.0, protocol="paper", rnn_path="fused", **H200),
        cfg_row("b", base, seed=1, test=83.0, valid=87.0, protocol="paper", rnn_path="fused", **H200),
        cfg_row("b2", base, seed=2, test=83.25, valid=87.5, protocol="paper", rnn_path="fused", **H200),
        cfg_row("b3", base, seed=0, test=85.0, valid=89.0, protocol="paper", rnn_path="fast",
                cpu_model="AMD EPYC 7763", numerics="portable"),
        cfg_row("b4", lr05, seed=0, test=90.0, valid=94.0, protocol="paper", rnn_path="fast", **H200),
        cfg_row("b5", lr05, seed=1, test=91.0, valid=95.0, protocol="paper", rnn_path="fast", **H100,
                git_commit="def4567890", git_dirty=True),
        cfg_row("c", gal, method="gal", seed=0, test=80.25, valid=84.0, protocol="paper", rnn_path="cell"),
        make_row("d", method="naive", seed=0, test=150.0, valid=160.0, params=1200),
        make_row("e", method="naive", seed=1, status="diverged", test=float("nan"), valid=float("nan")),
        make_row("f", method="zaremba", seed=0, test=120.0, valid=130.0),
        make_row("g", task="sst2", method="zaremba", metric="accuracy", higher_is_better=True,
                 valid_metric="accuracy", test=0.80, valid=0.79),
        make_row("h", task="sst2", method="gal", metric="accuracy", higher_is_better=True,
                 valid_metric="accuracy", test=0.82, valid=0.80),
        cfg_row("i", default_cfg(cell="gru"), seed=0, test=95.0, valid=99.0, protocol="paper", rnn_path="fused"),
    ]
    for r in rows:
        results.write_row(registry, r)


def test_leaderboard_matches_golden_file(registry, tmp_path):
    fill(registry)
    out = leaderboard.write(registry, tmp_path / "LB.md")
    text = out.read_text()
    if os.environ.get("UPDATE_GOLDEN"):                      # regenerate on purpose, then review the diff
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "leaderboard format changed: UPDATE_GOLDEN=1 pytest, review, commit"


def test_rerun_is_byte_identical_and_independent_of_row_order(registry, tmp_path):
    fill(registry)
    first = leaderboard.write(registry, tmp_path / "LB.md").read_bytes()
    assert leaderboard.write(registry, tmp_path / "LB2.md").read_bytes() == first
    df = results.read_registry(registry)
    for seed in range(3):
        assert leaderboard.render(df.sample(frac=1, random_state=seed)).encode() == first


def test_two_configs_of_one_method_are_two_lines_naming_the_differing_key(registry):
    base, lr05 = default_cfg(), default_cfg(lr=0.5)
    text = board(registry, [cfg_row("a", base, protocol="paper", seed=0, test=84.0),
                            cfg_row("b", base, protocol="paper", seed=1, test=83.0),
                            cfg_row("c", lr05, protocol="paper", seed=0, test=90.0)])
    assert [r["method"] for r in table(text, PAPER_PTB)] == ["zaremba [lr=1.0]", "zaremba [lr=0.5]"]
    default, other = line(text, PAPER_PTB, "zaremba [lr=1.0]"), line(text, PAPER_PTB, "zaremba [lr=0.5]")
    assert default["test ppl"] == "83.50 ± 0.71" and default["n"] == "2"
    assert other["test ppl"] == "90.00 ± —" and other["n"] == "1"
    # the published number and Δ belong to the protocol's default config only
    assert (default["published"], default["Δ"]) == ("82.70", "0.80")
    assert (other["published"], other["Δ"]) == ("", "")


def test_config_labels_name_missing_keys_and_fall_back_to_the_hash():
    df = pd.DataFrame([make_row("a", config_hash="aa" * 8, config_json='{"lr": 1.0, "bptt": 35}'),
                       make_row("b", config_hash="bb" * 8, config_json='{"lr": 1.0}')])
    assert leaderboard.config_labels(df) == {"aa" * 8: " [bptt=35]", "bb" * 8: " [bptt=—]"}
    legacy = pd.DataFrame([make_row("a", config_hash="aa" * 8), make_row("b", config_hash="bb" * 8)])
    assert leaderboard.config_labels(legacy) == {"aa" * 8: " [config=aaaaaaaa]", "bb" * 8: " [config=bbbbbbbb]"}
    assert leaderboard.config_labels(legacy.iloc[:1]) == {"aa" * 8: ""}


def test_cpu_and_cuda_runs_of_one_config_are_separate_tables(registry):
    # never ranked beside each other: REPORT.md keeps devices apart, and so does the leaderboard
    base = default_cfg()
    text = board(registry, [cfg_row("a", base, protocol="paper", test=84.0, **H200),
                            cfg_row("b", base, protocol="paper", seed=1, test=86.0)])
    gpu = table(text, PAPER_PTB.replace("· CPU ·", "· CUDA ·"))
    cpu = table(text, PAPER_PTB)
    assert [(r["method"], r["test ppl"], r["n"], r["hardware"]) for r in gpu] == [
        ("zaremba", "84.00 ± —", "1", "NVIDIA H200 (CUDA 12.8)")]
    assert [(r["method"], r["test ppl"], r["n"], r["hardware"]) for r in cpu] == [
        ("zaremba", "86.00 ± —", "1", "CPU (AVX2, 2 threads)")]
    assert all(r["published"] == "82.70" for r in gpu + cpu)      # both ran the default config
    assert text.index("· CPU · test") < text.index("· CUDA · test")


def test_each_cell_type_has_its_own_table_named_in_the_title(registry):
    """GRU rows never share a table (or a mean) with LSTM rows; a row without `cell` in its stored
    config (made before the key existed) is an LSTM row; published numbers are LSTM recipes'."""
    base, gru = default_cfg(), default_cfg(cell="gru")
    legacy = {k: v for k, v in base.items() if k != "cell"}
    text = board(registry, [cfg_row("a", base, protocol="paper", test=84.0),
                            cfg_row("b", legacy, protocol="paper", seed=1, test=86.0),
                            cfg_row("c", gru, protocol="paper", test=95.0)])
    assert config.config_hash(base) == config.config_hash(legacy) != config.config_hash(gru)
    assert [r["n"] for r in table(text, PAPER_PTB)] == ["2"]
    [g] = table(text, "paper · ptb · GRU · CPU · test ppl (lower is better)")
    assert (g["method"], g["test ppl"], g["published"], g["Δ"]) == ("zaremba", "95.00 ± —", "", "")
    assert text.index("· ptb · LSTM ·") < text.index("· ptb · GRU ·")


def test_ci_is_students_t_interval(registry):
    sample = [80.0, 83.5, 84.25, 81.0]
    s = pd.Series(sample)
    lo, hi = stats.t.interval(0.95, len(sample) - 1, loc=s.mean(), scale=s.std(ddof=1) / math.sqrt(len(sample)))
    assert leaderboard.ci95(sample) == pytest.approx((lo, hi), rel=1e-12)
    assert all(math.isnan(x) for x in leaderboard.ci95([80.0]))
    text = board(registry, [make_row(f"r{i}", seed=i, test=t) for i, t in enumerate(sample)]
                 + [make_row("one", method="gal", test=90.0)])
    heading = "smoke · ptb · LSTM · CPU · test ppl (lower is better)"
    assert line(text, heading, "zaremba")["95% CI"] == f"[{lo:.2f}, {hi:.2f}]" == "[78.98, 85.39]"
    assert line(text, heading, "gal")["95% CI"] == "—"                 # one seed: no interval


def test_n_counts_finished_seeds_and_names_diverged_ones(registry):
    text = board(registry, [make_row("a", seed=0, test=100.0), make_row("b", seed=1, test=102.0),
                            make_row("c", seed=2, test=104.0),
                            make_row("d", seed=3, status="diverged", test=float("nan"), valid=float("nan"))])
    z = line(text, "smoke · ptb · LSTM · CPU · test ppl (lower is better)", "zaremba")
    assert z["n"] == "3 (+1 diverged)" and z["test ppl"] == "102.00 ± 2.00"


def test_mixed_groups_are_marked_with_footnotes(registry):
    heading = "smoke · ptb · LSTM · CUDA · test ppl (lower is better)"
    text = board(registry, [
        make_row("a1", method="zaremba", seed=0, test=100.0, **H200),
        make_row("a2", method="zaremba", seed=1, test=101.0, **H100),               # two GPU models
        make_row("b1", method="gal", seed=0, test=102.0, git_commit="abc123", **H200),
        make_row("b2", method="gal", seed=1, test=103.0, git_commit="def456", **H200),  # two commits
        make_row("c1", method="naive", seed=0, test=104.0, git_dirty=True, **H200),     # a dirty tree
        make_row("d1", method="zoneout", seed=0, test=105.0, **H200),                   # clean
    ])
    assert [r["method"] for r in table(text, heading)] == ["zaremba †", "gal ‡", "naive §", "zoneout"]
    assert line(text, heading, "zaremba †")["hardware"] == "NVIDIA H100 (CUDA 12.8); NVIDIA H200 (CUDA 12.8)"
    assert line(text, heading, "gal ‡")["commit"] == "abc123, def456"
    assert notes(text, heading) == [f"{mark} {why}" for mark, why in leaderboard.MARKS.values()]


def test_marks_combine_and_footnotes_list_only_those_used(registry):
    heading = "smoke · ptb · LSTM · CPU · test ppl (lower is better)"
    text = board(registry, [make_row("a", seed=0, test=100.0, git_commit="abc123"),
                            make_row("b", seed=1, test=101.0, git_commit="def456", git_dirty=True),
                            make_row("c", method="gal", seed=0, test=102.0)])
    assert [r["method"] for r in table(text, heading)] == ["zaremba ‡§", "gal"]
    assert [n[0] for n in notes(text, heading)] == ["‡", "§"]
    clean = board(registry.parent / "clean", [make_row("a", seed=0, test=100.0)])
    assert notes(clean, heading) == []


def test_failed_plugin_import_is_named_not_dropped(registry, tmp_path, monkeypatch):
    monkeypatch.setattr(plugins, "_IMPORT_ERRORS", dict(plugins.import_errors()))
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "ghost.py").write_text("import not_a_module_xyz\n")
    plugins.load_directory(str(folder))
    text = board(registry, [make_row("a", method="ghost", protocol="paper", test=84.0),
                            make_row("b", method="phantom", protocol="paper", test=85.0)])
    assert line(text, PAPER_PTB, "ghost")["published"] == "?"
    assert line(text, PAPER_PTB, "phantom")["published"] == "?"
    ghost, phantom = notes(text, PAPER_PTB)
    assert ghost.startswith("`?` ghost:") and "ghost.py: ModuleNotFoundError" in ghost and "not_a_module_xyz" in ghost
    assert phantom.startswith("`?` phantom:") and "no loaded plugin registers method 'phantom'" in phantom
    assert "not_a_module_xyz" in phantom                       # the import errors that may explain it


def test_published_on_every_line_when_the_default_config_is_unknown(registry, monkeypatch):
    def gone(*a, **k):
        raise UsageError("protocol 'paper' is gone")
    monkeypatch.setattr(leaderboard.config_mod, "resolve", gone)
    text = board(registry, [make_row("a", protocol="paper", config_hash="aa" * 8, test=84.0),
                            make_row("b", protocol="paper", config_hash="bb" * 8, test=90.0)])
    assert [(r["published"], r["Δ"]) for r in table(text, PAPER_PTB)] == [("82.70", "1.30"), ("82.70", "7.30")]
    assert notes(text, PAPER_PTB) == ["zaremba: the published number is shown on every line because the "
                                      "protocol's default config could not be resolved (UsageError: protocol "
                                      "'paper' is gone)."]


def test_params_column_shows_the_value_or_the_range(registry):
    heading = "smoke · ptb · LSTM · CPU · test ppl (lower is better)"
    text = board(registry, [make_row("a", seed=0, params=66_000_000), make_row("b", seed=1, params=66_000_000),
                            make_row("c", method="gal", seed=0, params=1000, test=99.0),
                            make_row("d", method="gal", seed=1, params=1200, test=99.0)])
    assert line(text, heading, "zaremba")["params"] == "66,000,000"
    assert line(text, heading, "gal")["params"] == "1,000–1,200"


def test_sort_order_best_first(registry):
    text = board(registry, [
        make_row("p1", method="naive", test=150.0), make_row("p2", method="zaremba", test=120.0),
        make_row("p3", method="gal", status="diverged", test=float("nan"), valid=float("nan")),
        make_row("p4", method="zoneout", test=130.0),
        make_row("s1", task="sst2", method="zaremba", metric="accuracy", higher_is_better=True,
                 valid_metric="accuracy", test=0.80, valid=0.79),
        make_row("s2", task="sst2", method="gal", metric="accuracy", higher_is_better=True,
                 valid_metric="accuracy", test=0.82, valid=0.80)])
    ptb = [r["method"] for r in table(text, "smoke · ptb · LSTM · CPU · test ppl (lower is better)")]
    assert ptb == ["zaremba", "zoneout", "naive", "gal"]          # lower perplexity first, no result last
    sst = [r["method"] for r in table(text, "smoke · sst2 · LSTM · CPU · test accuracy (higher is better)")]
    assert sst == ["gal", "zaremba"]                              # higher accuracy first


def test_cpu_hardware_names_model_and_numerics_when_recorded():
    heading = "smoke · ptb · LSTM · CPU · test ppl (lower is better)"
    new = pd.DataFrame([make_row("a", cpu_model="AMD EPYC 7763", numerics="portable"),
                        make_row("b", method="gal", cpu_model="", numerics="")])
    text = leaderboard.render(new)
    assert line(text, heading, "zaremba")["hardware"] == "CPU (AMD EPYC 7763, AVX2, 2 threads, portable numerics)"
    assert line(text, heading, "gal")["hardware"] == "CPU (AVX2, 2 threads)"
    old = pd.DataFrame([make_row("a")])                           # a registry without those columns
    assert line(leaderboard.render(old), heading, "zaremba")["hardware"] == "CPU (AVX2, 2 threads)"


def test_write_reads_bench_reports_at_call_time(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_REPORTS", str(tmp_path / "later"))
    assert leaderboard.default_report_path() == tmp_path / "later" / "LEADERBOARD.md"
    assert leaderboard.write(registry) == tmp_path / "later" / "LEADERBOARD.md"
    assert "registry is empty" in (tmp_path / "later" / "LEADERBOARD.md").read_text()


def test_empty_registry(registry):
    assert "registry is empty" in leaderboard.render(results.read_registry(registry))


def test_sweep_points_are_left_to_the_report(tmp_path):
    import pandas as pd
    from bench import leaderboard
    row = dict(run_id="sst2.naive.sweep.s0.cpu.1", protocol="sweep", task="sst2", method="naive")
    text = leaderboard.render(pd.DataFrame([row]))
    assert "The 1 rows of `sweep*` protocols" in text and "REPORT.md" in text and "## sweep" not in text


def test_a_registry_path_that_does_not_exist_is_an_error_and_the_reports_stay(tmp_path, monkeypatch, capsys):
    from bench import report
    from bench.cli import main
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "LEADERBOARD.md").write_text("the board before\n")
    monkeypatch.setenv("BENCH_REPORTS", str(reports))
    monkeypatch.setenv("BENCH_REGISTRY", str(tmp_path / "regsitry"))          # a typo
    assert main(["leaderboard"]) == 2
    assert f"registry folder {tmp_path / 'regsitry'} (from $BENCH_REGISTRY) does not exist" in capsys.readouterr().err
    assert (reports / "LEADERBOARD.md").read_text() == "the board before\n"
    assert report.main(["--registry", str(tmp_path / "nope"), "--out", str(reports)]) == 2
    assert "(from --registry) does not exist" in capsys.readouterr().err
    assert not (reports / "REPORT.md").exists()


def test_results_tables_give_the_reports_verdict_against_zaremba_and_smoke_tables_do_not(registry):
    # the order is by mean; the verdict column says which gaps are beyond seed noise (REPORT.md section 1)
    base, gal, naive = default_cfg(protocol="cpu"), default_cfg("gal", "cpu"), default_cfg("naive", "cpu")
    rows = [cfg_row(f"z{s}", base, seed=s, protocol="cpu", test=t) for s, t in enumerate((80.0, 80.5, 79.5))]
    rows += [cfg_row(f"g{s}", gal, method="gal", seed=s, protocol="cpu", test=t)
             for s, t in enumerate((70.0, 70.3, 69.8))]
    rows += [cfg_row(f"n{s}", naive, method="naive", seed=s, protocol="cpu", test=t)
             for s, t in enumerate((79.0, 81.5))]
    rows += [cfg_row("o", default_cfg(protocol="cpu", lr=0.5), seed=0, protocol="cpu", test=60.0)]     # another config
    rows += [cfg_row(f"r{s}", default_cfg("rnndrop", "cpu"), method="rnndrop", seed=s, protocol="cpu", status="diverged",
                     test=float("nan"), valid=float("nan")) for s in range(2)]
    rows += [make_row("s", seed=0, test=120.0)]
    text = board(registry, rows)
    CPU_PTB = "cpu · ptb · LSTM · CPU · test ppl (lower is better)"
    assert line(text, CPU_PTB, "gal")["vs zaremba"].startswith("better (Holm p ")
    assert line(text, CPU_PTB, "naive")["vs zaremba"].startswith("no clear difference (Holm p ")
    assert line(text, CPU_PTB, "rnndrop")["vs zaremba"] == "every seed diverged"
    zaremba = {r["method"]: r["vs zaremba"] for r in table(text, CPU_PTB) if r["method"].startswith("zaremba")}
    default = f"zaremba [lr={default_cfg(protocol='cpu')['lr']}]"
    assert zaremba == {default: "baseline", "zaremba [lr=0.5]": "—"}       # only default configs are tested
    assert "Lines are ordered by mean, but a gap within seed noise is not a rank" in text
    smoke = "smoke · ptb · LSTM · CPU · test ppl (lower is better)"
    assert "vs zaremba" not in table(text, smoke)[0]
    assert "Verified: the one row is re-run in full (metrics and curves) by every `make verify-seeds`, CI's included" in text


def test_smoke_rows_over_cis_budget_are_said_to_replay_their_first_steps_there(registry):
    text = board(registry, [make_row("a", seed=0, test=100.0, wall_s=2.0), make_row("b", seed=1, test=101.0, wall_s=30.0)])
    assert ("Verified: all 2 rows are re-run in full (metrics and curves) by every `make verify-seeds`; in CI 1 of "
            "them (trained in at most 6 s) are, and the other 1 replay their first training steps exactly") in text


def test_ci_smoke_budget_matches_the_leaderboards_statement():
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert f"SMOKE_MAX_S=${{SMOKE_MAX_S:-{consistency.CI_SMOKE_MAX_S}}}" in ci


def test_a_line_whose_mean_rests_on_one_far_seed_is_marked(registry):
    # Multi30k cpu: gal's seed 2 (26.0 BLEU beside 35.0 and 35.4) set its mean and rank, unmarked
    rows = []
    for m, vals in (("zaremba", (35.0, 35.5, 35.2)), ("naive", (34.0, 34.4, 34.1)), ("gal", (35.0, 35.4, 26.0))):
        cfg = default_cfg(m, "cpu")
        rows += [cfg_row(f"{m}{s}", cfg, method=m, seed=s, protocol="cpu", test=v) for s, v in enumerate(vals)]
    text = board(registry, rows)
    heading = "cpu · ptb · LSTM · CPU · test ppl (lower is better)"
    names = [r["method"] for r in table(text, heading)]
    assert "gal °" in names and "zaremba" in names and "naive" in names
    assert any(n.startswith("° a seed far from the rest") for n in notes(text, heading))
