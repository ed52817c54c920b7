"""The batched word-LM of a pack (bench/pack.py): E LSTM (or GRU) language models as one computation.

Every parameter is stacked (E, ...) from E solo models (`tasks.lm.LMModel`, each built under its own
seed, so each member starts from exactly the weights of its solo run). The embedding is one
gather into the (E*V, emb) table, the input and output projections are `torch.baddbmm`s, and the
recurrence is a per-step loop of `torch.baddbmm`s over the E members: for the LSTM one autograd
node per layer with a hand-written BPTT backward (`_PackLSTM`, pinned to the autograd loop
`lstm_loop` by tests/test_pack.py; BENCH_RNN_IMPL=reference runs the loop), for the GRU the
autograd loop `gru_loop`. No CUDA graphs yet.

Masks: `draw_masks` draws one member's masks for one training forward through
`bench.rnn.bernoulli_mask` (the function every solo mask comes from), in the order, shapes and
dtype of a solo `LMModel.forward` (word, then per layer DropConnect, input, recurrent, cell-update,
zoneout h, zoneout c, registered positions, then the output), with that member's torch RNG state
swapped in by the caller; `stack_masks` stacks the members' masks, a member without one getting
the neutral value (1 for a dropout mask, 0 for a zoneout mask: "keep nothing"). Member e's
arithmetic is then the solo run's, up to the order of float rounding in the batched kernels.

LSTM and GRU cells; gal's `gates=untied` and MC evaluation are not packed (bench/pack.py `why_not`).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench import positions
from bench.rnn import bernoulli_mask, recurrent_mask, zoneout_mask

MULT, ZONE = 1.0, 0.0          # neutral values: dropout masks multiply, zoneout masks mix
GATES = {"lstm": 4, "gru": 3}


def draw_masks(noise, T: int, B: int, vocab: int, sizes: list[tuple[int, int]], like: torch.Tensor,
               cell: str = "lstm") -> dict:
    """One member's training masks, drawn as a solo LMModel.forward draws them. `sizes`: (input
    size, hidden size) per layer. Keys: word, w{i}, in{i}, rec{i}, cell{i}, zh{i}, zc{i}, c{i}, out."""
    G = GATES[cell]
    m = {}
    if noise.word > 0:
        m["word"] = bernoulli_mask((vocab, 1), noise.word, like)
    for i, (n_in, H) in enumerate(sizes):
        p_in = noise.emb if i == 0 else noise.hid
        if noise.weight > 0:
            m[f"w{i}"] = bernoulli_mask((G * H, H), noise.weight, like)
        if p_in > 0:
            m[f"in{i}"] = bernoulli_mask((T, B, n_in) if noise.io_mask == "element" else (1, B, n_in), p_in, like)
        if noise.per_step:
            m[f"rec{i}"] = recurrent_mask(noise.rec, noise.rec_mask, T, B, H, like)
            m[f"cell{i}"] = recurrent_mask(noise.cell, noise.cell_mask, T, B, H, like)
            m[f"zh{i}"] = zoneout_mask(noise.zone_h, T, B, H, like)
            if cell == "lstm":                  # a GRU has no cell state (its zone_c is 0)
                m[f"zc{i}"] = zoneout_mask(noise.zone_c, T, B, H, like)
            for _, rate, mode, slot in positions.extra_masks(noise, cell):
                if slot != "c" or cell != "lstm":
                    raise ValueError(f"a pack applies the slot 'c' only, not {slot!r}")
                mask = recurrent_mask(rate, mode, T, B, H, like)
                m[f"c{i}"] = mask if f"c{i}" not in m else m[f"c{i}"] * mask
    if noise.out > 0:
        H = sizes[-1][1]
        m["out"] = bernoulli_mask((T, B, H) if noise.io_mask == "element" else (1, B, H), noise.out, like)
    return {k: v for k, v in m.items() if v is not None}


def stack_masks(per_member: list[dict], like: torch.Tensor) -> dict:
    """{key: (E, ...) mask} from each member's `draw_masks`; a (1, ...) mask is expanded where
    another member's has T steps; a member without the key gets the neutral value."""
    out = {}
    for key in sorted(set().union(*per_member)):
        ms = [m.get(key) for m in per_member]
        have = [t for t in ms if t is not None]
        lead = max(t.shape[0] for t in have)
        shape = (lead,) + tuple(have[0].shape[1:])
        neutral = ZONE if key.startswith(("zh", "zc")) else MULT
        out[key] = torch.stack([t.expand(shape) if t is not None else
                                torch.full(shape, neutral, dtype=like.dtype, device=like.device) for t in ms])
    return out


