"""The shared noisy recurrent stack: every method's noise, on every cell type, by one implementation.

Masks are explicit tensors drawn up front, so tests and the fast cells use the very same masks.
A layer is built from a cell type (bench/cells: `cell=lstm|gru`) and never names one: the spec
gives the gate layout (nn.LSTM's / nn.GRU's: weight_ih (G*H,in), weight_hh (G*H,H), two biases,
so torch's fused kernel runs on our own parameters), the state tensors and the three paths. The
per-step implementation is the model's setting `NoiseState.impl` (bench/fastcell.py).
`RecurrentLayer.last_path` says what ran last: "fused" (torch's kernel, when the recurrence is not
perturbed), "fast" (the cell's fast per-step path), "graph" (that path replayed as CUDA graphs) or
"cell" (the cell's reference loop, where the fast path does not apply or impl is "reference");
`paths_run` every path it ran in training (curriculum goes from fused to a per-step cell), which
`RecurrentStack.paths` reports. Which positions a cell type can apply is bench/positions.py's:
a noise naming one it cannot apply is an error, never dropped.
"""
from __future__ import annotations

import contextlib
import math
import warnings

import torch
import torch.nn as nn

from bench import cells, fastcell, positions
from bench.api import Noise, NoiseState
from bench.cells.lstm import lstm_cell_loop  # noqa: F401  (the LSTM's reference cell, imported from here by tests)
from bench.cells.gru import gru_cell_loop  # noqa: F401

# cuDNN copies non-flattened weights (DropConnect's masked W_hh is a new tensor every forward) into
# its buffer and says so; that copy is expected here, so the message is silenced once, at import.
warnings.filterwarnings("ignore", message=".*RNN module weights are not part of single contiguous.*")


class MaskDrawn(Exception):
    """A mask was drawn inside `no_masks()`."""


_no_masks = False


@contextlib.contextmanager
def no_masks():
    """Raise MaskDrawn at the first mask drawn inside: bench/verify.py replays a GPU row on a CPU only
    while its numbers do not depend on the generator (the GPU's masks cannot be drawn here)."""
    global _no_masks
    _no_masks = True
    try:
        yield
    finally:
        _no_masks = False


def bernoulli_mask(shape, p: float, like: torch.Tensor, scale: bool = True) -> torch.Tensor:
    """Keep-mask with P(1) = 1-p, divided by 1-p when `scale` (inverted dropout). Every mask of
    the benchmark is drawn here; `rand < 1-p` is ~2x faster than `bernoulli_` on a CPU."""
    if _no_masks:
        raise MaskDrawn(f"a {tuple(shape)} mask")
    keep = (torch.rand(shape, dtype=like.dtype, device=like.device) < 1.0 - p).to(like.dtype)
    return keep / (1.0 - p) if scale else keep


def io_dropout(x: torch.Tensor, p: float, mode: str, active: bool) -> torch.Tensor:
    """Dropout on a (T,B,H) tensor: "element" = fresh mask per element, "locked" = one (1,B,H)
    mask shared by all time steps of the chunk."""
    if not active or p == 0.0:
        return x
    shape = x.shape if mode == "element" else (1,) + tuple(x.shape[1:])
    return x * bernoulli_mask(shape, p, x)


def embedding_dropout(weight: torch.Tensor, p: float, active: bool) -> torch.Tensor:
    """Drop whole word types: one (V,1) mask on the embedding matrix rows, scaled by 1/(1-p)."""
    if not active or p == 0.0:
        return weight
    return weight * bernoulli_mask((weight.shape[0], 1), p, weight)


def recurrent_mask(p: float, mode: str, T: int, B: int, H: int, like, gates: int = 1):
    """Mask for a per-step tensor: (T,[G,]B,H) fresh per step, or (1,[G,]B,H) reused by every step."""
    if p == 0.0:
        return None
    lead = T if mode == "step" else 1
    shape = (lead, gates, B, H) if gates > 1 else (lead, B, H)
    return bernoulli_mask(shape, p, like)


def zoneout_mask(z: float, T: int, B: int, H: int, like):
    """1 = keep the previous value (prob z), fresh every step, no rescaling."""
    if z == 0.0:
        return None
    return bernoulli_mask((T, B, H), 1.0 - z, like, scale=False)


