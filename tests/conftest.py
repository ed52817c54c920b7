"""Shared fixtures: the real mirror when present, and small generated data that always works."""
from __future__ import annotations

import gzip
import hashlib
import random
from pathlib import Path

import pytest

from bench import plugins
from bench.data import DATASETS, DataFile, DatasetSpec, register_dataset

REPO = Path(__file__).resolve().parent.parent
MIRROR = REPO.parent / "shared" / "data"
HAVE_MIRROR = (MIRROR / "MANIFEST.tsv").exists()
needs_mirror = pytest.mark.skipif(not HAVE_MIRROR, reason="../shared/data mirror not present")


def write_dataset(root: Path, name: str, files: dict[str, str], url="file:///fixture") -> DatasetSpec:
    """Write `files` gzip-compressed under root/name and register a dataset spec with their sha256."""
    entries = []
    for fname, text in files.items():
        raw = text.encode()
        gz = gzip.compress(raw, mtime=0)
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / (fname + ".gz")).write_bytes(gz)
        entries.append(DataFile(fname, hashlib.sha256(gz).hexdigest(), hashlib.sha256(raw).hexdigest()))
    DATASETS.pop(name, None)
    return register_dataset(DatasetSpec(name=name, files=tuple(entries), url=url))


def resolve(task, overrides=None, method="zaremba", protocol="smoke") -> dict:
    """A task's resolved config (`smoke`, zaremba unless told) with `overrides` set on top."""
    from bench import config as config_mod
    cfg = config_mod.resolve(task, plugins.get_method(method), protocol, {})
    cfg.update(overrides or {})
    return cfg


def tiny_corpus(seed: int, lines: int) -> str:
    """A toy language with some structure (so that a model can learn something)."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(40)]
    out = []
    for _ in range(lines):
        start = rng.randrange(40)
        n = rng.randint(3, 12)
        out.append(" " + " ".join(words[(start + 3 * k + rng.choice((0, 0, 1))) % 40] for k in range(n)) + " ")
    return "\n".join(out) + "\n"


def register_toy_lm(root: Path, name: str, train: str, valid: str, test: str):
    """Write a generated LM corpus over w0..w39 under root/name and register it as task `name`."""
    from tasks.lm import LanguageModelling
    vocab_line = " " + " ".join(f"w{i}" for i in range(40)) + " \n"  # every word occurs in train
    write_dataset(root, name, {"train.txt": vocab_line + train, "valid.txt": valid, "test.txt": test})
    plugins.load_all()
    plugins.unregister("task", name)
    return plugins.register_task(LanguageModelling(name, name, ("train.txt", "valid.txt", "test.txt"),
                                                   "generated toy LM"))


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """A registered task 'tinylm' (an LM task on generated data) and its data directory."""
    root = tmp_path_factory.mktemp("data")
    task = register_toy_lm(root, "tinylm", tiny_corpus(1, 400), tiny_corpus(2, 60), tiny_corpus(3, 60))
    return task, root


@pytest.fixture
def registry(tmp_path):
    return tmp_path / "registry"


@pytest.fixture(autouse=True)
def _never_touch_the_committed_registry(tmp_path_factory, monkeypatch):
    """Safety net: whatever a test forgets to redirect lands in tmp, not in registry/ or reports/."""
    scratch = tmp_path_factory.mktemp("scratch")
    monkeypatch.setenv("BENCH_REGISTRY", str(scratch / "registry"))
    monkeypatch.setenv("BENCH_REPORTS", str(scratch / "reports"))
    monkeypatch.setenv("BENCH_RUNS", str(scratch / "runs"))


# --- skips, by reason (issue 35): CUDA-only ones counted, every other one named with its reason ---
CUDA_ONLY = ("needs a CUDA device",)
# skips that cannot be avoided where they happen, and why; any other skip is "unjustified" and, with
# BENCH_STRICT_SKIPS=1 (.ci/run), fails the session (CI has the data mirror and every locked package)
JUSTIFIED = {
    "root ignores file permissions": (
        "as root a chmod cannot make a folder unwritable; the root case is covered by "
        "test_an_unusable_registry_or_reports_location_is_an_error_before_training"),
    "a GPU is present": "checks the no-GPU error message, which a GPU machine cannot produce",
}


def _skips(terminalreporter) -> tuple[list, list, list]:
    """(cuda, justified, unjustified) skipped reports as (nodeid, reason)."""
    cuda, ok, bad = [], [], []
    for rep in terminalreporter.stats.get("skipped", []):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        reason = reason.removeprefix("Skipped: ")
        item = (rep.nodeid, reason)
        if any(c in reason for c in CUDA_ONLY):
            cuda.append(item)
        elif any(j in reason for j in JUSTIFIED):
            ok.append(item)
        else:
            bad.append(item)
    return cuda, ok, bad


def pytest_terminal_summary(terminalreporter):
    cuda, ok, bad = _skips(terminalreporter)
    if not (cuda or ok or bad):
        return
    tr = terminalreporter
    tr.write_sep("-", "skips by reason")
    if cuda:
        tr.write_line(f"{len(cuda)} skipped: CUDA-only (no CUDA device here)")
    for nodeid, reason in ok:
        why = next(v for k, v in JUSTIFIED.items() if k in reason)
        tr.write_line(f"1 skipped, not CUDA: {nodeid}: {reason} (justified: {why})")
    for nodeid, reason in bad:
        tr.write_line(f"1 skipped, not CUDA, UNJUSTIFIED: {nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    import os
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None and os.environ.get("BENCH_STRICT_SKIPS") == "1" and _skips(tr)[2] and exitstatus == 0:
        session.exitstatus = 1             # a test that silently did not run: CI fails, naming it