def _at(mask, t):
    """Step t of an (E, T|1, B, H) mask."""
    return mask[:, t if mask.shape[1] > 1 else 0]


def lstm_loop(xb, h, c, wt, masks: dict, i: int, zexp=None):
    """The LSTM recurrence of layer i for all members: xb (E,T,B,4H) = W_ih x + b_ih + b_hh, h and
    c (E,B,H), wt (E,H,4H) = W_hh^T. What `lstm_cell_loop` computes, per member. `zexp`: (z_h, z_c)
    (E,1,1) zoneout expectations at evaluation, or None."""
    rec, cell, zh, zc, cm = (masks.get(f"{k}{i}") for k in ("rec", "cell", "zh", "zc", "c"))
    outs = []
    for t in range(xb.shape[1]):
        hr = h if rec is None else h * _at(rec, t)
        gates = torch.baddbmm(xb[:, t], hr, wt)
        ig, fg, gg, og = gates.chunk(4, -1)
        ig, fg, gg, og = torch.sigmoid(ig), torch.sigmoid(fg), torch.tanh(gg), torch.sigmoid(og)
        if cell is not None:
            gg = gg * _at(cell, t)
        c_new = fg * c + ig * gg
        if cm is not None:
            c_new = c_new * _at(cm, t)
        h_new = og * torch.tanh(c_new)
        if zc is not None:
            c_new = zc[:, t] * c + (1 - zc[:, t]) * c_new
        elif zexp is not None:
            c_new = zexp[1] * c + (1 - zexp[1]) * c_new
        if zh is not None:
            h_new = zh[:, t] * h + (1 - zh[:, t]) * h_new
        elif zexp is not None:
            h_new = zexp[0] * h + (1 - zexp[0]) * h_new
        h, c = h_new, c_new
        outs.append(h)
    return torch.stack(outs, 1), (h, c)


def gru_loop(xb, h, wt, b_hh, masks: dict, i: int, zexp=None):
    """The GRU recurrence of layer i for all members (nn.GRU's convention, what `gru_cell_loop`
    computes): xb (E,T,B,3H) = W_ih x + b_ih, h (E,B,H), wt (E,H,3H) = W_hh^T, b_hh (E,1,3H)."""
    rec, cell, zh = (masks.get(f"{k}{i}") for k in ("rec", "cell", "zh"))
    outs = []
    for t in range(xb.shape[1]):
        hr = h if rec is None else h * _at(rec, t)
        hw = torch.baddbmm(b_hh, hr, wt)
        xr, xz, xn = xb[:, t].chunk(3, -1)
        hr_, hz_, hn_ = hw.chunk(3, -1)
        r, z = torch.sigmoid(xr + hr_), torch.sigmoid(xz + hz_)
        n = torch.tanh(xn + r * hn_)
        if cell is not None:
            n = n * _at(cell, t)
        h_new = (1 - z) * n + z * h
        if zh is not None:
            h_new = zh[:, t] * h + (1 - zh[:, t]) * h_new
        elif zexp is not None:
            h_new = zexp[0] * h + (1 - zexp[0]) * h_new
        h = h_new
        outs.append(h)
    return torch.stack(outs, 1), (h,)


