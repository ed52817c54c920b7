"""The rules of ../shared/METHODS.md, one test each: which tensors are perturbed, mask shapes,
when masks are resampled, scaling, and train vs test behaviour."""
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench import config, plugins
from bench.api import ForwardOut, Noise, NoiseState
from bench.rnn import (LSTMLayer, LSTMStack, bernoulli_mask, embedding_dropout, io_dropout, lstm_cell_loop,
                       recurrent_mask, zoneout_mask)
from bench.train import WeightAverage, ntasgd_switch
from tasks.lm import LMModel

T, B, IN, H = 5, 3, 4, 6


def noise_of(method, **overrides):
    m = plugins.get_method(method)
    cfg = config.resolve(plugins.get_task("ptb"), m, "smoke", {k: str(v) for k, v in overrides.items()})
    return m.noise(cfg), cfg


# --- where each method puts its noise -------------------------------------------------------

def test_noise_positions_per_method():
    naive, _ = noise_of("naive")
    assert naive.rec > 0 and naive.rec_mask == "step" and naive.io_mask == "element"
    assert naive.emb > 0 and naive.hid > 0 and naive.out > 0 and naive.cell == naive.weight == naive.word == 0
    zar, _ = noise_of("zaremba")
    assert zar.rec == zar.cell == zar.zone_h == zar.zone_c == zar.weight == 0 and not zar.per_step
    assert zar.emb == zar.hid == zar.out == 0.5 and zar.io_mask == "element"
    gal, _ = noise_of("gal")
    assert gal.io_mask == "locked" and gal.rec_mask == "sequence" and gal.word == 0.2 and gal.rec == 0.2
    assert gal.emb == gal.hid == gal.out == 0.35 and gal.gates == "tied"
    sem, _ = noise_of("semeniuta")
    assert sem.cell == 0.25 and sem.cell_mask == "step" and sem.rec == sem.zone_h == sem.zone_c == 0
    zo, _ = noise_of("zoneout")
    assert (zo.zone_h, zo.zone_c) == (0.05, 0.5) and zo.rec == zo.cell == 0
    awd, _ = noise_of("awd")
    assert awd.weight == 0.5 and awd.io_mask == "locked" and awd.word == 0.1 and not awd.per_step
    assert noise_of("fraternal")[0] == awd
    assert noise_of("curriculum")[0] == zar and noise_of("curriculum", base="gal")[0] == gal


# --- masks: shape, resampling, scaling --------------------------------------------------------

def test_inverted_scaling_values():
    m = bernoulli_mask((2000,), 0.3, torch.zeros(1))
    vals = m.unique().tolist()
    assert len(vals) == 2 and vals[0] == 0.0 and math.isclose(vals[1], 1 / 0.7, rel_tol=1e-6)
    assert abs(m.mean().item() - 1.0) < 0.06


def test_recurrent_masks_fresh_per_step_or_per_sequence():
    like = torch.zeros(1)
    step = recurrent_mask(0.5, "step", T, B, H, like)
    assert step.shape == (T, B, H) and not all(torch.equal(step[0], step[t]) for t in range(1, T))
    seq = recurrent_mask(0.5, "sequence", T, B, H, like)
    assert seq.shape == (1, B, H)
    assert recurrent_mask(0.5, "sequence", T, B, H, like, gates=4).shape == (1, 4, B, H)
    assert recurrent_mask(0.0, "step", T, B, H, like) is None


def test_io_dropout_element_vs_locked():
    x = torch.ones(T, B, 50)
    locked = io_dropout(x, 0.5, "locked", True)
    assert all(torch.equal(locked[0], locked[t]) for t in range(T))          # one (1,B,H) mask
    assert not torch.equal(locked[:, 0], locked[:, 1])                       # per batch row
    elem = io_dropout(x, 0.5, "element", True)
    assert not all(torch.equal(elem[0], elem[t]) for t in range(T))
    assert torch.equal(io_dropout(x, 0.5, "locked", False), x)               # off at test


