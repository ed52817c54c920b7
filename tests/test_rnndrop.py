"""RNNDrop (../shared/METHODS.md, "A ninth method"): c_t = d(f*c_{t-1} + i*g_t) with one (B,H)
inverted-dropout mask per chunk and row, reused at every step; h_t = o*tanh(c_t) uses the dropped
c_t and the dropped c_t is carried; off at test time; LSTM only; never the fused kernel in
training. Its position `cell_state` (bench/positions.py) is the LSTM's slot "c", which the fast
LSTM applies: its gradients are pinned to the reference here too."""
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from bench import config, fastcell, plugins, positions
from bench.api import Noise, NoiseState
from bench.errors import UsageError
from bench.rnn import LSTMLayer, bernoulli_mask, io_dropout, lstm_cell_loop, recurrent_mask
from conftest import HAVE_MIRROR, REPO
from tasks.lm import LMModel

T, B, IN, H = 5, 3, 4, 6


def resolve(protocol="smoke", **overrides):
    m = plugins.get_method("rnndrop")
    cfg = config.resolve(plugins.get_task("ptb"), m, protocol, {k: str(v) for k, v in overrides.items()})
    return m.noise(cfg), cfg


def _manual_step(xw_t, h, c, w_hh, b_hh, cm):
    i, f, g, o = (xw_t + h @ w_hh.t() + b_hh).chunk(4, 1)
    c = cm * (torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g))      # the dropped c_t ...
    return torch.sigmoid(o) * torch.tanh(c), c                             # ... gives h_t and is carried


def test_noise_names_the_cell_state_position_with_forward_dropout():
    noise, cfg = resolve()
    assert noise.extra == (("cell_state", 0.25),) and noise.io_mask == "element"
    assert noise.emb == noise.hid == noise.out == 0.5 and noise.rec == noise.cell == noise.zone_c == 0
    assert noise.per_step                                                    # not cuDNN-fusable
    pos = positions.get("cell_state")
    assert (pos.mode, pos.slots, pos.kind) == ("sequence", {"lstm": "c"}, "mask")
    assert resolve("cpu")[1].p_c == 0.25
    half = noise.scaled(0.5)                                                 # curriculum scales it too
    assert half.extra == (("cell_state", 0.125),)


def test_the_mask_is_drawn_once_per_chunk_and_row_and_reused_at_every_step():
    noise = Noise(extra={"cell_state": 0.5})
    torch.manual_seed(1)
    layer = LSTMLayer(IN, H)
    x, h0, c0 = torch.randn(T, B, IN), torch.randn(B, H), torch.randn(B, H)
    torch.manual_seed(3)
    out, (hT, cT) = layer(x, (h0, c0), noise, 0.0, True)
    assert layer.last_path == "fast"                                          # never the fused kernel
    torch.manual_seed(3)
    m = bernoulli_mask((1, B, H), 0.5, x)                                     # drawn once: (1,B,H)
    assert not torch.equal(m[0, 0], m[0, 1])                                  # one mask per row
    assert set(m.unique().tolist()) == {0.0, 2.0}                             # inverted scaling 1/(1-p)
    xw = F.linear(x, layer.weight_ih, layer.bias_ih)
    h, c = h0, c0
    for t in range(T):
        h, c = _manual_step(xw[t], h, c, layer.weight_hh, layer.bias_hh, m[0])
        assert torch.allclose(out[t], h, atol=1e-5)
    assert torch.allclose(cT, c, atol=1e-5) and torch.allclose(hT, h, atol=1e-5)
    dropped = m[0] == 0                                                        # a dropped unit: c = 0 ...
    assert (cT[dropped] == 0).all() and (out[:, dropped] == 0).all()         # ... so h = o*tanh(0) = 0
    torch.manual_seed(4)
    assert not torch.allclose(layer(x, (h0, c0), noise, 0.0, True)[0], out)  # resampled per forward