class PackLM(nn.Module):
    """E LMModels as stacked parameters. `models`: the solo models (same shapes), member order."""

    def __init__(self, models: list):
        super().__init__()
        first = models[0]
        self.E, self.vocab = len(models), first.embed.weight.shape[0]
        self.tied = first.decoder.weight is first.embed.weight
        stack = lambda get: nn.Parameter(torch.stack([get(m).detach() for m in models]).clone())
        self.embed = stack(lambda m: m.embed.weight)
        self.layers, self.cell = len(first.rnn.layers), first.rnn.cell
        self.impl = "fast"              # the LSTM recurrence: "fast" (_PackLSTM) or "reference" (lstm_loop)
        self.sizes = [(l.input_size, l.hidden_size) for l in first.rnn.layers]
        for i in range(self.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                self.register_parameter(f"{name}_l{i}", stack(lambda m: getattr(m.rnn.layers[i], name)))
        if not self.tied:
            self.dec_weight = stack(lambda m: m.decoder.weight)
        self.dec_bias = stack(lambda m: m.decoder.bias)
        self.register_buffer("offsets", torch.arange(self.E).view(self.E, 1, 1) * self.vocab, persistent=False)
        # solo state-dict key -> pack parameter name
        self.keys = {"embed.weight": "embed", "decoder.weight": "embed" if self.tied else "dec_weight",
                     "decoder.bias": "dec_bias"}
        for i in range(self.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                self.keys[f"rnn.layers.{i}.{name}"] = f"{name}_l{i}"

    def member_state(self, e: int, device="cpu") -> dict:
        """Member e's weights as its solo model's state dict (copies on `device`)."""
        return {k: getattr(self, n)[e].detach().to(device, copy=True) for k, n in self.keys.items()}

    def load_member(self, e: int, state: dict) -> None:
        with torch.no_grad():
            for k, n in self.keys.items():
                getattr(self, n)[e].copy_(state[k])

    def init_state(self, B: int, device) -> list:
        n = 2 if self.cell == "lstm" else 1
        return [tuple(torch.zeros(self.E, B, H, device=device) for _ in range(n)) for _, H in self.sizes]

    def forward(self, tokens, state, masks: dict, zexp=None):
        """tokens (E,T,B) -> logits (E,T,B,V), new state, raw and dropped last-layer outputs."""
        E, T, B = tokens.shape
        weight = self.embed if "word" not in masks else self.embed * masks["word"]
        x = F.embedding(tokens + self.offsets, weight.reshape(E * self.vocab, -1))
        if state is None:
            state = self.init_state(B, tokens.device)
        new_state = []
        for i in range(self.layers):
            if f"in{i}" in masks:
                x = x * masks[f"in{i}"]
            w_ih, w_hh = getattr(self, f"weight_ih_l{i}"), getattr(self, f"weight_hh_l{i}")
            if f"w{i}" in masks:
                w_hh = w_hh * masks[f"w{i}"]
            b_ih, b_hh = getattr(self, f"bias_ih_l{i}").unsqueeze(1), getattr(self, f"bias_hh_l{i}").unsqueeze(1)
            if self.cell == "lstm":             # b_hh folds into the projections; a GRU's is inside r * (.)
                xb = torch.baddbmm(b_ih + b_hh, x.reshape(E, T * B, -1), w_ih.transpose(1, 2)).view(E, T, B, -1)
                loop = lstm_fast if self.impl == "fast" else lstm_loop
                x, st = loop(xb, *state[i], w_hh.transpose(1, 2), masks, i, zexp)
            else:
                xb = torch.baddbmm(b_ih, x.reshape(E, T * B, -1), w_ih.transpose(1, 2)).view(E, T, B, -1)
                x, st = gru_loop(xb, *state[i], w_hh.transpose(1, 2), b_hh, masks, i, zexp)
            new_state.append(st)
        raw = x
        if "out" in masks:
            x = x * masks["out"]
        dec = self.embed if self.tied else self.dec_weight
        logits = torch.baddbmm(self.dec_bias.unsqueeze(1), x.reshape(E, T * B, -1), dec.transpose(1, 2))
        return logits.view(E, T, B, -1), new_state, raw, x


def member_losses(logits, y, reduction: str):
    """(E,) training losses: each member's mean cross-entropy (times T for "sum_time"), and its nll."""
    E, T, B, V = logits.shape
    nll = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), reduction="none").view(E, T * B).mean(1)
    return (nll * T if reduction == "sum_time" else nll), nll


@torch.no_grad()
def evaluate(model: PackLM, stream, bptt: int, zexp=None) -> list[dict]:
    """Each member's {"loss", "ppl"} on a batchified (N, B) split, noise-free, as
    `LanguageModelling.evaluate` computes it (chunk sums accumulated in Python floats)."""
    was = model.training
    model.eval()
    E = model.E
    totals, count, state = [0.0] * E, 0, None
    for i in range(0, stream.shape[0] - 1, bptt):
        seq_len = min(bptt, stream.shape[0] - 1 - i)
        x, y = stream[i:i + seq_len], stream[i + 1:i + 1 + seq_len]
        logits, state, _, _ = model(x.unsqueeze(0).expand(E, -1, -1), state, {}, zexp)
        V = logits.shape[-1]
        sums = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1).repeat(E), reduction="none").view(E, -1).sum(1)
        totals = [a + b for a, b in zip(totals, sums.tolist())]
        count += y.numel()
    model.train(was)
    return [{"loss": t / count, "ppl": math.exp(t / count) if t / count < 700 else math.inf} for t in totals]


