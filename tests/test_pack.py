"""Packs (bench/pack.py): member i of a pack equals the solo run of its seed (per-step losses of the
first 50 steps within 1e-5 relative, a whole smoke run's metrics within verify's REL_TOL), for every
method that packs; the methods that do not pack fall back to the solo row; rows, divergence,
checkpoint and resume."""
from __future__ import annotations

import json
import math

import pytest
import torch

from bench import pack, results, runner
from bench import train as train_mod
from bench.checkpoint import Checkpoint, Interrupted
from bench.verify import REL_TOL

PACKED = ("none", "zaremba", "naive", "gal", "semeniuta", "zoneout", "rnndrop", "curriculum")
SOLO = ("awd", "fraternal")
STEPS = 50
CPU = torch.device("cpu")


def rel(a, b):
    a, b = float(a), float(b)
    return 0.0 if a == b or (math.isnan(a) and math.isnan(b)) else abs(a - b) / max(abs(a), abs(b))


@pytest.fixture
def lm(tiny_lm, monkeypatch):
    monkeypatch.setattr(train_mod, "PROBE_STEPS", STEPS)      # record the first 50 step losses
    monkeypatch.setenv("BENCH_THREADS", "1")
    task, root = tiny_lm
    return task, root


def members(task, entries):
    return pack.resolve_members(task.name, [{"protocol": "smoke", **e} for e in entries], "cpu")[1]


def solo(task, m, data):
    return runner.execute(task, m.method, m.cfg, data, m.seed, CPU, progress=False, echo=lambda *a: None)


def assert_member_is_solo(task, m, r, data):
    s = solo(task, m, data)
    assert r.status == s["status"] == "ok"
    assert len(r.probe) == len(s["probe_loss"]) == STEPS
    worst = max(rel(a, b) for a, b in zip(r.probe, s["probe_loss"]))
    assert worst <= 1e-5, f"{m.run_id}: step losses differ by {worst:.2e}"
    assert rel(r.valid, s["valid"]) <= REL_TOL and rel(r.test, s["test"]) <= REL_TOL
    got = runner.metrics_of(task, r, s["derived_seed"], 0.0)
    for c in ("curve_train_loss", "curve_valid", "curve_valid_loss", "curve_lr"):
        assert len(got[c]) == len(s[c]) and all(rel(a, b) <= REL_TOL for a, b in zip(got[c], s[c])), c
    assert (r.best_epoch, r.epochs, r.params) == (s["best_epoch"], s["epochs"], s["params"])


@pytest.mark.parametrize("method", PACKED)
def test_member_equals_solo(lm, method):
    task, root = lm
    ms = members(task, [dict(method=method, seed=s) for s in (0, 1, 2)])
    assert not pack.why_not(task, ms[0].method, ms[0].cfg)
    data = task.load(root, ms[0].cfg)
    res = pack.train_pack(task, ms, data, CPU, echo=lambda *a: None)
    assert_member_is_solo(task, ms[1], res[1], data)


@pytest.mark.parametrize("method", ("zaremba", "gal", "semeniuta", "zoneout"))
def test_gru_member_equals_solo(lm, method):
    """lr 0.3: at the smoke lr of 1 this GRU's trajectory is chaotic (seed 2: a 1e-7 rounding difference
    grows to 1e-2 by step 38), so no two float orders, on any two machines, agree there."""
    task, root = lm
    ms = members(task, [dict(method=method, seed=s, overrides={"cell": "gru", "lr": "0.3"}) for s in (0, 1, 2)])
    data = task.load(root, ms[0].cfg)
    res = pack.train_pack(task, ms, data, CPU, echo=lambda *a: None)
    assert_member_is_solo(task, ms[2], res[2], data)


def test_mixed_methods_pack(lm):
    """Different methods (different masks, modes and zoneout) in one pack: each member is its solo run."""
    task, root = lm
    ms = members(task, [dict(method=m, seed=0) for m in ("gal", "zoneout", "rnndrop")]
                 + [dict(method="naive", seed=0, overrides={"p_rec": "0.0", "lr": "0.7"})])
    assert len(pack.groups(task, ms, "cpu")) == 1
    data = task.load(root, ms[0].cfg)
    res = pack.train_pack(task, ms, data, CPU, echo=lambda *a: None)
    for m, r in zip(ms, res):
        assert_member_is_solo(task, m, r, data)


