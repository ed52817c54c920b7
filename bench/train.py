"""The training loop shared by every task and method: plain, linear, greppable.

The method's hooks decide the noise (`noise`), the loss (`loss`) and its schedule (`schedule`);
the task's hooks decide data, model, forward pass and metrics. Nothing here names a method.

Long runs survive interruption: with a `Checkpoint`, the full state is saved at every epoch end
(and mid-epoch when a stop signal arrives), and a run started from a checkpoint continues bit for bit
(bench/checkpoint.py lists what is saved).
"""
from __future__ import annotations

import itertools
import math
import sys
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from bench.api import NoiseState
from bench.checkpoint import Interrupted, rng_states, set_rng_states
from bench.results import weights_digest

PROBE_STEPS = 8          # the training losses of the first steps are stored for cheap verification


@dataclass
class TrainResult:
    status: str                      # ok | diverged | probe (stopped after max_steps)
    valid: float                     # best valid selection metric
    test: float                      # test metric of the best-valid weights
    valid_loss: float
    best_epoch: int
    epochs: int                      # epochs run
    params: int
    train_s: float
    tokens: int
    rnn_path: str
    history: list = field(default_factory=list)     # one dict per epoch: the learning curves
    probe: list = field(default_factory=list)       # training loss of the first PROBE_STEPS steps
    test_extras: dict = field(default_factory=dict)  # e.g. the BLEU signature
    test_examples: dict | None = None                # per-example test outcomes (the side file)
    weights_sha256: str = ""                         # of the best-valid weights (results.weights_digest)


def _detach(state):
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(_detach(s) for s in state)


def _to(state, device):
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.to(device)
    return type(state)(_to(s, device) for s in state)


def make_optimizer(model, cfg):
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.wdecay)
    if cfg.optimizer in ("sgd", "ntasgd"):
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.wdecay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")   # config.resolve rejects it first


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


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def merge_paths(a: str, b: str) -> str:
    """Union of two rnn path descriptions: "fast,fused" or, per stack, "enc:fused dec:fast"."""
    parts: dict[str, set] = {}
    for text in (a, b):
        for part in text.split():
            prefix, _, names = part.rpartition(":")
            parts.setdefault(prefix, set()).update(n for n in names.split(",") if n)
    return " ".join((f"{p}:" if p else "") + ",".join(sorted(v)) for p, v in parts.items())


def _fresh_state() -> dict:
    """The loop's counters and records: what a checkpoint holds besides weights and RNGs."""
    return dict(epoch=1, batch=0, step=0, tokens=0, train_s=0.0, wall_s=0.0, val_losses=[], history=[],
                best=dict(loss=math.inf, epoch=0, state=None, valid=math.nan), probe=[],
                epoch_rng=None, carry=None, loss_sum=0.0, loss_n=0, paths="")


def optimizer_step(task, method, model, opt, batch, state, cfg, lr: float):
    """One training step: the method's loss plus the task's penalty, backward, clipping, the batch's
    lr, the update. Returns (loss, out); out is None when the loss is not finite (nothing updated)."""
    loss, out = method.loss(lambda: task.forward(model, batch, state, cfg), cfg)
    loss = loss + task.penalty(out, cfg)
    if not torch.isfinite(loss):
        return loss, None
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
    for g in opt.param_groups:
        g["lr"] = lr * batch.lr_scale
    opt.step()
    return loss, out