def test_the_layer_draws_io_masks_first_then_the_cell_state_mask():
    noise, _ = resolve()
    torch.manual_seed(1)
    layer = LSTMLayer(IN, H)
    x, state = torch.randn(T, B, IN), (torch.zeros(B, H), torch.zeros(B, H))
    torch.manual_seed(5)
    out, _ = layer(x, state, noise, noise.emb, True)
    torch.manual_seed(5)
    xin = io_dropout(x, noise.emb, "element", True)
    cm = recurrent_mask(0.25, "sequence", T, B, H, x)
    ref, _ = lstm_cell_loop(F.linear(xin, layer.weight_ih, layer.bias_ih), *state, layer.weight_hh, layer.bias_hh,
                            slots={"c": cm})
    assert torch.allclose(out, ref, atol=1e-5)


def test_off_at_test_time():
    noise, cfg = resolve()
    torch.manual_seed(0)
    model = LMModel(50, cfg, NoiseState(noise)).eval()
    tokens = torch.randint(0, 50, (T, B))
    noisy = model(tokens)[0]
    assert model.rnn.last_paths == "fused"
    model.noise.noise = Noise()
    assert torch.equal(noisy, model(tokens)[0])


def _leaves(dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    shapes = [(T, B, 4 * H), (B, H), (B, H), (4 * H, H), (4 * H,)]
    return [torch.randn(s, generator=g, dtype=dtype).mul_(0.5).requires_grad_() for s in shapes]


@pytest.mark.parametrize("extra", [{}, {"rec_mask": "step", "zone": True}, {"cell_mask": "sequence"}],
                         ids=["alone", "with-rec-and-zoneout", "with-semeniuta"])
def test_fast_lstm_applies_the_cell_state_mask_with_reference_gradients(extra):
    """The hand-written backward through the mask on c: gradcheck (float64) and fast vs reference."""
    for dtype, T_ in ((torch.float64, 3), (torch.float32, 7)):
        leaves = _leaves(dtype)
        xw = leaves[0][:T_].detach().requires_grad_()
        leaves = [xw] + leaves[1:]
        torch.manual_seed(2)
        masks = dict(slots={"c": recurrent_mask(0.4, "sequence", T_, B, H, xw)})
        if "rec_mask" in extra:
            masks["rec_mask"] = recurrent_mask(0.3, extra["rec_mask"], T_, B, H, xw)
        if extra.get("zone"):
            masks["zone_h"] = (torch.rand(T_, B, H, dtype=dtype) < 0.3).to(dtype)
            masks["zone_c"] = (torch.rand(T_, B, H, dtype=dtype) < 0.5).to(dtype)
        if "cell_mask" in extra:
            masks["cell_mask"] = recurrent_mask(0.3, extra["cell_mask"], T_, B, H, xw)

        def both(fn):
            out, (h, c) = fn(*leaves, **masks)
            g = torch.Generator().manual_seed(3)
            loss = sum((t * torch.randn(t.shape, generator=g, dtype=dtype)).sum() for t in (out, h, c))
            return [out, h, c, *torch.autograd.grad(loss, leaves)]
        if dtype == torch.float64:
            assert torch.autograd.gradcheck(lambda *a: fastcell.lstm_fast(*a, **masks)[0], leaves)
            tol = dict(rtol=1e-10, atol=1e-12)
        else:
            tol = dict(rtol=1e-4, atol=1e-5)
        for a, b in zip(both(fastcell.lstm_fast), both(lstm_cell_loop)):
            torch.testing.assert_close(a, b, **tol)


def test_an_lstm_slot_the_fast_cell_does_not_apply_runs_the_reference(monkeypatch):
    leaves = _leaves(torch.float32)
    masks = dict(rec_mask=None, cell_mask=None, zone_h=None, zone_c=None, z_expect=(0.0, 0.0),
                 slots={"o": torch.ones(1, B, H)})
    monkeypatch.setattr(fastcell, "_NOTICED", set())
    with pytest.warns(UserWarning, match="fast LSTM cell not used \\(a mask at slot\\(s\\) o"):
        assert fastcell.run(lstm_cell_loop, *leaves, masks, impl="auto")[0] == "cell"
    with pytest.raises(RuntimeError, match="slot\\(s\\) o"):
        fastcell.run(lstm_cell_loop, *leaves, masks, impl="fast")


def test_rnndrop_on_a_gru_is_a_config_error():
    with pytest.raises(UsageError, match="method 'rnndrop' on task 'ptb' with cell=gru: position 'cell_state'.*"
                                         "a gru cell cannot apply it: it applies to lstm; use cell=lstm"):
        resolve(cell="gru")
    with pytest.raises(UsageError, match="use cell=lstm"):
        resolve(cell="gru", p_c=0.0)                 # named at rate 0 too: RNNDrop is LSTM-only
    with pytest.raises(UsageError, match="cell_state"):
        config.resolve(plugins.get_task("ptb"), plugins.get_method("curriculum"), "smoke",
                       {"base": "rnndrop", "cell": "gru"})


@pytest.mark.parametrize("sets,message", [
    (["cell=gru"], "method 'rnndrop' on task 'ptb' with cell=gru: position 'cell_state'"),
    (["cell=rnn"], "option cell='rnn' is not one of: gru, lstm"),
])
def test_cli_refuses_with_exit_2_and_writes_nothing(tmp_path, sets, message):
    env = dict(os.environ, BENCH_REGISTRY=str(tmp_path / "reg"), BENCH_REPORTS=str(tmp_path / "rep"),
               BENCH_RUNS=str(tmp_path / "runs"))
    cmd = [sys.executable, "-m", "bench", "run", "--task", "ptb", "--method", "rnndrop", "--device", "cpu"]
    p = subprocess.run(cmd + [a for s in sets for a in ("--set", s)], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 2 and message in p.stderr, p.stderr
    assert not any(tmp_path.iterdir())


def test_cli_zoneout_z_c_on_a_gru_is_exit_2(tmp_path):
    env = dict(os.environ, BENCH_REGISTRY=str(tmp_path / "reg"), BENCH_REPORTS=str(tmp_path / "rep"),
               BENCH_RUNS=str(tmp_path / "runs"))
    p = subprocess.run([sys.executable, "-m", "bench", "run", "--task", "ptb", "--method", "zoneout", "--device",
                        "cpu", "--set", "cell=gru", "--set", "z_c=0.5"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 2 and "set z_c=0, or use cell=lstm" in p.stderr, p.stderr
    assert not any(tmp_path.iterdir())


def test_rnndrop_smoke_end_to_end(tiny_lm, tmp_path):
    from bench import runner
    row = runner.run(tiny_lm[0].name, "rnndrop", "smoke", device="cpu", registry=tmp_path / "reg",
                     runs_dir=tmp_path / "runs", data_dir=tiny_lm[1], progress=False).row
    assert row["status"] in ("ok", "diverged") and row["rnn_path"] == "fast"
    if row["status"] == "ok":
        assert math.isfinite(row["test"])


@pytest.mark.skipif(not HAVE_MIRROR, reason="../shared/data mirror not present")
def test_make_bench_zoneout_on_a_gru_and_rnndrop_refused_there(tmp_path):
    """The issue's commands through the Makefile: `make bench TASK=ptb METHOD=zoneout SET="cell=gru"`
    runs (rnndrop's own smoke rows are in the registry, replayed by verify-seeds), and
    `METHOD=rnndrop SET="cell=gru"` exits 2 naming the reason, writing nothing."""
    env = dict(os.environ, BENCH_REGISTRY=str(tmp_path / "reg"), BENCH_REPORTS=str(tmp_path / "rep"),
               BENCH_RUNS=str(tmp_path / "runs"))
    p = subprocess.run(["make", "-s", "bench", "TASK=ptb", "METHOD=zoneout", "SET=cell=gru epochs=1"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    [row] = list((tmp_path / "reg" / "ptb" / "zoneout").glob("*.parquet"))
    p = subprocess.run(["make", "-s", "bench", "TASK=ptb", "METHOD=rnndrop", "SET=cell=gru"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 2 and "a gru cell cannot apply it: it applies to lstm; use cell=lstm" in p.stderr
    assert not (tmp_path / "reg" / "ptb" / "rnndrop").exists()
