"""The SST tasks: tree parsing, SST-2 derivation, batching, all methods end to end."""
from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest
import torch

from bench import plugins, runner
from bench.api import Noise, NoiseState
from conftest import MIRROR, needs_mirror, resolve, write_dataset
from tasks.sentiment import Sentiment, binary_label, parse_tree, sorted_batches

HAND_TREE = "(3 (2 (2 The) (2 movie)) (4 (3 (2 is) (4 great)) (2 .)))"
SCORES = {"good": 1, "great": 2, "fun": 1, "bad": -1, "awful": -2, "dull": -1}
NEUTRAL = ["the", "movie", "plot", "was", "is", "a", "story", "and"]


def toy_tree(words: list[str]) -> str:
    """A binarised PTB-format tree over `words`, each node labelled by its words' summed score."""
    def build(span):
        label = min(4, max(0, 2 + sum(SCORES.get(w.lower(), 0) for w in span)))
        if len(span) == 1:
            return f"({label} {span[0]})"
        mid = len(span) // 2
        return f"({label} {build(span[:mid])} {build(span[mid:])})"
    return build(words)


def toy_trees(seed: int, n: int) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(2, 8))]
        for _ in range(rng.randint(0, 2)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(list(SCORES)))
        words[0] = words[0].capitalize()
        lines.append(toy_tree(words))
    return "\n".join(lines) + "\n"


def register_toy(root, name: str, classes: int, files: dict) -> Sentiment:
    write_dataset(root, name, files)
    plugins.load_all()
    plugins.unregister("task", name)
    return plugins.register_task(Sentiment(name, name, classes, ("train.txt", "dev.txt", "test.txt"), "toy SST"))


@pytest.fixture(scope="module")
def toy_sst(tmp_path_factory):
    root = tmp_path_factory.mktemp("sstdata")
    files = {"train.txt": toy_trees(1, 2000), "dev.txt": toy_trees(2, 120), "test.txt": toy_trees(3, 120)}
    return register_toy(root, "toysst2", 2, files), root


@pytest.fixture
def smoke_task(request, toy_sst):
    """The real sst2 on the mirror for zaremba (the real-data plumbing; verify-seeds replays every
    method's committed smoke rows on it in full), the generated toy task otherwise."""
    if MIRROR.joinpath("MANIFEST.tsv").exists() and request.node.callspec.params["method"] == "zaremba":
        return "sst2", MIRROR
    return toy_sst[0].name, toy_sst[1]


# --- trees and labels -----------------------------------------------------------------------

def test_parse_hand_written_tree():
    nodes = parse_tree(HAND_TREE)
    assert nodes[0] == (3, ["The", "movie", "is", "great", "."])
    assert [label for label, _ in nodes] == [3, 2, 2, 2, 4, 3, 2, 4, 2]
    assert nodes[1] == (2, ["The", "movie"]) and nodes[4] == (4, ["is", "great", "."])
    assert parse_tree("(1 -LRB-)") == [(1, ["-LRB-"])]
    assert parse_tree(r"(2 (2 8 1\/2) (2 .))")[0] == (2, [r"8 1\/2", "."])   # a leaf with a space


@pytest.mark.parametrize("bad", ["(3 (2 a)", "(3 (2 a)))", "(7 a)", "(x a)", "", "(2 (3 ))", "(2 (2 a) b)"])
def test_parse_rejects_malformed_trees(bad):
    with pytest.raises(ValueError):
        parse_tree(bad)


def test_sst2_drops_neutral_and_maps_labels(tmp_path):
    trees = [f"({y} ({y} w{y}) (2 end))" for y in (0, 1, 2, 3, 4, 2)]
    files = {"train.txt": "\n".join(trees) + "\n", "dev.txt": "(2 (2 x) (2 y))\n(4 (4 Nice) (2 one))\n",
             "test.txt": "(1 (1 Meh) (2 .))\n"}
    five, two = register_toy(tmp_path, "hand5", 5, files), register_toy(tmp_path, "hand2", 2, files)
    cfg = resolve(five, dict(min_freq=1))
    d5, d2 = five.load(tmp_path, cfg), two.load(tmp_path, cfg)
    assert [y for _, y in d5["train"]] == [0, 1, 2, 3, 4, 2]
    assert [y for _, y in d2["train"]] == [0, 0, 1, 1]
    assert [y for _, y in d2["valid"]] == [1] and [y for _, y in d5["valid"]] == [2, 4]
    vocab = d2["vocab"]
    assert vocab.decode(d2["train"][0][0]) == ["w0", "end"]
    assert vocab.decode(d2["valid"][0][0]) == ["<unk>", "<unk>"]   # lowercased "nice", unseen
    assert [binary_label(y) for y in range(5)] == [0, 0, None, 1, 1]


