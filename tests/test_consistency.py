"""Consistency checks (bench/consistency.py) and the tampering they catch in seconds, without training."""
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench import consistency, results, runner
from bench.cli import main

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "registry" / "sst2" / "zaremba" / "sst2.zaremba.cpu.s0.cpu.a5b992a8.parquet"


def rewrite(path, **changes):
    row = results.read_row(path)
    row.update(changes)
    path.unlink()
    pq.write_table(pa.Table.from_pylist([row], schema=results.SCHEMA), path)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def as_committed(path):
    """Stamp a fixture row as made from HEAD's clean tree (the working tree may be dirty while
    engineers edit it): its plugin hashes become those of `git show HEAD:<file>`."""
    row = results.read_row(path)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    blob = lambda name: subprocess.run(["git", "show", f"{head}:{name}"], cwd=REPO, capture_output=True, check=True).stdout
    digests = {n: hashlib.sha256(blob(n)).hexdigest() for n in json.loads(row["plugin_sha256"])}
    rewrite(path, git_commit=head, plugin_sha256=json.dumps(digests, sort_keys=True))


@pytest.fixture
def long_row(tiny_lm, tmp_path, monkeypatch):
    """A long-protocol row with result fingerprints and its side file, in a scratch registry."""
    task, root = tiny_lm
    reg = tmp_path / "reg"
    out = runner.run(task.name, "zaremba", "equal", device="cpu", registry=reg, runs_dir=tmp_path / "runs",
                     data_dir=root, overrides=dict(epochs="2", hidden_size="8", emb_size="8", bptt="8"))
    as_committed(out.path)
    monkeypatch.setenv("BENCH_REGISTRY", str(reg))
    return reg, out.path, results.read_row(out.path)


@pytest.fixture
def committed_copy(tmp_path, monkeypatch):
    """The committed sst2.zaremba.cpu.s0 row (a long row, schema 2: no side file) in a scratch registry."""
    reg = tmp_path / "reg"
    dest = reg / "sst2" / "zaremba" / COMMITTED.name
    dest.parent.mkdir(parents=True)
    shutil.copyfile(COMMITTED, dest)
    monkeypatch.setenv("BENCH_REGISTRY", str(reg))
    return reg, dest


def verify_fails(reg, capsys, run_id, field) -> str:
    """`verify-seeds` exits 1 naming the row and the field, and writes nothing."""
    before = snapshot(reg)
    capsys.readouterr()
    assert main(["verify-seeds"]) == 1
    out = capsys.readouterr()
    line = next(l for l in out.out.splitlines() if l.startswith("FAIL"))
    assert run_id in line and f"field `{field}`" in line, out.out
    assert "no replay run" in out.err
    assert snapshot(reg) == before
    return line


def test_committed_long_row_passes_then_an_edited_valid_fails(committed_copy, capsys):
    reg, path = committed_copy
    assert main(["verify-seeds", "--consistency"]) == 0
    assert "1 rows checked" in capsys.readouterr().out
    row = results.read_row(path)
    rewrite(path, valid=row["valid"] + 1.0)
    verify_fails(reg, capsys, row["run_id"], "valid")


def test_committed_long_row_with_a_changed_config_json_fails(committed_copy, capsys):
    reg, path = committed_copy
    row = results.read_row(path)
    cfg = json.loads(row["config_json"])
    cfg["lr"] = cfg["lr"] * 2
    rewrite(path, config_json=json.dumps(cfg, sort_keys=True))
    verify_fails(reg, capsys, row["run_id"], "config_json")


def test_committed_long_row_with_an_edited_best_epoch_or_commit_fails(committed_copy, capsys):
    reg, path = committed_copy
    row = results.read_row(path)
    rewrite(path, best_epoch=row["best_epoch"] % row["epochs"] + 1)
    verify_fails(reg, capsys, row["run_id"], "best_epoch")
    rewrite(path, best_epoch=row["best_epoch"], git_commit="0" * 40)
    line = verify_fails(reg, capsys, row["run_id"], "git_commit")
    assert "is not in the history" in line


