"""The fast per-step LSTM: what `lstm_cell_loop` (bench/cells/lstm.py) computes, as one autograd
node per layer with a hand-written BPTT backward.

Forward runs the recurrence into preallocated buffers (bench/cellloops.py). Backward is BPTT by
hand: per step a few elementwise ops (one fused kernel on CUDA) and one matmul with W_hh; all that
does not depend on the recurrence is done for every step at once: the activation derivatives
before the loop, and after it dW_hh = sum_t dgates_t^T h~_{t-1} as one matmul, db_hh, and dL/dxw
(which is dgates itself). The reference cell, by autograd, records ~15 nodes per step instead.
On CUDA both loops are captured once per shape and replayed as CUDA graphs (bench/cudagraphs.py);
on a CPU the float32 matmuls go through oneDNN (see USE_ONEDNN).

`run` is what the LSTM cell type runs (bench/cells/lstm.py), with the implementation its model
carries (`NoiseState.impl`, see `resolve_impl`); `dispatch` is its logic for every cell type: pick
the path, fall back to the reference cell with a one-time warning where the fast cell does not
apply, and say which path ran: "fast" (eager), "graph" (CUDA graphs) or "cell" (the reference).
Only the CLI reads $BENCH_RNN_IMPL (`impl_mode`), once per run.

Of the slots a mask position can name (bench/positions.py), the fast LSTM applies "c" (RNNDrop's
mask on the new cell state) besides the built-in recurrent and cell-update masks.
"""
from __future__ import annotations

import os
import warnings
import weakref

import torch

from bench import cellloops, cudagraphs
from bench.errors import UsageError

MODES = ("auto", "reference", "fast", "graph")
_NOTICED: set[str] = set()
# On a CPU the fast cell's float32 matmuls go through oneDNN (prepacked weight for the per-step
# ones), as torch's own CPU LSTM does: on the AMD EPYC this was tuned on, they took half of MKL's
# time. False (set here, or after oneDNN failed once) = torch.mm / MKL.
USE_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def resolve_impl(text: str | None, source: str = "rnn implementation") -> str:
    """A validated mode: auto (graph on CUDA, fast elsewhere, reference where neither applies),
    reference (always `lstm_cell_loop`), fast (eager fast cell, error where invalid), graph (CUDA
    graphs, error where invalid). None or "" is auto; `source` names the setting in errors."""
    mode = (text or "").strip().lower() or "auto"
    if mode not in MODES:
        raise UsageError(f"{source} {text!r} is not valid; set it to one of {'|'.join(MODES)}")
    return mode


def impl_mode() -> str:
    """The mode $BENCH_RNN_IMPL asks for: for the CLI entry only, which resolves it once per run
    and gives it to the model's NoiseState."""
    return resolve_impl(os.environ.get("BENCH_RNN_IMPL"), source="BENCH_RNN_IMPL")


FAST_SLOTS = ("c",)


def slot_reason(masks: dict, fast_slots, B, H, T) -> str:
    """Why the fast path cannot apply the masks of registered positions (`masks["slots"]`): a
    slot it does not apply, or a mask other than a (T|1,B,H) one without grad; "" when it can."""
    slots = masks.get("slots") or {}
    other = sorted(set(slots) - set(fast_slots))
    if other:
        return f"a mask at slot(s) {', '.join(other)}, which the fast cell does not apply"
    for m in slots.values():
        if m.requires_grad:
            return "a mask requires grad"
        if tuple(m.shape) not in {(n, B, H) for n in {1, T}}:
            return "slot mask shapes other than (T|1,B,H)"
    return ""


