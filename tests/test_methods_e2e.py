"""Every method x language-modelling task: the smoke protocol end to end, seed-deterministic."""
import json

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
    outcome = runner.run(task, method, "smoke", seed=0, device="cpu", registry=tmp_path / "reg",
                         runs_dir=tmp_path / "runs", data_dir=data_dir, progress=False)
    row, path = outcome.row, outcome.path
    assert path.exists() and row["status"] == "ok"
    sacred = [p.parent for p in (tmp_path / "runs" / row["run_id"]).rglob("metrics.json")]   # the Sacred run
    assert len(sacred) == 1 and json.loads((sacred[0] / "config.json").read_text())["epochs"] == 2
    t, m, cfg, data = runner.prepare(task, method, "smoke", {}, data_dir)
    # a trained model beats the uniform distribution over the vocabulary (ppl = vocabulary size)
    assert 1 < row["valid"] < data["vocab"] and 1 < row["test"] < data["vocab"], (row["test"], data["vocab"])
    again = runner.execute(t, m, cfg, data, 0, torch.device("cpu"), progress=False)
    assert (again["valid"], again["test"]) == (row["valid"], row["test"])
    df = results.read_registry(tmp_path / "reg")
    assert df.run_id.tolist() == [row["run_id"]]
