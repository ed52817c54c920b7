"""The fast per-step GRU: what `gru_cell_loop` (bench/cells/gru.py) computes, as one autograd node
per layer with a hand-written BPTT backward, as bench/fastcell.py does for the LSTM.

Forward, per step: hw = W_hh (masked h_{t-1}) + b_hh in one matmul (oneDNN with the weight
prepacked on a CPU, as the fast LSTM), then r,z = sigmoid(x_rz + hw_rz) (an add and an in-place
sigmoid), n = tanh(x_n + r * hw_n) (the reset gate after the matmul), h_t = lerp(n, h_{t-1}, z) =
(1-z)*n + z*h_{t-1}: five ops, plus one per mask. Without a backward (evaluation) hw is not kept.

Backward: everything that does not depend on the recurrence is computed for all steps at once
before the loop (`activation_grads`): with d_t = dL/dh_t (total), dL/d hw_t = d_t * q_t and
dL/dh_{t-1} = (dL/d hw_t) W_hh (masked) + d_t * carry_t + dL/d out_{t-1}, so a step is one
elementwise product, one matmul and one multiply-add. After the loop, dW_hh = sum_t dhw_t^T h~_{t-1}
is one matmul, db_hh a sum, and dL/dxw is dL/dhw except on n (where dL/d(x_n) = d_t * a_t, a_t
the derivative of h_t by n's pre-activation; dL/d(hw_n) = that times r).

Both loops only read their inputs and write buffers (or return tensors), so on CUDA they are
captured once per shape and replayed as CUDA graphs (bench/cudagraphs.py), as the LSTM's generic
loops are (there is no fused per-step GRU kernel here: ATen's `_thnn_fused_gru_cell` is not used).
On a CPU this cell trains faster than torch's own GRU kernel, which runs its steps as ATen ops
recorded by autograd (reports/PERF.md); the fused path is still used where the recurrence is not
perturbed, so that it stays torch's kernel.
"""
from __future__ import annotations

import torch

from bench import cudagraphs, fastcell
from bench.cellloops import addmm, steps_of, zone_steps

FAST_SLOTS = ()
G = 3


def invalid_reason(xw, h, w_hh, b_hh, masks: dict) -> str:
    """Why the fast GRU cannot run these arguments ("" when it can)."""
    keys = ("rec_mask", "cell_mask", "zone_h")
    tensors = [xw, h, w_hh, b_hh] + [masks[k] for k in keys if masks.get(k) is not None] + \
        list((masks.get("slots") or {}).values())
    T, B, H = (xw.shape[0], xw.shape[1], h.shape[-1]) if xw.dim() == 3 else (0, 0, 0)
    if T == 0 or xw.shape[2] != G * H or h.shape != (B, H) or w_hh.shape != (G * H, H) or b_hh.shape != (G * H,):
        return "shapes other than xw (T>0,B,3H), h (B,H), w_hh (3H,H), b_hh (3H)"
    why = fastcell.unsupported_inputs(xw, tensors, masks, keys)
    if why:
        return why
    shapes = dict(rec_mask=[(n, B, H) for n in {1, T}] + [(n, G, B, H) for n in {1, T}],
                  cell_mask=[(n, B, H) for n in {1, T}], zone_h=[(T, B, H)])
    if any(masks.get(k) is not None and tuple(masks[k].shape) not in ok for k, ok in shapes.items()):
        return "mask shapes other than (T|1,B,H), rec (T|1,3,B,H), zoneout (T,B,H)"
    return fastcell.slot_reason(masks, FAST_SLOTS, B, H, T)


def run(reference, xw, h, w_hh, b_hh, masks: dict, impl: str = "auto"):
    """Run the GRU recurrence on the best valid path for mode `impl`; (path, (outputs, (h,)))."""
    return fastcell.dispatch("GRU", reference, gru_fast, invalid_reason, (xw, h, w_hh, b_hh), masks, impl)


def gru_fast(xw, h, w_hh, b_hh, rec_mask=None, cell_mask=None, zone_h=None, z_expect=(0.0,), slots=None,
             graphs=None):
    """`gru_cell_loop` (same arguments and results) on the fast cell; `graphs` a
    `cudagraphs.GraphCache` to replay the loops as CUDA graphs, None to run them eagerly."""
    if slots:
        raise ValueError(f"the fast GRU cell does not apply slot(s) {', '.join(sorted(slots))}")
    backward = torch.is_grad_enabled() and any(t.requires_grad for t in (xw, h, w_hh, b_hh))
    out, hT = _FastGRU.apply(xw, h, w_hh, b_hh, rec_mask, cell_mask, zone_h, float(z_expect[0]), graphs, backward)
    return out, (hT,)


