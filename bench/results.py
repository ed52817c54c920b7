"""The results registry: one immutable Parquet file per finished run under `registry/`."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.errors import UsageError

# $BENCH_REGISTRY redirects the registry (tests, scratch work); the committed one is ./registry.
REGISTRY = Path(os.environ.get("BENCH_REGISTRY") or Path(__file__).resolve().parent.parent / "registry")

SCHEMA = pa.schema([
    ("run_id", pa.string()), ("task", pa.string()), ("method", pa.string()),
    ("protocol", pa.string()), ("seed", pa.int64()), ("derived_seed", pa.int64()),
    ("status", pa.string()),            # ok | diverged
    ("metric", pa.string()),            # name of the test metric, e.g. ppl, bleu, accuracy
    ("higher_is_better", pa.bool_()),
    ("valid", pa.float64()),            # selection metric on valid (valid_metric)
    ("valid_metric", pa.string()),
    ("test", pa.float64()),             # leaderboard metric on test
    ("best_epoch", pa.int64()), ("epochs", pa.int64()), ("params", pa.int64()),
    ("wall_s", pa.float64()), ("tokens_per_s", pa.float64()),
    ("device", pa.string()), ("device_name", pa.string()), ("cuda_version", pa.string()),
    ("cpu_capability", pa.string()), ("threads", pa.int64()), ("rnn_path", pa.string()),
    ("torch_version", pa.string()), ("git_commit", pa.string()), ("git_dirty", pa.bool_()),
    ("config_hash", pa.string()), ("config_json", pa.string()), ("finished_at", pa.string()),
])
COLUMNS = SCHEMA.names


class RegistryError(UsageError):
    """Unreadable or invalid registry files, named."""


def run_path(registry: Path, row: dict) -> Path:
    return Path(registry) / row["task"] / row["method"] / f"{row['run_id']}.parquet"


def find_run(registry: Path, run_id: str) -> Path | None:
    hits = list(Path(registry).glob(f"*/*/{run_id}.parquet"))
    return hits[0] if hits else None


def write_row(registry: Path, row: dict) -> Path:
    """Write one run atomically (temp file, then a hard link that refuses to overwrite)."""
    missing = set(COLUMNS) - set(row)
    if missing:
        raise ValueError(f"registry row lacks columns {sorted(missing)}")
    table = pa.Table.from_pylist([{k: row[k] for k in COLUMNS}], schema=SCHEMA)
    final = run_path(registry, row)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(registry) / f".tmp-{uuid.uuid4().hex}.parquet"
    pq.write_table(table, tmp)
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise UsageError(f"run {row['run_id']} is already registered ({final}); registry files are "
                         f"immutable: use another SEED, or delete that file to replace it") from None
    finally:
        tmp.unlink()
    return final


def read_registry(registry: Path = REGISTRY) -> pd.DataFrame:
    """Every run in the registry; any unreadable or invalid file is named in a RegistryError."""
    files = sorted(Path(registry).glob("*/*/*.parquet"))
    frames, bad = [], []
    for f in files:
        try:
            t = pq.read_table(f)
            missing = set(COLUMNS) - set(t.schema.names)
            if missing:
                raise ValueError(f"missing columns {sorted(missing)}")
            t = t.select(COLUMNS).cast(SCHEMA)
            frames.append(t.to_pandas())
        except Exception as exc:
            bad.append(f"{f}: {type(exc).__name__}: {exc}")
    if bad:
        raise RegistryError("unreadable registry file(s) (fix or delete them):\n  " + "\n  ".join(bad))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=SCHEMA.field(c).type.to_pandas_dtype()) for c in COLUMNS})
    df = pd.concat(frames, ignore_index=True)
    dup = df[df.run_id.duplicated()].run_id.tolist()
    if dup:
        raise RegistryError(f"duplicate run ids in the registry: {dup}")
    return df.sort_values("run_id", ignore_index=True)
