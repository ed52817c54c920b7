"""Checkpoint and resume: a run killed (SIGKILL) after a checkpoint, or stopped by SIGTERM mid-epoch,
ends with the same row, bit for bit, as an uninterrupted run; one run id, one process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench import results, runner
from bench.checkpoint import Checkpoint
from bench.runlock import RunLock
from bench.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
# everything a row holds that depends on the computation (not on the clock or the attempt)
COMPARED = ("status", "valid", "test", "best_epoch", "epochs", "params", "rnn_path", "curve_train_loss",
            "curve_valid", "curve_valid_loss", "curve_lr", "probe_loss", "derived_seed", "config_hash")

PLUGIN = '''
import os
from pathlib import Path
from bench.data import DATASETS, DataFile, DatasetSpec, register_dataset
from bench.plugins import register_task
from tasks.lm import LanguageModelling
import hashlib, gzip
root = Path(os.environ["BENCH_DATA"]) / "resumelm"
files = []
for name in ("train.txt", "valid.txt", "test.txt"):
    gz = (root / (name + ".gz")).read_bytes()
    files.append(DataFile(name, hashlib.sha256(gz).hexdigest(), hashlib.sha256(gzip.decompress(gz)).hexdigest()))
register_dataset(DatasetSpec(name="resumelm", files=tuple(files), url="file:///fixture"))
class ListBatches(LanguageModelling):       # train_batches may be any iterable, a list too
    def train_batches(self, data, cfg, epoch, rng):
        return list(super().train_batches(data, cfg, epoch, rng))
kind = ListBatches if os.environ.get("RESUMELM_LIST") else LanguageModelling
register_task(kind("resumelm", "resumelm", ("train.txt", "valid.txt", "test.txt"), "resume fixture"))
'''
SET = ["epochs=4", "hidden_size=48", "emb_size=48", "train_tokens=0", "eval_tokens=0", "bptt=10"]


@pytest.fixture
def resume_env(tmp_path, monkeypatch, request):
    """(env of the subprocesses, tmp folder): the task `resumelm` as a plugin file, loaded here too;
    indirect param True: its train_batches returns a list, not a generator."""
    from conftest import tiny_corpus, write_dataset
    from bench import plugins
    data = tmp_path / "data"
    vocab_line = " " + " ".join(f"w{i}" for i in range(40)) + " \n"
    write_dataset(data, "resumelm", {"train.txt": vocab_line + tiny_corpus(1, 1500),
                                     "valid.txt": tiny_corpus(2, 100), "test.txt": tiny_corpus(3, 100)})
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "resumelm.py").write_text(textwrap.dedent(PLUGIN))
    env = dict(os.environ, BENCH_DATA=str(data), BENCH_PLUGINS=str(plugin_dir), BENCH_THREADS="1",
               BENCH_REGISTRY=str(tmp_path / "reg"), BENCH_RUNS=str(tmp_path / "runs"),
               BENCH_REPORTS=str(tmp_path / "reports"), PYTHONUNBUFFERED="1")
    env.pop("FRESH", None)
    env.pop("KEEP_CKPT", None)
    env.pop("RESUMELM_LIST", None)
    monkeypatch.delenv("RESUMELM_LIST", raising=False)
    if getattr(request, "param", False):
        env["RESUMELM_LIST"] = "1"
        monkeypatch.setenv("RESUMELM_LIST", "1")
    monkeypatch.setenv("BENCH_DATA", str(data))
    monkeypatch.setenv("BENCH_THREADS", "1")                 # in-process runs match the subprocesses
    plugins.load_all()
    plugins.unregister("task", "resumelm")
    plugins.load_directory(str(plugin_dir))
    yield env, tmp_path
    plugins.unregister("task", "resumelm")


def cmd(method="zoneout"):
    sets = [a for s in SET for a in ("--set", s)]
    return [sys.executable, "-m", "bench", "run", "--task", "resumelm", "--method", method,
            "--protocol", "smoke", "--seeds", "0", "--device", "cpu", "--no-leaderboard", *sets]


def only_row(registry: Path) -> dict:
    files = list(registry.glob("*/*/*.parquet"))
    assert len(files) == 1, files
    return results.read_row(files[0])


def overrides():
    return dict(s.split("=") for s in SET)


def reference_row(env, tmp_path, method="zoneout") -> dict:
    """The uninterrupted run, in this process (the same numerics and threads as the subprocesses)."""
    return runner.run("resumelm", method, "smoke", 0, "cpu", overrides(), registry=tmp_path / "ref-reg",
                      runs_dir=tmp_path / "ref-runs", echo=lambda s: None).row


def wait_for(path: Path, proc, timeout=120.0):
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, "the run ended before writing its first checkpoint"
        assert time.monotonic() - t0 < timeout
        time.sleep(0.01)


def assert_same(a: dict, b: dict):
    for k in COMPARED:
        assert a[k] == b[k], (k, a[k], b[k])


def test_sigkill_after_first_checkpoint_then_resume_is_bitwise_equal(resume_env):
    env, tmp = resume_env
    ref = reference_row(env, tmp)
    proc = subprocess.Popen(cmd(), env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = next_run_dir(tmp / "runs", proc)
    wait_for(run_dir / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list((tmp / "reg").glob("*/*/*.parquet"))
    out = subprocess.run(cmd(), env=env, cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "resuming resumelm.zoneout.smoke.s0" in out and "at epoch 2" in out
    row = only_row(tmp / "reg")
    assert_same(row, ref)
    assert len(row["curve_valid"]) == 4 and not (run_dir / "checkpoint.pt").exists()   # deleted when done


def next_run_dir(runs: Path, proc, timeout=60.0) -> Path:
    t0 = time.monotonic()
    while not (runs.exists() and [p for p in runs.iterdir() if p.is_dir()]):
        assert proc.poll() is None and time.monotonic() - t0 < timeout
        time.sleep(0.01)
    return next(p for p in runs.iterdir() if p.is_dir())


# the batches a mid-epoch resume skips must be skipped whether the task yields them or lists them
@pytest.mark.parametrize("resume_env", [False, True], ids=["generator", "list"], indirect=True)
def test_sigterm_mid_epoch_checkpoints_exits_3_and_resumes_bitwise(resume_env):
    from bench import plugins
    env, tmp = resume_env
    assert (type(plugins.get_task("resumelm")).__name__ == "ListBatches") == ("RESUMELM_LIST" in env)
    ref = reference_row(env, tmp, "curriculum")
    proc = subprocess.Popen(cmd("curriculum"), env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    run_dir = next_run_dir(tmp / "runs", proc)
    wait_for(run_dir / "checkpoint.pt", proc)       # past epoch 1: stop somewhere inside epoch 2
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert "interrupted" in err and "Resume with the same command" in err
    saved = Checkpoint(run_dir / "checkpoint.pt").load()
    assert saved["loop"]["epoch"] >= 2
    subprocess.run(cmd("curriculum"), env=env, cwd=REPO, check=True, capture_output=True)
    assert_same(only_row(tmp / "reg"), ref)


def test_unreadable_checkpoint_is_reported_and_the_run_starts_over(resume_env):
    env, tmp = resume_env
    ref = reference_row(env, tmp, "zaremba")
    run_id = ref["run_id"]
    (tmp / "runs" / run_id).mkdir(parents=True)
    (tmp / "runs" / run_id / "checkpoint.pt").write_bytes(b"truncated")
    lines = []
    row = runner.run("resumelm", "zaremba", "smoke", 0, "cpu", overrides(), registry=tmp / "reg",
                     runs_dir=tmp / "runs", echo=lines.append).row
    assert f"checkpoint {tmp / 'runs' / run_id / 'checkpoint.pt'} is unreadable" in "\n".join(lines)
    assert_same(row, ref)


def test_keep_ckpt_keeps_it_fresh_starts_over_and_progress_is_one_line_per_epoch(resume_env, monkeypatch):
    env, tmp = resume_env
    monkeypatch.setenv("KEEP_CKPT", "1")
    run = lambda echo: runner.run("resumelm", "zaremba", "smoke", 0, "cpu", overrides(), registry=tmp / "reg",
                                  runs_dir=tmp / "runs", echo=echo).row
    lines = []
    row = run(lines.append)
    ckpt = tmp / "runs" / row["run_id"] / "checkpoint.pt"
    assert Checkpoint(ckpt).load()["loop"]["epoch"] == 5              # all 4 epochs done
    epochs = [l for l in lines if l.startswith("epoch ")]
    assert [l.split()[1] for l in epochs] == ["1/4", "2/4", "3/4", "4/4"]
    assert all("train loss" in l and "valid ppl" in l and " lr " in l and "elapsed" in l and "ETA" in l for l in epochs)
    (tmp / "reg" / "resumelm" / "zaremba" / f"{row['run_id']}.parquet").unlink()
    monkeypatch.setenv("FRESH", "1")
    lines = []
    assert_same(run(lines.append), row)
    assert not any("resuming" in l for l in lines)


def test_a_run_already_running_elsewhere_is_refused(tiny_lm, tmp_path):
    task, root = tiny_lm
    args = dict(registry=tmp_path / "reg", runs_dir=tmp_path / "runs", data_dir=root, device="cpu")
    cfg = runner.resolve(task.name, "zaremba", "smoke", {})[2]
    from bench.config import config_hash
    run_id = runner.make_run_id(task.name, "zaremba", "smoke", 0, "cpu", config_hash(cfg))
    with RunLock(tmp_path / "runs" / run_id):
        with pytest.raises(UsageError, match="already running"):
            runner.run(task.name, "zaremba", "smoke", **args)
    assert not list((tmp_path / "reg").glob("*/*/*.parquet"))
    assert runner.run(task.name, "zaremba", "smoke", **args).new      # the lock is free again


def test_the_lock_probe_names_the_holder_creates_nothing_and_never_refuses_a_run(tmp_path):
    import fcntl
    import os
    import threading
    folder = tmp_path / "runs" / "r"
    assert RunLock.holder(folder) is None and not folder.exists()          # no lock file: none made
    with RunLock(folder):
        assert RunLock.holder(folder) == str(os.getpid())
    assert RunLock.holder(folder) is None
    # a probe holds the file for microseconds: a run that starts during one waits, it is not refused
    fd = os.open(folder / "lock", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    threading.Timer(0.02, lambda: fcntl.flock(fd, fcntl.LOCK_UN)).start()
    try:
        with RunLock(folder):
            assert RunLock.holder(folder) == str(os.getpid())
    finally:
        os.close(fd)


def test_a_run_finished_elsewhere_while_its_data_loaded_is_not_trained_again(tiny_lm, tmp_path, monkeypatch):
    """The registry is looked up before the data load and again under the run's lock: a run another
    process registered in between (e.g. a second campaign with the same run) is returned, not retrained."""
    task, root = tiny_lm
    done = runner.run(task.name, "zaremba", "smoke", registry=tmp_path / "other", runs_dir=tmp_path / "r1",
                      data_dir=root, device="cpu")
    target = tmp_path / "reg" / done.path.relative_to(tmp_path / "other")

    class FinishedMeanwhile(RunLock):
        def __enter__(self):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(done.path.read_bytes())      # the other process lands its row
            return super().__enter__()

    monkeypatch.setattr(runner, "RunLock", FinishedMeanwhile)
    out = runner.run(task.name, "zaremba", "smoke", registry=tmp_path / "reg", runs_dir=tmp_path / "r2",
                     data_dir=root, device="cpu")
    assert not out.new and out.path == target and out.row["test"] == done.row["test"]
    assert not (tmp_path / "r2" / done.row["run_id"] / "checkpoint.pt").exists()


class _StopAfter:
    """A stop signal that asks for a stop once `n` optimizer steps were taken (counted by reads)."""

    def __init__(self, n):
        self.n, self.reads = n, 0

    @property
    def requested(self):
        self.reads += 1
        return self.reads >= self.n


def test_gru_run_stopped_mid_epoch_resumes_bitwise_with_its_h_only_state(tiny_lm, tmp_path):
    """A GRU LM carries a state of one tensor per layer, (h,): checkpointed mid-epoch and resumed,
    the run ends exactly as an uninterrupted one (in process, stop after 3 steps)."""
    import torch

    from bench import plugins
    from bench.checkpoint import Interrupted
    task, root = tiny_lm
    method = plugins.get_method("zoneout")
    cfg = runner.resolve(task.name, "zoneout", "smoke", {"cell": "gru"})[2]
    data = task.load(root, cfg)
    dev, quiet = torch.device("cpu"), (lambda s: None)
    want = runner.execute(task, method, cfg, data, 0, dev, progress=False, echo=quiet)
    ckpt = Checkpoint(tmp_path / "checkpoint.pt", echo=quiet)
    with pytest.raises(Interrupted):
        runner.execute(task, method, cfg, data, 0, dev, progress=False, checkpoint=ckpt, stop=_StopAfter(3), echo=quiet)
    saved = ckpt.load()
    assert saved["loop"]["batch"] == 3 and all(len(st) == 1 for st in saved["loop"]["carry"])
    got = runner.execute(task, method, cfg, data, 0, dev, progress=False, checkpoint=ckpt, echo=quiet)
    for k in ("status", "valid", "test", "curve_train_loss", "curve_valid", "probe_loss", "rnn_path"):
        assert got[k] == want[k], k
    assert want["rnn_path"] == "fast"


def test_a_kept_checkpoint_is_read_once_and_a_changed_file_is_read_again(tmp_path, monkeypatch):
    """The runner reads where a run resumes (keep=True), the trainer restores it: one read of the
    file; the kept state is handed over once, and never after the file changed."""
    import torch

    from bench import checkpoint
    ckpt = Checkpoint(tmp_path / "checkpoint.pt")
    ckpt.save({"loop": {"epoch": 2}})
    reads, real = [], torch.load
    monkeypatch.setattr(checkpoint.torch, "load", lambda *a, **k: reads.append(1) or real(*a, **k))
    first = ckpt.load(keep=True)
    assert ckpt.load() is first and len(reads) == 1
    assert ckpt.load() == first and len(reads) == 2            # not held after it was handed over
    ckpt.load(keep=True)
    ckpt.save({"loop": {"epoch": 3}})
    assert ckpt.load()["loop"]["epoch"] == 3 and len(reads) == 4
    ckpt.load(keep=True)
    ckpt.delete()
    assert ckpt.load() is None
