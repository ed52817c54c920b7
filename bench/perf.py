"""Throughput of every method next to a plain nn.LSTM / nn.GRU LM, on the current device: `make perf`.

    python -m bench.perf [--shapes zaremba-medium,awd-ptb] [--methods gal,zoneout] [--repeats 5]
        [--cells lstm,gru] [--steps N] [--warmup N] [--impl auto,reference] [--device auto|cpu|cuda]
        [--threads N] [--contention on|off|only] [--out reports/PERF.md] [--parquet reports/perf.parquet]

A benchmark, not a test. For each shape and cell type (bench/cells), each registered method's LM
(tasks/lm.py with `cell=<type>`, the method's noise and loss, e.g. fraternal's two passes, and its
AR/TAR) and a plain LM on torch.nn.LSTM or torch.nn.GRU (cuDNN on a GPU, oneDNN or ATen on a CPU)
of the same sizes train on seeded random token ids (a method that cannot run on a cell type, e.g.
rnndrop on a GRU, is listed under that table with the reason); a training
step is forward + backward + clip + SGD step, as in bench/train.py, with the state carried across
steps. Training tokens/s count each batch's tokens once (fraternal's second pass is cost, not
tokens: it is also compared with a two-pass nn.LSTM). Evaluation tokens/s: forward only, no grad.
Warm-up steps are excluded; runners are timed round-robin (each repeat times every runner once,
so load from other processes spreads over all of them) and the median repeat is reported; the
device is synchronised around every timed block. Peak memory: CUDA's max_memory_allocated during
the training steps, above what was allocated before them; on a CPU it is not measured (n/a).

Contention check (`--contention on`, the default; `off` skips it, `only` runs nothing else): a
per-step method (zoneout at cpu-small) trains on the CPU with 2 threads, alone and next to one
busy process (a 1-thread torch matmul loop), in alternating blocks (the competitor is paused
with SIGSTOP for the blocks alone). With sleeping OpenMP threads (OMP_WAIT_POLICY=PASSIVE, set by
`import bench`) the run slows down by about the CPU share it lost: it passes if the slowdown is at
most 1.25 x the ideal one (2 cores, a competitor taking one of them: half the CPU lost, 2x).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench import cells, fastcell, plugins
from bench.api import Batch, NoiseState
from bench.config import resolve
from bench.data import REPO
from bench.errors import UsageError
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
TORCH_RNNS = {"lstm": nn.LSTM, "gru": nn.GRU}     # the torch module each cell type is timed against


def baselines(cell: str) -> tuple[str, str]:
    """The names of the plain torch LM runners of a cell type: ("nn.GRU", "nn.GRU x2")."""
    name = f"nn.{TORCH_RNNS[cell].__name__}"
    return name, f"{name} x2"


class PlainLM(nn.Module):
    """Embedding -> torch.nn.LSTM (or nn.GRU) -> linear decoder, no noise: the speed to match."""

    def __init__(self, s: Shape, cell: str = "lstm"):
        super().__init__()
        rnn = TORCH_RNNS[cell]
        sizes = [s.hidden] * (s.layers - 1) + [s.emb if s.tie else s.hidden]
        self.embed = nn.Embedding(s.vocab, s.emb)
        if len(set(sizes)) == 1:                 # one multi-layer call, as nn.LSTM is usually used
            self.rnns = nn.ModuleList([rnn(s.emb, s.hidden, s.layers)])
        else:
            self.rnns = nn.ModuleList(rnn(i, o) for i, o in zip([s.emb] + sizes[:-1], sizes))
        self.decoder = nn.Linear(sizes[-1], s.vocab)
        if s.tie:
            self.decoder.weight = self.embed.weight

    def forward(self, tokens, state=None):
        x, new_state = self.embed(tokens), []
        for i, rnn in enumerate(self.rnns):
            x, st = rnn(x, None if state is None else state[i])
            new_state.append(st)
        return self.decoder(x), new_state


def lm_config(task, method, s: Shape, cell: str = "lstm"):
    cfg = resolve(task, method, "smoke", {"cell": cell})
    cfg.update(emb_size=s.emb, hidden_size=s.hidden, layers=s.layers, tie_weights=s.tie,
               batch_size=s.batch, bptt=s.bptt, var_bptt=False)
    return cfg


class Runner:
    """One row of the table: a model, its optimizer, its training step and its evaluation pass."""

    def __init__(self, name, impl, s: Shape, device, seed, cell: str = "lstm"):
        self.name, self.impl, self.device, self.cell = name, impl, device, cell
        self.plain = name in baselines(cell)
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(s.vocab, (s.bptt + 1, s.batch), generator=gen).to(device)
        self.batch = Batch((ids[:-1], ids[1:]), n_tokens=s.bptt * s.batch)
        torch.manual_seed(seed)
        if self.plain:
            self.model = PlainLM(s, cell).to(device)
            self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1)
            self.passes, self.clip = (2 if name == baselines(cell)[1] else 1), 0.25
        else:
            self.task, self.method = plugins.get_task("ptb"), plugins.get_method(name)
            self.cfg = lm_config(self.task, self.method, s, cell)
            base = self.method.noise(self.cfg)
            # a scheduled method (curriculum) is timed at full rates, as after its ramp
            noise = self.method.schedule(10**6, base, self.cfg) if self.method.schedule else base
            state = NoiseState(noise, impl=fastcell.resolve_impl(impl))
            self.model = self.task.build_model(dict(vocab=s.vocab), self.cfg, state).to(device)
            self.opt = make_optimizer(self.model, self.cfg)
        self.state = self.eval_state = None
        self.train_path = self.eval_path = ""
        self.times = {"train": [], "eval": []}
        self.peak_mb = None

    def train_step(self):
        x, y = self.batch.data
        if self.plain:
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
        for _ in range(max(n, 1)):
            self.train_step()
            self.eval_step()
        self.train_path = getattr(self.model, "rnn_paths", baselines(self.cell)[0])    # every training path
        self.eval_path = _last_paths(self.model) or self.train_path

    def timed(self, kind, steps):
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


def measure(shape_name, methods, impls, device, repeats, steps, warmup, seed, log=print, cell="lstm"):
    """The runners of one table (the two plain torch LMs first) and {method: why it cannot run on
    this cell type} for the methods left out."""
    s = SHAPES[shape_name]
    runners = [Runner(b, "", s, device, seed, cell) for b in baselines(cell)]
    skipped = {}
    for m in methods:
        try:
            lm_config(plugins.get_task("ptb"), plugins.get_method(m), s, cell)
        except UsageError as exc:
            skipped[m] = str(exc)
            continue
        runners += [Runner(m, impl, s, device, seed, cell) for impl in impls]
    for r in runners:
        r.warmup(warmup)
        log(f"  {shape_name} {cell}: warmed up {r.name} {r.impl} ({r.train_path})")
    for rep in range(repeats):
        for r in runners:
            r.timed("train", steps)
            r.timed("eval", steps)
        log(f"  {shape_name} {cell}: repeat {rep + 1}/{repeats} done")
    return runners, skipped


def _last_paths(model) -> str:
    """The paths of the model's last forward (its evaluation pass): its LSTM layers' `last_path`."""
    return ",".join(sorted({m.last_path for m in model.modules() if getattr(m, "last_path", "")}))


COMPETITOR = ("import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\nprint('ready', flush=True)\n"
              "while True:\n    a @ a\n")
TOLERANCE = 1.25                # the contention check passes at slowdown <= TOLERANCE x ideal
CONTENTION_THREADS = 2


def cpu_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ideal_slowdown(threads: int, cores: int, competitors: int = 1) -> float:
    """Slowdown of a run on `threads` threads when `competitors` busy processes take a whole core
    each: of the cores it used, it keeps those left (at least its fair share of them all)."""
    used = min(threads, cores)
    return used / min(used, max(cores - competitors, cores / (competitors + 1)))


class Competitor:
    """A busy process (a 1-thread torch matmul loop) for the duration of a `with`; `pause` and
    `resume` stop and continue it (SIGSTOP/SIGCONT), so one process serves every block."""

    def __enter__(self):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-c", COMPETITOR], stdout=subprocess.PIPE, text=True, env=env)
        if self.proc.stdout.readline().strip() != "ready":
            self.__exit__()
            raise RuntimeError("the competing process did not start")
        return self

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def __exit__(self, *exc):
        self.proc.kill()                    # SIGKILL also ends a stopped process
        self.proc.wait()
        self.proc.stdout.close()


def contention(shape_name, method, threads, steps, repeats, seed, warmup=2, log=print) -> dict:
    """Train `method` on the CPU with `threads` threads, alone and next to a Competitor, in
    alternating blocks of `steps` steps; the medians, the slowdown and the check's verdict."""
    r = Runner(method, "auto", SHAPES[shape_name], torch.device("cpu"), seed)
    saved, times, load = torch.get_num_threads(), {"alone": [], "contended": []}, os.getloadavg()[0]
    torch.set_num_threads(threads)
    try:
        r.warmup(warmup)
        with Competitor() as rival:
            for rep in range(repeats):
                for kind in times:
                    if kind == "alone":
                        rival.pause()
                    else:
                        rival.resume()
                    t0 = time.perf_counter()
                    for _ in range(steps):
                        r.train_step()
                    times[kind].append(time.perf_counter() - t0)
                log(f"  contention: repeat {rep + 1}/{repeats} done")
            pid = rival.proc.pid
    finally:
        torch.set_num_threads(saved)
    alone, contended = (statistics.median(times[k]) / steps for k in ("alone", "contended"))
    cores = cpu_cores()
    ideal = ideal_slowdown(threads, cores)
    return dict(shape=shape_name, method=method, rnn_path=r.train_path, threads=threads, cores=cores,
                steps=steps, repeats=repeats, tokens=steps * r.batch.n_tokens, times=times,
                omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", ""), competitor_pid=pid, loadavg=load,
                alone_s=alone, contended_s=contended, slowdown=contended / alone, ideal=ideal,
                limit=TOLERANCE * ideal, passed=contended / alone <= TOLERANCE * ideal)