def unsupported_inputs(xw, tensors, masks: dict, keys) -> str:
    """The checks every fast cell shares: one float dtype and one CPU/CUDA device for all tensors,
    no autocast, no mask (of `keys`) that requires grad. "" when they pass."""
    if any(t.dtype != xw.dtype or t.device != xw.device for t in tensors):
        return "mixed dtypes or devices"
    if not xw.is_floating_point():
        return f"dtype {xw.dtype}"
    if xw.device.type not in ("cpu", "cuda"):
        return f"device {xw.device.type}"
    if torch.is_autocast_enabled(xw.device.type):
        return "autocast"
    if any(masks.get(k) is not None and masks[k].requires_grad for k in keys):
        return "a mask requires grad"
    return ""


def invalid_reason(xw, h, c, w_hh, b_hh, masks: dict) -> str:
    """Why the fast cell cannot run these arguments ("" when it can)."""
    tensors = [xw, h, c, w_hh, b_hh] + [masks[k] for k in ("rec_mask", "cell_mask", "zone_h", "zone_c")
                                        if masks.get(k) is not None] + list((masks.get("slots") or {}).values())
    T, B, H = (xw.shape[0], xw.shape[1], h.shape[-1]) if xw.dim() == 3 else (0, 0, 0)
    if T == 0 or xw.shape[2] != 4 * H or h.shape != (B, H) or c.shape != (B, H) \
            or w_hh.shape != (4 * H, H) or b_hh.shape != (4 * H,):
        return "shapes other than xw (T>0,B,4H), h and c (B,H), w_hh (4H,H), b_hh (4H)"
    why = unsupported_inputs(xw, tensors, masks, ("rec_mask", "cell_mask", "zone_h", "zone_c"))
    if why:
        return why
    shapes = dict(rec_mask=[(n, B, H) for n in {1, T}] + [(n, 4, B, H) for n in {1, T}],
                  cell_mask=[(n, B, H) for n in {1, T}], zone_h=[(T, B, H)], zone_c=[(T, B, H)])
    if any(masks.get(k) is not None and tuple(masks[k].shape) not in ok for k, ok in shapes.items()):
        return "mask shapes other than (T|1,B,H), rec (T|1,4,B,H), zoneout (T,B,H)"
    return slot_reason(masks, FAST_SLOTS, B, H, T)


def _notice(message: str) -> None:
    """Warn once per distinct message."""
    if message not in _NOTICED:
        _NOTICED.add(message)
        warnings.warn(message, stacklevel=3)


def dispatch(cell: str, reference, fast, reason_of, args: tuple, masks: dict, impl: str = "auto"):
    """Run a recurrence (`args`, the first the (T,B,G*H) input projections) on the best valid
    path for mode `impl`: `fast(*args, graphs=..., **masks)` unless `reason_of(*args, masks)` says
    why it cannot, else `reference(*args, **masks)`. Returns (path, the result)."""
    mode = resolve_impl(impl)
    xw = args[0]
    reason = "" if mode == "reference" else reason_of(*args, masks)
    if mode == "graph" and not xw.is_cuda:
        reason = reason or "CUDA graphs need a CUDA tensor"
    if reason and mode in ("fast", "graph"):
        raise RuntimeError(f"rnn implementation {mode!r}: the fast cell cannot run here: {reason}; "
                           "use auto or reference")
    if mode == "reference" or reason:
        if reason:
            _notice(f"fast {cell} cell not used ({reason}); running the reference cell")
        return "cell", reference(*args, **masks)
    graphs = cudagraphs.cache_for(xw.device) if mode != "fast" else None
    result = fast(*args, graphs=graphs, **masks)
    return ("graph" if graphs is not None and graphs.enabled else "fast"), result


def run(reference, xw, h, c, w_hh, b_hh, masks: dict, impl: str = "auto"):
    """Run the LSTM recurrence on the best valid path for mode `impl`; returns (path, (outputs, (h, c)))."""
    return dispatch("LSTM", reference, lstm_fast, invalid_reason, (xw, h, c, w_hh, b_hh), masks, impl)


