"""Seed verification: replay registered runs and check that they come out the same.

A row whose protocol is in its task's `cpu_protocols` (smoke) is re-run in full: status, valid,
test and every learning curve must match. Any other row (hours of training) is verified by replaying
its first optimizer steps and comparing their training losses (`probe_loss`). Both run from the
row's stored `config_json` and seed, on the rnn path and with the thread count the row recorded, on
the CPU, or for a GPU row on this machine's GPU: dropout masks are drawn from the device's own
generator, so a GPU row's masks exist only on a GPU. Where there is none, a GPU row is replayed on
the CPU (within the tolerance) if that replay draws no mask (`none`, or rates still zero during the
probe steps; the replay stops at the first mask); one that does is skipped with that reason (like a
row whose data are absent), not failed: run `make verify-seeds` on a GPU machine to replay it
(.ci/gpu-session does, for the rows it makes).

Exact (bitwise) equality is required when the fingerprint matches: torch version, thread count,
numerics mode, the CPU model and its ISA; for a GPU row, the GPU model and CUDA
version (runs on CUDA are deterministic: bench/seeding.py). Elsewhere the values must agree within
a relative tolerance of REL_TOL, over a probe's first CROSS_STEPS steps. A row that cannot be
verified is listed with its reason; only absent data, and a GPU row whose replay draws masks on a
machine without a GPU, are not failures.

Before any replay, the consistency checks (bench/consistency.py) run on every selected row, in
seconds: a hand-edited number fails there without training.

CI's budget (`--smoke-max-s S`): a smoke row that trained longer than S seconds replays its
recorded first steps (exact where the fingerprint matches) instead of its whole run, except
`--rotation N` of them chosen from the commit, which are re-run in full (`smoke_probed`).

A full replay (`--full PATTERN`, and `--rotation N` rows chosen from the commit being tested)
re-runs a long row's whole training. Where the fingerprint matches it must reproduce valid, test,
best_epoch and every curve bit for bit and, for a row with result fingerprints, `weights_sha256`
and `examples_sha256`; elsewhere valid, test and the first epoch's valid metric must agree within
`cross_tolerance` (the task's FULL_TOL floor, widened to what two seeds' draws differ by); the
rotation prefers rows that replay bit for bit here. Each passing full replay of a long row is
appended to the registry's LOG_FILE (run id, date, commit, machine, result, and the replay's own
result digests).
"""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
import fnmatch
import hashlib
import json
import math
import subprocess
from pathlib import Path

import torch

from bench import config as config_mod
from bench import consistency, plugins, results, rnn, seeding
from bench.data import default_data_dir
from bench.errors import UsageError
from bench.runner import execute

