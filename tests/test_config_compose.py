"""Methods that compose: protocols keyed by task kind, wrappers inheriting their base's protocols,
wrapper chains of any depth, and `equal` meaning the same model for every method of a task."""
import math

import pytest
import torch

from bench import api, config, plugins
from bench.api import Batch, NoiseState
from bench.errors import UsageError
from tasks._text import Vocab


def resolve(task="ptb", method="zaremba", protocol="smoke", **overrides):
    return config.resolve(plugins.get_task(task), plugins.get_method(method), protocol,
                          {k: str(v) for k, v in overrides.items()})


@pytest.fixture
def temp_plugins():
    """Register throw-away tasks/methods; unregistered afterwards."""
    added = []

    def add(kind, spec):
        (plugins.register_task if kind == "task" else plugins.register_method)(spec)
        added.append((kind, spec.name))
        return spec
    yield add
    for kind, name in added:
        plugins.unregister(kind, name)


# --- 6. protocols keyed by task kind ----------------------------------------------------------

def test_tasks_declare_their_kind():
    kinds = {t: plugins.get_task(t).kind for t in ("ptb", "wikitext-2", "sst2", "sst5", "multi30k-de-en", "iwslt14-de-en")}
    assert kinds == {"ptb": "lm", "wikitext-2": "lm", "sst2": "classification", "sst5": "classification",
                     "multi30k-de-en": "translation", "iwslt14-de-en": "translation"}


def test_a_new_classification_task_gets_awds_adam_recipe_not_lr30_ntasgd(temp_plugins):
    from tasks.sentiment import FILES, Sentiment
    temp_plugins("task", Sentiment("sst2-copy", "sst", 2, FILES, "a new classification task"))
    for method in ("awd", "fraternal"):
        cfg = resolve("sst2-copy", method, "equal")
        assert (cfg.optimizer, cfg.lr, cfg.clip) == ("adam", 1e-3, 5.0), method
    lm = resolve("ptb", "awd", "equal")
    assert (lm.optimizer, lm.lr, lm.clip) == ("ntasgd", 30.0, 0.25)


def test_protocol_selectors_star_kind_and_name_in_that_order(temp_plugins):
    temp_plugins("method", api.MethodSpec(
        name="selector_probe", paper="x", noise=lambda cfg: api.Noise(), options=dict(p_a=0.1),
        protocols={"probe": {"*": dict(p_a=0.2, lr=0.5), "kind:lm": dict(p_a=0.3), "ptb": dict(p_a=0.4)},
                   "lm-only": {"kind:lm": dict(p_a=0.5)}}))
    assert resolve("ptb", "selector_probe", "probe").p_a == 0.4
    assert resolve("wikitext-2", "selector_probe", "probe").p_a == 0.3
    sst = resolve("sst2", "selector_probe", "probe")
    assert (sst.p_a, sst.lr) == (0.2, 0.5)
    assert "lm-only" in config.protocols_for(plugins.get_task("ptb"), plugins.get_method("selector_probe"))
    with pytest.raises(UsageError, match="unknown protocol 'lm-only' for task 'sst2'"):
        resolve("sst2", "selector_probe", "lm-only")


# --- 7. wrappers inherit their base's protocols ------------------------------------------------

@pytest.mark.parametrize("task", ["sst2", "multi30k-de-en"])
def test_curriculum_over_awd_uses_awds_equal_protocol(task):
    cfg = resolve(task, "curriculum", "equal", base="awd")
    assert (cfg.optimizer, cfg.lr, cfg.clip, cfg.p_weight) == ("adam", 1e-3, 5.0, 0.5)
    assert resolve("ptb", "curriculum", "equal", base="awd").optimizer == "ntasgd"


def test_curriculum_over_awd_is_offered_awds_paper_protocol():
    ptb = plugins.get_task("ptb")
    assert "paper" in config.protocols_for(ptb, plugins.get_method("curriculum"), {"base": "awd"})
    assert resolve("ptb", "curriculum", "paper", base="awd").epochs == 500
    assert "paper" not in config.protocols_for(ptb, plugins.get_method("curriculum"), {"base": "naive"})


# --- 8. chains of wrappers ---------------------------------------------------------------------

def test_curriculum_over_fraternal_over_awd_resolves_every_level():
    cur = plugins.get_method("curriculum")
    chain = config.method_chain(cur, {"base": "fraternal"})
    assert [m.name for m in chain] == ["awd", "fraternal", "curriculum"]
    cfg = resolve("ptb", "curriculum", base="fraternal", gamma=0.01)
    assert (cfg.base, cfg.fraternal_base, cfg.kappa, cfg.gamma, cfg.p_weight) == ("fraternal", "awd", 0.1, 0.01, 0.5)
    assert (cfg.ar, cfg.nonmono, cfg.optimizer) == (0.0, 60, "ntasgd")      # fraternal's recipe over awd's
    with pytest.raises(UsageError, match="option kappa=-1.0 must be >= 0"):  # each level is validated
        resolve("ptb", "curriculum", base="fraternal", kappa=-1)
    with pytest.raises(UsageError, match="option p_weight=1.5 is not a probability"):
        resolve("ptb", "curriculum", base="fraternal", p_weight=1.5)


