"""A classifier-based quality filter as GPT-3 built one (Brown et al. 2020, Appendix A): a
linear classifier learns to tell reference text (here: the run's own Wikipedia and books) from
raw web text, every web document is scored, and documents are kept by Pareto sampling,
``np.random.pareto(alpha) > 1 - score`` with alpha = 9, which keeps mostly high-scoring pages
and a few low-scoring ones for diversity. A fixed threshold and an annotate-only mode are the
alternatives.

Features are hashed word unigrams and bigrams (scikit-learn ``HashingVectorizer``), the model a
logistic regression: trained in seconds on a sample, saved with the run, loaded once per worker.
"""

from __future__ import annotations

import pickle
import random
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from lmforge.model.atomic import write_bytes, write_json
from lmforge.tasks.base import DocFilter, Verdict
from lmforge.tasks.readers import SourceKind
from lmforge.tasks.schema import Document
from lmforge.tasks.shards import iter_documents
from pydantic import BaseModel, ConfigDict, Field
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline


class ClassifierConfig(BaseModel):
    """The GPT-3-style quality classifier."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    positive_sources: list[SourceKind] = Field(["wikipedia", "books"],
                                               description="reference text (label 1)")
    negative_sources: list[SourceKind] = Field(["commoncrawl"], description="raw text (label 0)")
    apply_to: list[SourceKind] = Field(["commoncrawl"], description="sources that are scored "
                                       "and filtered")
    mode: Literal["pareto", "threshold", "annotate"] = Field(
        "pareto", description="pareto: GPT-3's sampling; threshold: keep score >= threshold; "
        "annotate: store scores only")
    pareto_alpha: float = Field(9.0, gt=0, description="GPT-3 used 9")
    threshold: float = Field(0.5, ge=0, le=1, description="minimum score in threshold mode")
    max_docs_per_class: int = Field(50_000, ge=10, description="training sample per class")
    n_features: int = Field(2**20, ge=1024, description="hashed feature space")
    model_path: str | None = Field(None, description="a trained model (pickle) to use instead "
                                   "of training on this run")
    seed: int = Field(0, description="sampling and training seed")


def _vectorizer(n_features: int) -> HashingVectorizer:
    return HashingVectorizer(n_features=n_features, ngram_range=(1, 2), alternate_sign=False,
                             lowercase=True, norm="l2")


class _Reservoir:
    """A uniform sample of up to ``k`` texts from a stream (Vitter's algorithm R)."""

    def __init__(self, k: int, rng: random.Random) -> None:
        self.k, self.rng, self.seen, self.sample = k, rng, 0, []

    def offer(self, text: str) -> None:
        self.seen += 1
        if len(self.sample) < self.k:
            self.sample.append(text)
        elif (j := self.rng.randrange(self.seen)) < self.k:
            self.sample[j] = text


def train_classifier(shards: list[Path], cfg: ClassifierConfig, out_dir: Path
                     ) -> dict[str, Any] | None:
    """Train on the filtered shards; returns the training report, or None when either class
    has no documents (nothing to learn from)."""
    rng = random.Random(cfg.seed)
    pos_r, neg_r = (_Reservoir(cfg.max_docs_per_class, rng) for _ in range(2))
    positive, negative = set(cfg.positive_sources), set(cfg.negative_sources)
    for path in shards:  # one streaming pass; memory holds the two samples only
        for doc in iter_documents(path):
            if doc.source in positive:
                pos_r.offer(doc.text)
            elif doc.source in negative:
                neg_r.offer(doc.text)
    pos, neg = pos_r.sample, neg_r.sample
    if len(pos) < 2 or len(neg) < 2:
        return None
    texts, labels = pos + neg, [1] * len(pos) + [0] * len(neg)
    order = list(range(len(texts)))
    rng.shuffle(order)
    cut = max(1, len(order) // 10)  # hold out 10% to report accuracy honestly
    held, train = order[:cut], order[cut:]
    model = make_pipeline(_vectorizer(cfg.n_features),
                          LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced"))
    model.fit([texts[i] for i in train], [labels[i] for i in train])
    accuracy = float(np.mean(model.predict([texts[i] for i in held]) ==
                             np.array([labels[i] for i in held])))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "quality_classifier.pkl"
    write_bytes(path, pickle.dumps(model))
    report = {"model": str(path), "positives": len(pos), "negatives": len(neg),
              "heldout_accuracy": round(accuracy, 4), "heldout_docs": cut}
    write_json(out_dir / "quality_classifier.json", report, indent=1)
    return report


@lru_cache(maxsize=2)
def load_classifier(path: str) -> Pipeline:
    """Loaded once per process. Only load models this project wrote (pickle runs code)."""
    return pickle.loads(Path(path).read_bytes())  # our own run's artifact: trusted


class QualityClassifierFilter(DocFilter):
    """Score documents of the listed sources with the classifier; keep by Pareto sampling
    (deterministic per document id) or by threshold. Other sources pass untouched."""

    name = "classifier"
    batch_size = 256

    def __init__(self, *, model_path: str, apply_to: list[str], mode: str = "pareto",
                 pareto_alpha: float = 9.0, threshold: float = 0.5) -> None:
        self.model = load_classifier(model_path)
        self.apply_to = frozenset(apply_to)
        self.mode, self.alpha, self.threshold = mode, pareto_alpha, threshold

    def prepare(self, batch: list[Document]) -> None:
        scored = [d for d in batch if d.source in self.apply_to]
        if scored:
            probs = self.model.predict_proba([d.text for d in scored])[:, 1]
            for doc, p in zip(scored, probs, strict=True):
                doc.scores["quality_classifier"] = float(p)

    def keep(self, doc: Document) -> Verdict:
        score = doc.scores.get("quality_classifier")
        if score is None or self.mode == "annotate":
            return Verdict.ok(score=score)
        if self.mode == "threshold":
            if score < self.threshold:
                return Verdict.drop("below_threshold", score=round(score, 4))
            return Verdict.ok(score=round(score, 4))
        draw = float(np.random.default_rng(int(doc.id[:16], 16)).pareto(self.alpha))
        if draw <= 1 - score:
            return Verdict.drop("pareto_sample", score=round(score, 4), draw=round(draw, 4))
        return Verdict.ok(score=round(score, 4), draw=round(draw, 4))