class _PackLSTM(torch.autograd.Function):
    """`lstm_loop` as one autograd node with a hand-written BPTT backward: per step a batched matmul
    and a few elementwise ops each way, dW_hh as one bmm after the loop (fewer nodes and kernels
    than autograd's ~20 a step). Masks and zoneout weights as `lstm_loop`'s (None: absent)."""

    @staticmethod
    def forward(ctx, xb, h, c, wt, rec, cell, zh, zc, cm, zeh, zec):
        E, T, B, G = xb.shape
        H = G // 4
        acts = torch.empty_like(xb)
        cs = xb.new_empty(E, T + 1, B, H)
        tcs, hrs, out = xb.new_empty(E, T, B, H), xb.new_empty(E, T, B, H), xb.new_empty(E, T, B, H)
        cs[:, 0] = c
        for t in range(T):
            hr = h if rec is None else h * _at(rec, t)
            hrs[:, t] = hr
            a = torch.baddbmm(xb[:, t], hr, wt)
            act = acts[:, t]
            torch.sigmoid(a, out=act)
            torch.tanh(a[..., 2 * H:3 * H], out=act[..., 2 * H:3 * H])
            i, f, g, o = act.chunk(4, -1)
            if cell is not None:
                g = g * _at(cell, t)
            c_new = torch.addcmul(f * c, i, g)
            if cm is not None:
                c_new = c_new * _at(cm, t)
            tc = torch.tanh(c_new)
            tcs[:, t] = tc
            h_new = o * tc
            zc_t = zc[:, t] if zc is not None else zec
            zh_t = zh[:, t] if zh is not None else zeh
            if zc_t is not None:
                c_new = zc_t * c + (1 - zc_t) * c_new
            if zh_t is not None:
                h_new = zh_t * h + (1 - zh_t) * h_new
            c, h = c_new, h_new
            cs[:, t + 1] = c
            out[:, t] = h
        ctx.save_for_backward(acts, cs, tcs, hrs, wt, rec, cell, zh, zc, cm, zeh, zec)
        return out, h.clone(), c.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout, dhT, dcT):
        acts, cs, tcs, hrs, wt, rec, cell, zh, zc, cm, zeh, zec = ctx.saved_tensors
        E, T, B, G = acts.shape
        H = G // 4
        w = wt.transpose(1, 2)
        da_all = torch.empty_like(acts)
        dh, dc = dhT.clone(), dcT.clone()
        for t in range(T - 1, -1, -1):
            dh = dh + gout[:, t]
            i, f, g0, o = acts[:, t].chunk(4, -1)
            tc, c_prev = tcs[:, t], cs[:, t]
            zc_t = zc[:, t] if zc is not None else zec
            zh_t = zh[:, t] if zh is not None else zeh
            dhn, dh_prev = (dh, None) if zh_t is None else (dh * (1 - zh_t), dh * zh_t)
            dc2, dc_prev = (dc, None) if zc_t is None else (dc * (1 - zc_t), dc * zc_t)
            dc2 = dc2 + dhn * o * (1 - tc * tc)
            dc1 = dc2 if cm is None else dc2 * _at(cm, t)
            g = g0 if cell is None else g0 * _at(cell, t)
            da = da_all[:, t]
            di, df, dg, do = da.chunk(4, -1)
            torch.mul(dc1 * g, i * (1 - i), out=di)
            torch.mul(dc1 * c_prev, f * (1 - f), out=df)
            dgg = dc1 * i if cell is None else dc1 * i * _at(cell, t)
            torch.mul(dgg, 1 - g0 * g0, out=dg)
            torch.mul(dhn * tc, o * (1 - o), out=do)
            dc = dc1 * f if dc_prev is None else dc_prev + dc1 * f
            dhr = torch.bmm(da, w)
            if rec is not None:
                dhr = dhr * _at(rec, t)
            dh = dhr if dh_prev is None else dh_prev + dhr
        dwt = torch.bmm(hrs.reshape(E, T * B, H).transpose(1, 2), da_all.reshape(E, T * B, G))
        return da_all, dh, dc, dwt, None, None, None, None, None, None, None


def lstm_fast(xb, h, c, wt, masks: dict, i: int, zexp=None):
    """What `lstm_loop` computes, by `_PackLSTM` (a mask that requires grad: by lstm_loop)."""
    ms = [masks.get(f"{k}{i}") for k in ("rec", "cell", "zh", "zc", "c")]
    if any(m is not None and m.requires_grad for m in ms):
        return lstm_loop(xb, h, c, wt, masks, i, zexp)
    zeh, zec = (None, None) if zexp is None else zexp
    out, hT, cT = _PackLSTM.apply(xb, h, c, wt, *ms, zeh, zec)
    return out, (hT, cT)
