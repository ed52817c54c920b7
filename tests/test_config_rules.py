"""No silent acceptance: every key of a run has valid values (choices or a range) checked when the
config is resolved, and a key the task does not read is neither accepted nor hashed."""
import math

import pytest

from bench import api, config, plugins
from bench.errors import UsageError

BUILT_IN_TASKS = ["ptb", "wikitext-2", "sst2", "sst5", "multi30k-de-en", "iwslt14-de-en"]


def resolve(task="ptb", method="zaremba", protocol="smoke", **overrides):
    return config.resolve(plugins.get_task(task), plugins.get_method(method), protocol,
                          {k: str(v) for k, v in overrides.items()})


def every_config():
    """(task, method, protocol, cfg, rules) of every built-in task x method x offered protocol."""
    for t in BUILT_IN_TASKS:
        task = plugins.get_task(t)
        for m in plugins.list_methods():
            method = plugins.get_method(m)
            for p in config.protocols_for(task, method):
                cfg = config.resolve(task, method, p, {})
                yield t, m, p, cfg, config.rules(task, config.method_chain(method, {}))


# --- 1. string keys: one table of choices, checked at resolution --------------------------------

@pytest.mark.parametrize("task,method,key,value", [
    ("ptb", "zaremba", "optimizer", "adamw"),           # used to train with SGD
    ("sst2", "zaremba", "optimizer", "Adam"),
    ("ptb", "zaremba", "loss_reduction", "sum"),         # used to mean "mean"
    ("multi30k-de-en", "zaremba", "attention", "luong"),
    ("sst2", "zaremba", "pool", "avg"),
    ("ptb", "gal", "gates", "both"),
    ("ptb", "semeniuta", "cell_mask", "time"),
    ("ptb", "zoneout", "io_mask", "variational"),
])
def test_enum_keys_reject_values_outside_their_choices(task, method, key, value):
    rules = config.rules(plugins.get_task(task), [plugins.get_method(method)])
    with pytest.raises(UsageError, match=f"option {key}='{value}' is not one of: "
                                         + ", ".join(rules[key])):
        resolve(task, method, **{key: value})


def test_bad_choice_from_a_recipe_is_caught_at_resolution(tiny_lm):
    """Not only SET=: a plugin's recipe value goes through the same table."""
    plugins.register_method(api.MethodSpec(name="bad_recipe", paper="x", noise=lambda cfg: api.Noise(),
                                           recipe=dict(optimizer="adamw")))
    try:
        with pytest.raises(UsageError, match="option optimizer='adamw' is not one of: sgd, ntasgd, adam"):
            resolve("ptb", "bad_recipe")
    finally:
        plugins.unregister("method", "bad_recipe")


def test_every_string_key_has_choices_and_every_number_a_range():
    seen = 0
    for t, m, p, cfg, rules in every_config():
        bases = {mm.base_option for mm in config.method_chain(plugins.get_method(m), {}) if mm.base_option}
        for key, value in cfg.items():
            if isinstance(value, bool) or key in bases:
                continue
            rule = rules.get(key)
            if isinstance(value, str):
                assert isinstance(rule, tuple) and value in rule, (t, m, p, key)
            else:
                assert isinstance(value, (int, float)), (t, m, p, key)
                assert isinstance(rule, api.Range) and value in rule, (t, m, p, key, value)
            seen += 1
    assert seen > 1000


def test_rule_tables_name_only_keys_that_exist():
    for name in BUILT_IN_TASKS:
        task = plugins.get_task(name)
        assert set(task.choices) | set(task.ranges) <= set(task.defaults), name
        for proto, overrides in task.protocols.items():
            assert set(overrides) <= set(config.task_keys(task)), (name, proto)
    for name in plugins.list_methods():
        m = plugins.get_method(name)
        assert set(m.rules()) <= set(m.options), name
    assert set(config.CHOICES) | set(config.RANGES) <= set(config.DEFAULTS)


# --- 2. keys a task does not read --------------------------------------------------------------

def test_lm_recipe_keys_are_dropped_on_a_classifier():
    cfg = resolve("sst2", "awd", "equal")
    for key in ("bptt", "var_bptt", "ar", "tar", "tie_weights", "loss_reduction", "mc_samples"):
        assert key not in cfg
    assert (cfg.p_weight, cfg.emb_size, cfg.optimizer) == (0.5, 300, "adam")
    ptb = resolve("ptb", "awd", "paper")
    assert ptb.bptt == 70 and ptb.var_bptt and ptb.mc_samples == 0


def test_every_key_of_a_run_is_read_by_its_task_or_method():
    for t, m, p, cfg, _ in every_config():
        chain = config.method_chain(plugins.get_method(m), {})
        read = set(config.task_keys(plugins.get_task(t))).union(*(mm.options for mm in chain))
        assert set(cfg) <= read, (t, m, p, sorted(set(cfg) - read))


