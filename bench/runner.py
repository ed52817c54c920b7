"""One run: task x method x protocol x seed -> a Sacred run -> one Parquet row in the registry.

    resolve config and check every output location (errors before anything is written)
    -> lock runs/<id>/ -> load and verify data -> seed -> resume from runs/<id>/checkpoint.pt if any
    -> train (bench/train.py) inside a Sacred run -> registry row (bench/results.py)
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import config as config_mod
from bench import plugins, results, seeding
from bench.checkpoint import Checkpoint, StopSignal
from bench.runlock import RunLock
from bench.data import REPO, default_data_dir
from bench.errors import UsageError
from bench.train import train

SCHEMA_VERSION = 3


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("DEVICE=cuda but no CUDA device is available; use DEVICE=cpu or DEVICE=auto")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {name!r}; choose one of: auto, cpu, cuda")
    return torch.device(name)


def runs_root() -> Path:
    """Sacred logs, checkpoints and locks: $BENCH_RUNS, else ./runs (git-ignored)."""
    return Path(os.environ.get("BENCH_RUNS") or REPO / "runs")


def _git(*args) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the code; changes under registry/ and reports/ do not count as dirty,
    untracked files elsewhere do (a new method file is code the commit does not contain)."""
    try:
        status = _git("status", "--porcelain", "--untracked-files=all", "--", ".", ":!registry", ":!reports")
        return _git("rev-parse", "HEAD"), bool(status)
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True


def plugin_files(task, method, cfg) -> list[Path]:
    """The source files of the task, the method and every method it wraps."""
    names = [method.name] + [v for k, v in cfg.items() if k.endswith("base") and isinstance(v, str)]
    modules = {type(task).__module__} | {plugins.get_method(n).module for n in names if n in plugins.list_methods()}
    return sorted({Path(sys.modules[m].__file__).resolve() for m in modules
                   if m in sys.modules and getattr(sys.modules[m], "__file__", None)})


def plugin_provenance(files: list[Path]) -> tuple[str, bool]:
    """({file: sha256} as JSON, dirty): a file outside the repository or not committed is dirty."""
    digests, dirty = {}, False
    for f in files:
        try:
            name = str(f.relative_to(REPO))
            tracked = subprocess.run(["git", "ls-files", "--error-unmatch", name], cwd=REPO,
                                     capture_output=True).returncode == 0
            changed = tracked and bool(_git("status", "--porcelain", "--", name))
            dirty |= not tracked or changed
        except ValueError:
            name, dirty = str(f), True
        except (OSError, subprocess.CalledProcessError):
            name, dirty = str(f), True
        digests[name] = hashlib.sha256(f.read_bytes()).hexdigest()
    return json.dumps(digests, sort_keys=True), dirty


def make_run_id(task: str, method: str, protocol: str, seed: int, device: str, cfg_hash: str) -> str:
    return f"{task}.{method}.{protocol}.s{seed}.{device}.{cfg_hash[:8]}"


def prepare(task_name, method_name, protocol, overrides, data_dir=None):
    """Resolve plugins, config and data: every user error surfaces here, before any write."""
    task, method, cfg = resolve(task_name, method_name, protocol, overrides)
    data = task.load(Path(data_dir or default_data_dir()), cfg)
    return task, method, cfg, data


def resolve(task_name, method_name, protocol, overrides):
    task = plugins.get_task(task_name)
    method = plugins.get_method(method_name)
    return task, method, config_mod.resolve(task, method, protocol, overrides)


def check_writable(folder: Path, what: str) -> None:
    """Raise a UsageError naming `folder` unless it is (or can be created as) a writable folder;
    creates nothing."""
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        problem = f"{existing} is a file"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable"
    else:
        return
    raise UsageError(f"the {what} folder {folder} cannot be written ({problem}); fix it or point the "
                     f"matching BENCH_* variable elsewhere")


def execute(task, method, cfg, data, seed: int, device: torch.device, log=None, progress=None,
            checkpoint=None, stop=None, max_steps: int = 0, impl: str = "auto", echo=print) -> dict:
    """Seed, train, evaluate; return the metrics part of a registry row (curves included)."""
    derived = seeding.derive_seed(cfg.base_seed, task.name, method.name, seed)
    rng = seeding.seed_everything(derived)
    t0 = time.perf_counter()
    res = train(task, method, cfg, data, device, rng, log=log or (lambda *a: None), progress=progress,
                checkpoint=checkpoint, stop=stop, max_steps=max_steps, impl=impl, echo=echo)
    return metrics_of(task, res, derived, res.history[-1]["wall_s"] if res.history else time.perf_counter() - t0)


def metrics_of(task, res, derived: int, wall: float) -> dict:
    """The metrics part of a registry row from a TrainResult (a solo run's or a pack member's)."""
    curve = lambda key: [float(h[key]) for h in res.history]
    return dict(derived_seed=derived, status=res.status, valid=res.valid, test=res.test,
                best_epoch=res.best_epoch, epochs=res.epochs, params=res.params, wall_s=wall,
                tokens_per_s=res.tokens / res.train_s if res.train_s > 0 else 0.0, rnn_path=res.rnn_path,
                curve_train_loss=curve("train_loss"), curve_valid=curve("valid"),
                curve_valid_loss=curve("valid_loss"), curve_lr=curve("lr"), curve_wall_s=curve("wall_s"),
                probe_loss=[float(x) for x in res.probe],
                metric_signature=res.test_extras.get(f"{task.metric}_signature", ""),
                weights_sha256=res.weights_sha256, examples=res.test_examples)


