"""The results registry: one immutable Parquet file per finished run under `registry/`."""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.errors import UsageError



def registry_path() -> Path:
    """$BENCH_REGISTRY (scratch work, tests), else the committed ./registry; read at call time."""
    return Path(os.environ.get("BENCH_REGISTRY") or Path(__file__).resolve().parent.parent / "registry")


_F64_LIST = pa.list_(pa.float64())
SCHEMA = pa.schema([
    ("schema_version", pa.int64()),     # 1: before learning curves and the CPU fingerprint
    ("run_id", pa.string()), ("task", pa.string()), ("method", pa.string()),
    ("protocol", pa.string()), ("seed", pa.int64()), ("derived_seed", pa.int64()),
    ("status", pa.string()),            # ok | diverged
    ("metric", pa.string()),            # name of the test metric, e.g. ppl, bleu, accuracy
    ("higher_is_better", pa.bool_()),
    ("valid", pa.float64()),            # selection metric on valid (valid_metric)
    ("valid_metric", pa.string()),
    ("test", pa.float64()),             # leaderboard metric on test
    ("metric_signature", pa.string()),  # e.g. sacrebleu's signature of the BLEU score
    ("best_epoch", pa.int64()), ("epochs", pa.int64()), ("params", pa.int64()),
    ("wall_s", pa.float64()), ("tokens_per_s", pa.float64()),
    # learning curves, one entry per epoch run: mean training loss (per token / example), valid
    # metric and loss, lr, cumulative wall seconds; probe_loss: the loss of the first steps
    ("curve_train_loss", _F64_LIST), ("curve_valid", _F64_LIST), ("curve_valid_loss", _F64_LIST),
    ("curve_lr", _F64_LIST), ("curve_wall_s", _F64_LIST), ("probe_loss", _F64_LIST),
    ("device", pa.string()), ("device_name", pa.string()), ("cuda_version", pa.string()),
    ("cpu_capability", pa.string()), ("cpu_vendor", pa.string()), ("cpu_model", pa.string()),
    ("cpu_isa", pa.string()), ("numerics", pa.string()), ("threads", pa.int64()), ("rnn_path", pa.string()),
    ("torch_version", pa.string()), ("lock_sha256", pa.string()), ("git_commit", pa.string()),
    ("git_dirty", pa.bool_()), ("plugin_sha256", pa.string()),
    ("config_hash", pa.string()), ("config_json", pa.string()), ("finished_at", pa.string()),
    # schema 3: fingerprints of the result (weights_digest, examples_digest below; "" on a diverged
    # run and on older rows), and the pack it trained in (bench/pack: 1 and "[]" for a solo run)
    ("weights_sha256", pa.string()), ("examples_sha256", pa.string()),
    ("pack_size", pa.int64()), ("pack_members", pa.string()),
    # sha256 of the side file's bytes as written (any flipped byte shows); examples_sha256 is of its
    # content, which a replay elsewhere (another pyarrow) compares
    ("examples_file_sha256", pa.string()),
])
# columns a schema-1 row lacks, read as these values
ADDED_IN_V2 = dict(schema_version=1, metric_signature="", curve_train_loss=[], curve_valid=[],
                   curve_valid_loss=[], curve_lr=[], curve_wall_s=[], probe_loss=[], cpu_vendor="",
                   cpu_model="", cpu_isa="", numerics="", lock_sha256="", plugin_sha256="")
# columns a schema-2 row lacks: "" means "no result fingerprint" (start-only verified)
ADDED_IN_V3 = dict(weights_sha256="", examples_sha256="", pack_size=1, pack_members="[]",
                   examples_file_sha256="")
ADDED = {**ADDED_IN_V2, **ADDED_IN_V3}
COLUMNS = SCHEMA.names


class RegistryError(UsageError):
    """Unreadable or invalid registry files, named."""


def run_path(registry: Path, row: dict) -> Path:
    return Path(registry) / row["task"] / row["method"] / f"{row['run_id']}.parquet"


EXAMPLES_DIR = "_examples"      # registry/_examples/<task>/<method>/<run_id>.parquet: below the row glob


def examples_path(registry: Path, row: dict) -> Path:
    """Where a run's per-example test outcomes live (one line per test sentence or LM chunk)."""
    return Path(registry) / EXAMPLES_DIR / row["task"] / row["method"] / f"{row['run_id']}.parquet"


def _columns(examples) -> dict[str, list]:
    """A side file's columns as plain Python lists (from a dict of lists or a DataFrame)."""
    if isinstance(examples, pd.DataFrame):
        return {c: examples[c].tolist() for c in examples.columns}
    return {c: list(v) for c, v in examples.items()}