@pytest.mark.parametrize("task,method,key,value,readers", [
    ("sst2", "awd", "bptt", 50, "task\\(s\\) .*ptb.*wikitext-2"),
    ("sst2", "zaremba", "mc_samples", 10, "task\\(s\\) .*ptb"),
    ("multi30k-de-en", "gal", "mc_samples", 10, "task\\(s\\) .*ptb"),
    ("ptb", "zaremba", "pool", "mean", "task\\(s\\) .*sst2, sst5"),
    ("ptb", "zaremba", "p_weight", 0.3, "method\\(s\\) awd"),
])
def test_setting_a_key_the_run_does_not_read_is_an_error(task, method, key, value, readers):
    with pytest.raises(UsageError, match=f"task '{task}' with method '{method}' does not use option {key} "
                                         f"\\(read by {readers}"):
        resolve(task, method, **{key: value})


def test_mc_samples_is_an_lm_key_and_gal_still_uses_it():
    assert resolve("ptb", "gal", "paper-mc").mc_samples == 1000
    assert resolve("ptb", "gal", mc_samples=5).mc_samples == 5
    with pytest.raises(UsageError, match="option mc_samples=-1 must be >= 0"):
        resolve("ptb", "gal", mc_samples=-1)
    assert "mc_samples" not in resolve("sst2", "gal")            # gal elsewhere: no crash, no key
    assert "mc_samples" not in resolve("multi30k-de-en", "gal")


def test_a_recipe_key_the_task_does_not_read_does_not_change_its_hash(monkeypatch):
    before = {t: config.config_hash(resolve(t, "awd", "equal")) for t in ("sst2", "ptb")}
    monkeypatch.setitem(plugins.get_method("awd").recipe, "var_bptt", False)
    assert config.config_hash(resolve("sst2", "awd", "equal")) == before["sst2"]
    assert config.config_hash(resolve("ptb", "awd", "equal")) != before["ptb"]


# --- 3. numeric ranges ---------------------------------------------------------------------------

@pytest.mark.parametrize("task,method,key,value,valid", [
    ("ptb", "zaremba", "lr", -1, "> 0"),
    ("ptb", "zaremba", "lr", 0, "> 0"),
    ("ptb", "zaremba", "lr", "nan", "> 0"),
    ("ptb", "zaremba", "lr", "inf", "> 0"),
    ("ptb", "zaremba", "lr_decay", 0, "> 0"),
    ("ptb", "zaremba", "lr_decay_start", -1, ">= 0"),
    ("ptb", "zaremba", "bptt", 0, ">= 1"),
    ("ptb", "zaremba", "hidden_size", 0, ">= 1"),
    ("ptb", "zaremba", "emb_size", -5, ">= 1"),
    ("ptb", "zaremba", "layers", 0, ">= 1"),
    ("ptb", "zaremba", "clip", -0.5, ">= 0"),
    ("ptb", "zaremba", "wdecay", -1e-6, ">= 0"),
    ("ptb", "zaremba", "nonmono", 0, ">= 1"),
    ("ptb", "zaremba", "batch_size", 0, ">= 1"),
    ("ptb", "zaremba", "eval_batch_size", 0, ">= 1"),
    ("ptb", "zaremba", "init_range", -0.1, ">= 0"),
    ("ptb", "zaremba", "ar", -1, ">= 0"),
    ("ptb", "zaremba", "train_tokens", -1, ">= 0"),
    ("ptb", "gal", "mc_samples", -1, ">= 0"),
    ("sst2", "zaremba", "min_freq", 0, ">= 1"),
    ("sst2", "zaremba", "eval_examples", -1, ">= 0"),
    ("multi30k-de-en", "zaremba", "beam_size", 0, ">= 1"),
    ("multi30k-de-en", "zaremba", "max_len_b", 0, ">= 1"),
    ("multi30k-de-en", "zaremba", "max_len_a", -1, ">= 0"),
    ("multi30k-de-en", "zaremba", "len_penalty", -1, ">= 0"),
    ("ptb", "fraternal", "kappa", -0.1, ">= 0"),
    ("ptb", "curriculum", "gamma", -1, ">= 0"),
    ("ptb", "zaremba", "base_seed", -1, ">= 0"),
])
def test_numeric_options_outside_their_range_are_rejected(task, method, key, value, valid):
    with pytest.raises(UsageError, match=f"option {key}=.* must be {valid}"):
        resolve(task, method, **{key: value})


def test_range_membership_and_text():
    assert 0.5 in api.PROBABILITY and 1.0 not in api.PROBABILITY and math.nan not in api.PROBABILITY
    assert 1 in api.AT_LEAST_1 and 0 not in api.AT_LEAST_1 and True not in api.AT_LEAST_1
    assert 0 not in api.POSITIVE and math.inf not in api.NON_NEGATIVE
    assert (str(api.PROBABILITY), str(api.POSITIVE), str(api.AT_LEAST_1)) == ("in [0, 1)", "> 0", ">= 1")
