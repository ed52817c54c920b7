"""The fast LSTM cell (bench/fastcell.py) computes what the reference `lstm_cell_loop` computes:
outputs, final state and every gradient, under every mask combination, eagerly, through the
CUDA-graph buffer logic (bench/cudagraphs.py, with a stand-in capture on CPU), and when wired
into LSTMStack for the methods that need a per-step cell."""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from bench import cellloops, cudagraphs, fastcell
from bench.api import Noise, NoiseState
from bench.errors import UsageError
from bench.rnn import LSTMStack, lstm_cell_loop

import cellcheck
from cellcheck import COMBOS, LSTM, flat
from cellcheck import combo_id as _id

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
make_masks = functools.partial(cellcheck.make_masks, LSTM)
make_leaves = functools.partial(cellcheck.make_leaves, LSTM)
run_cell = functools.partial(cellcheck.run_cell, LSTM)
assert_all_close = functools.partial(cellcheck.assert_all_close, LSTM)
stack_step = functools.partial(cellcheck.stack_step, "lstm")


@pytest.mark.parametrize("combo", COMBOS, ids=_id)
@pytest.mark.parametrize("dropconnect", [0.0, 0.5])
def test_fast_matches_reference_float32(combo, dropconnect):
    T, B, H = 7, 3, 5
    leaves = make_leaves(T, B, H, torch.float32)
    masks = make_masks(combo, T, B, H, leaves[0])
    want = run_cell(lstm_cell_loop, leaves, masks, dropconnect)
    got = run_cell(fastcell.lstm_fast, leaves, masks, dropconnect)
    assert_all_close(got, want, rtol=1e-4, atol=1e-5)


def test_fast_matches_reference_with_mkl_matmuls(monkeypatch):
    """The same without oneDNN (torch.mm everywhere), as where oneDNN is unavailable."""
    monkeypatch.setattr(fastcell, "USE_ONEDNN", False)
    T, B, H = 6, 3, 4
    leaves = make_leaves(T, B, H, torch.float32)
    masks = make_masks((("tied", "step"), "step", "train"), T, B, H, leaves[0])
    assert_all_close(run_cell(fastcell.lstm_fast, leaves, masks), run_cell(lstm_cell_loop, leaves, masks),
                     rtol=1e-4, atol=1e-5)


def test_input_projection_matches_linear():
    g = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(s, generator=g).requires_grad_() for s in [(5, 3, 6), (8, 6), (8,)])
    up = torch.randn(5, 3, 8, generator=g)
    want = [F.linear(x, w, b)]
    want += torch.autograd.grad((want[0] * up).sum(), [x, w, b])
    got = [fastcell.input_projection(x, w, b)]
    got += torch.autograd.grad((got[0] * up).sum(), [x, w, b])
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


def test_no_grad_eval_matches_reference():
    """Evaluation: no autograd, zoneout by its expectation."""
    T, B, H = 6, 2, 4
    leaves = make_leaves(T, B, H, torch.float32)
    masks = make_masks((None, None, "expect"), T, B, H, leaves[0])
    with torch.no_grad():
        out, (hT, cT) = fastcell.lstm_fast(*leaves, **masks)
        ref, (rh, rc) = lstm_cell_loop(*leaves, **masks)
    assert not out.requires_grad
    for a, b in [(out, ref), (hT, rh), (cT, rc)]:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def with_graphs(graphs):
    return lambda *args, **masks: fastcell.lstm_fast(*args, graphs=graphs, **masks)


def rerun_cache():
    return cudagraphs.GraphCache(capture=cudagraphs.RerunGraph.capture)


@pytest.mark.parametrize("combo", [COMBOS[0], (("tied", "step"), "step", "train"),
                                   (("untied", "sequence"), "sequence", "expect"),
                                   (("tied", "sequence"), None, "none")], ids=_id)