def examples_digest(examples) -> str:
    """sha256 of a side file's content in canonical form: columns by name, ints as ints, floats by
    their exact hex form; the same from the in-memory dict and from the Parquet file read back."""
    canon = {c: [float(v).hex() if isinstance(v, float) else int(v) for v in vals]
             for c, vals in sorted(_columns(examples).items())}
    return hashlib.sha256(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def weights_digest(state_dict: dict) -> str:
    """sha256 of a state dict in canonical form: for each key in sorted order its name, dtype, shape
    and the tensor's raw bytes (CPU, contiguous); independent of torch.save's container format."""
    import torch                                 # lazily: reading the registry needs no torch
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        h.update(f"{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _examples_table(examples) -> pa.Table:
    cols = _columns(examples)
    types = {c: pa.float64() if any(isinstance(v, float) for v in vals) else pa.int64() for c, vals in cols.items()}
    return pa.table({c: pa.array(vals, types[c]) for c, vals in cols.items()})


def write_examples(registry: Path, row: dict, examples) -> Path:
    """Write a run's side file atomically (temp file, then rename); returns its path."""
    final = examples_path(registry, row)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{uuid.uuid4().hex}.parquet"
    pq.write_table(_examples_table(examples), tmp)
    os.replace(tmp, final)
    return final


def read_examples(registry: Path, row: dict) -> pd.DataFrame | None:
    """A run's side file, or None when it has none (diverged runs, rows made before schema 3)."""
    path = examples_path(registry, row)
    return pq.read_table(path).to_pandas() if path.exists() else None


def write_result(registry: Path, row: dict, examples=None) -> Path:
    """A finished run: its side file first (a row never names a missing one), then its row, whose
    `examples_sha256` is set here ("" without examples: a diverged run)."""
    if find_run(registry, row["run_id"]):        # rows and their side files are immutable
        raise _registered(row, run_path(registry, row))
    row["examples_sha256"] = examples_digest(examples) if examples is not None else ""
    row["examples_file_sha256"] = ""
    if examples is not None:
        side = write_examples(registry, row, examples)
        row["examples_file_sha256"] = hashlib.sha256(side.read_bytes()).hexdigest()
    return write_row(registry, row)


def find_run(registry: Path, run_id: str) -> Path | None:
    hits = list(Path(registry).glob(f"*/*/{run_id}.parquet"))
    return hits[0] if hits else None


def _registered(row: dict, path: Path) -> UsageError:
    return UsageError(f"run {row['run_id']} is already registered ({path}); registry files are "
                      f"immutable: use another SEED, or delete that file to replace it")


def write_row(registry: Path, row: dict) -> Path:
    """Write one run atomically (temp file, then a hard link that refuses to overwrite). A row
    without the schema-3 columns gets their defaults (no result fingerprint, solo run)."""
    row = {**ADDED_IN_V3, **row}
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
        raise _registered(row, final) from None
    finally:
        tmp.unlink()
    return final


def _read_table(f: Path) -> pa.Table:
    """One registry file as a table of SCHEMA; columns added since its schema version filled in."""
    t = pq.ParquetFile(f).read(use_threads=False)      # twice as fast as pq.read_table for one-row files
    for name, value in ADDED.items():
        if name not in t.schema.names:
            t = t.append_column(SCHEMA.field(name), pa.array([value] * t.num_rows, SCHEMA.field(name).type))
    missing = set(COLUMNS) - set(t.schema.names)
    if missing:
        raise ValueError(f"missing columns {sorted(missing)}")
    t = t.select(COLUMNS)
    return t if t.schema.equals(SCHEMA) else t.cast(SCHEMA)


def read_row(path: Path) -> dict:
    return _read_table(Path(path)).to_pylist()[0]


def existing_registry(registry: Path | None = None) -> Path:
    """The registry folder a report is made from; a path that is not a folder (a typo in --registry or
    $BENCH_REGISTRY) is an error, not an empty table that would overwrite the reports."""
    path = Path(registry or registry_path())
    if not path.is_dir():
        source = "--registry" if registry else ("$BENCH_REGISTRY" if os.environ.get("BENCH_REGISTRY")
                                                 else "the checkout's registry/")
        raise RegistryError(f"registry folder {path} (from {source}) does not exist; point it at a registry "
                            f"(a folder of <task>/<method>/<run>.parquet files), or unset BENCH_REGISTRY to use "
                            f"the committed registry/")
    return path


def read_registry(registry: Path | None = None) -> pd.DataFrame:
    """Every run in the registry; any unreadable or invalid file is named in a RegistryError."""
    files = sorted(Path(registry or registry_path()).glob("*/*/*.parquet"))
    tables, bad = [], []
    for f in files:
        try:
            tables.append(_read_table(f))
        except Exception as exc:
            bad.append(f"{f}: {type(exc).__name__}: {exc}")
    if bad:
        raise RegistryError("unreadable registry file(s) (fix or delete them):\n  " + "\n  ".join(bad))
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype=SCHEMA.field(c).type.to_pandas_dtype()) for c in COLUMNS})
    df = pa.concat_tables(tables).to_pandas()          # one conversion: a thousand to_pandas() took seconds
    dup = df[df.run_id.duplicated()].run_id.tolist()
    if dup:
        raise RegistryError(f"duplicate run ids in the registry: {dup}")
    return df.sort_values("run_id", ignore_index=True)
