"""The contracts between the runner and its plugins.

A method is a `MethodSpec`: where its noise goes (`noise`), and optionally how its loss is computed
(`loss`, e.g. fraternal's two passes) and how its rates move during training (`schedule`, e.g.
curriculum). A task is a `Task` subclass: data, model, batches, forward pass and evaluation. The
trainer only ever calls these hooks; it never branches on a method's or a task's name.
"""
from __future__ import annotations

import abc
import dataclasses
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

MASK_MODES = ("element", "locked")      # io dropout: fresh per element, or one (1,B,H) mask per chunk
REC_MODES = ("step", "sequence")        # recurrent masks: fresh (B,H) each step, or one per chunk
GATE_MODES = ("tied", "untied")         # gal: one mask for all gates (4 LSTM, 3 GRU), or one per gate


@dataclass(frozen=True)
class Noise:
    """Where a method puts noise in the shared recurrent model. All probabilities are drop
    probabilities in [0, 1) and use inverted scaling, except zoneout (no rescaling). Each field is a
    mask position of bench/positions.py, which says the cell types that can apply it; `extra` names
    registered positions beyond these fields, e.g. `extra={"cell_state": 0.25}` (RNNDrop), and is
    kept as a sorted tuple of (position, rate) pairs."""
    word: float = 0.0          # drop whole word types: (V,1) row mask on the embedding matrix
    emb: float = 0.0           # on the embedding output (= input of the first recurrent layer)
    hid: float = 0.0           # between stacked layers (input of layers 2..L)
    out: float = 0.0           # on the last layer's output, before the classifier/softmax
    io_mask: str = "element"   # mask shape of emb/hid/out (MASK_MODES)
    rec: float = 0.0           # on h_{t-1} where it enters the recurrence
    rec_mask: str = "step"     # REC_MODES
    gates: str = "tied"        # GATE_MODES; "untied" also gives each gate its own input mask
    cell: float = 0.0          # semeniuta: on the cell update g_t
    cell_mask: str = "step"    # REC_MODES
    zone_h: float = 0.0        # zoneout probability of keeping h_{t-1}
    zone_c: float = 0.0        # zoneout probability of keeping c_{t-1}
    weight: float = 0.0        # DropConnect on W_hh: one (G*H,H) mask per forward (G gates: 4 LSTM, 3 GRU)
    extra: Any = ()            # registered mask positions: {name: rate} (bench/positions.py)

    RATES = ("word", "emb", "hid", "out", "rec", "cell", "zone_h", "zone_c", "weight")

    def __post_init__(self):
        extra = self.extra.items() if isinstance(self.extra, dict) else self.extra
        try:
            extra = tuple(sorted((str(k), float(v)) for k, v in extra))
        except (TypeError, ValueError):
            raise ValueError(f"extra={self.extra!r} must map position names to rates, e.g. "
                             "{'cell_state': 0.25}") from None
        object.__setattr__(self, "extra", extra)
        for name, v in [(n, getattr(self, n)) for n in self.RATES] + [(f"extra[{k!r}]", v) for k, v in extra]:
            if not (0.0 <= v < 1.0):
                raise ValueError(f"noise rate {name}={v} must be in [0, 1)")
        for name, allowed in (("io_mask", MASK_MODES), ("rec_mask", REC_MODES),
                              ("gates", GATE_MODES), ("cell_mask", REC_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} must be one of {allowed}")

    def scaled(self, factor: float) -> "Noise":
        """Every rate multiplied by `factor` (curriculum's ramp), those of `extra` included."""
        return dataclasses.replace(self, **{n: getattr(self, n) * factor for n in self.RATES},
                                   extra=tuple((k, v * factor) for k, v in self.extra))

    @property
    def per_step(self) -> bool:
        """True when the recurrence itself is perturbed, so a per-step cell is needed in training
        (the positions' `per_step`, bench/positions.py)."""
        from bench import positions
        return positions.perturbs_recurrence(self)


class NoiseState:
    """One mutable holder shared by all noisy modules of a model: the trainer swaps `noise` (e.g.
    curriculum's schedule), evaluation sets `mc=True` to keep noise on for MC dropout. `impl`: the
    per-step implementation its layers run, any cell type (bench/fastcell.py MODES), resolved once per run."""

    def __init__(self, noise: Noise, impl: str = "auto"):
        self.noise = noise
        self.mc = False
        self.impl = impl

    def active(self, module: torch.nn.Module) -> bool:
        return module.training or self.mc


@dataclass
class ForwardOut:
    """One forward pass of a task's model on a batch."""
    logits: torch.Tensor            # pre-softmax scores, rows aligned with the targets
    loss: torch.Tensor              # the task's training loss on this pass
    state: Any = None               # recurrent state to carry to the next batch (LMs)
    extras: dict = field(default_factory=dict)  # e.g. last-layer outputs for AR/TAR


@dataclass
class Batch:
    data: Any
    n_tokens: int                   # target tokens (or examples) in the batch, for throughput
    lr_scale: float = 1.0           # e.g. AWD's variable BPTT: seq_len / bptt


def single_pass(forward: Callable[[], ForwardOut], cfg) -> tuple[torch.Tensor, ForwardOut]:
    """The default loss: one forward pass, the task's loss."""
    out = forward()
    return out.loss, out


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric option: lo <= v (lo < v if lo_open) and v < hi (v <= hi if
    not hi_open). NaN and infinities are never valid (hi defaults to +inf, open)."""
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = True

    def __contains__(self, v) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        return (self.lo < v if self.lo_open else self.lo <= v) and (v < self.hi if self.hi_open else v <= self.hi)

    def __str__(self) -> str:
        if self.hi == math.inf:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"


PROBABILITY = Range(0.0, 1.0)                 # drop/zoneout probabilities: [0, 1)
NON_NEGATIVE = Range(0)                       # >= 0
POSITIVE = Range(0, lo_open=True)             # > 0
AT_LEAST_1 = Range(1)                         # counts and sizes


@dataclass(frozen=True)
class MethodSpec:
    """A regularisation method: a typed bundle of hooks, registered under `name`.

    options:   the method's own hyperparameters with defaults. Names starting with `p_` or `z_`
               are probabilities in [0, 1) (PROBABILITY) unless `ranges` says otherwise.
    choices:   option -> tuple of its valid values (every string option has one).
    ranges:    option -> Range of its valid values (every int/float option has one).
               Both are checked by config.resolve, before anything runs.
    recipe:    training-recipe defaults the method's paper prescribes (optimizer, lr, ...), applied
               over the task defaults and under the protocol. Keys the task does not read (e.g.
               `bptt` on a classifier) are dropped from the run's config.
    noise:     cfg -> Noise, where the noise goes given the resolved config.
    loss:      (forward, cfg) -> (loss, first ForwardOut); default one pass.
    schedule:  (step, base Noise, cfg) -> Noise for that optimizer step; default constant.
    validate:  cfg -> None, raising UsageError for what the tables above cannot say.
    protocols: protocol name -> {selector: config overrides}, the selector being a task name, a
               task kind as "kind:<kind>" (Task.kind, e.g. "kind:lm") or "*" (any task). The
               protocol is offered on a task that one of its selectors matches; overrides apply in
               the order "*" < "kind:<kind>" < task name. Under "equal" a method may not override
               a key that the task's own "equal" protocol sets (the task fixes the budget).
    published: (protocol, task) -> {"valid": .., "test": .., "source": ..}.
    cell_options: cell type -> option values on that cell type (bench/cells), applied over the
               method's protocols and under the command line: e.g. zoneout's {"gru": {"z_c": 0.0}}
               (a GRU has no cell state); a user's own value stays and is checked like any other.
    base_option: makes this method a wrapper: the name of its option holding the method it wraps
               (its base), e.g. curriculum's `base`, fraternal's `fraternal_base`. The base's
               options, recipe, protocols and validation apply under the wrapper's, to any depth
               (curriculum over fraternal over awd); the wrapper's hooks call the base's. Each
               wrapper needs its own option name; cycles are rejected.
    """
    name: str
    paper: str
    noise: Callable[[Any], Noise]
    options: dict = field(default_factory=dict)
    choices: dict = field(default_factory=dict)
    ranges: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    loss: Callable = single_pass
    schedule: Callable | None = None
    validate: Callable | None = None
    protocols: dict = field(default_factory=dict)
    published: dict = field(default_factory=dict)
    cell_options: dict = field(default_factory=dict)
    base_option: str | None = None
    module: str = ""

    def __post_init__(self):
        if not self.module:  # the module that built the spec, for error messages
            caller = sys._getframe(2).f_globals.get("__name__", "?")
            object.__setattr__(self, "module", caller)

    def rules(self) -> dict:
        """option -> its choices (tuple) or Range, the p_/z_ probabilities included."""
        probs = {k: PROBABILITY for k in self.options if k.startswith(("p_", "z_"))}
        return {**probs, **self.ranges, **self.choices}


class Task(abc.ABC):
    """Base class of a task plugin. Subclasses set the class attributes and implement the hooks.

    The keys a task reads are the global ones (bench.config.DEFAULTS, read by the trainer for every
    task) and its `defaults`; no other key reaches its config. `choices` and `ranges` give the valid
    values of its string and numeric keys (bench.config.CHOICES / RANGES those of the global ones).
    """
    name: str = ""
    description: str = ""
    kind: str = ""                   # "lm", "translation", "classification": method protocols can
                                     # select tasks by kind ("kind:lm"), see MethodSpec.protocols
    metric: str = ""                 # leaderboard metric on test, e.g. "ppl", "bleu", "accuracy"
    higher_is_better: bool = False
    valid_metric: str = ""           # metric reported on valid
    select_on: str = "loss"          # model selection: "loss" (valid loss) or "metric" (valid_metric)
    defaults: dict = {}
    choices: dict = {}               # key -> tuple of valid values
    ranges: dict = {}                # key -> Range
    protocols: dict = {}             # protocol name -> config overrides (only keys of the task)
    cpu_protocols: tuple = ("smoke",)  # protocols cheap enough to re-run in CI
    unavailable_protocols: dict = {}   # protocol -> why this task does not define it (make list says so)

    @property
    def module(self) -> str:
        return type(self).__module__

    def data_status(self, data_dir) -> str:
        """"ok" when the task's data is present and verified in `data_dir`, else the reason; cheap
        (no training). This default verifies the files of the registered dataset `self.dataset`."""
        from bench.data import DATASETS, verify
        from bench.errors import UsageError
        dataset = getattr(self, "dataset", "")
        if dataset not in DATASETS:
            return f"not checked (task {self.name!r} names no registered dataset)"
        try:
            verify(data_dir, dataset)
        except UsageError as exc:
            return str(exc)
        return "ok"

    @abc.abstractmethod
    def load(self, data_dir, cfg):
        """Read and verify the data; return whatever the other hooks need."""

    @abc.abstractmethod
    def build_model(self, data, cfg, noise: NoiseState) -> torch.nn.Module:
        """The model, its noisy modules reading `noise`."""

    @abc.abstractmethod
    def train_batches(self, data, cfg, epoch: int, rng) -> Iterable[Batch]:
        """One epoch of training batches; `rng` is a seeded numpy Generator."""

    def init_state(self, data, cfg):
        return None

    def num_batches(self, data, cfg) -> int | None:
        """Training batches per epoch (for progress bars), None when unknown."""
        return None

    @abc.abstractmethod
    def forward(self, model, batch: Batch, state, cfg) -> ForwardOut:
        """One pass of the model on a batch from `state`."""

    def validate(self, cfg) -> None:
        """Raise a UsageError for a combination of the task's options that cannot run (config time)."""

    def penalty(self, out: ForwardOut, cfg) -> torch.Tensor | float:
        """Extra training-loss terms of the task (e.g. AR/TAR for LMs)."""
        return 0.0

    @abc.abstractmethod
    def evaluate(self, model, data, split: str, cfg) -> dict:
        """Return {"loss": ..., "<metric>": ...} on `split` ("valid" or "test"); on test also
        "examples": the per-example outcomes (a dict of equal-length columns of ints or floats),
        stored as the run's side file (bench/results.py) and read by test_from_examples."""
