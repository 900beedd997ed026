"""Gopher repetition rules (Rae et al. 2021, Table A1), one rule per class. A document that
repeats lines, paragraphs or n-grams too much is boilerplate or spam. ``None`` disables a side.

Repeats are counted after the first occurrence, and character fractions are over the whole
text, as in the reference implementation. Lines that hold no letter or digit (the bare list
marker or separator that text extraction leaves behind) are markup, not repeated text
(``ignore_markup_lines``; ``false`` counts them as datatrove does), and so are the lines of a
program listing in a tutorial, whose repeats ("return NULL;", "import argparse") are syntax
(``ignore_code_lines``; the n-gram rules then measure the prose around the listings, since a
tutorial's incremental examples repeat most of their n-grams by design).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from lmforge.tasks.base import DocFilter, RuleParams, Verdict
from lmforge.tasks.filters.text import (
    WordTokenizer,
    content_lines,
    duplicate_ngram_chars,
    duplicates,
    paragraphs,
    raw_lines,
    top_ngram_chars,
    without_code_lines,
)
from lmforge.tasks.filters.text import code_lines_field as _code_lines
from lmforge.tasks.filters.text import word_tokenizer_field as _tokenizer
from lmforge.tasks.schema import Document
from pydantic import Field

_TABLE = "Rae et al. 2021, Table A1"


def _ngram_verdict(doc: Document, limits: dict[int, float], ignore_code_lines: bool,
                   chars: Callable[[str, int], int], what: str) -> Verdict:
    """Drop at the first n whose n-gram characters (``chars``) exceed their share of the text
    measured (the prose around program listings when ``ignore_code_lines``)."""
    text = without_code_lines(doc.text) if ignore_code_lines else doc.text
    size, measured = max(1, len(text)), {}
    for n, limit in sorted(limits.items()):
        frac = chars(text, n) / size
        if frac > limit:
            return Verdict.drop(f"{what}_{n}gram", fraction=round(frac, 4))
        measured[f"{what}_{n}gram"] = round(frac, 4)
    return Verdict.ok(**measured)


def _counted(fraction: float, char_fraction: float, max_fraction: float | None,
             max_char_fraction: float | None, what: str) -> Verdict:
    if max_fraction is not None and fraction > max_fraction:
        return Verdict.drop(f"dup_{what}s", fraction=round(fraction, 4))
    if max_char_fraction is not None and char_fraction > max_char_fraction:
        return Verdict.drop(f"dup_{what}_chars", char_fraction=round(char_fraction, 4))
    return Verdict.ok(fraction=round(fraction, 4), char_fraction=round(char_fraction, 4))


class DuplicateParagraphsFilter(DocFilter):
    """At most 30% of paragraphs, holding at most 20% of the characters, may be repeats."""

    name = "gopher_rep"

    class Params(RuleParams):
        max_dup_paragraph_fraction: float | None = Field(
            0.3, description=f"share of repeated paragraphs ({_TABLE})")
        max_dup_paragraph_char_fraction: float | None = Field(
            0.2, description=f"characters in repeated paragraphs ({_TABLE})")

    def keep(self, doc: Document) -> Verdict:
        p = self.params
        paras = paragraphs(doc.text)
        count, chars = duplicates(paras)
        return _counted(count / len(paras), chars / max(1, len(doc.text)),
                        p.max_dup_paragraph_fraction, p.max_dup_paragraph_char_fraction,
                        "paragraph")


class DuplicateLinesFilter(DocFilter):
    """At most 30% of lines, holding at most 20% of the characters, may be repeats."""

    name = "gopher_rep"

    class Params(RuleParams):
        max_dup_line_fraction: float | None = Field(
            0.3, description=f"share of repeated lines ({_TABLE})")
        max_dup_line_char_fraction: float | None = Field(
            0.2, description=f"characters in repeated lines ({_TABLE})")
        ignore_markup_lines: bool = Field(
            True, description="lines without a letter or digit are markup, not repeats")
        ignore_code_lines: bool = _code_lines()
        switches: ClassVar[tuple[str, ...]] = ("max_dup_line_fraction",
                                               "max_dup_line_char_fraction")

    def keep(self, doc: Document) -> Verdict:
        p = self.params
        ls = content_lines(raw_lines(doc.text), markup=p.ignore_markup_lines,
                           code=p.ignore_code_lines) or ("",)
        count, chars = duplicates(ls)
        return _counted(count / len(ls), chars / max(1, len(doc.text)),
                        p.max_dup_line_fraction, p.max_dup_line_char_fraction, "line")


class TopNGramsFilter(DocFilter):
    """The most frequent word n-gram may cover at most a share of the characters (Gopher:
    0.20 for 2-grams, 0.18 for 3-grams, 0.16 for 4-grams)."""

    name = "gopher_rep"

    class Params(RuleParams):
        top_ngrams: dict[int, float] = Field(
            {2: 0.20, 3: 0.18, 4: 0.16}, description="n -> largest share of characters of "
            f"the most frequent n-gram ({_TABLE})")
        word_tokenizer: WordTokenizer = _tokenizer()
        ignore_code_lines: bool = _code_lines()
        switches: ClassVar[tuple[str, ...]] = ("top_ngrams",)

    def keep(self, doc: Document) -> Verdict:
        p = self.params
        return _ngram_verdict(doc, p.top_ngrams, p.ignore_code_lines,
                              lambda t, n: top_ngram_chars(t, n, p.word_tokenizer), "top")


class DuplicateNGramsFilter(DocFilter):
    """Repeated word n-grams may cover at most a share of the characters (Gopher: 0.15 for
    5-grams down to 0.10 for 10-grams)."""

    name = "gopher_rep"

    class Params(RuleParams):
        dup_ngrams: dict[int, float] = Field(
            {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
            description=f"n -> largest share of characters in repeated n-grams ({_TABLE})")
        word_tokenizer: WordTokenizer = _tokenizer()
        ignore_code_lines: bool = _code_lines()
        switches: ClassVar[tuple[str, ...]] = ("dup_ngrams",)

    def keep(self, doc: Document) -> Verdict:
        p = self.params
        return _ngram_verdict(doc, p.dup_ngrams, p.ignore_code_lines,
                              lambda t, n: duplicate_ngram_chars(t, n, p.word_tokenizer), "dup")


RULES = [DuplicateParagraphsFilter, DuplicateLinesFilter, TopNGramsFilter,
         DuplicateNGramsFilter]
