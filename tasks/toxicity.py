"""Toxicity and bias scoring and filtering.

Two scorers:

* always available: alt-profanity-check's classifier (TF-IDF + calibrated linear SVM trained by
  its authors on about 200k labelled tweets and Wikipedia comments), shipped inside its wheel,
  offline; its score is the ``toxicity`` head.
* when a checkpoint is configured: detoxify (Jigsaw-trained transformers), every head
  (``detoxify.toxicity``, ``.severe_toxicity``, ``.obscene``, ``.threat``, ``.insult``,
  ``.identity_attack``), batched, on the GPU when there is one. Loaded from local files only.

Texts are scored per unit (paragraph or sentence, bounded in length). Decisions are by span,
as Dolma does it: in ``drop-spans`` mode (the default) the units above a head's threshold are
removed and the rest of the document kept, and a document is dropped only when its toxic units
hold more than ``max_toxic_share`` of its characters (a hostile comment, not a novel with one
rude line). ``drop`` drops any document with one toxic unit, ``annotate`` only scores, ``off``
skips a source. Each source kind can have its own mode, thresholds and share (defaults: books
never dropped, only their toxic spans removed; code not scored by a classifier trained on
comments). ``doc.scores`` holds the worst unit's score per head and the toxic share; the
rejected row's ``detail`` names the offending spans (offsets and scores) that
``lmforge explain`` shows. ``identity_attack`` (the bias signal) is summed per source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal, Protocol

import numpy as np
from lmforge.tasks.base import DocFilter, DocRewriter, Rewrite, Verdict
from lmforge.tasks.chunks import bounded_spans
from lmforge.tasks.readers import SourceKind
from lmforge.tasks.report import Tally
from lmforge.tasks.schema import Document
from pydantic import BaseModel, ConfigDict, Field, model_validator

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


Mode = Literal["drop-spans", "drop", "annotate", "off"]


class ToxicityPolicy(BaseModel):
    """What the toxicity stage does to one source kind; unset fields take the stage's."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Mode | None = Field(None, description="drop-spans, drop, annotate or off")
    thresholds: dict[str, float] | None = Field(None, description="head -> score above which "
                                                "a unit is toxic")
    max_toxic_share: float | None = Field(None, ge=0, le=1, description="documents whose "
                                          "toxic units hold more than this share of the "
                                          "characters are dropped; null never drops; unset: "
                                          "the stage's value")


DEFAULT_POLICIES: dict[str, ToxicityPolicy] = {
    "books": ToxicityPolicy(max_toxic_share=None), "code": ToxicityPolicy(mode="off")}


class ToxicityConfig(BaseModel):
    """Scoring and decisions of the toxicity stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Mode = Field("drop-spans", description="remove toxic units and drop documents "
                       "that are mostly toxic; drop any document with a toxic unit; only "
                       "store scores; or skip")
    unit: Literal["paragraph", "sentence"] = Field("paragraph", description="what is scored")
    thresholds: dict[str, float] = Field(
        {"toxicity": 0.9}, description="head -> score above which a unit is toxic; heads: "
        "'toxicity' (profanity-check) and 'detoxify.<head>'. 0.9: precision 1.0, recall 0.5 "
        "on the Jigsaw sample (benchmarks/toxicity.py prints the curve)")
    max_toxic_share: float | None = Field(
        0.3, ge=0, le=1, description="in drop-spans mode, documents whose toxic units hold "
        "more than this share of the characters are dropped; null never drops")
    per_source: dict[SourceKind, ToxicityPolicy] = Field(
        dict(DEFAULT_POLICIES), description="source -> its own mode, thresholds or share, "
        "merged with the defaults (books lose toxic spans but are never dropped; code is not "
        "scored by a classifier trained on comments)")
    detoxify: DetoxifyConfig | None = Field(None, description="detoxify heads on top")
    batch_size: int = Field(256, ge=1, description="documents per scoring batch")

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("per_source"), dict):
            data = {**data, "per_source": {**DEFAULT_POLICIES, **data["per_source"]}}
        return data

    def policy(self, source: str) -> tuple[Mode, dict[str, float], float | None]:
        """(mode, thresholds, max toxic share) for documents of ``source``."""
        own = self.per_source.get(source, ToxicityPolicy())  # type: ignore[call-overload]
        share = own.max_toxic_share if "max_toxic_share" in own.model_fields_set \
            else self.max_toxic_share
        return own.mode or self.mode, own.thresholds or self.thresholds, share


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
    """Unit scores of the documents of a batch, computed once for both toxicity steps."""

    def __init__(self, cfg: ToxicityConfig, scorers: list[Scorer]) -> None:
        self.cfg, self.scorers = cfg, scorers
        # id(doc) -> (the document itself, its units, their scores); holding the document
        # keeps its id from being reused while the entry exists
        self._cache: dict[int, tuple[Document, list[tuple[int, int]],
                                     list[dict[str, float]]]] = {}

    def _cached(self, doc: Document) -> bool:
        entry = self._cache.get(id(doc))
        return entry is not None and entry[0] is doc

    def score(self, batch: list[Document], *, fresh: bool = False) -> None:
        """Score the batch's documents not scored yet; ``fresh`` forgets earlier batches."""
        if fresh:
            self._cache = {}
        todo = [doc for doc in batch if not self._cached(doc)
                and self.cfg.policy(doc.source)[0] != "off"]
        if not todo:
            return
        spans = [units(doc.text, self.cfg.unit) for doc in todo]
        texts = [doc.text[a:b] for doc, ss in zip(todo, spans, strict=True) for a, b in ss]
        heads: dict[str, np.ndarray] = {}
        for scorer in self.scorers:
            heads |= scorer(texts)
        pos = 0
        for doc, ss in zip(todo, spans, strict=True):
            per_unit = [{h: float(v[pos + i]) for h, v in heads.items()} for i in range(len(ss))]
            self._cache[id(doc)] = (doc, ss, per_unit)
            for head in heads:
                doc.scores[head] = max(u[head] for u in per_unit)
            pos += len(ss)

    def toxic(self, doc: Document) -> list[tuple[int, int, float]]:
        """(start, end, worst head score) of the units above the source's thresholds."""
        if not self._cached(doc):
            return []
        _, spans, scores = self._cache[id(doc)]
        limits = self.cfg.policy(doc.source)[1]
        return [(a, b, max(over.values()))
                for (a, b), s in zip(spans, scores, strict=True) if (over := _over(s, limits))]