@pytest.mark.parametrize("method", SOLO)
def test_fallback_is_the_solo_row(lm, method, tmp_path):
    task, root = lm
    m = members(task, [dict(method=method, seed=0)])[0]
    assert pack.why_not(task, m.method, m.cfg)
    out = pack.run_pack(task.name, [dict(method=method, seed=0, protocol="smoke")], "cpu", tmp_path / "a",
                        tmp_path / "runs", root, echo=lambda *a: None)[0]
    ref = runner.run(task.name, method, "smoke", 0, "cpu", {}, tmp_path / "b", tmp_path / "runs2", root,
                     progress=False, echo=lambda *a: None)
    assert out.row["run_id"] == ref.row["run_id"] == m.run_id
    assert (out.row["pack_size"], out.row["pack_members"]) == (1, "[]")
    for k in ("status", "valid", "test", "curve_valid", "probe_loss", "weights_sha256", "rnn_path"):
        assert out.row[k] == ref.row[k], k


def test_rows_of_a_pack(lm, tmp_path):
    task, root = lm
    entries = [dict(method="zaremba", seed=s, protocol="smoke") for s in (0, 1)] + \
              [dict(method="awd", seed=0, protocol="smoke")]
    outs = pack.run_pack(task.name, entries, "cpu", tmp_path / "reg", tmp_path / "runs", root, echo=lambda *a: None)
    ids = [o.row["run_id"] for o in outs]
    for o, e in zip(outs, entries):
        m = members(task, [e])[0]
        assert o.row["run_id"] == m.run_id and o.new
    assert [o.row["pack_size"] for o in outs] == [2, 2, 1]
    assert json.loads(outs[0].row["pack_members"]) == ids[:2] and outs[2].row["pack_members"] == "[]"
    assert outs[0].row["rnn_path"] == "pack" and outs[0].row["examples_sha256"]
    df = results.read_registry(tmp_path / "reg")
    assert sorted(df.run_id) == sorted(ids)
    assert results.read_examples(tmp_path / "reg", outs[0].row) is not None
    again = pack.run_pack(task.name, entries, "cpu", tmp_path / "reg", tmp_path / "runs", root, echo=lambda *a: None)
    assert not any(o.new for o in again)
    assert not (tmp_path / "runs" / pack.pack_id(task.name, "smoke", "cpu", ids[:2]) / "checkpoint.pt").exists()
    # verify-seeds replays each member solo: within the tolerance for pack members, exactly for the solo row
    from bench import verify
    got = {r["run_id"]: r for r in verify.verify_all(tmp_path / "reg", data_dir=root, echo=lambda *a: None)}
    assert all(r["ok"] for r in got.values()), got
    assert [got[i]["exact"] for i in ids] == [False, False, True]


def test_a_diverged_member_does_not_stop_the_others(lm):
    task, root = lm
    ms = members(task, [dict(method="zaremba", seed=0, overrides={"lr": "1e37"}), dict(method="zaremba", seed=1)])
    data = task.load(root, ms[0].cfg)
    res = pack.train_pack(task, ms, data, CPU, echo=lambda *a: None)
    s = solo(task, ms[0], data)
    assert res[0].status == s["status"] == "diverged"
    assert len(res[0].history) == s["epochs"] and len(res[0].probe) == len(s["probe_loss"])
    assert_member_is_solo(task, ms[1], res[1], data)


class StopAfter:
    """A stop signal that is 'requested' at the n-th check (one check per step)."""

    def __init__(self, n):
        self.n = n

    @property
    def requested(self):
        self.n -= 1
        return self.n == 0