def test_fingerprinted_long_row_passes_then_an_edited_test_fails(long_row, capsys):
    reg, path, row = long_row
    assert row["examples_sha256"] and row["weights_sha256"]
    assert main(["verify-seeds", "--consistency"]) == 0
    rewrite(path, test=row["test"] + 1.0)
    verify_fails(reg, capsys, row["run_id"], "test")


def _flipped(data: bytes, i: int) -> bytes:
    d = bytearray(data)
    d[i] ^= 0x01
    return bytes(d)


def test_a_flipped_byte_in_the_side_file_fails(long_row, capsys):
    """Any byte: of the values, of the metadata pyarrow ignores when reading (the content digest
    alone misses those), of the footer's magic (unreadable): each fails, naming the file's hash."""
    reg, path, row = long_row
    assert row["examples_file_sha256"]
    side = results.examples_path(reg, row)
    data = side.read_bytes()
    for i in (0, 4, len(data) // 3, len(data) // 2, len(data) - 12, len(data) - 1):
        side.write_bytes(_flipped(data, i))
        verify_fails(reg, capsys, row["run_id"], "examples_file_sha256")
    side.write_bytes(data)
    assert main(["verify-seeds", "--consistency"]) == 0


def test_an_edited_side_file_value_fails_its_hash_and_its_test(long_row, capsys):
    reg, path, row = long_row
    side = results.examples_path(reg, row)
    df = pq.read_table(side).to_pandas()
    df.loc[0, "nll_sum"] += 1.0
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), side)
    probs = consistency.check_registry(reg)
    assert {(p.check, p.field) for p in probs} == {("examples", "examples_file_sha256"),
                                                   ("examples", "examples_sha256"), ("examples", "test")}


def test_a_changed_config_json_of_a_fingerprinted_row_fails(long_row, capsys):
    reg, path, row = long_row
    cfg = json.loads(row["config_json"])
    cfg["dropout_out"] = 0.123
    rewrite(path, config_json=json.dumps(cfg, sort_keys=True))
    verify_fails(reg, capsys, row["run_id"], "config_json")


def test_a_missing_side_file_and_an_orphan_one_fail(long_row):
    reg, path, row = long_row
    side = results.examples_path(reg, row)
    moved = side.read_bytes()
    side.unlink()
    assert [(p.field, "is missing" in p.detail) for p in consistency.check_registry(reg)] == [("examples_sha256", True)]
    side.write_bytes(moved)
    rewrite(path, examples_sha256="")
    assert ["a side file exists" in p.detail for p in consistency.check_registry(reg)] == [True]
    path.unlink()                                               # a side file whose row is gone
    assert ["belongs to no registry row" in p.detail for p in consistency.check_registry(reg)] == [True]


def test_run_id_and_file_place_recompute(long_row):
    reg, path, row = long_row
    rewrite(path, seed=7)
    assert {(p.check, p.field) for p in consistency.check_registry(reg)} == {("run_id", "run_id")}
    rewrite(path, seed=row["seed"], plugin_sha256=json.dumps({"tasks/lm.py": "0" * 64}))
    [p] = consistency.check_registry(reg)
    assert (p.check, p.field) == ("plugin_sha256", "plugin_sha256") and "tasks/lm.py" in p.detail


