import json
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq

from bench import results, runner, seeding, verify
from bench.cli import main


def rewrite(path, **changes):
    """Tamper with a registered row (a stand-in for a row made elsewhere or edited by hand)."""
    t = results.read_row(path)
    t.update(changes)
    path.unlink()
    pq.write_table(pa.Table.from_pylist([t], schema=results.SCHEMA), path)


def run(tiny_lm, tmp_path, method, protocol="smoke", **overrides):
    task, root = tiny_lm
    return runner.run(task.name, method, protocol, device="cpu", registry=tmp_path / "reg",
                      runs_dir=tmp_path / "runs", data_dir=root, overrides=overrides)


def test_full_rerun_passes_exactly_then_catches_a_changed_metric(tiny_lm, tmp_path):
    out = run(tiny_lm, tmp_path, "gal")
    lines = []
    res = verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], echo=lines.append)
    assert [(r["run_id"], r["mode"], r["ok"], r["exact"]) for r in res] == [(out.row["run_id"], "full", True, True)]
    assert lines[0].startswith("OK")
    rewrite(out.path, test=out.row["test"] + 1e-9)
    res = verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], echo=lines.append)
    assert not res[0]["ok"] and lines[-1].startswith("FAIL")


def test_a_changed_learning_curve_fails_a_full_rerun(tiny_lm, tmp_path):
    out = run(tiny_lm, tmp_path, "zaremba")
    curve = list(out.row["curve_train_loss"])
    curve[0] += 1e-12
    rewrite(out.path, curve_train_loss=curve)
    assert not verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], echo=lambda s: None)[0]["ok"]


def test_long_protocol_rows_are_verified_by_replaying_their_first_steps(tiny_lm, tmp_path):
    out = run(tiny_lm, tmp_path, "zoneout", "equal", epochs="1", hidden_size="8", emb_size="8", bptt="8")
    assert len(out.row["probe_loss"]) == 8
    res = verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], echo=lambda s: None)
    assert res[0]["ok"] and res[0]["exact"] and res[0]["mode"] == "probe 8 steps"
    probe = list(out.row["probe_loss"])
    probe[-1] *= 1 + 1e-9
    rewrite(out.path, probe_loss=probe)
    assert not verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], echo=lambda s: None)[0]["ok"]


def test_tolerance_applies_when_the_fingerprint_differs(tiny_lm, tmp_path):
    out = run(tiny_lm, tmp_path, "zaremba")
    rewrite(out.path, torch_version="0.0.0", test=out.row["test"] * (1 + verify.REL_TOL / 10))
    res = verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], echo=lambda s: None)
    assert res[0]["ok"] and not res[0]["exact"]


def test_a_probe_replayed_elsewhere_compares_its_first_steps_only(tiny_lm, tmp_path):
    """On another CPU model the optimizer amplifies rounding step by step: the first CROSS_STEPS
    steps are compared within REL_TOL, later ones not; on the same fingerprint all, bit for bit."""
    out = run(tiny_lm, tmp_path, "zoneout", "equal", epochs="1", hidden_size="8", emb_size="8", bptt="8")
    probe = list(out.row["probe_loss"])
    check = lambda: verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], echo=lambda s: None)[0]
    late = probe[:verify.CROSS_STEPS] + [x * 1.01 for x in probe[verify.CROSS_STEPS:]]
    rewrite(out.path, probe_loss=late)
    assert not check()["ok"]                                 # same machine: every step, exactly
    rewrite(out.path, probe_loss=late, numerics="native", cpu_model="Some Other CPU")
    res = check()
    assert res["ok"] and not res["exact"] and res["mode"] == f"probe {verify.CROSS_STEPS} steps"
    early = list(late)
    early[verify.CROSS_STEPS - 1] *= 1 + 10 * verify.REL_TOL
    rewrite(out.path, probe_loss=early)
    assert not check()["ok"]


def test_the_cpu_model_is_part_of_every_cpu_fingerprint():
    """Portable numerics narrow the gap between CPUs but do not close it for every task (SST and
    Multi30k rows drift in their last bits between an Intel Xeon and an AMD EPYC): a row made on
    another CPU model is compared within the tolerance, whatever its numerics."""
    fp = seeding.fingerprint(__import__("torch").device("cpu"))
    for numerics in ("portable", "native"):
        here = dict(fp, numerics=numerics)
        assert verify.same_fingerprint(SimpleNamespace(**here), here)
        assert not verify.same_fingerprint(SimpleNamespace(**dict(here, cpu_model="Some Other CPU")), here)
        assert not verify.same_fingerprint(SimpleNamespace(**dict(here, cpu_isa="avx2")), here)


