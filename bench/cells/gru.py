"""The GRU cell type, in PyTorch's convention (nn.GRU): gates r, z (the update gate u), n;
weight_ih (3H,in), weight_hh (3H,H), two biases, and

    r = s(W_ir x + b_ir + W_hr h + b_hr),   z = s(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),   h_t = (1 - z) * n + z * h_{t-1}.

The reset gate multiplies W_hn h_{t-1} + b_hn *after* the matmul (Cho et al.'s original applies
r to h_{t-1} before it): this is what torch's fused kernel (`torch._VF.gru`, used by nn.GRU)
computes, so the fused path, the reference loop `gru_cell_loop` and the fast cell
(bench/cells/grufast.py) compute one function. There is no cell state: h is memory and output.

Noise on a GRU (../shared/METHODS.md): a recurrent mask multiplies h_{t-1} where it enters the
three W_h* matmuls (one mask per gate when untied), never the carry z*h_{t-1}, which always uses
the undropped h_{t-1}; the cell-update mask (semeniuta) drops the candidate n before the
interpolation; zoneout applies to h only. Slots a mask position can name: "h_in" (h_{t-1} into the
matmuls), "r", "z" (activated gates) and "n" (the candidate); the fast cell applies none of them
beyond the built-in masks (a position on a slot runs the reference loop).
"""
from __future__ import annotations

import torch

from bench.cells import CellSpec, grufast, recurrent_matmul, register_cell
from bench.cells import step_mask as _at

SLOTS = ("h_in", "r", "z", "n")


def gru_cell_loop(xw, h, w_hh, b_hh, rec_mask=None, cell_mask=None, zone_h=None, z_expect=(0.0,), slots=None):
    """The reference per-step GRU: it defines what every fast path must compute.

    xw:  (T,B,3H) input projections W_ih x_t + b_ih (any input masks already applied).
    rec_mask: (T|1,B,H) mask on h_{t-1} where it enters the W_hh matmul (tied), or (T|1,3,B,H)
              one per gate (untied); the carry z*h_{t-1} sees the undropped h_{t-1}.
    cell_mask: (T|1,B,H) mask on the candidate n_t (semeniuta).
    zone_h: (T,B,H) keep-previous mask (training); z_expect = (z_h,) its expectation at test.
    slots: {slot: (T|1,B,H) mask} of registered mask positions (SLOTS).
    Returns outputs (T,B,H) (the zoned-out h) and the final state (h,).
    """
    T = xw.shape[0]
    extra = slots or {}
    outs = []
    for t in range(T):
        hr = h if "h_in" not in extra else h * _at(extra["h_in"], t)
        hw = recurrent_matmul(hr, w_hh, rec_mask, t) + b_hh
        xr, xz, xn = xw[t].chunk(3, 1)
        hr_, hz_, hn_ = hw.chunk(3, 1)
        r, z = torch.sigmoid(xr + hr_), torch.sigmoid(xz + hz_)
        if "r" in extra:
            r = r * _at(extra["r"], t)
        if "z" in extra:
            z = z * _at(extra["z"], t)
        n = torch.tanh(xn + r * hn_)
        if cell_mask is not None:
            n = n * _at(cell_mask, t)
        if "n" in extra:
            n = n * _at(extra["n"], t)
        h_new = (1 - z) * n + z * h                     # the carry: undropped h_{t-1}
        if zone_h is not None:
            h_new = zone_h[t] * h + (1 - zone_h[t]) * h_new
        elif z_expect[0]:
            h_new = z_expect[0] * h + (1 - z_expect[0]) * h_new
        h = h_new
        outs.append(h)
    return torch.stack(outs), (h,)


def fused(x, state, weights):
    """torch's GRU kernel on the layer's weights (no recurrent noise)."""
    (h,) = state
    out, hn = torch._VF.gru(x, h.unsqueeze(0), list(weights), True, 1, 0.0,
                            torch.is_grad_enabled(), False, False)   # train: cuDNN keeps what backward needs
    return out, (hn[0],)


def run(xw, state, w_hh, b_hh, masks, impl):
    (h,) = state
    return grufast.run(gru_cell_loop, xw, h, w_hh, b_hh, masks, impl)


GRU = register_cell(CellSpec(
    name="gru", title="GRU", gates=3, states=("h",), zone_fields=("zone_h",), slots=SLOTS, fast_slots=(),
    fused=fused, reference=gru_cell_loop, run=run,
    doc="GRU (nn.GRU's convention: r applied after W_hn h); reference gru_cell_loop, fast cell bench/cells/grufast.py"))
