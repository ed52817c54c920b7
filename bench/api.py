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
GATE_MODES = ("tied", "untied")         # gal: one mask for the four gates, or one per gate


@dataclass(frozen=True)
class Noise:
    """Where a method puts noise in the shared recurrent model. All probabilities are drop
    probabilities in [0, 1) and use inverted scaling, except zoneout (no rescaling)."""
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
    weight: float = 0.0        # DropConnect on W_hh: one (4H,H) mask per forward

    RATES = ("word", "emb", "hid", "out", "rec", "cell", "zone_h", "zone_c", "weight")

    def __post_init__(self):
        for name in self.RATES:
            v = getattr(self, name)
            if not (0.0 <= v < 1.0):
                raise ValueError(f"noise rate {name}={v} must be in [0, 1)")
        for name, allowed in (("io_mask", MASK_MODES), ("rec_mask", REC_MODES),
                              ("gates", GATE_MODES), ("cell_mask", REC_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} must be one of {allowed}")

    def scaled(self, factor: float) -> "Noise":
        """Every rate multiplied by `factor` (curriculum's ramp)."""
        return dataclasses.replace(self, **{n: getattr(self, n) * factor for n in self.RATES})

    @property
    def per_step(self) -> bool:
        """True when the recurrence itself is perturbed, so a per-step cell is needed in training."""
        return self.rec > 0 or self.cell > 0 or self.zone_h > 0 or self.zone_c > 0 or (
            self.gates == "untied" and (self.emb > 0 or self.hid > 0))


class NoiseState:
    """One mutable holder shared by all noisy modules of a model: the trainer swaps `noise` (e.g.
    curriculum's schedule), evaluation sets `mc=True` to keep noise on for MC dropout."""

    def __init__(self, noise: Noise):
        self.noise = noise
        self.mc = False

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


def check_probabilities(cfg, keys: Iterable[str]) -> None:
    """Reject a drop/zoneout probability outside [0, 1), naming the option."""
    from bench.errors import UsageError
    for k in keys:
        v = cfg[k]
        if not isinstance(v, (int, float)) or math.isnan(v) or not (0.0 <= v < 1.0):
            raise UsageError(f"option {k}={v!r} is not a probability in [0, 1); set e.g. {k}=0.5")


@dataclass(frozen=True)
class MethodSpec:
    """A regularisation method: a typed bundle of hooks, registered under `name`.

    options:   the method's own hyperparameters with defaults. Names starting with `p_` or `z_`
               are probabilities and are checked to lie in [0, 1) before training.
    recipe:    training-recipe defaults the method's paper prescribes (optimizer, lr, ...), applied
               over the task defaults and under the protocol.
    noise:     cfg -> Noise, where the noise goes given the resolved config.
    loss:      (forward, cfg) -> (loss, first ForwardOut); default one pass.
    schedule:  (step, base Noise, cfg) -> Noise for that optimizer step; default constant.
    protocols: protocol name -> {task name or "*": config overrides}.
    published: (protocol, task) -> {"valid": .., "test": .., "source": ..}.
    base_option: name of an option holding another method whose options this one inherits.
    """
    name: str
    paper: str
    noise: Callable[[Any], Noise]
    options: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    loss: Callable = single_pass
    schedule: Callable | None = None
    validate: Callable | None = None
    protocols: dict = field(default_factory=dict)
    published: dict = field(default_factory=dict)
    base_option: str | None = None
    module: str = ""

    def __post_init__(self):
        if not self.module:  # the module that built the spec, for error messages
            caller = sys._getframe(2).f_globals.get("__name__", "?")
            object.__setattr__(self, "module", caller)

    def check(self, cfg) -> None:
        check_probabilities(cfg, [k for k in cfg if k.startswith(("p_", "z_"))])
        if self.validate:
            self.validate(cfg)


class Task(abc.ABC):
    """Base class of a task plugin. Subclasses set the class attributes and implement the hooks."""
    name: str = ""
    description: str = ""
    metric: str = ""                 # leaderboard metric on test, e.g. "ppl", "bleu", "accuracy"
    higher_is_better: bool = False
    valid_metric: str = ""           # metric reported on valid
    select_on: str = "loss"          # model selection: "loss" (valid loss) or "metric" (valid_metric)
    defaults: dict = {}
    protocols: dict = {}             # protocol name -> config overrides
    cpu_protocols: tuple = ("smoke",)  # protocols cheap enough to re-run in CI

    @property
    def module(self) -> str:
        return type(self).__module__

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

    @abc.abstractmethod
    def forward(self, model, batch: Batch, state, cfg) -> ForwardOut:
        """One pass of the model on a batch from `state`."""

    def penalty(self, out: ForwardOut, cfg) -> torch.Tensor | float:
        """Extra training-loss terms of the task (e.g. AR/TAR for LMs)."""
        return 0.0

    @abc.abstractmethod
    def evaluate(self, model, data, split: str, cfg) -> dict:
        """Return {"loss": ..., "<metric>": ...} on `split` ("valid" or "test")."""
