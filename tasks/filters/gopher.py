"""Gopher quality rules (Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights
from Training Gopher", Appendix A.1.1, MassiveText quality filters), one rule per class.

Each class declares its parameters once (``Params``: the paper's values, ``None`` disables a
side). Words are whitespace-delimited as in the paper (``word_tokenizer: datatrove`` counts
datatrove's NLTK-style tokens instead, punctuation marks included). Two readings the paper
leaves open are made explicit: list markers that start a line are markup, not words; stop
words are matched case-insensitively and without surrounding punctuation ("The", "of,").
"""

from __future__ import annotations

from typing import ClassVar

from lmforge.tasks.base import DocFilter, RuleParams, Verdict
from lmforge.tasks.filters.text import BULLETS, WordTokenizer, counted_words, ratio_units
from lmforge.tasks.filters.text import word_tokenizer_field as _tokenizer
from lmforge.tasks.schema import Document
from pydantic import Field

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
ELLIPSES = ("...", "…")
_PAPER = "Rae et al. 2021, App. A.1.1"
_STRIP = "\"'“”‘’()[]{},.;:!?"


class GopherWordCountFilter(DocFilter):
    """Documents with fewer than 50 or more than 100,000 words are dropped."""

    name = "gopher"

    class Params(RuleParams):
        min_words: int | None = Field(50, description=f"fewest words ({_PAPER})")
        max_words: int | None = Field(100_000, description=f"most words ({_PAPER})")
        word_tokenizer: WordTokenizer = _tokenizer()
        switches: ClassVar[tuple[str, ...]] = ("min_words", "max_words")

    def keep(self, doc: Document) -> Verdict:
        p = self.params
        n = len(counted_words(doc.text, p.word_tokenizer))
        if p.min_words is not None and n < p.min_words:
            return Verdict.drop("too_few_words", words=n, min_words=p.min_words)
        if p.max_words is not None and n > p.max_words:
            return Verdict.drop("too_many_words", words=n, max_words=p.max_words)
        return Verdict.ok(words=n)


class GopherMeanWordLengthFilter(DocFilter):
    """The mean word length must lie within 3 to 10 characters."""

    name = "gopher"

    class Params(RuleParams):
        min_mean_word_length: float | None = Field(3, description=f"shortest mean ({_PAPER})")
        max_mean_word_length: float | None = Field(10, description=f"longest mean ({_PAPER})")
        word_tokenizer: WordTokenizer = _tokenizer()
        switches: ClassVar[tuple[str, ...]] = ("min_mean_word_length", "max_mean_word_length")

    def keep(self, doc: Document) -> Verdict:
        p = self.params
        ws = counted_words(doc.text, p.word_tokenizer)
        mean = sum(map(len, ws)) / len(ws) if ws else 0.0
        if p.min_mean_word_length is not None and mean < p.min_mean_word_length:
            return Verdict.drop("short_mean_word_length", mean=round(mean, 3))
        if p.max_mean_word_length is not None and mean > p.max_mean_word_length:
            return Verdict.drop("long_mean_word_length", mean=round(mean, 3))
        return Verdict.ok(mean=round(mean, 3))


class GopherSymbolRatioFilter(DocFilter):
    """Hash symbols, and separately ellipses, per word must not exceed 0.1 (the survey's
    symbol-to-word rule)."""

    name = "gopher"

    class Params(RuleParams):
        max_symbol_word_ratio: float | None = Field(
            0.1, description=f"'#' or ellipses per word ({_PAPER}; the survey's 0.1)")
        word_tokenizer: WordTokenizer = _tokenizer()
        switches: ClassVar[tuple[str, ...]] = ("max_symbol_word_ratio",)

    def keep(self, doc: Document) -> Verdict:
        p = self.params
        n = len(ratio_units(doc.text, p.word_tokenizer)) or 1
        hashes = doc.text.count("#") / n
        ellipses = sum(doc.text.count(e) for e in ELLIPSES) / n
        if max(hashes, ellipses) > p.max_symbol_word_ratio:
            return Verdict.drop("high_symbol_word_ratio", hash_ratio=round(hashes, 4),
                                ellipsis_ratio=round(ellipses, 4))
        return Verdict.ok(hash_ratio=round(hashes, 4), ellipsis_ratio=round(ellipses, 4))


class GopherBulletLinesFilter(DocFilter):
    """At most 90% of lines may start with a bullet point."""

    name = "gopher"

    class Params(RuleParams):
        max_bullet_lines_ratio: float | None = Field(
            0.9, description=f"share of lines starting with a bullet ({_PAPER})")

    def keep(self, doc: Document) -> Verdict:
        ls = doc.text.splitlines() or [""]
        ratio = sum(line.lstrip().startswith(BULLETS) for line in ls) / len(ls)
        if ratio > self.params.max_bullet_lines_ratio:
            return Verdict.drop("too_many_bullet_lines", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


class GopherEllipsisLinesFilter(DocFilter):
    """At most 30% of lines may end with an ellipsis."""

    name = "gopher"

    class Params(RuleParams):
        max_ellipsis_lines_ratio: float | None = Field(
            0.3, description=f"share of lines ending with an ellipsis ({_PAPER})")

    def keep(self, doc: Document) -> Verdict:
        ls = doc.text.splitlines() or [""]
        ratio = sum(line.rstrip().endswith(ELLIPSES) for line in ls) / len(ls)
        if ratio > self.params.max_ellipsis_lines_ratio:
            return Verdict.drop("too_many_ellipsis_lines", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


class GopherAlphaWordsFilter(DocFilter):
    """At least 80% of words must contain an alphabetic character."""

    name = "gopher"

    class Params(RuleParams):
        min_alpha_words_ratio: float | None = Field(
            0.8, description=f"share of words with a letter ({_PAPER})")
        word_tokenizer: WordTokenizer = _tokenizer()
        switches: ClassVar[tuple[str, ...]] = ("min_alpha_words_ratio",)

    def keep(self, doc: Document) -> Verdict:
        units = ratio_units(doc.text, self.params.word_tokenizer)
        # most words start with a letter: the character scan is for the others
        ratio = sum(1 for t in units if t[:1].isalpha() or any(c.isalpha() for c in t)
                    ) / (len(units) or 1)
        if ratio < self.params.min_alpha_words_ratio:
            return Verdict.drop("too_few_alpha_words", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


class GopherStopWordsFilter(DocFilter):
    """At least two of the English stop words (the, be, to, of, and, that, have, with) appear."""

    name = "gopher"

    class Params(RuleParams):
        min_stop_words: int | None = Field(2, description=f"distinct stop words ({_PAPER})")
        word_tokenizer: WordTokenizer = _tokenizer()
        switches: ClassVar[tuple[str, ...]] = ("min_stop_words",)

    def keep(self, doc: Document) -> Verdict:
        p = self.params
        if p.word_tokenizer == "datatrove":  # datatrove: distinct tokens, case-sensitively
            found = len(STOP_WORDS.intersection(ratio_units(doc.text, "datatrove")))
        else:  # "at least two of the following words": distinct words, any case
            found = len(STOP_WORDS.intersection(w.strip(_STRIP).lower()
                                                for w in counted_words(doc.text, "whitespace")))
        if found < p.min_stop_words:
            return Verdict.drop("too_few_stop_words", stop_words=found)
        return Verdict.ok(stop_words=found)


RULES = [GopherWordCountFilter, GopherMeanWordLengthFilter, GopherSymbolRatioFilter,
         GopherBulletLinesFilter, GopherEllipsisLinesFilter, GopherAlphaWordsFilter,
         GopherStopWordsFilter]
