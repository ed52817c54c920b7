"""`make campaign`: a plan (or a command-line grid) of many runs, on local worker processes or Ray.

    plan -> runs, configs resolved (bench/plans.py; any error: exit 2 before anything runs)
    -> skip registered runs and runs whose data are absent; runs with a checkpoint resume
    -> estimates (DRY=1 prints them; BUDGET defers runs that do not fit)
    -> WORKERS at a time: `python -m bench run ... --no-leaderboard` subprocesses, each logging to
       $BENCH_RUNS/logs/<run_id>.log -> one leaderboard regeneration -> a summary

Exit codes: 0 nothing failed, 1 a run failed (each listed with its log), 2 bad input (nothing run),
3 the campaign itself was interrupted (its runs checkpointed), 4 the leaderboard failed.
"""
from __future__ import annotations

import argparse
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate
from tqdm import tqdm

from bench import config as config_mod
from bench import plans, plugins, results
from bench.data import REPO, default_data_dir
from bench.errors import EXIT_USAGE, UsageError, choose
from bench.runlock import RunLock

BACKENDS = ("local", "ray")
PACK_MODES = ("off", "auto")
STATUSES = ("done", "stopped", "failed", "skipped-registered", "skipped-data-absent", "skipped-running",
            "deferred")
START_S = 3.0            # interpreter, torch and plugin import of each run's process
WARMUP_STEPS = 2         # untimed optimizer steps before a speed measurement (allocations, caches)
MEASURE_STEPS = 10       # timed optimizer steps per measured speed; their median is the step time
GRACE_S = 300.0          # after SIGTERM, time a run gets to checkpoint before it is killed


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def runs_dir() -> Path:
    from bench.runner import runs_root
    return runs_root()


def device_type(device: str, dry: bool = False) -> str:
    """'cpu' or 'cuda' as in run ids; a dry run may plan for a device this machine lacks."""
    if dry and device in ("cpu", "cuda"):
        return device
    from bench.runner import pick_device
    return pick_device(device).type


