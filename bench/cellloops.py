"""The per-step loops of the fast LSTM cell (bench/fastcell.py), forward and backward.

Each loop only reads its inputs and writes buffers it is given (or tensors it returns), so it can
run eagerly or be captured once in a CUDA graph and replayed (bench/cudagraphs.py). Two variants:

- generic (`forward_loop`, `backward_loop`): the gate arithmetic in about eight ATen ops per step
  forward and five to seven backward, every built-in mask of `lstm_cell_loop` supported and of
  its slots "c" (the mask on the new cell state);
- fused (`fused_forward_loop`, `fused_backward_loop`, CUDA, no cell mask): each step's gate
  arithmetic in one kernel, ATen's fused LSTM cell (`_thnn_fused_lstm_cell`, what nn.LSTMCell uses
  on CUDA) and its backward, so a step is two to four kernels; zoneout and recurrent masks are
  applied around it. `fused_kernels` checks the kernels once per device against `emulated_cell`.

Notation: gates are i, f, g, o (nn.LSTM's order); "hn", "cn" are h and c before zoneout; the
masked h_{t-1} the recurrent matmul sees is kept (hm) for dW_hh.
"""
from __future__ import annotations

import warnings

import torch


def steps_of(x, T):
    """Per-step views of a (T|1, ...) tensor (a mask of lead 1 serves every step); Nones for None.
    The loops take their per-step views from here, made in one call rather than each step."""
    if x is None:
        return (None,) * T
    return x.unbind(0) if x.shape[0] > 1 else (x[0],) * T


def zone_steps(mask, z_expect: float, T):
    """Zoneout weights per step: the training mask, else the test-time expectation z (a float)."""
    if mask is not None:
        return mask.unbind(0)
    return (z_expect if z_expect else None,) * T


def update_steps(mask, z_expect: float, T):
    """1 - the zoneout weight per step (the share of the new value), where zoneout applies."""
    if mask is not None:
        return (1.0 - mask).unbind(0)
    return (1.0 - z_expect,) * T


def addmm(add, a, wt, packed=None, out=None, bias=None):
    """add + a @ wt (add None: a @ wt); by oneDNN when `packed` (wt.t() prepacked) is given, then
    plus `bias` if given, else by torch, into `out` when given."""
    if packed is not None:
        if add is None:
            return torch.ops.mkldnn._linear_pointwise(a, packed, bias, "none", [], "")
        return torch.ops.mkldnn._linear_pointwise.binary(a, add, packed, bias, "add")
    if add is None:
        return torch.mm(a, wt) if out is None else torch.mm(a, wt, out=out)
    return torch.addmm(add, a, wt) if out is None else torch.addmm(add, a, wt, out=out)


def add_scaled(acc, x, w):
    """acc += x * w, w a tensor or a float."""
    return acc.addcmul_(x, w) if isinstance(w, torch.Tensor) else acc.add_(x, alpha=w)


def recurrent_grad(dgt, add, w, rec_t, packed=None):
    """dL/dh_{t-1} through the gates of step t (dgt (B,4H)), plus `add` (the output gradient of
    step t-1, None at t=0); without zoneout's direct path."""
    B, H = dgt.shape[0], w.shape[1]
    if rec_t is None:
        return addmm(add, dgt, w, packed)
    if rec_t.dim() == 3:                                  # untied: one mask and one W block per gate
        r = torch.bmm(dgt.view(B, 4, H).transpose(0, 1), w.reshape(4, H, H)).mul_(rec_t).sum(0)
        return r if add is None else r.add_(add)
    r = addmm(None, dgt, w, packed)
    return r.mul_(rec_t) if add is None else torch.addcmul(add, r, rec_t)


def _hidden_input(h, rec_t, hm_t, w, out, rec4, packed=None, add=None, bias=None):
    """add + (masked h) @ W_hh^T in (B,4H) layout, the masked h written to hm_t; + bias (only
    with `packed`)."""
    B, H = h.shape
    if rec_t is None:
        return addmm(add, h, w.t(), packed, out=out, bias=bias)
    torch.mul(h, rec_t, out=hm_t)
    if rec_t.dim() == 3:                                  # untied: (4,B,H) masks, one W block per gate
        torch.bmm(hm_t, w.reshape(4, H, H).transpose(1, 2), out=rec4)
        if add is None:
            return out.view(B, 4, H).copy_(rec4.transpose(0, 1)).view(B, 4 * H)
        return torch.add(add.view(B, 4, H), rec4.transpose(0, 1), out=out.view(B, 4, H)).view(B, 4 * H)
    return addmm(add, hm_t, w.t(), packed, out=out, bias=bias)