REL_TOL = 1e-3
# A probe replayed elsewhere (another CPU model under native numerics, a GPU row on a CPU) compares
# its first CROSS_STEPS steps only: the first checks initialisation, data order, masks and forward,
# the next ones the update; after that the optimizer amplifies rounding differences step by step
# (measured, a Multi30k rnndrop row made on an Intel Xeon replayed on an AMD EPYC: relative
# differences 1e-7, 7e-6, 1.4e-4, 2.5e-4, then 7.5e-3 at step 5). Where exact, all steps count.
CROSS_STEPS = 3
# the lock's hash is recorded in every row but not compared: the numbers depend on torch (its
# version is compared) and the CPU, not on the versions of the analysis or test dependencies
FINGERPRINT_KEYS = ("torch_version", "device", "threads", "numerics")
# Portable numerics (bench/numerics.py) do not make every task bitwise portable: measured on an AMD
# EPYC, the PTB and WikiText-2 smoke rows made on an Intel Xeon replay bit for bit, the SST and
# Multi30k ones drift in their last bits (up to 5e-7 relative after 2-3 epochs; the kernel at fault
# is not pinned down). So the CPU model is part of every CPU fingerprint.
CPU_KEYS = ("cpu_model", "cpu_isa", "cpu_capability")
CUDA_KEYS = ("device_name", "cuda_version")
CURVES = ("curve_train_loss", "curve_valid", "curve_valid_loss", "curve_lr")
# A long row replayed in full on other hardware: rounding differences compound over the epochs into
# other weights, so the replay is in effect another draw of the same training. Measured, native
# numerics, 1 thread, rows made on an Intel Xeon replayed on an AMD EPYC: sst2.none.cpu.s0, epochs 1-2
# bit for bit, then the valid curve drifts by up to 2.4 points, test 80.51 -> 80.23; sst2.awd.cpu.s6,
# test 80.34 -> 78.58 (1.76 points; that cell's seed sd is 0.64). So valid, test and the first epoch's
# valid metric (before differences compound) must agree within what two draws of one training differ
# by: t(1 - CROSS_ALPHA/2, df) * sqrt(2) * s, s the seed standard deviation of the row's cell (its
# finished rows that differ by seed only; df = their count - 1), and never tighter than the task's
# FULL_TOL floor, which applies alone below CROSS_MIN_DF degrees of freedom (`cross_tolerance`).
# best_epoch and the later curve points are not compared. FULL_TOL is about 3x the median seed sd
# of the `cpu` rows (sst2 0.55, sst5 1.6 points, ptb 0.7 ppl, multi30k 0.5 BLEU); alone, it fails such
# a replay often (SST-2 awd: P(|N(0, 2 x 0.64^2)| > 1.5) = 0.10), as CI did at 57dfd8b. Exact where the
# fingerprint matches (every curve and the result digests count): the rotation prefers those rows.
FULL_TOL = {"sst2": ("abs", 1.5), "sst5": ("abs", 3.0), "ptb": ("rel", 0.02), "wikitext-2": ("rel", 0.02),
            "multi30k-de-en": ("abs", 1.5)}
CROSS_ALPHA = 0.001
CROSS_MIN_DF = 5
FULL_TOL_DEFAULT = ("rel", 0.02)
LOG_FILE, LOG_COLUMNS = consistency.LOG_FILE, consistency.LOG_COLUMNS   # the log of passing full replays
ROTATION_PROTOCOLS = ("cpu",)       # --rotation picks among these rows of ROTATION_TASKS
ROTATION_TASKS = ("sst2", "sst5")
# ... that trained in at most this many seconds: a full replay of one takes about its wall_s on one
# core (measured: sst2.zaremba.cpu.s0, 229 s on an Intel Xeon, 265 s of CPU on an AMD EPYC), which
# keeps .ci/run's one rotation row (ROTATION=1) within CI's 20 minutes on 2 cores
ROTATION_MAX_WALL_S = 360
BUDGET_TAG = "(smoke, CI budget)"  # ends the mode of a smoke row probed under --smoke-max-s


def _rel(a: float, b: float) -> float:
    """Relative difference of two values (0 when both are NaN, inf when only one is)."""
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    return 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))


def _close(a: float, b: float, exact: bool) -> bool:
    return _rel(a, b) <= (0.0 if exact else REL_TOL)


def _all_close(a, b, exact: bool) -> bool:
    return len(a) == len(b) and all(_close(float(x), float(y), exact) for x, y in zip(a, b))


def same_fingerprint(row, fp: dict) -> bool:
    if fp["device"] == "cuda":
        keys = FINGERPRINT_KEYS + CUDA_KEYS
    else:
        keys = FINGERPRINT_KEYS + CPU_KEYS
    return all(str(fp[k]) == str(getattr(row, k)) for k in keys)


class NeedsGPU(Exception):
    """A GPU row whose replay draws dropout masks, on a machine without a GPU."""


def replay_device(row) -> tuple[torch.device, bool]:
    """Where a row is replayed, and whether that is a CPU standing in for the GPU that made it."""
    if getattr(row, "device", "cpu") != "cuda":
        return torch.device("cpu"), False
    if not torch.cuda.is_available():
        return torch.device("cpu"), True
    return torch.device("cuda"), False


def impl_for(rnn_path: str) -> str:
    """The reference cell where the row ran it (the fast cell rounds differently), else auto."""
    names = {n for part in rnn_path.split() for n in part.rpartition(":")[2].split(",")}
    return "reference" if "cell" in names else "auto"


