"""curriculum dropout: a schedule over any base method's rates. The keep probability of every noise
source follows theta(t) = (1 - theta_bar) * exp(-gamma * t) + theta_bar with t the optimizer step and
theta_bar = 1 - p its target, i.e. every rate is p * (1 - exp(-gamma * t)): no noise at step 0, the
base method's rates asymptotically. `base` (default zaremba, any method, a wrapper such as
fraternal included) and `gamma` are recorded with each result. Loss, test time and protocols: those
of the base method (its schedule, if any, runs first).
"""
import math

from bench.api import NON_NEGATIVE, MethodSpec
from bench.plugins import get_method, register_method


def keep_probability(step: int, p: float, gamma: float) -> float:
    theta_bar = 1.0 - p
    return (1.0 - theta_bar) * math.exp(-gamma * step) + theta_bar


def _schedule(step, noise, cfg):
    base = get_method(cfg.base)
    if base.schedule:
        noise = base.schedule(step, noise, cfg)
    return noise.scaled(1.0 - math.exp(-cfg.gamma * step))


register_method(MethodSpec(
    name="curriculum",
    paper="Morerio et al. (2017), Curriculum Dropout, arXiv:1703.06229",
    base_option="base",
    options=dict(base="zaremba", gamma=0.001),      # gamma: per optimizer step
    ranges=dict(gamma=NON_NEGATIVE),
    noise=lambda cfg: get_method(cfg.base).noise(cfg),
    loss=lambda forward, cfg: get_method(cfg.base).loss(forward, cfg),
    schedule=_schedule,
))