def forward_buffers(B, H, rec_mask, cell_mask, c_zoned: bool, fused: bool):
    """Buffers of the forward loop: name -> (extra steps over T, or None for scratch, shape), or
    None where not needed. c_zoned: zoneout on c, by a mask or its expectation."""
    hm = None if rec_mask is None else (0, (4, B, H) if rec_mask.dim() == 4 else (B, H))
    bufs = dict(out=(0, (B, H)), act=(0, (B, 4 * H)), cs=(1, (B, H)), hm=hm, pre=(None, (B, 4 * H)),
                rec4=(None, (4, B, H)))
    if fused:
        return dict(bufs, cn=(0, (B, H)) if c_zoned else None)
    return dict(bufs, tc=(0, (B, H)), gd=None if cell_mask is None else (0, (B, H)),
                hn=(None, (B, H)), cn=(None, (B, H)))


def forward_loop(xb, h0, c0, w, rec_mask, cell_mask, zone_h, zone_c, zh: float, zc: float,
                 out, act, tc, cs, hm, gd, pre, rec4, hn, cn, packed=None, bias=None, c_mask=None):
    """The recurrence. Inputs: xb (T,B,4H) = input projections + b_hh (without b_hh when `bias`
    is given), h0, c0 (B,H), w = W_hh (4H,H), the masks of `lstm_cell_loop`, zh/zc its z_expect,
    packed: w prepacked for oneDNN (tied or no rec mask) with bias: b_hh, or both None; c_mask:
    (T|1,B,H) mask on the new cell state (the slot "c" of a mask position, RNNDrop's), or None.
    Writes: out (T,B,H) the zoned-out h; act (T,B,4H) activated gates; tc (T,B,H) tanh(cn);
    cs (T+1,B,H) cell states, cs[0] = c0; hm (masked h_{t-1}, (T,B,H) or (T,4,B,H) untied, None
    without a rec mask); gd (T,B,H) g * cell mask (None without). pre, rec4, hn, cn: scratch."""
    T, B, H = out.shape
    rec, cell, hms, gds, cms = (steps_of(x, T) for x in (rec_mask, cell_mask, hm, gd, c_mask))
    zhs, zcs = zone_steps(zone_h, zh, T), zone_steps(zone_c, zc, T)
    i_s, f_s, g_s, o_s = (x.unbind(0) for x in act.view(T, B, 4, H).unbind(2))
    xbs, acts, tcs, css, outs = (x.unbind(0) for x in (xb, act, tc, cs, out))
    cs[0].copy_(c0)
    h = h0
    for t in range(T):
        gates = _hidden_input(h, rec[t], hms[t], w, pre, rec4, packed, xbs[t], bias)
        torch.sigmoid(gates, out=acts[t])
        torch.tanh(gates[:, 2 * H:3 * H], out=g_s[t])
        g = g_s[t] if cell[t] is None else torch.mul(g_s[t], cell[t], out=gds[t])
        c_new = css[t + 1] if zcs[t] is None else cn
        torch.mul(f_s[t], css[t], out=c_new).addcmul_(i_s[t], g)
        if cms[t] is not None:
            c_new.mul_(cms[t])
        torch.tanh(c_new, out=tcs[t])
        if zcs[t] is not None:
            torch.lerp(c_new, css[t], zcs[t], out=css[t + 1])
        if zhs[t] is None:
            torch.mul(o_s[t], tcs[t], out=outs[t])
        else:
            torch.lerp(torch.mul(o_s[t], tcs[t], out=hn), h, zhs[t], out=outs[t])
        h = outs[t]


