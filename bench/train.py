"""The training loop shared by every task and method: plain, linear, greppable.

The method's hooks decide the noise (`noise`), the loss (`loss`) and its schedule (`schedule`);
the task's hooks decide data, model, forward pass and metrics. Nothing here names a method.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from bench.api import NoiseState


@dataclass
class TrainResult:
    status: str                      # ok | diverged
    valid: float                     # best valid selection metric
    test: float                      # test metric of the best-valid weights
    valid_loss: float
    best_epoch: int
    epochs: int                      # epochs run
    params: int
    train_s: float
    tokens: int
    rnn_path: str
    history: list = field(default_factory=list)


def _detach(state):
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(_detach(s) for s in state)


def make_optimizer(model, cfg):
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.wdecay)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.wdecay)


class WeightAverage:
    """Uniform average of the weights since the switch: NT-ASGD's averaged iterate."""

    def __init__(self, model):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.avg = [p.detach().clone() for p in self.params]
        self.n = 1

    @torch.no_grad()
    def update(self):
        self.n += 1
        for a, p in zip(self.avg, self.params):
            a.add_(p.detach() - a, alpha=1.0 / self.n)

    @torch.no_grad()
    def swap(self):
        """Exchange live and averaged weights (call twice to restore)."""
        for a, p in zip(self.avg, self.params):
            tmp = p.detach().clone()
            p.copy_(a)
            a.copy_(tmp)


def epoch_lr(cfg, epoch: int) -> float:
    """Step decay: lr / lr_decay^(epoch - lr_decay_start) after lr_decay_start (1-based epochs)."""
    return cfg.lr / (cfg.lr_decay ** max(0, epoch - cfg.lr_decay_start))


def ntasgd_switch(previous: list[float], current: float, nonmono: int) -> bool:
    """NT-ASGD (the AWD code's rule): start averaging when the current valid loss is worse than
    the best of all previous epochs except the last `nonmono`."""
    return len(previous) > nonmono and current > min(previous[:-nonmono])


def _selection_loss(ev: dict, task) -> float:
    """Lower is better: the valid loss (select_on="loss"), else the valid metric, signed."""
    if task.select_on == "loss":
        return ev["loss"]
    return -ev[task.valid_metric] if task.higher_is_better else ev[task.valid_metric]


def train(task, method, cfg, data, device, rng, log=lambda name, value, step: None,
          progress: bool | None = None) -> TrainResult:
    base_noise = method.noise(cfg)
    noise = NoiseState(base_noise)
    model = task.build_model(data, cfg, noise).to(device)
    params = sum(p.numel() for p in model.parameters())
    opt = make_optimizer(model, cfg)
    average = None                                   # NT-ASGD's weight average, once triggered
    val_losses, history = [], []
    best = dict(loss=math.inf, epoch=0, state=None, valid=math.nan)
    step, tokens, train_s, status, train_path = 0, 0, 0.0, "ok", ""

    for epoch in range(1, cfg.epochs + 1):
        lr = epoch_lr(cfg, epoch)
        model.train()
        state = task.init_state(data, cfg)
        t0 = time.perf_counter()
        batches = task.train_batches(data, cfg, epoch, rng)
        for batch in tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                          disable=None if progress is None else not progress, mininterval=2.0):
            if method.schedule is not None:
                noise.noise = method.schedule(step, base_noise, cfg)
            loss, out = method.loss(lambda: task.forward(model, batch, state, cfg), cfg)
            loss = loss + task.penalty(out, cfg)
            if not torch.isfinite(loss):
                status = "diverged"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            for g in opt.param_groups:
                g["lr"] = lr * batch.lr_scale
            opt.step()
            if average is not None:
                average.update()
            state = _detach(out.state)
            if step == 0:
                train_path = getattr(model, "rnn_paths", "")
            step += 1
            tokens += batch.n_tokens
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_s += time.perf_counter() - t0
        if status != "ok":
            break

        if average is not None:
            average.swap()
        ev = task.evaluate(model, data, "valid", cfg)
        sel = _selection_loss(ev, task)
        if not (math.isfinite(sel) and math.isfinite(ev[task.valid_metric])):
            status = "diverged"
            break
        if sel < best["loss"]:
            best = dict(loss=sel, epoch=epoch, valid=ev[task.valid_metric],
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})
        if average is not None:
            average.swap()
        history.append(dict(epoch=epoch, lr=lr, valid=ev[task.valid_metric], valid_loss=ev.get("loss", math.nan),
                            averaged=average is not None))
        log("valid_" + task.valid_metric, ev[task.valid_metric], epoch)
        log("lr", lr, epoch)
        if cfg.optimizer == "ntasgd" and average is None and ntasgd_switch(val_losses, sel, cfg.nonmono):
            average = WeightAverage(model)
            log("asgd_switch_epoch", epoch, epoch)
        val_losses.append(sel)

    if status != "ok":       # a non-finite loss: no metric is reported for a diverged run
        return TrainResult(status, math.nan, math.nan, math.nan, best["epoch"], len(history), params,
                           train_s, tokens, train_path, history)
    model.load_state_dict(best["state"])
    test = task.evaluate(model, data, "test", cfg)
    log("test_" + task.metric, test[task.metric], best["epoch"])
    return TrainResult(status, best["valid"], test[task.metric], best["loss"], best["epoch"],
                       len(history), params, train_s, tokens, train_path, history)
