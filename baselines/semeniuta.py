"""semeniuta (recurrent dropout without memory loss): dropout on the cell update only,
c_t = f_t * c_{t-1} + i_t * d(g_t); h and c are never zeroed. `cell_mask=step` draws a fresh (B,H)
mask every step (reference p=0.25), `cell_mask=sequence` one per chunk (reference p=0.5). Combined
with ordinary forward dropout (element-wise, as zaremba). Scaling: this benchmark uses *inverted*
dropout (divide by 1-p in training, identity at test); the authors' code instead scales by 1-p at
test time. Off at test time.
"""
from bench.api import REC_MODES, MethodSpec, Noise
from bench.plugins import register_method

register_method(MethodSpec(
    name="semeniuta",
    paper="Semeniuta, Severyn & Barth (2016), Recurrent Dropout without Memory Loss, arXiv:1603.05118",
    options=dict(p_cell=0.25, cell_mask="step", p_emb=0.5, p_hid=0.5, p_out=0.5),
    choices=dict(cell_mask=REC_MODES),
    noise=lambda cfg: Noise(emb=cfg.p_emb, hid=cfg.p_hid, out=cfg.p_out, io_mask="element",
                            cell=cfg.p_cell, cell_mask=cfg.cell_mask),
    # `cpu` (200-300-unit models): forward rates scaled down with width as zaremba's `cpu`
    protocols={"cpu": {"*": dict(p_cell=0.25, cell_mask="step", p_emb=0.25, p_hid=0.25, p_out=0.25)}},
))
