"""Test-set noise: a fixed test set has its own sampling error. A paired bootstrap over the test
examples (sentences, or evaluation chunks for a language model), read from each run's per-example
side file (registry/_examples/<task>/<method>/<run_id>.parquet): every resample draws the same
examples for every run of a table, each run's test metric is recomputed on them, and a method's
value is the mean over its seeds. Where the side files are missing, it says so; for accuracy it
gives the binomial standard error as the fallback."""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from bench import plugins, results

RESAMPLES = 1000
SEED = 20190        # mixed with the table's name: each table's resamples are its own, and fixed
KEYS = {"sentiment": "index", "lm": "chunk", "translation": "index"}
BLEU_COLS = ["sys_len", "ref_len"] + [f"{k}_{i}" for k in ("correct", "total") for i in range(1, 5)]
# test split sizes, for the binomial fallback when no side file says how many sentences there are
TEST_SIZE = {"sst2": 1821, "sst5": 2210}


def read_side(registry: Path | None, row) -> pd.DataFrame | None:
    """The run's side file (bench.results.read_examples), None without one or without a registry."""
    if registry is None:
        return None
    return results.read_examples(registry, dict(task=row.task, method=row.method, run_id=row.run_id))


def kind(df: pd.DataFrame) -> str:
    if "nll_sum" in df.columns:
        return "lm"
    if "correct_1" in df.columns:
        return "translation"
    return "sentiment"


def resampled_metric(task: str, df: pd.DataFrame, weights: np.ndarray) -> np.ndarray:
    """The test metric of one run under each row of `weights` (resamples x examples: how often each
    example is drawn); a row of ones gives the run's own test number."""
    k = kind(df)
    if k == "sentiment":
        return 100.0 * (weights @ df["correct"].to_numpy(float)) / weights.sum(axis=1)
    if k == "lm":
        return np.exp((weights @ df["nll_sum"].to_numpy(float)) / (weights @ df["tokens"].to_numpy(float)))
    spec = plugins.get_task(task)
    sums = weights @ df[BLEU_COLS].to_numpy(float)
    return np.array([spec.test_from_examples({c: [int(round(v))] for c, v in zip(BLEU_COLS, s)}) for s in sums])


def table_sides(unit: pd.DataFrame, registry: Path | None) -> tuple[dict, list[str]]:
    """(method -> [side file of each finished seed that has one], sorted by the example key) for the
    methods with at least one, and the run ids without one (rows registered before side files
    existed: a method's older seeds are left out of the bootstrap, its newer ones count)."""
    ok = unit[unit.status == "ok"].sort_values(["method", "seed"], kind="stable")
    sides, missing = {}, []
    for m, g in ok.groupby("method", sort=True):
        got = []
        for r in g.itertuples(index=False):
            df = read_side(registry, r)
            if df is None:
                missing.append(r.run_id)
            else:
                got.append(df.sort_values(KEYS[kind(df)], ignore_index=True))
        if got:
            sides[m] = got
    return sides, missing


def paired_bootstrap(task: str, sides: dict, pairs: list[tuple[str, str]], name: str,
                     resamples: int | None = None) -> dict:
    """(a, b) -> (observed mean(a) - mean(b), 2.5% and 97.5% percentiles of the resampled difference,
    share of resamples with the opposite sign) over the test examples, the same draws for every run."""
    first = next(iter(sides.values()))[0]
    key = KEYS[kind(first)]
    ids = first[key].to_numpy()
    for runs in sides.values():
        for df in runs:
            if not np.array_equal(df[key].to_numpy(), ids):
                raise ValueError(f"side files of {name} do not cover the same test examples")
    n = len(ids)
    resamples = RESAMPLES if resamples is None else resamples
    rng = np.random.default_rng([SEED, zlib.crc32(name.encode())])
    weights = np.vstack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)]).astype(float)
    ones = np.ones((1, n))
    boot = {m: np.mean([resampled_metric(task, df, weights) for df in runs], axis=0) for m, runs in sides.items()}
    obs = {m: float(np.mean([resampled_metric(task, df, ones)[0] for df in runs])) for m, runs in sides.items()}
    out = {}
    for a, b in pairs:
        if a in boot and b in boot:
            d = boot[a] - boot[b]
            diff = obs[a] - obs[b]
            lo, hi = np.percentile(d, [2.5, 97.5])
            flip = float(np.mean(d <= 0) if diff > 0 else np.mean(d >= 0))
            out[(a, b)] = (diff, float(lo), float(hi), flip)
    return out


def binomial_se(task: str, accuracy: float) -> float | None:
    """Percentage points: 100 sqrt(p (1 - p) / n) for one run's test accuracy; None where the test
    size is not known here."""
    n = TEST_SIZE.get(task)
    if n is None or math.isnan(accuracy):
        return None
    p = accuracy / 100.0
    return 100.0 * math.sqrt(p * (1 - p) / n)