def full_rerun(row) -> bool:
    return row.protocol in plugins.get_task(row.task).cpu_protocols


def full_tol(task: str) -> tuple[str, float]:
    """The task's floor for a full replay on other hardware (FULL_TOL)."""
    return FULL_TOL.get(task, FULL_TOL_DEFAULT)


CELL = ("protocol", "task", "method", "config_hash", "device")    # the rows that differ by their seed only


def seed_spread(df) -> dict[tuple, tuple[float, int]]:
    """{cell (CELL): (seed sd of test, degrees of freedom)} over each cell's finished rows, for the
    cells with 2 or more of them."""
    ok = df[(df.status == "ok") & df.test.notna()] if len(df) else df
    out = {}
    for key, cell in ok.groupby(list(CELL)) if len(ok) else ():
        if len(cell) >= 2:
            out[key] = (float(cell.test.std(ddof=1)), len(cell) - 1)
    return out


class Tolerance:
    """A full replay's tolerance on other hardware: the task's floor, widened to what two draws of
    one training differ by (t * sqrt(2) * the cell's seed sd) where the cell has the seeds to say."""

    def __init__(self, task: str, spread: tuple[float, int] | None = None):
        from scipy import stats
        self.floor = full_tol(task)
        self.spread = spread
        self.draws = None
        if spread and spread[1] >= CROSS_MIN_DF:
            s, dof = spread
            self.draws = float(stats.t.isf(CROSS_ALPHA / 2, dof) * math.sqrt(2) * s)

    def ok(self, a: float, b: float) -> bool:
        return within(a, b, self.floor) or (self.draws is not None and within(a, b, ("abs", self.draws)))

    def __str__(self) -> str:
        kind, value = self.floor
        floor = f"{kind}.tol {value:g}"
        if self.draws is None:
            return floor
        s, dof = self.spread
        return (f"{floor} or abs.tol {self.draws:.3g} = t({1 - CROSS_ALPHA / 2:g}, {dof} df) x sqrt2 x seed sd "
                f"{s:.3g}")


def cross_tolerance(row, spread: dict | None = None) -> Tolerance:
    """The tolerance for replaying `row` in full on other hardware, from the `seed_spread` of its cell
    (methods' spreads differ by up to 20x within one table, so they are not pooled)."""
    return Tolerance(row.task, (spread or {}).get(tuple(str(getattr(row, k)) for k in CELL)))


def within(a: float, b: float, tol: tuple[str, float]) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    kind, value = tol
    return abs(a - b) <= value if kind == "abs" else _rel(a, b) <= value


def head_commit() -> str:
    from bench.runner import git_state
    return git_state()[0]


def replaying_commit() -> str:
    """The commit of the code that replays, '+dirty' when its working tree has uncommitted changes."""
    from bench.runner import git_state
    commit, dirty = git_state()
    return commit + ("+dirty" if dirty else "")


def _pick(pool, n: int, commit: str | None) -> list[str]:
    """`n` run ids of `pool`, chosen by a hash of the commit being tested and the run id: the same
    rows for one commit, others for the next (every row in turn over many commits)."""
    commit = commit or head_commit()
    key = pool.run_id.map(lambda r: hashlib.sha256(f"{commit}:{r}".encode()).hexdigest())
    return list(pool.assign(_k=key).sort_values("_k").run_id[:n])


def made_here(row, fp: dict) -> bool:
    """Whether a CPU row was made with this machine's torch and CPU (fingerprint `fp`), so that a full
    replay is bit for bit: the replay sets the row's own threads and numerics mode (and with it the
    kernels' capability), so those do not count, and the answer is the same in every process."""
    return all(str(fp[k]) == str(getattr(row, k)) for k in ("torch_version", "cpu_model", "cpu_isa"))


def rotation(df, n: int, commit: str | None = None, fp: dict | None = None):
    """`n` long rows to replay in full, chosen from the commit (`_pick`): among the rows that replay
    bit for bit on this machine (fingerprint `fp`) where there are any, which makes the check exact,
    else among all (compared within `cross_tolerance`)."""
    pool = df[df.protocol.isin(ROTATION_PROTOCOLS) & df.task.isin(ROTATION_TASKS) & (df.device == "cpu")
              & (df.wall_s <= ROTATION_MAX_WALL_S)]
    if len(pool):
        fp = fp or seeding.fingerprint(torch.device("cpu"))
        here = pool[[made_here(r, fp) for r in pool.itertuples()]]
        pool = here if len(here) else pool
    return _pick(pool, n, commit)


