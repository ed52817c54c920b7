"""bench/perf.py end to end on a tiny shape: every method and both baselines timed, the report
and the raw Parquet written where asked; the contention check's wiring (not its timing). One
thread: on a loaded 2-core machine OpenMP's spin-waiting makes tiny ops very slow with two."""
import pandas as pd
import pytest
import torch

from bench import perf, plugins
from bench.errors import UsageError

TINY = perf.Shape(layers=2, hidden=8, emb=6, batch=3, bptt=4, vocab=30, tie=True)


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(perf.SHAPES, "tiny", TINY)


def test_perf_writes_report_and_raw_numbers(tmp_path, tiny):
    """One table per cell type, each against its torch module; a method that cannot run on a cell
    type (rnndrop on a GRU) is listed under that table with the reason, not timed."""
    out, raw = tmp_path / "PERF.md", tmp_path / "perf.parquet"
    threads = torch.get_num_threads()
    perf.main(["--shapes", "tiny", "--repeats", "2", "--steps", "1", "--warmup", "1", "--device", "cpu",
               "--threads", "1", "--impl", "auto,reference", "--contention", "off",
               "--out", str(out), "--parquet", str(raw)])
    assert torch.get_num_threads() == threads                   # the run's setting did not leak
    text = out.read_text()
    lstm, gru = text.split("## tiny · LSTM")[1].split("## tiny · GRU")
    methods = plugins.list_methods()
    for name in methods + [perf.BASELINE, perf.BASELINE2]:
        assert f"| {name} |" in lstm
    for name in [m for m in methods if m != "rnndrop"] + ["nn.GRU", "nn.GRU x2"]:
        assert f"| {name} |" in gru
    assert "| x nn.GRU |" in gru and "| rnndrop |" not in gru and "- rnndrop does not run on a gru cell" in gru
    for table in (lstm, gru):
        assert "| gal | auto | fast / fused |" in table and "| gal | reference | cell / fused |" in table
    assert "| rnndrop | auto | fast / fused |" in lstm
    df = pd.read_parquet(raw)
    runners = {"lstm": 2 + 2 * len(methods), "gru": 2 + 2 * (len(methods) - 1)}
    assert df.groupby("cell").size().to_dict() == {c: n * 2 * 2 for c, n in runners.items()}   # x (train, eval) x repeats
    assert (df.tokens_per_s > 0).all() and set(df.kind) == {"train", "eval"}
    assert df.peak_mb.isna().all()                              # not measured on a CPU
    assert "Contention" not in text                             # --contention off skips it


class RecordingCompetitor(perf.Competitor):
    made: list = []

    def __enter__(self):
        self.calls = []
        self.made.append(self)
        return super().__enter__()

    def pause(self):
        self.calls.append("pause")
        super().pause()

    def resume(self):
        self.calls.append("resume")
        super().resume()


def test_contention_section_wiring_on_a_tiny_shape(tmp_path, tiny, monkeypatch):
    """--contention only: the per-step method timed alone (competitor paused) and contended
    (resumed) in alternating blocks, the competitor ended, the section and its rows written."""
    monkeypatch.setattr(perf, "Competitor", RecordingCompetitor)
    RecordingCompetitor.made = []
    out, raw = tmp_path / "PERF.md", tmp_path / "perf.parquet"
    threads = torch.get_num_threads()
    status = perf.main(["--contention", "only", "--contention-shape", "tiny", "--contention-steps", "1",
                        "--contention-repeats", "2", "--out", str(out), "--parquet", str(raw)])
    assert torch.get_num_threads() == threads
    [rival] = RecordingCompetitor.made
    assert rival.calls == ["pause", "resume", "pause", "resume"] and rival.proc.returncode is not None
    text = out.read_text()
    assert "## Contention: zoneout (fast) next to a busy process" in text and "| nn.LSTM |" not in text
    verdict = text.strip().splitlines()[-1]
    assert verdict.endswith("| PASS |" if status == 0 else "| FAIL |")
    df = pd.read_parquet(raw)
    assert sorted(df.kind) == ["contention-alone"] * 2 + ["contention-contended"] * 2
    assert (df.threads == perf.CONTENTION_THREADS).all() and (df.method == "zoneout").all()
    ideal = perf.ideal_slowdown(perf.CONTENTION_THREADS, perf.cpu_cores())
    assert (df.contention_ideal == ideal).all()
    by_kind = df.groupby("kind").seconds.median()
    assert df.contention_slowdown.iloc[0] == pytest.approx(by_kind["contention-contended"] / by_kind["contention-alone"])
    assert df.contention_passed.iloc[0] == (status == 0) == (df.contention_slowdown.iloc[0] <= perf.TOLERANCE * ideal)


def test_ideal_slowdown_is_the_cpu_share_lost():
    assert perf.ideal_slowdown(2, 2) == 2.0           # 2 cores, a competitor takes one: half lost
    assert perf.ideal_slowdown(2, 16) == 1.0          # a free core for the competitor: nothing lost
    assert perf.ideal_slowdown(1, 1) == 2.0           # one core shared fairly
    assert perf.ideal_slowdown(4, 4) == pytest.approx(4 / 3)


def test_failed_contention_check_fails_make_perf(tmp_path, monkeypatch):
    """main's exit status is 1 when the check fails (after writing the report)."""
    fake = dict(shape="cpu-small", method="zoneout", rnn_path="fast", threads=2, cores=2, steps=1, repeats=1,
                tokens=700, times={"alone": [1.0], "contended": [3.0]}, omp_wait_policy="ACTIVE",
                competitor_pid=0, loadavg=0.5, alone_s=1.0, contended_s=3.0, slowdown=3.0, ideal=2.0, limit=2.5, passed=False)
    monkeypatch.setattr(perf, "contention", lambda *args, **kw: fake)
    out = tmp_path / "PERF.md"
    assert perf.main(["--contention", "only", "--out", str(out), "--parquet", str(tmp_path / "p.parquet")]) == 1
    assert "| 3.00x | 2.00x | 2.50x | FAIL |" in out.read_text()


def test_bad_impl_is_a_usage_error(tmp_path, tiny):
    with pytest.raises(UsageError, match="--impl 'quick'.*auto\\|reference\\|fast\\|graph"):
        perf.main(["--shapes", "tiny", "--impl", "auto,quick", "--contention", "off", "--device", "cpu",
                   "--out", str(tmp_path / "P.md"), "--parquet", str(tmp_path / "p.parquet")])
