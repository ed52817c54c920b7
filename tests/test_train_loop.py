"""bench.train.train on a scripted one-weight task: schedule, lr, NT-ASGD, model selection, divergence.

The model is one float64 weight w (0 at the start) and the training loss of a batch is w * c, so
every SGD step moves w by exactly -lr * lr_scale * c: the weights the task sees record the lr used.
Valid losses and metrics are scripted per epoch; the test metric is the weight itself, so it shows
which weights test was evaluated on.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from bench.api import Batch, ForwardOut, MethodSpec, Noise, Task
from bench.config import DEFAULTS, Config
from bench.train import train


class OneWeight(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))


class Scripted(Task):
    name = "scripted"
    metric = valid_metric = "score"

    def __init__(self, batches, valid, select_on="loss", higher_is_better=False):
        self.batches = batches               # one epoch: [(c, lr_scale), ...]
        self.valid = valid                   # per epoch: (valid loss, valid score)
        self.select_on, self.higher_is_better = select_on, higher_is_better
        self.seen = []                       # per training forward: (noise, w)
        self.evals = []                      # per evaluation: (split, w)

    def load(self, data_dir, cfg):
        return None

    def build_model(self, data, cfg, noise):
        self.noise = noise
        return OneWeight()

    def train_batches(self, data, cfg, epoch, rng):
        return [Batch(c, n_tokens=2, lr_scale=s) for c, s in self.batches]

    def forward(self, model, batch, state, cfg):
        self.seen.append((self.noise.noise, model.w.item()))
        return ForwardOut(model.w.view(1, 1), model.w * batch.data)

    def evaluate(self, model, data, split, cfg):
        self.evals.append((split, model.w.item()))
        if split == "test":
            return {"loss": 0.0, "score": model.w.item()}
        loss, score = self.valid[sum(s == "valid" for s, _ in self.evals) - 1]
        return {"loss": loss, "score": score}


def cfg_of(**kw):
    return Config({**DEFAULTS, **dict(epochs=1, lr=1.0, clip=0.0, wdecay=0.0, lr_decay=1.0), **kw})


def method_of(schedule=None, noise=Noise()):
    return MethodSpec(name="fake", paper="-", noise=lambda cfg: noise, schedule=schedule)


def run(task, cfg, method=None, log=None):
    logged = []
    res = train(task, method or method_of(), cfg, None, torch.device("cpu"), np.random.default_rng(0),
                log=log or (lambda name, value, step: logged.append((name, value, step))), progress=False)
    return res, logged


def valid_ws(task):
    return [w for split, w in task.evals if split == "valid"]


def test_schedule_is_called_with_each_step_and_its_noise_is_what_the_model_sees():
    base = Noise(emb=0.5)
    calls = []

    def schedule(step, noise, cfg):
        calls.append((step, noise))
        return Noise(emb=step / 10)
    task = Scripted([(1.0, 1.0)] * 3, [(1.0, 1.0)] * 2)
    res, _ = run(task, cfg_of(epochs=2), method_of(schedule, base))
    assert res.status == "ok"
    assert calls == [(s, base) for s in range(6)]                    # steps 0..5, across epochs
    assert [n for n, _ in task.seen] == [Noise(emb=s / 10) for s in range(6)]


def test_without_a_schedule_the_model_sees_the_methods_noise():
    task = Scripted([(1.0, 1.0)] * 2, [(1.0, 1.0)])
    run(task, cfg_of(), method_of(noise=Noise(rec=0.25)))
    assert [n for n, _ in task.seen] == [Noise(rec=0.25)] * 2


def test_lr_scale_multiplies_the_lr_of_its_step():
    task = Scripted([(1.0, 1.0), (1.0, 0.5), (1.0, 2.0), (1.0, 1.0)], [(1.0, 1.0)])
    res, _ = run(task, cfg_of(lr=0.1))
    ws = [w for _, w in task.seen]
    assert np.allclose(-np.diff(ws), [0.1, 0.05, 0.2])
    assert math.isclose(res.test, -0.45)                              # after the last step too
    assert res.tokens == 8


def test_lr_decays_by_epoch_after_lr_decay_start():
    task = Scripted([(1.0, 1.0)], [(5.0 - e, 0.0) for e in range(5)])  # improving: best is the last
    res, _ = run(task, cfg_of(epochs=5, lr=1.0, lr_decay=2.0, lr_decay_start=2))
    expected = [1.0, 1.0, 0.5, 0.25, 0.125]                           # lr / 2^(epoch - 2) after epoch 2
    assert [h["lr"] for h in res.history] == expected
    assert np.allclose(-np.diff([0.0] + valid_ws(task)), expected)     # the lr SGD used
    assert math.isclose(res.test, -sum(expected))


def test_test_is_evaluated_on_the_best_valid_weights_not_the_last():
    task = Scripted([(1.0, 1.0)], [(3.0, 30.0), (1.0, 10.0), (2.0, 20.0)])
    res, _ = run(task, cfg_of(epochs=3))
    assert valid_ws(task) == [-1.0, -2.0, -3.0]
    assert (res.best_epoch, res.epochs, res.valid, res.valid_loss) == (2, 3, 10.0, 1.0)
    assert task.evals[-1] == ("test", -2.0) and res.test == -2.0


@pytest.mark.parametrize("select_on, higher, best", [("loss", False, 1), ("loss", True, 1),
                                                      ("metric", True, 3), ("metric", False, 2)])
def test_select_on_loss_or_metric(select_on, higher, best):
    # losses favour epoch 1, the metric is highest at epoch 3 and lowest at epoch 2
    task = Scripted([(1.0, 1.0)], [(1.0, 5.0), (2.0, 1.0), (3.0, 9.0)], select_on, higher)
    res, _ = run(task, cfg_of(epochs=3))
    assert res.best_epoch == best
    assert res.valid == [5.0, 1.0, 9.0][best - 1] and res.test == -float(best)


def test_valid_loss_is_the_loss_of_the_best_epoch_when_selecting_on_the_metric():
    task = Scripted([(1.0, 1.0)], [(1.0, 5.0), (2.0, 1.0), (3.0, 9.0)], "metric", True)
    res, _ = run(task, cfg_of(epochs=3))
    assert res.best_epoch == 3 and res.valid_loss == 3.0


@pytest.mark.parametrize("nonmono, switch", [(1, 3), (2, 4)])
def test_ntasgd_switches_by_the_nonmono_rule_and_evaluates_the_averaged_weights(nonmono, switch):
    # valid loss worsens every epoch: the switch comes once `nonmono` earlier epochs are excluded
    task = Scripted([(1.0, 1.0)] * 2, [(float(e), 0.0) for e in range(1, 7)])
    res, logged = run(task, cfg_of(epochs=6, optimizer="ntasgd", nonmono=nonmono))
    assert [(v, s) for n, v, s in logged if n == "asgd_switch_epoch"] == [(switch, switch)]
    assert [h["averaged"] for h in res.history] == [e > switch for e in range(1, 7)]
    live = [-2.0 * e for e in range(1, 7)]                            # w after each epoch (2 steps of lr 1)
    # after the switch the average runs over the weights at the switch and after every later step
    expected = [live[e - 1] if e <= switch else -np.mean(np.arange(2 * switch, 2 * e + 1)) for e in range(1, 7)]
    assert np.allclose(valid_ws(task), expected)
    # the live weights are swapped back after evaluation: training goes on from them
    first_of_epoch = [w for _, w in task.seen][::2]
    assert first_of_epoch == [0.0] + live[:-1]
    assert res.best_epoch == 1 and res.test == -2.0


def test_sgd_never_averages():
    task = Scripted([(1.0, 1.0)], [(float(e), 0.0) for e in range(1, 5)])
    res, logged = run(task, cfg_of(epochs=4, optimizer="sgd", nonmono=1))
    assert not any(n == "asgd_switch_epoch" for n, _, _ in logged)
    assert valid_ws(task) == [-1.0, -2.0, -3.0, -4.0]


@pytest.mark.parametrize("name, cls, first_step", [("sgd", torch.optim.SGD, 0.3), ("ntasgd", torch.optim.SGD, 0.3),
                                                   ("adam", torch.optim.Adam, 0.1)])
def test_optimizer_choice(name, cls, first_step):
    used = []
    handle = register_optimizer_step_pre_hook(lambda opt, args, kw: used.append(opt))
    try:
        task = Scripted([(3.0, 1.0), (3.0, 1.0)], [(1.0, 1.0)])
        run(task, cfg_of(optimizer=name, lr=0.1))
    finally:
        handle.remove()
    assert len(used) == 2 and all(type(o) is cls for o in used) and used[0] is used[1]
    # SGD moves w by lr * grad (grad 3), Adam's first step by lr whatever the gradient's scale
    assert math.isclose(-task.seen[1][1], first_step, rel_tol=1e-6)


def test_non_finite_training_loss_is_diverged_with_nan_metrics():
    task = Scripted([(1.0, 1.0), (math.nan, 1.0), (1.0, 1.0)], [(1.0, 1.0)] * 3)
    res, _ = run(task, cfg_of(epochs=3))
    assert res.status == "diverged"
    assert math.isnan(res.valid) and math.isnan(res.test) and math.isnan(res.valid_loss)
    assert len(task.seen) == 2 and task.evals == []                   # stopped at once, no evaluation


def test_non_finite_valid_loss_is_diverged():
    task = Scripted([(1.0, 1.0)], [(1.0, 1.0), (math.inf, 1.0), (1.0, 1.0)])
    res, _ = run(task, cfg_of(epochs=3))
    assert res.status == "diverged" and math.isnan(res.test) and math.isnan(res.valid)
    assert [s for s, _ in task.evals] == ["valid", "valid"]           # no test evaluation