def test_graph_buffers_match_eager(combo):
    """Static buffers shared across lengths (with a capacity that grows), and across calls."""
    cache, B, H = rerun_cache(), 3, 4
    for T in (5, 3, 40, 5):
        leaves = make_leaves(T, B, H, torch.float64, seed=T)
        masks = make_masks(combo, T, B, H, leaves[0], seed=T)
        want = run_cell(fastcell.lstm_fast, leaves, masks)
        got = run_cell(with_graphs(cache), leaves, masks)
        assert_all_close(got, want, rtol=1e-12, atol=1e-12)
    fwd = [e for k, e in cache.entries.items() if k[0] == "fwd"]
    assert len(fwd) >= 1 and all(e.cap == 64 and set(e.graphs) == {40, 5} for e in fwd)


def test_graph_buffers_two_passes_before_backward():
    """Fraternal's pattern: two forwards on the same shapes, then one backward through both."""
    cache, T, B, H = rerun_cache(), 6, 2, 3
    leaves = make_leaves(T, B, H, torch.float64)
    m1 = make_masks((("tied", "step"), None, "train"), T, B, H, leaves[0], seed=1)
    m2 = make_masks((("tied", "step"), None, "train"), T, B, H, leaves[0], seed=2)

    def two_passes(graphs):
        o1, _ = fastcell.lstm_fast(*leaves, graphs=graphs, **m1)
        o2, _ = fastcell.lstm_fast(*leaves, graphs=graphs, **m2)
        loss = (o1 * 1.5).sum() + (o2 * o1).sum()
        return [o1, o2, *torch.autograd.grad(loss, leaves)]

    for a, b in zip(two_passes(cache), two_passes(None)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_failed_capture_falls_back_to_eager():
    def broken(fn):
        raise RuntimeError("capture not supported here")

    cache, T, B, H = cudagraphs.GraphCache(capture=broken), 4, 2, 3
    leaves = make_leaves(T, B, H, torch.float64)
    masks = make_masks((("tied", "step"), None, "none"), T, B, H, leaves[0])
    with pytest.warns(UserWarning, match="CUDA graph capture"):
        got = run_cell(with_graphs(cache), leaves, masks)
    assert not cache.enabled
    assert_all_close(got, run_cell(lstm_cell_loop, leaves, masks), rtol=1e-10, atol=1e-10)


NO_CELL_MASK = [c for c in COMBOS if c[1] is None]


@pytest.fixture
def fused_on_cpu(monkeypatch):
    """The fused-kernel loops (CUDA's) on CPU, with the kernels' formula as the kernels."""
    monkeypatch.setattr(cellloops, "fused_kernels", lambda device: cellloops.EMULATED)


@pytest.mark.parametrize("combo", NO_CELL_MASK, ids=_id)
def test_fused_loops_gradcheck(combo, fused_on_cpu):
    T, B, H = 3, 2, 2
    leaves = make_leaves(T, B, H, torch.float64)
    masks = make_masks(combo, T, B, H, leaves[0])
    assert torch.autograd.gradcheck(flat(fastcell.lstm_fast, masks), leaves)


@pytest.mark.parametrize("combo", NO_CELL_MASK, ids=_id)
def test_fused_loops_match_reference(combo, fused_on_cpu):
    """Eagerly and replayed from static buffers, over lengths that share them."""
    cache, B, H = rerun_cache(), 3, 4
    for T in (6, 3, 6):
        leaves = make_leaves(T, B, H, torch.float32, seed=T)
        masks = make_masks(combo, T, B, H, leaves[0], seed=T)
        want = run_cell(lstm_cell_loop, leaves, masks, dropconnect=0.5)
        for graphs in (None, cache):
            got = run_cell(with_graphs(graphs), leaves, masks, dropconnect=0.5)
            assert_all_close(got, want, rtol=1e-4, atol=1e-5)
    assert any(k[1] is cellloops.fused_forward_loop for k in cache.entries)


def test_fused_kernel_check_rejects_a_wrong_kernel():
    def wrong(xg, hg, cx):
        hy, cy, ws = cellloops.emulated_cell(xg, hg, cx)
        return hy, cy * 1.001, ws

    assert cellloops._same(cellloops.EMULATED, cellloops.EMULATED, torch.device("cpu"))
    cpu = torch.device("cpu")
    assert not cellloops._same((wrong, cellloops.emulated_cell_backward), cellloops.EMULATED, cpu)
    assert cellloops.fused_kernels(torch.device("cpu")) is None


NOISES = {
    "naive": Noise(emb=0.3, hid=0.3, out=0.3, rec=0.25, rec_mask="step"),
    "gal": Noise(word=0.1, emb=0.3, hid=0.3, out=0.3, io_mask="locked", rec=0.2, rec_mask="sequence"),
    "gal-untied": Noise(emb=0.3, hid=0.3, io_mask="locked", rec=0.2, rec_mask="sequence", gates="untied"),
    "semeniuta": Noise(emb=0.3, hid=0.3, out=0.3, cell=0.25, cell_mask="step"),
    "zoneout": Noise(zone_h=0.05, zone_c=0.5),
    "zoneout+awd": Noise(emb=0.3, io_mask="locked", zone_h=0.1, zone_c=0.5, weight=0.5),
}


@pytest.mark.parametrize("name", list(NOISES))
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_stack_uses_fast_path_and_matches_reference(name, train):
    path, got = stack_step(NOISES[name], train, impl="auto")
    ref_path, want = stack_step(NOISES[name], train, impl="reference")
    per_step = train or NOISES[name].zone_h > 0
    assert path == ("fast" if per_step else "fused") and ref_path == ("cell" if per_step else "fused")
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fused", [False, True], ids=["generic", "fused"])
def test_stack_graph_path_on_cpu_stand_in(fused, monkeypatch, request):
    """The graph path, wired: a stand-in cache on CPU gives path "graph" and the same numbers."""
    if fused:
        request.getfixturevalue("fused_on_cpu")
    cache = rerun_cache()
    monkeypatch.setattr(cudagraphs, "cache_for", lambda device: cache)
    path, got = stack_step(NOISES["gal"])
    monkeypatch.setattr(cudagraphs, "cache_for", lambda device: None)
    fast_path, want = stack_step(NOISES["gal"])
    assert (path, fast_path) == ("graph", "fast") and cache.entries
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_same_seed_same_result():
    _, a = stack_step(NOISES["naive"], seed=5)
    _, b = stack_step(NOISES["naive"], seed=5)
    _, c = stack_step(NOISES["naive"], seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_modes_and_fallback(monkeypatch):
    T, B, H = 4, 2, 3
    leaves = make_leaves(T, B, H, torch.float32)
    masks = make_masks((("tied", "step"), None, "none"), T, B, H, leaves[0])
    bad = dict(masks, rec_mask=masks["rec_mask"].clone().requires_grad_())
    monkeypatch.setattr(fastcell, "_NOTICED", set())
    assert fastcell.run(lstm_cell_loop, *leaves, masks, impl="auto")[0] == "fast"
    with pytest.warns(UserWarning, match="a mask requires grad"):
        assert fastcell.run(lstm_cell_loop, *leaves, bad, impl="auto")[0] == "cell"
    assert fastcell.run(lstm_cell_loop, *leaves, masks, impl="reference")[0] == "cell"
    with pytest.raises(RuntimeError, match="a mask requires grad"):
        fastcell.run(lstm_cell_loop, *leaves, bad, impl="fast")
    with pytest.raises(RuntimeError, match="CUDA"):
        fastcell.run(lstm_cell_loop, *leaves, masks, impl="graph")
    with pytest.raises(UsageError, match="'quick'.*auto\\|reference\\|fast\\|graph"):
        fastcell.run(lstm_cell_loop, *leaves, masks, impl="quick")


def test_resolve_impl_and_the_cli_environment_variable(monkeypatch):
    assert [fastcell.resolve_impl(v) for v in (None, "", " Reference ", "graph")] == \
        ["auto", "auto", "reference", "graph"]
    with pytest.raises(UsageError, match="'fastest' is not valid; set it to one of auto\\|reference\\|fast\\|graph"):
        fastcell.resolve_impl("fastest")
    monkeypatch.delenv("BENCH_RNN_IMPL", raising=False)
    assert fastcell.impl_mode() == "auto"
    monkeypatch.setenv("BENCH_RNN_IMPL", "fast")
    assert fastcell.impl_mode() == "fast"
    monkeypatch.setenv("BENCH_RNN_IMPL", "quick")
    with pytest.raises(UsageError, match="BENCH_RNN_IMPL 'quick'"):
        fastcell.impl_mode()


def test_two_models_with_different_impl_run_different_paths_in_one_process(monkeypatch):
    """The setting is the model's: an environment that would fail if read is never read."""
    monkeypatch.setenv("BENCH_RNN_IMPL", "graph")           # would raise on a CPU tensor
    torch.manual_seed(0)
    fast = LSTMStack(6, 5, 2, NoiseState(NOISES["zoneout"], impl="auto"))
    ref = LSTMStack(6, 5, 2, NoiseState(NOISES["zoneout"], impl="reference"))
    ref.load_state_dict(fast.state_dict())
    x, outs = torch.randn(7, 3, 6), []
    for stack in (fast, ref, fast):                          # interleaved in one process
        torch.manual_seed(1)                                 # the same zoneout masks
        outs.append(stack(x)[0])
    assert (fast.paths, ref.paths) == ("fast", "cell")
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    assert torch.equal(outs[0], outs[2])


def test_paths_accumulate_in_training_and_leave_out_evaluation():
    """Curriculum's case: rates all zero at first (fused), then a per-step rate (the fast cell);
    an evaluation pass (here on the reference cell) is not a training path."""
    noise = NoiseState(NOISES["zoneout"].scaled(0.0))
    stack = LSTMStack(6, 5, 2, noise)
    x = torch.randn(7, 3, 6)
    stack(x)[0].sum().backward()
    assert stack.paths == "fused"
    noise.noise = NOISES["zoneout"]
    stack(x)[0].sum().backward()
    assert stack.paths == "fast,fused" and stack.last_paths == "fast"
    stack.eval()
    noise.impl = "reference"
    with torch.no_grad():
        stack(x)
    assert stack.last_paths == "cell" and stack.paths == "fast,fused"
    assert all(l.paths_run == {"fused", "fast"} for l in stack.layers)


@CUDA
@pytest.mark.parametrize("combo", [COMBOS[0], (("tied", "step"), None, "train"),
                                   (("untied", "sequence"), None, "expect"),
                                   (("tied", "step"), "step", "train"),
                                   (("untied", "sequence"), "sequence", "expect")], ids=_id)
def test_cuda_graphs_match_reference(combo):
    """On the GPU: the fused-kernel loops (no cell mask) and the generic ones, captured and replayed."""
    T, B, H = 9, 4, 8
    leaves = make_leaves(T, B, H, torch.float64, device="cuda")
    masks = make_masks(combo, T, B, H, leaves[0])
    cache = cudagraphs.GraphCache(cudagraphs.CudaCapture(leaves[0].device))
    want = run_cell(lstm_cell_loop, leaves, masks, dropconnect=0.5)
    for _ in range(2):                      # capture, then replay
        got = run_cell(with_graphs(cache), leaves, masks, dropconnect=0.5)
        assert_all_close(got, want, rtol=1e-9, atol=1e-9)
    assert cache.enabled and cellloops.fused_kernels(leaves[0].device) is not None


@CUDA
def test_cuda_stack_uses_graph_path():
    torch.manual_seed(0)
    stack = LSTMStack(6, 5, 2, NoiseState(NOISES["zoneout"])).cuda()
    out, _, _ = stack(torch.randn(7, 3, 6, device="cuda"))
    out.sum().backward()
    assert stack.paths == "graph"
