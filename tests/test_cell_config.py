"""`cell=lstm|gru` in the config without moving a registered row: the committed rows keep their
config hash and run id; the cell and position registries refuse what cannot work."""
import json

import pandas as pd
import pytest

from bench import cells, config, plugins, positions, results, runner
from bench.api import MethodSpec, Noise
from bench.errors import UsageError
from conftest import REPO

COMMITTED = REPO / "registry"


def committed_rows() -> pd.DataFrame:
    return results.read_registry(COMMITTED)


def test_committed_rows_keep_their_config_hash_and_run_id():
    """Every committed row whose stored config is its protocol's default resolves, today, to the same
    hash and run id; LSTM rows store no `cell` (a GRU row stores cell=gru)."""
    df = committed_rows()
    same = 0
    for row in df.itertuples():
        stored = json.loads(row.config_json)
        cfg = config.Config(stored)
        assert config.config_hash(cfg) == row.config_hash, row.run_id          # as verify-seeds checks
        assert stored.get("cell", "lstm") == cfg.cell
        assert ("cell" in stored) == (cfg.cell != "lstm"), row.run_id
        if row.protocol not in ("smoke", "cpu"):
            continue
        overrides = {"cell": stored["cell"]} if "cell" in stored else {}
        resolved = config.resolve(plugins.get_task(row.task), plugins.get_method(row.method), row.protocol, overrides)
        if config.stored(resolved) != stored:
            continue                                                          # a SET= row: not a default config
        assert config.config_hash(resolved) == row.config_hash, row.run_id
        run_id = runner.make_run_id(row.task, row.method, row.protocol, row.seed, row.device,
                                    config.config_hash(resolved))
        assert run_id == row.run_id
        same += 1
    assert same >= 50                      # the 45 LSTM smoke rows and the cpu rows made before `cell` existed


def test_a_known_row_made_before_cell_existed():
    [path] = COMMITTED.glob("ptb/zoneout/ptb.zoneout.smoke.s0.cpu.4442d4e9.parquet")
    row = results.read_row(path)
    cfg = config.resolve(plugins.get_task("ptb"), plugins.get_method("zoneout"), "smoke", {})
    assert cfg.cell == "lstm" and "cell" not in json.loads(row["config_json"])
    assert config.config_hash(cfg) == row["config_hash"] == "4442d4e9106e48bc"
    gru = config.resolve(plugins.get_task("ptb"), plugins.get_method("zoneout"), "smoke", {"cell": "gru"})
    assert config.config_hash(gru) != row["config_hash"] and config.stored(gru)["cell"] == "gru"


def test_stored_config_and_config_attribute_fallback():
    cfg = config.Config(lr=1.0)
    assert cfg.cell == "lstm"                                 # an older row's stored config
    with pytest.raises(AttributeError):
        cfg.not_a_key
    assert config.stored({"cell": "lstm", "lr": 1.0}) == {"lr": 1.0}
    assert config.stored({"cell": "gru", "lr": 1.0}) == {"cell": "gru", "lr": 1.0}


def test_new_lstm_rows_store_no_cell_and_gru_rows_do(tiny_lm, tmp_path):
    rows = {}
    for cell in ("lstm", "gru"):
        rows[cell] = runner.run(tiny_lm[0].name, "zaremba", "smoke", device="cpu", registry=tmp_path / "reg",
                                runs_dir=tmp_path / "runs", data_dir=tiny_lm[1], progress=False,
                                overrides={"cell": cell}).row
    assert "cell" not in json.loads(rows["lstm"]["config_json"])
    assert json.loads(rows["gru"]["config_json"])["cell"] == "gru"
    assert rows["lstm"]["run_id"] != rows["gru"]["run_id"]
    assert rows["gru"]["params"] < rows["lstm"]["params"]


def test_unknown_cell_type_is_a_usage_error_listing_the_choices():
    with pytest.raises(UsageError, match="option cell='rnn' is not one of: gru, lstm"):
        config.resolve(plugins.get_task("sst2"), plugins.get_method("zaremba"), "smoke", {"cell": "rnn"})
    with pytest.raises(UsageError, match="unknown cell type 'rnn'; choose one of: gru, lstm"):
        cells.get_cell("rnn")