def test_train_phrases_adds_every_distinct_labelled_subtree(tmp_path):
    files = {"train.txt": HAND_TREE + "\n" + HAND_TREE + "\n", "dev.txt": HAND_TREE + "\n", "test.txt": HAND_TREE + "\n"}
    five, two = register_toy(tmp_path, "phr5", 5, files), register_toy(tmp_path, "phr2", 2, files)
    d5 = five.load(tmp_path, resolve(five, dict(train_phrases=True, min_freq=1)))
    assert len(d5["train"]) == 9 and len(d5["valid"]) == 1        # duplicates once; valid whole sentences
    d2 = two.load(tmp_path, resolve(two, dict(train_phrases=True, min_freq=1)))
    # non-neutral: the root (3), "is great ." (4), "is great" (3), "great" (4)
    assert [(" ".join(d2["vocab"].decode(ids)), y) for ids, y in d2["train"]] == [
        ("the movie is great .", 1), ("is great .", 1), ("is great", 1), ("great", 1)]
    plain = two.load(tmp_path, resolve(two, dict(train_phrases=False, min_freq=1)))
    assert len(plain["train"]) == 2


@needs_mirror
def test_sst_counts_from_mirror():
    sst5, sst2 = plugins.get_task("sst5"), plugins.get_task("sst2")
    full = dict(train_examples=0, eval_examples=0)
    d5 = sst5.load(MIRROR, resolve(sst5, full))
    d2 = sst2.load(MIRROR, resolve(sst2, full))
    assert [len(d5[s]) for s in ("train", "valid", "test")] == [8544, 1101, 2210]
    assert [len(d2[s]) for s in ("train", "valid", "test")] == [6920, 872, 1821]
    assert Counter(y for _, y in d5["train"]) == {0: 1092, 1: 2218, 2: 1624, 3: 2322, 4: 1288}
    assert Counter(y for _, y in d5["test"]) == {0: 279, 1: 633, 2: 389, 3: 510, 4: 399}
    from tasks.sentiment import _read_trees
    trees = _read_trees(str(MIRROR), "sst", ("train.txt", "dev.txt", "test.txt"))
    assert sum(len(t) for t in trees["train"]) == 318582             # labelled nodes (phrases)
    assert sum(len(t[0][1]) for t in trees["train"]) == 163563       # leaf tokens


# --- batching and model ---------------------------------------------------------------------

def test_shuffling_follows_the_generator(toy_sst):
    task, root = toy_sst
    cfg = resolve(task)
    data = task.load(root, cfg)
    order = lambda seed: [b.data[0].t().tolist() for b in task.train_batches(data, cfg, 1, np.random.default_rng(seed))]
    a, b, c = order(1), order(1), order(2)
    assert a == b and a != c
    assert sum(len(x) for x in a) == len(data["train"])


@pytest.mark.parametrize("pool", ["last", "mean", "max"])
def test_padding_does_not_change_a_sentence(toy_sst, pool):
    task, root = toy_sst
    cfg = resolve(task, dict(pool=pool))
    data = task.load(root, cfg)
    torch.manual_seed(0)
    model = task.build_model(data, cfg, NoiseState(Noise(word=0.2, emb=0.3, rec=0.2)))
    model.eval()
    short, long = (f(data["valid"], key=lambda e: len(e[0])) for f in (min, max))
    assert len(long[0]) > len(short[0])
    alone = task.forward(model, task.make_batch([short]), None, cfg).logits
    both = task.forward(model, task.make_batch([short, long]), None, cfg).logits
    assert torch.allclose(alone[0], both[0], atol=1e-6)