def run_sacred(run_id: str, sacred_id: str, cfg: dict, body, folder: Path):
    """Run `body(log)` as a Sacred run named `run_id` with id `sacred_id`, observed into `folder`."""
    import warnings
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")  # sacred 0.8.7 imports it
    from sacred import SETTINGS, Experiment
    from sacred.observers import FileStorageObserver
    from sacred.utils import apply_backspaces_and_linefeeds
    SETTINGS.CAPTURE_MODE = "sys"
    SETTINGS.DISCOVER_SOURCES = "none"
    SETTINGS.DISCOVER_DEPENDENCIES = "none"
    ex = Experiment(run_id, interactive=True, save_git_info=False)
    ex.captured_out_filter = apply_backspaces_and_linefeeds
    ex.add_config({k: v for k, v in cfg.items() if k != "seed"})
    ex.observers.append(FileStorageObserver(str(folder)))
    holder = {}

    @ex.main
    def main(_run):
        holder["result"] = body(_run.log_scalar)
        # Sacred's run.json keeps the metrics; the per-example outcomes go to the registry's side file only
        return {k: v for k, v in holder["result"].items() if k != "examples"}

    ex.run(options={"--id": sacred_id, "--loglevel": "WARNING"})
    return holder["result"]


def build_row(run_id, task, method, protocol, seed, cfg, cfg_hash, metrics, dev, commit, dirty, plugin_sha,
              pack_members=()) -> dict:
    """A registry row from a run's metrics (execute's, less "examples") and what produced it."""
    return dict(schema_version=SCHEMA_VERSION, run_id=run_id, task=task.name, method=method.name,
                protocol=protocol, seed=seed, metric=task.metric, higher_is_better=task.higher_is_better,
                valid_metric=task.valid_metric, **metrics, **seeding.fingerprint(dev), git_commit=commit,
                git_dirty=dirty, plugin_sha256=plugin_sha, config_hash=cfg_hash,
                config_json=json.dumps(config_mod.stored(cfg), sort_keys=True),
                finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                examples_sha256="", pack_size=max(1, len(pack_members)), pack_members=json.dumps(list(pack_members)))


@dataclass
class Outcome:
    row: dict
    path: Path
    new: bool               # False: the run was already registered, nothing was trained


def run(task_name: str, method_name: str, protocol: str, seed: int = 0, device: str = "auto",
        overrides: dict | None = None, registry: Path | None = None, runs_dir: Path | None = None,
        data_dir=None, progress=None, echo=print) -> Outcome:
    """Train and evaluate one run (resuming its checkpoint) and add it to the registry."""
    from bench.fastcell import impl_mode
    overrides = overrides or {}
    registry = Path(registry or results.registry_path())
    runs_dir = Path(runs_dir or runs_root())
    impl = impl_mode()                      # a bad BENCH_RNN_IMPL is a user error, raised before any write
    task, method, cfg = resolve(task_name, method_name, protocol, overrides)
    dev = pick_device(device)
    seeding.set_threads()
    cfg_hash = config_mod.config_hash(cfg)
    run_id = make_run_id(task.name, method.name, protocol, seed, dev.type, cfg_hash)
    def registered() -> Outcome | None:
        path = results.find_run(registry, run_id)
        return Outcome(results.read_row(path), path, new=False) if path else None

    if done := registered():
        return done
    results.read_registry(registry)         # a corrupt registry is reported now, not after training
    check_writable(registry, "registry")
    folder = runs_dir / run_id
    check_writable(folder, "runs")
    data = task.load(Path(data_dir or default_data_dir()), cfg)
    commit, dirty = git_state()
    plugin_sha, plugin_dirty = plugin_provenance(plugin_files(task, method, cfg))
    with RunLock(folder), StopSignal() as stop:
        if done := registered():            # another process finished it while the data loaded
            return done
        ckpt = Checkpoint(folder / "checkpoint.pt", echo=echo)
        if os.environ.get("FRESH") == "1":
            ckpt.delete()
        saved = ckpt.load(keep=True)             # held for the trainer: the file is read once
        sacred_id = run_id if saved is None else f"{run_id}.resume-e{saved['loop']['epoch']}-b{saved['loop']['batch']}"
        if saved is not None:
            batch = saved["loop"]["batch"]
            echo(f"resuming {run_id} at epoch {saved['loop']['epoch']}" + (f", batch {batch}" if batch else "")
                 + f" from {ckpt.path}")
        del saved
        sacred_dir = folder / "sacred"
        if (sacred_dir / sacred_id).exists():          # an earlier attempt that stopped at the same point
            (sacred_dir / sacred_id).rename(sacred_dir / f"{sacred_id}.{uuid.uuid4().hex[:6]}")
        metrics = run_sacred(run_id, sacred_id, cfg, lambda log: execute(
            task, method, cfg, data, seed, dev, log, progress, checkpoint=ckpt, stop=stop, impl=impl, echo=echo),
            sacred_dir)
        examples = metrics.pop("examples")
        row = build_row(run_id, task, method, protocol, seed, cfg, cfg_hash, metrics, dev, commit,
                        dirty or plugin_dirty, plugin_sha)
        path = results.write_result(registry, row, examples)
        if os.environ.get("KEEP_CKPT") != "1":
            ckpt.delete()
    return Outcome(row, path, new=True)