def fmt_s(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def data_missing(task, data_dir: Path) -> str | None:
    """Why the task's data are absent from data_dir (as `make bench TASK=all` skips), or None."""
    status = task.data_status(Path(data_dir))
    return None if status == "ok" or status.startswith("not checked") else status


# --- one run: a subprocess, the same on both backends ---------------------------------------------

def command(spec: plans.RunSpec, device: str, data_dir: Path) -> list[str]:
    if hasattr(spec, "members"):                       # a pack (bench/pack.py PackSpec)
        return spec.command(device, data_dir)
    sets = [a for k, v in spec.overrides for a in ("--set", f"{k}={v}")]
    return [sys.executable, "-m", "bench", "--data-dir", str(data_dir), "run", "--task", spec.task,
            "--method", spec.method, "--protocol", spec.protocol, "--seeds", str(spec.seed),
            "--device", device, *sets, "--no-leaderboard"]


def run_subprocess(cmd: list[str], env: dict, log: str, cwd: str, deadline: float | None = None,
                   stop: threading.Event | None = None, cpus: set[int] | None = None) -> int:
    """Run cmd with the BENCH_* variables of `env` (replacing this process's), output appended to
    `log`, on the cores `cpus` if given; SIGTERM it at `deadline` (time.time()) or when `stop` is
    set, then wait for it to checkpoint and exit. Returns its exit code. Also Ray's remote function."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")} | env
    full.setdefault("PYTHONFAULTHANDLER", "1")      # a run killed by a fault signal leaves its tracebacks in the log
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} campaign: {' '.join(cmd[1:])}\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=full, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        if cpus:        # set before the interpreter has started a thread: all of them inherit it
            os.sched_setaffinity(proc.pid, cpus)
        try:
            while proc.poll() is None:
                if (deadline is not None and time.time() >= deadline) or (stop is not None and stop.is_set()):
                    return _terminate(proc)
                time.sleep(0.5)
            return proc.returncode
        except BaseException:        # Ray's cancel (KeyboardInterrupt): stop the run cleanly too
            _terminate(proc)
            raise


def _terminate(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def cpu_sets(workers: int, threads: int) -> list[set[int]] | None:
    """Disjoint cores for each of WORKERS CPU runs (`threads` each), or None when there is one
    worker or too few cores. Unpinned runs migrate between cores and their OpenMP threads thrash."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if workers < 2 or len(cpus) < workers * threads:
        return None
    return [set(cpus[i * threads:(i + 1) * threads]) for i in range(workers)]


class LocalBackend:
    """WORKERS threads, each running one subprocess at a time; with `pins`, each subprocess runs on
    a set of cores no other run of this campaign has (one set per worker)."""

    def __init__(self, stop: threading.Event, pins: list[set[int]] | None = None):
        self.stop, self.free = stop, queue.SimpleQueue()
        for cpus in pins or [None]:
            self.free.put(cpus)
        self.pinned = pins is not None

    def run(self, cmd, env, log, deadline) -> int:
        cpus = self.free.get() if self.pinned else None
        try:
            return run_subprocess(cmd, env, log, str(REPO), deadline, self.stop, cpus)
        finally:
            if self.pinned:
                self.free.put(cpus)

    def close(self):
        """Nothing to shut down: the local backend starts no service."""


class RayBackend:
    """One Ray task per run, `num_cpus` = its threads and, on cuda, 1/WORKERS of a GPU. Joins the
    cluster at $RAY_ADDRESS (shared storage for registry/ and runs/ needed), else starts one here."""

    def __init__(self, stop: threading.Event, threads: int, gpus: float):
        try:
            import ray
        except ImportError:
            raise UsageError("BACKEND=ray needs the `ray` package: `make install` installs it (the pinned "
                             "`ray` extra of pyproject.toml); or use BACKEND=local") from None
        self.ray, self.stop, self.started = ray, stop, False
        if not ray.is_initialized():
            if os.environ.get("RAY_ADDRESS"):
                ray.init(include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address="local", num_cpus=cores(), include_dashboard=False, log_to_driver=False)
            self.started = True
        self.remote = ray.remote(run_subprocess).options(num_cpus=threads, num_gpus=gpus, max_retries=0)

    def run(self, cmd, env, log, deadline) -> int:
        ref = self.remote.remote(cmd, env, log, str(REPO), deadline)
        while True:
            ready, _ = self.ray.wait([ref], timeout=1.0)
            if ready:
                return self.ray.get(ref)
            if self.stop.is_set():
                self.ray.cancel(ref)          # KeyboardInterrupt in the task: it SIGTERMs its run
                try:
                    return self.ray.get(ref)
                except Exception:
                    return 3

    def close(self):
        if self.started:
            self.ray.shutdown()


# --- estimates -----------------------------------------------------------------------------------

class Estimator:
    """Seconds a run will take: the mean wall time of registered ok rows of the same config (else of
    the same task/method/protocol) on the same device, else a measured speed of this config
    (load the data, time a few optimizer steps and one evaluation), cached per config."""

    def __init__(self, registry, dtype: str, data_dir: Path, threads: int):
        self.registry, self.dtype, self.data_dir, self.threads = registry, dtype, data_dir, threads
        self.cache: dict[tuple, tuple[float | None, str]] = {}

    def __call__(self, spec: plans.RunSpec) -> tuple[float | None, str]:
        df = self.registry
        ok = df[(df.status == "ok") & (df.device == self.dtype)]
        cfg_hash = config_mod.config_hash(spec.cfg)
        same = ok[ok.config_hash == cfg_hash]
        if len(same):
            return START_S + float(same.wall_s.mean()), f"registry: {len(same)} row(s) of this config"
        like = ok[(ok.task == spec.task) & (ok.method == spec.method) & (ok.protocol == spec.protocol)]
        if len(like):
            return START_S + float(like.wall_s.mean()), f"registry: {len(like)} row(s) of {spec.task}/{spec.method}/{spec.protocol}"
        key = (spec.task, spec.method, spec.protocol, self.dtype, speed_key(spec))
        if key not in self.cache:
            try:
                self.cache[key] = measure(spec, self.dtype, self.data_dir, self.threads)
            except Exception as exc:      # e.g. no GPU here for a cuda plan; the run itself reports errors
                self.cache[key] = None, f"none ({type(exc).__name__}: {exc})"
        return self.cache[key]


def progress(path: Path, epochs: int) -> tuple[float, str]:
    """How far a checkpointed run got: (fraction of its training done, e.g. 'epoch 10/13, 4% of it'),
    from the loop counters (bench/train.py). In epoch 1 the epoch's length is not known yet: 0 done."""
    from bench.checkpoint import Checkpoint
    loop = (Checkpoint(path, echo=lambda msg: print(msg, file=sys.stderr)).load() or {}).get("loop")
    if not loop:
        return 0.0, "unreadable: from scratch"
    epoch, batch, step = loop["epoch"], loop["batch"], loop["step"]
    if epoch > epochs:
        return 1.0, "training done"
    if epoch == 1:
        return 0.0, f"epoch 1/{epochs}, step {step}"
    per_epoch = (step - batch) / (epoch - 1)
    part = min(batch / per_epoch, 1.0) if per_epoch > 0 else 0.0
    return min((epoch - 1 + part) / epochs, 1.0), f"epoch {epoch}/{epochs}, {part:.0%} of it"


def speed_key(spec: plans.RunSpec) -> str:
    """The config as far as speed goes: a method option's float value (a rate, kappa, gamma) only
    matters by being zero or not (which noise runs, hence which rnn path), so the points of a sweep
    share one measurement."""
    options = set().union(*(m.options for m in config_mod.method_chain(plugins.get_method(spec.method),
                                                                      dict(spec.overrides))))
    cfg = {k: (v > 0 if k in options and isinstance(v, float) else v) for k, v in spec.cfg.items()}
    return config_mod.config_hash(cfg)


def measure(spec: plans.RunSpec, dtype: str, data_dir: Path, threads: int) -> tuple[float, str]:
    """Estimate one run from a measured speed: start-up + data loading + epochs x batches x step time
    + (epochs + 1) evaluations (valid each epoch, test once; MC evaluation costs 1 + mc_samples passes)."""
    import numpy as np
    import torch

    from bench import seeding
    from bench.api import NoiseState
    from bench.train import _detach, epoch_lr, make_optimizer, optimizer_step
    task, method, cfg = plugins.get_task(spec.task), plugins.get_method(spec.method), config_mod.Config(spec.cfg)
    if dtype == "cuda" and not torch.cuda.is_available():
        raise UsageError("no CUDA device here to measure on")
    device = torch.device(dtype)
    sync = (lambda: torch.cuda.synchronize(device)) if dtype == "cuda" else (lambda: None)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        data = task.load(Path(data_dir), cfg)
        load_s = time.perf_counter() - t0
        n_batches = sum(1 for _ in task.train_batches(data, cfg, 1, np.random.default_rng(0)))
        rng = seeding.seed_everything(cfg.base_seed)
        model = task.build_model(data, cfg, NoiseState(method.noise(cfg))).to(device)
        opt = make_optimizer(model, cfg)
        model.train()
        state, times = task.init_state(data, cfg), []
        for _, batch in zip(range(WARMUP_STEPS + MEASURE_STEPS), task.train_batches(data, cfg, 1, rng)):
            t = time.perf_counter()
            _, out = optimizer_step(task, method, model, opt, batch, state, cfg, epoch_lr(cfg, 1))
            if out is None:
                break                # diverged: time the steps so far, not a run of NaNs
            state = _detach(out.state)
            sync()
            times.append(time.perf_counter() - t)
        if not times:
            raise RuntimeError("the loss was not finite at the first step")
        step_s = float(np.median(times[WARMUP_STEPS:] or times))
        t = time.perf_counter()
        task.evaluate(model, data, "valid", config_mod.Config({**cfg, "mc_samples": 0}))
        sync()
        eval_s = (time.perf_counter() - t) * (1 + cfg.get("mc_samples", 0))
    finally:
        torch.set_num_threads(old)
    total = START_S + load_s + cfg.epochs * n_batches * step_s + (cfg.epochs + 1) * eval_s
    return total, f"measured: {1 / step_s:.1f} steps/s x {cfg.epochs * n_batches} steps, eval {fmt_s(eval_s)}"


# --- the campaign --------------------------------------------------------------------------------

@dataclass
class Outcome:
    spec: plans.RunSpec
    status: str                 # one of STATUSES
    detail: str = ""            # log path, or why it was skipped / deferred


def child_env(threads: int, numerics: str = "") -> dict:
    """The BENCH_* variables of every run: this process's, outputs made explicit, threads per worker,
    the plan's numerics mode if it names one."""
    from bench import leaderboard
    env = {k: v for k, v in os.environ.items() if k.startswith("BENCH_")}
    if numerics:
        env["BENCH_NUMERICS"] = numerics
    report = leaderboard.default_report_path()
    env.update(BENCH_THREADS=str(threads), BENCH_REGISTRY=str(results.registry_path().resolve()),
               BENCH_REPORTS=str(report.parent.resolve()), BENCH_RUNS=str(runs_dir().resolve()))
    return env


def run_campaign(specs: list[plans.RunSpec], workers: int = 1, backend: str = "local",
                 budget: float | None = None, device: str = "auto", dry: bool = False,
                 data_dir=None, name: str = "campaign", numerics: str = "", pack: str = "off") -> int:
    """Run `specs` (in their order) and return the campaign's exit code (see the module doc).
    pack="auto": pending runs that can share a pack (bench/pack.py) run as one job each."""
    choose("backend", backend, BACKENDS, "(BACKEND=)")
    choose("pack", pack, PACK_MODES, "(PACK=)")
    if not isinstance(workers, int) or workers < 1:
        raise UsageError(f"WORKERS={workers!r} must be a whole number >= 1")
    if budget is not None and not budget > 0:
        raise UsageError(f"BUDGET={budget!r} must be a number of minutes > 0 (leave it empty for no limit)")
    deadline = time.time() + budget * 60 if budget else None      # the budget counts from here
    dtype = device_type(device, dry)
    data_dir = Path(data_dir or default_data_dir())
    threads = max(1, cores() // workers)
    runs, registry = runs_dir(), results.read_registry()
    registered = set(registry.run_id)
    absent = {t: data_missing(plugins.get_task(t), data_dir) for t in sorted({s.task for s in specs})}
    outcomes, pending = [], []
    for spec in specs:
        if spec.run_id in registered:
            outcomes.append(Outcome(spec, "skipped-registered"))
        elif absent[spec.task]:
            outcomes.append(Outcome(spec, "skipped-data-absent", absent[spec.task]))
        else:
            pending.append(spec)
    members = len(pending)
    if pack == "auto":
        from bench.pack import campaign_jobs
        pending = campaign_jobs(pending, dtype, numerics)
        packs = [s for s in pending if hasattr(s, "members")]
        print(f"packs: {members} pending runs as {len(pending)} jobs: {len(packs)} pack(s) of "
              f"{', '.join(str(len(p.members)) for p in packs) or '-'} members, {len(pending) - len(packs)} solo")
    resume = {s.run_id for s in pending if (runs / s.run_id / "checkpoint.pt").exists()}
    pins = cpu_sets(workers, threads) if backend == "local" and dtype == "cpu" else None
    print(f"{name}: {len(specs)} runs: {members} to run ({len(resume)} job(s) resume from a checkpoint), "
          f"{len(specs) - members} skipped; {workers} {backend} worker(s) x {threads} thread(s) on {dtype}"
          + (", each on its own core(s): " + " | ".join(",".join(map(str, sorted(c))) for c in pins) if pins else "")
          + (f"; budget {fmt_s(budget * 60)}" if budget else ""))
    estimates, where = {}, {}
    if dry or budget:
        busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        if busy > 0.5:
            print(f"note: this machine is busy (1-min load {busy:.1f} on {cores()} core(s)): speeds measured "
                  f"now, and the estimates made from them, are pessimistic")
        estimator = Estimator(registry, dtype, data_dir, threads)
        for spec in tqdm(pending, desc="estimating", unit="run", leave=False):
            if hasattr(spec, "members"):            # a pack: at most its members one after another
                est, source = estimator(spec.members[0])
                est, source = (None if est is None else est * len(spec.members),
                               f"pack of {len(spec.members)}: at most {len(spec.members)} x ({source})")
            else:
                est, source = estimator(spec)
            if spec.run_id in resume:                           # only the steps after the checkpoint
                done, where[spec.run_id] = progress(runs / spec.run_id / "checkpoint.pt", spec.cfg["epochs"])
                est = None if est is None else START_S + (est - START_S) * (1 - done)
            estimates[spec.run_id] = est, source
    if dry:
        return print_dry(pending, outcomes, estimates, where, workers)

    stop = threading.Event()
    back = (RayBackend(stop, threads, 1.0 / workers if dtype == "cuda" else 0) if backend == "ray"
            else LocalBackend(stop, pins))
    try:
        outcomes += execute(pending, back, workers, deadline, estimates, stop, child_env(threads, numerics), device,
                            data_dir, runs)
    finally:
        back.close()
    failed = [o for o in outcomes if o.status == "failed"]
    code = 1 if failed else 3 if stop.is_set() else 0
    from bench import leaderboard
    try:
        print(f"leaderboard: {leaderboard.write()}")
    except Exception as exc:
        print(f"error: the leaderboard failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = code or 4
    print_summary(outcomes)
    return code


def held_by(pid: str) -> str:
    return f"already running in pid {pid} (another campaign or `make bench`): that process trains it"


def status_of(rc: int | None, stopping: bool) -> str:
    """A run's status from its exit code: 0 done, 3 stopped (it checkpointed). A run the campaign's
    own stop signalled before it had set up its handler (still importing or loading data) dies of
    the signal: stopped too, nothing was trained yet."""
    if rc == 0:
        return "done"
    if rc == 3 or (stopping and rc in (-signal.SIGTERM, -signal.SIGINT)):
        return "stopped"
    return "failed"


# A run killed by one of these died of a fault in the process (glibc's heap check aborts, a segfault),
# not of its config: it is run once more, resuming from its last epoch checkpoint. A config that
# crashes every time fails on the second try as before.
CRASH_SIGNALS = (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE)


def crashed(rc: int | None) -> bool:
    return rc is not None and rc < 0 and -rc in CRASH_SIGNALS


def execute(pending, backend, workers, deadline, estimates, stop, env, device, data_dir, runs) -> list[Outcome]:
    """WORKERS runs at a time in `pending` order, one tqdm line; at `deadline` (time.time()) the
    running runs get SIGTERM and the rest are deferred; SIGTERM/SIGINT stop the campaign likewise."""
    count = dict.fromkeys(("done", "stopped", "failed", "deferred", "skipped-running", "running"), 0)
    lock = threading.Lock()
    bar = tqdm(total=len(pending), desc="campaign", unit="run", dynamic_ncols=True, mininterval=0)

    def show():                 # under `lock`
        bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in count.items()) +
                            f", pending {len(pending) - sum(count.values())}", refresh=True)

    def finish(outcome: Outcome, wall: float = 0.0) -> Outcome:
        with lock:
            count[outcome.status] += 1
            bar.update(1)
            show()
            tqdm.write(f"{outcome.status}: {outcome.spec.run_id}" + (f" ({fmt_s(wall)})" if wall else "")
                       + (f": {outcome.detail}" if outcome.detail else ""), file=sys.stderr)
        return outcome

    def job(spec):
        if stop.is_set():
            return finish(Outcome(spec, "deferred", "the campaign was stopped"))
        if holder := RunLock.holder(runs / spec.run_id):
            return finish(Outcome(spec, "skipped-running", held_by(holder)))
        est = estimates.get(spec.run_id, (None, ""))[0]
        if deadline is not None:
            left = deadline - time.time()
            if left <= 0 or (est is not None and est > left):
                return finish(Outcome(spec, "deferred", f"over budget: estimate {fmt_s(est)}, "
                                                        f"{fmt_s(max(left, 0))} left"))
        log = runs / "logs" / f"{spec.run_id}.log"
        with lock:
            count["running"] += 1
            show()
        t0 = time.time()
        for attempt in (1, 2):
            try:
                rc, detail = backend.run(command(spec, device, data_dir), env, str(log), deadline), ""
            except Exception as exc:         # the backend itself failed (e.g. a Ray worker died)
                rc, detail = None, f" ({type(exc).__name__}: {exc})"
            status = status_of(rc, stop.is_set())
            if not (status == "failed" and attempt == 1 and crashed(rc) and not stop.is_set()
                    and (deadline is None or time.time() < deadline)):
                break
            tqdm.write(f"crashed: {spec.run_id} ({signal.Signals(-rc).name}): once more, from its last "
                       f"checkpoint, log {log}", file=sys.stderr)
        retried = "crashed by a signal and retried once" if attempt == 2 else ""
        with lock:
            count["running"] -= 1
        if status == "failed" and rc == EXIT_USAGE and (holder := RunLock.holder(runs / spec.run_id)):
            status, detail = "skipped-running", held_by(holder)     # taken between our check and its start
        elif status == "failed":
            detail = f"exit code {rc}, log {log}{detail}" + (f" ({retried}, again)" if retried else "")
        else:
            detail = retried
        return finish(Outcome(spec, status, detail), time.time() - t0)

    def on_signal(signum, frame):
        print(f"\ncampaign: {signal.Signals(signum).name}: stopping the running runs (they checkpoint)",
              file=sys.stderr)
        stop.set()

    main = threading.current_thread() is threading.main_thread()
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)} if main else {}
    out = []
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="campaign") as pool:
            futures = {pool.submit(job, s) for s in pending}
            while futures:
                finished, futures = wait(futures, timeout=1.0, return_when=FIRST_COMPLETED)
                out += [f.result() for f in finished]
    finally:
        bar.close()
        for s, handler in old.items():
            signal.signal(s, handler)
    return out


