"""Every method x language-modelling task: the smoke protocol end to end, seed-deterministic."""
import json
import math

import pytest
import torch

from bench import plugins, results, runner
from conftest import HAVE_MIRROR, MIRROR

METHODS = ["naive", "zaremba", "gal", "semeniuta", "zoneout", "awd", "fraternal", "curriculum"]
TASKS = ["ptb", "wikitext-2"] if HAVE_MIRROR else ["tinylm"]


def test_all_eight_methods_registered():
    assert set(METHODS) <= set(plugins.list_methods())
    assert not plugins.import_errors()


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("method", METHODS)
def test_smoke_end_to_end_and_deterministic(task, method, tmp_path, tiny_lm):
    data_dir = MIRROR if HAVE_MIRROR else tiny_lm[1]
    row, path = runner.run(task, method, "smoke", seed=0, device="cpu", registry=tmp_path / "reg",
                           runs_dir=tmp_path / "runs", data_dir=data_dir, progress=False)
    assert path.exists() and row["status"] == "ok"
    assert math.isfinite(row["test"]) and 1 < row["test"] < 2 * row["params"]
    assert (tmp_path / "runs" / row["run_id"] / "metrics.json").exists()     # the Sacred run
    assert json.loads((tmp_path / "runs" / row["run_id"] / "config.json").read_text())["epochs"] == 2
    t, m, cfg, data = runner.prepare(task, method, "smoke", {}, data_dir)
    again = runner.execute(t, m, cfg, data, 0, torch.device("cpu"), progress=False)
    assert (again["valid"], again["test"]) == (row["valid"], row["test"])
    df = results.read_registry(tmp_path / "reg")
    assert df.run_id.tolist() == [row["run_id"]]