def majority_rate(examples) -> float:
    """Accuracy (percent) of always predicting the commonest label."""
    return 100.0 * max(Counter(y for _, y in examples).values()) / len(examples)


class Constant(torch.nn.Module):
    """A classifier that scores every sentence with the same logits."""

    def __init__(self, logits):
        super().__init__()
        self.out = torch.nn.Linear(1, 1)               # forward() reads the device from model.out
        self.logits = torch.tensor(logits)

    def forward(self, x, lengths):
        return self.logits.expand(x.shape[1], -1)


def test_evaluate_gives_exact_accuracy_and_loss_for_a_known_model(toy_sst):
    task, root = toy_sst
    cfg = resolve(task)
    data = task.load(root, cfg)
    labels = [y for _, y in data["valid"]]
    for cls in (0, 1):
        res = task.evaluate(Constant([0.0, 1.0] if cls else [1.0, 0.0]), data, "valid", cfg)
        assert math.isclose(res["accuracy"], 100.0 * labels.count(cls) / len(labels))
        right, wrong = -math.log(math.e / (1 + math.e)), -math.log(1 / (1 + math.e))   # cross-entropy per sentence
        expected = (right * labels.count(cls) + wrong * labels.count(1 - cls)) / len(labels)
        assert math.isclose(res["loss"], expected, rel_tol=1e-6)


class Random(torch.nn.Module):
    """A classifier whose logits differ per sentence, so the order of a sum shows in its last bits."""

    def __init__(self, vocab: int, classes: int):
        super().__init__()
        with torch.random.fork_rng():                  # the other tests' global generator untouched
            torch.manual_seed(0)
            self.emb = torch.nn.Embedding(vocab, 8)
            self.out = torch.nn.Linear(8, classes)

    def forward(self, x, lengths):
        return self.out(self.emb(x).mean(0)) * 7.0


def test_evaluate_loss_sums_each_batch_in_one_reduction(toy_sst):
    """The rows made before schema 3 summed each batch with reduction="sum"; summing the
    per-sentence losses rounds differently, and their exact replays depend on the old order."""
    task, root = toy_sst
    cfg = resolve(task)
    data = task.load(root, cfg)
    model = Random(len(data["vocab"]), 2)
    res = task.evaluate(model, data, "test", cfg)
    exs, total = data["test"], 0.0
    for idx in sorted_batches([len(ids) for ids, _ in exs], cfg.eval_batch_size):
        x, lengths, y = task.make_batch([exs[i] for i in idx]).data
        total += torch.nn.functional.cross_entropy(model(x, lengths), y, reduction="sum").item()
    assert res["loss"] == total / len(exs)
    assert res["examples"]["loss"] != [0.0] * len(exs)


def test_a_small_model_learns_the_toy_task(toy_sst):
    task, root = toy_sst
    _, method, cfg, data = runner.prepare(task.name, "zaremba", "smoke",
                                          dict(epochs="6", lr="0.01", hidden_size="32"), root)
    result = runner.execute(task, method, cfg, data, 0, torch.device("cpu"), progress=False)
    assert result["valid"] > max(80, majority_rate(data["valid"]) + 20), result
    assert result["test"] > max(80, majority_rate(data["test"]) + 20), result


# --- end to end -----------------------------------------------------------------------------

@pytest.mark.parametrize("method", plugins.list_methods())
def test_every_method_runs_smoke_and_is_deterministic(method, smoke_task, tmp_path):
    name, data_dir = smoke_task
    outcome = runner.run(name, method, "smoke", seed=0, device="cpu", registry=tmp_path / "registry",
                         runs_dir=tmp_path / "runs", data_dir=data_dir, progress=False)
    row, path = outcome.row, outcome.path
    assert path.exists() and row["status"] == "ok" and row["metric"] == "accuracy"
    task, meth, cfg, data = runner.prepare(name, method, "smoke", {}, data_dir)
    # the selected model beats always answering the commonest class of valid
    assert row["valid"] > majority_rate(data["valid"]), (row["valid"], majority_rate(data["valid"]))
    again = runner.execute(task, meth, cfg, data, 0, torch.device("cpu"), progress=False)
    assert (again["valid"], again["test"]) == (row["valid"], row["test"])