def test_embedding_dropout_drops_word_types():
    w = torch.randn(30, 8)
    d = embedding_dropout(w, 0.5, True)
    ratio = d / w
    for row in ratio:                    # every row is dropped whole or kept whole, scaled by 1/(1-p)
        assert torch.allclose(row, torch.zeros(8)) or torch.allclose(row, torch.full((8,), 2.0))
    tokens = torch.tensor([[3, 3], [5, 3]])
    emb = F.embedding(tokens, d)
    assert torch.equal(emb[0, 0], emb[0, 1]) and torch.equal(emb[0, 0], emb[1, 1])   # tied per type


def test_zoneout_masks_are_binary_fresh_and_unscaled():
    m = zoneout_mask(0.3, T, B, 200, torch.zeros(1))
    assert m.shape == (T, B, 200) and set(m.unique().tolist()) == {0.0, 1.0}
    assert abs(m.mean().item() - 0.3) < 0.05 and not torch.equal(m[0], m[1])


# --- the reference cell: which tensors each mask touches ----------------------------------------

def _weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    xw = torch.randn(T, B, 4 * H, generator=g)
    h0, c0 = torch.randn(B, H, generator=g), torch.randn(B, H, generator=g)
    w_hh, b_hh = torch.randn(4 * H, H, generator=g) * 0.3, torch.randn(4 * H, generator=g) * 0.1
    return xw, h0, c0, w_hh, b_hh


