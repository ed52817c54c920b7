"""The leaderboard's `Verified:` line, fed by the committed log of full replays (registry/VERIFIED.tsv)."""
from bench import leaderboard, results, verify
from test_leaderboard import board, cfg_row, default_cfg
from test_registry import make_row


def test_each_table_says_how_many_rows_were_replayed_in_full_and_when(registry):
    base = default_cfg()
    rows = [cfg_row(r, base, seed=s, protocol="paper", test=80.0 + s, valid=84.0) for s, r in enumerate("abcd")]
    rows[3]["examples_sha256"] = "e" * 64                 # a fingerprinted row never replayed
    verify.append_log(registry, [dict(run_id="a", ok=True, skipped=False, machine="CPU X",
                                      log=dict(result="tolerance: within abs 1.5 (metrics)", weights_sha256="w",
                                               examples_sha256="x"))], commit="c0ffee")
    board(registry, rows + [make_row("s", seed=0, test=120.0, valid=130.0)])
    text = leaderboard.render(results.read_registry(registry), verify.read_log(registry))
    paper = text.split("## paper · ptb · LSTM")[1].split("\n## ")[0]
    date = verify.read_log(registry).date.iloc[0][:10]
    assert (f"Verified: 1 of 4 finished rows replayed in full (0 bit for bit, 1 within a tolerance only (the task's "
            f"2% of the ppl); last "
            f"{date}; `registry/VERIFIED.tsv`); 1 with result "
            f"fingerprints (test recomputed from the side file in CI); 2 start-only verified") in paper
    smoke = text.split("## smoke · ptb · LSTM")[1]
    assert "Verified: the one row is re-run in full (metrics and curves) by every `make verify-seeds`" in smoke
    assert leaderboard.write(registry, registry.parent / "LB.md").read_text() == text   # write reads the log


def test_the_verified_line_says_when_the_tolerance_widens_to_the_seed_spread(registry):
    base = default_cfg()
    rows = [cfg_row(f"r{s}", base, seed=s, protocol="paper", test=80.0 + s % 3, valid=84.0) for s in range(6)]
    log = [dict(run_id="r0", ok=True, skipped=False, machine="CPU X",
                log=dict(result="tolerance: within ... (metrics)", weights_sha256="w", examples_sha256="x"))]
    verify.append_log(registry, log, commit="c0ffee")
    board(registry, rows[:5])                              # 4 degrees of freedom: the task's floor alone
    paper = lambda: leaderboard.render(results.read_registry(registry), verify.read_log(registry)).split(
        "## paper · ptb · LSTM")[1].split("\n## ")[0]
    assert "within a tolerance only (the task's 2% of the ppl); last" in paper()
    board(registry, rows[5:])                              # 6 seeds: widened, and the line says so
    assert ("within a tolerance only (the task's 2% of the ppl, or what two seeds differ by for a method of 6+ "
            "seeds: bench/verify.py); last") in paper()
