"""Plain-Python configuration: one flat dict per run, resolved in layers.

    global defaults < task defaults < method options < method recipe
        < task protocol < method protocol (for this task) < method's cell options (for the run's
        cell type) < command-line overrides

A wrapper method (curriculum, fraternal) contributes its base chain, innermost first, in each of
the method layers. The keys of a run are those its task reads (DEFAULTS and the task's `defaults`)
and the options of its methods; a recipe or protocol key the task does not read is dropped, and an
override of any other key is an error. Every string key has its choices and every numeric key its
Range (here for the global keys, on the Task and the MethodSpec for theirs), all checked here, and
so is the method's noise: a mask position the run's cell type cannot apply (bench/positions.py) is
an error here, before anything runs.

`cell` (the cell type, bench/cells) came after registry rows were made: a key of COMPAT_DEFAULTS
at its default is left out of the hash and of the stored config (`stored`), so those rows keep
their config hash and run id, and `Config` reads it back with its default.
"""
from __future__ import annotations

import hashlib
import json

from bench import cells
from bench.api import AT_LEAST_1, NON_NEGATIVE, POSITIVE, PROBABILITY, Range
from bench.errors import UsageError

# Training-recipe keys shared by every task and method: bench/train.py reads them for every task.
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
    base_seed=20141,        # mixed with task, method and SEED into the run's seed
    cell="lstm",            # the recurrent cell type (bench/cells): lstm | gru
)
CHOICES = dict(optimizer=("sgd", "ntasgd", "adam"), cell=tuple(cells.list_cells()))
# keys added after rows were registered, with the value those rows ran: left out of the hash and the
# stored config when they hold it (so old rows keep their ids), read back as it when absent
COMPAT_DEFAULTS = dict(cell="lstm", softmax="full")
RANGES = dict(epochs=AT_LEAST_1, batch_size=AT_LEAST_1, eval_batch_size=AT_LEAST_1, lr=POSITIVE,
              lr_decay=POSITIVE, lr_decay_start=NON_NEGATIVE, wdecay=NON_NEGATIVE, clip=NON_NEGATIVE,
              nonmono=AT_LEAST_1, base_seed=NON_NEGATIVE)


class Config(dict):
    """A dict whose keys can also be read as attributes (`cfg.lr`); a key of COMPAT_DEFAULTS that a
    stored config (an older row's) lacks reads as its default."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            if key in COMPAT_DEFAULTS:
                return COMPAT_DEFAULTS[key]
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


def method_chain(method, overrides: dict) -> list:
    """The method and the bases it wraps, innermost first: curriculum over fraternal over awd is
    [awd, fraternal, curriculum]. Each wrapper names its base by its own option (`base_option`),
    from the overrides or the option's default."""
    from bench.plugins import get_method
    chain, options_seen = [method], {}
    while chain[-1].base_option:
        wrapper = chain[-1]
        opt = wrapper.base_option
        if opt in options_seen:
            raise UsageError(f"methods {options_seen[opt]!r} and {wrapper.name!r} both name their base "
                             f"with option {opt!r}, so they cannot be composed")
        options_seen[opt] = wrapper.name
        base_name = overrides.get(opt, wrapper.options[opt])
        if base_name in (m.name for m in chain):
            path = " -> ".join([m.name for m in chain] + [base_name])
            raise UsageError(f"option {opt}={base_name!r}: a method cannot be its own base ({path})")
        try:
            chain.append(get_method(base_name))
        except UsageError as exc:
            raise UsageError(f"option {opt}: {exc}") from None
    return chain[::-1]


def selectors(task) -> tuple[str, ...]:
    """The keys of a method protocol that apply to `task`, in the order they are applied."""
    return ("*", f"kind:{task.kind}", task.name)


# Equal-compute protocols: the task fixes the budget (model shape, epochs, batches, data); a method's
# protocol entry may tune its own recipe there but not a key of the task's COMPUTE_KEYS, and offers
# the protocol only on tasks that define it.
EQUAL_COMPUTE = ("equal", "cpu", "sweep")
COMPUTE_KEYS = ("emb_size", "hidden_size", "layers", "tie_weights", "epochs", "batch_size", "bptt",
                "train_tokens", "eval_tokens", "train_examples", "eval_examples", "train_phrases",
                "beam_size", "min_freq", "softmax")


# A `sweep` is a sensitivity study around the `cpu` recipe at a smaller scale: the task's protocol fixes
# the whole training recipe (model, data slice, optimizer, schedule) for every method, and each method
# brings only its own options (dropout rates, kappa, gamma, mask modes) from its `cpu` entry; its
# optimizer recipe (e.g. AWD's NT-ASGD) is not part of what a sweep measures.
RATES_FROM = {"sweep": "cpu"}


def method_layer(m, protocol: str, sel: str) -> dict:
    """What method `m` sets under `protocol` for selector `sel`."""
    if protocol in m.protocols or protocol not in RATES_FROM:
        return m.protocols.get(protocol, {}).get(sel, {})
    layer = m.protocols.get(RATES_FROM[protocol], {}).get(sel, {})
    return {k: v for k, v in layer.items() if k in m.options}


def protocols_for(task, method, overrides: dict | None = None) -> list[str]:
    """The task's protocols and those its method chain offers for it."""
    names = set(task.protocols)
    for m in method_chain(method, overrides or {}):
        for proto, per_task in m.protocols.items():
            if proto not in EQUAL_COMPUTE and any(sel in per_task for sel in selectors(task)):
                names.add(proto)
    return sorted(names)


def task_keys(task) -> dict:
    """Every key the task reads, with its default."""
    return {**DEFAULTS, **task.defaults}


