import pyarrow as pa
import pyarrow.parquet as pq

from bench import runner, verify


def test_verify_seeds_passes_then_catches_a_changed_metric(tiny_lm, tmp_path):
    task, root = tiny_lm
    row, path = runner.run(task.name, "gal", "smoke", device="cpu", registry=tmp_path / "reg",
                           runs_dir=tmp_path / "runs", data_dir=root, progress=False)
    runner.run(task.name, "zaremba", "equal", device="cpu", registry=tmp_path / "reg", runs_dir=tmp_path / "runs",
               data_dir=root, overrides={"epochs": "1", "hidden_size": "8", "emb_size": "8"}, progress=False)
    lines = []
    res = verify.verify_all(tmp_path / "reg", data_dir=root, echo=lines.append)
    assert [r["run_id"] for r in res] == [row["run_id"]]       # the equal row is not CPU-feasible
    assert res[0]["ok"] and res[0]["exact"] and lines[0].startswith("OK")
    t = pq.read_table(path).to_pylist()[0]
    t["test"] += 1e-9                                          # tamper with the recorded metric
    path.unlink()
    pq.write_table(pa.Table.from_pylist([t], schema=pq.read_schema(next((tmp_path / "reg").glob("*/*/*zaremba*")))), path)
    res = verify.verify_all(tmp_path / "reg", data_dir=root, echo=lines.append)
    assert not res[0]["ok"] and lines[-1].startswith("FAIL")


def test_tolerance_applies_when_the_fingerprint_differs(tiny_lm, tmp_path):
    task, root = tiny_lm
    row, path = runner.run(task.name, "zaremba", "smoke", device="cpu", registry=tmp_path / "reg",
                           runs_dir=tmp_path / "runs", data_dir=root, progress=False)
    t = pq.read_table(path).to_pylist()[0]
    t["threads"] += 7
    t["test"] *= 1 + verify.REL_TOL / 10
    schema = pq.read_schema(path)
    path.unlink()
    pq.write_table(pa.Table.from_pylist([t], schema=schema), path)
    res = verify.verify_all(tmp_path / "reg", data_dir=root, echo=lambda s: None)
    assert res[0]["ok"] and not res[0]["exact"]


def test_rows_trained_with_the_reference_cell_are_rerun_with_it(tiny_lm, tmp_path, monkeypatch):
    task, root = tiny_lm
    monkeypatch.setenv("BENCH_RNN_IMPL", "reference")
    row, _ = runner.run(task.name, "naive", "smoke", device="cpu", registry=tmp_path / "reg",
                        runs_dir=tmp_path / "runs", data_dir=root, progress=False)
    assert row["rnn_path"] == "cell"
    monkeypatch.setenv("BENCH_RNN_IMPL", "auto")
    res = verify.verify_all(tmp_path / "reg", data_dir=root, echo=lambda s: None)
    assert res[0]["ok"] and res[0]["exact"]
