"""What the cell tests share (tests/test_fastcell.py: the LSTM, tests/test_grucell.py: the GRU): the
mask combinations, seeded masks and leaves for one cell type, and the outputs, final state and
every gradient of a weighted loss, compared by name."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from bench.rnn import bernoulli_mask, recurrent_mask, zoneout_mask

RECS = [None, ("tied", "step"), ("tied", "sequence"), ("untied", "step"), ("untied", "sequence")]
CELLS = [None, "step", "sequence"]
ZONES = ["none", "train", "expect"]
COMBOS = list(itertools.product(RECS, CELLS, ZONES))


@dataclass(frozen=True)
class Kind:
    gates: int                      # gate blocks of w_hh: 4 (LSTM), 3 (GRU)
    states: tuple[str, ...]         # the carried state: ("h", "c") or ("h",)
    zone: tuple[float, ...]         # zoneout rate of each state in the tests


LSTM = Kind(4, ("h", "c"), (0.3, 0.5))
GRU = Kind(3, ("h",), (0.3,))


def combo_id(combo) -> str:
    rec, cell, zone = combo
    return f"rec={'-'.join(rec) if rec else 'none'},cell={cell or 'none'},zone={zone}"


def make_masks(kind: Kind, combo, T, B, H, like, seed=2) -> dict:
    """The keyword masks of a cell call: recurrent (tied or untied per gate), cell-update and zoneout
    masks, or zoneout in expectation (eval), as `combo` says."""
    rec, cell, zone = combo
    torch.manual_seed(seed)
    m = dict(rec_mask=None, cell_mask=None, z_expect=(0.0,) * len(kind.states))
    m.update({f"zone_{s}": None for s in kind.states})
    if rec:
        m["rec_mask"] = recurrent_mask(0.3, rec[1], T, B, H, like, kind.gates if rec[0] == "untied" else 1)
    if cell:
        m["cell_mask"] = recurrent_mask(0.4, cell, T, B, H, like)
    if zone == "train":
        for s, z in zip(kind.states, kind.zone):
            m[f"zone_{s}"] = zoneout_mask(z, T, B, H, like)
    elif zone == "expect":
        m["z_expect"] = kind.zone
    return m


def make_leaves(kind: Kind, T, B, H, dtype, device="cpu", seed=1) -> list[torch.Tensor]:
    """xw (the input projection), the initial state, w_hh and b_hh, all requiring grad."""
    g = torch.Generator().manual_seed(seed)
    G = kind.gates * H
    shapes = [(T, B, G), *[(B, H)] * len(kind.states), (G, H), (G,)]
    return [torch.randn(s, generator=g, dtype=dtype).mul_(0.5).to(device).requires_grad_() for s in shapes]


def run_cell(kind: Kind, fn, leaves, masks, dropconnect=0.0) -> list[torch.Tensor]:
    """Forward and all gradients of a weighted sum of outputs and final state. DropConnect, when
    on, masks w_hh with a seeded dropout, so the gradient reaches the raw weight through it."""
    xw, *state, raw, b = leaves
    assert len(state) == len(kind.states)
    torch.manual_seed(7)
    w = raw * bernoulli_mask(raw.shape, dropconnect, raw) if dropconnect else raw
    out, final = fn(xw, *state, w, b, **masks)
    tensors = (out, *final)
    g = torch.Generator().manual_seed(3)
    weights = [torch.randn(t.shape, generator=g, dtype=t.dtype).to(t.device) for t in tensors]
    loss = sum((t * wt).sum() for t, wt in zip(tensors, weights))
    return [*tensors, *torch.autograd.grad(loss, leaves)]


def assert_all_close(kind: Kind, got, want, **tol) -> None:
    names = (["out", *(f"{s}_T" for s in kind.states), "d xw", *(f"d {s}0" for s in kind.states),
              "d w_hh", "d b_hh"])
    assert len(got) == len(want) == len(names)
    for name, a, b in zip(names, got, want):
        torch.testing.assert_close(a, b, msg=lambda m: f"{name}: {m}", **tol)


def flat(fn, masks):
    """fn as gradcheck wants it: tensors in, a flat tuple (outputs, final state...) out."""
    def call(*args):
        out, final = fn(*args, **masks)
        return (out, *final)
    return call


def stack_step(cell: str, noise, train=True, seed=0, impl="auto", device="cpu"):
    """One forward (and backward in training) of a 2-layer stack of `cell`s on `device`: the paths
    that forward took, and its outputs, state and all gradients (on the CPU)."""
    from bench.api import NoiseState
    from bench.rnn import RecurrentStack
    torch.manual_seed(seed)
    stack = RecurrentStack(6, 5, 2, NoiseState(noise, impl=impl), last_size=4, cell=cell).to(device)
    stack.train(train)
    x = torch.randn(7, 3, 6).to(device).requires_grad_()
    with torch.set_grad_enabled(train):
        out, state, raw = stack(x)
    assert all(len(st) == (2 if cell == "lstm" else 1) for st in state)       # (h, c) or (h,)
    results = [out, raw] + [t for st in state for t in st]
    if train:
        loss = out.pow(2).sum() + raw.sum() + sum(t.sum() for st in state for t in st)
        results += torch.autograd.grad(loss, [x, *stack.parameters()])
    return stack.last_paths, [r.detach().cpu() for r in results]
