"""On a GPU (skipped without one; .ci/gpu-session runs them): every noise configuration of the cell
tests, LSTM and GRU, takes the CUDA-graph path and computes what the reference cell computes on the
same GPU; every method trains end to end on CUDA, its row records the GPU, and `verify-seeds`
replays it there bit for bit (CUDA runs are deterministic: bench/seeding.py)."""
from __future__ import annotations

import math

import pytest
import torch

from bench import cudagraphs, plugins, runner, verify

import cellcheck
import test_fastcell
import test_grucell

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CELLS = {"lstm": test_fastcell.NOISES, "gru": test_grucell.NOISES}
CASES = [(cell, name) for cell, noises in CELLS.items() for name in noises]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cell,name", CASES, ids=[f"{c}-{n}" for c, n in CASES])
def test_graph_path_matches_the_reference_cell_on_the_gpu(cell, name, train):
    noise = CELLS[cell][name]
    path, got = cellcheck.stack_step(cell, noise, train, impl="auto", device="cuda")
    ref_path, want = cellcheck.stack_step(cell, noise, train, impl="reference", device="cuda")
    per_step = (train and noise.per_step) or noise.zone_h > 0
    assert (path, ref_path) == (("graph", "cell") if per_step else ("fused", "fused"))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    if per_step:                                       # replayed from the cache: the same numbers
        again = cellcheck.stack_step(cell, noise, train, impl="auto", device="cuda")[1]
        assert all(torch.equal(a, b) for a, b in zip(got, again))
        assert cudagraphs.cache_for(torch.zeros(1, device="cuda").device).entries


METHODS = [m for m in plugins.list_methods() if m != "none"] + ["none"]
RUNS = [(m, c) for m in METHODS for c in ("lstm", "gru") if not (m == "rnndrop" and c == "gru")]


@pytest.mark.parametrize("method,cell", RUNS, ids=[f"{m}-{c}" for m, c in RUNS])
def test_every_method_trains_on_cuda_and_replays_exactly(method, cell, tiny_lm, tmp_path):
    task, root = tiny_lm
    out = runner.run(task.name, method, "smoke", seed=0, device="cuda", registry=tmp_path / "reg",
                     runs_dir=tmp_path / "runs", data_dir=root, overrides={"cell": cell}, progress=False)
    row = out.row
    assert row["status"] == "ok" and row["device"] == "cuda"
    assert row["device_name"] == torch.cuda.get_device_name() and row["numerics"] == "cuda-deterministic"
    assert math.isfinite(row["test"]) and row["test"] > 1
    paths = row["rnn_path"].replace(":", " ").replace(",", " ").split()
    assert "cell" not in paths, row["rnn_path"]        # never the slow reference loop on a GPU
    res = verify.verify_all(tmp_path / "reg", data_dir=root, echo=print)
    assert [(r["ok"], r["exact"], r["skipped"]) for r in res] == [(True, True, False)]
