"""Mask positions: where in the recurrent network noise can go, each declared once, with the cell
types that can apply it.

A `Position` names what it perturbs and, per cell type (bench/cells), where: for a mask position
the *slot* of the cell (a tensor of its step, e.g. the LSTM's new cell state "c" or the GRU's
candidate "n"; `CellSpec.slots` lists them), which every path of that cell applies or refuses
(never drops). A method names positions through its `Noise` (bench/api.py): the built-in ones by
the fields of `Noise` (rec, cell, zone_h, ...), any other one by name in `Noise.extra`, e.g.
`Noise(extra={"cell_state": 0.25})` (RNNDrop, baselines/rnndrop.py). `check` is called when a
config is resolved: a position the run's cell type cannot apply is a UsageError (exit 2), so a
method can never run silently without its noise (e.g. on the fused kernel).

A new mask position is one `register_position(Position(...))` call, in bench/positions.py for the
benchmark's own methods or in the method's plugin file: an inverted-dropout mask, (B,H) fresh per
step ("step") or one per chunk and batch row ("sequence"), multiplying a slot of the cells it
declares. The layers draw it (after the built-in masks) and hand it to the cell, whose reference
loop applies every slot it declares; a fast path applies the slots of its `CellSpec.fast_slots`
and leaves the others to the reference loop (recorded as the `cell` path, with a warning). Noise
of another kind (a new interpolation, a new weight noise) needs code in bench/rnn.py and the cells.
"""
from __future__ import annotations

import functools
import sys
import dataclasses
from dataclasses import dataclass

from bench.errors import UsageError

KINDS = ("word", "io", "mask", "zoneout", "weight")
MODES = ("step", "sequence")
ANY_CELL = "*"


