"""The command line and the Makefile as a user types them."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import results
from bench.cli import main
from conftest import HAVE_MIRROR, REPO


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """Registry, reports and Sacred runs in tmp: user errors must leave them untouched."""
    monkeypatch.setattr(results, "REGISTRY", tmp_path / "registry")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("args,expected", [
    (["run", "--task", "ptbb", "--method", "zaremba"], "unknown task 'ptbb'; choose one of: .*ptb.*wikitext-2"),
    (["run", "--task", "ptb", "--method", "dropconnect"], "unknown method 'dropconnect'; choose one of: awd, curriculum"),
    (["run", "--task", "ptb", "--method", "zaremba", "--protocol", "huge"], "unknown protocol 'huge' for task 'ptb' and method 'zaremba'; choose one of"),
    (["run", "--task", "ptb", "--method", "zaremba", "--set", "foo=1"], r"unknown option\(s\) foo"),
    (["run", "--task", "ptb", "--method", "zaremba", "--set", "lr"], "override 'lr' is not KEY=VALUE"),
    (["run", "--task", "ptb", "--method", "zaremba", "--set", "p_out=1.2"], r"p_out=1.2 is not a probability"),
    (["run", "--task", "ptb", "--method", "zaremba", "--seeds", "x"], "SEEDS='x'"),
    (["run", "--task", "ptb", "--method", "zaremba", "--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_input_exits_2_and_writes_nothing(capsys, isolated, args, expected):
    code, text = run_cli(capsys, *args)
    assert code == 2
    assert __import__("re").search(expected, text), text
    assert not (isolated / "registry").exists()


def test_missing_data_is_a_clear_error(capsys, isolated):
    code, text = run_cli(capsys, "--data-dir", str(isolated / "nodata"), "run", "--task", "ptb", "--method", "zaremba")
    assert code == 2 and "ptb/ptb.train.txt(.gz) not found" in text and "make data" in text
    assert not (isolated / "registry").exists()


def test_cuda_requested_without_gpu(capsys, isolated):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, text = run_cli(capsys, "run", "--task", "ptb", "--method", "zaremba", "--device", "cuda")
    assert code == 2 and "no CUDA device" in text


def test_list_shows_tasks_methods_papers_protocols(capsys):
    code, text = run_cli(capsys, "list")
    assert code == 0
    for name in ("ptb", "wikitext-2", "naive", "zaremba", "gal", "semeniuta", "zoneout", "awd",
                 "fraternal", "curriculum", "arXiv:1409.2329", "smoke", "paper"):
        assert name in text


def test_make_bench_adds_exactly_one_registry_file(tmp_path):
    """End to end as a user types it: `make bench ... PROTOCOL=smoke`."""
    env = dict(os.environ, BENCH_REGISTRY=str(tmp_path / "registry"), BENCH_REPORTS=str(tmp_path / "reports"))
    if not HAVE_MIRROR:
        pytest.skip("needs the PTB data mirror")
    before = set((tmp_path / "registry").glob("**/*.parquet"))
    p = subprocess.run(["make", "-s", "bench", "TASK=ptb", "METHOD=zaremba", "PROTOCOL=smoke", "DEVICE=cpu",
                        "SET=epochs=1 lr=0.5", "PYTHON=" + sys.executable], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    after = set((tmp_path / "registry").glob("**/*.parquet"))
    assert len(after - before) == 1
    df = results.read_registry(tmp_path / "registry")
    assert df.iloc[0].epochs == 1 and '"lr": 0.5' in df.iloc[0].config_json
    assert (tmp_path / "reports" / "LEADERBOARD.md").exists()
    # the same run again is refused (exit 2) and changes nothing
    p2 = subprocess.run(["make", "-s", "bench", "TASK=ptb", "METHOD=zaremba", "PROTOCOL=smoke", "DEVICE=cpu",
                         "SET=epochs=1 lr=0.5"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p2.returncode != 0 and "already registered" in p2.stderr
    assert set((tmp_path / "registry").glob("**/*.parquet")) == after


def test_grid_runs_every_pair_and_skips_what_cannot_run(capsys, tmp_path, tiny_lm, monkeypatch):
    monkeypatch.setattr(results, "REGISTRY", tmp_path / "registry")
    monkeypatch.setenv("BENCH_REPORTS", str(tmp_path / "reports"))
    import bench.leaderboard
    monkeypatch.setattr(bench.leaderboard, "REPORT", tmp_path / "reports" / "LB.md")
    code, text = run_cli(capsys, "--data-dir", str(tiny_lm[1]), "run", "--task", f"{tiny_lm[0].name},ptb",
                         "--method", "zaremba,naive", "--device", "cpu", "--set", "epochs=1")
    assert code == 0, text
    assert text.count("skipped ptb x") == 2 and "not found" in text           # no PTB in that data dir
    assert len(list((tmp_path / "registry").glob("*/*/*.parquet"))) == 2
    code, text = run_cli(capsys, "run", "--task", "ptb,nope", "--method", "zaremba")
    assert code == 2 and "unknown task 'nope'" in text
