"""`make campaign`: plans, strict validation, skipping, DRY, budget, crashes, local and Ray backends."""
import os
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from bench import campaign, plans, plugins, results
from bench.errors import UsageError
from conftest import REPO, tiny_corpus, write_dataset

# A task on generated data and a method that crashes at training time, as plugin files that the
# campaign's subprocesses load through $BENCH_PLUGINS.
PLUGIN = textwrap.dedent('''
    from bench.api import MethodSpec
    from bench.data import DataFile, DatasetSpec, register_dataset
    from bench.plugins import register_method, register_task
    from tasks.lm import LanguageModelling

    register_dataset(DatasetSpec(name="camplm", files={files!r}, url="file:///fixture"))
    register_task(LanguageModelling("camplm", "camplm", ("train.txt", "valid.txt", "test.txt"), "generated toy LM"))


    def boom(cfg):
        raise RuntimeError("campboom crashes at training time")


    register_method(MethodSpec(name="campboom", paper="a method that crashes", noise=boom))


    def abort_once(cfg):
        import os
        from bench.api import Noise
        marker = os.environ.get("CAMP_ABORT_MARKER")
        if marker and not os.path.exists(marker):
            open(marker, "w").close()
            os.abort()                  # as glibc does when its heap check fails
        return Noise()


    register_method(MethodSpec(name="campabort", paper="a process that aborts on its first start", noise=abort_once))
''')


@pytest.fixture(scope="module")
def fixture_plugins(tmp_path_factory):
    """(plugin folder, data folder) with the task camplm and the method campboom registered here too."""
    root = tmp_path_factory.mktemp("campdata")
    vocab_line = " " + " ".join(f"w{i}" for i in range(40)) + " \n"
    spec = write_dataset(root, "camplm", {"train.txt": vocab_line + tiny_corpus(1, 200),
                                          "valid.txt": tiny_corpus(2, 40), "test.txt": tiny_corpus(3, 40)})
    folder = tmp_path_factory.mktemp("campplugins")
    (folder / "camp_fixture.py").write_text(PLUGIN.format(files=spec.files))
    plugins.load_all()
    plugins.load_directory(str(folder))
    yield folder, root
    plugins.unregister("task", "camplm")
    plugins.unregister("method", "campboom")
    plugins.unregister("method", "campabort")


@pytest.fixture
def camp_env(fixture_plugins, monkeypatch):
    monkeypatch.setenv("BENCH_PLUGINS", str(fixture_plugins[0]))
    monkeypatch.setenv("BENCH_THREADS", "1")
    return fixture_plugins[1]


def write_plan(tmp_path, text: str, name="p"):
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def specs_of(path, device="cpu"):
    return plans.expand_plan(path, device)[1]


def registry_ids() -> set:
    return set(results.read_registry().run_id)


GRID_AND_RANDOM = """
    priority = "{priority}"
    [[block]]
    protocol = "smoke"
    tasks = ["ptb"]
    methods = ["zaremba"]
    seeds = "0-1"
    [block.grid]
    p_out = [0.1, 0.2]
    [[block]]
    protocol = "smoke"
    tasks = "ptb"
    methods = ["zoneout"]
    seeds = [0, 1]
    [block.random]
    n = 3
    seed = 7
    ranges = {{ lr = [0.5, 2.0], epochs = [1, 3] }}
"""


def test_plan_expands_grid_and_seeded_random_search_in_priority_order(tmp_path):
    by_seed = specs_of(write_plan(tmp_path, GRID_AND_RANDOM.format(priority="seed"), "s"))
    assert len(by_seed) == 2 * 2 + 3 * 2
    assert [s.seed for s in by_seed] == [0] * 5 + [1] * 5                       # seed 0 of every cell first
    assert [s.method for s in by_seed[:5]] == ["zaremba"] * 2 + ["zoneout"] * 3   # block order within a seed
    assert sorted(s.cfg["p_out"] for s in by_seed if s.method == "zaremba") == [0.1, 0.1, 0.2, 0.2]
    draws = [s.cfg for s in by_seed if s.method == "zoneout" and s.seed == 0]
    assert all(0.5 <= c["lr"] <= 2.0 and c["epochs"] in (1, 2, 3) for c in draws)
    assert len({(c["lr"], c["epochs"]) for c in draws}) == 3
    again = specs_of(write_plan(tmp_path, GRID_AND_RANDOM.format(priority="seed"), "s2"))
    assert [s.run_id for s in again] == [s.run_id for s in by_seed]             # the draws are seeded
    by_block = specs_of(write_plan(tmp_path, GRID_AND_RANDOM.format(priority="block"), "b"))
    assert [s.method for s in by_block] == ["zaremba"] * 4 + ["zoneout"] * 6
    assert [s.seed for s in by_block[:4]] == [0, 0, 1, 1]
    assert {s.run_id for s in by_block} == {s.run_id for s in by_seed}