class RecurrentLayer(nn.Module):
    """One recurrent layer of cell type `cell`, with torch's parameter layout; noise given per call."""

    def __init__(self, input_size: int, hidden_size: int, cell: str = "lstm"):
        super().__init__()
        self.spec = cells.get_cell(cell)
        self.input_size, self.hidden_size = input_size, hidden_size
        G, H = self.spec.gates, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(G * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(G * H, H))
        self.bias_ih = nn.Parameter(torch.empty(G * H))
        self.bias_hh = nn.Parameter(torch.empty(G * H))
        self.reset_parameters()
        self.last_path = ""
        self.paths_run: set[str] = set()        # every path run while training (eval's stay out)

    @property
    def cell(self) -> str:
        return self.spec.name

    def extra_repr(self) -> str:
        return f"{self.spec.name}, {self.input_size}, {self.hidden_size}"

    def reset_parameters(self, init_range: float = 0.0):
        r = init_range or 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -r, r)

    def init_state(self, batch_size: int, device=None) -> tuple:
        """Zeros for each state tensor of the cell type: (h, c) or (h,)."""
        return tuple(torch.zeros(batch_size, self.hidden_size, device=device) for _ in self.spec.states)

    def forward(self, x, state, noise: Noise, p_in: float, active: bool, impl: str = "auto"):
        """x: (T,B,in) layer input before its input dropout; state: the cell's state tensors, each
        (B,H); impl: the per-step implementation (fastcell.MODES). Masks are drawn in a fixed order:
        DropConnect, input masks, recurrent, cell-update, zoneout (h, then c), registered positions."""
        spec = self.spec
        positions.check(noise, spec.name)
        T, B, H, G = x.shape[0], x.shape[1], self.hidden_size, spec.gates
        w_hh = self.weight_hh
        if active and noise.weight > 0:             # DropConnect: one (G*H,H) mask per forward
            w_hh = w_hh * bernoulli_mask(w_hh.shape, noise.weight, w_hh)
        untied = active and noise.gates == "untied"
        if untied:                                  # gal untied: a separate input mask per gate
            xm = x.unsqueeze(2)
            if p_in > 0:
                xm = xm * bernoulli_mask((1, B, G, x.shape[2]), p_in, x)
            xw = torch.einsum("tbgi,ghi->tbgh", xm.expand(-1, -1, G, -1),
                              self.weight_ih.view(G, H, -1)).reshape(T, B, G * H) + self.bias_ih
        else:
            x = io_dropout(x, p_in, noise.io_mask, active)
        zones = tuple(getattr(noise, f) for f in spec.zone_fields)
        needs_cell = (active and noise.per_step) or (not active and any(zones))
        if not needs_cell and not untied:
            self._ran("fused")
            return spec.fused(x, state, (self.weight_ih, w_hh, self.bias_ih, self.bias_hh))
        if not untied:
            xw = fastcell.input_projection(x, self.weight_ih, self.bias_ih, impl)
        masks = dict(rec_mask=None, cell_mask=None, **{f: None for f in spec.zone_fields},
                     z_expect=(0.0,) * len(zones), slots={})
        if active:
            masks["rec_mask"] = recurrent_mask(noise.rec, noise.rec_mask, T, B, H, x, G if untied else 1)
            masks["cell_mask"] = recurrent_mask(noise.cell, noise.cell_mask, T, B, H, x)
            for f, z in zip(spec.zone_fields, zones):
                masks[f] = zoneout_mask(z, T, B, H, x)
            for _, rate, mode, slot in positions.extra_masks(noise, spec.name):
                m = recurrent_mask(rate, mode, T, B, H, x)
                masks["slots"][slot] = m if slot not in masks["slots"] else masks["slots"][slot] * m
        else:
            masks["z_expect"] = zones
        path, result = spec.run(xw, state, w_hh, self.bias_hh, masks, impl)
        self._ran(path)
        return result

    def _ran(self, path: str) -> None:
        self.last_path = path
        if self.training:
            self.paths_run.add(path)


class LSTMLayer(RecurrentLayer):
    """A RecurrentLayer of LSTM cells."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size, "lstm")


class GRULayer(RecurrentLayer):
    """A RecurrentLayer of GRU cells."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size, "gru")


class RecurrentStack(nn.Module):
    """Stacked noisy recurrent layers of one cell type. The input dropout of layer 1 is
    `noise.emb`, of later layers `noise.hid`; `noise.out` drops the last layer's output. The state
    is a list with one tuple of the cell's state tensors per layer ((h, c) or (h,))."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, noise: NoiseState,
                 last_size: int | None = None, cell: str = "lstm"):
        super().__init__()
        sizes = [hidden_size] * (num_layers - 1) + [last_size or hidden_size]
        ins = [input_size] + sizes[:-1]
        self.layers = nn.ModuleList(RecurrentLayer(i, o, cell) for i, o in zip(ins, sizes))
        self.noise = noise

    @property
    def cell(self) -> str:
        return self.layers[0].cell

    def init_state(self, batch_size: int, device=None):
        return [l.init_state(batch_size, device) for l in self.layers]

    def state_from_hidden(self, hidden: list) -> list:
        """A state whose h of each layer is given ((B,H) each) and any other state tensor (the
        LSTM's c) zero: e.g. a decoder started from a bridge of the encoder."""
        return [(h,) + tuple(torch.zeros_like(h) for _ in l.spec.states[1:]) for h, l in zip(hidden, self.layers)]

    def forward(self, x, state=None):
        """x: (T,B,in). Returns (dropped output, new state, raw last-layer output)."""
        noise, active = self.noise.noise, self.noise.active(self)
        impl = fastcell.resolve_impl(self.noise.impl)
        if state is None:
            state = self.init_state(x.shape[1], x.device)
        new_state = []
        for i, layer in enumerate(self.layers):
            x, st = layer(x, state[i], noise, noise.emb if i == 0 else noise.hid, active, impl)
            new_state.append(st)
        return io_dropout(x, noise.out, noise.io_mask, active), new_state, x

    @property
    def paths(self) -> str:
        """Every path its layers ran in training, sorted, comma-separated: read once after training."""
        return ",".join(sorted(set().union(*(l.paths_run for l in self.layers))))

    @property
    def last_paths(self) -> str:
        """The paths of the last forward (training or evaluation)."""
        return ",".join(sorted({l.last_path for l in self.layers if l.last_path}))


class LSTMStack(RecurrentStack):
    """A RecurrentStack of LSTM layers."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, noise: NoiseState,
                 last_size: int | None = None):
        super().__init__(input_size, hidden_size, num_layers, noise, last_size, cell="lstm")
