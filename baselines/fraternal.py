"""fraternal dropout: the same model run twice on the same batch from the same initial state, with
independently sampled masks; loss = (CE_1 + CE_2)/2 + kappa * mean((z_1 - z_2)^2) on the pre-softmax
logits; only the first pass's state is carried. The noise is that of the base method
(`fraternal_base`, default the AWD recipe with AR/TAR off and nonmono 60, the published setting);
each pass is the base's loss (one forward for a plain method), its schedule is the base's, and so
are its protocols (e.g. awd's `equal`: Adam on non-LM tasks). Applies to any task whose forward
returns logits (LM softmax, decoder, classifier). Test time: one pass, no noise.
"""
import torch.nn.functional as F

from bench.api import NON_NEGATIVE, MethodSpec, single_pass
from bench.plugins import get_method, register_method


def fraternal_loss(forward, cfg, one_pass=single_pass):
    """Two passes (each `one_pass`, the base method's loss), their mean plus kappa times the
    consistency of their logits; the first pass's output."""
    (loss1, out1), (loss2, out2) = one_pass(forward, cfg), one_pass(forward, cfg)
    consistency = F.mse_loss(out1.logits, out2.logits)      # mean((z1 - z2)^2), one fused op
    return (loss1 + loss2) / 2 + cfg.kappa * consistency, out1


def _schedule(step, noise, cfg):
    base = get_method(cfg.fraternal_base)
    return base.schedule(step, noise, cfg) if base.schedule else noise


register_method(MethodSpec(
    name="fraternal",
    paper="Zolna et al. (2018), Fraternal Dropout, arXiv:1711.00066",
    base_option="fraternal_base",
    options=dict(fraternal_base="awd", kappa=0.1),
    ranges=dict(kappa=NON_NEGATIVE),
    recipe=dict(ar=0.0, tar=0.0, nonmono=60),
    noise=lambda cfg: get_method(cfg.fraternal_base).noise(cfg),
    loss=lambda forward, cfg: fraternal_loss(forward, cfg, get_method(cfg.fraternal_base).loss),
    schedule=_schedule,
    protocols={"paper": {"ptb": dict(epochs=500),
                         "wikitext-2": dict(epochs=750, p_emb=0.65, p_hid=0.2, batch_size=80)}},
    published={("paper", "ptb"): dict(valid=59.8, test=58.0, source="Zolna et al. 2018, on AWD, without fine-tuning"),
               ("paper", "wikitext-2"): dict(valid=68.3, test=65.3, source="Zolna et al. 2018, on AWD, without fine-tuning")},
))