def test_resume_is_bit_for_bit(lm, tmp_path):
    task, root = lm
    entries = [dict(method="gal", seed=0), dict(method="zoneout", seed=1), dict(method="curriculum", seed=2)]
    ms = members(task, entries)
    data = task.load(root, ms[0].cfg)
    whole = pack.train_pack(task, ms, data, CPU, echo=lambda *a: None)
    ckpt = Checkpoint(tmp_path / "ck.pt")
    with pytest.raises(Interrupted):                  # mid-epoch 2 (about 50 steps an epoch)
        pack.train_pack(task, members(task, entries), data, CPU, checkpoint=ckpt, stop=StopAfter(63),
                        echo=lambda *a: None)
    assert ckpt.path.exists()
    resumed = pack.train_pack(task, members(task, entries), data, CPU, checkpoint=Checkpoint(ckpt.path),
                              echo=lambda *a: None)
    for a, b in zip(whole, resumed):
        assert (a.status, a.valid, a.test, a.best_epoch, a.probe, a.weights_sha256) == \
               (b.status, b.valid, b.test, b.best_epoch, b.probe, b.weights_sha256)
        assert [h["valid"] for h in a.history] == [h["valid"] for h in b.history]
        assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]


def test_what_does_not_pack(lm):
    task, _ = lm
    ms = members(task, [dict(method="gal", seed=0, overrides={"gates": "untied"}),
                        dict(method="fraternal", seed=0, overrides={"fraternal_base": "zaremba"}),
                        dict(method="zaremba", seed=0, overrides={"var_bptt": "true"}),
                        dict(method="zaremba", seed=0, overrides={"optimizer": "adam"})])
    assert all(pack.why_not(task, m.method, m.cfg) for m in ms)
    a, b = members(task, [dict(method="zaremba", seed=0), dict(method="zaremba", seed=0, overrides={"bptt": "10"})])
    assert pack.pack_key(task, a.method, a.cfg, "smoke", "cpu") != pack.pack_key(task, b.method, b.cfg, "smoke", "cpu")


def test_campaign_groups_packable_runs(lm, capsys):
    from bench import campaign, plans
    task, root = lm
    block = plans.make_block(dict(protocol="smoke", tasks="tinylm", methods=["zaremba", "gal", "awd"], seeds="0-1"),
                             "test")
    specs = plans.expand([block], "cpu")
    jobs = pack.campaign_jobs(specs, "cpu")
    packs = [j for j in jobs if hasattr(j, "members")]
    assert len(packs) == 1 and sorted(m.method for m in packs[0].members) == ["gal", "gal", "zaremba", "zaremba"]
    assert sorted(j.run_id for j in jobs if not hasattr(j, "members")) == sorted(s.run_id for s in specs
                                                                                 if s.method == "awd")
    cmd = campaign.command(packs[0], "cpu", root)
    assert cmd[1:3] == ["-m", "bench.pack"] and json.loads(cmd[cmd.index("--members") + 1])[0]["method"] == "zaremba"
    assert campaign.run_campaign(specs, dry=True, device="cpu", data_dir=root, pack="auto") == 0
    out = capsys.readouterr().out
    assert "1 pack(s) of 4 members, 2 solo" in out and packs[0].run_id in out