def rules(task, chain) -> dict:
    """key -> choices (tuple) or Range, for the task's keys and the options of a method chain."""
    out = {**RANGES, **CHOICES, "cell": tuple(cells.list_cells()), **task.ranges, **task.choices}
    for m in chain:
        out.update(m.rules())
    return out


def check_value(key: str, value, rule) -> None:
    """UsageError when `value` breaks `rule`, naming the key, the value and what is valid."""
    if isinstance(rule, Range):
        if value not in rule:
            if rule == PROBABILITY:
                raise UsageError(f"option {key}={value!r} is not a probability in [0, 1); set e.g. {key}=0.5")
            raise UsageError(f"option {key}={value!r} must be {rule}")
    elif value not in rule:
        raise UsageError(f"option {key}={value!r} is not one of: {', '.join(map(str, rule))}")


def _readers(key: str) -> str:
    """Which registered tasks and methods read `key`, for error messages."""
    from bench import plugins
    tasks = [t for t in plugins.list_tasks() if key in task_keys(plugins.get_task(t))]
    methods = [m for m in plugins.list_methods() if key in plugins.get_method(m).options]
    parts = ([f"task(s) {', '.join(tasks)}"] if tasks else []) + ([f"method(s) {', '.join(methods)}"] if methods else [])
    return " and ".join(parts)


def resolve(task, method, protocol: str, overrides: dict[str, str]) -> Config:
    """The full config of one run, or a UsageError naming what is wrong."""
    from bench.errors import choose
    chain = method_chain(method, overrides)
    why = getattr(task, "unavailable_protocols", {}).get(protocol)
    if why:
        raise UsageError(f"protocol {protocol!r} is not defined for task {task.name!r}: {why}")
    choose("protocol", protocol, protocols_for(task, method, overrides),
           f"for task {task.name!r} and method {method.name!r}")
    keys = task_keys(task)
    cfg = dict(keys)
    for m in chain:
        cfg.update(m.options)
    for m in chain:
        cfg.update(m.recipe)
    fixed = task.protocols.get(protocol, {})
    cfg.update(fixed)
    for m in chain:
        for sel in selectors(task):
            layer = method_layer(m, protocol, sel)
            clash = sorted(set(layer) & set(fixed) & set(COMPUTE_KEYS)) if protocol in EQUAL_COMPUTE else []
            if clash:
                raise UsageError(f"method {m.name!r} sets {', '.join(clash)} under {protocol!r} for {sel!r}, "
                                 f"but task {task.name!r}'s {protocol!r} protocol fixes them for every method")
            cfg.update(layer)
    cell = overrides.get("cell", cfg.get("cell"))
    for m in chain:                                               # e.g. zoneout's z_c=0 on a GRU
        cfg.update(m.cell_options.get(cell, {}))
    allowed = set(keys).union(*(m.options for m in chain))
    cfg = {k: v for k, v in cfg.items() if k in allowed}          # e.g. awd's bptt on a classifier
    unknown = sorted(set(overrides) - allowed)
    used_elsewhere = [k for k in unknown if _readers(k)]
    if used_elsewhere:
        k = used_elsewhere[0]
        raise UsageError(f"task {task.name!r} with method {method.name!r} does not use option {k} (read by "
                         f"{_readers(k)}); remove it. Valid options here: {', '.join(sorted(cfg))}")
    if unknown:
        raise UsageError(f"unknown option(s) {', '.join(unknown)} for task {task.name!r} and method "
                         f"{method.name!r}; valid options: {', '.join(sorted(cfg))}")
    for key, text in overrides.items():
        cfg[key] = parse_value(key, text, cfg[key])
    for key, rule in rules(task, chain).items():
        if key in cfg:
            check_value(key, cfg[key], rule)
    cfg = Config(sorted(cfg.items()))
    task.validate(cfg)
    for m in chain:
        if m.validate:
            m.validate(cfg)
    check_positions(task, chain, cfg)
    return cfg


def check_positions(task, chain, cfg: Config) -> None:
    """A UsageError when the method's noise names a mask position that the run's cell type cannot
    apply (bench/positions.py), naming the options that turn it on. A noise hook that raises (a
    plugin's bug) is left to fail at training time, where the run reports it."""
    from bench import positions
    method = chain[-1]
    try:
        noise = method.noise(cfg)
    except UsageError:
        raise
    except Exception:       # a broken noise hook fails where the run builds its noise, as it always has
        return
    try:
        positions.check(noise, cfg.cell)
    except positions.PositionError as exc:
        culprits = [k for m in chain for k in m.rules() if k.startswith(("p_", "z_")) and cfg.get(k)
                    and _turns_off(method, cfg, k)]
        ok = sorted(c for c in cells.list_cells() if exc.position.applies_to(c))
        how = (f"set {' and '.join(f'{k}=0' for k in culprits)}, or " if culprits else "") + \
            (f"use cell={'|'.join(ok)}" if ok else "use another method")
        raise UsageError(f"method {method.name!r} on task {task.name!r} with cell={cfg.cell}: {exc}; {how}") from None


def _turns_off(method, cfg: Config, key: str) -> bool:
    """Whether setting option `key` to 0 makes the method's noise valid on the run's cell type."""
    from bench import positions
    try:
        positions.check(method.noise(Config(cfg, **{key: 0.0})), cfg.cell)
    except (UsageError, ValueError):
        return False
    return True


def stored(cfg: dict) -> dict:
    """The config as hashed and stored in a registry row: keys of COMPAT_DEFAULTS at their default
    left out, so rows made before the key existed keep their hash."""
    return {k: v for k, v in cfg.items() if not (k in COMPAT_DEFAULTS and v == COMPAT_DEFAULTS[k])}


def config_hash(cfg: dict) -> str:
    blob = json.dumps(stored(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