def smoke_probed(df, max_s: float | None, n_rotation: int = 0, commit: str | None = None) -> set[str]:
    """CI's budget for the rows normally re-run in full (smoke): those that trained longer than
    `max_s` seconds replay their recorded first steps instead (probe_loss, exact where the
    fingerprint matches), except `n_rotation` of them chosen from the commit (`_pick`), which are
    re-run in full. None: every one in full (`make verify-seeds`)."""
    if max_s is None or df.empty:
        return set()
    known = set(plugins.list_tasks())              # a row of an unknown task is reported by verify_row
    smoke = df[[r.task in known and full_rerun(r) for r in df.itertuples()]]
    long = smoke[smoke.wall_s > max_s]
    return set(long.run_id) - set(_pick(long, n_rotation, commit))


def full_ids(df, pattern: str | None = None, n_rotation: int = 0) -> set[str]:
    """Run ids to replay in full: those matching `pattern` (a run id or a glob), plus the rotation's."""
    ids = set()
    if pattern:
        ids = {r for r in df.run_id if r == pattern or fnmatch.fnmatchcase(r, pattern)}
        if not ids:
            raise UsageError(f"FULL={pattern!r} matches no registered run id (a run id, or a glob such as "
                             f"'sst2.*.cpu.s0.*'; ids read task.method.protocol.sSEED.DEVICE.HASH)")
    return ids | set(rotation(df, n_rotation)) if n_rotation else ids


def load_cached(task, method, cfg, data_dir, cache: dict):
    """task.load, shared by rows whose configs differ only in their methods' options (the points
    of a sweep): the data a task loads depends on its own keys only. Tasks treat data as read-only."""
    options = set().union(*(m.options for m in config_mod.method_chain(method, dict(cfg))))
    key = (task.name, str(data_dir), json.dumps({k: v for k, v in cfg.items() if k not in options}, sort_keys=True))
    if key not in cache:
        cache.clear()                                  # one dataset in memory at a time
        cache[key] = task.load(Path(data_dir), cfg)
    return cache[key]


def sample(df, per_group: int):
    """Every row of a results protocol, and at most `per_group` rows of each (protocol, task, method)
    of the `sweep*` protocols (hundreds of short points), chosen by a hash of the run id, so the same
    rows every time. CI uses it to stay within its time budget."""
    import hashlib
    sweep = df.protocol.str.startswith("sweep")
    key = df.run_id.map(lambda r: hashlib.sha256(r.encode()).hexdigest())
    picked = (df[sweep].assign(_k=key[sweep]).sort_values("_k")
              .groupby(["protocol", "task", "method"], sort=True).head(per_group).drop(columns="_k"))
    import pandas as pd
    return pd.concat([df[~sweep], picked]).sort_values("run_id", kind="stable")


def smoke_budget_line(rows: list[dict], max_s: float) -> str:
    """What CI's budget left out, for verify-seeds' summary."""
    n = sum(r["mode"].endswith(BUDGET_TAG) for r in rows)
    return (f"smoke rows probed: {n} that trained longer than {max_s:g} s replayed their first steps, not their "
            f"whole run (--smoke-max-s; `make verify-seeds` re-runs every smoke row in full)")


