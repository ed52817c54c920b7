"""The `cpu` protocol: defined where a run fits a 2-core machine, the same budget for every method of a
task (model, epochs, batches, full data), each method's own recipe and small-model rates."""
import pytest

from bench import api, config, plugins
from bench.api import NoiseState
from bench.errors import UsageError
from test_config_compose import fake_data, resolve, temp_plugins  # noqa: F401 (a fixture)

CPU_TASKS = ["ptb", "wikitext-2", "sst2", "sst5", "multi30k-de-en"]


@pytest.mark.parametrize("task_name", CPU_TASKS)
def test_cpu_gives_every_method_the_same_model_budget_and_full_data(task_name):
    task = plugins.get_task(task_name)
    counts, budgets = {}, {}
    for m in plugins.list_methods():
        method = plugins.get_method(m)
        cfg = config.resolve(task, method, "cpu", {})
        model = task.build_model(fake_data(task), cfg, NoiseState(method.noise(cfg)))
        counts[m] = sum(p.numel() for p in model.parameters())
        budgets[m] = {k: cfg[k] for k in config.COMPUTE_KEYS if k in cfg}
        assert all(cfg.get(k, 0) == 0 for k in ("train_tokens", "eval_tokens", "train_examples", "eval_examples"))
    assert len(set(counts.values())) == 1, counts
    assert len({tuple(sorted(b.items())) for b in budgets.values()}) == 1, budgets


@pytest.mark.parametrize("task_name", ["iwslt14-de-en"])
def test_tasks_too_big_for_a_cpu_say_why(task_name):
    with pytest.raises(UsageError, match=f"protocol 'cpu' is not defined for task '{task_name}': GPU-only"):
        resolve(task_name, "zaremba", "cpu")
    assert "cpu" not in config.protocols_for(plugins.get_task(task_name), plugins.get_method("awd"))


def test_none_has_no_noise_and_the_default_recipe():
    cfg = resolve("ptb", "none", "cpu")
    assert plugins.get_method("none").noise(cfg) == api.Noise()
    assert (cfg.optimizer, cfg.lr, cfg.hidden_size, cfg.epochs) == ("sgd", 1.0, 200, 13)


def test_methods_keep_their_recipe_under_cpu():
    awd = resolve("ptb", "awd", "cpu")
    assert (awd.optimizer, awd.lr, awd.lr_decay, awd.clip, awd.init_range) == ("ntasgd", 30.0, 1.0, 0.25, 0.0)
    assert awd.tie_weights is False and awd.bptt == 35                     # the task's budget
    assert resolve("sst2", "awd", "cpu").optimizer == "adam"
    assert resolve("ptb", "fraternal", "cpu").p_weight == awd.p_weight     # fraternal over awd
    assert resolve("ptb", "curriculum", "cpu").p_emb == resolve("ptb", "zaremba", "cpu").p_emb


def test_a_method_cannot_change_the_cpu_budget(temp_plugins):
    temp_plugins("method", api.MethodSpec(name="longer", paper="x", noise=lambda cfg: api.Noise(),
                                          protocols={"cpu": {"*": dict(epochs=50)}}))
    with pytest.raises(UsageError, match="method 'longer' sets epochs under 'cpu'.*fixes them"):
        resolve("ptb", "longer", "cpu")


def test_make_list_says_which_tasks_have_no_cpu_protocol_and_why(capsys):
    from bench.cli import main
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    iwslt = " ".join(out.split("  iwslt14-de-en ")[1].split("options:")[0].split())
    assert "no cpu protocol: GPU-only" in iwslt
    assert "no cpu protocol" not in out.split("  ptb ")[1].split("options:")[0]
