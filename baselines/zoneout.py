"""zoneout: each unit of h and of c keeps its previous value with probability z_h / z_c (fresh
(B,H) masks every step, no rescaling): h_t = m*h_{t-1} + (1-m)*h_new. At test time the expectation
h_t = z*h_{t-1} + (1-z)*h_new (same for c). The zoned-out h is what both the next step and the next
layer see. z is the probability of *keeping* the old value (the reference code's flags are update
probabilities 1-z). Reference word-level recipe: z_c=0.5, z_h=0.05; forward dropout optional.
On a GRU (`cell=gru`) zoneout applies to h only: there is no cell state, so z_c resolves to 0
there (over any protocol's value), and a z_c > 0 set on the command line is an error.
"""
from bench.api import MASK_MODES, MethodSpec, Noise
from bench.plugins import register_method

register_method(MethodSpec(
    name="zoneout",
    paper="Krueger et al. (2017), Zoneout: Regularizing RNNs by Randomly Preserving Hidden Activations, arXiv:1606.01305",
    options=dict(z_h=0.05, z_c=0.5, p_emb=0.0, p_hid=0.0, p_out=0.0, io_mask="element"),
    choices=dict(io_mask=MASK_MODES),
    noise=lambda cfg: Noise(emb=cfg.p_emb, hid=cfg.p_hid, out=cfg.p_out, io_mask=cfg.io_mask,
                            zone_h=cfg.z_h, zone_c=cfg.z_c),
    # "zoneout + variational, medium" as quoted by later papers: zoneout on top of locked dropout
    protocols={"paper": {"ptb": dict(p_emb=0.35, p_hid=0.35, p_out=0.35, io_mask="locked")},
               # `cpu`: the reference word-level rates, which the paper uses at every model size
               "cpu": {"*": dict(z_c=0.5, z_h=0.05)}},
    cell_options={"gru": dict(z_c=0.0)},
    published={("paper", "ptb"): dict(test=80.6, source="zoneout + variational, medium (as quoted by later papers)")},
))
