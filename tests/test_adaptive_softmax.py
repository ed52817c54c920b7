"""The LM task's adaptive softmax (`softmax=adaptive`, WikiText-2's `cpu` protocol): an exact
distribution over the vocabulary, clusters by training frequency, same run plumbing as the full one."""
from __future__ import annotations

import math

import pytest
import torch

from bench import config, plugins, results, runner
from bench.api import NoiseState
from bench.errors import UsageError
from tasks.lm import ASM_CUTOFFS, Corpus, LMModel, asm_cutoffs, frequency_rank
from test_config_compose import resolve


def _model(vocab=41, rank=None):
    cfg = resolve("wikitext-2", "zaremba", "smoke")
    cfg.update(softmax="adaptive")
    return LMModel(vocab, cfg, NoiseState(plugins.get_method("zaremba").noise(cfg)), rank=rank).eval(), cfg


def test_frequency_rank_orders_words_by_training_count():
    corpus = Corpus({"train": "b a a\nc a b\n", "valid": "a\n", "test": "b\n"})
    # ids in first-occurrence order: b=0 a=1 <eos>=2 c=3; counts a 3, b 2, <eos> 2, c 1
    assert frequency_rank(corpus).tolist() == [1, 0, 2, 3]


def test_adaptive_log_probs_are_a_distribution_and_match_the_nll():
    torch.manual_seed(0)
    rank = torch.randperm(41)
    model, _ = _model(rank=rank)
    x = torch.randint(0, 41, (5, 3))
    y = torch.randint(0, 41, (5, 3))
    with torch.no_grad():
        logp = model.log_probs(x, None)
        assert logp.shape == (5, 3, 41)
        assert torch.allclose(logp.exp().sum(-1), torch.ones(5, 3), atol=1e-5)
        logits, _, _, out = model(x, None)
        nll = model.nll(logits, out, y)
    assert torch.allclose(nll, -logp.gather(-1, y.unsqueeze(-1)).view(-1), atol=1e-5)
    assert logits.shape[-1] == model.decoder.shortlist_size + model.decoder.n_clusters   # the head's


def test_cutoffs_are_wikitext2s_or_scaled_to_a_small_vocabulary():
    assert asm_cutoffs(33278) == list(ASM_CUTOFFS) == [2000, 10000]
    assert asm_cutoffs(41) == [10, 20]


def test_adaptive_with_tied_weights_is_a_config_error():
    task, method = plugins.get_task("wikitext-2"), plugins.get_method("zaremba")
    with pytest.raises(UsageError, match="softmax=adaptive cannot tie"):
        config.resolve(task, method, "smoke", {"softmax": "adaptive", "tie_weights": "True"})
    with pytest.raises(UsageError, match="softmax"):
        config.resolve(task, method, "smoke", {"softmax": "sampled"})


def test_wikitext2_cpu_is_ptbs_model_with_an_adaptive_softmax():
    wt2, ptb = resolve("wikitext-2", "zaremba", "cpu"), resolve("ptb", "zaremba", "cpu")
    assert wt2.softmax == "adaptive" and ptb.softmax == "full"
    same = ("emb_size", "hidden_size", "layers", "tie_weights", "batch_size", "bptt", "init_range", "lr_decay")
    assert all(wt2[k] == ptb[k] for k in same)
    assert wt2.train_tokens == wt2.eval_tokens == 0                       # the full data


def test_full_softmax_rows_keep_their_config_hash():
    """`softmax` at its default ("full") is left out of the hash: PTB rows keep their run ids."""
    cfg = resolve("ptb", "zaremba", "cpu")
    assert "softmax" not in config.stored(cfg)
    assert config.config_hash(cfg) == config.config_hash({k: v for k, v in cfg.items() if k != "softmax"})


@pytest.mark.parametrize("method", ["zaremba", "fraternal"])
def test_an_adaptive_run_trains_and_its_test_recomputes_from_the_side_file(tiny_lm, tmp_path, method):
    task, root = tiny_lm
    out = runner.run("tinylm", method, "smoke", seed=0, device="cpu", overrides={"softmax": "adaptive", "tie_weights": "False"},
                     registry=tmp_path / "reg", runs_dir=tmp_path / "runs", data_dir=root, progress=False,
                     echo=lambda s: None)
    row = out.row
    assert row["status"] == "ok" and math.isfinite(row["test"])
    if method == "zaremba":                         # learns something (a uniform guess is 41)
        assert row["test"] < 41
    assert task.test_from_examples(results.read_examples(tmp_path / "reg", row)) == row["test"]
    assert '"softmax": "adaptive"' in row["config_json"]
