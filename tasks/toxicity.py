"""Toxicity and bias scoring and filtering.

Two scorers:

* always available: alt-profanity-check's classifier (TF-IDF + calibrated linear SVM trained by
  its authors on about 200k labelled tweets and Wikipedia comments), shipped inside its wheel,
  offline; its score is the ``toxicity`` head.
* when a checkpoint is configured: detoxify (Jigsaw-trained transformers), every head
  (``detoxify.toxicity``, ``.severe_toxicity``, ``.obscene``, ``.threat``, ``.insult``,
  ``.identity_attack``), batched, on the GPU when there is one. Loaded from local files only.

Texts are scored per unit (paragraph or sentence); a document's score per head is its worst
unit's, stored in ``doc.scores`` before any threshold applies. Modes: ``drop`` removes
documents above a head's threshold, ``annotate`` only scores, ``drop-spans`` removes the units
above the thresholds and keeps the rest. ``identity_attack`` (the bias signal) is summed per
source into the stage report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tasks.base import DocFilter, DocRewriter, Rewrite, Verdict
from tasks.chunks import bounded_spans
from tasks.readers import SourceKind
from tasks.report import Tally
from tasks.schema import Document

_PARAGRAPH = re.compile(r"[^\n]+")
_SENTENCE = re.compile(r"[^\n]+?(?:[.!?]+(?=\s|$)|$)", re.MULTILINE)
MAX_UNIT_CHARS = 2000  # about detoxify's 512-token window of English
DETOXIFY_HEADS = ("toxicity", "severe_toxicity", "obscene", "threat", "insult",
                  "identity_attack")


class DetoxifyConfig(BaseModel):
    """A detoxify checkpoint on local disk (nothing is downloaded)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    checkpoint: str = Field(description="detoxify .ckpt file (torch.load-able, with 'config' "
                            "and 'state_dict')")
    hf_config: str | None = Field(None, description="folder with the transformers config.json "
                                  "and tokenizer files; default: the checkpoint's model_type, "
                                  "which must then be such a folder")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda if present")
    batch_size: int = Field(32, ge=1, description="texts per forward pass")


class ToxicityConfig(BaseModel):
    """Scoring and thresholds of the toxicity stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["drop", "annotate", "drop-spans"] = Field(
        "drop", description="drop documents, only store scores, or remove the toxic units")
    unit: Literal["paragraph", "sentence"] = Field("paragraph", description="what is scored")
    thresholds: dict[str, float] = Field(
        {"toxicity": 0.9}, description="head -> score above which a unit is toxic; heads: "
        "'toxicity' (profanity-check) and 'detoxify.<head>'")
    per_source: dict[SourceKind, dict[str, float]] = Field(
        {}, description="source -> thresholds that replace the defaults for that source")
    detoxify: DetoxifyConfig | None = Field(None, description="detoxify heads on top")
    batch_size: int = Field(256, ge=1, description="documents per scoring batch")

    def thresholds_for(self, source: str) -> dict[str, float]:
        return self.per_source.get(source, self.thresholds)  # type: ignore[call-overload]


class Scorer(Protocol):
    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]: ...


@lru_cache(maxsize=1)
def profanity_scorer() -> Scorer:
    """alt-profanity-check's ``predict_prob`` as the ``toxicity`` head (imported once)."""
    from profanity_check import predict_prob

    return lambda texts: {"toxicity": np.asarray(predict_prob(texts), dtype=np.float64)}


class DetoxifyScorer:
    """detoxify's heads, batched. Loaded once per process (per Dask worker)."""

    def __init__(self, cfg: DetoxifyConfig) -> None:
        import torch
        from detoxify import Detoxify

        device = cfg.device if cfg.device != "auto" else (
            "cuda" if torch.cuda.is_available() else "cpu")
        hf_config = cfg.hf_config or _model_type(cfg.checkpoint)
        self.model = Detoxify(checkpoint=cfg.checkpoint, device=device,
                              huggingface_config_path=hf_config)
        self.batch_size = cfg.batch_size

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, list[float]] = {}
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start:start + self.batch_size]
            scores = self.model.predict(chunk)
            for head, values in scores.items():  # one text gives floats, not lists
                out.setdefault(f"detoxify.{head}", []).extend(
                    values if isinstance(values, list) else [values])
        return {head: np.asarray(v, dtype=np.float64) for head, v in out.items()}


def _model_type(checkpoint: str) -> str:
    import torch

    loaded = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return loaded["config"]["arch"]["args"]["model_type"]


@lru_cache(maxsize=2)
def detoxify_scorer(cfg: DetoxifyConfig) -> DetoxifyScorer:
    return DetoxifyScorer(cfg)


def units(text: str, unit: str = "paragraph", max_chars: int = MAX_UNIT_CHARS
          ) -> list[tuple[int, int]]:
    """(start, end) of the scored pieces; the whole text when it has none. A unit longer than
    ``max_chars`` (a paragraph of a book without line breaks, a page of minified text) is
    scored in bounded pieces: the classifiers truncate or dilute long input."""
    pattern = _SENTENCE if unit == "sentence" else _PARAGRAPH
    spans = [piece for m in pattern.finditer(text) if m.group().strip()
             for piece in bounded_spans(text, max_chars, *m.span())]
    return spans or [(0, len(text))]