def test_wrapper_cycles_and_shared_base_options_are_errors(temp_plugins):
    with pytest.raises(UsageError, match=r"option fraternal_base='curriculum': a method cannot be its own base "
                                         r"\(curriculum -> fraternal -> curriculum\)"):
        resolve("ptb", "curriculum", base="fraternal", fraternal_base="curriculum")
    temp_plugins("method", api.MethodSpec(name="other_wrapper", paper="x", base_option="base",
                                          options=dict(base="curriculum"), noise=lambda cfg: api.Noise()))
    with pytest.raises(UsageError, match="both name their base with option 'base'"):
        resolve("ptb", "other_wrapper")


def test_curriculum_over_fraternal_over_awd_hooks(tiny_lm):
    """Two passes per step (fraternal), rates ramped from 0 (curriculum), DropConnect (awd)."""
    task, root = tiny_lm
    method = plugins.get_method("curriculum")
    cfg = resolve(task.name, "curriculum", base="fraternal", gamma=0.01)
    noise = method.noise(cfg)
    assert noise == plugins.get_method("awd").noise(cfg) and noise.weight == 0.5 and noise.io_mask == "locked"
    assert method.schedule(0, noise, cfg).weight == 0.0
    assert math.isclose(method.schedule(100, noise, cfg).weight, 0.5 * (1 - math.exp(-1)))
    data = task.load(root, cfg)
    torch.manual_seed(0)
    model = task.build_model(data, cfg, NoiseState(noise)).train()
    x = data["train"][:cfg.bptt * 4].view(cfg.bptt, 4)
    batch = Batch((x[:-1], x[1:]), n_tokens=x[1:].numel())
    calls = []

    def forward():
        calls.append(1)
        return task.forward(model, batch, None, cfg)
    loss, out = method.loss(forward, cfg)
    assert len(calls) == 2 and loss > out.loss / 2


def test_curriculum_over_fraternal_over_awd_trains(tiny_lm, monkeypatch):
    """One short training: two forward passes per step, DropConnect rate ramping up from 0."""
    from bench import seeding
    from bench.train import train
    task, root = tiny_lm
    method = plugins.get_method("curriculum")
    cfg = resolve(task.name, "curriculum", base="fraternal", gamma=0.05, epochs=1)
    data = task.load(root, cfg)
    steps, weights = [], []
    batches, forward = task.train_batches, task.forward

    def counting_batches(*args):
        for b in batches(*args):
            steps.append(1)
            yield b

    def recording_forward(model, batch, state, cfg):
        weights.append(model.noise.noise.weight)
        return forward(model, batch, state, cfg)
    monkeypatch.setattr(task, "train_batches", counting_batches)
    monkeypatch.setattr(task, "forward", recording_forward)
    res = train(task, method, cfg, data, torch.device("cpu"), seeding.seed_everything(0), progress=False)
    assert res.status == "ok" and math.isfinite(res.test)
    assert len(steps) > 5 and len(weights) == 2 * len(steps)                   # fraternal: two passes
    assert weights[0] == weights[1] == 0.0 and 0 < weights[-1] < 0.5            # curriculum over awd
    assert all(a <= b for a, b in zip(weights, weights[1:]))


# --- 9. equal means equal ----------------------------------------------------------------------

def fake_data(task):
    """Vocabularies only: enough to build a model (parameter counts), no data read."""
    vocab = Vocab([[f"w{i}" for i in range(40)]])
    if task.kind == "lm":
        return dict(vocab=50)
    if task.kind == "classification":
        return dict(vocab=vocab, classes=task.classes)
    return dict(src_vocab=vocab, tgt_vocab=vocab)


@pytest.mark.parametrize("task_name", ["ptb", "wikitext-2", "sst2", "sst5", "multi30k-de-en", "iwslt14-de-en"])
def test_equal_gives_every_method_the_same_parameter_count(task_name):
    task = plugins.get_task(task_name)
    counts = {}
    for m in plugins.list_methods():
        method = plugins.get_method(m)
        cfg = config.resolve(task, method, "equal", {})
        model = task.build_model(fake_data(task), cfg, NoiseState(method.noise(cfg)))
        counts[m] = sum(p.numel() for p in model.parameters())
    assert len(set(counts.values())) == 1, counts


def test_a_method_cannot_change_what_equal_fixes(temp_plugins):
    temp_plugins("method", api.MethodSpec(name="bigger", paper="x", noise=lambda cfg: api.Noise(),
                                          protocols={"equal": {"kind:lm": dict(hidden_size=1500)}}))
    with pytest.raises(UsageError, match="method 'bigger' sets hidden_size under 'equal'.*fixes them"):
        resolve("ptb", "bigger", "equal")