def test_every_task_builds_a_gru_model():
    for task in ("ptb", "sst2", "multi30k-de-en"):
        t = plugins.get_task(task)
        cfg = config.resolve(t, plugins.get_method("zaremba"), "smoke", {"cell": "gru"})
        assert cfg.cell == "gru"
    from bench.api import NoiseState
    from tasks.lm import LMModel
    cfg = config.resolve(plugins.get_task("ptb"), plugins.get_method("none"), "smoke", {"cell": "gru"})
    model = LMModel(30, cfg, NoiseState(Noise()))
    assert {l.cell for l in model.rnn.layers} == {"gru"} and model.rnn.layers[0].weight_hh.shape == (72, 24)


# --- the registries refuse what cannot work ---------------------------------------------------------

def test_duplicate_cell_and_position_names_are_errors():
    lstm = cells.get_cell("lstm")
    with pytest.raises(ValueError, match="duplicate cell name 'lstm'"):
        cells.register_cell(cells.CellSpec(**{**lstm.__dict__, "title": "other", "module": "x"}))
    with pytest.raises(ValueError, match="duplicate position name 'cell_state'"):
        positions.register_position(positions.Position("cell_state", "another", {"lstm": "o"}))
    positions.register_position(positions.get("cell_state"))           # the same declaration again: fine


def test_a_position_must_name_slots_its_cells_have():
    with pytest.raises(ValueError, match="gru has no slot 'c'; its slots: h_in, r, z, n"):
        positions.register_position(positions.Position("bad_c", "x", {"gru": "c"}))
    with pytest.raises(ValueError, match="unknown cell type 'rnn'"):
        positions.register_position(positions.Position("bad_cell", "x", {"rnn": "h"}))
    with pytest.raises(ValueError, match="registered position is a mask"):
        positions.Position("bad_kind", "x", {"lstm": "h"}, kind="zoneout")
    assert "bad_c" not in [p.name for p in positions.all_positions()]


def test_an_unregistered_position_and_a_method_on_a_cell_it_cannot_use_are_usage_errors():
    plugins.register_method(MethodSpec(name="typo_method", paper="x", options=dict(p_x=0.2),
                                       noise=lambda cfg: Noise(extra={"cel_state": cfg.p_x})))
    try:
        with pytest.raises(UsageError, match="unknown mask position 'cel_state'; registered positions: .*cell_state"):
            config.resolve(plugins.get_task("ptb"), plugins.get_method("typo_method"), "smoke", {})
    finally:
        plugins.unregister("method", "typo_method")


def test_noise_extra_is_validated_and_normalised():
    n = Noise(extra={"cell_state": 0.25})
    assert n.extra == (("cell_state", 0.25),) and hash(n) == hash(Noise(extra=(("cell_state", 0.25),)))
    with pytest.raises(ValueError, match="must be in \\[0, 1\\)"):
        Noise(extra={"cell_state": 1.0})
    with pytest.raises(ValueError, match="must map position names to rates"):
        Noise(extra={"cell_state": "high"})
    assert Noise(extra={"cell_state": 0.0}).per_step is False and n.per_step


def test_the_trainer_and_the_tasks_never_name_a_cell_type_or_a_method():
    """The cell type reaches the model as `cfg.cell` only: the trainer, the runner and the tasks name
    no cell type, method or kernel; bench/rnn.py's layers name no method, position or kernel (its
    LSTMLayer / GRULayer conveniences name their cell type, nothing else does)."""
    import re
    methods = ["rnndrop", "zoneout", "semeniuta", "zaremba", "naive", "fraternal", "curriculum"]
    files = [REPO / "bench" / "train.py", REPO / "bench" / "runner.py", *sorted((REPO / "tasks").glob("*.py"))]
    for path in files + [REPO / "bench" / "rnn.py"]:
        code = "\n".join(l for l in path.read_text().splitlines() if not l.lstrip().startswith("#"))
        code = re.sub(r'"""(.|\n)*?"""', "", code)
        names = ["_VF.", "lstm_cell_loop(", "gru_cell_loop(", "cell_state", "rnndrop", "semeniuta"]
        if path in files:
            names += methods + ["'gru'", '"gru"', "'lstm'", '"lstm"', "LSTMStack", "LSTMLayer"]
        for name in names:
            assert name not in code, (path.name, name)
