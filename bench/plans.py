"""Campaign plans: small TOML files in plans/ that expand to an ordered list of runs.

    priority = "seed"                 # or "block": all runs of block 1, then block 2, ...
    [[block]]
    protocol = "smoke"
    tasks = ["ptb", "sst2"]           # or "all"
    methods = "all"                   # or a list
    seeds = "0-2"                     # or [0, 1] or 0
    set = { epochs = 3 }              # fixed overrides (optional)
    [block.grid]                      # cartesian product, one run per point (optional)
    p_rec = [0.0, 0.1, 0.2]
    [block.each]                      # one at a time: one run per (option, value), others at defaults
    p_emb = [0.0, 0.2, 0.4]
    p_out = [0.0, 0.3]
    [block.random]                    # seeded uniform draws, one run per draw (optional)
    n = 4
    seed = 1
    ranges = { lr = [0.5, 2.0], epochs = [2, 4] }   # int bounds draw integers

A block with both a grid and random draws runs every grid point with every draw; `each` points
combine with the grid the same way (a sensitivity study uses `each` alone). Within a block
seeds come first (seed 0 of every cell before seed 1); `priority = "seed"` orders the whole plan
that way. Every run's config is resolved while expanding, so any bad name or value is a
UsageError naming the plan before anything runs.
"""
from __future__ import annotations

import itertools
import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from bench import config as config_mod
from bench import plugins
from bench.errors import UsageError
from bench.numerics import MODES

PLANS = Path(__file__).resolve().parent.parent / "plans"
PLAN_KEYS = {"description", "priority", "numerics", "block"}
BLOCK_KEYS = {"protocol", "tasks", "methods", "seeds", "set", "grid", "each", "random"}
RANDOM_KEYS = {"n", "seed", "ranges"}
PRIORITIES = ("seed", "block")


@dataclass
class Block:
    protocol: str
    tasks: list[str]
    methods: list[str]
    seeds: list[int]
    fixed: dict = field(default_factory=dict)      # option -> value
    grid: dict = field(default_factory=dict)       # option -> [values]
    each: dict = field(default_factory=dict)       # option -> [values], one option at a time
    random: dict | None = None                     # {"n", "seed", "ranges": {option: [low, high]}}


@dataclass
class Plan:
    name: str
    blocks: list[Block]
    priority: str = "seed"
    description: str = ""
    numerics: str = ""          # BENCH_NUMERICS of its runs (bench/numerics.py); "" = the caller's


@dataclass(frozen=True)
class RunSpec:
    """One run of a campaign, its config resolved."""
    task: str
    method: str
    protocol: str
    seed: int
    overrides: tuple            # sorted (option, text) pairs, as `--set option=text`
    run_id: str
    cfg: dict = field(compare=False, repr=False)
    order: tuple = field(compare=False, repr=False, default=())


def parse_seeds(value, where: str = "seeds") -> list[int]:
    """0, [0, 1], "0-2" or "0,1,2" -> a list of seeds."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str):
        out = []
        try:
            for part in value.split(","):
                a, sep, b = part.strip().partition("-")
                out += list(range(int(a), int(b) + 1)) if sep else [int(a)]
        except ValueError:
            raise UsageError(f"{where}={value!r}: expected integers such as 0, [0, 1], \"0-2\" or \"0,1,2\"") from None
        value = out
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                           for s in value):
        raise UsageError(f"{where}={value!r}: expected non-negative integers such as 0, [0, 1] or \"0-2\"")
    return value


def _names(value, all_names: list[str], kind: str, where: str) -> list[str]:
    if value == "all":
        return list(all_names)
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: {kind}s must be \"all\", a name or a list of names (got {value!r})")
    for name in value:
        (plugins.get_task if kind == "task" else plugins.get_method)(name)   # unknown names raise
    return value


def _text(value) -> str:
    """A TOML value as a `--set` string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise UsageError(f"option value {value!r} must be a number, a string or a boolean")


def _check_keys(table, allowed: set, where: str) -> None:
    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table (got {table!r})")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def make_block(spec: dict, where: str) -> Block:
    """A Block from one [[block]] table (or from the command line), its names checked."""
    _check_keys(spec, BLOCK_KEYS, where)
    for key in ("protocol", "tasks", "methods"):
        if key not in spec:
            raise UsageError(f"{where}: missing key {key!r}")
    if not isinstance(spec["protocol"], str):
        raise UsageError(f"{where}: protocol must be a name such as \"smoke\"")
    fixed = spec.get("set", {})
    grid = spec.get("grid", {})
    each = spec.get("each", {})
    for key, table in (("set", fixed), ("grid", grid), ("each", each)):
        if not isinstance(table, dict):
            raise UsageError(f"{where}.{key} must be a table such as {{ p_rec = ... }} (got {table!r})")
    for key, table in (("grid", grid), ("each", each)):
        for option, values in table.items():
            if not isinstance(values, list) or not values:
                raise UsageError(f"{where}.{key}.{option}: expected a non-empty list of values")
    rnd = spec.get("random")
    if rnd is not None:
        _check_keys(rnd, RANDOM_KEYS, f"{where}.random")
        n, ranges = rnd.get("n"), rnd.get("ranges")
        if not isinstance(n, int) or n < 1 or not isinstance(rnd.get("seed"), int):
            raise UsageError(f"{where}.random: needs n (draws, >= 1) and seed (an integer), e.g. n = 8, seed = 0")
        if not isinstance(ranges, dict) or not ranges:
            raise UsageError(f"{where}.random: needs ranges = {{option = [low, high], ...}}")
        for option, bounds in ranges.items():
            if (not isinstance(bounds, list) or len(bounds) != 2 or
                    not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
                    or bounds[0] > bounds[1]):
                raise UsageError(f"{where}.random.ranges.{option}: expected [low, high] numbers with low <= high")
    return Block(protocol=spec["protocol"],
                 tasks=_names(spec["tasks"], plugins.list_tasks(), "task", where),
                 methods=_names(spec["methods"], plugins.list_methods(), "method", where),
                 seeds=parse_seeds(spec.get("seeds", [0]), f"{where}: seeds"),
                 fixed={k: _text(v) for k, v in fixed.items()},
                 grid={k: [_text(v) for v in vs] for k, vs in grid.items()},
                 each={k: [_text(v) for v in vs] for k, vs in each.items()}, random=rnd)


