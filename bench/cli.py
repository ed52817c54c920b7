"""Command line: `python -m bench {run,list,leaderboard,verify-seeds,data}`. Exit 2 on bad input."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import UsageError


def _seeds(text: str) -> list[int]:
    try:
        out = []
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                a, b = part.split("-")
                out += list(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
        return out
    except ValueError:
        raise UsageError(f"SEEDS={text!r}: expected integers such as 0 or 0,1,2 or 0-4") from None


def _names(text: str, all_names: list[str]) -> list[str]:
    """'all', one name, or a comma-separated list."""
    return list(all_names) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]


def cmd_run(args):
    from bench import leaderboard, plugins, runner
    from bench.config import parse_overrides
    overrides = parse_overrides(args.set)
    tasks, methods = _names(args.task, plugins.list_tasks()), _names(args.method, plugins.list_methods())
    for t in tasks:
        plugins.get_task(t)          # unknown names are errors even in a grid
    for m in methods:
        plugins.get_method(m)
    grid = len(tasks) * len(methods) > 1
    for task in tasks:
        for method in methods:
            for seed in _seeds(args.seeds):
                try:
                    row, path = runner.run(task, method, args.protocol, seed, args.device, overrides,
                                           data_dir=args.data_dir, progress=None)
                except UsageError as exc:
                    if not grid:
                        raise
                    print(f"skipped {task} x {method} seed {seed}: {exc}")   # e.g. data absent, done already
                    continue
                print(f"{row['run_id']}: {row['status']}  valid {row['valid_metric']} {row['valid']:.3f}  "
                      f"test {row['metric']} {row['test']:.3f}  ({row['wall_s']:.1f}s, "
                      f"{row['tokens_per_s']:.0f} tok/s, {row['device_name']}) -> {path}")
    print(f"leaderboard: {leaderboard.write()}")


def cmd_list(args):
    from bench import plugins
    print("tasks (test metric; protocols every method has):")
    for name in plugins.list_tasks():
        t = plugins.get_task(name)
        print(f"  {name:15s} {t.description} [{t.metric}; {', '.join(sorted(t.protocols))}]")
    print("methods (paper; extra protocols per task):")
    for name in plugins.list_methods():
        m = plugins.get_method(name)
        extra = "; ".join(f"{p}: {', '.join(sorted(per_task))}" for p, per_task in sorted(m.protocols.items()))
        print(f"  {name:15s} {m.paper}" + (f" [{extra}]" if extra else ""))
    errors = plugins.import_errors()
    if errors:
        print("plugins that failed to import:")
        for mod, err in errors.items():
            print(f"  {mod}: {err}")


def cmd_leaderboard(args):
    from bench import leaderboard
    print(f"wrote {leaderboard.write()}")


def cmd_verify(args):
    from bench import verify
    rows = verify.verify_all(data_dir=args.data_dir, only=args.only)
    bad = [r for r in rows if not r["ok"]]
    print(f"verify-seeds: {len(rows) - len(bad)} passed, {len(bad)} failed")
    if bad:
        return 1
    return 0


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
    r.set_defaults(fn=cmd_run)
    sub.add_parser("list", help="tasks, methods, protocols").set_defaults(fn=cmd_list)
    sub.add_parser("leaderboard", help="regenerate reports/LEADERBOARD.md").set_defaults(fn=cmd_leaderboard)
    v = sub.add_parser("verify-seeds", help="re-run registered CPU-feasible runs and compare metrics")
    v.add_argument("--only", default=None, help="only run ids containing this text")
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
        return 2


if __name__ == "__main__":
    sys.exit(main())
