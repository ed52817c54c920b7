"""Packs: E runs of one word-LM task, protocol, cell type and model shape, trained in one process as
one batched computation (bench/packmodel.py). A pack is an execution detail, not an experiment:
each member is built and initialised as its solo run (seeded by its own derived seed), draws its
masks from its own torch RNG state (swapped in around its draws, in its solo order and shapes) and
its batches from its own numpy generator, and has its own lr schedule, gradient clipping (its own
norm), weight decay, curriculum schedule, model selection and divergence (a member whose loss is
not finite is marked diverged and frozen; the others go on). Its row has the solo run's run id
and, up to float rounding, the solo run's numbers; `pack_size` and `pack_members` say it packed.
The test evaluation is the solo one: the member's best weights in a solo model, `task.evaluate`.

Which runs pack together (`why_not`, `pack_key`): word-LM tasks (PTB, WikiText-2), LSTM or GRU (one
cell type a pack: `cell` is shared), plain SGD,
fixed BPTT, one forward pass per step, no AR/TAR, no MC evaluation. Members may differ in method,
seed, every method option (rates: 0 is off) and in lr, lr_decay, lr_decay_start, clip, wdecay,
init_range (`MEMBER_KEYS`); everything else (shape, epochs, batch, BPTT, data, loss) is shared.
So none, zaremba, naive, gal (tied), semeniuta, zoneout, rnndrop and curriculum over any of these
pack together: their noise is masks of the mask-position registry (bench/positions.py), a rate per
member. Not packed, run solo (`run_pack` falls back to bench.runner.run, the solo row): awd
(variable BPTT gives members different batch lengths; NT-ASGD switches to averaging at a
per-member epoch; AR/TAR), fraternal (two passes per step, and AWD's recipe), gal untied / MC
(`paper-mc`), the adaptive softmax, and the non-LM tasks. (awd with SET="optimizer=sgd
var_bptt=false ar=0 tar=0" would pack: its DropConnect is a mask per member.)

Numerics: a member equals its solo run up to float rounding, not bit for bit (batched kernels sum in
another order): measured on this repository's smoke runs, step losses within 3e-7 relative over 50
steps, valid and test within 1e-6. On CUDA the matmuls are fp32 (the solo run's fused LSTM uses
cuDNN's TF32 by default). A trajectory that amplifies rounding (a GRU smoke run at lr 1) drifts
from its solo run as it would between two CPUs.

Rows: `run_pack` writes one row per member through bench.runner's `metrics_of` and `build_row`.
rnn_path is "pack" (a replay by verify-seeds runs the solo path, so it compares within tolerance).
Checkpoint: one for the pack, runs/<pack id>/checkpoint.pt, at each epoch end and on SIGTERM;
re-running the same pack resumes it bit for bit.

    python -m bench.pack --task ptb --protocol smoke --members '[{"method": "zaremba", "seed": 0}, ...]'
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench import config as config_mod
from bench import packmodel, plugins, results, seeding
from bench import train as train_mod
from bench.api import NoiseState, single_pass
from bench.checkpoint import Checkpoint, Interrupted, StopSignal
from bench.errors import UsageError

MEMBER_KEYS = ("lr", "lr_decay", "lr_decay_start", "clip", "wdecay", "init_range", "base_seed")
SINGLE_PASS_WRAPPERS = ("curriculum",)     # wrappers whose loss is their base's one pass
RNN_PATH = "pack"


@dataclass
class Member:
    method: object                  # MethodSpec
    cfg: dict                       # resolved Config
    seed: int
    protocol: str
    overrides: dict = field(default_factory=dict)
    run_id: str = ""
    cfg_hash: str = ""


def why_not(task, method, cfg) -> str:
    """Why this run cannot be a pack member ("" when it can)."""
    from tasks.lm import LanguageModelling
    if not isinstance(task, LanguageModelling):
        return f"task {task.name}: only the word-LM tasks pack"
    if cfg.cell not in packmodel.GATES:
        return f"cell={cfg.cell}: only LSTM and GRU networks pack"
    if cfg.optimizer != "sgd":
        return f"optimizer {cfg.optimizer}: only plain SGD is batched (NT-ASGD averages from a per-run epoch)"
    if cfg.var_bptt:
        return "variable BPTT: members' batches differ in length"
    if cfg.ar or cfg.tar:
        return "AR/TAR are not batched"
    if cfg.mc_samples:
        return "MC dropout evaluation is not batched"
    if cfg.get("softmax", "full") != "full":
        return f"softmax={cfg.softmax}: only the full softmax is batched"
    for m in config_mod.method_chain(method, dict(cfg)):
        if m.loss is not single_pass and m.name not in SINGLE_PASS_WRAPPERS:
            return f"{m.name}: its step is not one forward pass"
    noise = method.noise(cfg)
    if noise.gates != "tied":
        return "gates=untied is not batched"
    from bench import positions
    for name, _, _, slot in positions.extra_masks(noise, cfg.cell):
        if slot != "c" or cfg.cell != "lstm":
            return f"mask position {name} (slot {slot}): a pack applies the LSTM's slot c only"
    return ""


def pack_key(task, method, cfg, protocol: str, device: str, numerics: str = "") -> str:
    """Runs with equal keys can share a pack: what is not per member, as one string."""
    options = set().union(*(m.options for m in config_mod.method_chain(method, dict(cfg))))
    shared = {k: v for k, v in cfg.items() if k not in options and k not in MEMBER_KEYS}
    return json.dumps(dict(task=task.name, protocol=protocol, device=device, numerics=numerics, cfg=shared),
                      sort_keys=True)


def pack_id(task: str, protocol: str, device: str, run_ids: list[str]) -> str:
    digest = hashlib.sha256("\n".join(run_ids).encode()).hexdigest()[:10]
    return f"pack.{task}.{protocol}.{device}.E{len(run_ids)}.{digest}"


# --- the batched training loop ---------------------------------------------------------------------

class _Rng:
    """A member's generators: its torch CPU (and CUDA) states, swapped in around its draws, and its
    numpy Generator for the data order."""

    def __init__(self, task_rng, device):
        self.task, self.device = task_rng, device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def draw(self, fn):
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)
        try:
            return fn()
        finally:
            self.cpu = torch.get_rng_state()
            if self.cuda is not None:
                self.cuda = torch.cuda.get_rng_state(self.device)

    def state(self) -> dict:
        return dict(cpu=self.cpu, cuda=self.cuda, task=self.task.bit_generator.state)

    def load(self, st: dict) -> None:
        self.cpu, self.task.bit_generator.state = st["cpu"], st["task"]
        if self.cuda is not None and st["cuda"] is not None:
            self.cuda = st["cuda"]


def _clip_and_step(params, lrs, clips, wdecays, active):
    """Per member: clip its gradient to its own norm (as clip_grad_norm_), then its SGD update
    (weight decay as torch.optim.SGD). Frozen members (active False) are left exactly as they are."""
    E = active.shape[0]
    view = lambda v, p: v.view((E,) + (1,) * (p.dim() - 1))
    grads = [torch.where(view(active, p), p.grad, 0.0) if p.grad is not None else torch.zeros_like(p) for p in params]
    if (clips > 0).any():
        norms = torch.stack([torch.linalg.vector_norm(g.reshape(E, -1), 2, dim=1) for g in grads])
        total = torch.linalg.vector_norm(norms, 2, dim=0)
        coef = torch.clamp(clips / (total + 1e-6), max=1.0)
        coef = torch.where(clips > 0, coef, 1.0)
        grads = [g * view(coef, g) for g in grads]
    lrs = torch.where(active, lrs, 0.0)
    for p, g in zip(params, grads):
        if (wdecays != 0).any():
            g = g + p.detach() * view(wdecays, p)
        p.data.addcmul_(g, view(-lrs, p))


def pack_step(model, batches, state, act: list[int], noise: list, rngs: list, lr: list[float], clips, wdecays,
              reduction: str, device):
    """One training step of the members `act` (the others frozen): each active member's masks from
    its own generator, the batched forward, each member's loss, one backward, per-member clipping and
    SGD. Returns (losses, nlls) as lists over all members, the members whose loss was finite (updated),
    and the new state."""
    E = model.E
    if len({b.data[0].shape for b in batches}) > 1:
        raise RuntimeError("pack members' batches differ in shape; these runs cannot pack")
    x = torch.stack([b.data[0] for b in batches]).to(device)
    y = torch.stack([b.data[1] for b in batches]).to(device)
    T, B = x.shape[1], x.shape[2]
    like = torch.empty(0, device=device)
    drawn = [{} for _ in range(E)]
    for e in act:
        drawn[e] = rngs[e].draw(lambda: packmodel.draw_masks(noise[e], T, B, model.vocab, model.sizes, like,
                                                             model.cell))
    masks = packmodel.stack_masks(drawn, like) if any(drawn) else {}
    logits, new_state, _, _ = model(x, state, masks)
    loss, nll = packmodel.member_losses(logits, y, reduction)
    finite = torch.isfinite(loss).tolist()
    ok = [e for e in act if finite[e]]
    if ok:
        weights = list(model.parameters())
        for w in weights:
            w.grad = None
        loss[ok].sum().backward()
        active = torch.tensor([e in ok for e in range(E)], dtype=torch.bool, device=device)
        lrs = torch.tensor([l * b.lr_scale for l, b in zip(lr, batches)], dtype=torch.float32, device=device)
        _clip_and_step(weights, lrs, clips, wdecays, active)
    return loss.tolist(), nll.tolist(), ok, new_state


def train_pack(task, members: list[Member], data, device, checkpoint=None, stop=None, max_steps: int = 0,
               echo=print) -> list:
    """Train the members as one pack; return one bench.train.TrainResult per member, as its solo
    `bench.train.train` would."""
    E = len(members)
    cfgs = [m.cfg for m in members]
    cfg0 = cfgs[0]
    solo, rngs, base_noise = [], [], []
    for m in members:                       # each member built exactly as its solo run builds it
        rng = seeding.seed_everything(seeding.derive_seed(m.cfg.base_seed, task.name, m.method.name, m.seed))
        base_noise.append(m.method.noise(m.cfg))
        solo.append(task.build_model(data, m.cfg, NoiseState(base_noise[-1])).to(device))
        rngs.append(_Rng(rng, device))
    params = sum(p.numel() for p in solo[0].parameters())
    model = packmodel.PackLM(solo).to(device)
    from bench.fastcell import impl_mode
    model.impl = "reference" if impl_mode() == "reference" else "fast"     # BENCH_RNN_IMPL=reference: autograd loop
    del solo
    noise = list(base_noise)
    ss = [train_mod._fresh_state() for _ in range(E)]
    p = dict(epoch=1, batch=0, step=0, carry=None, diverged=[False] * E, wall_s=0.0)
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        ss, p = saved["members"], saved["loop"]
        for r, st in zip(rngs, saved["rng"]):
            r.load(st)

    def snapshot():
        return dict(model=model.state_dict(), members=ss, loop=p, rng=[r.state() for r in rngs])

    def tensor(values, dtype=torch.float32):
        return torch.tensor(values, dtype=dtype, device=device)

    clips, wdecays = tensor([c.clip for c in cfgs]), tensor([c.wdecay for c in cfgs])
    t_start = time.perf_counter() - p["wall_s"]
    for epoch in range(p["epoch"], cfg0.epochs + 1):
        running = [e for e in range(E) if not p["diverged"][e]]
        if not running:
            break
        lr = [train_mod.epoch_lr(c, epoch) for c in cfgs]
        model.train()
        skip = p["batch"]
        if skip:
            for e in range(E):
                rngs[e].task.bit_generator.state = ss[e]["epoch_rng"]
            state = train_mod._to(p["carry"], device)
        else:
            for e in range(E):
                ss[e]["epoch_rng"] = rngs[e].task.bit_generator.state
            state = None
        t0 = time.perf_counter()
        iters = [iter(task.train_batches(data, cfgs[e], epoch, rngs[e].task)) for e in range(E)]
        for it in iters:
            for _ in range(skip):
                next(it)
        for i, batches in enumerate(zip(*iters), start=skip):
            act = [e for e in range(E) if not p["diverged"][e]]
            for e in act:
                if members[e].method.schedule is not None:
                    noise[e] = members[e].method.schedule(ss[e]["step"], base_noise[e], cfgs[e])
            losses, nlls, ok, new_state = pack_step(model, batches, state, act, noise, rngs, lr, clips, wdecays,
                                                    cfg0.loss_reduction, device)
            for e in act:
                if e not in ok:
                    p["diverged"][e] = True
            state = train_mod._detach(new_state)
            for e in ok:
                s = ss[e]
                s["loss_sum"] += nlls[e]
                s["loss_n"] += 1
                if len(s["probe"]) < train_mod.PROBE_STEPS:
                    s["probe"].append(losses[e])
                s["step"] += 1
                s["batch"] = i + 1
                s["tokens"] += batches[e].n_tokens
            p["batch"], p["step"] = i + 1, p["step"] + 1
            if max_steps and ok and ss[ok[0]]["step"] >= max_steps:
                return [train_mod.TrainResult("probe", math.nan, math.nan, math.nan, 0, 0, params, 0.0,
                                              s["tokens"], RNN_PATH, [], list(s["probe"])) for s in ss]
            if stop is not None and stop.requested:
                spent = time.perf_counter() - t0
                for e in running:
                    ss[e]["train_s"] += spent
                p["wall_s"] = time.perf_counter() - t_start
                p["epoch"], p["carry"] = epoch, train_mod._to(state, "cpu")
                for s in ss:
                    s["epoch"], s["paths"] = epoch, RNN_PATH
                if checkpoint is not None:
                    checkpoint.save(snapshot())
                raise Interrupted(checkpoint.path if checkpoint is not None else None, epoch, i + 1)
            if not ok:
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        spent = time.perf_counter() - t0
        for e in running:
            ss[e]["train_s"] += spent
            ss[e]["paths"] = RNN_PATH
        alive = [e for e in range(E) if not p["diverged"][e]]
        if alive:
            zexp = None
            if any(noise[e].zone_h or (model.cell == "lstm" and noise[e].zone_c) for e in range(E)):
                zexp = tuple(tensor([getattr(noise[e], f) for e in range(E)]).view(E, 1, 1) for f in ("zone_h", "zone_c"))
            stream = _batchify(data["valid"], cfg0.eval_batch_size).to(device)
            evs = packmodel.evaluate(model, stream, cfg0.bptt, zexp)
        p["wall_s"] = time.perf_counter() - t_start
        for e in alive:
            ev, s = evs[e], ss[e]
            sel = train_mod._selection_loss(ev, task)
            if not (math.isfinite(sel) and math.isfinite(ev[task.valid_metric])):
                p["diverged"][e] = True
                continue
            if sel < s["best"]["loss"]:
                s["best"] = dict(loss=sel, epoch=epoch, valid=ev[task.valid_metric], valid_loss=ev.get("loss", math.nan),
                                 state=model.member_state(e))
            s["wall_s"] = p["wall_s"]
            train_loss = s["loss_sum"] / max(1, s["loss_n"])
            s["history"].append(dict(epoch=epoch, lr=lr[e], train_loss=train_loss, valid=ev[task.valid_metric],
                                     valid_loss=ev.get("loss", math.nan), averaged=False, wall_s=s["wall_s"]))
            s["val_losses"].append(sel)
            eta = s["wall_s"] / epoch * (cfg0.epochs - epoch)
            echo(f"{members[e].run_id or e}: epoch {epoch}/{cfg0.epochs}  train loss {train_loss:.4f}  valid "
                 f"{task.valid_metric} {ev[task.valid_metric]:.3f}  lr {lr[e]:.4g}  elapsed "
                 f"{train_mod._clock(s['wall_s'])}  ETA {train_mod._clock(eta)}")
            s.update(epoch=epoch + 1, batch=0, carry=None, loss_sum=0.0, loss_n=0)
        p.update(epoch=epoch + 1, batch=0, carry=None)
        if checkpoint is not None:
            checkpoint.save(snapshot())
    return [_finish(task, members[e], data, device, ss[e], p["diverged"][e], params, noise[e]) for e in range(E)]


def _batchify(ids, batch_size):
    from tasks.lm import batchify
    return batchify(ids, batch_size)


def _finish(task, member: Member, data, device, s, diverged: bool, params: int, noise):
    """A member's TrainResult: the solo test evaluation (its best weights in a solo model)."""
    history, best = s["history"], s["best"]
    if diverged:
        return train_mod.TrainResult("diverged", math.nan, math.nan, math.nan, best["epoch"], len(history), params,
                                     s["train_s"], s["tokens"], s["paths"], history, s["probe"])
    model = task.build_model(data, member.cfg, NoiseState(noise)).to(device)
    model.load_state_dict(best["state"])
    test = task.evaluate(model, data, "test", member.cfg)
    extras = {k: v for k, v in test.items() if isinstance(v, str)}
    return train_mod.TrainResult("ok", best["valid"], test[task.metric], best["valid_loss"], best["epoch"],
                                 len(history), params, s["train_s"], s["tokens"], s["paths"], history,
                                 s["probe"], extras, test.get("examples"), results.weights_digest(best["state"]))


