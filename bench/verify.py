"""Seed verification: re-run registered runs and check that their metrics come out the same.

A row is re-run when its protocol is in its task's `cpu_protocols`. It is re-run on the CPU from its
stored `config_json` with its seed, with the reference cell if the row was trained with it. Where the environment fingerprint (torch version, device,
CPU capability, thread count) equals the row's, the metrics must match exactly (bitwise); elsewhere
within a relative tolerance of REL_TOL, since other kernels round differently.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

import torch

from bench import config as config_mod
from bench import plugins, results, seeding
from bench.data import default_data_dir
from bench.runner import execute

REL_TOL = 1e-3
FINGERPRINT_KEYS = ("torch_version", "device", "cpu_capability", "threads")


def _close(a: float, b: float, exact: bool) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b if exact else abs(a - b) <= REL_TOL * max(abs(a), abs(b))


@contextlib.contextmanager
def _env(key: str, value: str):
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key)
        else:
            os.environ[key] = old


def verify_row(row, data_dir) -> dict:
    task, method = plugins.get_task(row.task), plugins.get_method(row.method)
    cfg = config_mod.Config(json.loads(row.config_json))
    dev = torch.device("cpu")
    fp = seeding.fingerprint(dev)
    exact = all(str(fp[k]) == str(getattr(row, k)) for k in FINGERPRINT_KEYS)
    # a row trained with the reference cell is re-run with it (the fast cell rounds differently)
    impl = "reference" if "cell" in row.rnn_path.split(",") else os.environ.get("BENCH_RNN_IMPL", "auto")
    with _env("BENCH_RNN_IMPL", impl):
        got = execute(task, method, cfg, task.load(Path(data_dir), cfg), int(row.seed), dev, progress=False)
    exact = exact and got["rnn_path"] == row.rnn_path
    ok = (got["status"] == row.status and _close(got["valid"], row.valid, exact)
          and _close(got["test"], row.test, exact) and config_mod.config_hash(cfg) == row.config_hash)
    return dict(run_id=row.run_id, exact=exact, ok=ok, valid=row.valid, valid_rerun=got["valid"],
                test=row.test, test_rerun=got["test"])


def verifiable(df):
    keep = []
    for r in df.itertuples():
        try:
            keep.append(r.protocol in plugins.get_task(r.task).cpu_protocols)
        except Exception:
            keep.append(False)
    return df[keep] if len(df) else df


def verify_all(registry: Path | None = None, data_dir=None, only=None, echo=print) -> list[dict]:
    seeding.set_threads()
    df = verifiable(results.read_registry(registry or results.REGISTRY))
    if only:
        df = df[df.run_id.str.contains(only, regex=False)]
    out = []
    for row in df.itertuples():
        r = verify_row(row, data_dir or default_data_dir())
        mode = "exact" if r["exact"] else f"rel.tol {REL_TOL:g}"
        echo(f"{'OK  ' if r['ok'] else 'FAIL'} {r['run_id']}  [{mode}] test {r['test']!r} -> {r['test_rerun']!r}, "
             f"valid {r['valid']!r} -> {r['valid_rerun']!r}")
        out.append(r)
    return out