BLOCK = 'protocol = "smoke"\ntasks = ["ptb"]\nmethods = ["zaremba"]\n'


@pytest.mark.parametrize("text,expected", [
    ("[[block]]\n" + BLOCK + "colour = 1\n", r"unknown key\(s\) colour"),
    ("prio = 1\n[[block]]\n" + BLOCK, r"unknown key\(s\) prio"),
    ('priority = "fast"\n[[block]]\n' + BLOCK, "priority='fast'; choose one of: seed, block"),
    ('[[block]]\nprotocol = "smoke"\ntasks = ["ptbb"]\nmethods = ["zaremba"]\n', "unknown task 'ptbb'"),
    ('[[block]]\nprotocol = "smoke"\ntasks = ["ptb"]\nmethods = ["dropconnect"]\n', "unknown method 'dropconnect'"),
    ('[[block]]\nprotocol = "huge"\ntasks = ["ptb"]\nmethods = ["zaremba"]\n', "unknown protocol 'huge'"),
    ("[[block]]\n" + BLOCK + "[block.grid]\nfoo = [1, 2]\n", r"unknown option\(s\) foo"),
    ("[[block]]\n" + BLOCK + "set = { p_out = 1.5 }\n", "p_out=1.5 is not a probability"),
    ("[[block]]\n" + BLOCK + 'seeds = "x"\n', "seeds='x'"),
    ("[[block]]\n" + BLOCK + "[block.random]\nseed = 1\nranges = { lr = [1, 2] }\n", "needs n"),
    ("[[block]]\n" + BLOCK + "[block.random]\nn = 2\nseed = 1\nranges = { lr = [2, 1] }\n", "low <= high"),
    ("[[block]]\n" + BLOCK + "tasks = 3\n", "not valid TOML"),
    ('priority = "seed"\n', r"no \[\[block\]\] tables"),
])
def test_bad_plans_are_usage_errors_naming_the_plan(tmp_path, text, expected):
    path = write_plan(tmp_path, text)
    with pytest.raises(UsageError, match=expected) as err:
        campaign.run_plan(path, device="cpu")
    assert path in str(err.value)


def test_bad_input_on_the_command_line_exits_2_and_writes_nothing(tmp_path, capsys):
    path = write_plan(tmp_path, "[[block]]\n" + BLOCK + "[block.grid]\np_out = [0.1, 2.0]\n")
    assert campaign.main(["--plan", path, "--device", "cpu"]) == 2
    assert "p_out=2.0 is not a probability" in capsys.readouterr().err
    assert campaign.main(["--plan", "nosuchplan"]) == 2
    assert "plan 'nosuchplan' not found" in capsys.readouterr().err
    for args, expected in ((["--workers", "0"], "WORKERS=0"), (["--workers", "two"], "WORKERS='two'"),
                           (["--budget", "-1"], "BUDGET=-1"), (["--backend", "slurm"], "unknown backend 'slurm'")):
        assert campaign.main(["--plan", "smoke", "--device", "cpu", *args]) == 2
        assert expected in capsys.readouterr().err
    assert not results.registry_path().exists() and not campaign.runs_dir().exists()


def test_unknown_plan_lists_the_shipped_ones():
    with pytest.raises(UsageError, match="plan 'nosuchplan' not found.*choose one of: cpu, cpu-gpu, device-cpu, gpu, gpu-packs, smoke"):
        plans.load_plan("nosuchplan")


