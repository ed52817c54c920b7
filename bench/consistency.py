"""Consistency checks on registry rows: seconds for the whole registry, no training.

A full replay proves a row's numbers but takes the run's hours; these checks prove that the numbers
a row holds agree with each other and with the code it names, so that a hand-edited number, a
retouched side file or a config that is not the one hashed fails in CI even when the run is too
long to replay. Each check has a name (CHECKS); a failure names the row and the field.

- `run_id`: recomputes from task, method, protocol, seed, device and config hash
  (bench/runner.make_run_id), and is the file's name under <task>/<method>/.
- `config_hash`: recomputes from `config_json` (bench/config.config_hash).
- `selection`: `best_epoch` is the epoch the trainer selects from the curves (bench/train.py: the
  first minimum of the valid loss where the task selects on loss, else of the signed valid metric)
  and `valid` is `curve_valid` at that epoch, bit for bit; a diverged row has NaN metrics.
- `commit`: the row's `git_commit` exists in this checkout's history.
- `plugin_sha256`: each plugin file's sha256 is that of `git show <commit>:<file>`.
- `examples`: for rows with result fingerprints (schema 3), the side file exists, its digest is
  `examples_sha256` and the task recomputes `test` from it (within TEST_REL, summation order only);
  an ok schema-3 row without fingerprints, or a side file the row does not claim, fails.
- `log`: a row that a full replay confirmed (LOG_FILE) still holds the test and valid it confirmed.

A committed row that legitimately fails one check (e.g. made from a dirty tree whose plugin file
matches no commit) is listed, with its reason, in ALLOW_FILE under the registry: an explicit,
reviewed exception, never a weaker check. An entry whose row now passes that check is itself a failure
(stale), so the list only shrinks.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench import config as config_mod
from bench import plugins, results
from bench.data import REPO

CI_SMOKE_MAX_S = 6                # .ci/run's default SMOKE_MAX_S (the leaderboard says it; a test keeps them equal)
LOG_FILE = "VERIFIED.tsv"         # under the registry: one line per passing full replay (bench/verify.py)
# row_test / row_valid: the row's values the replay confirmed (repr), so a later edit of a replayed row
# fails the `log` check in seconds
LOG_COLUMNS = ("run_id", "date", "commit", "machine", "result", "weights_sha256", "examples_sha256",
               "row_test", "row_valid")
CHECKS = ("run_id", "config_hash", "selection", "commit", "plugin_sha256", "examples", "log")
ALLOW_FILE = "CONSISTENCY_ALLOW.tsv"      # run_id <TAB> check <TAB> reason; '#' lines are comments
# `test` recomputed from the side file sums per-example values in another order than the evaluation
# loop did: float rounding only (~1e-15); the smallest hand edit worth making (0.01 points) is 1e-4.
TEST_REL = 1e-9


@dataclass
class Problem:
    run_id: str
    check: str
    field: str
    detail: str
    allowed: str = ""              # the allow-list's reason, when the failure is an accepted one

    def line(self) -> str:
        tag = "ALLOW" if self.allowed else "FAIL "
        why = f" (allowed: {self.allowed})" if self.allowed else ""
        return f"{tag} {self.run_id} [{self.check}] field `{self.field}`: {self.detail}{why}"


class Git:
    """Batched `git cat-file` lookups in the code's checkout (one process per batch, cached)."""

    def __init__(self, repo: Path = REPO):
        self.repo = Path(repo)
        self._commits: dict[str, bool] = {}
        self._blobs: dict[tuple[str, str], str | None] = {}
        self.error = ""
        try:
            out = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=self.repo,
                                 capture_output=True, text=True)
            if out.returncode != 0:
                self.error = f"{self.repo} is not a git checkout ({out.stderr.strip()})"
            self.shallow = out.stdout.strip() == "true"
        except FileNotFoundError:
            self.error, self.shallow = "git is not installed", False

    def _batch(self, flag: str, lines: list[str]) -> bytes:
        return subprocess.run(["git", "cat-file", flag], cwd=self.repo, input="".join(f"{x}\n" for x in lines).encode(),
                              capture_output=True, check=True).stdout

    def have_commits(self, commits) -> None:
        todo = sorted({c for c in commits if c not in self._commits})
        if not todo or self.error:
            return
        out = self._batch("--batch-check", [f"{c}^{{commit}}" for c in todo]).decode().splitlines()
        for c, line in zip(todo, out):
            self._commits[c] = not line.endswith(" missing") and " commit " in line

    def has_commit(self, commit: str) -> bool:
        self.have_commits([commit])
        return self._commits.get(commit, False)

    def sha256_of(self, pairs) -> None:
        """Fill the cache with sha256(git show commit:path) for each (commit, path); None when absent."""
        todo = sorted({p for p in pairs if p not in self._blobs})
        if not todo or self.error:
            return
        out = self._batch("--batch", [f"{c}:{p}" for c, p in todo])
        pos = 0
        for key in todo:
            end = out.index(b"\n", pos)
            header = out[pos:end].decode()
            pos = end + 1
            if header.endswith(" missing") or header.endswith(" ambiguous"):
                self._blobs[key] = None
                continue
            size = int(header.split()[2])
            self._blobs[key] = hashlib.sha256(out[pos:pos + size]).hexdigest()
            pos += size + 1

    def file_sha256(self, commit: str, path: str) -> str | None:
        self.sha256_of([(commit, path)])
        return self._blobs.get((commit, path))


