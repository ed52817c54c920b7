"""The LSTM cell type: nn.LSTM's layout (gates i, f, g, o; weight_ih (4H,in), weight_hh (4H,H),
two biases), so `torch._VF.lstm` runs on the model's own parameters; `lstm_cell_loop` is the
reference per-step cell and bench/fastcell.py its fast path.

Slots a mask position can name: "h_in" (h_{t-1} where it enters the recurrent matmul), the
activated gates "i", "f", "g", "o", and "c" (the new cell state c_t = f*c_{t-1} + i*g_t: its
mask gives the dropped c_t that h_t = o*tanh(c_t) uses and the next step carries). The fast cell
applies "c" (and the built-in rec/cell masks, i.e. h_in and g); the reference loop all of them.
"""
from __future__ import annotations

import torch

from bench import fastcell
from bench.cells import CellSpec, recurrent_matmul, register_cell
from bench.cells import step_mask as _at

SLOTS = ("h_in", "i", "f", "g", "o", "c")


def lstm_cell_loop(xw, h, c, w_hh, b_hh, rec_mask=None, cell_mask=None,
                   zone_h=None, zone_c=None, z_expect=(0.0, 0.0), slots=None):
    """The reference per-step LSTM: it defines what every fast path must compute.

    xw:  (T,B,4H) input projections W_ih x_t + b_ih (any input masks already applied).
    rec_mask: (T|1,B,H) mask on h_{t-1} (tied), or (T|1,4,B,H) one per gate (untied).
    cell_mask: (T|1,B,H) mask on the cell update g_t (semeniuta).
    zone_h/zone_c: (T,B,H) keep-previous masks (training); z_expect = (z_h, z_c) expectation at test.
    slots: {slot: (T|1,B,H) mask} of registered mask positions (SLOTS), each multiplying its tensor.
    Returns outputs (T,B,H) (the zoned-out h, which is both the next step's and the next layer's
    input) and the final (h, c).
    """
    T = xw.shape[0]
    extra = slots or {}
    outs = []
    for t in range(T):
        hr = h if "h_in" not in extra else h * _at(extra["h_in"], t)
        gates = xw[t] + recurrent_matmul(hr, w_hh, rec_mask, t) + b_hh
        i, f, g, o = gates.chunk(4, 1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        if extra:
            i, f, g, o = (x if k not in extra else x * _at(extra[k], t) for k, x in zip("ifgo", (i, f, g, o)))
        if cell_mask is not None:
            g = g * _at(cell_mask, t)
        c_new = f * c + i * g
        if "c" in extra:
            c_new = c_new * _at(extra["c"], t)
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


def fused(x, state, weights):
    """torch's LSTM kernel on the layer's weights (no recurrent noise)."""
    h, c = state
    out, hn, cn = torch._VF.lstm(x, (h.unsqueeze(0), c.unsqueeze(0)), list(weights), True, 1, 0.0,
                                 torch.is_grad_enabled(), False, False)   # train: cuDNN keeps what backward needs
    return out, (hn[0], cn[0])


def run(xw, state, w_hh, b_hh, masks, impl):
    h, c = state
    return fastcell.run(lstm_cell_loop, xw, h, c, w_hh, b_hh, masks, impl)


LSTM = register_cell(CellSpec(
    name="lstm", title="LSTM", gates=4, states=("h", "c"), zone_fields=("zone_h", "zone_c"),
    slots=SLOTS, fast_slots=("c",), fused=fused, reference=lstm_cell_loop, run=run,
    doc="LSTM (nn.LSTM's gates i, f, g, o); reference lstm_cell_loop, fast cell bench/fastcell.py"))