def print_dry(pending, outcomes, estimates, where, workers) -> int:
    """`where`: run id -> where a resumed run's checkpoint stands (see `progress`)."""
    rows = [[s.run_id, f"resume ({where[s.run_id]})" if s.run_id in where else "new",
             fmt_s(estimates[s.run_id][0]), estimates[s.run_id][1]] for s in pending]
    print(tabulate(rows, headers=["pending run", "state", "estimate", "estimate from"], tablefmt="simple"))
    for s in pending:
        if hasattr(s, "members"):
            print(f"{s.run_id}: {', '.join(m.run_id for m in s.members)}")
    known = [e for e, _ in (estimates[s.run_id] for s in pending) if e is not None]
    unknown = len(pending) - len(known)
    print(f"total: {len(pending)} runs, {fmt_s(sum(known))} of run time"
          + (f" (+ {unknown} without an estimate)" if unknown else "")
          + f", about {fmt_s(sum(known) / workers)} with {workers} worker(s)")
    for status in ("skipped-registered", "skipped-data-absent"):
        n = sum(o.status == status for o in outcomes)
        if n:
            print(f"{status}: {n}")
    return 0


def print_summary(outcomes: list[Outcome]) -> None:
    print("summary: " + ", ".join(f"{s} {sum(o.status == s for o in outcomes)}" for s in STATUSES))
    for o in outcomes:
        if o.status in ("failed", "deferred", "skipped-data-absent", "skipped-running"):
            print(f"{o.status}: {o.spec.run_id}: {o.detail}")