def read_allow(registry: Path) -> dict[tuple[str, str], str]:
    """{(run_id, check): reason} from the registry's ALLOW_FILE (absent: none)."""
    path = Path(registry) / ALLOW_FILE
    if not path.exists():
        return {}
    out = {}
    for n, rec in enumerate(csv.reader(path.read_text().splitlines(), delimiter="\t"), 1):
        if not rec or rec[0].startswith("#") or rec == ["run_id", "check", "reason"]:
            continue
        if len(rec) != 3 or rec[1] not in CHECKS or not rec[2].strip():
            raise results.RegistryError(f"{path}:{n}: expected run_id<TAB>check<TAB>reason with check one of "
                                        f"{', '.join(CHECKS)} and a reason, got {rec!r}")
        out[(rec[0], rec[1])] = rec[2].strip()
    return out


def selected_epoch(row, task) -> int:
    """The 1-based epoch bench/train.py keeps: the first strict minimum of its selection loss."""
    if task.select_on == "loss":
        keys = [float(v) for v in row["curve_valid_loss"]]
    else:
        keys = [-float(v) if task.higher_is_better else float(v) for v in row["curve_valid"]]
    best, epoch = math.inf, 0
    for i, k in enumerate(keys, 1):
        if k < best:
            best, epoch = k, i
    return epoch


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def check_selection(row, task) -> list[tuple[str, str]]:
    """(field, detail) for each way `valid` / `best_epoch` disagree with the curves."""
    curve = [float(v) for v in row["curve_valid"]]
    if row["status"] != "ok":
        return [(f, f"a {row['status']} row reports {f} {row[f]!r} (NaN expected)")
                for f in ("valid", "test") if not math.isnan(row[f])]
    out = []
    if not math.isfinite(row["test"]):
        out.append(("test", f"an ok row with a non-finite test {row['test']!r}"))
    if not curve:
        return out + [("curve_valid", "an ok row without a valid curve")]
    if len(curve) != row["epochs"]:
        out.append(("epochs", f"{row['epochs']} epochs but {len(curve)} curve points"))
    want = selected_epoch(row, task)
    if row["best_epoch"] != want:
        on = "valid loss" if task.select_on == "loss" else f"valid {task.valid_metric}"
        out.append(("best_epoch", f"best_epoch {row['best_epoch']} but the best {on} is at epoch {want}"))
    if 1 <= want <= len(curve) and not _same(row["valid"], curve[want - 1]):
        out.append(("valid", f"valid {row['valid']!r} but curve_valid[epoch {want}] is {curve[want - 1]!r}"))
    return out


