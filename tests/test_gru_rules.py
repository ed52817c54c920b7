"""The GRU rules of ../shared/METHODS.md ("GRU cells"), one test each: where each method's noise goes
on a GRU, mask shapes, resampling, scaling, and train vs test behaviour. PyTorch's convention:
r = s(x_r + W_hr h), z = s(x_z + W_hz h), n = tanh(x_n + r * (W_hn h + b_hn)), h' = (1-z) n + z h."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from bench import config, plugins
from bench.api import Noise, NoiseState
from bench.errors import UsageError
from bench.rnn import GRULayer, bernoulli_mask, gru_cell_loop, io_dropout, recurrent_mask, zoneout_mask
from tasks.lm import LMModel

T, B, IN, H = 5, 3, 4, 6
METHODS = ["none", "naive", "zaremba", "gal", "semeniuta", "zoneout", "awd", "fraternal", "curriculum"]


def noise_of(method, **overrides):
    m = plugins.get_method(method)
    cfg = config.resolve(plugins.get_task("ptb"), m, "smoke", {"cell": "gru", **{k: str(v) for k, v in overrides.items()}})
    return m.noise(cfg), cfg


def _weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    xw = torch.randn(T, B, 3 * H, generator=g)
    h0 = torch.randn(B, H, generator=g)
    w_hh, b_hh = torch.randn(3 * H, H, generator=g) * 0.3, torch.randn(3 * H, generator=g) * 0.1
    return xw, h0, w_hh, b_hh


def _manual_step(xw_t, h, w_hh, b_hh, hm=None, nm=None):
    """One GRU step: hm masks h_{t-1} into the matmul (one (B,H) mask, or a (3,B,H) one per gate),
    nm the candidate; the carry z*h_{t-1} is never masked."""
    if hm is None:
        hw = h @ w_hh.t()
    elif hm.dim() == 3:
        hw = torch.cat([(h * hm[k]) @ w_hh[k * H:(k + 1) * H].t() for k in range(3)], 1)
    else:
        hw = (h * hm) @ w_hh.t()
    hr, hz, hn = (hw + b_hh).chunk(3, 1)
    xr, xz, xn = xw_t.chunk(3, 1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn) * (nm if nm is not None else 1)
    return (1 - z) * n + z * h


# --- where each method puts its noise on a GRU ------------------------------------------------------

def layer_run(noise, p_io, seed, path=None, h_zero=False):
    """A seeded GRULayer with its input x and state h, and its training output under `noise`, the
    masks drawn after manual_seed(seed); the seed is set again on return, so that the test's
    reference draws the same masks. `path`: the rnn path the layer must have taken."""
    torch.manual_seed(1)
    layer = GRULayer(IN, H)
    x, h = torch.randn(T, B, IN), (torch.zeros(B, H) if h_zero else torch.randn(B, H))
    torch.manual_seed(seed)
    out, _ = layer(x, (h,), noise, p_io, True)
    if path is not None:
        assert layer.last_path == path
    torch.manual_seed(seed)
    return layer, x, h, out


def test_every_method_resolves_on_a_gru_with_the_lstm_positions_but_c():
    assert set(METHODS) | {"rnndrop"} == set(plugins.list_methods())
    for method in METHODS:
        gru, cfg = noise_of(method)
        lstm = plugins.get_method(method).noise(config.resolve(plugins.get_task("ptb"), plugins.get_method(method),
                                                               "smoke", {}))
        assert cfg.cell == "gru" and gru.zone_c == 0.0
        assert gru == (Noise(**{**lstm.__dict__, "zone_c": 0.0}) if method == "zoneout" else lstm), method


def test_zoneout_on_a_gru_is_h_only_z_c_resolves_to_0_and_setting_it_is_an_error():
    zo, cfg = noise_of("zoneout")
    assert (zo.zone_h, zo.zone_c, cfg.z_c) == (0.05, 0.0, 0.0)
    cpu = config.resolve(plugins.get_task("ptb"), plugins.get_method("zoneout"), "cpu", {"cell": "gru"})
    assert cpu.z_c == 0.0 and cpu.z_h == 0.05                       # over the protocol's z_c=0.5
    with pytest.raises(UsageError, match="zone_c.*a gru cell cannot apply it: it applies to lstm; set z_c=0, "
                                         "or use cell=lstm"):
        noise_of("zoneout", z_c=0.5)
    with pytest.raises(UsageError, match="zone_c"):
        noise_of("curriculum", base="zoneout", z_c=0.3)             # through a wrapper too


def test_a_gru_layer_refuses_a_cell_state_position():
    layer = GRULayer(IN, H)
    x, h = torch.randn(T, B, IN), torch.randn(B, H)
    for noise in (Noise(zone_c=0.5), Noise(extra={"cell_state": 0.2})):
        with pytest.raises(UsageError, match="a gru cell cannot apply it"):
            layer(x, (h,), noise, 0.0, True)
        with pytest.raises(UsageError, match="a gru cell cannot apply it"):
            layer.eval()(x, (h,), noise, 0.0, False)
        layer.train()


# --- naive / gal: the mask on h_{t-1} enters the three matmuls, never the carry ---------------------

def test_naive_mask_is_fresh_per_step_and_the_carry_sees_the_undropped_h():
    xw, h, w_hh, b_hh = _weights()
    m = recurrent_mask(0.5, "step", T, B, H, xw)
    assert m.shape == (T, B, H) and not torch.equal(m[0], m[1])
    outs, (hT,) = gru_cell_loop(xw, h, w_hh, b_hh, rec_mask=m)
    for t in range(T):
        h = _manual_step(xw[t], h, w_hh, b_hh, hm=m[t])
        assert torch.allclose(outs[t], h, atol=1e-6)
    # masking the carry too would be another function: with every unit dropped from the matmul,
    # h_t = (1-z) n(x) + z h_{t-1} still carries h_{t-1}
    zero = torch.zeros(1, B, H)
    xw1, h0 = xw[:1], _weights()[1]
    out, _ = gru_cell_loop(xw1, h0, w_hh, b_hh, rec_mask=zero)
    z = torch.sigmoid(xw1[0, :, H:2 * H] + b_hh[H:2 * H])
    n = torch.tanh(xw1[0, :, 2 * H:] + torch.sigmoid(xw1[0, :, :H] + b_hh[:H]) * b_hh[2 * H:])
    assert torch.allclose(out[0], (1 - z) * n + z * h0, atol=1e-6)


def test_naive_layer_uses_the_per_step_cell_with_element_io_dropout():
    noise, _ = noise_of("naive")
    assert noise.rec > 0 and noise.rec_mask == "step" and noise.io_mask == "element" and noise.per_step
    layer, x, h, out = layer_run(noise, noise.emb, 7, "fast")
    xin = io_dropout(x, noise.emb, "element", True)
    m = recurrent_mask(noise.rec, "step", T, B, H, x)
    ref, _ = gru_cell_loop(F.linear(xin, layer.weight_ih, layer.bias_ih), h, layer.weight_hh, layer.bias_hh, rec_mask=m)
    assert torch.allclose(out, ref, atol=1e-5)
    torch.manual_seed(8)
    assert not torch.allclose(layer(x, (h,), noise, noise.emb, True)[0], out)      # resampled per forward


def test_gal_one_mask_per_chunk_and_row_reused_at_every_step():
    noise, _ = noise_of("gal")
    assert noise.rec_mask == "sequence" and noise.io_mask == "locked" and noise.gates == "tied"
    noise = Noise(rec=0.5, rec_mask="sequence", io_mask="locked", emb=0.5)
    layer, x, h, out = layer_run(noise, 0.5, 3, h_zero=True)
    xin = x * bernoulli_mask((1, B, IN), 0.5, x)
    m = bernoulli_mask((1, B, H), 0.5, x)
    assert not torch.equal(m[0, 0], m[0, 1])                        # one mask per batch row
    ref, _ = gru_cell_loop(F.linear(xin, layer.weight_ih, layer.bias_ih), h, layer.weight_hh, layer.bias_hh,
                           rec_mask=m.expand(T, B, H))               # the same mask at every step
    assert torch.allclose(out, ref, atol=1e-6)


def test_gal_untied_is_three_masks_for_x_and_three_for_h():
    noise, _ = noise_of("gal", gates="untied")
    assert noise.gates == "untied"
    noise = Noise(rec=0.5, rec_mask="sequence", gates="untied", emb=0.5, io_mask="locked")
    layer, x, h, out = layer_run(noise, 0.5, 3, "fast")
    mx = bernoulli_mask((1, B, 3, IN), 0.5, x)                       # one input mask per gate
    xw = torch.cat([F.linear(x * mx[:, :, k], layer.weight_ih[k * H:(k + 1) * H]) for k in range(3)], -1)
    mh = recurrent_mask(0.5, "sequence", T, B, H, x, gates=3)
    assert mh.shape == (1, 3, B, H)
    xw = xw + layer.bias_ih
    ref, _ = gru_cell_loop(xw, h, layer.weight_hh, layer.bias_hh, rec_mask=mh)
    assert torch.allclose(out, ref, atol=1e-5)
    hh = h
    for t in range(T):                                             # each gate's matmul sees its own mask
        hh = _manual_step(xw[t], hh, layer.weight_hh, layer.bias_hh, hm=mh[0])
        assert torch.allclose(ref[t], hh, atol=1e-5)


# --- semeniuta: the candidate only ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_semeniuta_drops_only_the_candidate_before_the_interpolation(mode):
    sem, _ = noise_of("semeniuta", cell_mask=mode)
    assert sem.cell == 0.25 and sem.cell_mask == mode and sem.rec == sem.zone_h == 0
    xw, h0, w_hh, b_hh = _weights()
    out, (hT,) = gru_cell_loop(xw[:1], h0, w_hh, b_hh, cell_mask=torch.zeros(1, B, H))
    z = torch.sigmoid(xw[0, :, H:2 * H] + h0 @ w_hh[H:2 * H].t() + b_hh[H:2 * H])
    assert torch.allclose(hT, z * h0, atol=1e-6)                    # h_t = z h_{t-1}: memory survives
    m = recurrent_mask(0.4, mode, T, B, H, xw)
    assert m.shape == ((T if mode == "step" else 1), B, H)
    outs, _ = gru_cell_loop(xw, h0, w_hh, b_hh, cell_mask=m)
    h = h0
    for t in range(T):
        h = _manual_step(xw[t], h, w_hh, b_hh, nm=m[t if mode == "step" else 0])
        assert torch.allclose(outs[t], h, atol=1e-6)


# --- zoneout: h only, expectation at test time ------------------------------------------------------

def test_zoneout_keeps_previous_h_and_passes_the_zoned_h_on():
    xw, h0, w_hh, b_hh = _weights()
    outs, (hT,) = gru_cell_loop(xw, h0, w_hh, b_hh, zone_h=torch.ones(T, B, H))
    assert torch.equal(hT, h0) and torch.equal(outs[2], h0)
    mh = zoneout_mask(0.4, T, B, H, xw)
    assert set(mh.unique().tolist()) == {0.0, 1.0}                  # no rescaling
    outs, _ = gru_cell_loop(xw, h0, w_hh, b_hh, zone_h=mh)
    h = h0
    for t in range(T):
        h = mh[t] * h + (1 - mh[t]) * _manual_step(xw[t], h, w_hh, b_hh)
        assert torch.allclose(outs[t], h, atol=1e-6)


def test_zoneout_test_time_is_the_expectation_exactly():
    torch.manual_seed(0)
    layer = GRULayer(IN, H).eval()
    x, h0 = torch.randn(T, B, IN), torch.randn(B, H)
    noise = Noise(zone_h=0.3)
    out, _ = layer(x, (h0,), noise, 0.0, False)
    assert layer.last_path == "fast" and torch.equal(out, layer(x, (h0,), noise, 0.0, False)[0])
    xw = F.linear(x, layer.weight_ih, layer.bias_ih)
    h = h0
    for t in range(T):
        h = 0.3 * h + 0.7 * _manual_step(xw[t], h, layer.weight_hh, layer.bias_hh)
        assert torch.allclose(out[t], h, atol=1e-6)


# --- awd: DropConnect on the full (3H,H) W_hh, on the fused GRU kernel ------------------------------

def test_awd_dropconnect_full_matrix_shared_by_batch_and_time_on_the_fused_kernel():
    awd, _ = noise_of("awd")
    assert awd.weight == 0.5 and awd.io_mask == "locked" and not awd.per_step
    noise = Noise(weight=awd.weight)
    torch.manual_seed(1)
    layer = GRULayer(IN, H)
    assert [n for n, _ in layer.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert layer.weight_hh.shape == (3 * H, H)
    x, h = torch.randn(T, B, IN), torch.zeros(B, H)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.manual_seed(4)
        out, _ = layer(x, (h,), noise, 0.0, True)
        out.sum().backward()
    assert layer.last_path == "fused"
    torch.manual_seed(4)
    mask = bernoulli_mask((3 * H, H), 0.5, x)
    ref, _ = gru_cell_loop(F.linear(x, layer.weight_ih, layer.bias_ih), h, layer.weight_hh * mask, layer.bias_hh)
    assert torch.allclose(out, ref, atol=1e-5)
    g = layer.weight_hh.grad
    assert (g[mask == 0] == 0).all() and (g[mask != 0] != 0).any()  # through the mask to the raw weight
    torch.manual_seed(5)
    assert not torch.allclose(layer(x, (h,), noise, 0.0, True)[0], out)


def test_zaremba_never_touches_the_recurrence_and_runs_the_fused_gru():
    noise, _ = noise_of("zaremba")
    layer, x, h, out = layer_run(noise, 0.5, 5, "fused")
    xin = x * bernoulli_mask((T, B, IN), 0.5, x)
    ref, _ = gru_cell_loop(F.linear(xin, layer.weight_ih, layer.bias_ih), h, layer.weight_hh, layer.bias_hh)
    assert torch.allclose(out, ref, atol=1e-5)


# --- fraternal and curriculum: unchanged on a GRU ------------------------------------------------------

def test_fraternal_and_curriculum_wrap_their_base_on_a_gru():
    assert noise_of("fraternal")[0] == noise_of("awd")[0]
    assert noise_of("curriculum", base="gal")[0] == noise_of("gal")[0]
    base, cfg = noise_of("curriculum", base="zoneout", gamma=0.01)
    late = plugins.get_method("curriculum").schedule(10**6, base, cfg)
    assert late.zone_c == 0.0 and abs(late.zone_h - base.zone_h) < 1e-12


# --- test time: nothing dropped, the fused kernel -------------------------------------------------------

@pytest.mark.parametrize("method", ["naive", "zaremba", "gal", "semeniuta", "awd", "fraternal", "curriculum"])
def test_nothing_is_dropped_at_test_time(method):
    noise, cfg = noise_of(method)
    torch.manual_seed(0)
    model = LMModel(50, cfg, NoiseState(noise)).eval()
    assert model.rnn.cell == "gru"
    tokens = torch.randint(0, 50, (T, B))
    noisy = model(tokens)[0]
    model.noise.noise = Noise()
    assert torch.equal(noisy, model(tokens)[0])
    assert model.rnn.last_paths == "fused"


@pytest.mark.parametrize("method", ["naive", "gal", "semeniuta", "zoneout"])
def test_training_runs_a_per_step_path_that_matches_the_reference(method):
    noise, cfg = noise_of(method)
    out = {}
    for impl in ("auto", "reference"):
        torch.manual_seed(0)
        model = LMModel(50, cfg, NoiseState(noise, impl=impl))
        torch.manual_seed(1)
        out[impl] = (model(torch.randint(0, 50, (T, B)))[0], model.rnn.last_paths)
    assert out["auto"][1] == "fast" and out["reference"][1] == "cell"
    torch.testing.assert_close(out["auto"][0], out["reference"][0], rtol=1e-4, atol=1e-5)
