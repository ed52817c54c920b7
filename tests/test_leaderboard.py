import os
from pathlib import Path

from bench import leaderboard, results
from test_registry import make_row

GOLDEN = Path(__file__).parent / "golden" / "LEADERBOARD.md"


def fill(registry):
    rows = [
        make_row("a", seed=0, test=84.0, valid=88.0, protocol="paper", device="cuda", device_name="NVIDIA H200",
                 cuda_version="12.8", rnn_path="fused"),
        make_row("b", seed=1, test=83.0, valid=87.0, protocol="paper", device="cuda", device_name="NVIDIA H200",
                 cuda_version="12.8", rnn_path="fused"),
        make_row("c", method="gal", seed=0, test=80.25, valid=84.0, protocol="paper", rnn_path="cell"),
        make_row("d", method="naive", seed=0, test=150.0, valid=160.0),
        make_row("e", method="naive", seed=1, status="diverged", test=float("nan"), valid=float("nan")),
        make_row("f", method="zaremba", seed=0, test=120.0, valid=130.0),
        make_row("g", task="sst2", method="zaremba", metric="accuracy", higher_is_better=True,
                 valid_metric="accuracy", test=0.80, valid=0.79),
        make_row("h", task="sst2", method="gal", metric="accuracy", higher_is_better=True,
                 valid_metric="accuracy", test=0.82, valid=0.80),
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
    assert leaderboard.write(registry, tmp_path / "LB2.md").read_bytes() == out.read_bytes()


def test_leaderboard_content(registry):
    fill(registry)
    text = leaderboard.render(results.read_registry(registry))
    assert "| zaremba  | 83.50 ± 0.71" in text                      # mean ± sample std over 2 seeds
    assert "82.70" in text and "0.80" in text                     # published number and difference
    assert "1 (+1 diverged)" in text
    assert "NVIDIA H200 (CUDA 12.8)" in text and "CPU (AVX2, 2 threads)" in text
    sst = text.split("smoke · sst2")[1]
    assert sst.index("gal") < sst.index("zaremba")                # higher accuracy first
    ptb = text.split("smoke · ptb")[1]
    assert ptb.index("zaremba") < ptb.index("naive")              # lower perplexity first


def test_empty_registry(registry):
    assert "registry is empty" in leaderboard.render(results.read_registry(registry))
