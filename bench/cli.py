"""Command line: `python -m bench {run,list,leaderboard,verify-seeds,data}`. Exit 2 on bad input."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from bench.errors import EXIT_USAGE, UsageError


def _seeds(text: str) -> list[int]:
    """'0', '0,1,2', '0-4' or a mix: distinct non-negative seeds, ranges ascending."""
    hint = "expected non-negative integers such as 0 or 0,1,2 or 0-4"
    out = []
    for part in (p.strip() for p in text.split(",")):
        single, span = re.fullmatch(r"\d+", part), re.fullmatch(r"(\d+)-(\d+)", part)
        if single:
            out.append(int(part))
        elif span:
            a, b = int(span[1]), int(span[2])
            if a > b:
                raise UsageError(f"SEEDS={text!r}: range {part} is descending and runs nothing; write {b}-{a}")
            out += range(a, b + 1)
        elif re.fullmatch(r"-\d+", part):
            raise UsageError(f"SEEDS={text!r}: seed {part} is negative; {hint}")
        else:
            raise UsageError(f"SEEDS={text!r}: {part!r} is not a seed; {hint}")
    repeated = sorted({s for s in out if out.count(s) > 1})
    if repeated:
        raise UsageError(f"SEEDS={text!r} lists seed(s) {', '.join(map(str, repeated))} more than once")
    return out


def _names(text: str, all_names: list[str]) -> list[str]:
    """'all', one name, or a comma-separated list."""
    return list(all_names) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]


EXIT_INTERRUPTED, EXIT_AFTER_WRITE = 3, 4


def _summary(row: dict, path) -> str:
    return (f"{row['run_id']}: {row['status']}  valid {row['valid_metric']} {row['valid']:.3f}  "
            f"test {row['metric']} {row['test']:.3f}  ({row['wall_s']:.1f}s, {row['tokens_per_s']:.0f} tok/s, "
            f"{row['device_name']}) -> {path}")


def cmd_run(args):
    """One run in this process; a grid (lists or `all`) is a one-block campaign (bench/campaign.py):
    validated whole before its first run, data-absent and registered runs skipped."""
    from bench import campaign, leaderboard, plugins, runner
    from bench.checkpoint import Interrupted
    from bench.config import parse_overrides
    overrides = parse_overrides(args.set)
    tasks, methods = _names(args.task, plugins.list_tasks()), _names(args.method, plugins.list_methods())
    seeds = _seeds(args.seeds)
    if len(tasks) * len(methods) > 1:
        return campaign.run_grid(args.task, args.method, args.protocol, args.seeds, args.device, overrides,
                                 data_dir=args.data_dir)
    report = None
    if not args.no_leaderboard:
        report = leaderboard.default_report_path()
        runner.check_writable(report.parent, "reports")
    for seed in seeds:
        try:
            out = runner.run(tasks[0], methods[0], args.protocol, seed, args.device, overrides, data_dir=args.data_dir)
        except Interrupted as exc:
            print(f"interrupted: {tasks[0]} x {methods[0]} seed {seed} {exc}. Resume with the same command "
                  f"(FRESH=1 starts over).", file=sys.stderr)
            return EXIT_INTERRUPTED
        if out.new:
            print(_summary(out.row, out.path))
        else:
            print(f"already registered: {_summary(out.row, out.path)}\n  to make another run of this "
                  f"pair use another SEED (e.g. SEEDS={seed + 1}), or delete {out.path} to re-run it")
    if report is not None:
        try:
            print(f"leaderboard: {leaderboard.write(report=report)}")
        except Exception as exc:     # the rows are safely written; say so, with its own exit code
            print(f"error: the run(s) are registered, but regenerating the leaderboard failed: "
                  f"{type(exc).__name__}: {exc}; fix it and run `make leaderboard`", file=sys.stderr)
            return EXIT_AFTER_WRITE
    return 0


def _data_dir():
    from bench.data import default_data_dir
    return default_data_dir()


def _rule(rule) -> str:
    from bench.api import Range
    return f" {rule}" if isinstance(rule, Range) else " {" + ", ".join(map(str, rule)) + "}"


def _options(defaults: dict, rules: dict, base_option: str | None = None) -> list[str]:
    """'key=default {choices}' or 'key=default >= 1' for each key, sorted."""
    from bench import plugins
    out = []
    for k in sorted(defaults):
        rule = f" {{a method: {', '.join(plugins.list_methods())}}}" if k == base_option else (
            _rule(rules[k]) if k in rules else "")
        out.append(f"{k}={defaults[k]!r}{rule}")
    return out


def _wrap(label: str, items: list[str], width: int = 110) -> str:
    """`label: a; b; ...` over indented lines, never breaking inside an item."""
    lines, line = [], f"      {label}:"
    for i, item in enumerate(items):
        piece = f" {item}" + (";" if i < len(items) - 1 else "")
        if len(line) + len(piece) > width and line.strip() != f"{label}:":
            lines.append(line)
            line = "       "
        line += piece
    return "\n".join(lines + [line])


def cmd_list(args):
    import textwrap

    from bench import cells, config, plugins, positions
    data_dir = Path(args.data_dir or _data_dir())
    print(f"tasks (kind; test metric; protocols every method has), their data in {data_dir} and options:")
    for name in plugins.list_tasks():
        t = plugins.get_task(name)
        print(f"  {name:15s} {t.description} [{t.kind or '-'}; {t.metric}; {', '.join(sorted(t.protocols))}]")
        print(textwrap.fill(f"data: {t.data_status(data_dir)}", 110, initial_indent=" " * 6,
                            subsequent_indent=" " * 8, break_on_hyphens=False, break_long_words=False))
        for proto, why in sorted(t.unavailable_protocols.items()):
            print(textwrap.fill(f"no {proto} protocol: {why}", 110, initial_indent=" " * 6,
                                subsequent_indent=" " * 8, break_on_hyphens=False))
        print(_wrap("options", _options(t.defaults, config.rules(t, []))))
    print("every task also reads (its own defaults above win):")
    print(_wrap("options", _options(config.DEFAULTS, {**config.RANGES, **config.CHOICES})))
    print("cell types (cell=...; bench/cells):")
    for name in cells.list_cells():
        spec = cells.get_cell(name)
        print(f"  {name:15s} {spec.doc}")
        print(_wrap("slots", [f"{sl}{' (fast)' if sl in spec.fast_slots else ''}" for sl in spec.slots]))
    print("mask positions (bench/positions.py; a method naming one its cell type cannot apply is an error):")
    for pos in positions.all_positions():
        print(f"  {pos.name:15s} [{pos.cells}] {pos.doc}")
    print("methods (paper; options with defaults and valid values; extra protocols per task):")
    for name in plugins.list_methods():
        m = plugins.get_method(name)
        print(f"  {name:15s} {m.paper}")
        if m.options:
            print(_wrap("options", _options(m.options, m.rules(), m.base_option)))
        if m.protocols:
            print(_wrap("protocols", [f"{p}: {', '.join(sorted(per_task))}" for p, per_task in sorted(m.protocols.items())]))
        if m.cell_options:
            print(_wrap("per cell type", [f"{c}: " + ", ".join(f"{k}={v!r}" for k, v in sorted(o.items()))
                                          for c, o in sorted(m.cell_options.items())]))
        if m.base_option:
            print(f"      wraps the method named by {m.base_option}: its options, recipe and protocols apply too")
    errors = plugins.import_errors()
    if errors:
        print("plugins that failed to import:")
        for mod, err in errors.items():
            print(f"  {mod}: {err}")


def cmd_leaderboard(args):
    from bench import leaderboard, results
    results.existing_registry()            # a mistyped $BENCH_REGISTRY must not blank the leaderboard
    print(f"wrote {leaderboard.write()}")


def cmd_verify(args):
    """Consistency checks first (seconds, every selected row; bench/consistency.py), then the replays.
    Rows are replayed in the numerics mode they were made in: each mode in its own process (the
    mode is fixed before torch loads), the processes side by side. Passing full replays of long rows
    are appended to the registry's log (bench/verify.LOG_FILE)."""
    import json
    import os
    import subprocess
    import tempfile

    from bench import consistency, numerics, results, verify
    if args.numerics:                      # a child: verify the rows of this process's mode
        rows = verify.verify_all(data_dir=args.data_dir, only=args.only, numerics=numerics.effective(),
                                 sweep_sample=args.sweep_sample, uncommitted=args.uncommitted,
                                 full=args.full, rotation_n=args.rotation, part=args.part,
                                 smoke_max_s=args.smoke_max_s)
        Path(args.summary).write_text(json.dumps(rows))
        return 0
    all_rows = results.read_registry()
    registry = verify.select(all_rows, results.registry_path(), args.only, args.uncommitted, args.full)
    problems = consistency.check_registry(results.registry_path(), df=registry)
    for p in problems:
        print(p.line())
    line, consistent = consistency.summary(problems, len(registry))
    print(line)
    if args.consistency:
        return 0 if consistent else 1
    if not consistent:
        print("verify-seeds: failed: the rows above are inconsistent (no replay run)", file=sys.stderr)
        return 1
    # one process per numerics mode; the rows replayed in full (minutes each) in processes of their own,
    # so that they share the cores with the rest instead of queueing behind it
    in_full = verify.full_ids(registry, args.full, args.rotation) if (args.full or args.rotation) else set()
    parts = sorted({(verify.replay_mode(n), "full" if rid in in_full else "rest")
                    for n, rid in zip(registry.numerics, registry.run_id)})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        procs = {}
        for mode, part in parts:           # the processes run side by side
            summary = Path(tmp) / f"{mode}-{part}.json"
            cmd = [sys.executable, "-m", "bench"] + (["--data-dir", args.data_dir] if args.data_dir else []) + [
                "verify-seeds", "--numerics", mode, "--summary", str(summary)] + (
                ["--only", args.only] if args.only else []) + (
                ["--sweep-sample", str(args.sweep_sample)] if args.sweep_sample is not None else []) + (
                ["--uncommitted"] if args.uncommitted else []) + (
                ["--full", args.full] if args.full else []) + (
                ["--rotation", str(args.rotation)] if args.rotation else []) + (
                ["--smoke-max-s", str(args.smoke_max_s)] if args.smoke_max_s is not None else []) + (
                ["--part", part] if in_full else [])
            procs[f"{mode}-numerics{' full-replay' if part == 'full' else ''}"] = (
                subprocess.Popen(cmd, env=dict(os.environ, BENCH_NUMERICS=mode, PYTHONUNBUFFERED="1")), summary)
        failed = []
        for mode, (proc, summary) in procs.items():
            if proc.wait() != 0 or not summary.exists():
                failed.append(f"error: verifying the {mode} rows failed (exit {proc.returncode})")
            else:
                rows += json.loads(summary.read_text())
        if failed:
            print("\n".join(failed), file=sys.stderr)
            return 1
    bad = [r for r in rows if not r["ok"]]
    skipped = sum(r["skipped"] for r in rows)
    logged = verify.append_log(results.registry_path(), rows)
    print(f"verify-seeds: {len(rows) - len(bad) - skipped} passed, {len(bad)} failed, {skipped} skipped"
          + (f"; {logged} full replay(s) logged to {results.registry_path() / verify.LOG_FILE}" if logged else ""))
    if args.smoke_max_s is not None:
        print(verify.smoke_budget_line(rows, args.smoke_max_s))
    remaining = verify.start_only(all_rows, verify.read_log())
    protocol = dict(zip(all_rows.run_id, all_rows.protocol))
    sweep = sum(protocol[r].startswith("sweep") for r in remaining)
    print(f"start-only verified: {len(remaining)} long rows ({sweep} of them sweep points) without result "
          f"fingerprints, never fully replayed (`make verify-seeds FULL=<run id|pattern>` replays them)")
    return 1 if bad else 0


