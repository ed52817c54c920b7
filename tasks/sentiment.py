"""Sentence sentiment on the Stanford Sentiment Treebank (PTB-format trees of the mirror's `sst`).

Data. Each line is a binarised tree, every node labelled 0-4; the sentence is the tree's leaves, its
label the root's. `sst5`: the five fine-grained classes (8,544 / 1,101 / 2,210 sentences). `sst2`:
neutral (2) dropped, 0/1 -> 0 (negative), 3/4 -> 1 (positive) (6,920 / 872 / 1,821). With
`train_phrases=True` training uses every labelled node of the training trees (each distinct phrase
once, with its label; SST-2 again without neutral ones), as is common in the literature; valid and
test are always whole sentences. Words are lowercased (`lowercase`), the vocabulary is the training
words seen at least `min_freq` times (others -> <unk>), no pretrained embeddings.

Model. Embedding (word dropout through `embedding_dropout`) -> `RecurrentStack` of cell type `cell`
(LSTM or GRU; every method's noise)
-> the stack's (output-dropped) output at each sentence's real last token (`pool="last"`; right
padding comes after it, so it never leaks in) or a masked mean / max over the real tokens
(`pool="mean"|"max"`) -> linear layer -> class logits (B, classes).

`train_examples` / `eval_examples` (smoke) keep that many evenly spaced trees of train / of valid
and test (0 = all; not a prefix: the files are sorted by label).

Metric: accuracy in percent on test; model selection on valid accuracy; evaluation is one
noise-free pass (`mc_samples` is an LM key, not accepted here). LM-only keys of method recipes
(bptt, var_bptt, ar, tar, tie_weights, loss_reduction) are not read, so not in the config.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.api import AT_LEAST_1, NON_NEGATIVE, Batch, ForwardOut, Task
from bench.data import DataFile, DatasetSpec, fetch_archive, read_text, register_dataset
from bench.errors import UsageError
from bench.plugins import register_task
from bench.rnn import RecurrentStack, embedding_dropout
from tasks._text import Vocab, bucket_batches, init_weights, pad_batch, subset, sorted_batches

SST = register_dataset(DatasetSpec(
    name="sst",
    url="https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip",
    files=(
        DataFile("train.txt", "479b7122325a64e3783c9382eafebcac3308862dbc2b77cae4ff7acfd751defc",
                 "e2f3f41b0b1e6d4dddc0effe3bfc2d27ed8928079aa9a03d652311614fc5feb7"),
        DataFile("dev.txt", "83088b1d776a127c06c14bce4acddfe2e6d318f538e2abbb5c9e772f96a8601b",
                 "0e9336aed6e4730e19f58d00a77b3f0297efdb755f7b5e598c98a05e3f97ea40"),
        DataFile("test.txt", "65b9da00aa0e8107f3e3bf2f620e773457102b1828950ccb12931c103c01afdb",
                 "6e54806dee95cf80cd918e7dfb3f6770f6df24bf826f289a4d1f709e1c8f6761"),
    ),
    fetch=fetch_archive,
))

_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def parse_tree(line: str) -> list[tuple[int, list[str]]]:
    """Every labelled node of one PTB-format tree, root first (pre-order): (label, leaf words).
    A leaf is `(label text)`; its text is one word even when it holds a space (SST has "8 1\\/2")."""
    toks = _TOKEN.findall(line)
    words, nodes, open_nodes = [], [], []
    i = 0
    while i < len(toks):
        if toks[i] == "(":
            if i + 1 >= len(toks) or not toks[i + 1].isdigit() or not 0 <= int(toks[i + 1]) <= 4:
                raise ValueError(f"expected a label 0-4 after '(' in tree: {line[:80]!r}")
            open_nodes.append((int(toks[i + 1]), len(nodes), len(words)))
            nodes.append(None)
            i += 2
            leaf = []
            while i < len(toks) and toks[i] not in "()":
                leaf.append(toks[i])
                i += 1
            if leaf:
                words.append(" ".join(leaf))
        elif toks[i] == ")":
            if not open_nodes:
                raise ValueError(f"unbalanced ')' in tree: {line[:80]!r}")
            label, slot, start = open_nodes.pop()
            nodes[slot] = (label, words[start:])
            i += 1
        else:
            raise ValueError(f"text outside a leaf in tree: {line[:80]!r}")
    if open_nodes or not nodes or any(not ws for _, ws in nodes):
        raise ValueError(f"malformed tree: {line[:80]!r}")
    return nodes


def binary_label(label: int) -> int | None:
    """SST-2: 0/1 -> 0, 3/4 -> 1, neutral -> None (dropped)."""
    return None if label == 2 else int(label > 2)


@functools.lru_cache(maxsize=4)
def _read_trees(data_dir: str, dataset: str, files: tuple) -> dict:
    """split -> list of trees (each a list of nodes, root first)."""
    out = {}
    for split, name in zip(("train", "valid", "test"), files):
        try:
            out[split] = [parse_tree(l) for l in read_text(Path(data_dir), dataset, name).splitlines() if l.strip()]
        except ValueError as exc:
            raise UsageError(f"{dataset}/{name}: {exc}") from None
    return out


class Classifier(nn.Module):
    def __init__(self, vocab: int, classes: int, cfg, noise):
        super().__init__()
        self.noise, self.pool = noise, cfg.pool
        self.embed = nn.Embedding(vocab, cfg.emb_size)
        self.rnn = RecurrentStack(cfg.emb_size, cfg.hidden_size, cfg.layers, noise, cell=cfg.cell)
        self.out = nn.Linear(cfg.hidden_size, classes)
        init_weights(self, cfg.init_range)

    def forward(self, x, lengths):
        """x (T,B) right-padded, lengths (B,) -> logits (B, classes)."""
        w = embedding_dropout(self.embed.weight, self.noise.noise.word, self.noise.active(self))
        out, _, _ = self.rnn(F.embedding(x, w))
        if self.pool == "last":
            feats = out[lengths - 1, torch.arange(x.shape[1], device=x.device)]
        else:
            real = (torch.arange(x.shape[0], device=x.device)[:, None] < lengths[None, :]).unsqueeze(-1)
            if self.pool == "mean":
                feats = (out * real).sum(0) / lengths[:, None]
            else:
                feats = out.masked_fill(~real, float("-inf")).amax(0)
        return self.out(feats)

    @property
    def rnn_paths(self) -> str:
        return self.rnn.paths


class Sentiment(Task):
    kind = "classification"
    metric = "accuracy"
    valid_metric = "accuracy"
    higher_is_better = True
    select_on = "metric"
    defaults = dict(
        emb_size=300, hidden_size=300, layers=2, init_range=0.1, pool="last", lowercase=True,
        min_freq=1, train_phrases=False, optimizer="adam", lr=1e-3, lr_decay=1.0, clip=5.0, wdecay=0.0,
        epochs=10, batch_size=32, eval_batch_size=256, train_examples=0, eval_examples=0,
    )
    choices = dict(pool=("last", "mean", "max"))
    ranges = dict(emb_size=AT_LEAST_1, hidden_size=AT_LEAST_1, layers=AT_LEAST_1, init_range=NON_NEGATIVE,
                  min_freq=AT_LEAST_1, train_examples=NON_NEGATIVE, eval_examples=NON_NEGATIVE)
    protocols = {
        # seconds on a CPU: a tiny model on 2000 training and 200 valid/test sentences
        "smoke": dict(emb_size=16, hidden_size=16, layers=2, epochs=3, batch_size=32, eval_batch_size=200,
                      train_examples=2000, eval_examples=200, optimizer="adam", lr=3e-3, clip=5.0,
                      lr_decay=1.0, wdecay=0.0, train_phrases=False),
        # one budget for all eight methods: same model and init, epochs, batches, lr schedule (each keeps
        # its optimizer; awd/fraternal use Adam here, see baselines/awd.py)
        "equal": dict(emb_size=300, hidden_size=300, layers=2, epochs=10, batch_size=32, eval_batch_size=256,
                      lr_decay=1.0, init_range=0.1),
    }
    # `cpu`: the `equal` budget already fits a 2-core machine (about 5 min a run); full data.
    protocols["cpu"] = dict(protocols["equal"], train_examples=0, eval_examples=0, train_phrases=False)
    # `sweep`: short points for the sensitivity study (report sections 4-5): the `cpu` model on 2,500
    # evenly spaced training sentences (36% of SST-2), 6 epochs, Adam 1e-3 for every method, full
    # valid/test. Without dropout it fits the slice (train loss ~0.002) and its validation loss turns
    # upward from epoch 3. About 1 min a point on one core; its numbers are not the `cpu` table's.
    protocols["sweep"] = dict(protocols["cpu"], train_examples=2500, epochs=6, optimizer="adam", lr=1e-3,
                              clip=5.0, wdecay=0.0, lr_decay=1.0)

    def __init__(self, name: str, dataset: str, classes: int, files: tuple[str, str, str], description: str):
        if classes not in (2, 5):
            raise ValueError("classes must be 2 (SST-2) or 5 (SST-5)")
        self.name, self.dataset, self.classes, self.files, self.description = name, dataset, classes, files, description

    def label(self, label: int) -> int | None:
        return binary_label(label) if self.classes == 2 else label

    def examples(self, trees: list, phrases: bool, norm=list) -> list[tuple[list[str], int]]:
        """(words, label) of each sentence, or of each distinct phrase (first occurrence's label)."""
        out, seen = [], set()
        for tree in trees:
            for label, words in (tree if phrases else tree[:1]):
                words = norm(words)
                key = tuple(words)
                if phrases and key in seen:
                    continue
                seen.add(key)
                y = self.label(label)
                if y is not None:
                    out.append((words, y))
        return out

    def load(self, data_dir, cfg):
        trees = _read_trees(str(data_dir), self.dataset, tuple(self.files))
        norm = (lambda ws: [w.lower() for w in ws]) if cfg.lowercase else list
        train = subset(trees["train"], cfg.train_examples)
        train = self.examples(train, cfg.train_phrases, norm)
        vocab = Vocab((w for w, _ in train), cfg.min_freq, specials=("<pad>", "<unk>"))
        data = dict(vocab=vocab, classes=self.classes)
        data["train"] = [(vocab.encode(w), y) for w, y in train]
        for split in ("valid", "test"):
            exs = self.examples(subset(trees[split], cfg.eval_examples), False, norm)
            data[split] = [(vocab.encode(w), y) for w, y in exs]
        return data

    def build_model(self, data, cfg, noise):
        return Classifier(len(data["vocab"]), data["classes"], cfg, noise)

    @staticmethod
    def make_batch(examples: list) -> Batch:
        x, lengths = pad_batch([ids for ids, _ in examples])
        return Batch((x, lengths, torch.tensor([y for _, y in examples])), n_tokens=int(lengths.sum()))

    def num_batches(self, data, cfg):
        return -(-len(data["train"]) // cfg.batch_size)

    def train_batches(self, data, cfg, epoch, rng):
        train = data["train"]
        for idx in bucket_batches([len(ids) for ids, _ in train], cfg.batch_size, rng):
            yield self.make_batch([train[i] for i in idx])

    def forward(self, model, batch, state, cfg):
        x, lengths, y = (t.to(model.out.weight.device) for t in batch.data)
        logits = model(x, lengths)
        return ForwardOut(logits, F.cross_entropy(logits, y))

    @torch.no_grad()
    def evaluate(self, model, data, split, cfg):
        """Mean cross-entropy and accuracy (percent) over the sentences of `split`."""
        model.eval()
        exs = data[split]
        total, correct = 0.0, 0
        per = {k: [0] * len(exs) for k in ("label", "pred", "correct")} | {"loss": [0.0] * len(exs)}
        for idx in sorted_batches([len(ids) for ids, _ in exs], cfg.eval_batch_size):
            batch = self.make_batch([exs[i] for i in idx])
            out = self.forward(model, batch, None, cfg)
            y = batch.data[2].to(out.logits.device)
            # The sum as one reduction, as the rows before schema 3 took it: summing the
            # per-sentence losses instead rounds differently and breaks their exact replays.
            total += F.cross_entropy(out.logits, y, reduction="sum").item()
            losses = F.cross_entropy(out.logits, y, reduction="none")
            pred = out.logits.argmax(-1)
            correct += int((pred == y).sum())
            for j, i in enumerate(idx.tolist()):
                per["label"][i], per["pred"][i] = int(y[j]), int(pred[j])
                per["correct"][i], per["loss"][i] = int(pred[j] == y[j]), float(losses[j])
        result = {"loss": total / len(exs), "accuracy": 100.0 * correct / len(exs)}
        if split == "test":                 # the per-sentence side file (bench/results.py)
            result["examples"] = dict(index=list(range(len(exs))), **per)
        return result

    def test_from_examples(self, examples) -> float:
        """The test accuracy (%) recomputed from the per-sentence side file."""
        correct = [int(c) for c in examples["correct"]]
        return 100.0 * sum(correct) / len(correct)


FILES = ("train.txt", "dev.txt", "test.txt")
register_task(Sentiment("sst5", "sst", 5, FILES, "Stanford Sentiment Treebank, 5 classes (sentences), accuracy"))
register_task(Sentiment("sst2", "sst", 2, FILES, "Stanford Sentiment Treebank, binary (neutral dropped), accuracy"))