# --- packs of runs: rows, fallback, locks ----------------------------------------------------------

def resolve_members(task_name: str, entries: list[dict], device_type: str) -> tuple:
    """(task, [Member]) from [{"method", "seed", "protocol", "overrides"}]; config errors raise here."""
    from bench.runner import make_run_id, resolve
    out, task = [], None
    for ent in entries:
        task, method, cfg = resolve(task_name, ent["method"], ent["protocol"], dict(ent.get("overrides") or {}))
        h = config_mod.config_hash(cfg)
        out.append(Member(method, cfg, int(ent["seed"]), ent["protocol"], dict(ent.get("overrides") or {}),
                          make_run_id(task.name, method.name, ent["protocol"], int(ent["seed"]), device_type, h), h))
    return task, out


def groups(task, members: list[Member], device_type: str, numerics: str = "") -> list[list[Member]]:
    """Members split into packs (one list per pack key, in first-seen order) and solo runs (lists of one)."""
    packs: dict[str, list] = {}
    for m in members:
        key = m.run_id if why_not(task, m.method, m.cfg) else pack_key(task, m.method, m.cfg, m.protocol,
                                                                      device_type, numerics)
        packs.setdefault(key, []).append(m)
    return list(packs.values())


def run_pack(task_name: str, entries: list[dict], device: str = "auto", registry=None, runs_dir=None,
             data_dir=None, echo=print, max_pack: int = 0) -> list:
    """Train `entries` as packs where they can pack, solo (bench.runner.run) where not; registered
    members are skipped. Returns a bench.runner.Outcome per entry, in entry order."""
    from bench import runner
    from bench.data import default_data_dir
    registry = Path(registry or results.registry_path())
    runs_dir = Path(runs_dir or runner.runs_root())
    dev = runner.pick_device(device)
    seeding.set_threads()
    task, members = resolve_members(task_name, entries, dev.type)
    outcomes: dict[str, object] = {}
    for m in members:
        if path := results.find_run(registry, m.run_id):
            outcomes[m.run_id] = runner.Outcome(results.read_row(path), path, new=False)
    todo = [m for m in members if m.run_id not in outcomes]
    for group in groups(task, todo, dev.type):
        chunks = [group[i:i + max_pack] for i in range(0, len(group), max_pack)] if max_pack else [group]
        for chunk in chunks:
            if len(chunk) == 1:
                m = chunk[0]
                reason = why_not(task, m.method, m.cfg)
                echo(f"{m.run_id}: solo" + (f" ({reason})" if reason else " (nothing to pack it with)"))
                outcomes[m.run_id] = runner.run(task.name, m.method.name, m.protocol, m.seed, device, m.overrides,
                                                registry, runs_dir, data_dir, progress=False, echo=echo)
            else:
                for m, out in zip(chunk, _run_one_pack(task, chunk, dev, registry, runs_dir,
                                                       Path(data_dir or default_data_dir()), echo)):
                    outcomes[m.run_id] = out
    return [outcomes[m.run_id] for m in members]


