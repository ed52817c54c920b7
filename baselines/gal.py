"""gal (variational dropout): one mask per chunk and batch row, reused at every time step, on the
inputs of every layer, on h_{t-1} and on the outputs, plus word dropout tied per word type (a (V,1)
mask on the embedding matrix). `gates=tied` shares one mask across the four gates (one fused
matmul); `gates=untied` samples one mask per gate for both x_t and h_{t-1}. Test time: standard
(no noise, `mc_samples=0`) or MC dropout averaging the probabilities of `mc_samples` noisy passes
(an LM key, tasks/lm.py: its `paper-*-mc` protocols exist on PTB only).
"""
from bench.api import GATE_MODES, MethodSpec, Noise
from bench.plugins import register_method

LARGE = dict(emb_size=1500, hidden_size=1500, p_word=0.3, p_in=0.5, p_rec=0.3, p_out=0.5, wdecay=1e-7,
             lr_decay=1.15, lr_decay_start=10, epochs=55, clip=10.0, init_range=0.04)

# `cpu` (200-300-unit models): the medium-model rates scaled down about by half, as the papers scale
# dropout with width (Zaremba: 0.5 medium, 0.65 large; Gal: 0.35/0.2 medium, 0.5/0.3 large)
CPU = dict(p_word=0.1, p_in=0.2, p_rec=0.1, p_out=0.2)

register_method(MethodSpec(
    name="gal",
    paper="Gal & Ghahramani (2016), A Theoretically Grounded Application of Dropout in RNNs, arXiv:1512.05287",
    # medium-model probabilities of the paper: 0.2 on embeddings and recurrence, 0.35 on inputs/outputs
    options=dict(p_word=0.2, p_in=0.35, p_rec=0.2, p_out=0.35, gates="tied"),
    choices=dict(gates=GATE_MODES),
    recipe=dict(wdecay=1e-7),
    noise=lambda cfg: Noise(word=cfg.p_word, emb=cfg.p_in, hid=cfg.p_in, out=cfg.p_out, io_mask="locked",
                            rec=cfg.p_rec, rec_mask="sequence", gates=cfg.gates),
    protocols={"paper": {"ptb": {}}, "paper-large": {"ptb": LARGE}, "cpu": {"*": CPU},
               "paper-mc": {"ptb": dict(gates="untied", mc_samples=1000)},
               "paper-large-mc": {"ptb": dict(LARGE, gates="untied", mc_samples=1000)}},
    published={("paper", "ptb"): dict(test=79.7, source="Gal & Ghahramani 2016, medium, standard"),
               ("paper-mc", "ptb"): dict(test=78.6, source="Gal & Ghahramani 2016, medium, MC, untied"),
               ("paper-large", "ptb"): dict(test=75.2, source="Gal & Ghahramani 2016, large, standard"),
               ("paper-large-mc", "ptb"): dict(test=73.4, source="Gal & Ghahramani 2016, large, MC, untied")},
))
