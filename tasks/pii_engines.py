"""presidio's engines as lmforge builds them: an analyzer whose NLP engine never runs spaCy
itself (the scrubber brings its own NER spans), the offline e-mail recogniser, the credential
URL recogniser, and the anonymizer. Built once per process (per Dask worker)."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import tldextract
from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine, NlpEngineProvider
from presidio_analyzer.predefined_recognizers import EmailRecognizer, SpacyRecognizer
from presidio_anonymizer import AnonymizerEngine

NER_ENTITIES = ["PERSON", "LOCATION"]


# tldextract's module-level extractor may fetch the Public Suffix List over the network; this
# one only ever uses the snapshot shipped in the wheel.
_OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None,
                                     fallback_to_snapshot=True)


class OfflineEmailRecognizer(EmailRecognizer):
    """presidio's e-mail recogniser, validating domains against the bundled suffix list."""

    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_TLD(pattern_text).fqdn != ""


def _credential_url_recognizer(language: str) -> PatternRecognizer:
    # scheme://user:password@host — the password is the secret; the whole URL is replaced.
    pattern = Pattern("url-with-credentials",
                      r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@\"'<>{}\[\],]+:[^\s/@\"'<>{}\[\],]+@"
                      r"[^\s/\"'<>]+[^\s\"'<>]*", 0.9)
    return PatternRecognizer(supported_entity="URL_CREDENTIALS", patterns=[pattern],
                             supported_language=language)


class PreparedNlpEngine(NlpEngine):
    """Stands in for presidio's spaCy engine when every call brings its own NLP artifacts
    (built by :class:`PiiScrubber` from its faster NER pass); processes no text itself."""

    engine_name = "prepared"

    def __init__(self, language: str) -> None:
        self.language = language

    def load(self) -> None:
        return None

    def is_loaded(self) -> bool:
        return True

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        raise NotImplementedError("PreparedNlpEngine needs nlp_artifacts with every call")

    def process_batch(self, texts: Any, language: str, batch_size: int = 1, n_process: int = 1,
                      **kwargs: Any) -> Any:
        raise NotImplementedError("PreparedNlpEngine needs nlp_artifacts with every call")

    def is_stopword(self, word: str, language: str) -> bool:
        return False

    def is_punct(self, word: str, language: str) -> bool:
        return False

    def get_supported_entities(self) -> list[str]:
        return NER_ENTITIES

    def get_supported_languages(self) -> list[str]:
        return [self.language]


@lru_cache(maxsize=4)
def build_engines(ner_model: str | None, language: str) -> tuple[AnalyzerEngine, AnonymizerEngine]:
    """Analyzer (pattern recognisers, plus presidio's SpacyRecognizer fed by our NER pass) and
    anonymizer, built once per process."""
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)  # per-language noise
    if ner_model is None:
        nlp: NlpEngine = NlpEngineProvider(nlp_configuration={
            "nlp_engine_name": "no_op",
            "models": [{"lang_code": language, "model_name": "no_op"}]}).create_engine()
    else:
        nlp = PreparedNlpEngine(language)
    registry = RecognizerRegistry(supported_languages=[language])
    registry.load_predefined_recognizers(
        languages=[language], nlp_engine=NlpEngineProvider(nlp_configuration={
            "nlp_engine_name": "no_op",
            "models": [{"lang_code": language, "model_name": "no_op"}]}).create_engine())
    registry.remove_recognizer("EmailRecognizer")
    registry.add_recognizer(OfflineEmailRecognizer(supported_language=language))
    registry.add_recognizer(_credential_url_recognizer(language))
    if ner_model is not None:
        registry.add_recognizer(SpacyRecognizer(supported_language=language,
                                                supported_entities=NER_ENTITIES))
    analyzer = AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=[language])
    return analyzer, AnonymizerEngine()