def _run_one_pack(task, members: list[Member], dev, registry: Path, runs_dir: Path, data_dir: Path, echo) -> list:
    from bench import runner
    from bench.runlock import RunLock
    ids = [m.run_id for m in members]
    pid = pack_id(task.name, members[0].protocol, dev.type, ids)
    results.read_registry(registry)
    runner.check_writable(registry, "registry")
    folder = runs_dir / pid
    runner.check_writable(folder, "runs")
    data = task.load(data_dir, members[0].cfg)
    commit, dirty = runner.git_state()
    with ExitStack() as locks:
        for f in [folder] + [runs_dir / i for i in ids]:
            locks.enter_context(RunLock(f))
        stop = locks.enter_context(StopSignal())
        ckpt = Checkpoint(folder / "checkpoint.pt", echo=echo)
        if os.environ.get("FRESH") == "1":
            ckpt.delete()
        echo(f"pack {pid}: {len(ids)} members: {', '.join(ids)}"
             + (f" (resuming from {ckpt.path})" if ckpt.path.exists() else ""))
        t0 = time.perf_counter()
        res = train_pack(task, members, data, dev, checkpoint=ckpt, stop=stop, echo=echo)
        wall = time.perf_counter() - t0
        outs = []
        for m, r in zip(members, res):
            derived = seeding.derive_seed(m.cfg.base_seed, task.name, m.method.name, m.seed)
            metrics = runner.metrics_of(task, r, derived, r.history[-1]["wall_s"] if r.history else wall)
            examples = metrics.pop("examples")
            sha, plugin_dirty = runner.plugin_provenance(runner.plugin_files(task, m.method, m.cfg))
            row = runner.build_row(m.run_id, task, m.method, m.protocol, m.seed, m.cfg, m.cfg_hash, metrics, dev,
                                   commit, dirty or plugin_dirty, sha, pack_members=ids)
            outs.append(runner.Outcome(row, results.write_result(registry, row, examples), new=True))
        if os.environ.get("KEEP_CKPT") != "1":
            ckpt.delete()
    return outs