# --- entry points: a plan (make campaign) and a grid (make bench TASK=all METHOD=all) ---------------

def plan_names(text: str) -> list[str]:
    """PLAN=a,b: several plans run as one campaign, in that order."""
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if not names:
        raise UsageError(f"PLAN={text!r} names no plan; e.g. PLAN=smoke or PLAN=sweep,sweep-random")
    return names


def plans_numerics(names: list[str]) -> str:
    """The one numerics mode of the plans (their runs share the campaign's process settings)."""
    modes = {n: plans.load_plan(n).numerics for n in names}
    if len(set(modes.values())) > 1:
        raise UsageError("these plans ask for different numerics (" + ", ".join(
            f"{n}: {m or 'default'}" for n, m in modes.items()) + "); run them as separate campaigns")
    return next(iter(modes.values()))


def run_plan(name: str, workers: int = 1, backend: str = "local", budget: float | None = None,
             device: str = "auto", dry: bool = False, data_dir=None, pack: str = "off") -> int:
    """One plan, or a comma-separated list of plans run in order as one campaign (a run that two
    plans share runs once); pack="auto" trains the runs that can pack as packs (bench/pack.py)."""
    names = plan_names(name)
    numerics_mode = plans_numerics(names)
    specs, seen, titles = [], set(), []
    for n in names:
        plan, expanded = plans.expand_plan(n, device_type(device, dry))
        titles.append(plan.name)
        for spec in expanded:
            if spec.run_id not in seen:
                seen.add(spec.run_id)
                specs.append(spec)
    return run_campaign(specs, workers, backend, budget, device, dry, data_dir,
                        f"plan{'s' if len(names) > 1 else ''} {' + '.join(titles)}", numerics_mode, pack)


