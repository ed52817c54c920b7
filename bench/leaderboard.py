"""reports/LEADERBOARD.md from the registry: deterministic (same registry in, same bytes out).

One line per (method, config, device) within each (protocol, task): rows of different configs or
device kinds are never averaged together. Lines that still mix hardware, commits or dirty trees
are marked, and the marks explained under the table.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench import config as config_mod
from bench import plugins, results

REPO = Path(__file__).resolve().parent.parent

# Marks after a method name, and what they mean (the footnote under the table).
MARKS = {
    "hardware": ("†", "mixes hardware: its seeds ran on more than one device model, CPU or setting "
                      "(see `hardware`)."),
    "commit": ("‡", "mixes commits: its seeds ran from more than one git commit (see `commit`)."),
    "dirty": ("§", "dirty tree: at least one seed ran from a working tree with uncommitted changes."),
}
# not about provenance, so not in MARKS: every finished seed's best validation epoch was its last
LAST_EPOCH = ("¶", "every seed peaked at its last epoch: the budget may have cut it short, so its number "
                   "may measure how fast it converges (REPORT.md, sections 1 and 3).")
FAR_SEED = ("°", "a seed far from the rest: one of its seeds lies far from the median of its own, in pooled "
                 "seed-to-seed stds of the table's other methods (REPORT.md section 1 names it and says how far), "
                 "so its mean and std rest on that one run.")


def default_report_path() -> Path:
    """$BENCH_REPORTS/LEADERBOARD.md, else reports/LEADERBOARD.md; read at call time."""
    return Path(os.environ.get("BENCH_REPORTS") or REPO / "reports") / "LEADERBOARD.md"


def _fmt(x: float, digits: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _text(row, name: str) -> str:
    """A string column of a row; '' when the column is absent (older registries) or empty."""
    v = getattr(row, name, "")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v).strip()


def hardware_of(row) -> str:
    """E.g. 'NVIDIA H200 (CUDA 12.8)', 'CPU (AMD EPYC 7763, AVX2, 2 threads, portable numerics)'."""
    if row.device == "cuda":
        return f"{row.device_name} (CUDA {row.cuda_version})"
    parts = [_text(row, "cpu_model"), row.cpu_capability, f"{row.threads} thread{'' if int(row.threads) == 1 else 's'}"]
    if _text(row, "numerics"):
        parts.append(f"{_text(row, 'numerics')} numerics")
    return f"CPU ({', '.join(p for p in parts if p)})"


def hardware(group: pd.DataFrame) -> list[str]:
    """The distinct hardware strings of a group's rows, sorted."""
    return sorted({hardware_of(r) for r in group.itertuples(index=False)})


def ci95(values) -> tuple[float, float]:
    """Student-t 95% confidence interval of the mean; (nan, nan) for fewer than 2 values."""
    from scipy import stats
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean = sum(values) / n
    s = pd.Series(values, dtype="float64").std(ddof=1)
    half = stats.t.ppf(0.975, n - 1) * s / math.sqrt(n)
    return mean - half, mean + half


def params_cell(group: pd.DataFrame) -> str:
    """The model's parameter count, or its range when the group's rows differ."""
    p = sorted({int(v) for v in group.params if not pd.isna(v)})
    if not p:
        return "—"
    return f"{p[0]:,}" if len(p) == 1 else f"{p[0]:,}–{p[-1]:,}"


def published(method: str, protocol: str, task: str):
    """(the method's published numbers for this protocol and task or None, None), or (None, why
    its spec cannot be loaded: the plugin's import error from plugins.import_errors())."""
    try:
        spec = plugins.get_method(method)
    except Exception:
        errors = plugins.import_errors()
        mine = [f"{k}: {v}" for k, v in sorted(errors.items()) if Path(k).stem.rsplit(".", 1)[-1] == method]
        if mine:
            return None, "; ".join(mine)
        why = f"no loaded plugin registers method {method!r}"
        if errors:
            why += "; plugins that failed to import: " + "; ".join(f"{k}: {v}" for k, v in sorted(errors.items()))
        return None, why
    return spec.published.get((protocol, task)), None