def _over(scores: Mapping[str, float], thresholds: Mapping[str, float]) -> dict[str, float]:
    return {h: round(scores[h], 4) for h, t in thresholds.items() if scores.get(h, 0.0) > t}


def _evidence(toxic: list[tuple[int, int, float]], size: int) -> dict[str, Any]:
    share = sum(b - a for a, b, _ in toxic) / max(1, size)
    worst = sorted(toxic, key=lambda t: -t[2])[:5]
    return {"toxic_share": round(share, 4), "toxic_units": len(toxic),
            "spans": [[a, b, round(score, 4)] for a, b, score in worst]}


class ToxicityFilter(DocFilter):
    """Score every unit; drop documents by their source's mode: any toxic unit (``drop``), or
    toxic units holding more than the allowed share of the text (``drop-spans``)."""

    name = "toxicity"

    def __init__(self, scoring: _Scoring) -> None:
        super().__init__()
        self.scoring = scoring
        self.batch_size = scoring.cfg.batch_size  # type: ignore[misc]  # per-instance

    def prepare(self, batch: list[Document]) -> None:
        self.scoring.score(batch, fresh=True)

    def keep(self, doc: Document) -> Verdict:
        mode, _, max_share = self.scoring.cfg.policy(doc.source)
        if mode == "off":
            return Verdict.ok(scored=False)
        toxic = self.scoring.toxic(doc)
        evidence = _evidence(toxic, len(doc.text))
        doc.scores["toxic_share"] = evidence["toxic_share"]
        if toxic and (mode == "drop" or (mode == "drop-spans" and max_share is not None
                                         and evidence["toxic_share"] > max_share)):
            return Verdict.drop("toxic", **evidence)
        return Verdict.ok(**evidence)


class ToxicSpanRemover(DocRewriter):
    """In ``drop-spans`` mode, remove the toxic units of the documents that are kept."""

    name = "toxic_spans"

    def __init__(self, scoring: _Scoring) -> None:
        super().__init__()
        self.scoring = scoring
        self.batch_size = scoring.cfg.batch_size  # type: ignore[misc]

    def prepare(self, batch: list[Document]) -> None:
        self.scoring.score(batch)

    def rewrite(self, doc: Document) -> Rewrite:
        if self.scoring.cfg.policy(doc.source)[0] != "drop-spans":
            return Rewrite(doc.text)
        cut = self.scoring.toxic(doc)
        if not cut:
            return Rewrite(doc.text)
        pieces, last = [], 0
        for a, b, _ in cut:
            pieces.append(doc.text[last:a])
            last = b
        pieces.append(doc.text[last:])
        text = re.sub(r"[ \t]{2,}", " ", "".join(pieces)).strip()
        text = re.sub(r"\n{3,}", "\n\n", text)
        return Rewrite(text, {"spans_removed": len(cut),
                              "chars_removed": sum(b - a for a, b, _ in cut)})


def scorers_for(cfg: ToxicityConfig) -> list[Scorer]:
    """The configured heads: profanity-check always, detoxify when configured."""
    scorers: list[Scorer] = [profanity_scorer()]
    if cfg.detoxify is not None:
        scorers.append(detoxify_scorer(cfg.detoxify))
    return scorers


def build_toxicity_steps(cfg: ToxicityConfig, sources: list[str] | None = None
                         ) -> list[DocFilter | DocRewriter]:
    """The decision (drop) then, for the documents kept, the span removal; both share one
    scoring of each batch. ``sources`` is accepted for callers that name them; the policy is
    looked up per document."""
    del sources
    scoring = _Scoring(cfg, scorers_for(cfg))
    return [ToxicityFilter(scoring), ToxicSpanRemover(scoring)]


def toxic_passages(doc: Document, cfg: ToxicityConfig, show: int = 5) -> dict[str, Any]:
    """What decided a document's toxicity: its mode, the toxic share, and the worst units
    with their scores and text (``lmforge explain``)."""
    mode, thresholds, max_share = cfg.policy(doc.source)
    if mode == "off":
        return {"mode": mode}
    scoring = _Scoring(cfg, scorers_for(cfg))
    scoring.score([doc], fresh=True)
    toxic = scoring.toxic(doc)
    evidence = _evidence(toxic, len(doc.text))
    return {"mode": mode, "thresholds": dict(thresholds), "max_toxic_share": max_share,
            "toxic_share": evidence["toxic_share"], "toxic_units": len(toxic),
            "passages": [{"start": a, "end": b, "score": round(score, 4),
                          "text": doc.text[a:b]}
                         for a, b, score in sorted(toxic, key=lambda t: -t[2])[:show]]}


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
