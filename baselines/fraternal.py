"""fraternal dropout: the same model run twice on the same batch from the same initial state, with
independently sampled masks; loss = (CE_1 + CE_2)/2 + kappa * mean((z_1 - z_2)^2) on the pre-softmax
logits; only the first pass's state is carried. The noise is that of the base method (`base`,
default the AWD recipe with AR/TAR off and nonmono 60, the published setting). Applies to any task
whose forward returns logits (LM softmax, decoder, classifier). Test time: one pass, no noise.
On non-LM tasks the LM-only recipe keys (variable BPTT, AR/TAR) are ignored, and their `equal`
protocol uses the task's optimizer instead of lr-30 NT-ASGD (as awd).
"""
import torch.nn.functional as F

from bench.api import MethodSpec
from bench.errors import UsageError
from bench.plugins import get_method, register_method


def fraternal_loss(forward, cfg):
    out1, out2 = forward(), forward()
    consistency = F.mse_loss(out1.logits, out2.logits)      # mean((z1 - z2)^2), one fused op
    return (out1.loss + out2.loss) / 2 + cfg.kappa * consistency, out1


def _schedule(step, noise, cfg):
    base = get_method(cfg.base)
    return base.schedule(step, noise, cfg) if base.schedule else noise


def _validate(cfg):
    if not cfg.kappa >= 0:
        raise UsageError(f"option kappa={cfg.kappa} must be >= 0")
    get_method(cfg.base).check(cfg)


register_method(MethodSpec(
    name="fraternal",
    paper="Zolna et al. (2018), Fraternal Dropout, arXiv:1711.00066",
    base_option="base",
    options=dict(base="awd", kappa=0.1),
    recipe=dict(ar=0.0, tar=0.0, nonmono=60),
    noise=lambda cfg: get_method(cfg.base).noise(cfg),
    loss=fraternal_loss,
    schedule=_schedule,
    validate=_validate,
    protocols={"paper": {"ptb": dict(epochs=500),
                         "wikitext-2": dict(epochs=750, p_emb=0.65, p_hid=0.2, batch_size=80)},
               "equal": {t: dict(optimizer="adam", lr=1e-3, clip=5.0)
                         for t in ("sst2", "sst5", "multi30k-de-en", "iwslt14-de-en")}},
    published={("paper", "ptb"): dict(valid=59.8, test=58.0, source="Zolna et al. 2018, on AWD, without fine-tuning"),
               ("paper", "wikitext-2"): dict(valid=68.3, test=65.3, source="Zolna et al. 2018, on AWD, without fine-tuning")},
))
