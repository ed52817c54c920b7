"""Exit codes and outputs of `bench run`: every check of an output location happens before training;
exit 2 means nothing was written; a failure after the row is safely written has its own code."""
import os
import stat
import subprocess
import sys

import pytest

from bench import results
from bench.cli import main
from conftest import REPO

ROOT_CAN_WRITE_ANYWHERE = os.geteuid() == 0


def cli(capsys, tiny_lm, *args):
    code = main(["--data-dir", str(tiny_lm[1]), "run", "--task", tiny_lm[0].name, "--device", "cpu", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    for name in ("registry", "reports", "runs"):
        monkeypatch.setenv(f"BENCH_{name.upper()}", str(tmp_path / name))
    return tmp_path


def parquet_files(folder):
    return sorted(folder.glob("*/*/*.parquet"))


def test_a_grid_with_a_typo_stops_before_the_first_run(capsys, tiny_lm, outputs):
    code, text = cli(capsys, tiny_lm, "--method", "zaremba,naive", "--set", "p_rek=0.1")
    assert code == 2 and "unknown option(s) p_rek" in text
    assert not parquet_files(outputs / "registry") and not (outputs / "runs").exists()


def test_already_registered_prints_the_result_and_exits_0(capsys, tiny_lm, outputs):
    assert cli(capsys, tiny_lm, "--method", "zaremba")[0] == 0
    files = parquet_files(outputs / "registry")
    code, text = cli(capsys, tiny_lm, "--method", "zaremba")
    assert code == 0 and "already registered" in text and "SEEDS=1" in text and str(files[0]) in text
    assert parquet_files(outputs / "registry") == files


def test_a_corrupt_registry_file_stops_the_run_before_training(capsys, tiny_lm, outputs):
    bad = outputs / "registry" / "x" / "y" / "broken.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet")
    code, text = cli(capsys, tiny_lm, "--method", "zaremba")
    assert code == 2 and "broken.parquet" in text
    assert [p.name for p in (outputs / "registry").rglob("*.parquet")] == ["broken.parquet"]
    assert "epoch 1/" not in text                                      # nothing trained


@pytest.mark.skipif(ROOT_CAN_WRITE_ANYWHERE, reason="root ignores file permissions")
def test_an_unwritable_registry_is_an_error_before_training(capsys, tiny_lm, outputs):
    (outputs / "registry").mkdir()
    (outputs / "registry").chmod(stat.S_IRUSR | stat.S_IXUSR)
    code, text = cli(capsys, tiny_lm, "--method", "zaremba")
    assert code == 2 and "registry folder" in text and "epoch 1/" not in text


def test_an_unusable_registry_or_reports_location_is_an_error_before_training(capsys, tiny_lm, outputs, monkeypatch):
    """A path below a regular file can never be created (root included)."""
    (outputs / "file").write_text("")
    monkeypatch.setenv("BENCH_REGISTRY", str(outputs / "file" / "registry"))
    code, text = cli(capsys, tiny_lm, "--method", "zaremba")
    assert code == 2 and "registry folder" in text and "epoch 1/" not in text
    monkeypatch.setenv("BENCH_REGISTRY", str(outputs / "registry"))
    monkeypatch.setenv("BENCH_REPORTS", str(outputs / "file" / "reports"))
    code, text = cli(capsys, tiny_lm, "--method", "zaremba")
    assert code == 2 and "reports folder" in text and "epoch 1/" not in text
    assert not parquet_files(outputs / "registry")


def test_a_failure_after_the_row_is_written_exits_4_and_keeps_the_row(capsys, tiny_lm, outputs, monkeypatch):
    import bench.leaderboard
    monkeypatch.setattr(bench.leaderboard, "write", lambda **kw: (_ for _ in ()).throw(OSError("disk full")))
    code, text = cli(capsys, tiny_lm, "--method", "zaremba")
    assert code == 4 and "are registered" in text and "disk full" in text and "make leaderboard" in text
    assert len(parquet_files(outputs / "registry")) == 1


def test_bad_thread_count_exits_2(capsys, tiny_lm, outputs, monkeypatch):
    monkeypatch.setenv("BENCH_THREADS", "abc")
    code, text = cli(capsys, tiny_lm, "--method", "zaremba")
    assert code == 2 and "BENCH_THREADS='abc' must be a positive integer" in text
    assert not parquet_files(outputs / "registry")


def test_every_row_records_its_provenance_and_curves(capsys, tiny_lm, outputs):
    assert cli(capsys, tiny_lm, "--method", "curriculum", "--set", "base=gal")[0] == 0
    row = results.read_row(parquet_files(outputs / "registry")[0])
    assert row["schema_version"] == 3 and row["numerics"] == "portable" and row["cpu_model"]
    assert row["lock_sha256"] and "tasks/lm.py" in row["plugin_sha256"] and "baselines/curriculum.py" in row["plugin_sha256"]
    assert "baselines/gal.py" in row["plugin_sha256"]
    assert len(row["curve_valid"]) == row["epochs"] == len(row["curve_lr"]) == len(row["curve_train_loss"])
    assert row["curve_wall_s"] == sorted(row["curve_wall_s"])
    # curriculum over gal has every rate at 0 on step 0 (fused kernel), then trains on the per-step cell
    assert set(row["rnn_path"].split(",")) == {"fast", "fused"}


def test_the_makefile_honours_bench_data_from_the_environment(tmp_path):
    env = dict(os.environ, BENCH_DATA=str(tmp_path / "elsewhere"))
    p = subprocess.run(["make", "-n", "-s", "--no-print-directory", "bench", "PYTHON=" + sys.executable],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    p = subprocess.run(["make", "-s", "--no-print-directory", "-f", "Makefile", "-f", "-", "show"], input=(
        "show:\n\t@echo $(BENCH_DATA)\n"), cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == str(tmp_path / "elsewhere")


def test_make_data_without_network_is_a_clear_error(tmp_path, monkeypatch):
    import urllib.request

    from bench import data
    from bench.errors import UsageError

    def offline(*a, **k):
        raise urllib.error.URLError("Temporary failure in name resolution")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(UsageError, match="cannot download http.*name resolution.*by hand"):
        data.fetch("ptb", tmp_path)
