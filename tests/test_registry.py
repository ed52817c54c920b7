import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench import results
from bench.errors import UsageError


def make_row(run_id="ptb.zaremba.smoke.s0.cpu.deadbeef", **kw):
    row = dict(run_id=run_id, task="ptb", method="zaremba", protocol="smoke", seed=0, derived_seed=7,
               status="ok", metric="ppl", higher_is_better=False, valid=100.0, valid_metric="ppl",
               test=95.5, best_epoch=2, epochs=2, params=1000, wall_s=1.5, tokens_per_s=1e4,
               device="cpu", device_name="cpu", cuda_version="", cpu_capability="AVX2", threads=2,
               rnn_path="fused", torch_version="2.13.0", git_commit="abc123", git_dirty=False,
               config_hash="ff" * 8, config_json="{}", finished_at="2026-01-01T00:00:00+00:00")
    # schema-2 columns (ignored by a schema that lacks them)
    row.update(schema_version=2, metric_signature="", curve_train_loss=[], curve_valid=[], curve_valid_loss=[],
               curve_lr=[], curve_wall_s=[], probe_loss=[], cpu_vendor="", cpu_model="", cpu_isa="",
               numerics="", lock_sha256="", plugin_sha256="")
    row.update(kw)
    return row


def test_round_trip(registry):
    p = results.write_row(registry, make_row())
    assert p.parent == registry / "ptb" / "zaremba"
    results.write_row(registry, make_row("x2", seed=1, test=float("nan"), status="diverged"))
    df = results.read_registry(registry)
    assert list(df.columns) == results.COLUMNS and len(df) == 2
    r = df.set_index("run_id").loc["ptb.zaremba.smoke.s0.cpu.deadbeef"]
    assert r.test == 95.5 and r.threads == 2 and not r.git_dirty
    assert math.isnan(df.set_index("run_id").loc["x2"].test)
    assert not list(registry.glob(".tmp-*"))          # the temp file is gone


def test_rows_are_immutable(registry):
    results.write_row(registry, make_row())
    with pytest.raises(UsageError, match="already registered"):
        results.write_row(registry, make_row(test=1.0))
    assert results.read_registry(registry).test.tolist() == [95.5]


def test_missing_column_is_an_error(registry):
    row = make_row()
    del row["wall_s"]
    with pytest.raises(ValueError, match="wall_s"):
        results.write_row(registry, row)


def test_corrupt_and_invalid_files_are_named(registry):
    results.write_row(registry, make_row())
    bad = registry / "ptb" / "zaremba" / "broken.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    short = registry / "ptb" / "gal" / "short.parquet"
    short.parent.mkdir(parents=True)
    pq.write_table(pa.table({"run_id": ["x"]}), short)
    with pytest.raises(results.RegistryError) as e:
        results.read_registry(registry)
    assert "broken.parquet" in str(e.value) and "short.parquet" in str(e.value)
    assert "missing columns" in str(e.value)


def test_empty_registry_has_the_schema(registry):
    df = results.read_registry(registry)
    assert df.empty and list(df.columns) == results.COLUMNS


def test_a_symlinked_venv_does_not_make_the_tree_dirty(tmp_path):
    """Campaign worktrees link the main checkout's .venv: git_state must not call that a code
    change (the .gitignore pattern has to match a symlink, not only a folder)."""
    import shutil
    import subprocess
    from bench.runner import REPO
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(REPO / ".gitignore", repo / ".gitignore")
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, capture_output=True, text=True, check=True).stdout
    git("init", "-q")
    git("add", ".gitignore")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    (repo / ".venv").symlink_to(tmp_path)
    assert git("status", "--porcelain", "--untracked-files=all") == ""
