"""Plain-Python configuration: one flat dict per run, resolved in layers.

    global defaults < task defaults < method options < method recipe
        < task protocol < method protocol (for this task) < command-line overrides

Every key a run may use exists in the first three layers; any other key is an error.
"""
from __future__ import annotations

import hashlib
import json

from bench.errors import UsageError

# Training-recipe keys shared by every task and method.
DEFAULTS = dict(
    epochs=10,
    batch_size=20,
    eval_batch_size=10,
    optimizer="sgd",        # sgd | ntasgd (SGD, then averaged SGD by the nonmono rule) | adam
    lr=1.0,
    lr_decay=1.0,           # divide lr by this every epoch after lr_decay_start
    lr_decay_start=0,
    wdecay=0.0,
    clip=5.0,               # gradient-norm clip; 0 disables
    nonmono=5,              # NT-ASGD's window (epochs)
    mc_samples=0,           # >0: evaluate by averaging probabilities over this many noisy passes
    base_seed=20141,        # mixed with task, method and SEED into the run's seed
)


class Config(dict):
    """A dict whose keys can also be read as attributes (`cfg.lr`)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def parse_value(key: str, text: str, default):
    """Coerce a command-line string to the type of the key's default."""
    try:
        if isinstance(default, bool):
            low = text.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return low in ("true", "1", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise UsageError(f"option {key}={text!r}: expected {type(default).__name__} "
                         f"(default {default!r})") from None
    return text


def parse_overrides(items) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"override {item!r} is not KEY=VALUE (e.g. lr=0.5)")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def method_layers(method, overrides: dict):
    """The method's options and recipe, with those of its base method (curriculum, fraternal)."""
    from bench.plugins import get_method
    options, recipe = {}, {}
    if method.base_option:
        base_name = overrides.get(method.base_option, method.options[method.base_option])
        if base_name == method.name:
            raise UsageError(f"option {method.base_option}={base_name!r}: a method cannot be its own base")
        try:
            base = get_method(base_name)
        except UsageError as exc:
            raise UsageError(f"option {method.base_option}: {exc}") from None
        b_opts, b_recipe = method_layers(base, overrides)
        options.update(b_opts)
        recipe.update(b_recipe)
    options.update(method.options)
    recipe.update(method.recipe)
    return options, recipe


def protocols_for(task, method) -> list[str]:
    names = set(task.protocols)
    for proto, per_task in method.protocols.items():
        if task.name in per_task or "*" in per_task:
            names.add(proto)
    return sorted(names)


def resolve(task, method, protocol: str, overrides: dict[str, str]) -> Config:
    """The full config of one run, or a UsageError naming what is wrong."""
    from bench.errors import choose
    choose("protocol", protocol, protocols_for(task, method), f"for task {task.name!r} and method {method.name!r}")
    options, recipe = method_layers(method, overrides)
    cfg = {**DEFAULTS, **task.defaults, **options, **recipe}
    cfg.update(task.protocols.get(protocol, {}))
    per_task = method.protocols.get(protocol, {})
    cfg.update(per_task.get("*", {}))
    cfg.update(per_task.get(task.name, {}))
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise UsageError(f"unknown option(s) {', '.join(unknown)} for task {task.name!r} and method "
                         f"{method.name!r}; valid options: {', '.join(sorted(cfg))}")
    for key, text in overrides.items():
        cfg[key] = parse_value(key, text, cfg[key])
    for key in ("epochs", "batch_size", "eval_batch_size", "nonmono"):
        if cfg[key] < 1:
            raise UsageError(f"option {key}={cfg[key]} must be at least 1")
    cfg = Config(sorted(cfg.items()))
    method.check(cfg)
    return cfg


def config_hash(cfg: dict) -> str:
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