class _Scoring:
    """Unit scores of a batch, shared by the filter and the span remover."""

    def __init__(self, scorers: list[Scorer], unit: str) -> None:
        self.scorers, self.unit = scorers, unit
        self.unit_scores: dict[int, list[dict[str, float]]] = {}

    def score(self, batch: list[Document]) -> None:
        spans = [units(doc.text, self.unit) for doc in batch]
        texts = [doc.text[a:b] for doc, ss in zip(batch, spans, strict=True) for a, b in ss]
        heads: dict[str, np.ndarray] = {}
        for scorer in self.scorers:
            heads |= scorer(texts)
        pos, self.unit_scores = 0, {}
        for doc, ss in zip(batch, spans, strict=True):
            per_unit = [{h: float(v[pos + i]) for h, v in heads.items()} for i in range(len(ss))]
            self.unit_scores[id(doc)] = per_unit
            for head in heads:
                doc.scores[head] = max(u[head] for u in per_unit)
            pos += len(ss)


def _over(scores: Mapping[str, float], thresholds: Mapping[str, float]) -> dict[str, float]:
    return {h: round(scores[h], 4) for h, t in thresholds.items() if scores.get(h, 0.0) > t}


class ToxicityFilter(DocFilter):
    """Score every unit; drop documents whose worst unit exceeds a head's threshold (or, with
    no thresholds, only store the scores)."""

    name = "toxicity"

    def __init__(self, *, thresholds: Mapping[str, Mapping[str, float]] | None,
                 default: Mapping[str, float] | None = None, scorers: list[Scorer] | None = None,
                 unit: str = "paragraph", batch_size: int = 256) -> None:
        self.by_source, self.default = thresholds, default or {}
        self.scoring = _Scoring(scorers or [profanity_scorer()], unit)
        self.batch_size = batch_size  # type: ignore[misc]  # per-instance batch size

    def prepare(self, batch: list[Document]) -> None:
        self.scoring.score(batch)

    def keep(self, doc: Document) -> Verdict:
        if self.by_source is None:
            return Verdict.ok(**{h: round(v, 4) for h, v in doc.scores.items()})
        over = _over(doc.scores, self.by_source.get(doc.source, self.default))
        if over:
            return Verdict.drop("toxic", **over)
        return Verdict.ok()


class ToxicSpanRemover(DocRewriter):
    """Remove the units above a head's threshold, keep the rest of the document."""

    name = "toxic_spans"

    def __init__(self, *, thresholds: Mapping[str, Mapping[str, float]],
                 default: Mapping[str, float], scorers: list[Scorer] | None = None,
                 unit: str = "sentence", batch_size: int = 256) -> None:
        self.by_source, self.default = thresholds, default
        self.scoring = _Scoring(scorers or [profanity_scorer()], unit)
        self.batch_size = batch_size  # type: ignore[misc]

    def prepare(self, batch: list[Document]) -> None:
        self.scoring.score(batch)

    def rewrite(self, doc: Document) -> Rewrite:
        limits = self.by_source.get(doc.source, self.default)
        spans = units(doc.text, self.scoring.unit)
        scores = self.scoring.unit_scores[id(doc)]
        cut = [span for span, s in zip(spans, scores, strict=True) if _over(s, limits)]
        if not cut:
            return Rewrite(doc.text)
        pieces, last = [], 0
        for a, b in cut:
            pieces.append(doc.text[last:a])
            last = b
        pieces.append(doc.text[last:])
        text = re.sub(r"[ \t]{2,}", " ", "".join(pieces)).strip()
        return Rewrite(text, {"spans_removed": len(cut)})


def scorers_for(cfg: ToxicityConfig) -> list[Scorer]:
    """The configured heads: profanity-check always, detoxify when configured."""
    scorers: list[Scorer] = [profanity_scorer()]
    if cfg.detoxify is not None:
        scorers.append(detoxify_scorer(cfg.detoxify))
    return scorers


def build_toxicity_steps(cfg: ToxicityConfig, sources: list[str]) -> list[DocFilter | DocRewriter]:
    scorers = scorers_for(cfg)
    by_source = {s: cfg.thresholds_for(s) for s in sources}
    if cfg.mode == "drop-spans":
        return [ToxicSpanRemover(thresholds=by_source, default=cfg.thresholds, scorers=scorers,
                                 unit=cfg.unit, batch_size=cfg.batch_size)]
    return [ToxicityFilter(thresholds=by_source if cfg.mode == "drop" else None,
                           default=cfg.thresholds, scorers=scorers, unit=cfg.unit,
                           batch_size=cfg.batch_size)]


def record_bias(docs_scores: list[tuple[str, Mapping[str, float]]], tally: Tally,
                threshold: float = 0.5) -> None:
    """Identity-attack scores per source (sum, count, flagged): the stage's bias signal."""
    for source, scores in docs_scores:
        for head in ("detoxify.identity_attack",):
            if head in scores:
                value = scores[head]
                tally.add_extra("identity_attack", {source: {
                    "sum": value, "documents": 1, "flagged": int(value > threshold)}})


def summarise_bias(extra: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Mean identity-attack score and flagged share per source, from merged report extras."""
    out = {}
    for source, v in extra.get("identity_attack", {}).items():
        n = max(1, v["documents"])
        out[source] = {"mean": round(v["sum"] / n, 4), "flagged_rate": round(v["flagged"] / n, 4)}
    return out