def contention_rows(c: dict, info) -> list[dict]:
    shape_cols = {f"shape_{k}": v for k, v in vars(SHAPES[c["shape"]]).items()}
    keep = ("cores", "omp_wait_policy", "ideal", "slowdown", "passed", "loadavg")
    return [dict(info, shape=c["shape"], cell="lstm", method=c["method"], impl="auto", kind=f"contention-{kind}",
                 repeat=rep, steps=c["steps"], tokens=c["tokens"], seconds=sec, tokens_per_s=c["tokens"] / sec,
                 rnn_path=c["rnn_path"], peak_mb=None, **dict(shape_cols, threads=c["threads"]),
                 **{f"contention_{k}": c[k] for k in keep})
            for kind, secs in c["times"].items() for rep, sec in enumerate(secs)]


def contention_report(c: dict) -> str:
    return "\n".join([
        "", f"## Contention: {c['method']} ({c['rnn_path']}) next to a busy process", "",
        f"{c['shape']}, {c['threads']} threads on {c['cores']} cores, OMP_WAIT_POLICY={c['omp_wait_policy'] or '(unset)'}; "
        f"the competitor is a 1-thread torch matmul loop; {c['steps']} training steps per block, median of "
        f"{c['repeats']} alternating blocks. Ideal slowdown: the CPU share the run lost; the check passes at "
        f"most {TOLERANCE} x ideal. 1-min load average at start {c['loadavg']:.2f}: blocks \"alone\" are "
        "alone only on an otherwise idle machine.", "",
        "| s/step alone | s/step contended | slowdown | ideal | limit | result |", "|---:|---:|---:|---:|---:|---|",
        f"| {c['alone_s']:.4f} | {c['contended_s']:.4f} | {c['slowdown']:.2f}x | {c['ideal']:.2f}x "
        f"| {c['limit']:.2f}x | {'PASS' if c['passed'] else 'FAIL'} |"]) + "\n"


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
                rows.append(dict(info, shape=shape_name, cell=r.cell, method=r.name, impl=r.impl or "", kind=kind,
                                 repeat=rep, steps=steps, tokens=steps * r.batch.n_tokens, seconds=sec,
                                 tokens_per_s=steps * r.batch.n_tokens / sec,
                                 rnn_path=r.train_path if kind == "train" else r.eval_path,
                                 peak_mb=r.peak_mb, **shape_cols))
    return rows


