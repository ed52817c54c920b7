"""naive: standard dropout everywhere, the recurrent input h_{t-1} included, fresh masks every step.

The baseline that Bayer et al. (2013), Zaremba et al. (2014) and Gal & Ghahramani (2016) argue
against: the noise compounds through the recurrence. Forward dropout as zaremba (element-wise on the
embedding output, between layers and on the output), plus a fresh (B,H) mask on h_{t-1} at every
step (needs the per-step cell). Off at test time.
"""
from bench.api import MethodSpec, Noise
from bench.plugins import register_method

register_method(MethodSpec(
    name="naive",
    paper="naive recurrent dropout, as criticised by Zaremba et al. (2014), arXiv:1409.2329",
    options=dict(p_emb=0.5, p_hid=0.5, p_out=0.5, p_rec=0.25),
    noise=lambda cfg: Noise(emb=cfg.p_emb, hid=cfg.p_hid, out=cfg.p_out, io_mask="element",
                            rec=cfg.p_rec, rec_mask="step"),
    # `cpu` (200-300-unit models): forward rates scaled down with width as zaremba's `cpu`
    protocols={"cpu": {"*": dict(p_emb=0.25, p_hid=0.25, p_out=0.25, p_rec=0.1)}},
))
