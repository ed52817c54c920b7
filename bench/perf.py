"""Throughput of every method next to a plain nn.LSTM LM, on the current device: `make perf`.

    python -m bench.perf [--shapes zaremba-medium,awd-ptb] [--methods gal,zoneout] [--repeats 5]
        [--steps N] [--warmup N] [--impl auto,reference] [--device auto|cpu|cuda] [--threads N]
        [--out reports/PERF.md] [--parquet reports/perf.parquet]

A benchmark, not a test. For each shape, each registered method's LM (tasks/lm.py, the method's
noise and loss, e.g. fraternal's two passes, and its AR/TAR) and a plain LM on torch.nn.LSTM
(cuDNN on a GPU, oneDNN on a CPU) of the same sizes train on seeded random token ids; a training
step is forward + backward + clip + SGD step, as in bench/train.py, with the state carried across
steps. Training tokens/s count each batch's tokens once (fraternal's second pass is cost, not
tokens: it is also compared with a two-pass nn.LSTM). Evaluation tokens/s: forward only, no grad.
Warm-up steps are excluded; runners are timed round-robin (each repeat times every runner once,
so load from other processes spreads over all of them) and the median repeat is reported; the
device is synchronised around every timed block. Peak memory: CUDA's max_memory_allocated during
the training steps, above what was allocated before them; on a CPU it is not measured (n/a).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench import plugins
from bench.api import Batch, NoiseState
from bench.config import resolve
from bench.data import REPO
from bench.runner import git_state, pick_device
from bench.train import _detach, make_optimizer


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    emb: int
    batch: int
    bptt: int
    vocab: int
    tie: bool           # decoder tied to the embedding; the last layer then outputs `emb` (AWD)


SHAPES = {
    "cpu-small": Shape(2, 256, 256, 20, 35, 10_000, False),
    "zaremba-medium": Shape(2, 650, 650, 20, 35, 10_000, False),
    "awd-ptb": Shape(3, 1150, 400, 20, 70, 10_000, True),
}
BASELINE, BASELINE2 = "nn.LSTM", "nn.LSTM x2"


class PlainLM(nn.Module):
    """Embedding -> torch.nn.LSTM -> linear decoder, no noise: the speed to match."""

    def __init__(self, s: Shape):
        super().__init__()
        sizes = [s.hidden] * (s.layers - 1) + [s.emb if s.tie else s.hidden]
        self.embed = nn.Embedding(s.vocab, s.emb)
        if len(set(sizes)) == 1:                 # one multi-layer call, as nn.LSTM is usually used
            self.rnns = nn.ModuleList([nn.LSTM(s.emb, s.hidden, s.layers)])
        else:
            self.rnns = nn.ModuleList(nn.LSTM(i, o) for i, o in zip([s.emb] + sizes[:-1], sizes))
        self.decoder = nn.Linear(sizes[-1], s.vocab)
        if s.tie:
            self.decoder.weight = self.embed.weight

    def forward(self, tokens, state=None):
        x, new_state = self.embed(tokens), []
        for i, rnn in enumerate(self.rnns):
            x, st = rnn(x, None if state is None else state[i])
            new_state.append(st)
        return self.decoder(x), new_state


def lm_config(task, method, s: Shape):
    cfg = resolve(task, method, "smoke", {})
    cfg.update(emb_size=s.emb, hidden_size=s.hidden, layers=s.layers, tie_weights=s.tie,
               batch_size=s.batch, bptt=s.bptt, var_bptt=False)
    return cfg


class Runner:
    """One row of the table: a model, its optimizer, its training step and its evaluation pass."""

    def __init__(self, name, impl, s: Shape, device, seed):
        self.name, self.impl, self.device = name, impl, device
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(s.vocab, (s.bptt + 1, s.batch), generator=gen).to(device)
        self.batch = Batch((ids[:-1], ids[1:]), n_tokens=s.bptt * s.batch)
        torch.manual_seed(seed)
        if name in (BASELINE, BASELINE2):
            self.model = PlainLM(s).to(device)
            self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1)
            self.passes, self.clip = (2 if name == BASELINE2 else 1), 0.25
        else:
            self.task, self.method = plugins.get_task("ptb"), plugins.get_method(name)
            self.cfg = lm_config(self.task, self.method, s)
            base = self.method.noise(self.cfg)
            # a scheduled method (curriculum) is timed at full rates, as after its ramp
            noise = self.method.schedule(10**6, base, self.cfg) if self.method.schedule else base
            self.model = self.task.build_model(dict(vocab=s.vocab), self.cfg, NoiseState(noise)).to(device)
            self.opt = make_optimizer(self.model, self.cfg)
        self.state = self.eval_state = None
        self.train_path = self.eval_path = ""
        self.times = {"train": [], "eval": []}
        self.peak_mb = None

    def _env(self):
        if self.impl:
            os.environ["BENCH_RNN_IMPL"] = self.impl

    def train_step(self):
        x, y = self.batch.data
        if self.name in (BASELINE, BASELINE2):
            loss = 0.0
            for _ in range(self.passes):
                logits, state = self.model(x, self.state)
                loss = loss + F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1)) / self.passes
            clip, params = self.clip, self.model.parameters()
        else:
            forward = lambda: self.task.forward(self.model, self.batch, self.state, self.cfg)  # noqa: E731
            loss, out = self.method.loss(forward, self.cfg)
            loss, state = loss + self.task.penalty(out, self.cfg), out.state
            clip, params = self.cfg.clip, self.model.parameters()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        self.opt.step()
        self.state = _detach(state)

    @torch.no_grad()
    def eval_step(self):
        self.model.eval()
        x, y = self.batch.data
        logits, state = self.model(x, self.eval_state)[:2]
        F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1))
        self.eval_state = state
        self.model.train()

    def warmup(self, n):
        self._env()
        for i in range(max(n, 1)):
            self.train_step()
            if i == 0:
                self.train_path = getattr(self.model, "rnn_paths", "nn.LSTM")
            self.eval_step()
        self.eval_path = getattr(self.model, "rnn_paths", self.train_path)

    def timed(self, kind, steps):
        self._env()
        step = self.train_step if kind == "train" else self.eval_step
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
            base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize(self.device)
        self.times[kind].append(time.perf_counter() - t0)
        if cuda and kind == "train":
            peak = (torch.cuda.max_memory_allocated(self.device) - base) / 2**20
            self.peak_mb = max(self.peak_mb or 0.0, peak)

    def tok_s(self, kind, steps):
        return steps * self.batch.n_tokens / statistics.median(self.times[kind])


def measure(shape_name, methods, impls, device, repeats, steps, warmup, seed, log=print):
    s = SHAPES[shape_name]
    runners = [Runner(BASELINE, "", s, device, seed), Runner(BASELINE2, "", s, device, seed)]
    runners += [Runner(m, impl, s, device, seed) for m in methods for impl in impls]
    old = os.environ.get("BENCH_RNN_IMPL")
    try:
        for r in runners:
            r.warmup(warmup)
            log(f"  {shape_name}: warmed up {r.name} {r.impl} ({r.train_path})")
        for rep in range(repeats):
            for r in runners:
                r.timed("train", steps)
                r.timed("eval", steps)
            log(f"  {shape_name}: repeat {rep + 1}/{repeats} done")
    finally:
        if old is None:
            os.environ.pop("BENCH_RNN_IMPL", None)
        else:
            os.environ["BENCH_RNN_IMPL"] = old
    return runners


def device_info(device) -> dict:
    commit, dirty = git_state()
    info = dict(device=device.type, torch=torch.__version__, cuda=torch.version.cuda or "",
                threads=torch.get_num_threads(), git_commit=commit, git_dirty=dirty,
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                cpu_capability=torch.backends.cpu.get_cpu_capability(), loadavg=os.getloadavg()[0])
    info["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return info


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
    return platform.processor() or "cpu"


def raw_rows(shape_name, runners, steps, info) -> list[dict]:
    rows, shape_cols = [], {f"shape_{k}": v for k, v in vars(SHAPES[shape_name]).items()}
    for r in runners:
        for kind, times in r.times.items():
            for rep, sec in enumerate(times):
                rows.append(dict(info, shape=shape_name, method=r.name, impl=r.impl or "", kind=kind,
                                 repeat=rep, steps=steps, tokens=steps * r.batch.n_tokens, seconds=sec,
                                 tokens_per_s=steps * r.batch.n_tokens / sec,
                                 rnn_path=r.train_path if kind == "train" else r.eval_path,
                                 peak_mb=r.peak_mb, **shape_cols))
    return rows


def table(shape_name, runners, steps) -> str:
    base = {r.name: r for r in runners[:2]}
    b_train, b_eval = base[BASELINE].tok_s("train", steps), base[BASELINE].tok_s("eval", steps)
    b2_train = base[BASELINE2].tok_s("train", steps)
    lines = ["| method | impl | path (train / eval) | train tok/s | x nn.LSTM | eval tok/s | x nn.LSTM "
             "| peak MB |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in runners:
        tr, ev = r.tok_s("train", steps), r.tok_s("eval", steps)
        ratio = f"{tr / b_train:.2f}"
        if r.name == "fraternal" or r.name == BASELINE2:
            ratio += f" ({tr / b2_train:.2f} vs x2)"
        peak = "n/a" if r.peak_mb is None else f"{r.peak_mb:.0f}"
        lines.append(f"| {r.name} | {r.impl or '-'} | {r.train_path} / {r.eval_path} | {tr:,.0f} | {ratio} "
                     f"| {ev:,.0f} | {ev / b_eval:.2f} | {peak} |")
    return "\n".join(lines)


def report(info, sections, args, default_shapes: bool) -> str:
    head = [
        "# Throughput: every method next to torch.nn.LSTM",
        "",
        f"Generated by `{' '.join(['python -m bench.perf'] + args)}` on {info['date']}.",
        "",
        f"- device: {info['device']} — {info['device_name']}; torch {info['torch']}"
        + (f", CUDA {info['cuda']}" if info["device"] == "cuda" else f", {info['threads']} threads, "
           f"CPU capability {info['cpu_capability']}"),
        f"- git commit {info['git_commit'][:12]}{' (dirty tree)' if info['git_dirty'] else ''}; "
        f"1-min load average at start {info['loadavg']:.2f}",
        "- tokens/s count each batch's B*T target tokens once; train = forward + backward + clip + SGD "
        "step, eval = forward without grad; warm-up excluded; median over round-robin repeats",
        "- x nn.LSTM: ratio to the plain nn.LSTM LM of the same shape; fraternal (two passes per step) "
        "is also compared with the two-pass nn.LSTM (`vs x2`)",
        "- path: fused = torch's LSTM kernel on the method's weights, fast = fast per-step cell "
        "(bench/fastcell.py), graph = fast cell replayed as CUDA graphs, cell = reference per-step cell",
        "- peak MB: CUDA max_memory_allocated during the training steps above the resident models; "
        "n/a on a CPU (not measured)",
    ]
    if info["device"] == "cuda":
        head.append("- TF32 matmuls on (cuDNN's RNN default); fp32 storage")
    elif default_shapes:
        head.append("- CPU run: the default shape is the small `cpu-small` (2x256), not the GPU shapes "
                    "zaremba-medium / awd-ptb (minutes per method on a CPU; pass `--shapes` to run them)")
    body = []
    for name, (runners, steps) in sections.items():
        s = SHAPES[name]
        tied = f", tied (last layer {s.emb})" if s.tie else ""
        body += ["", f"## {name}: {s.layers} layers x {s.hidden} hidden, embedding {s.emb}, batch {s.batch}, "
                 f"BPTT {s.bptt}, vocabulary {s.vocab}{tied}",
                 "", f"{steps} steps per timed block.", "", table(name, runners, steps)]
    return "\n".join(head + body) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", help=f"comma-separated, of {', '.join(SHAPES)} (default: cpu-small on a CPU, "
                   "zaremba-medium,awd-ptb on CUDA)")
    p.add_argument("--methods", help="comma-separated (default: every registered method)")
    p.add_argument("--impl", default="auto", help="BENCH_RNN_IMPL values to time each method with, "
                   "comma-separated (auto, reference, fast, graph)")
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, help="steps per timed block (default 3 on a CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 2 on a CPU, 5 on CUDA)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    reports = Path(os.environ.get("BENCH_REPORTS") or REPO / "reports")
    p.add_argument("--out", default=str(reports / "PERF.md"))
    p.add_argument("--parquet", default=str(reports / "perf.parquet"))
    a = p.parse_args(argv)
    device = pick_device(a.device)
    shapes = (a.shapes or ("zaremba-medium,awd-ptb" if device.type == "cuda" else "cpu-small")).split(",")
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        p.error(f"unknown shape(s) {', '.join(unknown)}; choose from {', '.join(SHAPES)}")
    saved = (torch.get_num_threads(), torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:                                    # settings for this run only (main may be called in-process)
        if a.threads:
            torch.set_num_threads(a.threads)
        if device.type == "cuda":           # TF32 matmuls, as cuDNN's RNN uses by default
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        text, rows = benchmark(a, shapes, device, list(sys.argv[1:] if argv is None else argv))
    finally:
        torch.set_num_threads(saved[0])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[1:]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)
    pd.DataFrame(rows).to_parquet(a.parquet, index=False)
    print(text)
    print(f"wrote {a.out} and {a.parquet}")


def benchmark(a, shapes, device, args):
    cuda = device.type == "cuda"
    methods = a.methods.split(",") if a.methods else plugins.list_methods()
    steps = a.steps or (20 if cuda else 3)
    warmup = a.warmup if a.warmup is not None else (5 if cuda else 2)
    info = device_info(device)
    sections, rows = {}, []
    for name in shapes:
        runners = measure(name, methods, a.impl.split(","), device, a.repeats, steps, warmup, a.seed)
        sections[name] = (runners, steps)
        rows += raw_rows(name, runners, steps, info)
    return report(info, sections, args, default_shapes=not a.shapes), rows

if __name__ == "__main__":
    main()