def table(shape_name, runners, steps) -> str:
    plain, plain2 = baselines(runners[0].cell)
    base = {r.name: r for r in runners[:2]}
    b_train, b_eval = base[plain].tok_s("train", steps), base[plain].tok_s("eval", steps)
    b2_train = base[plain2].tok_s("train", steps)
    lines = [f"| method | impl | path (train / eval) | train tok/s | x {plain} | eval tok/s | x {plain} "
             "| peak MB |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in runners:
        tr, ev = r.tok_s("train", steps), r.tok_s("eval", steps)
        ratio = f"{tr / b_train:.2f}"
        if r.name == "fraternal" or r.name == plain2:
            ratio += f" ({tr / b2_train:.2f} vs x2)"
        peak = "n/a" if r.peak_mb is None else f"{r.peak_mb:.0f}"
        lines.append(f"| {r.name} | {r.impl or '-'} | {r.train_path} / {r.eval_path} | {tr:,.0f} | {ratio} "
                     f"| {ev:,.0f} | {ev / b_eval:.2f} | {peak} |")
    return "\n".join(lines)


def report(info, sections, args, default_shapes: bool, extra: str = "") -> str:
    head = [
        "# Throughput: every method next to torch.nn.LSTM and torch.nn.GRU",
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
        "- x nn.LSTM (x nn.GRU): ratio to the plain nn.LSTM (nn.GRU) LM of the same shape, in the table of "
        "that cell type (`cell=lstm|gru`); fraternal (two passes per step) is also compared with the two-pass "
        "plain LM (`vs x2`)",
        "- path: fused = torch's LSTM/GRU kernel on the method's weights, fast = fast per-step cell "
        "(bench/fastcell.py, bench/cells/grufast.py), graph = fast cell replayed as CUDA graphs, cell = "
        "reference per-step cell",
        "- peak MB: CUDA max_memory_allocated during the training steps above the resident models; "
        "n/a on a CPU (not measured)",
    ]
    if info["device"] == "cuda":
        head.append("- TF32 matmuls on (cuDNN's RNN default); fp32 storage")
    elif default_shapes:
        head.append("- CPU run: the default shape is the small `cpu-small` (2x256), not the GPU shapes "
                    "zaremba-medium / awd-ptb (minutes per method on a CPU; pass `--shapes` to run them)")
    body = []
    for (name, cell), (runners, steps, skipped) in sections.items():
        s = SHAPES[name]
        tied = f", tied (last layer {s.emb})" if s.tie else ""
        body += ["", f"## {name} · {cells.get_cell(cell).title}: {s.layers} layers x {s.hidden} hidden, embedding "
                 f"{s.emb}, batch {s.batch}, BPTT {s.bptt}, vocabulary {s.vocab}{tied}",
                 "", f"{steps} steps per timed block.", "", table(name, runners, steps)]
        if skipped:
            body += [""] + [f"- {m} does not run on a {cell} cell: {why}" for m, why in sorted(skipped.items())]
    return "\n".join(head + body) + "\n" + extra


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", help=f"comma-separated, of {', '.join(SHAPES)} (default: cpu-small on a CPU, "
                   "zaremba-medium,awd-ptb on CUDA)")
    p.add_argument("--methods", help="comma-separated (default: every registered method)")
    p.add_argument("--cells", default="lstm,gru", help="cell types, one table each (comma-separated)")
    p.add_argument("--impl", default="auto", help="rnn implementations to time each method with, "
                   "comma-separated (auto, reference, fast, graph)")
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, help="steps per timed block (default 3 on a CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 2 on a CPU, 5 on CUDA)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--contention", choices=("on", "off", "only"), default="on",
                   help="the contention check: after the throughput tables, skipped, or alone")
    p.add_argument("--contention-shape", default="cpu-small")
    p.add_argument("--packs", choices=("on", "off", "only"), default="off",
                   help="the packs section (bench/packperf.py): after the tables, skipped, or alone")
    p.add_argument("--pack-sizes", default="1,3,9,27", help="pack sizes E of the packs section")
    p.add_argument("--pack-shape", help="shape of the packs section (default zaremba-medium on CUDA, cpu-small on a CPU)")
    p.add_argument("--contention-method", default="zoneout", help="a per-step method")
    p.add_argument("--contention-steps", type=int, default=30, help="training steps per block")
    p.add_argument("--contention-repeats", type=int, default=3, help="alternating blocks alone/contended")
    reports = Path(os.environ.get("BENCH_REPORTS") or REPO / "reports")
    p.add_argument("--out", default=str(reports / "PERF.md"))
    p.add_argument("--parquet", default=str(reports / "perf.parquet"))
    a = p.parse_args(argv)
    device = pick_device(a.device)
    shapes = (a.shapes or ("zaremba-medium,awd-ptb" if device.type == "cuda" else "cpu-small")).split(",")
    unknown = [s for s in shapes + [a.contention_shape] + ([a.pack_shape] if a.pack_shape else []) if s not in SHAPES]
    if unknown:
        p.error(f"unknown shape(s) {', '.join(unknown)}; choose from {', '.join(SHAPES)}")
    bad_cells = [c for c in a.cells.split(",") if c not in TORCH_RNNS]
    if bad_cells:
        p.error(f"unknown cell type(s) {', '.join(bad_cells)}; choose from {', '.join(TORCH_RNNS)}")
    saved = (torch.get_num_threads(), torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:                                    # settings for this run only (main may be called in-process)
        if a.threads:
            torch.set_num_threads(a.threads)
        if device.type == "cuda":           # TF32 matmuls, as cuDNN's RNN uses by default
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        text, rows, passed = benchmark(a, shapes, device, list(sys.argv[1:] if argv is None else argv))
    finally:
        torch.set_num_threads(saved[0])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[1:]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)
    pd.DataFrame(rows).to_parquet(a.parquet, index=False)
    print(text)
    print(f"wrote {a.out} and {a.parquet}")
    return 0 if passed else 1


