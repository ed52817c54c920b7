"""The shared noisy LSTM: every method's noise, applied by one implementation.

Masks are explicit tensors drawn up front, so tests and the fast cell (bench/fastcell.py) use the
very same masks. Layout follows `nn.LSTM` (gate order i, f, g, o; weight_ih (4H,in), weight_hh
(4H,H), two biases), so the fused kernel runs on our own parameters. The per-step implementation
is the model's setting `NoiseState.impl` (bench/fastcell.py). `LSTMLayer.last_path` says what ran
last: "fused" (torch's LSTM kernel, when the recurrence is not perturbed), "fast" (the fast
per-step cell), "graph" (the fast cell replayed as CUDA graphs) or "cell" (`lstm_cell_loop`, the
reference, where the fast cell does not apply or impl is "reference"); `paths_run` every path it
ran in training (curriculum goes from fused to a per-step cell), which `LSTMStack.paths` reports.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn as nn

from bench import fastcell
from bench.api import Noise, NoiseState

# cuDNN copies non-flattened weights (DropConnect's masked W_hh is a new tensor every forward) into
# its buffer and says so; that copy is expected here, so the message is silenced once, at import.
warnings.filterwarnings("ignore", message=".*RNN module weights are not part of single contiguous.*")


def bernoulli_mask(shape, p: float, like: torch.Tensor, scale: bool = True) -> torch.Tensor:
    """Keep-mask with P(1) = 1-p, divided by 1-p when `scale` (inverted dropout). Every mask of
    the benchmark is drawn here; `rand < 1-p` is ~2x faster than `bernoulli_` on a CPU."""
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


def lstm_cell_loop(xw, h, c, w_hh, b_hh, rec_mask=None, cell_mask=None,
                   zone_h=None, zone_c=None, z_expect=(0.0, 0.0)):
    """The reference per-step LSTM: it defines what every fast path must compute.

    xw:  (T,B,4H) input projections W_ih x_t + b_ih (any input masks already applied).
    rec_mask: (T|1,B,H) mask on h_{t-1} (tied), or (T|1,4,B,H) one per gate (untied).
    cell_mask: (T|1,B,H) mask on the cell update g_t (semeniuta).
    zone_h/zone_c: (T,B,H) keep-previous masks (training); z_expect = (z_h, z_c) expectation at test.
    Returns outputs (T,B,H) (the zoned-out h, which is both the next step's and the next layer's
    input) and the final (h, c).
    """
    T = xw.shape[0]
    H = h.shape[-1]
    untied = rec_mask is not None and rec_mask.dim() == 4
    w_gates = w_hh.view(4, H, H) if untied else None
    outs = []
    for t in range(T):
        if rec_mask is None:
            rec = h @ w_hh.t()
        elif untied:
            hm = h.unsqueeze(0) * rec_mask[t if rec_mask.shape[0] > 1 else 0]        # (4,B,H)
            rec = torch.bmm(hm, w_gates.transpose(1, 2)).permute(1, 0, 2).reshape(h.shape[0], 4 * H)
        else:
            rec = (h * rec_mask[t if rec_mask.shape[0] > 1 else 0]) @ w_hh.t()
        gates = xw[t] + rec + b_hh
        i, f, g, o = gates.chunk(4, 1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        if cell_mask is not None:
            g = g * cell_mask[t if cell_mask.shape[0] > 1 else 0]
        c_new = f * c + i * g
        h_new = o * torch.tanh(c_new)
        if zone_c is not None:
            c_new = zone_c[t] * c + (1 - zone_c[t]) * c_new
        elif z_expect[1]:
            c_new = z_expect[1] * c + (1 - z_expect[1]) * c_new
        if zone_h is not None:
            h_new = zone_h[t] * h + (1 - zone_h[t]) * h_new
        elif z_expect[0]:
            h_new = z_expect[0] * h + (1 - z_expect[0]) * h_new
        h, c = h_new, c_new
        outs.append(h)
    return torch.stack(outs), (h, c)


class LSTMLayer(nn.Module):
    """One LSTM layer with nn.LSTM's parameter layout; noise given per call."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H))
        self.bias_ih = nn.Parameter(torch.empty(4 * H))
        self.bias_hh = nn.Parameter(torch.empty(4 * H))
        self.reset_parameters()
        self.last_path = ""
        self.paths_run: set[str] = set()        # every path run while training (eval's stay out)

    def reset_parameters(self, init_range: float = 0.0):
        r = init_range or 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -r, r)

    def forward(self, x, state, noise: Noise, p_in: float, active: bool, impl: str = "auto"):
        """x: (T,B,in) layer input before its input dropout; state: (h, c) each (B,H); impl: the
        per-step implementation (fastcell.MODES)."""
        h, c = state
        T, B, H = x.shape[0], x.shape[1], self.hidden_size
        w_hh = self.weight_hh
        if active and noise.weight > 0:             # DropConnect: one (4H,H) mask per forward
            w_hh = w_hh * bernoulli_mask(w_hh.shape, noise.weight, w_hh)
        untied = active and noise.gates == "untied"
        if untied:                                  # gal untied: a separate input mask per gate
            xm = x.unsqueeze(2)
            if p_in > 0:
                xm = xm * bernoulli_mask((1, B, 4, x.shape[2]), p_in, x)
            xw = torch.einsum("tbgi,ghi->tbgh", xm.expand(-1, -1, 4, -1),
                              self.weight_ih.view(4, H, -1)).reshape(T, B, 4 * H) + self.bias_ih
        else:
            x = io_dropout(x, p_in, noise.io_mask, active)
        needs_cell = (active and noise.per_step) or (not active and (noise.zone_h or noise.zone_c))
        if not needs_cell and not untied:
            self._ran("fused")
            out, hn, cn = torch._VF.lstm(
                x, (h.unsqueeze(0), c.unsqueeze(0)),
                [self.weight_ih, w_hh, self.bias_ih, self.bias_hh], True, 1, 0.0, False, False, False)
            return out, (hn[0], cn[0])
        if not untied:
            xw = fastcell.input_projection(x, self.weight_ih, self.bias_ih, impl)
        masks = dict(rec_mask=None, cell_mask=None, zone_h=None, zone_c=None, z_expect=(0.0, 0.0))
        if active:
            masks["rec_mask"] = recurrent_mask(noise.rec, noise.rec_mask, T, B, H, x, 4 if untied else 1)
            masks["cell_mask"] = recurrent_mask(noise.cell, noise.cell_mask, T, B, H, x)
            masks["zone_h"] = zoneout_mask(noise.zone_h, T, B, H, x)
            masks["zone_c"] = zoneout_mask(noise.zone_c, T, B, H, x)
        else:
            masks["z_expect"] = (noise.zone_h, noise.zone_c)
        path, result = fastcell.run(lstm_cell_loop, xw, h, c, w_hh, self.bias_hh, masks, impl)
        self._ran(path)
        return result

    def _ran(self, path: str) -> None:
        self.last_path = path
        if self.training:
            self.paths_run.add(path)


class LSTMStack(nn.Module):
    """Stacked noisy LSTM. The input dropout of layer 1 is `noise.emb`, of later layers
    `noise.hid`; `noise.out` drops the last layer's output."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, noise: NoiseState,
                 last_size: int | None = None):
        super().__init__()
        sizes = [hidden_size] * (num_layers - 1) + [last_size or hidden_size]
        ins = [input_size] + sizes[:-1]
        self.layers = nn.ModuleList(LSTMLayer(i, o) for i, o in zip(ins, sizes))
        self.noise = noise

    def init_state(self, batch_size: int, device=None):
        return [(torch.zeros(batch_size, l.hidden_size, device=device),
                 torch.zeros(batch_size, l.hidden_size, device=device)) for l in self.layers]

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