def lstm_fast(xw, h, c, w_hh, b_hh, rec_mask=None, cell_mask=None, zone_h=None, zone_c=None,
              z_expect=(0.0, 0.0), slots=None, graphs=None):
    """`lstm_cell_loop` (same arguments and results) on the fast cell; `graphs` a
    `cudagraphs.GraphCache` to replay the loops as CUDA graphs, None to run them eagerly. Of
    `slots`, only "c" (invalid_reason says so)."""
    zh, zc = (float(z) for z in z_expect)
    extra = dict(slots or {})
    c_mask = extra.pop("c", None)
    if extra:
        raise ValueError(f"the fast LSTM cell does not apply slot(s) {', '.join(sorted(extra))}")
    out, hT, cT = _FastLSTM.apply(xw, h, c, w_hh, b_hh, rec_mask, cell_mask, zone_h, zone_c, zh, zc, graphs,
                                  c_mask)
    return out, (hT, cT)


def _onednn(t) -> bool:
    return USE_ONEDNN and t.device.type == "cpu" and t.dtype == torch.float32


_PACKED: dict = {}      # id(w) -> (weak reference to w, its version, batch, prepacked weight)


def _pack(w, batch: int):
    """w (out,in) prepacked for oneDNN's linear, or None where oneDNN is not used. The last packing
    of each tensor is kept while that tensor lives and is unchanged (same version counter), so an
    evaluation's chunks pack each layer's weight once (the packing is deterministic: same bits)."""
    global USE_ONEDNN
    if not _onednn(w):
        return None
    hit = _PACKED.get(id(w))
    if hit is not None and hit[0]() is w and hit[1] == w._version and hit[2] == batch:
        return hit[3]
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(w.detach().contiguous(), batch)
    except RuntimeError as exc:                 # a build whose oneDNN lacks it: MKL from now on
        USE_ONEDNN = False
        _notice(f"oneDNN linear unavailable ({exc}); the fast cell's CPU matmuls use torch.mm")
        return None
    key = id(w)
    _PACKED[key] = (weakref.ref(w, lambda _, k=key: _PACKED.pop(k, None)), w._version, batch, packed)
    return packed


def _mm_tn(a, b):
    """a.t() @ b for the weight gradient, by oneDNN where it is used."""
    if _onednn(a):
        return _onednn_linear(a.t(), b.t())
    return a.t() @ b