@dataclass(frozen=True)
class Position:
    """One place a method can put noise.

    name:     how methods name it (`Noise.extra` key for registered positions, the `Noise` field
              for built-in ones).
    doc:      one line: what is perturbed and how (shown in errors and `make list`).
    slots:    cell type -> where it applies in that cell (a slot of `CellSpec.slots` for a mask);
              {"*": ...} = every cell type. A cell type not listed cannot apply it.
    kind:     "mask" (inverted dropout on a slot) for registered positions; built-in ones are also
              "word", "io", "zoneout" (keep the previous value) and "weight" (DropConnect).
    mode:     a mask's resampling: "step" (a fresh (B,H) mask every step) or "sequence" (one (B,H)
              mask per chunk, reused at every step); built-in masks read theirs from Noise.
    per_step: it perturbs the recurrence, so training never runs the fused kernel when it is on.
    field:    built-in positions only: the `Noise` field holding the rate.
    """
    name: str
    doc: str
    slots: dict
    kind: str = "mask"
    mode: str = "sequence"
    per_step: bool = True
    field: str = ""
    module: str = dataclasses.field(default="", compare=False)

    def __post_init__(self):
        if not self.module:
            object.__setattr__(self, "module", sys._getframe(2).f_globals.get("__name__", "?"))
        if self.kind not in KINDS:
            raise ValueError(f"position {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if self.mode not in MODES:
            raise ValueError(f"position {self.name!r}: mode {self.mode!r} is not one of {MODES}")
        if not self.field and self.kind != "mask":
            raise ValueError(f"position {self.name!r}: a registered position is a mask (kind='mask'); "
                             f"{self.kind!r} noise is built in (bench/rnn.py)")
        if not self.slots:
            raise ValueError(f"position {self.name!r}: declare the cell types it applies to in slots=")

    def applies_to(self, cell: str) -> bool:
        return ANY_CELL in self.slots or cell in self.slots

    @property
    def cells(self) -> str:
        return "every cell type" if ANY_CELL in self.slots else ", ".join(sorted(self.slots))

    def rate(self, noise) -> float:
        return getattr(noise, self.field) if self.field else dict(noise.extra).get(self.name, 0.0)

    def named_by(self, noise) -> bool:
        """Whether `noise` uses this position: a built-in one when its rate is > 0, a registered
        one when `noise.extra` names it (at any rate: a schedule may start it at 0)."""
        return getattr(noise, self.field) > 0 if self.field else self.name in dict(noise.extra)


_POSITIONS: dict[str, Position] = {}


def register_position(position: Position) -> Position:
    """Register a position; another position under the same name is an error (registering the
    same declaration again, e.g. a plugin file imported twice, is not)."""
    old = _POSITIONS.get(position.name)
    if old is not None and old != position:
        raise ValueError(f"duplicate position name {position.name!r}: already registered by {old.module}, "
                         f"again by {position.module}")
    if position.kind == "mask" and not position.field:
        from bench import cells
        for cell, slot in position.slots.items():
            if cell != ANY_CELL and cell not in cells.list_cells():
                raise ValueError(f"position {position.name!r}: unknown cell type {cell!r}; the cell types: "
                                 f"{', '.join(cells.list_cells())}")
            spec = cells.get_cell(cell) if cell != ANY_CELL else None
            if spec is None:
                raise ValueError(f"position {position.name!r}: a mask names the slot of each cell type "
                                 f"(e.g. slots={{'lstm': 'c'}}), not '*'")
            if slot not in spec.slots:
                raise ValueError(f"position {position.name!r}: {cell} has no slot {slot!r}; its slots: "
                                 f"{', '.join(spec.slots)}")
    _POSITIONS[position.name] = position
    check.cache_clear()
    return position


def unregister_position(name: str) -> None:
    """Remove a registered position (tests that register throw-away ones)."""
    _POSITIONS.pop(name, None)
    check.cache_clear()


def get(name: str) -> Position:
    if name not in _POSITIONS:
        raise UsageError(f"unknown mask position {name!r}; registered positions: {', '.join(sorted(_POSITIONS))}")
    return _POSITIONS[name]


def all_positions() -> list[Position]:
    """Every position, in registration order (the built-in ones first)."""
    return list(_POSITIONS.values())


def extra_masks(noise, cell: str) -> list[tuple[str, float, str, str]]:
    """(position, rate, mode, slot) of each registered mask position `noise` names with a rate
    > 0, in the order of `noise.extra` (sorted by name), for the cell type `cell`."""
    out = []
    for name, rate in noise.extra:
        pos = get(name)
        if rate > 0:
            out.append((name, rate, pos.mode, pos.slots[cell]))
    return out


def perturbs_recurrence(noise) -> bool:
    """True when a position that perturbs the recurrence is on (so training needs a per-step
    cell), or gal's untied gates with input dropout (one input mask per gate)."""
    if any(p.per_step and p.rate(noise) > 0 for p in _POSITIONS.values() if p.field):
        return True
    if any(rate > 0 and get(name).per_step for name, rate in noise.extra):
        return True
    return noise.gates == "untied" and (noise.emb > 0 or noise.hid > 0)


class PositionError(UsageError):
    """A noise names a position that a cell type cannot apply (`position` says which)."""

    def __init__(self, message: str, position: Position):
        super().__init__(message)
        self.position = position


@functools.lru_cache(maxsize=512)
def check(noise, cell: str) -> None:
    """A PositionError naming the first position `noise` uses that the cell type `cell` cannot
    apply (a UsageError for one that is not registered); None when every one applies."""
    for name, _ in noise.extra:
        get(name)
    for pos in _POSITIONS.values():
        if pos.named_by(noise) and not pos.applies_to(cell):
            raise PositionError(f"position {pos.name!r} ({pos.doc}) is on (rate {pos.rate(noise):g}), but a "
                                f"{cell} cell cannot apply it: it applies to {pos.cells}", pos)


# --- the built-in positions: the fields of bench.api.Noise ----------------------------------------
# (declared in the order the layers draw their masks)

for _p in (
    Position("word", "word dropout: whole rows of the embedding matrix, a (V,1) mask", {ANY_CELL: "embedding"},
             kind="word", per_step=False, field="word"),
    Position("emb", "dropout on the embedding output, the first layer's input", {ANY_CELL: "layer input"},
             kind="io", per_step=False, field="emb"),
    Position("hid", "dropout between stacked layers", {ANY_CELL: "layer input"}, kind="io", per_step=False,
             field="hid"),
    Position("out", "dropout on the last layer's output", {ANY_CELL: "output"}, kind="io", per_step=False,
             field="out"),
    Position("weight", "DropConnect on W_hh: one mask over the whole matrix per forward",
             {"lstm": "W_hh (4H,H)", "gru": "W_hh (3H,H)"}, kind="weight", per_step=False, field="weight"),
    Position("rec", "dropout on h_{t-1} where it enters the recurrent matmul (not a GRU's carry u*h_{t-1})",
             {"lstm": "h_in", "gru": "h_in"}, field="rec"),
    Position("cell", "dropout on the cell update: the LSTM's g_t, the GRU's candidate n_t",
             {"lstm": "g", "gru": "n"}, field="cell"),
    Position("zone_h", "zoneout of h: each unit keeps h_{t-1} with probability z", {"lstm": "h", "gru": "h"},
             kind="zoneout", field="zone_h"),
    Position("zone_c", "zoneout of the cell state c: each unit keeps c_{t-1} with probability z (a GRU has no c)",
             {"lstm": "c"}, kind="zoneout", field="zone_c"),
):
    register_position(_p)

# RNNDrop (Moon et al. 2015, baselines/rnndrop.py): c_t = d(f*c_{t-1} + i*g_t) with one mask per
# sequence; the dropped c_t gives h_t = o*tanh(c_t) and is carried. LSTM only: on a GRU it would be
# a mask on h.
register_position(Position(
    "cell_state", "RNNDrop: dropout on the new cell state c_t, one (B,H) mask per sequence, the dropped c_t "
                  "carried", {"lstm": "c"}, mode="sequence"))
