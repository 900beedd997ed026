"""Language identification with py3langid (Lui & Baldwin 2012's langid.py model, 97 languages,
shipped inside the PyPI wheel: works offline). The language and its probability are stored on
the document before the keep-list decides, so the list can change without rescoring.

Technical English confuses a character n-gram model: ``PyObject_New()``, ``os.path``, URLs and
version numbers are not English words. So the model sees the natural-language part only
(identifiers, code spans, paths, URLs and numbers masked), paragraph by paragraph, and the
document's language is the length-weighted vote of its paragraphs; its score is the
length-weighted probability of that language. ``benchmarks/decisions.py`` measures it on the
Python documentation.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

from lmforge.tasks.base import DocFilter, RuleParams, Verdict
from lmforge.tasks.schema import Document
from py3langid.langid import MODEL_FILE, LanguageIdentifier
from pydantic import Field

_MASK = re.compile(
    r"https?://\S+|www\.\S+|\S+@\S+\.\w+"  # links and addresses
    r"|`[^`\n]*`"  # inline code
    r"|\w+(?:[._:/\\-]\w+)+(?:\(\))?"  # dotted, pathed, hyphenated identifiers: os.path.join
    r"|\b\w*[a-z][A-Z]\w*"  # camelCase, PyObject
    r"|\b\w*_\w*"  # snake_case
    r"|\b\w*\d\w*"  # anything with a digit: versions, numbers, hex
    r"|\w+\(\)"  # calls: open()
    r"|\b\w+=[^\s,)]*|\*{1,2}\w+"  # keyword arguments of a signature: title=None, **options
    r"|[^\w\s]{2,}")  # runs of symbols: ->, ==, */
_PARAGRAPH = re.compile(r"\n\s*\n|\n")
MIN_LETTERS = 20  # a paragraph with fewer letters after masking does not vote


@lru_cache(maxsize=1)
def identifier() -> LanguageIdentifier:
    """Loaded once per process (about 0.3 s)."""
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def natural_text(text: str) -> str:
    """``text`` with what is not natural language (code, identifiers, links) blanked."""
    return _MASK.sub(" ", text)


def _has_letters(text: str, least: int = MIN_LETTERS) -> bool:
    """At least ``least`` letters (stops counting there: most paragraphs reach it at once)."""
    seen = 0
    for char in text:
        if char.isalpha():
            seen += 1
            if seen >= least:
                return True
    return False


def _vote(lid: LanguageIdentifier, pieces: list[str]) -> tuple[str, float]:
    """Each piece votes for its likeliest language with its length; the winner's score is its
    length-weighted probability. Reads py3langid's probability vector (``_decide``, pinned by
    the <0.5 bound in pyproject.toml): ``rank`` builds and sorts a 97-entry list per
    paragraph for the same numbers, which was a third of the language step."""
    labels = lid.nb_classes
    weights = [len(p) for p in pieces]
    scores = [lid._decide(p) for p in pieces]
    votes: Counter[str] = Counter()
    for weight, row in zip(weights, scores, strict=True):
        votes[labels[int(row.argmax())]] += weight  # first of equal scores, as rank's order
    language = votes.most_common(1)[0][0]
    column = list(labels).index(language)  # aliases fold into the first column
    return language, float(sum(w * float(row[column])
                               for w, row in zip(weights, scores, strict=True)) / sum(weights))


def identify(text: str, max_chars: int = 20_000, mask: bool = True) -> tuple[str, float]:
    """(language, probability) by a length-weighted vote of the paragraphs."""
    lid = identifier()
    pieces, budget = [], max_chars
    for para in _PARAGRAPH.split(text):
        clean = " ".join((natural_text(para) if mask else para).split())
        if _has_letters(clean):
            pieces.append(clean[:budget])
            budget -= len(pieces[-1])
        if budget <= 0:
            break
    if not pieces:  # nothing that reads as prose: the whole (masked) text decides
        language, score = lid.classify((natural_text(text) if mask else text)[:max_chars])
        return language, float(score)
    return _vote(lid, pieces)


class LanguageFilter(DocFilter):
    """Keep documents in the listed languages with at least ``min_score`` probability
    (FineWeb kept English at fastText score >= 0.65; the default follows it)."""

    name = "language"

    class Params(RuleParams):
        keep: list[str] | None = Field(["en"], description="ISO 639-1 codes to keep; null "
                                       "keeps all")
        min_score: float | None = Field(0.65, ge=0, le=1, description="lowest probability of "
                                        "the identified language (FineWeb: 0.65); null "
                                        "disables")
        max_chars: int = Field(20_000, ge=100, description="characters scored (the first "
                               "paragraphs): a book's language shows in its first pages")
        mask_code: bool = Field(True, description="score the natural-language part only: "
                                "identifiers, code spans, paths, URLs and numbers masked")

    def keep(self, doc: Document) -> Verdict:
        p = self.params
        language, score = identify(doc.text, p.max_chars, p.mask_code)
        doc.language, doc.scores["language_score"] = language, float(score)
        if p.keep is not None and language not in p.keep:
            return Verdict.drop("not_in_keep_list", language=language, score=round(score, 4))
        if p.min_score is not None and score < p.min_score:
            return Verdict.drop("low_score", language=language, score=round(score, 4))
        return Verdict.ok(language=language, score=round(float(score), 4))


RULES = [LanguageFilter]