def verify_row(row, data_dir, cache: dict | None = None, full: bool = False, probe: bool = False,
               spread: dict | None = None) -> dict:
    """{run_id, mode, exact, ok, detail}; raises UsageError when the row cannot be replayed here.
    `full`: replay a long row's whole training (else its first steps), on other hardware within
    `cross_tolerance` of the registry's `spread`; `probe`: replay a smoke row's first steps only (else
    its whole run; `smoke_probed`)."""
    task, method = plugins.get_task(row.task), plugins.get_method(row.method)
    cfg = config_mod.Config(json.loads(row.config_json))
    data = load_cached(task, method, cfg, data_dir, {} if cache is None else cache)
    dev, stand_in = replay_device(row)
    try:
        with rnn.no_masks() if stand_in else contextlib.nullcontext():
            if full and not full_rerun(row):
                return _full_replay(row, task, method, cfg, data, dev, spread)
            return _replay(row, task, method, cfg, data, dev, probe=probe)
    except rnn.MaskDrawn:
        raise NeedsGPU(f"a GPU row ({row.device_name}) whose replay draws dropout masks: they come from the "
                       "GPU's generator, so it replays on a GPU only; run `make verify-seeds` on a machine "
                       "with CUDA") from None


def _replay(row, task, method, cfg, data, dev, probe: bool = False) -> dict:
    torch.set_num_threads(int(row.threads))          # the row's thread count: results depend on it
    # a pack member (bench/pack.py) equals its solo run up to float rounding: the solo replay is
    # compared within the tolerance, never bit for bit
    exact = same_fingerprint(row, seeding.fingerprint(dev)) and int(row.pack_size or 1) == 1
    impl = impl_for(row.rnn_path)
    if full_rerun(row) and not probe:
        got = execute(task, method, cfg, data, int(row.seed), dev, progress=False, impl=impl, echo=lambda s: None)
        exact = exact and got["rnn_path"] == row.rnn_path
        ok = (got["status"] == row.status and _close(got["valid"], row.valid, exact)
              and _close(got["test"], row.test, exact)
              and all(_all_close(got[c], getattr(row, c), exact) for c in CURVES if len(getattr(row, c))))
        detail = f"test {row.test!r} -> {got['test']!r}, valid {row.valid!r} -> {got['valid']!r}"
        mode = "full"
    else:
        want = list(row.probe_loss)
        if not want:
            return dict(run_id=row.run_id, mode="probe", exact=False, ok=False,
                        detail="no probe_loss recorded (a schema-1 row of a long protocol); re-run it")
        want = want if exact else want[:CROSS_STEPS]
        got = execute(task, method, cfg, data, int(row.seed), dev, progress=False, impl=impl,
                      max_steps=len(want), echo=lambda s: None)
        losses = got["probe_loss"]
        ok = _all_close(losses, want, exact)
        diffs = [_rel(float(a), float(b)) for a, b in zip(losses, want)]
        worst = max(range(len(diffs)), key=diffs.__getitem__, default=None)   # None: no step ran
        detail = (f"first {len(want)} step losses {[float(x) for x in want[:2]]!r}... -> "
                  f"{[float(x) for x in losses[:2]]!r}..."
                  + ("" if worst is None else f", largest relative difference {diffs[worst]:.1e} (step {worst + 1})"))
        mode = f"probe {len(want)} steps" + (f" {BUDGET_TAG}" if full_rerun(row) else "")
    ok = ok and config_mod.config_hash(cfg) == row.config_hash
    return dict(run_id=row.run_id, mode=mode, exact=exact, ok=ok, detail=detail)


