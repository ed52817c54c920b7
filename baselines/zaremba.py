"""zaremba: dropout on the non-recurrent connections only (embedding output, between layers, last
output), ordinary element-wise masks on the (T,B,H) tensors; the recurrence is never dropped, so the
fused LSTM kernel runs. Off at test time. Its `paper` protocols are the PTB medium and large recipes
(loss summed over time, see tasks/lm.py).
"""
from bench.api import MethodSpec, Noise
from bench.plugins import register_method

LARGE = dict(emb_size=1500, hidden_size=1500, p_emb=0.65, p_hid=0.65, p_out=0.65, init_range=0.04,
             lr_decay=1.15, lr_decay_start=14, epochs=55, clip=10.0)

# `cpu` (200-300-unit models): the medium-model rates scaled down about by half, as the papers scale
# dropout with width (Zaremba: 0.5 medium, 0.65 large; Gal: 0.35/0.2 medium, 0.5/0.3 large)
CPU = dict(p_emb=0.25, p_hid=0.25, p_out=0.25)

register_method(MethodSpec(
    name="zaremba",
    paper="Zaremba, Sutskever & Vinyals (2014), Recurrent Neural Network Regularization, arXiv:1409.2329",
    options=dict(p_emb=0.5, p_hid=0.5, p_out=0.5),
    noise=lambda cfg: Noise(emb=cfg.p_emb, hid=cfg.p_hid, out=cfg.p_out, io_mask="element"),
    protocols={"paper": {"ptb": {}}, "paper-large": {"ptb": LARGE}, "cpu": {"*": CPU}},
    published={("paper", "ptb"): dict(valid=86.2, test=82.7, source="Zaremba et al. 2014, medium"),
               ("paper-large", "ptb"): dict(valid=82.2, test=78.4, source="Zaremba et al. 2014, large")},
))
