"""none: no noise anywhere, the task's default recipe otherwise. Every equal-compute table includes it,
so that each method's gain over no regularisation shows, and so that the protocol's scale can be
checked to be one where regularisation matters (without noise the model overfits: its validation
curve turns upward before training ends). Nothing to switch off at test time.
"""
from bench.api import MethodSpec, Noise
from bench.plugins import register_method

register_method(MethodSpec(
    name="none",
    paper="no regularisation: the reference point of every table",
    noise=lambda cfg: Noise(),
))
