"""The `sweep` protocol and the sensitivity/importance plans (report sections 4-5): one training recipe
per task for every method, each method's own `cpu` rates as the defaults, one-at-a-time blocks and
seeded random draws that cover every rate."""
import pandas as pd
import pytest

from bench import api, campaign, config, plans, plugins
from bench.analysis import select
from bench.api import NoiseState
from test_campaign import specs_of, write_plan
from test_config_compose import fake_data, resolve, temp_plugins  # noqa: F401 (a fixture)

SWEEP_TASKS = ["ptb", "sst2", "multi30k-de-en"]
RECIPE_KEYS = ("optimizer", "lr", "lr_decay", "lr_decay_start", "clip", "wdecay", "var_bptt", "loss_reduction")


@pytest.mark.parametrize("task_name", SWEEP_TASKS)
def test_sweep_gives_every_method_one_recipe_and_model(task_name):
    task = plugins.get_task(task_name)
    counts, recipes = {}, {}
    for m in plugins.list_methods():
        method = plugins.get_method(m)
        cfg = config.resolve(task, method, "sweep", {})
        model = task.build_model(fake_data(task), cfg, NoiseState(method.noise(cfg)))
        counts[m] = sum(p.numel() for p in model.parameters())
        recipes[m] = {k: cfg[k] for k in config.COMPUTE_KEYS + RECIPE_KEYS if k in cfg}
    assert len(set(counts.values())) == 1, counts
    assert len({tuple(sorted(r.items())) for r in recipes.values()}) == 1, recipes


@pytest.mark.parametrize("task_name", SWEEP_TASKS)
def test_sweep_rates_are_the_methods_cpu_rates_and_nothing_else_of_their_cpu_entry(task_name):
    for m in plugins.list_methods():
        cpu, sweep = resolve(task_name, m, "cpu"), resolve(task_name, m, "sweep")
        for p in select.dropout_params(m):
            assert sweep[p] == cpu[p], (m, p)
    awd = resolve("ptb", "awd", "sweep")
    assert (awd.optimizer, awd.lr, awd.clip, awd.var_bptt) == ("sgd", 1.0, 5.0, False)   # not AWD's NT-ASGD
    assert (awd.ar, awd.tar) == (2.0, 1.0)            # AR/TAR are part of AWD's regularisation
    assert resolve("ptb", "zoneout", "sweep").z_c == 0.5


def test_sweep_is_a_slice_of_the_cpu_model_and_a_method_cannot_change_it(temp_plugins):
    cpu, sweep = resolve("ptb", "zaremba", "cpu"), resolve("ptb", "zaremba", "sweep")
    assert (sweep.hidden_size, sweep.layers, sweep.tie_weights) == (cpu.hidden_size, cpu.layers, cpu.tie_weights)
    assert 0 < sweep.train_tokens < 929_589 and sweep.epochs < cpu.epochs
    assert 0 < resolve("sst2", "zaremba", "sweep").train_examples < 6920
    temp_plugins("method", api.MethodSpec(name="longer", paper="x", noise=lambda cfg: api.Noise(),
                                          protocols={"sweep": {"*": dict(epochs=50)}}))
    with pytest.raises(Exception, match="method 'longer' sets epochs under 'sweep'.*fixes them"):
        resolve("ptb", "longer", "sweep")


def test_each_varies_one_option_at_a_time_and_drops_repeated_configs(tmp_path):
    path = write_plan(tmp_path, '[[block]]\nprotocol = "smoke"\ntasks = ["ptb"]\nmethods = ["zaremba"]\n'
                                'seeds = [0]\n[block.each]\np_emb = [0.0, 0.2]\np_out = [0.0, 0.2, 0.25]\n')
    specs = specs_of(path)
    default = resolve("ptb", "zaremba", "smoke")
    assert len(specs) == 5
    for s in specs:
        changed = {k for k in s.cfg if s.cfg[k] != default[k]}
        assert len(changed) <= 1 and changed <= {"p_emb", "p_out"}
    smoke_default = default.p_out
    again = write_plan(tmp_path, '[[block]]\nprotocol = "smoke"\ntasks = ["ptb"]\nmethods = ["zaremba"]\n'
                                 f'[block.each]\np_emb = [{default.p_emb}]\np_out = [{smoke_default}]\n', "d")
    assert len(specs_of(again)) == 1                  # both values are the defaults: one run


def test_each_must_list_values(tmp_path):
    path = write_plan(tmp_path, '[[block]]\nprotocol = "smoke"\ntasks = ["ptb"]\nmethods = ["zaremba"]\n'
                                '[block.each]\np_emb = []\n')
    with pytest.raises(Exception, match=r"each\.p_emb: expected a non-empty list"):
        specs_of(path)


def test_sweep_plans_cover_every_rate_with_enough_values_and_seeds():
    specs = specs_of("sweep")
    assert {s.protocol for s in specs} == {"sweep"} and len(specs) == len({s.run_id for s in specs})
    for task in ("ptb", "sst2"):
        for m in plugins.list_methods():
            default = resolve(task, m, "sweep")
            rows = [s for s in specs if s.task == task and s.method == m]
            assert {s.seed for s in rows if s.cfg == dict(default)} == {0, 1}, (task, m)
            own = [p for p in select.dropout_params(m) if p in plugins.get_method(m).options]
            for p in own:                                  # the wrappers: their own kappa / gamma
                at = [s for s in rows if all(s.cfg[k] == default[k] for k in s.cfg if k != p)]
                values = sorted({s.cfg[p] for s in at})
                assert len(values) >= 6, (task, m, p, values)
                for end in (values[0], values[-1]):
                    assert {s.seed for s in at if s.cfg[p] == end} == {0, 1}, (task, m, p, end)
    m30 = {s.method for s in specs if s.task == "multi30k-de-en"}
    assert m30 == set(plugins.list_methods())
    rnd = specs_of("sweep-random")
    for m in plugins.list_methods():
        if m == "none":
            continue
        draws = [s for s in rnd if s.method == m]
        assert len(draws) >= 24 and {s.task for s in draws} == {"ptb"}
        for p in select.dropout_params(m):
            assert len({s.cfg[p] for s in draws}) == len(draws), (m, p)     # every rate varies
    assert plans.load_plan("sweep").numerics == plans.load_plan("sweep-random").numerics == "native"


def test_points_of_a_sweep_share_one_speed_measurement():
    specs = [s for s in specs_of("sweep") if s.task == "ptb" and s.method == "zaremba"]
    keys = {campaign.speed_key(s) for s in specs}
    nonzero = {campaign.speed_key(s) for s in specs if all(s.cfg[p] > 0 for p in ("p_emb", "p_hid", "p_out"))}
    assert len(nonzero) == 1 and 1 < len(keys) <= 4       # only which rates are zero changes the key


def test_estimator_measures_once_per_speed_key(monkeypatch):
    specs = [s for s in specs_of("sweep") if s.task == "sst2" and s.method == "gal"]
    calls = []
    monkeypatch.setattr(campaign, "measure", lambda spec, *a: calls.append(spec) or (1.0, "measured"))
    est = campaign.Estimator(pd.DataFrame(columns=["status", "device", "config_hash", "task", "method",
                                                   "protocol", "wall_s"]), "cpu", None, 1)
    for s in specs:
        est(s)
    assert len(calls) == len({campaign.speed_key(s) for s in specs}) < len(specs)
