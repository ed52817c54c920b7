"""awd (AWD-LSTM), the whole recipe:

- DropConnect on every layer's W_hh: one inverted-dropout mask over the full (4H,H) matrix, shared by
  the batch and all time steps, resampled at each forward; the masked weight is passed to the fused
  LSTM kernel (bench/rnn.py), the raw weight stays the only Parameter and receives the gradient;
- locked dropout, one (1,B,H) mask per chunk: embedding output (p_emb, "dropouti"), between layers
  (p_hid, "dropouth"), final output (p_out, "dropout");
- embedding dropout (p_word, "dropoute"): rows of the embedding matrix, (V,1) mask;
- weight tying; AR (alpha) and TAR (beta); variable BPTT with lr rescaling (tasks/lm.py);
- NT-ASGD: SGD lr 30, switch to weight averaging when valid loss is worse than the best of all
  epochs but the last `nonmono`; evaluation on the averaged weights (bench/train.py).

On tasks that are not LMs, the LM-only parts (variable BPTT, AR/TAR) are ignored by those tasks;
DropConnect, locked and embedding dropout apply to every recurrent stack and embedding. The lr-30
NT-ASGD recipe is LM-tuned: on SST-2 it stayed at chance, on Multi30k it trailed Adam (valid ppl 64
vs 36 after one epoch), so under `equal` AWD's noise trains with Adam on every task that is not an
LM (`"*"`) and with its own optimizer on LMs (`"kind:lm"`, the more specific selector). The model
shape under `equal` is the task's (tasks/lm.py: untied, 2x650), the same for every method.
"""
from bench.api import MethodSpec, Noise
from bench.plugins import register_method

RECIPE = dict(emb_size=400, hidden_size=1150, layers=3, tie_weights=True, init_range=0.0,
              optimizer="ntasgd", lr=30.0, lr_decay=1.0, wdecay=1.2e-6, clip=0.25, nonmono=5,
              bptt=70, var_bptt=True, loss_reduction="mean", ar=2.0, tar=1.0, batch_size=20,
              eval_batch_size=10)
# under `equal`: Adam on any task but an LM, the recipe's NT-ASGD on LMs
EQUAL = {"*": dict(optimizer="adam", lr=1e-3, clip=5.0),
         "kind:lm": {k: RECIPE[k] for k in ("optimizer", "lr", "clip")}}
# `cpu` (200-300-unit models): the rates scaled down about by half like the other methods' `cpu`
# rates; on LMs the recipe's NT-ASGD, without the task's lr decay, with AWD's own initialisation
CPU_RATES = dict(p_weight=0.25, p_emb=0.2, p_hid=0.1, p_out=0.2, p_word=0.05)
CPU = {"*": dict(EQUAL["*"], **CPU_RATES),
       "kind:lm": {k: RECIPE[k] for k in ("optimizer", "lr", "clip", "lr_decay", "init_range")}}

register_method(MethodSpec(
    name="awd",
    paper="Merity, Keskar & Socher (2017), Regularizing and Optimizing LSTM Language Models, arXiv:1708.02182",
    options=dict(p_weight=0.5, p_emb=0.4, p_hid=0.25, p_out=0.4, p_word=0.1),
    recipe=RECIPE,
    noise=lambda cfg: Noise(word=cfg.p_word, emb=cfg.p_emb, hid=cfg.p_hid, out=cfg.p_out,
                            io_mask="locked", weight=cfg.p_weight),
    protocols={"paper": {"ptb": dict(epochs=500),
                         "wikitext-2": dict(epochs=750, p_emb=0.65, p_hid=0.2, batch_size=80)},
               "equal": EQUAL, "cpu": CPU},
    published={("paper", "ptb"): dict(valid=60.7, test=58.8, source="Merity et al. 2017, without fine-tuning"),
               ("paper", "wikitext-2"): dict(valid=69.1, test=66.0, source="Merity et al. 2017, without fine-tuning")},
))
