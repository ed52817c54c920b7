"""The packs section of `make perf` (`python -m bench.perf --packs on|only`): aggregate training
tokens/s of a pack of E members (bench/pack.py's step: masks per member, the batched forward,
per-member clipping and SGD) for E = 1, 3, 9, 27, against a solo run of a plain nn.LSTM LM and of
the benchmark's own LM (zaremba's noise, its solo path) of the same shape. E solo runs one after
another have the aggregate speed of one, so "x solo" is the pack's gain in wall time for E runs.
On a CPU also: a pack of 3 on 2 threads against 2 solo runs side by side (two 1-thread processes,
as a 2-worker CPU campaign runs them), each process timing its own steps.

    python -m bench.packperf --solo-worker --shape cpu-small --steps 3   (one side-by-side process)
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from bench import pack, packmodel, perf, plugins
from bench.api import Batch, NoiseState

SIZES = (1, 3, 9, 27)


class PackRunner:
    """A pack of E members of `method` at a perf shape, training on one batch of random tokens."""

    def __init__(self, shape: str, E: int, device, seed: int = 0, method: str = "zaremba"):
        s = perf.SHAPES[shape]
        self.task, self.method = plugins.get_task("ptb"), plugins.get_method(method)
        self.cfg = perf.lm_config(self.task, self.method, s)
        noise = self.method.noise(self.cfg)
        models = []
        for e in range(E):
            torch.manual_seed(seed + e)
            models.append(self.task.build_model(dict(vocab=s.vocab, rank=torch.arange(s.vocab)), self.cfg,
                                                NoiseState(noise)))
        self.model = packmodel.PackLM(models).to(device)
        del models
        self.rngs = [pack._Rng(np.random.default_rng(e), device) for e in range(E)]
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(s.vocab, (s.bptt + 1, s.batch), generator=gen)
        self.batches = [Batch((ids[:-1], ids[1:]), n_tokens=s.bptt * s.batch)] * E
        t = lambda v: torch.full((E,), float(v), device=device)  # noqa: E731
        self.noise, self.clips, self.wd = [noise] * E, t(self.cfg.clip), t(self.cfg.wdecay)
        self.E, self.device, self.state, self.tokens = E, device, None, E * s.bptt * s.batch

    def train_step(self):
        *_, state = pack.pack_step(self.model, self.batches, self.state, list(range(self.E)), self.noise, self.rngs,
                                   [0.1] * self.E, self.clips, self.wd, self.cfg.loss_reduction, self.device)
        self.state = [tuple(t.detach() for t in st) for st in state]


def _time(step, steps: int, warmup: int, repeats: int, device) -> float:
    """Median seconds of `steps` calls of step(), after `warmup` calls."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    for _ in range(max(warmup, 1)):
        step()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def solo_tok_s(name: str, shape: str, device, steps, warmup, repeats, seed=0) -> float:
    r = perf.Runner(name, "auto", perf.SHAPES[shape], device, seed)
    return steps * r.batch.n_tokens / _time(r.train_step, steps, warmup, repeats, device)


def side_by_side(shape: str, steps: int, warmup: int, repeats: int, n: int = 2, name: str = perf.BASELINE) -> float:
    """Summed tokens/s of n solo runs of `name` started together, one thread each (subprocesses)."""
    cmd = [sys.executable, "-m", "bench.packperf", "--solo-worker", "--shape", shape, "--name", name,
           "--steps", str(steps), "--warmup", str(warmup), "--repeats", str(repeats)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate()[0] for p in procs]
    return sum(json.loads(o.strip().splitlines()[-1])["tok_s"] for o in outs)


def section(shape: str, device, sizes=SIZES, steps: int = 3, warmup: int = 1, repeats: int = 3, log=print) -> tuple:
    """(Markdown section, raw rows) of the packs measurement at `shape` on `device`."""
    base = solo_tok_s(perf.BASELINE, shape, device, steps, warmup, repeats)
    own = solo_tok_s("zaremba", shape, device, steps, warmup, repeats)
    log(f"packs {shape}: solo nn.LSTM {base:,.0f} tok/s, solo zaremba {own:,.0f} tok/s")
    rows = []
    for E in sizes:
        try:
            r = PackRunner(shape, E, device)
            sec = _time(r.train_step, steps, warmup, repeats, device)
            tok = steps * r.tokens / sec
            del r
        except (RuntimeError, MemoryError) as exc:          # e.g. out of memory at E = 27
            log(f"packs {shape} E={E}: {type(exc).__name__}: {str(exc)[:120]}")
            rows.append(dict(section="packs", shape=shape, device=device.type, E=E, tok_s=float("nan"),
                             step_ms=float("nan"), solo_lstm_tok_s=base, solo_zaremba_tok_s=own))
            continue
        log(f"packs {shape} E={E}: {tok:,.0f} tok/s aggregate ({sec / steps * 1000:.0f} ms a step)")
        rows.append(dict(section="packs", shape=shape, device=device.type, E=E, tok_s=tok, step_ms=sec / steps * 1000,
                         solo_lstm_tok_s=base, solo_zaremba_tok_s=own))
    lines = ["", f"## Packs · {shape} (zaremba members, {device.type})", "",
             f"Aggregate training tokens/s of a pack of E members (bench/pack.py) against one solo run: "
             f"solo nn.LSTM LM {base:,.0f} tok/s, solo zaremba LM (the benchmark's model, its solo path) "
             f"{own:,.0f} tok/s. E solo runs one after another keep the solo aggregate, so `x solo` is the "
             f"wall-time gain for E runs. {steps} steps per timed block, median of {repeats}.", "",
             "| E | aggregate tok/s | per member | ms a step | x solo nn.LSTM | x solo zaremba |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['E']} | {r['tok_s']:,.0f} | {r['tok_s'] / r['E']:,.0f} | {r['step_ms']:,.0f} | "
                     f"{r['tok_s'] / base:.2f} | {r['tok_s'] / own:.2f} |")
    if device.type == "cpu":
        threads = torch.get_num_threads()
        pair = side_by_side(shape, steps, warmup, repeats)
        p3 = next((r["tok_s"] for r in rows if r["E"] == 3), None)
        if p3 is None:
            p3 = 3 * steps * perf.SHAPES[shape].bptt * perf.SHAPES[shape].batch / _time(
                PackRunner(shape, 3, device).train_step, steps, warmup, repeats, device)
        log(f"packs {shape}: 2 solo nn.LSTM runs side by side {pair:,.0f} tok/s; pack of 3 ({threads} threads) {p3:,.0f}")
        lines += ["", f"On this CPU: a pack of 3 on {threads} thread(s) trains {p3:,.0f} tok/s; 2 solo nn.LSTM runs "
                  f"side by side (1 thread each) {pair:,.0f} tok/s together: the pack gives {p3 / pair:.2f}x."]
        rows.append(dict(section="packs-cpu-pair", shape=shape, device="cpu", E=3, tok_s=p3, step_ms=float("nan"),
                         solo_lstm_tok_s=pair, solo_zaremba_tok_s=own))
    return "\n".join(lines) + "\n", rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.packperf")
    ap.add_argument("--solo-worker", action="store_true", help="time one solo run (1 thread), print JSON")
    ap.add_argument("--shape", default="cpu-small")
    ap.add_argument("--name", default=perf.BASELINE)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    if not a.solo_worker:
        ap.error("run the packs section through `python -m bench.perf --packs only`")
    torch.set_num_threads(1)
    print(json.dumps(dict(tok_s=solo_tok_s(a.name, a.shape, torch.device("cpu"), a.steps, a.warmup, a.repeats))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
