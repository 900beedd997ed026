from __future__ import annotations

import csv
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from lmforge.tasks.base import run_steps
from lmforge.tasks.report import Tally
from lmforge.tasks.schema import Document
from lmforge.tasks.toxicity import (
    DETOXIFY_HEADS,
    DetoxifyConfig,
    DetoxifyScorer,
    ToxicityConfig,
    build_toxicity_steps,
    record_bias,
    summarise_bias,
    units,
)

POLITE = "The ferry leaves at nine and the view of the hills is lovely. " * 10
RUDE = "You are a stupid worthless idiot and nobody wants you here."


def run(cfg: ToxicityConfig, docs: list[Document]):
    tally, rejected = Tally("toxicity"), []
    steps = build_toxicity_steps(cfg, ["reddit", "books"])
    kept = list(run_steps(docs, steps, tally,
                          lambda d, r, v: rejected.append((d.location, r, dict(v)))))
    return kept, rejected, tally.report()


def test_a_mostly_toxic_document_is_dropped_with_its_spans() -> None:
    docs = [Document.new("reddit", "r#1", POLITE), Document.new("reddit", "r#2", RUDE)]
    kept, rejected, _ = run(ToxicityConfig(), docs)
    assert [d.location for d in kept] == ["r#1"]
    assert kept[0].scores["toxicity"] < 0.5
    location, reason, detail = rejected[0]
    assert (location, reason) == ("r#2", "toxicity/toxic") and detail["toxic_share"] == 1.0
    assert detail["spans"][0][:2] == [0, len(RUDE)] and detail["spans"][0][2] > 0.9


def test_one_toxic_paragraph_is_removed_not_the_document() -> None:
    text = POLITE + "\n\n" + RUDE + "\n\n" + POLITE
    kept, rejected, report = run(ToxicityConfig(), [Document.new("reddit", "r#1", text)])
    assert not rejected and RUDE not in kept[0].text and kept[0].text.count("ferry") == 20
    assert kept[0].meta["toxic_spans"] == {"spans_removed": 1, "chars_removed": len(RUDE)}
    assert 0 < kept[0].scores["toxic_share"] < 0.1
    assert report.sources["reddit"].changed == 1


def test_drop_mode_drops_any_toxic_unit() -> None:
    text = POLITE + "\n\n" + RUDE
    kept, rejected, _ = run(ToxicityConfig(mode="drop"), [Document.new("reddit", "r#1", text)])
    assert not kept and rejected[0][1] == "toxicity/toxic"


def test_annotate_mode_keeps_everything_with_scores() -> None:
    kept, rejected, _ = run(ToxicityConfig(mode="annotate"), [Document.new("reddit", "r#1",
                                                                            RUDE)])
    assert len(kept) == 1 and not rejected and kept[0].scores["toxicity"] > 0.9


def test_sentence_units() -> None:
    text = "The mill was rebuilt in 1890. " + RUDE + " The bridge is new. " + POLITE
    kept, rejected, _ = run(ToxicityConfig(unit="sentence"), [Document.new("web", "w#1", text)])
    assert not rejected and kept[0].text.startswith(
        "The mill was rebuilt in 1890. The bridge is new.")


def test_policies_per_source() -> None:
    cfg = ToxicityConfig(per_source={"reddit": {"thresholds": {"toxicity": 0.999999}}})
    docs = [Document.new("books", "b#1", RUDE), Document.new("reddit", "r#1", RUDE),
            Document.new("code", "c#1", RUDE), Document.new("commoncrawl", "w#1", RUDE)]
    kept, rejected, _ = run(cfg, docs)
    # books lose the span but are never dropped; code is not scored; reddit's threshold is
    # its own; the web follows the defaults
    assert {d.location: d.text for d in kept} == {"b#1": "", "r#1": RUDE, "c#1": RUDE}
    assert [r[0] for r in rejected] == ["w#1"]
    assert "toxicity" not in next(d for d in kept if d.source == "code").scores