def test_shipped_plans_expand_in_their_documented_order():
    smoke = specs_of("smoke")
    assert len(smoke) >= 4 and {s.protocol for s in smoke} == {"smoke"}
    gpu = specs_of("gpu", "cuda")
    n_methods = len(plugins.list_methods())
    assert [s.protocol for s in gpu[:n_methods]] == ["equal"] * n_methods     # the equal PTB table first
    assert {s.seed for s in gpu[:n_methods + 7]} == {0}                        # then the paper protocols
    assert {s.protocol for s in gpu if s.seed == 0} >= {"equal", "paper", "paper-large", "paper-mc"}
    assert [s.seed for s in gpu] == sorted(s.seed for s in gpu) and {s.seed for s in gpu} == {0, 1, 2}
    cpu = specs_of("cpu")     # 4 tables x 10 methods x seeds 0-2, SST-2/5 seeds 3-9, rnndrop's 2nd PTB line
    assert len(cpu) == len({s.run_id for s in cpu}) == 4 * 10 * 3 + 2 * 10 * 7 + 3 and {s.protocol for s in cpu} == {"cpu"}
    tasks = [s.task for s in cpu]     # whole tables in turn: SST (then its rnndrop and seeds 3-9), Multi30k, PTB
    assert sorted(set(tasks[:200])) == ["sst2", "sst5"] and {s.seed for s in cpu[60:200]} == set(range(3, 10))
    assert {s.method for s in cpu[54:60]} == {"rnndrop"} and set(tasks[200:227]) == {"multi30k-de-en"}
    assert [(s.method, s.seed) for s in cpu[227:233]] == [("none", 0), ("zaremba", 0), ("none", 1),
                                                          ("zaremba", 1), ("none", 2), ("zaremba", 2)]
    assert [s.seed for s in cpu[200:227]] == sorted(s.seed for s in cpu[200:227])   # seed by seed in a table
    assert {(s.task, s.method) for s in cpu[254:]} == {("multi30k-de-en", "rnndrop"), ("ptb", "rnndrop")}
    wt2 = specs_of("wt2")     # the WikiText-2 table: none and zaremba first, rnndrop's 2nd line last
    assert len(wt2) == 36 and {s.task for s in wt2} == {"wikitext-2"} and {s.protocol for s in wt2} == {"cpu"}
    assert {s.method for s in wt2[:6]} == {"none", "zaremba"}
    for lm, n in ((cpu[-3:], 3), (wt2[-6:], 6)):   # its second line (p_c=0.01; seeds 0-5 on WikiText-2, where
        # it diverges on some seeds); its default (0.25) is a line of its own
        assert {(s.method, s.cfg["p_c"], s.seed) for s in lm} == {("rnndrop", 0.01, k) for k in range(n)}
        assert len({s.run_id for s in lm} & {s.run_id for s in cpu + wt2 if s.cfg.get("p_c") == 0.25}) == 0
    assert plans.load_plan("cpu").numerics == "native"


def test_dry_run_prints_pending_runs_with_estimates_and_writes_nothing(tmp_path, camp_env, capsys):
    path = write_plan(tmp_path, '[[block]]\nprotocol = "smoke"\ntasks = ["camplm"]\nmethods = ["zaremba"]\n'
                                'seeds = "0-1"\n')
    assert campaign.run_plan(path, device="cpu", dry=True, data_dir=camp_env) == 0
    out = capsys.readouterr().out
    for spec in specs_of(path):
        assert spec.run_id in out
    assert "measured:" in out and "total: 2 runs" in out
    assert not results.registry_path().exists() and not campaign.runs_dir().exists()


def test_a_speed_is_measured_on_the_trainers_steps_clipped_and_over_a_median(tmp_path, camp_env, monkeypatch):
    """The estimate times the trainer's own step (clipping included): unclipped steps diverged into
    NaN arithmetic whose slow steps once made PTB estimates 2-5x too long."""
    import numpy as np
    import torch

    from bench.config import Config
    spec = specs_of(write_plan(tmp_path, '[[block]]\nprotocol = "smoke"\ntasks = ["camplm"]\n'
                                         'methods = ["zaremba"]\nseeds = [0]\n'))[0]
    assert spec.cfg["clip"] > 0
    real, clips = torch.nn.utils.clip_grad_norm_, []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, max_norm, *a, **k: clips.append(max_norm) or real(params, max_norm, *a, **k))
    task, cfg = plugins.get_task(spec.task), Config(spec.cfg)
    n_batches = sum(1 for _ in task.train_batches(task.load(camp_env, cfg), cfg, 1, np.random.default_rng(0)))
    est, source = campaign.measure(spec, "cpu", camp_env, 1)
    assert clips == [spec.cfg["clip"]] * min(n_batches, campaign.WARMUP_STEPS + campaign.MEASURE_STEPS)
    assert est > campaign.START_S and source.startswith("measured: ")