def test_rows_trained_with_the_reference_cell_are_rerun_with_it(tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_RNN_IMPL", "reference")
    out = run(tiny_lm, tmp_path, "naive")
    assert out.row["rnn_path"] == "cell"
    monkeypatch.setenv("BENCH_RNN_IMPL", "auto")
    res = verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], echo=lambda s: None)
    assert res[0]["ok"] and res[0]["exact"]


def test_reference_cell_is_found_in_every_path_format():
    assert verify.impl_for("cell") == "reference"
    assert verify.impl_for("cell,fused") == "reference"
    assert verify.impl_for("enc:cell dec:cell") == "reference"     # translation's format
    assert verify.impl_for("enc:fused dec:fast,fused") == "auto"


def test_unverifiable_rows_are_listed_with_their_reason(tiny_lm, tmp_path, capsys, monkeypatch):
    out = run(tiny_lm, tmp_path, "zaremba")
    row = results.read_row(out.path)
    row.update(task="no-such-task", run_id="no-such-task.x")
    pq.write_table(pa.Table.from_pylist([row], schema=results.SCHEMA),
                   tmp_path / "reg" / "tinylm" / "zaremba" / "no-such-task.x.parquet")
    res = verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], echo=lambda s: None)
    bad = [r for r in res if not r["ok"]]
    assert [r["run_id"] for r in bad] == ["no-such-task.x"] and "unknown task" in bad[0]["detail"]
    budget = verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], smoke_max_s=0, echo=lambda s: None)
    assert [(r["run_id"], r["ok"]) for r in budget] == [(r["run_id"], r["ok"]) for r in res]   # CI's budget too
    assert [r["ok"] for r in child_summary(tmp_path, monkeypatch, tiny_lm[1])] == [False, True]


def test_rows_whose_data_is_absent_are_skipped_not_failed(tiny_lm, tmp_path, capsys, monkeypatch):
    run(tiny_lm, tmp_path, "zaremba")
    res = verify.verify_all(tmp_path / "reg", data_dir=tmp_path / "empty", echo=lambda s: None)
    assert res[0]["skipped"] and res[0]["ok"] and "data absent" in res[0]["detail"]
    assert [r["skipped"] for r in child_summary(tmp_path, monkeypatch, tmp_path / "empty")] == [True]


def child_summary(tmp_path, monkeypatch, data_dir) -> list[dict]:
    """`verify-seeds` runs one child process per numerics mode; here the child, in-process."""
    monkeypatch.setenv("BENCH_REGISTRY", str(tmp_path / "reg"))
    summary = tmp_path / "summary.json"
    assert main(["--data-dir", str(data_dir), "verify-seeds", "--numerics", "portable",
                 "--summary", str(summary)]) == 0
    return json.loads(summary.read_text())


def test_each_numerics_mode_is_replayed_in_its_own_mode(tiny_lm, tmp_path):
    out = run(tiny_lm, tmp_path, "zaremba")
    assert out.row["numerics"] == "portable"          # the test process runs with portable numerics
    rewrite(out.path, numerics="native")
    assert verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], numerics="portable", echo=print) == []
    assert [r["run_id"] for r in verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], numerics="native",
                                                    echo=lambda s: None)] == [out.row["run_id"]]
    assert verify.replay_mode("") == "native" and verify.replay_mode("cuda-deterministic") == "native"


def test_config_json_is_the_config_that_ran(tiny_lm, tmp_path):
    out = run(tiny_lm, tmp_path, "zaremba", lr="0.5")
    assert json.loads(out.row["config_json"])["lr"] == 0.5


def test_rows_are_replayed_with_their_own_thread_count(tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_THREADS", "1")
    out = run(tiny_lm, tmp_path, "zoneout")
    assert out.row["threads"] == 1
    monkeypatch.setenv("BENCH_THREADS", "2")                  # verify-seeds in a 2-thread process
    res = verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], echo=lambda s: None)
    assert res[0]["ok"] and res[0]["exact"]