def test_selection_follows_the_tasks_select_on():
    """Translation selects on valid loss (its valid metric is ppl, its test BLEU higher-is-better);
    sentiment on the accuracy, higher is better; ties keep the first epoch, as bench/train.py does."""
    from types import SimpleNamespace as NS
    row = dict(curve_valid=[9.0, 7.0, 8.0], curve_valid_loss=[2.2, 1.9, 2.1])
    assert consistency.selected_epoch(row, NS(select_on="loss", higher_is_better=True)) == 2
    assert consistency.selected_epoch(row, NS(select_on="metric", higher_is_better=True)) == 1
    assert consistency.selected_epoch(row, NS(select_on="metric", higher_is_better=False)) == 2
    tie = dict(curve_valid=[80.0, 81.0, 81.0], curve_valid_loss=[])
    assert consistency.selected_epoch(tie, NS(select_on="metric", higher_is_better=True)) == 2
    ok = dict(status="ok", valid=81.0, test=80.0, epochs=3, best_epoch=2, **tie)
    assert consistency.check_selection(ok, NS(select_on="metric", higher_is_better=True, valid_metric="a")) == []
    div = dict(ok, status="diverged", valid=float("nan"), test=1.0)
    assert [f for f, _ in consistency.check_selection(div, NS(select_on="loss"))] == ["test"]


def test_the_allow_list_accepts_a_listed_failure_with_its_reason_and_flags_stale_entries(committed_copy, capsys):
    reg, path = committed_copy
    row = results.read_row(path)
    allow = reg / consistency.ALLOW_FILE
    allow.write_text(f"run_id\tcheck\treason\n{row['run_id']}\tplugin_sha256\tmade from a dirty tree\n")
    [stale] = consistency.check_registry(reg)
    assert not stale.allowed and "check passes now" in stale.detail
    rewrite(path, plugin_sha256=json.dumps({"baselines/zaremba.py": "0" * 64}))
    [p] = consistency.check_registry(reg)
    assert p.allowed == "made from a dirty tree" and p.line().startswith("ALLOW")
    assert main(["verify-seeds", "--consistency"]) == 0
    allow.write_text(f"{row['run_id']}\tno-such-check\twhy\n")
    assert main(["verify-seeds", "--consistency"]) == 2
    assert "expected run_id<TAB>check<TAB>reason" in capsys.readouterr().err


def test_a_checkout_without_the_commit_says_so(committed_copy, tmp_path):
    reg, path = committed_copy
    subprocess.run(["git", "init", "-q", str(tmp_path / "empty")], check=True)
    probs = consistency.check_registry(reg, git=consistency.Git(tmp_path / "empty"))
    assert [(p.check, "is not in the history" in p.detail) for p in probs] == [("commit", True)]
    probs = consistency.check_registry(reg, git=consistency.Git(tmp_path))          # not a checkout
    assert [(p.check, "not a git checkout" in p.detail) for p in probs] == [("commit", True)]


def test_an_edited_test_of_a_fully_replayed_committed_row_fails_against_the_log(committed_copy, capsys):
    """The issue's case: sst2.zaremba.cpu.s0 (schema 2: no side file) with its test raised by 1.0.
    Once a full replay confirmed the row (registry/VERIFIED.tsv), the edit fails in seconds."""
    from bench import verify
    reg, path = committed_copy
    row = results.read_row(path)
    verify.append_log(reg, [dict(run_id=row["run_id"], ok=True, skipped=False, machine="CPU X",
                                 log=dict(result="tolerance", weights_sha256="", examples_sha256="",
                                          row_test=repr(row["test"]), row_valid=repr(row["valid"])))], commit="c0ffee")
    assert main(["verify-seeds", "--consistency"]) == 0
    rewrite(path, test=row["test"] + 1.0)
    line = verify_fails(reg, capsys, row["run_id"], "test")
    assert "[log]" in line and "confirmed 80.61504667764964" in line


def test_the_committed_log_confirms_the_committed_rows():
    """registry/VERIFIED.tsv parses, and each row it confirmed still holds the values it confirmed."""
    for r in consistency.read_log(REPO / "registry").itertuples():
        path = results.find_run(REPO / "registry", r.run_id)
        assert path is not None, f"{r.run_id} is logged but not registered"
        row = results.read_row(path)
        if r.row_test:
            assert (repr(float(row["test"])), repr(float(row["valid"]))) == (r.row_test, r.row_valid)