def test_a_config_that_diverges_at_once_gets_no_estimate_instead_of_a_nan_speed(tmp_path, camp_env, monkeypatch):
    spec = specs_of(write_plan(tmp_path, '[[block]]\nprotocol = "smoke"\ntasks = ["camplm"]\n'
                                         'methods = ["zaremba"]\nseeds = [0]\n'))[0]
    import bench.train
    monkeypatch.setattr(bench.train, "optimizer_step", lambda *a: (float("nan"), None))
    empty = pd.DataFrame(columns=["status", "device", "config_hash", "task", "method", "protocol", "wall_s"])
    est, source = campaign.Estimator(empty, "cpu", camp_env, 1)(spec)
    assert est is None and "not finite at the first step" in source


def test_estimates_come_from_registered_rows_of_the_same_config_first():
    spec = specs_of(str(REPO / "plans" / "smoke.toml"))[0]
    from bench.config import config_hash
    rows = pd.DataFrame(dict(task=spec.task, method=spec.method, protocol=spec.protocol, device="cpu",
                             status=["ok", "ok", "diverged", "ok"], wall_s=[10.0, 20.0, 99.0, 100.0],
                             config_hash=[config_hash(spec.cfg)] * 3 + ["other"]))
    est, source = campaign.Estimator(rows, "cpu", REPO, 1)(spec)
    assert est == pytest.approx(15.0 + campaign.START_S) and "2 row(s) of this config" in source
    est, source = campaign.Estimator(rows.assign(config_hash="other"), "cpu", REPO, 1)(spec)
    assert est == pytest.approx((10 + 20 + 100) / 3 + campaign.START_S) and f"of {spec.task}/{spec.method}" in source


def test_budget_defers_runs_whose_estimate_does_not_fit(tmp_path, camp_env, capsys):
    specs = specs_of(write_plan(tmp_path, '[[block]]\nprotocol = "smoke"\ntasks = ["camplm"]\n'
                                          'methods = ["zaremba"]\nseeds = [0, 1]\n'))
    assert campaign.run_campaign(specs, budget=0.01, device="cpu", data_dir=camp_env) == 0
    out = capsys.readouterr().out
    assert out.count("deferred: camplm.zaremba") == 2 and "over budget: estimate" in out
    assert registry_ids() == set()


def write_checkpoint(spec, **loop):
    import torch
    path = campaign.runs_dir() / spec.run_id / "checkpoint.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(loop=dict(dict(epoch=1, batch=0, step=0), **loop)), path)
    return path


def test_a_checkpoints_progress_is_read_from_its_loop_counters(tmp_path):
    spec = specs_of(str(REPO / "plans" / "smoke.toml"))[0]
    # 13 epochs of 100 steps: 9 done, 54 steps into the 10th
    assert campaign.progress(write_checkpoint(spec, epoch=10, batch=54, step=954), 13) == \
        pytest.approx((9.54 / 13, "epoch 10/13, 54% of it"))
    assert campaign.progress(write_checkpoint(spec, epoch=3, batch=0, step=200), 4) == (0.5, "epoch 3/4, 0% of it")
    assert campaign.progress(write_checkpoint(spec, epoch=5, batch=0, step=400), 4) == (1.0, "training done")
    # in epoch 1 the epoch's length is unknown: counted as nothing done, never as more
    assert campaign.progress(write_checkpoint(spec, epoch=1, batch=30, step=30), 4) == (0.0, "epoch 1/4, step 30")
    bad = write_checkpoint(spec)
    bad.write_bytes(b"not a checkpoint")
    assert campaign.progress(bad, 4) == (0.0, "unreadable: from scratch")