def cmd_data(args):
    from bench import data, plugins
    plugins.load_all()
    names = args.datasets or sorted(data.DATASETS)
    target = Path(args.data_dir or data.default_data_dir())
    for name in names:
        from bench.errors import choose
        choose("dataset", name, data.DATASETS)
        if args.fetch:
            data.fetch(name, target)
        else:
            files = data.verify(target, name)
            print(f"{name}: {len(files)} files verified in {target}")


def _non_negative(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 (got {text!r}), e.g. --sweep-sample 2")
    return n


def _non_negative_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = -1.0
    if not x >= 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0 (got {text!r}), e.g. --smoke-max-s 8")
    return x


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench", description="RNN dropout benchmark")
    p.add_argument("--data-dir", default=None, help="data directory (default: $BENCH_DATA, ../shared/data, ./data)")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and evaluate task x method x protocol x seed(s)")
    r.add_argument("--task", required=True, help="a task, a comma-separated list, or all")
    r.add_argument("--method", required=True, help="a method, a comma-separated list, or all")
    r.add_argument("--protocol", default="smoke")
    r.add_argument("--seeds", default="0", help="e.g. 0 or 0,1,2 or 0-4")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter")
    r.add_argument("--no-leaderboard", action="store_true", help="do not regenerate the leaderboard")
    r.set_defaults(fn=cmd_run)
    sub.add_parser("list", help="tasks, methods, protocols").set_defaults(fn=cmd_list)
    sub.add_parser("leaderboard", help="regenerate reports/LEADERBOARD.md").set_defaults(fn=cmd_leaderboard)
    v = sub.add_parser("verify-seeds", help="check every row's consistency, replay registered runs and "
                                           "compare metrics")
    v.add_argument("--only", default=None, help="only run ids containing this text")
    v.add_argument("--sweep-sample", type=_non_negative, default=None, metavar="N",
                   help="of the sweep* protocols' rows, verify only N per (protocol, task, method), the same "
                        "ones every time (CI); every other row is always verified")
    v.add_argument("--uncommitted", action="store_true",
                   help="only rows git does not track yet (a campaign's new rows, before committing them)")
    v.add_argument("--consistency", action="store_true",
                   help="only the consistency checks (seconds, no replay): metrics against curves and side "
                        "files, hashes, ids, commits and plugin files")
    v.add_argument("--full", default=None, metavar="PATTERN",
                   help="replay these rows' whole training (a run id or a glob), and only these")
    v.add_argument("--rotation", type=_non_negative, default=0, metavar="N",
                   help="also replay N long rows in full, chosen from the commit being tested (CI)")
    v.add_argument("--smoke-max-s", type=_non_negative_float, default=None, metavar="S",
                   help="smoke rows that trained longer than S seconds replay their first steps instead of "
                        "their whole run, except --rotation N of them chosen from the commit (CI's budget)")
    v.add_argument("--numerics", choices=("portable", "native"), help=argparse.SUPPRESS)
    v.add_argument("--summary", help=argparse.SUPPRESS)
    v.add_argument("--part", choices=("full", "rest"), help=argparse.SUPPRESS)
    v.set_defaults(fn=cmd_verify)
    d = sub.add_parser("data", help="verify (or --fetch) datasets")
    d.add_argument("datasets", nargs="*")
    d.add_argument("--fetch", action="store_true", help="download missing datasets from their canonical URLs")
    d.set_defaults(fn=cmd_data)
    args = p.parse_args(argv)
    try:
        return args.fn(args) or 0
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
