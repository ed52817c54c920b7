"""curriculum dropout: a schedule over any base method's rates. The keep probability of every noise
source follows theta(t) = (1 - theta_bar) * exp(-gamma * t) + theta_bar with t the optimizer step and
theta_bar = 1 - p its target, i.e. every rate is p * (1 - exp(-gamma * t)): no noise at step 0, the
base method's rates asymptotically. `base` (default zaremba) and `gamma` are recorded with each result.
Test time: as the base method.
"""
import math

from bench.api import MethodSpec
from bench.errors import UsageError
from bench.plugins import get_method, register_method


def keep_probability(step: int, p: float, gamma: float) -> float:
    theta_bar = 1.0 - p
    return (1.0 - theta_bar) * math.exp(-gamma * step) + theta_bar


def _schedule(step, noise, cfg):
    base = get_method(cfg.base)
    if base.schedule:
        noise = base.schedule(step, noise, cfg)
    return noise.scaled(1.0 - math.exp(-cfg.gamma * step))


def _validate(cfg):
    if not cfg.gamma >= 0:
        raise UsageError(f"option gamma={cfg.gamma} must be >= 0 (per optimizer step)")
    get_method(cfg.base).check(cfg)


register_method(MethodSpec(
    name="curriculum",
    paper="Morerio et al. (2017), Curriculum Dropout, arXiv:1703.06229",
    base_option="base",
    options=dict(base="zaremba", gamma=0.001),
    noise=lambda cfg: get_method(cfg.base).noise(cfg),
    loss=lambda forward, cfg: get_method(cfg.base).loss(forward, cfg),
    schedule=_schedule,
    validate=_validate,
))