def _manual_step(xw_t, h, c, w_hh, b_hh, hm=None, gm=None):
    gates = xw_t + ((h * hm) if hm is not None else h) @ w_hh.t() + b_hh
    i, f, g, o = gates.chunk(4, 1)
    g = torch.tanh(g) * (gm if gm is not None else 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * g
    return torch.sigmoid(o) * torch.tanh(c), c


def test_recurrent_mask_only_touches_h_entering_the_recurrence():
    xw, h, c, w_hh, b_hh = _weights()
    m = recurrent_mask(0.5, "step", T, B, H, xw)
    outs, (hT, cT) = lstm_cell_loop(xw, h, c, w_hh, b_hh, rec_mask=m)
    for t in range(T):
        h, c = _manual_step(xw[t], h, c, w_hh, b_hh, hm=m[t])
        assert torch.allclose(outs[t], h, atol=1e-6)       # the output h itself is not masked
    assert torch.allclose(cT, c, atol=1e-6)


def test_untied_gates_use_one_mask_per_gate():
    xw, h, c, w_hh, b_hh = _weights()
    m = recurrent_mask(0.5, "sequence", T, B, H, xw, gates=4)
    outs, _ = lstm_cell_loop(xw, h, c, w_hh, b_hh, rec_mask=m)
    rec = torch.cat([(h * m[0, k]) @ w_hh[k * H:(k + 1) * H].t() for k in range(4)], 1)
    gates = xw[0] + rec + b_hh
    i, f, g, o = gates.chunk(4, 1)
    c1 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    assert torch.allclose(outs[0], torch.sigmoid(o) * torch.tanh(c1), atol=1e-6)


def test_semeniuta_drops_only_the_cell_update_so_memory_survives():
    xw, h, c, w_hh, b_hh = _weights()
    zero = torch.zeros(1, B, H)
    outs, (hT, cT) = lstm_cell_loop(xw[:1], h, c, w_hh, b_hh, cell_mask=zero)
    f = torch.sigmoid((xw[0] + h @ w_hh.t() + b_hh).chunk(4, 1)[1])
    assert torch.allclose(cT, f * c, atol=1e-6)             # c_t = f * c_{t-1}: not zeroed
    assert (hT != 0).all()                                  # h is never zeroed
    m = recurrent_mask(0.5, "step", T, B, H, xw)
    outs, _ = lstm_cell_loop(xw, h, c, w_hh, b_hh, cell_mask=m)
    for t in range(T):
        h, c = _manual_step(xw[t], h, c, w_hh, b_hh, gm=m[t])
        assert torch.allclose(outs[t], h, atol=1e-6)


def test_zoneout_keeps_previous_values_and_passes_zoned_h_on():
    xw, h0, c0, w_hh, b_hh = _weights()
    ones, zeros = torch.ones(T, B, H), torch.zeros(T, B, H)
    outs, (hT, cT) = lstm_cell_loop(xw, h0, c0, w_hh, b_hh, zone_h=ones, zone_c=ones)
    assert torch.equal(hT, h0) and torch.equal(cT, c0) and torch.equal(outs[2], h0)
    plain, _ = lstm_cell_loop(xw, h0, c0, w_hh, b_hh)
    none, _ = lstm_cell_loop(xw, h0, c0, w_hh, b_hh, zone_h=zeros, zone_c=zeros)
    assert torch.allclose(plain, none)
    mh, mc = zoneout_mask(0.4, T, B, H, xw), zoneout_mask(0.6, T, B, H, xw)
    outs, (hT, _) = lstm_cell_loop(xw, h0, c0, w_hh, b_hh, zone_h=mh, zone_c=mc)
    h, c = h0, c0
    for t in range(T):
        hn, cn = _manual_step(xw[t], h, c, w_hh, b_hh)
        c = mc[t] * c + (1 - mc[t]) * cn
        h = mh[t] * h + (1 - mh[t]) * hn                  # the zoned-out h: next step and next layer
        assert torch.allclose(outs[t], h, atol=1e-6)
    assert torch.equal(outs[-1], hT)


def test_zoneout_test_time_is_the_expectation_exactly():
    torch.manual_seed(0)
    layer = LSTMLayer(IN, H).eval()
    x, h0, c0 = torch.randn(T, B, IN), torch.randn(B, H), torch.randn(B, H)
    noise = Noise(zone_h=0.3, zone_c=0.6)
    out, (hT, cT) = layer(x, (h0, c0), noise, 0.0, False)
    out2, _ = layer(x, (h0, c0), noise, 0.0, False)
    assert torch.equal(out, out2)                          # deterministic at test time
    xw = F.linear(x, layer.weight_ih, layer.bias_ih)
    h, c = h0, c0
    for t in range(T):
        hn, cn = _manual_step(xw[t], h, c, layer.weight_hh, layer.bias_hh)
        h, c = 0.3 * h + 0.7 * hn, 0.6 * c + 0.4 * cn
        assert torch.allclose(out[t], h, atol=1e-6)


# --- the layer applies those masks as drawn ----------------------------------------------------

def _replay(layer, x, state, noise, p_in):
    """The layer's training forward, rebuilt from the public mask functions in the documented order:
    DropConnect, input mask, then recurrent, cell, zoneout-h and zoneout-c masks."""
    h, c = state
    w_hh = layer.weight_hh * bernoulli_mask((4 * H, H), noise.weight, x) if noise.weight else layer.weight_hh
    x = io_dropout(x, p_in, noise.io_mask, True)
    xw = F.linear(x, layer.weight_ih, layer.bias_ih)
    masks = dict(rec_mask=recurrent_mask(noise.rec, noise.rec_mask, T, B, H, x),
                 cell_mask=recurrent_mask(noise.cell, noise.cell_mask, T, B, H, x),
                 zone_h=zoneout_mask(noise.zone_h, T, B, H, x), zone_c=zoneout_mask(noise.zone_c, T, B, H, x))
    return lstm_cell_loop(xw, h, c, w_hh, layer.bias_hh, **masks)


@pytest.mark.parametrize("method", ["naive", "gal", "semeniuta", "zoneout"])
def test_layer_training_forward_equals_reference_with_the_same_masks(method):
    noise, _ = noise_of(method)
    noise = Noise(**{**noise.__dict__, "word": 0.0})
    torch.manual_seed(1)
    layer = LSTMLayer(IN, H)
    x, state = torch.randn(T, B, IN), (torch.randn(B, H), torch.randn(B, H))
    torch.manual_seed(7)
    out, (hT, cT) = layer(x, state, noise, noise.emb, True)
    torch.manual_seed(7)
    ref, (rh, rc) = _replay(layer, x, state, noise, noise.emb)
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(cT, rc, atol=1e-5)
    torch.manual_seed(8)
    assert not torch.allclose(layer(x, state, noise, noise.emb, True)[0], out)   # resampled per forward


def _train_forward(noise, p_in, mask_seed):
    """A fresh layer's training forward from a zero state; re-seeds with mask_seed afterwards so
    that the caller can draw the same masks again."""
    torch.manual_seed(1)
    layer = LSTMLayer(IN, H)
    x, state = torch.randn(T, B, IN), (torch.zeros(B, H), torch.zeros(B, H))
    torch.manual_seed(mask_seed)
    out, _ = layer(x, state, noise, p_in, True)
    torch.manual_seed(mask_seed)
    return layer, x, state, out


def test_gal_masks_are_shared_by_all_steps_of_a_chunk():
    """With a per-sequence h mask, dropping unit k of h_{t-1} at one step means at every step:
    replaying with that one mask broadcast over time reproduces the layer exactly."""
    noise = Noise(rec=0.5, rec_mask="sequence", io_mask="locked", emb=0.5)
    layer, x, state, out = _train_forward(noise, p_in=0.5, mask_seed=3)
    xin = x * bernoulli_mask((1, B, IN), 0.5, x)
    m = bernoulli_mask((1, B, H), 0.5, x)
    ref, _ = lstm_cell_loop(F.linear(xin, layer.weight_ih, layer.bias_ih), *state, layer.weight_hh,
                            layer.bias_hh, rec_mask=m.expand(T, B, H))
    assert torch.allclose(out, ref, atol=1e-6)


def test_zaremba_never_touches_the_recurrence_and_runs_fused():
    noise, _ = noise_of("zaremba")
    torch.manual_seed(1)
    layer = LSTMLayer(IN, H)
    x, state = torch.randn(T, B, IN), (torch.randn(B, H), torch.randn(B, H))
    torch.manual_seed(5)
    out, _ = layer(x, state, noise, 0.5, True)
    assert layer.last_path == "fused"
    torch.manual_seed(5)
    xin = x * bernoulli_mask((T, B, IN), 0.5, x)           # element-wise on the layer input only
    ref, _ = lstm_cell_loop(F.linear(xin, layer.weight_ih, layer.bias_ih), *state, layer.weight_hh, layer.bias_hh)
    assert torch.allclose(out, ref, atol=1e-5)


# --- test time: nothing dropped -----------------------------------------------------------------

@pytest.mark.parametrize("method", ["naive", "zaremba", "gal", "semeniuta", "awd", "fraternal", "curriculum"])
def test_nothing_is_dropped_at_test_time(method):
    noise, cfg = noise_of(method)
    torch.manual_seed(0)
    model = LMModel(50, cfg, NoiseState(noise)).eval()
    tokens = torch.randint(0, 50, (T, B))
    noisy = model(tokens)[0]
    model.noise.noise = Noise()
    assert torch.equal(noisy, model(tokens)[0])
    assert model.rnn.last_paths == "fused"


# --- awd ---------------------------------------------------------------------------------------

def test_awd_dropconnect_full_matrix_shared_by_batch_and_time_with_grad_to_raw_weight():
    awd, _ = noise_of("awd")
    noise = Noise(weight=awd.weight)                       # awd's DropConnect alone
    assert noise.weight == 0.5
    torch.manual_seed(1)
    layer = LSTMLayer(IN, H)
    x, state = torch.randn(T, B, IN), (torch.zeros(B, H), torch.zeros(B, H))
    assert [n for n, _ in layer.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # no warning flood
        torch.manual_seed(4)
        out, _ = layer(x, state, noise, 0.0, True)
        out.sum().backward()
    assert layer.last_path == "fused"
    torch.manual_seed(4)
    mask = bernoulli_mask((4 * H, H), 0.5, x)               # one (4H,H) mask for the whole batch and chunk
    ref, _ = lstm_cell_loop(F.linear(x, layer.weight_ih, layer.bias_ih), *state,
                            layer.weight_hh * mask, layer.bias_hh)
    assert torch.allclose(out, ref, atol=1e-5)
    g = layer.weight_hh.grad
    assert g is not None and (g[mask == 0] == 0).all() and (g[mask != 0] != 0).any()
    torch.manual_seed(5)
    assert not torch.allclose(layer(x, state, noise, 0.0, True)[0], out)   # resampled each forward


def test_ntasgd_switch_rule():
    assert not ntasgd_switch([5.0, 4.0], 4.5, nonmono=5)              # too few epochs yet
    losses = [6.0, 5.0, 4.0, 4.1, 4.2, 4.3, 4.4]
    assert not ntasgd_switch(losses, 4.05, nonmono=5)   # best of all but the last 5 is 5.0: still better
    assert ntasgd_switch(losses, 5.5, nonmono=5)
    assert ntasgd_switch(losses, 4.05, nonmono=2)       # best of all but the last 2 is 4.0


def test_weight_average_is_the_uniform_mean_since_the_switch():
    model = torch.nn.Linear(2, 1)
    avg = WeightAverage(model)
    snaps = [model.weight.detach().clone()]
    for v in (1.0, 3.0):
        with torch.no_grad():
            model.weight.fill_(v)
        snaps.append(model.weight.detach().clone())
        avg.update()
    avg.swap()
    assert torch.allclose(model.weight, torch.stack(snaps).mean(0))
    avg.swap()
    assert torch.equal(model.weight, torch.full((1, 2), 3.0))


def test_variable_bptt_lengths_and_lr_scaling():
    _, cfg = noise_of("awd", train_tokens=0)
    cfg = config.Config({**cfg, "batch_size": 2, "bptt": 70})
    task = plugins.get_task("ptb")
    data = {"train": torch.arange(200_000) % 97}
    batches = list(task.train_batches(data, cfg, 1, np.random.default_rng(0)))
    lens = np.array([b.data[0].shape[0] for b in batches[:-1]])
    assert lens.min() >= 5 and lens.max() <= 110
    assert all(math.isclose(b.lr_scale, b.data[0].shape[0] / 70) for b in batches[:-1])
    assert 0.02 < np.mean(lens < 52) < 0.09                        # ~5% of chunks are based on 35
    assert abs(np.median(lens) - 70) <= 2
    for b in batches:                                              # targets are the next tokens
        assert torch.equal(b.data[1][:-1], b.data[0][1:])


def test_variable_bptt_never_yields_a_one_step_window():
    """AWD's loop ends before a window of 1 step (TAR's mean over no pair of steps is NaN): over
    many epochs some walk ends exactly one token before the stream does; the windows still tile the
    stream up to that token. Fixed BPTT keeps its last window, whatever its length."""
    _, cfg = noise_of("awd", train_tokens=0)
    cfg = config.Config({**cfg, "batch_size": 2, "bptt": 20})
    task = plugins.get_task("ptb")
    data = {"train": torch.arange(2_000) % 97}
    from tasks.lm import batchify
    stream = batchify(data["train"], 2)
    rng, met = np.random.default_rng(0), 0
    for epoch in range(1, 200):
        lens = []
        for b in task.train_batches(data, cfg, epoch, rng):
            i = sum(lens)
            lens.append(b.data[0].shape[0])
            assert torch.equal(b.data[0], stream[i:i + lens[-1]])   # consecutive windows
        assert min(lens) >= 2
        left = 1_000 - 1 - sum(lens)                              # stream rows minus 1 (targets) minus used
        assert left in (0, 1)
        met += left == 1
    assert met > 0                                               # the case did occur
    fixed = config.Config({**cfg, "var_bptt": False, "bptt": 499})
    lens = [b.data[0].shape[0] for b in task.train_batches(data, fixed, 1, np.random.default_rng(0))]
    assert lens == [499, 499, 1]                                 # 999 targets: the last window kept


def test_tar_is_zero_on_a_one_step_window_not_nan():
    task = plugins.get_task("ptb")
    raw, dropped = torch.randn(1, B, H), torch.randn(1, B, H)
    out = ForwardOut(torch.zeros(1), torch.tensor(0.0), None, dict(raw=raw, dropped=dropped))
    pen = task.penalty(out, config.Config(ar=2.0, tar=1.0))
    assert torch.isfinite(pen) and torch.allclose(pen, 2.0 * dropped.pow(2).mean())


def test_ar_tar_penalty_formula():
    task = plugins.get_task("ptb")
    raw, dropped = torch.randn(T, B, H), torch.randn(T, B, H)
    out = ForwardOut(torch.zeros(1), torch.tensor(0.0), None, dict(raw=raw, dropped=dropped))
    cfg = config.Config(ar=2.0, tar=1.0)
    expected = 2.0 * dropped.pow(2).mean() + 1.0 * (raw[1:] - raw[:-1]).pow(2).mean()
    assert torch.allclose(task.penalty(out, cfg), expected)
    assert task.penalty(out, config.Config(ar=0.0, tar=0.0)) == 0.0


def test_zaremba_loss_is_summed_over_time_and_averaged_over_batch():
    _, cfg = noise_of("zaremba")
    task = plugins.get_task("ptb")
    torch.manual_seed(0)
    model = LMModel(50, cfg, NoiseState(Noise())).eval()
    x, y = torch.randint(0, 50, (T, B)), torch.randint(0, 50, (T, B))
    from bench.api import Batch
    out = task.forward(model, Batch((x, y), y.numel()), None, cfg)
    per_token = F.cross_entropy(out.logits.view(-1, 50), y.reshape(-1), reduction="none").view(T, B)
    assert cfg.loss_reduction == "sum_time"
    assert torch.allclose(out.loss, per_token.sum(0).mean())


# --- fraternal ----------------------------------------------------------------------------------

def test_fraternal_loss_formula_for_fixed_outputs():
    from baselines.fraternal import fraternal_loss
    z1, z2 = torch.randn(7, 11), torch.randn(7, 11)
    outs = iter([ForwardOut(z1, torch.tensor(2.0), "state-1"), ForwardOut(z2, torch.tensor(3.0), "state-2")])
    loss, first = fraternal_loss(lambda: next(outs), config.Config(kappa=0.1))
    assert torch.allclose(loss, torch.tensor(2.5) + 0.1 * ((z1 - z2) ** 2).mean())
    assert first.state == "state-1"                                  # only the first pass's state


def _fraternal_setup():
    noise, cfg = noise_of("fraternal")
    torch.manual_seed(0)
    model = LMModel(50, cfg, NoiseState(noise))
    from bench.api import Batch
    batch = Batch((torch.randint(0, 50, (T, B)), torch.randint(0, 50, (T, B))), T * B)
    state = model.rnn.init_state(B)
    state = [tuple(torch.randn_like(t) for t in layer) for layer in state]   # a carried, non-zero state
    return plugins.get_method("fraternal"), plugins.get_task("ptb"), model, batch, state, cfg


def _flat(state):
    return torch.cat([t.flatten() for layer in state for t in layer])


def test_fraternal_training_passes_differ_from_the_same_state():
    method, task, model, batch, state, cfg = _fraternal_setup()
    before = _flat(state).clone()
    outs = []

    def forward():
        outs.append(task.forward(model, batch, state, cfg))
        return outs[-1]
    model.train()
    torch.manual_seed(3)
    loss, first = method.loss(forward, cfg)
    assert len(outs) == 2 and first is outs[0]                      # two passes, the first one's state carried
    assert torch.equal(_flat(state), before)                        # the first pass left the shared state intact
    assert not torch.allclose(outs[0].logits, outs[1].logits)        # independently drawn masks
    torch.manual_seed(3)                                            # the same masks, without the consistency term
    plain, _ = method.loss(forward, config.Config(cfg, kappa=0.0))
    assert torch.equal(outs[2].logits, outs[0].logits) and torch.equal(outs[3].logits, outs[1].logits)
    consistency = loss - plain
    assert consistency > 0
    expected = cfg.kappa * ((outs[0].logits - outs[1].logits) ** 2).mean()
    assert torch.allclose(consistency, expected, rtol=0, atol=2e-6)  # float32 losses near 4: 1e-6 rounding
    # both passes are trained: the consistency term has a gradient through the second pass too
    grad_two, = torch.autograd.grad(consistency, outs[1].logits, retain_graph=True)
    assert grad_two.abs().sum() > 0


def test_fraternal_eval_is_one_noise_free_pass():
    method, task, model, batch, state, cfg = _fraternal_setup()
    model.eval()
    a, b = task.forward(model, batch, state, cfg), task.forward(model, batch, state, cfg)
    assert torch.equal(a.logits, b.logits)                          # no noise at eval
    loss, _ = method.loss(lambda: task.forward(model, batch, state, cfg), cfg)
    assert torch.equal(loss, a.loss)                                # so the consistency term vanishes
    model.noise.noise = Noise()
    assert torch.equal(task.forward(model, batch, state, cfg).logits, a.logits)
    calls = []
    orig = model.forward
    model.forward = lambda *args, **kw: calls.append(1) or orig(*args, **kw)
    data = dict(vocab=50, valid=torch.randint(0, 50, (2 * cfg.bptt * cfg.eval_batch_size + 1,)))
    task.evaluate(model, data, "valid", cfg)
    assert len(calls) == 2                                          # one pass per chunk (2 chunks)


# --- curriculum ---------------------------------------------------------------------------------

def test_curriculum_schedule_values():
    from baselines.curriculum import keep_probability
    method = plugins.get_method("curriculum")
    base, cfg = noise_of("curriculum", base="gal", gamma=0.01)
    assert keep_probability(0, 0.5, 0.01) == 1.0
    assert math.isclose(keep_probability(10**6, 0.5, 0.01), 0.5)
    assert math.isclose(keep_probability(100, 0.5, 0.01), 0.5 * math.exp(-1) + 0.5)
    at0 = method.schedule(0, base, cfg)
    assert all(getattr(at0, r) == 0.0 for r in Noise.RATES)         # no noise at step 0
    late = method.schedule(10**6, base, cfg)
    assert all(math.isclose(getattr(late, r), getattr(base, r)) for r in Noise.RATES)
    mid = method.schedule(100, base, cfg)
    assert math.isclose(mid.rec, 1 - keep_probability(100, base.rec, 0.01))
    assert mid.rec_mask == base.rec_mask and mid.io_mask == base.io_mask


def test_curriculum_records_base_and_gamma(tiny_lm, tmp_path):
    import json
    from bench import runner
    outcome = runner.run(tiny_lm[0].name, "curriculum", "smoke", device="cpu", registry=tmp_path / "r",
                         runs_dir=tmp_path / "runs", data_dir=tiny_lm[1], overrides={"base": "gal", "gamma": "0.05"},
                         progress=False)
    row = outcome.row
    cfg = json.loads(row["config_json"])
    assert cfg["base"] == "gal" and cfg["gamma"] == 0.05 and cfg["p_rec"] == 0.2


# --- gal: MC dropout at test time ----------------------------------------------------------------

def test_gal_mc_evaluation_averages_probabilities(tiny_lm):
    task, root = tiny_lm
    _, cfg = noise_of("gal", mc_samples=3, eval_tokens=200)
    data = task.load(root, cfg)
    noise = plugins.get_method("gal").noise(cfg)
    torch.manual_seed(0)
    model = task.build_model(data, cfg, NoiseState(noise))
    torch.manual_seed(11)
    got = task.evaluate(model, data, "valid", cfg)["loss"]
    # the same passes by hand: probabilities averaged (not log-probabilities)
    torch.manual_seed(11)
    from tasks.lm import batchify
    stream = batchify(data["valid"], cfg.eval_batch_size)
    model.eval()
    nll_p, nll_logp, n, state = 0.0, 0.0, 0, None
    with torch.no_grad():
        for i in range(0, stream.shape[0] - 1, cfg.bptt):
            L = min(cfg.bptt, stream.shape[0] - 1 - i)
            x, y = stream[i:i + L], stream[i + 1:i + 1 + L]
            _, new_state, _, _ = model(x, state)
            model.noise.mc = True
            logps = torch.stack([F.log_softmax(model(x, state)[0], -1) for _ in range(3)])
            model.noise.mc = False
            lp = logps.gather(-1, y.unsqueeze(0).unsqueeze(-1).expand(3, -1, -1, 1)).squeeze(-1)
            nll_p += -torch.log(lp.exp().mean(0)).sum().item()
            nll_logp += -lp.mean(0).sum().item()
            n += y.numel()
            state = new_state
    assert math.isclose(got, nll_p / n, rel_tol=1e-5)
    assert got < nll_logp / n                                        # Jensen: not the log-prob average


def test_gal_untied_uses_per_gate_masks_in_training():
    noise = Noise(rec=0.5, rec_mask="sequence", gates="untied", emb=0.5, io_mask="locked")
    layer, x, state, out = _train_forward(noise, p_in=0.5, mask_seed=3)
    mx = bernoulli_mask((1, B, 4, IN), 0.5, x)                       # one input mask per gate
    xw = torch.cat([F.linear(x * mx[:, :, k], layer.weight_ih[k * H:(k + 1) * H]) for k in range(4)], -1)
    mh = recurrent_mask(0.5, "sequence", T, B, H, x, gates=4)
    ref, _ = lstm_cell_loop(xw + layer.bias_ih, *state, layer.weight_hh, layer.bias_hh, rec_mask=mh)
    assert torch.allclose(out, ref, atol=1e-5)