def test_sweep_points_share_one_data_load_and_still_verify_exactly(tiny_lm, tmp_path, monkeypatch):
    task = tiny_lm[0]
    for p in ("0.1", "0.3"):
        run(tiny_lm, tmp_path, "zaremba", p_out=p)
    run(tiny_lm, tmp_path, "zaremba", p_out="0.1", bptt="6")          # the task's own key differs
    loads = []
    real = type(task).load
    monkeypatch.setattr(type(task), "load", lambda self, *a: loads.append(a) or real(self, *a))
    res = verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], echo=lambda s: None)
    assert len(res) == 3 and all(r["ok"] and r["exact"] for r in res)
    assert len(loads) == 2                        # the two p_out points: one load; bptt=6: its own


def test_sweep_sample_keeps_every_results_row_and_the_same_few_sweep_rows():
    import pandas as pd
    ids = [f"ptb.zoneout.sweep.s{s}.cpu.{i:08x}" for i in range(10) for s in (0, 1)]
    df = pd.DataFrame(dict(run_id=ids + ["ptb.zaremba.cpu.s0.cpu.1", "sst2.gal.sweep.s0.cpu.2"],
                           protocol=["sweep"] * 20 + ["cpu", "sweep"], task=["ptb"] * 21 + ["sst2"],
                           method=["zoneout"] * 20 + ["zaremba", "gal"]))
    picked = verify.sample(df, 2)
    assert len(picked) == 4 and "ptb.zaremba.cpu.s0.cpu.1" in set(picked.run_id)
    assert (picked.protocol == "sweep").sum() == 3
    assert list(verify.sample(df.iloc[::-1], 2).run_id) == list(picked.run_id)      # order-independent
    assert len(verify.sample(df, 0)) == 1


def test_sweep_sample_must_be_a_count(capsys):
    import pytest
    with pytest.raises(SystemExit) as exc:
        main(["verify-seeds", "--sweep-sample", "-1"])
    assert exc.value.code == 2 and "expected a whole number >= 0" in capsys.readouterr().err


def test_uncommitted_verifies_only_the_rows_git_does_not_track_yet(tiny_lm, tmp_path, monkeypatch, capsys):
    import subprocess
    old = run(tiny_lm, tmp_path, "zaremba")
    reg = tmp_path / "reg"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(reg)]
    subprocess.run(["git", "init", "-q", str(reg)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "rows"], check=True)
    new = run(tiny_lm, tmp_path, "naive")
    res = verify.verify_all(reg, data_dir=tiny_lm[1], uncommitted=True, echo=lambda s: None)
    assert [r["run_id"] for r in res] == [new.row["run_id"]] and res[0]["ok"] and res[0]["exact"]
    assert old.row["run_id"] in {r["run_id"] for r in verify.verify_all(reg, data_dir=tiny_lm[1], echo=lambda s: None)}
    subprocess.run(["rm", "-rf", str(reg / ".git")], check=True)          # no longer a checkout
    monkeypatch.setenv("BENCH_REGISTRY", str(reg))
    assert main(["--data-dir", str(tiny_lm[1]), "verify-seeds", "--uncommitted"]) == 2
    assert "--uncommitted needs git and the registry" in capsys.readouterr().err


def test_a_gpu_row_is_skipped_with_its_reason_where_there_is_no_gpu(tiny_lm, tmp_path, monkeypatch):
    """Its masks came from the GPU's generator: without a GPU it is listed, not failed, not replayed."""
    monkeypatch.setattr(verify.torch.cuda, "is_available", lambda: False)
    out = run(tiny_lm, tmp_path, "zoneout")
    rewrite(out.path, device="cuda", device_name="NVIDIA H100 80GB HBM3", cuda_version="13.0")
    lines = []
    res = verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], echo=lines.append)
    assert [(r["ok"], r["skipped"]) for r in res] == [(True, True)]
    assert lines[0].startswith("SKIP") and "GPU row (NVIDIA H100 80GB HBM3)" in lines[0] and "CUDA" in lines[0]
    from bench import rnn
    assert rnn.bernoulli_mask((2, 3), 0.5, verify.torch.zeros(1)).shape == (2, 3)   # the guard is lifted


