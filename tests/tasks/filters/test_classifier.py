from __future__ import annotations

import json

import numpy as np
import pytest
from lmforge.infra.make_sample import CHAT, Prose
from lmforge.tasks.filters.classifier import (
    ClassifierConfig,
    QualityClassifierFilter,
    train_classifier,
)
from lmforge.tasks.schema import Document
from lmforge.tasks.shards import DocumentWriter


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Reference text = encyclopedic prose; web text = chatty fragments and keyword spam."""
    root = tmp_path_factory.mktemp("clf")
    prose, rng = Prose(5), np.random.default_rng(0)
    with DocumentWriter(root / "part-00000.parquet") as out:
        for i in range(150):
            out.write(Document.new("wikipedia", f"w#{i}", " ".join(prose.article("Arvel", 2))))
            web = prose.paragraph(CHAT, 3) + " " + " ".join(
                rng.choice(["buy", "cheap", "deal", "click", "now", "best", "sale"], 20))
            out.write(Document.new("commoncrawl", f"c#{i}", web))
    cfg = ClassifierConfig(max_docs_per_class=120, n_features=2**16)
    report = train_classifier([root / "part-00000.parquet"], cfg, root / "model")
    return root, cfg, report


def test_training_learns_to_separate_reference_from_web(trained) -> None:
    root, _, report = trained
    assert report["positives"] == report["negatives"] == 120
    assert report["heldout_accuracy"] > 0.9
    assert json.loads((root / "model" / "quality_classifier.json").read_text()) == report


def test_scores_are_stored_and_only_listed_sources_are_judged(trained) -> None:
    _, _, report = trained
    f = QualityClassifierFilter(model_path=report["model"], apply_to=["commoncrawl"],
                                mode="threshold", threshold=0.5)
    good = Document.new("commoncrawl", "g#1", " ".join(Prose(9).article("Ilsby", 2)))
    spam = Document.new("commoncrawl", "s#1", "cheap deal click now best sale buy " * 5)
    book = Document.new("books", "b#1", "cheap deal click now best sale buy " * 5)
    f.prepare([good, spam, book])
    assert good.scores["quality_classifier"] > 0.5 > spam.scores["quality_classifier"]
    assert "quality_classifier" not in book.scores
    assert f.keep(good).keep and f.keep(book).keep
    assert f.keep(spam).reason == "below_threshold"


def test_pareto_sampling_is_deterministic_and_favours_high_scores(trained) -> None:
    _, _, report = trained
    f = QualityClassifierFilter(model_path=report["model"], apply_to=["commoncrawl"])
    docs = [Document.new("commoncrawl", f"x#{i}", "t") for i in range(2000)]
    for doc, score in zip(docs, np.linspace(0, 1, 2000), strict=True):
        doc.scores["quality_classifier"] = float(score)
    kept = np.array([f.keep(d).keep for d in docs])
    assert kept.tolist() == [f.keep(d).keep for d in docs]  # same ids, same decisions
    # P(keep | score s) = P(pareto(9) > 1 - s) = (2 - s) ** -9
    for lo in range(0, 2000, 400):
        scores = np.linspace(0, 1, 2000)[lo:lo + 400]
        expected = np.mean((2 - scores) ** -9.0)
        assert abs(kept[lo:lo + 400].mean() - expected) < 0.05


def test_nothing_to_learn_returns_none(tmp_path) -> None:
    with DocumentWriter(tmp_path / "part-00000.parquet") as out:
        out.write(Document.new("commoncrawl", "c#1", "only web text here"))
    assert train_classifier([tmp_path / "part-00000.parquet"], ClassifierConfig(),
                            tmp_path / "m") is None
