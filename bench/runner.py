"""One run: task x method x protocol x seed -> a Sacred run -> one Parquet row in the registry.

    resolve config (errors before anything is written) -> load and verify data -> seed
    -> train (bench/train.py) inside a Sacred run -> registry row (bench/results.py)
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import torch

from bench import config as config_mod
from bench import plugins, results, seeding
from bench.data import REPO, default_data_dir
from bench.errors import UsageError
from bench.train import train


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("DEVICE=cuda but no CUDA device is available; use DEVICE=cpu or DEVICE=auto")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {name!r}; choose one of: auto, cpu, cuda")
    return torch.device(name)


def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the code; changes under registry/ and reports/ do not count as dirty."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 ":!registry", ":!reports"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
        return commit, bool(status)
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True


def make_run_id(task: str, method: str, protocol: str, seed: int, device: str, cfg_hash: str) -> str:
    return f"{task}.{method}.{protocol}.s{seed}.{device}.{cfg_hash[:8]}"


def prepare(task_name, method_name, protocol, overrides, data_dir=None):
    """Resolve plugins, config and data: every user error surfaces here, before any write."""
    from bench.fastcell import impl_mode
    impl_mode()                      # a bad BENCH_RNN_IMPL is a user error, raised before any write
    task = plugins.get_task(task_name)
    method = plugins.get_method(method_name)
    cfg = config_mod.resolve(task, method, protocol, overrides)
    data = task.load(Path(data_dir or default_data_dir()), cfg)
    return task, method, cfg, data


def execute(task, method, cfg, data, seed: int, device: torch.device, log=None, progress=None) -> dict:
    """Seed, train, evaluate; return the metrics part of a registry row."""
    derived = seeding.derive_seed(cfg.base_seed, task.name, method.name, seed)
    rng = seeding.seed_everything(derived)
    t0 = time.perf_counter()
    res = train(task, method, cfg, data, device, rng, log=log or (lambda *a: None), progress=progress)
    wall = time.perf_counter() - t0
    return dict(derived_seed=derived, status=res.status, valid=res.valid, test=res.test,
                best_epoch=res.best_epoch, epochs=res.epochs, params=res.params, wall_s=wall,
                tokens_per_s=res.tokens / res.train_s if res.train_s > 0 else 0.0, rnn_path=res.rnn_path)


def run_sacred(run_id: str, cfg: dict, body, runs_dir: Path):
    """Run `body(log)` as a Sacred run with id `run_id`, observed into runs_dir/run_id."""
    import warnings
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")  # sacred 0.8.7 imports it
    from sacred import Experiment, SETTINGS
    from sacred.observers import FileStorageObserver
    from sacred.utils import apply_backspaces_and_linefeeds
    SETTINGS.CAPTURE_MODE = "sys"
    SETTINGS.DISCOVER_SOURCES = "none"
    SETTINGS.DISCOVER_DEPENDENCIES = "none"
    old = Path(runs_dir) / run_id
    if old.exists():             # a failed earlier attempt of the same run; its log is replaced
        shutil.rmtree(old)
    ex = Experiment(run_id, interactive=True, save_git_info=False)
    ex.captured_out_filter = apply_backspaces_and_linefeeds
    ex.add_config({k: v for k, v in cfg.items() if k != "seed"})
    ex.observers.append(FileStorageObserver(str(runs_dir)))
    holder = {}

    @ex.main
    def main(_run):
        holder["result"] = body(_run.log_scalar)
        return holder["result"]

    ex.run(options={"--id": run_id, "--loglevel": "WARNING"})
    return holder["result"]


def run(task_name: str, method_name: str, protocol: str, seed: int = 0, device: str = "auto",
        overrides: dict | None = None, registry: Path | None = None, runs_dir: Path | None = None,
        data_dir=None, progress=None) -> tuple[dict, Path]:
    """Train and evaluate one run and add it to the registry. Returns (row, parquet path)."""
    overrides = overrides or {}
    registry = registry or results.REGISTRY
    runs_dir = runs_dir or Path(os.environ.get("BENCH_RUNS") or REPO / "runs")   # Sacred logs, git-ignored
    task, method, cfg, data = prepare(task_name, method_name, protocol, overrides, data_dir)
    dev = pick_device(device)
    seeding.set_threads()
    cfg_hash = config_mod.config_hash(cfg)
    run_id = make_run_id(task.name, method.name, protocol, seed, dev.type, cfg_hash)
    existing = results.find_run(registry, run_id)
    if existing:
        raise UsageError(f"run {run_id} is already registered ({existing}); use another SEED, "
                         f"or delete that file to re-run it")
    commit, dirty = git_state()
    metrics = run_sacred(run_id, cfg, lambda log: execute(task, method, cfg, data, seed, dev, log, progress),
                         runs_dir)
    row = dict(run_id=run_id, task=task.name, method=method.name, protocol=protocol, seed=seed,
               metric=task.metric, higher_is_better=task.higher_is_better, valid_metric=task.valid_metric,
               **metrics, **seeding.fingerprint(dev), git_commit=commit, git_dirty=dirty,
               config_hash=cfg_hash, config_json=json.dumps(cfg, sort_keys=True),
               finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    return row, results.write_row(registry, row)