def test_a_gpu_row_that_draws_no_mask_is_replayed_on_the_cpu_within_the_tolerance(tiny_lm, tmp_path, monkeypatch):
    """`none` draws no mask: its numbers do not depend on the GPU's generator, so the CPU can check it."""
    monkeypatch.setattr(verify.torch.cuda, "is_available", lambda: False)
    out = run(tiny_lm, tmp_path, "none")
    rewrite(out.path, device="cuda", device_name="NVIDIA H100 80GB HBM3", cuda_version="13.0",
            test=out.row["test"] * (1 + verify.REL_TOL / 10))
    res = verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], echo=lambda s: None)
    assert [(r["ok"], r["skipped"], r["exact"]) for r in res] == [(True, False, False)]


def test_gpu_rows_compare_the_gpu_model_and_cuda_version():
    fp = dict(torch_version="2.11.0+cu130", device="cuda", threads=1, numerics="cuda-deterministic",
              device_name="NVIDIA H100 80GB HBM3", cuda_version="13.0", cpu_model="x", cpu_isa="", cpu_capability="")
    assert verify.same_fingerprint(SimpleNamespace(**dict(fp, cpu_model="another host")), fp)
    assert not verify.same_fingerprint(SimpleNamespace(**dict(fp, device_name="NVIDIA H200")), fp)
    assert not verify.same_fingerprint(SimpleNamespace(**dict(fp, cuda_version="12.8")), fp)


def test_an_only_filter_that_matches_no_registered_id_is_an_error_not_zero_passed(tiny_lm, tmp_path, capsys,
                                                                                 monkeypatch):
    out = run(tiny_lm, tmp_path, "none")
    monkeypatch.setenv("BENCH_REGISTRY", str(tmp_path / "reg"))
    assert main(["--data-dir", str(tiny_lm[1]), "verify-seeds", "--only", "zaremab"]) == 2
    err = capsys.readouterr().err
    assert "--only 'zaremab' is in no registered run id" in err and "numerics rows failed" not in err
    assert out.row["run_id"] in err                                    # an example of what ids look like
    res = verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], only=".none.", echo=lambda _: None)
    assert [r["run_id"] for r in res] == [out.row["run_id"]]


def test_a_full_replay_of_a_long_row_matches_bit_for_bit_with_its_result_digests(tiny_lm, tmp_path):
    out = run(tiny_lm, tmp_path, "zoneout", "equal", epochs="2", hidden_size="8", emb_size="8", bptt="8")
    assert out.row["weights_sha256"] and out.row["examples_sha256"]
    rid = out.row["run_id"]
    [r] = verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], full=rid, echo=lambda s: None)
    assert (r["mode"], r["ok"], r["exact"]) == ("full replay", True, True)
    assert r["log"]["weights_sha256"] == out.row["weights_sha256"]
    assert r["log"]["examples_sha256"] == out.row["examples_sha256"]
    rewrite(out.path, weights_sha256="0" * 64)
    [r] = verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], full="tinylm.*.equal.*", echo=lambda s: None)
    assert not r["ok"] and "weights_sha256" in r["detail"]


def test_a_full_replay_elsewhere_compares_metrics_within_the_tasks_tolerance(tiny_lm, tmp_path, monkeypatch):
    out = run(tiny_lm, tmp_path, "zoneout", "equal", epochs="2", hidden_size="8", emb_size="8", bptt="8")
    monkeypatch.setitem(verify.FULL_TOL, "tinylm", ("rel", 0.01))
    late = list(out.row["curve_valid"])
    late[-1] *= 1.5                                          # later epochs are not compared elsewhere
    rewrite(out.path, cpu_model="Some Other CPU", weights_sha256="0" * 64, test=out.row["test"] * 1.005,
            curve_valid=late)
    check = lambda: verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], full=out.row["run_id"],
                                      echo=lambda s: None)[0]
    r = check()
    assert r["ok"] and not r["exact"] and r["log"]["result"].startswith("tolerance")
    rewrite(out.path, test=out.row["test"] * 1.02)
    r = check()
    assert not r["ok"] and "test" in r["detail"]


def test_full_selects_by_run_id_or_glob_and_a_pattern_matching_nothing_is_a_usage_error(tiny_lm, tmp_path, capsys,
                                                                                         monkeypatch):
    run(tiny_lm, tmp_path, "none")
    monkeypatch.setenv("BENCH_REGISTRY", str(tmp_path / "reg"))
    assert main(["--data-dir", str(tiny_lm[1]), "verify-seeds", "--full", "tinylm.*.cpu.ffff*"]) == 2
    assert "matches no registered run id" in capsys.readouterr().err


