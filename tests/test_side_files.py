"""Per-example test side files and result fingerprints (registry schema 3).

Every ok run writes registry/_examples/<task>/<method>/<run_id>.parquet (one line per test sentence
or LM chunk) before its row; the row holds the side file's digest and that of its best-valid
weights, and the task recomputes the row's `test` from the side file exactly.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from bench import results, runner
from tasks.translation import BLEU_STATS, bleu_from_stats, corpus_bleu, sentence_bleu_stats


def test_lm_run_writes_a_side_file_the_test_recomputes_from(tiny_lm, registry, tmp_path):
    task, root = tiny_lm
    out = runner.run("tinylm", "zaremba", "smoke", seed=0, device="cpu", registry=registry,
                     runs_dir=tmp_path / "runs", data_dir=root, progress=False, echo=lambda s: None)
    row = out.row
    ex = results.read_examples(registry, row)
    assert list(ex.columns) == ["chunk", "tokens", "nll_sum"] and len(ex) > 1
    assert row["schema_version"] == 3 and row["pack_size"] == 1 and json.loads(row["pack_members"]) == []
    assert task.test_from_examples(ex) == row["test"]                    # bit for bit
    assert results.examples_digest(ex) == row["examples_sha256"] != ""
    assert len(row["weights_sha256"]) == 64
    # the side file is below the row glob: the registry still reads one row
    assert len(results.read_registry(registry)) == 1
    # the stored row equals the returned one (digests included)
    stored = results.read_row(out.path)
    assert stored["examples_sha256"] == row["examples_sha256"] and stored["weights_sha256"] == row["weights_sha256"]


def test_same_seed_gives_the_same_fingerprints(tiny_lm, tmp_path):
    _, root = tiny_lm
    rows = [runner.run("tinylm", "gal", "smoke", seed=1, device="cpu", registry=tmp_path / f"r{i}",
                       runs_dir=tmp_path / f"runs{i}", data_dir=root, progress=False, echo=lambda s: None).row
            for i in range(2)]
    assert rows[0]["weights_sha256"] == rows[1]["weights_sha256"]
    assert rows[0]["examples_sha256"] == rows[1]["examples_sha256"]
    other = runner.run("tinylm", "gal", "smoke", seed=2, device="cpu", registry=tmp_path / "r0",
                       runs_dir=tmp_path / "runs0", data_dir=root, progress=False, echo=lambda s: None).row
    assert other["weights_sha256"] != rows[0]["weights_sha256"]


def test_examples_digest_is_canonical_and_sensitive():
    cols = dict(index=[0, 1, 2], correct=[1, 0, 1], loss=[0.25, 1.5, 0.125])
    d = results.examples_digest(cols)
    assert d == results.examples_digest(pd.DataFrame(cols))            # dict and DataFrame alike
    assert d == results.examples_digest(dict(reversed(list(cols.items()))))   # column order does not matter
    assert d != results.examples_digest(dict(cols, loss=[0.25, 1.5, 0.1250000001]))
    assert d != results.examples_digest(dict(cols, correct=[1, 1, 1]))


def test_side_file_round_trips_exactly(tmp_path):
    row = dict(task="t", method="m", run_id="t.m.x.s0.cpu.abc")
    cols = dict(chunk=[0, 1], tokens=[35, 7], nll_sum=[123.456789012345, 1e-300])
    path = results.write_examples(tmp_path, row, cols)
    assert path == tmp_path / "_examples" / "t" / "m" / "t.m.x.s0.cpu.abc.parquet"
    back = results.read_examples(tmp_path, row)
    assert str(back.tokens.dtype) == "int64" and str(back.nll_sum.dtype) == "float64"
    assert results.examples_digest(back) == results.examples_digest(cols)
    assert results.read_examples(tmp_path, dict(row, run_id="absent")) is None


def test_weights_digest_canonical():
    a = {"w": torch.arange(6, dtype=torch.float32).view(2, 3), "b": torch.zeros(3)}
    d = results.weights_digest(a)
    assert d == results.weights_digest({"b": torch.zeros(3), "w": a["w"].t().contiguous().t()})  # layout-free
    assert d != results.weights_digest({"w": a["w"].view(3, 2), "b": a["b"]})                   # shape counts
    assert d != results.weights_digest({"w": a["w"].double(), "b": a["b"]})                     # dtype counts
    b = {"w": a["w"].clone(), "b": a["b"].clone()}
    b["w"][0, 0] = 1e-45
    assert d != results.weights_digest(b)


def test_sentence_bleu_stats_sum_to_sacrebleu_corpus_bleu():
    hyps = ["a man is riding a horse .", "two dogs play in the snow", "a woman sings", "the cat"]
    refs = ["a man rides a horse .", "two dogs are playing in the snow .", "a woman is singing .", "a cat sleeps"]
    for lowercase, tokenize in ((True, "13a"), (False, "none")):
        stats = sentence_bleu_stats(hyps, refs, lowercase, tokenize)
        assert set(stats) == set(BLEU_STATS) and all(len(v) == len(hyps) for v in stats.values())
        assert bleu_from_stats(stats, lowercase, tokenize) == corpus_bleu(hyps, refs, lowercase, tokenize)[0] > 0


def test_sentiment_and_translation_recompute_from_examples():
    from bench import plugins
    plugins.load_all()
    sst = plugins.get_task("sst2")
    assert sst.test_from_examples(pd.DataFrame(dict(correct=[1, 0, 1, 1]))) == 75.0
    mt = plugins.get_task("multi30k-de-en")
    stats = sentence_bleu_stats(["a dog runs on the grass ."], ["a dog runs on grass ."], **mt._bleu_args())
    assert mt.test_from_examples(pd.DataFrame(stats)) == pytest.approx(
        corpus_bleu(["a dog runs on the grass ."], ["a dog runs on grass ."], **mt._bleu_args())[0], rel=0, abs=0)


def test_write_result_refuses_a_registered_run_and_keeps_its_side_file(tmp_path, tiny_lm):
    _, root = tiny_lm
    out = runner.run("tinylm", "none", "smoke", seed=0, device="cpu", registry=tmp_path / "reg",
                     runs_dir=tmp_path / "runs", data_dir=root, progress=False, echo=lambda s: None)
    side = results.examples_path(tmp_path / "reg", out.row)
    before = (out.path.read_bytes(), side.read_bytes())
    with pytest.raises(Exception, match="already registered"):
        results.write_result(tmp_path / "reg", dict(out.row), dict(chunk=[0], tokens=[1], nll_sum=[0.0]))
    assert (out.path.read_bytes(), side.read_bytes()) == before