def _hidden(h, rec_t, hm_t, w, b, out, rec3, packed):
    """W_hh (masked h) + b_hh, (B,3H): into `out`, or a new tensor where oneDNN (`packed`, w
    prepacked; tied or no mask) computes it. The masked h is written to hm_t."""
    B, H = h.shape
    a = h
    if rec_t is not None:
        a = torch.mul(h, rec_t, out=hm_t)
        if rec_t.dim() == 3:                                  # untied: (3,B,H) masks, one W block per gate
            torch.bmm(hm_t, w.reshape(G, H, H).transpose(1, 2), out=rec3)
            return torch.add(rec3.transpose(0, 1), b.view(G, H), out=out.view(B, G, H)).view(B, G * H)
    if packed is not None:
        return torch.ops.mkldnn._linear_pointwise(a, packed, b, "none", [], "")
    return torch.addmm(b, a, w.t(), out=out)


def forward_loop(x, h0, w, b, rec_mask, cell_mask, zone_h, zh: float, out, rz, n, hw, hm, rec3, hnew, nd,
                 packed=None, keep_hw=True):
    """The recurrence. Inputs: x (T,B,3H) input projections (+ b_ih), h0 (B,H), w = W_hh (3H,H),
    b = b_hh, the masks of `gru_cell_loop`, zh its z_expect; packed: w prepacked for oneDNN or None.
    Writes: out (T,B,H) the zoned-out h; rz (T,B,2H) the gates r, z; n (T,B,H) the candidate
    (before the cell mask); hw (T,B,3H) = W_hh h~_{t-1} + b_hh (written only with keep_hw: the
    backward needs it); hm the masked h_{t-1} ((T,B,H), or (T,3,B,H) untied; None without a rec
    mask). rec3, hnew, nd: scratch."""
    T, B, H = out.shape
    rec, cell, hms = (steps_of(v, T) for v in (rec_mask, cell_mask, hm))
    zhs = zone_steps(zone_h, zh, T)
    xs, rzs, ns, hws, outs = (v.unbind(0) for v in (x, rz, n, hw, out))
    made = []
    h = h0
    for t in range(T):
        hw_t = _hidden(h, rec[t], hms[t], w, b, hws[t], rec3, packed)
        if packed is not None and keep_hw:              # oneDNN returned a new tensor
            made.append(hw_t)
        torch.add(xs[t][:, :2 * H], hw_t[:, :2 * H], out=rzs[t]).sigmoid_()
        r, z = rzs[t][:, :H], rzs[t][:, H:]
        torch.addcmul(xs[t][:, 2 * H:], r, hw_t[:, 2 * H:], out=ns[t]).tanh_()
        cand = ns[t] if cell[t] is None else torch.mul(ns[t], cell[t], out=nd)
        if zhs[t] is None:
            torch.lerp(cand, h, z, out=outs[t])
        else:
            torch.lerp(torch.lerp(cand, h, z, out=hnew), h, zhs[t], out=outs[t])
        h = outs[t]
    if made and keep_hw:
        torch.stack(made, out=hw)


def activation_grads(rz, n, hw, h0, out, cell_mask, zone_h, zh: float):
    """For `backward_loop`, all steps at once: q (T,B,3H) with dL/d hw_t = d_t * q_t; a (T,B,H)
    with dL/d(x_n)_t = d_t * a_t; carry (T,B,H) = the direct d h_t / d h_{t-1} (through
    z*h_{t-1} and zoneout), d_t being dL/dh_t."""
    T, B, H = out.shape
    r, z = rz[..., :H], rz[..., H:]
    hn = hw[..., 2 * H:]
    nd = n if cell_mask is None else n * cell_mask
    h_prev = torch.cat([h0.unsqueeze(0), out[:-1]])
    keep = zone_h if zone_h is not None else zh         # zoneout: the share of h_{t-1} kept
    a = torch.addcmul(torch.ones_like(n), n, n, value=-1).mul_(1 - z)                # (1-z)(1-n^2)
    if cell_mask is not None:
        a.mul_(cell_mask)
    dz = torch.sub(h_prev, nd).mul_(z * (1 - z))
    if isinstance(keep, torch.Tensor) or keep:
        a.mul_(1 - keep)
        dz.mul_(1 - keep)
    q = torch.empty((T, B, G, H), dtype=out.dtype, device=out.device)
    torch.mul(a * hn, torch.addcmul(r, r, r, value=-1), out=q[:, :, 0])               # r
    q[:, :, 1] = dz                                                                    # z
    torch.mul(a, r, out=q[:, :, 2])                                                    # W_hn h + b_hn
    carry = z if not (isinstance(keep, torch.Tensor) or keep) else z * (1 - keep) + keep
    return q.view(T, B, G * H), a, carry


def _recurrent_grad(dhw_t, add, w, rec_t, packed=None):
    """add + dL/d(masked h_{t-1}) * mask: the gradient reaching h_{t-1} through W_hh (add None: 0)."""
    B, H = dhw_t.shape[0], w.shape[1]
    if rec_t is None:
        return addmm(add, dhw_t, w, packed)
    if rec_t.dim() == 3:                                  # untied: one mask and one W block per gate
        r = torch.bmm(dhw_t.view(B, G, H).transpose(0, 1), w.reshape(G, H, H)).mul_(rec_t).sum(0)
        return r if add is None else r.add_(add)
    r = addmm(None, dhw_t, w, packed)
    return r.mul_(rec_t) if add is None else torch.addcmul(add, r, rec_t)