def test_a_resumed_runs_estimate_counts_only_the_steps_after_its_checkpoint(tmp_path, camp_env, capsys,
                                                                             monkeypatch):
    """A budget once deferred a run with one epoch of thirteen left because its whole-run estimate
    did not fit; DRY=1 printed the whole run too."""
    specs = specs_of(write_plan(tmp_path, '[[block]]\nprotocol = "smoke"\ntasks = ["camplm"]\n'
                                          'methods = ["zaremba"]\nseeds = [0, 1]\n'))
    epochs = specs[0].cfg["epochs"]
    write_checkpoint(specs[0], epoch=epochs, batch=0, step=10 * (epochs - 1))     # the last epoch left
    whole = 1000.0 * epochs + campaign.START_S
    monkeypatch.setattr(campaign.Estimator, "__call__", lambda self, spec: (whole, "stub speed"))
    assert campaign.run_campaign(specs, device="cpu", dry=True, data_dir=camp_env) == 0
    out = capsys.readouterr().out
    assert f"resume (epoch {epochs}/{epochs}, 0% of it)" in out
    assert campaign.fmt_s(1000.0 + campaign.START_S) in out and campaign.fmt_s(whole) in out


def test_the_deadline_sends_sigterm_and_waits_for_the_checkpoint(tmp_path):
    script = ("import signal, sys, time\n"
              "signal.signal(signal.SIGTERM, lambda *a: (print('checkpointed'), sys.exit(3)))\n"
              "print('started', flush=True)\ntime.sleep(60)\n")
    log = tmp_path / "logs" / "r.log"
    t0 = time.time()
    rc = campaign.run_subprocess([sys.executable, "-c", script], {}, str(log), str(tmp_path), time.time() + 2)
    assert rc == 3 and time.time() - t0 < 30
    assert "started" in log.read_text() and "checkpointed" in log.read_text()


def test_data_absent_runs_are_skipped_and_reported(tmp_path, camp_env, capsys):
    specs = specs_of(write_plan(tmp_path, '[[block]]\nprotocol = "smoke"\ntasks = ["camplm"]\n'
                                          'methods = ["zaremba"]\n'))
    assert campaign.run_campaign(specs, device="cpu", data_dir=tmp_path / "nodata") == 0
    out = capsys.readouterr().out
    assert f"skipped-data-absent: {specs[0].run_id}" in out and "not found" in out
    assert registry_ids() == set()


def test_a_crashed_run_is_recorded_while_the_others_finish_and_the_campaign_exits_1(tmp_path, camp_env, capsys):
    specs = specs_of(write_plan(tmp_path, '[[block]]\nprotocol = "smoke"\ntasks = ["camplm"]\n'
                                          'methods = ["campboom", "zaremba"]\n'))
    boom, good = specs
    assert campaign.run_campaign(specs, workers=2, device="cpu", data_dir=camp_env) == 1
    out = capsys.readouterr().out
    log = campaign.runs_dir() / "logs" / f"{boom.run_id}.log"
    assert f"failed: {boom.run_id}: exit code 1, log {log}" in out
    assert "campboom crashes at training time" in log.read_text()
    assert registry_ids() == {good.run_id}
    # again: the registered run is skipped, the crash is recorded again
    assert campaign.run_campaign(specs, workers=2, device="cpu", data_dir=camp_env) == 1
    out = capsys.readouterr().out
    assert f"failed: {boom.run_id}" in out and "skipped-registered 1" in out
    assert registry_ids() == {good.run_id}


HOLD = ("import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.pwrite(fd, str(os.getpid()).encode(), 0)\n"
        "print('held', flush=True); time.sleep(120)\n")


