"""Cell types: the recurrent cells a model can be built of (`cell=lstm|gru`), one registry.

A cell type is a `CellSpec`: its gate layout (nn.LSTM's / nn.GRU's, so torch's fused kernel runs on
the model's own parameters), the tensors of its state, the slots its per-step paths can mask (see
bench/positions.py), and three implementations of one function:

- `fused`: torch's multi-step kernel (cuDNN on a GPU, ATen/oneDNN on a CPU), for training runs
  whose noise leaves the recurrence alone and for evaluation;
- `reference`: the per-step loop written with autograd, which defines what every path computes;
- `run`: the fast per-step path (a hand-written BPTT, replayed as CUDA graphs on a GPU), falling
  back to `reference` with a one-time warning where it does not apply (and always under
  BENCH_RNN_IMPL=reference).

bench/rnn.py builds layers from a spec and never names a cell type. A new cell type is a module
that calls `register_cell`; a second spec under the same name is an error.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

import torch

from bench.errors import UsageError


@dataclass(frozen=True)
class CellSpec:
    """A recurrent cell type.

    name, title: `cell=<name>` in configs; the title in tables ("LSTM").
    gates:       G, the gate blocks of weight_ih (G*H, in) and weight_hh (G*H, H).
    states:      names of the per-layer state tensors, each (B,H): ("h", "c") or ("h",).
    zone_fields: the `Noise` zoneout fields of those states, in the same order.
    slots:       the per-step tensors a mask position can name (bench/positions.py); `reference`
                 applies all of them, `run`'s fast path those of `fast_slots`.
    fused(x, state, (w_ih, w_hh, b_ih, b_hh)) -> (outputs (T,B,H), state).
    reference(xw, *state, w_hh, b_hh, **masks) -> (outputs, state): the per-step loop.
    run(xw, state, w_hh, b_hh, masks, impl) -> (path, (outputs, state)), path "fast", "graph" or
                 "cell" (the reference).
    masks:       rec_mask, cell_mask, one zoneout mask per zone field (by field name), z_expect (the
                 zoneout expectations at test time, one per state) and slots (slot -> mask of the
                 registered mask positions).
    """
    name: str
    title: str
    gates: int
    states: tuple
    zone_fields: tuple
    slots: tuple
    fast_slots: tuple
    fused: Callable
    reference: Callable
    run: Callable
    doc: str = ""
    module: str = field(default="", compare=False)

    def __post_init__(self):
        if not self.module:
            object.__setattr__(self, "module", sys._getframe(2).f_globals.get("__name__", "?"))
        if len(self.zone_fields) != len(self.states):
            raise ValueError(f"cell {self.name!r}: one zoneout field per state")
        if not set(self.fast_slots) <= set(self.slots):
            raise ValueError(f"cell {self.name!r}: fast_slots must be slots")


_CELLS: dict[str, CellSpec] = {}


def register_cell(spec: CellSpec) -> CellSpec:
    """Register a cell type; a second spec under the same name is an error."""
    if spec.name in _CELLS and _CELLS[spec.name] is not spec:
        raise ValueError(f"duplicate cell name {spec.name!r}: already registered by {_CELLS[spec.name].module}, "
                         f"again by {spec.module}")
    _CELLS[spec.name] = spec
    return spec


def get_cell(name: str, context: str = "") -> CellSpec:
    if name not in _CELLS:
        where = f" ({context})" if context else ""
        raise UsageError(f"unknown cell type {name!r}{where}; choose one of: {', '.join(sorted(_CELLS))}")
    return _CELLS[name]


def list_cells() -> list[str]:
    return sorted(_CELLS)


def step_mask(mask, t):
    """The step-t view of a (T|1, ...) mask (a mask of lead 1 serves every step); None for None."""
    return None if mask is None else mask[t if mask.shape[0] > 1 else 0]


def recurrent_matmul(h, w_hh, rec_mask, t):
    """h_{t-1} W_hh^T with the recurrent dropout mask of step t: none, one (B,H) mask for every gate
    (tied, `rec_mask` (T|1,B,H)) or one per gate block of W_hh (untied, (T|1,G,B,H)). What the
    reference loops of every cell type share (B, G*H)."""
    if rec_mask is None:
        return h @ w_hh.t()
    if rec_mask.dim() == 4:
        B, H = h.shape
        G = w_hh.shape[0] // H
        hm = h.unsqueeze(0) * step_mask(rec_mask, t)                                   # (G,B,H)
        return torch.bmm(hm, w_hh.reshape(G, H, H).transpose(1, 2)).permute(1, 0, 2).reshape(B, G * H)
    return (h * step_mask(rec_mask, t)) @ w_hh.t()


from bench.cells import gru as _gru, lstm as _lstm  # noqa: E402,F401  (register the built-in cell types)