def backward_loop(gout, w, rec_mask, q, carry, dhw, dh, packed=None):
    """BPTT. gout (T,B,H): dL/d out, the final h's gradient included; q, carry from
    `activation_grads`; packed: w.t() for oneDNN or None. Writes dhw (T,B,3H) = dL/d hw_t and dh
    (T,B,H) = dL/dh_t (total); returns (dL/dh0,)."""
    T, B, H = gout.shape
    rec = steps_of(rec_mask, T)
    gouts, qs, carries, dhws = (v.unbind(0) for v in (gout, q, carry, dhw))
    ds = [None] * T
    d = gouts[T - 1]
    for t in range(T - 1, -1, -1):
        ds[t] = d
        torch.mul(d.unsqueeze(1), qs[t].view(B, G, H), out=dhws[t].view(B, G, H))
        d = _recurrent_grad(dhws[t], gouts[t - 1] if t else None, w, rec[t], packed).addcmul_(d, carries[t])
    torch.stack(ds, out=dh)
    return (d,)


def _split(T, **inputs):
    """(per-step inputs, fixed inputs): tensors whose first dim is the T steps, and the others."""
    fixed = ("h0", "w", "b", "packed")
    steps = {k: t for k, t in inputs.items() if t is not None and k not in fixed and t.shape[0] == T}
    return steps, {k: t for k, t in inputs.items() if k not in steps}


class _FastGRU(torch.autograd.Function):
    """One autograd node for a layer's GRU recurrence."""

    @staticmethod
    def forward(ctx, xw, h0, w, b, rec_mask, cell_mask, zone_h, zh, graphs, keep_hw):
        T, B, H = xw.shape[0], xw.shape[1], h0.shape[-1]
        packed = fastcell._pack(w, B) if fastcell._packs(graphs, rec_mask) else None
        inputs = dict(x=xw, h0=h0, w=w, b=b, rec_mask=rec_mask, cell_mask=cell_mask, zone_h=zone_h,
                      packed=packed)
        hm = None if rec_mask is None else (0, (G, B, H) if rec_mask.dim() == 4 else (B, H))
        bufs = dict(out=(0, (B, H)), rz=(0, (B, 2 * H)), n=(0, (B, H)), hw=(0, (B, G * H)), hm=hm,
                    rec3=(None, (G, B, H)), hnew=(None, (B, H)), nd=(None, (B, H)))
        consts = dict(zh=zh, keep_hw=keep_hw)
        res = cudagraphs.run_loop(graphs, "gru-fwd", T, *_split(T, **inputs), consts, bufs, forward_loop)[0]
        ctx.save_for_backward(res["rz"], res["n"], res["hw"], res.get("hm"), h0, res["out"], w, rec_mask,
                              cell_mask, zone_h)
        ctx.zh, ctx.graphs = zh, graphs
        return res["out"], res["out"][-1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout, dhT):
        rz, n, hw, hm, h0, out, w, rec_mask, cell_mask, zone_h = ctx.saved_tensors
        T, B, H = out.shape
        gout = torch.clone(gout, memory_format=torch.contiguous_format)
        gout[-1] += dhT
        q, a, carry = activation_grads(rz, n, hw, h0, out, cell_mask, zone_h, ctx.zh)
        packed = fastcell._pack(w.t(), B) if fastcell._packs(ctx.graphs, rec_mask) else None
        inputs = dict(gout=gout, w=w, rec_mask=rec_mask, q=q, carry=carry, packed=packed)
        bufs, (dh0,) = cudagraphs.run_loop(ctx.graphs, "gru-bwd", T, *_split(T, **inputs), {},
                                        dict(dhw=(0, (B, G * H)), dh=(0, (B, H))), backward_loop)
        dhw, dh = bufs["dhw"], bufs["dh"]
        dw = db = None
        if ctx.needs_input_grad[2]:
            if hm is not None and hm.dim() == 4:      # untied: one (H,H) block per gate
                dw = torch.einsum("tbkh,tkbj->khj", dhw.view(T, B, G, H), hm).reshape(G * H, H)
            else:
                hin = hm if hm is not None else torch.cat([h0.unsqueeze(0), out[:-1]])
                dw = fastcell._mm_tn(dhw.view(T * B, G * H), hin.reshape(T * B, H))
        if ctx.needs_input_grad[3]:
            db = dhw.sum((0, 1))
        dx = dhw                                      # dL/dxw: dL/dhw except on n (no factor r there)
        torch.mul(dh, a, out=dx.view(T, B, G, H)[:, :, 2])
        return dx, dh0, dw, db, None, None, None, None, None, None
