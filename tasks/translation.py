"""German->English translation: an LSTM (or GRU: `cell`) encoder-decoder with Luong (global) attention.

Model. Source and target embeddings go through `embedding_dropout` (word dropout, `noise.word`);
the encoder and the decoder are each a `RecurrentStack` of cell type `cell` sharing the model's
`NoiseState`, so every method's noise applies to both. Luong et al. (2015) global attention without input feeding: score
h_t . W_a s (`attention="general"`) or h_t . s (`"dot"`), attentional vector
h~ = tanh(W_c [ctx; h_t]); the method's output dropout (`noise.out`) is applied to h~, right before
the output projection (the decoder stack's own output dropout is not used: its raw output is the
attention query). Training uses teacher forcing, the whole target in one decoder call; decoding
(greedy or beam search) runs the decoder with T=1 steps and the carried state.

Padding. Batches are right-padded. The encoder is causal, so its outputs at real positions are
exact; attention masks the padded source positions. The decoder starts from a bridge of the encoder
output *at each row's real last position* (the source ends with `</s>`): h0 of each decoder layer is
tanh(W_l s_last) (and an LSTM's c0 = 0), so padding never leaks into the decoder state. Padded target positions are
excluded: the projection and the loss see only the real target rows (`logits` are those rows, in
time-major order, aligned with the targets; cross-entropy also uses ignore_index=<pad>).

Data and BLEU.
- multi30k-de-en (mirror `multi30k`): trained on the official lowercased, Moses-normalised and
  -tokenised files (`*.lc.norm.tok.*`), word-level vocabularies from the training pairs with
  `min_freq` (default 2, rarer words -> <unk>). BLEU: the output is detokenised (Moses escapes
  undone, punctuation and clitics re-attached) and scored by sacrebleu against the *raw* cased
  references with `lowercase=True` and the 13a tokeniser (the model only produces lowercase).
- iwslt14-de-en: fairseq's standard preparation (Moses-tokenised, lowercased, joint BPE 10k with
  `@@ ` continuation marks) read from <data_dir>/iwslt14-de-en/{train,valid,test}.{de,en}; not in
  the mirror (`python -m tasks._iwslt DATA_DIR` downloads and prepares it). Vocabulary: all BPE
  units of train (min_freq 1). BLEU: BPE removed, then *tokenised* lowercased BLEU, sacrebleu with
  `tokenize="none"` against the prepared references (the convention of papers on this split).
  Checksums of prepared files are not fixed: if the folder holds a MANIFEST.sha256 (written by
  tasks/_iwslt.py, sha256sum format) every listed file is verified, otherwise nothing is verified.
The sacrebleu signature is returned by evaluate() as "bleu_signature"; the decoding settings
(beam_size, len_penalty, max_len_a, max_len_b) are config keys and so stored with every result.

Model selection on valid perplexity (no decoding on valid); BLEU on test with beam search
(`beam_size`, 1 = greedy), hypotheses of at most max_len_a * source words + max_len_b tokens, the
best finished one by log-probability / length ** len_penalty. `train_examples` / `eval_examples`
(smoke) keep that many evenly spaced training pairs / valid and test sentences (0 = all).
Evaluation is always one noise-free pass (the method's test-time rule, e.g. zoneout's expectation;
`mc_samples` is an LM key, not accepted here). LM-only keys of method recipes (bptt, var_bptt, ar,
tar, tie_weights, loss_reduction) are not read, so not in the config.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from sacrebleu.metrics import BLEU

from bench.api import AT_LEAST_1, NON_NEGATIVE, Batch, ForwardOut, Task
from bench.data import DataFile, DatasetSpec, fetch_files, read_text, register_dataset
from bench.errors import UsageError
from bench.plugins import register_task
from bench.rnn import RecurrentStack, embedding_dropout, io_dropout
from tasks._text import (BOS, EOS, PAD, Vocab, bucket_batches, init_weights, pad_batch, subset,
                         sorted_batches)

MULTI30K_RAW = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1"


def multi30k_url(name: str) -> str:
    """Raw files are stored gzipped in the repository (raw/), tokenised ones plain (tok/)."""
    return f"{MULTI30K_RAW}/tok/{name}" if ".lc.norm.tok." in name else f"{MULTI30K_RAW}/raw/{name}.gz"


MULTI30K = register_dataset(DatasetSpec(
    name="multi30k",
    url="https://github.com/multi30k/dataset/tree/master/data/task1",
    fetch=lambda spec, data_dir: fetch_files(spec, data_dir, multi30k_url),
    note="files under data/task1/raw/ and data/task1/tok/ of https://github.com/multi30k/dataset",
    files=tuple(DataFile(n, gz, sha) for n, gz, sha in (
        ("train.de", "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
         "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72"),
        ("train.en", "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
         "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6"),
        ("val.de", "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
         "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660"),
        ("val.en", "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
         "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227"),
        ("test_2016_flickr.de", "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
         "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16"),
        ("test_2016_flickr.en", "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
         "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182"),
        ("train.lc.norm.tok.de", "7e3392f03c0fe978165d22fb5eaf0d0b9b1d9c413283b5193f02d4cb27e50797",
         "cb5a23529b65ec2061f1dc446192a9c37382b63cc75f81a0be59d34894b3a505"),
        ("train.lc.norm.tok.en", "79d990dd71713faec0e3165cbd3b60acdf6fe11cab2e37a28f374c6bdbb297ec",
         "08925f8e0572bcd5a006702fc5fe20e2d77c6917d4eebd576fc20de6693c2119"),
        ("val.lc.norm.tok.de", "006ad58fd6a2ad6502094160fe5273d93abf34a207967fdc69eafd7558b5ef39",
         "97232bd273eceb7207f689527386a97e4be2616b18ada47576bdaf96c8ae1f00"),
        ("val.lc.norm.tok.en", "2c7e5e9cf54ba0dff0cc4b84836d5a583f80ecaaab90b37a123d1376306215cd",
         "46573ce391ae227f1c72f873392436a20ef18e0a6d518098cfbd70b77c8572ec"),
        ("test_2016_flickr.lc.norm.tok.de", "2628844bbb7783afa0ba8a9927f174aafeee715871aa8deed3af2c4d0b71a658",
         "c6a33d39d48f9f510de147651316cd9d918e09ad0219df734a2f16b6baccacc4"),
        ("test_2016_flickr.lc.norm.tok.en", "b95df925929cb222d0cf733f153bcbfba0f00180c85fd61dd5c4fb27f29ee394",
         "5b7f32627cf99eced828311b955dae9800bb52bc8b91cf8b6526829e605b29d2"),
    )),
))

# --- text -----------------------------------------------------------------------------------

_MOSES_ESCAPES = (("&apos;", "'"), ("&quot;", '"'), ("&lt;", "<"), ("&gt;", ">"), ("&#91;", "["),
                  ("&#93;", "]"), ("&#124;", "|"), ("&amp;", "&"))
_ATTACH_LEFT = set(".,!?;:%)]}") | {"...", "'", "n't"}
_ATTACH_RIGHT = set("([{$")


def unescape(token: str) -> str:
    for escaped, char in _MOSES_ESCAPES:
        token = token.replace(escaped, char)
    return token


def detokenize(tokens: list[str]) -> str:
    """Undo Moses tokenisation of English (escapes, punctuation, clitics such as 's, quotes)."""
    out, glue, quote_open = "", True, False
    for tok in tokens:
        w = unescape(tok)
        left = w in _ATTACH_LEFT or (w.startswith("'") and w[1:].isalpha())
        if w == '"':
            left, quote_open = quote_open, not quote_open
        out += w if (glue or left) else " " + w
        glue = w in _ATTACH_RIGHT or (w == '"' and quote_open)
    return out


def remove_bpe(tokens: list[str]) -> str:
    return " ".join(tokens).replace("@@ ", "").removesuffix("@@")


def corpus_bleu(hyps: list[str], refs: list[str], lowercase: bool, tokenize: str) -> tuple[float, str]:
    """sacrebleu corpus BLEU of detokenised hypotheses against one reference each, and its signature."""
    metric = BLEU(lowercase=lowercase, tokenize=tokenize)
    return metric.corpus_score(hyps, [refs]).score, str(metric.get_signature())


BLEU_STATS = ("sys_len", "ref_len", *(f"correct_{n}" for n in range(1, 5)), *(f"total_{n}" for n in range(1, 5)))


def sentence_bleu_stats(hyps: list[str], refs: list[str], lowercase: bool, tokenize: str) -> dict[str, list[int]]:
    """sacrebleu's sufficient statistics of each sentence (BLEU_STATS): what corpus BLEU sums, and
    what a paired bootstrap over test sentences resamples."""
    stats = BLEU(lowercase=lowercase, tokenize=tokenize)._extract_corpus_statistics(hyps, [refs])
    return {name: [int(st[j]) for st in stats] for j, name in enumerate(BLEU_STATS)}


def bleu_from_stats(columns, lowercase: bool, tokenize: str) -> float:
    """Corpus BLEU from per-sentence statistics (columns BLEU_STATS), as sacrebleu computes it."""
    totals = [int(sum(int(v) for v in columns[name])) for name in BLEU_STATS]
    return BLEU(lowercase=lowercase, tokenize=tokenize)._compute_score_from_stats(totals).score


# --- model ----------------------------------------------------------------------------------

class Seq2Seq(nn.Module):
    def __init__(self, n_src: int, n_tgt: int, cfg, noise):
        super().__init__()
        E, H, L = cfg.emb_size, cfg.hidden_size, cfg.layers
        self.noise = noise
        self.src_embed, self.tgt_embed = nn.Embedding(n_src, E), nn.Embedding(n_tgt, E)
        self.encoder = RecurrentStack(E, H, L, noise, cell=cfg.cell)
        self.decoder = RecurrentStack(E, H, L, noise, cell=cfg.cell)
        self.bridge = nn.Linear(H, L * H)
        self.attn = nn.Linear(H, H, bias=False) if cfg.attention == "general" else None
        self.combine = nn.Linear(2 * H, H, bias=False)
        self.proj = nn.Linear(H, n_tgt)
        init_weights(self, cfg.init_range)

    def _embed(self, table: nn.Embedding, ids):
        w = embedding_dropout(table.weight, self.noise.noise.word, self.noise.active(self))
        return F.embedding(ids, w)

    def encode(self, src, src_len):
        """src (S,B) -> decoder initial state and the attention memory (values, keys, pad mask)."""
        out, _, _ = self.encoder(self._embed(self.src_embed, src))
        B, L, H = src.shape[1], len(self.decoder.layers), out.shape[-1]
        last = out[src_len - 1, torch.arange(B, device=src.device)]          # real last position
        h0 = torch.tanh(self.bridge(last)).view(B, L, H)
        state = self.decoder.state_from_hidden([h0[:, l].contiguous() for l in range(L)])
        values = out.transpose(0, 1)                                           # (B,S,H)
        keys = self.attn(values) if self.attn is not None else values
        pad = torch.arange(src.shape[0], device=src.device)[None, :] >= src_len[:, None]
        return state, (values, keys, pad)

    def decode(self, tgt_in, state, memory):
        """tgt_in (T,B) -> attentional vectors h~ (T,B,H) (output-dropped) and the new state."""
        values, keys, pad = memory
        _, state, raw = self.decoder(self._embed(self.tgt_embed, tgt_in), state)
        q = raw.transpose(0, 1)                                                # (B,T,H)
        scores = torch.bmm(q, keys.transpose(1, 2)).masked_fill(pad.unsqueeze(1), float("-inf"))
        ctx = torch.bmm(scores.softmax(-1), values)
        h = torch.tanh(self.combine(torch.cat([ctx, q], -1))).transpose(0, 1)
        noise = self.noise.noise
        return io_dropout(h, noise.out, noise.io_mask, self.noise.active(self)), state

    def forward(self, src, src_len, tgt_in, keep):
        """Teacher forcing: logits of the real target positions `keep` (T,B) -> (N,V)."""
        state, memory = self.encode(src, src_len)
        h, _ = self.decode(tgt_in, state, memory)
        return self.proj(h[keep])

    def step(self, prev, state, memory):
        """One decoding step: prev (B,) -> log-probabilities (B,V), new state."""
        h, state = self.decode(prev.unsqueeze(0), state, memory)
        return F.log_softmax(self.proj(h[0]), -1), state

    @property
    def rnn_paths(self) -> str:
        return f"enc:{self.encoder.paths} dec:{self.decoder.paths}"


@torch.no_grad()
def greedy(model, src, src_len, max_lens: list[int]) -> list[list[int]]:
    state, memory = model.encode(src, src_len)
    B = src.shape[1]
    prev = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    hyps, alive = [[] for _ in range(B)], [True] * B
    for _ in range(max(max_lens)):
        logp, state = model.step(prev, state, memory)
        prev = logp.argmax(-1)
        for b, tok in enumerate(prev.tolist()):
            if alive[b]:
                if tok != EOS:
                    hyps[b].append(tok)
                alive[b] = tok != EOS and len(hyps[b]) < max_lens[b]
        if not any(alive):
            break
    return hyps


@torch.no_grad()
def beam_search(model, src, src_len, max_lens: list[int], beam: int, alpha: float) -> list[list[int]]:
    """Batched beam search. Each step keeps the best `beam` non-</s> continuations of each sentence;
    a </s> candidate ranked within the top `beam` finishes a hypothesis, scored log p / len**alpha
    (len counts </s>). A sentence stops with `beam` finished hypotheses or at its max length (its
    live beams then count as finished). beam=1 is greedy decoding."""
    K, B, dev = beam, src.shape[1], src.device
    state, memory = model.encode(src, src_len)
    rep = torch.arange(B, device=dev).repeat_interleave(K)
    state = [tuple(t[rep] for t in st) for st in state]
    memory = tuple(m[rep] for m in memory)
    scores = torch.full((B, K), float("-inf"), device=dev)
    scores[:, 0] = 0.0
    prev = torch.full((B * K,), BOS, dtype=torch.long, device=dev)
    hist = torch.zeros((B * K, 0), dtype=torch.long, device=dev)
    finished, done = [[] for _ in range(B)], [False] * B
    rank = torch.arange(2 * K, device=dev)
    for t in range(max(max_lens)):
        logp, state = model.step(prev, state, memory)
        V = logp.shape[1]
        top_s, top_i = (scores.view(-1, 1) + logp).view(B, K * V).topk(2 * K, dim=1)
        top_beam, top_tok = top_i // V, top_i % V
        is_eos = top_tok == EOS
        for b, j in (is_eos[:, :K] & torch.isfinite(top_s[:, :K])).nonzero().tolist():
            if not done[b]:
                finished[b].append((top_s[b, j].item() / (t + 1) ** alpha, hist[b * K + top_beam[b, j]].tolist()))
        keep = torch.argsort(is_eos.long() * 2 * K + rank, dim=1)[:, :K]      # best K non-</s>
        scores, beams, toks = top_s.gather(1, keep), top_beam.gather(1, keep), top_tok.gather(1, keep)
        flat = (torch.arange(B, device=dev)[:, None] * K + beams).view(-1)
        state = [tuple(t[flat] for t in st) for st in state]
        hist = torch.cat([hist[flat], toks.view(-1, 1)], 1)
        prev = toks.view(-1)
        for b in range(B):
            if done[b]:
                continue
            if len(finished[b]) < K and t + 1 >= max_lens[b]:
                finished[b] += [(scores[b, k].item() / (t + 1) ** alpha, hist[b * K + k].tolist())
                                for k in range(K) if math.isfinite(scores[b, k].item())]
            done[b] = len(finished[b]) >= K or t + 1 >= max_lens[b]
        if all(done):
            break
    return [max(f, key=lambda x: x[0])[1] for f in finished]


# --- task -----------------------------------------------------------------------------------

class Translation(Task):
    kind = "translation"
    metric = "bleu"
    higher_is_better = True
    valid_metric = "ppl"
    select_on = "loss"
    defaults = dict(
        # a Luong-style 2-layer attentional LSTM with Adam (Multi30k-sized)
        emb_size=256, hidden_size=512, layers=2, init_range=0.1, attention="general", min_freq=2,
        optimizer="adam", lr=1e-3, lr_decay=2.0, lr_decay_start=10, clip=5.0, wdecay=0.0,
        epochs=15, batch_size=64, eval_batch_size=100, train_examples=0, eval_examples=0,
        beam_size=5, len_penalty=1.0, max_len_a=1.5, max_len_b=10,
    )
    choices = dict(attention=("general", "dot"))
    ranges = dict(emb_size=AT_LEAST_1, hidden_size=AT_LEAST_1, layers=AT_LEAST_1, init_range=NON_NEGATIVE,
                  min_freq=AT_LEAST_1, train_examples=NON_NEGATIVE, eval_examples=NON_NEGATIVE,
                  beam_size=AT_LEAST_1, len_penalty=NON_NEGATIVE, max_len_a=NON_NEGATIVE, max_len_b=AT_LEAST_1)
    protocols = {
        # seconds on a CPU: a tiny model, 600 training pairs, 40 valid/test sentences, beam 2
        "smoke": dict(emb_size=16, hidden_size=16, layers=2, epochs=2, batch_size=32, eval_batch_size=40,
                      train_examples=600, eval_examples=40, beam_size=2, optimizer="adam", lr=3e-3,
                      clip=5.0, lr_decay=1.0, wdecay=0.0),
        # one budget for all eight methods: same model and init, epochs, batches, lr schedule (each keeps
        # its optimizer; awd/fraternal use Adam here, see baselines/awd.py)
        "equal": dict(emb_size=256, hidden_size=512, layers=2, epochs=15, batch_size=64,
                      eval_batch_size=100, lr_decay=2.0, lr_decay_start=10, init_range=0.1, beam_size=5),
        # `cpu`: a 2x256 attentional model, 10 epochs (lr halved after epoch 7), full data, beam 5 on
        # the full test set. Measured on a 2-core AMD EPYC, two 1-thread runs side by side: 32-39 min
        # each, i.e. 16-20 machine-minutes a run (the 20-min budget); fraternal (two passes) 63-69 min
        "cpu": dict(emb_size=256, hidden_size=256, layers=2, epochs=10, batch_size=64, eval_batch_size=100,
                    lr_decay=2.0, lr_decay_start=7, init_range=0.1, beam_size=5, train_examples=0,
                    eval_examples=0),
        # `sweep`: short points for the sensitivity study (report sections 4-5): the `cpu` model on 4,000
        # evenly spaced training pairs (14% of Multi30k), batch 32, Adam 3e-3 without decay, 8 epochs,
        # for every method; full valid (the loss is what the sweep reads), greedy decoding of the full
        # test set. Without dropout its validation loss is best after epoch 5 and then rises (24.4,
        # 24.7, 25.2, 27.2). About 3 min a point on one core; its numbers are not the `cpu` table's.
        "sweep": dict(emb_size=256, hidden_size=256, layers=2, epochs=8, batch_size=32, eval_batch_size=100,
                      optimizer="adam", lr=3e-3, lr_decay=1.0, lr_decay_start=0, clip=5.0, wdecay=0.0,
                      init_range=0.1, beam_size=1, train_examples=4000, eval_examples=0),
    }

    def __init__(self, name: str, dataset: str, files: dict, description: str, bpe: bool = False,
                 defaults: dict | None = None):
        """files: split -> (source file, target file, reference file) of `dataset`."""
        self.name, self.dataset, self.files, self.description, self.bpe = name, dataset, files, description, bpe
        self.defaults = {**type(self).defaults, **(defaults or {})}

    def read(self, data_dir: Path) -> dict:
        """split -> (source lines, target lines, reference lines), sha256-verified."""
        return {split: tuple(read_text(data_dir, self.dataset, f).splitlines() for f in names)
                for split, names in self.files.items()}

    def load(self, data_dir, cfg):
        texts = _read_cached(self, str(data_dir))
        src, tgt = (subset([l.split() for l in side], cfg.train_examples) for side in texts["train"][:2])
        sv, tv = Vocab(src, cfg.min_freq), Vocab(tgt, cfg.min_freq)
        data = dict(src_vocab=sv, tgt_vocab=tv,
                    train=([sv.encode(s) + [EOS] for s in src], [tv.encode(t) for t in tgt]))
        for split in ("valid", "test"):
            s, t, refs = (subset(side, cfg.eval_examples) for side in texts[split])
            data[split] = ([sv.encode(l.split()) + [EOS] for l in s], [tv.encode(l.split()) for l in t], refs)
        return data

    def build_model(self, data, cfg, noise):
        return Seq2Seq(len(data["src_vocab"]), len(data["tgt_vocab"]), cfg, noise)

    @staticmethod
    def make_batch(src: list, tgt: list) -> Batch:
        s, s_len = pad_batch(src)
        t_in, _ = pad_batch([[BOS] + t for t in tgt])
        t_out, _ = pad_batch([t + [EOS] for t in tgt])
        return Batch((s, s_len, t_in, t_out), n_tokens=int((t_out != PAD).sum()))

    def num_batches(self, data, cfg):
        return -(-len(data["train"][0]) // cfg.batch_size)

    def train_batches(self, data, cfg, epoch, rng):
        src, tgt = data["train"]
        for idx in bucket_batches([len(s) for s in src], cfg.batch_size, rng):
            yield self.make_batch([src[i] for i in idx], [tgt[i] for i in idx])

    def forward(self, model, batch, state, cfg):
        device = model.proj.weight.device
        src, src_len, t_in, t_out = (x.to(device) for x in batch.data)
        keep = t_out != PAD
        logits = model(src, src_len, t_in, keep)
        loss = F.cross_entropy(logits, t_out[keep], ignore_index=PAD)
        return ForwardOut(logits, loss)

    def translate(self, model, data, split, cfg) -> list[str]:
        """Detokenised hypotheses of `split`, in corpus order."""
        model.eval()
        device = model.proj.weight.device
        src = data[split][0]
        hyps = [None] * len(src)
        for idx in sorted_batches([len(s) for s in src], cfg.eval_batch_size):
            s, s_len = pad_batch([src[i] for i in idx])
            max_lens = [max(1, int(cfg.max_len_a * (n - 1) + cfg.max_len_b)) for n in s_len.tolist()]
            s, s_len = s.to(device), s_len.to(device)
            if cfg.beam_size == 1:
                out = greedy(model, s, s_len, max_lens)
            else:
                out = beam_search(model, s, s_len, max_lens, cfg.beam_size, cfg.len_penalty)
            for i, ids in zip(idx, out):
                words = data["tgt_vocab"].decode(ids)
                hyps[i] = remove_bpe(words) if self.bpe else detokenize(words)
        return hyps

    def bleu(self, hyps: list[str], refs: list[str]) -> tuple[float, str]:
        return corpus_bleu(hyps, refs, **self._bleu_args())

    def _bleu_args(self) -> dict:
        return dict(lowercase=not self.bpe, tokenize="none" if self.bpe else "13a")

    def test_from_examples(self, examples) -> float:
        """The test BLEU recomputed from the per-sentence side file."""
        return bleu_from_stats(examples, **self._bleu_args())

    @torch.no_grad()
    def evaluate(self, model, data, split, cfg):
        """Per-token cross-entropy and perplexity (teacher forcing); on test also BLEU."""
        model.eval()
        src, tgt = data[split][0], data[split][1]
        total, count = 0.0, 0
        for idx in sorted_batches([len(s) for s in src], cfg.eval_batch_size):
            batch = self.make_batch([src[i] for i in idx], [tgt[i] for i in idx])
            out = self.forward(model, batch, None, cfg)
            total += out.loss.item() * batch.n_tokens
            count += batch.n_tokens
        loss = total / count
        result = {"loss": loss, "ppl": math.exp(loss)}
        if split == "test":
            hyps, refs = self.translate(model, data, split, cfg), data[split][2]
            result["bleu"], result["bleu_signature"] = self.bleu(hyps, refs)
            result["examples"] = dict(index=list(range(len(hyps))), **sentence_bleu_stats(hyps, refs, **self._bleu_args()))
        return result


@functools.lru_cache(maxsize=4)
def _read_cached(task: Translation, data_dir: str) -> dict:
    return task.read(Path(data_dir))


# --- IWSLT'14 (prepared files, not in the mirror) -------------------------------------------

IWSLT_FILES = tuple(f"{s}.{l}" for s in ("train", "valid", "test") for l in ("de", "en"))
IWSLT_COUNTS = dict(train=160239, valid=7283, test=6750)   # fairseq's preparation


class IWSLTTranslation(Translation):
    """Reads <data_dir>/iwslt14-de-en/{train,valid,test}.{de,en} (plain or .gz) as prepared by
    tasks/_iwslt.py or fairseq's examples/translation/prepare-iwslt14.sh. The pair counts must be
    `counts` (default fairseq's, IWSLT_COUNTS; a test passes those of its miniature release)."""
    protocols = {k: v for k, v in Translation.protocols.items() if k != "cpu"}
    unavailable_protocols = {"cpu": "GPU-only: 160k training pairs, 5.5x Multi30k, would take about 2 hours "
                                    "a run on 2 cores against the 20-minute `cpu` budget"}

    def __init__(self, *args, counts: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.counts = IWSLT_COUNTS if counts is None else counts

    def locate(self, data_dir: Path) -> tuple[Path, dict]:
        """The folder and name -> path of each prepared file (None when absent)."""
        folder = Path(data_dir) / self.dataset
        return folder, {n: next((p for p in (folder / n, folder / (n + ".gz")) if p.exists()), None)
                        for n in IWSLT_FILES}

    def data_status(self, data_dir) -> str:
        """Presence of the six prepared files (their content is checked when a run reads them)."""
        folder, found = self.locate(data_dir)
        missing = [n for n, p in found.items() if p is None]
        if missing:
            return (f"missing {', '.join(missing)} in {folder}; `python -m tasks._iwslt DATA_DIR` "
                    f"prepares them (not in the mirror)")
        return "ok"

    def read(self, data_dir: Path) -> dict:
        folder, found = self.locate(data_dir)
        missing = [n for n, p in found.items() if p is None]
        if missing:
            raise UsageError(
                f"task {self.name}: missing {', '.join(missing)} in {folder.resolve()}. Put the six "
                f"prepared files {', '.join(IWSLT_FILES)} (Moses-tokenised, lowercased, BPE with '@@ ', one "
                f"sentence per line; plain or .gz) into that folder, e.g. by running "
                f"`python -m tasks._iwslt {Path(data_dir).resolve()}` (needs internet and `pip install "
                f"sacremoses subword-nmt`) or by copying the output of fairseq's prepare-iwslt14.sh "
                f"(iwslt14.tokenized.de-en/); or point --data-dir / BENCH_DATA at a directory holding "
                f"iwslt14-de-en/.")
        text = {n: (gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()).decode("utf-8")
                for n, p in found.items()}
        check_manifest(folder, text)
        out = {}
        for split in ("train", "valid", "test"):
            de, en = text[f"{split}.de"].splitlines(), text[f"{split}.en"].splitlines()
            if len(de) != len(en):
                raise UsageError(f"{folder}/{split}.de has {len(de)} lines but {split}.en has {len(en)}")
            out[split] = (de, en, [remove_bpe(l.split()) for l in en])
        counts = {split: len(v[0]) for split, v in out.items()}
        if counts != self.counts:
            raise UsageError(f"{folder} holds {counts} sentence pairs, fairseq's preparation of IWSLT'14 gives "
                             f"{self.counts}: the files are from another preparation or truncated; re-create "
                             f"them with `python -m tasks._iwslt {Path(data_dir).resolve()}`")
        return out


def check_manifest(folder: Path, text: dict[str, str]) -> None:
    """Verify the files listed in folder/MANIFEST.sha256 (sha256sum format, digests of the
    uncompressed content); no manifest, no check.

    The manifest is written by tasks/_iwslt.py from its own output, so it is no evidence that the
    preparation is right: it detects changes *after* preparation (an accidental edit, a truncated or
    partial copy, files of two preparations mixed), not a faulty preparation (whose manifest matches
    its faulty files), nor an edit made together with the manifest. What the files should be is
    checked by the pair counts (IWSLT_COUNTS, in read() and in the preparation) and by
    tests/test_iwslt.py, which runs the preparation on a miniature release."""
    manifest = folder / "MANIFEST.sha256"
    if not manifest.exists():
        return
    for line in manifest.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        name = name.lstrip("*").strip().removesuffix(".gz")
        content = text.get(name)
        if content is None or hashlib.sha256(content.encode("utf-8")).hexdigest() != digest:
            raise UsageError(f"{folder}/{name} does not match its sha256 in {manifest}: it changed after "
                             f"preparation; re-create the files (python -m tasks._iwslt) or delete the manifest")


register_task(Translation(
    "multi30k-de-en", "multi30k",
    {"train": ("train.lc.norm.tok.de", "train.lc.norm.tok.en", "train.en"),
     "valid": ("val.lc.norm.tok.de", "val.lc.norm.tok.en", "val.en"),
     "test": ("test_2016_flickr.lc.norm.tok.de", "test_2016_flickr.lc.norm.tok.en", "test_2016_flickr.en")},
    "Multi30k de->en (test2016), attentional LSTM, BLEU (lowercased, detokenised vs raw refs)"))
register_task(IWSLTTranslation(
    "iwslt14-de-en", "iwslt14-de-en", {}, "IWSLT'14 de->en (fairseq preparation, BPE 10k), tokenised BLEU",
    bpe=True, defaults=dict(min_freq=1)))