def train(task, method, cfg, data, device, rng, log=lambda name, value, step: None,
          progress: bool | None = None, checkpoint=None, stop=None, max_steps: int = 0,
          echo=print, impl: str = "auto") -> TrainResult:
    """Train and evaluate. `checkpoint`: a bench.checkpoint.Checkpoint to resume from and save to;
    `stop`: an object whose `requested` flag ends the run after the current step (checkpointed,
    raises Interrupted); `max_steps` > 0: stop after that many steps without evaluating (probe)."""
    base_noise = method.noise(cfg)
    noise = NoiseState(base_noise, impl=impl)
    model = task.build_model(data, cfg, noise).to(device)
    params = sum(p.numel() for p in model.parameters())
    opt = make_optimizer(model, cfg)
    average = None                                   # NT-ASGD's weight average, once triggered
    s = _fresh_state()
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        if saved["average"] is not None:
            average = WeightAverage(model)
            average.avg = [a.to(device) for a in saved["average"]["avg"]]
            average.n = saved["average"]["n"]
        s = saved["loop"]

    def snapshot():
        return dict(model=model.state_dict(), optimizer=opt.state_dict(), loop=s, rng=rng_states(rng),
                    average=None if average is None else dict(avg=average.avg, n=average.n))

    pending = saved["rng"] if saved is not None else None      # RNG states to restore on resume
    status, t_start = "ok", time.perf_counter() - s["wall_s"]
    for epoch in range(s["epoch"], cfg.epochs + 1):
        lr = epoch_lr(cfg, epoch)
        model.train()
        skip = s["batch"]
        if skip:                                     # mid-epoch resume: replay the epoch's batch order
            rng.bit_generator.state = s["epoch_rng"]
            state = _to(s["carry"], device)
        else:
            if pending is not None:
                set_rng_states(pending, rng)
                pending = None
            s["epoch_rng"] = rng.bit_generator.state
            state = task.init_state(data, cfg)
        t0 = time.perf_counter()
        batches = iter(task.train_batches(data, cfg, epoch, rng))     # a task may return a list
        next(itertools.islice(batches, skip, skip), None)   # drawn again, not trained: the bar starts after them
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, total=task.num_batches(data, cfg),
                   initial=skip, disable=progress is False, mininterval=2.0 if sys.stderr.isatty() else 60.0)
        for i, batch in enumerate(bar, start=skip):
            if pending is not None:                  # python/numpy/torch as at the interruption
                set_rng_states(pending)
                pending = None
            if method.schedule is not None:
                noise.noise = method.schedule(s["step"], base_noise, cfg)
            loss, out = optimizer_step(task, method, model, opt, batch, state, cfg, lr)
            if out is None:
                status = "diverged"
                break
            if average is not None:
                average.update()
            state = _detach(out.state)
            nll = out.extras.get("nll", out.loss).item()
            s["loss_sum"] += nll
            s["loss_n"] += 1
            if len(s["probe"]) < PROBE_STEPS:
                s["probe"].append(loss.item())
            s["step"] += 1
            s["batch"] = i + 1
            s["tokens"] += batch.n_tokens
            if max_steps and s["step"] >= max_steps:
                bar.close()
                return TrainResult("probe", math.nan, math.nan, math.nan, 0, 0, params, 0.0, s["tokens"],
                                   getattr(model, "rnn_paths", ""), [], list(s["probe"]))
            if stop is not None and stop.requested:
                bar.close()
                s["train_s"] += time.perf_counter() - t0
                s["wall_s"] = time.perf_counter() - t_start
                s["epoch"], s["carry"] = epoch, _to(state, "cpu")
                s["paths"] = merge_paths(s["paths"], getattr(model, "rnn_paths", ""))
                if checkpoint is not None:
                    checkpoint.save(snapshot())
                raise Interrupted(checkpoint.path if checkpoint is not None else None, epoch, s["step"])
        bar.close()
        s["paths"] = merge_paths(s["paths"], getattr(model, "rnn_paths", ""))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        s["train_s"] += time.perf_counter() - t0
        if status != "ok":
            break

        if average is not None:
            average.swap()
        ev = task.evaluate(model, data, "valid", cfg)
        sel = _selection_loss(ev, task)
        if not (math.isfinite(sel) and math.isfinite(ev[task.valid_metric])):
            status = "diverged"
            break
        best = s["best"]
        if sel < best["loss"]:
            s["best"] = dict(loss=sel, epoch=epoch, valid=ev[task.valid_metric], valid_loss=ev.get("loss", math.nan),
                             state={k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        if average is not None:
            average.swap()
        s["wall_s"] = time.perf_counter() - t_start
        train_loss = s["loss_sum"] / max(1, s["loss_n"])
        s["history"].append(dict(epoch=epoch, lr=lr, train_loss=train_loss, valid=ev[task.valid_metric],
                                 valid_loss=ev.get("loss", math.nan), averaged=average is not None,
                                 wall_s=s["wall_s"]))
        log("train_loss", train_loss, epoch)
        log("valid_" + task.valid_metric, ev[task.valid_metric], epoch)
        log("lr", lr, epoch)
        if cfg.optimizer == "ntasgd" and average is None and ntasgd_switch(s["val_losses"], sel, cfg.nonmono):
            average = WeightAverage(model)
            log("asgd_switch_epoch", epoch, epoch)
        s["val_losses"].append(sel)
        eta = s["wall_s"] / epoch * (cfg.epochs - epoch)
        echo(f"epoch {epoch}/{cfg.epochs}  train loss {train_loss:.4f}  valid {task.valid_metric} "
             f"{ev[task.valid_metric]:.3f}  lr {lr:.4g}  elapsed {_clock(s['wall_s'])}  ETA {_clock(eta)}"
             + ("  (averaged)" if average is not None else ""))
        s.update(epoch=epoch + 1, batch=0, carry=None, loss_sum=0.0, loss_n=0)
        if checkpoint is not None:
            checkpoint.save(snapshot())

    history, best = s["history"], s["best"]
    if status != "ok":       # a non-finite loss: no metric is reported for a diverged run
        return TrainResult(status, math.nan, math.nan, math.nan, best["epoch"], len(history), params,
                           s["train_s"], s["tokens"], s["paths"], history, s["probe"])
    model.load_state_dict(best["state"])
    test = task.evaluate(model, data, "test", cfg)
    log("test_" + task.metric, test[task.metric], best["epoch"])
    extras = {k: v for k, v in test.items() if isinstance(v, str)}
    return TrainResult(status, best["valid"], test[task.metric], best["valid_loss"], best["epoch"],
                       len(history), params, s["train_s"], s["tokens"], s["paths"], history,
                       s["probe"], extras, test.get("examples"), weights_digest(best["state"]))