def activation_grads(act, tc, cs, gd, cell_mask):
    """For `backward_loop`, all steps at once: q (T,B,4H), what multiplies dL/dcn (gates i, f, g)
    or dL/dhn (gate o) to give dL/d gate pre-activation; k = o * (1 - tc^2) = d hn / d cn; f, the
    forget gates."""
    T, B, H4 = act.shape
    i, f, g, o = act.view(T, B, 4, H4 // 4).unbind(2)
    q = torch.empty_like(act)
    q4 = q.view(T, B, 4, H4 // 4)
    torch.mul(g if gd is None else gd, torch.addcmul(i, i, i, value=-1), out=q4[:, :, 0])   # i (1 - i)
    torch.mul(cs[:-1], torch.addcmul(f, f, f, value=-1), out=q4[:, :, 1])
    torch.mul(i, torch.addcmul(torch.ones_like(g), g, g, value=-1), out=q4[:, :, 2])
    if cell_mask is not None:
        q4[:, :, 2].mul_(cell_mask)
    torch.mul(tc, torch.addcmul(o, o, o, value=-1), out=q4[:, :, 3])
    return q, o * torch.addcmul(torch.ones_like(tc), tc, tc, value=-1), f


def backward_loop(gout, dc, w, rec_mask, zone_h, zone_c, zh: float, zc: float, q, k, f, dg, packed=None,
                  c_mask=None):
    """BPTT. gout (T,B,H): dL/d out, the final h's gradient included; dc (B,H): dL/d c_T; q, k, f
    from `activation_grads`; packed: w.t() for oneDNN or None; c_mask: `forward_loop`'s. Writes
    dg (T,B,4H) = dL/d gate pre-activations; returns dL/d (h0, c0)."""
    T, B, H = gout.shape
    rec, cms = steps_of(rec_mask, T), steps_of(c_mask, T)
    zhs, zcs = zone_steps(zone_h, zh, T), zone_steps(zone_c, zc, T)
    uhs, ucs = update_steps(zone_h, zh, T), update_steps(zone_c, zc, T)
    q4, dg4 = q.view(T, B, 4, H), dg.view(T, B, 4, H)
    q3s, qos, dg3s, dgos = (x.unbind(0) for x in (q4[:, :, :3], q4[:, :, 3], dg4[:, :, :3], dg4[:, :, 3]))
    gouts, dgs, ks, fs = (x.unbind(0) for x in (gout, dg, k, f))
    dh = gouts[T - 1]
    for t in range(T - 1, -1, -1):
        dhn = dh if zhs[t] is None else dh * uhs[t]
        dcn = torch.addcmul(dc if zcs[t] is None else dc * ucs[t], dhn, ks[t])
        if cms[t] is not None:                            # through the mask on the new cell state
            dcn.mul_(cms[t])
        torch.mul(dcn.unsqueeze(1), q3s[t], out=dg3s[t])
        torch.mul(dhn, qos[t], out=dgos[t])
        dc_prev = dcn * fs[t]
        if zcs[t] is not None:
            add_scaled(dc_prev, dc, zcs[t])
        dh_prev = recurrent_grad(dgs[t], gouts[t - 1] if t else None, w, rec[t], packed)
        if zhs[t] is not None:
            add_scaled(dh_prev, dh, zhs[t])
        dh, dc = dh_prev, dc_prev
    return dh, dc


def fused_forward_loop(xb, h0, c0, w, rec_mask, zone_h, zone_c, zh: float, zc: float, kernels,
                       out, act, cs, hm, cn, pre, rec4):
    """`forward_loop` without a cell mask, on the fused kernels. Writes out, act, cs and hm as
    `forward_loop` does, and cn (T,B,H) the cell before zoneout (None without zoneout of c)."""
    T, B, H = out.shape
    rec, hms, xbs = (steps_of(x, T) for x in (rec_mask, hm, xb))
    zhs, zcs = zone_steps(zone_h, zh, T), zone_steps(zone_c, zc, T)
    h, c, hs, cells, cns, acts = h0, c0, [], [], [], []
    for t in range(T):
        hidden = _hidden_input(h, rec[t], hms[t], w, pre, rec4)
        h_new, c_new, a = kernels[0](xbs[t], hidden, c)
        acts.append(a)
        if zcs[t] is not None:
            cns.append(c_new)
            c_new = torch.lerp(c_new, c, zcs[t])
        h = h_new if zhs[t] is None else torch.lerp(h_new, h, zhs[t])
        c = c_new
        hs.append(h)
        cells.append(c)
    torch.stack(hs, out=out)
    torch.stack(acts, out=act)
    cs[0].copy_(c0)
    torch.stack(cells, out=cs[1:])
    if cns:
        torch.stack(cns, out=cn)


def fused_backward_loop(gout, dc, w, rec_mask, zone_h, zone_c, zh: float, zc: float, kernels,
                        act, cs, cn, dg):
    """`backward_loop` on the fused kernels, from `fused_forward_loop`'s act, cs and cn."""
    T = gout.shape[0]
    rec = steps_of(rec_mask, T)
    gouts, acts, cns = (steps_of(x, T) for x in (gout, act, cn))
    css = cs.unbind(0)
    zhs, zcs = zone_steps(zone_h, zh, T), zone_steps(zone_c, zc, T)
    uhs, ucs = update_steps(zone_h, zh, T), update_steps(zone_c, zc, T)
    dh, grads = gouts[T - 1], []
    for t in range(T - 1, -1, -1):
        dhn = dh if zhs[t] is None else dh * uhs[t]
        dcn = dc if zcs[t] is None else dc * ucs[t]
        c_new = css[t + 1] if zcs[t] is None else cns[t]
        dgt, dc_prev, _ = kernels[1](dhn, dcn, css[t], c_new, acts[t], False)
        grads.append(dgt)
        if zcs[t] is not None:
            add_scaled(dc_prev, dc, zcs[t])
        dh_prev = recurrent_grad(dgt, gouts[t - 1] if t else None, w, rec[t])
        if zhs[t] is not None:
            add_scaled(dh_prev, dh, zhs[t])
        dh, dc = dh_prev, dc_prev
    torch.stack(grads[::-1], out=dg)
    return dh, dc


def emulated_cell(input_gates, hidden_gates, cx):
    """What ATen's fused LSTM cell computes: (hy, cy, activated gates i,f,g,o)."""
    i, f, g, o = (input_gates + hidden_gates).chunk(4, 1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    cy = f * cx + i * g
    return o * cy.tanh(), cy, torch.cat([i, f, g, o], 1)


def emulated_cell_backward(grad_hy, grad_cy, cx, cy, workspace, has_bias):
    """What its backward computes: (d gate pre-activations, d cx, d bias or None)."""
    i, f, g, o = workspace.chunk(4, 1)
    tc = cy.tanh()
    gc = grad_hy * o * (1 - tc * tc) + grad_cy
    gates = torch.cat([gc * g * i * (1 - i), gc * cx * f * (1 - f), gc * i * (1 - g * g),
                       grad_hy * tc * o * (1 - o)], 1)
    return gates, gc * f, gates.sum(0) if has_bias else None


EMULATED = (emulated_cell, emulated_cell_backward)
_FUSED: dict = {}


def fused_kernels(device: torch.device):
    """ATen's fused LSTM-cell kernels (forward, backward) on `device`, or None: CUDA only, and only
    once they have matched `emulated_cell` on a small random problem there (checked once)."""
    if device.type != "cuda":
        return None
    if device not in _FUSED:
        try:
            aten = torch.ops.aten
            kernels = (aten._thnn_fused_lstm_cell, aten._thnn_fused_lstm_cell_backward_impl)
            _FUSED[device] = kernels if _same(kernels, EMULATED, device) else None
            problem = "" if _FUSED[device] else "results differ from the formula"
        except (RuntimeError, NotImplementedError, AttributeError) as exc:
            _FUSED[device], problem = None, f"{type(exc).__name__}: {exc}"
        if problem:
            warnings.warn(f"ATen's fused LSTM cell not used on {device} ({problem}); the fast cell "
                          "runs its generic per-step ops", stacklevel=2)
    return _FUSED[device]


def _same(kernels, reference, device, B=3, H=5) -> bool:
    g = torch.Generator().manual_seed(0)
    xg, hg, cx, gh, gc = (torch.randn(s, generator=g).to(device) for s in
                          [(B, 4 * H), (B, 4 * H), (B, H), (B, H), (B, H)])
    got, want = kernels[0](xg, hg, cx), reference[0](xg, hg, cx)
    got_b = kernels[1](gh, gc, cx, got[1], got[2], False)[:2]
    want_b = reference[1](gh, gc, cx, want[1], want[2], False)[:2]
    return all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(got + got_b, want + want_b))