def _full_replay(row, task, method, cfg, data, dev, spread: dict | None = None) -> dict:
    """A long row's whole training: bit for bit (and its result digests) on the same fingerprint,
    else valid, test and the first epoch's valid metric within `cross_tolerance`."""
    torch.set_num_threads(int(row.threads))
    impl = impl_for(row.rnn_path)
    got = execute(task, method, cfg, data, int(row.seed), dev, progress=False, impl=impl, echo=lambda s: None)
    exact = same_fingerprint(row, seeding.fingerprint(dev)) and got["rnn_path"] == row.rnn_path
    examples = got.get("examples")
    got_examples = results.examples_digest(examples) if examples is not None else ""
    got_weights = got.get("weights_sha256", "")
    tol = None if exact else cross_tolerance(row, spread)
    close = (lambda a, b: within(a, b, ("abs", 0.0))) if exact else tol.ok
    bad = []
    if got["status"] != row.status:
        bad.append(f"status {row.status} -> {got['status']}")
    for f in ("valid", "test"):
        if not close(got[f], getattr(row, f)):
            bad.append(f"{f} {getattr(row, f)!r} -> {got[f]!r}")
    for c in CURVES if exact else ("curve_valid",):
        want, have = list(getattr(row, c)), list(got[c])
        if not exact:                          # the first epoch only, before differences compound
            want, have = want[:1], have[:1]
        if want and not (len(want) == len(have) and all(close(float(a), float(b)) for a, b in zip(have, want))):
            worst = max((abs(float(a) - float(b)) for a, b in zip(have, want)), default=math.nan)
            bad.append(f"{c} differs (largest |difference| {worst:.3g}, {len(want)} -> {len(have)} points)")
    if exact:
        if got["best_epoch"] != row.best_epoch:
            bad.append(f"best_epoch {row.best_epoch} -> {got['best_epoch']}")
        for f, value in (("weights_sha256", got_weights), ("examples_sha256", got_examples)):
            if getattr(row, f, "") and value != getattr(row, f):
                bad.append(f"{f} {getattr(row, f)[:12]}... -> {value[:12]}...")
    if config_mod.config_hash(cfg) != row.config_hash:
        bad.append("config_hash")
    how = "bit for bit" if exact else f"within {tol}"
    digests = "weights+examples" if exact and row.weights_sha256 and row.examples_sha256 else "metrics"
    detail = (f"test {row.test!r} -> {got['test']!r}, valid {row.valid!r} -> {got['valid']!r}"
              + (f"; differs: {'; '.join(bad)}" if bad else ""))
    return dict(run_id=row.run_id, mode="full replay", exact=exact, ok=not bad, detail=detail,
                tol="" if exact else str(tol),
                machine=f"{machine()}, {row.threads} threads, {seeding.fingerprint(dev)['numerics']} numerics",
                log=dict(result=f"{'exact' if exact else 'tolerance'}: {how} ({digests}); test {got['test']!r}",
                         weights_sha256=got_weights, examples_sha256=got_examples,
                         row_test=repr(float(row.test)), row_valid=repr(float(row.valid))))


def machine() -> str:
    """This machine as the log records it, e.g. 'CPU AMD EPYC (avx512, 1 threads, native numerics)'."""
    fp = seeding.fingerprint(torch.device("cpu"))
    if torch.cuda.is_available():
        gpu = seeding.fingerprint(torch.device("cuda"))
        return f"{gpu['device_name']} (CUDA {gpu['cuda_version']}) on {fp['cpu_model']}"
    return f"CPU {fp['cpu_model']} ({fp['cpu_isa'] or fp['cpu_capability']}, torch {fp['torch_version']})"