def hold_lock(folder):
    """Another process holding runs/<run_id>/lock, as a second campaign's run does."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder / "lock")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_another_process_is_running_is_skipped_not_failed(tmp_path, camp_env, capsys):
    """Two campaigns with the same plan share its runs: each run is trained by the first to reach it,
    and the other campaign passes over it (exit 0), instead of failing it with "already running"."""
    held, free = specs_of(write_plan(tmp_path, '[[block]]\nprotocol = "smoke"\ntasks = ["camplm"]\n'
                                                'methods = ["zaremba"]\nseeds = "0-1"\n'))
    other = hold_lock(campaign.runs_dir() / held.run_id)
    try:
        assert campaign.run_campaign([held, free], device="cpu", data_dir=camp_env) == 0
    finally:
        other.kill()
        other.wait()
    out = capsys.readouterr().out
    assert f"skipped-running: {held.run_id}: already running in pid {other.pid}" in out
    assert "skipped-running 1" in out and "failed 0" in out
    assert registry_ids() == {free.run_id}
    assert not (campaign.runs_dir() / "logs" / f"{held.run_id}.log").exists()     # never started here


def test_a_run_taken_by_another_process_just_before_its_start_is_skipped_not_failed(tmp_path, capsys):
    import threading
    spec = plans.RunSpec(task="ptb", method="zaremba", protocol="smoke", seed=0, overrides=(),
                         run_id="ptb.zaremba.smoke.s0.cpu.0", cfg={})
    others = []

    class Raced:            # the other process locks the run between the check and the start
        def run(self, cmd, env, log, deadline):
            others.append(hold_lock(tmp_path / spec.run_id))
            return 2        # the runner's "already running" usage error

    try:
        out = campaign.execute([spec], Raced(), 1, None, {}, threading.Event(), {}, "cpu", tmp_path, tmp_path)
    finally:
        for p in others:
            p.kill()
            p.wait()
    assert [o.status for o in out] == ["skipped-running"] and str(others[0].pid) in out[0].detail

    class BadInput:         # exit 2 with nobody holding the lock is a real failure
        def run(self, cmd, env, log, deadline):
            return 2
    spec = plans.RunSpec(**{**spec.__dict__, "run_id": "ptb.zaremba.smoke.s1.cpu.0"})
    out = campaign.execute([spec], BadInput(), 1, None, {}, threading.Event(), {}, "cpu", tmp_path, tmp_path)
    assert [o.status for o in out] == ["failed"] and "exit code 2" in out[0].detail


def test_each_cpu_worker_runs_on_its_own_cores(tmp_path):
    import os
    cpus = sorted(os.sched_getaffinity(0))
    assert campaign.cpu_sets(1, len(cpus)) is None
    assert campaign.cpu_sets(len(cpus) + 1, 1) is None                 # more workers than cores: unpinned
    if len(cpus) >= 2:
        sets = campaign.cpu_sets(2, len(cpus) // 2)
        assert len(sets) == 2 and not sets[0] & sets[1] and sets[0] | sets[1] <= set(cpus)
    log = tmp_path / "affinity.log"
    script = "import os; print(sorted(os.sched_getaffinity(0)))"
    assert campaign.run_subprocess([sys.executable, "-c", script], {}, str(log), str(tmp_path), cpus={cpus[-1]}) == 0
    assert log.read_text().splitlines()[-1] == str([cpus[-1]])
    import threading
    backend = campaign.LocalBackend(threading.Event(), [{cpus[0]}])
    assert backend.run([sys.executable, "-c", script], {}, str(log), None) == 0
    assert log.read_text().splitlines()[-1] == str([cpus[0]])


def test_make_campaign_passes_its_variables():
    p = subprocess.run(["make", "-n", "campaign", "PLAN=gpu", "WORKERS=8", "BACKEND=ray", "BUDGET=90",
                        "DEVICE=cuda", "DRY=1"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert ("-m bench.campaign --plan gpu --workers 8 --backend ray --device cuda --budget 90 --dry-run"
            in " ".join(p.stdout.replace("\\\n", " ").split()))


# --- a plan end to end: local workers, then again, then Ray into an empty registry -------------------
# On the generated toy (camplm), not the real corpora: the plumbing is the same for every task, and
# verify-seeds replays the committed real-data smoke rows in full.
TOY_PLAN = """
description = "toy plan: camplm x zaremba and zoneout, protocol smoke, seeds 0-1"
priority = "seed"