def test_run_pack_resumes_its_checkpoint(lm, tmp_path, monkeypatch):
    """SIGTERM (here: the stop flag at step 70) checkpoints the pack into runs/<pack id>/; the same
    command resumes it, and its rows equal those of an uninterrupted pack."""
    from bench import checkpoint
    task, root = lm
    entries = [dict(method="naive", seed=0, protocol="smoke"), dict(method="semeniuta", seed=1, protocol="smoke")]
    whole = pack.run_pack(task.name, entries, "cpu", tmp_path / "a", tmp_path / "ra", root, echo=lambda *a: None)

    class Stop(checkpoint.StopSignal):
        calls = 0

        @property
        def requested(self):
            Stop.calls += 1
            return Stop.calls == 70

        @requested.setter
        def requested(self, value):
            pass

    monkeypatch.setattr(pack, "StopSignal", Stop)
    with pytest.raises(Interrupted):
        pack.run_pack(task.name, entries, "cpu", tmp_path / "b", tmp_path / "rb", root, echo=lambda *a: None)
    ids = [o.row["run_id"] for o in whole]
    assert (tmp_path / "rb" / pack.pack_id(task.name, "smoke", "cpu", ids) / "checkpoint.pt").exists()
    assert not list((tmp_path / "b").glob("*/*/*.parquet"))
    said = []
    again = pack.run_pack(task.name, entries, "cpu", tmp_path / "b", tmp_path / "rb", root, echo=said.append)
    assert any("resuming" in s for s in said)
    for a, b in zip(whole, again):
        for k in ("run_id", "status", "valid", "test", "curve_valid", "curve_train_loss", "probe_loss",
                  "weights_sha256", "examples_sha256", "pack_members"):
            assert a.row[k] == b.row[k], k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_member_equals_solo_cuda(lm, monkeypatch):
    """On a GPU: masks from each member's CUDA generator, as its solo run draws them. cuDNN's TF32
    off for the solo runs' fused LSTM, so that both sides compute in fp32."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    task, root = lm
    ms = members(task, [dict(method=m, seed=0) for m in ("zaremba", "gal", "zoneout", "rnndrop", "semeniuta")])
    data = task.load(root, ms[0].cfg)
    cuda = torch.device("cuda")
    res = pack.train_pack(task, ms, data, cuda, echo=lambda *a: None)
    for m, r in zip(ms, res):
        s = runner.execute(task, m.method, m.cfg, data, m.seed, cuda, progress=False, echo=lambda *a: None)
        worst = max(rel(a, b) for a, b in zip(r.probe, s["probe_loss"]))
        assert worst <= 1e-5, f"{m.run_id}: {worst:.2e}"
        assert rel(r.test, s["test"]) <= REL_TOL


@pytest.mark.parametrize("zexp", (False, True))
def test_fast_pack_lstm_equals_its_reference_loop(zexp):
    """_PackLSTM (hand-written BPTT) against lstm_loop (autograd), every mask kind, in float64."""
    from bench import packmodel
    torch.manual_seed(0)
    E, T, B, H = 3, 5, 2, 4
    d = dict(dtype=torch.float64)
    xb, h, c = torch.randn(E, T, B, 4 * H, **d), torch.randn(E, B, H, **d), torch.randn(E, B, H, **d)
    wt = torch.randn(E, H, 4 * H, **d) * 0.5
    bern = lambda *s: (torch.rand(*s, **d) < 0.7).to(torch.float64) / 0.7   # noqa: E731
    masks = {} if zexp else {"rec0": bern(E, 1, B, H), "cell0": bern(E, T, B, H), "c0": bern(E, 1, B, H),
                             "zh0": (torch.rand(E, T, B, H, **d) < 0.2).double(),
                             "zc0": (torch.rand(E, T, B, H, **d) < 0.5).double()}
    ze = (torch.rand(E, 1, 1, **d), torch.rand(E, 1, 1, **d)) if zexp else None
    outs = []
    for loop in (packmodel.lstm_loop, packmodel.lstm_fast):
        args = [t.clone().requires_grad_() for t in (xb, h, c, wt)]
        out, (hT, cT) = loop(*args, masks, 0, ze)
        (out.sin().sum() + hT.cos().sum() + (cT * cT).sum()).backward()
        outs.append([out, hT, cT] + [a.grad for a in args])
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-10)


def test_perf_packs_section_reports_every_size(monkeypatch):
    """The packs section of `make perf` (plumbing only, a tiny shape; no timing is asserted)."""
    from bench import packperf, perf
    monkeypatch.setitem(perf.SHAPES, "tiny", perf.Shape(2, 8, 8, 2, 3, 50, False))
    monkeypatch.setattr(packperf, "side_by_side", lambda *a, **k: 1.0)
    text, rows = packperf.section("tiny", CPU, sizes=(1, 3), steps=1, warmup=1, repeats=1, log=lambda *a: None)
    assert [r["E"] for r in rows if r["section"] == "packs"] == [1, 3]
    assert all(r["tok_s"] > 0 for r in rows) and "| 3 |" in text and "pack of 3" in text


def test_bad_pack_command_exits_2_and_writes_nothing(lm, tmp_path, capsys):
    task, root = lm
    assert pack.main(["--task", task.name, "--members", "not json", "--data-dir", str(root)]) == 2
    assert pack.main(["--task", task.name, "--members", '[{"method": "nosuch"}]', "--data-dir", str(root)]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert not results.registry_path().exists()