def append_log(registry: Path, rows: list[dict], commit: str | None = None) -> int:
    """Append each passing full replay (rows carrying `log`) to the registry's LOG_FILE."""
    done = [r for r in rows if r.get("ok") and not r.get("skipped") and r.get("log")]
    if not done:
        return 0
    path = Path(registry) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    commit = commit or replaying_commit()
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with path.open("a", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        if new:
            w.writerow(LOG_COLUMNS)
        for r in done:
            log = r["log"]
            w.writerow([r["run_id"], date, commit, r.get("machine") or machine(), log["result"],
                        log["weights_sha256"], log["examples_sha256"], log.get("row_test", ""),
                        log.get("row_valid", "")])
    return len(done)


read_log, start_only = consistency.read_log, consistency.start_only


def replay_mode(row_numerics: str) -> str:
    """The numerics mode a row is replayed in: portable rows in portable mode, every other row
    (native CPU rows, CUDA rows, schema-1 rows) with this CPU's native kernels."""
    return "portable" if row_numerics == "portable" else "native"


def uncommitted_ids(registry: Path) -> set[str]:
    """Run ids of the registry's rows whose files git does not track yet, or that changed since the
    last commit: the rows to verify before committing them (a campaign's new rows)."""
    registry = Path(registry)
    if not registry.is_dir():
        return set()
    try:
        out = subprocess.run(["git", "ls-files", "--others", "--modified", "--exclude-standard", "--", "."],
                             cwd=registry, capture_output=True, text=True)
    except FileNotFoundError:
        out = None
    if out is None or out.returncode != 0:
        raise UsageError(f"--uncommitted needs git and the registry ({registry}) inside a git checkout"
                         + (f": {out.stderr.strip()}" if out is not None else ": git is not installed"))
    return {Path(line).stem for line in out.stdout.splitlines() if line.endswith(".parquet")}


def check_only(df, only: str | None) -> None:
    """--only text that is in no registered run id is a mistake (a typo), not "0 passed"."""
    if only and not df.empty and not df.run_id.str.contains(only, regex=False).any():
        raise UsageError(f"--only {only!r} is in no registered run id (ids read task.method.protocol.sSEED."
                         f"DEVICE.HASH, e.g. {df.run_id.iloc[0]}); fix the text, or leave --only out")


def select(df, registry=None, only=None, uncommitted: bool = False, full: str | None = None):
    """The rows a verify-seeds call covers (before sweep sampling): --only, --uncommitted, --full."""
    check_only(df, only)
    if uncommitted:
        df = df[df.run_id.isin(uncommitted_ids(registry or results.registry_path()))]
    if only:
        df = df[df.run_id.str.contains(only, regex=False)]
    if full:
        df = df[df.run_id.isin(full_ids(df, full))]
    return df


def verify_all(registry: Path | None = None, data_dir=None, only=None, echo=print,
               numerics: str | None = None, sweep_sample: int | None = None,
               uncommitted: bool = False, full: str | None = None, rotation_n: int = 0,
               part: str | None = None, smoke_max_s: float | None = None) -> list[dict]:
    """Verify every row (or those whose id contains `only`, or whose replay mode is `numerics`; with
    `sweep_sample`, at most that many rows per sweep cell, see `sample`; with `uncommitted`, only rows
    git does not track yet); `full` / `rotation_n` rows are replayed in full (`full_ids`); `part`
    "full" or "rest": only those rows, or only the others (verify-seeds runs them in processes of their
    own); `smoke_max_s`: smoke rows that trained longer replay their first steps (`smoke_probed`). Rows that cannot be replayed are returned with ok=False and a reason, or skipped=True when
    only their data is absent, or when they are GPU rows that draw masks and there is no GPU here."""
    seeding.set_threads()
    every = results.read_registry(registry)
    df = select(every, registry, only, uncommitted, full)
    in_full = full_ids(df, full, rotation_n) if (full or rotation_n) else set()
    spread = seed_spread(every) if in_full else {}   # the whole registry's seeds, for full replays elsewhere
    probed = smoke_probed(df, smoke_max_s, rotation_n)
    if sweep_sample is not None:
        df = sample(df, sweep_sample)
    if numerics:
        df = df[[replay_mode(n) == numerics for n in df.numerics]]
    if part:
        df = df[df.run_id.isin(in_full) == (part == "full")]
    data_dir = data_dir or default_data_dir()
    out, data_status, cache = [], {}, {}
    for row in df.itertuples():
        try:
            if row.task not in data_status:
                data_status[row.task] = plugins.get_task(row.task).data_status(Path(data_dir))
            status = data_status[row.task]
            if status != "ok":
                r = dict(run_id=row.run_id, mode="-", exact=False, ok=True, skipped=True,
                         detail=f"not verified: data absent ({status})")
            else:
                r = verify_row(row, data_dir, cache, full=row.run_id in in_full, probe=row.run_id in probed,
                               spread=spread)
        except NeedsGPU as exc:
            r = dict(run_id=row.run_id, mode="-", exact=False, ok=True, skipped=True, detail=f"not verified: {exc}")
        except UsageError as exc:
            r = dict(run_id=row.run_id, mode="-", exact=False, ok=False, detail=f"cannot verify: {exc}")
        r.setdefault("skipped", False)
        tag = "SKIP" if r["skipped"] else ("OK  " if r["ok"] else "FAIL")
        tol = r.get("tol") or f"rel.tol {REL_TOL:g}"
        how = "" if r["skipped"] else f" [{r['mode']}, {'exact' if r['exact'] else tol}]"
        echo(f"{tag} {r['run_id']}{how} {r['detail']}")
        out.append(r)
    return out
