"""Which registry rows each section reads, and what a row's numbers and parameters are.

Rows are grouped as the leaderboard groups them: per (protocol, task, method, config_hash, device),
never averaging configs or device kinds together. The report's unit is (protocol, task, device).
"""
from __future__ import annotations

import functools
import json
import math

import pandas as pd

from bench import config as config_mod
from bench import leaderboard, plugins

BASELINE = leaderboard.BASELINE      # defined there: select imports leaderboard, not the other way
SWEEP_PREFIX = "sweep"
PAPER_PREFIX = "paper"
SWEEP_TASKS = ("ptb", "multi30k-de-en", "sst2")        # the tasks section 4 is asked for


@functools.lru_cache(maxsize=None)
def default_hash(method: str, protocol: str, task: str) -> str | None:
    """The config hash of the protocol's default config (bench.leaderboard.default_hash), None
    when it cannot be resolved."""
    return leaderboard.default_hash(method, protocol, task)[0]


def default_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows of each (protocol, task, method)'s default config (all statuses), and notes on the
    methods whose default cannot be resolved (then their only config is used, or they are left out)."""
    keep, notes = [], []
    for (protocol, task, method), g in df.groupby(["protocol", "task", "method"], sort=True):
        h = default_hash(method, protocol, task)
        if h is None:
            hashes = sorted(set(g.config_hash))
            if len(hashes) == 1:
                keep.append(g)
                notes.append(f"{protocol} · {task} · {method}: the protocol's default config cannot be "
                             f"resolved in this checkout; its only config ({hashes[0][:8]}) is used.")
            else:
                notes.append(f"{protocol} · {task} · {method}: the protocol's default config cannot be "
                             f"resolved and its rows have {len(hashes)} configs; left out.")
            continue
        keep.append(g[g.config_hash == h])
    out = pd.concat(keep, ignore_index=True) if keep else df.iloc[0:0]
    return out.sort_values("run_id", ignore_index=True), notes


def units(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The sorted (protocol, task, device) triples present."""
    return sorted(set(zip(df.protocol, df.task, df.device)))


def unit_name(protocol: str, task: str, device: str) -> str:
    return f"{protocol} · {task} · {device}"


def slug(*parts) -> str:
    """A file-name-safe name: lower-case letters, digits, '-' and '_'."""
    text = "_".join(str(p) for p in parts).lower()
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


def valid_loss(row) -> float:
    """The best validation loss over the epochs (the minimum of curve_valid_loss); nan if unknown.
    Where a task selects its best epoch by the loss (perplexity: PTB, Multi30k) it is the loss at
    that epoch; SST selects by accuracy, and the loss at the most accurate epoch swings with a few
    over-confident mistakes (0.53 to 1.44 between two seeds of one setting), its minimum does not."""
    curve = [float(v) for v in row.curve_valid_loss] if row.curve_valid_loss is not None else []
    curve = [v for v in curve if math.isfinite(v)]
    return min(curve) if curve else math.nan


def config_of(row) -> dict:
    try:
        cfg = json.loads(row.config_json) if row.config_json else {}
    except ValueError:
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _chain(method: str):
    return config_mod.method_chain(plugins.get_method(method), {})


def dropout_params(method: str) -> list[str]:
    """The method's dropout parameters: the numeric options of its method chain (its own first,
    then its bases'), i.e. the probabilities p_* / z_* and the strengths kappa and gamma."""
    out = []
    for m in reversed(_chain(method)):
        for k, v in m.options.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in out:
                out.append(k)
    return out


def chain_options(method: str) -> list[str]:
    """Every option of the method chain (dropout parameters, bases and mask modes)."""
    return sorted(set().union(*(m.options for m in _chain(method))))


DEFAULT_CELL = config_mod.COMPAT_DEFAULTS["cell"]      # rows store `cell` only when it is not this


def _resolve(method: str, protocol: str, task: str, cell: str):
    return config_mod.resolve(plugins.get_task(task), plugins.get_method(method), protocol,
                              {} if cell == DEFAULT_CELL else {"cell": cell})


@functools.lru_cache(maxsize=None)
def defaults(method: str, protocol: str, task: str, cell: str = DEFAULT_CELL) -> tuple[dict, str]:
    """(option -> default value for the method chain's options under the protocol and cell type, ''
    or a note saying the protocol is not defined here and the spec's own defaults are used)."""
    names = chain_options(method)
    try:
        cfg = _resolve(method, protocol, task, cell)
        return {k: cfg[k] for k in names if k in cfg}, ""
    except Exception as exc:
        spec = {}
        for m in _chain(method):
            spec.update(m.options)
        return ({k: spec[k] for k in names if k in spec},
                f"protocol {protocol!r} does not resolve for {task} · {method} here ({exc}); the "
                f"method's own option defaults stand in for its defaults")


@functools.lru_cache(maxsize=None)
def recipe(method: str, protocol: str, task: str, cell: str = DEFAULT_CELL) -> dict:
    """The default config's keys other than the method's options (model, data, optimiser, schedule),
    as stored in rows; {} when the protocol does not resolve here."""
    try:
        cfg = config_mod.stored(_resolve(method, protocol, task, cell))
    except Exception:
        return {}
    options = set(chain_options(method))
    return {k: v for k, v in cfg.items() if k not in options}


def same_recipe(cfg: dict, fixed: dict) -> bool:
    """Whether a row's config keeps the protocol's recipe: every key it shares with `fixed` is equal
    (a row with, e.g., another lr or model size belongs to no sweep of the defaults)."""
    return all(same(cfg[k], v) for k, v in fixed.items() if k in cfg)


def same(a, b) -> bool:
    """Equal as stored values: numbers within rounding, lists and tuples (JSON has no tuples) item
    by item."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b
