"""The GRU cell type (bench/cells/gru.py, bench/cells/grufast.py): the reference loop computes what
torch's GRU computes (PyTorch's convention, r after W_hn h), and the fast cell computes what the
reference computes: outputs, final state and every gradient, under every mask combination,
eagerly, through the CUDA-graph buffer logic (a stand-in capture on CPU), and wired into
RecurrentStack."""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from bench import cudagraphs, fastcell
from bench.api import Noise
from bench.cells import grufast
from bench.cells.gru import fused as gru_fused
from bench.rnn import gru_cell_loop

import cellcheck
from cellcheck import COMBOS, GRU
from cellcheck import combo_id as _id

make_masks = functools.partial(cellcheck.make_masks, GRU)
make_leaves = functools.partial(cellcheck.make_leaves, GRU)
run_cell = functools.partial(cellcheck.run_cell, GRU)
assert_all_close = functools.partial(cellcheck.assert_all_close, GRU)
stack_step = functools.partial(cellcheck.stack_step, "gru")


def test_reference_and_fused_are_torch_gru():
    """PyTorch's convention: the per-step reference and the fused path are nn.GRU, float64."""
    torch.manual_seed(0)
    T, B, IN, H = 5, 3, 4, 6
    gru = torch.nn.GRU(IN, H).double()
    x, h0 = torch.randn(T, B, IN, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    want, hn = gru(x, h0.unsqueeze(0))
    weights = (gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
    ref, (hT,) = gru_cell_loop(F.linear(x, gru.weight_ih_l0, gru.bias_ih_l0), h0, gru.weight_hh_l0, gru.bias_hh_l0)
    torch.testing.assert_close(ref, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hT, hn[0], rtol=1e-12, atol=1e-12)
    fused, (fh,) = gru_fused(x, (h0,), weights)
    torch.testing.assert_close(fused, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("combo", COMBOS, ids=_id)
def test_fast_matches_reference_float64(combo):
    """Fast vs reference gradients, float64, tight tolerance, with DropConnect on W_hh."""
    T, B, H = 6, 3, 4
    leaves = make_leaves(T, B, H, torch.float64)
    masks = make_masks(combo, T, B, H, leaves[0])
    want = run_cell(gru_cell_loop, leaves, masks, dropconnect=0.5)
    got = run_cell(grufast.gru_fast, leaves, masks, dropconnect=0.5)
    assert_all_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("combo", [COMBOS[0], (("tied", "step"), "step", "train"),
                                   (("tied", "sequence"), None, "expect"),
                                   (("untied", "step"), "sequence", "train")], ids=_id)
@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "mkl"])
def test_fast_matches_reference_float32(combo, onednn, monkeypatch):
    """float32: oneDNN's prepacked matmuls (tied or no recurrent mask), and torch.mm without it."""
    monkeypatch.setattr(fastcell, "USE_ONEDNN", onednn and fastcell.USE_ONEDNN)
    T, B, H = 7, 3, 5
    leaves = make_leaves(T, B, H, torch.float32)
    masks = make_masks(combo, T, B, H, leaves[0])
    assert_all_close(run_cell(grufast.gru_fast, leaves, masks), run_cell(gru_cell_loop, leaves, masks),
                     rtol=1e-4, atol=1e-5)


def test_no_grad_eval_matches_reference():
    T, B, H = 6, 2, 4
    leaves = make_leaves(T, B, H, torch.float32)
    masks = make_masks((None, None, "expect"), T, B, H, leaves[0])
    with torch.no_grad():
        out, (hT,) = grufast.gru_fast(*leaves, **masks)
        ref, (rh,) = gru_cell_loop(*leaves, **masks)
    assert not out.requires_grad
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(hT, rh, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("combo", [COMBOS[0], (("tied", "step"), "step", "train"),
                                   (("untied", "sequence"), "sequence", "expect")], ids=_id)
def test_graph_buffers_match_eager(combo):
    """The CUDA-graph buffer logic (a stand-in capture that re-runs the loop): static buffers
    shared across lengths and calls give the eager numbers."""
    cache, B, H = cudagraphs.GraphCache(capture=cudagraphs.RerunGraph.capture), 3, 4
    for T in (5, 3, 40, 5):
        leaves = make_leaves(T, B, H, torch.float64, seed=T)
        masks = make_masks(combo, T, B, H, leaves[0], seed=T)
        want = run_cell(grufast.gru_fast, leaves, masks)
        got = run_cell(lambda *a, **m: grufast.gru_fast(*a, graphs=cache, **m), leaves, masks)
        assert_all_close(got, want, rtol=1e-12, atol=1e-12)
    assert any(k[0] == "gru-fwd" for k in cache.entries) and any(k[0] == "gru-bwd" for k in cache.entries)


def test_modes_and_fallback(monkeypatch):
    T, B, H = 4, 2, 3
    leaves = make_leaves(T, B, H, torch.float32)
    masks = make_masks((("tied", "step"), None, "none"), T, B, H, leaves[0])
    bad = dict(masks, rec_mask=masks["rec_mask"].clone().requires_grad_())
    monkeypatch.setattr(fastcell, "_NOTICED", set())
    assert grufast.run(gru_cell_loop, *leaves, masks, impl="auto")[0] == "fast"
    with pytest.warns(UserWarning, match="fast GRU cell not used \\(a mask requires grad\\)"):
        assert grufast.run(gru_cell_loop, *leaves, bad, impl="auto")[0] == "cell"
    assert grufast.run(gru_cell_loop, *leaves, masks, impl="reference")[0] == "cell"
    with pytest.raises(RuntimeError, match="a mask requires grad"):
        grufast.run(gru_cell_loop, *leaves, bad, impl="fast")
    slot = dict(masks, slots={"r": torch.ones(1, B, H)})          # a slot the fast GRU does not apply
    with pytest.raises(RuntimeError, match="slot\\(s\\) r, which the fast cell does not apply"):
        grufast.run(gru_cell_loop, *leaves, slot, impl="fast")


NOISES = {
    "none": Noise(),
    "naive": Noise(emb=0.3, hid=0.3, out=0.3, rec=0.25, rec_mask="step"),
    "gal": Noise(word=0.1, emb=0.3, hid=0.3, out=0.3, io_mask="locked", rec=0.2, rec_mask="sequence"),
    "gal-untied": Noise(emb=0.3, hid=0.3, io_mask="locked", rec=0.2, rec_mask="sequence", gates="untied"),
    "semeniuta": Noise(emb=0.3, hid=0.3, out=0.3, cell=0.25, cell_mask="step"),
    "zoneout": Noise(zone_h=0.1),
    "zoneout+awd": Noise(emb=0.3, io_mask="locked", zone_h=0.1, weight=0.5),
}


@pytest.mark.parametrize("name", list(NOISES))
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_stack_uses_fast_path_and_matches_reference(name, train):
    path, got = stack_step(NOISES[name], train, impl="auto")
    ref_path, want = stack_step(NOISES[name], train, impl="reference")
    per_step = (train and NOISES[name].per_step) or (not train and NOISES[name].zone_h > 0)
    assert path == ("fast" if per_step else "fused") and ref_path == ("cell" if per_step else "fused")
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