HERE = dict(torch_version="2.x", device="cpu", threads=2, numerics="native", cpu_model="CPU A", cpu_isa="avx2",
            cpu_capability="AVX2")


def test_the_rotation_is_chosen_by_the_commit_and_covers_rows_in_turn():
    import pandas as pd
    ids = [f"sst{t}.m{i}.cpu.s0.cpu.{i:08x}" for t in (2, 5) for i in range(10)]
    df = pd.DataFrame(dict(run_id=ids + ["ptb.m.cpu.s0.cpu.1", "sst2.m.smoke.s0.cpu.2"],
                           protocol=["cpu"] * 21 + ["smoke"], task=[i.split(".")[0] for i in ids] + ["ptb", "sst2"],
                           wall_s=200.0, **dict(HERE, cpu_model="CPU B")))
    a = verify.rotation(df, 2, commit="a" * 40)
    assert len(a) == 2 and a == verify.rotation(df.iloc[::-1], 2, commit="a" * 40)
    assert set(a) <= set(ids)
    seen = set().union(*(verify.rotation(df, 2, commit=f"{c:040x}") for c in range(40)))
    assert seen == set(ids)
    slow = df.assign(wall_s=[200.0] * 19 + [verify.ROTATION_MAX_WALL_S + 1] + [200.0] * 2)
    assert ids[19] not in set().union(*(verify.rotation(slow, 2, commit=f"{c:040x}", fp=HERE) for c in range(40)))


def test_the_rotation_prefers_rows_that_replay_bit_for_bit_on_this_machine():
    """A full replay on other hardware is another draw of the training (compared within a tolerance);
    on the CPU that made the row it is exact, so the rotation picks those rows where there are any."""
    import pandas as pd
    ids = [f"sst2.m{i}.cpu.s0.cpu.{i:08x}" for i in range(10)]
    df = pd.DataFrame(dict(run_id=ids, protocol="cpu", task="sst2", wall_s=200.0, **dict(HERE, threads=1)))
    df["cpu_model"] = ["CPU A"] * 3 + ["CPU B"] * 7
    picked = set().union(*(verify.rotation(df, 1, commit=f"{c:040x}", fp=HERE) for c in range(40)))
    assert picked == set(ids[:3])          # the replay sets the row's own threads and numerics mode
    portable = dict(HERE, threads=2, numerics="portable", cpu_capability="DEFAULT")   # so every process agrees
    assert set().union(*(verify.rotation(df, 1, commit=f"{c:040x}", fp=portable) for c in range(40))) == picked
    nowhere = dict(HERE, cpu_model="CPU C")             # no row made here: every row in turn, within tolerance
    assert set().union(*(verify.rotation(df, 1, commit=f"{c:040x}", fp=nowhere) for c in range(60))) == set(ids)


def test_the_tolerance_elsewhere_widens_to_what_two_seeds_of_the_cell_differ_by():
    import pandas as pd
    from scipy import stats
    tests = [80.0, 81.0, 79.0, 80.5, 79.5, 80.2, 78.4]
    df = pd.DataFrame(dict(protocol="cpu", task="sst2", method="a", config_hash="h", device="cpu", status="ok",
                           test=tests))
    df.loc[len(df)] = dict(protocol="cpu", task="sst2", method="a", config_hash="h", device="cpu",
                           status="diverged", test=float("nan"))          # no test number: not a draw
    df.loc[len(df)] = dict(protocol="cpu", task="sst2", method="b", config_hash="g", device="cpu", status="ok",
                           test=50.0)                                     # a one-seed cell: no spread
    df.loc[len(df)] = dict(protocol="cpu", task="sst2", method="c", config_hash="k", device="cpu", status="ok",
                           test=70.0)
    df.loc[len(df)] = dict(protocol="cpu", task="sst2", method="c", config_hash="k", device="cpu", status="ok",
                           test=75.0)
    spread = verify.seed_spread(df)
    assert set(spread) == {("cpu", "sst2", "a", "h", "cpu"), ("cpu", "sst2", "c", "k", "cpu")}
    s, dof = spread[("cpu", "sst2", "a", "h", "cpu")]
    assert dof == 6 and abs(s - pd.Series(tests).std()) < 1e-12
    row = SimpleNamespace(protocol="cpu", task="sst2", method="a", config_hash="h", device="cpu")
    tol = verify.cross_tolerance(row, spread)
    assert tol.draws == stats.t.isf(verify.CROSS_ALPHA / 2, 6) * 2 ** 0.5 * s
    assert tol.ok(80.0, 80.0 + tol.draws * 0.99) and not tol.ok(80.0, 80.0 + tol.draws * 1.01)
    assert "t(0.9995, 6 df)" in str(tol)
    few = verify.cross_tolerance(SimpleNamespace(**dict(vars(row), method="c", config_hash="k")), spread)
    assert few.draws is None and str(few) == "abs.tol 1.5"     # 1 df: the task's floor alone, however wide
    assert few.ok(80.0, 81.5) and not few.ok(80.0, 81.6)
    assert tol.ok(80.0, 81.4) and verify.cross_tolerance(SimpleNamespace(**dict(vars(row), method="b")), spread).ok(
        80.0, 81.5)
