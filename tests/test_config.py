import pytest

from bench import config, plugins
from bench.errors import UsageError


def resolve(task="ptb", method="zaremba", protocol="smoke", **overrides):
    return config.resolve(plugins.get_task(task), plugins.get_method(method), protocol,
                          {k: str(v) for k, v in overrides.items()})


def test_layers_and_overrides():
    cfg = resolve(lr="0.5", epochs="3", p_out="0.3")
    assert cfg.lr == 0.5 and cfg.epochs == 3 and cfg.p_out == 0.3
    assert cfg.hidden_size == 24                      # the smoke protocol beats the task default
    paper = resolve(protocol="paper")
    assert (paper.hidden_size, paper.layers, paper.epochs, paper.lr, paper.clip) == (650, 2, 39, 1.0, 5.0)
    assert paper.loss_reduction == "sum_time" and paper.init_range == 0.05
    assert (paper.lr_decay, paper.lr_decay_start, paper.bptt, paper.batch_size) == (1.2, 6, 35, 20)
    assert not paper.tie_weights


def test_awd_recipe_and_fraternal_inherits_it():
    awd = resolve(method="awd", protocol="paper")
    assert (awd.layers, awd.hidden_size, awd.emb_size, awd.optimizer, awd.lr) == (3, 1150, 400, "ntasgd", 30.0)
    assert (awd.p_weight, awd.p_emb, awd.p_hid, awd.p_out, awd.p_word) == (0.5, 0.4, 0.25, 0.4, 0.1)
    assert awd.tie_weights and awd.var_bptt and (awd.ar, awd.tar, awd.clip) == (2.0, 1.0, 0.25)
    wt2 = resolve(task="wikitext-2", method="awd", protocol="paper")
    assert (wt2.p_emb, wt2.p_hid, wt2.batch_size, wt2.epochs) == (0.65, 0.2, 80, 750)
    fr = resolve(method="fraternal", protocol="paper")
    assert (fr.ar, fr.tar, fr.nonmono, fr.kappa, fr.fraternal_base, fr.p_weight) == (0.0, 0.0, 60, 0.1, "awd", 0.5)
    cur = resolve(method="curriculum", base="gal")
    assert cur.p_rec == 0.2 and cur.base == "gal" and cur.gamma == 0.001


def test_unknown_option_lists_valid_ones():
    with pytest.raises(UsageError, match=r"unknown option\(s\) lrr .*valid options: .*lr"):
        resolve(lrr=1)


def test_bad_types_and_values():
    with pytest.raises(UsageError, match="option epochs='three': expected int"):
        resolve(epochs="three")
    with pytest.raises(UsageError, match="option tie_weights='maybe': expected bool"):
        resolve(tie_weights="maybe")
    with pytest.raises(UsageError, match="epochs=0 must be >= 1"):
        resolve(epochs=0)


@pytest.mark.parametrize("method,key,value", [
    ("zaremba", "p_out", 1.0), ("zaremba", "p_emb", -0.1), ("zoneout", "z_c", 1.5),
    ("awd", "p_weight", "nan"), ("fraternal", "p_weight", 1.0), ("curriculum", "p_out", 2.0),
])
def test_probabilities_outside_unit_interval_are_rejected(method, key, value):
    with pytest.raises(UsageError, match=f"option {key}=.* is not a probability in \\[0, 1\\)"):
        resolve(method=method, **{key: value})


@pytest.mark.parametrize("method,overrides,message", [
    ("fraternal", dict(kappa=-0.1), "option kappa=-0.1 must be >= 0"),
    ("curriculum", dict(base="nope"), "option base: unknown method 'nope'; choose one of: .*zaremba"),
    ("fraternal", dict(fraternal_base="nope"), "option fraternal_base: unknown method"),
    ("curriculum", dict(base="curriculum"), "cannot be its own base"),
    ("curriculum", dict(gamma=-1), "option gamma=-1.0 must be >= 0"),
    ("gal", dict(gates="both"), "gates='both'"),
    ("semeniuta", dict(cell_mask="time"), "cell_mask='time'"),
])
def test_method_specific_validation(method, overrides, message):
    with pytest.raises(UsageError, match=message):
        resolve(method=method, **overrides)


def test_unknown_protocol_lists_choices():
    with pytest.raises(UsageError, match=r"unknown protocol 'papr' for task 'ptb' and method 'zaremba'; choose one of: cpu, equal, paper, paper-large, smoke"):
        resolve(protocol="papr")
    with pytest.raises(UsageError, match="unknown protocol"):
        resolve(method="naive", protocol="paper")      # naive has no published recipe


def test_config_hash_is_stable_and_sensitive():
    a, b = resolve(), resolve()
    assert config.config_hash(a) == config.config_hash(b)
    assert config.config_hash(resolve(lr=0.9)) != config.config_hash(a)