def plan_path(name: str) -> Path:
    """plans/<name>.toml, or a path to a .toml file."""
    path = Path(name) if name.endswith(".toml") else PLANS / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in PLANS.glob("*.toml"))
        raise UsageError(f"plan {name!r} not found ({path}); choose one of: {', '.join(known)} "
                         f"or give the path of a .toml file")
    return path


def load_plan(name: str) -> Plan:
    path = plan_path(name)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"plan {path}: not valid TOML: {exc}") from None
    _check_keys(doc, PLAN_KEYS, f"plan {path}")
    priority = doc.get("priority", "seed")
    if priority not in PRIORITIES:
        raise UsageError(f"plan {path}: priority={priority!r}; choose one of: {', '.join(PRIORITIES)}")
    tables = doc.get("block")
    if not isinstance(tables, list) or not tables:
        raise UsageError(f"plan {path}: no [[block]] tables; a plan lists its runs in [[block]] tables")
    try:
        blocks = [make_block(t, f"[[block]] {i + 1}") for i, t in enumerate(tables)]
    except UsageError as exc:
        raise UsageError(f"plan {path}: {exc}") from None
    numerics = doc.get("numerics", "")
    if numerics not in ("",) + MODES:
        raise UsageError(f"plan {path}: numerics={numerics!r}; choose one of: {', '.join(MODES)}")
    return Plan(path.stem, blocks, priority, str(doc.get("description", "")), numerics)


def draws(rnd: dict | None) -> list[dict]:
    """The seeded random-search points of a block: the same list for the same n, seed and ranges."""
    if not rnd:
        return [{}]
    rng = random.Random(rnd["seed"])
    out = []
    for _ in range(rnd["n"]):
        point = {}
        for option in sorted(rnd["ranges"]):
            low, high = rnd["ranges"][option]
            if isinstance(low, int) and isinstance(high, int):
                point[option] = str(rng.randint(low, high))
            else:
                point[option] = repr(float(f"{rng.uniform(low, high):.6g}"))
        out.append(point)
    return out


def points(block: Block) -> list[dict]:
    """Every option assignment of a block: fixed set < grid point < one-at-a-time value < random draw."""
    keys = sorted(block.grid)
    grid = [dict(zip(keys, values)) for values in itertools.product(*(block.grid[k] for k in keys))]
    each = [{k: v} for k in sorted(block.each) for v in block.each[k]] or [{}]
    return [{**block.fixed, **g, **e, **d} for g in grid for e in each for d in draws(block.random)]


def expand(blocks: list[Block], device_type: str, priority: str = "seed", where: str = "") -> list[RunSpec]:
    """Every run of the blocks, configs resolved, duplicates dropped, in priority order."""
    from bench.runner import make_run_id
    runs, seen = [], set()
    for b, block in enumerate(blocks):
        for i, (task_name, method_name, point) in enumerate(itertools.product(block.tasks, block.methods,
                                                                               points(block))):
            task, method = plugins.get_task(task_name), plugins.get_method(method_name)
            try:
                cfg = config_mod.resolve(task, method, block.protocol, point)
            except UsageError as exc:
                sets = " ".join(f"{k}={v}" for k, v in sorted(point.items()))
                raise UsageError(f"{where}[[block]] {b + 1} ({task_name} x {method_name}"
                                 f"{', ' + sets if sets else ''}): {exc}") from None
            cfg_hash = config_mod.config_hash(cfg)
            for seed in block.seeds:
                run_id = make_run_id(task_name, method_name, block.protocol, seed, device_type, cfg_hash)
                if run_id in seen:
                    continue
                seen.add(run_id)
                order = (seed, b, i) if priority == "seed" else (b, seed, i)
                runs.append(RunSpec(task_name, method_name, block.protocol, seed, tuple(sorted(point.items())),
                                    run_id, cfg, order))
    return sorted(runs, key=lambda r: r.order)


def expand_plan(name: str, device_type: str) -> tuple[Plan, list[RunSpec]]:
    """Load plans/<name>.toml (or a path) and expand it; errors name the plan file."""
    plan = load_plan(name)
    return plan, expand(plan.blocks, device_type, plan.priority, f"plan {plan_path(name)}: ")