# --- campaigns: pending runs grouped into packs -----------------------------------------------------

@dataclass
class PackSpec:
    """A campaign job of several runs trained as one pack (duck-types plans.RunSpec where the campaign
    reads it: run_id is the pack id, cfg the first member's)."""
    task: str
    protocol: str
    members: list                   # the members' plans.RunSpec
    run_id: str
    cfg: dict
    method: str = "pack"
    seed: int = 0
    overrides: tuple = ()

    def command(self, device: str, data_dir) -> list[str]:
        ents = [dict(method=m.method, seed=m.seed, protocol=m.protocol, overrides=dict(m.overrides))
                for m in self.members]
        return [sys.executable, "-m", "bench.pack", "--data-dir", str(data_dir), "--task", self.task,
                "--protocol", self.protocol, "--device", device, "--members", json.dumps(ents)]


def campaign_jobs(specs: list, device_type: str, numerics: str = "", max_pack: int = 0) -> list:
    """The pending runs of a campaign as jobs: runs that can pack together (same pack key) become one
    PackSpec (at the place of its first member), the others stay RunSpecs."""
    keyed: dict[str, list] = {}
    order = []
    for spec in specs:
        task, method = plugins.get_task(spec.task), plugins.get_method(spec.method)
        cfg = config_mod.Config(spec.cfg)
        key = spec.run_id if why_not(task, method, cfg) else pack_key(task, method, cfg, spec.protocol,
                                                                     device_type, numerics)
        if key not in keyed:
            order.append(key)
        keyed.setdefault(key, []).append(spec)
    jobs = []
    for key in order:
        group = keyed[key]
        for part in ([group[i:i + max_pack] for i in range(0, len(group), max_pack)] if max_pack else [group]):
            if len(part) == 1:
                jobs.append(part[0])
            else:
                jobs.append(PackSpec(part[0].task, part[0].protocol, part,
                                     pack_id(part[0].task, part[0].protocol, device_type, [m.run_id for m in part]),
                                     part[0].cfg))
    return jobs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pack", description="train runs as packs")
    ap.add_argument("--task", required=True)
    ap.add_argument("--protocol", default="smoke")
    ap.add_argument("--members", required=True,
                    help='JSON list of {"method", "seed", "overrides"} (the protocol is --protocol\'s)')
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--max-pack", type=int, default=0, help="at most this many members a pack (0: no limit)")
    args = ap.parse_args(argv)
    try:
        entries = json.loads(args.members)
        if not isinstance(entries, list) or not all(isinstance(x, dict) and "method" in x for x in entries):
            raise UsageError('--members must be a JSON list of {"method": ..., "seed": ...}')
        entries = [dict(x, protocol=x.get("protocol", args.protocol), seed=x.get("seed", 0)) for x in entries]
        outs = run_pack(args.task, entries, args.device, data_dir=args.data_dir, max_pack=args.max_pack)
    except json.JSONDecodeError as exc:
        print(f"error: --members is not JSON: {exc}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 3
    for o in outs:
        r = o.row
        print(f"{r['run_id']}: {r['status']}  valid {r['valid']:.3f}  test {r['test']:.3f}  pack_size {r['pack_size']}"
              + ("" if o.new else "  (already registered)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
