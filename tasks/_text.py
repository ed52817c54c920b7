"""Helpers shared by the sentence-level tasks (translation, sentiment): vocabulary, padding, batching,
initialisation. Not a plugin: the plugin loader skips modules whose name starts with `_`.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")


class Vocab:
    """Word types seen at least `min_freq` times, most frequent first (ties alphabetical), after
    the special symbols; anything else maps to `<unk>`."""

    def __init__(self, sentences: Iterable[Sequence[str]], min_freq: int = 1, specials=SPECIALS):
        counts = Counter(w for s in sentences for w in s)
        words = sorted((w for w, c in counts.items() if c >= max(1, min_freq) and w not in specials),
                       key=lambda w: (-counts[w], w))
        self.itos = list(specials) + words
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, words: Sequence[str]) -> list[int]:
        return [self.stoi.get(w, UNK) for w in words]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]


def pad_batch(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded time-major (T,B) ids and the (B,) lengths."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((int(lengths.max()), len(seqs)), PAD, dtype=torch.long)
    for b, s in enumerate(seqs):
        out[:len(s), b] = torch.tensor(s, dtype=torch.long)
    return out, lengths


def bucket_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator,
                   pool: int = 50) -> list[np.ndarray]:
    """One epoch of shuffled batches of similar lengths (little padding): shuffle, sort each pool of
    `pool` batches by length, cut into batches, shuffle the batch order. Deterministic given `rng`."""
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = order[start:start + batch_size * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Evaluation batches: examples sorted by length (callers restore the order when it matters)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def init_weights(model: nn.Module, init_range: float) -> None:
    """init_range > 0: every parameter U(-r, r); else embeddings U(-0.1, 0.1) and the layers'
    own defaults (the LM task's two conventions)."""
    if init_range > 0:
        for p in model.parameters():
            nn.init.uniform_(p, -init_range, init_range)
        return
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            nn.init.uniform_(m.weight, -0.1, 0.1)


def subset(items: list, n: int) -> list:
    """n items evenly spaced over the list, in order (all when n <= 0 or n >= len): a cheap sample
    that, unlike a prefix, does not inherit the file's ordering (SST's files are sorted by label)."""
    if n <= 0 or n >= len(items):
        return items
    return [items[i * len(items) // n] for i in range(n)]