def check_examples(registry: Path, row, task) -> list[tuple[str, str]]:
    path = results.examples_path(registry, row)
    claims = bool(row["examples_sha256"])
    if not claims:
        if path.exists():
            return [("examples_sha256", f"the row has no examples_sha256 but a side file exists ({path})")]
        if row["schema_version"] >= 3 and row["status"] == "ok":
            return [(f, "an ok schema-3 row without its result fingerprint")
                    for f in ("examples_sha256", "weights_sha256") if not row[f]]
        return []
    if not path.exists():
        return [("examples_sha256", f"side file {path} is missing")]
    out = []
    file_digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if row["examples_file_sha256"] and file_digest != row["examples_file_sha256"]:
        out.append(("examples_file_sha256", f"side file {path.name}'s bytes hash to {file_digest[:16]}..., the "
                                            f"row says {row['examples_file_sha256'][:16]}..."))
    try:
        df = results.read_examples(registry, row)
    except Exception as exc:
        return out + [("examples_sha256", f"side file {path} is unreadable: {type(exc).__name__}: {exc}")]
    digest = results.examples_digest(df)
    if digest != row["examples_sha256"]:
        out.append(("examples_sha256", f"side file {path.name} hashes to {digest[:16]}..., the row says "
                                       f"{row['examples_sha256'][:16]}..."))
    try:
        test = float(task.test_from_examples(df))
    except Exception as exc:
        return out + [("test", f"cannot recompute test from {path.name}: {type(exc).__name__}: {exc}")]
    if not (math.isclose(test, row["test"], rel_tol=TEST_REL) or _same(test, row["test"])):
        out.append(("test", f"test {row['test']!r} but the side file gives {test!r}"))
    if not row["weights_sha256"]:
        out.append(("weights_sha256", "a row with examples_sha256 but no weights_sha256"))
    return out


def row_files(registry: Path) -> dict[str, Path]:
    return {f.stem: f for f in sorted(Path(registry).glob("*/*/*.parquet"))}


def check_registry(registry: Path | None = None, df=None, git: Git | None = None) -> list[Problem]:
    """Every problem of every row (allowed ones marked), plus stale allow-list entries; for the whole
    registry (`df` None, or all its rows) also side files that belong to no row."""
    registry = Path(registry or results.registry_path())
    whole = df is None
    df = results.read_registry(registry) if df is None else df
    files = row_files(registry)
    allow = read_allow(registry)
    git = git or Git()
    rows = df.to_dict("records")
    if not git.error:
        git.have_commits(r["git_commit"] for r in rows)
        git.sha256_of((r["git_commit"], p) for r in rows if git.has_commit(r["git_commit"])
                      for p in _plugins(r) or {})
    confirmed = _confirmed(read_log(registry))
    problems, failed = [], set()
    for row in rows:
        for check, field, detail in _check_row(registry, row, files, git, confirmed.get(row["run_id"], [])):
            failed.add((row["run_id"], check))
            problems.append(Problem(row["run_id"], check, field, detail, allow.get((row["run_id"], check), "")))
    present = set(df.run_id)
    if whole or present == set(files):
        for side in sorted((registry / results.EXAMPLES_DIR).glob("*/*/*.parquet")):
            if side.stem not in files:
                problems.append(Problem(side.stem, "examples", "examples_sha256",
                                        f"side file {side} belongs to no registry row: delete it, or restore its row"))
    for (run_id, check), reason in sorted(allow.items()):
        if run_id in present and (run_id, check) not in failed:
            problems.append(Problem(run_id, check, "-", f"listed in {ALLOW_FILE} ({reason}) but the check passes "
                                                        f"now: delete the entry"))
    return problems


def _plugins(row) -> dict | None:
    """The row's {file: sha256}; None when the column is not such a JSON object."""
    try:
        out = json.loads(row["plugin_sha256"] or "{}")
    except ValueError:
        return None
    return out if isinstance(out, dict) else None


def _confirmed(log) -> dict[str, list[tuple[str, str, str]]]:
    """run_id -> [(date, row_test, row_valid)] of the log's replays that recorded them."""
    out: dict[str, list] = {}
    for r in log.itertuples():
        if r.row_test or r.row_valid:
            out.setdefault(r.run_id, []).append((r.date, r.row_test, r.row_valid))
    return out


