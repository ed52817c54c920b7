"""bench/perf.py end to end on a tiny shape: every method and both baselines timed, the report
and the raw Parquet written where asked. One thread: on a loaded 2-core machine OpenMP's
spin-waiting makes tiny ops very slow with two."""
import pandas as pd
import torch

from bench import perf, plugins


def test_perf_writes_report_and_raw_numbers(tmp_path, monkeypatch):
    monkeypatch.setitem(perf.SHAPES, "tiny", perf.Shape(layers=2, hidden=8, emb=6, batch=3, bptt=4,
                                                        vocab=30, tie=True))
    out, raw = tmp_path / "PERF.md", tmp_path / "perf.parquet"
    threads = torch.get_num_threads()
    perf.main(["--shapes", "tiny", "--repeats", "2", "--steps", "1", "--warmup", "1", "--device", "cpu",
               "--threads", "1", "--impl", "auto,reference", "--out", str(out), "--parquet", str(raw)])
    assert torch.get_num_threads() == threads                   # the run's setting did not leak
    text = out.read_text()
    methods = plugins.list_methods()
    for name in methods + [perf.BASELINE, perf.BASELINE2]:
        assert f"| {name} |" in text
    assert "| gal | auto | fast / fused |" in text and "| gal | reference | cell / fused |" in text
    df = pd.read_parquet(raw)
    assert len(df) == (2 + 2 * len(methods)) * 2 * 2          # runners x (train, eval) x repeats
    assert (df.tokens_per_s > 0).all() and set(df.kind) == {"train", "eval"}
    assert df.peak_mb.isna().all()                              # not measured on a CPU
