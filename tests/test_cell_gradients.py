"""Both per-step cell types against numerical derivatives (float64, torch.autograd.gradcheck): the
reference loop (autograd through the step's ops) and the fast cell (a hand-written backward), under
the mask combinations of tests/cellcheck.py. The cell-specific checks are in test_fastcell.py (LSTM)
and test_grucell.py (GRU)."""
from __future__ import annotations

import pytest
import torch

from bench import fastcell
from bench.cells import grufast
from bench.rnn import gru_cell_loop, lstm_cell_loop

from cellcheck import COMBOS, GRU, LSTM, combo_id, flat, make_leaves, make_masks

KINDS = {"lstm": (LSTM, {"reference": lstm_cell_loop, "fast": fastcell.lstm_fast}),
         "gru": (GRU, {"reference": gru_cell_loop, "fast": grufast.gru_fast})}
# the fast cells (hand-written backward) under every combination; the reference loops under three
CASES = [(cell, impl, combo) for cell in KINDS for impl, combos in
         (("reference", [COMBOS[0], (("tied", "step"), "step", "train"), (("untied", "sequence"), "sequence", "expect")]),
          ("fast", COMBOS)) for combo in combos]


@pytest.mark.parametrize("cell, impl, combo", CASES, ids=lambda v: combo_id(v) if isinstance(v, tuple) else v)
def test_cell_gradcheck(cell, impl, combo):
    kind, fns = KINDS[cell]
    T, B, H = 3, 2, 2
    leaves = make_leaves(kind, T, B, H, torch.float64)
    masks = make_masks(kind, combo, T, B, H, leaves[0])
    assert torch.autograd.gradcheck(flat(fns[impl], masks), leaves)