def _check_row(registry, row, files, git, confirmed=()):
    rid = row["run_id"]
    try:
        task = plugins.get_task(row["task"])
        plugins.get_method(row["method"])
    except Exception as exc:
        yield "run_id", "task", f"cannot check: {exc}"
        return
    try:
        want_hash = config_mod.config_hash(json.loads(row["config_json"]))
    except (ValueError, TypeError, AttributeError) as exc:
        yield "config_hash", "config_json", f"not a JSON object: {exc}"
    else:
        if want_hash != row["config_hash"]:
            yield "config_hash", "config_json", (f"config_json hashes to {want_hash}, the row's config_hash is "
                                                 f"{row['config_hash']}: the config is not the one that ran")
    from bench.runner import make_run_id
    want = make_run_id(row["task"], row["method"], row["protocol"], int(row["seed"]), row["device"], row["config_hash"])
    if want != rid:
        yield "run_id", "run_id", f"recomputes to {want} from its task, method, protocol, seed, device, config_hash"
    f = files.get(rid)
    if f is None or f.parent.name != row["method"] or f.parent.parent.name != row["task"]:
        yield "run_id", "run_id", f"file {f} is not {row['task']}/{row['method']}/{rid}.parquet"
    for field, detail in check_selection(row, task):
        yield "selection", field, detail
    # provenance
    commit = row["git_commit"]
    if git.error:
        yield "commit", "git_commit", f"cannot check: {git.error}"
    elif not git.has_commit(commit):
        hint = " (this clone is shallow: `git fetch --unshallow`)" if git.shallow else (
            ": the commit was never pushed, or history was rewritten")
        yield "commit", "git_commit", f"commit {commit} is not in the history of {git.repo}{hint}"
    else:
        if _plugins(row) is None:
            yield "plugin_sha256", "plugin_sha256", f"not a JSON object of file hashes: {row['plugin_sha256'][:60]!r}"
        for name, digest in sorted((_plugins(row) or {}).items()):
            got = git.file_sha256(commit, name)
            if got is None:
                yield "plugin_sha256", "plugin_sha256", f"{name} does not exist at commit {commit[:12]}"
            elif got != digest:
                yield "plugin_sha256", "plugin_sha256", (f"{name} hashes to {digest[:12]}... in the row, "
                                                         f"{got[:12]}... at commit {commit[:12]}")
    for field, detail in check_examples(registry, row, task):
        yield "examples", field, detail
    for date, test, valid in confirmed:
        for field, want in (("test", test), ("valid", valid)):
            if want and repr(float(row[field])) != want:
                yield "log", field, (f"{field} {row[field]!r}, but the full replay of {date} ({LOG_FILE}) "
                                     f"confirmed {want}")


def summary(problems: list[Problem], n_rows: int) -> tuple[str, bool]:
    """('consistency: ...' line, ok)."""
    bad = [p for p in problems if not p.allowed]
    allowed = {p.run_id for p in problems if p.allowed}
    rows_bad = len({p.run_id for p in bad})
    return (f"consistency: {n_rows} rows checked ({', '.join(CHECKS)}): {n_rows - rows_bad} pass, {rows_bad} fail"
            + (f", {len(allowed)} with allowed exceptions ({ALLOW_FILE})" if allowed else "")), not bad


def empty_log():
    import pandas as pd
    return pd.DataFrame({c: pd.Series(dtype=str) for c in LOG_COLUMNS})


def read_log(registry: Path | None = None):
    """The log of passing full replays as a DataFrame of LOG_COLUMNS (empty when there is none)."""
    import pandas as pd
    path = Path(registry or results.registry_path()) / LOG_FILE
    if not path.exists():
        return empty_log()
    log = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in LOG_COLUMNS if c not in log.columns]
    if missing or list(log.columns[:len(LOG_COLUMNS)]) != list(LOG_COLUMNS):
        raise results.RegistryError(f"{path}: expected the columns {', '.join(LOG_COLUMNS)} (tab-separated), "
                                    f"got {', '.join(log.columns)}")
    return log


def long_row(row) -> bool:
    """Not re-run in full by every verify-seeds (its protocol is not one of its task's cpu_protocols)."""
    try:
        return row.protocol not in plugins.get_task(row.task).cpu_protocols
    except Exception:
        return True


def start_only(df, log) -> list[str]:
    """Long ok rows without result fingerprints that no full replay has proven yet: verified from
    their first steps (and these consistency checks) only."""
    replayed = set(log.run_id)
    return [r.run_id for r in df.itertuples() if long_row(r) and r.status == "ok"
            and not r.examples_sha256 and r.run_id not in replayed]