def test_units() -> None:
    assert units("a\n\nb\nc") == [(0, 1), (3, 4), (5, 6)]
    assert units("One. Two! Three", "sentence") == [(0, 4), (4, 9), (9, 15)]
    assert units("") == [(0, 0)]


def test_bias_signal_is_summed_per_source() -> None:
    tally = Tally("toxicity")
    record_bias([("web", {"detoxify.identity_attack": 0.9}),
                 ("web", {"detoxify.identity_attack": 0.1}),
                 ("books", {"detoxify.identity_attack": 0.2})], tally)
    summary = summarise_bias(tally.report().extra)
    assert summary == {"web": {"mean": 0.5, "flagged_rate": 0.5},
                       "books": {"mean": 0.2, "flagged_rate": 0.0}}


def test_default_scorer_separates_jigsaw_labels(jigsaw_csv) -> None:
    with open(jigsaw_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    docs = [Document.new("reddit", r["id"], r["comment_text"]) for r in rows]
    run(ToxicityConfig(mode="annotate"), docs)
    toxic = [d.scores["toxicity"] for d, r in zip(docs, rows, strict=True) if r["toxic"] == "1"]
    clean = [d.scores["toxicity"] for d, r in zip(docs, rows, strict=True) if r["toxic"] == "0"]
    assert np.mean(toxic) > np.mean(clean) + 0.3


def make_detoxify_checkpoint(folder: Path) -> Path:
    """A detoxify-format checkpoint with random weights: a 1-layer BERT, a local vocabulary
    and config, so detoxify's real loading and batching code runs without any download."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = ["the", "a", "you", "are", "idiot", "stupid", "ferry", "hills", "lovely", "is"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=64)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=15, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                        num_labels=6)
    config.save_pretrained(folder)
    model = BertForSequenceClassification(config)
    checkpoint = folder / "toxic_tiny.ckpt"
    torch.save({"config": {"arch": {"args": {
        "model_type": str(folder), "model_name": "BertForSequenceClassification",
        "tokenizer_name": "BertTokenizerFast", "num_classes": 6}},
        "dataset": {"args": {"classes": ["toxic", "severe_toxic", "obscene", "threat",
                                         "insult", "identity_hate"]}}},
        "state_dict": model.state_dict()}, checkpoint)
    return checkpoint


@pytest.fixture(scope="module")
def tiny_detoxify(tmp_path_factory) -> DetoxifyConfig:
    folder = tmp_path_factory.mktemp("detoxify")
    return DetoxifyConfig(checkpoint=str(make_detoxify_checkpoint(folder)), device="cpu",
                          batch_size=4)


def test_detoxify_checkpoint_loads_offline_and_scores_every_head(tiny_detoxify) -> None:
    scorer = DetoxifyScorer(tiny_detoxify)
    scores = scorer(["you are a stupid idiot", "the hills are lovely"] * 5)
    assert set(scores) == {f"detoxify.{h}" for h in DETOXIFY_HEADS}
    assert all(len(v) == 10 and ((v >= 0) & (v <= 1)).all() for v in scores.values())
    one = scorer(["the hills are lovely"])
    assert np.allclose(one["detoxify.toxicity"][0], scores["detoxify.toxicity"][1], atol=1e-5)


def test_detoxify_heads_reach_documents_and_the_bias_report(tiny_detoxify) -> None:
    cfg = ToxicityConfig(mode="annotate", detoxify=tiny_detoxify)
    kept, _, _ = run(cfg, [Document.new("reddit", f"r#{i}", "you are lovely") for i in range(3)])
    assert all("detoxify.identity_attack" in d.scores for d in kept)


def test_long_units_are_scored_in_bounded_pieces() -> None:
    paragraph = "The sea was calm and the sky was grey over the harbour. " * 200  # one line
    spans = units(paragraph, max_chars=2000)
    assert len(spans) > 5 and all(b - a <= 2000 for a, b in spans)
    assert spans[0][0] == 0 and spans[-1][1] == len(paragraph)
    assert all(a == b for (_, a), (b, _) in pairwise(spans))  # every character scored once
