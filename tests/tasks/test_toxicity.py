from __future__ import annotations

import csv

import numpy as np

from tasks.base import run_steps
from tasks.report import Tally
from tasks.schema import Document
from tasks.toxicity import ToxicityConfig, ToxicityFilter, build_toxicity_filter, paragraphs


def test_worst_paragraph_decides() -> None:
    polite = "The ferry leaves at nine and the view of the hills is lovely. " * 10
    rude = polite + "\n\nYou are a stupid worthless idiot and nobody wants you here."
    f = ToxicityFilter(threshold=0.9)
    docs = [Document.new("reddit", "r#1", polite), Document.new("reddit", "r#2", rude)]
    tally, rejected = Tally("toxicity"), []
    kept = list(run_steps(docs, [f], tally, lambda d, r, v: rejected.append((r, dict(v)))))
    assert [d.location for d in kept] == ["r#1"]
    assert kept[0].scores["toxicity"] < 0.5
    assert rejected[0][0] == "toxicity/toxic" and rejected[0][1]["score"] > 0.9


def test_annotate_mode_keeps_everything_with_scores() -> None:
    f = build_toxicity_filter(ToxicityConfig(mode="annotate"))
    docs = [Document.new("reddit", "r#1", "Shut up, you dumb moron.")]
    kept = list(run_steps(docs, [f], Tally("toxicity"), lambda *a: None))
    assert len(kept) == 1 and kept[0].scores["toxicity"] > 0.9


def test_batches_score_in_one_call() -> None:
    calls = []

    def scorer(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return np.zeros(len(texts))

    f = ToxicityFilter(threshold=0.5, scorer=scorer, batch_size=4)
    docs = [Document.new("books", f"b#{i}", "a\n\nb") for i in range(10)]
    assert len(list(run_steps(docs, [f], Tally("t"), lambda *a: None))) == 10
    assert calls == [8, 8, 4]  # two paragraphs per document, four documents per call


def test_paragraph_split() -> None:
    assert paragraphs("a\n\nb\nc") == ["a", "b", "c"]
    assert paragraphs("") == [""]


def test_default_scorer_separates_jigsaw_labels(jigsaw_csv) -> None:
    with open(jigsaw_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    f = ToxicityFilter(threshold=0.5)
    docs = [Document.new("reddit", r["id"], r["comment_text"]) for r in rows]
    f.prepare(docs)
    toxic = [d.scores["toxicity"] for d, r in zip(docs, rows, strict=True) if r["toxic"] == "1"]
    clean = [d.scores["toxicity"] for d, r in zip(docs, rows, strict=True) if r["toxic"] == "0"]
    assert np.mean(toxic) > np.mean(clean) + 0.3