def test_ci_budget_probes_the_long_smoke_rows_but_a_rotation_of_them():
    import pandas as pd
    ids = [f"sst2.m{i}.smoke.s0.cpu.{i:08x}" for i in range(12)]
    df = pd.DataFrame(dict(run_id=ids + ["sst2.m.cpu.s0.cpu.1"], protocol=["smoke"] * 12 + ["cpu"], task="sst2",
                           device="cpu", wall_s=[3.0] * 4 + [20.0] * 8 + [300.0]))
    assert verify.smoke_probed(df, None, 1) == set()                 # no budget: every smoke row in full
    assert verify.smoke_probed(df, 8, 0) == set(ids[4:])              # long ones; short and long protocols not
    picked = [set(ids[4:]) - verify.smoke_probed(df, 8, 1, commit=f"{c:040x}") for c in range(40)]
    assert all(len(p) == 1 for p in picked) and set().union(*picked) == set(ids[4:])   # each in turn
    assert verify.smoke_probed(df, 8, 2, commit="a" * 40) == verify.smoke_probed(df.iloc[::-1], 8, 2, commit="a" * 40)


def test_a_probed_smoke_row_replays_its_first_steps_exactly_and_says_so(tiny_lm, tmp_path, capsys):
    out = run(tiny_lm, tmp_path, "zoneout")
    r = verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], smoke_max_s=0, echo=lambda s: None)[0]
    assert r["ok"] and r["exact"] and r["mode"] == "probe 8 steps (smoke, CI budget)"
    probe = list(out.row["probe_loss"])
    probe[-1] *= 1 + 1e-9
    rewrite(out.path, probe_loss=probe)
    assert not verify.verify_all(tmp_path / "reg", data_dir=tiny_lm[1], smoke_max_s=0, echo=lambda s: None)[0]["ok"]
    assert verify.smoke_budget_line([r], 0).startswith("smoke rows probed: 1 that trained longer than 0 s")
    import pytest
    with pytest.raises(SystemExit) as exc:
        main(["verify-seeds", "--smoke-max-s", "soon"])
    assert exc.value.code == 2 and "expected a number of seconds >= 0" in capsys.readouterr().err


def test_passing_full_replays_are_logged_and_old_rows_counted_start_only(tmp_path):
    import pandas as pd
    rows = [dict(run_id="a", ok=True, skipped=False, machine="CPU X", log=dict(result="exact: bit for bit",
                                                                                weights_sha256="w", examples_sha256="e")),
            dict(run_id="b", ok=False, skipped=False, log=dict(result="x", weights_sha256="", examples_sha256="")),
            dict(run_id="c", ok=True, skipped=False)]
    assert verify.append_log(tmp_path, rows, commit="c0ffee") == 1
    assert verify.append_log(tmp_path, rows[:1], commit="c0ffee") == 1
    log = verify.read_log(tmp_path)
    assert list(log.columns) == list(verify.LOG_COLUMNS) and list(log.run_id) == ["a", "a"]
    assert (log.commit == "c0ffee").all() and log.machine.iloc[0] == "CPU X"
    df = pd.DataFrame(dict(run_id=["a", "b", "s", "d"], task="sst2", protocol=["cpu", "cpu", "smoke", "cpu"],
                           status=["ok", "ok", "ok", "diverged"], examples_sha256=["", "", "", ""]))
    assert verify.start_only(df, log) == ["b"]