def default_hash(method: str, protocol: str, task: str) -> tuple[str | None, str | None]:
    """(config hash of the protocol's default config for this method and task, None), or
    (None, why it cannot be told)."""
    try:
        cfg = config_mod.resolve(plugins.get_task(task), plugins.get_method(method), protocol, {})
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return config_mod.config_hash(cfg), None


def _config(text) -> dict:
    try:
        cfg = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _value(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def config_labels(df: pd.DataFrame) -> dict[str, str]:
    """config_hash -> ' [key=value, ...]' naming the keys whose values differ among the configs of
    one method ('' when it has one config); the short hash where the keys cannot tell them apart."""
    first = df.sort_values("run_id").drop_duplicates("config_hash")
    configs = {h: _config(j) for h, j in zip(first.config_hash, first.config_json)}
    if len(configs) < 2:
        return {h: "" for h in configs}
    keys = sorted(k for k in set().union(*configs.values())
                  if len({_value(c[k]) if k in c else None for c in configs.values()}) > 1)
    labels = {h: ", ".join(f"{k}={_value(c[k]) if k in c else '—'}" for k in keys) for h, c in configs.items()}
    clash = {lab for lab in labels.values() if list(labels.values()).count(lab) > 1}
    return {h: " [" + ", ".join(filter(None, [lab, f"config={h[:8]}" if lab in clash else ""])) + "]"
            for h, lab in labels.items()}


BASELINE = "zaremba"   # the method every other one is tested against (here and in REPORT.md: select.BASELINE)


def verdicts(df: pd.DataFrame) -> tuple[dict[str, dict], dict[str, set], set[str]]:
    """REPORT.md section 1's verdicts for one table (one protocol, task, cell and device): method ->
    its compare() dict, method -> the config hashes those verdicts are about (its default), and the
    methods with a seed far from their others (far_seeds)."""
    from bench.analysis import select
    from bench.analysis.results_sections import compare, far_seeds
    rows, _ = select.default_rows(df)
    if rows.empty:
        return {}, {}, set()
    res, _ = compare(rows)
    return ({d["method"]: d for d in res},
            {m: set(g.config_hash) for m, g in rows.groupby("method", sort=True)},
            {f["method"] for f in far_seeds(res)})


def verdict_cell(d: dict | None) -> str:
    if d is None:
        return "—"
    from bench.analysis.doc import fmt_p
    return d["verdict"] + (f" (Holm p {fmt_p(d['p_holm'])})" if not math.isnan(d["p_holm"]) else "")


def table_rows(df: pd.DataFrame, protocol: str, task: str) -> tuple[list[list[str]], list[str]]:
    """The table's lines (best first) and its footnotes; results protocols (not `smoke`) get the
    verdict against the baseline as their second-last cell."""
    higher = bool(df.higher_is_better.iloc[0])
    rows, used, notes = [], set(), []
    tested, tested_cfg, far = verdicts(df) if protocol != "smoke" else ({}, {}, set())
    for method in sorted(df.method.unique()):
        mdf = df[df.method == method]
        labels = config_labels(mdf)
        pub, broken = published(method, protocol, task)
        pub_test = pub.get("test") if pub else None
        default, unknown = default_hash(method, protocol, task) if pub_test is not None else (None, None)
        if broken:
            notes.append(f"`?` {method}: the published number is unknown because the method's plugin "
                         f"could not be loaded ({broken}).")
        elif unknown:
            notes.append(f"{method}: the published number is shown on every line because the protocol's "
                         f"default config could not be resolved ({unknown}).")
        for (cfg_hash, device), g in mdf.groupby(["config_hash", "device"], sort=True, dropna=False):
            ok = g[g.status == "ok"]
            n = len(ok)
            mean = ok.test.mean() if n else math.nan
            std = ok.test.std(ddof=1) if n > 1 else math.nan
            lo, hi = ci95(ok.test.tolist())
            hw = hardware(g)
            commits = sorted(set(c[:8] for c in g.git_commit))
            marks = [m for m, hit in (("hardware", len(hw) > 1), ("commit", len(commits) > 1),
                                      ("dirty", bool(g.git_dirty.any())), ("last", _all_peaked_last(ok)),
                                      ("far", method in far and cfg_hash in tested_cfg.get(method, set()))) if hit]
            used.update(marks)
            other = {"last": LAST_EPOCH, "far": FAR_SEED}
            label = method + labels[cfg_hash] + (" " + "".join(MARKS.get(m, other.get(m))[0] for m in marks)
                                                 if marks else "")
            shows_pub = pub_test is not None and (unknown is not None or cfg_hash == default)
            pub_cell = "?" if broken else (_fmt(pub_test) if shows_pub else "")
            diff = _fmt(mean - pub_test) if shows_pub else ""
            n_div = int((g.status != "ok").sum())
            paths = ",".join(sorted(set(",".join(g.rnn_path).split(",")) - {""}))
            rows.append([mean, label, f"{_fmt(mean)} ± {_fmt(std)}",
                         "—" if math.isnan(lo) else f"[{_fmt(lo)}, {_fmt(hi)}]",
                         f"{n}" + (f" (+{n_div} diverged)" if n_div else ""), _fmt(ok.valid.mean() if n else math.nan),
                         params_cell(g), pub_cell, diff, paths, "; ".join(hw), ", ".join(commits)]
                        + ([verdict_cell(tested.get(method) if cfg_hash in tested_cfg.get(method, set()) else None)]
                           if protocol != "smoke" else []))
    rows.sort(key=lambda r: (math.isnan(r[0]), -r[0] if higher else r[0], r[1], r[10]))
    marks = [f"{MARKS[m][0]} {MARKS[m][1]}" for m in MARKS if m in used]
    marks += [f"{LAST_EPOCH[0]} {LAST_EPOCH[1]}"] if "last" in used else []
    marks += [f"{FAR_SEED[0]} {FAR_SEED[1]}"] if "far" in used else []
    return [r[1:] for r in rows], marks + notes


def _all_peaked_last(ok: pd.DataFrame) -> bool:
    """Every seed peaked at its last epoch (of >= 2; `smoke` rows are plumbing checks: never marked)."""
    from bench.analysis.budget import all_peaked_last
    if "curve_valid" not in ok.columns or ok.empty or (ok.protocol == "smoke").any():
        return False
    return all(len(c) >= 2 for c in ok.curve_valid) and all_peaked_last(ok)


def cell_of(config_json) -> str:
    """The cell type a row ran (`cell` of its stored config; rows without it ran the default, LSTM)."""
    return str(_config(config_json).get("cell", config_mod.COMPAT_DEFAULTS["cell"]))


def cell_title(cell: str) -> str:
    """'LSTM', 'GRU': the registered cell type's title, else its name as stored."""
    from bench import cells
    return cells.get_cell(cell).title if cell in cells.list_cells() else cell


def render(df: pd.DataFrame, log: pd.DataFrame | None = None) -> str:
    """The leaderboard of registry rows `df`; `log`: the full replays (bench/consistency.read_log)."""
    out = ["# Leaderboard", "",
           "Generated by `make leaderboard` from `registry/`; do not edit by hand.",
           "There is one table per protocol, task, cell type (`cell=lstm|gru`) and kind of device (CPU or",
           "CUDA), all named in the title: rows of one kind of device are never ranked beside the other's.",
           "Each line is one method with one config: runs of different configs",
           "(e.g. `SET=\"lr=0.5\"`) are never averaged together. Where a method has",
           "several configs, the keys that differ between them follow its name, e.g. `zaremba [lr=0.5]`.",
           "The test cell is the mean ± sample standard deviation over seeds that finished (`—` when a",
           "single seed gives no spread), `95% CI` the Student-t 95% confidence interval of that mean,",
           "and `n` the number of such seeds (plus those that diverged); `valid` is the mean of the",
           "model-selection metric on the validation split and `params` the model's parameter count",
           "(a range when the seeds differ). `published` is the paper's number for the same protocol",
           "and `Δ` our mean minus it, shown only on lines that ran the protocol's default config (no",
           "`SET` overrides); where that default cannot be resolved, on every line of the method, with a",
           "note. The papers' numbers are for their own scale, so only `paper` tables have them.",
           "`?` means the method's plugin failed to load, so its published number is unknown.",
           "`hardware` says which device produced the rows (for CPUs the model, ISA, threads and numerics",
           "mode where recorded), `rnn` which recurrent path ran (`fused` LSTM kernel, `fast` per-step",
           "cell, its CUDA-`graph` replay, or the reference `cell`), `commit` the code's git commit(s).",
           "Marks after a method: † its seeds mix hardware, ‡ they mix commits, § at least one ran from",
           "a dirty working tree, ¶ every seed peaked at its last epoch, ° one seed lies far from the",
           "method's others (its mean rests on it); each table's notes say which",
           "apply. Lines are ordered by mean, but a gap within seed noise is not a rank: results tables",
           "(not `smoke`) end with `vs zaremba`, REPORT.md section 1's verdict for each method's default",
           "config (Welch's t-test of its seeds against `zaremba`'s on the same kind of device, Holm over",
           "the table's tests, α = 0.05; `no clear difference` lines are not ordered by this table, and",
           "`needs ≥ 2 seeds` is not yet a comparison). Lower is better for perplexity,",
           "higher for BLEU and accuracy. `smoke` rows check the plumbing on tiny models: they are not",
           "results. The `Verified:` line under each table says how many of its rows were replayed in full and",
           "when (`registry/VERIFIED.tsv`), and how many are verified from their first steps only.",
           ""]
    if df.empty:
        return "\n".join(out + ["The registry is empty: run `make bench TASK=ptb METHOD=zaremba`.", ""])
    df = df.sort_values("run_id", ignore_index=True)
    sweep = df.protocol.str.startswith("sweep")
    if sweep.any():           # sensitivity points, hundreds of configs: the report reads them
        from bench.analysis.evp import design_counts
        counts = design_counts(df[sweep])
        what = (f"{counts[0]} at the defaults or varying one dropout rate at a time, {counts[1]} random draws "
                "of all of a method's rates" if counts else "one-at-a-time grids and random draws of the dropout rates")
        out += [f"The {int(sweep.sum())} rows of `sweep*` protocols (short runs for the sensitivity and importance "
                f"study: {what}) are not ranked here: see [REPORT.md](REPORT.md), sections 4–6.", ""]
        df = df[~sweep]
    if df.empty:
        return "\n".join(out)
    df = df.assign(cell=[cell_of(j) for j in df.config_json])
    default = config_mod.COMPAT_DEFAULTS["cell"]
    for protocol in sorted(df.protocol.unique()):
        for task in sorted(df[df.protocol == protocol].task.unique()):
            in_task = df[(df.protocol == protocol) & (df.task == task)]
            for cell in sorted(in_task.cell.unique(), key=lambda c: (c != default, c)):
                in_cell = in_task[in_task.cell == cell]
                for device in sorted(in_cell.device.unique()):
                    out += _table(in_cell[in_cell.device == device], protocol, task, cell, log)
    return "\n".join(out)


def verified_note(sub: pd.DataFrame, log: pd.DataFrame | None) -> str:
    """How a table's rows were verified: re-run in full by every verify-seeds (cpu_protocols), or
    replayed in full (per the log), or with result fingerprints only, or from their first steps."""
    from bench import consistency
    n = len(sub)
    if not any(consistency.long_row(r) for r in sub.itertuples()):
        quick, limit = int((sub.wall_s <= consistency.CI_SMOKE_MAX_S).sum()), consistency.CI_SMOKE_MAX_S
        head = (f"Verified: {'the one row is' if n == 1 else f'all {n} rows are'} re-run in full (metrics and "
                "curves) by every `make verify-seeds`")
        if quick == n:
            return head + f", CI's included ({'it' if n == 1 else 'each'} trained in at most {limit} s)."
        return (head + f"; in CI {quick} of them (trained in at most {limit} s) are, and the other {n - quick} "
                f"replay their first training steps exactly (`SMOKE_MAX_S`, `ROTATION`: README).")
    log = consistency.empty_log() if log is None else log
    if "examples_sha256" not in sub:                 # a frame of older rows
        sub = sub.assign(examples_sha256="")
    done = log[log.run_id.isin(set(sub.run_id))]
    replayed = set(done.run_id)
    prints = int(sum(bool(e) and r not in replayed for r, e in zip(sub.run_id, sub.examples_sha256)))
    start = len(consistency.start_only(sub, log))
    exact = len(set(done[done.result.str.startswith("exact")].run_id))
    from bench.verify import CROSS_MIN_DF, full_tol, seed_spread
    kind, tol = full_tol(str(sub.task.iloc[0]))
    metric = sub.metric.iloc[0]
    tol_text = "the task's " + (f"{tol:g} {metric}" if kind == "abs" else f"{tol:.0%} of the {metric}")
    if any(dof >= CROSS_MIN_DF for _, dof in seed_spread(sub).values()):
        tol_text += f", or what two seeds differ by for a method of {CROSS_MIN_DF + 1}+ seeds: bench/verify.py"
    n_div = int((sub.status != "ok").sum())
    parts = [f"{len(replayed)} of {n - n_div} finished rows replayed in full" + (
        f" ({exact} bit for bit, {len(replayed) - exact} within a tolerance only ({tol_text}); last "
        f"{max(done.date)[:10]}; `registry/VERIFIED.tsv`)" if len(done) else "")]
    if prints:
        parts.append(f"{prints} with result fingerprints (test recomputed from the side file in CI)")
    if start:
        parts.append(f"{start} start-only verified (first training steps replayed; replay one in full with "
                     f"`make verify-seeds FULL=<run id>`)")
    if n_div:
        parts.append(f"{n_div} diverged (no test number; their first training steps replayed)")
    return "Verified: " + "; ".join(parts) + "."


def _table(sub: pd.DataFrame, protocol: str, task: str, cell: str, log: pd.DataFrame | None = None) -> list[str]:
    """The lines of one table: its title, the table and its notes."""
    metric = sub.metric.iloc[0]
    arrow = "higher is better" if sub.higher_is_better.iloc[0] else "lower is better"
    device = str(sub.device.iloc[0]).upper()
    out = [f"## {protocol} · {task} · {cell_title(cell)} · {device} · test {metric} ({arrow})", ""]
    headers = ["method", f"test {metric}", "95% CI", "n", f"valid {sub.valid_metric.iloc[0]}", "params",
               "published", "Δ", "rnn", "hardware", "commit"] + ([f"vs {BASELINE}"] if protocol != "smoke" else [])
    rows, notes = table_rows(sub, protocol, task)
    out += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
    return out + [f"- {note}" for note in notes] + ([""] if notes else []) + [verified_note(sub, log), ""]


def write(registry: Path | None = None, report: Path | None = None) -> Path:
    from bench import consistency
    text = render(results.read_registry(registry), consistency.read_log(registry))   # None: $BENCH_REGISTRY, read now
    report = Path(report or default_report_path())
    report.parent.mkdir(parents=True, exist_ok=True)
    tmp = report.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(report)
    return report
