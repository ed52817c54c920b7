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
    monkeypatch.setenv("BENCH_REGISTRY", str(tmp_path / "registry"))
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
    (["run", "--task", "ptb", "--method", "zaremba", "--seeds", "3-1"], "range 3-1 is descending.*write 1-3"),
    (["run", "--task", "ptb", "--method", "zaremba", "--seeds", "-1"], "seed -1 is negative"),
    (["run", "--task", "ptb", "--method", "zaremba", "--set", "optimizer=adamw"],
     "optimizer='adamw' is not one of: sgd, ntasgd, adam"),
    (["run", "--task", "sst2", "--method", "awd", "--set", "bptt=50"], "task 'sst2' .*does not use option bptt"),
    (["run", "--task", "sst2", "--method", "zaremba", "--set", "mc_samples=10"], "does not use option mc_samples"),
    (["run", "--task", "ptb", "--method", "zaremba", "--set", "lr=-1"], r"option lr=-1.0 must be > 0"),
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
    new = after - before                       # the row and its per-example side file
    assert len(new) == 2 and len(set((tmp_path / "registry").glob("*/*/*.parquet")) & new) == 1
    df = results.read_registry(tmp_path / "registry")
    assert results.examples_path(tmp_path / "registry", df.iloc[0].to_dict()) in new
    assert df.iloc[0].epochs == 1 and '"lr": 0.5' in df.iloc[0].config_json
    assert (tmp_path / "reports" / "LEADERBOARD.md").exists()
    assert df.iloc[0].numerics == "portable"               # smoke rows: close on any x86-64 host
    # the same run again shows the registered result, says how to make another one, exits 0
    p2 = subprocess.run(["make", "-s", "bench", "TASK=ptb", "METHOD=zaremba", "PROTOCOL=smoke", "DEVICE=cpu",
                         "SET=epochs=1 lr=0.5"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p2.returncode == 0 and "already registered" in p2.stdout and "SEEDS=1" in p2.stdout
    assert set((tmp_path / "registry").glob("**/*.parquet")) == after


@pytest.mark.parametrize("text,seeds", [("0", [0]), ("0,1,2", [0, 1, 2]), ("0-4", [0, 1, 2, 3, 4]),
                                        ("2-2", [2]), (" 1 , 3-4", [1, 3, 4])])
def test_seeds_accepts_lists_and_ascending_ranges(text, seeds):
    from bench.cli import _seeds
    assert _seeds(text) == seeds


@pytest.mark.parametrize("text,message", [
    ("3-1", "range 3-1 is descending and runs nothing; write 1-3"), ("-1", "seed -1 is negative"),
    ("-3-1", "'-3-1' is not a seed"), ("0,,1", "'' is not a seed"), ("", "'' is not a seed"),
    ("1,1", "seed\\(s\\) 1 more than once"), ("0-2,2", "seed\\(s\\) 2 more than once"), ("a-b", "'a-b' is not a seed"),
])
def test_seeds_rejects_empty_descending_negative_and_repeated(text, message):
    from bench.cli import _seeds
    from bench.errors import UsageError
    with pytest.raises(UsageError, match=message):
        _seeds(text)


def test_list_shows_method_options_with_defaults_and_valid_values(capsys):
    code, text = run_cli(capsys, "list")
    assert code == 0
    for shown in ("p_weight=0.5 in [0, 1)", "gates='tied' {tied, untied}", "kappa=0.1 >= 0", "gamma=0.001 >= 0",
                  "cell_mask='step' {step, sequence}", "io_mask='element' {element, locked}",
                  "fraternal_base='awd' {a method:", "base='zaremba' {a method:",
                  "optimizer='sgd' {sgd, ntasgd, adam}", "bptt=35 >= 1", "pool='last' {last, mean, max}",
                  "attention='general' {general, dot}", "mc_samples=0 >= 0", "equal: *, kind:lm"):
        assert shown in text, shown


def list_blocks(text: str) -> dict[str, str]:
    """name -> its entry in `bench list` (the line "  name ..." and the more indented lines below)."""
    blocks, name = {}, None
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            name = line.split()[0]
            blocks[name] = ""
        elif not line.startswith("  "):
            name = None
        if name:
            blocks[name] += " " + line.strip()
    return blocks


def test_list_says_for_each_task_whether_its_data_is_present(capsys, tmp_path, tiny_lm):
    code, text = run_cli(capsys, "--data-dir", str(tiny_lm[1]), "list")
    assert code == 0
    blocks = list_blocks(text)
    assert "data: ok" in blocks[tiny_lm[0].name]
    assert "data: data file ptb/ptb.train.txt(.gz) not found" in blocks["ptb"]
    assert "data: missing train.de" in blocks["iwslt14-de-en"] and "python -m tasks._iwslt" in blocks["iwslt14-de-en"]
    if HAVE_MIRROR:
        code, text = run_cli(capsys, "--data-dir", str(REPO.parent / "shared" / "data"), "list")
        blocks = list_blocks(text)
        for name in ("ptb", "wikitext-2", "sst2", "sst5", "multi30k-de-en"):
            assert "data: ok" in blocks[name], name
        assert "data: missing" in blocks["iwslt14-de-en"]