def _onednn_linear(x, w, b=None):
    """x @ w.t() (+ b) by oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


def _split(T, **inputs):
    """(per-step inputs, fixed inputs): tensors whose first dim is the T steps (T+1 for the cell
    states cs), and the others."""
    fixed = ("h0", "c0", "w", "dc", "packed", "bias")
    steps = {n: t for n, t in inputs.items()
             if t is not None and n not in fixed and t.shape[0] == T + (n == "cs")}
    return steps, {n: t for n, t in inputs.items() if n not in steps}


def _packs(graphs, rec_mask) -> bool:
    """Whether the loop takes a prepacked oneDNN weight: eager runs with one W_hh matmul per step."""
    return graphs is None and (rec_mask is None or rec_mask.dim() == 3)


class _FastLSTM(torch.autograd.Function):
    """One autograd node for a layer's recurrence; the loops are in bench/cellloops.py."""

    @staticmethod
    def forward(ctx, xw, h0, c0, w, b, rec_mask, cell_mask, zone_h, zone_c, zh, zc, graphs, c_mask=None):
        T, B, H = xw.shape[0], xw.shape[1], h0.shape[-1]
        kernels = cellloops.fused_kernels(xw.device) if cell_mask is None and c_mask is None else None
        inputs = dict(h0=h0, c0=c0, w=w, rec_mask=rec_mask, zone_h=zone_h, zone_c=zone_c)
        packed = _pack(w, B) if kernels is None and _packs(graphs, rec_mask) else None
        if packed is not None:              # oneDNN adds b_hh in the step's matmul
            inputs.update(xb=xw, packed=packed, bias=b)
        else:
            inputs.update(xb=torch.add(xw, b))
        bufs = cellloops.forward_buffers(B, H, rec_mask, cell_mask, zone_c is not None or zc != 0,
                                         fused=kernels is not None)
        if kernels is not None:
            loop, consts = cellloops.fused_forward_loop, dict(zh=zh, zc=zc, kernels=kernels)
        else:
            loop, consts = cellloops.forward_loop, dict(zh=zh, zc=zc)
            inputs.update(cell_mask=cell_mask)
            if c_mask is not None:
                inputs.update(c_mask=c_mask)
        res = cudagraphs.run_loop(graphs, "fwd", T, *_split(T, **inputs), consts, bufs, loop)[0]
        ctx.save_for_backward(res["act"], res["cn"] if kernels else res["tc"], res["cs"], res.get("hm"),
                              res.get("gd"), h0, res["out"], w, rec_mask, cell_mask, zone_h, zone_c, c_mask)
        ctx.z, ctx.graphs, ctx.kernels = (zh, zc), graphs, kernels
        return res["out"], res["out"][-1].clone(), res["cs"][-1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout, dhT, dcT):
        act, tc_or_cn, cs, hm, gd, h0, out, w, rec_mask, cell_mask, zone_h, zone_c, c_mask = ctx.saved_tensors
        T, B, H = out.shape
        gout = torch.clone(gout, memory_format=torch.contiguous_format)
        gout[-1] += dhT
        inputs = dict(gout=gout, dc=dcT, w=w, rec_mask=rec_mask, zone_h=zone_h, zone_c=zone_c)
        consts = dict(zh=ctx.z[0], zc=ctx.z[1])
        if ctx.kernels is not None:
            loop, consts["kernels"] = cellloops.fused_backward_loop, ctx.kernels
            inputs.update(act=act, cs=cs, cn=tc_or_cn)
        else:
            loop = cellloops.backward_loop
            q, k, f = cellloops.activation_grads(act, tc_or_cn, cs, gd, cell_mask)
            inputs.update(q=q, k=k, f=f, packed=_pack(w.t(), B) if _packs(ctx.graphs, rec_mask) else None)
            if c_mask is not None:
                inputs.update(c_mask=c_mask)
        bufs, (dh0, dc0) = cudagraphs.run_loop(ctx.graphs, "bwd", T, *_split(T, **inputs), consts,
                                               dict(dg=(0, (B, 4 * H))), loop)
        dg = bufs["dg"]
        dw = db = None
        if ctx.needs_input_grad[3]:
            if hm is not None and hm.dim() == 4:      # untied: one (H,H) block per gate
                dw = torch.einsum("tbkh,tkbj->khj", dg.view(T, B, 4, H), hm).reshape(4 * H, H)
            else:
                hin = hm if hm is not None else torch.cat([h0.unsqueeze(0), out[:-1]])
                dw = _mm_tn(dg.view(T * B, 4 * H), hin.reshape(T * B, H))
        if ctx.needs_input_grad[4]:
            db = dg.sum((0, 1))
        return dg, dh0, dc0, dw, db, None, None, None, None, None, None, None, None


def input_projection(x, weight, bias, impl: str = "auto"):
    """F.linear(x, weight, bias) for the per-step paths; by oneDNN on a CPU in float32 (forward and
    backward), except for impl "reference"."""
    if not _onednn(x) or x.dtype != weight.dtype or resolve_impl(impl) == "reference" \
            or torch.is_autocast_enabled("cpu"):
        return torch.nn.functional.linear(x, weight, bias)
    return _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), weight, bias).view(*x.shape[:-1], weight.shape[0])


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return _onednn_linear(x.contiguous(), w.contiguous(), b)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        gy = gy.contiguous()
        dx = _onednn_linear(gy, w.t().contiguous()) if ctx.needs_input_grad[0] else None
        dw = _mm_tn(gy, x) if ctx.needs_input_grad[1] else None
        db = gy.sum(0) if ctx.needs_input_grad[2] else None
        return dx, dw, db
