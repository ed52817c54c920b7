"""CUDA graphs around the fast cells' loops (bench/cellloops.py, bench/cells/grufast.py): one
launch per loop.

At batch 20 a GPU training step is launch-bound: a per-step loop issues two to eight small kernels
per step, each costing microseconds of CPU time to launch. The loops only read their inputs and
write buffers (or return tensors), so each is captured once and then replayed.

The cache holds one graph per (key, T). The key is the loop, which inputs there are and their
shapes beyond the time dim, dtypes, device and the constants (zoneout expectations, kernels). All
lengths of one key share static buffers sized for a capacity >= T (a length-T graph uses their
first T steps), so AWD's variable BPTT costs one capture per new length, not new buffers. A run
copies its inputs into the static buffers, replays, and clones the results out at once: one set of
buffers serves every layer of that shape and both of fraternal's passes, and all graphs can share
one memory pool, since nothing a graph allocates is used after its replay except the tensors its
loop returns, which the cache keeps referenced (so no other capture reuses their memory).

The CPU tests run this cache with `RerunGraph` (replay re-runs the loop on the same static
buffers), which checks the buffer logic; the capture itself needs a GPU to be tested.
"""
from __future__ import annotations

import math
import warnings

import torch

_CACHES: dict[torch.device, "GraphCache"] = {}


class CudaCapture:
    """Captures loops in CUDA graphs on one device; all its graphs share one memory pool."""

    def __init__(self, device: torch.device):
        self.device = device
        self.pool = None

    def __call__(self, fn):
        """Capture `fn` (whose only allocations that outlive it are its return value). Returns
        (graph, fn's return value, whose tensors every replay rewrites)."""
        with torch.cuda.device(self.device):
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                fn()                # warm-up: lazy library initialisation must not be captured
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                result = fn()
        return graph, result


class RerunGraph:
    """Stand-in for a CUDA graph on any device: capturing runs `fn` once; a replay runs it again
    and writes its results into the tensors the first run returned, as a real replay would."""

    def __init__(self, fn):
        self.fn = fn
        self.result = fn()

    @classmethod
    def capture(cls, fn):
        graph = cls(fn)
        return graph, graph.result

    def replay(self):
        for dst, src in zip(self.result or (), self.fn() or ()):
            dst.copy_(src)


def _new(like, T, lead, shape):
    """An empty buffer of T + lead steps of `shape`, or of `shape` alone for scratch (lead None)."""
    return like.new_empty(((T + lead,) if lead is not None else ()) + tuple(shape))


class _Entry:
    """Static buffers of one key, sized for `cap` steps, and its graphs by length."""

    def __init__(self, cap, T, steps, fixed, buffers, like):
        self.cap = cap
        self.extra = {n: t.shape[0] - T for n, t in steps.items()}      # 1 for cell states (T+1)
        self.steps = {n: t.new_empty((cap + self.extra[n],) + tuple(t.shape[1:])) for n, t in steps.items()}
        self.fixed = {n: None if t is None else torch.empty_like(t, memory_format=torch.contiguous_format)
                      for n, t in fixed.items()}
        self.bufs = {n: None if s is None else _new(like, cap, *s) for n, s in buffers.items()}
        self.lead = {n: None if s is None else s[0] for n, s in buffers.items()}
        self.graphs = {}

    def views(self, T):
        steps = {n: b[:T + self.extra[n]] for n, b in self.steps.items()}
        bufs = {n: b if b is None or self.lead[n] is None else b[:T + self.lead[n]]
                for n, b in self.bufs.items()}
        return steps, bufs


def _signature(tensors: dict, T=None):
    """What a graph depends on: names, shapes (per-step tensors: the steps beyond T and the rest),
    dtypes, devices."""
    def shape(t):
        return tuple(t.shape) if T is None else (t.shape[0] - T,) + tuple(t.shape[1:])
    return tuple((n, None) if t is None else (n, shape(t), t.dtype, t.device)
                 for n, t in sorted(tensors.items()))


class GraphCache:
    """Graphs and static buffers of the fast cell's loops on one device."""

    def __init__(self, capture):
        self.capture = capture
        self.entries: dict = {}
        self.enabled = True

    def run(self, name, T, steps, fixed, consts, buffers, loop):
        like = next(iter(steps.values()))
        key = (name, loop, _signature(steps, T), _signature(fixed), tuple(sorted(consts.items())),
               tuple(sorted(buffers.items())))
        entry = self.entries.get(key)
        if entry is None or entry.cap < T:
            self.entries.pop(key, None)
            entry = self.entries[key] = _Entry(32 * math.ceil(T / 32), T, steps, fixed, buffers, like)
        s_steps, s_bufs = entry.views(T)
        for n, t in steps.items():
            s_steps[n].copy_(t)
        for n, t in fixed.items():
            if t is not None:
                entry.fixed[n].copy_(t)
        if T not in entry.graphs:
            entry.graphs[T] = self.capture(lambda: loop(**s_steps, **entry.fixed, **consts, **s_bufs))
        graph, result = entry.graphs[T]
        graph.replay()
        bufs = {n: None if b is None or buffers[n][0] is None else b.clone() for n, b in s_bufs.items()}
        return bufs, tuple(r.clone() for r in result) if result is not None else None


def cache_for(device: torch.device):
    """The device's graph cache, or None where graphs do not apply (not CUDA, or a capture failed)."""
    if device.type != "cuda":
        return None
    if device not in _CACHES:
        _CACHES[device] = GraphCache(CudaCapture(device))
    cache = _CACHES[device]
    return cache if cache.enabled else None


def run_loop(graphs, name, T, steps: dict, fixed: dict, consts: dict, buffers: dict, loop):
    """Run `loop(**steps, **fixed, **consts, **buffers)` once. `steps` hold tensors whose first
    dim is the T steps, `fixed` any other inputs, `buffers` name -> (extra steps over T or None for
    scratch, shape) or None; the loop returns None or a tuple of tensors. Eagerly on fresh buffers
    when `graphs` is None, else replayed from `graphs`; returns (buffers, loop's result). A failed capture turns graphs off for the process
    (with a warning) and runs eagerly."""
    if graphs is not None and graphs.enabled:
        try:
            with torch.no_grad():
                return graphs.run(name, T, steps, fixed, consts, buffers, loop)
        except Exception as exc:                        # noqa: BLE001 (fall back, loudly, once)
            graphs.enabled = False
            graphs.entries.clear()
            warnings.warn(f"CUDA graph capture of a fast cell's loop failed ({type(exc).__name__}: {exc}); "
                          "running the fast cell eagerly from now on", stacklevel=2)
    like = next(iter(steps.values()))
    bufs = {n: None if s is None else _new(like, T, *s) for n, s in buffers.items()}
    with torch.no_grad():
        result = loop(**steps, **fixed, **consts, **bufs)
    return bufs, result