def run_grid(task: str, method: str, protocol: str, seeds: str = "0", device: str = "auto",
             overrides: dict | None = None, workers: int = 1, data_dir=None) -> int:
    """`make bench` with lists or `all`: the grid is one plan block, run by the campaign."""
    block = plans.make_block(dict(protocol=protocol, tasks=task, methods=method, seeds=seeds,
                                  set=overrides or {}), "command line")
    return run_campaign(plans.expand([block], device_type(device)), workers, "local", None, device,
                        False, data_dir, "grid")


def _number(text: str | None, what: str, kind=float):
    if text is None or str(text).strip() == "":
        return None
    try:
        return kind(text)
    except ValueError:
        raise UsageError(f"{what}={text!r}: expected a {'whole ' if kind is int else ''}number") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.campaign", description="run a plan of many runs")
    p.add_argument("--plan", required=True, help="a name in plans/ (smoke, gpu, cpu, ...) or a .toml path; "
                                                  "several, comma-separated, run in order as one campaign")
    p.add_argument("--workers", default="1", help="runs at a time (default 1)")
    p.add_argument("--backend", default="local", help="local (processes here) | ray")
    p.add_argument("--budget", default=None, help="minutes; runs that do not fit are deferred")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--dry-run", action="store_true", help="print the pending runs and estimates only")
    p.add_argument("--pack", default="off", help="auto: train the runs that can pack as packs (bench/pack.py); off")
    p.add_argument("--data-dir", default=None, help="data directory (default: $BENCH_DATA, ../shared/data, ./data)")
    args = p.parse_args(argv)
    try:
        numerics_mode = plans_numerics(plan_names(args.plan))
        if argv is None and numerics_mode and os.environ.get("BENCH_NUMERICS") != numerics_mode:
            # estimates are measured here: run in the plan's numerics, fixed before torch loads
            os.execve(sys.executable, [sys.executable, "-m", "bench.campaign", *sys.argv[1:]],
                      dict(os.environ, BENCH_NUMERICS=numerics_mode))
        return run_plan(args.plan, _number(args.workers, "WORKERS", int) or 0, args.backend,
                        _number(args.budget, "BUDGET"), args.device, args.dry_run, args.data_dir, args.pack)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from bench.campaign import main as _main   # as bench.campaign, so that Ray can import its functions
    sys.exit(_main())
