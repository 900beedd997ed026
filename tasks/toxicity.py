"""Toxicity scoring and filtering.

The always-available scorer is alt-profanity-check's classifier (TF-IDF + calibrated linear SVM
trained by its authors on about 200k labelled tweets and Wikipedia comments), which ships inside
its wheel and runs offline. A document's score is the highest score of its paragraphs, so one
insult in a long text is not averaged away; the score is stored in ``scores['toxicity']`` before
the threshold is applied, so the threshold can change without rescoring.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tasks.base import KEEP, DocFilter, Verdict
from tasks.schema import Document

_PARAGRAPH = re.compile(r"\n\s*\n|\n")


class ToxicityConfig(BaseModel):
    """Scoring and thresholds of the toxicity stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    scorer: Literal["profanity-check"] = Field(
        "profanity-check", description="the classifier that scores each paragraph")
    mode: Literal["drop", "annotate"] = Field(
        "drop", description="'drop' removes documents above the threshold; 'annotate' only "
        "stores scores")
    threshold: float = Field(0.9, gt=0, le=1, description="paragraph score above which a "
                             "document counts as toxic")
    batch_size: int = Field(256, ge=1, description="documents scored per classifier call")


class Scorer(Protocol):
    def __call__(self, texts: list[str]) -> np.ndarray: ...


@lru_cache(maxsize=1)
def profanity_scorer() -> Scorer:
    """alt-profanity-check's ``predict_prob``, imported once per process (about 1 s)."""
    from profanity_check import predict_prob

    return lambda texts: np.asarray(predict_prob(texts), dtype=np.float64)


def paragraphs(text: str) -> list[str]:
    return [p for p in (s.strip() for s in _PARAGRAPH.split(text)) if p] or [""]


class ToxicityFilter(DocFilter):
    """Score every paragraph; drop documents whose worst paragraph exceeds the threshold."""

    name = "toxicity"

    def __init__(self, *, threshold: float | None = 0.9, scorer: Scorer | None = None,
                 batch_size: int = 256) -> None:
        self.threshold = threshold
        self.scorer = scorer or profanity_scorer()
        self.batch_size = batch_size  # type: ignore[misc]  # per-instance batch size

    def prepare(self, batch: list[Document]) -> None:
        pieces = [paragraphs(doc.text) for doc in batch]
        flat = [p for ps in pieces for p in ps]
        scores = self.scorer(flat)
        pos = 0
        for doc, ps in zip(batch, pieces, strict=True):
            doc.scores["toxicity"] = float(scores[pos:pos + len(ps)].max())
            pos += len(ps)

    def keep(self, doc: Document) -> Verdict:
        score = doc.scores["toxicity"]
        if self.threshold is not None and score > self.threshold:
            return Verdict.drop("toxic", score=round(score, 4), threshold=self.threshold)
        return KEEP


def build_toxicity_filter(cfg: ToxicityConfig) -> ToxicityFilter:
    return ToxicityFilter(threshold=cfg.threshold if cfg.mode == "drop" else None,
                          batch_size=cfg.batch_size)