[[block]]
protocol = "smoke"
tasks = ["camplm"]
methods = ["zaremba", "zoneout"]
seeds = [0, 1]
set = { epochs = 1 }
"""


@pytest.fixture(scope="module")
def toy_local(tmp_path_factory, fixture_plugins):
    """The toy plan with WORKERS=2 into a fresh registry, then again: (registry rows, files, outputs, root, plan)."""
    root = tmp_path_factory.mktemp("toy_local")
    plan = root / "toy.toml"
    plan.write_text(TOY_PLAN)
    cmd = [sys.executable, "-m", "bench.campaign", "--plan", str(plan), "--workers", "2", "--device", "cpu",
           "--data-dir", str(fixture_plugins[1])]
    with pytest.MonkeyPatch.context() as mp:
        for name in ("REGISTRY", "RUNS", "REPORTS"):
            mp.setenv(f"BENCH_{name}", str(root / name.lower()))
        mp.setenv("BENCH_PLUGINS", str(fixture_plugins[0]))
        first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
        files = sorted((root / "registry").glob("*/*/*.parquet"))
        again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
        return results.read_registry(root / "registry"), files, first, again, root, plan


def test_a_plan_runs_on_local_workers_and_again_adds_nothing(toy_local):
    df, files, first, again, root, plan = toy_local
    assert first.returncode == 0, first.stdout + first.stderr
    assert set(df.run_id) == {s.run_id for s in specs_of(str(plan))} and len(df) == 4 and set(df.status) == {"ok"}
    assert set(df.threads) == {max(1, campaign.cores() // 2)}
    assert (root / "reports" / "LEADERBOARD.md").exists()
    assert all((root / "runs" / "logs" / f"{r}.log").exists() for r in df.run_id)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted((root / "registry").glob("*/*/*.parquet")) == files
    assert "4 skipped" in again.stdout and "skipped-registered 4" in again.stdout


def test_the_ci_smoke_plan_is_the_four_real_data_runs_it_says():
    assert sorted(s.run_id.split(".")[:4] for s in specs_of("smoke")) == sorted(
        [t, m, "smoke", "s0"] for t in ("ptb", "sst2") for m in ("zaremba", "zoneout"))


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_a_plan_on_a_local_ray_instance_gives_the_same_rows(toy_local, ray_instance, fixture_plugins, monkeypatch,
                                                            capsys):
    monkeypatch.setenv("BENCH_PLUGINS", str(fixture_plugins[0]))
    assert campaign.run_plan(str(toy_local[5]), workers=2, backend="ray", device="cpu",
                             data_dir=fixture_plugins[1]) == 0
    ray_rows = results.read_registry()
    local = toy_local[0]
    assert list(ray_rows.run_id) == list(local.run_id)
    assert list(ray_rows.test) == list(local.test)          # same threads per run: the same numbers


def test_a_command_line_grid_is_a_campaign_block(tmp_path, camp_env, capsys):
    """`make bench TASK=... METHOD=...` with lists: the same code path; absent data skips, bad names stop."""
    assert campaign.run_grid("camplm,ptb", "zaremba,zoneout", "smoke", "0-1", device="cpu",
                             data_dir=tmp_path / "nodata") == 0
    out = capsys.readouterr().out
    assert "grid: 8 runs: 0 to run" in out and "skipped-data-absent 8" in out
    with pytest.raises(UsageError, match="unknown method 'dropconnect'"):
        campaign.run_grid("ptb", "zaremba,dropconnect", "smoke", device="cpu")


def test_make_bench_with_lists_runs_the_grid_as_a_campaign(camp_env, capsys):
    """`bench run` with lists: every pair whose data is present runs (as campaign subprocesses), the
    others are skipped as data absent, a bad name stops everything first."""
    from bench.cli import main
    code = main(["--data-dir", str(camp_env), "run", "--task", "camplm,ptb", "--method", "zaremba,naive",
                 "--device", "cpu", "--set", "epochs=1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "skipped-data-absent 2" in out and "done 2" in out
    assert sorted(i.split(".")[:2] == ["camplm", m] for i in registry_ids() for m in ("zaremba", "naive")).count(True) == 2
    assert main(["run", "--task", "ptb,nope", "--method", "zaremba"]) == 2


def test_a_native_plan_runs_native_even_from_a_portable_process(tmp_path, camp_env, capsys):
    """The campaign process is portable by default; its runs must not inherit the portable settings."""
    plan = write_plan(tmp_path, '''
        numerics = "native"
        [[block]]
        protocol = "smoke"
        tasks = "camplm"
        methods = "zaremba"
        seeds = [0]
    ''')
    assert campaign.run_plan(plan, device="cpu", data_dir=camp_env) == 0
    row = results.read_registry().iloc[0]
    assert row.numerics == "native" and row.cpu_capability != "DEFAULT"


def test_several_plans_run_in_order_as_one_campaign_and_a_shared_run_once(tmp_path, camp_env, capsys):
    a = write_plan(tmp_path, '[[block]]\nprotocol = "smoke"\ntasks = ["camplm"]\nmethods = ["zaremba"]\n'
                             'seeds = [0, 1]\n', name="a")
    b = write_plan(tmp_path, '[[block]]\nprotocol = "smoke"\ntasks = ["camplm"]\nmethods = ["naive", "zaremba"]\n'
                             'seeds = [1]\n', name="b")
    assert campaign.run_plan(f"{a},{b}", device="cpu", dry=True, data_dir=camp_env) == 0
    out = capsys.readouterr().out
    assert "plans a + b: 3 runs" in out
    ids = [s.run_id for s in specs_of(a)] + [s.run_id for s in specs_of(b) if s.method == "naive"]
    assert [out.index(i) for i in ids] == sorted(out.index(i) for i in ids)        # a's runs, then b's new one


def test_plans_of_different_numerics_are_refused_together(tmp_path, camp_env, capsys):
    a = write_plan(tmp_path, 'numerics = "native"\n[[block]]\nprotocol = "smoke"\ntasks = ["camplm"]\n'
                             'methods = ["zaremba"]\nseeds = [0]\n', name="a")
    b = write_plan(tmp_path, '[[block]]\nprotocol = "smoke"\ntasks = ["camplm"]\nmethods = ["naive"]\n'
                             'seeds = [0]\n', name="b")
    assert campaign.main(["--plan", f"{a},{b}", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "ask for different numerics" in err and "run them as separate campaigns" in err
    assert campaign.main(["--plan", " , ", "--dry-run"]) == 2
    assert "names no plan" in capsys.readouterr().err


def test_a_run_killed_by_a_crash_signal_is_run_once_more(tmp_path, camp_env, capsys, monkeypatch):
    specs = specs_of(write_plan(tmp_path, '[[block]]\nprotocol = "smoke"\ntasks = ["camplm"]\n'
                                          'methods = ["campabort"]\n'))
    monkeypatch.setenv("CAMP_ABORT_MARKER", str(tmp_path / "aborted"))
    assert campaign.run_campaign(specs, device="cpu", data_dir=camp_env) == 0
    captured = capsys.readouterr()
    assert f"crashed: {specs[0].run_id} (SIGABRT): once more" in captured.err
    assert f"done: {specs[0].run_id}" in captured.err and "retried once" in captured.err
    assert (tmp_path / "aborted").exists() and registry_ids() == {specs[0].run_id}
    log = (campaign.runs_dir() / "logs" / f"{specs[0].run_id}.log").read_text()
    assert "Fatal Python error: Aborted" in log and "abort_once" in log     # faulthandler: where it died


def test_only_crash_signals_are_retried_and_not_after_a_stop():
    import signal
    assert campaign.crashed(-signal.SIGABRT) and campaign.crashed(-signal.SIGSEGV)
    assert not campaign.crashed(1) and not campaign.crashed(None) and not campaign.crashed(0)
    assert not campaign.crashed(-signal.SIGTERM) and not campaign.crashed(-signal.SIGKILL)


def test_a_run_that_crashes_twice_fails_after_one_retry(tmp_path, capsys):
    import signal
    import threading

    class Crashing:
        calls = 0

        def run(self, cmd, env, log, deadline):
            Crashing.calls += 1
            return -signal.SIGSEGV

    spec = plans.RunSpec(task="ptb", method="zaremba", protocol="smoke", seed=0, overrides=(),
                         run_id="ptb.zaremba.smoke.s0.cpu.0", cfg={})
    out = campaign.execute([spec], Crashing(), 1, None, {}, threading.Event(), {}, "cpu", tmp_path, tmp_path)
    assert Crashing.calls == 2 and [o.status for o in out] == ["failed"]
    assert "exit code -11" in out[0].detail and "retried once, again" in out[0].detail


def test_a_run_signalled_by_the_campaigns_stop_before_its_handler_is_stopped_not_failed():
    import signal
    assert campaign.status_of(0, False) == "done" and campaign.status_of(3, True) == "stopped"
    assert campaign.status_of(-signal.SIGTERM, True) == "stopped"          # killed while importing
    assert campaign.status_of(-signal.SIGTERM, False) == "failed"          # killed by someone else
    assert campaign.status_of(1, True) == "failed" and campaign.status_of(None, True) == "failed"