def benchmark(a, shapes, device, args):
    cuda = device.type == "cuda"
    methods = a.methods.split(",") if a.methods else plugins.list_methods()
    steps = a.steps or (20 if cuda else 3)
    warmup = a.warmup if a.warmup is not None else (5 if cuda else 2)
    impls = [fastcell.resolve_impl(i, source="--impl") for i in a.impl.split(",")]
    info = device_info(device if a.contention != "only" else torch.device("cpu"))
    sections, rows, extra, passed = {}, [], "", True
    only_packs = a.packs == "only"
    for name in shapes if a.contention != "only" and not only_packs else []:
        for cell in a.cells.split(","):
            runners, skipped = measure(name, methods, impls, device, a.repeats, steps, warmup, a.seed, cell=cell)
            sections[(name, cell)] = (runners, steps, skipped)
            rows += raw_rows(name, runners, steps, info)
    if a.packs != "off":
        from bench import packperf
        shape = a.pack_shape or ("zaremba-medium" if cuda else "cpu-small")
        text, pack_rows = packperf.section(shape, device, [int(e) for e in a.pack_sizes.split(",")], steps, warmup,
                                           a.repeats)
        extra, rows = extra + text, rows + pack_rows
    if a.contention != "off" and not only_packs:
        c = contention(a.contention_shape, a.contention_method, CONTENTION_THREADS,
                       a.contention_steps, a.contention_repeats, a.seed)
        extra, passed = extra + contention_report(c), c["passed"]
        rows += contention_rows(c, info)
    return report(info, sections, args, default_shapes=not a.shapes and bool(sections), extra=extra), rows, passed


if __name__ == "__main__":
    sys.exit(main())
